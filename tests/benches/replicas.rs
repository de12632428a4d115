//! Several replicas on one PostgreSQL (issue 17): what three replicas do that one does not, against a target
//! whose writes take 20 ms (a UAA simulator with [`uaa::Options::write_latency`]).
//!
//! The replicas are separate processes (this binary again, booting and serving as `provisio serve` does, see
//! [`replica_main`]), on one fresh schema of `BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`; the schema is dropped at the end), with the same master key. The
//! simulators and the load generator run in this process.
//!
//! The workload. Three replicas share work in two ways: real-time events are claimed per entity by any
//! replica, and each job run is held by the one replica that started (or took over) it. The figure that
//! counts is real-time provisioning through a round-robin load balancer: that is what an admin scales out
//! for (self-registrations that must reach the targets at once, for a large tenant), and it is the work
//! that any replica can take from the common outbox, whichever replica acknowledged the push. A Read job
//! cannot be split across replicas, so jobs are measured as an admin with several sources runs them: three
//! sources (each into its own target), their Reads started through the load balancer, so one on each
//! replica, against the same three Reads on one replica.
//!
//! 1. Real-time: `BENCH_EVENTS` creates (default 10,000) pushed by 64 concurrent clients round-robin to the
//!    replicas; events provisioned per second (first push → last user in the target), with one replica and
//!    then with three. Target: three ≥ 2.5× one.
//! 2. Jobs: three sources of `BENCH_USERS` / 3 users each (default 15,000 in all), each a Read into its own
//!    target; all three on one replica, then one per replica: entities/s (first start → last end).
//! 3. Failover of the real-time consumers: pushes at `BENCH_FAILOVER_RATE` events/s (default 400) round-robin,
//!    one replica killed (SIGKILL) while it holds claimed events; the time until the events it held are done
//!    by the others.
//! 4. Takeover: a Read of `BENCH_TAKEOVER_USERS` users (default 5,000) on one replica, killed (SIGKILL) at
//!    about a third; the time until another replica holds the run (attempt 2), and until it is finished.
//!
//! Each of phases 1 and 2 also prints the cores the replicas, PostgreSQL, this process (simulators and load)
//! and other processes used: on a 2-core machine they all share the same cores, so three replicas can only
//! outrun one while one replica's limit is its own (its 32 events in flight, a run's writes in flight), not
//! the machine's. The real-time phase also prints the live claims per replica (sampled every 100 ms) and,
//! per event, the transactions committed and the rows PostgreSQL fetched per table of the schema
//! (`pg_stat_user_tables`).
//!
//! Run: `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p provisio-tests --bench replicas`.
//! Prints PASS/FAIL per target and always exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use provisio::server::Settings;
use provisio_tests::sim::uaa;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod common;
use common::{ADMIN, PUSHER, Schema, bench_database_url};

/// Set in a child process that runs one replica.
const ROLE_ENV: &str = "PROVISIO_BENCH_REPLICA";
const DEFAULT_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The target's time per write.
const WRITE_LATENCY: Duration = Duration::from_millis(20);
/// High enough that the host's own limiter never throttles.
const UNLIMITED_RATE: &str = "100000";

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        // As `provisio serve`: a runtime with a worker per core, logs on stderr.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .try_init();
        let rt = provisio::memory::runtime().build().expect("tokio runtime");
        if let Err(e) = rt.block_on(replica_main()) {
            eprintln!("replica: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// CPU time all processes of the machine spent busy, in seconds (from `/proc/stat`).
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (ticks.iter().sum::<f64>() - idle) / 100.0
}

/// User + system CPU time of a process, in seconds; 0 when it is gone.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // utime and stime are fields 14 and 15: the 12th and 13th after the parenthesised command name.
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux this runs on.
    (tick(11) + tick(12)) / 100.0
}

/// CPU time of every PostgreSQL process of the machine, in seconds.
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// Where the machine's CPU went, at one moment.
struct Usage {
    at: Instant,
    machine: f64,
    replicas: f64,
    postgres: f64,
    bench: f64,
}

impl Usage {
    fn now(replicas: &[&Replica]) -> Usage {
        Usage {
            at: Instant::now(),
            machine: machine_busy_seconds(),
            replicas: replicas.iter().map(|r| r.cpu()).sum(),
            postgres: postgres_cpu_seconds(),
            bench: cpu_seconds("self"),
        }
    }

