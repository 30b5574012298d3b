//! Field-level validation errors, collected so a client learns every problem at once.
//!
//! Each error names the field by JSON pointer (RFC 6901) and says what is wrong as a
//! [`FieldIssue`]; the HTTP layer turns issues into localized messages.

use std::fmt;

/// What is wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldIssue {
    Required,
    Blank,
    TooShort {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    InvalidType {
        expected: String,
    },
    UnknownField,
    NotNullable,
    InvalidChoice {
        allowed: &'static [&'static str],
    },
    InvalidDate,
    EndNotAfterStart,
    BeforeStart,
    Negative,
    NotPositive,
    UnknownCurrency,
    CurrencyMismatch,
    InvalidDecimal,
    OutOfRange {
        min: String,
        max: String,
    },
    TooPrecise {
        max_decimals: u32,
    },
    InvalidOrganizationNumber,
    InvalidEmail,
    WeakPassword,
    /// The current password given to confirm a change is not the user's.
    WrongPassword,
    ControlCharacters,
    AlreadyInUse,
    InvalidInteger {
        min: i64,
        max: i64,
    },
    InvalidCursor,
    InvalidHeader,
    UnknownSeries,
    RateConflict,
    /// Not an identifier in the form the API hands them out (a lower-case UUID).
    InvalidId,
    /// Not a date or an RFC 3339 time from 1970 to 9999.
    InvalidInstant,
    /// Not a DNS domain name of at least two labels (`nordlysfleet.se`).
    InvalidDomain,
    /// A domain the organization has not proved it controls (single sign-on).
    DomainUnverified,
}

impl FieldIssue {
    /// A stable, machine-readable code; also the message key's suffix.
    pub fn code(&self) -> &'static str {
        match self {
            FieldIssue::Required => "required",
            FieldIssue::Blank => "blank",
            FieldIssue::TooShort { .. } => "too_short",
            FieldIssue::TooLong { .. } => "too_long",
            FieldIssue::InvalidType { .. } => "invalid_type",
            FieldIssue::UnknownField => "unknown_field",
            FieldIssue::NotNullable => "not_nullable",
            FieldIssue::InvalidChoice { .. } => "invalid_choice",
            FieldIssue::InvalidDate => "invalid_date",
            FieldIssue::EndNotAfterStart => "end_not_after_start",
            FieldIssue::BeforeStart => "before_start",
            FieldIssue::Negative => "negative",
            FieldIssue::NotPositive => "not_positive",
            FieldIssue::UnknownCurrency => "unknown_currency",
            FieldIssue::CurrencyMismatch => "currency_mismatch",
            FieldIssue::InvalidDecimal => "invalid_decimal",
            FieldIssue::OutOfRange { .. } => "out_of_range",
            FieldIssue::TooPrecise { .. } => "too_precise",
            FieldIssue::InvalidOrganizationNumber => "invalid_organization_number",
            FieldIssue::InvalidEmail => "invalid_email",
            FieldIssue::WeakPassword => "weak_password",
            FieldIssue::WrongPassword => "wrong_password",
            FieldIssue::ControlCharacters => "control_characters",
            FieldIssue::AlreadyInUse => "already_in_use",
            FieldIssue::InvalidInteger { .. } => "invalid_integer",
            FieldIssue::InvalidCursor => "invalid_cursor",
            FieldIssue::InvalidHeader => "invalid_header",
            FieldIssue::UnknownSeries => "unknown_series",
            FieldIssue::RateConflict => "rate_conflict",
            FieldIssue::InvalidId => "invalid_id",
            FieldIssue::InvalidInstant => "invalid_instant",
            FieldIssue::InvalidDomain => "invalid_domain",
            FieldIssue::DomainUnverified => "domain_unverified",
        }
    }

    /// Values a message may interpolate, by name.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        match self {
            FieldIssue::TooShort { min } => vec![("min", min.to_string())],
            FieldIssue::TooLong { max } => vec![("max", max.to_string())],
            FieldIssue::InvalidType { expected } => vec![("expected", expected.clone())],
            FieldIssue::InvalidChoice { allowed } => vec![("allowed", allowed.join(", "))],
            FieldIssue::OutOfRange { min, max } => {
                vec![("min", min.clone()), ("max", max.clone())]
            }
            FieldIssue::InvalidInteger { min, max } => {
                vec![("min", min.to_string()), ("max", max.to_string())]
            }
            FieldIssue::TooPrecise { max_decimals } => {
                vec![("maxDecimals", max_decimals.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer to the field in the request body, e.g. `/payment/currency`.
    pub pointer: String,
    pub issue: FieldIssue,
}

/// Every invalid field of one request. Never empty when returned as an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(pointer: impl Into<String>, issue: FieldIssue) -> Self {
        let mut errors = Self::new();
        errors.add(pointer, issue);
        errors
    }

    pub fn add(&mut self, pointer: impl Into<String>, issue: FieldIssue) {
        self.0.push(FieldError {
            pointer: pointer.into(),
            issue,
        });
    }

    /// Keeps the value of a successful parse, records the issue of a failed one.
    pub fn check<T>(&mut self, pointer: &str, result: Result<T, FieldIssue>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(issue) => {
                self.add(pointer, issue);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.issue.code()))
            .collect();
        write!(f, "invalid fields: {}", fields.join(", "))
    }
}

impl std::error::Error for ValidationErrors {}

/// A trimmed, non-blank text of at most `max` characters without control characters
/// (tabs and newlines are allowed only when `multiline`).
pub fn text(value: &str, max: usize, multiline: bool) -> Result<String, FieldIssue> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldIssue::Blank);
    }
    if trimmed.chars().count() > max {
        return Err(FieldIssue::TooLong { max });
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\r' || c == '\t');
    if trimmed.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(FieldIssue::ControlCharacters);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_trims_and_checks() {
        assert_eq!(text("  Volvo  ", 10, false), Ok("Volvo".into()));
        assert_eq!(text("   ", 10, false), Err(FieldIssue::Blank));
        assert_eq!(text("åäöåäöåäöå", 10, false), Ok("åäöåäöåäöå".into()));
        assert_eq!(
            text("åäöåäöåäöåä", 10, false),
            Err(FieldIssue::TooLong { max: 10 })
        );
        assert_eq!(text("a\nb", 10, false), Err(FieldIssue::ControlCharacters));
        assert_eq!(text("a\nb", 10, true), Ok("a\nb".into()));
    }

    #[test]
    fn errors_collect_in_order() {
        let mut errors = ValidationErrors::new();
        assert_eq!(errors.check("/a", Ok::<_, FieldIssue>(1)), Some(1));
        assert_eq!(errors.check::<i32>("/b", Err(FieldIssue::Required)), None);
        errors.add("/c", FieldIssue::Negative);
        let pointers: Vec<_> = errors.errors().iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/b", "/c"]);
        assert!(errors.finish(|| ()).is_err());
    }
}
