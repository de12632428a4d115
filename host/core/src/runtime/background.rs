//! The background pool: calls that burn CPU finish on threads the OS schedules only when nothing else
//! wants the CPU (`SCHED_IDLE` on Linux), so a runaway plugin cannot slow down well-behaved systems.
//!
//! A call starts on the caller's task. Once it has used its CPU budget the epoch callback marks it demoted,
//! and [`drive`] moves the rest of it, store and all, onto this pool; a plugin version that trapped or hit a
//! limit recently starts its calls here. The guest's HTTP requests still go out through the service's own
//! runtime, so that connections and tokens shared with other systems are never driven by an idle-priority
//! thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// Threads of the pool.
const THREADS: usize = 2;

/// The pool, started on first use.
#[derive(Default)]
pub struct Background {
    runtime: OnceLock<Option<tokio::runtime::Runtime>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropping a runtime from async code would panic; its calls are abandoned either way.
        if let Some(Some(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Why a call could not finish on the pool.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    /// The pool's threads could not be started.
    #[error("the background pool could not be started")]
    Unavailable,
    /// The call panicked in the host; the panic's message.
    #[error("the call panicked in the host: {0}")]
    Panicked(String),
}

impl Background {
    fn handle(&self) -> Option<&tokio::runtime::Runtime> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(THREADS)
                    .thread_name("plugin-background")
                    .on_thread_start(lower_priority)
                    .on_thread_park(crate::idle::thread_idle)
                    .enable_all()
                    .build()
                    .map_err(|e| tracing::error!(error = %e, "cannot start the plugins' background pool"))
                    .ok()
            })
            .as_ref()
    }

    /// Drops `value` on the pool (a runaway call's store: resetting its memory is work too).
    pub fn release<T: Send + 'static>(&self, value: T) {
        match self.handle() {
            Some(rt) => drop(rt.spawn(async move { drop(value) })),
            None => drop(value),
        }
    }

    /// Runs `call` on the pool and waits for it; dropping the returned future aborts it.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, BackgroundError> {
        let Some(rt) = self.handle() else {
            return Err(BackgroundError::Unavailable);
        };
        let mut task = AbortOnDrop(rt.spawn(call));
        (&mut task.0)
            .await
            .map_err(|e| BackgroundError::Panicked(e.to_string()))
    }
}

/// Polls `call` here while `demoted` is unset; once it is set, finishes `call` on the pool.
///
/// `call` comes boxed: a plugin call's future is large (the guest call and its timeout), and the futures
/// that await this one (handlers, middleware) are moved whole from layer to layer before they are polled.
/// Boxed where it is made, it is copied once, not at every move.
pub async fn drive<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    mut call: Pin<Box<F>>,
    demoted: &AtomicBool,
    pool: &Background,
) -> Result<T, BackgroundError> {
    let here = std::future::poll_fn(|cx| {
        if demoted.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        call.as_mut().poll(cx).map(Some)
    })
    .await;
    match here {
        Some(out) => Ok(out),
        None => pool.run(call).await,
    }
}

/// Aborts the task when the caller gives up on it (a timeout, a client that went away).
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives the calling thread the lowest CPU priority the OS has.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler with pid 0 changes only the calling thread, and `param` outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the priority of a plugin background thread; runaway calls compete at normal priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_demoted_call_finishes_on_the_pool() {
        let pool = Background::default();
        let demoted = AtomicBool::new(false);
        let here = drive(
            Box::pin(async { std::thread::current().name().map(String::from) }),
            &demoted,
            &pool,
        )
        .await
        .expect("ran");
        assert_ne!(here.as_deref(), Some("plugin-background"));

        demoted.store(true, Ordering::Relaxed);
        let there = drive(
            Box::pin(async { std::thread::current().name().map(String::from) }),
            &demoted,
            &pool,
        )
        .await
        .expect("ran");
        assert_eq!(there.as_deref(), Some("plugin-background"));
    }

    #[tokio::test]
    async fn a_call_is_moved_when_it_is_demoted_midway() {
        let pool = Background::default();
        let demoted = std::sync::Arc::new(AtomicBool::new(false));
        let flag = demoted.clone();
        let threads = drive(
            Box::pin(async move {
                let before = std::thread::current().name().map(String::from);
                flag.store(true, Ordering::Relaxed);
                tokio::task::yield_now().await;
                (before, std::thread::current().name().map(String::from))
            }),
            &demoted,
            &pool,
        )
        .await
        .expect("ran");
        assert_ne!(threads.0.as_deref(), Some("plugin-background"));
        assert_eq!(threads.1.as_deref(), Some("plugin-background"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_idle_priority() {
        let pool = Background::default();
        let policy = pool
            .run(async {
                // SAFETY: reads the calling thread's policy.
                unsafe { libc::sched_getscheduler(0) }
            })
            .await
            .expect("ran");
        assert_eq!(policy, libc::SCHED_IDLE);
    }

    #[tokio::test]
    async fn dropping_the_caller_aborts_the_call() {
        let pool = Background::default();
        let finished = std::sync::Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let call = pool.run(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            flag.store(true, Ordering::Relaxed);
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), call).await;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::Relaxed));
    }
}
