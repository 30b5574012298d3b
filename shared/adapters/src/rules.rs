//! Request rules both table adapters apply on top of `domain::store`'s validators, so
//! that SQLite and DynamoDB reject and normalise exactly the same requests.

use std::collections::HashSet;

use domain::store::{
    Item, Query, SortKeyCondition, StoreError, Update, WriteOp, validate_item, validate_key,
    validate_query, validate_transaction, validate_update,
};

/// The largest version SQLite's INTEGER column can hold; DynamoDB gets the same limit so
/// both adapters accept the same items.
const MAX_VERSION: u64 = i64::MAX as u64;

pub(crate) fn check_item(item: &Item) -> Result<(), StoreError> {
    validate_item(item)?;
    if item.version > MAX_VERSION {
        return Err(StoreError::Invalid(format!(
            "version must be at most {MAX_VERSION}"
        )));
    }
    Ok(())
}

/// DynamoDB refuses an update expression that names one attribute twice ("two document
/// paths overlap"), so the embedded adapter refuses it too.
pub(crate) fn check_update(update: &Update) -> Result<(), StoreError> {
    validate_update(update)?;
    let mut seen = HashSet::new();
    let names = update
        .set
        .keys()
        .chain(update.remove.iter())
        .chain(update.increment.iter().map(|(name, _)| name));
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "attribute {name:?} appears more than once in one update"
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_transaction(ops: &[WriteOp]) -> Result<(), StoreError> {
    validate_transaction(ops)?;
    for op in ops {
        match op {
            WriteOp::Put { item, .. } => check_item(item)?,
            WriteOp::Update(update) => check_update(update)?,
            WriteOp::Delete { .. } | WriteOp::Check { .. } => {}
        }
    }
    Ok(())
}

/// The sort-key range of a query, normalised so neither backend sees an empty string
/// (DynamoDB refuses empty key values in a key condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SortRange<'a> {
    All,
    Prefix(&'a str),
    /// Inclusive on both ends.
    Between(&'a str, &'a str),
    /// Inclusive.
    AtMost(&'a str),
    /// Nothing can match (keys are never empty).
    Nothing,
}

/// Validates a query and returns its normalised sort-key range.
pub(crate) fn check_query(query: &Query) -> Result<SortRange<'_>, StoreError> {
    validate_query(query)?;
    if let Some(cursor) = &query.start_after {
        validate_key(&cursor.key)?;
        if let Some(index_key) = &cursor.index_key
            && (index_key.pk.is_empty() || index_key.sk.is_empty())
        {
            return Err(StoreError::Invalid(
                "cursor index keys must not be empty".into(),
            ));
        }
    }
    Ok(match &query.sort {
        SortKeyCondition::Any => SortRange::All,
        SortKeyCondition::BeginsWith(prefix) if prefix.is_empty() => SortRange::All,
        SortKeyCondition::BeginsWith(prefix) => SortRange::Prefix(prefix),
        // DynamoDB answers a reversed BETWEEN with a ValidationException.
        SortKeyCondition::Between(low, high) if low > high => {
            return Err(StoreError::Invalid(
                "the lower sort-key bound is above the upper one".into(),
            ));
        }
        SortKeyCondition::Between(_, high) if high.is_empty() => SortRange::Nothing,
        SortKeyCondition::Between(low, high) if low.is_empty() => SortRange::AtMost(high),
        SortKeyCondition::Between(low, high) => SortRange::Between(low, high),
    })
}

/// The smallest string above every string that starts with `prefix`, if there is one.
///
/// UTF-8 byte order is code-point order, so bumping the last code point (and dropping
/// trailing `char::MAX`es) gives an exclusive upper bound that is itself valid UTF-8.
#[cfg(feature = "embedded")]
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::store::Key;

    #[cfg(feature = "embedded")]
    #[test]
    fn upper_bound_bumps_the_last_code_point() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a%").as_deref(), Some("a&"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(
            prefix_upper_bound("a\u{10FFFF}\u{10FFFF}").as_deref(),
            Some("b")
        );
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn upper_bound_is_above_every_extension_and_below_the_rest() {
        for prefix in ["é", "a_", "x%", "\u{FFFF}", "ü\u{1D11E}"] {
            let upper = prefix_upper_bound(prefix).expect("bounded");
            for tail in ["", "\0", "z", "\u{10FFFF}\u{10FFFF}", "é"] {
                let key = format!("{prefix}{tail}");
                assert!(key.as_bytes() < upper.as_bytes(), "{key:?} < {upper:?}");
            }
            assert!(prefix.as_bytes() < upper.as_bytes());
        }
    }

    #[test]
    fn update_naming_an_attribute_twice_is_invalid() {
        let mut update = Update::new(Key::new("p", "s"));
        update.set.insert("a".into(), 1.into());
        update.increment.push(("a".into(), 1));
        assert!(matches!(check_update(&update), Err(StoreError::Invalid(_))));
        update.increment[0].0 = "b".into();
        assert!(check_update(&update).is_ok());
    }

    #[test]
    fn sort_ranges_are_normalised() {
        let query = Query::partition("p").begins_with("");
        assert_eq!(check_query(&query).unwrap(), SortRange::All);
        let query = Query::partition("p").between("", "m");
        assert_eq!(check_query(&query).unwrap(), SortRange::AtMost("m"));
        let query = Query::partition("p").between("", "");
        assert_eq!(check_query(&query).unwrap(), SortRange::Nothing);
        let query = Query::partition("p").between("b", "a");
        assert!(matches!(check_query(&query), Err(StoreError::Invalid(_))));
    }
}
