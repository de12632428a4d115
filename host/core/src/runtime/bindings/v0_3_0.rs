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
    async fn send_list(
        &mut self,
        _config: wit::Config,
        request: wit_host::HttpRequest,
        member: String,
    ) -> Result<wit_host::ListedResponse, wit_host::HttpError> {
        let (r, items) = self
            .send_list(http_request(request), &member)
            .await
            .map_err(http_error)?;
        Ok(wit_host::ListedResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
            items,
        })
    }
);

/// A page's texts: the elements the call's last `send-list` kept, as many as the page lists (at most
/// `page_size`), then its own.
pub fn page(p: wit::Page, page_size: u32, state: &mut CallState) -> Result<host_types::PageTexts, String> {
    let mut entities = state.take_listed(p.listed, page_size)?;
    if entities.is_empty() {
        entities = p.entities;
    } else {
        entities.extend(p.entities);
    }
    Ok(host_types::PageTexts {
        entities,
        next_cursor: p.next_cursor,
        total: p.total,
    })
}

super::since_0_2_0!();
