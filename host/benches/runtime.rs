//! Runtime figures: compile time and precompiled load time of the bundled SCIM connector, and the host's
//! overhead per call — a fresh store and instance plus one `read` through the host HTTP import — over the
//! bare HTTP round trip to the same local server.
//!
//! Run: `cargo bench -p provisio --bench runtime`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use provisio::connector::{EntityKind, PageRequest};
use provisio::outbound::{Credentials, Outbound, OutboundLimits, SystemEndpoint};
use provisio::runtime::{CallLimits, CallTarget, Runtime};

const PAGE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"startIndex":1,"itemsPerPage":1,
"Resources":[{"id":"2819c223","userName":"bjensen","name":{"givenName":"Barbara","familyName":"Jensen"},
"emails":[{"value":"bjensen@example.com","primary":true}],"active":true}]}"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run());
}

async fn run() {
    let scim = provisio::bundled::BUNDLED
        .iter()
        .find(|(n, _)| *n == "scim")
        .expect("scim is bundled")
        .1
        .to_vec();
    let outbound = Arc::new(Outbound::new(OutboundLimits::default()).expect("client"));
    let cache = tempfile_dir();
    let dir = || Dir::open_ambient_dir(&cache, ambient_authority()).expect("cache dir");

    // Compile (no cache), then load the precompiled artifact with a fresh runtime over the same cache.
    let runtime = Runtime::new(CallLimits::default(), outbound.clone(), Some(dir())).expect("runtime");
    let started = Instant::now();
    let compiled = runtime.load(scim.clone()).await.expect("load");
    let compile = started.elapsed();
    assert!(!compiled.from_cache);
    let runtime = Runtime::new(CallLimits::default(), outbound.clone(), Some(dir())).expect("runtime");
    let mut loads = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let p = runtime.load(scim.clone()).await.expect("load");
        loads.push(started.elapsed());
        assert!(p.from_cache);
    }
    loads.sort();
    let plugin = runtime.load(scim.clone()).await.expect("load");

    // A local SCIM server answering one page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/v2/Users",
        get(|| async { ([("content-type", "application/scim+json")], PAGE) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}/v2");
    let target = CallTarget {
        properties: vec![("URL".into(), base.clone())],
        endpoint: SystemEndpoint {
            system_id: "bench".into(),
            api: Some(base.parse().expect("url")),
            token: None,
            credentials: Credentials::None,
            rate_per_second: None,
            headers: vec![],
        },
    };
    let request = PageRequest::first(EntityKind::User, 100);
    let n = 2000;
    let direct_client = reqwest::Client::new();
    let mut direct = Vec::with_capacity(n);
    let mut through = Vec::with_capacity(n);
    for i in 0..n + 200 {
        // Interleave, so both see the same machine state.
        let started = Instant::now();
        let body = direct_client
            .get(format!("{base}/Users?startIndex=1&count=100"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        let d = started.elapsed();
        let _: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let started = Instant::now();
        let page = runtime.read(&plugin, &target, &request).await.expect("read");
        let t = started.elapsed();
        assert_eq!(page.entities.len(), 1);
        if i >= 200 {
            direct.push(d);
            through.push(t);
        }
    }
    direct.sort();
    through.sort();
    // The sandbox alone: a fresh store + instance + one call that does no I/O.
    let mut bare = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        runtime.describe(&plugin).await.expect("describe");
        bare.push(started.elapsed());
    }
    bare.sort();
    let median = |v: &[Duration]| percentile(v, 0.5);
    println!(
        "bundled scim connector: {} bytes, pooling allocator: {}",
        plugin.size,
        runtime.pooling()
    );
    println!(
        "compile (no cache):            {:>10.1} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "precompiled load (p50 of 20):  {:>10.3} ms",
        median(&loads).as_secs_f64() * 1e3
    );
    println!(
        "instantiate + describe(), no I/O (p50): {:>6.1} µs",
        median(&bare).as_secs_f64() * 1e6
    );
    println!(
        "HTTP round trip direct (p50):  {:>10.1} µs",
        median(&direct).as_secs_f64() * 1e6
    );
    println!(
        "instantiate + read via host (p50): {:>6.1} µs   p99 {:.1} µs",
        median(&through).as_secs_f64() * 1e6,
        percentile(&through, 0.99).as_secs_f64() * 1e6
    );
    let overhead = (median(&through).as_secs_f64() - median(&direct).as_secs_f64()) * 1e6;
    println!(
        "host overhead per call (p50):  {overhead:>10.1} µs   (issue 20 target ≤ 40 µs: {})",
        if overhead <= 40.0 { "PASS" } else { "FAIL" }
    );
    let _ = std::fs::remove_dir_all(&cache);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("provisio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
