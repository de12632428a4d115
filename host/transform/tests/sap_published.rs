//! Every transformation published in SAP's Cloud Identity Services
//! documentation (232 documents extracted from SAP-docs/btp-cloud-identity-services,
//! CC BY 4.0) loads; they run on realistic entities without panicking; and
//! the documented defaults named in ips-behaviour.md §1.8 behave as described.

mod common;

use common::*;
use provisio_transform::{Context, EntityIdResolver, Operation, Outcome, Transformation};
use serde_json::{Value, json};

fn corpus() -> Vec<(String, Value)> {
    match fixture("sap-published-transformations.json") {
        Value::Object(o) => o.into_iter().collect(),
        _ => panic!("corpus must be an object"),
    }
}

fn published(name: &str) -> Transformation {
    let doc = corpus().into_iter().find(|(k, _)| k == name).map(|(_, v)| v);
    parse(doc.unwrap_or_else(|| panic!("{name} not in corpus")))
}

/// All published documents pass validation (nothing SAP ships is rejected).
#[test]
fn every_published_transformation_loads() {
    let docs = corpus();
    assert!(docs.len() >= 230, "{}", docs.len());
    let rejected: Vec<String> = docs
        .iter()
        .filter_map(|(name, doc)| Transformation::parse(doc).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(rejected.is_empty(), "{rejected:#?}");
}

/// …and runs on a SCIM user and group for every operation.
#[test]
fn every_published_transformation_runs() {
    let user = fixture("scim-user.json");
    let group = fixture("scim-group.json");
    let p = props(&[("xsuaa.origin", "sap.custom")]);
    let mut transformed = 0;
    for (_, doc) in corpus() {
        let t = parse(doc);
        for (ty, e) in [("user", &user), ("group", &group)] {
            for op in [
                Operation::Create,
                Operation::Update,
                Operation::Patch,
                Operation::Delete,
            ] {
                let ctx = Context::new(&p)
                    .operation(op)
                    .variable("entityIdTargetSystem", json!("T1"))
                    .trace(true);
                if let Outcome::Transformed { .. } = t.apply(ty, e, &ctx) {
                    transformed += 1;
                }
            }
        }
    }
    assert!(transformed > 500, "{transformed}");
}

struct Links;
impl EntityIdResolver for Links {
    fn resolve(&self, _: &str, id: &str, _: Option<&str>, _: Option<&str>) -> Option<String> {
        Some(format!("uaa-{id}"))
    }
}

/// XSUAA target (ecddce6): condition with the group prefix, active/verified
/// forced on create, group ID = displayName without prefix, members resolved.
#[test]
fn xsuaa_target_default() {
    let t = published("sap-btp-xs-advanced-uaa-cloud-foundry-ecddce6-0");
    let user = fixture("scim-user.json");
    let no_prefix = props(&[("xsuaa.origin", "sap.custom")]);
    let o = out_op(&t, &user, &no_prefix, Operation::Create);
    assert_eq!(o["id"], "xsuaa-dummy-value");
    assert_eq!(o["active"], true);
    assert_eq!(o["verified"], true);
    assert_eq!(o["origin"], "sap.custom");
    assert_eq!(o["name"], json!({ "givenName": "John", "familyName": "Smith" }));
    // On update `verified` comes from the SAP extension's mailVerified.
    let mut u2 = user.clone();
    u2["urn:ietf:params:scim:schemas:extension:sap:2.0:User"]["mailVerified"] = json!(false);
    u2.as_object_mut().map(|m| m.remove("verified"));
    assert_eq!(out_op(&t, &u2, &no_prefix, Operation::Update)["verified"], false);
    // With a prefix the user needs a matching group.
    let prefixed = props(&[("xsuaa.group.prefix", "ABC_")]);
    assert!(matches!(
        t.apply("user", &user, &Context::new(&prefixed)),
        Outcome::Transformed { .. }
    ));
    let other = props(&[("xsuaa.group.prefix", "QQQ_")]);
    assert!(matches!(
        t.apply("user", &user, &Context::new(&other)),
        Outcome::Skipped { .. }
    ));
    // Group: prefix stripped into the ID, members resolved and typed USER.
    let g = fixture("scim-group.json");
    let ctx = Context::new(&prefixed).operation(Operation::Create).resolver(&Links);
    let Outcome::Transformed { output, variables, .. } = t.apply("group", &g, &ctx) else {
        panic!("group")
    };
    assert_eq!(output["id"], "Admins");
    assert_eq!(output["displayName"], "Admins");
    assert_eq!(variables["entityIdTargetSystem"], "Admins");
    assert_eq!(
        output["members"][0],
        json!({ "value": "uaa-3f1c2a9e-6b7d-4e21-9a55-0c8d7e6f5a41", "type": "USER" })
    );
    // A group without the prefix is skipped when a prefix is configured.
    assert!(matches!(
        t.apply("group", &g, &Context::new(&props(&[("xsuaa.group.prefix", "XS_")]))),
        Outcome::Skipped { .. }
    ));
}

/// SAP Jam target (c5af5f0): copy all, remove id/externalId/locale, locale =
/// lower(locale) + "_" + work country, deactivate on delete, groups ignored.
#[test]
fn jam_target_default() {
    let t = published("sap-jam-collaboration-c5af5f0-0");
    let user = fixture("scim-user.json");
    let p = props(&[]);
    let ctx = Context::new(&p)
        .variable("entityIdTargetSystem", json!("jam-7"))
        .resolver(&Links);
    let o = t.apply("user", &user, &ctx).output().cloned().unwrap_or_default();
    assert_eq!(o["id"], "jam-7");
    assert!(o.get("externalId").is_none());
    assert_eq!(o["locale"], "en_us_DE");
    assert_eq!(o["emails"][0]["primary"], true);
    assert_eq!(
        o["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"],
        "uaa-9a8b7c6d-0000-4000-8000-000000000001"
    );
    let del = Context::new(&p)
        .operation(Operation::Delete)
        .variable("entityIdTargetSystem", json!("jam-7"));
    assert_eq!(
        t.apply("user", &user, &del).output(),
        Some(&json!({ "id": "jam-7", "active": false }))
    );
    assert!(t.entity("group").is_some_and(|g| g.is_ignored()));
}

/// IAS target v1 (f217bd3): condition, addresses defaulted, create-only constants,
/// group display names sanitised with Java's `\p{Punct}`.
#[test]
fn ias_target_default() {
    let t = published("identity-authentication-f217bd3-1");
    let p = props(&[]);
    let user = fixture("scim-user.json");
    let o = out_op(&t, &user, &p, Operation::Create);
    assert_eq!(
        o["emails"],
        json!([{ "value": "john.smith@company.com" }, { "value": "jsmith@home.example" }])
    );
    assert_eq!(o["corporateGroups"], user["groups"]);
    assert_eq!(o["addresses"][1]["type"], "work");
    assert_eq!(o["sendMail"], "false");
    assert_eq!(o["timeZone"], "Europe/Paris");
    assert!(out_op(&t, &user, &p, Operation::Update).get("sendMail").is_none());
    let mut nameless = user.clone();
    nameless["name"] = json!({});
    assert!(matches!(
        t.apply("user", &nameless, &Context::new(&p)),
        Outcome::Skipped { .. }
    ));
    // Groups are ignored by default; once enabled, display names are sanitised.
    assert!(matches!(
        t.apply("group", &json!({}), &Context::new(&p)),
        Outcome::Skipped { .. }
    ));
    let mut doc = corpus()
        .into_iter()
        .find(|(k, _)| k == "identity-authentication-f217bd3-1")
        .map(|(_, v)| v)
        .unwrap_or_default();
    doc["group"]["ignore"] = json!(false);
    let g = json!({ "displayName": "Sales & Marketing (EU)", "members": [] });
    let out = parse(doc).apply("group", &g, &Context::new(&p).operation(Operation::Create));
    assert_eq!(
        out.output()
            .map(|o| o["urn:sap:cloud:scim:schemas:extension:custom:2.0:Group"]["name"].clone()),
        Some(json!("Sales___Marketing__EU_"))
    );
}

/// IAS proxy read keeps only value/display/primary of each email
/// (Jayway multi-property `.['value','display','primary']`).
#[test]
fn multi_property_projection() {
    let t = user(
        json!([{ "sourcePath": "$.emails[*].['value','display','primary']", "preserveArrayWithSingleElement": true, "targetPath": "$.emails" }]),
    );
    let o = run(&t, &fixture("scim-user.json"));
    assert_eq!(
        o["emails"],
        json!([{ "value": "john.smith@company.com", "primary": true }, { "value": "jsmith@home.example", "primary": false }])
    );
}
