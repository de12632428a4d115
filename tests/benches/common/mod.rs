//! What the benchmarks share: a service booted with its principals, percentiles, the service's plugin-call time from its metrics, and serving a
//! router on a free local port. (A folder of its own, so that cargo does not take it for a benchmark.)

// Each benchmark uses some of these.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use provisio::api::AppState;
use provisio::server::Settings;
use provisio::store::principals::{Permission, PrincipalKind};

/// The admin every benchmark signs in as.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The technical user that pushes real-time events (permission `realtime-api`).
pub const PUSHER: (&str, &str) = ("pusher", "pusher-password-1");
/// The admin, as a principal to create.
pub const ADMIN_PRINCIPAL: Principal<'static> = (ADMIN.0, ADMIN.1, PrincipalKind::Admin, &[]);
/// The pusher, as a principal to create.
pub const PUSHER_PRINCIPAL: Principal<'static> =
    (PUSHER.0, PUSHER.1, PrincipalKind::Technical, &[Permission::RealtimeApi]);

/// A principal a benchmark signs in with: name, password, kind, and permissions (technical users).
pub type Principal<'a> = (&'a str, &'a str, PrincipalKind, &'a [Permission]);

/// Boots a service on `data` with `settings` and creates `principals` in it.
pub async fn boot(data: &Path, settings: Settings, principals: &[Principal<'_>]) -> AppState {
    let state = provisio::server::boot(data, settings).await.expect("boot the service");
    for &(name, password, kind, permissions) in principals {
        state
            .stores
            .principals
            .create(name, password, kind, permissions)
            .await
            .unwrap_or_else(|e| panic!("create the principal {name}: {e}"));
    }
    state
}

/// The value at fraction `p` (0 to 1) of sorted samples; `None` without samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Sum (seconds) and count of the service's plugin calls (`provisio_plugin_call_seconds`, all plugins).
pub fn plugin_time() -> (f64, f64) {
    plugin_time_in(&provisio::metrics::render())
}

/// Sum (seconds) and count of the plugin calls in a `/metrics` text.
pub fn plugin_time_in(metrics: &str) -> (f64, f64) {
    let mut sum = 0.0;
    let mut count = 0.0;
    for line in metrics.lines() {
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
        // As `provisio serve` listens (TCP_NODELAY), for the simulators, the floor and ours alike.
        let _ = axum::serve(provisio::server::without_nagle(listener), router).await;
    });
    (addr, server)
}

/// `BENCH_DATABASE_URL`: the PostgreSQL database (`postgres://…`) that the benchmarks run on beside SQLite,
/// each run in a fresh schema of its own that is dropped after it; `None` when unset or empty.
pub fn bench_database_url() -> Option<String> {
    std::env::var("BENCH_DATABASE_URL")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A fresh, empty schema in a PostgreSQL database, for one run of the service.
pub struct Schema {
    /// The database URL with the schema as its `search_path`: the service's `--database-url`.
    pub url: String,
    name: String,
    database: String,
}

impl Schema {
    /// Creates a schema named after `label` and a random tag in the database at `database`.
    pub async fn create(database: &str, label: &str) -> Result<Schema, String> {
        use sqlx::Connection as _;
        let name = format!("provisio_bench_{label}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(database)
            .await
            .map_err(|e| format!("cannot connect to BENCH_DATABASE_URL: {e}"))?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("cannot create schema {name}: {e}"))?;
        let _ = admin.close().await;
        let separator = if database.contains('?') { '&' } else { '?' };
        Ok(Schema {
            url: format!("{database}{separator}options=-c%20search_path%3D{name}"),
            name,
            database: database.to_string(),
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the schema and everything in it; says so on stderr when it cannot.
    pub async fn drop_all(self) {
        use sqlx::Connection as _;
        let dropped = async {
            let mut admin = sqlx::PgConnection::connect(&self.database).await?;
            sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
                .execute(&mut admin)
                .await?;
            admin.close().await
        };
        if let Err(e) = dropped.await {
            eprintln!("cannot drop schema {} (drop it by hand): {e}", self.name);
        }
    }
}

/// A number from the environment (`BENCH_…`), or `default` when unset or not a number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs a benchmark on 2 runtime workers, with the real-time module's log (why an event needed another
/// attempt) on stderr (`RUST_LOG` overrides it).
pub fn run_on_two_workers(benchmark: impl std::future::Future<Output = ()>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("provisio::realtime=info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = provisio::memory::runtime()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    rt.block_on(benchmark);
}

/// The `i`th SCIM user a source pushes (ids and names prefixed, so runs do not collide).
pub fn pushed_user(i: u64, prefix: &str) -> serde_json::Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:sap:2.0:User"],
        "id": format!("{prefix}{i}"),
        "userName": format!("{prefix}.user{i}"),
        "name": {"givenName": "Bench", "familyName": format!("User{i}")},
        "emails": [{"value": format!("{prefix}.user{i}@example.com"), "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"userId": format!("{prefix}{i}"), "userUuid": format!("uuid-{prefix}-{i}")}
    })
}

/// Milliseconds since the epoch of an RFC 3339 instant.
pub fn millis(t: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis() as f64)
}
