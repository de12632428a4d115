//! The state every handler can reach: the engine's services (bearer tokens are in its stores). Built once, by
//! [`crate::server::boot`] (or a test), and shared by the admin API, the proxy and the real-time API.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use provisio_engine::Engine;

use crate::plugins::Plugins;
use crate::store::Stores;

/// The engine's services, as the HTTP layer reaches them. One allocation shared by every request: axum
/// clones the state for each handler and middleware, and cloning the engine's dozens of handles each time
/// (and dropping them) was a few per cent of a proxied GET's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What [`AppState`] shares.
#[derive(Clone)]
pub struct Services {
    /// Systems, plugins, jobs, real-time and the proxy's logic, over the store.
    pub engine: Engine,
    /// Brute-force protection of password checks.
    pub logins: Arc<crate::api::login_guard::LoginGuard>,
}

impl AppState {
    /// Wires the state from the stores and a plugin registry; job runs and real-time events are kept
    /// `retention_days`.
    pub fn new(store: Stores, plugins: Arc<Plugins>, retention_days: i64) -> Self {
        AppState(Arc::new(Services {
            engine: Engine::new(store, plugins, retention_days),
            logins: Arc::default(),
        }))
    }
}

/// Handlers reach the services as `state.stores`, `state.systems`, `state.logins`, … .
impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Settings changed while the service is wired (before the state is shared): a state already shared is
/// copied first, so a change never reaches requests in flight halfway.
impl DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }
}

impl Deref for Services {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl DerefMut for Services {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}
