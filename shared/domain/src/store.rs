//! The storage port: one key-value table shaped like DynamoDB.
//!
//! Items live under a partition key (`pk`) and a sort key (`sk`), may carry one
//! secondary index key (`gsi1pk`/`gsi1sk`), a `version` for optimistic concurrency and an
//! optional expiry (`ttl`, epoch seconds). Everything else is a flat map of JSON
//! attributes. Two adapters implement it: DynamoDB (`adapters::aws`) and SQLite
//! (`adapters::embedded`); `adapters/tests/conformance.rs` holds them to the same
//! behaviour.
//!
//! The port is deliberately small: there is no scan, and every read is a `get` or a
//! `query` inside one partition.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Attribute names the port manages itself; an item's own attributes may not use them.
pub const RESERVED_ATTRIBUTES: [&str; 6] = ["pk", "sk", "gsi1pk", "gsi1sk", "version", "ttl"];

/// The most items a single query page may return.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// The most operations one transaction may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
/// The most counters one update may increment: DynamoDB caps an update expression at
/// 4 KB, and `#n123 = if_not_exists(#n123, :v1) + :v456, ` takes 43 characters.
pub const MAX_UPDATE_INCREMENTS: usize = 90;

/// Free-form attributes of an item.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The key of an item in the secondary index `gsi1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IndexKey {
    pub pk: String,
    pub sk: String,
}

impl IndexKey {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: Key,
    /// Present when the item is to appear in the secondary index.
    pub index_key: Option<IndexKey>,
    /// Optimistic-concurrency version. Callers set it on `put`; `update` increments it.
    pub version: u64,
    /// Epoch seconds after which the item is logically gone. Stores delete it lazily
    /// (DynamoDB TTL lags by up to days), so readers must check [`Item::is_expired`].
    pub expires_at: Option<i64>,
    pub attributes: Attributes,
}

impl Item {
    pub fn new(key: Key, attributes: Attributes) -> Self {
        Self {
            key,
            index_key: None,
            version: 1,
            expires_at: None,
            attributes,
        }
    }

    pub fn with_index(mut self, index_key: IndexKey) -> Self {
        self.index_key = Some(index_key);
        self
    }

    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    pub fn expiring_at(mut self, epoch_seconds: i64) -> Self {
        self.expires_at = Some(epoch_seconds);
        self
    }

    pub fn is_expired(&self, now_epoch_seconds: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_epoch_seconds)
    }
}

/// A precondition on the item currently stored under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Condition {
    /// Write unconditionally.
    #[default]
    None,
    /// No item exists under the key.
    NotExists,
    /// No item exists under the key, or the stored one expired at or before `now`
    /// (epoch seconds). For ephemeral records whose physical deletion lags.
    NotExistsOrExpired { now: i64 },
    /// An item exists under the key.
    Exists,
    /// An item exists and its version is exactly this.
    VersionIs(u64),
}

/// A partial update of one item (DynamoDB `UpdateItem`). Creates the item when it is
/// missing, unless the condition forbids it. Always increments `version` (a new item
/// starts at 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub key: Key,
    /// Attributes to set (replacing what was there).
    pub set: Attributes,
    /// Attributes to remove.
    pub remove: Vec<String>,
    /// Integer attributes to add to (a missing attribute counts as 0).
    pub increment: Vec<(String, i64)>,
    pub condition: Condition,
}

impl Update {
    pub fn new(key: Key) -> Self {
        Self {
            key,
            set: Attributes::new(),
            remove: Vec::new(),
            increment: Vec::new(),
            condition: Condition::None,
        }
    }
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put {
        item: Item,
        condition: Condition,
    },
    Update(Update),
    Delete {
        key: Key,
        condition: Condition,
    },
    /// Only checks a condition; writes nothing.
    Check {
        key: Key,
        condition: Condition,
    },
}

impl WriteOp {
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Update(update) => &update.key,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => key,
        }
    }

    pub fn condition(&self) -> Condition {
        match self {
            WriteOp::Put { condition, .. }
            | WriteOp::Delete { condition, .. }
            | WriteOp::Check { condition, .. } => *condition,
            WriteOp::Update(update) => update.condition,
        }
    }
}

/// Which ordering a query walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Index {
    /// The table itself: partition `pk`, ordered by `sk`.
    #[default]
    Primary,
    /// The secondary index: partition `gsi1pk`, ordered by `gsi1sk`.
    Gsi1,
}

/// Which sort keys a query selects. Bounds compare as UTF-8 bytes, as DynamoDB does.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SortKeyCondition {
    #[default]
    Any,
    BeginsWith(String),
    /// Inclusive on both ends.
    Between(String, String),
}

/// Where the previous page ended: the keys of its last item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: Key,
    /// Set when the page came from the secondary index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_key: Option<IndexKey>,
}

/// A query inside one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sort: SortKeyCondition,
    /// Ascending sort-key order when true.
    pub forward: bool,
    /// At most this many items (1..=[`MAX_QUERY_LIMIT`]).
    pub limit: usize,
    /// Continue after this item (from [`Page::next`]).
    pub start_after: Option<Cursor>,
}

