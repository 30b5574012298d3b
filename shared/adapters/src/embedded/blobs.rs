//! The embedded blob store: [`domain::blobs::Blobs`] in a folder, for the local runner,
//! and the HTTP routes that serve its presigned URLs.
//!
//! Layout: `<folder>/objects/<key>` holds each blob as a small header (the content
//! type) followed by its bytes; `<folder>/signing-key` holds the HMAC key of the
//! presigned URLs (made once, owner-only). Keys are [`BlobKey`]s, which cannot climb
//! out of the folder. A write goes to a temporary file, is synced, and is renamed over
//! the blob (then the directory is synced), so a reader or a crash sees the old blob or
//! the new one, never part of one.
//!
//! Presigned URLs read `{base}/blobs/{key}?expires=<epoch seconds>&signature=<s>`,
//! where `s` is HMAC-SHA256 over `METHOD\nkey\nexpires` (base64url). [`blob_routes`]
//! checks them in constant time and refuses expired ones, as S3 does with SigV4.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::blobs::{
    Blob, BlobError, BlobInfo, BlobKey, BlobListing, Blobs, PresignedRequest,
    validate_content_type, validate_expiry, validate_list_limit,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header every blob file starts with, before the content type's length (u16 BE).
const MAGIC: &[u8; 4] = b"LDB1";
const SIGNING_KEY_BYTES: usize = 32;

/// [`Blobs`] in a folder.
pub struct FolderBlobs {
    objects: PathBuf,
    base_url: String,
    /// HMAC-SHA256 keyed with the signing key, cloned for each signature.
    mac: HmacSha256,
}

impl std::fmt::Debug for FolderBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderBlobs")
            .field("objects", &self.objects)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Why a presigned request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL has expired")]
    Expired,
    #[error("the signature does not match")]
    Mismatch,
}

impl FolderBlobs {
    /// Opens (creating if missing) the store in `folder`. Presigned URLs start with
    /// `base_url` (the local runner's address, e.g. `http://127.0.0.1:3000`).
    pub fn open(folder: &Path, base_url: &str) -> Result<Self, BlobError> {
        let objects = folder.join("objects");
        std::fs::create_dir_all(objects.join(".tmp")).map_err(|error| {
            BlobError::Unavailable(format!("cannot create {}: {error}", objects.display()))
        })?;
        let signing_key = signing_key(&folder.join("signing-key"))?;
        let mac = HmacSha256::new_from_slice(&signing_key)
            .map_err(|error| BlobError::Unavailable(format!("signing key: {error}")))?;
        Ok(Self {
            objects,
            base_url: base_url.trim_end_matches('/').to_owned(),
            mac,
        })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        // A BlobKey has only safe, non-empty segments: no `..`, no absolute path.
        self.objects.join(key.as_str())
    }

    fn signature(&self, method: &str, key: &BlobKey, expires: i64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        mac
    }

