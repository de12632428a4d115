//! A connector built from the 0.4.0 WIT with raw wit-bindgen, to check what the host does with the `system`
//! resource: it counts the resources this instance made and the calls each one served, and answers them, with
//! what its config said, from `test-connection` and `get` (as JSON). Its `constructor` property picks what the
//! constructor does: `trap` panics, `loop` never returns, anything else keeps the config.
//!
//! Empty on any target but wasm (raw wit-bindgen exports symbols native linkers refuse).
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({
    path: "../../../wit/since_v0.4.0",
    world: "plugin",
});

use exports::provisio::connector::connector::{Guest, GuestSystem};
use provisio::connector::host::{self, HttpRequest};
use provisio::connector::types::{
    Config, ConnectorError, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec,
};

/// `system` resources this instance has made.
static MADE: AtomicU32 = AtomicU32::new(0);

struct Four;

struct System {
    config: Config,
    calls: Cell<u32>,
}

impl System {
    fn property(&self, name: &str) -> &str {
        self.config
            .properties
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Counts this call and answers what the resource knows, after a GET of `Users` through the host.
    fn report(&self) -> Result<String, ConnectorError> {
        self.calls.set(self.calls.get() + 1);
        let request = HttpRequest {
            upstream: "api".into(),
            method: "GET".into(),
            path: "Users".into(),
            headers: vec![],
            body: None,
        };
        let answer = host::send(&request).map_err(|e| ConnectorError::Transient(format!("{e:?}")))?;
        Ok(format!(
            r#"{{"id":"1","made":{},"calls":{},"system":"{}","flavour":"{}","status":{}}}"#,
            MADE.load(Ordering::Relaxed),
            self.calls.get(),
            self.config.system_id,
            self.property("flavour"),
            answer.status
        ))
    }
}

impl Guest for Four {
    type System = System;

    fn describe() -> Descriptor {
        let property = |name: &str, required: bool| PropertySpec {
            name: name.into(),
            required,
            secret: false,
            default_value: None,
            doc: format!("{name} (test)"),
        };
        Descriptor {
            name: "contract-four".into(),
            version: "4.0.0".into(),
            entity_kinds: vec![EntityKind::User],
            operations: vec![Operation::TestConnection, Operation::Get],
            properties: vec![
                property("URL", true),
                property("constructor", false),
                property("flavour", false),
            ],
            default_read_transformation: None,
            default_write_transformation: None,
            default_proxy_read_transformation: None,
            default_proxy_write_transformation: None,
        }
    }
}

impl GuestSystem for System {
    fn new(config: Config) -> System {
        let system = System {
            config,
            calls: Cell::new(0),
        };
        match system.property("constructor") {
            "trap" => panic!("the constructor traps"),
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => {}
        }
        MADE.fetch_add(1, Ordering::Relaxed);
        system
    }

    fn test_connection(&self) -> Result<String, ConnectorError> {
        self.report()
    }

    fn read(&self, _request: PageRequest) -> Result<Page, ConnectorError> {
        Err(ConnectorError::Unsupported("read".into()))
    }

    fn get(&self, _kind: EntityKind, _id: String) -> Result<String, ConnectorError> {
        self.report()
    }

    fn create(&self, _kind: EntityKind, _entity: String) -> Result<String, ConnectorError> {
        Err(ConnectorError::Unsupported("create".into()))
    }

    fn replace(&self, _kind: EntityKind, _id: String, _entity: String) -> Result<String, ConnectorError> {
        Err(ConnectorError::Unsupported("replace".into()))
    }

    fn patch(&self, _kind: EntityKind, _id: String, _operations: String) -> Result<Option<String>, ConnectorError> {
        Err(ConnectorError::Unsupported("patch".into()))
    }

    fn delete(&self, _kind: EntityKind, _id: String) -> Result<(), ConnectorError> {
        Err(ConnectorError::Unsupported("delete".into()))
    }
}

export!(Four);
