//! The retention job through the real adapters: DynamoDB, S3 and Secrets Manager (the
//! real SDK against moto on loopback) and SQLite with the folder store and vault. An
//! organization with an import, a dashboard, a waiting file, a single sign-on client
//! secret, a verified single sign-on domain and an audit trail longer than one removal
//! page is warned and then removed; another one stays. Both stores must end the same
//! way.

mod support;

use adapters::aws::{S3Blobs, SecretsManagerVault};
use adapters::embedded::{FolderBlobs, FolderSecrets, Outbox, SqliteTable};
use domain::access::Role;
use domain::accounts::{AccountService, Email, SignUpRequest, User};
use domain::audit::{Actor, AuditEvent, RequestInfo};
use domain::blobs::{BlobKey, Blobs, IMPORTS_AREA, tenant_folder};
use domain::clock::FixedClock;
use domain::contracts::ContractService;
use domain::import::ImportRow;
use domain::keys;
use domain::mail::{Mail, MailError, Sender};
use domain::organization::{Organization, luhn_check_digit};
use domain::portfolio::PortfolioService;
use domain::retention::{RetentionPolicy, RetentionService, WarningMail};
use domain::secrets::SecretVault;
use domain::store::{Condition, Index, Item, Query, Table, query_all};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

struct PlainWarning;

impl WarningMail for PlainWarning {
    fn retention_warning(
        &self,
        owner: &User,
        organization: &Organization,
        deletion_date: chrono::NaiveDate,
    ) -> Result<Mail, MailError> {
        Mail::new(
            owner.email.clone(),
            format!("{} will be deleted on {deletion_date}", organization.name),
            "The retention period is ending.",
        )
    }
}

/// A signed-up organization: its id and the owner's address.
async fn sign_up(table: Arc<dyn Table>, clock: Arc<FixedClock>) -> (Actor, String) {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    // Each test binary has its own moto, and each store is fresh.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = format!("5563{n:05}");
    let digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    let number = format!("{}-{}{}", &base[..6], &base[6..], luhn_check_digit(&digits));
    let email = format!("owner{n}@retention.example.se");
    let (organization, owner) = AccountService::new(table, clock)
        .sign_up(
            SignUpRequest {
                organization_name: format!("Retention {n} AB"),
                organization_number: number,
                name: "Anna Lind".into(),
                email: email.clone(),
                password: "Vinterljus-over-Kiruna-2026".into(),
            },
            RequestInfo::default(),
        )
        .await
        .unwrap();
    let actor = Actor {
        tenant: organization.id,
        user: owner.id,
        role: Role::Owner,
        request: RequestInfo::default(),
    };
    (actor, email)
}

/// The name of `tenant`'s single sign-on client secret.
fn secret_name(tenant: domain::ids::TenantId) -> String {
    format!("retention-test/sso/{tenant}")
}

/// The single sign-on domain an organization verifies.
fn sso_domain(tenant: domain::ids::TenantId) -> String {
    format!("org-{tenant}.se")
}

/// A DNS with the records the test published; the DNS adapter has its own test.
#[derive(Default)]
struct PublishedRecords(std::sync::Mutex<std::collections::HashMap<String, String>>);

#[async_trait::async_trait]
impl domain::dns::DnsResolver for PublishedRecords {
    async fn txt_records(&self, name: &str) -> Result<Vec<String>, domain::dns::DnsError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .into_iter()
            .collect())
    }
}

