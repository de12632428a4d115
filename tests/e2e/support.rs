//! Test support: a Provisio service running in-process on a free port with a fresh data directory, the
//! hostile test plugin, and scim2-server (the third-party SCIM server) as a child process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use provisio::api::AppState;
use provisio::server::Settings;
use provisio::store::principals::PrincipalKind;
use reqwest::StatusCode;
use serde_json::Value;

pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");

/// A running service.
pub struct Service {
    pub url: String,
    pub state: AppState,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.server.abort();
        self.scheduler.abort();
    }
}

impl Service {
    pub async fn start() -> Service {
        Self::start_with(Settings::default()).await
    }

    pub async fn start_with(settings: Settings) -> Service {
        Self::start_keyed(settings, None).await
    }

    /// Another replica beside `other`: the same master key (copied into its own data directory) and
    /// `settings` (the same `database_url`, say).
    pub async fn start_beside(other: &Service, settings: Settings) -> Service {
        let key = std::fs::read(other.data_dir().join("master.key")).expect("the other replica's key");
        Self::start_keyed(settings, Some(key)).await
    }

    async fn start_keyed(mut settings: Settings, master_key: Option<Vec<u8>>) -> Service {
        // Compile each component once for the whole test run, not once per service.
        settings
            .artifact_cache
            .get_or_insert_with(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifact-cache"));
        let data = tempfile::tempdir().expect("temp dir");
        if let Some(key) = master_key {
            std::fs::write(data.path().join("master.key"), key).expect("the master key");
        }
        let state = provisio::server::boot(data.path(), settings).await.expect("boot");
        // A replica beside another finds the admin there already.
        match state
            .stores
            .principals
            .create(ADMIN.0, ADMIN.1, PrincipalKind::Admin, &[])
            .await
        {
            Ok(_) | Err(provisio::store::StoreError::Conflict(_)) => {}
            Err(e) => panic!("admin: {e}"),
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = provisio::api::router(state.clone());
        let provisioning = state.provisioning.clone();
        let realtime = state.realtime.clone();
        let quarantine = state.quarantine.clone();
        let scheduler = tokio::spawn(async move {
            tokio::join!(
                provisio::provisioning::schedule::run_scheduler(provisioning),
                realtime.run_dispatcher(),
                quarantine.run_probes()
            );
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        Service {
            url: format!("http://{addr}"),
            state,
            http: reqwest::Client::new(),
            _data: data,
            server,
            scheduler,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self._data.path().to_path_buf()
    }

    /// An admin request; answers status and JSON body (Null when the body is not JSON).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(ADMIN.0, Some(ADMIN.1));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn upload_plugin(&self, bytes: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/plugins", self.url))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_system(&self, body: Value) -> String {
        let (status, created) = self.admin(reqwest::Method::POST, "/api/v1/systems", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().expect("id").to_string()
    }

    pub async fn test_connection(&self, id: &str) -> (bool, String) {
        let (status, result) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/systems/{id}/test-connection"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{result}");
        (
            result["ok"].as_bool().expect("ok"),
            result["message"].as_str().unwrap_or("").to_string(),
        )
    }

    /// Starts a job (`body`: `{"type": "read"}`, …) on a source and waits (at most `limit`) for its end.
    pub async fn run_job(&self, source: &str, body: Value, limit: Duration) -> Value {
        let (status, job) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/systems/{source}/jobs"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        self.wait_job(job["id"].as_str().expect("job id"), limit).await
    }

    /// Waits (at most `limit`) for a job to end; answers it.
    pub async fn wait_job(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let (_, job) = self
                .admin(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"), None)
                .await;
            if matches!(
                job["status"].as_str(),
                Some("Success" | "Finished with Error" | "Manually Terminated")
            ) {
                return job;
            }
            assert!(
                started.elapsed() < limit,
                "job {id} did not end within {limit:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(format!("{}/healthz", self.url)).send().await, Ok(r) if r.status() == StatusCode::OK)
    }

    /// The text of `GET /metrics` (which answers 200 without credentials).
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }
}

/// The hostile test plugin, built by `build.rs`.
pub fn hostile_plugin() -> Vec<u8> {
    std::fs::read(env!("PROVISIO_HOSTILE_WASM")).expect("hostile plugin built by build.rs")
}

/// The hostile plugin (contract 0.1.0) declaring another version: its version string occurs once in the
/// component, so a same-length replacement makes a different, valid component.
pub fn hostile_version(version: &str) -> Vec<u8> {
    let mut bytes = hostile_plugin();
    assert_eq!(version.len(), 5, "same length as 1.0.0");
    let positions: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| *w == b"1.0.0")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 1, "the version string must occur exactly once");
    bytes[positions[0]..positions[0] + 5].copy_from_slice(version.as_bytes());
    bytes
}

/// A PostgreSQL database URL whose `search_path` is a fresh, empty schema of the test database
/// (`PROVISIO_TEST_DATABASE_URL`, else the local server's `test` database).
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let url = provisio_store_postgres::test_database_url();
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set PROVISIO_TEST_DATABASE_URL): {e}"));
    let schema = provisio_store_postgres::test_schema(&mut admin, "provisio_e2e")
        .await
        .expect("create a schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A TCP link to a server that a test can cut, as when the database goes away: [`CuttableLink::cut`] closes
/// every open connection and refuses new ones until [`CuttableLink::restore`].
pub struct CuttableLink {
    /// The local port that leads to the server.
    pub port: u16,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableLink {
    /// A link to `server` (`host:port`).
    pub async fn to(server: String) -> CuttableLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(tokio::sync::watch::channel(true).0);
        let link = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*link.borrow() {
                    continue; // refused: dropped at once
                }
                let (server, mut down) = (server.clone(), link.subscribe());
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&server).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CuttableLink { port, up, task }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for CuttableLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// scim2-server, the third-party SCIM 2.0 server, serving in memory under `/v2` with a bearer token.
pub struct Scim2Server {
    pub base_url: String,
    pub token: String,
    child: Child,
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scim2_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SCIM2_SERVER") {
        return PathBuf::from(p);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    workspace.join(".venv-scim/bin/scim2-server")
}

impl Scim2Server {
    pub async fn start() -> Scim2Server {
        Scim2Server::start_with(&[]).await
    }

    /// scim2-server with further command-line arguments (`--resource-type FILE`, `--schema FILE`).
    pub async fn start_with(extra: &[&str]) -> Scim2Server {
        let binary = scim2_server_binary();
        assert!(
            binary.exists(),
            "{} is missing: run the README's test command (it installs scim2-server into .venv-scim), or set SCIM2_SERVER",
            binary.display()
        );
        let port = free_port();
        let token = format!("token-{port}");
        let child = Command::new(&binary)
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--bearer-token",
                &token,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "scim2-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Scim2Server {
            base_url: format!("http://127.0.0.1:{port}/v2"),
            token,
            child,
        }
    }
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines of this test binary into memory: Provisio's own at every level, other crates'
/// from info up (wasmtime's compiler traces every instruction at trace level).
pub fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new("info,provisio=trace");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| LogSink)
            .try_init();
    });
}

/// What was logged so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|e| e.into_inner())).to_string()
}

/// A system's plugin and call target, to drive the connector through the real runtime.
pub struct Connector {
    pub plugin: std::sync::Arc<provisio::runtime::LoadedPlugin>,
    pub target: provisio::runtime::CallTarget,
    pub runtime: std::sync::Arc<provisio::runtime::Runtime>,
}

impl Service {
    /// The connector of system `id`.
    pub async fn connector(&self, id: &str) -> Connector {
        let system = self.state.systems.get(id).await.expect("system");
        let plugin = self.state.systems.plugin_for(&system).expect("plugin");
        let target = self
            .state
            .systems
            .call_target(&system, &plugin.descriptor)
            .expect("target");
        Connector {
            plugin,
            target,
            runtime: self.state.plugins.runtime().clone(),
        }
    }
}
