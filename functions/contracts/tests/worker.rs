//! Handler tests of the import worker: the sample SQS event in
//! `events/contracts/import-worker.json` fed to `contracts::handle`, on the embedded
//! table and folder blobs, as Lambda would hand it over.

use adapters::embedded::{FolderBlobs, SqliteTable};
use contracts::{ImportWorker, SqsEvent, handle};
use domain::access::Role;
use domain::audit::{Actor, RequestInfo};
use domain::blobs::{BlobKey, Blobs};
use domain::clock::FixedClock;
use domain::ids::{JobId, TenantId, UserId};
use domain::jobs::{ImportJob, JobFailure, JobService, JobStatus};
use domain::store::{Condition, Item, Query, Table, query_all};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use testkit::{HookedTable, TableHooks};

struct Harness {
    table: Arc<dyn Table>,
    blobs: Arc<dyn Blobs>,
    jobs: JobService,
    clock: Arc<FixedClock>,
    actor: Actor,
    _data: tempfile::TempDir,
}

fn harness() -> Harness {
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let table: Arc<dyn Table> =
        Arc::new(SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let blobs: Arc<dyn Blobs> =
        Arc::new(FolderBlobs::open(&data.path().join("blobs"), "http://127.0.0.1:9").unwrap());
    Harness {
        jobs: JobService::new(table.clone(), clock.clone()),
        table,
        blobs,
        clock,
        actor: Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Editor,
            request: RequestInfo {
                request_id: Some("cQ4amh3lArMEJBw=".into()),
                source_ip: Some("198.51.100.23".into()),
                user_agent: None,
            },
        },
        _data: data,
    }
}

fn csv(numbers: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut file = String::from(
        "contractNumber;lessor;description;category;startDate;endDate;payment;currency;paymentFrequency;paymentTiming;interestRate\r\n",
    );
    for n in numbers {
        file.push_str(&format!(
            "W-{n:05};Skåne Leasing AB;Truck {n};vehicle;2025-01-01;2029-12-31;6 899,00;SEK;monthly;advance;4,95\r\n"
        ));
    }
    file.into_bytes()
}

impl Harness {
    fn worker(&self) -> ImportWorker {
        ImportWorker::new(self.table.clone(), self.clock.clone(), self.blobs.clone())
    }

    async fn job_with_file(&self, file: Vec<u8>, dry_run: bool) -> ImportJob {
        let id = JobId::generate();
        let key = BlobKey::parse(&format!("imports/{}/{id}.csv", self.actor.tenant)).unwrap();
        self.blobs.put(&key, file, "text/csv").await.unwrap();
        self.jobs
            .create(&self.actor, id, key.to_string(), JobStatus::Queued, dry_run)
            .await
            .unwrap()
    }

    /// The sample event, naming `job`.
    fn event(&self, job: &ImportJob) -> SqsEvent {
        let file = format!(
            "{}/../../events/contracts/import-worker.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("{{tenantId}}", &job.tenant_id.to_string())
            .replace("{{jobId}}", &job.id.to_string());
        serde_json::from_str(&text).expect("an SQS event")
    }

    async fn job(&self, job: &ImportJob) -> ImportJob {
        self.jobs.get(job.tenant_id, job.id).await.unwrap()
    }

    async fn contract_numbers(&self) -> Vec<String> {
        let items = query_all(
            self.table.as_ref(),
            Query::partition(format!("T#{}", self.actor.tenant))
                .begins_with("CONTRACT#")
                .limit(1000),
        )
        .await
        .unwrap();
        let mut numbers: Vec<String> = items
            .into_iter()
            .map(|item| {
                item.attributes["contractNumber"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        numbers.sort();
        numbers
    }

    async fn audit_actions(&self) -> Vec<String> {
        query_all(
            self.table.as_ref(),
            Query::partition(format!("T#{}", self.actor.tenant))
                .begins_with("AUDIT#")
                .limit(1000),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|item| item.attributes["action"].as_str().unwrap().to_owned())
        .collect()
    }
}

#[tokio::test]
async fn the_sample_event_runs_the_job_once() {
    let harness = harness();
    let job = harness.job_with_file(csv(1..=10), false).await;
    let worker = harness.worker();

    let response = handle(harness.event(&job), &worker).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let done = harness.job(&job).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!((done.rows_total, done.rows_done), (Some(10), 10));
    assert_eq!(
        (
            done.counts.created,
            done.counts.updated,
            done.counts.unchanged
        ),
        (10, 0, 0)
    );
    assert_eq!(done.attempts, 1);
    assert_eq!(harness.contract_numbers().await.len(), 10);
    // Created, saved as running, rows counted, the rows written, finished.
    assert_eq!(done.version, 1 + 1 + 1 + 1 + 1);
    let actions = harness.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "contract.created").count(),
        10
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "contracts.imported")
            .count(),
        1
    );
    // The file is gone once the job has finished.
    let key = BlobKey::parse(&done.upload_key).unwrap();
    assert!(harness.blobs.head(&key).await.is_err());

    // The same message again (at-least-once delivery): nothing happens.
    let response = handle(harness.event(&job), &worker).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(harness.job(&job).await, done);
    assert_eq!(harness.audit_actions().await.len(), actions.len());

    // The same file in a new job changes nothing.
    let again = harness.job_with_file(csv(1..=10), false).await;
    handle(harness.event(&again), &worker).await;
    let again = harness.job(&again).await;
    assert_eq!(again.status, JobStatus::Succeeded);
    assert_eq!(
        (
            again.counts.created,
            again.counts.updated,
            again.counts.unchanged
        ),
        (0, 0, 10)
    );
}

#[tokio::test]
async fn an_interrupted_job_runs_again_and_writes_the_rest() {
    let harness = harness();
    // As a worker cut off after writing six of ten contracts left it.
    let first = harness.job_with_file(csv(1..=6), false).await;
    handle(harness.event(&first), &harness.worker()).await;
    let job = harness.job_with_file(csv(1..=10), false).await;
    let mut interrupted = harness.job(&job).await;
    interrupted.status = JobStatus::Running;
    interrupted.rows_total = Some(10);
    interrupted.rows_done = 6;
    interrupted.counts.created = 6;
    interrupted.attempts = 1;
    harness.jobs.save(interrupted).await.unwrap();

    let mut event = harness.event(&job);
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    let response = handle(event, &harness.worker()).await;
    assert!(response.batch_item_failures.is_empty());
    let done = harness.job(&job).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    // The six written before are found unchanged; only the last four are written.
    assert_eq!(
        (
            done.rows_done,
            done.counts.created,
            done.counts.unchanged,
            done.attempts
        ),
        (10, 4, 6, 2)
    );
    assert_eq!(harness.contract_numbers().await.len(), 10);
    let actions = harness.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "contract.created").count(),
        6 + 4
    );
}

