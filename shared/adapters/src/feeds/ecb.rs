//! The ECB's euro foreign exchange reference rates, published on working days around
//! 16:00 CET as three XML documents: the latest day, the last 90 days and all since 1999.
//! A fetch downloads the smallest one that covers what is missing, once, and splits it
//! into one series per followed currency (`ECB.EUR.SEK`: SEK per 1 EUR).
//!
//! A document that cannot be read (malformed XML, a 4xx) fails every series with that
//! error; a rate that is not a number fails only its currency.

use super::http::{FeedHttp, Fetched, base_url, join};
use super::{FeedSetupError, RetryPolicy, default_fx_currencies, euro, parse_date, parse_decimal};
use async_trait::async_trait;
use chrono::{Datelike, NaiveDate, TimeDelta, Weekday};
use domain::money::Currency;
use domain::rates::feed::{FeedError, FeedSeries, FetchRequest, RateFeed, SeriesFetch};
use domain::rates::{Observation, SeriesId, SeriesKind, Source};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use reqwest::Url;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// Where and what [`EcbFeed`] fetches.
#[derive(Clone, Debug)]
pub struct EcbConfig {
    /// The folder of `eurofxref-daily.xml` and its siblings.
    pub base_url: String,
    /// Currencies to follow, each as units per 1 EUR.
    pub currencies: Vec<Currency>,
    pub retry: RetryPolicy,
}

impl EcbConfig {
    pub const BASE_URL: &'static str = "https://www.ecb.europa.eu/stats/eurofxref";

    /// The default currencies (SEK, USD, GBP, NOK, DKK, CHF, PLN, JPY) at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            currencies: default_fx_currencies(),
            retry: RetryPolicy::default(),
        }
    }
}

impl Default for EcbConfig {
    fn default() -> Self {
        Self::new(Self::BASE_URL)
    }
}

/// One of the ECB's reference-rate documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EcbDocument {
    /// The latest working day only.
    Daily,
    /// About the last 90 calendar days.
    Last90Days,
    /// Every working day since 4 January 1999 (several MB).
    History,
}

impl EcbDocument {
    fn file(self) -> &'static str {
        match self {
            EcbDocument::Daily => "eurofxref-daily.xml",
            EcbDocument::Last90Days => "eurofxref-hist-90d.xml",
            EcbDocument::History => "eurofxref-hist.xml",
        }
    }
}

/// The 90-day document reaches back this far at least, with a margin for the day it was
/// published and for the time zones.
const LAST_90_DAYS_REACH: i64 = 85;

/// The smallest document holding every day from `earliest` to `today`.
///
/// The daily document has only the latest working day, so it is enough only when no
/// weekday before today is missing: after a weekend or when just today is missing.
/// (A missing TARGET holiday makes us take the 90-day document: larger, still right.)
fn choose_document(earliest: NaiveDate, today: NaiveDate) -> EcbDocument {
    let weekday_missing_before_today = earliest
        .iter_days()
        .take_while(|day| *day < today)
        .any(|day| !matches!(day.weekday(), Weekday::Sat | Weekday::Sun));
    if !weekday_missing_before_today {
        EcbDocument::Daily
    } else if today - earliest <= TimeDelta::days(LAST_90_DAYS_REACH) {
        EcbDocument::Last90Days
    } else {
        EcbDocument::History
    }
}

/// The ECB's euro reference rates (`Source::Ecb`).
pub struct EcbFeed {
    http: FeedHttp,
    base: Url,
    euro: Currency,
    /// Followed currencies with their series ids, in configured order.
    series: Vec<(SeriesId, Currency)>,
}

impl EcbFeed {
    pub fn new(config: EcbConfig) -> Result<Self, FeedSetupError> {
        let euro = euro().ok_or_else(|| FeedSetupError::Config("EUR is unknown".to_owned()))?;
        let mut series: Vec<(SeriesId, Currency)> = Vec::new();
        for currency in config.currencies {
            if currency != euro && !series.iter().any(|(_, known)| *known == currency) {
                series.push((SeriesId::fx(Source::Ecb, euro, currency), currency));
            }
        }
        Ok(Self {
            http: FeedHttp::new(Source::Ecb, config.retry, HeaderMap::new(), Vec::new())?,
            base: base_url(&config.base_url)?,
            euro,
            series,
        })
    }

    fn feed_series(&self, id: &SeriesId, currency: Currency) -> FeedSeries {
        FeedSeries {
            id: id.clone(),
            kind: SeriesKind::ExchangeRate {
                base: self.euro,
                quote: currency,
            },
            description: format!("ECB euro reference rate: {currency} per EUR"),
            closed: false,
            observation_max_date: None,
        }
    }
}

