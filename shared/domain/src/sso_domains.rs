//! Proof that an organization controls an e-mail domain, before single sign-on may
//! create members from it (`autoCreateDomains`): DNS TXT verification, as Google
//! Workspace, Slack and Atlassian do it.
//!
//! **The scheme.** An owner or admin claims a domain; the claim gets a random token
//! (256 bits, lower-case hex) and names the record to publish:
//!
//! ```text
//! _leasedesk-challenge.nordlysfleet.se.  TXT  "leasedesk-domain-verification=<token>"
//! ```
//!
//! A name of its own (RFC 8552's underscore convention) rather than the domain's apex:
//! it cannot collide with SPF or other apex TXT records, and a customer may delegate it.
//! Verification looks the name up through the [`DnsResolver`] port and accepts the
//! domain when one of its TXT records is exactly that value (surrounding spaces, and
//! quotes a DNS console may have stored literally, are ignored). A domain covers
//! exactly that domain, not its subdomains: each is claimed by itself.
//!
//! **One organization per domain.** Any number of organizations may claim a domain,
//! each with its own token; the first to verify it writes the global item
//! `SSODOMAIN#<domain>` / `VERIFIED` naming itself, conditionally
//! (`attribute_not_exists`) in the verification's transaction, so two organizations
//! cannot both win. The domain is free again when that organization removes its claim,
//! or is removed by the retention job. A claim of a domain another organization has
//! verified is refused (409 `sso-domain-taken`).
//!
//! **What it gates.** `autoCreateDomains` in the single sign-on settings accepts only
//! domains this organization has verified, and a sign-in creates a member from an
//! address only while its domain is still verified by the organization (checked at the
//! sign-in, against the global item). Removing a claim also takes the domain out of
//! `autoCreateDomains`, in the same transaction.
//!
//! A failed check answers what was expected (422 `sso-domain-unverified`); a look-up
//! that got no answer (timeout, SERVFAIL) is not a failed check but 502
//! `dns-unavailable`, and changes nothing. Claims, verifications and removals are
//! audited; so are failed verifications (outcome `failure`, with the reason only).

use crate::access::{Permission, Role};
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::dns::{DnsError, DnsResolver};
use crate::ids::TenantId;
use crate::keys;
use crate::store::{
    Condition, Item, Key, Query, StoreError, Table, WriteOp, from_item, to_attributes,
};
use crate::validation::{FieldIssue, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The label put before a domain to name its verification record.
pub const CHALLENGE_LABEL: &str = "_leasedesk-challenge";
/// What the record's value starts with; the token follows.
pub const RECORD_VALUE_PREFIX: &str = "leasedesk-domain-verification=";
/// The most domains one organization may claim.
pub const MAX_DOMAINS: usize = 50;
/// Random bytes in a token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// A DNS domain name as e-mail addresses use it, normalized: lower case, no trailing
/// dot, internationalized names in their ASCII (punycode) form. At least two labels of
/// letters, digits and hyphens, and short enough that its verification record's name
/// is a valid DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// The longest domain: its record's name must fit DNS's 253 characters.
    pub const MAX_CHARS: usize = 253 - CHALLENGE_LABEL.len() - 1;

    pub fn parse(input: &str) -> Result<Self, FieldIssue> {
        let trimmed = input.trim();
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        // Letters (any script, for internationalized names), digits, hyphens and dots
        // only: nothing the URL host parser would decode or map on its way.
        if trimmed.is_empty()
            || !trimmed
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        {
            return Err(FieldIssue::InvalidDomain);
        }
        // IDNA (UTS 46) processing: lower case, and punycode for non-ASCII labels.
        let ascii = match url::Host::parse(trimmed) {
            Ok(url::Host::Domain(name)) => name,
            _ => return Err(FieldIssue::InvalidDomain),
        };
        let valid = ascii.len() <= Self::MAX_CHARS && crate::dns::is_domain_name(&ascii);
        if valid {
            Ok(Self(ascii))
        } else {
            Err(FieldIssue::InvalidDomain)
        }
    }

    /// The domain of an e-mail address, when it is a domain name we could verify.
    pub fn of_email(email: &crate::accounts::Email) -> Option<Self> {
        let (_, domain) = email.as_str().rsplit_once('@')?;
        Self::parse(domain).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the TXT record that proves control of this domain.
    pub fn challenge_name(&self) -> String {
        format!("{CHALLENGE_LABEL}.{}", self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).map_err(|_| format!("{value:?} is not a domain name"))
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh verification token: 256 random bits in lower-case hex.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The record value that proves `token`.
pub fn record_value(token: &str) -> String {
    format!("{RECORD_VALUE_PREFIX}{token}")
}

/// Whether a published TXT record is the expected value. Spaces around it, and quotes
/// around it that a DNS console stored as part of the text, do not count.
pub fn record_matches(published: &str, expected: &str) -> bool {
    let value = published.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
        .trim();
    value == expected
}

/// A DNS record to publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// Always `TXT`.
    #[serde(rename = "type")]
    #[schema(example = "TXT")]
    pub kind: &'static str,
    /// The record's name (fully qualified; some DNS consoles want only the part before
    /// the domain, `_leasedesk-challenge`).
    #[schema(example = "_leasedesk-challenge.nordlysfleet.se")]
    pub name: String,
    #[schema(
        example = "leasedesk-domain-verification=4f0c5b1d9e2a7c3b8d6e1f0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
    )]
    pub value: String,
}

