//! The single-table key design. Every key the domain reads or writes is built here.
//!
//! | record              | pk                    | sk                                  | gsi1pk           | gsi1sk             |
//! |---------------------|-----------------------|-------------------------------------|------------------|--------------------|
//! | organization        | `T#<tenant>`          | `ORG`                               |                  |                    |
//! | user                | `T#<tenant>`          | `USER#<user>`                       |                  |                    |
//! | user's 2FA (TOTP)   | `T#<tenant>`          | `TOTP#<user>`                       |                  |                    |
//! | contract            | `T#<tenant>`          | `CONTRACT#<contract>`               | `T#<tenant>#END` | `<endDate>#<id>`   |
//! | contract number     | `T#<tenant>`          | `CONTRACTNO#<NUMBER>` (unique)      |                  |                    |
//! | audit event         | `T#<tenant>`          | `AUDIT#<time>#<event>`              |                  |                    |
//! | idempotency record  | `T#<tenant>`          | `IDEM#<scope>#<user>#<key>` (TTL)   |                  |                    |
//! | job (a large import)| `T#<tenant>`          | `JOB#<job>` (TTL 30 days)           |                  |                    |
//! | sign-in session     | `T#<tenant>`          | `SESSION#<session>` (TTL)           |                  |                    |
//! | invitation          | `T#<tenant>`          | `INVITE#<invitation>` (TTL)         |                  |                    |
//! | password reset      | `T#<tenant>`          | `RESET#<reset>` (TTL)               |                  |                    |
//! | e-mail login        | `EMAIL#<email>`       | `EMAIL` (unique, global)            |                  |                    |
//! | organization number | `ORGNO#<digits>`      | `ORGNO` (unique, global)            |                  |                    |
//! | failed sign-ins     | `THROTTLE#account#<hash>` or `THROTTLE#address#<ip>` | `W#<window>` (TTL) | |      |
//! | rate series         | `RATES`               | `SERIES#<series>`                   |                  |                    |
//! | rate observation    | `RATE#<series>`       | `<date>`                            |                  |                    |
//! | rate reference      | `RATEREF#<series>`    | `T#<tenant>#<contract>`             |                  |                    |
//! | portfolio epoch     | `T#<tenant>`          | `PORTFOLIO`                         |                  |                    |
//! | portfolio totals    | `T#<tenant>`          | `PORTFOLIO#TOTALS`                  |                  |                    |
//! | portfolio settings  | `T#<tenant>`          | `PORTFOLIO#SETTINGS`                |                  |                    |
//! | pending totals      | `T#<tenant>`          | `PORTFOLIO#PENDING#<id>`            |                  |                    |
//! | import sequence     | `T#<tenant>`          | `PORTFOLIO#SEQUENCE`                |                  |                    |
//! | dashboard list entry| `T#<tenant>`          | `DASH#<epoch>#<list>#<rank>#<id>`   |                  |                    |
//! | portfolio registry  | `PORTFOLIOS`          | `T#<tenant>`                        |                  |                    |
//! | SSO settings        | `T#<tenant>`          | `SSO`                               |                  |                    |
//! | modules             | `T#<tenant>`          | `MODULES`                           |                  |                    |
//! | SSO identity link   | `T#<tenant>`          | `SSOID#<sha256(issuer, subject)>`   |                  |                    |
//! | SSO login under way | `SSOSTATE#<sha256(state)>` | `PENDING` (TTL)                |                  |                    |
//! | SSO domain claim    | `T#<tenant>`          | `SSODOMAIN#<domain>`                |                  |                    |
//! | verified SSO domain | `SSODOMAIN#<domain>`  | `VERIFIED` (unique, global)         |                  |                    |
//! | organization registry | `ORGANIZATIONS`     | `T#<tenant>` (last activity, retention) |              |                    |
//! | removed organization | `RETENTION`          | `T#<tenant>` (no personal data)     |                  |                    |
//!
//! Access patterns (no scan anywhere):
//! - log in by e-mail: get `EMAIL#<email>`, then get the user;
//! - the caller and their organization: get `USER#<user>` and `ORG`;
//! - a user's two-factor state (login, enrolment, verification): get `TOTP#<user>`;
//! - one contract: get `CONTRACT#<id>`;
//! - contract list in creation order: query `T#<tenant>` with prefix `CONTRACT#`;
//! - contracts by end date (`endsBefore`, status `ending`/`extended`): query `gsi1`
//!   partition `T#<tenant>#END` between two dates;
//! - contract number uniqueness: conditional put of `CONTRACTNO#<number>` in the same
//!   transaction as the contract;
//! - audit trail of an organization, newest first: query backward between
//!   `AUDIT#<from>` and `AUDIT#<to>` ([`audit_time_range`]); actor, action and target
//!   are filtered on the items read.
//! - the caller of each request: get `USER#<user>` and `SESSION#<session>` (role and
//!   revocation take effect on the next request);
//! - the members of an organization: query prefix `USER#`;
//! - one job and its progress (`GET /jobs/{id}`, the import worker): get `JOB#<id>`;
//! - the rate catalogue: query `RATES` with prefix `SERIES#`;
//! - a series between two dates, or its latest value on or before a day: query
//!   `RATE#<series>` between two dates (backward, limit 1, for the latest);
//! - contracts priced off a series, when it moves: query `RATEREF#<series>`.
//! - the dashboard: query prefix `PORTFOLIO` (epoch, totals and settings in one read),
//!   then the first entries of a list: query prefix `DASH#<epoch>#<list>#`;
//! - the nightly roll of every organization's dashboard: query `PORTFOLIOS`.
//! - an SSO login coming back from the provider: get `SSOSTATE#<hash of state>`, then
//!   `SSO` and `SSOID#<hash of issuer and subject>` of its organization; a new member
//!   by an auto-create domain: get `SSODOMAIN#<domain>` / `VERIFIED`, which must name
//!   the organization;
//! - an organization's claimed SSO domains: query prefix `SSODOMAIN#` (at most 50);
//!   one of them: get `SSODOMAIN#<domain>`; which organization verified a domain (at
//!   most one): get `SSODOMAIN#<domain>` / `VERIFIED`, written by a conditional put
//!   (`attribute_not_exists`) in the verification's transaction;
//! - when an organization was last active (each sign-in, at most one write a day):
//!   get `ORGANIZATIONS` / `T#<tenant>`;
//! - every organization, for the daily retention job: query `ORGANIZATIONS`; all of one
//!   organization's items when it is removed: query `T#<tenant>` (and `gsi1`
//!   `T#<tenant>#END`), then the global items each of them names;
//! - the organizations the retention job removed: query `RETENTION`.
//!
//! Every tenant-scoped key, in the table and in the index, starts with `T#<tenant>`, so an
//! IAM `dynamodb:LeadingKeys` condition can fence tenants. The e-mail login and the
//! organization number are written by sign-up and by members joining, read by login,
//! and deleted with a member or, with its whole organization, by the retention job. A
//! verified SSO domain is written by its verification, read by single sign-on, and
//! deleted with the organization's claim or, with the organization, by the retention
//! job.

