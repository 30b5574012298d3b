//! Sign-up, login and the caller's profile: organizations and their users.

use crate::access::Role;
use crate::audit::{Actor, AuditEvent, RequestInfo};
use crate::clock::Clock;
use crate::ids::{TenantId, UserId};
use crate::keys;
use crate::organization::{Organization, OrganizationNumber};
use crate::store::{Condition, Item, StoreError, Table, WriteOp, from_item, to_attributes};
use crate::validation::{FieldIssue, ValidationErrors, text};
use argon2::password_hash::{PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A normalized (trimmed, lower-case) e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, FieldIssue> {
        let address = input.trim().to_lowercase();
        let valid = address.len() <= 254
            && !address.chars().any(|c| c.is_whitespace() || c.is_control())
            && match address.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= 64
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Self(address))
        } else {
            Err(FieldIssue::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Password rules: 12 to 256 characters, never truncated, and not guessable (a
/// zxcvbn score of at least 3, which refuses common passwords and ones built from the
/// user's own name, e-mail or organization).
pub struct PasswordPolicy;

impl PasswordPolicy {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 256;

    pub fn check(password: &str, user_inputs: &[&str]) -> Result<(), FieldIssue> {
        let chars = password.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(FieldIssue::TooShort {
                min: Self::MIN_CHARS,
            });
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldIssue::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        // zxcvbn matches whole inputs; also give it the words of names and addresses, so
        // "annalind2024!" is weak for Anna Lind.
        let words: Vec<String> = user_inputs
            .iter()
            .flat_map(|input| {
                let lower = input.to_lowercase();
                let parts: Vec<String> = lower
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|part| part.chars().count() >= 3)
                    .map(str::to_owned)
                    .collect();
                let joined = parts.concat();
                std::iter::once(lower)
                    .chain(parts)
                    .chain(std::iter::once(joined))
            })
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        if zxcvbn::zxcvbn(password, &words).score() < zxcvbn::Score::Three {
            return Err(FieldIssue::WeakPassword);
        }
        Ok(())
    }
}

/// argon2id with the crate defaults, which are OWASP's recommendation
/// (m = 19 MiB, t = 2, p = 1).
pub(crate) fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Internal(format!("password hashing failed: {e}")))
}

fn password_matches(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A user as the rest of the product sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub name: String,
    pub email: Email,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The language the user chose for messages and mails (one of [`LANGUAGES`]); when
    /// unset, each request's `Accept-Language` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// The languages the product speaks, by their codes.
pub const LANGUAGES: [&str; 8] = ["sv", "en", "da", "nb", "fi", "lt", "lv", "et"];

/// A user as stored: with the password hash, which never leaves the domain.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserRecord {
    #[serde(flatten)]
    pub user: User,
    password_hash: String,
    /// Moves on with every "sign out everywhere" and password change: sessions opened
    /// under an earlier generation are over.
    #[serde(default)]
    pub session_generation: i64,
}

impl UserRecord {
    pub(crate) fn new(user: User, password_hash: String) -> Self {
        Self {
            user,
            password_hash,
            session_generation: 0,
        }
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("session_generation", &self.session_generation)
            .finish_non_exhaustive()
    }
}

/// Where the login lookup by e-mail points.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailLogin {
    tenant_id: TenantId,
    user_id: UserId,
}

/// What a new customer sends to sign up.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignUpRequest {
    #[schema(example = "Nordlys Fleet AB", max_length = 200)]
    pub organization_name: String,
    /// Swedish organisationsnummer, `NNNNNN-NNNN`.
    #[schema(example = "556074-3089")]
    pub organization_number: String,
    #[schema(example = "Anna Lind", max_length = 200)]
    pub name: String,
    #[schema(example = "anna.lind@nordlysfleet.se", format = "email")]
    pub email: String,
    /// 12 to 256 characters; common and easily guessed passwords are refused.
    #[schema(min_length = 12, max_length = 256, format = "password")]
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("unknown e-mail or wrong password")]
    InvalidCredentials,
    #[error("the user or organization no longer exists")]
    NotFound,
    #[error("the store is busy with a concurrent change; retry")]
    Contention,
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        AccountError::Store(error)
    }
}

