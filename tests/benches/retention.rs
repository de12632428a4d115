//! Retention figures: the background pruner deletes a million expired job-log rows while real-time events
//! are provisioned to a UAA simulator at a steady rate, through a Provisio service in this process (as the
//! real-time benchmark runs it).
//!
//! 1. Seed: `BENCH_ROWS` (default 1,000,000) per-entity log rows of `BENCH_JOBS` (default 100) runs that ended
//!    in 2020, written straight into the service's database in one bulk insert.
//! 2. Baseline: events pushed at `BENCH_RATE` events/s (default 200) for `BENCH_SECONDS` (default 10), no
//!    pruning; for each, the time from acknowledgement to written in the target, p50 and p99 (from the
//!    outbox's own timestamps, millisecond resolution).
//! 3. Prune: one sweep of the pruner (batches of `BENCH_BATCH` rows, default the service's 5,000, with
//!    `BENCH_PAUSE_MS` between them, default 50) while events are pushed at the same rate until it ends: rows
//!    pruned, the sweep's duration, rows/s, and the p50/p99 of the events pushed meanwhile (target: p99 under
//!    50 ms).
//!
//! SQLite in a fresh data directory; with `BENCH_DATABASE_URL=postgres://…` all of it runs again on
//! PostgreSQL after SQLite, on a fresh schema of that database dropped at the end.
//!
//! Run: `cargo bench -p provisio-tests --bench retention`. Prints PASS/FAIL per target and exits 0.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use provisio::retention::{Pruner, RetentionPolicy};
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

/// What one run measured.
struct Measured {
    seeded: u64,
    seed_secs: f64,
    pruned: u64,
    prune_secs: f64,
    left: u64,
    base: Latency,
    during: Latency,
}

/// The latencies of one phase's events.
struct Latency {
    events: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

async fn run() {
    let sqlite = measure(None).await;
    print_table(
        "Retention figures on SQLite (2 worker threads, UAA simulator target)",
        &sqlite,
    );
    let Some(database) = bench_database_url() else {
        return;
    };
    let schema = match Schema::create(&database, "retention").await {
        Ok(schema) => schema,
        Err(e) => {
            println!("\nPostgreSQL phases skipped: {e} (FAIL)");
            return;
        }
    };
    println!("\nthe same on PostgreSQL (one replica, schema {}) …", schema.name());
    let postgres = measure(Some(schema.url.clone())).await;
    print_table(
        "Retention figures on PostgreSQL (one replica, 2 worker threads, UAA simulator target)",
        &postgres,
    );
    schema.drop_all().await;
}

fn print_table(title: &str, m: &Measured) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let rate = env_or("BENCH_RATE", 200);
    println!("\n{title}");
    println!("| what | figure | target |");
    println!("|---|---|---|");
    println!(
        "| seeded expired job-log rows (bulk insert) | {} rows in {:.1} s | — |",
        m.seeded, m.seed_secs
    );
    println!(
        "| pruned by one sweep (log rows + their runs), batches of {}, {} ms apart | {} rows in {:.1} s = {:.0} rows/s; {} left | all pruned {} |",
        env_or("BENCH_BATCH", provisio::retention::DEFAULT_BATCH as u64),
        env_or("BENCH_PAUSE_MS", 50),
        m.pruned,
        m.prune_secs,
        m.pruned as f64 / m.prune_secs.max(f64::EPSILON),
        m.left,
        verdict(m.left == 0)
    );
    println!(
        "| real-time at {rate}/s, baseline without pruning ({} events) | p50 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms | p99 < 50 ms {} |",
        m.base.events,
        m.base.p50,
        m.base.p99,
        m.base.max,
        verdict(m.base.p99 < 50.0)
    );
    println!(
        "| real-time at {rate}/s during the prune ({} events) | p50 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms | p99 < 50 ms {} |",
        m.during.events,
        m.during.p50,
        m.during.p99,
        m.during.max,
        verdict(m.during.p99 < 50.0)
    );
}

