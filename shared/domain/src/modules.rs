//! Modules: parts of the product an organization turns on, each with a free trial.
//!
//! An owner activates a module; the first activation starts a free trial of
//! [`TRIAL_DAYS`] days, after which the module stays active and is billed from the
//! trial's end (billing itself is outside this service: `billedFrom` says from when).
//! A module activated again after being turned off gets no second trial. Routes of an
//! inactive module answer 403 `module-inactive` (see `api::access`).
//!
//! One item per organization holds every module's state, so a request checks a module
//! with one read.

use crate::access::{Permission, Role};
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::ids::TenantId;
use crate::keys;
use crate::store::{Condition, Item, StoreError, Table, WriteOp, from_item, to_attributes};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// How long a module is free after its first activation.
pub const TRIAL_DAYS: i64 = 10;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Module {
    /// Single sign-on through the organization's identity provider.
    Sso,
    /// Contract documents (PDFs) and their text.
    DocumentStorage,
    /// Sending documents for signing with BankID.
    Signing,
    /// Scoring finance requests.
    Scoring,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::Sso,
        Module::DocumentStorage,
        Module::Signing,
        Module::Scoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Module::Sso => "sso",
            Module::DocumentStorage => "documentStorage",
            Module::Signing => "signing",
            Module::Scoring => "scoring",
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown module")]
pub struct UnknownModule;

impl FromStr for Module {
    type Err = UnknownModule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Module::ALL
            .into_iter()
            .find(|module| module.as_str() == s)
            .ok_or(UnknownModule)
    }
}

/// Where a module stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ModuleStatus {
    /// Off: its routes answer 403 `module-inactive`.
    Inactive,
    /// On, free until `trialEndsAt`.
    Trial,
    /// On, billed from `billedFrom`.
    Active,
}

/// A module's history in one organization, as stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleRecord {
    /// The first activation; the trial runs from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_activated_at: Option<DateTime<Utc>>,
    /// The current activation, while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_since: Option<DateTime<Utc>>,
}

/// A module as an organization sees it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleView {
    pub module: Module,
    pub status: ModuleStatus,
    /// Since when it is on, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_since: Option<DateTime<Utc>>,
    /// The end of its free trial, once it has had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// While active: from when it is billed (the end of the trial, or its activation
    /// when the trial was used before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed_from: Option<DateTime<Utc>>,
}

impl ModuleRecord {
    fn trial_ends_at(&self) -> Option<DateTime<Utc>> {
        self.first_activated_at
            .map(|first| first + Duration::days(TRIAL_DAYS))
    }

    fn view(&self, module: Module, now: DateTime<Utc>) -> ModuleView {
        let trial_ends_at = self.trial_ends_at();
        let (status, billed_from) = match self.active_since {
            None => (ModuleStatus::Inactive, None),
            Some(since) => {
                let billed_from = trial_ends_at.map_or(since, |end| end.max(since));
                if now < billed_from {
                    (ModuleStatus::Trial, Some(billed_from))
                } else {
                    (ModuleStatus::Active, Some(billed_from))
                }
            }
        };
        ModuleView {
            module,
            status,
            active_since: self.active_since,
            trial_ends_at,
            billed_from,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Only owners turn modules on and off.
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    #[error("the modules changed meanwhile; retry")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct ModuleService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
}

impl ModuleService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    /// Every module and where it stands.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<ModuleView>, ModuleError> {
        let (records, _) = self.records(tenant).await?;
        let now = self.clock.now();
        Ok(Module::ALL
            .into_iter()
            .map(|module| {
                records
                    .get(&module)
                    .cloned()
                    .unwrap_or_default()
                    .view(module, now)
            })
            .collect())
    }

    /// Whether `module` is on (in its trial or after) for `tenant`.
    pub async fn is_active(&self, tenant: TenantId, module: Module) -> Result<bool, StoreError> {
        let item = self.table.get(&keys::modules(tenant)).await?;
        let records: BTreeMap<Module, ModuleRecord> = match item {
            Some(item) => from_item(item)?,
            None => BTreeMap::new(),
        };
        Ok(records
            .get(&module)
            .is_some_and(|record| record.active_since.is_some()))
    }

