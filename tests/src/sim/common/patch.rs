//! RFC 7644 §3.5.2 PATCH (`urn:ietf:params:scim:api:messages:2.0:PatchOp`) over a simulated system's
//! JSON resources: the shared crate's engine (`provisio_scim::patch`) under a system's few rules.

use provisio_scim::{PatchOp, Schemaless, ScimError};
use serde_json::Value;

#[cfg(test)]
pub(crate) use provisio_scim::PATCH_OP as PATCH_OP_SCHEMA;

/// A PATCH failure: SCIM `scimType` and detail.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PatchError {
    pub scim_type: &'static str,
    pub detail: String,
}

impl From<ScimError> for PatchError {
    fn from(e: ScimError) -> Self {
        PatchError {
            scim_type: e.scim_type.unwrap_or("invalidSyntax"),
            detail: e.detail,
        }
    }
}

/// Validates a PatchOp body and returns its operations.
pub(crate) fn parse_request(body: &Value) -> Result<PatchOp, PatchError> {
    let ops = PatchOp::parse_request(body)?;
    if ops.operations.iter().any(|o| o.op == "remove" && o.path.is_none()) {
        return Err(PatchError {
            scim_type: "noTarget",
            detail: "A 'remove' operation needs a 'path'".into(),
        });
    }
    Ok(ops)
}

/// Settings of the resource type being patched.
pub(crate) struct Rules<'a> {
    /// The resource's core schema URN (paths qualified with it address top-level attributes).
    pub core_schema: &'a str,
    /// Lower-cased top-level attributes clients may not change (`id`, `meta`, `groups`…).
    pub read_only: &'a [&'a str],
}

/// Applies all `ops` to `resource`, atomically.
pub(crate) fn apply(resource: &mut Value, ops: &PatchOp, rules: &Rules<'_>) -> Result<(), PatchError> {
    let rules = Schemaless {
        core_schema: Some(rules.core_schema),
        read_only: rules.read_only,
        ..Schemaless::default()
    };
    Ok(ops.apply_with(resource, &rules)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: Rules<'static> = Rules {
        core_schema: "urn:ietf:params:scim:schemas:core:2.0:User",
        read_only: &["id", "meta", "groups"],
    };

    fn run(resource: Value, ops: Value) -> Result<Value, PatchError> {
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
        let ops = parse_request(&body)?;
        let mut r = resource;
        apply(&mut r, &ops, &RULES)?;
        Ok(r)
    }

    #[test]
    fn add_replace_remove() {
        let u = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "userName": "a",
                       "name": {"givenName": "A", "familyName": "B"},
                       "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        let r = run(
            u.clone(),
            json!([
                {"op": "Replace", "path": "name.givenName", "value": "Z"},
                {"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home"}]},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x"},
                {"op": "add", "value": {"name.familyName": "Q", "active": false,
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}}}
            ]),
        )
        .unwrap();
        assert_eq!(r["name"], json!({"givenName": "Z", "familyName": "Q"}));
        assert_eq!(r["emails"][0]["value"], "w@x");
        assert_eq!(r["emails"][1]["value"], "b@x");
        assert_eq!(r["active"], false);
        assert_eq!(
            r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "7"
        );
        assert!(r["schemas"].as_array().unwrap().len() == 2);
        let r = run(
            r,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}, {"op": "remove", "path": "name"}]),
        )
        .unwrap();
        assert_eq!(r["emails"].as_array().unwrap().len(), 1);
        assert!(r.get("name").is_none());
    }

    #[test]
    fn members() {
        let g = json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]});
        let r = run(
            g.clone(),
            json!([{"op": "remove", "path": "members[value eq \"2\"]"},
                                      {"op": "add", "path": "members", "value": [{"value": "1"}, {"value": "4"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "1"}, {"value": "3"}, {"value": "4"}]));
        let r = run(
            g,
            json!([{"op": "remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "2"}]));
    }

    #[test]
    fn errors() {
        let u = json!({"id": "1", "userName": "a"});
        assert_eq!(
            run(u.clone(), json!([{"op": "remove"}])).unwrap_err().scim_type,
            "noTarget"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "replace", "path": "id", "value": "x"}]))
                .unwrap_err()
                .scim_type,
            "mutability"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "move", "path": "x", "value": 1}]))
                .unwrap_err()
                .scim_type,
            "invalidSyntax"
        );
        assert_eq!(run(u.clone(), json!([])).unwrap_err().scim_type, "invalidSyntax");
        assert_eq!(
            run(
                u.clone(),
                json!([{"op": "replace", "path": "emails[type eq \"x\"].value", "value": "v"}])
            )
            .unwrap_err()
            .scim_type,
            "noTarget"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "replace", "path": "a..b", "value": 1}]))
                .unwrap_err()
                .scim_type,
            "invalidPath"
        );
        assert!(parse_request(&json!({"Operations": [{"op": "add", "path": "x", "value": 1}]})).is_err());
    }
}
