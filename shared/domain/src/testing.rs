//! In-memory stand-ins for the ports, for unit tests of services that use the whole
//! table (conditions, updates, queries on both orderings, transactions), blobs, secrets,
//! mail and DNS.
//! The adapters' conformance suites hold the real ones to the same rules.

use crate::blobs::{
    Blob, BlobError, BlobInfo, BlobKey, BlobListing, Blobs, PresignedRequest, validate_list_limit,
};
use crate::dns::{DnsError, DnsResolver};
use crate::mail::{Mail, MailError, Mailer, SentMail};
use crate::secrets::{SecretVault, SecretVaultError, check_name};
use crate::store::{
    Condition, Cursor, Index, Item, Key, Page, Query, SortKeyCondition, StoreError, Table, Update,
    WriteOp, validate_item, validate_key, validate_query, validate_transaction, validate_update,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A table in a map, with DynamoDB's semantics as far as the port states them. It can be
/// told to fail every write after a number of them, as a process that crashes does.
pub struct MemoryTable {
    items: Mutex<BTreeMap<Key, Item>>,
    writes_left: AtomicUsize,
}

impl Default for MemoryTable {
    fn default() -> Self {
        Self {
            items: Mutex::new(BTreeMap::new()),
            writes_left: AtomicUsize::new(usize::MAX),
        }
    }
}

impl MemoryTable {
    /// Lets `writes` more writes through, then fails every one as unavailable.
    pub fn crash_after_writes(&self, writes: usize) {
        self.writes_left.store(writes, Ordering::SeqCst);
    }

    /// Lets every write through again (the process restarted).
    pub fn restart(&self) {
        self.writes_left.store(usize::MAX, Ordering::SeqCst);
    }

    /// Every item, in key order.
    pub fn items(&self) -> Vec<Item> {
        self.lock().values().cloned().collect()
    }

    /// The items whose partition key starts with `prefix`.
    pub fn items_in(&self, prefix: &str) -> Vec<Item> {
        self.items()
            .into_iter()
            .filter(|item| item.key.pk.starts_with(prefix))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Item>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_allowed(&self) -> Result<(), StoreError> {
        let allowed = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                usize::MAX => Some(usize::MAX),
                0 => None,
                left => Some(left - 1),
            })
            .is_ok();
        if allowed {
            Ok(())
        } else {
            Err(StoreError::Unavailable("the process crashed".into()))
        }
    }
}

fn holds(condition: Condition, current: Option<&Item>) -> bool {
    match condition {
        Condition::None => true,
        Condition::NotExists => current.is_none(),
        Condition::NotExistsOrExpired { now } => current.is_none_or(|item| item.is_expired(now)),
        Condition::Exists => current.is_some(),
        Condition::VersionIs(version) => current.is_some_and(|item| item.version == version),
    }
}

fn updated(current: Option<&Item>, update: &Update) -> Result<Item, StoreError> {
    let mut item = match current {
        Some(item) => {
            let mut item = item.clone();
            item.version += 1;
            item
        }
        None => Item::new(update.key.clone(), Default::default()),
    };
    for (name, value) in &update.set {
        item.attributes.insert(name.clone(), value.clone());
    }
    for name in &update.remove {
        item.attributes.remove(name);
    }
    for (name, by) in &update.increment {
        let current = match item.attributes.get(name) {
            None => 0,
            Some(value) => value
                .as_i64()
                .ok_or_else(|| StoreError::Invalid(format!("{name} is not an integer")))?,
        };
        item.attributes
            .insert(name.clone(), serde_json::Value::from(current + by));
    }
    Ok(item)
}

/// Where an item sorts in a query of `index`.
fn position(item: &Item, index: Index) -> Option<(String, String, String)> {
    match index {
        Index::Primary => Some((item.key.sk.clone(), String::new(), String::new())),
        Index::Gsi1 => item.index_key.as_ref().map(|index_key| {
            (
                index_key.sk.clone(),
                item.key.pk.clone(),
                item.key.sk.clone(),
            )
        }),
    }
}