/// The rows of the seeded runs still in the database: their log rows and the runs.
async fn seeded_left(data: &std::path::Path, database_url: Option<&str>) -> u64 {
    const COUNT: &str = "SELECT (SELECT COUNT(*) FROM job_entities WHERE job_id LIKE 'old-%') + (SELECT COUNT(*) FROM jobs WHERE id LIKE 'old-%')";
    match database_url {
        None => {
            let conn = rusqlite::Connection::open(data.join("provisio.db")).expect("open the database");
            conn.query_row(COUNT, [], |r| r.get::<_, i64>(0)).expect("count") as u64
        }
        Some(url) => {
            use sqlx::{Connection as _, Row as _};
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let n: i64 = sqlx::query(COUNT)
                .fetch_one(&mut conn)
                .await
                .expect("count")
                .try_get(0)
                .expect("count");
            n as u64
        }
    }
}

/// Writes `rows` log rows of `jobs` runs of `source` that ended in 2020, straight into the database, in one
/// transaction; answers the rows written (log rows and runs).
async fn seed(data: &std::path::Path, database_url: Option<&str>, source: &str, target: &str) -> u64 {
    let rows = env_or("BENCH_ROWS", 1_000_000).max(1);
    let jobs = env_or("BENCH_JOBS", 100).clamp(1, rows);
    let per = rows.div_ceil(jobs);
    // Our own numbers only go into the text; the ids are bound.
    let runs = move |series: &str| {
        format!(
            "INSERT INTO jobs (id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at)
             SELECT 'old-' || i, $1, 'read', 'full', 'manual', 'admin', 'Success', '{{}}',
                    '2020-01-01T00:00:00.000Z', '2020-01-01T01:00:00.000Z'
             FROM {series}"
        )
    };
    let logs = move |series: &str| {
        format!(
            "INSERT INTO job_entities (job_id, seq, at, target_id, kind, source_entity, target_entity, operation,
                                       outcome, reason, changes)
             SELECT 'old-' || (i / {per}), i % {per} + 1, '2020-01-01T00:30:00.000Z', $1, 'user',
                    'source-user-' || i, 'target-user-' || i, 'create', 'success', NULL,
                    '[{{\"attribute\":\"userName\",\"after\":\"user' || i || '\"}}]'
             FROM {series}"
        )
    };
    match database_url {
        None => {
            let data = data.to_path_buf();
            let (source, target) = (source.to_string(), target.to_string());
            tokio::task::spawn_blocking(move || {
                let mut conn = rusqlite::Connection::open(data.join("provisio.db")).expect("open the database");
                conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
                let tx = conn.transaction().expect("begin");
                let series = |n: u64| format!("(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) SELECT i FROM s)", n - 1);
                let a = tx
                    .execute(&runs(&series(jobs)).replace("$1", "?1"), [&source])
                    .expect("seed runs");
                let b = tx
                    .execute(&logs(&series(rows)).replace("$1", "?1"), [&target])
                    .expect("seed logs");
                tx.commit().expect("commit");
                (a + b) as u64
            })
            .await
            .expect("seed")
        }
        Some(url) => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let mut tx = conn.begin().await.expect("begin");
            let series = |n: u64| format!("generate_series(0, {}) AS s(i)", n - 1);
            let a = sqlx::query(&runs(&series(jobs)))
                .bind(source)
                .execute(&mut *tx)
                .await
                .expect("seed runs")
                .rows_affected();
            let b = sqlx::query(&logs(&series(rows)))
                .bind(target)
                .execute(&mut *tx)
                .await
                .expect("seed logs")
                .rows_affected();
            tx.commit().await.expect("commit");
            // As autovacuum would soon: the planner learns the tables' new sizes.
            sqlx::query("ANALYZE jobs, job_entities")
                .execute(&mut conn)
                .await
                .expect("analyze");
            a + b
        }
    }
}

