//! A connector built from the 0.3.0 WIT with raw wit-bindgen that reads a list answer through the host's
//! `send-list` and puts the entities the host kept on its page with `page.listed` — and, as a third party's
//! plugin might, misuses them. The `read-mode` property picks what `read` does:
//!
//! - `listed`: keeps `Users`' resources, lists them all and adds one entity of its own after them;
//! - `rest`: answers the rest of the list answer the host handed it (the resources emptied) as its entity;
//! - `whole`: asks the host to keep a member the answer does not have; answers what came back;
//! - `overdraw`: lists one more entity than the host kept;
//! - `unsent`: lists entities without any `send-list`;
//! - `replaced`: keeps `Users`' resources, then an empty list's, and lists one (the second kept nothing).
//!
//! Empty on any target but wasm (raw wit-bindgen exports symbols native linkers refuse).
#![cfg(target_arch = "wasm32")]

include!("../../unsupported.rs");

wit_bindgen::generate!({
    path: "../../../wit/since_v0.3.0",
    world: "plugin",
});

use exports::provisio::connector::connector::Guest;
use provisio::connector::host::{self, HttpRequest, ListedResponse};
use provisio::connector::types::{
    Config, ConnectorError, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec,
};

struct Lister;

fn property<'a>(config: &'a Config, name: &str) -> &'a str {
    config
        .properties
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A GET of `path` on the `api` upstream through `send-list`, keeping `member`.
fn list(config: &Config, path: &str, member: &str) -> Result<ListedResponse, ConnectorError> {
    let request = HttpRequest {
        upstream: "api".into(),
        method: "GET".into(),
        path: path.into(),
        headers: vec![],
        body: None,
    };
    host::send_list(config, &request, member).map_err(|e| ConnectorError::Transient(format!("{e:?}")))
}

fn page(listed: u32, entities: Vec<String>) -> Page {
    Page {
        listed,
        entities,
        next_cursor: None,
        total: None,
    }
}

fn kept(r: &ListedResponse) -> Result<u32, ConnectorError> {
    r.items.ok_or_else(|| {
        ConnectorError::Transient(format!(
            "the host kept nothing: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ))
    })
}

impl Guest for Lister {
    fn describe() -> Descriptor {
        Descriptor {
            name: "lister".into(),
            version: "1.0.0".into(),
            entity_kinds: vec![EntityKind::User],
            operations: vec![Operation::TestConnection, Operation::Read],
            properties: vec![
                PropertySpec {
                    name: "URL".into(),
                    required: true,
                    secret: false,
                    default_value: None,
                    doc: "The system's base URL.".into(),
                },
                PropertySpec {
                    name: "read-mode".into(),
                    required: false,
                    secret: false,
                    default_value: None,
                    doc: "What read does.".into(),
                },
            ],
            default_read_transformation: None,
            default_write_transformation: None,
            default_proxy_read_transformation: None,
            default_proxy_write_transformation: None,
        }
    }

    fn test_connection(_config: Config) -> Result<String, ConnectorError> {
        Ok("ok".into())
    }

    fn read(config: Config, _request: PageRequest) -> Result<Page, ConnectorError> {
        match property(&config, "read-mode") {
            "listed" => {
                let answer = list(&config, "Users", "Resources")?;
                Ok(page(kept(&answer)?, vec![r#"{"id":"own"}"#.into()]))
            }
            "rest" => {
                let answer = list(&config, "Users", "Resources")?;
                kept(&answer)?;
                Ok(page(0, vec![String::from_utf8_lossy(&answer.body).into_owned()]))
            }
            "whole" => {
                let answer = list(&config, "Users", "members")?;
                let entity = format!(
                    r#"{{"id":"whole","kept":{},"bytes":{}}}"#,
                    answer.items.is_some(),
                    answer.body.len()
                );
                Ok(page(0, vec![entity]))
            }
            "overdraw" => {
                let answer = list(&config, "Users", "Resources")?;
                Ok(page(kept(&answer)? + 1, vec![]))
            }
            "unsent" => Ok(page(2, vec![])),
            "replaced" => {
                list(&config, "Users", "Resources")?;
                list(&config, "Empty", "Resources")?;
                Ok(page(1, vec![]))
            }
            other => Err(ConnectorError::InvalidConfig(format!("unknown read-mode `{other}`"))),
        }
    }

    unsupported!(get, create, replace, patch, delete);
}

export!(Lister);
