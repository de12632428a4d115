//! The per-client limits of the proxy endpoints: a token bucket per technical user (its rate), and a bound
//! on its requests in flight (so that one client waiting on a slow backend cannot hold every call the
//! service can make). A client over either gets 429 with `Retry-After` and a SCIM error body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests in flight per technical user when `serve --proxy-max-in-flight` does not say otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// Counts each client's requests in flight; [`InFlight::enter`] refuses one over the bound.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    counts: Mutex<HashMap<String, usize>>,
}

/// One admitted request: its client's count goes down when it is dropped, however the request ends.
#[derive(Debug)]
pub struct Admitted {
    owner: Arc<InFlight>,
    client: String,
}

impl InFlight {
    /// At most `max` (at least 1) requests in flight per client.
    pub fn new(max: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Admits one more request of `client`, or `None` when it already has `max` in flight.
    pub fn enter(self: &Arc<Self>, client: &str) -> Option<Admitted> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client.to_string()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Admitted {
            owner: self.clone(),
            client: client.to_string(),
        })
    }

    /// Requests of `client` in flight now.
    pub fn in_flight(&self, client: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(client).copied().unwrap_or(0)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

/// A token bucket per client: `per_second` requests per second on average, bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter of `per_second` requests per second per client with bursts of `burst` (at least 1);
    /// `None` (no limit) when `per_second` is not a positive number.
    pub fn new(per_second: f64, burst: u32) -> Option<RateLimiter> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        Some(RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The configured rate (requests per second per client).
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Takes one request of `client`'s allowance; `Err` holds how long until one is available.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(client) {
            // Idle clients' buckets are full again: forgetting them changes nothing.
            let refill = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < refill);
        }
        let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_client() {
        let limiter = RateLimiter::new(2.0, 3).expect("limiter");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).expect_err("over the burst");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another client has its own allowance.
        assert!(limiter.check_at("b", t0).is_ok());
        // Half a second later one request is allowed again, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.check_at("a", t1).is_ok());
        assert!(limiter.check_at("a", t1).is_err());
    }

    #[test]
    fn in_flight_is_bounded_per_client_and_freed_on_drop() {
        let limit = InFlight::new(2);
        let a1 = limit.enter("a").expect("first");
        let _a2 = limit.enter("a").expect("second");
        assert!(limit.enter("a").is_none(), "a third is over the bound");
        let _b = limit.enter("b").expect("another client has its own bound");
        drop(a1);
        assert_eq!(limit.in_flight("a"), 1);
        assert!(limit.enter("a").is_some(), "a finished request frees its place");
    }

    #[test]
    fn off_without_a_positive_rate() {
        assert!(RateLimiter::new(0.0, 10).is_none());
        assert!(RateLimiter::new(-1.0, 10).is_none());
        assert!(RateLimiter::new(f64::NAN, 10).is_none());
    }
}
