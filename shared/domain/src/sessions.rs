//! Sign-in sessions: what keeps a user signed in, and what ends it.
//!
//! A successful sign-in opens a **session** (`T#<tenant>` / `SESSION#<id>`) and hands the
//! client a refresh token, `ldr1.<tenant>.<session>.<secret>`. Only the SHA-256 of the
//! secret is stored: it is 256 random bits, so a slow password hash would add nothing.
//!
//! - **Rotation.** `POST /auth/refresh` trades the refresh token for a new access token
//!   and a new refresh token; the session keeps the hashes of the secrets it rotated
//!   away from. One of those coming back means two parties hold the chain (a stolen
//!   token, or a stolen one already used): the whole session is revoked and both must
//!   sign in again.
//! - **Every request** checks its access token's session and user ([`SessionService::caller`]:
//!   two reads), so a logout, a "sign out everywhere", a password change, a new role or
//!   a removal takes effect on the caller's very next request, not when the access token
//!   expires.
//! - **Sign out everywhere** (and a password change) moves the user's
//!   `sessionGeneration` on: every session opened under an earlier one is over, without
//!   finding them one by one.
//! - **Activity.** Opening and refreshing a session keeps the organization active for
//!   the retention job ([`crate::activity`]; at most one write per organization a day).

use crate::access::Role;
use crate::accounts::{User, UserRecord};
use crate::activity::ActivityLog;
use crate::audit::{Actor, AuditEvent, RequestInfo};
use crate::clock::Clock;
use crate::ids::{SessionId, TenantId, UserId};
use crate::keys;
use crate::secret_token::SecretToken;
use crate::store::{
    Condition, Item, Query, StoreError, Table, Update, WriteOp, from_item, query_all, to_attributes,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a session lasts from its sign-in, however often it is refreshed.
pub const SESSION_LIFETIME_DAYS: i64 = 30;
/// Rotated secrets a session remembers, to recognise one coming back.
const REMEMBERED_SECRETS: usize = 100;
const TOKEN_PREFIX: &str = "ldr1";

/// A session as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionRecord {
    id: SessionId,
    tenant_id: TenantId,
    user_id: UserId,
    /// The user's session generation when the session opened.
    #[serde(default)]
    generation: i64,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    refreshed_at: DateTime<Utc>,
    /// SHA-256 (base64url) of the refresh secret that is valid now.
    secret_hash: String,
    /// Hashes of the secrets rotated away from, newest last.
    rotated: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    /// The organization requires a second factor the user has not set up: the session
    /// serves only that set-up until [`SessionService::finish_enrolment`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    enrolment_only: bool,
    /// How the user proved who they were when the session opened (`password`, `totp`,
    /// `recoveryCode`, `sso`); absent in sessions stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
}

/// A session as its user may see it: no token, no hash.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Still signed in.
    pub live: bool,
}

/// What every request learns about its caller from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerState {
    /// The role in force now.
    pub role: Role,
    /// The session may only set up a second factor.
    pub enrolment_only: bool,
    /// The language the user chose, if any.
    pub language: Option<String>,
}

impl SessionRecord {
    fn live_at(&self, now: DateTime<Utc>, user: &UserRecord) -> bool {
        self.revoked_at.is_none()
            && now < self.expires_at
            && self.generation == user.session_generation
    }
}

/// A refresh token and the session it continues. Its `Debug` shows no secret.
pub struct Issued {
    pub session: SessionId,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
    /// The session serves only setting up a second factor.
    pub enrolment_only: bool,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("session", &self.session)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A refresh that went through: who it is, and the next token of the chain.
#[derive(Debug)]
pub struct Refreshed {
    pub user: User,
    pub issued: Issued,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Not a refresh token of ours, or its session is over (expired, logged out, signed
    /// out everywhere, its user gone).
    #[error("the session is over or the token is not valid")]
    Invalid,
    /// A refresh token the session had already rotated away from: the session is now
    /// revoked.
    #[error("a refresh token was used twice; the session is revoked")]
    Reused,
    #[error("no randomness available: {0}")]
    Randomness(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh refresh token for `session` of `tenant`.
fn new_token(tenant: TenantId, session: SessionId) -> Result<SecretToken, SessionError> {
    SecretToken::generate(tenant, session.to_string())
        .map_err(|e| SessionError::Randomness(e.to_string()))
}

pub struct SessionService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    /// Sign-ins and refreshes keep the organization active for the retention job.
    activity: ActivityLog,
}

impl SessionService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            activity: ActivityLog::new(table.clone(), clock.clone()),
            table,
            clock,
        }
    }

