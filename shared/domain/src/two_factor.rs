//! A user's two-factor login (TOTP): enrolment, confirmation, the second step of a login,
//! and turning it off. The rules of codes live in [`crate::totp`]; this module keeps the
//! state they need.
//!
//! The state is one item beside the user (`T#<tenant>` / `TOTP#<user>`): a pending secret
//! while an enrolment is unconfirmed, the confirmed secret, the last time step a code was
//! used for, the recovery-code hashes, and a count of wrong codes in a row. Every change
//! is a conditional write on the item's version, in one transaction with its audit event,
//! so two requests with the same code cannot both pass: the loser re-reads, finds the
//! step used (or the recovery code gone) and is refused.
//!
//! Neither secrets, codes nor hashes reach an audit event or a log line.

use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::keys;
use crate::store::{Condition, Item, StoreError, Table, WriteOp, from_item, to_attributes};
use crate::totp::{self, RecoveryCodeHash, RecoveryCodes, TotpEnrolment, TotpError, TotpSecret};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Wrong codes in a row after which codes are refused for [`LOCKOUT_MINUTES`]: six digits
/// are guessable by brute force otherwise, and a pending token is cheap to get again for
/// whoever has the password.
pub const MAX_FAILED_ATTEMPTS: u32 = 5;
/// How long codes are refused after [`MAX_FAILED_ATTEMPTS`] wrong ones.
pub const LOCKOUT_MINUTES: i64 = 5;
/// Conditional writes retried after losing to a concurrent change of the same item.
const WRITE_ATTEMPTS: usize = 3;

/// How the second factor was proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Totp,
    RecoveryCode,
}

impl Method {
    /// The sign-in method recorded on the session and in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::RecoveryCode => "recoveryCode",
        }
    }
}

/// What a user typed as their second factor.
#[derive(Clone, Copy, Debug)]
pub enum SecondFactor<'a> {
    /// Six digits from the authenticator app.
    Totp(&'a str),
    /// One of the recovery codes shown at enrolment.
    RecoveryCode(&'a str),
}

impl<'a> SecondFactor<'a> {
    /// Either kind from one field: six digits are an app code, anything else is read as a
    /// recovery code (those are twelve characters).
    pub fn either(input: &'a str) -> Self {
        let digits = input.chars().filter(|c| !c.is_whitespace()).count();
        let all_digits = input
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace());
        if all_digits && digits == usize::from(totp::DIGITS) {
            SecondFactor::Totp(input)
        } else {
            SecondFactor::RecoveryCode(input)
        }
    }

    fn method(self) -> Method {
        match self {
            SecondFactor::Totp(_) => Method::Totp,
            SecondFactor::RecoveryCode(_) => Method::RecoveryCode,
        }
    }
}

/// A started enrolment: what to show the user once.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32, for typing into an app by hand.
    pub secret: TotpSecret,
    pub links: TotpEnrolment,
}

#[derive(Debug, thiserror::Error)]
pub enum TwoFactorError {
    /// Enrolment asked for while two-factor login is on: turn it off first.
    #[error("two-factor login is already on")]
    AlreadyEnabled,
    /// Confirmation without a started enrolment, or a code check for a user without
    /// two-factor login.
    #[error("two-factor login is not on, or no enrolment was started")]
    NotEnabled,
    /// The code is malformed, wrong, expired or already used.
    #[error("the code is not valid: {0}")]
    InvalidCode(CodeRefusal),
    /// Too many wrong codes in a row; codes are refused for this many more seconds.
    #[error("too many wrong codes; try again in {retry_after_seconds} s")]
    Locked { retry_after_seconds: i64 },
    /// The user is gone.
    #[error("the user does not exist")]
    UserNotFound,
    #[error("the item kept changing under concurrent requests; retry")]
    Contention,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a code was refused, for the audit trail and the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    #[error("malformed")]
    Malformed,
    #[error("wrong or expired")]
    Wrong,
    #[error("already used")]
    AlreadyUsed,
}

