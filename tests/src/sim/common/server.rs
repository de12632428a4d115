//! Serving a simulator router: background task, graceful shutdown, request gate (stats + rate limit).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::rate::{Decision, RateLimiter};
use super::stats::{RequestRecord, Stats};

/// Counts every request and applies the rate limit to the paths it covers.
pub(crate) struct Gate {
    pub stats: Arc<Stats>,
    pub limiter: Option<RateLimiter>,
    /// Whether a path is subject to the rate limit.
    pub limited: fn(&str) -> bool,
    /// The system's 429 answer, given the `Retry-After` seconds.
    pub reject: fn(u64) -> Response,
}

pub(crate) async fn gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    gate.stats.count_request();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut resp = None;
    if let Some(limiter) = &gate.limiter
        && (gate.limited)(&path)
    {
        match limiter.check() {
            Decision::Allow => {}
            Decision::Delay(d) => {
                gate.stats.count_delayed();
                tokio::time::sleep(d).await;
            }
            Decision::Reject(secs) => {
                gate.stats.count_throttled();
                resp = Some((gate.reject)(secs));
            }
        }
    }
    let resp = match resp {
        Some(r) => r,
        None => next.run(req).await,
    };
    gate.stats.record(RequestRecord {
        method,
        path,
        query,
        status: resp.status().as_u16(),
    });
    resp
}

/// A router served in the background until stopped or dropped.
#[derive(Debug)]
pub(crate) struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections and waits for in-flight requests to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `listen` and serves `router` on a background task.
pub(crate) async fn serve(router: Router, listen: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Running {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}
