//! Golden tests for the mapping keys of ips-behaviour.md §1.2
//! (CIS transformation-expressions-bb8537b.md).

mod common;

use common::*;
use provisio_transform::{Context, Operation, Outcome};
use serde_json::json;

/// Order matters: later mappings overwrite earlier ones.
#[test]
fn order_is_decisive() {
    let t = user(json!([
        { "constant": "first", "targetPath": "$.id" },
        { "constant": "second", "targetPath": "$.id" }
    ]));
    assert_eq!(run(&t, &json!({})), json!({ "id": "second" }));
}

/// constant of every JSON type.
#[test]
fn constants_of_any_type() {
    let t = user(json!([
        { "constant": "s", "targetPath": "$.s" }, { "constant": 7, "targetPath": "$.i" },
        { "constant": true, "targetPath": "$.b" }, { "constant": { "k": [1, "x"] }, "targetPath": "$.o" },
        { "constant": [{ "id": "g1" }], "targetPath": "$.a" }
    ]));
    assert_eq!(
        run(&t, &json!({})),
        json!({ "s": "s", "i": 7, "b": true, "o": { "k": [1, "x"] }, "a": [{ "id": "g1" }] })
    );
}

/// optional / defaultValue (IAS write: userType defaults to employee).
#[test]
fn optional_and_default_value() {
    let t = user(json!([
        { "sourcePath": "$.userType", "targetPath": "$.userType", "defaultValue": "employee", "optional": true },
        { "sourcePath": "$.nickName", "targetPath": "$.nickName", "optional": true },
        { "sourcePath": "$.addresses", "targetPath": "$.addresses", "defaultValue": [], "optional": true },
        { "sourcePath": "$.title", "targetPath": "$.title", "defaultValue": null, "optional": true }
    ]));
    assert_eq!(
        run(&t, &json!({})),
        json!({ "userType": "employee", "addresses": [], "title": null })
    );
    assert_eq!(
        run(&t, &json!({ "userType": "partner", "nickName": "JJ" }))["userType"],
        "partner"
    );
}

/// A missing non-optional value fails the entity (not skipped).
#[test]
fn mandatory_missing_fails() {
    let t = user(json!([
        { "sourcePath": "$.sn[0]", "targetPath": "$.name.familyName", "optional": true },
        { "sourcePath": "$.lastName", "targetPath": "$.name.familyName" }
    ]));
    match t.apply("user", &json!({}), &Context::new(&props(&[]))) {
        Outcome::Failed {
            mapping_index: Some(1),
            path: Some(p),
            ..
        } => assert_eq!(p, "$.lastName"),
        other => panic!("{other:?}"),
    }
}

/// ignore on a mapping and on an entity type (no processing, reason given).
#[test]
fn ignore() {
    let t = parse(json!({
        "user": { "mappings": [
            { "ignore": true, "sourcePath": "$.sAMAccountName[0]", "targetVariable": "entityIdSourceSystem" },
            { "sourcePath": "$.sAMAccountName[0]", "targetPath": "$.userName" }
        ]},
        "group": { "ignore": true, "mappings": [ { "sourcePath": "$.sAMAccountName[0]", "targetPath": "$.displayName" } ] }
    }));
    let p = props(&[]);
    let Outcome::Transformed { output, variables, .. } =
        t.apply("user", &json!({ "sAMAccountName": ["js"] }), &Context::new(&p))
    else {
        panic!()
    };
    assert_eq!(output, json!({ "userName": "js" }));
    assert!(variables.is_empty());
    assert!(t.entity("group").is_some_and(|g| g.is_ignored()));
    assert_eq!(
        t.apply("group", &json!({}), &Context::new(&p)),
        Outcome::Skipped {
            reason: "The entity type group is ignored.".into(),
            trace: vec![]
        }
    );
}