impl CodeRefusal {
    fn as_str(self) -> &'static str {
        match self {
            CodeRefusal::Malformed => "malformed",
            CodeRefusal::Wrong => "wrong",
            CodeRefusal::AlreadyUsed => "alreadyUsed",
        }
    }
}

impl From<TotpError> for CodeRefusal {
    fn from(error: TotpError) -> Self {
        match error {
            TotpError::Malformed => CodeRefusal::Malformed,
            TotpError::Invalid => CodeRefusal::Wrong,
            TotpError::AlreadyUsed => CodeRefusal::AlreadyUsed,
        }
    }
}

/// The stored two-factor state of one user. `Debug` shows no secret or hash.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwoFactorRecord {
    /// Generated by an enrolment and not yet proven by a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_secret: Option<TotpSecret>,
    /// Present exactly when two-factor login is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<TotpSecret>,
    /// The time step of the last accepted code: it and earlier ones are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_step: Option<u64>,
    /// Hashes of the recovery codes not used yet.
    #[serde(default)]
    recovery_codes: Vec<RecoveryCodeHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled_at: Option<DateTime<Utc>>,
    /// Wrong codes since the last right one.
    #[serde(default)]
    failed_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_failed_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for TwoFactorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoFactorRecord")
            .field("pending", &self.pending_secret.is_some())
            .field("enabled", &self.secret.is_some())
            .field("last_used_step", &self.last_used_step)
            .field("recovery_codes", &self.recovery_codes.len())
            .field("failed_attempts", &self.failed_attempts)
            .finish()
    }
}

impl TwoFactorRecord {
    fn locked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let until = self.last_failed_at? + Duration::minutes(LOCKOUT_MINUTES);
        (self.failed_attempts >= MAX_FAILED_ATTEMPTS && now < until).then_some(until)
    }

    /// Checks `factor` against the confirmed secret (or, with `pending`, the pending one)
    /// and, when right, uses it up in this record.
    fn redeem(
        &mut self,
        factor: SecondFactor<'_>,
        now: DateTime<Utc>,
        pending: bool,
    ) -> Result<(), CodeRefusal> {
        match factor {
            SecondFactor::Totp(code) => {
                let secret = if pending {
                    self.pending_secret.as_ref()
                } else {
                    self.secret.as_ref()
                };
                let secret = secret.ok_or(CodeRefusal::Wrong)?;
                let step = totp::verify(secret, code, now, self.last_used_step)?;
                self.last_used_step = Some(step);
            }
            SecondFactor::RecoveryCode(input) if !pending => {
                let index =
                    RecoveryCodes::redeem(input, &self.recovery_codes).ok_or(CodeRefusal::Wrong)?;
                self.recovery_codes.remove(index);
            }
            // An enrolment is proven by the app, never by a recovery code.
            SecondFactor::RecoveryCode(_) => return Err(CodeRefusal::Wrong),
        }
        self.failed_attempts = 0;
        self.last_failed_at = None;
        Ok(())
    }
}

/// The item as read, with the version its conditional write must find.
struct Stored {
    record: TwoFactorRecord,
    version: Option<u64>,
}

impl Stored {
    fn put(&self, actor: &Actor, record: &TwoFactorRecord) -> Result<WriteOp, StoreError> {
        let key = keys::two_factor(actor.tenant, actor.user);
        let (version, condition) = match self.version {
            Some(version) => (version + 1, Condition::VersionIs(version)),
            None => (1, Condition::NotExists),
        };
        Ok(WriteOp::Put {
            item: Item::new(key, to_attributes(record)?).with_version(version),
            condition,
        })
    }

    fn delete(&self, actor: &Actor) -> WriteOp {
        WriteOp::Delete {
            key: keys::two_factor(actor.tenant, actor.user),
            condition: self
                .version
                .map_or(Condition::NotExists, Condition::VersionIs),
        }
    }
}

