//! Real-time figures, through a Provisio service running in this process with a UAA simulator as the target:
//!
//! 1. Latency: events pushed at `BENCH_RATE` events/s (default 200) for `BENCH_SECONDS` (default 10); for each,
//!    the time from acknowledgement (committed to the outbox) to written in the target (the event done), p50
//!    and p99 (from the outbox's own timestamps, millisecond resolution).
//! 2. Throughput: `BENCH_EVENTS` creates (default 20,000) pushed by 64 concurrent clients as fast as they are
//!    acknowledged (each acknowledgement means committed with `synchronous=FULL`): events/s.
//!
//! With `BENCH_DATABASE_URL=postgres://…` (e.g. `postgres://postgres@127.0.0.1:5432/test`), all of it runs
//! again on PostgreSQL after SQLite, in the same process: a second service (one replica) on a fresh schema of
//! that database, dropped at the end; its durable acknowledgements have the same target (≥ 2,000/s). Without
//! it, only SQLite, as before.
//!
//! Run: `cargo bench -p provisio-tests --bench realtime`. Prints PASS/FAIL per target and exits 0.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use provisio::server::Settings;
use provisio_tests::sim::uaa;
use serde_json::{Value, json};

mod common;
use common::{
    ADMIN, ADMIN_PRINCIPAL, PUSHER, PUSHER_PRINCIPAL, Schema, bench_database_url, boot, env_or, millis, percentile,
    pushed_user, run_on_two_workers, serve,
};

fn main() {
    run_on_two_workers(run());
}

/// What one run of the phases measured.
struct Measured {
    offered: f64,
    total: u64,
    p50: f64,
    p99: f64,
    events: u64,
    ack_rate: f64,
    acked: usize,
    lone_rate: f64,
    lone_acked: usize,
    worked_rate: f64,
    drained: usize,
}

async fn run() {
    let sqlite = measure(None).await;
    print_table(
        "Real-time figures (2 worker threads, UAA simulator target, one target)",
        &sqlite,
    );
    let Some(database) = bench_database_url() else {
        return;
    };
    let schema = match Schema::create(&database, "realtime").await {
        Ok(schema) => schema,
        Err(e) => {
            println!("\nPostgreSQL phases skipped: {e} (FAIL)");
            return;
        }
    };
    println!("\nthe same on PostgreSQL (one replica, schema {}) …", schema.name());
    let postgres = measure(Some(schema.url.clone())).await;
    print_table(
        "Real-time figures on PostgreSQL (one replica, 2 worker threads, UAA simulator target, one target)",
        &postgres,
    );
    println!(
        "PostgreSQL ÷ SQLite in this run: durable acknowledgements with provisioning {:.0} %, alone {:.0} %; provisioned to UAA {:.0} %",
        postgres.ack_rate * 100.0 / sqlite.ack_rate,
        postgres.lone_rate * 100.0 / sqlite.lone_rate,
        postgres.worked_rate * 100.0 / sqlite.worked_rate
    );
    schema.drop_all().await;
}

fn print_table(title: &str, m: &Measured) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let Measured {
        offered,
        total,
        p50,
        p99,
        events,
        ack_rate,
        acked,
        lone_rate,
        lone_acked,
        worked_rate,
        drained,
    } = m;
    println!("\n{title}");
    println!("| what | figure | target |");
    println!("|---|---|---|");
    println!(
        "| acknowledged → written in the target at {offered:.0} events/s ({total} events) | p50 {p50:.0} ms, p99 {p99:.0} ms | p50 < 10 ms {}, p99 < 50 ms {} |",
        verdict(*p50 < 10.0),
        verdict(*p99 < 50.0)
    );
    println!(
        "| durable acknowledgements, 64 concurrent pushers | {ack_rate:.0} events/s ({acked} of {events}) | ≥ 2,000/s {} |",
        verdict(*ack_rate >= 2000.0)
    );
    println!(
        "| durable acknowledgements alone (a source without targets), 64 concurrent pushers | {lone_rate:.0} events/s ({lone_acked} of {events}) | ≥ 2,000/s {} |",
        verdict(*lone_rate >= 2000.0)
    );
    println!(
        "| the same events provisioned to UAA (push start → last written) | {worked_rate:.0} events/s ({drained} users in UAA) | — |"
    );
}