    /// Records that `tenant` is active today (at most one write a day). A failure only
    /// logs: the sign-in stands, and the next sign-in or refresh records it.
    async fn note_activity(&self, tenant: TenantId) {
        if let Err(error) = self.activity.record(tenant).await {
            tracing::warn!(%tenant, %error, "could not record the organization's activity");
        }
    }

    /// Opens a session for `user`, who has just proven who they are, and audits the
    /// sign-in (`method`: `password`, `totp`, `recoveryCode`, `sso`).
    pub async fn open(
        &self,
        user: &User,
        method: &str,
        request: &RequestInfo,
    ) -> Result<Issued, SessionError> {
        self.open_session(user, method, request, false).await
    }

    /// [`Self::open`] for a user whose organization requires a second factor they have
    /// not set up: the session serves only that set-up.
    pub async fn open_for_enrolment(
        &self,
        user: &User,
        method: &str,
        request: &RequestInfo,
    ) -> Result<Issued, SessionError> {
        self.open_session(user, method, request, true).await
    }

    /// Lifts the set-up-only restriction of a session once its user has a second factor.
    pub async fn finish_enrolment(
        &self,
        tenant: TenantId,
        session: SessionId,
    ) -> Result<(), SessionError> {
        let mut update = Update::new(keys::session(tenant, session));
        update.remove.push("enrolmentOnly".to_owned());
        update.condition = Condition::Exists;
        self.table.update(update).await?;
        Ok(())
    }

    async fn open_session(
        &self,
        user: &User,
        method: &str,
        request: &RequestInfo,
        enrolment_only: bool,
    ) -> Result<Issued, SessionError> {
        let now = self.clock.now();
        let Some(stored) = self.table.get(&keys::user(user.tenant_id, user.id)).await? else {
            return Err(SessionError::Invalid);
        };
        let generation = from_item::<UserRecord>(stored)?.session_generation;
        let id = SessionId::generate();
        let token = new_token(user.tenant_id, id)?;
        let record = SessionRecord {
            id,
            tenant_id: user.tenant_id,
            user_id: user.id,
            generation,
            created_at: now,
            expires_at: now + Duration::days(SESSION_LIFETIME_DAYS),
            refreshed_at: now,
            secret_hash: token.hash(),
            rotated: Vec::new(),
            revoked_at: None,
            revoked_reason: None,
            user_agent: request.user_agent.clone(),
            enrolment_only,
            method: Some(method.to_owned()),
        };
        let audit = AuditEvent::change(
            &actor_of(user, request),
            now,
            "auth.signed_in",
            format!("user:{}", user.id),
            None,
            Some(serde_json::json!({ "method": method, "session": record.id })),
        );
        self.table
            .transact_write(vec![
                WriteOp::Put {
                    item: record_item(&record)?,
                    condition: Condition::NotExists,
                },
                audit.write_op(),
            ])
            .await?;
        self.note_activity(user.tenant_id).await;
        Ok(Issued {
            session: record.id,
            refresh_token: token.format(TOKEN_PREFIX),
            expires_at: record.expires_at,
            enrolment_only,
        })
    }

    /// Trades a refresh token for the next one. A token the session already rotated
    /// away from revokes the session ([`SessionError::Reused`]).
    pub async fn refresh(
        &self,
        token: &str,
        request: &RequestInfo,
    ) -> Result<Refreshed, SessionError> {
        let token = SecretToken::parse(TOKEN_PREFIX, token).ok_or(SessionError::Invalid)?;
        let session_id: SessionId = token.id.parse().map_err(|_| SessionError::Invalid)?;
        let now = self.clock.now();
        let (session, user) = self.read(token.tenant, session_id, None).await?;
        let (Some((mut record, version)), Some(user)) = (session, user) else {
            return Err(SessionError::Invalid);
        };
        if record.user_id != user.user.id || !record.live_at(now, &user) {
            return Err(SessionError::Invalid);
        }
        if !token.matches(&record.secret_hash) {
            if record.rotated.iter().any(|old| token.matches(old)) {
                self.revoke_reused(&record, &user.user, request).await?;
                return Err(SessionError::Reused);
            }
            return Err(SessionError::Invalid);
        }
        let next = new_token(record.tenant_id, record.id)?;
        let previous = std::mem::replace(&mut record.secret_hash, next.hash());
        record.rotated.push(previous);
        if record.rotated.len() > REMEMBERED_SECRETS {
            record.rotated.remove(0);
        }
        record.refreshed_at = now;
        match self
            .table
            .put(
                record_item(&record)?.with_version(version + 1),
                Condition::VersionIs(version),
            )
            .await
        {
            Ok(()) => {}
            // Another refresh with this same token won the race: it is being used twice.
            Err(StoreError::ConditionFailed) => {
                self.revoke_reused(&record, &user.user, request).await?;
                return Err(SessionError::Reused);
            }
            Err(other) => return Err(other.into()),
        }
        self.note_activity(record.tenant_id).await;
        Ok(Refreshed {
            issued: Issued {
                session: record.id,
                refresh_token: next.format(TOKEN_PREFIX),
                expires_at: record.expires_at,
                enrolment_only: record.enrolment_only,
            },
            user: user.user,
        })
    }

