//! Starting the service: the data directory, the store, the runtime with the bundled connectors, the first
//! admin, and the HTTP listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::api::{self, AppState};
use crate::outbound::{Outbound, OutboundLimits};
use crate::plugins::Plugins;
use crate::runtime::{CallLimits, Runtime};
use crate::secrets::SecretBox;
use crate::store::Store;
use crate::store::principals::PrincipalKind;

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
    /// Where precompiled components are cached; `cache/` in the data directory when `None`. Several
    /// services on one machine (tests) can share one.
    pub artifact_cache: Option<std::path::PathBuf>,
}

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
    for sub in ["plugins", "cache"] {
        dir.create_dir_all(sub)
            .map_err(|e| dir_error(format!("cannot create {sub}/: {e}")))?;
    }
    let open_sub = |sub: &str| {
        dir.open_dir(sub)
            .map_err(|e| dir_error(format!("cannot open {sub}/: {e}")))
    };
    let secrets = SecretBox::open(&dir).map_err(|e| dir_error(e.to_string()))?;
    // SQLite opens its file by path; it is the one file under the data directory not opened through cap-std.
    let store = Store::open(&data_dir.join("provisio.db"), secrets).map_err(|e| dir_error(e.to_string()))?;
    let outbound = Arc::new(Outbound::new(settings.outbound_limits).map_err(BootError::Other)?);
    let runtime =
        Arc::new(Runtime::new(settings.call_limits, outbound, Some(open_sub("cache")?)).map_err(BootError::Other)?);
    let plugins = Arc::new(Plugins::new(runtime, Some(open_sub("plugins")?)));
    plugins
        .load_installed(&store)
        .await
        .map_err(|e| BootError::Other(format!("cannot load the bundled connectors: {e}")))?;
    let retention = settings
        .job_retention_days
        .unwrap_or(crate::provisioning::DEFAULT_RETENTION_DAYS);
    let state = AppState::new(store, plugins, retention);
    state
        .provisioning
        .recover()
        .map_err(|e| BootError::Other(format!("cannot recover job runs: {e}")))?;
    Ok(state)
}

/// Creates the first admin when there is none: from `PROVISIO_BOOTSTRAP_ADMIN=user:password`, or with a
/// generated password printed once on stderr.
pub fn ensure_admin(store: &Store) -> Result<(), BootError> {
    if store.has_admin().map_err(|e| BootError::Other(e.to_string()))? {
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
        .create_principal(&name, &password, PrincipalKind::Admin, &[])
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

/// Serves until Ctrl-C or SIGTERM.
pub async fn serve(listen: SocketAddr, state: AppState) -> Result<(), BootError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| BootError::Other(format!("cannot listen on {listen}: {e}")))?;
    let local = listener.local_addr().map_err(|e| BootError::Other(e.to_string()))?;
    tokio::spawn(crate::provisioning::schedule::run_scheduler(state.provisioning.clone()));
    tokio::spawn(state.realtime.clone().run_dispatcher());
    tracing::info!(%local, connectors = state.plugins.list().len(), pooling = state.plugins.runtime().pooling(), "Provisio is serving");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| BootError::Other(e.to_string()))
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
