//! The members of an organization: invitations by e-mail, roles, and removal.
//!
//! - An **invitation** (`T#<tenant>` / `INVITE#<id>`) names an e-mail address and a role
//!   and is accepted once, within [`INVITE_DAYS`], through the link mailed to the
//!   address: `ldi1.<tenant>.<invite>.<secret>`, of which only the secret's SHA-256 is
//!   stored. Accepting creates the user with the invited role and signs them in.
//! - **Roles** change, and members go, on their very next request: every request reads
//!   the user (`sessions::SessionService::caller`), and a removed user has no record.
//! - Owners and admins manage members; only an owner makes or unmakes an owner, and the
//!   last owner can be neither demoted nor removed. Every change to the owners bumps the
//!   organization's version, so two owners demoting each other at once cannot both win.

use crate::access::{Permission, Role};
use crate::accounts::{Email, PasswordPolicy, User, UserRecord, hash_password, new_member_writes};
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::ids::{TenantId, UserId};
use crate::keys;
use crate::secret_token::SecretToken;
use crate::store::{
    Condition, Item, Query, StoreError, Table, WriteOp, from_item, query_all, to_attributes,
};
use crate::validation::{FieldIssue, ValidationErrors, text};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long an invitation link works.
pub const INVITE_DAYS: i64 = 7;
const TOKEN_PREFIX: &str = "ldi1";

/// An invitation as stored and shown to admins (never with its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(value_type = String, format = "email")]
    pub email: Email,
    pub role: Role,
    pub invited_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvitationRecord {
    #[serde(flatten)]
    pub(crate) invitation: Invitation,
    secret_hash: String,
}

/// A new invitation and the link token to mail; the token is shown nowhere else.
pub struct Invited {
    pub invitation: Invitation,
    pub token: String,
}

impl std::fmt::Debug for Invited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invited")
            .field("invitation", &self.invitation)
            .finish_non_exhaustive()
    }
}

/// What an invited person sends to join.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    /// The token from the invitation link.
    pub token: String,
    #[schema(example = "Erik Berg", max_length = 200)]
    pub name: String,
    /// 12 to 256 characters; common and easily guessed passwords are refused.
    #[schema(min_length = 12, max_length = 256, format = "password")]
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// Unknown, used, expired or withdrawn: the same answer for all.
    #[error("the invitation is not valid")]
    InvitationInvalid,
    #[error("no such member")]
    NotFound,
    #[error("an organization keeps at least one owner")]
    LastOwner,
    #[error("the organization changed meanwhile; retry")]
    Contention,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct MemberService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
}

