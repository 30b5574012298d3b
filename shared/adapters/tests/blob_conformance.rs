//! The blob port's conformance suite: every test is written once against `&dyn Blobs`
//! and run against both adapters — a folder (with its presigned-URL routes served on
//! 127.0.0.1) and S3 (the real SDK against a shared `moto_server` on loopback; see
//! `support`).
//!
//! moto does not check S3 signatures, so the refusal of expired and tampered URLs is
//! tested on the folder adapter only; on S3 that check is AWS's own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use adapters::aws::S3Blobs;
use adapters::embedded::{FolderBlobs, blob_routes};
use domain::blobs::{BlobError, BlobKey, Blobs, PresignedRequest};
use support::unique_name;

fn key(text: &str) -> BlobKey {
    BlobKey::parse(text).unwrap()
}

fn unique_key(label: &str) -> BlobKey {
    key(&format!("imports/{}/file.csv", unique_name(label)))
}

async fn send(request: &PresignedRequest, body: Option<Vec<u8>>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut builder = client.request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    builder.send().await.expect("presigned request sent")
}

// ---------------------------------------------------------------------------------------
// The tests

async fn put_get_head_round_trip(blobs: &dyn Blobs) {
    let key = unique_key("round-trip");
    let bytes = "Avtalsnummer;Leasegivare\r\nSE-001;Skåne Leasing AB\r\n"
        .as_bytes()
        .to_vec();
    blobs.put(&key, bytes.clone(), "text/csv").await.unwrap();
    let blob = blobs.get(&key).await.unwrap();
    assert_eq!(blob.bytes, bytes);
    assert_eq!(blob.content_type, "text/csv");
    let info = blobs.head(&key).await.unwrap();
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.content_type, "text/csv");
    // A put replaces the whole blob.
    blobs
        .put(&key, b"{}".to_vec(), "application/json")
        .await
        .unwrap();
    let blob = blobs.get(&key).await.unwrap();
    assert_eq!(
        (blob.bytes.as_slice(), blob.content_type.as_str()),
        (b"{}".as_slice(), "application/json")
    );
    // Empty and binary blobs round-trip too.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    blobs
        .put(&key, binary.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(blobs.get(&key).await.unwrap().bytes, binary);
    let empty = unique_key("empty");
    blobs.put(&empty, Vec::new(), "text/csv").await.unwrap();
    assert_eq!(blobs.head(&empty).await.unwrap().size, 0);
    assert!(blobs.get(&empty).await.unwrap().bytes.is_empty());
}

async fn missing_and_deleted_blobs(blobs: &dyn Blobs) {
    let key = unique_key("missing");
    assert!(matches!(blobs.get(&key).await, Err(BlobError::NotFound)));
    assert!(matches!(blobs.head(&key).await, Err(BlobError::NotFound)));
    blobs.delete(&key).await.expect("deleting a missing blob");
    blobs.put(&key, b"x".to_vec(), "text/plain").await.unwrap();
    blobs.delete(&key).await.unwrap();
    assert!(matches!(blobs.get(&key).await, Err(BlobError::NotFound)));
    assert!(matches!(blobs.head(&key).await, Err(BlobError::NotFound)));
    // A key below a stored blob's key names nothing.
    let parent = unique_key("parent");
    blobs
        .put(&parent, b"x".to_vec(), "text/plain")
        .await
        .unwrap();
    let below = key_below(&parent);
    assert!(matches!(blobs.head(&below).await, Err(BlobError::NotFound)));
}

fn key_below(parent: &BlobKey) -> BlobKey {
    key(&format!("{parent}/below"))
}

async fn presigned_put_then_get(blobs: &dyn Blobs) {
    let key = unique_key("presigned");
    let upload = blobs
        .presign_put(&key, "text/csv", Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(upload.method, "PUT");
    assert!(
        upload
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("content-type") && value == "text/csv"),
        "{:?}",
        upload.headers
    );
    assert!(upload.expires_at > chrono::Utc::now() + chrono::Duration::seconds(250));
    let file: Vec<u8> = "contractNumber,lessor\nEN-1,BMW Financial Services\n"
        .repeat(2000)
        .into_bytes();
    let response = send(&upload, Some(file.clone())).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(blobs.head(&key).await.unwrap().size, file.len() as u64);
    assert_eq!(blobs.get(&key).await.unwrap().bytes, file);

    let download = blobs
        .presign_get(&key, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(download.method, "GET");
    let response = send(&download, None).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.bytes().await.unwrap().to_vec(), file);
}

