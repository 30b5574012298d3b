//! The import worker: runs the import jobs the queue hands it, as SQS hands batches to
//! a Lambda (`handle`), and as the local runner's queue loop does with the same event.
//!
//! A job runs the file as the inline import does, in one pass
//! ([`ContractService::import_tracked`]): every row is validated against the register as
//! it is now, and any problem fails the job with every problem and writes nothing. Then
//! the contracts are written, an idempotent upsert by contract number, and `rowsDone`
//! follows the writes (the rows found unchanged count at once).
//!
//! At-least-once delivery: a message for a finished job is acknowledged and ignored; a
//! job cut off half-way (a timeout, a crash) is run again by the next delivery, which
//! finds the contracts written before unchanged and writes the rest (so the counts of
//! a resumed job show those rows as unchanged). A job that keeps failing is marked
//! failed (`interrupted`) on its last delivery ([`MAX_DELIVERIES`], the queue's
//! `maxReceiveCount`).

use crate::import::MAX_IMPORT_BYTES;
use crate::import_csv::read_contracts_csv;
use crate::jobs::JobMessage;
use domain::blobs::{BlobError, BlobKey, Blobs};
use domain::clock::Clock;
use domain::contracts::{ContractError, ContractService};
use domain::import::ImportRow;
use domain::jobs::{ImportJob, JobCounts, JobError, JobFailure, JobService, JobStatus};
use domain::store::Table;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Deliveries of one message before the job is given up (the queue's
/// `maxReceiveCount` in template.yaml and in the local runner).
pub const MAX_DELIVERIES: u32 = 5;

/// An SQS event as Lambda delivers it (the fields the worker reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsMessage>,
}

/// One message of an [`SqsEvent`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessage {
    pub message_id: String,
    #[serde(default)]
    pub receipt_handle: Option<String>,
    pub body: String,
    /// System attributes; `ApproximateReceiveCount` among them.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    #[serde(
        default,
        rename = "eventSourceARN",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_source_arn: Option<String>,
}

impl SqsMessage {
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1)
    }
}

/// The answer to Lambda with `ReportBatchItemFailures`: the messages to deliver again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Contracts(#[from] ContractError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// What the worker works with.
pub struct ImportWorker {
    contracts: ContractService,
    jobs: JobService,
    blobs: Arc<dyn Blobs>,
}

impl ImportWorker {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, blobs: Arc<dyn Blobs>) -> Self {
        Self {
            contracts: ContractService::new(table.clone(), clock.clone()),
            jobs: JobService::new(table, clock),
            blobs,
        }
    }

    /// The import's transactions in flight at once (see
    /// [`crate::aws_env::IMPORT_TRANSACTIONS_IN_FLIGHT`]).
    pub fn with_import_transactions_in_flight(mut self, transactions: usize) -> Self {
        self.contracts = self
            .contracts
            .with_import_transactions_in_flight(transactions);
        self
    }
}

/// Runs the jobs of a batch, one after the other, and names the messages that failed
/// and should come again.
pub async fn handle(event: SqsEvent, worker: &ImportWorker) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for message in event.records {
        if let Err(error) = process(worker, &message).await {
            tracing::warn!(
                %error,
                message_id = %message.message_id,
                deliveries = message.receive_count(),
                "import job: will be retried"
            );
            failures.push(BatchItemFailure {
                item_identifier: message.message_id,
            });
        }
    }
    SqsBatchResponse {
        batch_item_failures: failures,
    }
}