#[async_trait]
impl RateFeed for EcbFeed {
    fn source(&self) -> Source {
        Source::Ecb
    }

    async fn fetch(&self, request: &FetchRequest) -> Result<Vec<SeriesFetch>, FeedError> {
        let earliest = self
            .series
            .iter()
            .filter_map(|(id, _)| request.first_missing(id))
            .min();
        let Some(earliest) = earliest else {
            // Everything is up to date: nothing to download.
            return Ok(self
                .series
                .iter()
                .map(|(id, currency)| SeriesFetch {
                    series: self.feed_series(id, *currency),
                    observations: Ok(Vec::new()),
                })
                .collect());
        };
        let document = choose_document(earliest, request.today);
        let rates = match self.http.get(&join(&self.base, &[document.file()])).await {
            Err(unreachable @ (FeedError::Unavailable(_) | FeedError::RateLimited { .. })) => {
                return Err(unreachable);
            }
            Err(error) => Err(error),
            Ok(Fetched::NoContent) => Err(FeedError::Malformed(format!(
                "{} is empty",
                document.file()
            ))),
            Ok(Fetched::Body(body)) => std::str::from_utf8(&body)
                .map_err(|e| e.to_string())
                .and_then(|xml| parse_reference_rates(xml, &self.series))
                .map_err(|reason| FeedError::Malformed(format!("{}: {reason}", document.file()))),
        };
        Ok(self
            .series
            .iter()
            .map(|(id, currency)| {
                let mut series = self.feed_series(id, *currency);
                let observations = match &rates {
                    Err(error) => Err(error.clone()),
                    Ok(rates) => match rates.get(currency) {
                        None => Ok(Vec::new()),
                        Some(Err(reason)) => Err(FeedError::Malformed(reason.clone())),
                        Some(Ok(by_date)) => {
                            series.observation_max_date = by_date.keys().next_back().copied();
                            Ok(match request.first_missing(id) {
                                None => Vec::new(),
                                Some(first) => by_date
                                    .range(first..=request.today)
                                    .map(|(date, value)| Observation {
                                        date: *date,
                                        value: *value,
                                    })
                                    .collect(),
                            })
                        }
                    },
                };
                SeriesFetch {
                    series,
                    observations,
                }
            })
            .collect())
    }
}

type RatesByCurrency = HashMap<Currency, Result<BTreeMap<NaiveDate, Decimal>, String>>;

