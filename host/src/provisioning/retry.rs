//! Retrying plugin calls: transient failures with exponential backoff and jitter, throttling after the
//! system's `Retry-After` (or a short backoff when it gives none).

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use super::settings::RetryPolicy;
use crate::connector::ConnectorError;
use crate::runtime::CallError;

/// Extra retries granted to throttling beyond the policy's attempts: a throttled request is a request the
/// system wants later, not a failure, and a job should not drop it.
const EXTRA_THROTTLE_RETRIES: u32 = 5;

/// Longest single wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// How a failed call should be treated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Retry {
    /// Try again after the backoff.
    Transient,
    /// Try again after this long (the system's `Retry-After`), or the backoff when it said nothing.
    Throttled(Option<Duration>),
    /// Retrying does not help.
    Never,
}

/// Classifies a failed call.
pub fn classify(e: &CallError) -> Retry {
    match e {
        CallError::Connector(ConnectorError::Transient { .. }) | CallError::Timeout { .. } => Retry::Transient,
        CallError::Connector(ConnectorError::Throttled { retry_after_ms, .. }) => {
            Retry::Throttled(retry_after_ms.map(Duration::from_millis))
        }
        _ => Retry::Never,
    }
}

/// The wait before retry number `n` (1-based): `base × 2^(n-1)`, ±25 % jitter, capped.
pub fn backoff(base: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
    let jitter = rand::rng().random_range(0.75..1.25);
    exp.mul_f64(jitter).min(MAX_WAIT)
}

/// Runs `call` until it succeeds, fails for good, or the retries are used up. Returns the result and how
/// many retries it took. `before_retry` sees each retryable error (e.g. to look a create up before
/// repeating it) and may end the loop by returning a result.
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut call: F) -> (Result<T, CallError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut retries = 0u32;
    let mut throttled = 0u32;
    let mut transient = 0u32;
    loop {
        let result = call(retries).await;
        let Err(e) = &result else {
            return (result, retries);
        };
        let wait = match classify(e) {
            Retry::Never => return (result, retries),
            Retry::Transient => {
                transient += 1;
                if transient > policy.attempts {
                    return (result, retries);
                }
                backoff(policy.interval, transient)
            }
            Retry::Throttled(after) => {
                throttled += 1;
                if throttled > policy.attempts + EXTRA_THROTTLE_RETRIES {
                    return (result, retries);
                }
                // Without Retry-After, start small: the rate limiter already paces the next attempt.
                after
                    .unwrap_or_else(|| backoff(policy.interval.min(Duration::from_secs(1)), throttled))
                    .min(MAX_WAIT)
            }
        };
        retries += 1;
        tracing::debug!(retry = retries, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
        crate::metrics::job_retry(match classify(e) {
            Retry::Throttled(_) => "throttled",
            _ => "transient",
        });
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn transient() -> CallError {
        CallError::Connector(ConnectorError::Transient { message: "502".into() })
    }

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            interval: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_attempts() {
        let calls = AtomicU32::new(0);
        let (result, retries) = with_retries(policy(2), |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(transient())
        })
        .await;
        assert!(result.is_err());
        assert_eq!((calls.load(Ordering::SeqCst), retries), (3, 2));
    }

    #[tokio::test]
    async fn success_after_a_failure_and_no_retry_of_rejections() {
        let (result, retries) = with_retries(
            policy(2),
            |n| async move { if n == 0 { Err(transient()) } else { Ok(n) } },
        )
        .await;
        assert_eq!((result.ok(), retries), (Some(1), 1));

        let calls = AtomicU32::new(0);
        let (result, retries) = with_retries(policy(5), |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(CallError::Connector(ConnectorError::Rejected {
                status: 400,
                message: "bad".into(),
            }))
        })
        .await;
        assert!(result.is_err());
        assert_eq!((calls.load(Ordering::SeqCst), retries), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_waits_for_retry_after_and_gets_more_retries() {
        let started = tokio::time::Instant::now();
        let (result, retries) = with_retries(policy(0), |n| async move {
            if n < 3 {
                Err(CallError::Connector(ConnectorError::Throttled {
                    retry_after_ms: Some(2000),
                    message: "429".into(),
                }))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(retries, 3);
        assert!(started.elapsed() >= Duration::from_secs(6));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = backoff(Duration::from_secs(1), 1);
        let b3 = backoff(Duration::from_secs(1), 3);
        assert!(b1 >= Duration::from_millis(750) && b1 <= Duration::from_millis(1250));
        assert!(b3 >= Duration::from_secs(3));
        assert_eq!(backoff(Duration::from_secs(100), 10), MAX_WAIT);
    }
}
