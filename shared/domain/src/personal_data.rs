//! The caller's personal data, all of it, as one document (GDPR art. 15 and 20): their
//! profile, their organization, their sessions, whether they sign in with a second
//! factor, and every audit event they caused. No secret is in it: no password hash, no
//! token, no TOTP secret or recovery code. The export is itself audited.

use crate::accounts::{AccountService, User};
use crate::audit::{Actor, AuditEvent};
use crate::audit_log::{AuditFilter, AuditFilterInput, AuditLog, AuditLogError};
use crate::clock::Clock;
use crate::organization::Organization;
use crate::sessions::{SessionService, SessionSummary};
use crate::store::{StoreError, Table};
use crate::two_factor::{TwoFactorError, TwoFactorService};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// Events read per page of the caller's audit trail.
const PAGE: usize = 200;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalData {
    pub exported_at: DateTime<Utc>,
    pub user: User,
    pub organization: Organization,
    pub two_factor_enabled: bool,
    pub sessions: Vec<SessionSummary>,
    /// Every audit event the caller caused, newest first.
    pub activity: Vec<AuditEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error("the user no longer exists")]
    NotFound,
    #[error("{0}")]
    Audit(#[from] AuditLogError),
    #[error(transparent)]
    TwoFactor(#[from] TwoFactorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct PersonalDataService {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    accounts: AccountService,
    sessions: SessionService,
    two_factor: TwoFactorService,
    audit: AuditLog,
}

impl PersonalDataService {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            accounts: AccountService::new(table.clone(), clock.clone()),
            sessions: SessionService::new(table.clone(), clock.clone()),
            two_factor: TwoFactorService::new(table.clone(), clock.clone()),
            audit: AuditLog::new(table.clone(), clock.clone()),
            table,
            clock,
        }
    }

    /// Everything held about the actor; the export is recorded in the audit log.
    pub async fn export(&self, actor: &Actor) -> Result<PersonalData, PersonalDataError> {
        let (user, organization) = self
            .accounts
            .profile(actor.tenant, actor.user)
            .await
            .map_err(|_| PersonalDataError::NotFound)?;
        let sessions = self.sessions.sessions_of(actor.tenant, actor.user).await?;
        let two_factor_enabled = self.two_factor.is_enabled(actor.tenant, actor.user).await?;
        let filter = AuditFilter::parse(&AuditFilterInput {
            actor: Some(actor.user.to_string()),
            ..AuditFilterInput::default()
        })
        .map_err(AuditLogError::from)?;
        let mut activity = Vec::new();
        let mut after = None;
        loop {
            let page = self.audit.query(actor.tenant, &filter, after, PAGE).await?;
            activity.extend(page.events);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let now = self.clock.now();
        let record = AuditEvent::change(
            actor,
            now,
            "gdpr.exported",
            format!("user:{}", actor.user),
            None,
            Some(serde_json::json!({ "events": activity.len(), "sessions": sessions.len() })),
        );
        self.table.transact_write(vec![record.write_op()]).await?;
        Ok(PersonalData {
            exported_at: now,
            user,
            organization,
            two_factor_enabled,
            sessions,
            activity,
        })
    }
}
