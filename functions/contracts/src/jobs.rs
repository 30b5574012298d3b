//! Import jobs over HTTP: a file of any size uploaded to a presigned URL and imported by
//! the worker (`POST /contracts/import/jobs`, then `PUT` to the URL, then
//! `POST /jobs/{id}/start`), a large body posted to `POST /contracts/import` turned into
//! such a job, and the job's progress (`GET /jobs/{id}`).

use crate::ContractsState;
use crate::import::MAX_IMPORT_BYTES;
use api::i18n::Lang;
use api::problem::{InvalidValue, ProblemDocument};
use api::{ApiError, Caller};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::access::Permission;
use domain::audit::Actor;
use domain::blobs::{BlobError, BlobKey, Blobs};
use domain::ids::{JobId, TenantId, UserId};
use domain::jobs::{ImportJob, JobCounts, JobFailure, JobKind, JobStatus};
use domain::queue::Queue;
use domain::validation::FieldIssue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// The largest body `POST /contracts/import` imports in the request itself; a larger
/// one becomes a job (202). 1 MiB is about 6,000 rows: well under Lambda's 6 MB request
/// limit, and an import that size finishes well within the API's 29-second timeout.
pub const INLINE_IMPORT_MAX_BYTES: usize = 1024 * 1024;
/// How long a presigned upload URL stays valid.
const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// What an uploaded file is stored as (the client sends it with the presigned PUT).
pub(crate) const UPLOAD_CONTENT_TYPE: &str = "text/csv";

/// The ports a large import needs: the file goes to `blobs`, a message per job to
/// `queue`, which the import worker reads.
#[derive(Clone)]
pub struct ImportPorts {
    pub blobs: Arc<dyn Blobs>,
    pub queue: Arc<dyn Queue>,
}

/// The queue message that asks the worker to run a job.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobMessage {
    pub tenant_id: TenantId,
    pub job_id: JobId,
}

/// Where a job's file is kept: under the tenant, so a bucket policy or a lifecycle rule
/// can name one organization's files.
pub(crate) fn upload_key(tenant: TenantId, job: JobId) -> Result<BlobKey, ApiError> {
    let folder = domain::blobs::tenant_folder(domain::blobs::IMPORTS_AREA, tenant)
        .map_err(ApiError::internal)?;
    BlobKey::parse(&format!("{folder}/{job}.csv")).map_err(ApiError::internal)
}

fn blob_error(error: BlobError) -> ApiError {
    match error {
        BlobError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "blob store unavailable");
            ApiError::Unavailable
        }
        other => ApiError::internal(other),
    }
}

/// An import job and its progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Only validate and report (`created`, `updated`, `unchanged` say what an import
    /// would do); nothing is written.
    pub dry_run: bool,
    /// Data rows in the file, once the worker has read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_total: Option<usize>,
    /// Rows imported so far.
    pub rows_done: usize,
    /// So far; the final report once `succeeded`.
    #[serde(flatten)]
    pub counts: JobCounts,
    /// Row problems (the first 1,000; `errorsTotal` counts all). With any, a real
    /// import fails and writes nothing.
    pub errors: Vec<JobRowProblem>,
    pub errors_total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<JobFailureView>,
    #[schema(value_type = String, format = Uuid)]
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// After this the job is gone.
    pub expires_at: DateTime<Utc>,
}

/// One problem of one row of the file.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRowProblem {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: usize,
    /// The field as a JSON pointer of `POST /contracts`.
    pub pointer: String,
    pub code: String,
    /// The problem in the caller's language.
    pub detail: String,
}

/// Why the job failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFailureView {
    /// `invalid-rows`, `invalid-file`, `too-large`, `upload-missing` or `interrupted`.
    pub code: String,
    /// What happened and what to do, in the caller's language.
    pub detail: String,
}