    /// Cores used since `self` by the replicas, PostgreSQL, this process (simulators and load) and the rest.
    fn since(&self, replicas: &[&Replica]) -> String {
        let now = Usage::now(replicas);
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let (r, p, b) = (
            now.replicas - self.replicas,
            now.postgres - self.postgres,
            now.bench - self.bench,
        );
        let others = (now.machine - self.machine - r - p - b).max(0.0);
        format!(
            "cores busy: replicas {:.2}, PostgreSQL {:.2}, simulators and load {:.2}, other processes {:.2} (of 2)",
            r / secs,
            p / secs,
            b / secs,
            others / secs
        )
    }
}

/// The database's counters (`pg_stat_database`): transactions committed, rows returned by scans, rows
/// fetched by index, and statements would need `pg_stat_statements`, which is not loaded by default.
async fn database_counters(database: &str) -> Option<[i64; 3]> {
    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(database).await.ok()?;
    // The counters are sent to the statistics collector at a transaction's end, and read from a snapshot.
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut db)
    .await
    .ok()?;
    let _ = db.close().await;
    Some([row.0, row.1, row.2])
}

/// Per table of the replicas' schema: index scans, rows they fetched, rows read by sequential scans
/// (`pg_stat_user_tables`).
async fn table_scans(database: &str) -> std::collections::BTreeMap<String, [i64; 3]> {
    use sqlx::Connection as _;
    let Ok(mut db) = sqlx::PgConnection::connect(database).await else {
        return Default::default();
    };
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0), coalesce(seq_tup_read, 0)
         FROM pg_stat_user_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut db)
    .await
    .unwrap_or_default();
    let _ = db.close().await;
    rows.into_iter().map(|(t, a, b, c)| (t, [a, b, c])).collect()
}

/// Samples the live claims on pending real-time events per replica every 100 ms until `stop`; answers the
/// average per replica.
async fn sample_claims(database: String, stop: tokio::sync::watch::Receiver<bool>) -> Vec<(String, f64)> {
    use sqlx::Connection as _;
    let Ok(mut db) = sqlx::PgConnection::connect(&database).await else {
        return Vec::new();
    };
    let mut sums: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let mut samples = 0;
    while !*stop.borrow() {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT claimed_by, count(*) FROM realtime_events
             WHERE state = 'pending' AND claimed_until > now() GROUP BY claimed_by",
        )
        .fetch_all(&mut db)
        .await
        .unwrap_or_default();
        for (node, n) in rows {
            *sums.entry(node).or_default() += n;
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = db.close().await;
    sums.into_iter()
        .map(|(node, n)| (node, n as f64 / samples.max(1) as f64))
        .collect()
}

// ----- a replica (child process) ----------------------------------------------------------------------

/// One replica: boots on the database and data directory its parent names, as `provisio serve` does, and
/// serves until it is killed.
async fn replica_main() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let data = PathBuf::from(var("BENCH_REPLICA_DATA")?);
    let listen: SocketAddr = var("BENCH_REPLICA_LISTEN")?
        .parse()
        .map_err(|e| format!("BENCH_REPLICA_LISTEN: {e}"))?;
    let settings = Settings {
        database_url: Some(var("BENCH_REPLICA_DATABASE")?),
        artifact_cache: Some(PathBuf::from(var("BENCH_REPLICA_CACHE")?)),
        ..Default::default()
    };
    let state = provisio::server::boot(&data, settings)
        .await
        .map_err(|e| e.to_string())?;
    provisio::server::ensure_admin(&state.stores)
        .await
        .map_err(|e| e.to_string())?;
    provisio::server::serve(listen, state).await.map_err(|e| e.to_string())
}

