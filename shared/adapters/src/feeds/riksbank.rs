//! Sveriges Riksbank: the SWEA API (policy rates, STIBOR, government bonds, exchange
//! rates) and the SWESTR API (the Swedish krona short-term rate).
//!
//! A fetch asks `GET {swea}/Series` once for descriptions, `seriesClosed` and
//! `observationMaxDate`, then `GET {swea}/Observations/{id}/{from}/{to}` for each series
//! with something missing, and `GET {swestr}/all/SWESTR?fromDate=…&toDate=…`, one request
//! at a time. Without a subscription key the API allows only a few calls a minute, so
//! configure one in production; the retries honour its `Retry-After`.

use super::http::{FeedHttp, Fetched, base_url, join, secret_header};
use super::{FeedSetupError, RetryPolicy, decimal_from_json, parse_date};
use async_trait::async_trait;
use chrono::NaiveDate;
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

/// The SWEA series followed unless configured otherwise: the policy, deposit and
/// lending rates, STIBOR 1, 3 and 6 months, government bonds 2, 5 and 10 years, and the
/// krona's fixing against EUR, USD, GBP, NOK and DKK (SEK per 1 unit of the foreign
/// currency).
pub const DEFAULT_SWEA_SERIES: [&str; 14] = [
    "SECBREPOEFF",
    "SECBDEPOEFF",
    "SECBLENDEFF",
    "SEDP1MSTIBORDELAYC",
    "SEDP3MSTIBORDELAYC",
    "SEDP6MSTIBORDELAYC",
    "SEGVB2YC",
    "SEGVB5YC",
    "SEGVB10YC",
    "SEKEURPMI",
    "SEKUSDPMI",
    "SEKGBPPMI",
    "SEKNOKPMI",
    "SEKDKKPMI",
];

/// The series id of SWESTR.
pub const SWESTR_SERIES: &str = "SWESTR";

/// Where and what [`RiksbankFeed`] fetches.
#[derive(Clone)]
pub struct RiksbankConfig {
    pub swea_base_url: String,
    pub swestr_base_url: String,
    /// The API portal's key, sent as `Ocp-Apim-Subscription-Key`; raises the rate limit.
    pub subscription_key: Option<String>,
    /// SWEA series to follow. `SEKxxxPMI` series are exchange rates (SEK per 1 xxx),
    /// the others interest rates in percent.
    pub series: Vec<SeriesId>,
    /// Whether to follow SWESTR as well.
    pub follow_swestr: bool,
    pub retry: RetryPolicy,
}

impl RiksbankConfig {
    pub const SWEA_BASE_URL: &'static str = "https://api.riksbank.se/swea/v1";
    pub const SWESTR_BASE_URL: &'static str = "https://api.riksbank.se/swestr/v1";

    /// The default series at the given base URLs.
    pub fn new(swea_base_url: impl Into<String>, swestr_base_url: impl Into<String>) -> Self {
        Self {
            swea_base_url: swea_base_url.into(),
            swestr_base_url: swestr_base_url.into(),
            subscription_key: None,
            series: DEFAULT_SWEA_SERIES
                .iter()
                .filter_map(|id| SeriesId::parse(id).ok())
                .collect(),
            follow_swestr: true,
            retry: RetryPolicy::default(),
        }
    }
}

impl Default for RiksbankConfig {
    fn default() -> Self {
        Self::new(Self::SWEA_BASE_URL, Self::SWESTR_BASE_URL)
    }
}

impl fmt::Debug for RiksbankConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiksbankConfig")
            .field("swea_base_url", &self.swea_base_url)
            .field("swestr_base_url", &self.swestr_base_url)
            .field(
                "subscription_key",
                &self.subscription_key.as_ref().map(|_| "[redacted]"),
            )
            .field("series", &self.series)
            .field("follow_swestr", &self.follow_swestr)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The Riksbank's rates (`Source::Riksbank`).