use crate::ids::{AuditEventId, ContractId, TenantId, UserId};
use crate::rates::SeriesId;
use crate::store::{IndexKey, Key};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub const ORGANIZATION_SK: &str = "ORG";
pub const CONTRACT_PREFIX: &str = "CONTRACT#";
pub const AUDIT_PREFIX: &str = "AUDIT#";

pub fn tenant_partition(tenant: TenantId) -> String {
    format!("T#{tenant}")
}

pub fn organization(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), ORGANIZATION_SK)
}

pub const USER_PREFIX: &str = "USER#";

pub fn user(tenant: TenantId, user: UserId) -> Key {
    Key::new(tenant_partition(tenant), format!("{USER_PREFIX}{user}"))
}

pub fn password_reset(tenant: TenantId, reset: uuid::Uuid) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("RESET#{}", reset.simple()),
    )
}

/// A user's two-factor state, beside the user record so that a code check (a write on
/// every login) never races a profile or role change for the user record's version.
pub fn two_factor(tenant: TenantId, user: UserId) -> Key {
    Key::new(tenant_partition(tenant), format!("TOTP#{user}"))
}

pub fn invitation(tenant: TenantId, invitation: uuid::Uuid) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{INVITATION_PREFIX}{}", invitation.simple()),
    )
}

