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
        ("absolute-url", "absolute URL"),
        ("other-port", "another host"),
        ("unknown-upstream", "unknown upstream"),
        ("redirect", "redirect refused"),
        ("loop", "time limit"),
        ("memory", "memory limit"),
        ("stack", "trapped"),
        ("panic", "hostile plugin panicked on purpose"),
        ("huge-result", "over the limit"),
        ("file", "file read failed"),
        ("request-flood", "requests in one call"),
    ];
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
