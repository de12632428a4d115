//! The state every handler can reach: the engine's services (bearer tokens are in its stores). Built once, by
//! [`crate::server::boot`] (or a test), and shared by the admin API, the proxy and the real-time API.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use provisio_engine::Engine;

use crate::plugins::Plugins;
use crate::store::Stores;

/// The engine's services, as the HTTP layer reaches them.
#[derive(Clone)]
pub struct AppState {
    /// Systems, plugins, jobs, real-time and the proxy's logic, over the store.
    pub engine: Engine,
    /// Brute-force protection of password checks.
    pub logins: Arc<crate::api::login_guard::LoginGuard>,
}

impl AppState {
    /// Wires the state from the stores and a plugin registry; job runs and real-time events are kept
    /// `retention_days`.
    pub fn new(store: Stores, plugins: Arc<Plugins>, retention_days: i64) -> Self {
        AppState {
            engine: Engine::new(store, plugins, retention_days),
            logins: Arc::default(),
        }
    }
}

/// Handlers reach the services as `state.stores`, `state.systems`, … .
impl Deref for AppState {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}