pub fn email_login(normalized_email: &str) -> Key {
    Key::new(format!("EMAIL#{normalized_email}"), "EMAIL")
}

pub fn organization_number(digits: &str) -> Key {
    Key::new(format!("ORGNO#{digits}"), "ORGNO")
}

pub fn contract(tenant: TenantId, contract: ContractId) -> Key {
    Key::new(tenant_partition(tenant), contract_sort_key(contract))
}

pub fn contract_sort_key(contract: ContractId) -> String {
    format!("{CONTRACT_PREFIX}{contract}")
}

/// Contract numbers are unique per organization regardless of letter case.
pub fn contract_number(tenant: TenantId, number: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("CONTRACTNO#{}", number.to_uppercase()),
    )
}

pub fn contracts_by_end_partition(tenant: TenantId) -> String {
    format!("T#{tenant}#END")
}

pub fn contract_by_end(tenant: TenantId, end_date: NaiveDate, contract: ContractId) -> IndexKey {
    IndexKey::new(
        contracts_by_end_partition(tenant),
        format!("{end_date}#{contract}"),
    )
}

/// Sort-key bounds in `gsi1` that select end dates from `first` to `last`, inclusive.
/// `#` sorts before every character of an id, `~` after every one.
pub fn end_date_range(first: NaiveDate, last: NaiveDate) -> (String, String) {
    (format!("{first}#"), format!("{last}#~"))
}

pub fn audit_event(tenant: TenantId, sort_key: String) -> Key {
    Key::new(tenant_partition(tenant), sort_key)
}

pub const SESSION_PREFIX: &str = "SESSION#";
pub const INVITATION_PREFIX: &str = "INVITE#";

pub fn session(tenant: TenantId, session: crate::ids::SessionId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{SESSION_PREFIX}{session}"),
    )
}

/// Which modules an organization has turned on, all in one item.
pub fn modules(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "MODULES")
}

pub const SSO_SETTINGS_SK: &str = "SSO";
pub const SSO_IDENTITY_PREFIX: &str = "SSOID#";

/// An organization's single sign-on settings.
pub fn sso_settings(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), SSO_SETTINGS_SK)
}

/// Which member the provider's user `(issuer, subject)` is. Hashed: the key has a fixed
/// length whatever the provider's identifiers look like.
pub fn sso_identity(tenant: TenantId, issuer: &str, subject: &str) -> Key {
    let digest = sha256_hex(&[issuer.as_bytes(), b"\n", subject.as_bytes()]);
    Key::new(
        tenant_partition(tenant),
        format!("{SSO_IDENTITY_PREFIX}{digest}"),
    )
}

pub const SSO_DOMAIN_PREFIX: &str = "SSODOMAIN#";

/// An organization's claim to an e-mail domain for single sign-on, with its
/// verification token. `domain` is normalized (`sso_domains::DomainName`).
pub fn sso_domain_claim(tenant: TenantId, domain: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{SSO_DOMAIN_PREFIX}{domain}"),
    )
}

/// Which organization proved it controls `domain`: at most one, as the key is global.
pub fn sso_domain_owner(domain: &str) -> Key {
    Key::new(format!("{SSO_DOMAIN_PREFIX}{domain}"), "VERIFIED")
}

