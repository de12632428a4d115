//! Schema extensions the system declares (`GET ResourceTypes`, RFC 7644 §4), so that a write carries only
//! those: a strict SCIM server refuses a whole entity for one extension it does not know
//! (`400 Extra inputs are not permitted: urn:sap:cloud:scim:schemas:extension:custom:2.0:User`), and the
//! SAP extensions every Identity Authentication user carries would fail every user.
//!
//! What is left out is logged here and shows in the host's entity log (the host compares the extensions it
//! sent with those the system answered). A system without discovery endpoints gets every entity as before.

use std::cell::RefCell;
use std::collections::HashMap;

use provisio_sdk::scim::ListResponse;
use provisio_sdk::{EntityKind, log};
use serde_json::{Map, Value};

use crate::settings::Settings;

/// Lookups of the cached declaration before the system is asked again. The cache lives in the connector's
/// instance, which the host keeps for one system (at most 10,000 calls, dropped after 60 s idle).
const REFRESH_AFTER: u32 = 500;

/// What one system declares, per resource type: `None` when it does not say (no discovery endpoint, or no
/// resource type for the kind), and then nothing is left out.
#[derive(Clone, Debug, Default, PartialEq)]
struct Declared {
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

struct Cached {
    declared: Declared,
    uses: u32,
}

thread_local! {
    /// Per system URL. A wasm instance has one thread; natively each test has its own.
    static CACHE: RefCell<HashMap<String, Cached>> = RefCell::new(HashMap::new());
}

/// The core schema URN of a kind.
pub fn core_urn(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "urn:ietf:params:scim:schemas:core:2.0:User",
        EntityKind::Group => "urn:ietf:params:scim:schemas:core:2.0:Group",
    }
}

fn is_urn(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Whether an entity names any schema beyond its core one (so that the declaration matters).
fn names_extensions(entity: &Map<String, Value>, core: &str) -> bool {
    let other = |s: &str| !s.eq_ignore_ascii_case(core);
    entity.keys().any(|k| is_urn(k) && other(k))
        || entity
            .get("schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().filter_map(Value::as_str).any(other))
}

/// The extensions the system declares for `kind`, discovered once and then cached; `None` when it does not
/// say.
fn declared(s: &Settings, kind: EntityKind) -> Option<Vec<String>> {
    let url = s.cfg.property(crate::settings::URL).unwrap_or_default().to_string();
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let entry = c.get_mut(&url)?;
        entry.uses += 1;
        (entry.uses <= REFRESH_AFTER).then(|| entry.declared.clone())
    });
    let declared = match cached {
        Some(d) => d,
        None => {
            let Some(d) = discover(s) else {
                // No answer at all (unreachable, timed out): ask again next time.
                return None;
            };
            CACHE.with(|c| {
                c.borrow_mut().insert(
                    url,
                    Cached {
                        declared: d.clone(),
                        uses: 0,
                    },
                )
            });
            d
        }
    };
    match kind {
        EntityKind::User => declared.users,
        EntityKind::Group => declared.groups,
    }
}

