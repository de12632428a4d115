//! One module per released contract version, each with its own `bindgen!` (Zed's pattern). The host serves
//! components built against any version listed in [`SUPPORTED`].

pub mod v0_1_0;

/// Contract versions this host serves, oldest first.
pub const SUPPORTED: &[&str] = &[v0_1_0::VERSION];

/// The interface every connector exports, without its version.
pub const CONNECTOR_INTERFACE: &str = "provisio:connector/connector";

/// The bindings of a loaded plugin, by the contract version it was built for.
#[derive(Clone)]
pub enum Bindings {
    /// Built against 0.1.0.
    V0_1_0(v0_1_0::PluginPre<super::state::CallState>),
}