/// A login on its way through the provider, by its `state`. Only the hash of the state
/// is stored: the table never holds what the browser presents.
pub fn sso_pending_login(state: &str) -> Key {
    Key::new(
        format!("SSOSTATE#{}", sha256_hex(&[state.as_bytes()])),
        "PENDING",
    )
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An audit event's sort key: its time to the microsecond in RFC 3339 UTC, then its id.
/// From year 1970 to 9999 the time has a fixed width, so the keys sort by time.
pub fn audit_sort_key(at: DateTime<Utc>, event: AuditEventId) -> String {
    format!("{AUDIT_PREFIX}{}#{event}", audit_time(at))
}

fn audit_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Inclusive sort-key bounds that select the audit events from `from` (inclusive) to
/// `to` (exclusive), compared to the microsecond; an open end selects from the first or
/// to the last event. `from >= to` gives a low bound above the high one: nothing.
pub fn audit_time_range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> (String, String) {
    // Every event key is longer than `AUDIT#<time>`, so that string is below the events
    // of that time; `#~` sorts after every id; `~` after every digit a time starts with.
    let low = match from {
        Some(from) => format!("{AUDIT_PREFIX}{}", audit_time(from)),
        None => AUDIT_PREFIX.to_owned(),
    };
    let high = match to {
        Some(to) => format!(
            "{AUDIT_PREFIX}{}#~",
            audit_time(to - chrono::Duration::microseconds(1))
        ),
        None => format!("{AUDIT_PREFIX}~"),
    };
    (low, high)
}

pub const JOB_PREFIX: &str = "JOB#";

pub fn job(tenant: TenantId, job: crate::ids::JobId) -> Key {
    Key::new(tenant_partition(tenant), format!("{JOB_PREFIX}{job}"))
}

pub fn idempotency(tenant: TenantId, scope: &str, user: UserId, key: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("IDEM#{scope}#{user}#{key}"),
    )
}

pub const RATES_PARTITION: &str = "RATES";
pub const SERIES_PREFIX: &str = "SERIES#";

pub fn rate_series(series: &SeriesId) -> Key {
    Key::new(RATES_PARTITION, format!("{SERIES_PREFIX}{series}"))
}

pub fn rate_observations_partition(series: &SeriesId) -> String {
    format!("RATE#{series}")
}

pub fn rate_observation(series: &SeriesId, date: NaiveDate) -> Key {
    Key::new(rate_observations_partition(series), date.to_string())
}

pub fn rate_references_partition(series: &SeriesId) -> String {
    format!("RATEREF#{series}")
}

/// Marks a contract as priced off `series`, so a new observation finds it.
pub fn rate_reference(series: &SeriesId, tenant: TenantId, contract: ContractId) -> Key {
    Key::new(
        rate_references_partition(series),
        format!("T#{tenant}#{contract}"),
    )
}

pub const PORTFOLIO_PREFIX: &str = "PORTFOLIO";
pub const DASHBOARD_PREFIX: &str = "DASH#";
pub const PORTFOLIOS_PARTITION: &str = "PORTFOLIOS";

/// The portfolio aggregate's epoch: the day its figures are as of.
pub fn portfolio_epoch(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), PORTFOLIO_PREFIX)
}

pub fn portfolio_totals(tenant: TenantId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{PORTFOLIO_PREFIX}#TOTALS"),
    )
}

/// A batch's difference to the totals, written by an import instead of updating the
/// totals, and folded into them when the import ends.
pub fn portfolio_pending(tenant: TenantId, id: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{PORTFOLIO_PREFIX}#PENDING#{id}"),
    )
}

/// Bumped by every import transaction, so a rebuild notices one it did not see.
pub fn portfolio_sequence(tenant: TenantId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{PORTFOLIO_PREFIX}#SEQUENCE"),
    )
}

pub fn portfolio_settings(tenant: TenantId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{PORTFOLIO_PREFIX}#SETTINGS"),
    )
}

/// The sort-key prefix of one dashboard list of one epoch.
pub fn dashboard_list_prefix(epoch: &str, list: &str) -> String {
    format!("{DASHBOARD_PREFIX}{epoch}#{list}#")
}

/// A contract's entry in a dashboard list; `rank` orders the list.
pub fn dashboard_entry(
    tenant: TenantId,
    epoch: &str,
    list: &str,
    rank: &str,
    contract: ContractId,
) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{rank}#{contract}", dashboard_list_prefix(epoch, list)),
    )
}

