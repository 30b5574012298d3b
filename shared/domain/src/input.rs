//! Reading request fields that may be missing, `null` or a value, so that one parse
//! reports every problem of a request and a JSON merge patch can clear a field.

use crate::validation::{FieldIssue, ValidationErrors};
use serde::{Deserialize, Deserializer};

/// A field of a request body: absent, explicitly `null`, or a value.
///
/// Declare such fields with `#[serde(default)]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Field<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Field::Value(value),
            None => Field::Null,
        })
    }
}

/// Serializes as the value or `null`; only the API description uses this.
impl<T: serde::Serialize> serde::Serialize for Field<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Value(value) => value.serialize(serializer),
            Field::Missing | Field::Null => serializer.serialize_none(),
        }
    }
}

impl<T> Field<T> {
    /// A value that must be present (creating a record).
    pub fn required<R>(
        self,
        errors: &mut ValidationErrors,
        pointer: &str,
        parse: impl FnOnce(T) -> Result<R, FieldIssue>,
    ) -> Option<R> {
        match self {
            Field::Value(value) => errors.check(pointer, parse(value)),
            Field::Missing | Field::Null => {
                errors.add(pointer, FieldIssue::Required);
                None
            }
        }
    }

    /// A value that may be absent or `null` (creating a record). `None` on error.
    pub fn optional<R>(
        self,
        errors: &mut ValidationErrors,
        pointer: &str,
        parse: impl FnOnce(T) -> Result<R, FieldIssue>,
    ) -> Option<Option<R>> {
        match self {
            Field::Value(value) => errors.check(pointer, parse(value)).map(Some),
            Field::Missing | Field::Null => Some(None),
        }
    }

    /// A required value under a merge patch: absent keeps `current`, `null` is refused.
    pub fn patch_required<R>(
        self,
        errors: &mut ValidationErrors,
        pointer: &str,
        current: R,
        parse: impl FnOnce(T) -> Result<R, FieldIssue>,
    ) -> Option<R> {
        match self {
            Field::Missing => Some(current),
            Field::Null => {
                errors.add(pointer, FieldIssue::NotNullable);
                None
            }
            Field::Value(value) => errors.check(pointer, parse(value)),
        }
    }

    /// An optional value under a merge patch: absent keeps `current`, `null` clears it.
    pub fn patch_optional<R>(
        self,
        errors: &mut ValidationErrors,
        pointer: &str,
        current: Option<R>,
        parse: impl FnOnce(T) -> Result<R, FieldIssue>,
    ) -> Option<Option<R>> {
        match self {
            Field::Missing => Some(current),
            Field::Null => Some(None),
            Field::Value(value) => errors.check(pointer, parse(value)).map(Some),
        }
    }
}

/// An ISO 8601 calendar date, `YYYY-MM-DD`.
pub fn date(value: &str) -> Result<chrono::NaiveDate, FieldIssue> {
    if value.len() != 10 {
        return Err(FieldIssue::InvalidDate);
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| FieldIssue::InvalidDate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        a: Field<i64>,
    }

    fn parse(json: &str) -> Field<i64> {
        serde_json::from_str::<Body>(json).unwrap().a
    }

    #[test]
    fn distinguishes_missing_null_and_value() {
        assert_eq!(parse("{}"), Field::Missing);
        assert_eq!(parse(r#"{"a":null}"#), Field::Null);
        assert_eq!(parse(r#"{"a":5}"#), Field::Value(5));
    }

    #[test]
    fn patch_semantics() {
        let mut errors = ValidationErrors::new();
        let ok = |v: i64| Ok::<_, FieldIssue>(v);
        assert_eq!(
            Field::Missing.patch_optional(&mut errors, "/a", Some(1), ok),
            Some(Some(1))
        );
        assert_eq!(
            Field::Null.patch_optional(&mut errors, "/a", Some(1), ok),
            Some(None)
        );
        assert_eq!(
            Field::Value(2).patch_optional(&mut errors, "/a", Some(1), ok),
            Some(Some(2))
        );
        assert!(errors.is_empty());
        assert_eq!(Field::Null.patch_required(&mut errors, "/a", 1, ok), None);
        assert_eq!(errors.errors()[0].issue, FieldIssue::NotNullable);
    }

    #[test]
    fn dates_are_strict() {
        assert!(date("2027-02-28").is_ok());
        for bad in [
            "2027-02-29",
            "2027-2-28",
            "28/02/2027",
            "2027-02-28T00:00:00Z",
            "",
        ] {
            assert_eq!(date(bad), Err(FieldIssue::InvalidDate), "{bad}");
        }
    }
}
