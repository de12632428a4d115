//! Template connector for a simple REST user API — copy this crate to start your own (see `sdk/README.md`).
//!
//! The API: `GET users?offset=&limit=` → `{"users": [...], "total": n}`, `GET/PUT/DELETE users/{id}`,
//! `POST users`; a user is `{"id", "userName", "email", "firstName", "lastName", "active"}`.
//! Build: `cargo build --release --target wasm32-wasip2` (`provisio plugin new NAME` copies this crate).

use provisio_sdk::http::{Request, encode_segment};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, PropertySpec, Result,
};
use serde_json::Value;

pub struct Example;

/// The largest page this API serves (`limit`). The host asks for up to 500 (jobs: `provisio.read.page.size`).
pub const MAX_PAGE: u32 = 100;

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

/// The user name of a `userName eq "x"` filter; other filters are [`Error::Unsupported`].
fn user_name_filter(filter: &str) -> Result<String> {
    let unsupported = || Error::unsupported(format!("the filter `{filter}` (only `userName eq \"…\"`)"));
    let (attribute, rest) = filter.trim().split_once(char::is_whitespace).ok_or_else(unsupported)?;
    let literal = match rest.trim_start().split_once(char::is_whitespace) {
        Some((op, literal)) if attribute.eq_ignore_ascii_case("userName") && op.eq_ignore_ascii_case("eq") => literal,
        _ => return Err(unsupported()),
    };
    serde_json::from_str(literal.trim()).map_err(|_| unsupported())
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
        if req.delta_since.is_some() {
            return Err(Error::unsupported("delta reads")); // the host reads everything instead
        }
        // After a create conflicted (409) the host looks the user up with `userName eq "…"` (see the guide).
        let wanted = req.filter.as_deref().map(user_name_filter).transpose()?;
        let offset: u64 = match &req.cursor {
            Some(c) => c.parse().map_err(|_| Error::rejected(0, format!("bad cursor {c:?}")))?,
            None => 0,
        };
        let limit = req.page_size.clamp(1, MAX_PAGE);
        let request = Request::get("users").query("offset", offset).query("limit", limit);
        let page = call(cfg, request.query_opt("userName", wanted.as_deref()), None)?;
        let mut users = page["users"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64();
        if let Some(name) = &wanted {
            // Keep only exact matches, in case the API ignores `userName`; one page is enough for a lookup.
            users.retain(|u| u["userName"].as_str() == Some(name.as_str()));
            return Ok(Page::from_values(users, None, None));
        }
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