/// What a code check decided to write.
enum Decision<T> {
    /// Write these operations; answer `T` once they are written.
    Done(Vec<WriteOp>, T),
    /// Write these operations (the failure counted and audited), then refuse.
    Refused(Vec<WriteOp>, TwoFactorError),
    /// Refuse without writing.
    Stop(TwoFactorError),
}

pub struct TwoFactorService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
}

impl TwoFactorService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    /// Whether the user logs in with a second factor.
    pub async fn is_enabled(
        &self,
        tenant: crate::ids::TenantId,
        user: crate::ids::UserId,
    ) -> Result<bool, TwoFactorError> {
        let stored = self.read(tenant, user).await?;
        Ok(stored.record.secret.is_some())
    }

    /// Starts an enrolment: a new secret, and the link and QR code that add it to an app.
    /// It takes effect only once [`Self::confirm`] sees a code of it; starting again
    /// replaces an unconfirmed secret. A user with two-factor login on must turn it off
    /// first, so that a stolen session cannot swap the secret.
    pub async fn begin_enrolment(&self, actor: &Actor) -> Result<Enrolment, TwoFactorError> {
        let Some(user) = self
            .table
            .get(&keys::user(actor.tenant, actor.user))
            .await?
        else {
            return Err(TwoFactorError::UserNotFound);
        };
        let email = from_item::<crate::accounts::UserRecord>(user)?.user.email;
        let secret = TotpSecret::generate().map_err(internal)?;
        let links = TotpEnrolment::new(&secret, &email).map_err(internal)?;
        self.write(actor, |stored, now| {
            if stored.record.secret.is_some() {
                return Decision::Stop(TwoFactorError::AlreadyEnabled);
            }
            let record = TwoFactorRecord {
                pending_secret: Some(secret.clone()),
                ..stored.record.clone()
            };
            let audit = AuditEvent::change(
                actor,
                now,
                "auth.2fa_enrolment_started",
                user_target(actor),
                None,
                None,
            );
            ops_or_stop(stored.put(actor, &record), audit, ())
        })
        .await?;
        Ok(Enrolment { secret, links })
    }

    /// Finishes an enrolment with a code from the app, which proves the app has the
    /// secret, and turns two-factor login on. Returns the recovery codes, shown once.
    pub async fn confirm(&self, actor: &Actor, code: &str) -> Result<Vec<String>, TwoFactorError> {
        let (shown_once, hashes) = RecoveryCodes::generate().map_err(internal)?;
        self.check_code(actor, "confirm", |stored, now| {
            if stored.record.secret.is_some() {
                return Err(TwoFactorError::AlreadyEnabled);
            }
            if stored.record.pending_secret.is_none() {
                return Err(TwoFactorError::NotEnabled);
            }
            let mut record = stored.record.clone();
            record.redeem(SecondFactor::Totp(code), now, true)?;
            record.secret = record.pending_secret.take();
            record.recovery_codes = hashes.clone();
            record.enabled_at = Some(now);
            let audit = AuditEvent::change(
                actor,
                now,
                "auth.2fa_enabled",
                user_target(actor),
                Some(serde_json::json!({ "enabled": false })),
                Some(serde_json::json!({
                    "enabled": true, "recoveryCodes": record.recovery_codes.len()
                })),
            );
            Ok((vec![stored.put(actor, &record)?, audit.write_op()], ()))
        })
        .await?;
        Ok(shown_once)
    }

    /// Turns two-factor login off, proven by a code from the app or a recovery code.
    pub async fn disable(
        &self,
        actor: &Actor,
        factor: SecondFactor<'_>,
    ) -> Result<(), TwoFactorError> {
        self.check_code(actor, "disable", |stored, now| {
            if stored.record.secret.is_none() {
                return Err(TwoFactorError::NotEnabled);
            }
            stored.record.clone().redeem(factor, now, false)?;
            let audit = AuditEvent::change(
                actor,
                now,
                "auth.2fa_disabled",
                user_target(actor),
                Some(serde_json::json!({ "enabled": true })),
                Some(serde_json::json!({ "enabled": false, "method": factor.method().as_str() })),
            );
            Ok((vec![stored.delete(actor), audit.write_op()], ()))
        })
        .await
    }

    /// The second step of a login: accepts each app code once (its time step is stored,
    /// so a replay is [`CodeRefusal::AlreadyUsed`]) and each recovery code once (its hash
    /// is removed).
    pub async fn verify_login(
        &self,
        actor: &Actor,
        factor: SecondFactor<'_>,
    ) -> Result<Method, TwoFactorError> {
        self.check_code(actor, "login", |stored, now| {
            if stored.record.secret.is_none() {
                return Err(TwoFactorError::NotEnabled);
            }
            let mut record = stored.record.clone();
            record.redeem(factor, now, false)?;
            let method = factor.method();
            let mut ops = vec![
                stored.put(actor, &record)?,
                AuditEvent::change(
                    actor,
                    now,
                    "auth.2fa_verified",
                    user_target(actor),
                    None,
                    Some(serde_json::json!({ "method": method.as_str() })),
                )
                .write_op(),
            ];
            if method == Method::RecoveryCode {
                let remaining = record.recovery_codes.len();
                ops.push(
                    AuditEvent::change(
                        actor,
                        now,
                        "auth.recovery_code_used",
                        user_target(actor),
                        Some(serde_json::json!({ "recoveryCodes": remaining + 1 })),
                        Some(serde_json::json!({ "recoveryCodes": remaining })),
                    )
                    .write_op(),
                );
            }
            Ok((ops, method))
        })
        .await
    }

    /// A code check: refuses while locked out; counts and audits a wrong code
    /// (`auth.2fa_failed`); otherwise writes what `decide` says.
    async fn check_code<T>(
        &self,
        actor: &Actor,
        purpose: &'static str,
        decide: impl Fn(&Stored, DateTime<Utc>) -> Result<(Vec<WriteOp>, T), TwoFactorError>,
    ) -> Result<T, TwoFactorError> {
        self.write(actor, |stored, now| {
            if let Some(until) = stored.record.locked_until(now) {
                let audit = failure_event(actor, now, purpose, "locked");
                return Decision::Refused(
                    vec![audit.write_op()],
                    TwoFactorError::Locked {
                        retry_after_seconds: (until - now).num_seconds().max(1),
                    },
                );
            }
            match decide(stored, now) {
                Ok((ops, answer)) => Decision::Done(ops, answer),
                Err(TwoFactorError::InvalidCode(refusal)) => {
                    let mut record = stored.record.clone();
                    record.failed_attempts = record.failed_attempts.saturating_add(1);
                    record.last_failed_at = Some(now);
                    let audit = failure_event(actor, now, purpose, refusal.as_str());
                    // A user with nothing stored has no counter to keep.
                    let count = if stored.version.is_some() {
                        stored.put(actor, &record).map(Some)
                    } else {
                        Ok(None)
                    };
                    match count {
                        Ok(put) => Decision::Refused(
                            put.into_iter().chain([audit.write_op()]).collect(),
                            TwoFactorError::InvalidCode(refusal),
                        ),
                        Err(error) => Decision::Stop(error.into()),
                    }
                }
                Err(other) => Decision::Stop(other),
            }
        })
        .await
    }

    /// Reads the item, lets `decide` choose the writes, and writes them in one
    /// transaction; a write that loses to a concurrent one starts over from the read.
    async fn write<T>(
        &self,
        actor: &Actor,
        decide: impl Fn(&Stored, DateTime<Utc>) -> Decision<T>,
    ) -> Result<T, TwoFactorError> {
        for _ in 0..WRITE_ATTEMPTS {
            let stored = self.read(actor.tenant, actor.user).await?;
            let (ops, result) = match decide(&stored, self.clock.now()) {
                Decision::Done(ops, answer) => (ops, Ok(answer)),
                Decision::Refused(ops, error) => (ops, Err(error)),
                Decision::Stop(error) => return Err(error),
            };
            match self.table.transact_write(ops).await {
                Ok(()) => return result,
                // The item changed since it was read (its write is always the first), or a
                // concurrent transaction held it: decide again on what is stored now.
                Err(StoreError::TransactionCanceled { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(TwoFactorError::Contention)
    }

    async fn read(
        &self,
        tenant: crate::ids::TenantId,
        user: crate::ids::UserId,
    ) -> Result<Stored, TwoFactorError> {
        Ok(
            match self.table.get(&keys::two_factor(tenant, user)).await? {
                Some(item) => {
                    let version = item.version;
                    Stored {
                        record: from_item(item)?,
                        version: Some(version),
                    }
                }
                None => Stored {
                    record: TwoFactorRecord::default(),
                    version: None,
                },
            },
        )
    }
}

impl From<CodeRefusal> for TwoFactorError {
    fn from(refusal: CodeRefusal) -> Self {
        TwoFactorError::InvalidCode(refusal)
    }
}

fn ops_or_stop<T>(put: Result<WriteOp, StoreError>, audit: AuditEvent, answer: T) -> Decision<T> {
    match put {
        Ok(put) => Decision::Done(vec![put, audit.write_op()], answer),
        Err(error) => Decision::Stop(error.into()),
    }
}

fn user_target(actor: &Actor) -> String {
    format!("user:{}", actor.user)
}

/// A refused code, recorded with why and for what, never with the code.
fn failure_event(actor: &Actor, at: DateTime<Utc>, purpose: &str, reason: &str) -> AuditEvent {
    AuditEvent::failure(
        actor,
        at,
        "auth.2fa_failed",
        user_target(actor),
        None,
        Some(serde_json::json!({ "purpose": purpose, "reason": reason })),
    )
}

fn internal(error: impl std::fmt::Display) -> TwoFactorError {
    TwoFactorError::Internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::accounts::{Email, User, UserRecord};
    use crate::audit::RequestInfo;
    use crate::clock::FixedClock;
    use crate::ids::{TenantId, UserId};
    use crate::store::{Key, Page, Query, Update};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Enough of the table port for this module: gets that yield (so concurrent requests
    /// interleave between read and write), conditional puts and deletes, and atomic
    /// transactions; it counts transactions refused by a condition.
    #[derive(Default)]
    struct MemoryTable {
        items: Mutex<BTreeMap<Key, Item>>,
        refused: AtomicUsize,
    }

    impl MemoryTable {
        fn holds(items: &BTreeMap<Key, Item>, key: &Key, condition: Condition) -> bool {
            let current = items.get(key);
            match condition {
                Condition::None => true,
                Condition::NotExists | Condition::NotExistsOrExpired { .. } => current.is_none(),
                Condition::Exists => current.is_some(),
                Condition::VersionIs(version) => current.is_some_and(|i| i.version == version),
            }
        }

        fn audit_actions(&self) -> Vec<(String, crate::audit::Outcome, String)> {
            self.items
                .lock()
                .unwrap()
                .values()
                .filter(|item| item.key.sk.starts_with(keys::AUDIT_PREFIX))
                .map(|item| {
                    let event: AuditEvent = from_item(item.clone()).unwrap();
                    let text = serde_json::to_string(&event).unwrap();
                    (event.action, event.outcome, text)
                })
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl Table for MemoryTable {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            let item = self.items.lock().unwrap().get(key).cloned();
            tokio::task::yield_now().await;
            Ok(item)
        }
        async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
            self.transact_write(vec![WriteOp::Put { item, condition }])
                .await
                .map_err(|_| StoreError::ConditionFailed)
        }
        async fn update(&self, _: Update) -> Result<Item, StoreError> {
            Err(StoreError::Invalid("not used here".into()))
        }
        async fn delete(
            &self,
            key: &Key,
            condition: Condition,
        ) -> Result<Option<Item>, StoreError> {
            let old = self.items.lock().unwrap().get(key).cloned();
            self.transact_write(vec![WriteOp::Delete {
                key: key.clone(),
                condition,
            }])
            .await
            .map_err(|_| StoreError::ConditionFailed)?;
            Ok(old)
        }
        async fn query(&self, _: Query) -> Result<Page, StoreError> {
            Err(StoreError::Invalid("not used here".into()))
        }
        async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
            let mut items = self.items.lock().unwrap();
            let failed: Vec<usize> = ops
                .iter()
                .enumerate()
                .filter(|(_, op)| !Self::holds(&items, op.key(), op.condition()))
                .map(|(position, _)| position)
                .collect();
            if !failed.is_empty() {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::TransactionCanceled { failed });
            }
            for op in ops {
                match op {
                    WriteOp::Put { item, .. } => {
                        items.insert(item.key.clone(), item);
                    }
                    WriteOp::Delete { key, .. } => {
                        items.remove(&key);
                    }
                    WriteOp::Update(_) | WriteOp::Check { .. } => {}
                }
            }
            Ok(())
        }
    }

    struct Fixture {
        table: Arc<MemoryTable>,
        clock: Arc<FixedClock>,
        service: TwoFactorService,
        actor: Actor,
    }

    async fn fixture() -> Fixture {
        let table = Arc::new(MemoryTable::default());
        let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
        let actor = Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Editor,
            request: RequestInfo::default(),
        };
        let user = User {
            id: actor.user,
            tenant_id: actor.tenant,
            name: "Anna Lind".into(),
            email: Email::parse("anna.lind@nordlysfleet.se").unwrap(),
            role: Role::Editor,
            created_at: clock.now(),
            language: None,
        };
        let record = UserRecord::new(user, "not-a-hash".into());
        table
            .put(
                Item::new(
                    keys::user(actor.tenant, actor.user),
                    to_attributes(&record).unwrap(),
                ),
                Condition::NotExists,
            )
            .await
            .unwrap();
        let service = TwoFactorService::new(table.clone(), clock.clone());
        Fixture {
            table,
            clock,
            service,
            actor,
        }
    }

    /// The code an authenticator app shows for `secret` at `at`.
    fn app_code(secret: &TotpSecret, at: DateTime<Utc>) -> String {
        let secret = totp_rs::Secret::try_from_base32(secret.to_base32()).unwrap();
        totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_secret(secret)
            .with_step_duration(30)
            .with_skew(0)
            .build_noncompliant()
            .generate(u64::try_from(at.timestamp()).unwrap())
            .to_string()
    }

    /// Enrols and confirms: the secret and the recovery codes.
    async fn enrolled(f: &Fixture) -> (TotpSecret, Vec<String>) {
        let enrolment = f.service.begin_enrolment(&f.actor).await.unwrap();
        assert!(enrolment.links.otpauth_uri.starts_with("otpauth://totp/"));
        let code = app_code(&enrolment.secret, f.clock.now());
        let recovery = f.service.confirm(&f.actor, &code).await.unwrap();
        (enrolment.secret, recovery)
    }

    fn refusal(result: Result<impl std::fmt::Debug, TwoFactorError>) -> CodeRefusal {
        match result {
            Err(TwoFactorError::InvalidCode(refusal)) => refusal,
            other => panic!("expected a refused code, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn enrolment_takes_effect_only_when_a_code_confirms_it() {
        let f = fixture().await;
        let first = f.service.begin_enrolment(&f.actor).await.unwrap();
        assert!(
            !f.service
                .is_enabled(f.actor.tenant, f.actor.user)
                .await
                .unwrap()
        );
        // Starting again replaces the unconfirmed secret: the first app's code is wrong.
        let second = f.service.begin_enrolment(&f.actor).await.unwrap();
        assert_ne!(first.secret, second.secret);
        let stale = app_code(&first.secret, f.clock.now());
        assert_eq!(
            refusal(f.service.confirm(&f.actor, &stale).await),
            CodeRefusal::Wrong
        );
        let code = app_code(&second.secret, f.clock.now());
        let recovery = f.service.confirm(&f.actor, &code).await.unwrap();
        assert_eq!(recovery.len(), totp::RECOVERY_CODE_COUNT);
        assert!(
            f.service
                .is_enabled(f.actor.tenant, f.actor.user)
                .await
                .unwrap()
        );
        // The confirming code is used: it does not also log in.
        assert_eq!(
            refusal(
                f.service
                    .verify_login(&f.actor, SecondFactor::Totp(&code))
                    .await
            ),
            CodeRefusal::AlreadyUsed
        );
        // Enrolled users must turn it off before enrolling again.
        assert!(matches!(
            f.service.begin_enrolment(&f.actor).await,
            Err(TwoFactorError::AlreadyEnabled)
        ));
        assert!(matches!(
            f.service.confirm(&f.actor, &code).await,
            Err(TwoFactorError::AlreadyEnabled)
        ));
    }

    #[tokio::test]
    async fn confirming_without_an_enrolment_is_refused() {
        let f = fixture().await;
        assert!(matches!(
            f.service.confirm(&f.actor, "123456").await,
            Err(TwoFactorError::NotEnabled)
        ));
        assert!(matches!(
            f.service
                .verify_login(&f.actor, SecondFactor::Totp("123456"))
                .await,
            Err(TwoFactorError::NotEnabled)
        ));
    }

    #[tokio::test]
    async fn a_login_code_works_once_and_the_next_step_works() {
        let f = fixture().await;
        let (secret, _) = enrolled(&f).await;
        f.clock.advance(Duration::seconds(30));
        let code = app_code(&secret, f.clock.now());
        assert_eq!(
            f.service
                .verify_login(&f.actor, SecondFactor::Totp(&code))
                .await
                .unwrap(),
            Method::Totp
        );
        assert_eq!(
            refusal(
                f.service
                    .verify_login(&f.actor, SecondFactor::Totp(&code))
                    .await
            ),
            CodeRefusal::AlreadyUsed
        );
        f.clock.advance(Duration::seconds(30));
        let next = app_code(&secret, f.clock.now());
        assert_eq!(
            f.service
                .verify_login(&f.actor, SecondFactor::Totp(&next))
                .await
                .unwrap(),
            Method::Totp
        );
        assert_eq!(
            refusal(
                f.service
                    .verify_login(&f.actor, SecondFactor::Totp("12345"))
                    .await
            ),
            CodeRefusal::Malformed
        );
    }

    #[tokio::test]
    async fn a_recovery_code_works_once() {
        let f = fixture().await;
        let (_, recovery) = enrolled(&f).await;
        let code = &recovery[3];
        assert_eq!(
            f.service
                .verify_login(&f.actor, SecondFactor::either(&code.to_uppercase()))
                .await
                .unwrap(),
            Method::RecoveryCode
        );
        assert_eq!(
            refusal(
                f.service
                    .verify_login(&f.actor, SecondFactor::RecoveryCode(code))
                    .await
            ),
            CodeRefusal::Wrong
        );
        // The others still work.
        assert_eq!(
            f.service
                .verify_login(&f.actor, SecondFactor::RecoveryCode(&recovery[4]))
                .await
                .unwrap(),
            Method::RecoveryCode
        );
        let actions: Vec<String> = f
            .table
            .audit_actions()
            .into_iter()
            .map(|(action, _, _)| action)
            .collect();
        assert_eq!(
            actions
                .iter()
                .filter(|a| *a == "auth.recovery_code_used")
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn two_concurrent_uses_of_one_code_cannot_both_pass() {
        let f = fixture().await;
        let (secret, recovery) = enrolled(&f).await;
        f.clock.advance(Duration::seconds(30));
        let code = app_code(&secret, f.clock.now());
        let refused_before = f.table.refused.load(Ordering::Relaxed);
        let (a, b) = tokio::join!(
            f.service.verify_login(&f.actor, SecondFactor::Totp(&code)),
            f.service.verify_login(&f.actor, SecondFactor::Totp(&code)),
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(refusal(loser), CodeRefusal::AlreadyUsed);
        // Both read before either wrote: the conditional write is what refused one.
        assert!(f.table.refused.load(Ordering::Relaxed) > refused_before);

        let (a, b) = tokio::join!(
            f.service
                .verify_login(&f.actor, SecondFactor::RecoveryCode(&recovery[0])),
            f.service
                .verify_login(&f.actor, SecondFactor::RecoveryCode(&recovery[0])),
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn wrong_codes_are_audited_and_lock_after_five() {
        let f = fixture().await;
        let (secret, _) = enrolled(&f).await;
        f.clock.advance(Duration::seconds(30));
        let right = app_code(&secret, f.clock.now());
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        for _ in 0..MAX_FAILED_ATTEMPTS {
            assert_eq!(
                refusal(
                    f.service
                        .verify_login(&f.actor, SecondFactor::Totp(wrong))
                        .await
                ),
                CodeRefusal::Wrong
            );
        }
        // Locked: even the right code is refused until the lockout ends.
        assert!(matches!(
            f.service
                .verify_login(&f.actor, SecondFactor::Totp(&right))
                .await,
            Err(TwoFactorError::Locked { .. })
        ));
        f.clock.advance(Duration::minutes(LOCKOUT_MINUTES));
        let now_right = app_code(&secret, f.clock.now());
        assert!(
            f.service
                .verify_login(&f.actor, SecondFactor::Totp(&now_right))
                .await
                .is_ok()
        );
        let events = f.table.audit_actions();
        let failures: Vec<_> = events
            .iter()
            .filter(|(action, _, _)| action == "auth.2fa_failed")
            .collect();
        assert_eq!(failures.len(), MAX_FAILED_ATTEMPTS as usize + 1);
        assert!(
            failures
                .iter()
                .all(|(_, outcome, _)| *outcome == crate::audit::Outcome::Failure)
        );
        // No secret and no code in the trail.
        let trail: String = events.iter().map(|(_, _, text)| text.as_str()).collect();
        for leaked in [secret.to_base32(), right, now_right] {
            assert!(!trail.contains(&leaked), "{leaked} in the audit trail");
        }
    }

    #[tokio::test]
    async fn disabling_needs_a_code_and_removes_everything() {
        let f = fixture().await;
        let (secret, recovery) = enrolled(&f).await;
        assert_eq!(
            refusal(
                f.service
                    .disable(&f.actor, SecondFactor::either("abcd-efgh-jkmn"))
                    .await
            ),
            CodeRefusal::Wrong
        );
        f.service
            .disable(&f.actor, SecondFactor::either(&recovery[0]))
            .await
            .unwrap();
        assert!(
            !f.service
                .is_enabled(f.actor.tenant, f.actor.user)
                .await
                .unwrap()
        );
        assert!(matches!(
            f.service
                .disable(&f.actor, SecondFactor::either("123456"))
                .await,
            Err(TwoFactorError::NotEnabled)
        ));
        // Enrolling again starts from nothing: a new secret, new recovery codes.
        let (again, new_recovery) = enrolled(&f).await;
        assert_ne!(again, secret);
        assert!(new_recovery.iter().all(|code| !recovery.contains(code)));
        f.clock.advance(Duration::seconds(30));
        let code = app_code(&again, f.clock.now());
        f.service
            .disable(&f.actor, SecondFactor::either(&code))
            .await
            .unwrap();
        let actions: Vec<String> = f
            .table
            .audit_actions()
            .into_iter()
            .map(|(action, _, _)| action)
            .collect();
        for expected in [
            "auth.2fa_enrolment_started",
            "auth.2fa_enabled",
            "auth.2fa_disabled",
        ] {
            assert!(actions.iter().any(|a| a == expected), "{expected}");
        }
    }

    #[test]
    fn either_reads_six_digits_as_an_app_code() {
        assert!(matches!(
            SecondFactor::either("123 456"),
            SecondFactor::Totp(_)
        ));
        assert!(matches!(
            SecondFactor::either("1234-5678-9012"),
            SecondFactor::RecoveryCode(_)
        ));
        assert!(matches!(
            SecondFactor::either("12345"),
            SecondFactor::RecoveryCode(_)
        ));
    }
}
