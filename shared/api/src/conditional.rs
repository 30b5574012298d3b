//! Optimistic concurrency over HTTP: versions go out as strong `ETag`s and come back in
//! `If-Match`.

use crate::problem::{ApiError, InvalidValue};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use domain::validation::FieldIssue;

/// The `ETag` of a record at `version`.
pub fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A required `If-Match` header: `"<version>"`, or `*` for whatever is current.
/// Missing answers 428, so a client cannot overwrite a change it has not seen by
/// forgetting the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::IF_MATCH)
            .ok_or(ApiError::PreconditionRequired)?;
        parse_if_match(value).map(IfMatch).ok_or_else(|| {
            ApiError::InvalidParameters(vec![InvalidValue::header(
                "If-Match",
                FieldIssue::InvalidHeader,
            )])
        })
    }
}

fn parse_if_match(value: &HeaderValue) -> Option<Option<u64>> {
    let text = value.to_str().ok()?.trim();
    if text == "*" {
        return Some(None);
    }
    let digits = text.strip_prefix('"')?.strip_suffix('"')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strong_versions_and_star() {
        let parse = |s: &'static str| parse_if_match(&HeaderValue::from_static(s));
        assert_eq!(parse("\"3\""), Some(Some(3)));
        assert_eq!(parse("*"), Some(None));
        for bad in ["3", "W/\"3\"", "\"\"", "\"3\", \"4\"", "\"-1\"", "\"x\""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(etag(7), HeaderValue::from_static("\"7\""));
    }
}
