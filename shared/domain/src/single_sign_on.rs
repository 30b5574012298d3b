//! Single sign-on for an organization's members: its settings (the provider, who may
//! be created on first sign-in, which provider groups give which role, whether the
//! password is turned off), and the login that goes through the provider.
//!
//! The protocol is the [`OidcClient`] port's business (`sso`); this module decides who
//! the verified identity is here:
//! 1. the member linked to the provider's `(issuer, subject)` before; else
//! 2. a member of the organization with the same e-mail address, when the provider
//!    asserts the address is verified (the link is made then); else
//! 3. an open invitation to that verified address (accepted now, with its role); else
//! 4. a new member, when the verified address is in one of the organization's
//!    auto-create domains (with the default role) and the organization has proved it
//!    controls that domain (`crate::sso_domains`); else nobody: the login is refused.
//!
//! On every sign-in the provider's groups are mapped to a role when any of them is
//! mapped: the first of admin, editor, auditor, viewer that a group maps to. Owners are
//! never changed this way, and no group makes an owner.
//!
//! "Require SSO" turns password sign-in off for the organization's members, and ends
//! the sessions opened otherwise. It can be turned on only once a sign-in through the
//! current provider has worked (`verifiedAt`), so a wrong configuration cannot lock
//! everyone out. Changing the provider or its secret clears `verifiedAt` again.
//!
//! The client secret is kept in the secret vault, never in the table; the settings name
//! it.

use crate::access::{Permission, Role};
use crate::accounts::{Email, User, UserRecord, new_member_writes};
use crate::audit::{Actor, AuditEvent, Outcome, RequestInfo};
use crate::clock::Clock;
use crate::ids::{TenantId, UserId};
use crate::keys;
use crate::members::open_invitation_for;
use crate::modules::{Module, ModuleService};
use crate::secrets::{SecretVault, SecretVaultError};
use crate::sessions::SessionService;
use crate::sso::{ClientId, EntraTenant, IssuerUrl, OidcClient, SsoError, SsoProvider};
use crate::sso_domains::DomainName;
use crate::store::{Condition, Item, StoreError, Table, WriteOp, from_item, to_attributes};
use crate::validation::{FieldIssue, ValidationErrors};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a login may take at the provider before its state is forgotten.
pub const PENDING_LOGIN_MINUTES: i64 = 10;

/// The roles groups can map to, in the order a member in several mapped groups gets
/// the first.
pub const MAPPABLE_ROLES: [Role; 4] = [Role::Admin, Role::Editor, Role::Auditor, Role::Viewer];
const MAPPABLE_ROLE_NAMES: &[&str] = &["admin", "editor", "auditor", "viewer"];

/// The session method of a sign-in through the provider.
pub const SSO_METHOD: &str = "sso";

/// Which identity provider, as an administrator chooses it. The secret is given beside
/// it and kept elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ProviderChoice {
    /// Microsoft Entra ID, for the users of the customer's own Entra tenant only.
    Entra {
        /// The Entra tenant id (a GUID) or one of its verified domain names.
        #[schema(value_type = String, example = "9188040d-6c67-4c5b-b112-36a304b66dad")]
        tenant_id: EntraTenant,
        /// The application (client) id registered in that tenant.
        #[schema(value_type = String)]
        client_id: ClientId,
    },
    /// Any OpenID Connect provider with a discovery document.
    Generic {
        #[schema(value_type = String, example = "https://idp.example.com/realms/acme")]
        issuer: IssuerUrl,
        #[schema(value_type = String)]
        client_id: ClientId,
    },
}

impl ProviderChoice {
    fn with_secret(self, secret_ref: String) -> SsoProvider {
        match self {
            Self::Entra {
                tenant_id,
                client_id,
            } => SsoProvider::Entra {
                tenant_id,
                client_id,
                secret_ref,
            },
            Self::Generic { issuer, client_id } => SsoProvider::Generic {
                issuer,
                client_id,
                secret_ref,
            },
        }
    }
}

/// What an administrator sends to configure single sign-on.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoConfiguration {
    pub provider: ProviderChoice,
    /// The client secret. Needed the first time; leave it out to keep the one stored.
    /// It is never shown again.
    #[serde(default)]
    #[schema(format = "password")]
    pub client_secret: Option<String>,
    /// E-mail domains whose verified addresses become members on their first sign-in.
    /// Each must be a domain the organization has verified
    /// (`POST /organization/sso/domains`, then `.../verify`).
    #[serde(default)]
    #[schema(example = json!(["nordlysfleet.se"]))]
    pub auto_create_domains: Vec<String>,
    /// The role of a member created on first sign-in whose groups map to none.
    #[serde(default = "default_role")]
    #[schema(example = "viewer")]
    pub default_role: Role,
    /// Provider group (name or, with Entra, object id) → role.
    #[serde(default)]
    pub group_roles: BTreeMap<String, Role>,
    /// Members sign in through the provider only; needs one sign-in through it first.
    #[serde(default)]
    pub require_sso: bool,
}

fn default_role() -> Role {
    Role::Viewer
}

/// An organization's single sign-on, as stored and shown (without its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoSettings {
    pub provider: ProviderChoice,
    #[schema(example = json!(["nordlysfleet.se"]))]
    pub auto_create_domains: Vec<String>,
    pub default_role: Role,
    pub group_roles: BTreeMap<String, Role>,
    pub require_sso: bool,
    /// The first sign-in through this provider and secret; "require SSO" needs one.
    pub verified_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The settings as stored: with the name of the secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsRecord {
    #[serde(flatten)]
    settings: SsoSettings,
    secret_ref: String,
}

impl SettingsRecord {
    fn provider(&self) -> SsoProvider {
        self.settings
            .provider
            .clone()
            .with_secret(self.secret_ref.clone())
    }
}

