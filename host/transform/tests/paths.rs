//! Golden tests for JSONPath reading (Jayway forms used by SAP) and SAP's
//! target-side write semantics (ips-behaviour.md §1.1, §1.7 trap 2;
//! transformation-examples-901c759.md).

mod common;

use common::*;
use serde_json::json;

fn copy(source: &str, target: &str) -> provisio_transform::Transformation {
    user(
        json!([{ "sourcePath": source, "targetPath": target, "optional": true, "preserveArrayWithSingleElement": true }]),
    )
}

/// Dot and bracket notation, URN keys, indices, negative index.
#[test]
fn read_forms() {
    let u = fixture("scim-user.json");
    assert_eq!(run(&copy("$.name.familyName", "$.x"), &u), json!({ "x": "Smith" }));
    assert_eq!(
        run(
            &copy(
                "$['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User']['manager']['value']",
                "$.x"
            ),
            &u
        ),
        json!({ "x": "9a8b7c6d-0000-4000-8000-000000000001" })
    );
    assert_eq!(run(&copy("$[\"userName\"]", "$.x"), &u), json!({ "x": "jsmith" }));
    assert_eq!(
        run(&copy("$.emails[1].value", "$.x"), &u),
        json!({ "x": "jsmith@home.example" })
    );
    assert_eq!(run(&copy("$.emails[-1].type", "$.x"), &u), json!({ "x": "home" }));
    assert_eq!(
        run(&copy("$.emails[*].value", "$.x"), &u),
        json!({ "x": ["john.smith@company.com", "jsmith@home.example"] })
    );
    assert_eq!(
        run(&copy("$.emails[?(@.primary== true)].value", "$.x"), &u),
        json!({ "x": ["john.smith@company.com"] })
    );
    assert_eq!(
        run(&copy("$.emails[?(@.type != 'work')].value", "$.x"), &u),
        json!({ "x": ["jsmith@home.example"] })
    );
    assert_eq!(
        run(&copy("$.groups[?(@.display =~ /ABC.*/)].value", "$.x"), &u),
        json!({ "x": ["g-100"] })
    );
    assert_eq!(run(&copy("$..familyName", "$.x"), &u), json!({ "x": ["Smith"] }));
    assert_eq!(run(&copy("$.emails[0:1].type", "$.x"), &u), json!({ "x": ["work"] }));
}

/// Custom attribute by name (conditions page, "Check for Particular Custom Attribute").
#[test]
fn read_custom_attribute_by_name() {
    let u = json!({ "urn:sap:cloud:scim:schemas:extension:custom:2.0:User": { "attributes": [
        { "name": "customAttribute1", "value": "v1" }, { "name": "customAttribute2", "value": "v2" } ] } });
    let t = user(
        json!([{ "sourcePath": "$['urn:sap:cloud:scim:schemas:extension:custom:2.0:User']['attributes'][?(@.name=='customAttribute1')]['value']", "targetPath": "$.c" }]),
    );
    assert_eq!(run(&t, &u), json!({ "c": "v1" }));
}

/// Basic transformation `$` → `$` copies everything.
#[test]
fn whole_document_copy() {
    let u = fixture("scim-user.json");
    assert_eq!(run(&user(json!([{ "sourcePath": "$", "targetPath": "$" }])), &u), u);
}

/// Writing creates objects and arrays; `$.schemas[0]`, `$.schemas[1]`.
#[test]
fn write_creates_structure() {
    let t = user(json!([
        { "constant": "urn:ietf:params:scim:schemas:core:2.0:User", "targetPath": "$.schemas[0]" },
        { "constant": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "targetPath": "$.schemas[1]" },
        { "constant": "work", "targetPath": "$.emails[0].type" },
        { "constant": "x", "targetPath": "$.a.b.c" },
        { "constant": "third", "targetPath": "$.list[2]" }
    ]));
    assert_eq!(
        run(&t, &json!({})),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "emails": [{ "type": "work" }],
            "a": { "b": { "c": "x" } },
            "list": [null, null, "third"]
        })
    );
}

/// `[*]` broadcast sets on every existing element; filters select elements.
#[test]
fn write_broadcast_and_filter() {
    let t = user(json!([
        { "sourcePath": "$.emails", "targetPath": "$.emails", "preserveArrayWithSingleElement": true },
        { "constant": "internet", "targetPath": "$.emails[*].kind" },
        { "constant": true, "targetPath": "$.emails[?(@.type == 'home')].private" }
    ]));
    let o = run(&t, &fixture("scim-user.json"));
    assert_eq!(o["emails"][0]["kind"], "internet");
    assert_eq!(o["emails"][1]["kind"], "internet");
    assert_eq!(o["emails"][1]["private"], true);
    assert!(o["emails"][0].get("private").is_none());
}

/// Array builder `$.emails[?(@.value)]` (IAS write), `$.groups[?(@.value)]` (AD read).
#[test]
fn write_array_builder() {
    let t = user(json!([
        { "sourcePath": "$.emails[*].value", "preserveArrayWithSingleElement": true, "targetPath": "$.emails[?(@.value)]" },
        { "sourcePath": "$.memberOf", "preserveArrayWithSingleElement": true, "optional": true, "targetPath": "$.groups[?(@.value)]" }
    ]));
    let o = run(
        &t,
        &json!({ "emails": [{ "value": "a@x.com", "type": "work" }, { "value": "b@x.com" }], "memberOf": ["group1"] }),
    );
    assert_eq!(
        o,
        json!({ "emails": [{ "value": "a@x.com" }, { "value": "b@x.com" }], "groups": [{ "value": "group1" }] })
    );
}

