//! What a pushed request must look like before it is queued: a JSON object with a known SCIM schema (2.0, or
//! the IAS SCIM 1.0 form when the source's `ias.api.version` is 1), a `userName` for users and a
//! `displayName` for groups, an id. A bad request is refused with a SCIM error and nothing is queued.

use provisio_scim::PATCH_OP;
use provisio_scim::schema::{GROUP as GROUP_V2, USER as USER_V2};
use serde_json::Value;

use crate::connector::EntityKind;

/// A refusal: HTTP status, SCIM `scimType`, detail.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// RFC 7644 `scimType`, when one fits.
    pub scim_type: Option<&'static str>,
    /// What is wrong.
    pub detail: String,
}

fn bad(scim_type: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        scim_type: Some(scim_type),
        detail: detail.into(),
    }
}

const CORE_V1: &str = "urn:scim:schemas:core:1.0";

/// Parses and checks the body of a create or replace; returns the entity (with the id the path gives, for a
/// replace). `v1` accepts the IAS SCIM 1.0 schema.
pub fn entity(kind: EntityKind, bytes: &[u8], path_id: Option<&str>, v1: bool) -> Result<Value, Refusal> {
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad("invalidSyntax", format!("the body is not valid JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(bad("invalidSyntax", "the body must be a JSON object"));
    };
    let schemas: Vec<String> = match object.get("schemas") {
        Some(Value::Array(items)) => items.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
        Some(_) => return Err(bad("invalidSyntax", "schemas must be an array of schema URIs")),
        None => return Err(bad("invalidValue", "the resource has no schemas")),
    };
    let core = match kind {
        EntityKind::User => USER_V2,
        EntityKind::Group => GROUP_V2,
    };
    let known = schemas
        .iter()
        .any(|s| s.eq_ignore_ascii_case(core) || (v1 && s.eq_ignore_ascii_case(CORE_V1)));
    if !known {
        let expected = if v1 {
            format!("{core} or {CORE_V1}")
        } else {
            core.to_string()
        };
        return Err(bad(
            "invalidValue",
            format!(
                "unknown schemas {schemas:?} for a {}; expected {expected}",
                kind.as_str()
            ),
        ));
    }
    let required = match kind {
        EntityKind::User => "userName",
        EntityKind::Group => "displayName",
    };
    if object
        .get(required)
        .and_then(Value::as_str)
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(bad("invalidValue", format!("{required} is required")));
    }
    match (path_id, object.get("id").and_then(id_text)) {
        (Some(path), Some(body)) if path != body => {
            return Err(bad(
                "mutability",
                format!("the id in the body ({body}) differs from the id in the path ({path})"),
            ));
        }
        (Some(path), _) => {
            object.insert("id".into(), Value::String(path.to_string()));
        }
        (None, Some(_)) => {}
        (None, None) => {
            // A pusher that sends no id (not IAS) gets one, and uses it for later changes.
            object.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        }
    }
    if v1 && kind == EntityKind::User {
        lift_v1_user(object);
    }
    Ok(value)
}

/// The SAP user extension of SCIM 2.0 (the read transformations of IAS sources expect it).
const SAP_USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:User";

/// Attributes the IAS SCIM API v1 has flat on the user that version 2 keeps in the SAP extension.
const V1_FLAT: &[&str] = &[
    "userUuid",
    "mailVerified",
    "passwordStatus",
    "sourceSystem",
    "sourceSystemId",
    "loginTime",
    "validFrom",
    "validTo",
];

/// Lifts a version-1 user into the version-2 shape: the flat SAP attributes move into the SAP extension,
/// whose `userId` is the user's id (what IAS's SCIM 2.0 API answers for the same user).
fn lift_v1_user(object: &mut serde_json::Map<String, Value>) {
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    let mut ext = match object.shift_remove(SAP_USER_EXT) {
        Some(Value::Object(e)) => e,
        _ => serde_json::Map::new(),
    };
    for key in V1_FLAT {
        if let Some(v) = object.shift_remove(*key) {
            ext.entry(key.to_string()).or_insert(v);
        }
    }
    ext.entry("userId").or_insert(id);
    object.insert(SAP_USER_EXT.into(), Value::Object(ext));
    if let Some(Value::Array(schemas)) = object.get_mut("schemas")
        && !schemas.iter().any(|s| s.as_str() == Some(SAP_USER_EXT))
    {
        schemas.push(Value::String(SAP_USER_EXT.into()));
    }
}

