//! Login throttling: failed sign-ins counted per account and per client address in
//! fixed windows, and sign-ins refused once either count reaches its limit, until the
//! window ends.
//!
//! The account is the e-mail address as typed (normalized, hashed), whether or not such
//! an account exists, so the answer never tells which addresses are registered. Counters
//! live in global partitions (`THROTTLE#account#<hash>`, `THROTTLE#address#<ip>`), one
//! item per window with a TTL; an atomic increment counts each failure, so concurrent
//! guesses all count.

use crate::clock::Clock;
use crate::store::{Attributes, Condition, Item, Key, StoreError, Table, Update};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How many failures, in how long, before sign-ins wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleLimits {
    pub window_seconds: i64,
    /// Failures for one e-mail address: a guessing attack on one account.
    pub per_account: i64,
    /// Failures from one client address: one source trying many accounts.
    pub per_address: i64,
}

impl Default for ThrottleLimits {
    /// OWASP's advice in numbers: a handful of tries per account per quarter hour, and
    /// room for an office behind one address.
    fn default() -> Self {
        Self {
            window_seconds: 15 * 60,
            per_account: 10,
            per_address: 100,
        }
    }
}

/// Sign-ins must wait this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed sign-ins; retry in {retry_after_seconds} s")]
pub struct Throttled {
    pub retry_after_seconds: i64,
}

pub struct LoginThrottle {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    limits: ThrottleLimits,
}

const FAILURES: &str = "failures";

impl LoginThrottle {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>, limits: ThrottleLimits) -> Self {
        Self {
            table,
            clock,
            limits,
        }
    }

    /// Refuses when the account or the address has used up its failures in this window.
    pub async fn check(
        &self,
        account: &str,
        address: Option<&str>,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let (window, ends) = self.window();
        let mut counters = vec![(account_key(account, window), self.limits.per_account)];
        if let Some(address) = address {
            counters.push((address_key(address, window), self.limits.per_address));
        }
        for (key, limit) in counters {
            let failures = self
                .table
                .get(&key)
                .await?
                .and_then(|item| item.attributes.get(FAILURES)?.as_i64())
                .unwrap_or(0);
            if failures >= limit {
                let retry = (ends - self.clock.now()).num_seconds().max(1);
                return Ok(Err(Throttled {
                    retry_after_seconds: retry,
                }));
            }
        }
        Ok(Ok(()))
    }

    /// Counts a failed sign-in against the account and the address.
    pub async fn record_failure(
        &self,
        account: &str,
        address: Option<&str>,
    ) -> Result<(), StoreError> {
        let (window, ends) = self.window();
        let mut keys = vec![account_key(account, window)];
        keys.extend(address.map(|address| address_key(address, window)));
        for key in keys {
            self.count(key, ends.timestamp() + 86_400).await?;
        }
        Ok(())
    }

    /// Adds one to the counter under `key`: an increment of the window's item, or, for
    /// the window's first failure, the item itself, which expires at `expires_at` (the
    /// table forgets it; an increment keeps the expiry).
    async fn count(&self, key: Key, expires_at: i64) -> Result<(), StoreError> {
        for _ in 0..3 {
            let mut update = Update::new(key.clone());
            update.increment.push((FAILURES.to_owned(), 1));
            update.condition = Condition::Exists;
            match self.table.update(update).await {
                Err(StoreError::ConditionFailed) => {}
                other => return other.map(|_| ()),
            }
            let mut attributes = Attributes::new();
            attributes.insert(FAILURES.to_owned(), serde_json::Value::from(1));
            let item = Item::new(key.clone(), attributes).expiring_at(expires_at);
            match self.table.put(item, Condition::NotExists).await {
                // Another failure created it first: increment it.
                Err(StoreError::ConditionFailed) => {}
                other => return other,
            }
        }
        Err(StoreError::Unavailable(
            "a throttle counter kept changing".into(),
        ))
    }

    /// The current window's number and when it ends.
    fn window(&self) -> (i64, DateTime<Utc>) {
        let now = self.clock.now().timestamp();
        let window = now.div_euclid(self.limits.window_seconds);
        let ends = (window + 1) * self.limits.window_seconds;
        (
            window,
            DateTime::from_timestamp(ends, 0).unwrap_or_else(|| self.clock.now()),
        )
    }
}

/// The typed address, normalized as logins compare it, hashed: no address in a key.
fn account_key(account: &str, window: i64) -> Key {
    let normalized = account.trim().to_lowercase();
    let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(normalized.as_bytes()));
    Key::new(format!("THROTTLE#account#{hash}"), format!("W#{window}"))
}

fn address_key(address: &str, window: i64) -> Key {
    Key::new(format!("THROTTLE#address#{address}"), format!("W#{window}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_ignore_case_and_spaces_and_hold_no_address() {
        let a = account_key(" Anna.Lind@NordlysFleet.se", 7);
        assert_eq!(a, account_key("anna.lind@nordlysfleet.se ", 7));
        assert!(!a.pk.contains("anna"));
        assert_ne!(a, account_key("anna.lind@nordlysfleet.se", 8));
    }
}
