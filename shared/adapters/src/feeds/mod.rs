//! HTTP clients of the public rate sources, implementing the domain's
//! [`RateFeed`](domain::rates::feed::RateFeed) port: Riksbanken (SWEA and SWESTR), the
//! ECB's euro reference rates and Fixer.
//!
//! How failures are reported, the same for every feed:
//! - the source cannot be reached at all (transport error, timeout, 5xx or 429 after the
//!   retries) on its first request → the top-level `Err` of `fetch`;
//! - anything else (a 4xx, a body we cannot read, a later request that fails) → the
//!   affected series' `SeriesFetch::observations`, while the others go on.
//!
//! Values are parsed from the text the source sent (JSON number text, XML attribute
//! text) straight into `Decimal`, never through `f64`.

mod ecb;
mod fixer;
mod http;
mod riksbank;

pub use ecb::{EcbConfig, EcbFeed};
pub use fixer::{FixerConfig, FixerFeed};
pub use http::RetryPolicy;
pub use riksbank::{DEFAULT_SWEA_SERIES, RiksbankConfig, RiksbankFeed, SWESTR_SERIES};

use chrono::NaiveDate;
use domain::money::Currency;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// Where the sources are and the keys they take; `None` means the public default.
/// Fixer is polled only when it has a key.
#[derive(Clone, Default)]
pub struct FeedSettings {
    pub riksbank_swea_url: Option<String>,
    pub riksbank_swestr_url: Option<String>,
    pub riksbank_subscription_key: Option<String>,
    pub ecb_url: Option<String>,
    pub fixer_url: Option<String>,
    pub fixer_api_key: Option<String>,
    pub retry: Option<RetryPolicy>,
}

/// Every configured feed, ready for the poller. Lambda and the local runner both build
/// their feeds here.
pub fn build_feeds(
    settings: &FeedSettings,
) -> Result<Vec<std::sync::Arc<dyn domain::rates::feed::RateFeed>>, FeedSetupError> {
    let retry = settings.retry.unwrap_or_default();
    let mut riksbank = RiksbankConfig::new(
        settings
            .riksbank_swea_url
            .clone()
            .unwrap_or_else(|| RiksbankConfig::SWEA_BASE_URL.to_owned()),
        settings
            .riksbank_swestr_url
            .clone()
            .unwrap_or_else(|| RiksbankConfig::SWESTR_BASE_URL.to_owned()),
    );
    riksbank.subscription_key = settings.riksbank_subscription_key.clone();
    riksbank.retry = retry;
    let mut ecb = EcbConfig::new(
        settings
            .ecb_url
            .clone()
            .unwrap_or_else(|| EcbConfig::BASE_URL.to_owned()),
    );
    ecb.retry = retry;
    let mut feeds: Vec<std::sync::Arc<dyn domain::rates::feed::RateFeed>> = vec![
        std::sync::Arc::new(RiksbankFeed::new(riksbank)?),
        std::sync::Arc::new(EcbFeed::new(ecb)?),
    ];
    if let Some(key) = settings
        .fixer_api_key
        .as_ref()
        .filter(|key| !key.trim().is_empty())
    {
        let mut fixer = FixerConfig::new(
            settings
                .fixer_url
                .clone()
                .unwrap_or_else(|| FixerConfig::BASE_URL.to_owned()),
            key.clone(),
        );
        fixer.retry = retry;
        feeds.push(std::sync::Arc::new(FixerFeed::new(fixer)?));
    }
    Ok(feeds)
}

/// Why a feed could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedSetupError {
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the feed needs an API key")]
    MissingKey,
    #[error("invalid feed configuration: {0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The currencies the FX feeds follow unless configured otherwise.
pub const DEFAULT_FX_CURRENCIES: [&str; 8] =
    ["SEK", "USD", "GBP", "NOK", "DKK", "CHF", "PLN", "JPY"];

fn default_fx_currencies() -> Vec<Currency> {
    DEFAULT_FX_CURRENCIES
        .iter()
        .filter_map(|code| Currency::parse(code).ok())
        .collect()
}

fn euro() -> Option<Currency> {
    Currency::parse("EUR").ok()
}

/// A decimal from its text, exactly: `3.75`, `-0.25`, `1.2e-3`. `None` when the text is
/// not a number or has more digits than `Decimal` holds (rather than rounding).
fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// A JSON value holding a number (or, leniently, a string with one). `Ok(None)` for
/// `null`.
fn decimal_from_json(raw: &RawValue) -> Result<Option<Decimal>, String> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    let number = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner,
        None => text,
    };
    parse_decimal(number)
        .map(Some)
        .ok_or_else(|| format!("{text} is not a decimal number"))
}

/// A `YYYY-MM-DD` date, also when a time follows it (`2024-05-08T00:00:00`).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let day = text.get(..10)?;
    match text.as_bytes().get(10) {
        None | Some(b'T') | Some(b' ') => NaiveDate::parse_from_str(day, "%Y-%m-%d").ok(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn decimals_keep_the_digits_the_source_sent() {
        assert_eq!(parse_decimal("4.0155"), Decimal::from_str("4.0155").ok());
        assert_eq!(parse_decimal("4.0155").unwrap().to_string(), "4.0155");
        assert_eq!(parse_decimal("3.750").unwrap().to_string(), "3.750");
        assert_eq!(parse_decimal("-0.25").unwrap().to_string(), "-0.25");
        assert_eq!(
            parse_decimal("1.5e-2").unwrap(),
            Decimal::from_str("0.015").unwrap()
        );
        assert_eq!(parse_decimal("abc"), None);
        assert_eq!(parse_decimal("0.1234567890123456789012345678901234"), None);
        // The f64 nearest to 0.1 is not 0.1; the text is.
        assert_eq!(
            decimal_from_json(&raw("0.1")).unwrap(),
            Some(Decimal::from_str("0.1").unwrap())
        );
    }

    #[test]
    fn json_numbers_strings_and_nulls() {
        assert_eq!(decimal_from_json(&raw("null")), Ok(None));
        assert_eq!(
            decimal_from_json(&raw("\"11.6405\""))
                .unwrap()
                .unwrap()
                .to_string(),
            "11.6405"
        );
        assert!(decimal_from_json(&raw("true")).is_err());
        assert!(decimal_from_json(&raw("{}")).is_err());
    }

    #[test]
    fn dates_with_or_without_a_time() {
        let may_8 = NaiveDate::from_ymd_opt(2024, 5, 8);
        assert_eq!(parse_date("2024-05-08"), may_8);
        assert_eq!(parse_date("2024-05-08T00:00:00Z"), may_8);
        assert_eq!(parse_date("2024-05-08x"), None);
        assert_eq!(parse_date("2024-5-8"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn default_currencies_all_parse() {
        assert_eq!(default_fx_currencies().len(), DEFAULT_FX_CURRENCIES.len());
        assert!(euro().is_some());
    }
}
