//! Bindings for contract `provisio:connector@0.3.0` (frozen: `wit/since_v0.3.0`), and conversions between
//! its generated types and the host's own (`crate::connector`). What 0.3.0 adds to 0.2.0: `send-list`, whose
//! answer's list elements the host keeps, and `page.listed`, which puts them on the page.
// The items wasmtime's bindgen generates from the WIT carry the WIT's comments, not Rust docs.
#![allow(missing_docs)]

use wasmtime::component::HasSelf;

use crate::connector as host_types;
use crate::outbound;
use crate::runtime::state::CallState;

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.3.0",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

use self::provisio::connector::host as wit_host;
use self::provisio::connector::types as wit;
pub use exports::provisio::connector::connector as guest;

/// The semantic version of this contract.
pub const VERSION: &str = "0.3.0";

/// Adds this version's host imports to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

super::common!(
    super::send_import!([_config: wit::Config,]);
    super::send_list_import!([_config: wit::Config,]);
);

super::since_0_3_0!();

super::since_0_2_0!();