/// A replica seen from the bench.
struct Replica {
    name: String,
    url: String,
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Replica {
    /// Starts replica `name` on `database` with `key` (another replica's master key file) or a new key, and
    /// waits until it is ready.
    async fn start(name: &str, database: &str, work: &Path, key: Option<&Path>) -> Replica {
        let dir = tempfile::tempdir_in(work).expect("data dir");
        if let Some(key) = key {
            std::fs::copy(key, dir.path().join("master.key")).expect("copy the master key");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = work.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("the replica's log file");
        let child = tokio::process::Command::new(std::env::current_exe().expect("this bench's path"))
            .env(ROLE_ENV, "1")
            .env("PROVISIO_NODE", name)
            .env("PROVISIO_BOOTSTRAP_ADMIN", format!("{}:{}", ADMIN.0, ADMIN.1))
            .env("BENCH_REPLICA_DATA", dir.path())
            .env("BENCH_REPLICA_LISTEN", format!("127.0.0.1:{port}"))
            .env("BENCH_REPLICA_DATABASE", database)
            .env("BENCH_REPLICA_CACHE", work.join("artifact-cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica");
        let mut replica = Replica {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
            log,
        };
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if matches!(http.get(format!("{}/readyz", replica.url)).send().await, Ok(r) if r.status().is_success()) {
                break;
            }
            if let Ok(Some(status)) = replica.child.try_wait() {
                panic!(
                    "replica {name} ended ({status}) before it was ready; its log: {}",
                    replica.log.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "replica {name} not ready after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replica
    }

    /// CPU time of the replica's process, in seconds.
    fn cpu(&self) -> f64 {
        self.child.id().map_or(0.0, |pid| cpu_seconds(&pid.to_string()))
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    /// SIGKILL: no shutdown hook, no lease handed back.
    async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

// ----- the admin API ----------------------------------------------------------------------------------

async fn call(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method, format!("{url}/api/v1{path}"))
        .basic_auth(ADMIN.0, Some(ADMIN.1));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_system(http: &reqwest::Client, url: &str, body: Value) -> String {
    let (status, created) = call(http, url, Method::POST, "/systems", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "create system: {created}");
    created["id"].as_str().expect("system id").to_string()
}

fn uaa_properties(sim: &uaa::Simulator) -> Value {
    json!({
        "URL": sim.base_url,
        "OAuth2TokenServiceURL": sim.token_url.clone().expect("UAA has a token URL"),
        "User": sim.options().client_id,
        "Password": sim.options().client_secret,
        "xsuaa.origin": "uaa",
        "provisio.rate.limit": UNLIMITED_RATE,
    })
}

/// A UAA simulator whose writes take [`WRITE_LATENCY`].
async fn slow_target() -> uaa::Simulator {
    uaa::spawn(uaa::Options {
        write_latency: WRITE_LATENCY,
        ..Default::default()
    })
    .await
    .expect("a UAA simulator")
}

fn user(i: usize, prefix: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:sap:2.0:User"],
        "id": format!("{prefix}{i}"),
        "userName": format!("{prefix}.user{i}"),
        "name": {"givenName": "Bench", "familyName": format!("User{i}")},
        "emails": [{"value": format!("{prefix}.user{i}@example.com"), "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"userId": format!("{prefix}{i}"), "userUuid": format!("uuid-{prefix}-{i}")}
    })
}

/// Pushes to the replicas round-robin, as a load balancer does: a replica that does not answer is skipped.
struct Pusher {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Pusher {
    fn new(replicas: &[&Replica], source: &str) -> Pusher {
        Pusher {
            http: reqwest::Client::new(),
            urls: replicas
                .iter()
                .map(|r| format!("{}/ipsproxy/api/v1/systems/{source}/entities/user", r.url))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Whether the event was acknowledged.
    async fn push(&self, body: Value) -> bool {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let body = body.to_string();
        for k in 0..self.urls.len() {
            let url = &self.urls[(first + k) % self.urls.len()];
            let sent = self
                .http
                .post(url)
                .basic_auth(PUSHER.0, Some(PUSHER.1))
                .header("Content-Type", "application/scim+json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return true,
                // Refused (503 while a replica has no database): the next replica, as a balancer retries.
                Ok(_) | Err(_) => continue,
            }
        }
        false
    }
}

struct Figure {
    what: String,
    value: String,
    target: String,
    pass: Option<bool>,
}

// ----- the phases -------------------------------------------------------------------------------------

/// Phase 1: `events` creates pushed by 64 clients round-robin to `replicas`; events provisioned per second.
async fn realtime_throughput(
    replicas: &[&Replica],
    source: &str,
    target: &uaa::Simulator,
    events: usize,
    prefix: &str,
    database: &str,
) -> f64 {
    let pusher = Pusher::new(replicas, source);
    let in_target = target.user_count();
    let usage = Usage::now(replicas);
    let counters = database_counters(database).await;
    let scans = table_scans(database).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let claims = tokio::spawn(sample_claims(database.to_string(), stopped));
    let started = Instant::now();
    let acked = futures::stream::iter(0..events)
        .map(|i| pusher.push(user(i, prefix)))
        .buffer_unordered(64)
        .filter(|acked| std::future::ready(*acked))
        .count()
        .await;
    let pushed = started.elapsed();
    while target.user_count() < in_target + acked {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {} of {acked} events provisioned after 900 s",
            target.user_count() - in_target
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed();
    let rate = acked as f64 / wall.as_secs_f64();
    let _ = stop.send(true);
    let claims: Vec<String> = claims
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(node, n)| format!("{node} {n:.1}"))
        .collect();
    println!(
        "  {acked} of {events} acknowledged in {:.1} s ({:.0}/s); all in the target after {:.1} s: {rate:.0} events/s provisioned",
        pushed.as_secs_f64(),
        acked as f64 / pushed.as_secs_f64(),
        wall.as_secs_f64(),
    );
    println!(
        "  events in flight (live claims) on average: {}; {}",
        claims.join(", "),
        usage.since(replicas)
    );
    if let (Some(before), Some(after)) = (counters, database_counters(database).await) {
        let per = |i: usize| (after[i] - before[i]) as f64 / acked.max(1) as f64;
        println!(
            "  per event, in the whole database (other users of it included): {:.1} transactions committed, {:.0} rows returned by scans, {:.0} rows fetched by index",
            per(0),
            per(1),
            per(2)
        );
    }
    let mut busiest: Vec<(String, [f64; 3])> = table_scans(database)
        .await
        .into_iter()
        .map(|(table, after)| {
            let before = scans.get(&table).copied().unwrap_or_default();
            let per = |i: usize| (after[i] - before[i]) as f64 / acked.max(1) as f64;
            (table, [per(0), per(1), per(2)])
        })
        .collect();
    busiest.sort_by(|a, b| (b.1[1] + b.1[2]).total_cmp(&(a.1[1] + a.1[2])));
    let busiest: Vec<String> = busiest
        .iter()
        .take(4)
        .map(|(t, [scans, fetched, seq])| {
            format!("{t}: {scans:.1} index scans fetching {fetched:.0} rows, {seq:.0} rows read sequentially")
        })
        .collect();
    println!("  per event, in the replicas' schema: {}", busiest.join("; "));
    rate
}

/// Phase 2: three sources of `per_source` users, each a Read into its own slow target, started through
/// `starters` (round-robin); entities/s from the first start to the last end.
async fn jobs_throughput(
    http: &reqwest::Client,
    starters: &[&Replica],
    watcher: &Replica,
    per_source: usize,
    seed: u64,
) -> f64 {
    let mut sources = Vec::new();
    let mut sims = Vec::new();
    for k in 0..3u64 {
        let source_sim = uaa::spawn(uaa::Options {
            users: per_source,
            seed: seed + k,
            ..Default::default()
        })
        .await
        .expect("a source simulator");
        let target_sim = slow_target().await;
        let source = create_system(
            http,
            &watcher.url,
            json!({"name": format!("Tenant {seed}-{k}"), "type": "xsuaa", "role": "source",
                "properties": uaa_properties(&source_sim)}),
        )
        .await;
        create_system(
            http,
            &watcher.url,
            json!({"name": format!("Subaccount {seed}-{k}"), "type": "xsuaa", "role": "target",
                "sources": [source], "properties": uaa_properties(&target_sim)}),
        )
        .await;
        sources.push(source);
        sims.push((source_sim, target_sim));
    }
    let usage = Usage::now(starters);
    let started = Instant::now();
    let mut ids = Vec::new();
    for (k, source) in sources.iter().enumerate() {
        let on = starters[k % starters.len()];
        let (status, job) = call(
            http,
            &on.url,
            Method::POST,
            &format!("/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "start a Read: {job}");
        ids.push(job["id"].as_str().expect("job id").to_string());
    }
    let mut ended: Vec<Option<Value>> = vec![None; ids.len()];
    while ended.iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (id, slot) in ids.iter().zip(ended.iter_mut()).filter(|(_, s)| s.is_none()) {
            let (_, job) = call(http, &watcher.url, Method::GET, &format!("/jobs/{id}"), None).await;
            if !matches!(
                job["status"].as_str(),
                Some("Queued" | "Running" | "Running with Error") | None
            ) {
                *slot = Some(job);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the Reads did not end within 900 s"
        );
    }
    let wall = started.elapsed();
    let written: usize = sims.iter().map(|(_, t)| t.user_count()).sum();
    let rate = written as f64 / wall.as_secs_f64();
    let nodes: Vec<String> = ended
        .iter()
        .flatten()
        .map(|j| {
            format!(
                "{} on {}",
                j["status"].as_str().unwrap_or("?"),
                j["node"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!(
        "  {written} of {} users in the targets after {:.1} s: {rate:.0} entities/s ({}); {}",
        3 * per_source,
        wall.as_secs_f64(),
        nodes.join(", "),
        usage.since(starters)
    );
    rate
}

/// Phase 3: pushes at `rate` events/s round-robin to `replicas` for `seconds`; `victim` (one of them) is
/// killed while it holds claimed events. The time from the kill until the events it held are done, and how
/// many they were.
async fn consumer_failover(
    replicas: &mut [Replica],
    victim: usize,
    source: &str,
    target: &uaa::Simulator,
    database: &str,
    rate: usize,
    seconds: u64,
) -> Option<(Duration, usize, Duration)> {
    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(database)
        .await
        .expect("a connection to the replicas' schema");
    let victim_name = replicas[victim].name.clone();
    let pusher = {
        let all: Vec<&Replica> = replicas.iter().collect();
        std::sync::Arc::new(Pusher::new(&all, source))
    };
    let in_target = target.user_count();
    let total = rate * seconds as usize;
    let acked = std::sync::Arc::new(AtomicUsize::new(0));
    let load = {
        let (pusher, acked) = (pusher.clone(), acked.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut pending = futures::stream::FuturesUnordered::new();
            for i in 0..total {
                tick.tick().await;
                let (pusher, acked) = (pusher.clone(), acked.clone());
                pending.push(async move {
                    if pusher.push(user(i, "failover")).await {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                });
                while let Some(Some(())) = futures::FutureExt::now_or_never(pending.next()) {}
            }
            while pending.next().await.is_some() {}
        })
    };
    // A third in, once the victim holds claims.
    tokio::time::sleep(Duration::from_secs(seconds / 3)).await;
    let claims =
        "SELECT seq FROM realtime_events WHERE claimed_by = $1 AND state = 'pending' AND claimed_until > now()";
    let waited = Instant::now();
    loop {
        let held: Vec<i64> = sqlx::query_scalar(claims)
            .bind(&victim_name)
            .fetch_all(&mut db)
            .await
            .expect("the victim's claims");
        if !held.is_empty() || waited.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    replicas[victim].kill().await;
    let killed = Instant::now();
    let held: Vec<i64> = sqlx::query_scalar(claims)
        .bind(&victim_name)
        .fetch_all(&mut db)
        .await
        .expect("the victim's claims");
    println!(
        "  killed {victim_name} {:.1} s into the pushes, holding {} claimed events",
        seconds as f64 / 3.0,
        held.len()
    );
    let mut done_after = None;
    while done_after.is_none() && killed.elapsed() < Duration::from_secs(120) {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM realtime_events WHERE seq = ANY($1) AND state = 'pending'")
                .bind(&held)
                .fetch_one(&mut db)
                .await
                .expect("the held events");
        if left == 0 {
            done_after = Some(killed.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load.await.expect("the pushes");
    let acked = acked.load(Ordering::Relaxed);
    let settled = Instant::now();
    while target.user_count() < in_target + acked && settled.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let provisioned = target.user_count() - in_target;
    println!(
        "  {acked} of {total} pushes acknowledged; {provisioned} users in the target {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let _ = db.close().await;
    done_after.map(|d| (d, held.len(), killed.elapsed()))
}

/// Phase 4: a Read of `users` on `holder`, killed at about a third: the time until another replica holds
/// the run, and until it ends there.
async fn takeover(
    http: &reqwest::Client,
    replicas: &mut [Replica],
    holder: usize,
    watcher: usize,
    users: usize,
) -> Option<(Duration, Duration, Value)> {
    let source_sim = uaa::spawn(uaa::Options {
        users,
        seed: 99,
        ..Default::default()
    })
    .await
    .expect("a source simulator");
    let target_sim = slow_target().await;
    let url = replicas[watcher].url.clone();
    let source = create_system(
        http,
        &url,
        json!({"name": "Taken over", "type": "xsuaa", "role": "source", "properties": uaa_properties(&source_sim)}),
    )
    .await;
    create_system(
        http,
        &url,
        json!({"name": "Taken over target", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": uaa_properties(&target_sim)}),
    )
    .await;
    let (status, job) = call(
        http,
        &replicas[holder].url,
        Method::POST,
        &format!("/systems/{source}/jobs"),
        Some(json!({"type": "read"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "start a Read: {job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let started = Instant::now();
    while target_sim.user_count() < users / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the Read makes no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[holder].kill().await;
    let killed = Instant::now();
    let at_kill = target_sim.user_count();
    let mut taken_over = None;
    loop {
        let (_, job) = call(http, &url, Method::GET, &format!("/jobs/{id}"), None).await;
        if taken_over.is_none() && job["attempt"].as_i64().is_some_and(|a| a >= 2) {
            taken_over = Some(killed.elapsed());
        }
        if !matches!(
            job["status"].as_str(),
            Some("Queued" | "Running" | "Running with Error") | None
        ) {
            println!(
                "  killed {} at {at_kill} of {users} users; {} by {} after {:.1} s; {} users in the target, {} creates answered 409",
                replicas[holder].name,
                job["status"].as_str().unwrap_or("?"),
                job["node"].as_str().unwrap_or("?"),
                killed.elapsed().as_secs_f64(),
                target_sim.user_count(),
                target_sim
                    .stats()
                    .log()
                    .iter()
                    .filter(|r| r.method == "POST" && r.path == "/Users" && r.status == 409)
                    .count()
            );
            return taken_over.map(|t| (t, killed.elapsed(), job));
        }
        if killed.elapsed() > Duration::from_secs(180) {
            println!("  not finished 180 s after the kill: {job}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- the run ----------------------------------------------------------------------------------------

async fn run() {
    let events = env_count("BENCH_EVENTS", 10_000);
    let users = env_count("BENCH_USERS", 15_000);
    let failover_rate = env_count("BENCH_FAILOVER_RATE", 400);
    let takeover_users = env_count("BENCH_TAKEOVER_USERS", 5_000);
    let database = bench_database_url().unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    let schema = match Schema::create(&database, "replicas").await {
        Ok(schema) => schema,
        Err(e) => {
            println!("FAIL: {e} (set BENCH_DATABASE_URL to a PostgreSQL database)");
            return;
        }
    };
    let work = tempfile::tempdir().expect("work dir");
    let http = reqwest::Client::new();
    let mut figures: Vec<Figure> = Vec::new();

    println!("starting replica-a on schema {} …", schema.name());
    let a = Replica::start("replica-a", &schema.url, work.path(), None).await;
    let (status, body) = call(
        &http,
        &a.url,
        Method::POST,
        "/technical-users",
        Some(json!({"name": PUSHER.0, "password": PUSHER.1, "permissions": ["realtime-api"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "the pusher: {body}");
    let rt_target = slow_target().await;
    let rt_source = create_system(
        &http,
        &a.url,
        json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/unused", "User": "x", "Password": "y"}}),
    )
    .await;
    create_system(
        &http,
        &a.url,
        json!({"name": "UAA (20 ms writes)", "type": "xsuaa", "role": "target", "sources": [rt_source],
            "properties": uaa_properties(&rt_target)}),
    )
    .await;
    // Warm up: a token, connections, the prepared systems.
    Pusher::new(&[&a], &rt_source).push(user(0, "warm")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("\n(1) real-time, one replica: {events} creates pushed by 64 clients, target writes take 20 ms …");
    let one_rt = realtime_throughput(&[&a], &rt_source, &rt_target, events, "one", &schema.url).await;
    println!(
        "\n(2) jobs, one replica: three Reads of {} users each, each into its own target …",
        users / 3
    );
    let one_jobs = jobs_throughput(&http, &[&a], &a, users / 3, 10).await;

    println!("\nstarting replica-b and replica-c …");
    let b = Replica::start("replica-b", &schema.url, work.path(), Some(&a.key())).await;
    let c = Replica::start("replica-c", &schema.url, work.path(), Some(&a.key())).await;
    // Every replica has seen the others beat (rate-limit shares) and followed the systems.
    tokio::time::sleep(Duration::from_secs(6)).await;
    Pusher::new(&[&b, &c], &rt_source).push(user(1, "warm")).await;
    Pusher::new(&[&c], &rt_source).push(user(2, "warm")).await;

    println!("\n(1) real-time, three replicas: {events} creates pushed by 64 clients round-robin …");
    let three_rt = realtime_throughput(&[&a, &b, &c], &rt_source, &rt_target, events, "three", &schema.url).await;
    println!(
        "\n(2) jobs, three replicas: three Reads of {} users each, one started on each replica …",
        users / 3
    );
    let three_jobs = jobs_throughput(&http, &[&a, &b, &c], &a, users / 3, 20).await;
    figures.push(Figure {
        what: "real-time provisioned, 3 replicas ÷ 1 (20 ms writes)".into(),
        value: format!(
            "{:.2}× ({three_rt:.0} vs {one_rt:.0} events/s, {events} events)",
            three_rt / one_rt
        ),
        target: "≥ 2.5×".into(),
        pass: Some(three_rt / one_rt >= 2.5),
    });
    figures.push(Figure {
        what: "three sources' Reads, one per replica ÷ all on one (20 ms writes)".into(),
        value: format!(
            "{:.2}× ({three_jobs:.0} vs {one_jobs:.0} entities/s, {} users each)",
            three_jobs / one_jobs,
            users / 3
        ),
        target: "— (a run is held by one replica)".into(),
        pass: None,
    });

    let mut replicas = vec![a, b, c];
    println!(
        "\n(3) failover of the real-time consumers: {failover_rate} pushes/s round-robin for 12 s, replica-b killed …"
    );
    match consumer_failover(&mut replicas, 1, &rt_source, &rt_target, &schema.url, failover_rate, 12).await {
        Some((after, held, _)) => figures.push(Figure {
            what: "real-time failover: a killed replica's claimed events done by the others".into(),
            value: format!(
                "{:.1} s after the kill ({held} events; claim lease 10 s)",
                after.as_secs_f64()
            ),
            target: "—".into(),
            pass: None,
        }),
        None => figures.push(Figure {
            what: "real-time failover".into(),
            value: "the killed replica's events were not done within 120 s".into(),
            target: "—".into(),
            pass: Some(false),
        }),
    }

    println!("\n(4) takeover: a Read of {takeover_users} users on replica-c, killed at a third …");
    match takeover(&http, &mut replicas, 2, 0, takeover_users).await {
        Some((taken, finished, job)) => figures.push(Figure {
            what: format!("takeover of a killed replica's Read ({takeover_users} users)"),
            value: format!(
                "held by {} {:.1} s after the kill (lease 10 s + beat 2.5 s), {} {:.1} s after it",
                job["node"].as_str().unwrap_or("?"),
                taken.as_secs_f64(),
                job["status"].as_str().unwrap_or("?"),
                finished.as_secs_f64()
            ),
            target: "finished ≤ 30 s after the kill".into(),
            pass: Some(finished <= Duration::from_secs(30) && job["status"] == "Success"),
        }),
        None => figures.push(Figure {
            what: "takeover".into(),
            value: "not taken over or not finished".into(),
            target: "finished ≤ 30 s after the kill".into(),
            pass: Some(false),
        }),
    }

    drop(replicas);
    schema.drop_all().await;
    println!("\nSeveral replicas on one PostgreSQL (2 cores shared by the replicas, the simulators and PostgreSQL)");
    println!("| what | figure | target |");
    println!("|---|---|---|");
    for f in &figures {
        let verdict = match f.pass {
            Some(true) => " PASS",
            Some(false) => " FAIL",
            None => "",
        };
        println!("| {} | {} | {}{verdict} |", f.what, f.value, f.target);
    }
}