pub struct AccountService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    /// Verified against when an e-mail is unknown, so both failures cost the same time.
    dummy_hash: OnceCell<String>,
}

impl AccountService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            clock,
            dummy_hash: OnceCell::new(),
        }
    }

    /// Creates an organization and its first user, the owner, in one transaction.
    pub async fn sign_up(
        &self,
        request: SignUpRequest,
        info: RequestInfo,
    ) -> Result<(Organization, User), AccountError> {
        let mut errors = ValidationErrors::new();
        let organization_name = errors.check(
            "/organizationName",
            text(&request.organization_name, 200, false),
        );
        let organization_number = errors.check(
            "/organizationNumber",
            OrganizationNumber::parse(&request.organization_number),
        );
        let name = errors.check("/name", text(&request.name, 200, false));
        let email = errors.check("/email", Email::parse(&request.email));
        let user_inputs = [
            request.name.as_str(),
            request.email.as_str(),
            request.organization_name.as_str(),
        ];
        errors.check(
            "/password",
            PasswordPolicy::check(&request.password, &user_inputs),
        );
        let (Some(organization_name), Some(organization_number), Some(name), Some(email)) =
            (organization_name, organization_number, name, email)
        else {
            return Err(errors.into());
        };
        if !errors.is_empty() {
            return Err(errors.into());
        }

        let password = request.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| AccountError::Internal(format!("hashing task failed: {e}")))??;

        let now = self.clock.now();
        let tenant = TenantId::generate();
        let organization = Organization {
            id: tenant,
            name: organization_name,
            organization_number,
            created_at: now,
            require_two_factor: false,
        };
        let user = User {
            id: UserId::generate(),
            tenant_id: tenant,
            name,
            email,
            role: Role::Owner,
            created_at: now,
            language: None,
        };
        let actor = Actor {
            tenant,
            user: user.id,
            role: Role::Owner,
            request: info,
        };
        let [login, member] = new_member_writes(&user, password_hash)?;
        let audit = AuditEvent::change(
            &actor,
            now,
            "organization.created",
            format!("organization:{tenant}"),
            None,
            Some(serde_json::json!({ "organization": organization, "owner": user })),
        );
        let ops = vec![
            login,
            put_new(
                keys::organization_number(&organization.organization_number.digits()),
                &serde_json::json!({ "tenantId": tenant }),
            )?,
            put_new(keys::organization(tenant), &organization)?,
            member,
            audit.write_op(),
            // Listed for the retention job, active from today.
            crate::activity::registration_op(tenant, now.date_naive())?,
        ];
        match self.table.transact_write(ops).await {
            Ok(()) => Ok((organization, user)),
            Err(StoreError::TransactionCanceled { failed }) if failed.is_empty() => {
                Err(AccountError::Contention)
            }
            Err(StoreError::TransactionCanceled { failed }) => {
                let mut errors = ValidationErrors::new();
                if failed.contains(&0) {
                    errors.add("/email", FieldIssue::AlreadyInUse);
                }
                if failed.contains(&1) {
                    errors.add("/organizationNumber", FieldIssue::AlreadyInUse);
                }
                if errors.is_empty() {
                    // Fresh ids collided: astronomically unlikely, but not a user error.
                    return Err(AccountError::Contention);
                }
                Err(errors.into())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The user with this e-mail and password. Unknown e-mail and wrong password fail
    /// the same way and take the same time.
    /// A wrong password for a known account is audited in its organization.
    pub async fn log_in(
        &self,
        email: &str,
        password: &str,
        request: &RequestInfo,
    ) -> Result<User, AccountError> {
        let record = match Email::parse(email) {
            Ok(email) => self.find_by_email(&email).await?,
            Err(_) => None,
        };
        // A member who signs in through single sign-on has no password: like an
        // unknown address, they are checked against the dummy hash, which never matches.
        let stored_hash = match &record {
            Some(record) if !record.password_hash.is_empty() => record.password_hash.clone(),
            _ => self.dummy_hash().await?.clone(),
        };
        // Over-long input is refused only after the hash, to keep timing uniform.
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            password.chars().count() <= PasswordPolicy::MAX_CHARS
                && password_matches(&password, &stored_hash)
        })
        .await
        .map_err(|e| AccountError::Internal(format!("verification task failed: {e}")))?;
        match record {
            Some(record) if matches => Ok(record.user),
            Some(record) => {
                let actor = Actor {
                    tenant: record.user.tenant_id,
                    user: record.user.id,
                    role: record.user.role,
                    request: request.clone(),
                };
                let audit = AuditEvent::failure(
                    &actor,
                    self.clock.now(),
                    "auth.sign_in_failed",
                    format!("user:{}", record.user.id),
                    None,
                    Some(serde_json::json!({ "method": "password" })),
                );
                self.table.transact_write(vec![audit.write_op()]).await?;
                Err(AccountError::InvalidCredentials)
            }
            None => Err(AccountError::InvalidCredentials),
        }
    }

    /// Changes the actor's password after checking the current one, and ends every
    /// session of theirs opened before now (the caller then opens a fresh one).
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: &str,
        new: &str,
    ) -> Result<(), AccountError> {
        let Some(item) = self
            .table
            .get(&keys::user(actor.tenant, actor.user))
            .await?
        else {
            return Err(AccountError::NotFound);
        };
        let record: UserRecord = from_item(item)?;
        let user_inputs = [record.user.name.as_str(), record.user.email.as_str()];
        let mut errors = ValidationErrors::new();
        errors.check("/newPassword", PasswordPolicy::check(new, &user_inputs));
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (current, stored_hash) = (current.to_owned(), record.password_hash.clone());
        let matches = tokio::task::spawn_blocking(move || {
            current.chars().count() <= PasswordPolicy::MAX_CHARS
                && password_matches(&current, &stored_hash)
        })
        .await
        .map_err(|e| AccountError::Internal(format!("verification task failed: {e}")))?;
        if !matches {
            let mut errors = ValidationErrors::new();
            errors.add("/currentPassword", FieldIssue::WrongPassword);
            return Err(errors.into());
        }
        let new = new.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(|e| AccountError::Internal(format!("hashing task failed: {e}")))??;
        let now = self.clock.now();
        let mut update = crate::sessions::sessions_end(actor.tenant, actor.user);
        update.set.insert(
            "passwordHash".to_owned(),
            serde_json::Value::String(password_hash),
        );
        let audit = AuditEvent::change(
            actor,
            now,
            "auth.password_changed",
            format!("user:{}", actor.user),
            None,
            Some(serde_json::json!({ "otherSessionsEnded": true })),
        );
        self.table
            .transact_write(vec![WriteOp::Update(update), audit.write_op()])
            .await?;
        Ok(())
    }

    /// Sets (or, with `None`, clears) the language the actor reads messages and mails in.
    pub async fn set_language(
        &self,
        actor: &Actor,
        language: Option<&str>,
    ) -> Result<(), AccountError> {
        let language = match language {
            Some(code) => {
                let code = code.trim().to_ascii_lowercase();
                if !LANGUAGES.contains(&code.as_str()) {
                    let mut errors = ValidationErrors::new();
                    errors.add(
                        "/language",
                        FieldIssue::InvalidChoice {
                            allowed: &LANGUAGES,
                        },
                    );
                    return Err(errors.into());
                }
                Some(code)
            }
            None => None,
        };
        let mut update = crate::store::Update::new(keys::user(actor.tenant, actor.user));
        match &language {
            Some(code) => {
                update.set.insert(
                    "language".to_owned(),
                    serde_json::Value::String(code.clone()),
                );
            }
            None => update.remove.push("language".to_owned()),
        }
        update.condition = Condition::Exists;
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "user.language_changed",
            format!("user:{}", actor.user),
            None,
            Some(serde_json::json!({ "language": language })),
        );
        self.table
            .transact_write(vec![WriteOp::Update(update), audit.write_op()])
            .await?;
        Ok(())
    }

    /// The caller and their organization.
    pub async fn profile(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<(User, Organization), AccountError> {
        let (user_key, organization_key) = (keys::user(tenant, user), keys::organization(tenant));
        let (user_item, organization_item) =
            tokio::try_join!(self.table.get(&user_key), self.table.get(&organization_key),)?;
        let (Some(user_item), Some(organization_item)) = (user_item, organization_item) else {
            return Err(AccountError::NotFound);
        };
        let record: UserRecord = from_item(user_item)?;
        let organization: Organization = from_item(organization_item)?;
        Ok((record.user, organization))
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<UserRecord>, AccountError> {
        Ok(user_by_email(self.table.as_ref(), email).await?)
    }

    async fn dummy_hash(&self) -> Result<&String, AccountError> {
        self.dummy_hash
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| hash_password("not-a-real-password-at-all"))
                    .await
                    .map_err(|e| AccountError::Internal(format!("hashing task failed: {e}")))?
            })
            .await
    }
}

