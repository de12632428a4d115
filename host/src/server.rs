//! Starting the service: the data directory, the store, the runtime with the bundled connectors, the first
//! admin, and the HTTP(S) listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::api::{self, AppState};
use crate::outbound::{Outbound, OutboundLimits};
use crate::plugins::Plugins;
use crate::runtime::{CallLimits, Runtime};
use crate::secrets::SecretBox;
use crate::store::Stores;
use crate::store::principals::PrincipalKind;
pub use crate::tls::{ClientCertificate, TlsSettings};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The data directory is unusable.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Another part failed.
    #[error("{0}")]
    Other(String),
}

/// How the service runs.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Limits of plugin calls.
    pub call_limits: CallLimits,
    /// Limits of outbound HTTP.
    pub outbound_limits: OutboundLimits,
    /// Days ended job runs and their logs are kept; [`crate::provisioning::DEFAULT_RETENTION_DAYS`] when `None`.
    pub job_retention_days: Option<i64>,
    /// Days ended real-time events are kept; [`crate::retention::DEFAULT_EVENTS_DAYS`] when `None`.
    pub events_retention_days: Option<i64>,
    /// Days audit entries are kept; [`crate::retention::DEFAULT_AUDIT_DAYS`] when `None`.
    pub audit_retention_days: Option<i64>,
    /// Days finished notification deliveries are kept; [`crate::retention::DEFAULT_DELIVERIES_DAYS`] when
    /// `None`.
    pub deliveries_retention_days: Option<i64>,
    /// Where precompiled components are cached; `cache/` in the data directory when `None`. Several
    /// services on one machine (tests) can share one.
    pub artifact_cache: Option<std::path::PathBuf>,
    /// Requests per second each technical user may send to the proxy endpoints (bursts of the same size);
    /// `None` is no limit. Over it, 429 with `Retry-After`.
    pub proxy_rate_limit: Option<f64>,
    /// The PostgreSQL database (`postgres://…`) that holds everything; SQLite in the data directory when
    /// `None`.
    pub database_url: Option<String>,
    /// Requests each technical user may have in flight at once on the proxy endpoints;
    /// [`crate::proxy::limit::DEFAULT_MAX_IN_FLIGHT`] when `None`. Over it, 429 with `Retry-After`.
    pub proxy_max_in_flight: Option<usize>,
    /// The brute-force protection of password checks; [`crate::api::login_guard::LoginPolicy::default`]
    /// when `None`.
    pub login_policy: Option<crate::api::login_guard::LoginPolicy>,
    /// The first probe's delay for a quarantined target (doubling up to an hour);
    /// [`crate::quarantine::DEFAULT_PROBE_INTERVAL`] when `None`.
    pub quarantine_probe: Option<Duration>,
    /// How notifications are sent (SMTP server, retries, collapsing window).
    pub notifications: crate::notify::NotifySettings,
}