/// Where a claimed domain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DomainStatus {
    /// Claimed; its record has not been found yet.
    Pending,
    /// Proved: single sign-on may create members from its addresses.
    Verified,
}

/// A claimed domain as an organization sees it: what to publish and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoDomain {
    #[schema(value_type = String, example = "nordlysfleet.se")]
    pub domain: DomainName,
    pub status: DomainStatus,
    /// The TXT record to publish in the domain's DNS.
    pub record: DnsRecord,
    pub claimed_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
}

/// A claim as stored under the organization (`SSODOMAIN#<domain>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimRecord {
    domain: DomainName,
    token: String,
    claimed_at: DateTime<Utc>,
    verified_at: Option<DateTime<Utc>>,
}

impl ClaimRecord {
    fn view(&self) -> SsoDomain {
        SsoDomain {
            domain: self.domain.clone(),
            status: if self.verified_at.is_some() {
                DomainStatus::Verified
            } else {
                DomainStatus::Pending
            },
            record: DnsRecord {
                kind: "TXT",
                name: self.domain.challenge_name(),
                value: record_value(&self.token),
            },
            claimed_at: self.claimed_at,
            verified_at: self.verified_at,
        }
    }

    /// What the audit log keeps of a claim: never the token.
    fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "domain": self.domain,
            "recordName": self.domain.challenge_name(),
            "claimedAt": self.claimed_at,
            "verifiedAt": self.verified_at,
        })
    }

    fn item(&self, tenant: TenantId, version: u64) -> Result<Item, StoreError> {
        Ok(Item::new(
            keys::sso_domain_claim(tenant, self.domain.as_str()),
            to_attributes(self)?,
        )
        .with_version(version))
    }
}

/// The global record of who verified a domain (`SSODOMAIN#<domain>` / `VERIFIED`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRecord {
    tenant_id: TenantId,
    domain: DomainName,
    verified_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The organization has no claim to this domain.
    #[error("no claim to this domain")]
    NotFound,
    /// Another organization has verified the domain.
    #[error("the domain {0} is verified by another organization")]
    Taken(DomainName),
    #[error("an organization claims at most {max} domains")]
    TooMany { max: usize },
    /// The DNS answered, without the expected record.
    #[error("no TXT record {name} with the expected value was found")]
    RecordNotFound { name: String, value: String },
    /// The DNS gave no answer: nothing is known about the record.
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("no randomness for a token: {0}")]
    Randomness(String),
    #[error("the claim changed meanwhile; retry")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The organization that verified `domain`, and the version of its record.
async fn owner_of(
    table: &dyn Table,
    domain: &DomainName,
) -> Result<Option<(OwnerRecord, u64)>, StoreError> {
    match table.get(&keys::sso_domain_owner(domain.as_str())).await? {
        Some(item) => {
            let version = item.version;
            Ok(Some((from_item(item)?, version)))
        }
        None => Ok(None),
    }
}

/// The version of `domain`'s global record when `tenant` is the organization that
/// verified it; `None` when it is not verified, or by another organization. A write
/// that relies on the verification checks that version in its transaction.
pub(crate) async fn verified_by(
    table: &dyn Table,
    tenant: TenantId,
    domain: &DomainName,
) -> Result<Option<u64>, StoreError> {
    Ok(owner_of(table, domain)
        .await?
        .filter(|(owner, _)| owner.tenant_id == tenant)
        .map(|(_, version)| version))
}