/// Builders with the same array merge by index (value + display pairs).
#[test]
fn write_array_builder_merges() {
    let t = user(json!([
        { "sourcePath": "$.ids", "preserveArrayWithSingleElement": true, "targetPath": "$.groups[?(@.value)]" },
        { "sourcePath": "$.names", "preserveArrayWithSingleElement": true, "targetPath": "$.groups[?(@.display)]" }
    ]));
    assert_eq!(
        run(&t, &json!({ "ids": ["1", "2"], "names": ["One", "Two"] })),
        json!({ "groups": [{ "value": "1", "display": "One" }, { "value": "2", "display": "Two" }] })
    );
}

/// preserveArrayWithSingleElement false unwraps a one-element array.
#[test]
fn preserve_array_with_single_element() {
    let keep = user(json!([{ "sourcePath": "$.sn", "targetPath": "$.sn", "preserveArrayWithSingleElement": true }]));
    let unwrap = user(json!([{ "sourcePath": "$.sn", "targetPath": "$.sn" }]));
    assert_eq!(run(&keep, &json!({ "sn": ["Smith"] })), json!({ "sn": ["Smith"] }));
    assert_eq!(run(&unwrap, &json!({ "sn": ["Smith"] })), json!({ "sn": "Smith" }));
    assert_eq!(run(&unwrap, &json!({ "sn": ["a", "b"] })), json!({ "sn": ["a", "b"] }));
    // An unwrapped single member written through the builder is one object (SAP docs).
    let single =
        user(json!([{ "sourcePath": "$.members[*].value", "optional": true, "targetPath": "$.members[?(@.value)]" }]));
    assert_eq!(
        run(&single, &json!({ "members": [{ "value": "u1" }] })),
        json!({ "members": { "value": "u1" } })
    );
}

/// Source → intermediate → target (transformation-examples page): the AD read
/// and IAS write examples produce the documented target entity's mapped parts.
#[test]
fn source_intermediate_target_example() {
    let read = user(json!([
        { "sourcePath": "$.sAMAccountName[0]", "targetVariable": "entityIdSourceSystem" },
        { "sourcePath": "$.sAMAccountName[0]", "targetPath": "$.userName", "correlationAttribute": true },
        { "sourcePath": "$.displayName[0]", "optional": true, "targetPath": "$.displayName" },
        { "constant": "urn:ietf:params:scim:schemas:core:2.0:User", "targetPath": "$.schemas[0]" },
        { "sourcePath": "$.mail[0]", "optional": true, "targetPath": "$.emails[0].value", "correlationAttribute": true },
        { "sourcePath": "$.givenName[0]", "optional": true, "targetPath": "$.name.givenName" },
        { "sourcePath": "$.sn[0]", "optional": true, "targetPath": "$.name.familyName" },
        { "sourcePath": "$.memberOf", "preserveArrayWithSingleElement": true, "optional": true, "targetPath": "$.groups[?(@.value)]" }
    ]));
    let ad = json!({ "sAMAccountName": ["jsmith"], "mail": ["john.smith@company.com"], "givenName": ["John"], "sn": ["Smith"], "memberOf": ["group1"] });
    let intermediate = run(&read, &ad);
    assert_eq!(
        intermediate,
        json!({
            "userName": "jsmith", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "emails": [{ "value": "john.smith@company.com" }], "name": { "givenName": "John", "familyName": "Smith" },
            "groups": [{ "value": "group1" }]
        })
    );
    let write = parse(
        json!({ "user": { "condition": "($.emails.length() > 0) && ($.name.familyName EMPTY false)", "mappings": [
            { "sourcePath": "$.groups", "preserveArrayWithSingleElement": true, "optional": true, "targetPath": "$.corporateGroups" },
            { "sourceVariable": "entityIdTargetSystem", "targetPath": "$.id" },
            { "constant": "urn:ietf:params:scim:schemas:core:2.0:User", "targetPath": "$.schemas[0]" },
            { "constant": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "targetPath": "$.schemas[1]" },
            { "sourcePath": "$.userName", "optional": true, "targetPath": "$.userName" },
            { "sourcePath": "$.emails[*].value", "preserveArrayWithSingleElement": true, "targetPath": "$.emails[?(@.value)]" },
            { "sourcePath": "$.name.givenName", "optional": true, "targetPath": "$.name.givenName" },
            { "sourcePath": "$.name.familyName", "optional": true, "targetPath": "$.name.familyName" }
        ]}}),
    );
    let p = props(&[]);
    let ctx = provisio_transform::Context::new(&p).variable("entityIdTargetSystem", json!("P000100"));
    let target = write.apply("user", &intermediate, &ctx);
    assert_eq!(
        target.output(),
        Some(&json!({
            "corporateGroups": [{ "value": "group1" }], "id": "P000100",
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": "jsmith", "emails": [{ "value": "john.smith@company.com" }], "name": { "givenName": "John", "familyName": "Smith" }
        }))
    );
}
