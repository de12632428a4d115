//! Golden tests: the SAP BTP XS Advanced UAA proxy system's default read and
//! write transformations (seed 004, CIS sap-btp-xs-advanced-uaa-cloud-foundry-fef74f6.md),
//! applied to a realistic SCIM user and group.

mod common;

use common::*;
use provisio_transform::{Context, Operation, Outcome, Transformation};
use serde_json::json;

fn write_t() -> Transformation {
    parse(fixture("xsuaa-proxy-write.json"))
}

fn read_t() -> Transformation {
    parse(fixture("xsuaa-proxy-read.json"))
}

/// Both documents load; endpoints and correlation attributes are exposed.
#[test]
fn seed_transformations_load() {
    let r = read_t();
    let w = write_t();
    assert_eq!(r.entity_types().collect::<Vec<_>>(), ["group", "user"]);
    assert_eq!(w.entity("user").and_then(|e| e.scim_entity_endpoint()), Some("Users"));
    assert_eq!(w.entity("group").and_then(|e| e.scim_entity_endpoint()), Some("Groups"));
    assert_eq!(
        r.entity("user").map(|e| e.correlation_attributes()),
        Some(vec!["$.userName", "$.emails[?(@.primary== true)].value"])
    );
    assert!(!w.entity("user").is_some_and(|e| e.is_ignored()));
}

/// Write on create: `$.id` gets the createEntity dummy, the unset
/// entityIdTargetSystem does not overwrite it, origin comes from %xsuaa.origin%.
#[test]
fn write_user_on_create() {
    let p = props(&[("xsuaa.origin", "sap.custom")]);
    let user = fixture("scim-user.json");
    let got = out_op(&write_t(), &user, &p, Operation::Create);
    let expected = json!({
        "id": "xsuaa-dummy-value",
        "userName": "jsmith",
        "name": { "givenName": "John", "familyName": "Smith", "formatted": "John Smith" },
        "emails": user["emails"],
        "phoneNumbers": [ { "value": "+49 6227 7 47474", "type": "work" } ],
        "externalId": "P000100",
        "active": true,
        "verified": true,
        "origin": "sap.custom",
        "schemas": ["urn:scim:schemas:core:1.0"]
    });
    assert_eq!(got, expected);
    // Key order follows the mapping order.
    let keys: Vec<_> = got.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(keys.first().map(String::as_str), Some("id"));
    assert_eq!(keys.last().map(String::as_str), Some("schemas"));
}

/// Write on update: the createEntity mapping is skipped and the ID comes from
/// the link store (entityIdTargetSystem).
#[test]
fn write_user_on_update_uses_target_id() {
    let p = props(&[("xsuaa.origin", "sap.custom")]);
    let ctx = Context::new(&p)
        .operation(Operation::Update)
        .variable("entityIdTargetSystem", json!("uaa-42"));
    let Outcome::Transformed { output, variables, .. } = write_t().apply("user", &fixture("scim-user.json"), &ctx)
    else {
        panic!("not transformed")
    };
    assert_eq!(output["id"], "uaa-42");
    assert_eq!(variables["entityIdTargetSystem"], "uaa-42");
}

/// "ensures a primary email": with no primary email the first gets primary=true.
#[test]
fn write_user_without_primary_email_marks_first() {
    let p = props(&[("xsuaa.origin", "sap.custom")]);
    let mut user = fixture("scim-user.json");
    user["emails"] = json!([{ "value": "a@x.com" }, { "value": "b@x.com", "primary": false }]);
    let got = out_op(&write_t(), &user, &p, Operation::Create);
    assert_eq!(
        got["emails"],
        json!([{ "value": "a@x.com", "primary": true }, { "value": "b@x.com", "primary": false }])
    );
}

/// An unset xsuaa.origin renders as the string "null" (SAP placeholder rule).
#[test]
fn write_user_unset_origin_is_null_string() {
    let got = out_op(&write_t(), &fixture("scim-user.json"), &props(&[]), Operation::Create);
    assert_eq!(got["origin"], "null");
}