/// Three contracts through the import, the dashboard, a waiting file, single sign-on
/// settings with their secret, a verified domain and, so that the partition takes more
/// than one page to remove, 120 audit events.
async fn business(
    table: Arc<dyn Table>,
    clock: Arc<FixedClock>,
    (blobs, vault): (&dyn Blobs, &dyn SecretVault),
    actor: &Actor,
) {
    // One transaction at a time: moto fails one that meets another.
    let contracts =
        ContractService::new(table.clone(), clock.clone()).with_import_transactions_in_flight(1);
    let rows = (1..=3)
        .map(|n| ImportRow {
            row: n + 1,
            contract: serde_json::from_value(json!({
                "contractNumber": format!("RS-{n}"),
                "lessor": "Volvofinans Bank AB",
                "description": format!("Volvo XC60 {n}"),
                "category": "vehicle",
                "startDate": "2025-01-01",
                "endDate": "2028-12-31",
                "payment": {"amount": 500_000, "currency": "SEK"},
                "paymentFrequency": "monthly",
                "paymentTiming": "advance",
                "interestRate": "4.5",
            }))
            .unwrap(),
            issues: Vec::new(),
        })
        .collect();
    let report = contracts.import(actor, rows, false).await.unwrap();
    assert_eq!(report.problems, []);
    assert_eq!(report.created, 3);
    PortfolioService::new(
        table.clone(),
        clock.clone(),
        PortfolioService::standard_defaults(),
    )
    .with_transactions_in_flight(1)
    .dashboard(actor)
    .await
    .unwrap();
    let folder = tenant_folder(IMPORTS_AREA, actor.tenant).unwrap();
    let file = BlobKey::parse(&format!("{folder}/job.csv")).unwrap();
    blobs
        .put(&file, b"RS-4\n".to_vec(), "text/csv")
        .await
        .unwrap();
    let secret = secret_name(actor.tenant);
    vault.put(&secret, "client-secret").await.unwrap();
    let settings = Item::new(
        keys::sso_settings(actor.tenant),
        domain::store::to_attributes(&json!({ "requireSso": false, "secretRef": secret })).unwrap(),
    );
    table.put(settings, Condition::NotExists).await.unwrap();
    let dns = Arc::new(PublishedRecords::default());
    let domains = domain::sso_domains::SsoDomains::new(table.clone(), clock.clone(), dns.clone());
    let domain = sso_domain(actor.tenant);
    let (claim, _) = domains.claim(actor, &domain).await.unwrap();
    dns.0
        .lock()
        .unwrap()
        .insert(claim.record.name.clone(), claim.record.value.clone());
    domains.verify(actor, &domain).await.unwrap();
    for n in 0..120 {
        let event = AuditEvent::system(
            actor.tenant,
            domain::clock::Clock::now(clock.as_ref()),
            "contract.repriced",
            format!("contract:{n}"),
            None,
            None,
        );
        table.transact_write(vec![event.write_op()]).await.unwrap();
    }
}

/// The items under `tenant`'s keys: its partition, its index partition, its
/// registrations.
async fn left_of(table: &dyn Table, tenant: domain::ids::TenantId) -> usize {
    let partition = query_all(
        table,
        Query::partition(keys::tenant_partition(tenant)).limit(1000),
    )
    .await
    .unwrap();
    let indexed = query_all(
        table,
        Query::partition(keys::contracts_by_end_partition(tenant))
            .on_index(Index::Gsi1)
            .limit(1000),
    )
    .await
    .unwrap();
    let mut registrations = 0;
    for key in [
        keys::organization_registration(tenant),
        keys::portfolio_registration(tenant),
    ] {
        registrations += usize::from(table.get(&key).await.unwrap().is_some());
    }
    partition.len() + indexed.len() + registrations
}