/// Every phase on a service of its own: on SQLite in a fresh data directory, or on the PostgreSQL database at
/// `database_url`.
async fn measure(database_url: Option<String>) -> Measured {
    let data = tempfile::tempdir().expect("data dir");
    let settings = Settings {
        database_url,
        ..Default::default()
    };
    let state = boot(data.path(), settings, &[ADMIN_PRINCIPAL, PUSHER_PRINCIPAL]).await;
    tokio::spawn(state.realtime.clone().run_dispatcher());
    let (addr, _server) = serve(provisio::api::router(state.clone())).await;
    let url = format!("http://{addr}");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{url}{path}"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .json(&body)
            .send()
    };
    let source: Value = admin(
        reqwest::Method::POST,
        "/api/v1/systems".into(),
        json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/unused", "User": "x", "Password": "y"}}),
    )
    .await
    .expect("source")
    .json()
    .await
    .expect("json");
    let source = source["id"].as_str().expect("source id").to_string();
    admin(
        reqwest::Method::POST,
        "/api/v1/systems".into(),
        json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": {"URL": uaa_sim.base_url, "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "provisio.rate.limit": "100000"}}),
    )
    .await
    .expect("target");
    let push_url = format!("{url}/ipsproxy/api/v1/systems/{source}/entities/user");
    let push = |body: Value| {
        http.post(&push_url)
            .basic_auth(PUSHER.0, Some(PUSHER.1))
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    // Warm up: the first call compiles nothing (cached) but opens connections and fetches a token.
    push(pushed_user(0, "warm")).await.expect("warm-up");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Latency at a steady rate.
    let rate = env_or("BENCH_RATE", 200);
    let seconds = env_or("BENCH_SECONDS", 10);
    let total = rate * seconds;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        tick.tick().await;
        pending.push(push(pushed_user(i, "lat")));
        while let Some(Some(_)) = futures::FutureExt::now_or_never(pending.next()) {}
    }
    while pending.next().await.is_some() {}
    let offered = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    let latencies = loop {
        let events: Vec<provisio::store::realtime::EventRecord> = state
            .stores
            .events
            .list(Some(&source), None, None, (total + 10) as i64)
            .await
            .expect("events");
        let lat: Vec<&provisio::store::realtime::EventRecord> =
            events.iter().filter(|e| e.entity_id.starts_with("lat")).collect();
        if lat.len() as u64 == total && lat.iter().all(|e| e.state != "pending") {
            let mut timed: Vec<(f64, &str)> = lat
                .iter()
                .filter_map(|e| {
                    Some((
                        millis(e.finished_at.as_deref()?)? - millis(&e.received_at)?,
                        e.received_at.as_str(),
                    ))
                })
                .collect();
            timed.sort_by(|a, b| a.0.total_cmp(&b.0));
            // When the slowest arrived tells a stall (one moment) from a slope (a growing queue).
            let slowest: Vec<String> = timed
                .iter()
                .rev()
                .take(5)
                .map(|(ms, at)| format!("{ms:.0} ms at {at}"))
                .collect();
            println!("latency phase: the slowest events: {}", slowest.join(", "));
            break timed.into_iter().map(|(ms, _)| ms).collect::<Vec<f64>>();
        }
        assert!(Instant::now() < deadline, "events did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (p50, p99) = (
        percentile(&latencies, 0.5).unwrap_or(f64::NAN),
        percentile(&latencies, 0.99).unwrap_or(f64::NAN),
    );
    let outcome = async |prefix: &str| {
        let events = state
            .stores
            .events
            .list(Some(&source), None, None, 1_000_000)
            .await
            .expect("events");
        let mut states = std::collections::BTreeMap::<String, usize>::new();
        let mut failure = None;
        for e in events.iter().filter(|e| e.entity_id.starts_with(prefix)) {
            *states.entry(e.state.clone()).or_default() += 1;
            if e.attempts > 1 {
                *states
                    .entry(format!("{} after {} attempts", e.state, e.attempts))
                    .or_default() += 1;
            }
            if e.state != "done" && failure.is_none() {
                failure = e.results.clone();
            }
        }
        (states, failure)
    };
    let (states, failure) = outcome("lat").await;
    println!(
        "latency phase: events by state {states:?}; a failure: {failure:?}; users in UAA {}",
        uaa_sim.user_count()
    );

    // 2. Acknowledged throughput.
    let events = env_or("BENCH_EVENTS", 20_000);
    let started = Instant::now();
    let acked = futures::stream::iter(0..events)
        .map(|i| push(pushed_user(i, "tp")))
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.status() == 201)))
        .count()
        .await;
    let ack_rate = acked as f64 / started.elapsed().as_secs_f64();
    let drain_start = Instant::now();
    while uaa_sim.user_count() < (total + events + 1) as usize && drain_start.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = uaa_sim.user_count();
    let (states, failure) = outcome("tp").await;
    println!("throughput phase: events by state {states:?}; a failure: {failure:?}");
    let worked_rate = events as f64 / (started.elapsed().as_secs_f64());

    // 3. Acknowledgements alone: a source without targets (its events end at once), so that the figure is
    //    the durable intake without the provisioning work sharing the two cores.
    let lone: Value = admin(
        reqwest::Method::POST,
        "/api/v1/systems".into(),
        json!({"name": "IAS alone", "type": "ias", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/unused", "User": "x", "Password": "y"}}),
    )
    .await
    .expect("source")
    .json()
    .await
    .expect("json");
    let lone_url = format!(
        "{url}/ipsproxy/api/v1/systems/{}/entities/user",
        lone["id"].as_str().expect("id")
    );
    let started = Instant::now();
    let lone_acked = futures::stream::iter(0..events)
        .map(|i| {
            http.post(&lone_url)
                .basic_auth(PUSHER.0, Some(PUSHER.1))
                .header("Content-Type", "application/scim+json")
                .body(pushed_user(i, "alone").to_string())
                .send()
        })
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.status() == 201)))
        .count()
        .await;
    let lone_rate = lone_acked as f64 / started.elapsed().as_secs_f64();

    Measured {
        offered,
        total,
        p50,
        p99,
        events,
        ack_rate,
        acked,
        lone_rate,
        lone_acked,
        worked_rate,
        drained,
    }
}
