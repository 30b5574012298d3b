//! Fixer (fixer.io) exchange rates, when an API key is configured.
//!
//! The newest day comes from `/latest`, earlier missing days from `/YYYY-MM-DD`, one
//! request a day. To respect the plan's monthly quota a fetch reaches back at most
//! `max_backfill_days` days (31 by default, today included); older gaps stay gaps.
//! Fixer reports most errors with HTTP 200 and `"success": false`: those are `Refused`
//! with Fixer's error type and text, never the key.
//!
//! Requests go one after the other and stop at the first failure. If the very first
//! cannot reach Fixer, `fetch` fails; otherwise every series that needed a day fails with
//! that error (its days are asked again next time), so a gap is never skipped.

use super::http::{FeedHttp, Fetched, base_url, join};
use super::{
    FeedSetupError, RetryPolicy, decimal_from_json, default_fx_currencies, euro, parse_date,
};
use async_trait::async_trait;
use chrono::{NaiveDate, TimeDelta};
use domain::money::Currency;
use domain::rates::feed::{FeedError, FeedSeries, FetchRequest, RateFeed, SeriesFetch};
use domain::rates::{Observation, SeriesId, SeriesKind, Source};
use reqwest::Url;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Where and what [`FixerFeed`] fetches.
#[derive(Clone)]
pub struct FixerConfig {
    pub base_url: String,
    /// Sent as the `access_key` query parameter.
    pub access_key: String,
    /// The base currency; the free plan allows only EUR.
    pub base: Currency,
    /// Currencies to follow, each as units per 1 `base`.
    pub symbols: Vec<Currency>,
    /// How many days back, today included, a fetch fills gaps (one request a day).
    pub max_backfill_days: u32,
    pub retry: RetryPolicy,
}

impl FixerConfig {
    pub const BASE_URL: &'static str = "https://data.fixer.io/api";
    pub const MAX_BACKFILL_DAYS: u32 = 31;

    /// EUR against the default currencies at `base_url`.
    pub fn new(base_url: impl Into<String>, access_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            access_key: access_key.into(),
            // Start-up configuration; EUR is in every ISO 4217 table.
            base: euro().expect("EUR is an ISO 4217 currency"),
            symbols: default_fx_currencies(),
            max_backfill_days: Self::MAX_BACKFILL_DAYS,
            retry: RetryPolicy::default(),
        }
    }

    /// The default configuration at Fixer's own address.
    pub fn with_key(access_key: impl Into<String>) -> Self {
        Self::new(Self::BASE_URL, access_key)
    }
}

impl fmt::Debug for FixerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixerConfig")
            .field("base_url", &self.base_url)
            .field("access_key", &"[redacted]")
            .field("base", &self.base)
            .field("symbols", &self.symbols)
            .field("max_backfill_days", &self.max_backfill_days)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Fixer's exchange rates (`Source::Fixer`).
pub struct FixerFeed {
    http: FeedHttp,
    base_url: Url,
    access_key: String,
    base: Currency,
    series: Vec<(SeriesId, Currency)>,
    max_backfill_days: u32,
}

impl FixerFeed {
    /// Fails with `MissingKey` when the key is blank: Fixer is only used with one.
    pub fn new(config: FixerConfig) -> Result<Self, FeedSetupError> {
        let access_key = config.access_key.trim().to_owned();
        if access_key.is_empty() {
            return Err(FeedSetupError::MissingKey);
        }
        let mut series: Vec<(SeriesId, Currency)> = Vec::new();
        for symbol in config.symbols {
            if symbol != config.base && !series.iter().any(|(_, known)| *known == symbol) {
                series.push((SeriesId::fx(Source::Fixer, config.base, symbol), symbol));
            }
        }
        Ok(Self {
            http: FeedHttp::new(
                Source::Fixer,
                config.retry,
                HeaderMap::new(),
                vec![access_key.clone()],
            )?,
            base_url: base_url(&config.base_url)?,
            access_key,
            base: config.base,
            series,
            max_backfill_days: config.max_backfill_days.max(1),
        })
    }