/// The id of an entity as text.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses and checks a PatchOp document.
pub fn patch(bytes: &[u8]) -> Result<Value, Refusal> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad("invalidSyntax", format!("the body is not valid JSON: {e}")))?;
    if let Some(schemas) = value.get("schemas").and_then(Value::as_array)
        && !schemas.iter().any(|s| s.as_str() == Some(PATCH_OP))
    {
        return Err(bad("invalidValue", format!("a PATCH body has the schema {PATCH_OP}")));
    }
    provisio_scim::PatchOp::parse(&value).map_err(|e| bad("invalidValue", e.to_string()))?;
    Ok(value)
}

/// A path id must be a plain segment.
pub fn check_id(id: &str) -> Result<(), Refusal> {
    if id.trim().is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(bad("invalidValue", "the id in the path is not a valid id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn accepts_scim_users_and_groups() {
        let u = entity(
            EntityKind::User,
            &body(json!({"schemas": [USER_V2], "id": "P1", "userName": "ann"})),
            None,
            false,
        )
        .expect("user");
        assert_eq!(u["id"], "P1");
        let u = entity(
            EntityKind::User,
            &body(json!({"schemas": [USER_V2], "userName": "ann"})),
            Some("P2"),
            false,
        )
        .expect("user with path id");
        assert_eq!(u["id"], "P2");
        let generated = entity(
            EntityKind::User,
            &body(json!({"schemas": [USER_V2], "userName": "x"})),
            None,
            false,
        )
        .expect("generated id");
        assert!(generated["id"].as_str().is_some_and(|s| s.len() == 36));
        entity(
            EntityKind::Group,
            &body(json!({"schemas": [GROUP_V2], "displayName": "g"})),
            None,
            false,
        )
        .expect("group");
        entity(
            EntityKind::User,
            &body(json!({"schemas": [CORE_V1], "userName": "v1"})),
            None,
            true,
        )
        .expect("v1");
    }

    #[test]
    fn refuses_what_it_cannot_queue() {
        let refusal = |kind, v: &[u8], v1| entity(kind, v, None, v1).expect_err("refused");
        assert_eq!(
            refusal(EntityKind::User, b"{not json", false).scim_type,
            Some("invalidSyntax")
        );
        assert_eq!(
            refusal(EntityKind::User, b"[1]", false).scim_type,
            Some("invalidSyntax")
        );
        let r = refusal(
            EntityKind::User,
            &body(json!({"schemas": ["urn:x"], "userName": "a"})),
            false,
        );
        assert!(r.detail.contains("unknown schemas"), "{r:?}");
        let r = refusal(
            EntityKind::User,
            &body(json!({"schemas": [CORE_V1], "userName": "a"})),
            false,
        );
        assert!(
            r.detail.contains("unknown schemas"),
            "v1 only when the source is v1: {r:?}"
        );
        let r = refusal(EntityKind::User, &body(json!({"schemas": [USER_V2]})), false);
        assert_eq!(r.detail, "userName is required");
        let r = refusal(
            EntityKind::Group,
            &body(json!({"schemas": [GROUP_V2], "displayName": " "})),
            false,
        );
        assert_eq!(r.detail, "displayName is required");
        let r = entity(
            EntityKind::User,
            &body(json!({"schemas": [USER_V2], "id": "a", "userName": "x"})),
            Some("b"),
            false,
        )
        .expect_err("id mismatch");
        assert_eq!(r.scim_type, Some("mutability"));
        assert!(patch(b"{}").is_err());
        assert!(
            patch(&body(
                json!({"Operations": [{"op": "replace", "path": "active", "value": false}]})
            ))
            .is_ok()
        );
        assert!(check_id("a\nb").is_err());
    }
}
