//! The store's interfaces: one narrow, async interface per aggregate — [`SystemStore`], [`PrincipalStore`],
//! [`PluginStore`], [`JobStore`], [`LinkStore`], [`EventStore`], [`TokenStore`], [`LimitStore`], [`LoginStore`], [`AuditStore`], [`RetentionStore`], [`NotificationStore`] — and the records they keep. The engine talks
//! to these and never to SQL or a connection; a backend (`provisio-store-sqlite`, the embedded default)
//! implements them all and hands them out bundled as [`Stores`], built in the composition root.
//!
//! What is the same for every backend lives here, above them: password hashing and the verified-login cache
//! ([`Principals`]), issuing and checking bearer tokens ([`Tokens`]), opening sealed secrets ([`Stores::open_secrets`]), and the text form of instants.

pub mod audit;
pub mod conformance;
pub mod generation;
pub mod jobs;
pub mod limits;
pub mod links;
pub mod logins;
pub mod notifications;
pub mod plugins;
pub mod principals;
pub mod realtime;
pub mod retention;
pub mod systems;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use audit::AuditStore;
pub use jobs::JobStore;
pub use limits::LimitStore;
pub use links::LinkStore;
pub use logins::LoginStore;
pub use notifications::NotificationStore;
pub use plugins::PluginStore;
pub use principals::{PrincipalStore, Principals};
pub use realtime::EventStore;
pub use retention::RetentionStore;
pub use systems::SystemStore;
pub use tokens::{TokenStore, Tokens};

use crate::secrets::{Secret, SecretBox, SystemSecrets};

/// Errors of the store.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (the backend's own message).
    #[error("database: {0}")]
    Backend(String),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// A stored value could not be decoded or decrypted.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A job run's write was refused: another replica has taken the run over (or it is gone).
    #[error("another replica took this run over: {0}")]
    Fenced(String),
}

/// Every aggregate's store, as one backend implements them; cheap to clone.
#[derive(Clone)]
pub struct Stores {
    /// Sources, targets and proxies, with their transformations.
    pub systems: Arc<dyn SystemStore>,
    /// Admins and technical users, with password checking above the backend.
    pub principals: Principals,
    /// The plugin registry.
    pub plugins: Arc<dyn PluginStore>,
    /// Runs, their entity logs, held deletes, delta state and schedules.
    pub jobs: Arc<dyn JobStore>,
    /// Which target entity each source entity was written to.
    pub links: Arc<dyn LinkStore>,
    /// The real-time outbox and log.
    pub events: Arc<dyn EventStore>,
    /// Bearer tokens, valid on every replica.
    pub tokens: Tokens,
    /// Targets' rate-limit schedules and pauses, shared by the replicas.
    pub limits: Arc<dyn LimitStore>,
    /// Failed logins and login locks, shared by the replicas.
    pub logins: Arc<dyn LoginStore>,
    /// The audit log of admins' and technical users' changes.
    pub audit: Arc<dyn AuditStore>,
    /// Pruning past the retention, in batches.
    pub retention: Arc<dyn RetentionStore>,
    /// Notification subscriptions and their delivery outbox.
    pub notifications: Arc<dyn NotificationStore>,
    readiness: Arc<dyn Readiness>,
    secrets: SecretBox,
    shared: bool,
}

/// Whether a backend can serve: its database answers and holds the schema this Provisio knows.
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok` when it can serve; else why not.
    async fn ready(&self) -> Result<(), StoreError>;
}

impl Stores {
    /// Bundles one backend that implements every aggregate's interface; `secrets` opens what it sealed.
    pub fn new<B>(backend: Arc<B>, secrets: SecretBox) -> Stores
    where
        B: SystemStore
            + PrincipalStore
            + PluginStore
            + JobStore
            + LinkStore
            + EventStore
            + TokenStore
            + LimitStore
            + LoginStore
            + AuditStore
            + RetentionStore
            + NotificationStore
            + Readiness
            + 'static,
    {
        Stores {
            systems: backend.clone(),
            principals: Principals::new(backend.clone()),
            plugins: backend.clone(),
            jobs: backend.clone(),
            links: backend.clone(),
            events: backend.clone(),
            tokens: Tokens::new(backend.clone()),
            limits: backend.clone(),
            logins: backend.clone(),
            audit: backend.clone(),
            retention: backend.clone(),
            notifications: backend.clone(),
            readiness: backend,
            secrets,
            shared: false,
        }
    }

    /// Marks the store as shared by several replicas (PostgreSQL): runs are then claimed with leases and
    /// taken over when their replica dies, rather than marked interrupted at start.
    pub fn shared_by_replicas(mut self) -> Stores {
        self.shared = true;
        self
    }

    /// Whether several replicas may use the store at once.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Whether the store can serve (`/readyz`).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.readiness.ready().await
    }

    /// The values of a system's secrets: the one way to their plaintext, for building a connection to it.
    pub fn open_secrets(&self, secrets: &SystemSecrets) -> Result<BTreeMap<String, Secret>, StoreError> {
        self.secrets
            .open_secrets(secrets)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// An instant in the store's text form (RFC 3339 UTC with milliseconds, sortable as text, like [`now`]).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Now, in the store's text form (see [`timestamp`]).
pub fn now() -> String {
    // RFC 3339 UTC with milliseconds, sortable as text.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_time() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_415), (2025, 11, 23));
        assert!(super::now().ends_with('Z'));
        assert_eq!(super::now().len(), "2025-11-23T00:00:00.000Z".len());
    }
}