#[tokio::test]
async fn invalid_rows_fail_the_job_and_write_nothing() {
    let harness = harness();
    let mut file = csv(1..=8);
    file.extend_from_slice(
        "W-00009;;Truck;vehicle;2025-01-01;2029-12-31;6 899,00;SEK;monthly;advance;4,95\r\n\
         W-00001;Skåne Leasing AB;Duplicate;vehicle;2025-01-01;2029-12-31;1,00;SEK;monthly;advance;4,95\r\n"
            .as_bytes(),
    );
    let job = harness.job_with_file(file, false).await;
    let response = handle(harness.event(&job), &harness.worker()).await;
    assert!(response.batch_item_failures.is_empty());
    let failed = harness.job(&job).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.failure, Some(JobFailure::InvalidRows));
    let errors: Vec<(usize, &str, &str)> = failed
        .errors
        .iter()
        .map(|e| (e.row, e.pointer.as_str(), e.code.as_str()))
        .collect();
    assert!(errors.contains(&(10, "/lessor", "required")), "{errors:?}");
    assert!(
        errors.contains(&(11, "/contractNumber", "already_in_use")),
        "{errors:?}"
    );
    assert_eq!(failed.errors_total, errors.len());
    assert_eq!(failed.rows_done, 0);
    assert!(harness.contract_numbers().await.is_empty());
}

#[tokio::test]
async fn a_dry_run_reports_and_a_bad_file_or_message_fails_cleanly() {
    let harness = harness();
    let dry = harness.job_with_file(csv(1..=4), true).await;
    handle(harness.event(&dry), &harness.worker()).await;
    let dry = harness.job(&dry).await;
    assert_eq!(dry.status, JobStatus::Succeeded);
    assert_eq!((dry.counts.created, dry.rows_done), (4, 4));
    assert!(harness.contract_numbers().await.is_empty());

    let not_csv = harness
        .job_with_file(b"PK\x03\x04\x00\x00binary".to_vec(), false)
        .await;
    handle(harness.event(&not_csv), &harness.worker()).await;
    let not_csv = harness.job(&not_csv).await;
    assert_eq!(not_csv.failure, Some(JobFailure::InvalidFile));
    assert!(not_csv.failure_reason.is_some());

    // A message naming no job, or no JSON at all, is dropped, not retried for ever.
    let mut unknown = harness.event(&not_csv);
    unknown.records[0].body = format!(
        r#"{{"tenantId":"{}","jobId":"{}"}}"#,
        harness.actor.tenant,
        JobId::generate()
    );
    assert!(
        handle(unknown.clone(), &harness.worker())
            .await
            .batch_item_failures
            .is_empty()
    );
    unknown.records[0].body = "not json".into();
    assert!(
        handle(unknown, &harness.worker())
            .await
            .batch_item_failures
            .is_empty()
    );
}

/// The request that queued a job saves it `queued` at the worst moment: after the
/// worker read the job, just before the worker's first save of it.
struct QueuedMeanwhile {
    jobs: JobService,
    job: (TenantId, JobId),
    fired: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl TableHooks for QueuedMeanwhile {
    async fn before_put(&self, item: &Item, _: &Condition) {
        if item.key.sk.starts_with("JOB#") && !self.fired.swap(true, Ordering::SeqCst) {
            let mut queued = self.jobs.get(self.job.0, self.job.1).await.unwrap();
            queued.status = JobStatus::Queued;
            self.jobs.save(queued).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_job_saved_queued_after_the_worker_read_it_still_runs_at_once() {
    let h = harness();
    let job = h
        .jobs
        .create(
            &h.actor,
            JobId::generate(),
            String::new(),
            JobStatus::AwaitingUpload,
            false,
        )
        .await
        .unwrap();
    let key = BlobKey::parse(&format!("imports/{}/{}.csv", h.actor.tenant, job.id)).unwrap();
    h.blobs.put(&key, csv(1..=3), "text/csv").await.unwrap();
    let mut job = job;
    job.upload_key = key.to_string();
    let job = h.jobs.save(job).await.unwrap();

    let racing: Arc<dyn Table> = Arc::new(HookedTable {
        inner: h.table.clone(),
        hooks: QueuedMeanwhile {
            jobs: JobService::new(h.table.clone(), h.clock.clone()),
            job: (job.tenant_id, job.id),
            fired: Default::default(),
        },
    });
    let worker = ImportWorker::new(racing, h.clock.clone(), h.blobs.clone());
    let response = handle(h.event(&job), &worker).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the delivery failed: {response:?}"
    );
    let done = h.job(&job).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        h.contract_numbers().await,
        ["W-00001", "W-00002", "W-00003"]
    );
}