/// Runs the whole story on one store; returns the removal's counts.
async fn warn_then_remove(
    table: Arc<dyn Table>,
    blobs: Arc<dyn Blobs>,
    vault: Arc<dyn SecretVault>,
    outbox: &std::path::Path,
) -> serde_json::Value {
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let ports = (blobs.as_ref(), vault.as_ref());
    let (gone, gone_email) = sign_up(table.clone(), clock.clone()).await;
    business(table.clone(), clock.clone(), ports, &gone).await;
    let (kept, _) = sign_up(table.clone(), clock.clone()).await;
    business(table.clone(), clock.clone(), ports, &kept).await;
    let kept_items = left_of(table.as_ref(), kept.tenant).await;

    let sender = Sender::new(Email::parse("no-reply@leasedesk.se").unwrap(), None).unwrap();
    let mailer = Arc::new(Outbox::open(outbox, sender).unwrap());
    let retention = RetentionService::new(
        table.clone(),
        clock.clone(),
        blobs.clone(),
        vault.clone(),
        mailer.clone(),
        Arc::new(PlainWarning),
        RetentionPolicy::default(),
    );
    let activity = domain::activity::ActivityLog::new(table.clone(), clock.clone());

    clock.advance(chrono::Duration::days(1796));
    activity.record(kept.tenant).await.unwrap();
    let report = retention.run().await.unwrap();
    assert_eq!((report.warned, report.mails_sent), (1, 1), "{report:?}");
    let mails = mailer
        .messages_to(&Email::parse(&gone_email).unwrap())
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);

    clock.advance(chrono::Duration::days(30));
    activity.record(kept.tenant).await.unwrap();
    let report = retention.run().await.unwrap();
    assert_eq!((report.deleted, report.failed), (1, 0), "{report:?}");

    assert_eq!(left_of(table.as_ref(), gone.tenant).await, 0);
    for key in [
        keys::email_login(&gone_email),
        keys::sso_domain_owner(&sso_domain(gone.tenant)),
    ] {
        assert_eq!(table.get(&key).await.unwrap(), None);
    }
    let kept_domain = table
        .get(&keys::sso_domain_owner(&sso_domain(kept.tenant)))
        .await
        .unwrap()
        .expect("the kept organization's verified domain");
    assert_eq!(kept_domain.attributes["tenantId"], json!(kept.tenant));
    let folder = tenant_folder(IMPORTS_AREA, gone.tenant).unwrap();
    assert!(blobs.list(&folder, None, 10).await.unwrap().keys.is_empty());
    let kept_folder = tenant_folder(IMPORTS_AREA, kept.tenant).unwrap();
    assert_eq!(
        blobs.list(&kept_folder, None, 10).await.unwrap().keys.len(),
        1
    );
    assert_eq!(left_of(table.as_ref(), kept.tenant).await, kept_items);
    assert_eq!(vault.get(&secret_name(gone.tenant)).await.unwrap(), None);
    assert!(
        vault
            .get(&secret_name(kept.tenant))
            .await
            .unwrap()
            .is_some()
    );

    let record = table
        .get(&keys::retention_record(gone.tenant))
        .await
        .unwrap()
        .expect("the retention record");
    let mut counts = serde_json::Map::new();
    for (name, value) in record.attributes {
        if name.starts_with("removed") && name != "removedAt" {
            counts.insert(name, value);
        }
    }
    serde_json::Value::Object(counts)
}

#[tokio::test]
async fn a_removal_on_dynamodb_and_s3_ends_as_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Table> =
        Arc::new(SqliteTable::open(&data.path().join("t.sqlite3")).unwrap());
    let folder: Arc<dyn Blobs> =
        Arc::new(FolderBlobs::open(&data.path().join("blobs"), "http://127.0.0.1:9").unwrap());
    let secrets: Arc<dyn SecretVault> =
        Arc::new(FolderSecrets::open(&data.path().join("secrets")).unwrap());
    let on_sqlite =
        warn_then_remove(sqlite, folder, secrets, &data.path().join("outbox-sqlite")).await;

    let bucket = support::unique_name("retention");
    support::s3_client()
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuNorth1)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the bucket in moto: {e:?}"));
    let dynamodb: Arc<dyn Table> = Arc::new(support::dynamo_table().await);
    let s3: Arc<dyn Blobs> = Arc::new(S3Blobs::new(support::s3_client(), bucket));
    let secrets_manager: Arc<dyn SecretVault> =
        Arc::new(SecretsManagerVault::new(support::secrets_client()));
    let on_dynamodb = warn_then_remove(
        dynamodb,
        s3,
        secrets_manager,
        &data.path().join("outbox-dynamodb"),
    )
    .await;

    assert_eq!(on_dynamodb, on_sqlite);
    // The owner; the three contracts; the login, the organisation number, the verified
    // domain and the dashboard registration; the file; the client secret; the
    // sign-up's, the import's, the domain's, 120 filler and the warning's audit events.
    assert_eq!(on_sqlite["removedMembers"], 1, "{on_sqlite}");
    assert_eq!(on_sqlite["removedContracts"], 3, "{on_sqlite}");
    assert_eq!(on_sqlite["removedSharedItems"], 4, "{on_sqlite}");
    assert_eq!(on_sqlite["removedBlobs"], 1, "{on_sqlite}");
    assert_eq!(on_sqlite["removedSecrets"], 1, "{on_sqlite}");
    assert!(
        on_sqlite["removedAuditEvents"].as_i64().unwrap() >= 124,
        "{on_sqlite}"
    );
    assert!(
        on_sqlite["removedItems"].as_i64().unwrap() > 130,
        "more than one page: {on_sqlite}"
    );
}
