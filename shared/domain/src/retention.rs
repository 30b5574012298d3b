//! The retention job (GDPR storage limitation): an organization none of whose members
//! has signed in for the retention period (default [`DEFAULT_INACTIVE_DAYS`], five
//! years) is removed, after its owners were warned by mail [`WARNING_DAYS`] days before.
//!
//! **Activity.** Every organization has one item in the registry partition
//! `ORGANIZATIONS` / `T#<tenant>` ([`Registration`]): written at sign-up, moved to the
//! day by each sign-in and session refresh (at most once a day, [`crate::activity`]),
//! and read page by page by the job, so no scan is needed. An organization signed up
//! before the registry existed is registered by its next sign-in, or by the job when it
//! finds it in the dashboards' registry (`PORTFOLIOS`); either way its period starts
//! then, so none is removed for want of a record.
//!
//! **Decisions** ([`decide`]), once a day:
//! - inactive for the period less 30 days: each owner is mailed the retention warning
//!   in their language, with the deletion date 30 days on; `warnedAt` and
//!   `deletionDate` are recorded with an audit event (`retention.warned`);
//! - active again since the warning (or no longer due after the period was lengthened):
//!   the warning is cleared (`retention.warning_cleared`);
//! - warned, the deletion date reached and no activity since: removed.
//!
//! **Removal.** The job claims it (`deletingSince`) under the registry item's version it
//! decided on, so a sign-in between the decision and the claim keeps the organization;
//! once claimed, sign-ins no longer count and every later run finishes the removal. It
//! deletes the organization's files (every tenant area of the bucket,
//! [`crate::blobs::TENANT_AREAS`]), its dashboard registration, and then every item of
//! its partition `T#<tenant>` — whatever the record: organization, members, sessions,
//! second factors, invitations, resets, contracts, audit trail, jobs, idempotency
//! records, dashboard, single sign-on — a page at a time, each page in one transaction
//! with the global items its records name (a member's login `EMAIL#…`, the organization
//! number `ORGNO#…`, a variable-rate contract's `RATEREF#…` marker, a verified single
//! sign-on domain `SSODOMAIN#…`) and a count; the
//! single sign-on client secret its settings name leaves the secret vault just before
//! them. Global items are deleted only while they still point at this organization. A
//! sign-in under way at its provider (`SSOSTATE#…`, no personal data) cannot be found
//! by organization and is left to its ten-minute expiry. A run cut off anywhere is
//! finished by the next one. What remains is the record `RETENTION` /
//! `T#<tenant>` ([`RetentionRecord`]): the organization's id, the days that decided its
//! removal, when, and how much went; no name, no address.

use crate::access::Role;
use crate::accounts::{User, UserRecord};
use crate::audit::AuditEvent;
use crate::blobs::{BlobError, Blobs, MAX_LIST_LIMIT, TENANT_AREAS, tenant_folder};
use crate::clock::Clock;
use crate::ids::{ContractId, TenantId};
use crate::keys;
use crate::mail::{Mail, MailError, Mailer};
use crate::organization::Organization;
use crate::rates::SeriesId;
use crate::secrets::{SecretVault, SecretVaultError};
use crate::store::{
    Condition, Index, Item, Key, MAX_TRANSACTION_OPS, Query, StoreError, Table, Update, WriteOp,
    from_item, query_all, to_attributes,
};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// The retention period when none is configured: five years.
pub const DEFAULT_INACTIVE_DAYS: u32 = 1826;
/// How long before the deletion the owners are warned.
pub const WARNING_DAYS: u32 = 30;
/// The longest period accepted; anything longer is a typo.
pub const MAX_INACTIVE_DAYS: u32 = 36_525;
/// Attempts at one page of a removal that meets concurrent writes.
const ATTEMPTS: u32 = 8;

/// How long an organization may stay inactive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    inactive_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the retention period is a number of days, not {0:?}")]
    NotANumber(String),
    #[error(
        "the retention period must be longer than the {WARNING_DAYS}-day warning and at most \
         {MAX_INACTIVE_DAYS} days, not {0}"
    )]
    OutOfRange(u32),
}

impl RetentionPolicy {
    /// Organizations inactive for `inactive_days` are removed (warned 30 days before).
    pub fn new(inactive_days: u32) -> Result<Self, PolicyError> {
        if inactive_days <= WARNING_DAYS || inactive_days > MAX_INACTIVE_DAYS {
            return Err(PolicyError::OutOfRange(inactive_days));
        }
        Ok(Self { inactive_days })
    }

    /// A period written as a number of days (an environment variable, a flag).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let days = text
            .trim()
            .parse::<u32>()
            .map_err(|_| PolicyError::NotANumber(text.to_owned()))?;
        Self::new(days)
    }

    pub fn inactive_days(self) -> u32 {
        self.inactive_days
    }

    /// Whether an organization last active on `last_active_on` is to be warned today.
    fn due(self, last_active_on: NaiveDate, today: NaiveDate) -> bool {
        let warn_after = i64::from(self.inactive_days - WARNING_DAYS);
        (today - last_active_on).num_days() >= warn_after
    }
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            inactive_days: DEFAULT_INACTIVE_DAYS,
        }
    }
}

/// An organization's registry item (`ORGANIZATIONS` / `T#<tenant>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub tenant_id: TenantId,
    /// The last day (UTC) a member signed in or refreshed a session. Absent only in an
    /// item written without it; the job then starts the period on the day it sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_on: Option<NaiveDate>,
    /// When the owners were warned; cleared when the organization is active again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_at: Option<DateTime<Utc>>,
    /// The day the warning announced for the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<NaiveDate>,
    /// When the removal began; from then on it only finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting_since: Option<DateTime<Utc>>,
    /// What the removal has deleted so far.
    #[serde(flatten)]
    pub removed: RemovalCounts,
}

impl Registration {
    /// An organization active on `today`, not warned.
    pub fn active(tenant: TenantId, today: NaiveDate) -> Self {
        Self {
            tenant_id: tenant,
            last_active_on: Some(today),
            warned_at: None,
            deletion_date: None,
            deleting_since: None,
            removed: RemovalCounts::default(),
        }
    }
}

/// How much a removal deleted. Stored as counters on the registry item while it runs
/// (each page's count in the page's transaction), then in the [`RetentionRecord`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalCounts {
    /// Items of the organization's partition, of every kind.
    #[serde(default, rename = "removedItems")]
    pub items: i64,
    /// Of those, members.
    #[serde(default, rename = "removedMembers")]
    pub members: i64,
    /// Of those, contracts.
    #[serde(default, rename = "removedContracts")]
    pub contracts: i64,
    /// Of those, audit events.
    #[serde(default, rename = "removedAuditEvents")]
    pub audit_events: i64,
    /// Global items that named the organization: logins, its number, rate reference
    /// markers, its dashboard registration.
    #[serde(default, rename = "removedSharedItems")]
    pub shared_items: i64,
    /// Files in the bucket.
    #[serde(default, rename = "removedBlobs")]
    pub blobs: i64,
    /// Secrets in the vault (the single sign-on client secret).
    #[serde(default, rename = "removedSecrets")]
    pub secrets: i64,
}

impl RemovalCounts {
    /// The update that adds `self` to the counters of `tenant`'s registry item, which
    /// must still be there (else the removal was finished by another run).
    fn increment(self, tenant: TenantId) -> Update {
        let mut update = Update::new(keys::organization_registration(tenant));
        for (name, by) in [
            ("removedItems", self.items),
            ("removedMembers", self.members),
            ("removedContracts", self.contracts),
            ("removedAuditEvents", self.audit_events),
            ("removedSharedItems", self.shared_items),
            ("removedBlobs", self.blobs),
            ("removedSecrets", self.secrets),
        ] {
            if by != 0 {
                update.increment.push((name.to_owned(), by));
            }
        }
        update.condition = Condition::Exists;
        update
    }