    /// Checks a presigned request's signature (in constant time) and expiry.
    pub fn verify(
        &self,
        method: &str,
        key: &BlobKey,
        expires: i64,
        signature: &str,
    ) -> Result<(), SignatureError> {
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SignatureError::Mismatch)?;
        self.signature(method, key, expires)
            .verify_slice(&given)
            .map_err(|_| SignatureError::Mismatch)?;
        if expires < now_seconds() {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn presign(
        &self,
        method: &str,
        key: &BlobKey,
        expires_in: Duration,
        headers: Vec<(String, String)>,
    ) -> Result<PresignedRequest, BlobError> {
        validate_expiry(expires_in)?;
        let expires = now_seconds() + expires_in.as_secs() as i64;
        let signature =
            URL_SAFE_NO_PAD.encode(self.signature(method, key, expires).finalize().into_bytes());
        Ok(PresignedRequest {
            url: format!(
                "{}/blobs/{key}?expires={expires}&signature={signature}",
                self.base_url
            ),
            method: method.to_owned(),
            headers,
            expires_at: DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or_default(),
        })
    }

    fn write_blocking(
        objects: &Path,
        path: &Path,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), BlobError> {
        let io = |what: &str, error: std::io::Error| {
            BlobError::Unavailable(format!("{what} {}: {error}", path.display()))
        };
        let parent = path.parent().unwrap_or(objects);
        std::fs::create_dir_all(parent).map_err(|e| io("creating the folder of", e))?;
        let temporary = objects
            .join(".tmp")
            .join(uuid::Uuid::now_v7().simple().to_string());
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(&(content_type.len() as u16).to_be_bytes())?;
            file.write_all(content_type.as_bytes())?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(|e| io("writing", e))
    }

    /// Opens a blob file and reads its header: the file positioned at the bytes, the
    /// content type and the size of the bytes.
    fn open_blocking(path: &Path) -> Result<(std::fs::File, String, u64), BlobError> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound);
            }
            // A key whose prefix is a blob (`a` stored, `a/b` asked): no such blob.
            Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(BlobError::NotFound);
            }
            Err(error) => {
                return Err(BlobError::Unavailable(format!(
                    "reading {}: {error}",
                    path.display()
                )));
            }
        };
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(BlobError::NotFound);
        }
        let corrupt = || BlobError::Unavailable(format!("{} is not a blob file", path.display()));
        let mut header = [0u8; 6];
        file.read_exact(&mut header).map_err(|_| corrupt())?;
        if &header[..4] != MAGIC {
            return Err(corrupt());
        }
        let length = u16::from_be_bytes([header[4], header[5]]) as usize;
        let mut content_type = vec![0u8; length];
        file.read_exact(&mut content_type).map_err(|_| corrupt())?;
        let content_type = String::from_utf8(content_type).map_err(|_| corrupt())?;
        let total = file.metadata().map_err(|_| corrupt())?.len();
        let size = total.saturating_sub(6 + length as u64);
        Ok((file, content_type, size))
    }
}

/// Every blob key under `folder` (its files, at any depth), unsorted.
fn keys_below(objects: &Path, folder: &BlobKey) -> Result<Vec<BlobKey>, BlobError> {
    let mut keys = Vec::new();
    let mut pending = vec![(objects.join(folder.as_str()), folder.as_str().to_owned())];
    while let Some((directory, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            // No folder (nothing stored under it yet), or a blob where a folder would be.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(error) => {
                return Err(BlobError::Unavailable(format!(
                    "listing {}: {error}",
                    directory.display()
                )));
            }
        };
        for entry in entries {
            let entry = entry.map_err(|error| {
                BlobError::Unavailable(format!("listing {}: {error}", directory.display()))
            })?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let key = format!("{prefix}/{name}");
            let kind = entry.file_type().map_err(|error| {
                BlobError::Unavailable(format!("listing {}: {error}", directory.display()))
            })?;
            if kind.is_dir() {
                pending.push((entry.path(), key));
            } else if let Ok(key) = BlobKey::parse(&key) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BlobError::Unavailable(format!("file task failed: {error}")))?
}

#[async_trait]
impl Blobs for FolderBlobs {
    async fn put(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        validate_content_type(content_type)?;
        let (objects, path, content_type) = (
            self.objects.clone(),
            self.path(key),
            content_type.to_owned(),
        );
        blocking(move || Self::write_blocking(&objects, &path, &bytes, &content_type)).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Blob, BlobError> {
        let path = self.path(key);
        blocking(move || {
            let (mut file, content_type, size) = Self::open_blocking(&path)?;
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(|error| {
                BlobError::Unavailable(format!("reading {}: {error}", path.display()))
            })?;
            Ok(Blob {
                bytes,
                content_type,
            })
        })
        .await
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobInfo, BlobError> {
        let path = self.path(key);
        blocking(move || {
            let (_, content_type, size) = Self::open_blocking(&path)?;
            Ok(BlobInfo { size, content_type })
        })
        .await
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path(key);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(BlobError::Unavailable(format!(
                "deleting {}: {error}",
                path.display()
            ))),
        })
        .await
    }

