//! The sandbox holds against a hostile plugin: every misdeed fails its own call with an error that names
//! the limit or the refusal, the service stays healthy, and a well-behaved system keeps working.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use provisio::runtime::CallLimits;
use provisio::server::Settings;
use serde_json::json;

use crate::support::{Service, hostile_plugin};

/// A local upstream that records what reached it.
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn upstream() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let record = seen.clone();
    let app = Router::new()
        .route("/api/Users", get(|| async { "users" }))
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        )
        .route(
            "/api/redirect-away",
            get(|| async { Redirect::temporary("http://127.0.0.1:1/steal") }),
        )
        .route(
            "/api/whoami",
            get(|headers: HeaderMap| async move {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            }),
        )
        .fallback(move |uri: axum::http::Uri| {
            let record = record.clone();
            async move {
                record.lock().expect("lock").push(uri.to_string());
                (axum::http::StatusCode::NOT_FOUND, "no such path").into_response()
            }
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        base: format!("http://{addr}/api"),
        seen,
    }
}

fn strict_limits() -> Settings {
    Settings {
        call_limits: CallLimits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
            max_result_bytes: 4 << 20,
            max_requests_per_call: 50,
            ..CallLimits::default()
        },
        ..Settings::default()
    }
}

async fn hostile_system(service: &Service, upstream: &Upstream, mode: &str) -> String {
    service
        .create_system(json!({
            "name": format!("hostile {mode}"),
            "type": "hostile",
            "role": "target",
            "properties": { "URL": upstream.base, "mode": mode, "User": "me", "Password": "my-own-secret" }
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugin_is_contained() {
    let service = Service::start_with(strict_limits()).await;
    let (status, loaded) = service.upload_plugin(hostile_plugin()).await;
    assert_eq!(status, 201, "{loaded}");
    assert_eq!(loaded["name"], "hostile");
    let upstream = upstream().await;
    let good = hostile_system(&service, &upstream, "ok").await;

    // (mode, words the failure message must contain)
    let cases = [
        ("escape-dotdot", "dot segment"),
        ("escape-encoded", "dot segment"),
        ("escape-double-encoded", "encoded twice"),
        ("escape-backslash", "backslash"),
        ("escape-at", "absolute URL"),
        ("absolute-url", "absolute URL"),
        ("other-port", "another host"),
        ("unknown-upstream", "unknown upstream"),
        ("redirect", "redirect refused"),
        ("loop", "exceeded its time limit"),
        ("sleep", "exceeded its time limit"),
        ("import-loop", "exceeded its time limit"),
        ("slow-upstream", "exceeded its time limit"),
        ("memory", "exceeded its memory limit"),
        ("gigabyte", "exceeded its memory limit"),
        ("stack", "exceeded its stack limit"),
        ("stack-memory", "trapped"),
        ("panic", "hostile plugin panicked on purpose"),
        ("huge-result", "over the limit"),
        ("file", "file read failed"),
        ("request-flood", "requests in one call"),
    ];
    let before = hostile_stats(&service).await;
    for (mode, expected) in cases {
        let id = hostile_system(&service, &upstream, mode).await;
        let (ok, message) = service.test_connection(&id).await;
        assert!(!ok, "{mode}: must fail, got {message}");
        assert!(
            message.contains(expected),
            "{mode}: {message:?} should mention {expected:?}"
        );
        assert!(service.healthy().await, "{mode}: the service must stay healthy");
        let (ok, message) = service.test_connection(&good).await;
        assert!(ok, "{mode}: a well-behaved system must keep working: {message}");
    }
    assert!(
        upstream.seen.lock().expect("lock").is_empty(),
        "nothing outside the allowed paths reached the upstream"
    );

    // Every event is recorded against the plugin version, in the API and in /metrics.
    let after = hostile_stats(&service).await;
    let grew = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    // loop, sleep, import-loop, slow-upstream (inside a host call), memory, gigabyte, stack, huge-result.
    assert!(grew("limitHits") >= 8, "{after}");
    assert!(grew("traps") >= 2, "panic and stack-memory: {after}");
    // The six escapes, the unknown upstream, the redirect and the request flood.
    assert!(grew("deniedRequests") >= 9, "{after}");
    // The endless loops ran past their CPU budget and were throttled before their deadline stopped them.
    assert!(grew("throttledCalls") >= 2, "loop, import-loop: {after}");
    assert!(after["lastIncident"]["message"].as_str().is_some(), "{after}");
    let metrics = service
        .http
        .get(format!("{}/metrics", service.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for outcome in ["timeout", "memory-limit", "stack-overflow", "trap", "result-too-large"] {
        let line = format!("provisio_plugin_calls_total{{plugin=\"hostile@1.0.0\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }
    assert!(metrics.contains("provisio_plugin_denied_requests_total{plugin=\"hostile@1.0.0\"}"));

    // Contained successes: no environment, and a forged system id changes nothing.
    let id = hostile_system(&service, &upstream, "env").await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(ok, "{message}");
    let c = service.connector(&id);
    let said = c
        .runtime
        .test_connection(&c.plugin, &c.target)
        .await
        .expect("env mode answers");
    assert_eq!(said, "0 environment variables");

    let id = hostile_system(&service, &upstream, "other-system").await;
    let c = service.connector(&id);
    let said = c.runtime.test_connection(&c.plugin, &c.target).await.expect("answers");
    // Basic me:my-own-secret — its own credentials, whatever system id it claimed.
    assert_eq!(said, "200 Basic bWU6bXktb3duLXNlY3JldA==");

    let id = hostile_system(&service, &upstream, "log-flood").await;
    let (ok, _) = service.test_connection(&id).await;
    assert!(ok, "a log flood is cut, not fatal");
}

/// The hostile plugin's statistics in `GET /api/v1/plugins`.
async fn hostile_stats(service: &Service) -> serde_json::Value {
    let (status, list) = service.admin(reqwest::Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "hostile")
        .map(|p| p["stats"].clone())
        .expect("hostile listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_beside_good_ones_leave_them_unaffected() {
    let service = std::sync::Arc::new(Service::start_with(strict_limits()).await);
    let (status, loaded) = service.upload_plugin(hostile_plugin()).await;
    assert_eq!(status, 201, "{loaded}");
    let upstream = upstream().await;
    let good = hostile_system(&service, &upstream, "ok").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hostile = Vec::new();
    for mode in ["loop", "memory", "import-loop", "panic"] {
        let id = hostile_system(&service, &upstream, mode).await;
        let (service, stop) = (service.clone(), stop.clone());
        hostile.push(tokio::spawn(async move {
            let mut failed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (ok, _) = service.test_connection(&id).await;
                failed += u32::from(!ok);
            }
            failed
        }));
    }
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let t = std::time::Instant::now();
        let (ok, message) = service.test_connection(&good).await;
        slowest = slowest.max(t.elapsed());
        assert!(
            ok,
            "a well-behaved system keeps working beside hostile calls: {message}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hostile {
        assert!(
            h.await.expect("hostile task") > 0,
            "every hostile call failed, contained"
        );
    }
    assert!(service.healthy().await);
    // Hostile guests yield every 10 ms: a good call never waits for a whole hostile call (2 s).
    assert!(
        slowest < Duration::from_millis(1500),
        "slowest good call {slowest:?} in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_opens_sockets_itself_is_refused() {
    let service = Service::start().await;
    let socket = std::fs::read(env!("PROVISIO_SOCKET_WASM")).expect("socket plugin built by build.rs");
    let (status, body) = service.upload_plugin(socket).await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("imports something Provisio does not provide") && message.contains("wasi:sockets"),
        "{message}"
    );
    assert!(service.state.plugins.resolve("socket", None).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_components_are_refused_with_a_reason() {
    let service = Service::start().await;
    let (status, body) = service.upload_plugin(b"not wasm at all".to_vec()).await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid WebAssembly component"),
        "{body}"
    );

    // A core module (the empty one) is not a component.
    let (status, body) = service
        .upload_plugin(vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
        .await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap_or("").contains("core module"), "{body}");

    // A component that exports nothing is not a connector.
    let empty_component = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let (status, body) = service.upload_plugin(empty_component).await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a Provisio connector"),
        "{body}"
    );
    assert!(service.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_keeps_its_instance_until_a_call_goes_wrong() {
    let service = Service::start_with(strict_limits()).await;
    let (status, loaded) = service.upload_plugin(hostile_plugin()).await;
    assert_eq!(status, 201, "{loaded}");
    let upstream = upstream().await;
    let (a, b) = (
        service.connector(&hostile_system(&service, &upstream, "ok").await),
        service.connector(&hostile_system(&service, &upstream, "env").await),
    );
    let runtime = a.runtime.clone();
    let fresh = || runtime.fresh_instances();

    let before = fresh();
    for _ in 0..5 {
        a.runtime
            .test_connection(&a.plugin, &a.target)
            .await
            .expect("a answers");
        b.runtime
            .test_connection(&b.plugin, &b.target)
            .await
            .expect("b answers");
    }
    assert_eq!(fresh() - before, 2, "one instance per system, kept between its calls");

    // A trap discards the instance: every call of a panicking system starts fresh, and after the first one
    // its calls run on probation, at idle priority.
    let p = service.connector(&hostile_system(&service, &upstream, "panic").await);
    let before = fresh();
    for _ in 0..3 {
        let failed = p.runtime.test_connection(&p.plugin, &p.target).await;
        assert!(failed.is_err(), "{failed:?}");
    }
    assert_eq!(fresh() - before, 3, "no trapped instance is reused");
    let stats = hostile_stats(&service).await;
    assert!(stats["backgroundCalls"].as_u64() >= Some(2), "{stats}");

    // The other systems keep their instances and their normal priority.
    let (before, background) = (fresh(), stats["backgroundCalls"].as_u64());
    a.runtime
        .test_connection(&a.plugin, &a.target)
        .await
        .expect("a answers");
    b.runtime
        .test_connection(&b.plugin, &b.target)
        .await
        .expect("b answers");
    assert_eq!(fresh(), before);
    assert_eq!(hostile_stats(&service).await["backgroundCalls"].as_u64(), background);
}
