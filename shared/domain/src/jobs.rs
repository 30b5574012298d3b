//! Import jobs: a CSV import too large for one request, run by a worker from a queue,
//! with its progress kept in the table for `GET /jobs/{id}`.
//!
//! Record: `T#<tenant>` / `JOB#<job>` (see [`crate::keys`]), expiring 30 days after it
//! was created (TTL, also checked on read). Access patterns: the caller reads one job by
//! id (a get, tenant-scoped, so another organization's job is simply not there); the
//! worker reads and rewrites it by id. No list, so no index.
//!
//! Life cycle: `awaitingUpload` (made with a presigned upload URL) → `queued` (the file
//! is stored and a message is on the queue) → `running` → `succeeded` or `failed`.
//! Every write is conditional on the version read, so two deliveries of one message
//! cannot both move the job. Row errors are stored without their text (code and
//! parameters) and rendered in the reader's language.

use crate::access::Role;
use crate::audit::{Actor, RequestInfo};
use crate::clock::Clock;
use crate::ids::{JobId, TenantId, UserId};
use crate::import::{ImportReport, RowProblem};
use crate::keys;
use crate::store::{Condition, Item, StoreError, Table, from_item, to_attributes};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a job can be read after it was created.
pub const JOB_TTL_DAYS: i64 = 30;
/// The most row errors a job keeps (the count of all is kept too): a DynamoDB item is
/// limited to 400 KB.
pub const MAX_STORED_ERRORS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobKind {
    ContractImport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    /// Waiting for the file at the presigned URL, then `POST /jobs/{id}/start`.
    AwaitingUpload,
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// Why a job failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobFailure {
    /// Rows are invalid; nothing was written (`errors` lists them).
    InvalidRows,
    /// The file is not a contract CSV.
    InvalidFile,
    /// The file is larger than an import takes.
    TooLarge,
    /// The uploaded file was not there when the job ran.
    UploadMissing,
    /// The job failed again and again (the store was unavailable); the contracts
    /// written before stay, and importing the file again completes it.
    Interrupted,
}

impl JobFailure {
    pub fn code(self) -> &'static str {
        match self {
            JobFailure::InvalidRows => "invalid-rows",
            JobFailure::InvalidFile => "invalid-file",
            JobFailure::TooLarge => "too-large",
            JobFailure::UploadMissing => "upload-missing",
            JobFailure::Interrupted => "interrupted",
        }
    }
}

/// One problem of one row, stored without its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRowError {
    pub row: usize,
    pub pointer: String,
    pub code: String,
    /// The values the message interpolates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

impl From<&RowProblem> for JobRowError {
    fn from(problem: &RowProblem) -> Self {
        Self {
            row: problem.row,
            pointer: problem.pointer.clone(),
            code: problem.issue.code().to_owned(),
            params: problem
                .issue
                .params()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }
}

/// What the job wrote (or, for a dry run, would write) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl JobCounts {
    pub fn of(report: &ImportReport) -> Self {
        Self {
            created: report.created,
            updated: report.updated,
            unchanged: report.unchanged,
        }
    }
}

