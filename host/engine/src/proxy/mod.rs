//! Proxy systems: any connector-backed system served as a SCIM 2.0 service provider under
//! `/ipsproxy/api/v1/scim/{systemId}/…` (and `/ipsproxy/service/api/v1/scim/…`), for an external identity
//! manager (SAP Identity Management, Entra, Okta, midPoint) — the hybrid scenario.
//!
//! Data flow: reads call the connector's `read`/`get`, then the proxy's **read** transformation (with
//! `entityBaseLocation`) turns each native entity into a SCIM resource; writes run the **write**
//! transformation (`Create` on POST, `Update` on PUT, `Patch` where the mappings are `patchEntity`-scoped),
//! call the connector, and answer the result through the read transformation. Filters, sorting, paging and
//! attribute projection run in the host over the transformed resources, so they mean the same for every
//! backend and `totalResults` is exact. The proxy keeps no state of its own (no tables); in memory, what each
//! backend entity's text became through the read transformation (`memo`), so that an unchanged entity is not
//! parsed and transformed again at every request.

pub mod backend;
pub mod error;
pub mod limit;
pub mod memo;
pub mod query;
mod read;
pub mod schema;
mod view;
mod write;

use read::*;
pub use view::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use provisio_transform::{Context, EntityIdResolver, Operation as TransformOp, Outcome, Transformation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Engine;
use crate::connector::{ConnectorError, EntityKind, Operation, PageRequest};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};
use crate::store::generation::ByGeneration;
use crate::store::systems::{Role, System};
use error::ScimError;
/// Filters and PatchOp are the shared SCIM crate's.
pub use provisio_scim::filter;
use provisio_scim::schema::ResourceType;
use provisio_scim::{Filter, ListResponse, PatchOp, get_ci};
use query::ListQuery;
use schema::Served;

/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";
pub use provisio_scim::LIST_RESPONSE;
/// Page size asked of connectors when the proxy reads a whole backend.
const READ_PAGE: u32 = 500;
/// A backend read stops after this many pages (500,000 entities), so a connector whose cursor never ends
/// cannot hold a request forever.
const MAX_PAGES: usize = 1000;

/// Characters an id keeps as they are in a URL path segment: RFC 3986 unreserved. Everything else —
/// `/`, `?`, `#`, `%`, spaces, non-ASCII — is percent-encoded, so a backend's id cannot end the path, start
/// a query or fragment, or climb out of the proxy's path.
pub const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL of a resource: `{base}/{endpoint}/{id}` with the id percent-encoded as one path segment (axum's
/// `Path` decodes it back on the way in). `None` for `.` and `..`: URL parsers treat them — and their
/// encodings `%2E`, `%2E%2E` — as dot segments, so no URL can address such an id.
pub fn resource_url(base: &str, endpoint: &str, id: &str) -> Option<String> {
    if matches!(id, "." | "..") {
        return None;
    }
    Some(format!(
        "{base}/{endpoint}/{}",
        percent_encoding::utf8_percent_encode(id, SEGMENT)
    ))
}

/// Whether a key is a schema URN (an extension object's key).
fn is_urn(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Whether a value sets anything (not null, not an empty object).
fn has_content(v: &Value) -> bool {
    !(v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty))
}

/// 400 for a write into a schema extension the proxy does not serve.
fn not_served(what: &str) -> ScimError {
    ScimError::bad(
        "invalidValue",
        format!(
            "{what}: this system does not serve that schema extension (see /Schemas and /ResourceTypes; its backend does not declare it), so the value would be lost"
        ),
    )
}

/// The URL of a schema or resource type: its id (`User`, or a URN, which a backend may declare) percent-encoded as one
/// path segment like [`resource_url`], but with `:` kept — it is allowed in a path segment, and clients know
/// `…/Schemas/urn:ietf:params:scim:schemas:core:2.0:User` so.
pub fn discovery_url(base: &str, endpoint: &str, id: &str) -> String {
    const URN_SEGMENT: &percent_encoding::AsciiSet = &SEGMENT.remove(b':');
    format!(
        "{base}/{endpoint}/{}",
        percent_encoding::utf8_percent_encode(id, URN_SEGMENT)
    )
}

/// An id as text (backends may use numbers).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Drops what a client may not set (`id`, `meta`, read-only `groups` of a user) and checks the shape.
fn clean_input(body: &mut Value, kind: EntityKind) -> Result<(), ScimError> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body must be a JSON object"))?;
    for key in ["id", "meta"] {
        provisio_scim::patch::remove_ci(obj, key);
    }
    if kind == EntityKind::User {
        provisio_scim::patch::remove_ci(obj, "groups");
    }
    if !obj.contains_key("schemas") {
        obj.insert("schemas".into(), json!([schema::core_urn(kind)]));
    }
    Ok(())
}

