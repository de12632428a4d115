//! A connector whose `describe()` declares far more than any connector needs: a 30 MB default
//! transformation, or 100,000 properties. The host keeps a descriptor for as long as the plugin is loaded
//! and serves it in the API, so it must refuse this one at load, naming the limit.
//!
//! `describe()` has no configuration, so the misdeed is picked by one byte of the component: the byte after
//! `BLOATED-MODE:` (it occurs once) is `t` (transformation), and tests patch it to `p` (properties).
//!
//! Empty on any target but wasm (raw wit-bindgen exports symbols native linkers refuse).
#![cfg(target_arch = "wasm32")]

include!("../../unsupported.rs");

wit_bindgen::generate!({
    path: "../../../wit/since_v0.1.0",
    world: "plugin",
});

use exports::provisio::connector::connector::Guest;
use provisio::connector::types::{
    Config, ConnectorError, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec,
};

struct Bloated;

/// The misdeed, in the byte after the colon; read through `black_box`, so the compiler cannot fold it.
const MODE: &[u8] = b"BLOATED-MODE:t";

impl Guest for Bloated {
    fn describe() -> Descriptor {
        let mode = std::hint::black_box(MODE)[MODE.len() - 1];
        let (properties, transformation) = if mode == b'p' {
            let properties = (0..100_000)
                .map(|i| PropertySpec {
                    name: format!("property-{i}"),
                    required: false,
                    secret: false,
                    default_value: None,
                    doc: "One of very many.".into(),
                })
                .collect();
            (properties, None)
        } else {
            // A valid transformation padded with 30 MB of whitespace.
            let padding = " ".repeat(30 << 20);
            (vec![], Some(format!("{{\"user\":{{\"mappings\":[]}}{padding}}}")))
        };
        Descriptor {
            name: "bloated".into(),
            version: "1.0.0".into(),
            entity_kinds: vec![EntityKind::User],
            operations: vec![Operation::TestConnection],
            properties,
            default_read_transformation: transformation,
            default_write_transformation: None,
        }
    }

    fn test_connection(_config: Config) -> Result<String, ConnectorError> {
        Ok("ok".into())
    }

    unsupported!(read, get, create, replace, patch, delete);
}

export!(Bloated);