/// scope createEntity / patchEntity / deleteEntity against the operation.
#[test]
fn scopes() {
    let t = user(json!([
        { "scope": "createEntity", "targetPath": "$.Password", "constant": "Initial1" },
        { "sourceVariable": "entityIdTargetSystem", "targetPath": "$.id", "scope": "deleteEntity" },
        { "constant": false, "targetPath": "$.active", "scope": "deleteEntity" },
        { "constant": [], "targetPath": "$.groups", "scope": "deleteEntity" },
        { "scope": "patchEntity", "sourcePath": "$", "targetPath": "$" },
        { "sourcePath": "$.userName", "targetPath": "$.userName" }
    ]));
    let p = props(&[]);
    let u = json!({ "userName": "js" });
    assert_eq!(
        out_op(&t, &u, &p, Operation::Create),
        json!({ "Password": "Initial1", "userName": "js" })
    );
    assert_eq!(out_op(&t, &u, &p, Operation::Update), json!({ "userName": "js" }));
    assert_eq!(out_op(&t, &u, &p, Operation::Patch), json!({ "userName": "js" }));
    let ctx = Context::new(&p)
        .operation(Operation::Delete)
        .variable("entityIdTargetSystem", json!("T1"));
    assert_eq!(
        t.apply("user", &u, &ctx).output(),
        Some(&json!({ "id": "T1", "active": false, "groups": [] }))
    );
}

/// skipOperations is queryable; patch counts as update.
#[test]
fn skip_operations() {
    let t = parse(
        json!({ "user": { "condition": "$.groups empty false", "skipOperations": ["create", "delete"], "mappings": [] },
                          "group": { "skipOperations": ["update"], "mappings": [] } }),
    );
    let u = t.entity("user").expect("user");
    assert!(u.skips(Operation::Create) && u.skips(Operation::Delete) && !u.skips(Operation::Update));
    let g = t.entity("group").expect("group");
    assert!(g.skips(Operation::Update) && g.skips(Operation::Patch) && !g.skips(Operation::Create));
}

/// sourceVariable / targetVariable / variablePath (LDAP write members).
#[test]
fn variables_and_variable_path() {
    let t = user(json!([
        { "sourcePath": "$.members[*]", "targetVariable": "membersVariable", "preserveArrayWithSingleElement": true, "optional": true },
        { "sourceVariable": "membersVariable", "targetPath": "$.member", "variablePath": "$[*].value" },
        { "sourcePath": "$.id", "targetPath": "$.id", "targetVariable": "entityIdSourceSystem" }
    ]));
    let p = props(&[]);
    let Outcome::Transformed { output, variables, .. } = t.apply(
        "user",
        &json!({ "id": "g1", "members": [{ "value": "cn=a" }, { "value": "cn=b" }] }),
        &Context::new(&p),
    ) else {
        panic!()
    };
    assert_eq!(output, json!({ "member": ["cn=a", "cn=b"], "id": "g1" }));
    assert_eq!(variables["entityIdSourceSystem"], "g1");
    assert_eq!(
        variables["membersVariable"],
        json!([{ "value": "cn=a" }, { "value": "cn=b" }])
    );
    // A single member is unwrapped without preserveArrayWithSingleElement.
    let one = t.apply(
        "user",
        &json!({ "id": "g1", "members": [{ "value": "cn=a" }] }),
        &Context::new(&p),
    );
    assert_eq!(one.output().map(|o| o["member"].clone()), Some(json!("cn=a")));
}

/// assignGroup / unassignGroup constants (enabling group assignment).
#[test]
fn assign_and_unassign_group() {
    let t = user(json!([
        { "condition": "($.emails EMPTY false)", "constant": [{ "id": "00f8ab94-a732-48fa-9169-e51f87b8dcd5" }, { "id": "01231139-4711-4a28-8f9d-6745843ef716" }], "targetVariable": "assignGroup" },
        { "constant": [{ "id": "groupID" }], "targetVariable": "unassignGroup", "scope": "deleteEntity" }
    ]));
    let p = props(&[]);
    let Outcome::Transformed { variables, .. } = t.apply("user", &fixture("scim-user.json"), &Context::new(&p)) else {
        panic!()
    };
    assert_eq!(variables["assignGroup"].as_array().map(Vec::len), Some(2));
    assert!(!variables.contains_key("unassignGroup"));
    let Outcome::Transformed { variables, .. } =
        t.apply("user", &json!({}), &Context::new(&p).operation(Operation::Delete))
    else {
        panic!()
    };
    assert_eq!(variables["unassignGroup"], json!([{ "id": "groupID" }]));
}

