//! `JsonBody<T>`: a JSON request body read strictly. Malformed JSON, values of the wrong
//! type and fields the request does not know are all refused, naming every unknown field
//! by JSON pointer; nothing reaches a handler half-read.

use crate::problem::{ApiError, InvalidValue, Location};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use domain::validation::FieldIssue;
use serde::de::DeserializeOwned;

/// The most bytes a JSON body may have.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A deserialized body and the bytes it came from (for idempotency fingerprints).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let raw = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { max: MAX_JSON_BODY }
                } else {
                    ApiError::MalformedJson { line: 0, column: 0 }
                }
            })?;
        let value = parse(&raw)?;
        Ok(Self { value, raw })
    }
}

/// `application/json`, or any `application/*+json` such as `merge-patch+json`.
fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses `bytes` into `T`, reporting unknown fields and type errors by JSON pointer.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body is an object; serde would otherwise read an array into a struct.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(
        first,
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9')
    ) {
        return Err(ApiError::Invalid(vec![InvalidValue {
            location: Location::Body(String::new()),
            issue: FieldIssue::InvalidType {
                expected: "an object".to_owned(),
            },
        }]));
    }
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut record_unknown =
        |path: serde_ignored::Path<'_>| unknown.push(pointer_of_ignored(&path));
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        &mut deserializer,
        &mut record_unknown,
    ));
    let mut errors: Vec<InvalidValue> = unknown
        .into_iter()
        .map(|pointer| InvalidValue {
            location: Location::Body(pointer),
            issue: FieldIssue::UnknownField,
        })
        .collect();
    match result {
        Ok(value) => {
            deserializer.end().map_err(|e| ApiError::MalformedJson {
                line: e.line(),
                column: e.column(),
            })?;
            if errors.is_empty() {
                Ok(value)
            } else {
                Err(ApiError::Invalid(errors))
            }
        }
        Err(error) => {
            let inner = error.inner();
            if !inner.is_data() {
                return Err(ApiError::MalformedJson {
                    line: inner.line(),
                    column: inner.column(),
                });
            }
            let pointer = pointer_of_path(error.path());
            errors.push(data_error(pointer, &inner.to_string()));
            Err(ApiError::Invalid(errors))
        }
    }
}

/// serde's data errors are only available as text; turn the common ones into issues.
fn data_error(pointer: String, text: &str) -> InvalidValue {
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return InvalidValue {
            location: Location::Body(format!("{pointer}/{}", escape(field))),
            issue: FieldIssue::Required,
        };
    }
    let expected = text
        .split_once(", expected ")
        .map(|(_, expected)| expected.split(" at line ").next().unwrap_or(expected))
        .map(|expected| {
            if expected.starts_with("struct ") {
                "an object".to_owned()
            } else {
                expected.to_owned()
            }
        })
        .unwrap_or_else(|| "another type".to_owned());
    InvalidValue {
        location: Location::Body(pointer),
        issue: FieldIssue::InvalidType { expected },
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn pointer_of_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(format!("/{index}")),
            Segment::Map { key } => Some(format!("/{}", escape(key))),
            Segment::Enum { variant } => Some(format!("/{}", escape(variant))),
            Segment::Unknown => None,
        })
        .collect()
}

fn pointer_of_ignored(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}/{index}", pointer_of_ignored(parent)),
        Path::Map { parent, key } => format!("{}/{}", pointer_of_ignored(parent), escape(key)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => pointer_of_ignored(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Payment {
        amount: i64,
        currency: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        payment: Option<Payment>,
    }

    fn pointers(error: ApiError) -> Vec<(String, &'static str)> {
        match error {
            ApiError::Invalid(values) => values
                .into_iter()
                .map(|v| match v.location {
                    Location::Body(p) => (p, v.issue.code()),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_every_unknown_field() {
        let error = parse::<Body>(
            br#"{"name":"a","colour":"red","payment":{"amount":1,"currency":"SEK","fee":2}}"#,
        )
        .unwrap_err();
        assert_eq!(
            pointers(error),
            [
                ("/colour".to_owned(), "unknown_field"),
                ("/payment/fee".to_owned(), "unknown_field")
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_nested_fields_have_pointers() {
        let error = parse::<Body>(br#"{"payment":{"amount":"12","currency":"SEK"}}"#).unwrap_err();
        assert_eq!(
            pointers(error),
            [("/payment/amount".to_owned(), "invalid_type")]
        );
        let error = parse::<Body>(br#"{"payment":{"currency":"SEK"}}"#).unwrap_err();
        assert_eq!(
            pointers(error),
            [("/payment/amount".to_owned(), "required")]
        );
        let error = parse::<Body>(b"[1,2]").unwrap_err();
        assert_eq!(pointers(error), [(String::new(), "invalid_type")]);
    }

    #[test]
    fn malformed_json_says_where() {
        match parse::<Body>(b"{\n \"name\": \"a\",\n}") {
            Err(ApiError::MalformedJson { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse::<Body>(b"{} trailing"),
            Err(ApiError::MalformedJson { .. })
        ));
        assert!(matches!(
            parse::<Body>(b""),
            Err(ApiError::MalformedJson { .. })
        ));
    }

    #[test]
    fn content_types() {
        use axum::http::HeaderValue;
        assert!(is_json(Some(&HeaderValue::from_static(
            "application/json; charset=utf-8"
        ))));
        assert!(is_json(Some(&HeaderValue::from_static(
            "application/merge-patch+json"
        ))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }
}