    /// Turns `module` on or off (owners). Turning on what is on, or off what is off,
    /// changes nothing and is not audited.
    pub async fn set_active(
        &self,
        actor: &Actor,
        module: Module,
        active: bool,
    ) -> Result<ModuleView, ModuleError> {
        if !actor.role.allows(Permission::ManageModules) {
            return Err(ModuleError::Forbidden(actor.role));
        }
        let now = self.clock.now();
        let (mut records, version) = self.records(actor.tenant).await?;
        let record = records.entry(module).or_default();
        let before = record.view(module, now);
        if record.active_since.is_some() == active {
            return Ok(before);
        }
        if active {
            record.first_activated_at.get_or_insert(now);
            record.active_since = Some(now);
        } else {
            record.active_since = None;
        }
        let after = record.view(module, now);
        let audit = AuditEvent::change(
            actor,
            now,
            if active {
                "module.activated"
            } else {
                "module.deactivated"
            },
            format!("module:{module}"),
            Some(serde_json::to_value(&before).unwrap_or_default()),
            Some(serde_json::to_value(&after).unwrap_or_default()),
        );
        let condition = match version {
            Some(version) => Condition::VersionIs(version),
            None => Condition::NotExists,
        };
        let put = WriteOp::Put {
            item: Item::new(keys::modules(actor.tenant), to_attributes(&records)?)
                .with_version(version.map_or(1, |version| version + 1)),
            condition,
        };
        match self.table.transact_write(vec![put, audit.write_op()]).await {
            Ok(()) => Ok(after),
            Err(StoreError::TransactionCanceled { .. }) => Err(ModuleError::Contention),
            Err(other) => Err(other.into()),
        }
    }

    async fn records(
        &self,
        tenant: TenantId,
    ) -> Result<(BTreeMap<Module, ModuleRecord>, Option<u64>), StoreError> {
        match self.table.get(&keys::modules(tenant)).await? {
            Some(item) => {
                let version = item.version;
                Ok((from_item(item)?, Some(version)))
            }
            None => Ok((BTreeMap::new(), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn modules_a_first_activation_is_free_for_ten_days_then_billed() {
        let record = ModuleRecord {
            first_activated_at: Some(at("2026-11-01T10:00:00Z")),
            active_since: Some(at("2026-11-01T10:00:00Z")),
        };
        let during = record.view(Module::Sso, at("2026-11-11T09:59:59Z"));
        assert_eq!(during.status, ModuleStatus::Trial);
        assert_eq!(during.trial_ends_at, Some(at("2026-11-11T10:00:00Z")));
        assert_eq!(during.billed_from, Some(at("2026-11-11T10:00:00Z")));
        let after = record.view(Module::Sso, at("2026-11-11T10:00:00Z"));
        assert_eq!(after.status, ModuleStatus::Active);
    }

    #[test]
    fn modules_a_second_activation_gets_no_second_trial() {
        let record = ModuleRecord {
            first_activated_at: Some(at("2026-01-01T00:00:00Z")),
            active_since: Some(at("2026-11-01T00:00:00Z")),
        };
        let view = record.view(Module::Scoring, at("2026-11-02T00:00:00Z"));
        assert_eq!(view.status, ModuleStatus::Active);
        assert_eq!(view.billed_from, Some(at("2026-11-01T00:00:00Z")));
        // Back on inside the first trial: the rest of that trial still counts.
        let record = ModuleRecord {
            first_activated_at: Some(at("2026-11-01T00:00:00Z")),
            active_since: Some(at("2026-11-05T00:00:00Z")),
        };
        let view = record.view(Module::Scoring, at("2026-11-06T00:00:00Z"));
        assert_eq!(view.status, ModuleStatus::Trial);
        assert_eq!(view.billed_from, Some(at("2026-11-11T00:00:00Z")));
    }

    #[test]
    fn modules_never_activated_are_inactive() {
        let view = ModuleRecord::default().view(Module::Signing, at("2026-11-01T00:00:00Z"));
        assert_eq!(view.status, ModuleStatus::Inactive);
        assert_eq!(view.trial_ends_at, None);
        assert_eq!(view.billed_from, None);
    }

    #[test]
    fn modules_names_round_trip() {
        for module in Module::ALL {
            assert_eq!(module.as_str().parse::<Module>(), Ok(module));
            assert_eq!(
                serde_json::to_value(module).unwrap(),
                serde_json::json!(module.as_str())
            );
        }
        assert_eq!("SSO".parse::<Module>(), Err(UnknownModule));
    }
}
