//! Money as integer minor units of an ISO 4217 currency, and annual interest rates.

use crate::validation::FieldIssue;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An active ISO 4217 currency, e.g. `SEK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Accepts exactly the three upper-case letters of an ISO 4217 code.
    pub fn parse(code: &str) -> Result<Self, FieldIssue> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(FieldIssue::UnknownCurrency);
        }
        iso_currency::Currency::from_code(code)
            .map(Self)
            .ok_or(FieldIssue::UnknownCurrency)
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point in the currency's minor unit (SEK: 2, JPY: 0).
    pub fn minor_unit_digits(&self) -> u32 {
        self.0.exponent().map(u32::from).unwrap_or(0)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code)
            .map_err(|_| serde::de::Error::custom(format!("unknown currency {code:?}")))
    }
}

/// An amount in minor units (öre for SEK) of a currency. Never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    /// Integer minor units, e.g. 689900 for 6 899.00 SEK.
    #[schema(minimum = 0, example = 689900)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(value_type = String, example = "SEK", pattern = "^[A-Z]{3}$")]
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Result<Self, FieldIssue> {
        if amount < 0 {
            return Err(FieldIssue::Negative);
        }
        Ok(Self { amount, currency })
    }
}

/// An annual interest rate in percent, e.g. `4.95` for 4.95 % a year.
///
/// Negative rates are allowed (Swedish reference rates were below zero 2015–2019).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnnualRate(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl AnnualRate {
    pub const MAX_DECIMALS: u32 = 6;

    pub fn parse(text: &str) -> Result<Self, FieldIssue> {
        let rate = Decimal::from_str(text.trim()).map_err(|_| FieldIssue::InvalidDecimal)?;
        let bound = Decimal::ONE_HUNDRED;
        if rate < -bound || rate > bound {
            return Err(FieldIssue::OutOfRange {
                min: "-100".into(),
                max: "100".into(),
            });
        }
        if rate.normalize().scale() > Self::MAX_DECIMALS {
            return Err(FieldIssue::TooPrecise {
                max_decimals: Self::MAX_DECIMALS,
            });
        }
        Ok(Self(rate.normalize()))
    }

    pub fn percent(&self) -> Decimal {
        self.0
    }

    /// A rate from a reference value plus a margin, both in percent.
    pub fn from_percent(percent: Decimal) -> Self {
        Self(percent.normalize())
    }
}

impl fmt::Display for AnnualRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl utoipa::PartialSchema for AnnualRate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^-?\d{1,3}(\.\d{1,6})?$"))
            .description(Some("Annual interest rate in percent, as a decimal string"))
            .examples([serde_json::json!("4.95")])
            .into()
    }
}

impl utoipa::ToSchema for AnnualRate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_4217_upper_case() {
        assert_eq!(Currency::parse("SEK").map(|c| c.code()), Ok("SEK"));
        assert_eq!(Currency::parse("EUR").map(|c| c.minor_unit_digits()), Ok(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.minor_unit_digits()), Ok(0));
        for bad in ["sek", "SEKK", "XYZ", "", "S K"] {
            assert_eq!(
                Currency::parse(bad),
                Err(FieldIssue::UnknownCurrency),
                "{bad}"
            );
        }
    }

    #[test]
    fn money_is_never_negative() {
        let sek = Currency::parse("SEK").unwrap();
        assert!(Money::new(0, sek).is_ok());
        assert_eq!(Money::new(-1, sek), Err(FieldIssue::Negative));
    }

    #[test]
    fn rates_parse_exactly() {
        assert_eq!(AnnualRate::parse("4.95").unwrap().to_string(), "4.95");
        assert_eq!(AnnualRate::parse("4.950").unwrap().to_string(), "4.95");
        assert_eq!(AnnualRate::parse("-0.25").unwrap().to_string(), "-0.25");
        assert_eq!(AnnualRate::parse("abc"), Err(FieldIssue::InvalidDecimal));
        assert_eq!(AnnualRate::parse("4,95"), Err(FieldIssue::InvalidDecimal));
        assert!(matches!(
            AnnualRate::parse("100.5"),
            Err(FieldIssue::OutOfRange { .. })
        ));
        assert!(matches!(
            AnnualRate::parse("1.1234567"),
            Err(FieldIssue::TooPrecise { .. })
        ));
    }
}