impl Query {
    pub fn partition(partition: impl Into<String>) -> Self {
        Self {
            index: Index::Primary,
            partition: partition.into(),
            sort: SortKeyCondition::Any,
            forward: true,
            limit: 100,
            start_after: None,
        }
    }

    pub fn on_index(mut self, index: Index) -> Self {
        self.index = index;
        self
    }

    pub fn begins_with(mut self, prefix: impl Into<String>) -> Self {
        self.sort = SortKeyCondition::BeginsWith(prefix.into());
        self
    }

    pub fn between(mut self, low: impl Into<String>, high: impl Into<String>) -> Self {
        self.sort = SortKeyCondition::Between(low.into(), high.into());
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    pub fn start_after(mut self, cursor: Option<Cursor>) -> Self {
        self.start_after = cursor;
        self
    }
}

/// One page of query results.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Set exactly when more items match after this page.
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition of a single-item write did not hold.
    #[error("the condition on the stored item did not hold")]
    ConditionFailed,
    /// A transaction was cancelled and wrote nothing. `failed` lists the positions of
    /// the operations whose condition did not hold; it is empty when the cancellation
    /// came from a concurrent transaction on the same items (retry later).
    #[error("the transaction was cancelled (failed conditions at {failed:?})")]
    TransactionCanceled { failed: Vec<usize> },
    /// The request breaks a rule of the port (reserved attribute, limits, duplicate keys
    /// in a transaction). A programming error, not bad user input.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The backend failed or could not be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The table port.
#[async_trait]
pub trait Table: Send + Sync + 'static {
    /// The item under `key`, expired or not.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Writes `item` whole if `condition` holds.
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError>;

    /// Applies `update` if its condition holds and returns the item as it is afterwards.
    async fn update(&self, update: Update) -> Result<Item, StoreError>;

    /// Deletes the item under `key` if `condition` holds; returns what was deleted.
    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError>;

    /// One page of the items of a partition, in sort-key order.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// Applies every operation or none. At most [`MAX_TRANSACTION_OPS`] operations, each
    /// on a different key.
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;
}

/// Every item `query` selects, page after page: for work that must see a whole
/// partition (a rebuild, an import), never for a request's answer.
pub async fn query_all(table: &dyn Table, query: Query) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = table.query(query.clone().start_after(after.take())).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(items),
        }
    }
}

/// A record serialized into a new item's attributes.
pub fn to_attributes(value: &impl serde::Serialize) -> Result<Attributes, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(StoreError::Invalid(
            "a record must serialize to an object".into(),
        )),
        Err(e) => Err(StoreError::Invalid(format!("record not serializable: {e}"))),
    }
}

/// A record read back from an item's attributes.
pub fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::Object(item.attributes)).map_err(|e| {
        StoreError::Unavailable(format!("stored record {:?} is unreadable: {e}", item.key))
    })
}

/// Checks the port rules shared by every adapter, so they reject the same requests.
pub fn validate_item(item: &Item) -> Result<(), StoreError> {
    validate_key(&item.key)?;
    if let Some(index_key) = &item.index_key
        && (index_key.pk.is_empty() || index_key.sk.is_empty())
    {
        return Err(StoreError::Invalid("index keys must not be empty".into()));
    }
    validate_attribute_names(item.attributes.keys())
}

pub fn validate_key(key: &Key) -> Result<(), StoreError> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StoreError::Invalid("keys must not be empty".into()));
    }
    Ok(())
}

pub fn validate_attribute_names<'a>(
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), StoreError> {
    for name in names {
        if name.is_empty() || RESERVED_ATTRIBUTES.contains(&name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "attribute name {name:?} is reserved or empty"
            )));
        }
    }
    Ok(())
}

pub fn validate_update(update: &Update) -> Result<(), StoreError> {
    validate_key(&update.key)?;
    if update.increment.len() > MAX_UPDATE_INCREMENTS {
        return Err(StoreError::Invalid(format!(
            "{} increments in one update; at most {MAX_UPDATE_INCREMENTS}",
            update.increment.len()
        )));
    }
    validate_attribute_names(
        update
            .set
            .keys()
            .chain(update.remove.iter())
            .chain(update.increment.iter().map(|(name, _)| name)),
    )
}

pub fn validate_query(query: &Query) -> Result<(), StoreError> {
    if query.partition.is_empty() {
        return Err(StoreError::Invalid(
            "query partition must not be empty".into(),
        ));
    }
    if query.limit == 0 || query.limit > MAX_QUERY_LIMIT {
        return Err(StoreError::Invalid(format!(
            "query limit must be 1..={MAX_QUERY_LIMIT}"
        )));
    }
    if let Some(cursor) = &query.start_after
        && query.index == Index::Gsi1
        && cursor.index_key.is_none()
    {
        return Err(StoreError::Invalid(
            "a cursor for the secondary index needs its index key".into(),
        ));
    }
    Ok(())
}

pub fn validate_transaction(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1..={MAX_TRANSACTION_OPS} operations"
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        match op {
            WriteOp::Put { item, .. } => validate_item(item)?,
            WriteOp::Update(update) => validate_update(update)?,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => validate_key(key)?,
        }
        if !seen.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "the transaction touches {:?} twice",
                op.key()
            )));
        }
    }
    Ok(())
}