    fn url(&self, endpoint: &str) -> Url {
        let symbols: Vec<&str> = self.series.iter().map(|(_, c)| c.code()).collect();
        let mut url = join(&self.base_url, &[endpoint]);
        url.query_pairs_mut()
            .append_pair("access_key", &self.access_key)
            .append_pair("base", self.base.code())
            .append_pair("symbols", &symbols.join(","));
        url
    }

    /// One day's rates (`None`: the newest, via `/latest`).
    async fn rates(&self, day: Option<NaiveDate>) -> Result<FixerRates, FeedError> {
        let endpoint = day.map_or_else(|| "latest".to_owned(), |d| d.to_string());
        match self.http.get(&self.url(&endpoint)).await? {
            Fetched::NoContent => Err(FeedError::Malformed(format!(
                "/{endpoint}: an empty answer"
            ))),
            Fetched::Body(body) => parse_answer(&body, self.base, &self.series)
                .map_err(|error| self.http.redact_error(error)),
        }
    }

    fn feed_series(&self, id: &SeriesId, symbol: Currency) -> FeedSeries {
        FeedSeries {
            id: id.clone(),
            kind: SeriesKind::ExchangeRate {
                base: self.base,
                quote: symbol,
            },
            description: format!("Fixer exchange rate: {symbol} per {}", self.base),
            closed: false,
            observation_max_date: None,
        }
    }
}

#[async_trait]
impl RateFeed for FixerFeed {
    fn source(&self) -> Source {
        Source::Fixer
    }

