//! Plugin figures: compile time and precompiled load time of every bundled connector; a fresh instance +
//! `describe()`; and the throughput of a well-behaved system's reads (the bundled SCIM connector against a
//! local SCIM server, 4 in flight) alone, then with hostile plugin calls running beside it (2 in flight,
//! cycling through an endless loop, memory exhaustion, host imports in a tight loop, a stack overflow, a
//! panic and an oversized result, each stopped by its limit). Last, the bundled IAS connector's reads under
//! its default id paging (`startId`/`nextId`, 100 users per page, 4 in flight) against a local answer.
//!
//! Run: `cargo bench -p provisio-tests --bench plugins` (`BENCH_SECONDS`, default 10, per phase).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use provisio::connector::{EntityKind, PageRequest};
use provisio::outbound::{Credentials, Outbound, OutboundLimits, SystemEndpoint};
use provisio::runtime::{CallLimits, CallTarget, LoadedPlugin, Runtime};

mod common;
use common::serve;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run());
}

/// The value at fraction `p` of sorted durations; zero without samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    common::percentile(sorted, p).unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A SCIM page of 100 users.
fn page() -> String {
    list_page(None)
}

/// A SCIM page of 100 users, with SAP Identity Authentication's `nextId` when given.
fn list_page(next_id: Option<&str>) -> String {
    let users: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"id": format!("id-{i}"), "userName": format!("user{i}"),
                "name": {"givenName": "Test", "familyName": format!("User {i}")},
                "emails": [{"value": format!("user{i}@example.com"), "primary": true}], "active": true})
        })
        .collect();
    let mut list = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 100, "startIndex": 1, "itemsPerPage": 100, "Resources": users});
    if let Some(next) = next_id {
        list["nextId"] = next.into();
    }
    list.to_string()
}

/// Serves `body` as the list answer at `path`, whatever the query.
async fn serve_list(path: &str, body: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        path,
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/scim+json")], body) }
        }),
    );
    serve(app).await
}

/// A bundled connector, loaded.
async fn bundled(runtime: &Runtime, name: &str) -> Arc<LoadedPlugin> {
    let (_, bytes) = provisio::bundled::BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no bundled {name}"));
    Arc::new(runtime.load(bytes.to_vec()).await.expect("load"))
}

fn target(base: &str, properties: Vec<(String, String)>) -> CallTarget {
    CallTarget {
        properties,
        endpoint: SystemEndpoint {
            system_id: "bench".into(),
            api: Some(base.parse().expect("url")),
            token: None,
            credentials: Credentials::None,
            rate_per_second: None,
            headers: vec![],
        },
    }
}

/// Reads pages with `in_flight` concurrent callers for `seconds`; answers pages read and latencies.
async fn read_loop(
    runtime: Arc<Runtime>,
    plugin: Arc<LoadedPlugin>,
    target: CallTarget,
    in_flight: usize,
    seconds: Duration,
) -> (u64, Vec<Duration>) {
    let stop = Instant::now() + seconds;
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (runtime, plugin, target) = (runtime.clone(), plugin.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let request = PageRequest::first(EntityKind::User, 100);
            let mut latencies = Vec::new();
            while Instant::now() < stop {
                let started = Instant::now();
                let page = runtime.read(&plugin, &target, &request).await.expect("read");
                assert_eq!(page.entities.len(), 100);
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("reader"));
    }
    all.sort();
    (all.len() as u64, all)
}