/// The service on SQLite in a fresh data directory, or on the PostgreSQL database at `database_url`.
async fn measure(database_url: Option<String>) -> Measured {
    let data = tempfile::tempdir().expect("data dir");
    let settings = Settings {
        database_url: database_url.clone(),
        ..Default::default()
    };
    let state = boot(data.path(), settings, &[ADMIN_PRINCIPAL, PUSHER_PRINCIPAL]).await;
    tokio::spawn(state.realtime.clone().run_dispatcher());
    let (addr, _server) = serve(provisio::api::router(state.clone())).await;
    let url = format!("http://{addr}");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let http = reqwest::Client::new();
    let admin = |body: Value| {
        http.post(format!("{url}/api/v1/systems"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .json(&body)
            .send()
    };
    let source: Value = admin(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/unused", "User": "x", "Password": "y"}}))
    .await
    .expect("source")
    .json()
    .await
    .expect("json");
    let source = source["id"].as_str().expect("source id").to_string();
    let target: Value = admin(
        json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": {"URL": uaa_sim.base_url, "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "provisio.rate.limit": "100000"}}),
    )
    .await
    .expect("target")
    .json()
    .await
    .expect("json");
    let target = target["id"].as_str().expect("target id").to_string();

    let started = Instant::now();
    let seeded = seed(data.path(), database_url.as_deref(), &source, &target).await;
    let seed_secs = started.elapsed().as_secs_f64();
    println!("seeded {seeded} expired job-log rows and runs in {seed_secs:.1} s");

    let push_url = format!("{url}/ipsproxy/api/v1/systems/{source}/entities/user");
    let push = |body: Value| {
        http.post(&push_url)
            .basic_auth(PUSHER.0, Some(PUSHER.1))
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    push(pushed_user(0, "warm")).await.expect("warm-up");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rate = env_or("BENCH_RATE", 200).max(1);
    // Pushes at `rate` until `until` says stop; answers how many.
    let paced = async |prefix: &str, until: &dyn Fn(u64) -> bool| {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut i = 0;
        while !until(i) {
            tick.tick().await;
            pending.push(push(pushed_user(i, prefix)));
            while let Some(Some(_)) = futures::FutureExt::now_or_never(pending.next()) {}
            i += 1;
        }
        while pending.next().await.is_some() {}
        i
    };

    // 2. Baseline.
    let seconds = env_or("BENCH_SECONDS", 10);
    let base_total = paced("base", &|i| i >= rate * seconds).await;

    // 3. The prune, with events pushed until it ends.
    let policy = RetentionPolicy {
        batch: env_or("BENCH_BATCH", provisio::retention::DEFAULT_BATCH as u64) as usize,
        pause: Duration::from_millis(env_or("BENCH_PAUSE_MS", 50)),
        ..RetentionPolicy::default()
    };
    let pruner = Pruner::new(state.stores.clone(), policy);
    let prune_started = Instant::now();
    let sweep = tokio::spawn(async move {
        let pruned = pruner.sweep().await;
        (pruned, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(env_or("BENCH_MAX_PRUNE_SECONDS", 900));
    let during_total = paced("prune", &|_| sweep.is_finished() || Instant::now() > deadline).await;
    let (pruned, prune_ended) = sweep.await.expect("the sweep");
    let pruned = pruned.expect("sweep").expect("this replica leads");
    let prune_secs = (prune_ended - prune_started).as_secs_f64();
    println!("pruned {pruned:?} in {prune_secs:.1} s");
    let left = seeded_left(data.path(), database_url.as_deref()).await;

    let wait = Instant::now() + Duration::from_secs(120);
    let (base, during) = loop {
        let events = state
            .stores
            .events
            .list(Some(&source), None, None, (base_total + during_total + 100) as i64)
            .await
            .expect("events");
        let of = |prefix: &str| {
            events
                .iter()
                .filter(|e| e.entity_id.starts_with(prefix))
                .collect::<Vec<_>>()
        };
        let (b, d) = (of("base"), of("prune"));
        let done = |v: &[&provisio::store::realtime::EventRecord]| v.iter().all(|e| e.state != "pending");
        if b.len() as u64 == base_total && d.len() as u64 == during_total && done(&b) && done(&d) {
            let latency = |v: Vec<&provisio::store::realtime::EventRecord>| {
                let mut ms: Vec<f64> = v
                    .iter()
                    .filter_map(|e| Some(millis(e.finished_at.as_deref()?)? - millis(&e.received_at)?))
                    .collect();
                ms.sort_by(|a, b| a.total_cmp(b));
                let states = v.iter().filter(|e| e.state != "done").count();
                if states > 0 {
                    println!("{states} events did not end done");
                }
                Latency {
                    events: ms.len(),
                    p50: percentile(&ms, 0.5).unwrap_or(f64::NAN),
                    p99: percentile(&ms, 0.99).unwrap_or(f64::NAN),
                    max: ms.last().copied().unwrap_or(f64::NAN),
                }
            };
            break (latency(b), latency(d));
        }
        assert!(Instant::now() < wait, "events did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Measured {
        seeded,
        seed_secs,
        pruned: pruned.job_logs,
        prune_secs,
        left,
        base,
        during,
    }
}
