//! What replicas share about the targets they send to: each target's rate-limit schedule, and a pause its
//! `429 Retry-After` asked for. On a shared store every replica's requests to a target take their turn from
//! one schedule in the database, so that three replicas together keep to a 3 req/s limit and still use all
//! of it when only one of them is busy; and a pause one replica was told of holds for all of them.

use std::time::Duration;

use super::StoreError;

/// The shared limits of targets, as a backend stores them. Times are the database's clock.
#[async_trait::async_trait]
pub trait LimitStore: Send + Sync {
    /// Takes the next turn of `target` at `per_second` requests a second with bursts of `burst` requests
    /// (a generic cell rate: each turn moves the target's schedule on by `1 / per_second`), and answers how
    /// long the caller waits before sending: zero while a burst lasts, and at least until a pause ends.
    async fn reserve(&self, target: &str, per_second: f64, burst: f64) -> Result<Duration, StoreError>;
    /// Pauses `target` for every replica for `pause` (from now), unless it is paused longer already.
    async fn pause(&self, target: &str, pause: Duration) -> Result<(), StoreError>;
    /// The targets paused now, each with how long its pause lasts still.
    async fn pauses(&self) -> Result<Vec<(String, Duration)>, StoreError>;
}
