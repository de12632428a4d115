//! The service state of the handler tests (API and console): an in-memory SQLite store with the given
//! principals, a runtime with default limits, and the bundled SCIM connector when asked for.

use std::sync::Arc;

use crate::outbound::{Outbound, OutboundLimits};
use crate::plugins::Plugins;
use crate::runtime::{CallLimits, Runtime};
use crate::secrets::SecretBox;
use crate::state::AppState;
use crate::store::principals::{Permission, PrincipalKind};

/// A principal of a test: name, password, kind and permissions.
pub(crate) type TestPrincipal<'a> = (&'a str, &'a str, PrincipalKind, &'a [Permission]);

/// A service with `principals`, without connectors.
pub(crate) async fn state(principals: &[TestPrincipal<'_>]) -> AppState {
    build(principals, false).await
}

/// A service with `principals` and the bundled SCIM connector.
pub(crate) async fn state_with_scim(principals: &[TestPrincipal<'_>]) -> AppState {
    build(principals, true).await
}

async fn build(principals: &[TestPrincipal<'_>], scim: bool) -> AppState {
    let store = provisio_store_sqlite::SqliteStore::in_memory(SecretBox::from_key([7; 32]))
        .expect("store")
        .stores();
    for (name, password, kind, permissions) in principals {
        store
            .principals
            .create(name, password, *kind, permissions)
            .await
            .expect("principal");
    }
    let outbound = Arc::new(Outbound::new(OutboundLimits::default()).expect("outbound"));
    let runtime = Arc::new(Runtime::new(CallLimits::default(), outbound, None).expect("runtime"));
    let mut plugins = Plugins::new(runtime, None);
    if scim {
        let bundled: Vec<(&'static str, &'static [u8])> = crate::bundled::BUNDLED
            .iter()
            .filter(|(name, _)| *name == "scim")
            .copied()
            .collect();
        assert_eq!(bundled.len(), 1, "the SCIM connector is bundled");
        plugins = plugins.with_bundled(Box::leak(bundled.into_boxed_slice()));
        plugins.load_installed(&store).await.expect("the SCIM connector loads");
    }
    AppState::new(store, Arc::new(plugins), 30)
}
