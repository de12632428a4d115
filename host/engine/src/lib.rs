//! Provisio's engine: the domain of identity provisioning, without HTTP.
//!
//! - [`systems`]: system definitions validated against their connector, Test Connection.
//! - [`plugins`]: the loaded plugin versions (pinned or active, rollback, removal), the inbox.
//! - [`provisioning`]: jobs (read → transform → write to every target), the sync engine, deletes, schedules.
//! - [`realtime`]: pushed events through the durable outbox to every target.
//! - [`proxy`]: a system served as SCIM 2.0 — views, schemas, queries and writes; the HTTP handlers are the
//!   service crate's.
//! - [`notify`]: notifications to subscribers by webhook and e-mail, and their producers.
//! - [`transform_test`]: running a transformation on sample input for the admin API.
//!
//! It stands on `provisio-core` (runtime, outbound, store, secrets), which it re-exports under the same
//! module names, and never on the HTTP layer.

pub use provisio_core::{connector, metrics, outbound, runtime, secrets, store};

pub mod notify;
pub mod plugins;
pub mod provisioning;
pub mod proxy;
pub mod realtime;
pub mod systems;
pub mod transform_test;

use std::sync::Arc;

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
    /// The proxy's cached system views and per-client limits.
    pub proxy: Arc<proxy::ProxyState>,
    /// Notifications: subscriptions' deliveries by webhook and e-mail.
    pub notifier: notify::Notifier,
}

impl Engine {
    /// Wires the services over the stores and a plugin registry; job runs and real-time events are kept
    /// `retention_days`.
    pub fn new(stores: store::Stores, plugins: Arc<plugins::Plugins>, retention_days: i64) -> Self {
        let systems = systems::Systems::new(stores.clone(), plugins.clone());
        let provisioning = provisioning::Provisioning::new(stores.clone(), plugins.clone(), retention_days);
        let realtime = realtime::Realtime::new(stores.clone(), provisioning.clone());
        let notifier = provisioning.notifier().clone();
        Engine {
            notifier,
            stores,
            plugins,
            systems,
            provisioning,
            realtime,
            proxy: Arc::default(),
        }
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
