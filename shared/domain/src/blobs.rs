//! The blob port: files under keys in one bucket, shaped like S3, with presigned URLs so
//! a client can upload or download a large file without it passing through a function
//! (a Lambda request body is limited to 6 MB).
//!
//! Two adapters implement it: S3 (`adapters::aws`) and a folder (`adapters::embedded`,
//! whose presigned URLs point at the local runner); `adapters/tests/blob_conformance.rs`
//! holds them to the same behaviour.

use crate::ids::TenantId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::time::Duration;

/// The longest key.
pub const MAX_KEY_LENGTH: usize = 512;
/// The longest a presigned URL may stay valid (S3's limit for SigV4).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A blob's key: one or more segments of `A-Z a-z 0-9 . _ -` separated by `/`, no
/// segment `.` or `..`, at most [`MAX_KEY_LENGTH`] bytes. Safe as a relative path and
/// as an S3 key, and the same in a URL path without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn parse(key: &str) -> Result<Self, BlobError> {
        let invalid = |why: &str| Err(BlobError::InvalidKey(format!("{key:?}: {why}")));
        if key.is_empty() || key.len() > MAX_KEY_LENGTH {
            return invalid("a key holds 1..=512 bytes");
        }
        for segment in key.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return invalid("empty, `.` or `..` segment");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return invalid("only A-Z a-z 0-9 . _ - and /");
            }
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most keys one [`Blobs::list`] call answers (S3's page size).
pub const MAX_LIST_LIMIT: usize = 1000;

/// The areas of the bucket that hold an organization's files, each under
/// `<area>/<tenant>/`. The retention job deletes everything under them when it removes
/// an organization, so a new kind of tenant file goes in an area listed here.
pub const TENANT_AREAS: [&str; 1] = [IMPORTS_AREA];
/// Files of large imports, waiting for the worker: `imports/<tenant>/<job>.csv`.
pub const IMPORTS_AREA: &str = "imports";

/// The folder of `tenant`'s files in `area` (one of [`TENANT_AREAS`]).
pub fn tenant_folder(area: &str, tenant: TenantId) -> Result<BlobKey, BlobError> {
    BlobKey::parse(&format!("{area}/{tenant}"))
}

/// A stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// What a blob is, without its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub content_type: String,
}

/// One page of the keys under a folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobListing {
    /// In byte order.
    pub keys: Vec<BlobKey>,
    /// Set exactly when more keys follow: pass it as `after` for the next page.
    pub next: Option<BlobKey>,
}

/// A request a client may make without credentials until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedRequest {
    pub url: String,
    /// `PUT` or `GET`.
    pub method: String,
    /// Headers the client must send as they are (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no blob under this key")]
    NotFound,
    #[error("invalid blob key {0}")]
    InvalidKey(String),
    /// The request breaks a rule of the port (expiry too long, content type).
    #[error("invalid blob request: {0}")]
    Invalid(String),
    /// The backend failed or could not be reached.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

/// The blob port. One instance is one bucket (or folder).
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there, atomically: a reader sees
    /// the old blob or the new one, never part of one.
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>, content_type: &str)
    -> Result<(), BlobError>;

    async fn get(&self, key: &BlobKey) -> Result<Blob, BlobError>;

    async fn head(&self, key: &BlobKey) -> Result<BlobInfo, BlobError>;

    /// Deletes the blob; deleting a missing one is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;

    /// The keys of the blobs under `folder` (those that start with `folder/`), in byte
    /// order, after `after` when given, at most `limit` (1..=[`MAX_LIST_LIMIT`]).
    async fn list(
        &self,
        folder: &BlobKey,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<BlobListing, BlobError>;

    /// A URL to upload the blob with `PUT`, valid for `expires_in`. The client must
    /// send the returned headers (among them `content-type: <content_type>`).
    async fn presign_put(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError>;

    /// A URL to download the blob with `GET`, valid for `expires_in`.
    async fn presign_get(
        &self,
        key: &BlobKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError>;
}

/// Checks the port rule of a listing, so every adapter refuses the same requests.
pub fn validate_list_limit(limit: usize) -> Result<(), BlobError> {
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(BlobError::Invalid(format!(
            "a listing holds 1..={MAX_LIST_LIMIT} keys"
        )));
    }
    Ok(())
}

/// Checks the port rules of a presign, so every adapter refuses the same requests.
pub fn validate_expiry(expires_in: Duration) -> Result<(), BlobError> {
    if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRY {
        return Err(BlobError::Invalid(format!(
            "a presigned URL lives 1 s..={MAX_PRESIGN_EXPIRY:?}"
        )));
    }
    Ok(())
}

/// A content type is a `type/subtype` of visible ASCII (parameters allowed).
pub fn validate_content_type(content_type: &str) -> Result<(), BlobError> {
    let visible = content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if content_type.len() > 255 || !visible || !content_type.contains('/') {
        return Err(BlobError::Invalid(format!(
            "{content_type:?} is not a content type"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "imports/T1/job.csv", "a-b_c.d/e", "x/y/z"] {
            assert_eq!(
                BlobKey::parse(good).map(|k| k.to_string()).ok(),
                Some(good.into())
            );
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "./a", "a b", "a\\b", "å", "a?b", "a%2e",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BlobKey::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn tenant_folders() {
        let tenant = TenantId::generate();
        let folder = tenant_folder(IMPORTS_AREA, tenant).unwrap();
        assert_eq!(folder.as_str(), format!("imports/{tenant}"));
        assert!(validate_list_limit(0).is_err());
        assert!(validate_list_limit(MAX_LIST_LIMIT + 1).is_err());
        assert!(validate_list_limit(MAX_LIST_LIMIT).is_ok());
    }

    #[test]
    fn expiry_and_content_type() {
        assert!(validate_expiry(Duration::from_secs(900)).is_ok());
        assert!(validate_expiry(Duration::ZERO).is_err());
        assert!(validate_expiry(MAX_PRESIGN_EXPIRY + Duration::from_secs(1)).is_err());
        assert!(validate_content_type("text/csv; charset=utf-8").is_ok());
        assert!(validate_content_type("csv").is_err());
        assert!(validate_content_type("text/csv\r\nx: y").is_err());
    }
}