    async fn list(
        &self,
        folder: &BlobKey,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<BlobListing, BlobError> {
        validate_list_limit(limit)?;
        let (objects, folder) = (self.objects.clone(), folder.clone());
        let mut keys = blocking(move || keys_below(&objects, &folder)).await?;
        // Byte order, as S3 lists.
        keys.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
        if let Some(after) = after {
            keys.retain(|key| key.as_str().as_bytes() > after.as_str().as_bytes());
        }
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more { keys.last().cloned() } else { None };
        Ok(BlobListing { keys, next })
    }

    async fn presign_put(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_content_type(content_type)?;
        self.presign(
            "PUT",
            key,
            expires_in,
            vec![("content-type".into(), content_type.to_owned())],
        )
    }

    async fn presign_get(
        &self,
        key: &BlobKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        self.presign("GET", key, expires_in, Vec::new())
    }
}

// ---------------------------------------------------------------------------------------
// The routes behind the presigned URLs

#[derive(Clone)]
struct RouteState {
    blobs: Arc<FolderBlobs>,
    max_upload_bytes: usize,
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

/// `PUT` and `GET /blobs/{key}` for the presigned URLs of `blobs`: the signature and
/// expiry are checked first (403), uploads are limited to `max_upload_bytes` (413).
/// Answers are what a client of S3 expects: 200 with no body for a PUT, the bytes and
/// their content type for a GET.
pub fn blob_routes(blobs: Arc<FolderBlobs>, max_upload_bytes: usize) -> Router {
    Router::new()
        .route("/blobs/{*key}", get(download).put(upload))
        .with_state(RouteState {
            blobs,
            max_upload_bytes,
        })
}

fn refusal(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

type SignedQuery = Result<Query<Signed>, QueryRejection>;

fn checked(
    state: &RouteState,
    method: &str,
    key: &str,
    signed: SignedQuery,
) -> Result<BlobKey, Box<Response>> {
    let forbidden = |detail: &str| Box::new(refusal(StatusCode::FORBIDDEN, detail));
    let Ok(Query(signed)) = signed else {
        return Err(forbidden("a presigned URL needs expires and signature"));
    };
    let key = BlobKey::parse(key).map_err(|_| forbidden("the signature does not match"))?;
    match state
        .blobs
        .verify(method, &key, signed.expires, &signed.signature)
    {
        Ok(()) => Ok(key),
        Err(error) => Err(forbidden(&error.to_string())),
    }
}

fn unavailable(error: BlobError) -> Response {
    tracing::error!(%error, "blob route failed");
    refusal(StatusCode::SERVICE_UNAVAILABLE, "the blob store failed")
}

async fn upload(
    State(state): State<RouteState>,
    UrlPath(key): UrlPath<String>,
    signed: SignedQuery,
    request: Request,
) -> Response {
    let key = match checked(&state, "PUT", &key, signed) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    if validate_content_type(&content_type).is_err() {
        return refusal(StatusCode::BAD_REQUEST, "invalid content-type");
    }
    let bytes = match axum::body::to_bytes(request.into_body(), state.max_upload_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("uploads are limited to {} bytes", state.max_upload_bytes),
            );
        }
    };
    match state.blobs.put(&key, bytes.to_vec(), &content_type).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => unavailable(error),
    }
}

async fn download(
    State(state): State<RouteState>,
    UrlPath(key): UrlPath<String>,
    signed: SignedQuery,
) -> Response {
    let key = match checked(&state, "GET", &key, signed) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    match state.blobs.get(&key).await {
        Ok(blob) => {
            let mut response = Response::new(Body::from(blob.bytes));
            if let Ok(value) = HeaderValue::from_str(&blob.content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Err(BlobError::NotFound) => refusal(StatusCode::NOT_FOUND, "no blob under this key"),
        Err(error) => unavailable(error),
    }
}

/// The signing key in `path`: read, or made once (owner-only) when missing.
fn signing_key(path: &Path) -> Result<Vec<u8>, BlobError> {
    let unavailable =
        |error: std::io::Error| BlobError::Unavailable(format!("{}: {error}", path.display()));
    match std::fs::read(path) {
        Ok(key) if key.len() >= SIGNING_KEY_BYTES => return Ok(key),
        Ok(_) => {
            return Err(BlobError::Unavailable(format!(
                "{} is too short; delete it to make a new one",
                path.display()
            )));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(unavailable(error)),
    }
    let mut key = vec![0u8; SIGNING_KEY_BYTES];
    getrandom::fill(&mut key)
        .map_err(|error| BlobError::Unavailable(format!("no randomness: {error}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&key).map_err(unavailable)?;
            file.sync_all().map_err(unavailable)?;
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(unavailable)
        }
        Err(error) => Err(unavailable(error)),
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}
