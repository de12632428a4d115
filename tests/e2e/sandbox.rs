//! The sandbox holds against a hostile plugin: every misdeed fails its own call with an error that names
//! the limit or the refusal, the service stays healthy, and a well-behaved system keeps working.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{any, get};
use provisio::runtime::{CallLimits, CallTarget};
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
        .route(
            "/api/Users",
            get(|| async { "users" }).post(|body: axum::body::Body| async move {
                // Read (and drop) the whole body, as a real backend would.
                use futures::StreamExt as _;
                let mut stream = body.into_data_stream();
                let mut received = 0;
                while let Some(Ok(chunk)) = stream.next().await {
                    received += chunk.len();
                }
                format!("created from {received} bytes")
            }),
        )
        // Reflects the request, headers included, in its body and in a header: what a TRACE does.
        .route(
            "/api/echo",
            any(|method: axum::http::Method, headers: HeaderMap| async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string();
                let reflected: Vec<String> = headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                    .collect();
                // And the credentials as a JSON serialiser may write them: `/` as PHP does, `+` as .NET,
                // `=` as Gson.
                let escaped = json_escaped(&authorization);
                (
                    [("x-echo-authorization", authorization)],
                    format!("{method} {}\n{{\"authorization\":\"{escaped}\"}}", reflected.join("\n")),
                )
            }),
        )
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
        // Names the user of the Basic credentials that came with the request (never the credentials: the
        // host scrubs those from what the guest sees).
        .route(
            "/api/whoami",
            get(|headers: HeaderMap| async move {
                use base64::Engine as _;
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|t| t.split_once(':').map(|(user, _)| format!("user {user}")))
                    .unwrap_or_else(|| "none".into())
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

/// A service with `settings` and the hostile plugin loaded, and an upstream for its systems.
async fn hostile_service(settings: Settings) -> (Service, Upstream) {
    let service = Service::start_with(settings).await;
    let (status, loaded) = service.upload_plugin(hostile_plugin()).await;
    assert_eq!(status, 201, "{loaded}");
    (service, upstream().await)
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
    // A longer time limit than the other tests': under a loaded test run the memory hoarders must reach their
    // memory limit before the clock stops them (seen once: "exceeded its time limit" at 2 s).
    let mut settings = strict_limits();
    settings.call_limits.timeout = Duration::from_secs(6);
    let service = Service::start_with(settings).await;
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
        // Everything a guest hands to `send` is bounded before the host builds a request from it; 40,000
        // headers used to panic the host in http's HeaderMap, leaving the caller without an answer.
        ("headers-bomb", "exceed the limit of 100 headers per request"),
        ("header-bytes-bomb", "exceed the limit of 65536 bytes per request"),
        ("path-bomb", "exceeds the limit of 8192 bytes"),
        ("trace", "TRACE\\\" is not allowed"),
        ("connect", "CONNECT\\\" is not allowed"),
        ("custom-method", "BREW\\\" is not allowed"),
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
    let metrics = service.metrics().await;
    for outcome in ["timeout", "memory-limit", "stack-overflow", "trap", "result-too-large"] {
        let line = format!("provisio_plugin_calls_total{{plugin=\"hostile@1.0.0\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }
    assert!(metrics.contains("provisio_plugin_denied_requests_total{plugin=\"hostile@1.0.0\"}"));

    // Contained successes: no environment, and a forged system id changes nothing.
    let id = hostile_system(&service, &upstream, "env").await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(ok, "{message}");
    let c = service.connector(&id).await;
    let said = c
        .runtime
        .test_connection(&c.plugin, &c.target)
        .await
        .expect("env mode answers");
    assert_eq!(said, "0 environment variables");

    let id = hostile_system(&service, &upstream, "other-system").await;
    let c = service.connector(&id).await;
    let said = c.runtime.test_connection(&c.plugin, &c.target).await.expect("answers");
    // Its own credentials (user `me`), whatever system id it claimed.
    assert_eq!(said, "200 user me");

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
    let (service, upstream) = hostile_service(strict_limits()).await;
    let service = std::sync::Arc::new(service);
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
    let (service, upstream) = hostile_service(strict_limits()).await;
    let (a, b) = (
        service
            .connector(&hostile_system(&service, &upstream, "ok").await)
            .await,
        service
            .connector(&hostile_system(&service, &upstream, "env").await)
            .await,
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
    let p = service
        .connector(&hostile_system(&service, &upstream, "panic").await)
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_instance_serves_only_calls_with_the_properties_it_was_handed() {
    // A kept instance keeps the config it was made with (the system's id and properties), so it may serve
    // only calls that would pass the same: another value is a fresh instance, handed the new value.
    let (service, upstream) = hostile_service(strict_limits()).await;
    let id = service
        .create_system(json!({
            "name": "shows its properties", "type": "hostile", "role": "target",
            "properties": { "URL": upstream.base, "mode": "show-properties", "note": "first" }
        }))
        .await;
    let c = service.connector(&id).await;
    // `show-properties` fails with what the guest was handed as the reason.
    let shown = |target: CallTarget| {
        let c = &c;
        async move {
            let said = c.runtime.test_connection(&c.plugin, &target).await.expect_err("shown");
            said.to_string()
        }
    };
    let before = c.runtime.fresh_instances();
    for _ in 0..3 {
        let said = shown(c.target.clone()).await;
        assert!(said.contains("note=first"), "{said}");
    }
    assert_eq!(c.runtime.fresh_instances() - before, 1, "kept between the calls");
    let mut changed = c.target.clone();
    for (key, value) in &mut changed.properties {
        if key == "note" {
            *value = "second".into();
        }
    }
    for _ in 0..2 {
        let said = shown(changed.clone()).await;
        assert!(said.contains("note=second") && !said.contains("note=first"), "{said}");
    }
    assert_eq!(
        c.runtime.fresh_instances() - before,
        2,
        "one more instance, kept for the new value"
    );
    let said = shown(c.target.clone()).await;
    assert!(said.contains("note=first"), "{said}");
}

/// `text` with `/`, `+` and `=` written as JSON escapes, as some serialisers do.
fn json_escaped(text: &str) -> String {
    text.replace('/', "\\/").replace('+', "\\u002B").replace('=', "\\u003d")
}

/// A local OAuth token endpoint for the echo tests: it hands out `token`.
async fn token_endpoint(token: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/oauth/token",
        axum::routing::post(move || async move { axum::Json(json!({"access_token": token, "expires_in": 3600})) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/oauth/token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_host_attached_never_reach_the_guest_or_the_caller() {
    let (service, upstream) = hostile_service(strict_limits()).await;
    let oauth_token = "oauth-access-token-handed-out-42";
    let token_url = token_endpoint(oauth_token).await;
    // (credentials, the forms in which they must never come back)
    let cases = [
        (
            json!({"User": "me", "Password": "my-own-secret"}),
            vec!["bWU6bXktb3duLXNlY3JldA==", "my-own-secret"],
        ),
        (
            json!({"User": "me", "Password": "se/cr+et?>>~"}),
            vec!["bWU6c2UvY3IrZXQ/Pj5+", "se/cr+et?>>~"],
        ),
        (
            json!({"Authentication": "BearerToken", "Password": "static-bearer-token-77"}),
            vec!["static-bearer-token-77"],
        ),
        (
            json!({"OAuth2TokenServiceURL": token_url, "User": "client", "Password": "client-secret-99"}),
            vec![oauth_token, "client-secret-99"],
        ),
    ];
    for (credentials, secrets) in cases {
        let mut properties = json!({"URL": upstream.base, "mode": "echo-auth"});
        for (k, v) in credentials.as_object().expect("object") {
            properties[k] = v.clone();
        }
        let id = service
            .create_system(json!({"name": format!("echo {credentials}"), "type": "hostile", "role": "target", "properties": properties}))
            .await;
        // The API caller's answer: the echo came back (so the guest saw the response), the secrets did not.
        let (ok, message) = service.test_connection(&id).await;
        assert!(!ok, "{message}");
        assert!(message.contains("echoed 200"), "{message}");
        assert!(
            message.contains("authorization: ********"),
            "the echo is masked: {message}"
        );
        for secret in &secrets {
            for form in [secret.to_string(), json_escaped(secret)] {
                assert!(!message.contains(&form), "{form} leaked to the API caller: {message}");
            }
        }
        // What the guest itself was handed (it returns it all), through the runtime.
        let c = service.connector(&id).await;
        let said = c
            .runtime
            .test_connection(&c.plugin, &c.target)
            .await
            .expect_err("echo-auth fails");
        let said = said.to_string();
        assert!(said.contains("x-echo-authorization"), "{said}");
        for secret in &secrets {
            for form in [secret.to_string(), json_escaped(secret)] {
                assert!(!said.contains(&form), "{form} reached the guest: {said}");
            }
        }
    }
    // TRACE, which makes a server echo the request, is not sent at all.
    let id = hostile_system(&service, &upstream, "trace").await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(!ok && message.contains("is not allowed"), "{message}");
    assert!(!message.contains("bWU6bXktb3duLXNlY3JldA=="), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_host_fails_only_its_call_and_is_counted() {
    // With the header bounds lifted (an admin may configure them), 40,000 headers reach http's HeaderMap,
    // which panics past 32,768 entries: the host panic the bounds now prevent. It must stay that call's
    // error.
    let mut settings = strict_limits();
    settings.outbound_limits.max_request_headers = 1_000_000;
    settings.outbound_limits.max_request_header_bytes = 1 << 30;
    // The subject is the panic, not the deadline: 40,000 headers through the debug build's HeaderMap took
    // over the strict 2 s on a machine busy with a build beside the tests.
    settings.call_limits.timeout = Duration::from_secs(30);
    let (service, upstream) = hostile_service(settings).await;
    let good = hostile_system(&service, &upstream, "ok").await;
    let bomb = hostile_system(&service, &upstream, "headers-bomb").await;
    let before = hostile_stats(&service).await;
    for _ in 0..3 {
        let (ok, message) = service.test_connection(&bomb).await;
        assert!(!ok, "{message}");
        assert!(message.contains("the host failed while running the call"), "{message}");
        assert!(service.healthy().await);
        let (ok, message) = service.test_connection(&good).await;
        assert!(ok, "{message}");
    }
    let after = hostile_stats(&service).await;
    let grew = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    assert_eq!(grew("calls"), 6, "{after}");
    assert_eq!(grew("failures"), 3, "{after}");
    assert_eq!(after["lastIncident"]["kind"], "host-panic", "{after}");
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("provisio_plugin_calls_total{plugin=\"hostile@1.0.0\",outcome=\"host-panic\"} 3"),
        "{metrics}"
    );
}

/// The median and the slowest of `durations`.
fn p50_and_max(mut durations: Vec<Duration>) -> (Duration, Duration) {
    durations.sort();
    (durations[durations.len() / 2], durations[durations.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_system_does_not_starve_its_neighbours() {
    // Few slots, so that the test needs few calls: 16 in all, 4 running and 8 waiting per system.
    let mut settings = strict_limits();
    settings.call_limits.timeout = Duration::from_secs(20);
    settings.call_limits.max_concurrent_calls = 16;
    settings.call_limits.max_calls_per_system = 4;
    settings.call_limits.max_waiting_per_system = 8;
    let (service, upstream) = hostile_service(settings).await;
    let service = Arc::new(service);
    // S1's backend never answers in time (30 s); S2 is well-behaved.
    let slow = hostile_system(&service, &upstream, "slow-upstream").await;
    let neighbour = hostile_system(&service, &upstream, "ok").await;
    let time_neighbour = || {
        let service = service.clone();
        let neighbour = neighbour.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..15 {
                let started = std::time::Instant::now();
                let (ok, message) = service.test_connection(&neighbour).await;
                assert!(ok, "{message}");
                times.push(started.elapsed());
            }
            p50_and_max(times)
        }
    };
    let (alone, _) = time_neighbour().await;

    // 40 callers hammer S1: 4 calls hang in its backend, 8 wait, the rest are told at once that S1 is busy.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut load = Vec::new();
    for _ in 0..40 {
        let (service, slow, stop, busy) = (service.clone(), slow.clone(), stop.clone(), busy.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (ok, message) = service.test_connection(&slow).await;
                assert!(!ok);
                if message.contains("too many calls in flight") {
                    busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (loaded, slowest) = time_neighbour().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "neighbour's test-connection p50: {alone:?} alone, {loaded:?} beside the slow system (slowest {slowest:?}; {} busy refusals)",
        busy.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        busy.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "callers beyond S1's running and waiting calls are refused at once"
    );
    // Generous for a loaded 2-core machine. Without a bound per system, S1 took every slot and a third of
    // S2's calls waited for S1's to time out (20 s), while its p50 stayed low: the slowest call tells.
    assert!(
        loaded <= alone * 2 + Duration::from_millis(25),
        "S2's p50 went from {alone:?} alone to {loaded:?} beside the slow S1"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "S2's slowest call took {slowest:?} beside the slow S1"
    );
    for task in load {
        task.abort();
    }
}

/// The process's resident set (the service runs in this process), from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `attack` while sampling the resident set every 5 ms; answers its result and the peak.
async fn peak_rss_during<T>(attack: impl std::future::Future<Output = T>) -> (T, u64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = rss_bytes();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.max(rss_bytes())
        })
    };
    let out = attack.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.await.expect("sampler"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_guest_makes_the_host_hold_is_capped() {
    // The default limits: 128 MiB of guest memory, room for a 64 MiB body.
    let (service, upstream) = hostile_service(Settings::default()).await;
    let service = Arc::new(service);
    let baseline = rss_bytes();

    // Three calls at once, each sending a 64 MiB body four times: refused at the body cap, unsent, uncopied.
    let bomb = hostile_system(&service, &upstream, "body-bomb").await;
    let (answers, body_peak) = peak_rss_during(futures::future::join_all(
        (0..3).map(|_| service.test_connection(&bomb)),
    ))
    .await;
    for (ok, message) in answers {
        assert!(!ok);
        assert!(
            message.contains("a request body of 67108864 bytes exceeds the limit of 16777216 bytes"),
            "{message}"
        );
    }

    // Three reads at once, each answering 200,000 entities for a page of 500: refused before parsing.
    let overflow = service
        .create_system(json!({
            "name": "page overflow", "type": "hostile", "role": "source",
            "properties": { "URL": upstream.base, "read-mode": "overflow" }
        }))
        .await;
    let c = service.connector(&overflow).await;
    let request = provisio::connector::PageRequest::first(provisio::connector::EntityKind::User, 500);
    let (pages, page_peak) = peak_rss_during(futures::future::join_all(
        (0..3).map(|_| c.runtime.read(&c.plugin, &c.target, &request)),
    ))
    .await;
    for page in pages {
        let e = page.expect_err("a page over its size is refused");
        assert_eq!(e.kind(), "invalid-result");
        assert!(
            e.to_string()
                .contains("a page of 200000 entities, over the page size of 500"),
            "{e}"
        );
    }
    // The same page asked for as texts (the proxy's read): refused the same way, before anything is kept.
    let e = c
        .runtime
        .read_texts(&c.plugin, &c.target, &request, &|_| false)
        .await
        .expect_err("refused as texts too");
    assert_eq!(e.kind(), "invalid-result");
    assert!(e.to_string().contains("over the page size of 500"), "{e}");
    let mib = |b: u64| b >> 20;
    // Before, the bodies were copied twice more per request and the pages parsed: over a GiB.
    for (attack, peak) in [("body bomb", body_peak), ("page overflow", page_peak)] {
        assert!(
            peak.saturating_sub(baseline) < 512 << 20,
            "{attack}: the resident set grew from {} MiB to {} MiB",
            mib(baseline),
            mib(peak)
        );
    }
    eprintln!(
        "resident set: {} MiB before, peaks {} MiB (body bomb) and {} MiB (page overflow)",
        mib(baseline),
        mib(body_peak),
        mib(page_peak)
    );

    // The bytes one call sends are capped too: 16 MiB bodies, four of them and the budget is spent.
    let per_call = hostile_system(&service, &upstream, "bytes-per-call").await;
    let (ok, message) = service.test_connection(&per_call).await;
    assert!(!ok);
    assert!(message.contains("the limit of bytes sent per call"), "{message}");
    assert!(service.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_texts_that_are_not_json_fail_the_call_and_are_counted() {
    let (service, upstream) = hostile_service(Settings::default()).await;
    let id = service
        .create_system(json!({
            "name": "not json", "type": "hostile", "role": "source",
            "properties": { "URL": upstream.base, "read-mode": "not-json" }
        }))
        .await;
    let c = service.connector(&id).await;
    let before = hostile_stats(&service).await;
    let kind = provisio::connector::EntityKind::User;
    // The texts the proxy takes without parsing (a page, a get): checked all the same.
    let request = provisio::connector::PageRequest::first(kind, 10);
    let page = c.runtime.read_texts(&c.plugin, &c.target, &request, &|_| false).await;
    let one = c.runtime.get_text(&c.plugin, &c.target, kind, "7", &|_| false).await;
    for e in [page.map(|_| ()), one.map(|_| ())] {
        let e = e.expect_err("an entity that is not JSON is an invalid result");
        assert_eq!(e.kind(), "invalid-result");
        assert!(e.to_string().contains("an entity is not valid JSON"), "{e}");
    }
    // A caller's memo vouches for texts it parsed before: those are not checked again.
    let vouched = c
        .runtime
        .get_text(&c.plugin, &c.target, kind, "7", &|t| t.starts_with("{\"id\":\"7\""))
        .await
        .expect("vouched for by the caller");
    assert_eq!(vouched, "{\"id\":\"7\",\"userName\":");
    // Both failures are counted against the plugin, as any invalid result is, not as successful calls.
    let after = hostile_stats(&service).await;
    let grew = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    assert_eq!(grew("calls"), 3, "{after}");
    assert_eq!(grew("failures"), 2, "{after}");
    assert_eq!(after["lastIncident"]["kind"], "invalid-result", "{after}");
    let metrics = service.metrics().await;
    let line = "provisio_plugin_calls_total{plugin=\"hostile@1.0.0\",outcome=\"invalid-result\"} 2";
    assert!(metrics.contains(line), "/metrics lacks {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_over_the_limits_is_refused_at_load() {
    let service = Service::start().await;
    let bloated = std::fs::read(env!("PROVISIO_BLOATED_WASM")).expect("bloated plugin built by build.rs");
    // As built: a 30 MB default transformation.
    let (status, body) = service.upload_plugin(bloated.clone()).await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("describe() failed") && message.contains("over the limit of 1048576 bytes"),
        "{message}"
    );
    // The byte after `BLOATED-MODE:` picks the misdeed: `p`, 100,000 properties.
    let marker = b"BLOATED-MODE:t";
    let at: Vec<usize> = bloated
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| w == marker)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the marker occurs once");
    let mut properties = bloated;
    properties[at[0] + marker.len() - 1] = b'p';
    let (status, body) = service.upload_plugin(properties).await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("100000 properties declared, over the limit of 256"),
        "{message}"
    );
    assert!(service.state.plugins.resolve("bloated", None).is_none());
    assert!(service.healthy().await);
}
