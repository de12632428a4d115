//! Bindings for contract `provisio:connector@0.1.0` (frozen: `wit/since_v0.1.0`), and conversions between
//! its generated types and the host's own (`crate::connector`).
// The items wasmtime's bindgen generates from the WIT carry the WIT's comments, not Rust docs.
#![allow(missing_docs)]

use wasmtime::component::HasSelf;

use crate::connector as host_types;
use crate::outbound;
use crate::runtime::state::CallState;

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.1.0",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

use self::provisio::connector::host as wit_host;
use self::provisio::connector::types as wit;
pub use exports::provisio::connector::connector as guest;

/// The semantic version of this contract.
pub const VERSION: &str = "0.1.0";

/// Adds this version's host imports to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

super::common!(super::send_import!([_config: wit::Config,]););

/// A page's texts (nothing is listed before 0.3.0).
pub fn page(p: wit::Page, _page_size: u32, _state: &mut CallState) -> Result<host_types::PageTexts, String> {
    Ok(host_types::PageTexts {
        entities: p.entities,
        next_cursor: p.next_cursor,
        total: p.total,
    })
}

impl From<wit::Descriptor> for host_types::Descriptor {
    fn from(d: wit::Descriptor) -> Self {
        super::host_descriptor!(d)
    }
}

impl From<wit::ConnectorError> for host_types::ConnectorError {
    fn from(e: wit::ConnectorError) -> Self {
        super::host_connector_error!(e)
    }
}
