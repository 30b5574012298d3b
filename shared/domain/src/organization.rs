//! Organizations (tenants) and the Swedish organisationsnummer that identifies them.

use crate::ids::TenantId;
use crate::validation::FieldIssue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A Swedish organisationsnummer, kept as `NNNNNN-NNNN`.
///
/// Ten digits; the third is at least 2 (that tells it from a personnummer, whose third
/// and fourth digits are a month) and the last is a Luhn check digit over the first
/// nine. The century prefix `16` that some registers add is accepted and dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrganizationNumber(String);

impl OrganizationNumber {
    pub fn parse(input: &str) -> Result<Self, FieldIssue> {
        let compact: String = input
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .collect();
        if !compact.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldIssue::InvalidOrganizationNumber);
        }
        let digits = match compact.len() {
            10 => compact.as_str(),
            12 if compact.starts_with("16") => &compact[2..],
            _ => return Err(FieldIssue::InvalidOrganizationNumber),
        };
        let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if values[2] < 2 || luhn_check_digit(&values[..9]) != values[9] {
            return Err(FieldIssue::InvalidOrganizationNumber);
        }
        Ok(Self(format!("{}-{}", &digits[..6], &digits[6..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ten digits without the hyphen, for keys.
    pub fn digits(&self) -> String {
        self.0.replace('-', "")
    }
}

impl fmt::Display for OrganizationNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Luhn (mod 10) check digit for `digits`, doubling from the left as Swedish
/// identity numbers do.
pub fn luhn_check_digit(digits: &[u32]) -> u32 {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v = if i % 2 == 0 { d * 2 } else { *d };
            v / 10 + v % 10
        })
        .sum();
    (10 - sum % 10) % 10
}

/// An organization: the tenant that owns users and contracts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: TenantId,
    pub name: String,
    pub organization_number: OrganizationNumber,
    pub created_at: DateTime<Utc>,
    /// Every member signs in with a second factor: one without it gets a session that
    /// only sets it up (`sessions`).
    #[serde(default)]
    pub require_two_factor: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_organisation_numbers() {
        // Volvo Car AB, IKEA of Sweden AB, Skatteverket.
        for (input, normalized) in [
            ("556074-3089", "556074-3089"),
            ("5560743089", "556074-3089"),
            ("16556074-3089", "556074-3089"),
            (" 556200-4001 ", "556200-4001"),
            ("202100-5448", "202100-5448"),
        ] {
            assert_eq!(
                OrganizationNumber::parse(input).map(|n| n.to_string()),
                Ok(normalized.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_wrong_check_digit_format_and_personal_numbers() {
        for input in [
            "556074-3088", // check digit off by one
            "556074-308",  // too short
            "55607430899", // eleven digits
            "556074-308X",
            "811218-9876", // a personnummer: third digit is a month digit
            "",
        ] {
            assert_eq!(
                OrganizationNumber::parse(input),
                Err(FieldIssue::InvalidOrganizationNumber),
                "{input}"
            );
        }
    }
}
