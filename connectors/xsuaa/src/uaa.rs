//! The UAA SCIM dialect: resource paths, versions and `If-Match`, error bodies, and writes that re-read and
//! retry once on a stale version.

use provisio_sdk::client::Dialect;
use provisio_sdk::http::{Response, encode_segment};
use provisio_sdk::scim::ListResponse;
use provisio_sdk::{EntityKind, Error, Result, log, status};
use serde_json::{Map, Value};

use crate::settings::Settings;

/// The SCIM 1.0 core schema UAA puts on (and expects in) every resource.
pub const SCHEMA: &str = "urn:scim:schemas:core:1.0";

/// `Users/{id}` or `Groups/{id}`, the id percent-encoded (role collection names may hold spaces).
pub fn entity_path(kind: EntityKind, id: &str) -> String {
    format!("{}/{}", kind.scim_endpoint(), encode_segment(id))
}

/// UAA's machine-readable error code (`scim_resource_already_exists`, `member_not_found`, …).
pub fn error_code(resp: &Response) -> Option<String> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    v.get("error").and_then(Value::as_str).map(str::to_string)
}

/// The answer if it is 2xx; a 404 becomes a not-found error naming the entity.
pub fn ok_or_not_found(resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
    match resp.status {
        404 => Err(Error::not_found(format!(
            "The {} `{id}` does not exist in the system: {}",
            kind.as_str(),
            status::detail(&resp.body)
        ))),
        _ => resp.error_for_status(),
    }
}

/// The JSON entity of a 2xx answer.
pub fn entity_of(resp: &Response, what: &str) -> Result<Value> {
    not_empty(resp, what)?;
    let v = resp.json()?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(Error::rejected(
            resp.status,
            format!("The system answered with something other than the {what} entity."),
        ))
    }
}

/// Reads one entity.
pub fn fetch(s: &Settings, kind: EntityKind, id: &str) -> Result<Value> {
    let resp = s.request("GET", entity_path(kind, id)).send(s.cfg)?;
    entity_of(&ok_or_not_found(resp, kind, id)?, kind.as_str())
}

/// Reads one entity, left as the system's JSON text (checked to be an object, not parsed): `get`'s answer.
pub fn fetch_text(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
    let resp = s.request("GET", entity_path(kind, id)).send(s.cfg)?;
    let resp = ok_or_not_found(resp, kind, id)?;
    not_empty(&resp, kind.as_str())?;
    resp.json_object_text()
}

/// A 2xx answer that should carry the `what` entity but has no body is the system's rejection.
fn not_empty(resp: &Response, what: &str) -> Result<()> {
    if resp.is_empty() {
        return Err(Error::rejected(
            resp.status,
            format!("The system answered without the {what} entity."),
        ));
    }
    Ok(())
}

/// Runs a filtered list query and returns the matching resources (first page of up to 100 is plenty for
/// lookups by unique attributes).
pub fn search(s: &Settings, kind: EntityKind, filter: &str) -> Result<Vec<Value>> {
    let resp = s
        .request("GET", kind.scim_endpoint())
        .query("filter", filter)
        .query("startIndex", 1)
        .query("count", 100)
        .send(s.cfg)?
        .error_for_status()?;
    Ok(ListResponse::from_response(&resp)?.resources)
}

/// `meta.version`: UAA's integer (a string holding one, or an ETag such as `W/"3"`, is accepted too).
pub fn version_of(entity: &Value) -> Option<u64> {
    provisio_sdk::client::uaa_version_number(entity)
}

/// The `If-Match` value for a version: the quoted integer, as UAA's `ETag`.
pub fn if_match(version: u64) -> String {
    format!("\"{version}\"")
}

/// Whether a failed write means "your version is stale" (UAA answers 409 `scim_resource_conflict`; 412 and 422
/// are seen behind BTP) rather than a uniqueness conflict: the SDK's UAA dialect.
pub fn is_stale(resp: &Response) -> bool {
    (Dialect::UAA.is_stale)(resp)
}

/// Attributes UAA computes or owns, which a write must not carry.
const READ_ONLY: &[&str] = &[
    "meta",
    "groups",
    "approvals",
    "zoneId",
    "passwordLastModified",
    "lastLogonTime",
    "previousLogonTime",
];

/// Removes the read-only attributes (and `id`) from a body to write, and makes sure it names the SCIM 1.0
/// schema UAA expects.
pub fn writable(mut body: Map<String, Value>) -> Map<String, Value> {
    body.shift_remove("id");
    for key in READ_ONLY {
        body.shift_remove(*key);
    }
    if !body.contains_key("schemas") {
        body.insert("schemas".into(), Value::Array(vec![SCHEMA.into()]));
    }
    body
}

/// Whether a stale version is re-read and retried, or is the caller's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Re-read the entity and retry once (the write does not depend on what the caller read).
    Retry,
    /// The version is the caller's precondition (it read that version and built the write from it): a stale
    /// version is [`Error::Conflict`] at once, so that a concurrent change is never overwritten.
    Fail,
}

/// `PUT` with `If-Match: "<version>"`. When the version is stale, [`Stale::Retry`] re-reads the entity, lets
/// `rebuild` make the body again from the fresh copy, and retries once; a conflict that remains is
/// [`Error::Conflict`].
///
/// `rebuild(current)` returns the body to send, given the current entity.
pub fn put_versioned(
    s: &Settings,
    kind: EntityKind,
    id: &str,
    current: Value,
    on_stale: Stale,
    mut rebuild: impl FnMut(&Value) -> Result<Value>,
) -> Result<Value> {
    let mut current = current;
    for attempt in 0..2 {
        let version = version_of(&current).ok_or_else(|| {
            Error::rejected(
                0,
                format!("The system answered {} `{id}` without meta.version.", kind.as_str()),
            )
        })?;
        let body = rebuild(&current)?;
        let resp = s
            .request_with("PUT", entity_path(kind, id), &body)
            .header("If-Match", if_match(version))
            .send(s.cfg)?;
        if on_stale == Stale::Fail && is_stale(&resp) {
            return Err(Error::conflict(format!(
                "The {} `{id}` changed since version {version} was read (HTTP {}).",
                kind.as_str(),
                resp.status
            )));
        }
        if attempt == 0 && is_stale(&resp) {
            log::info(format_args!(
                "{} {id} changed meanwhile (HTTP {}, version {version} is stale); re-reading and retrying once",
                kind.as_str(),
                resp.status
            ));
            current = fetch(s, kind, id)?;
            continue;
        }
        return entity_of(&ok_or_not_found(resp, kind, id)?, kind.as_str());
    }
    Err(Error::conflict(format!(
        "The {} `{id}` kept changing while it was being written.",
        kind.as_str()
    )))
}
