//! Retrying plugin calls: transient failures with exponential backoff and jitter, throttling after the
//! system's `Retry-After` (or a short backoff when it gives none).
//!
//! Every wait races the caller's stop request, and waits are paid from two budgets: one per call (the
//! policy's `max_wait_per_call`) and, in a job run, one shared by all calls of the run. A panic while a
//! call runs becomes that call's error, so it is counted like any other failure instead of ending the task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt as _;
use rand::Rng as _;

use super::settings::RetryPolicy;
use super::stop::StopSignal;
use crate::connector::ConnectorError;
use crate::runtime::CallError;

/// Extra retries granted to throttling beyond the policy's attempts: a throttled request is a request the
/// system wants later, not a failure, and a job should not drop it.
const EXTRA_THROTTLE_RETRIES: u32 = 5;

/// Longest single wait: a `Retry-After` of days is cut to this (and still paid from the budgets).
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What retries may spend beyond one call: the stop request every wait races, and — in a job run — the
/// run's budget of waiting, shared by all its calls. The default never stops and has no run budget
/// (real-time events, single-entity provisioning, approved deletes: each call still has its own budget).
#[derive(Clone, Debug, Default)]
pub struct RetryScope {
    /// Cuts every wait short.
    pub stop: StopSignal,
    run_budget: Option<Arc<RunBudget>>,
}

#[derive(Debug)]
struct RunBudget {
    limit: Duration,
    spent_ms: AtomicU64,
}

impl RetryScope {
    /// A job run's scope: its stop request and at most `max_wait` of waiting across all its calls.
    pub fn for_run(stop: StopSignal, max_wait: Duration) -> Self {
        RetryScope {
            stop,
            run_budget: Some(Arc::new(RunBudget {
                limit: max_wait,
                spent_ms: AtomicU64::new(0),
            })),
        }
    }

    /// Waiting spent so far from the run's budget.
    pub fn spent(&self) -> Duration {
        self.run_budget.as_ref().map_or(Duration::ZERO, |b| {
            Duration::from_millis(b.spent_ms.load(Ordering::SeqCst))
        })
    }

    /// Takes `wait` from the run's budget, or says why it cannot.
    fn reserve(&self, wait: Duration) -> Result<(), String> {
        let Some(budget) = &self.run_budget else {
            return Ok(());
        };
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let limit_ms = u64::try_from(budget.limit.as_millis()).unwrap_or(u64::MAX);
        budget
            .spent_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |spent| {
                spent.checked_add(wait_ms).filter(|total| *total <= limit_ms)
            })
            .map(|_| ())
            .map_err(|spent| {
                format!(
                    "not retried: this run has already waited {} s for retries, and waiting {} s more would pass its retry budget of {} s (provisio.job.maxRetryWaitSeconds on the source)",
                    spent / 1000,
                    wait.as_secs(),
                    budget.limit.as_secs()
                )
            })
    }
}

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

/// Runs `call` until it succeeds, fails for good, or the retries are used up (the policy's attempts, its
/// per-call budget of waiting, the scope's run budget, or a stop). Returns the result and how many retries
/// it took. `plugin` names the connector in the error a panic becomes. A call given up on keeps its error,
/// with a note saying why it was not retried.
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    scope: &RetryScope,
    plugin: &str,
    mut call: F,
) -> (Result<T, CallError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut retries = 0u32;
    let mut throttled = 0u32;
    let mut transient = 0u32;
    let mut waited = Duration::ZERO;
    loop {
        let result = guarded(plugin, call(retries)).await;
        let Err(e) = &result else {
            return (result, retries);
        };
        let kind = classify(e);
        let wait = match kind {
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
        if waited + wait > policy.max_wait_per_call {
            let note = format!(
                "not retried: after {retries} retries and {} s of waiting, waiting {} s more would pass the call's retry budget of {} s (provisio.job.maxRetryWaitPerCallSeconds)",
                waited.as_secs(),
                wait.as_secs(),
                policy.max_wait_per_call.as_secs()
            );
            return (give_up(result, &note), retries);
        }
        if let Err(note) = scope.reserve(wait) {
            return (give_up(result, &note), retries);
        }
        retries += 1;
        waited += wait;
        tracing::debug!(retry = retries, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
        crate::metrics::job_retry(match kind {
            Retry::Throttled(_) => "throttled",
            _ => "transient",
        });
        if !scope.stop.sleep(wait).await {
            return (give_up(result, "not retried: the run was stopped"), retries);
        }
    }
}

/// Runs one call of `plugin`; a panic while it runs becomes the call's error instead of ending the task.
pub async fn guarded<T>(plugin: &str, call: impl Future<Output = Result<T, CallError>>) -> Result<T, CallError> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(CallError::Host {
            plugin: plugin.to_string(),
            message: format!("the call panicked in the host: {}", panic_message(panic.as_ref())),
        }),
    }
}