/// A resource as read, with the backend's own `meta.version` (a write's precondition) when it has one.
struct Current {
    resource: Value,
    version: Option<Value>,
}

/// How a versioned write ended.
enum Written {
    /// Written; the resource as it is now.
    Done(Value),
    /// Not written: the backend's version moved past the one the write was built from; the resource as it
    /// is now.
    Stale(Current),
}

/// A resource's `meta` object, made one if it is missing or not an object (always `Some`).
fn meta_of(resource: &mut serde_json::Map<String, Value>) -> Option<&mut serde_json::Map<String, Value>> {
    let meta = resource.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

/// How often a read-modify-write PATCH re-reads and re-applies its operations when the resource changes
/// between its read and its write.
const PATCH_ATTEMPTS: usize = 3;

/// Whether an `If-Match` names versions (rather than `*` or nothing).
fn names_a_version(if_match: Option<&str>) -> bool {
    if_match.map(str::trim).is_some_and(|h| !h.is_empty() && h != "*")
}

/// The ETag of a resource: its backend version when it has one, else a digest of its content.
pub fn etag(resource: &Value) -> String {
    match resource.pointer("/meta/version") {
        Some(Value::String(s)) if s.starts_with("W/\"") || s.starts_with('"') => s.clone(),
        Some(Value::String(s)) if !s.is_empty() => format!("W/\"{s}\""),
        Some(Value::Number(n)) => format!("W/\"{n}\""),
        _ => {
            let mut copy = resource.clone();
            if let Some(o) = copy.as_object_mut() {
                o.shift_remove("meta");
            }
            let digest = Sha256::digest(crate::json::text(&copy).as_bytes());
            format!("W/\"{}\"", hex::encode(&digest[..8]))
        }
    }
}

/// `If-Match`: `*`, or one of the listed tags equals the current one (weak comparison).
pub fn check_if_match(header: Option<&str>, current: &Value) -> Result<(), ScimError> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    if lists_current(header, current) {
        Ok(())
    } else {
        Err(ScimError::precondition(format!(
            "the resource changed: its version is {}, the request expected {header}",
            etag(current)
        )))
    }
}

/// `If-None-Match` on a read (RFC 9110 §13.1.2): whether the client's copy is current, so that the answer
/// is 304 — `*` (the resource exists), or one of the listed tags equals its ETag (weak comparison).
pub fn none_match(header: &str, current: &Value) -> bool {
    lists_current(header, current)
}

/// Whether a precondition's list of entity tags (`If-Match`, `If-None-Match`) names the resource as it is:
/// `*`, or one of the tags equals its ETag (weak comparison).
fn lists_current(header: &str, current: &Value) -> bool {
    let header = header.trim();
    if header == "*" {
        return true;
    }
    let strip = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_string();
    let now = strip(&etag(current));
    header.split(',').any(|t| strip(t) == now)
}

