//! Rate limiters in the shapes the systems document.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// Serve it after this delay (IAS throttling band).
    Delay(Duration),
    /// Refuse with 429; `Retry-After` in whole seconds.
    Reject(u64),
}

/// The kinds of limit the simulated systems apply.
#[derive(Clone, Debug)]
pub(crate) enum Limit {
    /// A token bucket refilled at `per_second` with a burst of `ceil(per_second)` (BTP's 3 req/s);
    /// up to `queue` requests above it wait for their turn, further ones are refused.
    PerSecond { per_second: f64, queue: usize },
    /// Sliding windows, each `(max requests, window)`; all must have room (Jam: 200/min, 13 000/h).
    Windows(Vec<(u32, Duration)>),
    /// IAS: up to `soft` per minute served, up to `hard` delayed by `delay`, above that 429 for `block`.
    Throttle {
        soft: u32,
        hard: u32,
        delay: Duration,
        block: Duration,
    },
}

#[derive(Debug)]
struct LimiterState {
    tokens: f64,
    last: Instant,
    windows: Vec<VecDeque<Instant>>,
    blocked_until: Option<Instant>,
}

/// A rate limiter over all requests of one simulator.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: Limit,
    state: Mutex<LimiterState>,
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl RateLimiter {
    pub(crate) fn new(limit: Limit) -> RateLimiter {
        let windows = match &limit {
            Limit::Windows(w) => w.iter().map(|_| VecDeque::new()).collect(),
            Limit::Throttle { .. } => vec![VecDeque::new()],
            Limit::PerSecond { .. } => Vec::new(),
        };
        let tokens = match &limit {
            Limit::PerSecond { per_second, .. } => per_second.ceil().max(1.0),
            _ => 0.0,
        };
        RateLimiter {
            limit,
            state: Mutex::new(LimiterState {
                tokens,
                last: Instant::now(),
                windows,
                blocked_until: None,
            }),
        }
    }

    pub(crate) fn check(&self) -> Decision {
        self.check_at(Instant::now())
    }

    pub(crate) fn check_at(&self, now: Instant) -> Decision {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match &self.limit {
            Limit::PerSecond { per_second, queue } => {
                let rate = if per_second.is_finite() {
                    per_second.max(1e-3)
                } else {
                    1e9
                };
                let burst = rate.ceil().max(1.0);
                let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
                st.tokens = (st.tokens + elapsed * rate).min(burst);
                st.last = now;
                if st.tokens >= 1.0 {
                    st.tokens -= 1.0;
                    Decision::Allow
                } else if st.tokens - 1.0 >= -(*queue as f64) {
                    // Queued: served once its token has been refilled.
                    st.tokens -= 1.0;
                    Decision::Delay(Duration::from_secs_f64((-st.tokens / rate).min(3600.0)))
                } else {
                    Decision::Reject(ceil_secs(Duration::from_secs_f64(
                        ((1.0 - st.tokens) / rate).min(3600.0),
                    )))
                }
            }
            Limit::Windows(limits) => {
                let mut retry: Option<Duration> = None;
                for (q, (max, window)) in st.windows.iter_mut().zip(limits) {
                    while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= *window) {
                        q.pop_front();
                    }
                    if q.len() >= *max as usize {
                        let wait = q
                            .front()
                            .map(|t| window.saturating_sub(now.saturating_duration_since(*t)))
                            .unwrap_or(*window);
                        retry = Some(retry.map_or(wait, |r| r.max(wait)));
                    }
                }
                if let Some(wait) = retry {
                    return Decision::Reject(ceil_secs(wait));
                }
                for q in st.windows.iter_mut() {
                    q.push_back(now);
                }
                Decision::Allow
            }
            Limit::Throttle {
                soft,
                hard,
                delay,
                block,
            } => {
                if let Some(until) = st.blocked_until {
                    if now < until {
                        return Decision::Reject(ceil_secs(until - now));
                    }
                    st.blocked_until = None;
                    st.windows[0].clear();
                }
                let minute = Duration::from_secs(60);
                let q = &mut st.windows[0];
                while q.front().is_some_and(|t| now.saturating_duration_since(*t) >= minute) {
                    q.pop_front();
                }
                let n = q.len() as u32 + 1;
                if n > *hard {
                    st.blocked_until = Some(now.checked_add(*block).unwrap_or(now));
                    return Decision::Reject(ceil_secs(*block));
                }
                q.push_back(now);
                if n > *soft {
                    Decision::Delay(*delay)
                } else {
                    Decision::Allow
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let l = RateLimiter::new(Limit::PerSecond {
            per_second: 3.0,
            queue: 0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(t0), Decision::Allow);
        }
        assert_eq!(l.check_at(t0), Decision::Reject(1));
        assert_eq!(l.check_at(t0 + Duration::from_millis(400)), Decision::Allow);
        // With a queue, excess requests wait their turn first.
        let l = RateLimiter::new(Limit::PerSecond {
            per_second: 2.0,
            queue: 2,
        });
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0), Decision::Delay(Duration::from_millis(500)));
        assert_eq!(l.check_at(t0), Decision::Delay(Duration::from_secs(1)));
        assert!(matches!(l.check_at(t0), Decision::Reject(_)));
    }

    #[test]
    fn windows() {
        let l = RateLimiter::new(Limit::Windows(vec![
            (2, Duration::from_secs(60)),
            (3, Duration::from_secs(3600)),
        ]));
        let t0 = Instant::now();
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0 + Duration::from_secs(10)), Decision::Reject(50));
        assert_eq!(l.check_at(t0 + Duration::from_secs(61)), Decision::Allow);
        // The hourly window is now full.
        assert!(matches!(l.check_at(t0 + Duration::from_secs(200)), Decision::Reject(s) if s > 3000));
    }

    #[test]
    fn throttle() {
        let l = RateLimiter::new(Limit::Throttle {
            soft: 2,
            hard: 3,
            delay: Duration::from_secs(1),
            block: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0), Decision::Allow);
        assert_eq!(l.check_at(t0), Decision::Delay(Duration::from_secs(1)));
        assert_eq!(l.check_at(t0), Decision::Reject(60));
        assert_eq!(l.check_at(t0 + Duration::from_secs(30)), Decision::Reject(30));
        assert_eq!(l.check_at(t0 + Duration::from_secs(61)), Decision::Allow);
    }
}
