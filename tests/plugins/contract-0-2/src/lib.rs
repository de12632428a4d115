//! A connector built from the frozen 0.2.0 WIT with raw wit-bindgen, as a component compiled before 0.3.0
//! was: the host must keep loading and calling it unchanged. `test-connection` and `read` go through the
//! host's `send`; the page carries the answer's body, so a test sees the import worked.
//!
//! Empty on any target but wasm (raw wit-bindgen exports symbols native linkers refuse).
#![cfg(target_arch = "wasm32")]

include!("../../unsupported.rs");

wit_bindgen::generate!({
    path: "../../../wit/since_v0.2.0",
    world: "plugin",
});

use exports::provisio::connector::connector::Guest;
use provisio::connector::host::{self, HttpRequest};
use provisio::connector::types::{
    Config, ConnectorError, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec,
};

struct Two;

/// A GET of `Users` on the system's `api` upstream: its status and body as text.
fn users(config: &Config) -> Result<(u16, String), ConnectorError> {
    let request = HttpRequest {
        upstream: "api".into(),
        method: "GET".into(),
        path: "Users".into(),
        headers: vec![],
        body: None,
    };
    host::send(config, &request)
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .map_err(|e| ConnectorError::Transient(format!("{e:?}")))
}

impl Guest for Two {
    fn describe() -> Descriptor {
        Descriptor {
            name: "contract-two".into(),
            version: "1.0.0".into(),
            entity_kinds: vec![EntityKind::User],
            operations: vec![Operation::TestConnection, Operation::Read],
            properties: vec![PropertySpec {
                name: "URL".into(),
                required: true,
                secret: false,
                default_value: None,
                doc: "The system's base URL.".into(),
            }],
            default_read_transformation: None,
            default_write_transformation: None,
            default_proxy_read_transformation: None,
            default_proxy_write_transformation: None,
        }
    }

    fn test_connection(config: Config) -> Result<String, ConnectorError> {
        users(&config).map(|(status, body)| format!("{status} {body}"))
    }

    fn read(config: Config, _request: PageRequest) -> Result<Page, ConnectorError> {
        let (status, body) = users(&config)?;
        let body: String = body.chars().filter(char::is_ascii_alphanumeric).collect();
        Ok(Page {
            entities: vec![format!(r#"{{"id":"1","status":{status},"answer":"{body}"}}"#)],
            next_cursor: None,
            total: Some(1),
        })
    }

    unsupported!(get, create, replace, patch, delete);
}

export!(Two);
