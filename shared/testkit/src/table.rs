//! [`HookedTable`]: a table that runs a hook before each put, for tests that make a
//! concurrent change land at a chosen moment (between another writer's read and its
//! write).

use async_trait::async_trait;
use domain::store::{Condition, Item, Key, Page, Query, StoreError, Table, Update, WriteOp};
use std::sync::Arc;

/// What a [`HookedTable`] runs before each put, with the item and the condition about
/// to be written.
#[async_trait]
pub trait BeforePut: Send + Sync + 'static {
    async fn before_put(&self, item: &Item, condition: &Condition);
}

/// `inner` with `hook` run before every put; everything else passes straight through.
pub struct HookedTable<H> {
    pub inner: Arc<dyn Table>,
    pub hook: H,
}

#[async_trait]
impl<H: BeforePut> Table for HookedTable<H> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        self.hook.before_put(&item, &condition).await;
        self.inner.put(item, condition).await
    }

    async fn update(&self, update: Update) -> Result<Item, StoreError> {
        self.inner.update(update).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<Option<Item>, StoreError> {
        self.inner.delete(key, condition).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.transact_write(ops).await
    }
}