/// A login on its way through the provider, stored under its state.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingRecord {
    tenant_id: TenantId,
    pending: crate::sso::PendingLogin,
    expires_at: DateTime<Utc>,
}

/// A sign-in on its way: where to send the browser, and the state it comes back with.
#[derive(Debug)]
pub struct SsoStarted {
    pub url: String,
    pub state: String,
}

/// A sign-in through the provider that went through.
#[derive(Debug)]
pub struct SsoSignIn {
    pub user: User,
    /// The member was created or joined by this sign-in.
    pub joined: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SsoServiceError {
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("single sign-on is not configured for this organization")]
    NotConfigured,
    /// "Require SSO" before a sign-in through the current provider has worked.
    #[error("sign in through the identity provider once before requiring it")]
    Unverified,
    /// The state is unknown, used or too old: start again.
    #[error("this sign-in is unknown or has expired; start again")]
    LoginInvalid,
    /// The provider vouched for someone who is not, and may not become, a member.
    #[error("no member of the organization matches this sign-in")]
    NoAccount,
    /// The verified address belongs to an account of another organization.
    #[error("the e-mail address is in use by another account")]
    EmailTaken,
    /// The organization signs in through its provider only.
    #[error("this organization signs in through its identity provider")]
    SsoRequired,
    #[error(transparent)]
    Provider(#[from] SsoError),
    #[error(transparent)]
    Vault(#[from] SecretVaultError),
    /// The organization has not turned the `sso` module on.
    #[error("the sso module is not active")]
    ModuleInactive,
    #[error("the settings changed meanwhile; retry")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct SingleSignOn {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    vault: Arc<dyn SecretVault>,
    oidc: Arc<dyn OidcClient>,
    sessions: SessionService,
    modules: ModuleService,
    /// Put before `sso/<tenant>` in the names of client secrets (the stack's prefix).
    secret_prefix: String,
    /// Where the provider sends the browser back: the web app's page, which hands the
    /// code and state to [`Self::finish`].
    redirect_uri: String,
}

impl SingleSignOn {
    pub fn new(
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        vault: Arc<dyn SecretVault>,
        oidc: Arc<dyn OidcClient>,
        secret_prefix: &str,
        redirect_uri: &str,
    ) -> Self {
        Self {
            sessions: SessionService::new(table.clone(), clock.clone()),
            modules: ModuleService::new(table.clone(), clock.clone()),
            table,
            clock,
            vault,
            oidc,
            secret_prefix: secret_prefix.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
        }
    }

    /// The redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The organization's settings, if it has any.
    pub async fn settings(&self, actor: &Actor) -> Result<Option<SsoSettings>, SsoServiceError> {
        require(actor, Permission::ReadMembers)?;
        Ok(self
            .record(actor.tenant)
            .await?
            .map(|(record, _)| record.settings))
    }

    /// Whether the organization's members must sign in through its provider: only
    /// while the `sso` module is on, or nobody could sign in at all.
    pub async fn requires_sso(&self, tenant: TenantId) -> Result<bool, SsoServiceError> {
        let required = self
            .record(tenant)
            .await?
            .is_some_and(|(record, _)| record.settings.require_sso);
        Ok(required && self.modules.is_active(tenant, Module::Sso).await?)
    }

    async fn require_module(&self, tenant: TenantId) -> Result<(), SsoServiceError> {
        if self.modules.is_active(tenant, Module::Sso).await? {
            Ok(())
        } else {
            Err(SsoServiceError::ModuleInactive)
        }
    }

    /// Configures single sign-on (owners and admins).
    pub async fn configure(
        &self,
        actor: &Actor,
        configuration: SsoConfiguration,
    ) -> Result<SsoSettings, SsoServiceError> {
        require(actor, Permission::ManageOrganization)?;
        let existing = self.record(actor.tenant).await?;
        let (domains, still_verified) = self
            .check_with_domains(actor, &configuration, &existing)
            .await?;
        let now = self.clock.now();
        let secret_changed = configuration.client_secret.is_some();
        let provider_changed = existing
            .as_ref()
            .is_none_or(|(record, _)| record.settings.provider != configuration.provider);
        let verified_at = match &existing {
            Some((record, _)) if !secret_changed && !provider_changed => {
                record.settings.verified_at
            }
            _ => None,
        };
        if configuration.require_sso && verified_at.is_none() {
            return Err(SsoServiceError::Unverified);
        }
        let secret_ref = format!("{}sso/{}", self.secret_prefix, actor.tenant);
        if let Some(secret) = &configuration.client_secret {
            self.vault.put(&secret_ref, secret).await?;
        }
        let record = SettingsRecord {
            settings: SsoSettings {
                provider: configuration.provider,
                auto_create_domains: domains,
                default_role: configuration.default_role,
                group_roles: configuration.group_roles,
                require_sso: configuration.require_sso,
                verified_at,
                updated_at: now,
            },
            secret_ref,
        };
        let (before, condition, version) = match &existing {
            Some((old, version)) => (
                Some(audit_view(&old.settings, false)),
                Condition::VersionIs(*version),
                version + 1,
            ),
            None => (None, Condition::NotExists, 1),
        };
        let audit = AuditEvent::change(
            actor,
            now,
            "sso.configured",
            format!("organization:{}", actor.tenant),
            before,
            Some(audit_view(&record.settings, secret_changed)),
        );
        let put = WriteOp::Put {
            item: Item::new(keys::sso_settings(actor.tenant), to_attributes(&record)?)
                .with_version(version),
            condition,
        };
        // Each auto-create domain must still be verified by this organization when the
        // settings are written: a claim removed meanwhile cancels the write.
        let mut ops = vec![put, audit.write_op()];
        ops.extend(still_verified);
        match self.table.transact_write(ops).await {
            Ok(()) => {}
            Err(StoreError::TransactionCanceled { .. }) => {
                return Err(SsoServiceError::Contention);
            }
            Err(other) => return Err(other.into()),
        }
        let was_required = existing
            .as_ref()
            .is_some_and(|(old, _)| old.settings.require_sso);
        if record.settings.require_sso && !was_required {
            let ended = self
                .sessions
                .end_sessions_not_opened_by(actor.tenant, SSO_METHOD, "sso required")
                .await
                .map_err(|error| match error {
                    crate::sessions::SessionError::Store(store) => SsoServiceError::Store(store),
                    other => SsoServiceError::Store(StoreError::Unavailable(other.to_string())),
                })?;
            tracing::info!(tenant_id = %actor.tenant, ended, "sso required: password sessions ended");
        }
        Ok(record.settings)
    }

    /// Checks a configuration, and that each of its auto-create domains is verified by
    /// the organization; every problem at once. Answers the domains, normalized, and
    /// the checks that keep them verified until the settings are written.
    async fn check_with_domains(
        &self,
        actor: &Actor,
        configuration: &SsoConfiguration,
        existing: &Option<(SettingsRecord, u64)>,
    ) -> Result<(Vec<String>, Vec<WriteOp>), SsoServiceError> {
        let checked = check(configuration, existing.is_some());
        let mut errors = match &checked {
            Ok(_) => ValidationErrors::new(),
            Err(errors) => errors.clone(),
        };
        // Each domain read once: its verification's version, or `None`.
        let mut verified: BTreeMap<DomainName, Option<u64>> = BTreeMap::new();
        for (i, domain) in configuration
            .auto_create_domains
            .iter()
            .enumerate()
            .take(MAX_AUTO_CREATE_DOMAINS)
        {
            // A domain that is no domain name was reported by `check`.
            let Ok(domain) = DomainName::parse(domain) else {
                continue;
            };
            let version = match verified.get(&domain) {
                Some(version) => *version,
                None => {
                    let version =
                        crate::sso_domains::verified_by(self.table.as_ref(), actor.tenant, &domain)
                            .await?;
                    verified.insert(domain, version);
                    version
                }
            };
            if version.is_none() {
                errors.add(
                    format!("/autoCreateDomains/{i}"),
                    FieldIssue::DomainUnverified,
                );
            }
        }
        match checked {
            Ok(domains) if errors.is_empty() => Ok((
                domains,
                verified
                    .iter()
                    .filter_map(|(domain, version)| {
                        version.map(|version| crate::sso_domains::still_verified(domain, version))
                    })
                    .collect(),
            )),
            _ => Err(errors.into()),
        }
    }

    /// Removes single sign-on and its secret (owners and admins). Links between members
    /// and provider identities stay, for a provider configured again.
    pub async fn remove(&self, actor: &Actor) -> Result<(), SsoServiceError> {
        require(actor, Permission::ManageOrganization)?;
        let Some((record, version)) = self.record(actor.tenant).await? else {
            return Err(SsoServiceError::NotConfigured);
        };
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "sso.removed",
            format!("organization:{}", actor.tenant),
            Some(audit_view(&record.settings, false)),
            None,
        );
        let delete = WriteOp::Delete {
            key: keys::sso_settings(actor.tenant),
            condition: Condition::VersionIs(version),
        };
        match self
            .table
            .transact_write(vec![delete, audit.write_op()])
            .await
        {
            Ok(()) => {}
            Err(StoreError::TransactionCanceled { .. }) => {
                return Err(SsoServiceError::Contention);
            }
            Err(other) => return Err(other.into()),
        }
        self.vault.delete(&record.secret_ref).await?;
        Ok(())
    }

    /// Starts a sign-in through `tenant`'s provider: where to send the browser. The
    /// login's state, nonce and PKCE verifier are kept for
    /// [`PENDING_LOGIN_MINUTES`], under the state.
    pub async fn start(&self, tenant: TenantId) -> Result<SsoStarted, SsoServiceError> {
        self.require_module(tenant).await?;
        let Some((record, _)) = self.record(tenant).await? else {
            return Err(SsoServiceError::NotConfigured);
        };
        let request = self
            .oidc
            .authorization_request(&record.provider(), &self.redirect_uri)
            .await?;
        let expires_at = self.clock.now() + Duration::minutes(PENDING_LOGIN_MINUTES);
        let pending = PendingRecord {
            tenant_id: tenant,
            pending: request.pending,
            expires_at,
        };
        let item = Item::new(
            keys::sso_pending_login(&pending.pending.state),
            to_attributes(&pending)?,
        )
        .expiring_at(expires_at.timestamp());
        self.table.put(item, Condition::NotExists).await?;
        Ok(SsoStarted {
            url: request.url,
            state: pending.pending.state,
        })
    }

    /// Finishes a sign-in: the provider sent the browser back with `code` and `state`.
    /// Each state is good once. Who the verified identity is here: see the module.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        request: &RequestInfo,
    ) -> Result<SsoSignIn, SsoServiceError> {
        let now = self.clock.now();
        let key = keys::sso_pending_login(state);
        let Some(item) = self.table.get(&key).await? else {
            return Err(SsoServiceError::LoginInvalid);
        };
        if item.is_expired(now.timestamp()) {
            return Err(SsoServiceError::LoginInvalid);
        }
        let version = item.version;
        let pending: PendingRecord = from_item(item)?;
        // Used up before the code is even tried: a state never works twice.
        match self.table.delete(&key, Condition::VersionIs(version)).await {
            Ok(_) => {}
            Err(StoreError::ConditionFailed) => return Err(SsoServiceError::LoginInvalid),
            Err(other) => return Err(other.into()),
        }
        if now >= pending.expires_at || pending.pending.state != state {
            return Err(SsoServiceError::LoginInvalid);
        }
        let tenant = pending.tenant_id;
        self.require_module(tenant).await?;
        let Some((record, settings_version)) = self.record(tenant).await? else {
            return Err(SsoServiceError::NotConfigured);
        };
        let provider = record.provider();
        let secret = self
            .vault
            .get(&record.secret_ref)
            .await?
            .ok_or_else(|| SsoError::Config("the client secret is missing".to_owned()))?;
        let identity = match self
            .oidc
            .complete(
                &provider,
                &secret,
                &self.redirect_uri,
                code,
                &pending.pending,
            )
            .await
        {
            Ok(identity) => identity,
            Err(error) => {
                let reason = match &error {
                    SsoError::IdToken(_) => "id_token_rejected",
                    SsoError::CodeRejected { .. } => "code_rejected",
                    SsoError::Unavailable(_) => "provider_unavailable",
                    _ => "provider_error",
                };
                self.audit_refusal(tenant, now, request, reason).await?;
                return Err(error.into());
            }
        };
        let link_key = keys::sso_identity(tenant, &identity.issuer, &identity.subject);
        let verified_email = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
            .and_then(|email| Email::parse(email).ok());
        let mapped_role = mapped_role(&record.settings.group_roles, &identity.groups);

        let (user, joined) = match self.linked_member(tenant, &link_key).await? {
            Some((member, member_version)) => (
                self.apply_group_role(member, member_version, mapped_role, request)
                    .await?,
                false,
            ),
            None => {
                let Some(email) = verified_email else {
                    self.audit_refusal(tenant, now, request, "no_matching_member")
                        .await?;
                    return Err(SsoServiceError::NoAccount);
                };
                match self.member_by_email(tenant, &email).await? {
                    Some((member, member_version)) => {
                        self.link(&link_key, &identity, member.user.id).await?;
                        let member = self
                            .apply_group_role(member, member_version, mapped_role, request)
                            .await?;
                        (member, false)
                    }
                    None => {
                        let joined = self
                            .join(
                                tenant,
                                &record.settings,
                                &email,
                                &identity,
                                &link_key,
                                mapped_role,
                                request,
                            )
                            .await?;
                        (joined, true)
                    }
                }
            }
        };
        if record.settings.verified_at.is_none() {
            self.mark_verified(tenant, record, settings_version, now)
                .await?;
        }
        Ok(SsoSignIn { user, joined })
    }

