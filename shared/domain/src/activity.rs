//! When each organization was last active: the UTC day one of its members last signed
//! in or refreshed a session, kept in the organization's registry item
//! (`ORGANIZATIONS` / `T#<tenant>`, [`crate::retention::Registration`]) for the
//! retention job.
//!
//! A sign-in costs at most one read and one write a day per organization, and nothing
//! on other requests: the first sign-in of a day reads the registry item and, when its
//! day is older, moves it to today under the version it read (so it only ever moves
//! forward, and never overwrites what the retention job wrote meanwhile); each process
//! then remembers which organizations it has recorded today. An organization from
//! before the registry is registered by its first sign-in.

use crate::clock::Clock;
use crate::ids::TenantId;
use crate::keys;
use crate::retention::Registration;
use crate::store::{Condition, Item, StoreError, Table, Update, WriteOp, from_item, to_attributes};
use chrono::NaiveDate;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// How often a record is tried again when another writer got there between the read
/// and the write.
const ATTEMPTS: usize = 3;

pub struct ActivityLog {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    /// The organizations this process has recorded on the day it names.
    recorded: Mutex<(NaiveDate, HashSet<TenantId>)>,
}

impl ActivityLog {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            clock,
            recorded: Mutex::new((NaiveDate::MIN, HashSet::new())),
        }
    }

    /// Records that `tenant` is active today.
    pub async fn record(&self, tenant: TenantId) -> Result<(), StoreError> {
        let today = self.clock.today();
        if self.recorded_on(tenant, today) {
            return Ok(());
        }
        let key = keys::organization_registration(tenant);
        for _ in 0..ATTEMPTS {
            let written = match self.table.get(&key).await? {
                Some(item) => {
                    let version = item.version;
                    let registration: Registration = from_item(item)?;
                    // An organization being removed stays removed.
                    if registration.deleting_since.is_some()
                        || registration.last_active_on.is_some_and(|day| day >= today)
                    {
                        self.remember(tenant, today);
                        return Ok(());
                    }
                    let mut update = Update::new(key.clone());
                    update
                        .set
                        .insert("lastActiveOn".into(), serde_json::json!(today));
                    update.condition = Condition::VersionIs(version);
                    self.table.update(update).await.map(drop)
                }
                None => {
                    // Signed up before the registry: registered now, if it still exists
                    // (a sign-in racing its removal must not bring back a registration).
                    if self.table.get(&keys::organization(tenant)).await?.is_none() {
                        return Ok(());
                    }
                    self.table
                        .put(registration_item(tenant, today)?, Condition::NotExists)
                        .await
                }
            };
            match written {
                Ok(()) => {
                    self.remember(tenant, today);
                    return Ok(());
                }
                // Someone else wrote it since the read: read it again.
                Err(StoreError::ConditionFailed) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Unavailable(
            "the organization's registry item kept changing".into(),
        ))
    }

    fn recorded_on(&self, tenant: TenantId, today: NaiveDate) -> bool {
        let recorded = self
            .recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        recorded.0 == today && recorded.1.contains(&tenant)
    }

    fn remember(&self, tenant: TenantId, today: NaiveDate) {
        let mut recorded = self
            .recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A new day forgets the last one, so the set holds one day's organizations.
        if recorded.0 != today {
            *recorded = (today, HashSet::new());
        }
        recorded.1.insert(tenant);
    }
}

/// The registry item of an organization active `today` and not warned.
pub(crate) fn registration_item(tenant: TenantId, today: NaiveDate) -> Result<Item, StoreError> {
    Ok(Item::new(
        keys::organization_registration(tenant),
        to_attributes(&Registration::active(tenant, today))?,
    ))
}

/// The write that registers a new organization, for its sign-up transaction.
pub(crate) fn registration_op(tenant: TenantId, today: NaiveDate) -> Result<WriteOp, StoreError> {
    Ok(WriteOp::Put {
        item: registration_item(tenant, today)?,
        condition: Condition::NotExists,
    })
}