async fn process(worker: &ImportWorker, message: &SqsMessage) -> Result<(), WorkerError> {
    let request: JobMessage = match serde_json::from_str(&message.body) {
        Ok(request) => request,
        Err(error) => {
            // Delivering it again would not make it readable.
            tracing::error!(%error, message_id = %message.message_id, "import job: unreadable message dropped");
            return Ok(());
        }
    };
    let job = match worker.jobs.get(request.tenant_id, request.job_id).await {
        Ok(job) => job,
        Err(JobError::NotFound) => {
            tracing::warn!(job = %request.job_id, "import job: no such job (expired?); message dropped");
            return Ok(());
        }
        Err(other) => return Err(other.into()),
    };
    if job.status.is_finished() {
        tracing::info!(job = %job.id, status = ?job.status, "import job: already finished");
        return Ok(());
    }
    let (tenant, id) = (job.tenant_id, job.id);
    match run(worker, job).await {
        Ok(()) => Ok(()),
        Err(error) if message.receive_count() >= MAX_DELIVERIES => {
            tracing::error!(%error, job = %id, "import job: giving up");
            let mut job = worker.jobs.get(tenant, id).await?;
            if !job.status.is_finished() {
                job.fail(JobFailure::Interrupted, worker.jobs.now());
                worker.jobs.save(job).await?;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Marks the job running; `None` when it turned out finished meanwhile.
///
/// The request that queues a job sends its message first and then saves it `queued`
/// (so no job is ever left without a message), and the worker can read the job before
/// that save lands. Then its own save finds a newer version: it reads the job again
/// rather than failing the delivery, which the queue would hand back only after its
/// retry delay (the visibility timeout in AWS, 10 seconds in the local runner).
async fn mark_running(
    worker: &ImportWorker,
    mut job: ImportJob,
) -> Result<Option<ImportJob>, WorkerError> {
    for _ in 0..MARK_RUNNING_ATTEMPTS {
        let mut running = job.clone();
        running.status = JobStatus::Running;
        running.started_at.get_or_insert(worker.jobs.now());
        running.attempts += 1;
        match worker.jobs.save(running).await {
            Ok(saved) => return Ok(Some(saved)),
            Err(JobError::Contention) => {
                job = worker.jobs.get(job.tenant_id, job.id).await?;
                if job.status.is_finished() {
                    return Ok(None);
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(JobError::Contention.into())
}

/// Saves that may find the job changed by its queueing request before one succeeds.
const MARK_RUNNING_ATTEMPTS: usize = 3;

async fn run(worker: &ImportWorker, job: ImportJob) -> Result<(), WorkerError> {
    let Some(mut job) = mark_running(worker, job).await? else {
        return Ok(());
    };
    tracing::info!(job = %job.id, attempt = job.attempts, "import job: running");

    let key = match BlobKey::parse(&job.upload_key) {
        Ok(key) => key,
        Err(_) => return finish(worker, job, Some(JobFailure::UploadMissing)).await,
    };
    let file = match worker.blobs.get(&key).await {
        Ok(blob) => blob.bytes,
        Err(BlobError::NotFound) => {
            return finish(worker, job, Some(JobFailure::UploadMissing)).await;
        }
        Err(other) => return Err(other.into()),
    };
    if file.len() > MAX_IMPORT_BYTES {
        return finish(worker, job, Some(JobFailure::TooLarge)).await;
    }
    let csv = match read_contracts_csv(&file) {
        Ok(csv) => csv,
        Err(error) => {
            job.failure_reason = Some(error.to_string());
            return finish(worker, job, Some(JobFailure::InvalidFile)).await;
        }
    };
    drop(file);
    let rows: Vec<ImportRow> = csv
        .rows
        .into_iter()
        .map(|row| ImportRow {
            row: row.row,
            contract: row.contract,
            issues: row.issues,
        })
        .collect();
    job.rows_total = Some(rows.len());
    let actor = job.actor();

    if job.dry_run {
        let check = worker.contracts.import(&actor, rows, true).await?;
        if !check.problems.is_empty() {
            job.set_errors(&check.problems);
            return finish(worker, job, Some(JobFailure::InvalidRows)).await;
        }
        job.counts = JobCounts::of(&check);
        job.rows_done = check.rows;
        return finish(worker, job, None).await;
    }
    let mut job = worker.jobs.save(job).await?;

    // One pass over the whole file, as the inline import does: every row is checked
    // before anything is written, and `rowsDone` follows the writes.
    let (progress, mut settled) = tokio::sync::watch::channel(0);
    let import = worker.contracts.import_tracked(&actor, rows, progress);
    let track = async {
        let mut saved = job.rows_done;
        // Ends when the import drops its end of the channel.
        while settled.changed().await.is_ok() {
            let done = *settled.borrow_and_update();
            if done > saved {
                job.rows_done = done;
                job = worker.jobs.save(job.clone()).await?;
                saved = done;
            }
        }
        Ok::<_, WorkerError>(job)
    };
    let (report, tracked) = tokio::join!(import, track);
    let (report, mut job) = (report?, tracked?);
    if !report.problems.is_empty() {
        job.set_errors(&report.problems);
        return finish(worker, job, Some(JobFailure::InvalidRows)).await;
    }
    job.rows_done = report.rows;
    job.counts = JobCounts::of(&report);
    worker
        .contracts
        .record_import(&actor, &report, Some(format!("job:{}", job.id)))
        .await?;
    finish(worker, job, None).await
}

/// Records the outcome and deletes the file (the client has its own copy; the bucket's
/// lifecycle rule would remove it later anyway).
async fn finish(
    worker: &ImportWorker,
    mut job: ImportJob,
    failure: Option<JobFailure>,
) -> Result<(), WorkerError> {
    let now = worker.jobs.now();
    match failure {
        Some(failure) => job.fail(failure, now),
        None => job.succeed(now),
    }
    let job = worker.jobs.save(job).await?;
    tracing::info!(
        job = %job.id,
        status = ?job.status,
        failure = ?job.failure,
        rows = job.rows_done,
        created = job.counts.created,
        updated = job.counts.updated,
        unchanged = job.counts.unchanged,
        "import job: finished"
    );
    if let Ok(key) = BlobKey::parse(&job.upload_key)
        && let Err(error) = worker.blobs.delete(&key).await
    {
        tracing::warn!(%error, job = %job.id, "import job: the file could not be deleted");
    }
    Ok(())
}