fn cursor_position(cursor: &Cursor, index: Index) -> (String, String, String) {
    match (index, &cursor.index_key) {
        (Index::Gsi1, Some(index_key)) => (
            index_key.sk.clone(),
            cursor.key.pk.clone(),
            cursor.key.sk.clone(),
        ),
        _ => (cursor.key.sk.clone(), String::new(), String::new()),
    }
}

#[async_trait]
impl Table for MemoryTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        validate_item(&item)?;
        self.write_allowed()?;
        let mut items = self.lock();
        if !holds(condition, items.get(&item.key)) {
            return Err(StoreError::ConditionFailed);
        }
        items.insert(item.key.clone(), item);
        Ok(())
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        validate_update(&update)?;
        self.write_allowed()?;
        let mut items = self.lock();
        let current = items.get(&update.key);
        if !holds(update.condition, current) {
            return Err(StoreError::ConditionFailed);
        }
        let item = updated(current, &update)?;
        items.insert(item.key.clone(), item.clone());
        Ok(item)
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        validate_key(key)?;
        self.write_allowed()?;
        let mut items = self.lock();
        if !holds(condition, items.get(key)) {
            return Err(StoreError::ConditionFailed);
        }
        Ok(items.remove(key))
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        validate_query(&query)?;
        let items = self.lock();
        let mut selected: Vec<((String, String, String), &Item)> = items
            .values()
            .filter(|item| match query.index {
                Index::Primary => item.key.pk == query.partition,
                Index::Gsi1 => item
                    .index_key
                    .as_ref()
                    .is_some_and(|index_key| index_key.pk == query.partition),
            })
            .filter_map(|item| position(item, query.index).map(|at| (at, item)))
            .filter(|((sort, _, _), _)| match &query.sort {
                SortKeyCondition::Any => true,
                SortKeyCondition::BeginsWith(prefix) => sort.starts_with(prefix.as_str()),
                SortKeyCondition::Between(low, high) => low <= sort && sort <= high,
            })
            .collect();
        selected.sort_by(|a, b| a.0.cmp(&b.0));
        if !query.forward {
            selected.reverse();
        }
        if let Some(cursor) = &query.start_after {
            let after = cursor_position(cursor, query.index);
            selected.retain(|(at, _)| {
                if query.forward {
                    *at > after
                } else {
                    *at < after
                }
            });
        }
        let more = selected.len() > query.limit;
        selected.truncate(query.limit);
        let next = match (more, selected.last()) {
            (true, Some((_, last))) => Some(Cursor {
                key: last.key.clone(),
                index_key: match query.index {
                    Index::Primary => None,
                    Index::Gsi1 => last.index_key.clone(),
                },
            }),
            _ => None,
        };
        Ok(Page {
            items: selected.into_iter().map(|(_, item)| item.clone()).collect(),
            next,
        })
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        self.write_allowed()?;
        let mut items = self.lock();
        let failed: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| !holds(op.condition(), items.get(op.key())))
            .map(|(at, _)| at)
            .collect();
        if !failed.is_empty() {
            return Err(StoreError::TransactionCanceled { failed });
        }
        for op in ops {
            match op {
                WriteOp::Put { item, .. } => {
                    items.insert(item.key.clone(), item);
                }
                WriteOp::Update(update) => {
                    let item = updated(items.get(&update.key), &update)?;
                    items.insert(item.key.clone(), item);
                }
                WriteOp::Delete { key, .. } => {
                    items.remove(&key);
                }
                WriteOp::Check { .. } => {}
            }
        }
        Ok(())
    }
}

/// Blobs in a map. It serves no URLs: tests that need them use the folder adapter.
#[derive(Default)]
pub struct MemoryBlobs {
    blobs: Mutex<BTreeMap<String, Blob>>,
}

