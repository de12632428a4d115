//! Provisio's engine: the domain of identity provisioning, without HTTP.
//!
//! - [`systems`]: system definitions validated against their connector, Test Connection.
//! - [`plugins`]: the loaded plugin versions (pinned or active, rollback, removal), the inbox.
//! - [`provisioning`]: jobs (read → transform → write to every target), the sync engine, deletes, schedules.
//! - [`realtime`]: pushed events through the durable outbox to every target.
//! - [`quarantine`]: targets whose writes all fail held out of runs and real-time until a probe or an
//!   admin releases them.
//! - [`proxy`]: a system served as SCIM 2.0 — views, schemas, queries and writes; the HTTP handlers are the
//!   service crate's.
//! - [`notify`]: notifications to subscribers by webhook and e-mail, and their producers.
//! - [`transform_test`]: running a transformation on sample input for the admin API.
//!
//! It stands on `provisio-core` (runtime, outbound, store, secrets), which it re-exports under the same
//! module names, and never on the HTTP layer.

pub use provisio_core::{connector, idle, json, metrics, outbound, runtime, secrets, store};

pub mod audit;
pub mod notify;
pub mod plugins;
pub mod provisioning;
pub mod proxy;
pub mod quarantine;
pub mod realtime;
pub mod retention;
pub mod systems;
mod text_answers;
pub mod transform_test;

use std::sync::Arc;

/// The fewest entities a core takes from a page's transformations (a job's, a proxied list's): below this,
/// spreading costs more than it saves.
pub(crate) const PARALLEL_CHUNK: usize = 32;

/// The engine's services, wired once by the composition root (the service's `server::boot`); cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// The store, one interface per aggregate.
    pub stores: store::Stores,
    /// Loaded plugins.
    pub plugins: Arc<plugins::Plugins>,
    /// System management.
    pub systems: systems::Systems,
    /// Standard provisioning jobs.
    pub provisioning: provisioning::Provisioning,
    /// Real-time provisioning.
    pub realtime: realtime::Realtime,
    /// Quarantine of failing targets, its probes, and the hook notifications listen on
    /// ([`quarantine::Quarantines::subscribe`]).
    pub quarantine: quarantine::Quarantines,
    /// The proxy's cached system views and per-client limits.
    pub proxy: Arc<proxy::ProxyState>,
    /// The audit log.
    pub audit: audit::Audit,
    /// How long job logs, real-time events and the audit log are kept.
    pub retention: retention::RetentionPolicy,
    /// Notifications: subscriptions' deliveries by webhook and e-mail.
    pub notifier: notify::Notifier,
}

impl Engine {
    /// Wires the services over the stores and a plugin registry; the logs of job runs are kept
    /// `retention_days` (the rest of [`Engine::retention`] has its defaults).
    pub fn new(stores: store::Stores, plugins: Arc<plugins::Plugins>, retention_days: i64) -> Self {
        let systems = systems::Systems::new(stores.clone(), plugins.clone());
        let provisioning = provisioning::Provisioning::new(stores.clone(), plugins.clone(), retention_days);
        let realtime = realtime::Realtime::new(stores.clone(), provisioning.clone());
        let quarantine = provisioning.quarantines().clone();
        let notifier = provisioning.notifier().clone();
        Engine {
            quarantine,
            audit: audit::Audit::new(stores.clone()),
            retention: retention::RetentionPolicy {
                job_logs_days: retention_days,
                ..Default::default()
            },
            notifier,
            stores,
            plugins,
            systems,
            provisioning,
            realtime,
            proxy: Arc::default(),
        }
    }

    /// The background pruner of what is past [`Engine::retention`].
    pub fn pruner(&self) -> retention::Pruner {
        retention::Pruner::new(self.stores.clone(), self.retention.clone())
    }

    /// Shuts the work down for an exit (SIGTERM): nothing new is claimed, taken over or scheduled; job
    /// runs and real-time events being worked get up to `grace` to finish; on a shared store what is still
    /// held is handed back for another replica to take over at once. Answers the job runs and events handed
    /// back.
    pub async fn drain(&self, grace: std::time::Duration) -> (usize, u64) {
        // The job side's drain marks the replica as draining when first polled, which stops the real-time
        // dispatcher claiming too.
        tokio::join!(self.provisioning.drain(grace), self.realtime.drain(grace))
    }
}
