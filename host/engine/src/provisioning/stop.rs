//! A run's stop request: a flag checked at entity boundaries, and a wake-up for everything that waits
//! (retry backoff, throttling, the read of the next page), so that a stop takes effect at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Cheap to clone; every clone sees the same request. The default is never asked to stop (real-time
/// events, single-entity provisioning, approved deletes).
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<State>);

#[derive(Debug, Default)]
struct State {
    requested: AtomicBool,
    wake: Notify,
}

impl StopSignal {
    /// A signal nobody has asked yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to stop; wakes every waiter.
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Completes when a stop is asked for (at once if it was already).
    pub async fn requested(&self) {
        loop {
            let woken = self.0.wake.notified();
            tokio::pin!(woken);
            // Registered before the check, so a request between the check and the await still wakes us.
            woken.as_mut().enable();
            if self.is_requested() {
                return;
            }
            woken.await;
        }
    }

    /// Sleeps for `wait` unless a stop comes first; `false` when it was cut short by a stop.
    pub async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.requested() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_request_cuts_every_wait_short() {
        let stop = StopSignal::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.sleep(Duration::from_secs(300)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = Instant::now();
        stop.request();
        assert!(!waiter.await.expect("waiter"), "the sleep was cut short");
        assert!(asked.elapsed() < Duration::from_secs(1));
        // Already requested: no wait at all.
        assert!(!stop.sleep(Duration::from_secs(300)).await);
        assert!(StopSignal::new().sleep(Duration::from_millis(1)).await);
    }
}