pub struct RiksbankFeed {
    http: FeedHttp,
    swea: Url,
    swestr: Url,
    series: Vec<(SeriesId, SeriesKind)>,
    swestr_id: Option<SeriesId>,
}

impl RiksbankFeed {
    pub fn new(config: RiksbankConfig) -> Result<Self, FeedSetupError> {
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        if let Some(key) = config.subscription_key.filter(|k| !k.trim().is_empty()) {
            let (name, value) = secret_header("ocp-apim-subscription-key", key.trim())?;
            headers.insert(name, value);
            secrets.push(key.trim().to_owned());
        }
        let sek = Currency::parse("SEK")
            .map_err(|_| FeedSetupError::Config("SEK is not a known currency".to_owned()))?;
        let mut series: Vec<(SeriesId, SeriesKind)> = Vec::new();
        for id in config.series {
            if !series.iter().any(|(known, _)| *known == id) {
                let kind = swea_kind(&id, sek);
                series.push((id, kind));
            }
        }
        let swestr_id = if config.follow_swestr {
            Some(
                SeriesId::parse(SWESTR_SERIES)
                    .map_err(|_| FeedSetupError::Config("invalid SWESTR series id".to_owned()))?,
            )
        } else {
            None
        };
        Ok(Self {
            http: FeedHttp::new(Source::Riksbank, config.retry, headers, secrets)?,
            swea: base_url(&config.swea_base_url)?,
            swestr: base_url(&config.swestr_base_url)?,
            series,
            swestr_id,
        })
    }

    async fn catalogue(&self) -> Result<HashMap<String, CatalogueEntry>, FeedError> {
        match self.http.get(&join(&self.swea, &["Series"])).await? {
            Fetched::Body(body) => parse_catalogue(&body).map_err(|e| self.http.redact_error(e)),
            Fetched::NoContent => Err(FeedError::Malformed(
                "the series catalogue is empty".to_owned(),
            )),
        }
    }

    async fn swea_observations(
        &self,
        series: &FeedSeries,
        request: &FetchRequest,
    ) -> Result<Vec<Observation>, FeedError> {
        let Some(from) = request.first_missing(&series.id) else {
            return Ok(Vec::new());
        };
        // Nothing exists past the source's newest date: don't ask for it.
        let to = series
            .observation_max_date
            .map_or(request.today, |max| max.min(request.today));
        if from > to {
            return Ok(Vec::new());
        }
        let (from_text, to_text) = (from.to_string(), to.to_string());
        let url = join(
            &self.swea,
            &["Observations", series.id.as_str(), &from_text, &to_text],
        );
        match self.http.get(&url).await? {
            Fetched::NoContent => Ok(Vec::new()),
            Fetched::Body(body) => parse_observations(&body, from, to).map_err(|reason| {
                // A parse error may quote the body, which may echo the key.
                let reason = self.http.redact(&reason);
                FeedError::Malformed(format!("observations of {}: {reason}", series.id))
            }),
        }
    }

    async fn swestr_observations(
        &self,
        id: &SeriesId,
        request: &FetchRequest,
    ) -> Result<Vec<Observation>, FeedError> {
        let Some(from) = request.first_missing(id) else {
            return Ok(Vec::new());
        };
        let mut url = join(&self.swestr, &["all", SWESTR_SERIES]);
        url.query_pairs_mut()
            .append_pair("fromDate", &from.to_string())
            .append_pair("toDate", &request.today.to_string());
        match self.http.get(&url).await? {
            Fetched::NoContent => Ok(Vec::new()),
            Fetched::Body(body) => parse_swestr(&body, from, request.today).map_err(|reason| {
                FeedError::Malformed(format!("SWESTR: {}", self.http.redact(&reason)))
            }),
        }
    }
}

#[async_trait]
impl RateFeed for RiksbankFeed {
    fn source(&self) -> Source {
        Source::Riksbank
    }