    /// The member linked to the provider identity under `link_key`. A link to a member
    /// who is gone is removed.
    async fn linked_member(
        &self,
        tenant: TenantId,
        link_key: &crate::store::Key,
    ) -> Result<Option<(UserRecord, u64)>, SsoServiceError> {
        let Some(link) = self.table.get(link_key).await? else {
            return Ok(None);
        };
        let user_id: Option<UserId> = link
            .attributes
            .get("userId")
            .and_then(|value| serde_json::from_value(value.clone()).ok());
        let member = match user_id {
            Some(user) => self.table.get(&keys::user(tenant, user)).await?,
            None => None,
        };
        match member {
            Some(item) => {
                let version = item.version;
                Ok(Some((from_item(item)?, version)))
            }
            None => {
                self.table.delete(link_key, Condition::None).await?;
                Ok(None)
            }
        }
    }

    async fn member_by_email(
        &self,
        tenant: TenantId,
        email: &Email,
    ) -> Result<Option<(UserRecord, u64)>, SsoServiceError> {
        let Some(login) = self.table.get(&keys::email_login(email.as_str())).await? else {
            return Ok(None);
        };
        let owner = |name: &str| {
            login
                .attributes
                .get(name)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        if owner("tenantId") != Some(tenant.to_string()) {
            // Someone else's account: not ours to link.
            return Err(SsoServiceError::EmailTaken);
        }
        let Some(user) = owner("userId").and_then(|id| id.parse::<UserId>().ok()) else {
            return Ok(None);
        };
        match self.table.get(&keys::user(tenant, user)).await? {
            Some(item) => {
                let version = item.version;
                Ok(Some((from_item(item)?, version)))
            }
            None => Ok(None),
        }
    }

    fn link_item(
        link_key: &crate::store::Key,
        identity: &crate::sso::VerifiedIdentity,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Item, StoreError> {
        Ok(Item::new(
            link_key.clone(),
            to_attributes(&serde_json::json!({
                "userId": user,
                "issuer": identity.issuer,
                "subject": identity.subject,
                "linkedAt": now,
            }))?,
        ))
    }

    async fn link(
        &self,
        link_key: &crate::store::Key,
        identity: &crate::sso::VerifiedIdentity,
        user: UserId,
    ) -> Result<(), SsoServiceError> {
        let item = Self::link_item(link_key, identity, user, self.clock.now())?;
        match self.table.put(item, Condition::NotExists).await {
            // Two first sign-ins at once: the other one linked the same member.
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Makes the verified address a member: through an open invitation, or in an
    /// auto-create domain. The member, their login, the link and the audit event are
    /// written at once.
    #[allow(clippy::too_many_arguments)]
    async fn join(
        &self,
        tenant: TenantId,
        settings: &SsoSettings,
        email: &Email,
        identity: &crate::sso::VerifiedIdentity,
        link_key: &crate::store::Key,
        mapped_role: Option<Role>,
        request: &RequestInfo,
    ) -> Result<User, SsoServiceError> {
        let now = self.clock.now();
        let invitation = open_invitation_for(self.table.as_ref(), tenant, email, now).await?;
        let role = match &invitation {
            Some((invited, _)) => invited.invitation.role,
            None => match self.auto_create_domain(tenant, settings, email).await? {
                AutoCreate::Allowed => mapped_role.unwrap_or(settings.default_role),
                AutoCreate::NotListed => {
                    self.audit_refusal(tenant, now, request, "no_matching_member")
                        .await?;
                    return Err(SsoServiceError::NoAccount);
                }
                // Listed before domains had to be verified, or the proof was given up.
                AutoCreate::Unverified => {
                    self.audit_refusal(tenant, now, request, "auto_create_domain_unverified")
                        .await?;
                    return Err(SsoServiceError::NoAccount);
                }
            },
        };
        let name = identity
            .name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty() && name.chars().count() <= 200)
            .unwrap_or(email.as_str())
            .to_owned();
        let user = User {
            id: UserId::generate(),
            tenant_id: tenant,
            name,
            email: email.clone(),
            role,
            created_at: now,
            language: None,
        };
        let actor = Actor {
            tenant,
            user: user.id,
            role,
            request: request.clone(),
        };
        let audit = AuditEvent::change(
            &actor,
            now,
            "member.joined",
            format!("user:{}", user.id),
            None,
            Some(serde_json::json!({
                "method": SSO_METHOD,
                "invitation": invitation.as_ref().map(|(record, _)| record.invitation.id),
                "email": user.email,
                "role": role,
            })),
        );
        // No password: this member signs in through the provider.
        let [login, member] = new_member_writes(&user, String::new())?;
        let mut ops = vec![
            login,
            member,
            WriteOp::Put {
                item: Self::link_item(link_key, identity, user.id, now)?,
                condition: Condition::NotExists,
            },
            audit.write_op(),
        ];
        if let Some((mut invited, version)) = invitation {
            invited.invitation.accepted_at = Some(now);
            ops.push(WriteOp::Put {
                item: crate::members::invitation_item(tenant, &invited)?.with_version(version + 1),
                condition: Condition::VersionIs(version),
            });
        }
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(user),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                Err(SsoServiceError::EmailTaken)
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(SsoServiceError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    /// Whether `email` may become a member by its domain: listed in the auto-create
    /// domains and verified by the organization, now.
    async fn auto_create_domain(
        &self,
        tenant: TenantId,
        settings: &SsoSettings,
        email: &Email,
    ) -> Result<AutoCreate, SsoServiceError> {
        let Some(domain) = DomainName::of_email(email) else {
            return Ok(AutoCreate::NotListed);
        };
        if !settings
            .auto_create_domains
            .iter()
            .any(|listed| listed == domain.as_str())
        {
            return Ok(AutoCreate::NotListed);
        }
        let verified = crate::sso_domains::verified_by(self.table.as_ref(), tenant, &domain)
            .await?
            .is_some();
        Ok(if verified {
            AutoCreate::Allowed
        } else {
            AutoCreate::Unverified
        })
    }

    /// Gives `member` the role their provider groups map to, if any maps and it differs.
    async fn apply_group_role(
        &self,
        member: UserRecord,
        version: u64,
        mapped_role: Option<Role>,
        request: &RequestInfo,
    ) -> Result<User, SsoServiceError> {
        let Some(role) = mapped_role else {
            return Ok(member.user);
        };
        if member.user.role == role || member.user.role == Role::Owner {
            return Ok(member.user);
        }
        let before = member.user.role;
        let mut changed = member;
        changed.user.role = role;
        let user = changed.user.clone();
        let actor = Actor {
            tenant: user.tenant_id,
            user: user.id,
            role,
            request: request.clone(),
        };
        let audit = AuditEvent::change(
            &actor,
            self.clock.now(),
            "member.role_changed",
            format!("user:{}", user.id),
            Some(serde_json::json!({ "role": before })),
            Some(serde_json::json!({ "role": role, "by": "sso groups" })),
        );
        let put = WriteOp::Put {
            item: Item::new(
                keys::user(user.tenant_id, user.id),
                to_attributes(&changed)?,
            )
            .with_version(version + 1),
            condition: Condition::VersionIs(version),
        };
        match self.table.transact_write(vec![put, audit.write_op()]).await {
            Ok(()) => Ok(user),
            Err(StoreError::TransactionCanceled { .. }) => Err(SsoServiceError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    async fn mark_verified(
        &self,
        tenant: TenantId,
        mut record: SettingsRecord,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<(), SsoServiceError> {
        record.settings.verified_at = Some(now);
        let item = Item::new(keys::sso_settings(tenant), to_attributes(&record)?)
            .with_version(version + 1);
        match self.table.put(item, Condition::VersionIs(version)).await {
            // Changed meanwhile: the change decides whether it is verified.
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Audits a sign-in through the provider that was refused. Nothing the provider sent
    /// is in it: only why.
    async fn audit_refusal(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        request: &RequestInfo,
        reason: &str,
    ) -> Result<(), SsoServiceError> {
        let event = AuditEvent {
            outcome: Outcome::Failure,
            request_id: request.request_id.clone(),
            source_ip: request.source_ip.clone(),
            user_agent: request.user_agent.clone(),
            ..AuditEvent::system(
                tenant,
                now,
                "auth.sign_in_failed",
                format!("organization:{tenant}"),
                None,
                Some(serde_json::json!({ "method": SSO_METHOD, "reason": reason })),
            )
        };
        self.table.transact_write(vec![event.write_op()]).await?;
        Ok(())
    }

    async fn record(
        &self,
        tenant: TenantId,
    ) -> Result<Option<(SettingsRecord, u64)>, SsoServiceError> {
        match self.table.get(&keys::sso_settings(tenant)).await? {
            Some(item) => {
                let version = item.version;
                Ok(Some((from_item(item)?, version)))
            }
            None => Ok(None),
        }
    }
}

/// The first role of [`MAPPABLE_ROLES`] that one of `groups` maps to.
pub fn mapped_role(group_roles: &BTreeMap<String, Role>, groups: &[String]) -> Option<Role> {
    let granted: Vec<Role> = groups
        .iter()
        .filter_map(|group| group_roles.get(group).copied())
        .collect();
    MAPPABLE_ROLES
        .into_iter()
        .find(|role| granted.contains(role))
}

/// Whether a verified address's domain lets its owner become a member.
#[derive(Debug, PartialEq, Eq)]
enum AutoCreate {
    Allowed,
    NotListed,
    /// Listed, but the organization has not (or no longer) proved it controls it.
    Unverified,
}

/// The most auto-create domains one configuration lists.
const MAX_AUTO_CREATE_DOMAINS: usize = 50;

/// The write that takes `domain` out of `tenant`'s auto-create domains, when its
/// settings list it: for the transaction that gives up the domain's claim.
pub(crate) async fn without_auto_create_domain(
    table: &dyn Table,
    tenant: TenantId,
    domain: &DomainName,
    now: DateTime<Utc>,
) -> Result<Option<WriteOp>, StoreError> {
    let Some(item) = table.get(&keys::sso_settings(tenant)).await? else {
        return Ok(None);
    };
    let version = item.version;
    let mut record: SettingsRecord = from_item(item)?;
    let before = record.settings.auto_create_domains.len();
    record
        .settings
        .auto_create_domains
        .retain(|listed| listed != domain.as_str());
    if record.settings.auto_create_domains.len() == before {
        return Ok(None);
    }
    record.settings.updated_at = now;
    Ok(Some(WriteOp::Put {
        item: Item::new(keys::sso_settings(tenant), to_attributes(&record)?)
            .with_version(version + 1),
        condition: Condition::VersionIs(version),
    }))
}

/// Checks a configuration; answers its auto-create domains, normalized.
fn check(
    configuration: &SsoConfiguration,
    has_secret: bool,
) -> Result<Vec<String>, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    match configuration.client_secret.as_deref() {
        None if !has_secret => errors.add("/clientSecret", FieldIssue::Required),
        Some(secret) if secret.trim().is_empty() => {
            errors.add("/clientSecret", FieldIssue::Blank);
        }
        Some(secret) if secret.len() > 4096 => {
            errors.add("/clientSecret", FieldIssue::TooLong { max: 4096 });
        }
        _ => {}
    }
    let allowed = FieldIssue::InvalidChoice {
        allowed: MAPPABLE_ROLE_NAMES,
    };
    if !MAPPABLE_ROLES.contains(&configuration.default_role) {
        errors.add("/defaultRole", allowed.clone());
    }
    if configuration.group_roles.len() > 100 {
        errors.add(
            "/groupRoles",
            FieldIssue::OutOfRange {
                min: "0".into(),
                max: "100".into(),
            },
        );
    }
    for (group, role) in &configuration.group_roles {
        let pointer = format!(
            "/groupRoles/{}",
            group.replace('~', "~0").replace('/', "~1")
        );
        if group.trim().is_empty() || group.len() > 256 {
            errors.add(pointer.clone(), FieldIssue::InvalidChoice { allowed: &[] });
        }
        if !MAPPABLE_ROLES.contains(role) {
            errors.add(pointer, allowed.clone());
        }
    }
    let mut domains = Vec::new();
    if configuration.auto_create_domains.len() > MAX_AUTO_CREATE_DOMAINS {
        errors.add(
            "/autoCreateDomains",
            FieldIssue::OutOfRange {
                min: "0".into(),
                max: MAX_AUTO_CREATE_DOMAINS.to_string(),
            },
        );
    }
    for (i, domain) in configuration.auto_create_domains.iter().enumerate() {
        match DomainName::parse(domain) {
            Ok(domain) => {
                let domain = String::from(domain);
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
            Err(issue) => errors.add(format!("/autoCreateDomains/{i}"), issue),
        }
    }
    if errors.is_empty() {
        Ok(domains)
    } else {
        Err(errors)
    }
}

/// The settings as the audit log keeps them; whether the secret was replaced, never it.
fn audit_view(settings: &SsoSettings, secret_replaced: bool) -> serde_json::Value {
    let mut view = serde_json::to_value(settings).unwrap_or_default();
    if secret_replaced {
        view["clientSecretReplaced"] = serde_json::Value::Bool(true);
    }
    view
}

fn require(actor: &Actor, permission: Permission) -> Result<(), SsoServiceError> {
    if actor.role.allows(permission) {
        Ok(())
    } else {
        Err(SsoServiceError::Forbidden(actor.role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn sso_groups_map_to_the_first_role_in_order() {
        let mapping: BTreeMap<String, Role> = [
            ("g-viewers".to_owned(), Role::Viewer),
            ("g-editors".to_owned(), Role::Editor),
            ("g-admins".to_owned(), Role::Admin),
            ("g-audit".to_owned(), Role::Auditor),
        ]
        .into();
        assert_eq!(
            mapped_role(&mapping, &groups(&["g-viewers"])),
            Some(Role::Viewer)
        );
        assert_eq!(
            mapped_role(&mapping, &groups(&["g-viewers", "g-audit", "g-editors"])),
            Some(Role::Editor)
        );
        assert_eq!(
            mapped_role(&mapping, &groups(&["other", "g-admins", "g-viewers"])),
            Some(Role::Admin)
        );
        assert_eq!(mapped_role(&mapping, &groups(&["other"])), None);
        assert_eq!(mapped_role(&mapping, &[]), None);
    }

    fn configuration(json: serde_json::Value) -> SsoConfiguration {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sso_configuration_is_checked_field_by_field() {
        let generic = serde_json::json!({"kind": "generic", "issuer": "https://idp.example.com",
                                         "clientId": "leasedesk"});
        let ok = configuration(serde_json::json!({"provider": generic, "clientSecret": "s",
            "autoCreateDomains": [" Nordlysfleet.SE ", "nordlysfleet.se", "fleet.nordlys.se"]}));
        assert_eq!(
            check(&ok, false).unwrap(),
            vec!["nordlysfleet.se".to_owned(), "fleet.nordlys.se".to_owned()]
        );
        let no_secret = configuration(serde_json::json!({"provider": generic}));
        let pointers = |result: Result<Vec<String>, ValidationErrors>| -> Vec<String> {
            result
                .unwrap_err()
                .errors()
                .iter()
                .map(|error| format!("{} {}", error.pointer, error.issue.code()))
                .collect()
        };
        assert_eq!(
            pointers(check(&no_secret, false)),
            ["/clientSecret required"]
        );
        assert!(check(&no_secret, true).is_ok(), "the stored secret is kept");
        let bad = configuration(serde_json::json!({"provider": generic, "clientSecret": " ",
            "defaultRole": "owner", "groupRoles": {"a/b": "owner", "ok": "editor"},
            "autoCreateDomains": ["not a domain", "@x.se", "localhost"]}));
        assert_eq!(
            pointers(check(&bad, false)),
            [
                "/clientSecret blank",
                "/defaultRole invalid_choice",
                "/groupRoles/a~1b invalid_choice",
                "/autoCreateDomains/0 invalid_domain",
                "/autoCreateDomains/1 invalid_domain",
                "/autoCreateDomains/2 invalid_domain",
            ]
        );
    }

    #[test]
    fn sso_configuration_refuses_unknown_fields_and_multi_tenant_entra() {
        let parsed = serde_json::from_value::<SsoConfiguration>(serde_json::json!({
            "provider": {"kind": "entra", "tenantId": "common", "clientId": "x"},
            "clientSecret": "s"}));
        assert!(parsed.is_err());
        let parsed = serde_json::from_value::<SsoConfiguration>(serde_json::json!({
            "provider": {"kind": "generic", "issuer": "https://idp.example.com",
                         "clientId": "x", "secretRef": "someone-elses"},
            "clientSecret": "s"}));
        assert!(parsed.is_err(), "the secret's name is ours to choose");
    }

    mod auto_create {
        use super::super::*;
        use super::configuration;
        use crate::audit::AuditEvent;
        use crate::clock::FixedClock;
        use crate::dns::DnsResolver;
        use crate::sso::{AuthorizationRequest, PendingLogin, VerifiedIdentity};
        use crate::sso_domains::SsoDomains;
        use crate::testing::{MemoryDns, MemorySecrets, MemoryTable};
        use async_trait::async_trait;
        use std::sync::Mutex;

        /// A provider that vouches for whoever it was told to.
        #[derive(Default)]
        struct Vouching {
            next: Mutex<Option<VerifiedIdentity>>,
            logins: std::sync::atomic::AtomicUsize,
        }

        #[async_trait]
        impl OidcClient for Vouching {
            async fn authorization_request(
                &self,
                _provider: &SsoProvider,
                _redirect_uri: &str,
            ) -> Result<AuthorizationRequest, SsoError> {
                let n = self
                    .logins
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(AuthorizationRequest {
                    url: "https://idp.example.com/authorize".into(),
                    pending: PendingLogin {
                        state: format!("state-{n}"),
                        nonce: format!("nonce-{n}"),
                        pkce_verifier: format!("verifier-{n}"),
                    },
                })
            }

            async fn complete(
                &self,
                _provider: &SsoProvider,
                _client_secret: &str,
                _redirect_uri: &str,
                _code: &str,
                _pending: &PendingLogin,
            ) -> Result<VerifiedIdentity, SsoError> {
                self.next
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or_else(|| SsoError::Config("nobody to vouch for".into()))
            }
        }

        struct Fixture {
            table: Arc<MemoryTable>,
            dns: Arc<MemoryDns>,
            oidc: Arc<Vouching>,
            sso: SingleSignOn,
            domains: SsoDomains,
            owner: Actor,
        }

        impl Fixture {
            async fn new() -> Self {
                let table = Arc::new(MemoryTable::default());
                let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
                let dns = Arc::new(MemoryDns::default());
                let oidc = Arc::new(Vouching::default());
                let sso = SingleSignOn::new(
                    table.clone(),
                    clock.clone(),
                    Arc::new(MemorySecrets::default()),
                    oidc.clone(),
                    "",
                    "https://app.example.com/sso/callback",
                );
                let domains = SsoDomains::new(
                    table.clone(),
                    clock.clone(),
                    dns.clone() as Arc<dyn DnsResolver>,
                );
                let owner = Actor {
                    tenant: TenantId::generate(),
                    user: UserId::generate(),
                    role: Role::Owner,
                    request: RequestInfo::default(),
                };
                ModuleService::new(table.clone(), clock)
                    .set_active(&owner, Module::Sso, true)
                    .await
                    .unwrap();
                Self {
                    table,
                    dns,
                    oidc,
                    sso,
                    domains,
                    owner,
                }
            }

            fn configuration(domains: &[&str]) -> SsoConfiguration {
                configuration(serde_json::json!({
                    "provider": {"kind": "generic", "issuer": "https://idp.example.com",
                                 "clientId": "leasedesk"},
                    "clientSecret": "s",
                    "autoCreateDomains": domains,
                }))
            }

            async fn verify(&self, domain: &str) {
                let (claim, _) = self.domains.claim(&self.owner, domain).await.unwrap();
                self.dns.publish(&claim.record.name, &claim.record.value);
                self.domains.verify(&self.owner, domain).await.unwrap();
            }

            /// A sign-in through the provider of someone with the verified `email`.
            async fn sign_in(
                &self,
                subject: &str,
                email: &str,
            ) -> Result<SsoSignIn, SsoServiceError> {
                *self.oidc.next.lock().unwrap() = Some(VerifiedIdentity {
                    issuer: "https://idp.example.com".into(),
                    subject: subject.into(),
                    email: Some(email.into()),
                    email_verified: true,
                    name: Some("Sara Nyström".into()),
                    groups: Vec::new(),
                });
                let started = self.sso.start(self.owner.tenant).await?;
                self.sso
                    .finish(&started.state, "code", &RequestInfo::default())
                    .await
            }

            fn refusal_reasons(&self) -> Vec<String> {
                self.table
                    .items_in(&keys::tenant_partition(self.owner.tenant))
                    .into_iter()
                    .filter(|item| item.key.sk.starts_with(keys::AUDIT_PREFIX))
                    .map(|item| from_item::<AuditEvent>(item).unwrap())
                    .filter(|event| event.action == "auth.sign_in_failed")
                    .map(|event| event.after.unwrap()["reason"].as_str().unwrap().to_owned())
                    .collect()
            }
        }

        fn codes(error: SsoServiceError) -> Vec<String> {
            match error {
                SsoServiceError::Invalid(errors) => errors
                    .errors()
                    .iter()
                    .map(|error| format!("{} {}", error.pointer, error.issue.code()))
                    .collect(),
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn auto_create_domains_must_be_verified_by_the_organization() {
            let fixture = Fixture::new().await;
            let refused = fixture
                .sso
                .configure(
                    &fixture.owner,
                    Fixture::configuration(&["nordlysfleet.se", "not a domain", "Nordlysfleet.SE"]),
                )
                .await
                .unwrap_err();
            assert_eq!(
                codes(refused),
                [
                    "/autoCreateDomains/1 invalid_domain",
                    "/autoCreateDomains/0 domain_unverified",
                    "/autoCreateDomains/2 domain_unverified",
                ],
                "every problem at once, each where it is"
            );
            // Claimed is not enough.
            fixture
                .domains
                .claim(&fixture.owner, "nordlysfleet.se")
                .await
                .unwrap();
            let refused = fixture
                .sso
                .configure(&fixture.owner, Fixture::configuration(&["nordlysfleet.se"]))
                .await
                .unwrap_err();
            assert_eq!(codes(refused), ["/autoCreateDomains/0 domain_unverified"]);

            fixture.verify("nordlysfleet.se").await;
            let settings = fixture
                .sso
                .configure(&fixture.owner, Fixture::configuration(&["Nordlysfleet.SE"]))
                .await
                .unwrap();
            assert_eq!(settings.auto_create_domains, ["nordlysfleet.se"]);

            // Giving the domain up takes it out of the settings too.
            fixture
                .domains
                .remove(&fixture.owner, "nordlysfleet.se")
                .await
                .unwrap();
            let settings = fixture.sso.settings(&fixture.owner).await.unwrap().unwrap();
            assert!(settings.auto_create_domains.is_empty());
        }

        #[tokio::test]
        async fn members_are_created_only_from_verified_domains() {
            let fixture = Fixture::new().await;
            fixture.verify("nordlysfleet.se").await;
            fixture
                .sso
                .configure(&fixture.owner, Fixture::configuration(&["nordlysfleet.se"]))
                .await
                .unwrap();
            let joined = fixture
                .sign_in("sub-sara", "sara@nordlysfleet.se")
                .await
                .unwrap();
            assert!(joined.joined);
            assert_eq!(joined.user.role, Role::Viewer);
            // Another domain, verified or not, is no way in.
            assert!(matches!(
                fixture.sign_in("sub-eve", "eve@annanfirma.se").await,
                Err(SsoServiceError::NoAccount)
            ));

            // Settings stored before domains had to be verified list one that is not.
            let key = keys::sso_settings(fixture.owner.tenant);
            let item = fixture.table.get(&key).await.unwrap().unwrap();
            let version = item.version;
            let mut record: SettingsRecord = from_item(item).unwrap();
            record
                .settings
                .auto_create_domains
                .push("annanfirma.se".into());
            fixture
                .table
                .put(
                    Item::new(key, to_attributes(&record).unwrap()).with_version(version + 1),
                    Condition::VersionIs(version),
                )
                .await
                .unwrap();
            assert!(matches!(
                fixture.sign_in("sub-erik", "erik@annanfirma.se").await,
                Err(SsoServiceError::NoAccount)
            ));
            // A domain whose proof was given up creates nobody either, even if the
            // settings still listed it.
            fixture
                .table
                .delete(&keys::sso_domain_owner("nordlysfleet.se"), Condition::None)
                .await
                .unwrap();
            assert!(matches!(
                fixture.sign_in("sub-anna", "anna@nordlysfleet.se").await,
                Err(SsoServiceError::NoAccount)
            ));
            // The member created before still signs in: by the provider's subject.
            let again = fixture
                .sign_in("sub-sara", "sara@nordlysfleet.se")
                .await
                .unwrap();
            assert_eq!((again.user.id, again.joined), (joined.user.id, false));
            let mut reasons = fixture.refusal_reasons();
            reasons.sort();
            assert_eq!(
                reasons,
                [
                    "auto_create_domain_unverified",
                    "auto_create_domain_unverified",
                    "no_matching_member",
                ]
            );
        }
    }
}
