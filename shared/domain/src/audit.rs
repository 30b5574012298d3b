//! The audit trail: who changed what, when, from where, with the record before and after.
//!
//! Audit events are written in the same transaction as the change they describe, so a
//! change without its audit event cannot exist.

use crate::ids::{AuditEventId, TenantId, UserId};
use crate::keys;
use crate::store::{Attributes, Condition, Item, WriteOp};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Who is acting, and the request that carries the action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub tenant: TenantId,
    pub user: UserId,
    pub role: crate::access::Role,
    pub request: RequestInfo,
}

/// Where a request came from; recorded in audit events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    pub actor_id: Option<UserId>,
    /// Dotted verb, e.g. `contract.created`.
    pub action: String,
    /// `kind:id` of the record acted on, e.g. `contract:0193…`.
    pub target: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl AuditEvent {
    /// A successful change made by `actor`.
    pub fn change(
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        Self {
            actor_id: Some(actor.user),
            request_id: actor.request.request_id.clone(),
            source_ip: actor.request.source_ip.clone(),
            user_agent: actor.request.user_agent.clone(),
            ..Self::system(actor.tenant, at, action, target, before, after)
        }
    }

    /// A change the system made by itself (a scheduled job), not a user.
    pub fn system(
        tenant: TenantId,
        at: DateTime<Utc>,
        action: &str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        Self {
            id: AuditEventId::generate(),
            tenant_id: tenant,
            at,
            actor_id: None,
            action: action.to_owned(),
            target,
            outcome: "success".to_owned(),
            request_id: None,
            source_ip: None,
            user_agent: None,
            before,
            after,
        }
    }

    /// The write that stores this event; it never overwrites another event.
    pub fn write_op(&self) -> WriteOp {
        let sort_key = format!(
            "{}{}#{}",
            keys::AUDIT_PREFIX,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.id
        );
        let attributes = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of plain fields always serializes to an object.
            _ => Attributes::new(),
        };
        WriteOp::Put {
            item: Item::new(keys::audit_event(self.tenant_id, sort_key), attributes),
            condition: Condition::NotExists,
        }
    }
}