/// Lists an organization for the nightly roll of dashboards.
pub fn portfolio_registration(tenant: TenantId) -> Key {
    Key::new(PORTFOLIOS_PARTITION, tenant_partition(tenant))
}

pub const ORGANIZATIONS_PARTITION: &str = "ORGANIZATIONS";

/// Lists an organization for the retention job, with the day it was last active and
/// where its retention stands (`domain::retention`).
pub fn organization_registration(tenant: TenantId) -> Key {
    Key::new(ORGANIZATIONS_PARTITION, tenant_partition(tenant))
}

pub const RETENTION_PARTITION: &str = "RETENTION";

/// What is left of an organization the retention job removed: its id, when, and how
/// much went. No personal data.
pub fn retention_record(tenant: TenantId) -> Key {
    Key::new(RETENTION_PARTITION, tenant_partition(tenant))
}

/// The tenant a registry's sort key (`T#<tenant>`, in `PORTFOLIOS` and
/// `ORGANIZATIONS`) names.
pub fn registered_tenant(sort_key: &str) -> Option<TenantId> {
    sort_key.strip_prefix("T#")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_name_their_tenant() {
        let tenant = TenantId::generate();
        for key in [
            organization_registration(tenant),
            retention_record(tenant),
            portfolio_registration(tenant),
        ] {
            assert_eq!(registered_tenant(&key.sk), Some(tenant));
        }
        assert_eq!(registered_tenant("T#not-an-id"), None);
        assert_eq!(registered_tenant(&tenant.to_string()), None);
    }

    #[test]
    fn tenant_keys_lead_with_the_tenant() {
        let tenant = TenantId::generate();
        let lead = format!("T#{tenant}");
        assert!(organization(tenant).pk == lead);
        assert!(contract(tenant, ContractId::generate()).pk == lead);
        assert!(sso_domain_claim(tenant, "nordlysfleet.se").pk == lead);
        // Who verified a domain is one item for every organization.
        assert_eq!(
            sso_domain_owner("nordlysfleet.se"),
            Key::new("SSODOMAIN#nordlysfleet.se", "VERIFIED")
        );
        let date = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
        assert!(
            contract_by_end(tenant, date, ContractId::generate())
                .pk
                .starts_with(&lead)
        );
    }

    #[test]
    fn audit_time_range_is_inclusive_from_and_exclusive_to() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let event = AuditEventId::generate();
        let key = audit_sort_key(at("2026-11-21T09:00:00.000001Z"), event);
        assert_eq!(
            key,
            format!("AUDIT#2026-11-21T09:00:00.000001Z#{event}"),
            "the stored layout"
        );
        let inside = |from: Option<&str>, to: Option<&str>| {
            let (low, high) = audit_time_range(from.map(at), to.map(at));
            low <= key && key <= high
        };
        assert!(inside(None, None));
        assert!(inside(Some("2026-11-21T09:00:00.000001Z"), None));
        assert!(!inside(Some("2026-11-21T09:00:00.000002Z"), None));
        assert!(inside(None, Some("2026-11-21T09:00:00.000002Z")));
        assert!(!inside(None, Some("2026-11-21T09:00:00.000001Z")));
        assert!(inside(
            Some("2026-11-21T00:00:00Z"),
            Some("2026-11-22T00:00:00Z")
        ));
        // An empty window is a reversed range, which the caller must not query.
        let (low, high) = audit_time_range(
            Some(at("2026-11-21T09:00:00Z")),
            Some(at("2026-11-21T09:00:00Z")),
        );
        assert!(low > high);
        // Keys of later times sort later, across every field of the time.
        let later = audit_sort_key(at("2027-01-01T00:00:00Z"), AuditEventId::generate());
        assert!(key < later);
    }

    #[test]
    fn end_date_range_is_inclusive() {
        let id = ContractId::generate();
        let tenant = TenantId::generate();
        let day = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
        let key = contract_by_end(tenant, day, id).sk;
        let (low, high) = end_date_range(day, day);
        assert!(low <= key && key <= high);
        let next = day.succ_opt().unwrap();
        let (low, _) = end_date_range(next, next);
        assert!(key < low);
    }
}
