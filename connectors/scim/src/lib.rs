//! Generic SCIM 2.0 connector for Provisio.
//!
//! Reads and writes users and groups of any SCIM 2.0 service provider (RFC 7643/7644) through the host:
//! `Users` and `Groups` relative to the system's `URL`, index paging, filters, delta reads by
//! `meta.lastModified`, PUT with `If-Match`, PATCH (or get + apply + PUT where the service has none), and
//! conflict resolution on create by the configured unique attributes. Writes carry only the schema
//! extensions the system declares in `ResourceTypes` (see `extensions`). Written with `provisio-sdk` only.

mod extensions;
mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use provisio_sdk::http::{Response, encode_segment};
use provisio_sdk::scim::{self, ListResponse, PatchOp};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
};
use serde_json::Value;

use settings::Settings;

pub use provisio_sdk::CONNECTION_OK;

/// The default read transformation (SAP Identity Provisioning JSON dialect).
pub const READ_TRANSFORMATION: &str = include_str!("../transformations/read.json");
/// The default write transformation (SAP Identity Provisioning JSON dialect).
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");

/// The generic SCIM 2.0 connector.
pub struct Scim;

provisio_sdk::export_connector!(Scim);

impl Connector for Scim {
    fn describe() -> Descriptor {
        let mut d = Descriptor::new("scim", env!("CARGO_PKG_VERSION"))
            .entity_kinds([EntityKind::User, EntityKind::Group])
            .operations(Operation::ALL)
            .read_transformation(READ_TRANSFORMATION)
            .write_transformation(WRITE_TRANSFORMATION);
        for spec in settings::specs() {
            d = d.property(spec);
        }
        d
    }

