//! The audit trail: who changed what, when, from where, with the record before and after.
//!
//! Audit events are written in the same transaction as the change they describe, so a
//! change without its audit event cannot exist. Attempts that fail or are refused are
//! recorded too, with their [`Outcome`]. Reading the trail: [`crate::audit_log`].

use crate::ids::{AuditEventId, TenantId, UserId};
use crate::keys;
use crate::store::{Attributes, Condition, Item, WriteOp};
use chrono::{DateTime, Utc};
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

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was allowed but did not happen (refused by a rule, too large, ...).
    Failure,
    /// The actor's role does not allow it.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    /// The user who acted; absent when the system acted by itself.
    pub actor_id: Option<UserId>,
    /// Dotted verb, e.g. `contract.created`.
    #[schema(example = "contract.updated")]
    pub action: String,
    /// `kind:id` of the record acted on, e.g. `contract:0193…`.
    #[schema(example = "contract:019a4c2e-5b7d-7c3e-9f1a-2b3c4d5e6f70")]
    pub target: String,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The record before the change.
    pub before: Option<serde_json::Value>,
    /// The record after the change; for a failed or denied attempt, what was attempted.
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
        Self::by_actor(actor, at, action, target, Outcome::Success, before, after)
    }

    /// An attempt by `actor` that was allowed but did not happen; `after` says what
    /// was attempted.
    pub fn failure(
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
        target: String,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        Self::by_actor(actor, at, action, target, Outcome::Failure, before, after)
    }

    /// An attempt by `actor` that their role does not allow. Nothing was read or
    /// changed, so there is no `before`; `attempted` says what was asked for.
    pub fn denied(
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
        target: String,
        attempted: Option<serde_json::Value>,
    ) -> Self {
        Self::by_actor(actor, at, action, target, Outcome::Denied, None, attempted)
    }

    fn by_actor(
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
        target: String,
        outcome: Outcome,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Self {
        Self {
            actor_id: Some(actor.user),
            outcome,
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
            outcome: Outcome::Success,
            request_id: None,
            source_ip: None,
            user_agent: None,
            before,
            after,
        }
    }

    /// The write that stores this event; it never overwrites another event. The event's
    /// before and after move into the item: records are large, and imports write one
    /// event per contract.
    pub fn write_op(mut self) -> WriteOp {
        let sort_key = keys::audit_sort_key(self.at, self.id);
        let (before, after) = (self.before.take(), self.after.take());
        let mut attributes = match serde_json::to_value(&self) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of plain fields always serializes to an object.
            _ => Attributes::new(),
        };
        attributes.insert("before".into(), before.unwrap_or_default());
        attributes.insert("after".into(), after.unwrap_or_default());
        WriteOp::Put {
            item: Item::new(keys::audit_event(self.tenant_id, sort_key), attributes),
            condition: Condition::NotExists,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use serde_json::json;

    fn actor() -> Actor {
        Actor {
            tenant: TenantId::generate(),
            user: UserId::generate(),
            role: Role::Editor,
            request: RequestInfo {
                request_id: Some("req-1".into()),
                source_ip: Some("198.51.100.23".into()),
                user_agent: Some("curl/8".into()),
            },
        }
    }

    #[test]
    fn constructors_set_the_outcome_and_the_request() {
        let actor = actor();
        let at = "2026-11-21T09:00:00Z".parse().unwrap();
        let target = || "contract:1".to_owned();
        let change = AuditEvent::change(&actor, at, "contract.updated", target(), None, None);
        let failure = AuditEvent::failure(
            &actor,
            at,
            "contract.updated",
            target(),
            Some(json!({"v": 1})),
            Some(json!({"v": 2})),
        );
        let denied = AuditEvent::denied(&actor, at, "audit.read", target(), Some(json!({"q": 1})));
        assert_eq!(change.outcome, Outcome::Success);
        assert_eq!(failure.outcome, Outcome::Failure);
        assert_eq!(denied.outcome, Outcome::Denied);
        for event in [&change, &failure, &denied] {
            assert_eq!(event.actor_id, Some(actor.user));
            assert_eq!(event.tenant_id, actor.tenant);
            assert_eq!(event.request_id.as_deref(), Some("req-1"));
            assert_eq!(event.source_ip.as_deref(), Some("198.51.100.23"));
        }
        assert_eq!(failure.before, Some(json!({"v": 1})));
        assert_eq!(denied.before, None);
        assert_eq!(denied.after, Some(json!({"q": 1})));
        let system =
            AuditEvent::system(actor.tenant, at, "contract.repriced", target(), None, None);
        assert_eq!((system.actor_id, system.outcome), (None, Outcome::Success));
        assert_ne!(change.id, failure.id);
    }

    #[test]
    fn outcome_is_stored_lower_case_and_old_items_read_back() {
        let actor = actor();
        let at = "2026-11-21T09:00:00Z".parse().unwrap();
        let denied = AuditEvent::denied(&actor, at, "audit.read", "organization:x".into(), None);
        let WriteOp::Put { item, .. } = denied.clone().write_op() else {
            panic!("a put");
        };
        assert_eq!(item.attributes["outcome"], "denied");
        assert!(
            item.key
                .sk
                .starts_with("AUDIT#2026-11-21T09:00:00.000000Z#")
        );
        let read: AuditEvent = crate::store::from_item(item).unwrap();
        assert_eq!(read, denied);

        // An item written before outcomes were an enum.
        let old = json!({
            "id": AuditEventId::generate(), "tenantId": actor.tenant,
            "at": "2026-01-02T03:04:05.123456Z", "actorId": actor.user,
            "action": "contract.created", "target": "contract:1", "outcome": "success",
            "requestId": null, "sourceIp": null, "userAgent": null,
            "before": null, "after": {"contractNumber": "LC-1"}
        });
        let read: AuditEvent = serde_json::from_value(old).unwrap();
        assert_eq!(read.outcome, Outcome::Success);
        assert!(serde_json::from_value::<Outcome>(json!("Success")).is_err());
    }
}
