//! Password reset by an e-mailed link that works once, for an hour.
//!
//! A request for an address with an account stores a reset (`T#<tenant>` /
//! `RESET#<id>`) and yields the link token, `ldp1.<tenant>.<reset>.<secret>`, of which
//! only the secret's SHA-256 is kept; a request for any other address yields nothing and
//! answers the same. Using the link sets the new password and ends every session of the
//! user (like "sign out everywhere"): whoever knew the old password is out.

use crate::accounts::{Email, PasswordPolicy, User, UserRecord, hash_password, user_by_email};
use crate::audit::{Actor, AuditEvent, RequestInfo};
use crate::clock::Clock;
use crate::ids::TenantId;
use crate::keys;
use crate::secret_token::SecretToken;
use crate::store::{Condition, Item, StoreError, Table, WriteOp, from_item, to_attributes};
use crate::validation::ValidationErrors;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a reset link works.
pub const RESET_MINUTES: i64 = 60;
/// How long a reset request takes to answer, at least. An address with an account costs
/// a durable write and a mail (the mail service's round trip, in AWS), one without costs
/// a read: answering both at this floor keeps the time from telling them apart. It is
/// above the known path's ordinary slowest, so only an outlier shows.
pub const RESET_ANSWER_FLOOR: std::time::Duration = std::time::Duration::from_millis(400);
const TOKEN_PREFIX: &str = "ldp1";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResetRecord {
    id: uuid::Uuid,
    user_id: crate::ids::UserId,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    secret_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_at: Option<DateTime<Utc>>,
}

/// A reset to mail: to whom, the link token, and until when it works.
pub struct ResetIssued {
    pub user: User,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for ResetIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetIssued")
            .field("user", &self.user.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Unknown, used, expired or forged: one answer for all.
    #[error("the reset link is not valid")]
    LinkInvalid,
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct PasswordResets {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
}

impl PasswordResets {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    /// A reset for the account of `email`, if there is one; `None` otherwise (the
    /// caller answers the same either way).
    pub async fn request(
        &self,
        email: &str,
        request: &RequestInfo,
    ) -> Result<Option<ResetIssued>, ResetError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(None);
        };
        let Some(record) = user_by_email(self.table.as_ref(), &email).await? else {
            return Ok(None);
        };
        let (tenant, user) = (record.user.tenant_id, record.user.id);
        let now = self.clock.now();
        let id = uuid::Uuid::now_v7();
        let token = SecretToken::generate(tenant, id.simple().to_string())
            .map_err(|e| ResetError::Internal(e.to_string()))?;
        let reset = ResetRecord {
            id,
            user_id: user,
            created_at: now,
            expires_at: now + Duration::minutes(RESET_MINUTES),
            secret_hash: token.hash(),
            used_at: None,
        };
        let audit = AuditEvent::change(
            &actor_of(&record.user, request),
            now,
            "auth.password_reset_requested",
            format!("user:{user}"),
            None,
            None,
        );
        self.table
            .transact_write(vec![
                WriteOp::Put {
                    item: reset_item(tenant, &reset)?,
                    condition: Condition::NotExists,
                },
                audit.write_op(),
            ])
            .await?;
        Ok(Some(ResetIssued {
            token: token.format(TOKEN_PREFIX),
            expires_at: reset.expires_at,
            user: record.user,
        }))
    }

    /// Sets a new password through the link token, once, and ends every session of
    /// the user.
    pub async fn complete(
        &self,
        token: &str,
        new_password: &str,
        request: &RequestInfo,
    ) -> Result<(), ResetError> {
        let token = SecretToken::parse(TOKEN_PREFIX, token).ok_or(ResetError::LinkInvalid)?;
        let tenant = token.tenant;
        let id = uuid::Uuid::try_parse(&token.id).map_err(|_| ResetError::LinkInvalid)?;
        let now = self.clock.now();
        let key = keys::password_reset(tenant, id);
        let Some(item) = self.table.get(&key).await? else {
            return Err(ResetError::LinkInvalid);
        };
        let version = item.version;
        let mut reset: ResetRecord = from_item(item)?;
        let matches = token.matches(&reset.secret_hash);
        if !matches || reset.used_at.is_some() || now >= reset.expires_at {
            return Err(ResetError::LinkInvalid);
        }
        let Some(user_item) = self.table.get(&keys::user(tenant, reset.user_id)).await? else {
            return Err(ResetError::LinkInvalid);
        };
        let user: UserRecord = from_item(user_item)?;
        let mut errors = ValidationErrors::new();
        errors.check(
            "/newPassword",
            PasswordPolicy::check(new_password, &[&user.user.name, user.user.email.as_str()]),
        );
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let password = new_password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ResetError::Internal(format!("hashing task failed: {e}")))?
            .map_err(|e| ResetError::Internal(e.to_string()))?;
        reset.used_at = Some(now);
        let mut update = crate::sessions::sessions_end(tenant, reset.user_id);
        update.set.insert(
            "passwordHash".to_owned(),
            serde_json::Value::String(password_hash),
        );
        let audit = AuditEvent::change(
            &actor_of(&user.user, request),
            now,
            "auth.password_reset",
            format!("user:{}", reset.user_id),
            None,
            Some(serde_json::json!({ "sessionsEnded": true })),
        );
        match self
            .table
            .transact_write(vec![
                WriteOp::Put {
                    item: reset_item(tenant, &reset)?.with_version(version + 1),
                    condition: Condition::VersionIs(version),
                },
                WriteOp::Update(update),
                audit.write_op(),
            ])
            .await
        {
            Ok(()) => Ok(()),
            // Used at the same moment by another request.
            Err(StoreError::TransactionCanceled { .. }) => Err(ResetError::LinkInvalid),
            Err(other) => Err(other.into()),
        }
    }
}

fn actor_of(user: &User, request: &RequestInfo) -> Actor {
    Actor {
        tenant: user.tenant_id,
        user: user.id,
        role: user.role,
        request: request.clone(),
    }
}

fn reset_item(tenant: TenantId, reset: &ResetRecord) -> Result<Item, StoreError> {
    let ttl = (reset.expires_at + Duration::days(1)).timestamp();
    Ok(Item::new(
        keys::password_reset(tenant, reset.id),
        to_attributes(reset)?,
    )
    .expiring_at(ttl))
}