    /// A failure of one series leaves the others alone, except a rate limit that
    /// outlasts the retries: the series after it are reported rate-limited without
    /// asking again. A catalogue the source refuses or garbles fails every SWEA series
    /// with that error (SWESTR, a separate API, is still asked).
    async fn fetch(&self, request: &FetchRequest) -> Result<Vec<SeriesFetch>, FeedError> {
        let catalogue = match self.catalogue().await {
            Err(unreachable @ (FeedError::Unavailable(_) | FeedError::RateLimited { .. })) => {
                return Err(unreachable);
            }
            catalogue => catalogue,
        };
        let mut rate_limited: Option<FeedError> = None;
        let mut fetched = Vec::with_capacity(self.series.len() + 1);
        for (id, kind) in &self.series {
            let entry = catalogue.as_ref().ok().and_then(|c| c.get(id.as_str()));
            let series = FeedSeries {
                id: id.clone(),
                kind: *kind,
                description: entry
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| fallback_description(id, kind)),
                closed: entry.is_some_and(|e| e.closed),
                observation_max_date: entry.and_then(|e| e.observation_max_date),
            };
            let observations = match (&catalogue, &rate_limited) {
                (Err(error), _) | (_, Some(error)) => Err(error.clone()),
                _ => self.swea_observations(&series, request).await,
            };
            if let Err(limited @ FeedError::RateLimited { .. }) = &observations {
                rate_limited = Some(limited.clone());
            }
            fetched.push(SeriesFetch {
                series,
                observations,
            });
        }
        if let Some(id) = &self.swestr_id {
            let observations = match &rate_limited {
                Some(error) => Err(error.clone()),
                None => self.swestr_observations(id, request).await,
            };
            fetched.push(SeriesFetch {
                series: FeedSeries {
                    id: id.clone(),
                    kind: SeriesKind::InterestRate,
                    description: "SWESTR, the Swedish krona short-term rate".to_owned(),
                    closed: false,
                    observation_max_date: None,
                },
                observations,
            });
        }
        Ok(fetched)
    }
}

/// `SEKxxxPMI` is the krona's fixing against xxx: SEK per 1 xxx.
fn swea_kind(id: &SeriesId, sek: Currency) -> SeriesKind {
    let text = id.as_str();
    let foreign = text
        .strip_prefix("SEK")
        .and_then(|rest| rest.strip_suffix("PMI"))
        .and_then(|code| Currency::parse(code).ok());
    match foreign {
        Some(foreign) if foreign != sek => SeriesKind::ExchangeRate {
            base: foreign,
            quote: sek,
        },
        _ => SeriesKind::InterestRate,
    }
}

fn fallback_description(id: &SeriesId, kind: &SeriesKind) -> String {
    match kind {
        SeriesKind::ExchangeRate { base, quote } => {
            format!("Riksbank exchange rate: {quote} per 1 {base} ({id})")
        }
        SeriesKind::InterestRate => format!("Riksbank series {id}"),
    }
}

/// What `/Series` says about one series.
#[derive(Debug, Default, PartialEq, Eq)]
struct CatalogueEntry {
    description: Option<String>,
    closed: bool,
    observation_max_date: Option<NaiveDate>,
}

