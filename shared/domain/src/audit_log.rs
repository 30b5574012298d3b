//! Reading the audit trail: an organization's events newest first, filtered by actor,
//! action, target and time, one bounded page at a time; and the export of a whole
//! selection, which is itself audited.
//!
//! Events live in the tenant's partition under sort keys that start with their time
//! ([`keys::audit_sort_key`]), so a time window is a key range, read backward. Actor,
//! action and target are checked on the items read; a request examines at most
//! [`AuditLog::EXAMINE_BUDGET`] events, then answers what it found with a position to
//! go on from.

use crate::access::{Permission, Role};
use crate::audit::{Actor, AuditEvent};
use crate::clock::Clock;
use crate::ids::{TenantId, UserId};
use crate::keys;
use crate::store::{Cursor, Key, Query, StoreError, Table, from_item};
use crate::validation::{self, FieldIssue, ValidationErrors};
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The action recorded for an export of the trail (and for a refused one).
pub const EXPORTED: &str = "audit.exported";
/// The action recorded when a caller may not read the trail.
pub const READ: &str = "audit.read";

/// The filter values of a request as the client sent them, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilterInput {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Which actions an [`AuditFilter`] selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionFilter {
    /// Exactly this action, e.g. `contract.updated`.
    Exact(String),
    /// Every action starting with this text, which ends in `.`, e.g. `contract.`.
    Prefix(String),
}

impl ActionFilter {
    pub fn parse(raw: &str) -> Result<Self, FieldIssue> {
        let action = validation::text(raw, MAX_ACTION_CHARS, false)?;
        Ok(if action.ends_with('.') {
            ActionFilter::Prefix(action)
        } else {
            ActionFilter::Exact(action)
        })
    }

    pub fn matches(&self, action: &str) -> bool {
        match self {
            ActionFilter::Exact(exact) => action == exact,
            ActionFilter::Prefix(prefix) => action.starts_with(prefix.as_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ActionFilter::Exact(text) | ActionFilter::Prefix(text) => text,
        }
    }
}

const MAX_ACTION_CHARS: usize = 100;
const MAX_TARGET_CHARS: usize = 200;

/// A valid selection of audit events. The default selects every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    actor: Option<UserId>,
    action: Option<ActionFilter>,
    target: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// Checks every value and names each invalid one by its field (`/actor`, `/action`,
    /// `/target`, `/from`, `/to`).
    pub fn parse(input: &AuditFilterInput) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let actor = input.actor.as_deref().and_then(|raw| {
            let actor = raw.parse::<UserId>().map_err(|_| FieldIssue::InvalidId);
            errors.check("/actor", actor)
        });
        let action = input
            .action
            .as_deref()
            .and_then(|raw| errors.check("/action", ActionFilter::parse(raw)));
        let target = input.target.as_deref().and_then(|raw| {
            errors.check("/target", validation::text(raw, MAX_TARGET_CHARS, false))
        });
        let from = input
            .from
            .as_deref()
            .and_then(|raw| errors.check("/from", parse_instant(raw)));
        let to = input
            .to
            .as_deref()
            .and_then(|raw| errors.check("/to", parse_instant(raw)));
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            errors.add("/to", FieldIssue::BeforeStart);
        }
        errors.finish(|| AuditFilter {
            actor,
            action,
            target,
            from,
            to,
        })
    }

    pub fn actor(&self) -> Option<UserId> {
        self.actor
    }

    pub fn action(&self) -> Option<&ActionFilter> {
        self.action.as_ref()
    }

    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub fn from(&self) -> Option<DateTime<Utc>> {
        self.from
    }

    pub fn to(&self) -> Option<DateTime<Utc>> {
        self.to
    }

    /// Whether every event of the time window matches, so pages need no filtering.
    fn selects_whole_window(&self) -> bool {
        self.actor.is_none() && self.action.is_none() && self.target.is_none()
    }

    fn matches(&self, event: &AuditEvent) -> bool {
        self.actor.is_none_or(|actor| event.actor_id == Some(actor))
            && self
                .action
                .as_ref()
                .is_none_or(|action| action.matches(&event.action))
            && self
                .target
                .as_ref()
                .is_none_or(|target| &event.target == target)
    }

    /// The filter as recorded in the audit event of an export.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "actor": self.actor,
            "action": self.action.as_ref().map(ActionFilter::as_str),
            "target": self.target,
            "from": self.from,
            "to": self.to,
        })
    }
}

