//! Single requests to the tenant: read one entity, PUT with versions, and the shape of request bodies.

use provisio_sdk::{EntityKind, Result};
use serde_json::Value;

use crate::settings::Settings;

#[cfg(test)]
use provisio_sdk::client::filter_attribute;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// `meta.version` as an `If-Match` value: IAS v2 sends `W/"3"`, v1 a bare `3` (quoted here).
pub fn version_of(entity: &Value) -> Option<String> {
    provisio_sdk::client::quoted_etag(entity)
}

/// Reads one entity.
pub fn fetch(s: &Settings, kind: EntityKind, id: &str) -> Result<Value> {
    s.client.fetch(kind, id)
}

/// PUT; on a stale version (412) re-reads the entity and retries once with its current version.
pub fn put(s: &Settings, kind: EntityKind, id: &str, entity: &Value, version: Option<String>) -> Result<Value> {
    s.client.put(kind, id, entity, version, true)
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