/// The catalogue by series id. Entries without an id are skipped; missing, null or odd
/// fields leave the defaults.
fn parse_catalogue(body: &[u8]) -> Result<HashMap<String, CatalogueEntry>, FeedError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| FeedError::Malformed(format!("the series catalogue: {e}")))?;
    let serde_json::Value::Array(items) = json else {
        return Err(FeedError::Malformed(
            "the series catalogue is not a list".to_owned(),
        ));
    };
    let text = |item: &serde_json::Value, key: &str| {
        item.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let mut catalogue = HashMap::with_capacity(items.len());
    for item in &items {
        let Some(id) = text(item, "seriesId") else {
            continue;
        };
        let closed = match item.get("seriesClosed") {
            Some(serde_json::Value::Bool(closed)) => *closed,
            Some(serde_json::Value::String(closed)) => closed.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let entry = CatalogueEntry {
            description: text(item, "midDescription")
                .or_else(|| text(item, "shortDescription"))
                .or_else(|| text(item, "longDescription")),
            closed,
            observation_max_date: text(item, "observationMaxDate").and_then(|d| parse_date(&d)),
        };
        catalogue.insert(id, entry);
    }
    Ok(catalogue)
}

#[derive(Deserialize)]
struct SweaObservation {
    date: String,
    #[serde(default)]
    value: Option<Box<RawValue>>,
}

/// Observations in `from..=to`, in date order; a day whose value is null has no data.
fn parse_observations(
    body: &[u8],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Observation>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let rows: Vec<SweaObservation> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut by_date = BTreeMap::new();
    for row in rows {
        let date = parse_date(&row.date).ok_or_else(|| format!("bad date {:?}", row.date))?;
        let value = match &row.value {
            Some(raw) => decimal_from_json(raw).map_err(|e| format!("{date}: {e}"))?,
            None => None,
        };
        if let Some(value) = value
            && (from..=to).contains(&date)
        {
            by_date.insert(date, value);
        }
    }
    Ok(into_observations(by_date))
}

#[derive(Deserialize)]
struct SwestrRow {
    date: String,
    #[serde(default)]
    rate: Option<Box<RawValue>>,
    #[serde(default)]
    republication: Option<bool>,
}

/// SWESTR in `from..=to`; where a day was republished, the republication wins.
fn parse_swestr(body: &[u8], from: NaiveDate, to: NaiveDate) -> Result<Vec<Observation>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    // One object (as `/latest` answers) or a list of them.
    let rows: Vec<SwestrRow> = match serde_json::from_slice::<Vec<SwestrRow>>(body) {
        Ok(rows) => rows,
        Err(list_error) => match serde_json::from_slice::<SwestrRow>(body) {
            Ok(row) => vec![row],
            Err(_) => return Err(list_error.to_string()),
        },
    };
    let mut by_date: BTreeMap<NaiveDate, (Decimal, bool)> = BTreeMap::new();
    for row in rows {
        let date = parse_date(&row.date).ok_or_else(|| format!("bad date {:?}", row.date))?;
        let rate = match &row.rate {
            Some(raw) => decimal_from_json(raw).map_err(|e| format!("{date}: {e}"))?,
            None => None,
        };
        let Some(rate) = rate else { continue };
        if !(from..=to).contains(&date) {
            continue;
        }
        let republished = row.republication.unwrap_or(false);
        let keep_existing = by_date
            .get(&date)
            .is_some_and(|(_, existing_republished)| *existing_republished && !republished);
        if !keep_existing {
            by_date.insert(date, (rate, republished));
        }
    }
    Ok(by_date
        .into_iter()
        .map(|(date, (value, _))| Observation { date, value })
        .collect())
}