    /// Counts one deleted item of the partition by its kind.
    fn count_item(&mut self, sort_key: &str) {
        self.items += 1;
        if sort_key.starts_with(keys::USER_PREFIX) {
            self.members += 1;
        } else if sort_key.starts_with(keys::CONTRACT_PREFIX) {
            self.contracts += 1;
        } else if sort_key.starts_with(keys::AUDIT_PREFIX) {
            self.audit_events += 1;
        }
    }
}

/// What is kept of a removed organization (`RETENTION` / `T#<tenant>`): enough to
/// account for the removal, nothing about a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRecord {
    pub tenant_id: TenantId,
    pub last_active_on: Option<NaiveDate>,
    pub warned_at: Option<DateTime<Utc>>,
    pub deletion_date: Option<NaiveDate>,
    pub removal_started_at: Option<DateTime<Utc>>,
    pub removed_at: DateTime<Utc>,
    #[serde(flatten)]
    pub removed: RemovalCounts,
}

/// What the job does with one organization today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Active recently enough.
    Keep,
    /// No activity recorded: the period starts today.
    StartPeriod,
    /// Inactive for the period less the warning: warn the owners of the deletion on
    /// `deletion_date`.
    Warn { deletion_date: NaiveDate },
    /// Warned, still inactive, the deletion date not reached.
    AwaitDeletion,
    /// Warned, but active since (or no longer due under the period): the warning goes.
    ClearWarning,
    /// Warned, the deletion date reached, inactive since the warning: remove it.
    Delete,
    /// Its removal began and has not finished: finish it.
    FinishRemoval,
}

/// The decision for an organization registered as `registration`, on `today`.
pub fn decide(registration: &Registration, today: NaiveDate, policy: RetentionPolicy) -> Decision {
    if registration.deleting_since.is_some() {
        return Decision::FinishRemoval;
    }
    let Some(last_active_on) = registration.last_active_on else {
        return Decision::StartPeriod;
    };
    let due = policy.due(last_active_on, today);
    match registration.warned_at {
        None if due => Decision::Warn {
            deletion_date: today + Days::new(u64::from(WARNING_DAYS)),
        },
        None => Decision::Keep,
        Some(warned_at) => {
            let warned_on = warned_at.date_naive();
            // When warned, the last activity was days before: any later one is new.
            if last_active_on >= warned_on || !due {
                return Decision::ClearWarning;
            }
            // Never earlier than 30 days after the warning, whatever was stored.
            let earliest = warned_on + Days::new(u64::from(WARNING_DAYS));
            let deletion_date = registration.deletion_date.unwrap_or(earliest).max(earliest);
            if today >= deletion_date {
                Decision::Delete
            } else {
                Decision::AwaitDeletion
            }
        }
    }
}

/// The retention warning as a mail in its reader's language. The texts live with the
/// product's other mails (`api::mail`), outside the domain.
pub trait WarningMail: Send + Sync + 'static {
    fn retention_warning(
        &self,
        owner: &User,
        organization: &Organization,
        deletion_date: NaiveDate,
    ) -> Result<Mail, MailError>;
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Organizations in the registry.
    pub organizations: usize,
    /// Organizations whose period started today (found without a recorded activity).
    pub registered: usize,
    /// Organizations whose owners were warned today.
    pub warned: usize,
    /// Warning mails the mail service accepted.
    pub mails_sent: usize,
    /// Warnings cleared because the organization was active again.
    pub cleared: usize,
    /// Organizations removed.
    pub deleted: usize,
    /// Organizations a sign-in kept between the decision and the write.
    pub kept_by_activity: usize,
    /// Organizations left for the next run after an error (logged).
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error(transparent)]
    Vault(#[from] SecretVaultError),
    /// The mail service could not take a warning now; the warning is tried again by
    /// the next run, which may mail the other owners a second copy.
    #[error("a warning could not be mailed now: {0}")]
    MailUnavailable(MailError),
    #[error("the organization's record is missing while its partition holds items")]
    OrganizationMissing,
    #[error("a removal page met concurrent writes {ATTEMPTS} times")]
    Contention,
}

/// What happened to one organization in a run.
enum Outcome {
    Unchanged,
    PeriodStarted,
    Warned { mails_sent: usize },
    Cleared,
    Removed,
    KeptByActivity,
}

pub struct RetentionService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    blobs: Arc<dyn Blobs>,
    vault: Arc<dyn SecretVault>,
    mailer: Arc<dyn Mailer>,
    mails: Arc<dyn WarningMail>,
    policy: RetentionPolicy,
}

impl RetentionService {
    pub fn new(
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        blobs: Arc<dyn Blobs>,
        vault: Arc<dyn SecretVault>,
        mailer: Arc<dyn Mailer>,
        mails: Arc<dyn WarningMail>,
        policy: RetentionPolicy,
    ) -> Self {
        Self {
            table,
            clock,
            blobs,
            vault,
            mailer,
            mails,
            policy,
        }
    }

    pub fn policy(&self) -> RetentionPolicy {
        self.policy
    }

