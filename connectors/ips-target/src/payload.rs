//! The body of a pushed entity, in the form the receiving tenant's `Version` expects.
//!
//! * Version 2 (Identity Directory, SCIM 2.0): the entity as it is, `schemas` listing the core schema and
//!   every extension the entity carries.
//! * Version 1 (the IAS SCIM API v1 a version-1 source system reads): the attributes of the SAP user
//!   extension `urn:ietf:params:scim:schemas:extension:sap:2.0:User` sit flat on the user (`userUuid`,
//!   `mailVerified`, `passwordStatus`, …) and the SAP group extension does not exist; the core schema is
//!   the SCIM 2.0 one in both.
//!
//! `meta` is never sent: it belongs to the system that stores the entity.

use provisio_sdk::EntityKind;
use serde_json::{Map, Value, json};

use crate::settings::Version;

/// The SCIM 2.0 core user schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The SCIM 2.0 core group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The SAP user extension of the Identity Directory (version 2 only).
pub const SAP_USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:User";
/// The SAP group extension of the Identity Directory (version 2 only).
pub const SAP_GROUP_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:Group";

/// The body to send for `entity`; `id`, when given, is set as the entity's id.
pub fn shape(version: Version, kind: EntityKind, mut entity: Map<String, Value>, id: Option<&str>) -> Value {
    entity.shift_remove("meta");
    if let Some(id) = id {
        entity.insert("id".into(), json!(id));
    }
    if version == Version::V1 {
        match kind {
            EntityKind::User => flatten_sap_user(&mut entity),
            EntityKind::Group => {
                remove_ci(&mut entity, SAP_GROUP_EXT);
            }
        }
    }
    set_schemas(kind, &mut entity);
    Value::Object(entity)
}

/// Removes a key compared case-insensitively (SCIM attribute names are), returning its value.
fn remove_ci(entity: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let found = entity.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()?;
    entity.shift_remove(&found)
}

/// Moves the SAP user extension's attributes onto the user, as the IAS SCIM API v1 has them.
fn flatten_sap_user(entity: &mut Map<String, Value>) {
    let Some(Value::Object(sap)) = remove_ci(entity, SAP_USER_EXT) else {
        return;
    };
    for (key, value) in sap {
        match key.as_str() {
            // v1 carries the verification flag once, as mailVerified; the id is the path's business.
            "emails" | "userId" => {}
            "passwordDetails" => {
                if let Some(status) = value.get("status") {
                    entity.entry("passwordStatus").or_insert_with(|| status.clone());
                }
            }
            "status" => {
                if let Some(s) = value.as_str() {
                    entity
                        .entry("active")
                        .or_insert_with(|| json!(s.eq_ignore_ascii_case("active")));
                }
            }
            _ => {
                entity.entry(key).or_insert(value);
            }
        }
    }
}

/// `schemas`: the core schema of the kind first, then every extension the entity carries (and any other
/// schema it listed that it still has).
fn set_schemas(kind: EntityKind, entity: &mut Map<String, Value>) {
    let core = match kind {
        EntityKind::User => USER_SCHEMA,
        EntityKind::Group => GROUP_SCHEMA,
    };
    let mut schemas = vec![core.to_string()];
    for key in entity.keys() {
        if key.to_ascii_lowercase().starts_with("urn:") && !schemas.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            schemas.push(key.clone());
        }
    }
    entity.insert("schemas".into(), json!(schemas));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn version_2_is_scim_2_with_extensions_listed() {
        let user = json!({"userName": "jdoe", "meta": {"version": "W/\"1\""},
            "schemas": ["urn:scim:schemas:core:1.0"],
            SAP_USER_EXT: {"userUuid": "u-1", "mailVerified": true}});
        let out = shape(Version::V2, EntityKind::User, obj(user), Some("P1"));
        assert_eq!(out["id"], "P1");
        assert!(out.get("meta").is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA, SAP_USER_EXT]));
        assert_eq!(out[SAP_USER_EXT]["userUuid"], "u-1");
    }

    #[test]
    fn version_1_flattens_the_sap_extension() {
        let user = json!({"userName": "jdoe", "emails": [{"value": "j@x.example"}],
            SAP_USER_EXT: {"userUuid": "u-1", "mailVerified": true, "userId": "P1", "status": "inactive",
                           "emails": [{"value": "j@x.example", "verified": true}],
                           "passwordDetails": {"status": "enabled"}}});
        let out = shape(Version::V1, EntityKind::User, obj(user), None);
        assert_eq!(out["userUuid"], "u-1");
        assert_eq!(out["mailVerified"], true);
        assert_eq!(out["passwordStatus"], "enabled");
        assert_eq!(out["active"], false);
        assert!(out.get(SAP_USER_EXT).is_none() && out.get("userId").is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
        assert_eq!(out["emails"], json!([{"value": "j@x.example"}]));

        let group = json!({"displayName": "Team", SAP_GROUP_EXT: {"type": "userGroup"},
            "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group": {"name": "team"}});
        let out = shape(Version::V1, EntityKind::Group, obj(group), Some("g1"));
        assert!(out.get(SAP_GROUP_EXT).is_none());
        assert_eq!(
            out["schemas"],
            json!([GROUP_SCHEMA, "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group"])
        );
    }
}