/// type remove / rename / set.
#[test]
fn remove_rename_set() {
    let t = user(json!([
        { "sourcePath": "$", "targetPath": "$" },
        { "type": "remove", "targetPath": "$.groups" },
        { "type": "remove", "targetPath": "$.emails[?(@.type == 'home')]" },
        { "targetPath": "$.name.lastName", "constant": "familyName", "type": "rename", "optional": true },
        { "type": "set", "constant": "x", "targetPath": "$.y" }
    ]));
    let o = run(
        &t,
        &json!({ "groups": [1], "emails": [{ "type": "work" }, { "type": "home" }], "name": { "lastName": "Smith" } }),
    );
    assert_eq!(
        o,
        json!({ "emails": [{ "type": "work" }], "name": { "familyName": "Smith" }, "y": "x" })
    );
    // Renaming a missing attribute of a non-optional mapping fails.
    let strict = user(json!([{ "targetPath": "$.name.lastName", "constant": "familyName", "type": "rename" }]));
    assert!(matches!(
        strict.apply("user", &json!({}), &Context::new(&props(&[]))),
        Outcome::Failed { .. }
    ));
}

/// valueMapping with one and two source paths, default on a miss.
#[test]
fn value_mapping() {
    let tz = user(
        json!([{ "type": "valueMapping", "sourcePaths": ["$.user.timeZoneCode"], "targetPath": "$.timezone", "defaultValue": "Europe/Berlin",
        "valueMappings": [ { "key": ["ISRAEL"], "mappedValue": "Asia/Jerusalem" }, { "key": ["MSTNO"], "mappedValue": "America/Phoenix" } ] }]),
    );
    assert_eq!(
        run(&tz, &json!({ "user": { "timeZoneCode": "MSTNO" } })),
        json!({ "timezone": "America/Phoenix" })
    );
    assert_eq!(
        run(&tz, &json!({ "user": { "timeZoneCode": "WDFT" } })),
        json!({ "timezone": "Europe/Berlin" })
    );
    assert_eq!(run(&tz, &json!({})), json!({ "timezone": "Europe/Berlin" }));
    let city = user(
        json!([{ "sourcePaths": ["$.country", "$.city"], "defaultValue": "UTC", "targetPath": "$.timezone", "type": "valueMapping",
        "valueMappings": [ { "key": ["US", "New York"], "mappedValue": "EST" }, { "key": ["US", "Dallas"], "mappedValue": "CST" }, { "key": ["Germany", "Berlin"], "mappedValue": "CET" } ] }]),
    );
    assert_eq!(
        run(&city, &json!({ "country": "US", "city": "Dallas" })),
        json!({ "timezone": "CST" })
    );
    assert_eq!(
        run(&city, &json!({ "country": "US", "city": "Berlin" })),
        json!({ "timezone": "UTC" })
    );
}

/// correlationAttribute may stand with only a sourcePath; it never fails.
#[test]
fn correlation_attribute_only() {
    let t = user(json!([
        { "sourcePath": "$.userName", "targetPath": "$.userName", "correlationAttribute": true },
        { "sourcePath": "$.emails[?(@.primary== true)].value", "correlationAttribute": true }
    ]));
    assert_eq!(run(&t, &json!({ "userName": "u" })), json!({ "userName": "u" }));
    assert_eq!(
        t.entity("user").map(|e| e.correlation_attributes()),
        Some(vec!["$.userName", "$.emails[?(@.primary== true)].value"])
    );
}

/// Functions named by "function" or by "type" (SEED-4 uses both).
#[test]
fn function_named_by_type_or_function() {
    let t = user(json!([
        { "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "type": "toUpperCaseString" }] },
        { "sourcePath": "$.b", "targetPath": "$.b", "functions": [{ "function": "toUpperCaseString" }] }
    ]));
    assert_eq!(run(&t, &json!({ "a": "x", "b": "y" })), json!({ "a": "X", "b": "Y" }));
}