    fn test_connection(cfg: &Config) -> Result<String> {
        let s = Settings::new(cfg)?;
        let resp = s
            .request("GET", "Users")
            .query("startIndex", 1)
            .query("count", 1)
            .send(cfg)?;
        match resp.status {
            200..=299 => match resp.json().and_then(|v| ListResponse::from_json(&v)) {
                Ok(_) => Ok(CONNECTION_OK.to_string()),
                Err(_) => Err(Error::invalid_config(format!(
                    "The system answered, but not as a SCIM service: `GET Users` did not return a list response. Check the property `{}`.",
                    settings::URL
                ))),
            },
            401 | 403 => Err(Error::unauthorized(format!(
                "The system refused the credentials (HTTP {}); check Authentication, User and Password. {}",
                resp.status,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "The system has no SCIM `Users` endpoint under this URL (HTTP 404); check the property `{}`.",
                settings::URL
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        let s = Settings::new(cfg)?;
        let start = scim::start_index(req.cursor.as_deref())?;
        let count = req.page_size.max(1);
        let delta = req.delta_since.as_deref().map(scim::modified_since);
        let system_filter = s.filter(req.kind);
        let filter = scim::and_filters([system_filter, req.filter.as_deref(), delta.as_deref()]);
        let resp = s
            .request("GET", req.kind.scim_endpoint())
            .query("startIndex", start)
            .query("count", count)
            .query_opt("filter", filter.as_deref())
            .send(cfg)?;
        if resp.status == 400 && filter.is_some() {
            let detail = status::detail(&resp.body);
            if delta.is_some() {
                return Err(Error::Unsupported(format!(
                    "The system refused the delta-read filter `meta.lastModified gt …`: {detail}"
                )));
            }
            if req.filter.is_none() {
                return Err(Error::invalid_config(format!(
                    "The system refused the filter in the property `{}`: {detail}",
                    settings::filter_property(req.kind)
                )));
            }
        }
        let resp = resp.error_for_status()?;
        scim::index_page(&resp, start, count)
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        fetch(&s, kind, id).map(|v| v.to_string())
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        extensions::strip_entity(&s, kind, &mut entity);
        let resp = s.request_with("POST", kind.scim_endpoint(), &entity).send(cfg)?;
        match resp.status {
            200..=299 => entity_of(&resp, "created"),
            409 => resolve_conflict(&s, kind, &entity, status::error_for(&resp)),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        extensions::strip_entity(&s, kind, &mut entity);
        // A version the entity carries is the caller's precondition: a stale one fails, it is not retried.
        let version = version_of(&entity);
        put(&s, kind, id, &entity, version, false).map(|v| v.to_string())
    }

    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let s = Settings::new(cfg)?;
        let mut doc = json::parse(operations, "PatchOp document")?;
        PatchOp::parse(&doc)?;
        if !extensions::strip_patch(&s, kind, &mut doc).is_empty()
            && doc
                .get("Operations")
                .or_else(|| doc.get("operations"))
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        {
            // Nothing the system keeps was to change.
            return fetch(&s, kind, id).map(|v| Some(v.to_string()));
        }
        let ops = PatchOp::parse(&doc)?;
        if s.patch {
            scim::ensure_patch_schema(&mut doc);
            let resp = s.request_with("PATCH", entity_path(kind, id), &doc).send(cfg)?;
            if matches!(resp.status, 405 | 501) {
                log::warn(format_args!(
                    "the system refused PATCH (HTTP {}) although {} is true; applying the patch with GET and PUT",
                    resp.status,
                    settings::SUPPORT_PATCH
                ));
            } else {
                let resp = ok_or_not_found(resp, kind, id)?;
                if resp.is_empty() {
                    return Ok(None);
                }
                return entity_of(&resp, "patched").map(Some);
            }
        }
        // No PATCH in this system: read, apply, write back (re-reading once on a stale version).
        let mut attempt = 0;
        loop {
            let current = fetch(&s, kind, id)?;
            let version = version_of(&current);
            let mut patched = current;
            ops.apply(&mut patched)?;
            if let Some(obj) = patched.as_object_mut() {
                obj.shift_remove("meta");
            }
            match send_put(&s, kind, id, &patched, version.as_deref())? {
                resp if resp.status == 412 && attempt == 0 => attempt += 1,
                resp => return finish_put(resp, kind, id).map(|v| Some(v.to_string())),
            }
        }
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        let s = Settings::new(cfg)?;
        let resp = s.request("DELETE", entity_path(kind, id)).send(cfg)?;
        ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// `Users/{id}` or `Groups/{id}`, the id percent-encoded.
fn entity_path(kind: EntityKind, id: &str) -> String {
    format!("{}/{}", kind.scim_endpoint(), encode_segment(id))
}

/// The answer if it is 2xx; a 404 becomes a not-found error naming the entity.
fn ok_or_not_found(resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
    match resp.status {
        404 => Err(Error::not_found(format!(
            "The {} `{id}` does not exist in the system: {}",
            kind.as_str(),
            status::detail(&resp.body)
        ))),
        _ => resp.error_for_status(),
    }
}

/// Reads one entity.
fn fetch(s: &Settings, kind: EntityKind, id: &str) -> Result<Value> {
    let resp = s.request("GET", entity_path(kind, id)).send(s.cfg)?;
    ok_or_not_found(resp, kind, id)?.json()
}

/// The entity a 2xx write answered with, as JSON text.
fn entity_of(resp: &Response, what: &str) -> Result<String> {
    if resp.is_empty() {
        return Err(Error::rejected(
            resp.status,
            format!("The system answered without the {what} entity."),
        ));
    }
    resp.json().map(|v| v.to_string())
}

/// `meta.version` (an ETag such as `W/"3"`; a UAA integer becomes `"3"`).
fn version_of(entity: &Value) -> Option<String> {
    match json::get(entity, "meta.version")? {
        Value::String(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Value::Number(n) => Some(format!("\"{n}\"")),
        _ => None,
    }
}

fn send_put(s: &Settings, kind: EntityKind, id: &str, entity: &Value, version: Option<&str>) -> Result<Response> {
    let mut req = s.request_with("PUT", entity_path(kind, id), entity);
    match version {
        Some(v) => req = req.header("If-Match", v),
        None if s.if_match_wildcard => req = req.header("If-Match", "*"),
        None => {}
    }
    req.send(s.cfg)
}

fn finish_put(resp: Response, kind: EntityKind, id: &str) -> Result<Value> {
    let resp = ok_or_not_found(resp, kind, id)?;
    if resp.is_empty() {
        // Some services answer a PUT with 204: read back what was stored. (None here do so yet; stay strict.)
        return Err(Error::rejected(
            resp.status,
            "The system answered without the replaced entity.",
        ));
    }
    resp.json()
}

/// `PUT` with `version` as `If-Match`; on a stale version (412) re-reads and retries once when `retry_stale`,
/// else the 412 is [`Error::Conflict`].
fn put(
    s: &Settings,
    kind: EntityKind,
    id: &str,
    entity: &Value,
    version: Option<String>,
    retry_stale: bool,
) -> Result<Value> {
    let resp = send_put(s, kind, id, entity, version.as_deref())?;
    if resp.status == 412 && version.is_some() && retry_stale {
        log::info(format_args!(
            "{} {id} changed meanwhile (HTTP 412); re-reading and retrying once",
            kind.as_str()
        ));
        let current = version_of(&fetch(s, kind, id)?);
        let mut entity = entity.clone();
        if let (Some(v), Some(meta)) = (&current, entity.get_mut("meta").and_then(Value::as_object_mut)) {
            meta.insert("version".into(), Value::String(v.clone()));
        }
        return finish_put(send_put(s, kind, id, &entity, current.as_deref())?, kind, id);
    }
    finish_put(resp, kind, id)
}

/// After a create conflicted: look the entity up by the configured unique attributes and, when exactly one
/// matches, replace it (SAP Identity Provisioning's conflict resolution); otherwise keep the conflict.
fn resolve_conflict(s: &Settings, kind: EntityKind, entity: &Value, conflict: Error) -> Result<String> {
    if s.cfg.host_resolves_conflicts() {
        return Err(conflict);
    }
    let mut clauses = Vec::new();
    for attr in s.unique_attributes(kind) {
        let (Some(name), Some(value)) = (filter_attribute(attr), json::get(entity, attr)) else {
            return Err(conflict);
        };
        let literal = match value {
            Value::String(v) => scim::quote(v),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => return Err(conflict),
        };
        clauses.push(format!("{name} eq {literal}"));
    }
    if clauses.is_empty() {
        return Err(conflict);
    }
    let filter = clauses.join(" and ");
    let resp = s
        .request("GET", kind.scim_endpoint())
        .query("filter", &filter)
        .send(s.cfg)?
        .error_for_status()?;
    let found = ListResponse::from_response(&resp)?.resources;
    let [existing] = found.as_slice() else {
        log::info(format_args!(
            "create conflicted and `{filter}` matches {} {}s; keeping the conflict",
            found.len(),
            kind.as_str()
        ));
        return Err(conflict);
    };
    let Some(id) = existing.get("id").and_then(Value::as_str) else {
        return Err(conflict);
    };
    log::info(format_args!(
        "{} already exists as {id} ({filter}); updating it instead",
        kind.as_str()
    ));
    put(s, kind, id, entity, version_of(existing), true).map(|v| v.to_string())
}

/// The SCIM filter attribute of a unique-attribute path: `emails[0].value` → `emails.value`,
/// `['urn:…:Group']['name']` → `urn:…:Group:name`.
fn filter_attribute(path: &str) -> Option<String> {
    let keys: Vec<String> = json::parse_path(path)?
        .into_iter()
        .filter_map(|seg| match seg {
            json::Segment::Key(k) => Some(k),
            json::Segment::Index(_) => None,
        })
        .collect();
    let (first, rest) = keys.split_first()?;
    if rest.is_empty() {
        return Some(first.clone());
    }
    let sep = if first.to_ascii_lowercase().starts_with("urn:") {
        ":"
    } else {
        "."
    };
    Some(format!("{first}{sep}{}", rest.join(".")))
}