/// How often a replica reads the pauses other replicas recorded for systems that answered 429.
const PAUSE_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Opens (creating) the data directory and everything in it, loads the plugins, and returns the state
/// the HTTP surface serves.
pub async fn boot(data_dir: &Path, settings: Settings) -> Result<AppState, BootError> {
    let dir_error = |message: String| BootError::DataDir {
        path: data_dir.display().to_string(),
        message,
    };
    Dir::create_ambient_dir_all(data_dir, ambient_authority()).map_err(|e| dir_error(e.to_string()))?;
    // The directory holds the master key and password hashes: owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| dir_error(e.to_string()))?;
    }
    let dir = Dir::open_ambient_dir(data_dir, ambient_authority()).map_err(|e| dir_error(e.to_string()))?;
    for sub in ["plugins", "plugins/inbox", "cache"] {
        dir.create_dir_all(sub)
            .map_err(|e| dir_error(format!("cannot create {sub}/: {e}")))?;
    }
    let open_sub = |sub: &str| {
        dir.open_dir(sub)
            .map_err(|e| dir_error(format!("cannot open {sub}/: {e}")))
    };
    let secrets = SecretBox::open(&dir).map_err(|e| dir_error(e.to_string()))?;
    let store = match &settings.database_url {
        Some(url) => provisio_store_postgres::PostgresStore::connect(url, secrets)
            .await
            .map_err(|e| BootError::Other(format!("the database at {}: {e}", redact_url(url))))?
            .stores(),
        // SQLite opens its file by path; it is the one file under the data directory not opened through cap-std.
        None => provisio_store_sqlite::SqliteStore::open(&data_dir.join("provisio.db"), secrets)
            .map_err(|e| dir_error(e.to_string()))?
            .stores(),
    };
    let outbound = Arc::new(Outbound::new(settings.outbound_limits).map_err(BootError::Other)?);
    if store.is_shared() {
        // Rate limits and 429 pauses hold for the replicas together.
        outbound.share_limits(store.limits.clone());
        tokio::spawn(outbound.clone().follow_pauses(PAUSE_POLL_INTERVAL));
    }
    let runtime =
        Arc::new(Runtime::new(settings.call_limits, outbound, Some(open_sub("cache")?)).map_err(BootError::Other)?);
    let plugins = Arc::new(Plugins::new(runtime, Some(open_sub("plugins")?)).with_bundled(crate::bundled::BUNDLED));
    crate::memory::lean(plugins.load_installed(&store))
        .await
        .map_err(|e| BootError::Other(format!("cannot load the bundled connectors: {e}")))?;
    if store.is_shared() {
        // Every replica follows the plugin versions the others receive, select and remove.
        tokio::spawn(plugins.clone().watch_registry(crate::plugins::REGISTRY_POLL_INTERVAL));
    }
    let retention = settings
        .job_retention_days
        .unwrap_or(crate::provisioning::DEFAULT_RETENTION_DAYS);
    let mut state = AppState::new(store, plugins, retention);
    if let Some(days) = settings.events_retention_days {
        state.retention.events_days = days;
    }
    if let Some(days) = settings.audit_retention_days {
        state.retention.audit_days = days;
    }
    if let Some(days) = settings.deliveries_retention_days {
        state.retention.deliveries_days = days;
    }
    state.proxy = Arc::new(crate::proxy::ProxyState::new(
        settings.proxy_rate_limit,
        settings
            .proxy_max_in_flight
            .unwrap_or(crate::proxy::limit::DEFAULT_MAX_IN_FLIGHT),
    ));
    if let Some(base) = settings.quarantine_probe {
        state.quarantine.set_probe_interval(base);
    }
    if let Some(policy) = settings.login_policy {
        state.logins = Arc::new(crate::api::login_guard::LoginGuard::new(policy));
    }
    state
        .provisioning
        .recover()
        .await
        .map_err(|e| BootError::Other(format!("cannot recover job runs: {e}")))?;
    // Deliveries left in the outbox by an earlier start (or another replica) go on at once.
    state.notifier.configure(settings.notifications.clone());
    tokio::spawn(state.notifier.clone().run());
    tokio::spawn(state.notifier.clone().follow_quarantines(state.quarantine.subscribe()));
    Ok(state)
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// Creates the first admin when there is none: from `PROVISIO_BOOTSTRAP_ADMIN=user:password`, or with a
/// generated password printed once on stderr.
pub async fn ensure_admin(store: &Stores) -> Result<(), BootError> {
    if store
        .principals
        .has_admin()
        .await
        .map_err(|e| BootError::Other(e.to_string()))?
    {
        return Ok(());
    }
    let (name, password, generated) = match std::env::var("PROVISIO_BOOTSTRAP_ADMIN") {
        Ok(value) => {
            let (n, p) = value
                .split_once(':')
                .ok_or_else(|| BootError::Other("PROVISIO_BOOTSTRAP_ADMIN must be user:password".into()))?;
            (n.to_string(), p.to_string(), false)
        }
        Err(_) => {
            use base64::Engine as _;
            use rand::RngCore;
            let mut raw = [0u8; 18];
            rand::rng().fill_bytes(&mut raw);
            (
                "admin".to_string(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
                true,
            )
        }
    };
    store
        .principals
        .create(&name, &password, PrincipalKind::Admin, &[])
        .await
        .map_err(|e| BootError::Other(e.to_string()))?;
    if generated {
        // Printed once, never logged: the log may be shipped elsewhere.
        eprintln!(
            "\nCreated the first admin. User: {name}  Password: {password}\n(store it now; it is not shown again)\n"
        );
    } else {
        tracing::info!(admin = %name, "created the first admin from PROVISIO_BOOTSTRAP_ADMIN");
    }
    Ok(())
}

/// Serves plain HTTP until Ctrl-C or SIGTERM.
pub async fn serve(listen: SocketAddr, state: AppState) -> Result<(), BootError> {
    serve_with(listen, state, None).await
}

/// Serves until Ctrl-C or SIGTERM: HTTPS with `tls` (and client certificates when it names a client CA),
/// plain HTTP without; work in progress gets [`DEFAULT_SHUTDOWN_GRACE`] to finish.
pub async fn serve_with(listen: SocketAddr, state: AppState, tls: Option<TlsSettings>) -> Result<(), BootError> {
    serve_until_signal(listen, state, tls, DEFAULT_SHUTDOWN_GRACE).await
}

/// How long job runs and real-time events in progress may take to finish after SIGTERM by default (below
/// Kubernetes' default termination grace of 30 s).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Serves until Ctrl-C or SIGTERM (see [`serve_with`]). At the signal the listener stops taking
/// connections while the requests in progress finish, and at the same time the engine stops claiming
/// work, gives the job runs and real-time events in progress up to `grace` to finish, and (on a shared
/// store) hands the rest back to the other replicas; then this returns.
pub async fn serve_until_signal(
    listen: SocketAddr,
    state: AppState,
    tls: Option<TlsSettings>,
    grace: Duration,
) -> Result<(), BootError> {
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel();
    let engine = state.engine.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "shutting down: finishing the work in progress"
        );
        let drain = tokio::spawn(async move { engine.drain(grace).await });
        let _ = drain_tx.send(drain);
    };
    let served = serve_until(listen, state, tls, shutdown).await;
    // Only when the signal came (else the sender went with the server's future).
    if let Ok(drain) = drain_rx.await {
        match drain.await {
            Ok((runs, events)) => tracing::info!(
                job_runs_handed_back = runs,
                events_handed_back = events,
                "work in progress finished or handed back; exiting"
            ),
            Err(e) => tracing::error!(error = %e, "the shutdown's drain ended abnormally"),
        }
    }
    served
}