/// The user who signs in with `email`, if any.
pub(crate) async fn user_by_email(
    table: &dyn Table,
    email: &Email,
) -> Result<Option<UserRecord>, StoreError> {
    let Some(login) = table.get(&keys::email_login(email.as_str())).await? else {
        return Ok(None);
    };
    let login: EmailLogin = from_item(login)?;
    match table
        .get(&keys::user(login.tenant_id, login.user_id))
        .await?
    {
        Some(item) => Ok(Some(from_item(item)?)),
        None => Ok(None),
    }
}

/// The writes that make `user` a member who signs in with their e-mail address: the
/// global login (refused when the address is taken), then the user record. An empty
/// `password_hash` is a member without a password (single sign-on).
pub(crate) fn new_member_writes(
    user: &User,
    password_hash: String,
) -> Result<[WriteOp; 2], StoreError> {
    let login = EmailLogin {
        tenant_id: user.tenant_id,
        user_id: user.id,
    };
    Ok([
        put_new(keys::email_login(user.email.as_str()), &login)?,
        put_new(
            keys::user(user.tenant_id, user.id),
            &UserRecord::new(user.clone(), password_hash),
        )?,
    ])
}

fn put_new(key: crate::store::Key, value: &impl Serialize) -> Result<WriteOp, StoreError> {
    Ok(WriteOp::Put {
        item: Item::new(key, to_attributes(value)?),
        condition: Condition::NotExists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_and_reject_nonsense() {
        assert_eq!(
            Email::parse("  Anna.Lind@NordlysFleet.se ").map(|e| e.0),
            Ok("anna.lind@nordlysfleet.se".into())
        );
        for bad in [
            "",
            "anna",
            "anna@",
            "@x.se",
            "anna@se",
            "an na@x.se",
            "a@b@c.se",
            "a@x..se",
        ] {
            assert_eq!(Email::parse(bad), Err(FieldIssue::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn password_policy() {
        assert_eq!(
            PasswordPolicy::check("short", &[]),
            Err(FieldIssue::TooShort { min: 12 })
        );
        assert_eq!(
            PasswordPolicy::check(&"x".repeat(257), &[]),
            Err(FieldIssue::TooLong { max: 256 })
        );
        for common in ["password1234", "123456789012", "qwertyuiopas"] {
            assert_eq!(
                PasswordPolicy::check(common, &[]),
                Err(FieldIssue::WeakPassword),
                "{common}"
            );
        }
        assert_eq!(
            PasswordPolicy::check("annalind2024!", &["Anna Lind"]),
            Err(FieldIssue::WeakPassword)
        );
        assert!(PasswordPolicy::check("Vinterljus-over-Kiruna-2026", &[]).is_ok());
        // Long passphrases are not truncated: 256 characters are fine.
        let long = "Ljus över Kiruna ".repeat(15);
        assert!(PasswordPolicy::check(&long[..long.len().min(256)], &[]).is_ok());
    }

    #[test]
    fn hashes_are_argon2id_and_verify_without_truncation() {
        let long = format!("{}A", "correct horse battery staple ".repeat(8));
        let hash = hash_password(&long).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(password_matches(&long, &hash));
        assert!(!password_matches(&long[..long.len() - 1], &hash));
    }
}