fn into_observations(by_date: BTreeMap<NaiveDate, Decimal>) -> Vec<Observation> {
    by_date
        .into_iter()
        .map(|(date, value)| Observation { date, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    #[test]
    fn default_series_parse_and_fx_series_are_sek_per_foreign_unit() {
        let config = RiksbankConfig::default();
        assert_eq!(config.series.len(), DEFAULT_SWEA_SERIES.len());
        let sek = Currency::parse("SEK").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(
            swea_kind(&SeriesId::parse("SEKEURPMI").unwrap(), sek),
            SeriesKind::ExchangeRate {
                base: eur,
                quote: sek
            }
        );
        assert_eq!(
            swea_kind(&SeriesId::parse("SECBREPOEFF").unwrap(), sek),
            SeriesKind::InterestRate
        );
        assert_eq!(
            swea_kind(&SeriesId::parse("SEKXYZPMI").unwrap(), sek),
            SeriesKind::InterestRate
        );
    }

    #[test]
    fn the_catalogue_tolerates_nulls_and_missing_fields() {
        let body = br#"[
            {"seriesId": "SECBREPOEFF", "shortDescription": "Policy rate", "midDescription": "Riksbank policy rate",
             "observationMaxDate": "2024-05-08", "seriesClosed": false, "extra": [1]},
            {"seriesId": "SEKOLDPMI", "midDescription": null, "shortDescription": " ", "longDescription": "Old",
             "observationMaxDate": "2001-12-31T00:00:00", "seriesClosed": "true"},
            {"seriesId": "SEBARE"},
            {"shortDescription": "no id"}
        ]"#;
        let catalogue = parse_catalogue(body).unwrap();
        assert_eq!(catalogue.len(), 3);
        assert_eq!(
            catalogue["SECBREPOEFF"],
            CatalogueEntry {
                description: Some("Riksbank policy rate".to_owned()),
                closed: false,
                observation_max_date: Some(day("2024-05-08")),
            }
        );
        assert_eq!(
            catalogue["SEKOLDPMI"],
            CatalogueEntry {
                description: Some("Old".to_owned()),
                closed: true,
                observation_max_date: Some(day("2001-12-31")),
            }
        );
        assert_eq!(catalogue["SEBARE"], CatalogueEntry::default());
        assert!(matches!(
            parse_catalogue(b"{\"a\": 1}"),
            Err(FeedError::Malformed(_))
        ));
        assert!(matches!(
            parse_catalogue(b"<html>"),
            Err(FeedError::Malformed(_))
        ));
    }

    #[test]
    fn observations_are_exact_sorted_and_within_the_range() {
        let body = br#"[
            {"date": "2024-05-08", "value": 3.75},
            {"date": "2024-05-07", "value": 4.0155},
            {"date": "2024-05-06", "value": null},
            {"date": "2024-05-01", "value": 1.0},
            {"date": "2024-05-09", "value": 2}
        ]"#;
        let observations = parse_observations(body, day("2024-05-02"), day("2024-05-08")).unwrap();
        let texts: Vec<_> = observations
            .iter()
            .map(|o| (o.date.to_string(), o.value.to_string()))
            .collect();
        assert_eq!(
            texts,
            [
                ("2024-05-07".to_owned(), "4.0155".to_owned()),
                ("2024-05-08".to_owned(), "3.75".to_owned())
            ]
        );
        assert!(
            parse_observations(b"", day("2024-05-02"), day("2024-05-08"))
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_observations(
                br#"[{"date": "May 8", "value": 1}]"#,
                day("2024-05-02"),
                day("2024-05-08")
            )
            .is_err()
        );
        assert!(
            parse_observations(
                br#"[{"date": "2024-05-08", "value": "x"}]"#,
                day("2024-05-02"),
                day("2024-05-08")
            )
            .is_err()
        );
        assert!(
            parse_observations(
                br#"{"date": "2024-05-08"}"#,
                day("2024-05-02"),
                day("2024-05-08")
            )
            .is_err()
        );
    }

    #[test]
    fn swestr_prefers_republications() {
        let body = br#"[
            {"rate": 3.904, "date": "2024-05-07", "pctl12_5": 3.85, "volume": 41234, "republication": false,
             "publicationTime": "2024-05-08T09:00:00Z"},
            {"rate": 3.906, "date": "2024-05-07", "republication": true},
            {"rate": 3.901, "date": "2024-05-06", "republication": false},
            {"rate": 3.9, "date": "2024-05-06", "republication": null}
        ]"#;
        let observations = parse_swestr(body, day("2024-05-01"), day("2024-05-08")).unwrap();
        let texts: Vec<_> = observations.iter().map(|o| o.value.to_string()).collect();
        assert_eq!(texts, ["3.9", "3.906"]);
        let single = br#"{"rate": 3.91, "date": "2024-05-08"}"#;
        assert_eq!(
            parse_swestr(single, day("2024-05-01"), day("2024-05-08")).unwrap()[0]
                .value
                .to_string(),
            "3.91"
        );
    }
}