impl MemberService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    /// Invites `email` to join as `role` (owners and admins; only owners invite owners).
    pub async fn invite(
        &self,
        actor: &Actor,
        email: &str,
        role: Role,
    ) -> Result<Invited, MemberError> {
        require(actor, Permission::ManageMembers)?;
        if role == Role::Owner && actor.role != Role::Owner {
            return Err(MemberError::Forbidden(actor.role));
        }
        let email = Email::parse(email).map_err(|issue| {
            let mut errors = ValidationErrors::new();
            errors.add("/email", issue);
            MemberError::Invalid(errors)
        })?;
        let now = self.clock.now();
        let id = uuid::Uuid::now_v7();
        let token = SecretToken::generate(actor.tenant, id.simple().to_string())
            .map_err(|e| MemberError::Internal(e.to_string()))?;
        let invitation = Invitation {
            id,
            email,
            role,
            invited_by: actor.user,
            created_at: now,
            expires_at: now + Duration::days(INVITE_DAYS),
            accepted_at: None,
        };
        let record = InvitationRecord {
            invitation: invitation.clone(),
            secret_hash: token.hash(),
        };
        let audit = AuditEvent::change(
            actor,
            now,
            "member.invited",
            format!("invitation:{}", invitation.id),
            None,
            Some(serde_json::json!({ "email": invitation.email, "role": role })),
        );
        self.table
            .transact_write(vec![
                WriteOp::Put {
                    item: invitation_item(actor.tenant, &record)?,
                    condition: Condition::NotExists,
                },
                audit.write_op(),
            ])
            .await?;
        Ok(Invited {
            token: token.format(TOKEN_PREFIX),
            invitation,
        })
    }

    /// Withdraws an invitation whose mail could not be sent, so no link works that
    /// nobody received.
    pub async fn withdraw(
        &self,
        tenant: TenantId,
        invitation: uuid::Uuid,
    ) -> Result<(), MemberError> {
        self.table
            .delete(&keys::invitation(tenant, invitation), Condition::None)
            .await?;
        Ok(())
    }

    /// Joins the organization of the invitation `acceptance.token` names: creates the
    /// user with the invited role. The invitation is used up.
    pub async fn accept(
        &self,
        acceptance: Acceptance,
        request: &crate::audit::RequestInfo,
    ) -> Result<User, MemberError> {
        let token = SecretToken::parse(TOKEN_PREFIX, &acceptance.token)
            .ok_or(MemberError::InvitationInvalid)?;
        let tenant = token.tenant;
        let id = uuid::Uuid::try_parse(&token.id).map_err(|_| MemberError::InvitationInvalid)?;
        let now = self.clock.now();
        let key = keys::invitation(tenant, id);
        let Some(item) = self.table.get(&key).await? else {
            return Err(MemberError::InvitationInvalid);
        };
        let version = item.version;
        let mut record: InvitationRecord = from_item(item)?;
        let matches = token.matches(&record.secret_hash);
        if !matches
            || record.invitation.accepted_at.is_some()
            || now >= record.invitation.expires_at
        {
            return Err(MemberError::InvitationInvalid);
        }

        let mut errors = ValidationErrors::new();
        let name = errors.check("/name", text(&acceptance.name, 200, false));
        let email = record.invitation.email.clone();
        errors.check(
            "/password",
            PasswordPolicy::check(&acceptance.password, &[&acceptance.name, email.as_str()]),
        );
        let Some(name) = name else {
            return Err(errors.into());
        };
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let password = acceptance.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| MemberError::Internal(format!("hashing task failed: {e}")))?
            .map_err(|e| MemberError::Internal(e.to_string()))?;

        let user = User {
            id: UserId::generate(),
            tenant_id: tenant,
            name,
            email: email.clone(),
            role: record.invitation.role,
            created_at: now,
            language: None,
        };
        record.invitation.accepted_at = Some(now);
        let actor = Actor {
            tenant,
            user: user.id,
            role: user.role,
            request: request.clone(),
        };
        let audit = AuditEvent::change(
            &actor,
            now,
            "member.joined",
            format!("user:{}", user.id),
            None,
            Some(serde_json::json!({
                "invitation": record.invitation.id,
                "email": user.email,
                "role": user.role,
            })),
        );
        let [login, member] = new_member_writes(&user, password_hash)?;
        let ops = vec![
            WriteOp::Put {
                item: invitation_item(tenant, &record)?.with_version(version + 1),
                condition: Condition::VersionIs(version),
            },
            login,
            member,
            audit.write_op(),
        ];
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(user),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&1) => {
                let mut errors = ValidationErrors::new();
                errors.add("/email", FieldIssue::AlreadyInUse);
                Err(errors.into())
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(MemberError::InvitationInvalid),
            Err(other) => Err(other.into()),
        }
    }

    /// Every member of the actor's organization, in joining order.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<User>, MemberError> {
        require(actor, Permission::ReadMembers)?;
        Ok(self
            .records(actor.tenant)
            .await?
            .into_iter()
            .map(|(record, _)| record.user)
            .collect())
    }

    /// Gives `member` the role `role`, from their next request on.
    pub async fn change_role(
        &self,
        actor: &Actor,
        member: UserId,
        role: Role,
    ) -> Result<User, MemberError> {
        require(actor, Permission::ManageMembers)?;
        self.change_owners(actor, member, |record, now| {
            let before = record.user.clone();
            let mut changed = record.clone();
            changed.user.role = role;
            let audit = AuditEvent::change(
                actor,
                now,
                "member.role_changed",
                format!("user:{member}"),
                Some(serde_json::json!({ "role": before.role })),
                Some(serde_json::json!({ "role": role })),
            );
            Ok((Some(changed), audit, role))
        })
        .await
    }

    /// Removes `member`: their record and login go, and with them every session.
    pub async fn remove(&self, actor: &Actor, member: UserId) -> Result<User, MemberError> {
        require(actor, Permission::ManageMembers)?;
        self.change_owners(actor, member, |record, now| {
            let audit = AuditEvent::change(
                actor,
                now,
                "member.removed",
                format!("user:{member}"),
                Some(serde_json::json!({ "email": record.user.email, "role": record.user.role })),
                None,
            );
            Ok((None, audit, record.user.role))
        })
        .await
    }

    /// Erases `member` (themselves, or by an owner or admin; only owners erase owners,
    /// and never the last one): their record and login go, so every session ends; their
    /// second factor, sessions and pending invitations go; and the audit log keeps their
    /// events under a pseudonym, a random id linked to nothing, with their name, e-mail
    /// address, client address and browser removed (GDPR art. 17).
    pub async fn erase(&self, actor: &Actor, member: UserId) -> Result<(), MemberError> {
        if actor.user != member {
            require(actor, Permission::ManageMembers)?;
        }
        let pseudonym = UserId::generate();
        let removed = self
            .change_owners(actor, member, |record, now| {
                let audit = AuditEvent::change(
                    actor,
                    now,
                    "gdpr.erased",
                    format!("user:{pseudonym}"),
                    None,
                    Some(serde_json::json!({ "role": record.user.role })),
                );
                Ok((None, audit, record.user.role))
            })
            .await?;
        let tenant = actor.tenant;
        self.table
            .delete(&keys::two_factor(tenant, member), Condition::None)
            .await?;
        let query = Query::partition(keys::tenant_partition(tenant)).limit(1000);
        for prefix in [
            keys::SESSION_PREFIX,
            keys::INVITATION_PREFIX,
            keys::SSO_IDENTITY_PREFIX,
        ] {
            let items = query_all(self.table.as_ref(), query.clone().begins_with(prefix)).await?;
            for item in items {
                let theirs = item.attributes.get("userId").and_then(|v| v.as_str())
                    == Some(member.to_string().as_str())
                    || item.attributes.get("email").and_then(|v| v.as_str())
                        == Some(removed.email.as_str());
                if theirs {
                    self.table.delete(&item.key, Condition::None).await?;
                }
            }
        }
        pseudonymize_audit(self.table.as_ref(), tenant, &removed, pseudonym).await
    }

    /// Applies `change` to `member` (a new record, or `None` to remove them) under the
    /// rules about owners, guarded by the organization's version.
    async fn change_owners(
        &self,
        actor: &Actor,
        member: UserId,
        change: impl Fn(
            &UserRecord,
            DateTime<Utc>,
        ) -> Result<(Option<UserRecord>, AuditEvent, Role), MemberError>,
    ) -> Result<User, MemberError> {
        for _ in 0..5 {
            let organization_key = keys::organization(actor.tenant);
            let Some(organization) = self.table.get(&organization_key).await? else {
                return Err(MemberError::NotFound);
            };
            let records = self.records(actor.tenant).await?;
            let Some((record, version)) = records
                .iter()
                .find(|(record, _)| record.user.id == member)
                .cloned()
            else {
                return Err(MemberError::NotFound);
            };
            let now = self.clock.now();
            let (changed, audit, new_role) = change(&record, now)?;
            let touches_owner = record.user.role == Role::Owner || new_role == Role::Owner;
            if touches_owner && actor.role != Role::Owner {
                return Err(MemberError::Forbidden(actor.role));
            }
            let owners = records
                .iter()
                .filter(|(record, _)| record.user.role == Role::Owner)
                .count();
            let stays_owner = changed
                .as_ref()
                .is_some_and(|changed| changed.user.role == Role::Owner);
            if record.user.role == Role::Owner && !stays_owner && owners <= 1 {
                return Err(MemberError::LastOwner);
            }
            let mut ops = vec![
                // Bumps the organization's version: the owners counted above still hold.
                WriteOp::Put {
                    item: Item::new(organization_key, organization.attributes.clone())
                        .with_version(organization.version + 1),
                    condition: Condition::VersionIs(organization.version),
                },
                audit.write_op(),
            ];
            let user_key = keys::user(actor.tenant, member);
            match &changed {
                Some(changed) => ops.push(WriteOp::Put {
                    item: Item::new(user_key, to_attributes(changed)?).with_version(version + 1),
                    condition: Condition::VersionIs(version),
                }),
                None => {
                    ops.push(WriteOp::Delete {
                        key: user_key,
                        condition: Condition::VersionIs(version),
                    });
                    ops.push(WriteOp::Delete {
                        key: keys::email_login(record.user.email.as_str()),
                        condition: Condition::None,
                    });
                }
            }
            match self.table.transact_write(ops).await {
                Ok(()) => return Ok(changed.map_or(record.user, |changed| changed.user)),
                Err(StoreError::TransactionCanceled { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(MemberError::Contention)
    }

    async fn records(&self, tenant: TenantId) -> Result<Vec<(UserRecord, u64)>, MemberError> {
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::USER_PREFIX)
            .limit(1000);
        query_all(self.table.as_ref(), query)
            .await?
            .into_iter()
            .map(|item| {
                let version = item.version;
                Ok((from_item::<UserRecord>(item)?, version))
            })
            .collect()
    }
}

/// Rewrites every audit event of `tenant` that names `user` so that it names
/// `pseudonym` instead and holds none of the user's personal data. The one exception to
/// audit events never being rewritten; an event changed meanwhile is read again.
async fn pseudonymize_audit(
    table: &dyn Table,
    tenant: TenantId,
    user: &User,
    pseudonym: UserId,
) -> Result<(), MemberError> {
    let query = Query::partition(keys::tenant_partition(tenant))
        .begins_with(keys::AUDIT_PREFIX)
        .limit(1000);
    let id = user.id.to_string();
    let erased = |text: &str| {
        text == id
            || text.eq_ignore_ascii_case(user.email.as_str())
            || (!user.name.is_empty() && text == user.name)
    };
    for item in query_all(table, query).await? {
        let version = item.version;
        let key = item.key.clone();
        let mut event: AuditEvent = from_item(item)?;
        let original = event.clone();
        if event.actor_id == Some(user.id) {
            event.actor_id = Some(pseudonym);
            event.source_ip = None;
            event.user_agent = None;
        }
        if event.target == format!("user:{id}") {
            event.target = format!("user:{pseudonym}");
        }
        for value in [&mut event.before, &mut event.after].into_iter().flatten() {
            scrub(value, &erased, &pseudonym.to_string());
        }
        if event != original {
            table
                .put(
                    Item::new(key, to_attributes(&event)?).with_version(version + 1),
                    Condition::VersionIs(version),
                )
                .await?;
        }
    }
    Ok(())
}

/// Replaces the user's id with the pseudonym, and their name and address with a mark.
fn scrub(value: &mut serde_json::Value, erased: &impl Fn(&str) -> bool, pseudonym: &str) {
    match value {
        serde_json::Value::String(text) if erased(text) => {
            *text = if text.len() == 36 && text.contains('-') {
                pseudonym.to_owned()
            } else {
                "[erased]".to_owned()
            };
        }
        serde_json::Value::Array(items) => {
            for item in items {
                scrub(item, erased, pseudonym);
            }
        }
        serde_json::Value::Object(fields) => {
            for field in fields.values_mut() {
                scrub(field, erased, pseudonym);
            }
        }
        _ => {}
    }
}

fn require(actor: &Actor, permission: Permission) -> Result<(), MemberError> {
    if actor.role.allows(permission) {
        Ok(())
    } else {
        Err(MemberError::Forbidden(actor.role))
    }
}

/// The newest open invitation of `tenant` to `email` (not accepted, not expired), with
/// its version: a member joining through single sign-on accepts it.
pub(crate) async fn open_invitation_for(
    table: &dyn Table,
    tenant: TenantId,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<Option<(InvitationRecord, u64)>, StoreError> {
    let query = Query::partition(keys::tenant_partition(tenant))
        .begins_with(keys::INVITATION_PREFIX)
        .limit(1000);
    let mut open: Option<(InvitationRecord, u64)> = None;
    for item in query_all(table, query).await? {
        let version = item.version;
        let record: InvitationRecord = from_item(item)?;
        let usable = &record.invitation.email == email
            && record.invitation.accepted_at.is_none()
            && now < record.invitation.expires_at;
        let newer = open
            .as_ref()
            .is_none_or(|(newest, _)| record.invitation.expires_at > newest.invitation.expires_at);
        if usable && newer {
            open = Some((record, version));
        }
    }
    Ok(open)
}

pub(crate) fn invitation_item(
    tenant: TenantId,
    record: &InvitationRecord,
) -> Result<Item, StoreError> {
    // The table forgets it a month after it expires; `accept` never trusts the TTL.
    let ttl = (record.invitation.expires_at + Duration::days(30)).timestamp();
    Ok(Item::new(
        keys::invitation(tenant, record.invitation.id),
        to_attributes(record)?,
    )
    .expiring_at(ttl))
}