/// `GET ResourceTypes`: `None` when no answer came; a declaration without types when the system answered
/// but not with resource types (404, 401, not a list).
fn discover(s: &Settings) -> Option<Declared> {
    let resp = s.request("GET", "ResourceTypes").send(s.cfg).ok()?;
    if !(200..300).contains(&resp.status) {
        return Some(Declared::default());
    }
    let Ok(body) = resp.json() else {
        return Some(Declared::default());
    };
    // A list response, or (as some servers answer) a bare array of resource types.
    let types = match &body {
        Value::Array(a) => a.clone(),
        other => ListResponse::from_json(other).map(|l| l.resources).unwrap_or_default(),
    };
    let find = |kind: EntityKind| {
        let t = types.iter().find(|t| {
            let endpoint = t.get("endpoint").and_then(Value::as_str).unwrap_or_default();
            let schema = t.get("schema").and_then(Value::as_str).unwrap_or_default();
            endpoint.trim_matches('/').eq_ignore_ascii_case(kind.scim_endpoint())
                || schema.eq_ignore_ascii_case(core_urn(kind))
        })?;
        Some(
            t.get("schemaExtensions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("schema").and_then(Value::as_str).map(str::to_string))
                .collect(),
        )
    };
    Some(Declared {
        users: find(EntityKind::User),
        groups: find(EntityKind::Group),
    })
}

/// Leaves out of a create or replace the extension schemas the system does not declare for the kind: their
/// top-level `urn:` objects and their `schemas` entries. Logs and returns what it left out.
pub fn strip_entity(s: &Settings, kind: EntityKind, entity: &mut Value) -> Vec<String> {
    let core = core_urn(kind);
    let Some(obj) = entity.as_object_mut() else {
        return Vec::new();
    };
    if !names_extensions(obj, core) {
        return Vec::new();
    }
    let Some(declared) = declared(s, kind) else {
        return Vec::new();
    };
    let left_out = strip(obj, core, &declared);
    report(kind, &left_out);
    left_out
}

/// The same for a PatchOp document: operations whose path is in an undeclared extension are dropped, and
/// undeclared extension objects leave path-less values. Returns what it left out.
pub fn strip_patch(s: &Settings, kind: EntityKind, doc: &mut Value) -> Vec<String> {
    let core = core_urn(kind);
    let key = if doc.get("Operations").is_some() {
        "Operations"
    } else {
        "operations"
    };
    let Some(ops) = doc.get_mut(key).and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let names_any = ops.iter().any(|o| {
        o.get("path").and_then(Value::as_str).is_some_and(|p| is_urn(p.trim()))
            || o.get("value")
                .and_then(Value::as_object)
                .is_some_and(|v| names_extensions(v, core))
    });
    if !names_any {
        return Vec::new();
    }
    let Some(declared) = declared(s, kind) else {
        return Vec::new();
    };
    let mut left_out = Vec::new();
    ops.retain_mut(|o| {
        if let Some(path) = o.get("path").and_then(Value::as_str).map(str::trim)
            && is_urn(path)
        {
            let kept = std::iter::once(core)
                .chain(declared.iter().map(String::as_str))
                .any(|u| {
                    path.eq_ignore_ascii_case(u)
                        || path
                            .get(..u.len() + 1)
                            .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{u}:")))
                });
            if !kept {
                // `urn:…:User:attr` names an attribute of extension `urn:…:User`.
                let urn = path.rsplit_once(':').map_or(path, |(u, _)| u).to_string();
                if !left_out.contains(&urn) {
                    left_out.push(urn);
                }
            }
            return kept;
        }
        if let Some(value) = o.get_mut("value").and_then(Value::as_object_mut) {
            for urn in strip(value, core, &declared) {
                if !left_out.contains(&urn) {
                    left_out.push(urn);
                }
            }
        }
        true
    });
    report(kind, &left_out);
    left_out
}

/// Removes undeclared extension objects and `schemas` entries; returns their URNs.
fn strip(obj: &mut Map<String, Value>, core: &str, declared: &[String]) -> Vec<String> {
    let known = |u: &str| u.eq_ignore_ascii_case(core) || declared.iter().any(|d| d.eq_ignore_ascii_case(u));
    let mut left_out: Vec<String> = obj.keys().filter(|k| is_urn(k) && !known(k)).cloned().collect();
    for k in &left_out {
        obj.shift_remove(k);
    }
    if let Some(schemas) = obj.get_mut("schemas").and_then(Value::as_array_mut) {
        schemas.retain(|s| match s.as_str() {
            Some(u) if !known(u) => {
                if !left_out.iter().any(|l| l.eq_ignore_ascii_case(u)) {
                    left_out.push(u.to_string());
                }
                false
            }
            _ => true,
        });
    }
    left_out
}

fn report(kind: EntityKind, left_out: &[String]) {
    if !left_out.is_empty() {
        log::info(format_args!(
            "left out {}: the system declares no such schema extension for {} (GET ResourceTypes)",
            left_out.join(", "),
            kind.scim_endpoint()
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strips_only_undeclared_extensions() {
        let mut user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:sap:cloud:scim:schemas:extension:custom:2.0:User"],
            "userName": "a",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"},
            "urn:sap:cloud:scim:schemas:extension:custom:2.0:User": {"attributes": []}
        });
        let obj = user.as_object_mut().expect("object");
        let declared = vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()];
        let left = strip(obj, core_urn(EntityKind::User), &declared);
        assert_eq!(left, vec!["urn:sap:cloud:scim:schemas:extension:custom:2.0:User"]);
        assert_eq!(user["schemas"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "7"
        );
        assert!(
            user.get("urn:sap:cloud:scim:schemas:extension:custom:2.0:User")
                .is_none()
        );
    }
}