/// Who started the job, from where: the worker acts as them and audits so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOwner {
    pub user_id: UserId,
    pub role: Role,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A contract import job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportJob {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub status: JobStatus,
    pub dry_run: bool,
    /// Where the file is (a blob key).
    pub upload_key: String,
    /// Data rows in the file, known once it is read.
    pub rows_total: Option<usize>,
    /// Rows imported so far.
    pub rows_done: usize,
    pub counts: JobCounts,
    /// The first [`MAX_STORED_ERRORS`] row problems.
    pub errors: Vec<JobRowError>,
    pub errors_total: usize,
    pub failure: Option<JobFailure>,
    /// Technical detail of an `invalid-file` failure (what the reader could not read).
    pub failure_reason: Option<String>,
    pub started_by: JobOwner,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Runs of the worker on this job (a run after a crash finds the rows written before
    /// unchanged and goes on).
    pub attempts: u32,
    /// Optimistic-concurrency version of the stored record.
    #[serde(skip)]
    pub version: u64,
}

impl ImportJob {
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.created_at + chrono::Duration::days(JOB_TTL_DAYS)
    }

    /// The actor the worker imports as: the user who started the job.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant: self.tenant_id,
            user: self.started_by.user_id,
            role: self.started_by.role,
            request: RequestInfo {
                request_id: self.started_by.request_id.clone(),
                source_ip: self.started_by.source_ip.clone(),
                user_agent: self.started_by.user_agent.clone(),
            },
        }
    }

    /// Records row problems, keeping the first [`MAX_STORED_ERRORS`].
    pub fn set_errors(&mut self, problems: &[RowProblem]) {
        self.errors_total = problems.len();
        self.errors = problems
            .iter()
            .take(MAX_STORED_ERRORS)
            .map(JobRowError::from)
            .collect();
    }

    pub fn fail(&mut self, failure: JobFailure, now: DateTime<Utc>) {
        self.status = JobStatus::Failed;
        self.failure = Some(failure);
        self.finished_at = Some(now);
    }

    pub fn succeed(&mut self, now: DateTime<Utc>) {
        self.status = JobStatus::Succeeded;
        self.finished_at = Some(now);
    }

    fn item(&self) -> Result<Item, StoreError> {
        Ok(
            Item::new(keys::job(self.tenant_id, self.id), to_attributes(self)?)
                .with_version(self.version)
                .expiring_at(self.expires_at().timestamp()),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no such job")]
    NotFound,
    /// The job changed since it was read (another delivery of its message).
    #[error("the job changed concurrently")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads and writes import jobs.
pub struct JobService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
}

impl JobService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A new import job for `actor`'s organization, its file to be at `upload_key`.
    pub async fn create(
        &self,
        actor: &Actor,
        id: JobId,
        upload_key: String,
        status: JobStatus,
        dry_run: bool,
    ) -> Result<ImportJob, JobError> {
        let now = self.clock.now();
        let job = ImportJob {
            id,
            tenant_id: actor.tenant,
            kind: JobKind::ContractImport,
            status,
            dry_run,
            upload_key,
            rows_total: None,
            rows_done: 0,
            counts: JobCounts::default(),
            errors: Vec::new(),
            errors_total: 0,
            failure: None,
            failure_reason: None,
            started_by: JobOwner {
                user_id: actor.user,
                role: actor.role,
                request_id: actor.request.request_id.clone(),
                source_ip: actor.request.source_ip.clone(),
                user_agent: actor.request.user_agent.clone(),
            },
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            attempts: 0,
            version: 1,
        };
        self.table.put(job.item()?, Condition::NotExists).await?;
        Ok(job)
    }

    /// The job, unless it is missing, expired or another organization's.
    pub async fn get(&self, tenant: TenantId, id: JobId) -> Result<ImportJob, JobError> {
        let item = self
            .table
            .get(&keys::job(tenant, id))
            .await?
            .ok_or(JobError::NotFound)?;
        if item.is_expired(self.clock.now().timestamp()) {
            return Err(JobError::NotFound);
        }
        let version = item.version;
        let mut job: ImportJob = from_item(item)?;
        job.version = version;
        Ok(job)
    }

    /// Stores `job` if nobody changed it since it was read; returns it at its new
    /// version.
    pub async fn save(&self, mut job: ImportJob) -> Result<ImportJob, JobError> {
        let read = job.version;
        job.updated_at = self.clock.now();
        job.version = read + 1;
        match self
            .table
            .put(job.item()?, Condition::VersionIs(read))
            .await
        {
            Ok(()) => Ok(job),
            Err(StoreError::ConditionFailed) => Err(JobError::Contention),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::validation::FieldIssue;

    struct MemoryTable(std::sync::Mutex<std::collections::HashMap<crate::store::Key, Item>>);

    #[async_trait::async_trait]
    impl Table for MemoryTable {
        async fn get(&self, key: &crate::store::Key) -> Result<Option<Item>, StoreError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
            let mut items = self.0.lock().unwrap();
            let current = items.get(&item.key);
            let holds = match condition {
                Condition::None => true,
                Condition::NotExists => current.is_none(),
                Condition::VersionIs(v) => current.is_some_and(|c| c.version == v),
                _ => unreachable!("not used by jobs"),
            };
            if !holds {
                return Err(StoreError::ConditionFailed);
            }
            items.insert(item.key.clone(), item);
            Ok(())
        }
        async fn update(&self, _: crate::store::Update) -> Result<Item, StoreError> {
            unreachable!()
        }
        async fn delete(
            &self,
            _: &crate::store::Key,
            _: Condition,
        ) -> Result<Option<Item>, StoreError> {
            unreachable!()
        }
        async fn query(&self, _: crate::store::Query) -> Result<crate::store::Page, StoreError> {
            unreachable!()
        }
        async fn transact_write(&self, _: Vec<crate::store::WriteOp>) -> Result<(), StoreError> {
            unreachable!()
        }
    }

    fn actor() -> Actor {
        Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Editor,
            request: RequestInfo {
                request_id: Some("req-1".into()),
                ..RequestInfo::default()
            },
        }
    }

    #[tokio::test]
    async fn a_job_is_tenant_scoped_versioned_and_expires() {
        let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
        let table = Arc::new(MemoryTable(Default::default()));
        let jobs = JobService::new(table, clock.clone());
        let actor = actor();
        let id = JobId::generate();
        let job = jobs
            .create(&actor, id, "imports/x.csv".into(), JobStatus::Queued, false)
            .await
            .unwrap();
        assert_eq!(job.actor(), actor);
        let read = jobs.get(actor.tenant, id).await.unwrap();
        assert_eq!(read, job);
        assert!(matches!(
            jobs.get(TenantId::generate(), id).await,
            Err(JobError::NotFound)
        ));

        let mut running = read.clone();
        running.status = JobStatus::Running;
        let problems = vec![
            RowProblem {
                row: 2,
                pointer: "/payment/amount".into(),
                issue: FieldIssue::TooPrecise { max_decimals: 2 },
            };
            MAX_STORED_ERRORS + 5
        ];
        running.set_errors(&problems);
        let saved = jobs.save(running).await.unwrap();
        assert_eq!(saved.version, 2);
        assert_eq!(saved.errors.len(), MAX_STORED_ERRORS);
        assert_eq!(saved.errors_total, MAX_STORED_ERRORS + 5);
        assert_eq!(saved.errors[0].params["maxDecimals"], "2");
        // A second writer holding the old version loses.
        assert!(matches!(jobs.save(read).await, Err(JobError::Contention)));
        assert_eq!(jobs.get(actor.tenant, id).await.unwrap(), saved);

        clock.set(job.expires_at());
        assert!(matches!(
            jobs.get(actor.tenant, id).await,
            Err(JobError::NotFound)
        ));
    }
}
