//! Opaque list cursors: a position serialized as base64url JSON. Clients must not read
//! them; the server validates whatever comes back.

use crate::problem::{ApiError, InvalidValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::validation::FieldIssue;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::InvalidParameters(vec![InvalidValue::parameter(
                "cursor",
                FieldIssue::InvalidCursor,
            )])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let cursor = encode(&("CONTRACT#1", 2));
        assert_eq!(
            decode::<(String, i32)>(&cursor).unwrap(),
            ("CONTRACT#1".into(), 2)
        );
        assert!(decode::<(String, i32)>("!!!").is_err());
        assert!(decode::<(String, i32)>(&encode(&"other")).is_err());
    }
}