    /// Decides and acts on every registered organization, then registers the ones
    /// found only in the dashboards' registry. One organization's failure does not stop
    /// the others: it is counted in [`RetentionReport::failed`] and logged.
    pub async fn run(&self) -> Result<RetentionReport, StoreError> {
        let now = self.clock.now();
        let mut report = RetentionReport::default();
        let mut registered = HashSet::new();
        let mut after = None;
        loop {
            let page = self
                .table
                .query(
                    Query::partition(keys::ORGANIZATIONS_PARTITION)
                        .limit(100)
                        .start_after(after.take()),
                )
                .await?;
            for item in page.items {
                let Some(tenant) = keys::registered_tenant(&item.key.sk) else {
                    continue;
                };
                registered.insert(tenant);
                report.organizations += 1;
                match self.apply(tenant, item, now).await {
                    Ok(Outcome::Unchanged) => {}
                    Ok(Outcome::PeriodStarted) => report.registered += 1,
                    Ok(Outcome::Warned { mails_sent }) => {
                        report.warned += 1;
                        report.mails_sent += mails_sent;
                    }
                    Ok(Outcome::Cleared) => report.cleared += 1,
                    Ok(Outcome::Removed) => report.deleted += 1,
                    Ok(Outcome::KeptByActivity) => report.kept_by_activity += 1,
                    Err(error) => {
                        report.failed += 1;
                        tracing::warn!(%tenant, %error, "retention: organization left for the next run");
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        report.registered += self.register_dashboards(&registered, now).await?;
        tracing::info!(
            organizations = report.organizations,
            registered = report.registered,
            warned = report.warned,
            mails_sent = report.mails_sent,
            cleared = report.cleared,
            deleted = report.deleted,
            kept_by_activity = report.kept_by_activity,
            failed = report.failed,
            inactive_days = self.policy.inactive_days,
            "retention: run finished"
        );
        Ok(report)
    }

    async fn apply(
        &self,
        tenant: TenantId,
        item: Item,
        now: DateTime<Utc>,
    ) -> Result<Outcome, RetentionError> {
        let version = item.version;
        let registration: Registration = from_item(item)?;
        match decide(&registration, now.date_naive(), self.policy) {
            Decision::Keep | Decision::AwaitDeletion => Ok(Outcome::Unchanged),
            Decision::StartPeriod => {
                let mut update = Update::new(keys::organization_registration(tenant));
                update
                    .set
                    .insert("lastActiveOn".into(), serde_json::json!(now.date_naive()));
                update.condition = Condition::VersionIs(version);
                match self.table.update(update).await {
                    Ok(_) => Ok(Outcome::PeriodStarted),
                    // A sign-in recorded a day meanwhile.
                    Err(StoreError::ConditionFailed) => Ok(Outcome::KeptByActivity),
                    Err(other) => Err(other.into()),
                }
            }
            Decision::Warn { deletion_date } => {
                self.warn(tenant, version, &registration, deletion_date, now)
                    .await
            }
            Decision::ClearWarning => self.clear(tenant, version, &registration, now).await,
            Decision::Delete => {
                let mut claim = Update::new(keys::organization_registration(tenant));
                claim
                    .set
                    .insert("deletingSince".into(), serde_json::json!(now));
                claim.condition = Condition::VersionIs(version);
                match self.table.update(claim).await {
                    Ok(_) => {}
                    Err(StoreError::ConditionFailed) => {
                        tracing::info!(%tenant, "retention: active again just before its removal; kept");
                        return Ok(Outcome::KeptByActivity);
                    }
                    Err(other) => return Err(other.into()),
                }
                tracing::info!(%tenant, "retention: removal started");
                self.finish_removal(tenant, now).await
            }
            Decision::FinishRemoval => {
                tracing::info!(%tenant, "retention: finishing a removal that was cut off");
                self.finish_removal(tenant, now).await
            }
        }
    }

    /// Mails every owner the warning, then records it. A mail service that is down
    /// leaves the warning for the next run (nothing is recorded, so no deletion date
    /// runs without a warning sent); an address that refuses mail for good does not.
    async fn warn(
        &self,
        tenant: TenantId,
        version: u64,
        registration: &Registration,
        deletion_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Outcome, RetentionError> {
        let Some(organization) = self.table.get(&keys::organization(tenant)).await? else {
            return self.forget_empty(tenant, version).await;
        };
        let organization: Organization = from_item(organization)?;
        let members = query_all(
            self.table.as_ref(),
            Query::partition(keys::tenant_partition(tenant))
                .begins_with(keys::USER_PREFIX)
                .limit(1000),
        )
        .await?;
        let (mut mails_sent, mut unreachable) = (0, 0);
        for member in members {
            let member: UserRecord = from_item(member)?;
            if member.user.role != Role::Owner {
                continue;
            }
            let sent =
                match self
                    .mails
                    .retention_warning(&member.user, &organization, deletion_date)
                {
                    Ok(mail) => self.mailer.send(&mail).await.map(drop),
                    Err(error) => Err(error),
                };
            match sent {
                Ok(()) => mails_sent += 1,
                Err(error) if error.is_retryable() => {
                    return Err(RetentionError::MailUnavailable(error));
                }
                Err(error) => {
                    unreachable += 1;
                    tracing::warn!(%tenant, user = %member.user.id, %error, "retention: an owner cannot be mailed");
                }
            }
        }
        let mut update = Update::new(keys::organization_registration(tenant));
        update.set.insert("warnedAt".into(), serde_json::json!(now));
        update
            .set
            .insert("deletionDate".into(), serde_json::json!(deletion_date));
        update.condition = Condition::VersionIs(version);
        let audit = AuditEvent::system(
            tenant,
            now,
            "retention.warned",
            format!("organization:{tenant}"),
            None,
            Some(serde_json::json!({
                "lastActiveOn": registration.last_active_on,
                "deletionDate": deletion_date,
                "ownersMailed": mails_sent,
                "ownersUnreachable": unreachable,
            })),
        );
        match self
            .table
            .transact_write(vec![WriteOp::Update(update), audit.write_op()])
            .await
        {
            Ok(()) => {
                tracing::info!(%tenant, %deletion_date, owners_mailed = mails_sent, owners_unreachable = unreachable, "retention: owners warned");
                Ok(Outcome::Warned { mails_sent })
            }
            // A sign-in meanwhile: the mails went, but nothing is due any more.
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                Ok(Outcome::KeptByActivity)
            }
            Err(other) => Err(other.into()),
        }
    }

    async fn clear(
        &self,
        tenant: TenantId,
        version: u64,
        registration: &Registration,
        now: DateTime<Utc>,
    ) -> Result<Outcome, RetentionError> {
        let mut update = Update::new(keys::organization_registration(tenant));
        update.remove = vec!["warnedAt".into(), "deletionDate".into()];
        update.condition = Condition::VersionIs(version);
        let audit = AuditEvent::system(
            tenant,
            now,
            "retention.warning_cleared",
            format!("organization:{tenant}"),
            Some(serde_json::json!({
                "warnedAt": registration.warned_at,
                "deletionDate": registration.deletion_date,
            })),
            Some(serde_json::json!({ "lastActiveOn": registration.last_active_on })),
        );
        match self
            .table
            .transact_write(vec![WriteOp::Update(update), audit.write_op()])
            .await
        {
            Ok(()) => {
                tracing::info!(%tenant, "retention: active again; warning cleared");
                Ok(Outcome::Cleared)
            }
            // Changed meanwhile (another sign-in): the next run decides again.
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                Ok(Outcome::Unchanged)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A registry item whose organization is gone: removed when the partition holds
    /// nothing either (a sign-in that raced a finished removal), refused otherwise.
    async fn forget_empty(
        &self,
        tenant: TenantId,
        version: u64,
    ) -> Result<Outcome, RetentionError> {
        let left = self
            .table
            .query(Query::partition(keys::tenant_partition(tenant)).limit(1))
            .await?;
        if !left.items.is_empty() {
            return Err(RetentionError::OrganizationMissing);
        }
        match self
            .table
            .delete(
                &keys::organization_registration(tenant),
                Condition::VersionIs(version),
            )
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(Outcome::Unchanged),
            Err(other) => Err(other.into()),
        }
    }

    /// Deletes everything of `tenant` and leaves its [`RetentionRecord`]. Every step
    /// may be repeated, so a run cut off anywhere is finished by the next.
    async fn finish_removal(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<Outcome, RetentionError> {
        // The nightly roll stops rebuilding its dashboard first.
        self.remove_dashboard_registration(tenant).await?;
        self.remove_blobs(tenant).await?;
        self.remove_partition(tenant).await?;
        // A dashboard read while the partition went may have registered it again.
        self.remove_dashboard_registration(tenant).await?;

        let registration_key = keys::organization_registration(tenant);
        let Some(item) = self.table.get(&registration_key).await? else {
            // Another run finished it meanwhile.
            return Ok(Outcome::Removed);
        };
        let registration: Registration = from_item(item)?;
        let record = RetentionRecord {
            tenant_id: tenant,
            last_active_on: registration.last_active_on,
            warned_at: registration.warned_at,
            deletion_date: registration.deletion_date,
            removal_started_at: registration.deleting_since,
            removed_at: now,
            removed: registration.removed,
        };
        self.table
            .put(
                Item::new(keys::retention_record(tenant), to_attributes(&record)?),
                Condition::None,
            )
            .await?;
        self.table
            .delete(&registration_key, Condition::None)
            .await?;
        tracing::info!(
            %tenant,
            items = record.removed.items,
            members = record.removed.members,
            contracts = record.removed.contracts,
            audit_events = record.removed.audit_events,
            shared_items = record.removed.shared_items,
            blobs = record.removed.blobs,
            secrets = record.removed.secrets,
            "retention: organization removed"
        );
        Ok(Outcome::Removed)
    }

    async fn remove_dashboard_registration(&self, tenant: TenantId) -> Result<(), StoreError> {
        let removed = self
            .table
            .delete(&keys::portfolio_registration(tenant), Condition::None)
            .await?;
        if removed.is_some() {
            let counts = RemovalCounts {
                shared_items: 1,
                ..RemovalCounts::default()
            };
            self.table.update(counts.increment(tenant)).await?;
        }
        Ok(())
    }

    async fn remove_blobs(&self, tenant: TenantId) -> Result<(), RetentionError> {
        for area in TENANT_AREAS {
            let folder = tenant_folder(area, tenant)?;
            let mut after = None;
            loop {
                let listing = self
                    .blobs
                    .list(&folder, after.as_ref(), MAX_LIST_LIMIT)
                    .await?;
                for key in &listing.keys {
                    self.blobs.delete(key).await?;
                }
                if !listing.keys.is_empty() {
                    let counts = RemovalCounts {
                        blobs: listing.keys.len() as i64,
                        ..RemovalCounts::default()
                    };
                    self.table.update(counts.increment(tenant)).await?;
                }
                match listing.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Deletes the partition's items a page at a time, each page with the global items
    /// its records name and its count, until nothing is left; then whatever the index
    /// still shows under the organization.
    async fn remove_partition(&self, tenant: TenantId) -> Result<(), RetentionError> {
        let mut attempts = 0;
        loop {
            // One operation stays free for the count.
            let page = self
                .table
                .query(
                    Query::partition(keys::tenant_partition(tenant)).limit(MAX_TRANSACTION_OPS - 1),
                )
                .await?;
            if page.items.is_empty() {
                break;
            }
            let mut ops = Vec::new();
            let mut counts = RemovalCounts::default();
            for item in &page.items {
                let shared = self.shared_items(tenant, item).await?;
                if ops.len() + 1 + shared.len() > MAX_TRANSACTION_OPS - 1 {
                    break;
                }
                // The settings name their secret: it goes first, so a cut-off run still
                // finds the name next time.
                if item.key.sk == keys::SSO_SETTINGS_SK
                    && let Some(name) = item.attributes.get("secretRef").and_then(|v| v.as_str())
                {
                    self.vault.delete(name).await?;
                    counts.secrets += 1;
                }
                ops.push(WriteOp::Delete {
                    key: item.key.clone(),
                    condition: Condition::None,
                });
                counts.count_item(&item.key.sk);
                counts.shared_items += shared.len() as i64;
                ops.extend(shared);
            }
            ops.push(WriteOp::Update(counts.increment(tenant)));
            match self.table.transact_write(ops).await {
                Ok(()) => attempts = 0,
                // A global item changed after it was read, or another writer was on the
                // same items: read the page again.
                Err(StoreError::TransactionCanceled { .. }) if attempts + 1 < ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempts)))
                        .await;
                }
                Err(StoreError::TransactionCanceled { .. }) => {
                    return Err(RetentionError::Contention);
                }
                Err(other) => return Err(other.into()),
            }
        }
        // Every index entry belongs to an item of the partition, so this finds nothing
        // unless an item was written under another key with the organization's index key.
        let indexed = query_all(
            self.table.as_ref(),
            Query::partition(keys::contracts_by_end_partition(tenant))
                .on_index(Index::Gsi1)
                .limit(1000),
        )
        .await?;
        for item in indexed {
            if self
                .table
                .delete(&item.key, Condition::None)
                .await?
                .is_some()
            {
                let mut counts = RemovalCounts::default();
                counts.count_item(&item.key.sk);
                self.table.update(counts.increment(tenant)).await?;
            }
        }
        Ok(())
    }

    /// The deletions of the global items `item` names that still point at `tenant`.
    async fn shared_items(
        &self,
        tenant: TenantId,
        item: &Item,
    ) -> Result<Vec<WriteOp>, StoreError> {
        let text = |name: &str| item.attributes.get(name).and_then(|value| value.as_str());
        let sort_key = item.key.sk.as_str();
        let owned = if sort_key.starts_with(keys::USER_PREFIX) {
            match text("email") {
                Some(email) => self.owned_by(tenant, keys::email_login(email)).await?,
                None => None,
            }
        } else if sort_key == keys::ORGANIZATION_SK {
            match text("organizationNumber") {
                Some(number) => {
                    let digits = number.replace('-', "");
                    self.owned_by(tenant, keys::organization_number(&digits))
                        .await?
                }
                None => None,
            }
        } else if let Some(owner) = crate::sso_domains::owner_key_of_claim(sort_key) {
            // The domain the organization verified is free again.
            self.owned_by(tenant, owner).await?
        } else if let Some(contract) = sort_key.strip_prefix(keys::CONTRACT_PREFIX) {
            let series = item
                .attributes
                .get("rateReference")
                .and_then(|reference| reference.get("series"))
                .and_then(|series| SeriesId::parse(series.as_str()?).ok());
            match (series, contract.parse::<ContractId>()) {
                (Some(series), Ok(contract)) => Some(WriteOp::Delete {
                    key: keys::rate_reference(&series, tenant, contract),
                    condition: Condition::None,
                }),
                _ => None,
            }
        } else {
            None
        };
        Ok(owned.into_iter().collect())
    }

    /// The deletion of the global item under `key` if it points at `tenant`, under its
    /// version: a login or organization number already taken by someone else after an
    /// earlier, cut-off run stays theirs.
    async fn owned_by(&self, tenant: TenantId, key: Key) -> Result<Option<WriteOp>, StoreError> {
        let Some(item) = self.table.get(&key).await? else {
            return Ok(None);
        };
        let points_here = item
            .attributes
            .get("tenantId")
            .and_then(|value| value.as_str())
            == Some(tenant.to_string().as_str());
        Ok(points_here.then_some(WriteOp::Delete {
            key,
            condition: Condition::VersionIs(item.version),
        }))
    }

    /// Registers, with the period starting today, every organization the dashboards'
    /// registry knows and this one does not (signed up before it existed).
    async fn register_dashboards(
        &self,
        registered: &HashSet<TenantId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let dashboards = query_all(
            self.table.as_ref(),
            Query::partition(keys::PORTFOLIOS_PARTITION).limit(1000),
        )
        .await?;
        let mut added = 0;
        for item in dashboards {
            let Some(tenant) = keys::registered_tenant(&item.key.sk) else {
                continue;
            };
            if registered.contains(&tenant)
                || self.table.get(&keys::organization(tenant)).await?.is_none()
            {
                continue;
            }
            match self
                .table
                .put(
                    crate::activity::registration_item(tenant, now.date_naive())?,
                    Condition::NotExists,
                )
                .await
            {
                Ok(()) => {
                    tracing::info!(%tenant, "retention: registered; its period starts today");
                    added += 1;
                }
                Err(StoreError::ConditionFailed) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountService, Email, SignUpRequest};
    use crate::activity::ActivityLog;
    use crate::audit::{AuditEvent, RequestInfo};
    use crate::blobs::{BlobKey, IMPORTS_AREA};
    use crate::clock::FixedClock;
    use crate::ids::UserId;
    use crate::organization::luhn_check_digit;
    use crate::secrets::SecretVault;
    use crate::sessions::SessionService;
    use crate::sso_domains::SsoDomains;
    use crate::store::Page;
    use crate::testing::{MemoryBlobs, MemoryDns, MemorySecrets, MemoryTable, RecordingMailer};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const START: &str = "2026-11-21T09:00:00Z";
    const PASSWORD: &str = "Vinterljus-over-Kiruna-2026";

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn registration(last_active_on: Option<&str>) -> Registration {
        Registration {
            last_active_on: last_active_on.map(day),
            ..Registration::active(TenantId::generate(), day("2000-01-01"))
        }
    }

    fn warned(last_active_on: &str, warned_at: &str) -> Registration {
        let warned_at: DateTime<Utc> = warned_at.parse().unwrap();
        Registration {
            warned_at: Some(warned_at),
            deletion_date: Some(warned_at.date_naive() + Days::new(30)),
            ..registration(Some(last_active_on))
        }
    }

    #[test]
    fn decisions_follow_the_period_and_the_warning() {
        let policy = RetentionPolicy::default();
        let last = "2021-01-01";
        // 1796 days (the period less the warning) after the last activity is the day.
        let warning_day = day(last) + Days::new(1796);
        assert_eq!(warning_day, day("2025-12-02"));
        let active = registration(Some(last));
        assert_eq!(
            decide(&active, warning_day.pred_opt().unwrap(), policy),
            Decision::Keep,
            "not yet due"
        );
        assert_eq!(
            decide(&active, warning_day, policy),
            Decision::Warn {
                deletion_date: day("2026-01-01")
            }
        );
        // Warned: waits 30 days, then deletes; any activity since the warning clears it.
        let warned = warned(last, "2025-12-02T00:30:00Z");
        assert_eq!(
            decide(&warned, day("2025-12-02"), policy),
            Decision::AwaitDeletion,
            "not warned twice"
        );
        assert_eq!(
            decide(&warned, day("2025-12-31"), policy),
            Decision::AwaitDeletion
        );
        assert_eq!(decide(&warned, day("2026-01-01"), policy), Decision::Delete);
        assert_eq!(decide(&warned, day("2026-06-01"), policy), Decision::Delete);
        for active_again in ["2025-12-02", "2025-12-20"] {
            let again = Registration {
                last_active_on: Some(day(active_again)),
                ..warned.clone()
            };
            assert_eq!(
                decide(&again, day("2026-01-01"), policy),
                Decision::ClearWarning,
                "{active_again}"
            );
        }
        // A stored date earlier than 30 days after the warning is not honoured.
        let early = Registration {
            deletion_date: Some(day("2025-12-05")),
            ..warned.clone()
        };
        assert_eq!(
            decide(&early, day("2025-12-05"), policy),
            Decision::AwaitDeletion
        );
        // Started removals finish; a missing activity starts the period.
        let removing = Registration {
            deleting_since: Some("2026-01-01T01:00:00Z".parse().unwrap()),
            ..warned.clone()
        };
        assert_eq!(
            decide(&removing, day("2026-01-02"), policy),
            Decision::FinishRemoval
        );
        assert_eq!(
            decide(&registration(None), day("2030-01-01"), policy),
            Decision::StartPeriod
        );
    }

    #[test]
    fn the_period_is_configurable() {
        let short = RetentionPolicy::new(400).unwrap();
        let active = registration(Some("2026-01-01"));
        assert_eq!(
            decide(&active, day("2027-01-05"), short),
            Decision::Keep,
            "369 days"
        );
        assert_eq!(
            decide(&active, day("2027-01-06"), short),
            Decision::Warn {
                deletion_date: day("2027-02-05")
            },
            "370 days"
        );
        assert_eq!(
            decide(&active, day("2027-01-06"), RetentionPolicy::default()),
            Decision::Keep
        );
        // Lengthened after a warning: the warning no longer applies.
        let warned = warned("2026-01-01", "2027-01-06T00:30:00Z");
        assert_eq!(decide(&warned, day("2027-02-05"), short), Decision::Delete);
        assert_eq!(
            decide(&warned, day("2027-02-05"), RetentionPolicy::default()),
            Decision::ClearWarning
        );

        assert_eq!(RetentionPolicy::default().inactive_days(), 1826);
        assert_eq!(
            RetentionPolicy::parse(" 1826 ").unwrap().inactive_days(),
            1826
        );
        assert_eq!(RetentionPolicy::parse("31").unwrap().inactive_days(), 31);
        assert_eq!(
            RetentionPolicy::parse("30"),
            Err(PolicyError::OutOfRange(30))
        );
        assert_eq!(RetentionPolicy::parse("0"), Err(PolicyError::OutOfRange(0)));
        assert_eq!(
            RetentionPolicy::parse("36526"),
            Err(PolicyError::OutOfRange(36526))
        );
        assert!(matches!(
            RetentionPolicy::parse("5y"),
            Err(PolicyError::NotANumber(_))
        ));
        assert!(matches!(
            RetentionPolicy::parse("-1"),
            Err(PolicyError::NotANumber(_))
        ));
    }

    /// The warning as a plain mail that shows what it was given.
    struct PlainWarning;

    impl WarningMail for PlainWarning {
        fn retention_warning(
            &self,
            owner: &User,
            organization: &Organization,
            deletion_date: NaiveDate,
        ) -> Result<Mail, MailError> {
            Mail::new(
                owner.email.clone(),
                format!("{} will be deleted on {deletion_date}", organization.name),
                format!(
                    "language: {}",
                    owner.language.as_deref().unwrap_or("not chosen")
                ),
            )
        }
    }

    struct Fixture {
        table: Arc<MemoryTable>,
        clock: Arc<FixedClock>,
        blobs: Arc<MemoryBlobs>,
        secrets: Arc<MemorySecrets>,
        mailer: Arc<RecordingMailer>,
        service: RetentionService,
    }

    impl Fixture {
        fn new(policy: RetentionPolicy) -> Self {
            let table = Arc::new(MemoryTable::default());
            let clock = Arc::new(FixedClock::new(START.parse().unwrap()));
            Self::with_table(table.clone(), table, clock, policy)
        }

        /// The service over `service_table` (a wrapper of `table`, say).
        fn with_table(
            table: Arc<MemoryTable>,
            service_table: Arc<dyn Table>,
            clock: Arc<FixedClock>,
            policy: RetentionPolicy,
        ) -> Self {
            let blobs = Arc::new(MemoryBlobs::default());
            let secrets = Arc::new(MemorySecrets::default());
            let mailer = Arc::new(RecordingMailer::default());
            let service = RetentionService::new(
                service_table,
                clock.clone(),
                blobs.clone(),
                secrets.clone(),
                mailer.clone(),
                Arc::new(PlainWarning),
                policy,
            );
            Self {
                table,
                clock,
                blobs,
                secrets,
                mailer,
                service,
            }
        }

        fn advance_days(&self, days: i64) {
            self.clock.advance(chrono::Duration::days(days));
        }

        /// A sign-in or refresh of a member of `org` now.
        async fn activity(&self, org: &Org) {
            ActivityLog::new(self.table.clone(), self.clock.clone())
                .record(org.tenant)
                .await
                .unwrap();
        }

        async fn registration(&self, org: &Org) -> Option<(Registration, u64)> {
            let item = self
                .table
                .get(&keys::organization_registration(org.tenant))
                .await
                .unwrap()?;
            let version = item.version;
            Some((from_item(item).unwrap(), version))
        }

        fn audit_actions(&self, org: &Org) -> Vec<String> {
            self.table
                .items_in(&keys::tenant_partition(org.tenant))
                .into_iter()
                .filter(|item| item.key.sk.starts_with(keys::AUDIT_PREFIX))
                .map(|item| from_item::<AuditEvent>(item).unwrap().action)
                .collect()
        }

        /// Every stored item that names `org` (its id, a member's address, its number),
        /// as text.
        fn traces_of(&self, org: &Org) -> Vec<String> {
            self.table
                .items()
                .into_iter()
                .map(|item| format!("{:?} {}", item.key, json!(item.attributes)))
                .filter(|text| {
                    text.contains(&org.tenant.to_string())
                        || text.contains(&org.number)
                        || org.emails.iter().any(|email| text.contains(email.as_str()))
                })
                .collect()
        }
    }

    /// An organization signed up through the accounts service.
    struct Org {
        tenant: TenantId,
        owner: User,
        number: String,
        emails: Vec<String>,
    }

    fn organization_number(n: u32) -> String {
        let base = format!("5562{:05}", n);
        let digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
        format!("{}-{}{}", &base[..6], &base[6..], luhn_check_digit(&digits))
    }

    async fn sign_up(fixture: &Fixture, n: u32) -> Org {
        let email = format!("owner{n}@nordlysfleet.se");
        let number = organization_number(n);
        let (organization, owner) =
            AccountService::new(fixture.table.clone(), fixture.clock.clone())
                .sign_up(
                    SignUpRequest {
                        organization_name: format!("Nordlys Fleet {n} AB"),
                        organization_number: number.clone(),
                        name: "Anna Lind".into(),
                        email: email.clone(),
                        password: PASSWORD.into(),
                    },
                    RequestInfo::default(),
                )
                .await
                .unwrap();
        Org {
            tenant: organization.id,
            owner,
            number,
            emails: vec![email],
        }
    }

    /// A member of `org` as an accepted invitation leaves one: the user and the login.
    async fn add_member(
        fixture: &Fixture,
        org: &mut Org,
        email: &str,
        role: Role,
        language: Option<&str>,
    ) -> User {
        let user = User {
            id: UserId::generate(),
            tenant_id: org.tenant,
            name: "Erik Berg".into(),
            email: Email::parse(email).unwrap(),
            role,
            created_at: fixture.clock.now(),
            language: language.map(str::to_owned),
        };
        let record = UserRecord::new(user.clone(), "not-a-hash".into());
        fixture
            .table
            .put(
                Item::new(
                    keys::user(org.tenant, user.id),
                    to_attributes(&record).unwrap(),
                ),
                Condition::NotExists,
            )
            .await
            .unwrap();
        fixture
            .table
            .put(
                Item::new(
                    keys::email_login(email),
                    to_attributes(&json!({ "tenantId": org.tenant, "userId": user.id })).unwrap(),
                ),
                Condition::NotExists,
            )
            .await
            .unwrap();
        org.emails.push(email.to_owned());
        user
    }

    /// The domain `org` verifies for single sign-on in [`add_business_data`].
    fn sso_domain_of(org: &Org) -> String {
        format!("n{}.se", org.number.replace('-', ""))
    }

    /// `org`'s owner claims `domain` and, when `verified`, proves it.
    async fn claim_domain(fixture: &Fixture, org: &Org, domain: &str, verified: bool) {
        let dns = Arc::new(MemoryDns::default());
        let domains = SsoDomains::new(fixture.table.clone(), fixture.clock.clone(), dns.clone());
        let owner = crate::audit::Actor {
            tenant: org.tenant,
            user: org.owner.id,
            role: Role::Owner,
            request: RequestInfo::default(),
        };
        let (claim, _) = domains.claim(&owner, domain).await.unwrap();
        if verified {
            dns.publish(&claim.record.name, &claim.record.value);
            domains.verify(&owner, domain).await.unwrap();
        }
    }

    /// Contracts (one priced off a reference rate, with its marker), a dashboard and its
    /// registration, a file waiting for an import, single sign-on settings with their
    /// client secret in the vault and a verified domain, and a session of the owner.
    async fn add_business_data(fixture: &Fixture, org: &Org) {
        for (number, series) in [("LC-1", None), ("LC-2", Some("SWESTR"))] {
            let id = ContractId::generate();
            let mut contract = json!({ "id": id, "contractNumber": number });
            if let Some(series) = series {
                contract["rateReference"] = json!({ "series": series, "margin": "1.5" });
                let series = SeriesId::parse(series).unwrap();
                fixture
                    .table
                    .put(
                        Item::new(
                            keys::rate_reference(&series, org.tenant, id),
                            Default::default(),
                        ),
                        Condition::NotExists,
                    )
                    .await
                    .unwrap();
            }
            let item = Item::new(
                keys::contract(org.tenant, id),
                to_attributes(&contract).unwrap(),
            )
            .with_index(keys::contract_by_end(org.tenant, day("2027-02-28"), id));
            fixture.table.put(item, Condition::NotExists).await.unwrap();
            let marker = Item::new(
                keys::contract_number(org.tenant, number),
                Default::default(),
            );
            fixture
                .table
                .put(marker, Condition::NotExists)
                .await
                .unwrap();
        }
        for key in [
            keys::portfolio_epoch(org.tenant),
            keys::portfolio_registration(org.tenant),
        ] {
            fixture
                .table
                .put(Item::new(key, Default::default()), Condition::None)
                .await
                .unwrap();
        }
        let folder = crate::blobs::tenant_folder(IMPORTS_AREA, org.tenant).unwrap();
        let file = BlobKey::parse(&format!("{folder}/job.csv")).unwrap();
        fixture
            .blobs
            .put(&file, b"contractNumber\nLC-3\n".to_vec(), "text/csv")
            .await
            .unwrap();
        let secret = format!("sso/{}", org.tenant);
        fixture.secrets.put(&secret, "client-secret").await.unwrap();
        let settings = Item::new(
            keys::sso_settings(org.tenant),
            to_attributes(&json!({ "requireSso": false, "secretRef": secret })).unwrap(),
        );
        fixture
            .table
            .put(settings, Condition::NotExists)
            .await
            .unwrap();
        claim_domain(fixture, org, &sso_domain_of(org), true).await;
        SessionService::new(fixture.table.clone(), fixture.clock.clone())
            .open(&org.owner, "password", &RequestInfo::default())
            .await
            .unwrap();
    }

    /// Warns `org` (and any other organization as inactive): the clock moves to the
    /// first day it is due.
    async fn warn(fixture: &Fixture) -> RetentionReport {
        fixture.advance_days(i64::from(
            fixture.service.policy().inactive_days() - WARNING_DAYS,
        ));
        fixture.service.run().await.unwrap()
    }

    #[tokio::test]
    async fn owners_are_warned_once_in_their_language_and_it_is_recorded() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let mut org = sign_up(&fixture, 1).await;
        add_member(
            &fixture,
            &mut org,
            "second.owner@nordlysfleet.se",
            Role::Owner,
            Some("sv"),
        )
        .await;
        add_member(
            &fixture,
            &mut org,
            "editor@nordlysfleet.se",
            Role::Editor,
            None,
        )
        .await;
        let other = sign_up(&fixture, 2).await;

        // The day before it is due, nothing happens.
        fixture.advance_days(1795);
        fixture.activity(&other).await;
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.organizations, report.warned), (2, 0));
        assert!(fixture.mailer.sent().is_empty());

        fixture.advance_days(1);
        let report = fixture.service.run().await.unwrap();
        assert_eq!(
            (report.warned, report.mails_sent, report.deleted),
            (1, 2, 0)
        );
        let today = fixture.clock.today();
        let deletion_date = today + Days::new(30);
        let mails = fixture.mailer.sent();
        let mut to: Vec<&str> = mails.iter().map(|mail| mail.to().as_str()).collect();
        to.sort();
        assert_eq!(
            to,
            ["owner1@nordlysfleet.se", "second.owner@nordlysfleet.se"],
            "owners only"
        );
        for mail in &mails {
            assert_eq!(
                mail.subject(),
                format!("Nordlys Fleet 1 AB will be deleted on {deletion_date}")
            );
        }
        let swedish = mails
            .iter()
            .find(|m| m.to().as_str().starts_with("second"))
            .unwrap();
        assert_eq!(swedish.text(), "language: sv");

        let (registration, _) = fixture.registration(&org).await.unwrap();
        assert_eq!(registration.warned_at, Some(fixture.clock.now()));
        assert_eq!(registration.deletion_date, Some(deletion_date));
        assert!(
            fixture
                .audit_actions(&org)
                .contains(&"retention.warned".to_owned())
        );
        let (other_registration, _) = fixture.registration(&other).await.unwrap();
        assert_eq!(other_registration.warned_at, None);

        // Not warned twice: later that day, and every day until the deletion date.
        fixture.service.run().await.unwrap();
        for _ in 0..29 {
            fixture.advance_days(1);
            fixture.activity(&other).await;
            let report = fixture.service.run().await.unwrap();
            assert_eq!((report.warned, report.deleted), (0, 0));
        }
        assert_eq!(fixture.mailer.sent().len(), 2);
        assert!(
            fixture
                .table
                .get(&keys::organization(org.tenant))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn activity_after_the_warning_clears_it_and_keeps_the_organization() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let org = sign_up(&fixture, 3).await;
        assert_eq!(warn(&fixture).await.warned, 1);

        fixture.advance_days(10);
        fixture.activity(&org).await;
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.cleared, report.warned, report.deleted), (1, 0, 0));
        let (registration, _) = fixture.registration(&org).await.unwrap();
        assert_eq!(
            (registration.warned_at, registration.deletion_date),
            (None, None)
        );
        assert!(
            fixture
                .audit_actions(&org)
                .contains(&"retention.warning_cleared".to_owned())
        );

        // Past the old deletion date: kept, and not warned again until due again.
        fixture.advance_days(25);
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.deleted, report.warned, report.cleared), (0, 0, 0));
        assert!(
            fixture
                .table
                .get(&keys::organization(org.tenant))
                .await
                .unwrap()
                .is_some()
        );
        fixture.advance_days(1796 - 25 - 1);
        assert_eq!(fixture.service.run().await.unwrap().warned, 0);
        fixture.advance_days(1);
        assert_eq!(fixture.service.run().await.unwrap().warned, 1);
    }

    #[tokio::test]
    async fn everything_of_the_organization_goes_thirty_days_after_the_warning() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let mut org = sign_up(&fixture, 4).await;
        add_member(
            &fixture,
            &mut org,
            "second.owner@nordlysfleet.se",
            Role::Owner,
            None,
        )
        .await;
        add_business_data(&fixture, &org).await;
        let mut other = sign_up(&fixture, 5).await;
        add_member(
            &fixture,
            &mut other,
            "colleague@annanfirma.se",
            Role::Viewer,
            None,
        )
        .await;
        add_business_data(&fixture, &other).await;

        assert_eq!(warn(&fixture).await.warned, 2);
        fixture.activity(&other).await;
        let kept_before = fixture.traces_of(&other);

        fixture.advance_days(29);
        let report = fixture.service.run().await.unwrap();
        assert_eq!(
            (report.deleted, report.cleared),
            (0, 1),
            "the other one is active"
        );
        fixture.advance_days(1);
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.deleted, report.cleared, report.failed), (1, 0, 0));

        // Nothing of it is left but the retention record, which names no person.
        let traces = fixture.traces_of(&org);
        assert_eq!(traces.len(), 1, "{traces:#?}");
        let record = fixture
            .table
            .get(&keys::retention_record(org.tenant))
            .await
            .unwrap()
            .unwrap();
        let text = json!(record.attributes).to_string();
        assert!(
            !text.contains("nordlysfleet") && !text.contains("Anna") && !text.contains(&org.number)
        );
        let record: RetentionRecord = from_item(record).unwrap();
        assert_eq!(record.removed_at, fixture.clock.now());
        assert_eq!(record.deletion_date, Some(fixture.clock.today()));
        // Two members (their users); two contracts; the logins, the number, a marker,
        // the verified domain and the dashboard registration; the file; the client
        // secret.
        assert_eq!(
            (
                record.removed.members,
                record.removed.contracts,
                record.removed.shared_items,
                record.removed.blobs,
                record.removed.secrets
            ),
            (2, 2, 6, 1, 1)
        );
        // Its domain is free for another organization; the other's stays verified.
        for (org, kept) in [(&org, false), (&other, true)] {
            let owner = fixture
                .table
                .get(&keys::sso_domain_owner(&sso_domain_of(org)))
                .await
                .unwrap();
            assert_eq!(owner.is_some(), kept);
        }
        assert_eq!(
            fixture.secrets.names(),
            [format!("sso/{}", other.tenant)],
            "only the other organization's secret is left"
        );
        assert!(record.removed.audit_events >= 2, "sign-up and warning");
        let partition_items_before = record.removed.items;
        assert!(partition_items_before > 10, "{partition_items_before}");
        assert!(
            fixture
                .blobs
                .keys()
                .iter()
                .all(|key| !key.contains(&org.tenant.to_string()))
        );

        // The other organization is untouched (its warning cleared by its activity).
        let mut kept_after = fixture.traces_of(&other);
        kept_after.retain(|text| !text.contains("retention.warning_cleared"));
        assert_eq!(kept_after.len(), kept_before.len());
        assert!(
            fixture
                .blobs
                .keys()
                .iter()
                .any(|key| key.contains(&other.tenant.to_string()))
        );

        // Its addresses and number are free again.
        let again = AccountService::new(fixture.table.clone(), fixture.clock.clone())
            .sign_up(
                SignUpRequest {
                    organization_name: "Nordlys Fleet AB".into(),
                    organization_number: org.number.clone(),
                    name: "Anna Lind".into(),
                    email: org.emails[0].clone(),
                    password: PASSWORD.into(),
                },
                RequestInfo::default(),
            )
            .await;
        assert!(again.is_ok(), "{again:?}");
        // Runs after the removal find nothing more to do.
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.deleted, report.failed), (0, 0));
    }

    #[tokio::test]
    async fn a_global_item_that_points_elsewhere_stays() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let org = sign_up(&fixture, 13).await;
        let mut other = sign_up(&fixture, 14).await;
        // The address signs in to the other organization, but a stale member record of
        // the first still names it.
        let moved = add_member(
            &fixture,
            &mut other,
            "moved@nordlysfleet.se",
            Role::Editor,
            None,
        )
        .await;
        let stale = User {
            id: UserId::generate(),
            tenant_id: org.tenant,
            ..moved.clone()
        };
        let record = UserRecord::new(stale.clone(), "not-a-hash".into());
        fixture
            .table
            .put(
                Item::new(
                    keys::user(org.tenant, stale.id),
                    to_attributes(&record).unwrap(),
                ),
                Condition::NotExists,
            )
            .await
            .unwrap();

        // Both claimed a domain; the other organization verified it.
        claim_domain(&fixture, &org, "shared.nordlysfleet.se", false).await;
        claim_domain(&fixture, &other, "shared.nordlysfleet.se", true).await;

        warn(&fixture).await;
        fixture.activity(&other).await;
        fixture.advance_days(30);
        assert_eq!(fixture.service.run().await.unwrap().deleted, 1);
        let domain_owner = fixture
            .table
            .get(&keys::sso_domain_owner("shared.nordlysfleet.se"))
            .await
            .unwrap()
            .expect("the other organization's verified domain");
        assert_eq!(domain_owner.attributes["tenantId"], json!(other.tenant));
        let login = fixture
            .table
            .get(&keys::email_login("moved@nordlysfleet.se"))
            .await
            .unwrap()
            .expect("the other organization's login");
        assert_eq!(login.attributes["userId"], json!(moved.id));
        assert!(
            fixture
                .table
                .get(&keys::user(other.tenant, moved.id))
                .await
                .unwrap()
                .is_some()
        );
    }

    /// Passes everything to the table, but a sign-in lands just before the claim.
    struct SignInBeforeClaim {
        table: Arc<MemoryTable>,
        clock: Arc<FixedClock>,
    }

    #[async_trait::async_trait]
    impl Table for SignInBeforeClaim {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            self.table.get(key).await
        }
        async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
            self.table.put(item, condition).await
        }
        async fn update(&self, update: Update) -> Result<Item, StoreError> {
            if update.set.contains_key("deletingSince") {
                let tenant = keys::registered_tenant(&update.key.sk).unwrap();
                ActivityLog::new(self.table.clone(), self.clock.clone())
                    .record(tenant)
                    .await?;
            }
            self.table.update(update).await
        }
        async fn delete(
            &self,
            key: &Key,
            condition: Condition,
        ) -> Result<Option<Item>, StoreError> {
            self.table.delete(key, condition).await
        }
        async fn query(&self, query: Query) -> Result<Page, StoreError> {
            self.table.query(query).await
        }
        async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
            self.table.transact_write(ops).await
        }
    }

    #[tokio::test]
    async fn a_sign_in_just_before_the_removal_keeps_the_organization() {
        let table = Arc::new(MemoryTable::default());
        let clock = Arc::new(FixedClock::new(START.parse().unwrap()));
        let racing = SignInBeforeClaim {
            table: table.clone(),
            clock: clock.clone(),
        };
        let fixture =
            Fixture::with_table(table, Arc::new(racing), clock, RetentionPolicy::default());
        let org = sign_up(&fixture, 6).await;
        assert_eq!(warn(&fixture).await.warned, 1);
        fixture.advance_days(30);
        let report = fixture.service.run().await.unwrap();
        assert_eq!((report.deleted, report.kept_by_activity), (0, 1));
        let (registration, _) = fixture.registration(&org).await.unwrap();
        assert_eq!(registration.deleting_since, None);
        assert_eq!(registration.last_active_on, Some(fixture.clock.today()));
        assert!(
            fixture
                .table
                .get(&keys::organization(org.tenant))
                .await
                .unwrap()
                .is_some()
        );
        // The next run clears the warning.
        assert_eq!(fixture.service.run().await.unwrap().cleared, 1);
    }

    #[tokio::test]
    async fn a_removal_cut_off_anywhere_is_finished_by_the_next_run() {
        // A removal cut off after each number of writes, until one runs through.
        for writes in 0.. {
            let fixture = Fixture::new(RetentionPolicy::default());
            let mut org = sign_up(&fixture, 7).await;
            add_member(
                &fixture,
                &mut org,
                "second.owner@nordlysfleet.se",
                Role::Owner,
                None,
            )
            .await;
            add_business_data(&fixture, &org).await;
            // Enough audit events that the partition takes more than one page.
            for _ in 0..150 {
                let event = AuditEvent::system(
                    org.tenant,
                    fixture.clock.now(),
                    "contract.repriced",
                    "contract:x".into(),
                    None,
                    None,
                );
                fixture
                    .table
                    .transact_write(vec![event.write_op()])
                    .await
                    .unwrap();
            }
            assert_eq!(warn(&fixture).await.warned, 1);
            fixture.advance_days(30);

            fixture.table.crash_after_writes(writes);
            let report = fixture.service.run().await;
            fixture.table.restart();
            if report.as_ref().is_ok_and(|report| report.deleted == 1) {
                assert!(writes >= 8, "the removal took {writes} writes");
                break;
            }
            // A later run (the next day) finishes it.
            fixture.advance_days(1);
            let report = fixture.service.run().await.unwrap();
            assert_eq!(
                (report.deleted, report.failed),
                (1, 0),
                "cut off after {writes} writes"
            );
            let traces = fixture.traces_of(&org);
            assert_eq!(
                traces.len(),
                1,
                "cut off after {writes} writes: {traces:#?}"
            );
            let record: RetentionRecord = from_item(
                fixture
                    .table
                    .get(&keys::retention_record(org.tenant))
                    .await
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
            // Each page is counted with its deletions, so these are exact: the sign-up,
            // the sign-in, the domain's claim and verification, the filler and the
            // warning.
            assert_eq!(
                (
                    record.removed.members,
                    record.removed.contracts,
                    record.removed.audit_events
                ),
                (2, 2, 155),
                "cut off after {writes} writes"
            );
            assert!(fixture.blobs.keys().is_empty());
            assert!(fixture.secrets.names().is_empty());
        }
    }

    #[tokio::test]
    async fn a_mail_service_that_is_down_leaves_the_warning_for_the_next_run() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let mut org = sign_up(&fixture, 8).await;
        add_member(
            &fixture,
            &mut org,
            "second.owner@nordlysfleet.se",
            Role::Owner,
            None,
        )
        .await;
        add_member(
            &fixture,
            &mut org,
            "gone@nordlysfleet.se",
            Role::Owner,
            None,
        )
        .await;
        fixture
            .mailer
            .unavailable_for("second.owner@nordlysfleet.se");
        fixture.mailer.reject("gone@nordlysfleet.se");

        let report = warn(&fixture).await;
        assert_eq!((report.warned, report.failed), (0, 1));
        let (registration, _) = fixture.registration(&org).await.unwrap();
        assert_eq!(
            registration.warned_at, None,
            "no deletion date without a warning"
        );

        fixture.mailer.recover();
        fixture.advance_days(1);
        let report = fixture.service.run().await.unwrap();
        // An address refused for good does not hold the warning back.
        assert_eq!((report.warned, report.mails_sent, report.failed), (1, 2, 0));
        let (registration, _) = fixture.registration(&org).await.unwrap();
        assert_eq!(
            registration.deletion_date,
            Some(fixture.clock.today() + Days::new(30))
        );
    }

    #[tokio::test]
    async fn organizations_without_a_recorded_activity_start_their_period_when_found() {
        let fixture = Fixture::new(RetentionPolicy::default());
        // Signed up before the registry: the organization, a member, a dashboard.
        let legacy = sign_up(&fixture, 9).await;
        fixture
            .table
            .delete(
                &keys::organization_registration(legacy.tenant),
                Condition::None,
            )
            .await
            .unwrap();
        fixture
            .table
            .put(
                Item::new(
                    keys::portfolio_registration(legacy.tenant),
                    Default::default(),
                ),
                Condition::None,
            )
            .await
            .unwrap();
        // Another one, registered without a day.
        let undated = sign_up(&fixture, 10).await;
        let mut update = Update::new(keys::organization_registration(undated.tenant));
        update.remove.push("lastActiveOn".into());
        fixture.table.update(update).await.unwrap();
        // A third one, signing in for the first time since.
        let returning = sign_up(&fixture, 11).await;
        fixture
            .table
            .delete(
                &keys::organization_registration(returning.tenant),
                Condition::None,
            )
            .await
            .unwrap();

        fixture.advance_days(4000);
        fixture.activity(&returning).await;
        let report = fixture.service.run().await.unwrap();
        assert_eq!(
            (report.registered, report.warned, report.deleted),
            (2, 0, 0)
        );
        for org in [&legacy, &undated, &returning] {
            let (registration, _) = fixture.registration(org).await.unwrap();
            assert_eq!(registration.last_active_on, Some(fixture.clock.today()));
        }
        // Their period runs from now.
        fixture.advance_days(1795);
        assert_eq!(fixture.service.run().await.unwrap().warned, 0);
        fixture.advance_days(1);
        assert_eq!(fixture.service.run().await.unwrap().warned, 3);
    }

    /// Counts the writes that reach a table.
    struct CountingTable {
        table: Arc<MemoryTable>,
        writes: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Table for CountingTable {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            self.table.get(key).await
        }
        async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.table.put(item, condition).await
        }
        async fn update(&self, update: Update) -> Result<Item, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.table.update(update).await
        }
        async fn delete(
            &self,
            key: &Key,
            condition: Condition,
        ) -> Result<Option<Item>, StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.table.delete(key, condition).await
        }
        async fn query(&self, query: Query) -> Result<Page, StoreError> {
            self.table.query(query).await
        }
        async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.table.transact_write(ops).await
        }
    }

    #[tokio::test]
    async fn activity_is_written_at_most_once_a_day_and_only_forward() {
        let fixture = Fixture::new(RetentionPolicy::default());
        let org = sign_up(&fixture, 12).await;
        let counting = Arc::new(CountingTable {
            table: fixture.table.clone(),
            writes: AtomicUsize::new(0),
        });
        let activity = ActivityLog::new(counting.clone(), fixture.clock.clone());
        let writes = || counting.writes.load(Ordering::SeqCst);

        // The sign-up's day is recorded already.
        for _ in 0..3 {
            activity.record(org.tenant).await.unwrap();
        }
        assert_eq!(writes(), 0);
        fixture.advance_days(1);
        for _ in 0..3 {
            activity.record(org.tenant).await.unwrap();
        }
        assert_eq!(writes(), 1);
        let (registration, version) = fixture.registration(&org).await.unwrap();
        assert_eq!(registration.last_active_on, Some(fixture.clock.today()));
        // Another process the same day reads and writes nothing.
        ActivityLog::new(counting.clone(), fixture.clock.clone())
            .record(org.tenant)
            .await
            .unwrap();
        assert_eq!(writes(), 1);
        // A clock behind never moves the day back.
        fixture.advance_days(-3);
        activity.record(org.tenant).await.unwrap();
        assert_eq!(fixture.registration(&org).await.unwrap().1, version);
        assert_eq!(writes(), 1);

        // An organization being removed is not kept by a late sign-in; one that is gone
        // is not registered again.
        fixture.advance_days(10);
        let mut claim = Update::new(keys::organization_registration(org.tenant));
        claim
            .set
            .insert("deletingSince".into(), json!(fixture.clock.now()));
        fixture.table.update(claim).await.unwrap();
        let before = fixture.registration(&org).await.unwrap();
        activity.record(org.tenant).await.unwrap();
        assert_eq!(fixture.registration(&org).await.unwrap(), before);
        let gone = TenantId::generate();
        activity.record(gone).await.unwrap();
        assert!(
            fixture
                .table
                .get(&keys::organization_registration(gone))
                .await
                .unwrap()
                .is_none()
        );
    }
}