/// Top-level attributes the read transformation writes outside the served schemas.
fn extra_attributes(read: &Value, served: &Served) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kind in [EntityKind::User, EntityKind::Group] {
        let Some(mappings) = read
            .get(kind.as_str())
            .and_then(|e| e.get("mappings"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for m in mappings {
            let Some(p) = m.get("targetPath").and_then(Value::as_str) else {
                continue;
            };
            let Some(name) = p.strip_prefix("$.").map(|r| r.split(['.', '[']).next().unwrap_or("")) else {
                continue;
            };
            let path = filter::AttrPath::parse(name);
            let known = path.as_ref().is_ok_and(|p| served.definition(kind, p).is_some());
            if !name.is_empty() && !known && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Variables a transformation test of a proxy read needs (for the CLI and docs).
pub fn read_variables(base: &str, kind: EntityKind) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        "entityBaseLocation".to_string(),
        json!(format!("{base}/{}/", schema::type_name(kind).1)),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(etag(&json!({"meta": {"version": 3}})), "W/\"3\"");
        assert_eq!(etag(&json!({"meta": {"version": "W/\"1\""}})), "W/\"1\"");
        let a = etag(&json!({"id": "1", "userName": "a"}));
        assert_ne!(a, etag(&json!({"id": "1", "userName": "b"})));
        let current = json!({"meta": {"version": "W/\"4\""}});
        assert!(check_if_match(Some("*"), &current).is_ok());
        assert!(check_if_match(Some("W/\"4\""), &current).is_ok());
        assert!(check_if_match(Some("\"4\""), &current).is_ok());
        assert!(check_if_match(Some("W/\"1\", W/\"4\""), &current).is_ok());
        assert_eq!(
            check_if_match(Some("W/\"3\""), &current).map_err(|e| e.status),
            Err(http::StatusCode::PRECONDITION_FAILED)
        );
        assert!(check_if_match(None, &current).is_ok());
    }

    #[test]
    fn if_none_match_compares_weakly_with_any_listed_tag() {
        let current = json!({"meta": {"version": "W/\"4\""}});
        for current_copy in ["*", "W/\"4\"", "\"4\"", " W/\"1\" , W/\"4\" "] {
            assert!(none_match(current_copy, &current), "{current_copy}");
        }
        for stale in ["W/\"3\"", "\"44\"", "W/\"1\", \"2\"", ""] {
            assert!(!none_match(stale, &current), "{stale}");
        }
        // Without a backend version, the content's digest is the tag (as for If-Match).
        let unversioned = json!({"id": "1", "userName": "a"});
        assert!(none_match(&etag(&unversioned), &unversioned));
    }

    #[test]
    fn ids_are_one_encoded_path_segment() {
        let base = "http://h/ipsproxy/api/v1/scim/s1";
        let url = |id: &str| resource_url(base, "Users", id);
        assert_eq!(
            url("a.b-c_d~9").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/a.b-c_d~9")
        );
        assert_eq!(
            url("victim?x=1").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/victim%3Fx%3D1")
        );
        assert_eq!(
            url("../x").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/..%2Fx")
        );
        assert_eq!(
            url("a#b%c d").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/a%23b%25c%20d")
        );
        assert_eq!(
            url("é").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/%C3%A9")
        );
        assert_eq!(url(".."), None);
        assert_eq!(url("."), None);
    }

    #[test]
    fn pushable_only_when_copied_unchanged() {
        let pass = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                          "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        assert_eq!(pushable(&pass).len(), 6);
        let read = json!({"user": {"mappings": [
            {"sourcePath": "$.userName", "targetPath": "$.userName"},
            {"sourcePath": "$.emails", "targetPath": "$.emails"},
            // A function changes the value: not pushable.
            {"sourcePath": "$.externalId", "targetPath": "$.externalId", "functions": [{"type": "toUpperCase"}]},
            // An element filter picks one e-mail, and a second mapping writes the same target: not pushable.
            {"sourcePath": "$.displayName", "targetPath": "$.displayName"},
            {"sourcePath": "$.name.formatted", "targetPath": "$.displayName", "optional": true}
        ]}, "group": {"mappings": [
            {"sourcePath": "$.name", "targetPath": "$.displayName"},
            {"sourceVariable": "x", "targetPath": "$.externalId"}
        ]}});
        assert_eq!(
            pushable(&read),
            vec![(EntityKind::User, "userName"), (EntityKind::User, "emails.value")]
        );
        let filtered = json!({"user": {"mappings": [
            {"sourcePath": "$.emails[?(@.primary == true)]", "targetPath": "$.emails"}
        ]}});
        assert!(pushable(&filtered).is_empty());
    }
}