/// An instant given as RFC 3339 (any offset; kept in UTC) or as a day (its midnight
/// UTC), from 1970 to 9999, to the microsecond as event keys are.
pub fn parse_instant(raw: &str) -> Result<DateTime<Utc>, FieldIssue> {
    let raw = raw.trim();
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|_| raw.len() == 10)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|midnight| midnight.and_utc())
            .ok_or(FieldIssue::InvalidInstant)?,
    };
    // Outside these years the key's time would not have four digits and would not
    // sort (see `keys::audit_sort_key`).
    let first = DateTime::<Utc>::UNIX_EPOCH;
    let last = NaiveDate::from_ymd_opt(10_000, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc());
    if at < first || last.is_none_or(|last| at >= last) {
        return Err(FieldIssue::InvalidInstant);
    }
    Ok(at.trunc_subsecs(6))
}

/// Where a page of the trail ended. Clients see it only as an opaque cursor; it is
/// checked against the query it comes back with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPosition {
    /// Sort key of the last event returned or examined.
    #[serde(rename = "s")]
    sort_key: String,
}

/// One page of the trail, newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Present when more events of the window remain to be examined. A page may then
    /// hold fewer than asked (a narrow filter over a long trail), even none.
    pub next: Option<AuditPosition>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("the position is not one of this selection")]
    InvalidPosition,
    #[error("role {0} may not read the audit trail")]
    Forbidden(Role),
    #[error("the export would hold more than {max_rows} events")]
    ExportTooLarge { max_rows: usize },
    #[error("writing the export failed: {0}")]
    Output(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The audit trail of each organization, for reading.
#[derive(Clone)]
pub struct AuditLog {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    examine_budget: usize,
    max_export_rows: usize,
}

impl AuditLog {
    pub const DEFAULT_PAGE: usize = 50;
    pub const MAX_PAGE: usize = 200;
    /// The most events one page request examines, matching or not.
    pub const EXAMINE_BUDGET: usize = 5_000;
    /// The most events one export holds.
    pub const MAX_EXPORT_ROWS: usize = 100_000;
    /// The most events one read of the store asks for while filtering: a page of
    /// snapshots stays well under DynamoDB's 1 MB page.
    const MAX_READ: usize = 500;

    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            table,
            clock,
            examine_budget: Self::EXAMINE_BUDGET,
            max_export_rows: Self::MAX_EXPORT_ROWS,
        }
    }

    /// Other bounds on the events a page request examines and an export holds (at
    /// least one each): for tests, or a deployment with less memory.
    pub fn with_bounds(mut self, examine_budget: usize, max_export_rows: usize) -> Self {
        self.examine_budget = examine_budget.max(1);
        self.max_export_rows = max_export_rows.max(1);
        self
    }

    /// Today by the service's clock.
    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }

    /// A page size from a request: a whole number from 1 to [`Self::MAX_PAGE`].
    pub fn page_size(raw: &str) -> Result<usize, FieldIssue> {
        match raw.trim().parse::<usize>() {
            Ok(size) if (1..=Self::MAX_PAGE).contains(&size) => Ok(size),
            _ => Err(FieldIssue::InvalidInteger {
                min: 1,
                max: Self::MAX_PAGE as i64,
            }),
        }
    }

    /// Lets `actor` read the trail, or records the refused `action` (outcome `denied`)
    /// and answers [`AuditLogError::Forbidden`].
    pub async fn authorize(&self, actor: &Actor, action: &str) -> Result<(), AuditLogError> {
        if actor.role.allows(Permission::ReadAuditLog) {
            return Ok(());
        }
        let denied = AuditEvent::denied(
            actor,
            self.clock.now(),
            action,
            format!("organization:{}", actor.tenant),
            None,
        );
        // The refusal stands even if the store cannot record it right now.
        if let Err(error) = self.table.transact_write(vec![denied.write_op()]).await {
            tracing::warn!(%error, action, "a denied attempt could not be recorded");
        }
        Err(AuditLogError::Forbidden(actor.role))
    }

    /// Up to `limit` events of `tenant` that match `filter`, newest first, after
    /// `after` (the `next` of the previous page).
    pub async fn query(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<AuditPosition>,
        limit: usize,
    ) -> Result<AuditPage, AuditLogError> {
        if !(1..=Self::MAX_PAGE).contains(&limit) {
            return Err(ValidationErrors::single(
                "/limit",
                FieldIssue::InvalidInteger {
                    min: 1,
                    max: Self::MAX_PAGE as i64,
                },
            )
            .into());
        }
        let (low, high) = keys::audit_time_range(filter.from, filter.to);
        let partition = keys::tenant_partition(tenant);
        let mut start_after = match after {
            None => None,
            // A position outside the window belongs to another selection (DynamoDB
            // also refuses a start key outside the key condition).
            Some(position) if position.sort_key < low || position.sort_key > high => {
                return Err(AuditLogError::InvalidPosition);
            }
            Some(position) => Some(Cursor {
                key: Key::new(partition.clone(), position.sort_key),
                index_key: None,
            }),
        };
        if low > high {
            // `from` equals `to`: an empty window.
            return Ok(AuditPage {
                events: Vec::new(),
                next: None,
            });
        }
        let window = Query::partition(partition).between(low, high).backward();

        let mut events = Vec::with_capacity(limit);
        let mut examined = 0;
        loop {
            let wanted = limit - events.len();
            let read = if filter.selects_whole_window() {
                wanted
            } else {
                // Read ahead of what is still wanted, as not every event matches, but
                // not so far that a dense match wastes reads the next page repeats.
                (wanted * 4)
                    .clamp(50, Self::MAX_READ)
                    .min(self.examine_budget - examined)
            };
            let page = self
                .table
                .query(window.clone().limit(read).start_after(start_after.take()))
                .await?;
            let read_count = page.items.len();
            for (n, item) in page.items.into_iter().enumerate() {
                examined += 1;
                let sort_key = item.key.sk.clone();
                let event: AuditEvent = from_item(item)?;
                if filter.matches(&event) {
                    events.push(event);
                    if events.len() == limit {
                        let more = n + 1 < read_count || page.next.is_some();
                        return Ok(AuditPage {
                            events,
                            next: more.then_some(AuditPosition { sort_key }),
                        });
                    }
                }
            }
            match page.next {
                Some(next) if read_count > 0 => {
                    if examined >= self.examine_budget {
                        return Ok(AuditPage {
                            events,
                            next: Some(AuditPosition {
                                sort_key: next.key.sk,
                            }),
                        });
                    }
                    start_after = Some(next);
                }
                _ => return Ok(AuditPage { events, next: None }),
            }
        }
    }

    /// Every event of `actor`'s organization that matches `filter`, newest first, handed
    /// to `write` one by one; at most [`Self::MAX_EXPORT_ROWS`]. Records the export
    /// (action [`EXPORTED`], the filter and the row count in `after`), or, when the
    /// selection is too large, the refused export (outcome `failure`). Returns the
    /// number of events written; when the export cannot be recorded it fails, so that
    /// no unrecorded export leaves.
    pub async fn export<E>(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        mut write: impl FnMut(&AuditEvent) -> Result<(), E> + Send,
    ) -> Result<usize, AuditLogError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.authorize(actor, EXPORTED).await?;
        let target = format!("organization:{}", actor.tenant);
        let mut rows = 0;
        let mut after = None;
        loop {
            let page = self
                .query(actor.tenant, filter, after.take(), Self::MAX_PAGE)
                .await?;
            for event in &page.events {
                if rows == self.max_export_rows {
                    let refused = AuditEvent::failure(
                        actor,
                        self.clock.now(),
                        EXPORTED,
                        target,
                        None,
                        Some(serde_json::json!({
                            "filter": filter.to_json(),
                            "maxRows": self.max_export_rows,
                        })),
                    );
                    // The refusal stands even if the store cannot record it right now.
                    if let Err(error) = self.table.transact_write(vec![refused.write_op()]).await {
                        tracing::warn!(%error, "a refused export could not be recorded");
                    }
                    return Err(AuditLogError::ExportTooLarge {
                        max_rows: self.max_export_rows,
                    });
                }
                write(event).map_err(|error| AuditLogError::Output(Box::new(error)))?;
                rows += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let exported = AuditEvent::change(
            actor,
            self.clock.now(),
            EXPORTED,
            target,
            None,
            Some(serde_json::json!({ "filter": filter.to_json(), "rows": rows })),
        );
        self.table.transact_write(vec![exported.write_op()]).await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Outcome, RequestInfo};
    use crate::clock::FixedClock;
    use crate::store::{Condition, Item, Page, SortKeyCondition, Update, WriteOp};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A table of one ordered map: enough of the port for the trail (puts, and queries
    /// between two sort keys either way with a start position); counts items read.
    #[derive(Default)]
    struct MemoryTable {
        items: Mutex<BTreeMap<(String, String), Item>>,
        read: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Table for MemoryTable {
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            let items = self.items.lock().unwrap();
            Ok(items.get(&(key.pk.clone(), key.sk.clone())).cloned())
        }
        async fn put(&self, item: Item, _: Condition) -> Result<(), StoreError> {
            let mut items = self.items.lock().unwrap();
            items.insert((item.key.pk.clone(), item.key.sk.clone()), item);
            Ok(())
        }
        async fn update(&self, _: Update) -> Result<Item, StoreError> {
            unreachable!("the trail is never updated")
        }
        async fn delete(&self, _: &Key, _: Condition) -> Result<Option<Item>, StoreError> {
            unreachable!("the trail is never deleted from")
        }
        async fn query(&self, query: Query) -> Result<Page, StoreError> {
            crate::store::validate_query(&query)?;
            let SortKeyCondition::Between(low, high) = &query.sort else {
                unreachable!("the trail is read between two keys")
            };
            assert!(low <= high, "reversed bounds are invalid in both adapters");
            let items = self.items.lock().unwrap();
            let after = query.start_after.as_ref().map(|c| c.key.sk.clone());
            let selected = items
                .iter()
                .filter(|((pk, sk), _)| pk == &query.partition && low <= sk && sk <= high)
                .map(|(_, item)| item);
            let mut selected: Vec<&Item> = if query.forward {
                selected
                    .filter(|item| after.as_ref().is_none_or(|a| &item.key.sk > a))
                    .collect()
            } else {
                selected
                    .rev()
                    .filter(|item| after.as_ref().is_none_or(|a| &item.key.sk < a))
                    .collect()
            };
            let more = selected.len() > query.limit;
            selected.truncate(query.limit);
            self.read.fetch_add(selected.len(), Ordering::Relaxed);
            Ok(Page {
                next: more.then(|| Cursor {
                    key: selected[selected.len() - 1].key.clone(),
                    index_key: None,
                }),
                items: selected.into_iter().cloned().collect(),
            })
        }
        async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
            for op in ops {
                let WriteOp::Put { item, condition } = op else {
                    unreachable!("the trail only grows")
                };
                self.put(item, condition).await?;
            }
            Ok(())
        }
    }

    impl MemoryTable {
        fn take_read(&self) -> usize {
            self.read.swap(0, Ordering::Relaxed)
        }
    }

    fn actor(tenant: TenantId, role: Role) -> Actor {
        Actor {
            tenant,
            user: UserId::generate(),
            role,
            request: RequestInfo::default(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    struct Trail {
        table: Arc<MemoryTable>,
        clock: Arc<FixedClock>,
        log: AuditLog,
        tenant: TenantId,
        owner: Actor,
        editor: Actor,
        /// Every event written, oldest first.
        events: Vec<AuditEvent>,
    }

    /// 30 events a minute apart from 2026-11-21 09:00 UTC: the owner and the editor
    /// take turns creating and updating three contracts; every fifth is the system's.
    /// Another organization's events sit in the same table.
    async fn trail() -> Trail {
        let table = Arc::new(MemoryTable::default());
        let clock = Arc::new(FixedClock::new(at("2026-11-21T12:00:00Z")));
        let tenant = TenantId::generate();
        let owner = actor(tenant, Role::Owner);
        let editor = actor(tenant, Role::Editor);
        let mut events = Vec::new();
        for n in 0..30 {
            let when = at("2026-11-21T09:00:00Z") + chrono::Duration::minutes(n);
            let target = format!("contract:{}", n % 3);
            let action = if n < 3 {
                "contract.created"
            } else {
                "contract.updated"
            };
            let event = match n {
                n if n % 5 == 4 => {
                    AuditEvent::system(tenant, when, "contract.repriced", target, None, None)
                }
                n if n % 2 == 0 => AuditEvent::change(&owner, when, action, target, None, None),
                _ => AuditEvent::change(&editor, when, action, target, None, None),
            };
            table
                .transact_write(vec![event.clone().write_op()])
                .await
                .unwrap();
            events.push(event);
        }
        let stranger = actor(TenantId::generate(), Role::Owner);
        let elsewhere = AuditEvent::change(
            &stranger,
            at("2026-11-21T09:30:00Z"),
            "contract.created",
            "contract:0".into(),
            None,
            None,
        );
        table
            .transact_write(vec![elsewhere.write_op()])
            .await
            .unwrap();
        let log = AuditLog::new(table.clone(), clock.clone());
        table.take_read();
        Trail {
            table,
            clock,
            log,
            tenant,
            owner,
            editor,
            events,
        }
    }

    fn filter(input: AuditFilterInput) -> AuditFilter {
        AuditFilter::parse(&input).unwrap()
    }

    /// Every page of a selection, with the number of pages.
    async fn all_pages(
        log: &AuditLog,
        tenant: TenantId,
        filter: &AuditFilter,
        limit: usize,
    ) -> (Vec<AuditEvent>, usize) {
        let mut events = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = log
                .query(tenant, filter, after.take(), limit)
                .await
                .unwrap();
            pages += 1;
            assert!(page.events.len() <= limit);
            events.extend(page.events);
            match page.next {
                // The position goes to the client and back as JSON.
                Some(next) => {
                    let json = serde_json::to_string(&next).unwrap();
                    after = Some(serde_json::from_str(&json).unwrap());
                }
                None => return (events, pages),
            }
            assert!(pages < 1000, "the pages end");
        }
    }

    fn newest_first(events: &[AuditEvent], keep: impl Fn(&AuditEvent) -> bool) -> Vec<AuditEvent> {
        events.iter().rev().filter(|e| keep(e)).cloned().collect()
    }

    #[test]
    fn filters_are_validated_field_by_field() {
        let errors = AuditFilter::parse(&AuditFilterInput {
            actor: Some("anna".into()),
            action: Some("   ".into()),
            target: Some("x".repeat(201)),
            from: Some("yesterday".into()),
            to: Some("2026-13-01".into()),
        })
        .unwrap_err();
        let found: Vec<(&str, &FieldIssue)> = errors
            .errors()
            .iter()
            .map(|e| (e.pointer.as_str(), &e.issue))
            .collect();
        assert_eq!(
            found,
            [
                ("/actor", &FieldIssue::InvalidId),
                ("/action", &FieldIssue::Blank),
                ("/target", &FieldIssue::TooLong { max: 200 }),
                ("/from", &FieldIssue::InvalidInstant),
                ("/to", &FieldIssue::InvalidInstant),
            ]
        );

        // An id in another spelling than the API's is not an id.
        let user = UserId::generate();
        let upper = AuditFilterInput {
            actor: Some(user.to_string().to_uppercase()),
            ..Default::default()
        };
        assert!(AuditFilter::parse(&upper).is_err());

        let reversed = AuditFilter::parse(&AuditFilterInput {
            from: Some("2026-11-21T10:00:00+01:00".into()),
            to: Some("2026-11-21T08:59:59Z".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(reversed.errors().len(), 1);
        assert_eq!(reversed.errors()[0].pointer, "/to");
        assert_eq!(reversed.errors()[0].issue, FieldIssue::BeforeStart);

        let parsed = filter(AuditFilterInput {
            actor: Some(user.to_string()),
            action: Some(" contract. ".into()),
            target: Some("contract:1".into()),
            from: Some("2026-11-21T10:00:00.1234567+01:00".into()),
            to: Some("2026-11-22".into()),
        });
        assert_eq!(parsed.actor(), Some(user));
        assert_eq!(
            parsed.action(),
            Some(&ActionFilter::Prefix("contract.".into()))
        );
        assert_eq!(parsed.target(), Some("contract:1"));
        // Offsets become UTC, to the microsecond; a day is its midnight UTC.
        assert_eq!(parsed.from(), Some(at("2026-11-21T09:00:00.123456Z")));
        assert_eq!(parsed.to(), Some(at("2026-11-22T00:00:00Z")));
        // `from` equal to `to` is an empty window, not an error.
        assert!(
            AuditFilter::parse(&AuditFilterInput {
                from: Some("2026-11-21".into()),
                to: Some("2026-11-21T00:00:00Z".into()),
                ..Default::default()
            })
            .is_ok()
        );
        assert_eq!(
            filter(AuditFilterInput {
                action: Some("contract.updated".into()),
                ..Default::default()
            })
            .action(),
            Some(&ActionFilter::Exact("contract.updated".into()))
        );
    }

    #[test]
    fn instants_outside_the_keys_years_are_refused() {
        for raw in [
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-11-21 09:00",
            "20261121",
            "2026-11-21T09:00:00",
            "",
        ] {
            assert_eq!(
                parse_instant(raw),
                Err(FieldIssue::InvalidInstant),
                "{raw:?}"
            );
        }
        assert_eq!(parse_instant("1970-01-01"), Ok(DateTime::<Utc>::UNIX_EPOCH));
        assert!(parse_instant("9999-12-31T23:59:59.999999Z").is_ok());
    }

    #[test]
    fn page_sizes() {
        for bad in ["0", "201", "-1", "ten", "", "1.5"] {
            assert_eq!(
                AuditLog::page_size(bad),
                Err(FieldIssue::InvalidInteger { min: 1, max: 200 }),
                "{bad:?}"
            );
        }
        assert_eq!(AuditLog::page_size("1"), Ok(1));
        assert_eq!(AuditLog::page_size("200"), Ok(200));
    }

    #[tokio::test]
    async fn pages_come_newest_first_without_gaps_or_duplicates() {
        let trail = trail().await;
        let everything = AuditFilter::default();
        let expected = newest_first(&trail.events, |_| true);
        for (limit, pages) in [(7, 5), (30, 1), (1, 30), (200, 1), (10, 3)] {
            let (events, seen) = all_pages(&trail.log, trail.tenant, &everything, limit).await;
            assert_eq!(events, expected, "limit {limit}");
            assert_eq!(seen, pages, "limit {limit}");
        }
        // Without filters, a page reads only what it returns.
        trail.table.take_read();
        trail
            .log
            .query(trail.tenant, &everything, None, 7)
            .await
            .unwrap();
        assert_eq!(trail.table.take_read(), 7);
        // Another organization sees none of these.
        let (theirs, _) = all_pages(&trail.log, TenantId::generate(), &everything, 50).await;
        assert!(theirs.is_empty());
    }

    #[tokio::test]
    async fn each_filter_selects_its_events() {
        let trail = trail().await;
        let editor = trail.editor.user;
        type Selects<'a> = Box<dyn Fn(&AuditEvent) -> bool + 'a>;
        let cases: Vec<(AuditFilterInput, Selects<'_>)> = vec![
            (
                AuditFilterInput {
                    actor: Some(editor.to_string()),
                    ..Default::default()
                },
                Box::new(move |e| e.actor_id == Some(editor)),
            ),
            (
                AuditFilterInput {
                    action: Some("contract.".into()),
                    ..Default::default()
                },
                Box::new(|e| e.action.starts_with("contract.")),
            ),
            (
                AuditFilterInput {
                    action: Some("contract.created".into()),
                    ..Default::default()
                },
                Box::new(|e| e.action == "contract.created"),
            ),
            (
                // A prefix must end in a dot: `contract` alone names no action.
                AuditFilterInput {
                    action: Some("contract".into()),
                    ..Default::default()
                },
                Box::new(|_| false),
            ),
            (
                AuditFilterInput {
                    target: Some("contract:2".into()),
                    ..Default::default()
                },
                Box::new(|e| e.target == "contract:2"),
            ),
            (
                AuditFilterInput {
                    from: Some("2026-11-21T09:10:00Z".into()),
                    to: Some("2026-11-21T09:20:00Z".into()),
                    ..Default::default()
                },
                Box::new(|e| {
                    e.at >= at("2026-11-21T09:10:00Z") && e.at < at("2026-11-21T09:20:00Z")
                }),
            ),
            (
                AuditFilterInput {
                    actor: Some(trail.owner.user.to_string()),
                    action: Some("contract.updated".into()),
                    target: Some("contract:1".into()),
                    from: Some("2026-11-21T09:05:00Z".into()),
                    ..Default::default()
                },
                Box::new(|e| {
                    e.actor_id == Some(trail.owner.user)
                        && e.action == "contract.updated"
                        && e.target == "contract:1"
                        && e.at >= at("2026-11-21T09:05:00Z")
                }),
            ),
            (
                AuditFilterInput {
                    from: Some("2026-11-21T09:10:00Z".into()),
                    to: Some("2026-11-21T09:10:00Z".into()),
                    ..Default::default()
                },
                Box::new(|_| false),
            ),
        ];
        for (input, keep) in cases {
            let expected = newest_first(&trail.events, keep);
            let selection = filter(input.clone());
            for limit in [1, 2, 50] {
                let (events, _) = all_pages(&trail.log, trail.tenant, &selection, limit).await;
                assert_eq!(events, expected, "{input:?}, limit {limit}");
            }
        }
        // The time window bounds the reads: ten minutes of the trail, ten events read.
        let window = filter(AuditFilterInput {
            from: Some("2026-11-21T09:10:00Z".into()),
            to: Some("2026-11-21T09:20:00Z".into()),
            action: Some("contract.".into()),
            ..Default::default()
        });
        trail.table.take_read();
        all_pages(&trail.log, trail.tenant, &window, 200).await;
        assert_eq!(trail.table.take_read(), 10);
    }

    #[tokio::test]
    async fn a_request_examines_at_most_its_budget() {
        let mut trail = trail().await;
        trail.log = trail.log.clone().with_bounds(8, 100);
        // Only the oldest event matches: each request reads eight and goes on.
        let oldest = filter(AuditFilterInput {
            action: Some("contract.created".into()),
            target: Some("contract:0".into()),
            ..Default::default()
        });
        let first = trail
            .log
            .query(trail.tenant, &oldest, None, 5)
            .await
            .unwrap();
        assert!(first.events.is_empty());
        assert!(first.next.is_some());
        assert_eq!(trail.table.take_read(), 8);
        let (events, pages) = all_pages(&trail.log, trail.tenant, &oldest, 5).await;
        assert_eq!(events, vec![trail.events[0].clone()]);
        assert_eq!(pages, 4, "30 events, 8 a request");
    }

    #[tokio::test]
    async fn positions_belong_to_their_window_and_limits_are_checked() {
        let trail = trail().await;
        let window = filter(AuditFilterInput {
            from: Some("2026-11-21T09:10:00Z".into()),
            to: Some("2026-11-21T09:20:00Z".into()),
            ..Default::default()
        });
        let page = trail
            .log
            .query(trail.tenant, &window, None, 3)
            .await
            .unwrap();
        let next = page.next.clone().unwrap();
        // The same position continues the window...
        let second = trail
            .log
            .query(trail.tenant, &window, Some(next.clone()), 3)
            .await
            .unwrap();
        assert_eq!(second.events[0].at, at("2026-11-21T09:16:00Z"));
        // ...but not a window it lies outside of.
        let later = filter(AuditFilterInput {
            from: Some("2026-11-21T09:18:00Z".into()),
            ..Default::default()
        });
        assert!(matches!(
            trail.log.query(trail.tenant, &later, Some(next), 3).await,
            Err(AuditLogError::InvalidPosition)
        ));
        let forged: AuditPosition = serde_json::from_str(r#"{"s":"CONTRACT#x"}"#).unwrap();
        assert!(matches!(
            trail
                .log
                .query(trail.tenant, &AuditFilter::default(), Some(forged), 3)
                .await,
            Err(AuditLogError::InvalidPosition)
        ));
        assert!(serde_json::from_str::<AuditPosition>(r#"{"s":"AUDIT#","x":1}"#).is_err());
        for limit in [0, 201] {
            let Err(AuditLogError::Invalid(errors)) =
                trail.log.query(trail.tenant, &window, None, limit).await
            else {
                panic!("limit {limit} is refused");
            };
            assert_eq!(errors.errors()[0].pointer, "/limit");
        }
    }

    async fn recorded(trail: &Trail, action: &str) -> Vec<AuditEvent> {
        let only = filter(AuditFilterInput {
            action: Some(action.into()),
            ..Default::default()
        });
        all_pages(&trail.log, trail.tenant, &only, 200).await.0
    }

    #[tokio::test]
    async fn an_export_writes_every_match_and_records_itself() {
        let trail = trail().await;
        trail.clock.set(at("2026-11-21T12:00:00Z"));
        let selection = filter(AuditFilterInput {
            action: Some("contract.updated".into()),
            ..Default::default()
        });
        let mut written = Vec::new();
        let rows = trail
            .log
            .export(&trail.owner, &selection, |event| {
                written.push(event.clone());
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
        let expected = newest_first(&trail.events, |e| e.action == "contract.updated");
        assert_eq!(written, expected);
        assert_eq!(rows, expected.len());

        let exports = recorded(&trail, EXPORTED).await;
        assert_eq!(exports.len(), 1);
        let export = &exports[0];
        assert_eq!(export.outcome, Outcome::Success);
        assert_eq!(export.actor_id, Some(trail.owner.user));
        assert_eq!(export.at, at("2026-11-21T12:00:00Z"));
        assert_eq!(export.target, format!("organization:{}", trail.tenant));
        let after = export.after.as_ref().unwrap();
        assert_eq!(after["rows"], rows);
        assert_eq!(after["filter"]["action"], "contract.updated");
        assert!(after["filter"]["actor"].is_null());

        // A failing writer fails the export, and nothing more is recorded.
        let failed = trail
            .log
            .export(&trail.owner, &selection, |_| {
                Err(std::io::Error::other("disk full"))
            })
            .await;
        assert!(matches!(failed, Err(AuditLogError::Output(_))));
        assert_eq!(recorded(&trail, EXPORTED).await.len(), 1);
    }

    #[tokio::test]
    async fn an_export_over_the_cap_is_refused_and_recorded_as_a_failure() {
        let mut trail = trail().await;
        trail.log = trail.log.clone().with_bounds(AuditLog::EXAMINE_BUDGET, 10);
        let everything = AuditFilter::default();
        let mut written = 0;
        let refused = trail
            .log
            .export(&trail.owner, &everything, |_| {
                written += 1;
                Ok::<_, std::io::Error>(())
            })
            .await;
        assert!(matches!(
            refused,
            Err(AuditLogError::ExportTooLarge { max_rows: 10 })
        ));
        let exports = recorded(&trail, EXPORTED).await;
        assert_eq!(exports.len(), 1);
        assert_eq!(exports[0].outcome, Outcome::Failure);
        assert_eq!(exports[0].after.as_ref().unwrap()["maxRows"], 10);

        // Exactly at the cap is fine.
        let ten = filter(AuditFilterInput {
            to: Some("2026-11-21T09:10:00Z".into()),
            ..Default::default()
        });
        let rows = trail
            .log
            .export(&trail.owner, &ten, |_| Ok::<_, std::io::Error>(()))
            .await
            .unwrap();
        assert_eq!(rows, 10);
    }

    #[tokio::test]
    async fn only_owners_and_admins_read_and_refusals_are_recorded() {
        let trail = trail().await;
        let admin = actor(trail.tenant, Role::Admin);
        trail.log.authorize(&trail.owner, READ).await.unwrap();
        trail.log.authorize(&admin, READ).await.unwrap();
        assert!(recorded(&trail, "audit.").await.is_empty());

        let viewer = actor(trail.tenant, Role::Viewer);
        for role_holder in [&trail.editor, &viewer] {
            assert!(matches!(
                trail.log.authorize(role_holder, READ).await,
                Err(AuditLogError::Forbidden(role)) if role == role_holder.role
            ));
            let mut written = 0;
            let refused = trail
                .log
                .export(role_holder, &AuditFilter::default(), |_| {
                    written += 1;
                    Ok::<_, std::io::Error>(())
                })
                .await;
            assert!(matches!(refused, Err(AuditLogError::Forbidden(_))));
            assert_eq!(written, 0);
        }
        let refusals = recorded(&trail, "audit.").await;
        let seen: Vec<(&str, Option<UserId>, Outcome)> = refusals
            .iter()
            .map(|e| (e.action.as_str(), e.actor_id, e.outcome))
            .collect();
        // Newest first; all at the clock's one instant, so in the order written.
        assert_eq!(
            seen,
            [
                (EXPORTED, Some(viewer.user), Outcome::Denied),
                (READ, Some(viewer.user), Outcome::Denied),
                (EXPORTED, Some(trail.editor.user), Outcome::Denied),
                (READ, Some(trail.editor.user), Outcome::Denied),
            ]
        );
    }
}