impl Job {
    pub fn render(job: &ImportJob, lang: Lang) -> Self {
        let failure = job.failure.map(|failure| {
            let params = match failure {
                JobFailure::InvalidRows => vec![("count", job.errors_total.to_string())],
                JobFailure::InvalidFile => {
                    vec![("reason", job.failure_reason.clone().unwrap_or_default())]
                }
                JobFailure::TooLarge => vec![("max", MAX_IMPORT_BYTES.to_string())],
                JobFailure::UploadMissing | JobFailure::Interrupted => Vec::new(),
            };
            JobFailureView {
                code: failure.code().to_owned(),
                detail: api::i18n::message(
                    lang,
                    &format!("job.failure.{}", failure.code()),
                    &params,
                ),
            }
        });
        Self {
            id: job.id,
            kind: job.kind,
            status: job.status,
            dry_run: job.dry_run,
            rows_total: job.rows_total,
            rows_done: job.rows_done,
            counts: job.counts,
            errors: job
                .errors
                .iter()
                .map(|error| {
                    let params: Vec<(&str, String)> = error
                        .params
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.clone()))
                        .collect();
                    JobRowProblem {
                        row: error.row,
                        pointer: error.pointer.clone(),
                        code: error.code.clone(),
                        detail: api::i18n::message(lang, &format!("field.{}", error.code), &params),
                    }
                })
                .collect(),
            errors_total: job.errors_total,
            failure,
            created_by: job.started_by.user_id,
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            expires_at: job.expires_at(),
        }
    }
}

/// Where and how to upload the file: send exactly this request, the file as its body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub url: String,
    #[schema(example = "PUT")]
    pub method: String,
    /// Headers the request must carry as they are (they are signed).
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// A new job waiting for its file.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJob {
    pub job: Job,
    pub upload: Upload,
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

fn ports(state: &ContractsState) -> Result<&ImportPorts, ApiError> {
    state.imports.as_ref().ok_or_else(|| {
        tracing::error!("import jobs are not configured (no blob store or queue)");
        ApiError::Unavailable
    })
}

/// `dryRun` is the only parameter.
pub(crate) fn dry_run_parameter(params: Vec<(String, String)>) -> Result<bool, ApiError> {
    let mut dry_run = false;
    for (name, value) in params {
        match (name.as_str(), value.as_str()) {
            ("dryRun", "true") => dry_run = true,
            ("dryRun", "false") => dry_run = false,
            ("dryRun", _) => {
                return Err(ApiError::InvalidParameters(vec![InvalidValue::parameter(
                    "dryRun",
                    FieldIssue::InvalidChoice {
                        allowed: &["true", "false"],
                    },
                )]));
            }
            _ => {
                return Err(ApiError::InvalidParameters(vec![InvalidValue::parameter(
                    &name,
                    FieldIssue::UnknownField,
                )]));
            }
        }
    }
    Ok(dry_run)
}