impl MemoryBlobs {
    /// Every stored key, in byte order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Blob>> {
        self.blobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Blobs for MemoryBlobs {
    async fn put(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        let blob = Blob {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.lock().insert(key.as_str().to_owned(), blob);
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Blob, BlobError> {
        self.lock()
            .get(key.as_str())
            .cloned()
            .ok_or(BlobError::NotFound)
    }

    async fn head(&self, key: &BlobKey) -> Result<BlobInfo, BlobError> {
        let blob = self.get(key).await?;
        Ok(BlobInfo {
            size: blob.bytes.len() as u64,
            content_type: blob.content_type,
        })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.lock().remove(key.as_str());
        Ok(())
    }

    async fn list(
        &self,
        folder: &BlobKey,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<BlobListing, BlobError> {
        validate_list_limit(limit)?;
        let prefix = format!("{folder}/");
        let mut keys: Vec<BlobKey> = self
            .lock()
            .keys()
            .filter(|key| key.starts_with(&prefix))
            .filter(|key| after.is_none_or(|after| key.as_str() > after.as_str()))
            .map(|key| BlobKey::parse(key))
            .collect::<Result<_, _>>()?;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more { keys.last().cloned() } else { None };
        Ok(BlobListing { keys, next })
    }

    async fn presign_put(
        &self,
        _: &BlobKey,
        _: &str,
        _: std::time::Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Invalid("the memory store serves no URLs".into()))
    }

    async fn presign_get(
        &self,
        _: &BlobKey,
        _: std::time::Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Invalid("the memory store serves no URLs".into()))
    }
}

/// Secrets in a map.
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<BTreeMap<String, String>>,
}

impl MemorySecrets {
    /// Every stored name.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SecretVault for MemorySecrets {
    async fn put(&self, name: &str, value: &str) -> Result<(), SecretVaultError> {
        check_name(name)?;
        self.lock().insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<String>, SecretVaultError> {
        check_name(name)?;
        Ok(self.lock().get(name).cloned())
    }

    async fn delete(&self, name: &str) -> Result<(), SecretVaultError> {
        check_name(name)?;
        self.lock().remove(name);
        Ok(())
    }
}

/// A mailer that keeps what it is given; sends to addresses it is told about fail.
#[derive(Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<Mail>>,
    unavailable_for: Mutex<HashSet<String>>,
    rejected_for: Mutex<HashSet<String>>,
}

impl RecordingMailer {
    pub fn sent(&self) -> Vec<Mail> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends to `address` fail as a provider that is down fails (worth a retry).
    pub fn unavailable_for(&self, address: &str) {
        self.unavailable_for
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(address.to_owned());
    }

    /// Sends to `address` are refused for good (a suppressed address).
    pub fn reject(&self, address: &str) {
        self.rejected_for
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(address.to_owned());
    }

    /// Sends to every address succeed again.
    pub fn recover(&self) {
        self.unavailable_for
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &Mail) -> Result<SentMail, MailError> {
        let to = mail.to().as_str();
        let contains = |set: &Mutex<HashSet<String>>| {
            set.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(to)
        };
        if contains(&self.unavailable_for) {
            return Err(MailError::Unavailable("the provider is down".into()));
        }
        if contains(&self.rejected_for) {
            return Err(MailError::Rejected("the address is suppressed".into()));
        }
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sent.push(mail.clone());
        Ok(SentMail {
            message_id: format!("memory-{}", sent.len()),
        })
    }
}

/// A name system in a map: TXT records by name, and a failure to answer with instead.
#[derive(Default)]
pub struct MemoryDns {
    records: Mutex<BTreeMap<String, Vec<String>>>,
    failure: Mutex<Option<DnsError>>,
    lookups: AtomicUsize,
}

impl MemoryDns {
    /// Adds a TXT record at `name`.
    pub fn publish(&self, name: &str, value: &str) {
        self.lock()
            .entry(name.to_owned())
            .or_default()
            .push(value.to_owned());
    }

    /// Every look-up fails with `failure` until told `None`.
    pub fn fail_with(&self, failure: Option<DnsError>) {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = failure;
    }

    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<String>>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl DnsResolver for MemoryDns {
    async fn txt_records(&self, name: &str) -> Result<Vec<String>, DnsError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if let Some(failure) = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
        {
            return Err(failure);
        }
        Ok(self.lock().get(name).cloned().unwrap_or_default())
    }
}
