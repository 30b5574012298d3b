//! [`HookedTable`]: a table that runs hooks around the calls to another, for tests and
//! benchmarks that count reads, make a concurrent change land at a chosen moment
//! (between another writer's read and its write), or cancel transactions the way
//! DynamoDB does under contention.

use async_trait::async_trait;
use domain::store::{Condition, Item, Key, Page, Query, StoreError, Table, Update, WriteOp};
use std::sync::Arc;

/// What a [`HookedTable`] runs before the calls it passes on. Each does nothing unless
/// implemented.
#[async_trait]
pub trait TableHooks: Send + Sync + 'static {
    /// Before each `get` and `query`.
    async fn before_read(&self) {}

    /// Before each put, with the item and the condition about to be written.
    async fn before_put(&self, _item: &Item, _condition: &Condition) {}

    /// Before each transaction; an error is the transaction's answer instead, and
    /// nothing is written.
    async fn before_transaction(&self, _ops: &[WriteOp]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `inner` with `hooks` run before its calls; everything else passes straight through.
pub struct HookedTable<H> {
    pub inner: Arc<dyn Table>,
    pub hooks: H,
}

#[async_trait]
impl<H: TableHooks> Table for HookedTable<H> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.hooks.before_read().await;
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        self.hooks.before_put(&item, &condition).await;
        self.inner.put(item, condition).await
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        self.inner.update(update).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        self.inner.delete(key, condition).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.hooks.before_read().await;
        self.inner.query(query).await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.hooks.before_transaction(&ops).await?;
        self.inner.transact_write(ops).await
    }
}
