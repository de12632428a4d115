//! What the benchmarks share: percentiles, the service's plugin-call time from its metrics, and serving a
//! router on a free local port. (A folder of its own, so that cargo does not take it for a benchmark.)

// Each benchmark uses some of these.
#![allow(dead_code)]

use std::net::SocketAddr;

/// The value at fraction `p` (0 to 1) of sorted samples; `None` without samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Sum (seconds) and count of the service's plugin calls (`provisio_plugin_call_seconds`, all plugins).
pub fn plugin_time() -> (f64, f64) {
    let mut sum = 0.0;
    let mut count = 0.0;
    for line in provisio::metrics::render().lines() {
        let value = || {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if line.starts_with("provisio_plugin_call_seconds_sum") {
            sum += value();
        } else if line.starts_with("provisio_plugin_call_seconds_count") {
            count += value();
        }
    }
    (sum, count)
}

/// Serves `router` on a free port of 127.0.0.1 until the returned task is aborted or the runtime ends.
pub async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, server)
}