async fn run() {
    let seconds = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let outbound = Arc::new(Outbound::new(OutboundLimits::default()).expect("client"));
    let cache = std::env::temp_dir().join(format!("provisio-plugin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&cache).expect("cache dir");
    let dir = || Dir::open_ambient_dir(&cache, ambient_authority()).expect("cache dir");
    // The limits the hostile calls meet: 2 s, 64 MiB (the well-behaved reads never come near them).
    let limits = CallLimits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(2),
        max_result_bytes: 4 << 20,
        ..CallLimits::default()
    };

    println!("== compile and precompiled load, per bundled connector");
    println!(
        "{:<12} {:>10} {:>12} {:>16}",
        "connector", "bytes", "compile ms", "load p50 ms (20)"
    );
    let compiling = Runtime::new(limits.clone(), outbound.clone(), Some(dir())).expect("runtime");
    let loading = Runtime::new(limits.clone(), outbound.clone(), Some(dir())).expect("runtime");
    for (name, bytes) in provisio::bundled::BUNDLED {
        let started = Instant::now();
        let compiled = compiling.load(bytes.to_vec()).await.expect("compile");
        let compile = started.elapsed();
        assert!(!compiled.from_cache);
        let mut loads = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let p = loading.load(bytes.to_vec()).await.expect("load");
            loads.push(started.elapsed());
            assert!(p.from_cache);
        }
        loads.sort();
        println!(
            "{name:<12} {:>10} {:>12.1} {:>16.2}",
            bytes.len(),
            ms(compile),
            ms(percentile(&loads, 0.5))
        );
    }

    let runtime = Arc::new(Runtime::new(limits, outbound, Some(dir())).expect("runtime"));
    let scim = bundled(&runtime, "scim").await;
    let hostile = Arc::new(
        runtime
            .load(std::fs::read(env!("PROVISIO_HOSTILE_WASM")).expect("hostile plugin"))
            .await
            .expect("hostile"),
    );
    let mut bare = Vec::new();
    for _ in 0..2000 {
        let started = Instant::now();
        runtime.describe(&scim).await.expect("describe");
        bare.push(started.elapsed());
    }
    bare.sort();
    println!(
        "\n== fresh store + instance + describe() (scim, no I/O): p50 {:.1} µs, p99 {:.1} µs",
        percentile(&bare, 0.5).as_secs_f64() * 1e6,
        percentile(&bare, 0.99).as_secs_f64() * 1e6
    );

    let (addr, _server) = serve_list("/v2/Users", page()).await;
    let base = format!("http://{addr}/v2");
    let good = target(&base, vec![("URL".into(), base.clone())]);

    // Warm up, then the well-behaved reads alone.
    read_loop(runtime.clone(), scim.clone(), good.clone(), 4, Duration::from_secs(1)).await;
    let (alone, alone_lat) = read_loop(runtime.clone(), scim.clone(), good.clone(), 4, seconds).await;

    // The same, with hostile calls beside them.
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_calls = Arc::new(AtomicU64::new(0));
    let mut hostiles = Vec::new();
    for worker in 0..2 {
        let (runtime, hostile, stop, calls, base) = (
            runtime.clone(),
            hostile.clone(),
            stop.clone(),
            hostile_calls.clone(),
            base.clone(),
        );
        hostiles.push(tokio::spawn(async move {
            let modes = ["loop", "memory", "import-loop", "stack", "panic", "huge-result"];
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let mode = modes[i % modes.len()];
                i += 1;
                let t = target(&base, vec![("URL".into(), base.clone()), ("mode".into(), mode.into())]);
                let result = runtime.test_connection(&hostile, &t).await;
                assert!(result.is_err(), "{mode} must fail");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (beside, beside_lat) = read_loop(runtime.clone(), scim.clone(), good.clone(), 4, seconds).await;
    stop.store(true, Ordering::Relaxed);
    for h in hostiles {
        h.await.expect("hostile");
    }
    let rate = |n: u64| n as f64 / seconds.as_secs_f64();
    println!(
        "\n== well-behaved reads (scim, 100 users per page, 4 in flight), {} s per phase",
        seconds.as_secs()
    );
    println!(
        "alone:                 {:>8.0} pages/s ({:>7.0} entities/s)   p50 {:.2} ms   p99 {:.2} ms",
        rate(alone),
        rate(alone) * 100.0,
        ms(percentile(&alone_lat, 0.5)),
        ms(percentile(&alone_lat, 0.99))
    );
    println!(
        "beside hostile calls:  {:>8.0} pages/s ({:>7.0} entities/s)   p50 {:.2} ms   p99 {:.2} ms   ({} hostile calls stopped, {:.0} % of the throughput alone)",
        rate(beside),
        rate(beside) * 100.0,
        ms(percentile(&beside_lat, 0.5)),
        ms(percentile(&beside_lat, 0.99)),
        hostile_calls.load(Ordering::Relaxed),
        100.0 * beside as f64 / alone.max(1) as f64
    );
    let stats = hostile.stats.snapshot();
    println!(
        "hostile@{}: {} calls, {} traps, {} limit hits, {} throttled, {} denied requests",
        hostile.descriptor.version,
        stats.calls,
        stats.traps,
        stats.limit_hits,
        stats.throttled_calls,
        stats.denied_requests
    );

    // The IAS connector under its default id paging: the page's resources stay in the host (contract 0.3.0)
    // and the cursor comes from the rest of the answer's `nextId`.
    let ias = bundled(&runtime, "ias").await;
    let (addr, _ias_server) = serve_list("/scim/Users", list_page(Some("id-100"))).await;
    let ias_base = format!("http://{addr}");
    let ias_target = target(
        &ias_base,
        vec![
            ("URL".into(), ias_base.clone()),
            ("User".into(), "bench".into()),
            ("Password".into(), "bench".into()),
        ],
    );
    read_loop(
        runtime.clone(),
        ias.clone(),
        ias_target.clone(),
        4,
        Duration::from_secs(1),
    )
    .await;
    let (ias_pages, ias_lat) = read_loop(runtime.clone(), ias.clone(), ias_target, 4, seconds).await;
    println!(
        "\n== ias reads (id paging, 100 users per page, 4 in flight), {} s: {:>8.0} pages/s   p50 {:.2} ms   p99 {:.2} ms",
        seconds.as_secs(),
        rate(ias_pages),
        ms(percentile(&ias_lat, 0.5)),
        ms(percentile(&ias_lat, 0.99))
    );
    let _ = std::fs::remove_dir_all(&cache);
}