fn with_location(status: StatusCode, id: JobId, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/jobs/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Puts the job's message on the queue, then marks it queued. The message goes first:
/// a job without one would wait for ever, while a message for a job not yet marked is
/// run all the same (a message exists only once the file is stored).
async fn enqueue(
    state: &ContractsState,
    ports: &ImportPorts,
    mut job: ImportJob,
) -> Result<ImportJob, ApiError> {
    let message = serde_json::to_string(&JobMessage {
        tenant_id: job.tenant_id,
        job_id: job.id,
    })
    .map_err(ApiError::internal)?;
    ports
        .queue
        .send(&message, Duration::ZERO)
        .await
        .map_err(|error| {
            tracing::warn!(%error, job = %job.id, "the import queue is unavailable");
            ApiError::Unavailable
        })?;
    job.status = JobStatus::Queued;
    match state.jobs.save(job.clone()).await {
        Ok(saved) => Ok(saved),
        // The worker got to it first: show where it is now.
        Err(domain::jobs::JobError::Contention) => {
            Ok(state.jobs.get(job.tenant_id, job.id).await?)
        }
        Err(other) => Err(other.into()),
    }
}

/// A file posted to `POST /contracts/import` too large to import in the request: stored
/// and queued as a job. Answers 202 with the job and `Location: /jobs/{id}`.
pub(crate) async fn import_as_job(
    state: &ContractsState,
    actor: &Actor,
    lang: Lang,
    file: Vec<u8>,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let Some(ports) = state.imports.as_ref() else {
        return Err(ApiError::PayloadTooLarge {
            max: INLINE_IMPORT_MAX_BYTES,
        });
    };
    let id = JobId::generate();
    let key = upload_key(actor.tenant, id)?;
    ports
        .blobs
        .put(&key, file, UPLOAD_CONTENT_TYPE)
        .await
        .map_err(blob_error)?;
    let job = state
        .jobs
        .create(
            actor,
            id,
            key.to_string(),
            JobStatus::AwaitingUpload,
            dry_run,
        )
        .await?;
    let job = enqueue(state, ports, job).await?;
    Ok(with_location(
        StatusCode::ACCEPTED,
        job.id,
        Job::render(&job, lang),
    ))
}

/// Start an import job for a file of any size.
///
/// Answers the job (`awaitingUpload`) and a presigned upload: `PUT` the CSV file to
/// `upload.url` with `upload.headers` within 15 minutes, then `POST /jobs/{id}/start`.
/// The file is checked and imported as `POST /contracts/import` does (every row
/// validated first; any problem and nothing is written), by a worker; follow it with
/// `GET /jobs/{id}`.
#[utoipa::path(
    post,
    path = "/contracts/import/jobs",
    tag = "contracts",
    security(("bearer" = [])),
    params(("dryRun" = Option<bool>, Query, description = "Validate and report, write nothing")),
    responses(
        (status = 201, description = "The job and where to upload its file", body = CreatedJob,
            headers(("location" = String, description = "The job"))),
        (status = 400, description = "Unknown or invalid parameter",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not import",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_job(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: Lang,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::WriteContracts)?;
    let dry_run = dry_run_parameter(params)?;
    let ports = ports(&state)?;
    let actor = caller.actor();
    let id = JobId::generate();
    let key = upload_key(actor.tenant, id)?;
    let upload = ports
        .blobs
        .presign_put(&key, UPLOAD_CONTENT_TYPE, UPLOAD_URL_LIFETIME)
        .await
        .map_err(blob_error)?;
    let job = state
        .jobs
        .create(
            &actor,
            id,
            key.to_string(),
            JobStatus::AwaitingUpload,
            dry_run,
        )
        .await?;
    Ok(with_location(
        StatusCode::CREATED,
        job.id,
        CreatedJob {
            job: Job::render(&job, lang),
            upload: Upload {
                url: upload.url,
                method: upload.method,
                headers: upload.headers.into_iter().collect(),
                expires_at: upload.expires_at,
            },
        },
    ))
}

/// Start a job whose file has been uploaded.
///
/// Queues the import and answers 202. Starting a job that already started changes
/// nothing and answers it as it is.
#[utoipa::path(
    post,
    path = "/jobs/{id}/start",
    tag = "contracts",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses(
        (status = 202, description = "Queued (or already started)", body = Job,
            headers(("location" = String, description = "The job"))),
        (status = 403, description = "The role may not import",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such job",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "The file has not been uploaded",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The file is larger than an import takes; the job failed",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_job(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: Lang,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::WriteContracts)?;
    let job = state.jobs.get(caller.tenant, job_id(&id)?).await?;
    if job.status != JobStatus::AwaitingUpload {
        return Ok(with_location(
            StatusCode::ACCEPTED,
            job.id,
            Job::render(&job, lang),
        ));
    }
    let ports = ports(&state)?;
    let key = BlobKey::parse(&job.upload_key).map_err(ApiError::internal)?;
    let info = match ports.blobs.head(&key).await {
        Ok(info) => info,
        Err(BlobError::NotFound) => return Err(ApiError::UploadMissing),
        Err(other) => return Err(blob_error(other)),
    };
    if info.size > MAX_IMPORT_BYTES as u64 {
        let mut failed = job;
        failed.fail(JobFailure::TooLarge, state.jobs.now());
        state.jobs.save(failed).await?;
        if let Err(error) = ports.blobs.delete(&key).await {
            tracing::warn!(%error, "could not delete a file too large to import");
        }
        return Err(ApiError::PayloadTooLarge {
            max: MAX_IMPORT_BYTES,
        });
    }
    let job = enqueue(&state, ports, job).await?;
    Ok(with_location(
        StatusCode::ACCEPTED,
        job.id,
        Job::render(&job, lang),
    ))
}

/// An import job's status and progress: rows done of rows total, the row problems in
/// the caller's language, and the report once it has finished.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "contracts",
    security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job (or another organization's)",
            body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_job(
    State(state): State<ContractsState>,
    caller: Caller,
    lang: Lang,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    // The same permission as the import itself: a job is an import's result.
    caller.require(Permission::WriteContracts)?;
    let job = state.jobs.get(caller.tenant, job_id(&id)?).await?;
    Ok(Json(Job::render(&job, lang)))
}