/// The rates of the `wanted` currencies in a reference-rate document:
/// `<Cube><Cube time="2024-05-08"><Cube currency="USD" rate="1.0750"/>…</Cube>…</Cube>`
/// inside a gesmes envelope. Other currencies are skipped.
fn parse_reference_rates(
    xml: &str,
    wanted: &[(SeriesId, Currency)],
) -> Result<RatesByCurrency, String> {
    let mut rates: RatesByCurrency = HashMap::new();
    let mut reader = Reader::from_str(xml);
    // For each open element: is it a `Cube time=…`?
    let mut open: Vec<bool> = Vec::new();
    let mut day: Option<NaiveDate> = None;
    let mut days_seen = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        let (element, is_start) = match &event {
            Event::Start(element) => (element, true),
            Event::Empty(element) => (element, false),
            Event::End(_) => {
                if open.pop() == Some(true) {
                    day = None;
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let mut is_day = false;
        if element.local_name().as_ref() == "Cube" {
            if let Some(time) = attribute(element, "time")? {
                let date = parse_date(time).ok_or_else(|| format!("bad date {time:?}"))?;
                day = Some(date);
                is_day = true;
                days_seen += 1;
            } else if let Some(code) = attribute(element, "currency")? {
                record_rate(&mut rates, wanted, day, code, attribute(element, "rate")?)?;
            }
        }
        if is_start {
            open.push(is_day);
        }
    }
    if !open.is_empty() {
        return Err("the document ends inside an element".to_owned());
    }
    if days_seen == 0 {
        return Err("no reference rates in the document".to_owned());
    }
    Ok(rates)
}

fn record_rate(
    rates: &mut RatesByCurrency,
    wanted: &[(SeriesId, Currency)],
    day: Option<NaiveDate>,
    code: &str,
    rate: Option<&str>,
) -> Result<(), String> {
    let Some((_, currency)) = wanted.iter().find(|(_, c)| c.code() == code.trim()) else {
        return Ok(());
    };
    let day = day.ok_or_else(|| format!("a {code} rate outside a dated Cube"))?;
    let by_date = rates
        .entry(*currency)
        .or_insert_with(|| Ok(BTreeMap::new()));
    if let Ok(by_date_ok) = by_date {
        match rate.and_then(parse_decimal) {
            Some(value) => {
                by_date_ok.insert(day, value);
            }
            None => {
                *by_date = Err(format!(
                    "the {code} rate {:?} of {day} is not a number",
                    rate.unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}

/// An attribute's text. The values we read (dates, codes, numbers) have no entities.
fn attribute<'a>(element: &'a BytesStart<'_>, name: &str) -> Result<Option<&'a str>, String> {
    match element.try_get_attribute(name) {
        Err(e) => Err(e.to_string()),
        Ok(None) => Ok(None),
        Ok(Some(attribute)) => match attribute.value {
            std::borrow::Cow::Borrowed(text) => Ok(Some(text)),
            std::borrow::Cow::Owned(_) => Err(format!("unexpected {name} attribute")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    fn wanted(codes: &[&str]) -> Vec<(SeriesId, Currency)> {
        let eur = Currency::parse("EUR").unwrap();
        codes
            .iter()
            .map(|code| {
                let currency = Currency::parse(code).unwrap();
                (SeriesId::fx(Source::Ecb, eur, currency), currency)
            })
            .collect()
    }

    const TWO_DAYS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time="2024-05-08">
      <Cube currency="USD" rate="1.0750"/>
      <Cube currency="SEK" rate="11.6405"/>
      <Cube currency="ZAR" rate="19.8"/>
    </Cube>
    <Cube time="2024-05-07">
      <Cube currency="USD" rate="1.0765"/>
      <Cube currency="SEK" rate="11.6520"/>
    </Cube>
  </Cube>
</gesmes:Envelope>"#;

    #[test]
    fn parses_the_wanted_currencies_of_every_day() {
        let rates = parse_reference_rates(TWO_DAYS, &wanted(&["SEK", "USD", "NOK"])).unwrap();
        let sek = rates[&Currency::parse("SEK").unwrap()].as_ref().unwrap();
        assert_eq!(sek.len(), 2);
        assert_eq!(sek[&day("2024-05-08")].to_string(), "11.6405");
        assert_eq!(sek[&day("2024-05-07")].to_string(), "11.6520");
        let usd = rates[&Currency::parse("USD").unwrap()].as_ref().unwrap();
        assert_eq!(usd[&day("2024-05-08")].to_string(), "1.0750");
        assert!(!rates.contains_key(&Currency::parse("NOK").unwrap()));
        assert_eq!(rates.len(), 2);
    }

    #[test]
    fn a_bad_rate_fails_only_its_currency() {
        let xml = TWO_DAYS.replace("11.6520", "n/a");
        let rates = parse_reference_rates(&xml, &wanted(&["SEK", "USD"])).unwrap();
        assert!(rates[&Currency::parse("SEK").unwrap()].is_err());
        assert!(rates[&Currency::parse("USD").unwrap()].is_ok());
    }

    #[test]
    fn malformed_documents_are_errors() {
        let codes = wanted(&["SEK"]);
        let truncated = &TWO_DAYS[..TWO_DAYS.len() / 2];
        assert!(parse_reference_rates(truncated, &codes).is_err());
        assert!(parse_reference_rates("<html><body>Maintenance</body></html>", &codes).is_err());
        assert!(parse_reference_rates("<Cube><Cube time=\"yesterday\"/></Cube>", &codes).is_err());
        assert!(parse_reference_rates("<a></b>", &codes).is_err());
        assert!(parse_reference_rates("", &codes).is_err());
    }

    #[test]
    fn the_smallest_document_that_covers_the_gap() {
        // Wednesday 2024-05-08.
        let wednesday = day("2024-05-08");
        assert_eq!(choose_document(wednesday, wednesday), EcbDocument::Daily);
        // Tuesday is missing and today's file may already be Wednesday's.
        assert_eq!(
            choose_document(day("2024-05-07"), wednesday),
            EcbDocument::Last90Days
        );
        // Monday 2024-05-13 after a stored Friday: only the weekend before today.
        assert_eq!(
            choose_document(day("2024-05-11"), day("2024-05-13")),
            EcbDocument::Daily
        );
        assert_eq!(
            choose_document(day("2024-02-13"), wednesday),
            EcbDocument::Last90Days
        );
        assert_eq!(
            choose_document(day("2024-02-12"), wednesday),
            EcbDocument::History
        );
        assert_eq!(
            choose_document(day("1999-01-04"), wednesday),
            EcbDocument::History
        );
    }
}
