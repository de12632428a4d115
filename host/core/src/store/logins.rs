//! Failed password checks and the locks they lead to, shared by the replicas: each failure is kept for the
//! counting window, per key (`principal:NAME` or `address:IP`), and a lock holds a key until its end. Times
//! are the database's clock, so every replica counts and locks alike. The policy (how many failures lock,
//! for how long, the growing delay) is above the store, in the HTTP layer.

use std::time::Duration;

use super::StoreError;

/// Failed logins and login locks, as a backend stores them.
#[async_trait::async_trait]
pub trait LoginStore: Send + Sync {
    /// Records one failed password check for each of `keys` and answers, for each in order, how many
    /// failures it had within the last `window`, this one included. Failures older than `window` (of any
    /// key) are forgotten.
    async fn record_failure(&self, keys: &[String], window: Duration) -> Result<Vec<u32>, StoreError>;
    /// Locks `key` for `lock` from now, unless it is locked longer already.
    async fn lock(&self, key: &str, lock: Duration) -> Result<(), StoreError>;
    /// The longest lock still running among `keys`: how long it lasts still; `None` when none is locked.
    /// Ended locks are forgotten.
    async fn locked(&self, keys: &[String]) -> Result<Option<Duration>, StoreError>;
    /// Forgets the failures of `key` (after a correct password); its lock, if any, stays.
    async fn forget_failures(&self, key: &str) -> Result<(), StoreError>;
    /// The locks still running, longest first: each key and how long it lasts still.
    async fn locks(&self) -> Result<Vec<(String, Duration)>, StoreError>;
    /// Ends the lock of `key` at once and forgets its failures (an admin's unlock); `true` when a lock was
    /// running.
    async fn unlock(&self, key: &str) -> Result<bool, StoreError>;
}