    /// The caller's role now, if their session is live: what every request checks.
    pub async fn caller(
        &self,
        tenant: TenantId,
        user: UserId,
        session: SessionId,
    ) -> Result<CallerState, SessionError> {
        let (record, user_record) = self.read(tenant, session, Some(user)).await?;
        match (record, user_record) {
            (Some((record, _)), Some(user_record))
                if record.user_id == user && record.live_at(self.clock.now(), &user_record) =>
            {
                Ok(CallerState {
                    role: user_record.user.role,
                    enrolment_only: record.enrolment_only,
                    language: user_record.user.language,
                })
            }
            _ => Err(SessionError::Invalid),
        }
    }

    /// The sessions of `user` the store still holds (ended ones until their TTL removes
    /// them), oldest first: for the user's own data export.
    pub async fn sessions_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::SESSION_PREFIX)
            .limit(1000);
        let now = self.clock.now();
        let user_record = match self.table.get(&keys::user(tenant, user)).await? {
            Some(item) => Some(from_item::<UserRecord>(item)?),
            None => None,
        };
        let mut sessions = Vec::new();
        for item in query_all(self.table.as_ref(), query).await? {
            let record: SessionRecord = from_item(item)?;
            if record.user_id != user {
                continue;
            }
            let live = user_record
                .as_ref()
                .is_some_and(|user| record.live_at(now, user));
            sessions.push(SessionSummary {
                id: record.id,
                created_at: record.created_at,
                refreshed_at: record.refreshed_at,
                expires_at: record.expires_at,
                revoked_at: record.revoked_at,
                user_agent: record.user_agent,
                live,
            });
        }
        Ok(sessions)
    }

    /// Records a request refused for the actor's role (the access guard's refusals).
    pub async fn record_denied(
        &self,
        actor: &Actor,
        method: &str,
        route: &str,
    ) -> Result<(), StoreError> {
        let audit = AuditEvent::denied(
            actor,
            self.clock.now(),
            "request.denied",
            format!("route:{method} {route}"),
            None,
        );
        self.table.transact_write(vec![audit.write_op()]).await
    }

    /// Ends one session (logout). Ending a session that is over already is no error.
    pub async fn end(&self, actor: &Actor, session: SessionId) -> Result<(), SessionError> {
        let now = self.clock.now();
        let key = keys::session(actor.tenant, session);
        let Some(item) = self.table.get(&key).await? else {
            return Ok(());
        };
        let record: SessionRecord = from_item(item)?;
        if record.user_id != actor.user || record.revoked_at.is_some() {
            return Ok(());
        }
        let audit = AuditEvent::change(
            actor,
            now,
            "auth.signed_out",
            format!("user:{}", actor.user),
            None,
            Some(serde_json::json!({ "session": session })),
        );
        self.table
            .transact_write(vec![
                WriteOp::Update(revocation(actor.tenant, session, now, "logout")),
                audit.write_op(),
            ])
            .await?;
        Ok(())
    }

    /// Ends every session of the actor's user that exists now ("sign out everywhere").
    pub async fn end_all(&self, actor: &Actor) -> Result<(), SessionError> {
        let now = self.clock.now();
        let audit = AuditEvent::change(
            actor,
            now,
            "auth.signed_out_everywhere",
            format!("user:{}", actor.user),
            None,
            None,
        );
        self.table
            .transact_write(vec![
                WriteOp::Update(sessions_end(actor.tenant, actor.user)),
                audit.write_op(),
            ])
            .await?;
        Ok(())
    }

    /// Ends every live session in `tenant` that was not opened with `kept_method`: when
    /// an organization turns on "require SSO", the sessions opened with a password end.
    /// Returns how many ended.
    pub async fn end_sessions_not_opened_by(
        &self,
        tenant: TenantId,
        kept_method: &str,
        reason: &str,
    ) -> Result<usize, SessionError> {
        let now = self.clock.now();
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::SESSION_PREFIX)
            .limit(1000);
        let mut ended = 0;
        for item in query_all(self.table.as_ref(), query).await? {
            let record: SessionRecord = from_item(item)?;
            let open = record.revoked_at.is_none() && now < record.expires_at;
            if open && record.method.as_deref() != Some(kept_method) {
                self.table
                    .update(revocation(tenant, record.id, now, reason))
                    .await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The session and its user; both read at once when the user is known.
    async fn read(
        &self,
        tenant: TenantId,
        session: SessionId,
        user: Option<UserId>,
    ) -> Result<(Option<(SessionRecord, u64)>, Option<UserRecord>), SessionError> {
        let session_key = keys::session(tenant, session);
        let (session_item, user_item) = match user {
            Some(user) => {
                let user_key = keys::user(tenant, user);
                let (session_item, user_item) =
                    tokio::try_join!(self.table.get(&session_key), self.table.get(&user_key))?;
                (session_item, Some(user_item))
            }
            None => (self.table.get(&session_key).await?, None),
        };
        let Some(session_item) = session_item else {
            return Ok((None, None));
        };
        let version = session_item.version;
        let record: SessionRecord = from_item(session_item)?;
        let user_item = match user_item {
            Some(item) => item,
            None => self.table.get(&keys::user(tenant, record.user_id)).await?,
        };
        let user = user_item.map(from_item::<UserRecord>).transpose()?;
        Ok((Some((record, version)), user))
    }

    async fn revoke_reused(
        &self,
        record: &SessionRecord,
        user: &User,
        request: &RequestInfo,
    ) -> Result<(), SessionError> {
        let now = self.clock.now();
        let audit = AuditEvent::denied(
            &actor_of(user, request),
            now,
            "auth.refresh_token_reused",
            format!("user:{}", user.id),
            Some(serde_json::json!({ "session": record.id, "revoked": true })),
        );
        tracing::warn!(tenant = %record.tenant_id, session = %record.id, "refresh token reused; session revoked");
        self.table
            .transact_write(vec![
                WriteOp::Update(revocation(record.tenant_id, record.id, now, "reused")),
                audit.write_op(),
            ])
            .await?;
        Ok(())
    }
}

/// The update that ends every session `user` has open now; part of a password change
/// too.
pub(crate) fn sessions_end(tenant: TenantId, user: UserId) -> Update {
    let mut update = Update::new(keys::user(tenant, user));
    update.increment.push(("sessionGeneration".to_owned(), 1));
    update.condition = Condition::Exists;
    update
}

fn revocation(tenant: TenantId, session: SessionId, now: DateTime<Utc>, reason: &str) -> Update {
    let mut update = Update::new(keys::session(tenant, session));
    update.set.insert(
        "revokedAt".to_owned(),
        serde_json::Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    );
    update.set.insert(
        "revokedReason".to_owned(),
        serde_json::Value::String(reason.to_owned()),
    );
    update.condition = Condition::Exists;
    update
}

fn record_item(record: &SessionRecord) -> Result<Item, StoreError> {
    // Kept a day past its end, then the table's TTL removes it; `live_at` never trusts
    // the TTL.
    let ttl = (record.expires_at + Duration::days(1)).timestamp();
    Ok(Item::new(
        keys::session(record.tenant_id, record.id),
        to_attributes(record)?,
    )
    .expiring_at(ttl))
}

fn actor_of(user: &User, request: &RequestInfo) -> Actor {
    Actor {
        tenant: user.tenant_id,
        user: user.id,
        role: user.role,
        request: request.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_name_their_session() {
        let (tenant, session) = (TenantId::generate(), SessionId::generate());
        let token = new_token(tenant, session).unwrap().format(TOKEN_PREFIX);
        let parsed = SecretToken::parse(TOKEN_PREFIX, &token).unwrap();
        assert_eq!(parsed.tenant, tenant);
        assert_eq!(parsed.id.parse::<SessionId>().unwrap(), session);
        assert!(SecretToken::parse("ldi1", &token).is_none());
    }
}
