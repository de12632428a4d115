//! Template connector for a simple REST user API — copy this crate to start your own (see `sdk/README.md`).
//!
//! The API: `GET users?offset=&limit=` → `{"users": [...], "total": n}`, `GET/PUT/DELETE users/{id}`,
//! `POST users`; a user is `{"id", "userName", "email", "firstName", "lastName", "active"}`.
//! Build: `cargo build --release --target wasm32-wasip2 -p provisio-connector-example`.

use provisio_sdk::http::{Request, encode_segment};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, PropertySpec, Result,
};
use serde_json::Value;

pub struct Example;

provisio_sdk::export_connector!(Example);

/// The URL of one user.
fn user_path(id: &str) -> String {
    format!("users/{}", encode_segment(id))
}

/// Only users live in this API.
fn users_only(kind: EntityKind) -> Result<()> {
    match kind {
        EntityKind::User => Ok(()),
        EntityKind::Group => Err(Error::unsupported("groups")),
    }
}

/// Sends a request with an optional JSON body and returns the answer's JSON (`Null` for an empty body).
fn call(cfg: &Config, request: Request, body: Option<&str>) -> Result<Value> {
    let request = match body {
        Some(text) => request.json(&provisio_sdk::json::parse(text, "the user")?),
        None => request,
    };
    let response = request.send(cfg)?.error_for_status()?;
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    response.json()
}

impl Connector for Example {
    fn describe() -> Descriptor {
        Descriptor::new("example", env!("CARGO_PKG_VERSION"))
            .entity_kinds([EntityKind::User])
            .operations([
                Operation::TestConnection,
                Operation::Read,
                Operation::Get,
                Operation::Create,
                Operation::Replace,
                Operation::Delete,
            ])
            .property(PropertySpec::new("URL", "Base URL of the user API, e.g. https://api.example.com/v1").required())
            .property(PropertySpec::new("Authentication", "BearerToken or BasicAuthentication").required())
            .property(PropertySpec::new("Password", "The API token (or the password with User)").secret())
            .read_transformation(include_str!("../transformations/read.json"))
            .write_transformation(include_str!("../transformations/write.json"))
    }

    fn test_connection(cfg: &Config) -> Result<String> {
        cfg.require("URL")?;
        call(cfg, Request::get("users").query("limit", 1), None)?;
        Ok(provisio_sdk::CONNECTION_OK.into())
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        users_only(req.kind)?;
        if req.filter.is_some() || req.delta_since.is_some() {
            return Err(Error::unsupported("filtered and delta reads"));
        }
        let offset: u64 = match &req.cursor {
            Some(c) => c.parse().map_err(|_| Error::rejected(0, format!("bad cursor {c:?}")))?,
            None => 0,
        };
        let page = call(
            cfg,
            Request::get("users")
                .query("offset", offset)
                .query("limit", req.page_size),
            None,
        )?;
        let users = page["users"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64();
        let next = offset + users.len() as u64;
        let more = !users.is_empty() && total.is_none_or(|t| next < t);
        Ok(Page::from_values(users, more.then(|| next.to_string()), total))
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        users_only(kind)?;
        Ok(call(cfg, Request::get(user_path(id)), None)?.to_string())
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        users_only(kind)?;
        Ok(call(cfg, Request::post("users"), Some(entity))?.to_string())
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        users_only(kind)?;
        Ok(call(cfg, Request::put(user_path(id)), Some(entity))?.to_string())
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        users_only(kind)?;
        call(cfg, Request::delete(user_path(id)), None).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
