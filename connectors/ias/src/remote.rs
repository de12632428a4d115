//! Single requests to the tenant: read one entity, PUT with versions, and the shape of request bodies.

use provisio_sdk::http::{Response, encode_segment};
use provisio_sdk::{EntityKind, Error, Result, json, log, status};
use serde_json::Value;

use crate::settings::Settings;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// `…/Users/{id}` or `…/Groups/{id}`, the id percent-encoded.
pub fn entity_path(s: &Settings, kind: EntityKind, id: &str) -> String {
    format!("{}/{}", s.endpoint(kind), encode_segment(id))
}

/// The answer if it is 2xx; a 404 becomes a not-found error naming the entity.
pub fn ok_or_not_found(resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
    match resp.status {
        404 => Err(Error::not_found(format!(
            "The {} `{id}` does not exist in Identity Authentication: {}",
            kind.as_str(),
            status::detail(&resp.body)
        ))),
        _ => resp.error_for_status(),
    }
}

/// Reads one entity.
pub fn fetch(s: &Settings, kind: EntityKind, id: &str) -> Result<Value> {
    let resp = s.request("GET", entity_path(s, kind, id)).send(s.cfg)?;
    ok_or_not_found(resp, kind, id)?.json()
}

/// The entity a 2xx write answered with.
fn entity_of(resp: &Response, what: &str) -> Result<Value> {
    if resp.is_empty() {
        return Err(Error::rejected(
            resp.status,
            format!("The system answered without the {what} entity."),
        ));
    }
    resp.json()
}

/// `meta.version` as an `If-Match` value: IAS v2 sends `W/"3"`, v1 a bare `3` (quoted here).
pub fn version_of(entity: &Value) -> Option<String> {
    let v = match json::get(entity, "meta.version")? {
        Value::String(v) if !v.trim().is_empty() => v.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(if v.starts_with("W/") || v.starts_with('"') {
        v
    } else {
        format!("\"{v}\"")
    })
}

/// Lists the URN of every extension section in `schemas` (IAS reads a section only when its schema is
/// declared), keeping every entry already there; adds the core schema of `kind` to an entity that has none.
pub fn declare_schemas(entity: &mut Value, kind: EntityKind) {
    let Some(obj) = entity.as_object_mut() else {
        return;
    };
    let urns: Vec<String> = obj
        .iter()
        .filter(|(k, v)| k.to_ascii_lowercase().starts_with("urn:") && v.is_object())
        .map(|(k, _)| k.clone())
        .collect();
    let core = match kind {
        EntityKind::User => USER_SCHEMA,
        EntityKind::Group => GROUP_SCHEMA,
    };
    let key = obj
        .keys()
        .find(|k| k.eq_ignore_ascii_case("schemas"))
        .cloned()
        .unwrap_or_else(|| "schemas".to_string());
    let schemas = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = schemas else {
        return;
    };
    if list.is_empty() {
        list.push(Value::String(core.to_string()));
    }
    for urn in urns {
        let known = list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&urn)));
        if !known {
            list.push(Value::String(urn));
        }
    }
}

/// PUT, with `If-Match` when a version is known (or `*` when configured).
pub fn send_put(s: &Settings, kind: EntityKind, id: &str, entity: &Value, version: Option<&str>) -> Result<Response> {
    let mut req = s.request_with("PUT", entity_path(s, kind, id), entity);
    match version {
        Some(v) => req = req.header("If-Match", v),
        None if s.if_match_wildcard => req = req.header("If-Match", "*"),
        None => {}
    }
    req.send(s.cfg)
}

/// The entity a PUT answered with, or the error its status means.
pub fn finish_put(resp: Response, kind: EntityKind, id: &str) -> Result<Value> {
    entity_of(&ok_or_not_found(resp, kind, id)?, "replaced")
}

/// PUT; on a stale version (412) re-reads the entity and retries once with its current version.
pub fn put(s: &Settings, kind: EntityKind, id: &str, entity: &Value, version: Option<String>) -> Result<Value> {
    let resp = send_put(s, kind, id, entity, version.as_deref())?;
    if resp.status == 412 && version.is_some() {
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

/// The SCIM filter attribute of a unique-attribute path: `emails[0].value` → `emails.value`,
/// `['urn:…:Group']['name']` → `urn:…:Group:name`.
pub fn filter_attribute(path: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declares_extension_schemas_and_keeps_the_rest() {
        let mut u = json!({"userName": "a", "schemas": ["urn:x:Unknown"],
            "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"mailVerified": true},
            "urn:sap:cloud:scim:schemas:extension:custom:2.0:User": {"attributes": []}});
        declare_schemas(&mut u, EntityKind::User);
        assert_eq!(
            u["schemas"],
            json!([
                "urn:x:Unknown",
                "urn:ietf:params:scim:schemas:extension:sap:2.0:User",
                "urn:sap:cloud:scim:schemas:extension:custom:2.0:User"
            ])
        );
        assert_eq!(
            u["urn:sap:cloud:scim:schemas:extension:custom:2.0:User"],
            json!({"attributes": []})
        );
        let mut g = json!({"displayName": "g"});
        declare_schemas(&mut g, EntityKind::Group);
        assert_eq!(g["schemas"], json!([GROUP_SCHEMA]));
    }

    #[test]
    fn maps_unique_attributes_to_filters() {
        assert_eq!(filter_attribute("emails[0].value").as_deref(), Some("emails.value"));
        assert_eq!(
            filter_attribute("['urn:sap:cloud:scim:schemas:extension:custom:2.0:Group']['name']").as_deref(),
            Some("urn:sap:cloud:scim:schemas:extension:custom:2.0:Group:name")
        );
        assert_eq!(version_of(&json!({"meta": {"version": "3"}})).as_deref(), Some("\"3\""));
        assert_eq!(
            version_of(&json!({"meta": {"version": "W/\"3\""}})).as_deref(),
            Some("W/\"3\"")
        );
    }
}
