//! [`domain::blobs::Blobs`] on an S3 bucket, with SigV4-presigned URLs.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use domain::blobs::{
    Blob, BlobError, BlobInfo, BlobKey, BlobListing, Blobs, PresignedRequest,
    validate_content_type, validate_expiry, validate_list_limit,
};

/// An S3 client from the shared SDK configuration. `force_path_style` addresses the
/// bucket in the path (`http://host/bucket/key`), which loopback peers such as moto
/// need; AWS itself takes either.
pub fn s3_client(config: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    Client::from_conf(config)
}

/// [`Blobs`] on one S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket `bucket`, with a client from the shared SDK configuration.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        bucket: impl Into<String>,
        force_path_style: bool,
    ) -> Self {
        Self::new(s3_client(config, force_path_style), bucket)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn unavailable<E, R>(error: SdkError<E, R>) -> BlobError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    BlobError::Unavailable(DisplayErrorContext(&error).to_string())
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, BlobError> {
    validate_expiry(expires_in)?;
    PresigningConfig::expires_in(expires_in).map_err(|error| BlobError::Invalid(error.to_string()))
}

fn presigned(
    request: aws_sdk_s3::presigning::PresignedRequest,
    expires_in: Duration,
) -> PresignedRequest {
    PresignedRequest {
        url: request.uri().to_owned(),
        method: request.method().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        expires_at: chrono::Utc::now() + chrono::Duration::from_std(expires_in).unwrap_or_default(),
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        validate_content_type(content_type)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Blob, BlobError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| match error.code() {
                Some("NoSuchKey") => BlobError::NotFound,
                _ => unavailable(error),
            })?;
        let content_type = output
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|error| BlobError::Unavailable(format!("reading {key}: {error}")))?
            .into_bytes()
            .to_vec();
        Ok(Blob {
            bytes,
            content_type,
        })
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobInfo, BlobError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| {
                // HEAD answers carry no body, so a missing key is only a 404.
                let missing = matches!(&error, SdkError::ServiceError(service)
                    if service.raw().status().as_u16() == 404);
                if missing {
                    BlobError::NotFound
                } else {
                    unavailable(error)
                }
            })?;
        Ok(BlobInfo {
            size: output.content_length.unwrap_or_default().max(0) as u64,
            content_type: output
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
        })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list(
        &self,
        folder: &BlobKey,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<BlobListing, BlobError> {
        validate_list_limit(limit)?;
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{folder}/"))
            .set_start_after(after.map(|key| key.as_str().to_owned()))
            .max_keys(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        let keys = output
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(BlobKey::parse)
            .collect::<Result<Vec<_>, _>>()
            // Only keys this port wrote are in the bucket, and it writes only BlobKeys.
            .map_err(|error| BlobError::Unavailable(format!("a stored key: {error}")))?;
        let next = match output.is_truncated() {
            Some(true) => keys.last().cloned(),
            _ => None,
        };
        Ok(BlobListing { keys, next })
    }

    async fn presign_put(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_content_type(content_type)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(unavailable)?;
        Ok(presigned(request, expires_in))
    }

    async fn presign_get(
        &self,
        key: &BlobKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(presigning(expires_in)?)
            .await
            .map_err(unavailable)?;
        Ok(presigned(request, expires_in))
    }
}