/// The check, for a transaction, that `domain` is still verified by whoever verified it
/// at `version`.
pub(crate) fn still_verified(domain: &DomainName, version: u64) -> WriteOp {
    WriteOp::Check {
        key: keys::sso_domain_owner(domain.as_str()),
        condition: Condition::VersionIs(version),
    }
}

/// An organization's claimed domains and their verification.
pub struct SsoDomains {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    dns: Arc<dyn DnsResolver>,
}

impl SsoDomains {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, dns: Arc<dyn DnsResolver>) -> Self {
        Self { table, clock, dns }
    }

    /// The organization's claimed domains, in name order.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<SsoDomain>, DomainError> {
        require(actor, Permission::ReadMembers)?;
        // Claims are bounded by MAX_DOMAINS (two claims racing may pass it by one), so
        // one page holds them all.
        let page = self
            .table
            .query(
                Query::partition(keys::tenant_partition(actor.tenant))
                    .begins_with(keys::SSO_DOMAIN_PREFIX)
                    .limit(4 * MAX_DOMAINS),
            )
            .await?;
        page.items
            .into_iter()
            .map(|item| Ok(from_item::<ClaimRecord>(item)?.view()))
            .collect()
    }

    /// Claims `domain` for the organization (owners and admins): a token and the record
    /// to publish. Claiming a domain already claimed answers that claim (`false`: not
    /// new) and changes nothing.
    pub async fn claim(
        &self,
        actor: &Actor,
        domain: &str,
    ) -> Result<(SsoDomain, bool), DomainError> {
        require(actor, Permission::ManageOrganization)?;
        let domain = DomainName::parse(domain)
            .map_err(|issue| ValidationErrors::single("/domain", issue))?;
        if let Some((claim, _)) = self.claim_record(actor.tenant, &domain).await? {
            return Ok((claim.view(), false));
        }
        if let Some((owner, _)) = owner_of(self.table.as_ref(), &domain).await?
            && owner.tenant_id != actor.tenant
        {
            return Err(DomainError::Taken(domain));
        }
        let claimed = self
            .table
            .query(
                Query::partition(keys::tenant_partition(actor.tenant))
                    .begins_with(keys::SSO_DOMAIN_PREFIX)
                    .limit(MAX_DOMAINS),
            )
            .await?;
        if claimed.items.len() >= MAX_DOMAINS {
            return Err(DomainError::TooMany { max: MAX_DOMAINS });
        }
        let now = self.clock.now();
        let claim = ClaimRecord {
            domain: domain.clone(),
            token: new_token().map_err(|error| DomainError::Randomness(error.to_string()))?,
            claimed_at: now,
            verified_at: None,
        };
        let audit = AuditEvent::change(
            actor,
            now,
            "sso.domain_claimed",
            target(&domain),
            None,
            Some(claim.audit_view()),
        );
        let put = WriteOp::Put {
            item: claim.item(actor.tenant, 1)?,
            condition: Condition::NotExists,
        };
        match self.table.transact_write(vec![put, audit.write_op()]).await {
            Ok(()) => Ok((claim.view(), true)),
            // Claimed at the same moment by another request: that claim stands.
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                match self.claim_record(actor.tenant, &domain).await? {
                    Some((claim, _)) => Ok((claim.view(), false)),
                    None => Err(DomainError::Contention),
                }
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(DomainError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    /// Looks the domain's record up and, when it is published, marks the domain
    /// verified for the organization (owners and admins). A verified domain answers as
    /// it is, without a look-up.
    pub async fn verify(&self, actor: &Actor, domain: &str) -> Result<SsoDomain, DomainError> {
        require(actor, Permission::ManageOrganization)?;
        // A name that is no domain cannot have been claimed.
        let domain = DomainName::parse(domain).map_err(|_| DomainError::NotFound)?;
        let Some((mut claim, version)) = self.claim_record(actor.tenant, &domain).await? else {
            return Err(DomainError::NotFound);
        };
        let owner_condition = match owner_of(self.table.as_ref(), &domain).await? {
            None => Condition::NotExists,
            Some((owner, _)) if owner.tenant_id != actor.tenant => {
                self.audit_failure(actor, &claim, "verified_by_another_organization", None)
                    .await?;
                return Err(DomainError::Taken(domain));
            }
            Some(_) if claim.verified_at.is_some() => return Ok(claim.view()),
            // Ours, yet the claim does not say so: both are written by one transaction,
            // so only records restored by hand get here. The look-up decides again.
            Some((_, owner_version)) => Condition::VersionIs(owner_version),
        };
        let name = domain.challenge_name();
        let expected = record_value(&claim.token);
        let records = match self.dns.txt_records(&name).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, %domain, "sso domain: the DNS look-up got no answer");
                self.audit_failure(actor, &claim, "dns_unavailable", None)
                    .await?;
                return Err(error.into());
            }
        };
        if !records
            .iter()
            .any(|record| record_matches(record, &expected))
        {
            self.audit_failure(actor, &claim, "record_not_found", Some(records.len()))
                .await?;
            return Err(DomainError::RecordNotFound {
                name,
                value: expected,
            });
        }

        let now = self.clock.now();
        let before = claim.audit_view();
        claim.verified_at = Some(now);
        let owner = OwnerRecord {
            tenant_id: actor.tenant,
            domain: domain.clone(),
            verified_at: now,
        };
        let owner_key = keys::sso_domain_owner(domain.as_str());
        let audit = AuditEvent::change(
            actor,
            now,
            "sso.domain_verified",
            target(&domain),
            Some(before),
            Some(claim.audit_view()),
        );
        let ops = vec![
            // The one write that decides who owns the domain.
            WriteOp::Put {
                item: Item::new(owner_key, to_attributes(&owner)?).with_version(
                    match owner_condition {
                        Condition::VersionIs(version) => version + 1,
                        _ => 1,
                    },
                ),
                condition: owner_condition,
            },
            WriteOp::Put {
                item: claim.item(actor.tenant, version + 1)?,
                condition: Condition::VersionIs(version),
            },
            audit.write_op(),
        ];
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(claim.view()),
            Err(StoreError::TransactionCanceled { failed }) if failed.contains(&0) => {
                match owner_of(self.table.as_ref(), &domain).await? {
                    Some((owner, _)) if owner.tenant_id != actor.tenant => {
                        self.audit_failure(actor, &claim, "verified_by_another_organization", None)
                            .await?;
                        Err(DomainError::Taken(domain))
                    }
                    _ => Err(DomainError::Contention),
                }
            }
            Err(StoreError::TransactionCanceled { .. }) => Err(DomainError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    /// Gives up the claim (owners and admins): a verified domain is free again for any
    /// organization, and single sign-on no longer creates members from it.
    pub async fn remove(&self, actor: &Actor, domain: &str) -> Result<(), DomainError> {
        require(actor, Permission::ManageOrganization)?;
        let domain = DomainName::parse(domain).map_err(|_| DomainError::NotFound)?;
        let Some((claim, version)) = self.claim_record(actor.tenant, &domain).await? else {
            return Err(DomainError::NotFound);
        };
        let now = self.clock.now();
        let mut ops = vec![WriteOp::Delete {
            key: keys::sso_domain_claim(actor.tenant, domain.as_str()),
            condition: Condition::VersionIs(version),
        }];
        if let Some((owner, owner_version)) = owner_of(self.table.as_ref(), &domain).await?
            && owner.tenant_id == actor.tenant
        {
            ops.push(WriteOp::Delete {
                key: keys::sso_domain_owner(domain.as_str()),
                condition: Condition::VersionIs(owner_version),
            });
        }
        let settings_change = crate::single_sign_on::without_auto_create_domain(
            self.table.as_ref(),
            actor.tenant,
            &domain,
            now,
        )
        .await?;
        let auto_create_removed = settings_change.is_some();
        ops.extend(settings_change);
        let audit = AuditEvent::change(
            actor,
            now,
            "sso.domain_removed",
            target(&domain),
            Some(claim.audit_view()),
            Some(serde_json::json!({ "autoCreateDomainRemoved": auto_create_removed })),
        );
        ops.push(audit.write_op());
        match self.table.transact_write(ops).await {
            Ok(()) => Ok(()),
            Err(StoreError::TransactionCanceled { .. }) => Err(DomainError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    async fn claim_record(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<Option<(ClaimRecord, u64)>, StoreError> {
        match self
            .table
            .get(&keys::sso_domain_claim(tenant, domain.as_str()))
            .await?
        {
            Some(item) => {
                let version = item.version;
                Ok(Some((from_item(item)?, version)))
            }
            None => Ok(None),
        }
    }

    /// Records a verification that did not happen, with only why (and how many TXT
    /// records the name had, never what they say).
    async fn audit_failure(
        &self,
        actor: &Actor,
        claim: &ClaimRecord,
        reason: &str,
        records_found: Option<usize>,
    ) -> Result<(), StoreError> {
        let mut attempted = serde_json::json!({
            "domain": claim.domain,
            "recordName": claim.domain.challenge_name(),
            "reason": reason,
        });
        if let Some(found) = records_found {
            attempted["txtRecordsFound"] = found.into();
        }
        let event = AuditEvent::failure(
            actor,
            self.clock.now(),
            "sso.domain_verification_failed",
            target(&claim.domain),
            Some(claim.audit_view()),
            Some(attempted),
        );
        self.table.transact_write(vec![event.write_op()]).await
    }
}

fn target(domain: &DomainName) -> String {
    format!("sso-domain:{domain}")
}

fn require(actor: &Actor, permission: Permission) -> Result<(), DomainError> {
    if actor.role.allows(permission) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(actor.role))
    }
}

/// The key of a claim item's global record, for the retention job: the domain is the
/// rest of the claim's sort key.
pub(crate) fn owner_key_of_claim(sort_key: &str) -> Option<Key> {
    sort_key
        .strip_prefix(keys::SSO_DOMAIN_PREFIX)
        .map(keys::sso_domain_owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RequestInfo;
    use crate::clock::FixedClock;
    use crate::ids::UserId;
    use crate::testing::{MemoryDns, MemoryTable};

    #[test]
    fn domain_names_are_normalized_and_checked() {
        let parsed = |input: &str| DomainName::parse(input).map(String::from);
        assert_eq!(parsed(" Nordlysfleet.SE. "), Ok("nordlysfleet.se".into()));
        assert_eq!(parsed("fleet.nordlys.se"), Ok("fleet.nordlys.se".into()));
        assert_eq!(parsed("Bücher.se"), Ok("xn--bcher-kva.se".into()));
        assert_eq!(parsed("xn--bcher-kva.se"), Ok("xn--bcher-kva.se".into()));
        assert_eq!(parsed("a-1.example"), Ok("a-1.example".into()));
        // Labels of at most 63 characters, 232 in all.
        let longest = format!(
            "{}.{}.{}.{}.se",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(DomainName::MAX_CHARS - 3 * 64 - 3)
        );
        assert_eq!(longest.len(), DomainName::MAX_CHARS);
        assert_eq!(parsed(&longest), Ok(longest.clone()));
        for bad in [
            "",
            ".",
            "localhost",
            "se",
            "192.0.2.1",
            "0x7f.1",
            "-fleet.se",
            "fleet-.se",
            "fleet..se",
            ".fleet.se",
            "fleet_ab.se",
            "someone@fleet.se",
            "fle%65t.se",
            "fleet.se/x",
            "fleet se",
            &format!("{}.se", "a".repeat(64)),
            &format!("x.{longest}"),
        ] {
            assert_eq!(parsed(bad), Err(FieldIssue::InvalidDomain), "{bad:?}");
        }
        let domain = DomainName::parse("nordlysfleet.se").unwrap();
        assert_eq!(
            domain.challenge_name(),
            "_leasedesk-challenge.nordlysfleet.se"
        );
        assert!(domain.challenge_name().len() <= 253);
        assert!(format!("_leasedesk-challenge.{longest}").len() == 253);
        // The retention job finds the global record from the claim's key.
        let claim = keys::sso_domain_claim(TenantId::generate(), domain.as_str());
        assert_eq!(
            owner_key_of_claim(&claim.sk),
            Some(keys::sso_domain_owner("nordlysfleet.se"))
        );
        assert_eq!(owner_key_of_claim(keys::SSO_SETTINGS_SK), None);
        let email = crate::accounts::Email::parse("Sara@Bücher.se").unwrap();
        assert_eq!(
            DomainName::of_email(&email).map(String::from),
            Some("xn--bcher-kva.se".into())
        );
    }

    #[test]
    fn tokens_are_random_and_the_record_must_match_exactly() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(token, new_token().unwrap());

        let expected = record_value(&token);
        assert_eq!(expected, format!("leasedesk-domain-verification={token}"));
        assert!(record_matches(&expected, &expected));
        assert!(record_matches(&format!("  {expected} "), &expected));
        assert!(record_matches(&format!("\"{expected}\""), &expected));
        for other in [
            String::new(),
            token.clone(),
            expected.to_uppercase(),
            format!("{expected}x"),
            format!("x{expected}"),
            format!("v=spf1 {expected}"),
            format!("\"{expected}"),
            record_value(&new_token().unwrap()),
        ] {
            assert!(!record_matches(&other, &expected), "{other:?}");
        }
    }

    struct Fixture {
        table: Arc<MemoryTable>,
        dns: Arc<MemoryDns>,
        clock: Arc<FixedClock>,
        domains: SsoDomains,
    }

    impl Fixture {
        fn new() -> Self {
            let table = Arc::new(MemoryTable::default());
            let dns = Arc::new(MemoryDns::default());
            let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
            let domains = SsoDomains::new(table.clone(), clock.clone(), dns.clone());
            Self {
                table,
                dns,
                clock,
                domains,
            }
        }

        fn actor(role: Role) -> Actor {
            Actor {
                tenant: TenantId::generate(),
                user: UserId::generate(),
                role,
                request: RequestInfo::default(),
            }
        }

        /// Publishes the record `claim` asks for.
        fn publish(&self, claim: &SsoDomain) {
            self.dns.publish(&claim.record.name, &claim.record.value);
        }

        fn audit(&self, tenant: TenantId) -> Vec<AuditEvent> {
            self.table
                .items_in(&keys::tenant_partition(tenant))
                .into_iter()
                .filter(|item| item.key.sk.starts_with(keys::AUDIT_PREFIX))
                .map(|item| from_item(item).unwrap())
                .collect()
        }

        async fn owner(&self, domain: &str) -> Option<TenantId> {
            let domain = DomainName::parse(domain).unwrap();
            owner_of(self.table.as_ref(), &domain)
                .await
                .unwrap()
                .map(|(owner, _)| owner.tenant_id)
        }
    }

    #[tokio::test]
    async fn a_domain_is_verified_once_its_record_is_published() {
        let fixture = Fixture::new();
        let admin = Fixture::actor(Role::Admin);
        let (claim, new) = fixture
            .domains
            .claim(&admin, " Nordlysfleet.SE ")
            .await
            .unwrap();
        assert!(new);
        assert_eq!(claim.domain.as_str(), "nordlysfleet.se");
        assert_eq!(claim.status, DomainStatus::Pending);
        assert_eq!(claim.record.kind, "TXT");
        assert_eq!(claim.record.name, "_leasedesk-challenge.nordlysfleet.se");
        assert!(claim.record.value.starts_with(RECORD_VALUE_PREFIX));
        assert_eq!(claim.verified_at, None);
        // Claiming it again answers the same claim.
        let (again, new) = fixture
            .domains
            .claim(&admin, "nordlysfleet.se")
            .await
            .unwrap();
        assert!(!new);
        assert_eq!(again, claim);

        // Not before the record is published, and not with another value.
        fixture
            .dns
            .publish(&claim.record.name, "leasedesk-domain-verification=guess");
        fixture.dns.publish("nordlysfleet.se", &claim.record.value);
        match fixture.domains.verify(&admin, "nordlysfleet.se").await {
            Err(DomainError::RecordNotFound { name, value }) => {
                assert_eq!(name, claim.record.name);
                assert_eq!(value, claim.record.value);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fixture.owner("nordlysfleet.se").await, None);
        let listed = fixture.domains.list(&admin).await.unwrap();
        assert_eq!(listed, vec![claim.clone()]);

        fixture.clock.advance(chrono::Duration::hours(2));
        fixture.publish(&claim);
        let verified = fixture
            .domains
            .verify(&admin, "NORDLYSFLEET.se")
            .await
            .unwrap();
        assert_eq!(verified.status, DomainStatus::Verified);
        assert_eq!(verified.verified_at, Some(fixture.clock.now()));
        assert_eq!(verified.record, claim.record, "the token stays");
        assert_eq!(fixture.owner("nordlysfleet.se").await, Some(admin.tenant));
        // Verified is verified: no further look-up.
        let lookups = fixture.dns.lookups();
        fixture
            .domains
            .verify(&admin, "nordlysfleet.se")
            .await
            .unwrap();
        assert_eq!(fixture.dns.lookups(), lookups);

        let actions: Vec<(String, crate::audit::Outcome)> = fixture
            .audit(admin.tenant)
            .into_iter()
            .map(|event| (event.action, event.outcome))
            .collect();
        use crate::audit::Outcome::{Failure, Success};
        assert_eq!(
            actions,
            vec![
                ("sso.domain_claimed".to_owned(), Success),
                ("sso.domain_verification_failed".to_owned(), Failure),
                ("sso.domain_verified".to_owned(), Success),
            ]
        );
        let token = claim.record.value.trim_start_matches(RECORD_VALUE_PREFIX);
        let trail = serde_json::to_string(&fixture.audit(admin.tenant)).unwrap();
        assert!(!trail.contains(token), "the token stays out of the trail");
        assert!(trail.contains("record_not_found"));
    }

    #[tokio::test]
    async fn a_domain_is_verified_by_one_organization_at_most() {
        let fixture = Fixture::new();
        let (first, second, third, late) = (
            Fixture::actor(Role::Owner),
            Fixture::actor(Role::Admin),
            Fixture::actor(Role::Owner),
            Fixture::actor(Role::Owner),
        );
        // Any may claim it while nobody has proved it; each gets its own token.
        let mut claims = Vec::new();
        for actor in [&first, &second, &third] {
            let (claim, _) = fixture
                .domains
                .claim(actor, "nordlysfleet.se")
                .await
                .unwrap();
            claims.push(claim);
        }
        assert_ne!(claims[0].record.value, claims[1].record.value);
        fixture.publish(&claims[0]);
        fixture.publish(&claims[1]);

        fixture
            .domains
            .verify(&first, "nordlysfleet.se")
            .await
            .unwrap();
        assert!(matches!(
            fixture.domains.verify(&second, "nordlysfleet.se").await,
            Err(DomainError::Taken(domain)) if domain.as_str() == "nordlysfleet.se"
        ));
        assert!(matches!(
            fixture.domains.claim(&late, "nordlysfleet.se").await,
            Err(DomainError::Taken(_))
        ));
        assert_eq!(fixture.owner("nordlysfleet.se").await, Some(first.tenant));
        let refused = fixture.audit(second.tenant).pop().unwrap();
        assert_eq!(refused.action, "sso.domain_verification_failed");
        assert_eq!(
            refused.after.unwrap()["reason"],
            "verified_by_another_organization"
        );
        // A pending claim given up leaves the owner alone.
        fixture
            .domains
            .remove(&third, "nordlysfleet.se")
            .await
            .unwrap();
        assert_eq!(fixture.owner("nordlysfleet.se").await, Some(first.tenant));

        // Given up by the first, it is the second's to prove.
        fixture
            .domains
            .remove(&first, "nordlysfleet.se")
            .await
            .unwrap();
        assert_eq!(fixture.owner("nordlysfleet.se").await, None);
        assert!(fixture.domains.list(&first).await.unwrap().is_empty());
        fixture
            .domains
            .verify(&second, "nordlysfleet.se")
            .await
            .unwrap();
        assert_eq!(fixture.owner("nordlysfleet.se").await, Some(second.tenant));
        // The first cannot take it back.
        assert!(matches!(
            fixture.domains.claim(&first, "nordlysfleet.se").await,
            Err(DomainError::Taken(_))
        ));
        assert!(matches!(
            fixture.domains.remove(&first, "nordlysfleet.se").await,
            Err(DomainError::NotFound)
        ));
        assert_eq!(fixture.owner("nordlysfleet.se").await, Some(second.tenant));
    }

    /// A resolver that lets no look-up finish before two have started: two
    /// organizations both see the domain unverified and both find their record.
    struct Simultaneous {
        dns: MemoryDns,
        barrier: tokio::sync::Barrier,
    }

    #[async_trait::async_trait]
    impl DnsResolver for Simultaneous {
        async fn txt_records(&self, name: &str) -> Result<Vec<String>, DnsError> {
            self.barrier.wait().await;
            self.dns.txt_records(name).await
        }
    }

    #[tokio::test]
    async fn of_two_simultaneous_verifications_one_wins() {
        let table = Arc::new(MemoryTable::default());
        let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
        let dns = Arc::new(Simultaneous {
            dns: MemoryDns::default(),
            barrier: tokio::sync::Barrier::new(2),
        });
        let domains = SsoDomains::new(table.clone(), clock, dns.clone());
        let (first, second) = (Fixture::actor(Role::Owner), Fixture::actor(Role::Owner));
        for actor in [&first, &second] {
            let (claim, _) = domains.claim(actor, "nordlysfleet.se").await.unwrap();
            dns.dns.publish(&claim.record.name, &claim.record.value);
        }
        let (a, b) = tokio::join!(
            domains.verify(&first, "nordlysfleet.se"),
            domains.verify(&second, "nordlysfleet.se")
        );
        let (winner, loser) = match (a, b) {
            (Ok(_), Err(DomainError::Taken(_))) => (&first, &second),
            (Err(DomainError::Taken(_)), Ok(_)) => (&second, &first),
            other => panic!("one must win, the other be refused: {other:?}"),
        };
        let owner = owner_of(
            table.as_ref(),
            &DomainName::parse("nordlysfleet.se").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(owner.tenant_id, winner.tenant);
        let loser_view = domains.list(loser).await.unwrap();
        assert_eq!(loser_view[0].status, DomainStatus::Pending);
    }

    #[tokio::test]
    async fn a_dns_failure_is_not_a_failed_check() {
        let fixture = Fixture::new();
        let admin = Fixture::actor(Role::Admin);
        let (claim, _) = fixture
            .domains
            .claim(&admin, "nordlysfleet.se")
            .await
            .unwrap();
        fixture.publish(&claim);
        for failure in [DnsError::Timeout, DnsError::Failed("SERVFAIL".into())] {
            fixture.dns.fail_with(Some(failure.clone()));
            match fixture.domains.verify(&admin, "nordlysfleet.se").await {
                Err(DomainError::Dns(error)) => assert_eq!(error, failure),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(fixture.owner("nordlysfleet.se").await, None);
        let reasons: Vec<String> = fixture
            .audit(admin.tenant)
            .into_iter()
            .filter_map(|event| Some(event.after?["reason"].as_str()?.to_owned()))
            .collect();
        assert_eq!(reasons, ["dns_unavailable", "dns_unavailable"]);
        fixture.dns.fail_with(None);
        fixture
            .domains
            .verify(&admin, "nordlysfleet.se")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn claims_are_for_owners_and_admins_and_bounded() {
        let fixture = Fixture::new();
        let admin = Fixture::actor(Role::Admin);
        for role in [Role::Editor, Role::Viewer, Role::Auditor] {
            let member = Actor {
                role,
                ..admin.clone()
            };
            assert!(matches!(
                fixture.domains.claim(&member, "nordlysfleet.se").await,
                Err(DomainError::Forbidden(_))
            ));
            assert!(matches!(
                fixture.domains.verify(&member, "nordlysfleet.se").await,
                Err(DomainError::Forbidden(_))
            ));
            assert!(matches!(
                fixture.domains.remove(&member, "nordlysfleet.se").await,
                Err(DomainError::Forbidden(_))
            ));
            assert!(fixture.domains.list(&member).await.unwrap().is_empty());
        }
        match fixture.domains.claim(&admin, "not a domain").await {
            Err(DomainError::Invalid(errors)) => {
                assert_eq!(errors.errors()[0].pointer, "/domain");
                assert_eq!(errors.errors()[0].issue, FieldIssue::InvalidDomain);
            }
            other => panic!("{other:?}"),
        }
        for name in ["unclaimed.se", "not a domain"] {
            assert!(matches!(
                fixture.domains.verify(&admin, name).await,
                Err(DomainError::NotFound)
            ));
            assert!(matches!(
                fixture.domains.remove(&admin, name).await,
                Err(DomainError::NotFound)
            ));
        }
        for n in 0..MAX_DOMAINS {
            fixture
                .domains
                .claim(&admin, &format!("fleet{n}.nordlys.se"))
                .await
                .unwrap();
        }
        assert!(matches!(
            fixture.domains.claim(&admin, "one-more.se").await,
            Err(DomainError::TooMany { max: MAX_DOMAINS })
        ));
        // Claimed ones still answer.
        assert!(
            !fixture
                .domains
                .claim(&admin, "fleet0.nordlys.se")
                .await
                .unwrap()
                .1
        );
        let listed = fixture.domains.list(&admin).await.unwrap();
        assert_eq!(listed.len(), MAX_DOMAINS);
    }
}