/// Adds why a retryable error was given up on to its message.
fn give_up<T>(result: Result<T, CallError>, note: &str) -> Result<T, CallError> {
    result.map_err(|e| {
        tracing::warn!(error = %e, note, "a retryable call was given up on");
        match e {
            CallError::Connector(ConnectorError::Throttled {
                retry_after_ms,
                message,
            }) => CallError::Connector(ConnectorError::Throttled {
                retry_after_ms,
                message: format!("{message} ({note})"),
            }),
            CallError::Connector(ConnectorError::Transient { message }) => {
                CallError::Connector(ConnectorError::Transient {
                    message: format!("{message} ({note})"),
                })
            }
            other => other,
        }
    })
}

/// Why a task ended without an answer: its panic message, or that it was cancelled.
pub fn join_error_message(e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        format!("it panicked: {}", panic_message(e.into_panic().as_ref()))
    } else {
        "it was cancelled".into()
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_attempts() {
        let calls = AtomicU32::new(0);
        let (result, retries) = with_retries(policy(2), &RetryScope::default(), "test", |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(transient())
        })
        .await;
        assert!(result.is_err());
        assert_eq!((calls.load(Ordering::SeqCst), retries), (3, 2));
    }

    #[tokio::test]
    async fn success_after_a_failure_and_no_retry_of_rejections() {
        let (result, retries) = with_retries(policy(2), &RetryScope::default(), "test", |n| async move {
            if n == 0 { Err(transient()) } else { Ok(n) }
        })
        .await;
        assert_eq!((result.ok(), retries), (Some(1), 1));

        let calls = AtomicU32::new(0);
        let (result, retries) = with_retries(policy(5), &RetryScope::default(), "test", |_| async {
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
        let (result, retries) = with_retries(policy(0), &RetryScope::default(), "test", |n| async move {
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

    fn throttled_forever() -> CallError {
        CallError::Connector(ConnectorError::Throttled {
            retry_after_ms: Some(u64::MAX),
            message: "429".into(),
        })
    }

    #[tokio::test]
    async fn a_panic_in_a_call_is_that_calls_error() {
        let (result, retries) = with_retries(policy(2), &RetryScope::default(), "p@1", |_| async {
            if std::hint::black_box(true) {
                panic!("boom in the host");
            }
            Ok::<(), CallError>(())
        })
        .await;
        let message = result.expect_err("an error").to_string();
        assert!(message.contains("panicked in the host: boom in the host"), "{message}");
        assert!(message.contains("p@1"), "{message}");
        assert_eq!(retries, 0, "a panic is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_forever_is_capped_and_paid_from_the_call_budget() {
        let started = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let (result, retries) = with_retries(RetryPolicy::default(), &RetryScope::default(), "p", |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(throttled_forever())
        })
        .await;
        // 300 s twice fills the default budget of 600 s; the third wait would pass it.
        assert_eq!((calls.load(Ordering::SeqCst), retries), (3, 2));
        assert_eq!(started.elapsed().as_secs(), 600);
        let message = result.expect_err("given up").to_string();
        assert!(message.contains("provisio.job.maxRetryWaitPerCallSeconds"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_run_budget_is_shared_by_its_calls() {
        let scope = RetryScope::for_run(StopSignal::new(), Duration::from_secs(400));
        let (first, retries) = with_retries(RetryPolicy::default(), &scope, "p", |_| async {
            Err::<(), _>(throttled_forever())
        })
        .await;
        assert_eq!(retries, 1, "300 s fit the run's 400 s, 600 s do not: {first:?}");
        let (second, retries) = with_retries(RetryPolicy::default(), &scope, "p", |_| async {
            Err::<(), _>(throttled_forever())
        })
        .await;
        assert_eq!(retries, 0);
        let message = second.expect_err("given up").to_string();
        assert!(message.contains("provisio.job.maxRetryWaitSeconds"), "{message}");
        assert_eq!(scope.spent(), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_stop_cuts_the_wait_short() {
        let stop = StopSignal::new();
        let scope = RetryScope::for_run(stop.clone(), Duration::from_secs(3600));
        let asker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.request();
        });
        let started = std::time::Instant::now();
        let (result, _) = with_retries(RetryPolicy::default(), &scope, "p", |_| async {
            Err::<(), _>(throttled_forever())
        })
        .await;
        asker.await.expect("asker");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let message = result.expect_err("stopped").to_string();
        assert!(message.contains("the run was stopped"), "{message}");
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
