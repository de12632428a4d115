//! A per-system token bucket: requests wait for their turn instead of provoking 429s.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Allows `per_second` requests a second on average, with bursts of up to one second's worth.
pub struct RateLimiter {
    requested: f64,
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter with a full bucket.
    pub fn new(requested: f64) -> Self {
        let per_second = requested.max(0.001);
        let burst = per_second.max(1.0);
        RateLimiter {
            requested,
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// The rate it was created for (before clamping), to tell whether the configuration changed.
    pub fn requested(&self) -> f64 {
        self.requested
    }

    /// Takes one token, or says how long to wait for it.
    fn try_take(&self) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            None
        } else {
            *state = (tokens, now);
            Some(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        while let Some(wait) = self.try_take() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_at_the_rate() {
        let limiter = RateLimiter::new(4.0);
        let start = tokio::time::Instant::now();
        for _ in 0..12 {
            limiter.acquire().await;
        }
        // 4 from the full bucket, 8 more at 4/s: about 2 s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2200),
            "{elapsed:?}"
        );
    }
}