/// userName is mandatory: a user without it fails with the mapping index.
#[test]
fn write_user_missing_username_fails() {
    let mut user = fixture("scim-user.json");
    user.as_object_mut().map(|o| o.remove("userName"));
    match write_t().apply("user", &user, &Context::new(&props(&[])).operation(Operation::Create)) {
        Outcome::Failed {
            mapping_index,
            path,
            reason,
            ..
        } => {
            assert_eq!(mapping_index, Some(2));
            assert_eq!(path.as_deref(), Some("$.userName"));
            assert!(reason.contains("$.userName"), "{reason}");
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

/// Group write: members copied, `$.members[*].type` set to USER on each
/// member; the patchEntity mappings do not run on create.
#[test]
fn write_group_on_create() {
    let p = props(&[]);
    let got = match write_t().apply(
        "group",
        &fixture("scim-group.json"),
        &Context::new(&p).operation(Operation::Create),
    ) {
        Outcome::Transformed { output, .. } => output,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        got,
        json!({
            "displayName": "ABC_Admins",
            "description": "Administrators",
            "schemas": ["urn:scim:schemas:core:1.0"],
            "members": [
                { "value": "3f1c2a9e-6b7d-4e21-9a55-0c8d7e6f5a41", "type": "USER" },
                { "value": "5d4c3b2a-0000-4000-8000-000000000002", "type": "USER" }
            ]
        })
    );
}

/// Group without members: the optional `[*]` broadcast creates nothing.
#[test]
fn write_group_without_members() {
    let mut g = fixture("scim-group.json");
    g.as_object_mut().map(|o| o.remove("members"));
    let got = match write_t().apply(
        "group",
        &g,
        &Context::new(&props(&[])).variable("entityIdTargetSystem", json!("RC1")),
    ) {
        Outcome::Transformed { output, .. } => output,
        other => panic!("{other:?}"),
    };
    assert_eq!(got["id"], "RC1");
    assert!(got.get("members").is_none());
}

/// PATCH passthrough: only the patchEntity mappings run.
#[test]
fn write_group_patch_passthrough() {
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "add", "path": "members", "value": [{ "value": "u1" }] }]
    });
    let p = props(&[]);
    let got = match write_t().apply("group", &patch, &Context::new(&p).operation(Operation::Patch)) {
        Outcome::Transformed { output, .. } => output,
        other => panic!("{other:?}"),
    };
    assert_eq!(got, patch);
}

/// Read: entityIdSourceSystem is set from `$.id`, meta.location is built from
/// entityBaseLocation + id, then `$.meta` (a later mapping) overwrites meta.
#[test]
fn read_user() {
    let p = props(&[]);
    let user = fixture("scim-user.json");
    let base = "https://ipsproxyabc-xyz.hana.ondemand.com:443/ipsproxy/api/v1/scim/sys1/Users/";
    let ctx = Context::new(&p).variable("entityBaseLocation", json!(base));
    let Outcome::Transformed { output, variables, .. } = read_t().apply("user", &user, &ctx) else {
        panic!("not transformed")
    };
    let id = "3f1c2a9e-6b7d-4e21-9a55-0c8d7e6f5a41";
    assert_eq!(variables["entityIdSourceSystem"], id);
    assert_eq!(variables["entityLocationSourceSystem"], format!("{base}{id}"));
    assert_eq!(output["meta"], user["meta"]);
    assert_eq!(output["groups"], user["groups"]);
    assert_eq!(output["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    for k in [
        "id",
        "userName",
        "name",
        "emails",
        "phoneNumbers",
        "active",
        "externalId",
        "origin",
        "zoneId",
        "verified",
    ] {
        assert_eq!(output[k], user[k], "{k}");
    }
    // Attributes without a mapping do not pass through.
    assert!(output.get("addresses").is_none());
    assert!(
        output
            .get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
            .is_none()
    );
}

/// Read without a source meta: the location mapping's result stays.
#[test]
fn read_user_location_without_meta() {
    let mut user = fixture("scim-user.json");
    user.as_object_mut().map(|o| o.remove("meta"));
    let p = props(&[]);
    let ctx = Context::new(&p).variable("entityBaseLocation", json!("https://proxy/Users/"));
    let got = read_t().apply("user", &user, &ctx);
    assert_eq!(
        got.output().map(|o| o["meta"].clone()),
        Some(json!({ "location": "https://proxy/Users/3f1c2a9e-6b7d-4e21-9a55-0c8d7e6f5a41" }))
    );
}

/// Group read adds the SAP group extension type constant.
#[test]
fn read_group() {
    let p = props(&[]);
    let ctx = Context::new(&p).variable("entityBaseLocation", json!("https://proxy/Groups/"));
    let Outcome::Transformed { output, variables, .. } = read_t().apply("group", &fixture("scim-group.json"), &ctx)
    else {
        panic!("not transformed")
    };
    assert_eq!(variables["entityIdSourceSystem"], "g-100");
    assert_eq!(
        output["urn:ietf:params:scim:schemas:extension:sap:2.0:Group"],
        json!({ "type": "authorization", "supportedOperations": "readWrite" })
    );
    assert_eq!(
        output["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    assert_eq!(output["members"].as_array().map(Vec::len), Some(2));
}
