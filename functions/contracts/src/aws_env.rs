//! The large-import ports in Lambda, from the environment: `UPLOAD_BUCKET` (S3, where
//! files wait for the worker), `IMPORT_QUEUE_URL` (SQS, the worker's queue) and
//! `S3_FORCE_PATH_STYLE` (`true` for a loopback S3 such as moto; default `false`).

use adapters::aws::{S3Blobs, SdkConfig, SqsQueue};
use domain::blobs::Blobs;
use domain::queue::Queue;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ImportEnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {0} must be true or false")]
    NotBoolean(&'static str),
}

fn var(name: &'static str) -> Result<String, ImportEnvError> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .ok_or(ImportEnvError::Missing(name))
}

/// An import's transactions in flight at once on DynamoDB. Every transaction of an
/// import touches the organization's dashboard epoch and import sequence, and DynamoDB
/// runs one transaction at a time on an item (another one is cancelled with
/// `TransactionConflict`), so more in flight would only meet and be retried.
pub const IMPORT_TRANSACTIONS_IN_FLIGHT: usize = 1;

/// The upload bucket named by `UPLOAD_BUCKET`.
pub fn blobs_from_env(config: &SdkConfig) -> Result<Arc<dyn Blobs>, ImportEnvError> {
    let force_path_style = match std::env::var("S3_FORCE_PATH_STYLE").ok().as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ImportEnvError::NotBoolean("S3_FORCE_PATH_STYLE")),
    };
    Ok(Arc::new(S3Blobs::from_config(
        config,
        var("UPLOAD_BUCKET")?,
        force_path_style,
    )))
}

/// The import queue named by `IMPORT_QUEUE_URL`.
pub fn queue_from_env(config: &SdkConfig) -> Result<Arc<dyn Queue>, ImportEnvError> {
    Ok(Arc::new(SqsQueue::from_config(
        config,
        var("IMPORT_QUEUE_URL")?,
    )))
}