async fn serve_until(
    listen: SocketAddr,
    state: AppState,
    tls: Option<TlsSettings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BootError> {
    // Unusable TLS material fails the start before anything listens.
    let config = tls.as_ref().map(crate::tls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| BootError::Other(format!("cannot listen on {listen}: {e}")))?;
    let local = listener.local_addr().map_err(|e| BootError::Other(e.to_string()))?;
    tokio::spawn(crate::provisioning::schedule::run_scheduler(state.provisioning.clone()));
    tokio::spawn(state.realtime.clone().run_dispatcher());
    tokio::spawn(state.quarantine.clone().run_probes());
    // Job logs, ended real-time events, the audit log and finished notification deliveries past their
    // retention, in small batches.
    tokio::spawn(state.pruner().run());
    tokio::spawn(
        state
            .plugins
            .clone()
            .watch_inbox(state.stores.clone(), crate::plugins::INBOX_POLL_INTERVAL),
    );
    tracing::info!(
        %local,
        tls = config.is_some(),
        client_certificates = tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        connectors = state.plugins.list().len(),
        pooling = state.plugins.runtime().pooling(),
        "Provisio is serving"
    );
    match config {
        Some(config) => {
            serve_tls_with_config(listener, api::router(state), config, shutdown).await;
            Ok(())
        }
        // The client's address reaches the handlers (login throttling per address) as `ConnectInfo`.
        None => axum::serve(
            without_nagle(listener),
            api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| BootError::Other(e.to_string())),
    }
}

/// The listener's connections send each answer at once, as the TLS path's do (see [`no_delay`]).
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(no_delay as fn(&mut tokio::net::TcpStream))
}

/// Sets `TCP_NODELAY` on an accepted connection: Nagle's algorithm would hold a short write back until the
/// client acknowledged the one before.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish their requests after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API over TLS on `listener` until `shutdown` completes. Each request carries the verified
/// client certificate of its connection, if any, as a [`ClientCertificate`] extension. The background
/// workers (scheduler, real-time dispatcher) are not started here; [`serve_with`] starts them.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: &TlsSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BootError> {
    let config = crate::tls::server_config(tls)?;
    serve_tls_with_config(listener, api::router(state), config, shutdown).await;
    Ok(())
}

async fn serve_tls_with_config(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (mut tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        no_delay(&mut tcp);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert = crate::tls::peer_certificate(stream.get_ref().1);
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                // Set by this code only: a client cannot smuggle it in, extensions do not come off the wire.
                request.extensions_mut().insert(crate::tls::ServedOverTls);
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                if let Some(cert) = &cert {
                    request.extensions_mut().insert(cert.clone());
                }
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish in time");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
