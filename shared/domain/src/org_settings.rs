//! Organization-wide settings: for now, whether every member must sign in with a second
//! factor.
//!
//! Turning the requirement on ends the sessions of every member without a second factor
//! (their next sign-in opens a session that serves only setting one up), and needs the
//! member who turns it on to have one: nobody locks an organization out by accident.

use crate::access::{Permission, Role};
use crate::accounts::UserRecord;
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::ids::TenantId;
use crate::keys;
use crate::organization::Organization;
use crate::store::{
    Condition, Item, Query, StoreError, Table, WriteOp, from_item, query_all, to_attributes,
};
use crate::two_factor::{TwoFactorError, TwoFactorService};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSettings {
    /// Every member signs in with a second factor (TOTP).
    pub require_two_factor: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the role {0} may not do this")]
    Forbidden(Role),
    /// Requiring a second factor of everyone needs one of your own first.
    #[error("set up your own second factor first")]
    TwoFactorFirst,
    #[error("the organization no longer exists")]
    NotFound,
    #[error("the organization changed meanwhile; retry")]
    Contention,
    #[error(transparent)]
    TwoFactor(#[from] TwoFactorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct OrganizationSettingsService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    two_factor: TwoFactorService,
}

impl OrganizationSettingsService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            two_factor: TwoFactorService::new(table.clone(), clock.clone()),
            table,
            clock,
        }
    }

    pub async fn settings(&self, actor: &Actor) -> Result<OrganizationSettings, SettingsError> {
        require(actor, Permission::ReadMembers)?;
        let (organization, _) = self.organization(actor.tenant).await?;
        Ok(OrganizationSettings {
            require_two_factor: organization.require_two_factor,
        })
    }

    /// Whether the organization requires a second factor of every member.
    pub async fn requires_two_factor(&self, tenant: TenantId) -> Result<bool, SettingsError> {
        Ok(self.organization(tenant).await?.0.require_two_factor)
    }

    /// Sets whether every member must sign in with a second factor (owners and admins).
    pub async fn set_require_two_factor(
        &self,
        actor: &Actor,
        required: bool,
    ) -> Result<OrganizationSettings, SettingsError> {
        require(actor, Permission::ManageOrganization)?;
        if required && !self.two_factor.is_enabled(actor.tenant, actor.user).await? {
            return Err(SettingsError::TwoFactorFirst);
        }
        let (mut organization, version) = self.organization(actor.tenant).await?;
        let before = organization.require_two_factor;
        organization.require_two_factor = required;
        let audit = AuditEvent::change(
            actor,
            self.clock.now(),
            "organization.settings_changed",
            format!("organization:{}", actor.tenant),
            Some(serde_json::json!({ "requireTwoFactor": before })),
            Some(serde_json::json!({ "requireTwoFactor": required })),
        );
        let put = WriteOp::Put {
            item: Item::new(
                keys::organization(actor.tenant),
                to_attributes(&organization)?,
            )
            .with_version(version + 1),
            condition: Condition::VersionIs(version),
        };
        match self.table.transact_write(vec![put, audit.write_op()]).await {
            Ok(()) => {}
            Err(StoreError::TransactionCanceled { .. }) => return Err(SettingsError::Contention),
            Err(other) => return Err(other.into()),
        }
        if required && !before {
            self.end_sessions_without_two_factor(actor.tenant).await?;
        }
        Ok(OrganizationSettings {
            require_two_factor: required,
        })
    }

    /// Ends every session of the members who have no second factor: their next sign-in
    /// opens a session that only sets one up.
    async fn end_sessions_without_two_factor(&self, tenant: TenantId) -> Result<(), SettingsError> {
        let query = Query::partition(keys::tenant_partition(tenant))
            .begins_with(keys::USER_PREFIX)
            .limit(1000);
        for item in query_all(self.table.as_ref(), query).await? {
            let member = from_item::<UserRecord>(item)?.user;
            if !self.two_factor.is_enabled(tenant, member.id).await? {
                self.table
                    .update(crate::sessions::sessions_end(tenant, member.id))
                    .await?;
            }
        }
        Ok(())
    }

    async fn organization(&self, tenant: TenantId) -> Result<(Organization, u64), SettingsError> {
        let Some(item) = self.table.get(&keys::organization(tenant)).await? else {
            return Err(SettingsError::NotFound);
        };
        let version = item.version;
        Ok((from_item(item)?, version))
    }
}

fn require(actor: &Actor, permission: Permission) -> Result<(), SettingsError> {
    if actor.role.allows(permission) {
        Ok(())
    } else {
        Err(SettingsError::Forbidden(actor.role))
    }
}
