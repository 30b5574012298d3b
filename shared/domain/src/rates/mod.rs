//! Interest and exchange rates: the series we follow, their observations, the poller
//! that keeps them current, and conversions between currencies.

pub mod feed;
pub mod service;

pub use service::{Conversion, PollReport, RateService, RatesError, SeriesInfo, SeriesPoll};

use crate::money::Currency;
use crate::validation::FieldIssue;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A series name as its source spells it (`SECBREPOEFF`, `SWESTR`), or ours for
/// exchange rates (`ECB.EUR.SEK`, `FIXER.EUR.USD`: units of the quote currency for one
/// unit of the base).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeriesId(String);

impl SeriesId {
    pub fn parse(text: &str) -> Result<Self, FieldIssue> {
        let valid = !text.is_empty()
            && text.len() <= 40
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldIssue::UnknownSeries)
        }
    }

    /// The id of an exchange-rate series of `source`, e.g. `ECB.EUR.SEK`.
    pub fn fx(source: Source, base: Currency, quote: Currency) -> Self {
        Self(format!(
            "{}.{}.{}",
            source.prefix(),
            base.code(),
            quote.code()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a series comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Sveriges Riksbank: SWEA (policy rates, STIBOR, bonds, exchange rates) and SWESTR.
    Riksbank,
    /// The European Central Bank's euro reference rates.
    Ecb,
    /// Fixer (fixer.io), when an API key is configured.
    Fixer,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Riksbank, Source::Ecb, Source::Fixer];

    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Riksbank => "riksbank",
            Source::Ecb => "ecb",
            Source::Fixer => "fixer",
        }
    }

    /// The currency the source quotes everything against.
    pub fn pivot_currency(&self) -> &'static str {
        match self {
            Source::Riksbank => "SEK",
            Source::Ecb | Source::Fixer => "EUR",
        }
    }

    fn prefix(&self) -> &'static str {
        match self {
            Source::Riksbank => "RB",
            Source::Ecb => "ECB",
            Source::Fixer => "FIXER",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Source::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum SeriesKind {
    /// An annual interest rate in percent.
    InterestRate,
    /// Units of `quote` for one unit of `base`.
    ExchangeRate { base: Currency, quote: Currency },
}

/// One published value of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub date: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
}