async fn listing_a_folder(blobs: &dyn Blobs) {
    let folder = key(&format!("imports/{}", unique_name("listed")));
    let under = |rest: &str| key(&format!("{folder}/{rest}"));
    // Stored out of order; `.` sorts before `/`, so `b.csv` comes before `b/c.csv`.
    let inside = [
        under("b/c.csv"),
        under("a.csv"),
        under("b.csv"),
        under("b/d/e"),
    ];
    for key in &inside {
        blobs.put(key, b"x".to_vec(), "text/csv").await.unwrap();
    }
    // Neighbours whose keys start with the folder's name but are not in it.
    let neighbours = [
        key(&format!("{folder}-other/x")),
        key(&format!("{folder}x/y")),
    ];
    for key in &neighbours {
        blobs.put(key, b"x".to_vec(), "text/csv").await.unwrap();
    }
    let in_order = vec![
        under("a.csv"),
        under("b.csv"),
        under("b/c.csv"),
        under("b/d/e"),
    ];
    let all = blobs.list(&folder, None, 1000).await.unwrap();
    assert_eq!(all.keys, in_order);
    assert_eq!(all.next, None);

    // Page by page.
    let first = blobs.list(&folder, None, 3).await.unwrap();
    assert_eq!(first.keys, in_order[..3]);
    assert_eq!(first.next.as_ref(), Some(&in_order[2]));
    let rest = blobs.list(&folder, first.next.as_ref(), 3).await.unwrap();
    assert_eq!((rest.keys.as_slice(), rest.next), (&in_order[3..], None));
    let exact = blobs.list(&folder, None, 4).await.unwrap();
    assert_eq!((exact.keys.len(), exact.next), (4, None));

    // A folder with nothing in it, and a blob's own key as a folder.
    let empty = blobs
        .list(&key(&format!("imports/{}", unique_name("empty"))), None, 10)
        .await
        .unwrap();
    assert_eq!(empty, Default::default());
    let file_as_folder = blobs.list(&under("a.csv"), None, 10).await.unwrap();
    assert!(file_as_folder.keys.is_empty());

    // Deleted blobs are no longer listed.
    for key in &inside {
        blobs.delete(key).await.unwrap();
    }
    assert!(blobs.list(&folder, None, 10).await.unwrap().keys.is_empty());
    assert!(matches!(
        blobs.list(&folder, None, 0).await,
        Err(BlobError::Invalid(_))
    ));
    assert!(matches!(
        blobs.list(&folder, None, 1001).await,
        Err(BlobError::Invalid(_))
    ));
}

async fn invalid_requests_are_refused(blobs: &dyn Blobs) {
    let key = unique_key("invalid");
    let invalid = |result: Result<(), BlobError>| matches!(result, Err(BlobError::Invalid(_)));
    assert!(invalid(blobs.put(&key, Vec::new(), "csv").await));
    assert!(invalid(
        blobs
            .presign_put(&key, "text/csv", Duration::from_secs(8 * 24 * 3600))
            .await
            .map(drop)
    ));
    assert!(invalid(
        blobs.presign_get(&key, Duration::ZERO).await.map(drop)
    ));
}

// ---------------------------------------------------------------------------------------
// The adapters

/// A folder store with its routes served on 127.0.0.1 until the test's runtime ends.
struct Folder {
    _dir: tempfile::TempDir,
    blobs: Arc<FolderBlobs>,
}

async fn folder() -> Folder {
    folder_with_limit(1 << 20).await
}

async fn folder_with_limit(max_upload_bytes: usize) -> Folder {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let blobs = Arc::new(FolderBlobs::open(dir.path(), &base).unwrap());
    let routes = blob_routes(blobs.clone(), max_upload_bytes);
    tokio::spawn(async move { axum::serve(listener, routes).await });
    Folder { _dir: dir, blobs }
}