    async fn fetch(&self, request: &FetchRequest) -> Result<Vec<SeriesFetch>, FeedError> {
        let today = request.today;
        let earliest = self
            .series
            .iter()
            .filter_map(|(id, _)| request.first_missing(id))
            .min();
        let mut collected: HashMap<Currency, BTreeMap<NaiveDate, Decimal>> = HashMap::new();
        let mut newest: Option<NaiveDate> = None;
        let mut failure: Option<FeedError> = None;
        if let Some(earliest) = earliest {
            let window = TimeDelta::days(i64::from(self.max_backfill_days) - 1);
            let oldest_allowed = today.checked_sub_signed(window).unwrap_or(today);
            let start = earliest.max(oldest_allowed);
            let days = start
                .iter_days()
                .take_while(|day| *day < today)
                .map(Some)
                .chain([None]);
            for (index, day) in days.enumerate() {
                match self.rates(day).await {
                    Ok(answer) => {
                        newest = newest.max(Some(answer.date));
                        for (currency, value) in answer.rates {
                            collected
                                .entry(currency)
                                .or_default()
                                .insert(answer.date, value);
                        }
                    }
                    Err(
                        unreachable @ (FeedError::Unavailable(_) | FeedError::RateLimited { .. }),
                    ) if index == 0 => return Err(unreachable),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
        }
        Ok(self
            .series
            .iter()
            .map(|(id, symbol)| {
                let mut series = self.feed_series(id, *symbol);
                series.observation_max_date = newest;
                let observations = match (request.first_missing(id), &failure) {
                    (None, _) => Ok(Vec::new()),
                    (Some(_), Some(error)) => Err(error.clone()),
                    (Some(first), None) => Ok(collected
                        .get(symbol)
                        .map(|by_date| {
                            by_date
                                .range(first..=today)
                                .map(|(date, value)| Observation {
                                    date: *date,
                                    value: *value,
                                })
                                .collect()
                        })
                        .unwrap_or_default()),
                };
                SeriesFetch {
                    series,
                    observations,
                }
            })
            .collect())
    }
}

#[derive(Deserialize)]
struct FixerAnswer {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<FixerError>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    rates: Option<HashMap<String, Box<RawValue>>>,
}

#[derive(Deserialize)]
struct FixerError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

struct FixerRates {
    date: NaiveDate,
    rates: Vec<(Currency, Decimal)>,
}

fn parse_answer(
    body: &[u8],
    base: Currency,
    series: &[(SeriesId, Currency)],
) -> Result<FixerRates, FeedError> {
    let answer: FixerAnswer = serde_json::from_slice(body)
        .map_err(|e| FeedError::Malformed(format!("Fixer's answer: {e}")))?;
    if answer.success == Some(false) || answer.error.is_some() {
        let error = answer.error.unwrap_or(FixerError {
            code: None,
            kind: None,
            info: None,
        });
        let code = match error.code {
            Some(serde_json::Value::Number(code)) => format!(" (code {code})"),
            Some(serde_json::Value::String(code)) => format!(" (code {code})"),
            _ => String::new(),
        };
        return Err(FeedError::Refused(format!(
            "{}{code}: {}",
            error.kind.as_deref().unwrap_or("unknown_error"),
            error.info.as_deref().unwrap_or("no explanation given"),
        )));
    }
    if answer.base.as_deref().is_some_and(|b| b != base.code()) {
        return Err(FeedError::Malformed(format!(
            "rates against {:?}, not {base}",
            answer.base.as_deref().unwrap_or("")
        )));
    }
    let date = answer
        .date
        .as_deref()
        .and_then(parse_date)
        .ok_or_else(|| FeedError::Malformed("Fixer's answer has no date".to_owned()))?;
    let raw_rates = answer
        .rates
        .ok_or_else(|| FeedError::Malformed("Fixer's answer has no rates".to_owned()))?;
    let mut rates = Vec::new();
    for (_, currency) in series {
        let Some(raw) = raw_rates.get(currency.code()) else {
            continue;
        };
        let value = decimal_from_json(raw)
            .map_err(|e| FeedError::Malformed(format!("the {currency} rate of {date}: {e}")))?;
        if let Some(value) = value {
            rates.push((*currency, value));
        }
    }
    Ok(FixerRates { date, rates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(codes: &[&str]) -> Vec<(SeriesId, Currency)> {
        let eur = Currency::parse("EUR").unwrap();
        codes
            .iter()
            .map(|code| {
                let currency = Currency::parse(code).unwrap();
                (SeriesId::fx(Source::Fixer, eur, currency), currency)
            })
            .collect()
    }

    #[test]
    fn a_successful_answer() {
        let eur = Currency::parse("EUR").unwrap();
        let body = br#"{"success": true, "timestamp": 1715212799, "historical": true, "base": "EUR",
            "date": "2024-05-08", "rates": {"SEK": 11.6405, "USD": 1.075012, "ZAR": 19.8, "NOK": null}}"#;
        let answer = parse_answer(body, eur, &series(&["SEK", "USD", "NOK", "GBP"])).unwrap();
        assert_eq!(answer.date.to_string(), "2024-05-08");
        let texts: Vec<_> = answer
            .rates
            .iter()
            .map(|(c, v)| format!("{c} {v}"))
            .collect();
        assert_eq!(texts, ["SEK 11.6405", "USD 1.075012"]);
    }

    #[test]
    fn errors_with_http_200_are_refusals() {
        let eur = Currency::parse("EUR").unwrap();
        let body = br#"{"success": false, "error": {"code": 101, "type": "invalid_access_key",
            "info": "You have not supplied a valid API Access Key."}}"#;
        assert_eq!(
            parse_answer(body, eur, &series(&["SEK"])).err(),
            Some(FeedError::Refused(
                "invalid_access_key (code 101): You have not supplied a valid API Access Key."
                    .to_owned()
            ))
        );
        let wrong_base = br#"{"success": true, "base": "USD", "date": "2024-05-08", "rates": {}}"#;
        assert!(matches!(
            parse_answer(wrong_base, eur, &series(&["SEK"])),
            Err(FeedError::Malformed(_))
        ));
        let no_date = br#"{"success": true, "base": "EUR", "rates": {}}"#;
        assert!(matches!(
            parse_answer(no_date, eur, &series(&["SEK"])),
            Err(FeedError::Malformed(_))
        ));
    }

    #[test]
    fn a_blank_key_builds_no_feed() {
        assert_eq!(
            FixerFeed::new(FixerConfig::with_key("  ")).err(),
            Some(FeedSetupError::MissingKey)
        );
        assert!(!format!("{:?}", FixerConfig::with_key("s3cr3t")).contains("s3cr3t"));
    }
}