async fn s3() -> S3Blobs {
    static BUCKET: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let bucket = BUCKET
        .get_or_init(|| async {
            let name = unique_name("uploads");
            support::s3_client()
                .create_bucket()
                .bucket(&name)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuNorth1)
                        .build(),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("creating the bucket in moto: {e:?}"));
            name
        })
        .await;
    S3Blobs::new(support::s3_client(), bucket.clone())
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod folder {
            $(
                #[tokio::test]
                async fn $name() {
                    let folder = super::folder().await;
                    super::$name(folder.blobs.as_ref()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let blobs = super::s3().await;
                    super::$name(&blobs).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_head_round_trip,
    missing_and_deleted_blobs,
    presigned_put_then_get,
    listing_a_folder,
    invalid_requests_are_refused,
);

// ---------------------------------------------------------------------------------------
// The folder's own guarantees

#[tokio::test]
async fn folder_refuses_expired_and_tampered_urls() {
    let folder = folder().await;
    let blobs = folder.blobs.as_ref();
    let key = unique_key("signed");
    blobs
        .put(&key, b"secret".to_vec(), "text/csv")
        .await
        .unwrap();
    let good = blobs
        .presign_get(&key, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(send(&good, None).await.status(), 200);

    let tampered = |from: &str, to: &str| PresignedRequest {
        url: good.url.replacen(from, to, 1),
        ..good.clone()
    };
    // Another key with the same signature.
    let other = unique_key("other");
    blobs
        .put(&other, b"other".to_vec(), "text/csv")
        .await
        .unwrap();
    let forged = tampered(key.as_str(), other.as_str());
    assert_eq!(send(&forged, None).await.status(), 403);
    // A later expiry with the same signature.
    let expires = good
        .url
        .split("expires=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();
    let later = (expires.parse::<i64>().unwrap() + 3600).to_string();
    let extended = tampered(&format!("expires={expires}"), &format!("expires={later}"));
    assert_eq!(send(&extended, None).await.status(), 403);
    // A changed signature, no signature, and a GET URL used to PUT.
    let signature = good.url.split("signature=").nth(1).unwrap().to_owned();
    let flipped: String = signature.chars().rev().collect();
    assert_eq!(
        send(&tampered(&signature, &flipped), None).await.status(),
        403
    );
    let bare = PresignedRequest {
        url: good.url.split('?').next().unwrap().to_owned(),
        ..good.clone()
    };
    assert_eq!(send(&bare, None).await.status(), 403);
    let put_with_get_url = PresignedRequest {
        method: "PUT".into(),
        ..good.clone()
    };
    assert_eq!(
        send(&put_with_get_url, Some(b"overwritten".to_vec()))
            .await
            .status(),
        403
    );
    assert_eq!(blobs.get(&key).await.unwrap().bytes, b"secret");

    // Expired: valid signature, time passed.
    let short = blobs
        .presign_get(&key, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = send(&short, None).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn folder_limits_uploads_and_refuses_path_traversal() {
    let folder = folder_with_limit(1000).await;
    let blobs = folder.blobs.as_ref();
    let key = unique_key("limited");
    let upload = blobs
        .presign_put(&key, "text/csv", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(send(&upload, Some(vec![b'x'; 1001])).await.status(), 413);
    assert!(matches!(blobs.head(&key).await, Err(BlobError::NotFound)));
    assert_eq!(send(&upload, Some(vec![b'x'; 1000])).await.status(), 200);

    // Keys that would leave the folder are not keys, and their URLs are refused.
    for bad in ["../signing-key", "a/../../x", "/etc/passwd", "a//b"] {
        assert!(BlobKey::parse(bad).is_err(), "{bad}");
    }
    let base = upload.url.split("/blobs/").next().unwrap();
    let query = upload.url.split('?').nth(1).unwrap();
    for path in [
        "..%2Fsigning-key",
        "imports/..%2F..%2Fsigning-key",
        "%2E%2E/signing-key",
    ] {
        let response = reqwest::Client::new()
            .get(format!("{base}/blobs/{path}?{query}"))
            .send()
            .await
            .unwrap();
        // Refused by the signature check, or (`%2E%2E` is `..` to the URL parser, which
        // resolves it before sending) by no route matching: never served.
        assert!(
            matches!(response.status().as_u16(), 403 | 404),
            "{path}: {}",
            response.status()
        );
    }
}

/// A blob written is on disk and stays after the store is reopened; a reopened store
/// signs with the same key, so URLs handed out before a restart still work.
#[tokio::test]
async fn folder_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = key("imports/t/job.csv");
    let url = {
        let blobs = FolderBlobs::open(dir.path(), "http://127.0.0.1:9").unwrap();
        blobs.put(&key, b"kept".to_vec(), "text/csv").await.unwrap();
        blobs
            .presign_get(&key, Duration::from_secs(60))
            .await
            .unwrap()
            .url
    };
    let blobs = FolderBlobs::open(dir.path(), "http://127.0.0.1:9").unwrap();
    assert_eq!(blobs.get(&key).await.unwrap().bytes, b"kept");
    let query = url.split('?').nth(1).unwrap();
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let signature = query
        .split('&')
        .find_map(|p| p.strip_prefix("signature="))
        .unwrap();
    assert_eq!(blobs.verify("GET", &key, expires, signature), Ok(()));
    assert!(blobs.verify("PUT", &key, expires, signature).is_err());
    // No temporary files are left behind.
    let leftovers = std::fs::read_dir(dir.path().join("objects/.tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
}
