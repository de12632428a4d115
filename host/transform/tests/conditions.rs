//! Golden tests for conditions (CIS transformation-conditions-f47bd39.md,
//! transformation-expressions-bb8537b.md `condition`, ips-behaviour.md §1.5).

mod common;

use common::*;
use provisio_transform::{Context, Operation, Outcome, Transformation};
use serde_json::{Value, json};

/// Applies an entity-level condition; true when the entity is transformed.
fn holds_with(cond: &str, entity: &Value, p: &[(&str, &str)]) -> bool {
    let t = parse(json!({ "user": { "condition": cond, "mappings": [ { "constant": 1, "targetPath": "$.x" } ] } }));
    let props = props(p);
    let ctx = Context::new(&props).now(
        provisio_transform::chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .map(|d| d.to_utc())
            .unwrap_or_default(),
    );
    match t.apply("user", entity, &ctx) {
        Outcome::Transformed { .. } => true,
        Outcome::Skipped { reason, .. } => {
            assert_eq!(reason, format!("The condition: ({cond}) is not fulfilled."));
            false
        }
        other => panic!("{other:?}"),
    }
}

fn holds(cond: &str, entity: &Value) -> bool {
    holds_with(cond, entity, &[])
}

/// `== []`: "checks if the user has no primary email defined".
#[test]
fn equals_empty_array_means_no_primary_email() {
    let c = "$.emails[?(@.primary == true)].value == []";
    assert!(!holds(c, &fixture("scim-user.json")));
    assert!(holds(c, &json!({ "emails": [{ "value": "a@b.c" }] })));
    assert!(holds(c, &json!({})));
    assert!(!holds("$.emails[?(@.primary == true)].value != []", &json!({})));
}

/// `!=` / `!==`: familyName different from Smith (missing counts as different).
#[test]
fn not_equals() {
    let u = fixture("scim-user.json");
    assert!(!holds("$.name.familyName != 'Smith'", &u));
    assert!(!holds("$.name.familyName !== 'Smith'", &u));
    assert!(holds("$.name.familyName != 'Jones'", &u));
    assert!(holds("$.name.familyName != 'Smith'", &json!({})));
}

/// `=~ /regex/` matches the whole value: `$.emails[0].value =~ /.*@example.com/`.
#[test]
fn regex_match() {
    assert!(holds(
        "$.emails[0].value =~ /.*@example.com/",
        &json!({ "emails": [{ "value": "a@example.com" }] })
    ));
    assert!(!holds(
        "$.emails[0].value =~ /.*@example.com/",
        &json!({ "emails": [{ "value": "a@example.com.evil" }] })
    ));
    assert!(holds("$.userName =~ /JSMITH/i", &fixture("scim-user.json")));
}

/// `&&` with `${currentDate}`: validity period (S/4HANA Cloud default read).
#[test]
fn validity_period_with_current_date() {
    let c = "($.validityPeriod.startDate <= '${currentDate}') && ($.validityPeriod.endDate > '${currentDate}')";
    let valid =
        json!({ "validityPeriod": { "startDate": "2026-01-01 00:00:00.000", "endDate": "9999-12-31 00:00:00.000" } });
    let expired =
        json!({ "validityPeriod": { "startDate": "2020-01-01 00:00:00.000", "endDate": "2026-11-01 00:00:00.000" } });
    let future =
        json!({ "validityPeriod": { "startDate": "2027-01-01 00:00:00.000", "endDate": "2028-01-01 00:00:00.000" } });
    assert!(holds(c, &valid));
    assert!(!holds(c, &expired));
    assert!(!holds(c, &future));
}

/// `||`, `===`, `EMPTY false`, prefix placeholders (Sales/Service Cloud v4 default).
#[test]
fn or_with_group_prefix() {
    let c = "((('%c4c.group.prefix%' === 'null') || ($.groups[?(@.display =~ /%c4c.group.prefix%.*/)] empty false)) && $.userName empty false && ($.userType === 'Employee' || $.userType === 'employee'))";
    let u = fixture("scim-user.json");
    assert!(holds_with(c, &u, &[]));
    assert!(holds_with(c, &u, &[("c4c.group.prefix", "ABC")]));
    assert!(!holds_with(c, &u, &[("c4c.group.prefix", "QQQ")]));
    let mut partner = u.clone();
    partner["userType"] = json!("partner");
    assert!(!holds_with(c, &partner, &[]));
}

/// `EMPTY true|false` in any case; null, "", [] are empty.
#[test]
fn empty_operator() {
    assert!(holds(
        "($.emails EMPTY true) || isValidEmail($.emails[0].value)",
        &json!({})
    ));
    assert!(holds(
        "($.emails EMPTY true) || isValidEmail($.emails[0].value)",
        &json!({ "emails": [] })
    ));
    assert!(!holds(
        "($.emails EMPTY true) || isValidEmail($.emails[0].value)",
        &json!({ "emails": [{ "value": "nope" }] })
    ));
    let c = "($.emails EMPTY false) && ($.userName EMPTY false) && isValidEmail($.emails[0].value)";
    assert!(holds(c, &fixture("scim-user.json")));
    assert!(!holds(c, &json!({ "userName": "", "emails": [{ "value": "a@b.co" }] })));
    assert!(holds("$.x Empty True", &json!({ "x": null })));
}

/// Group-assignment examples from the conditions page.
#[test]
fn group_membership_examples() {
    let u = fixture("scim-user.json");
    assert!(holds("$.groups[?(@.display =~ /ABC.*/)] empty false", &u));
    assert!(!holds(
        "$.groups EMPTY true || $.groups[?(@.display === 'XYZ' )] empty true",
        &u
    ));
    assert!(holds(
        "$.groups EMPTY true || $.groups[?(@.display === 'XYZ' )] empty true",
        &json!({})
    ));
    let c = "($.groups EMPTY false) && ( ($.groups[?(@.display ==='ABC' )] != []) || ($.groups[?(@.display ==='XYZ')] != []))";
    assert!(holds(c, &u));
    assert!(!holds(c, &json!({ "groups": [{ "display": "Other" }] })));
}

/// `contains` on arrays and strings (`$.memberOf contains 'group1'`).
#[test]
fn contains_operator() {
    let ad = json!({ "memberOf": ["group1", "group2"], "cn": "John Smith" });
    assert!(holds("$.memberOf contains 'group1'", &ad));
    assert!(!holds("$.memberOf contains 'group9'", &ad));
    assert!(holds("$.cn contains 'Smi'", &ad));
}

/// `.length()` (AS ABAP / IAS v1 condition) and `<`, `<=`, `>`, `>=`.
#[test]
fn length_and_ordering() {
    let c = "($.emails.length() > 0) && ($.name.familyName EMPTY false)";
    assert!(holds(c, &fixture("scim-user.json")));
    assert!(!holds(c, &json!({ "emails": [], "name": { "familyName": "X" } })));
    assert!(holds("$.emails.length() >= 2", &fixture("scim-user.json")));
    assert!(!holds("$.emails.length() < 2", &fixture("scim-user.json")));
    assert!(holds("$.age <= 30.5", &json!({ "age": 30 })));
}

/// `NIN` / `IN` with lists, and negation.
#[test]
fn nin_and_in() {
    assert!(holds("$.type NIN ['work', 'home']", &json!({ "type": "other" })));
    assert!(!holds("$.type nin ['work', 'home']", &json!({ "type": "work" })));
    assert!(holds("$.type IN ['work', 'home']", &json!({ "type": "home" })));
    assert!(holds("!($.type == 'x')", &json!({ "type": "y" })));
}

/// Condition functions: isValidEmail (all values for `[*]`).
#[test]
fn is_valid_email() {
    let u = fixture("scim-user.json");
    assert!(holds("isValidEmail($.emails[0].value)", &u));
    assert!(holds("isValidEmail($.emails[*].value)", &u));
    let bad = json!({ "emails": [{ "value": "ok@x.com" }, { "value": "not an email" }] });
    assert!(holds("isValidEmail($.emails[0].value)", &bad));
    assert!(!holds("isValidEmail($.emails[*].value)", &bad));
    assert!(!holds("isValidEmail($.emails[0].value)", &json!({})));
    // The documented short form `emails.value`.
    assert!(holds("isValidEmail(emails.value)", &u));
    assert!(!holds("isValidEmail(emails.value)", &bad));
}

/// isAttributeWithOptionalPrefix / isAttributeWithMandatoryPrefix (SAP AFC defaults).
#[test]
fn prefix_functions() {
    let g = json!({ "displayName": "AFC_Admins" });
    let opt = "isAttributeWithOptionalPrefix($.displayName, s4hana.afc.group.prefix)";
    let man = "isAttributeWithMandatoryPrefix($.displayName, s4hana.afc.group.prefix)";
    assert!(holds_with(opt, &g, &[]));
    assert!(holds_with(opt, &g, &[("s4hana.afc.group.prefix", "AFC_")]));
    assert!(!holds_with(opt, &g, &[("s4hana.afc.group.prefix", "XYZ_")]));
    assert!(holds_with(opt, &json!({}), &[("s4hana.afc.group.prefix", "XYZ_")]));
    assert!(!holds_with(man, &g, &[]));
    assert!(holds_with(man, &g, &[("s4hana.afc.group.prefix", "AFC_")]));
    assert!(!holds_with(man, &json!({}), &[("s4hana.afc.group.prefix", "AFC_")]));
}

/// isApplicationSpecificGroup / isRegularGroup.
#[test]
fn group_kind_functions() {
    let ext = "urn:ietf:params:scim:schemas:extension:sap:2.0:Group";
    let app = json!({ ext: { "applicationId": "app-1", "supportedOperations": "read" } });
    let regular = json!({ "displayName": "G" });
    assert!(holds_with(
        "isApplicationSpecificGroup()",
        &app,
        &[("ips.application.id", "app-1")]
    ));
    assert!(!holds_with(
        "isApplicationSpecificGroup()",
        &app,
        &[("ips.application.id", "app-2")]
    ));
    assert!(!holds_with("isApplicationSpecificGroup()", &app, &[]));
    assert!(holds("isRegularGroup()", &regular));
    assert!(!holds("isRegularGroup()", &app));
}

/// Mapping-level conditions: assign group by userName (conditions page).
#[test]
fn mapping_conditions_assign_groups() {
    let t = user(json!([
        { "condition": "$.userName =~ /.*explorer.*/", "constant": "Explorers", "targetPath": "$.groups[0].value" },
        { "condition": "$.userName =~ /.*scifi.*/", "constant": "Scientists", "targetPath": "$.groups[1].value" }
    ]));
    assert_eq!(
        run(&t, &json!({ "userName": "explorer-1" })),
        json!({ "groups": [{ "value": "Explorers" }] })
    );
    assert_eq!(
        run(&t, &json!({ "userName": "scifi-explorer" })),
        json!({ "groups": [{ "value": "Explorers" }, { "value": "Scientists" }] })
    );
    assert_eq!(run(&t, &json!({ "userName": "other" })), json!({}));
}

/// `$.memberOf contains 'group1'` on a mapping (expressions page).
#[test]
fn mapping_condition_with_strings() {
    let t = user(
        json!([{ "condition": "$.memberOf contains 'group1'", "constant": "NewDisplayName", "targetPath": "$.displayName" }]),
    );
    assert_eq!(
        run(&t, &json!({ "memberOf": ["group1"] })),
        json!({ "displayName": "NewDisplayName" })
    );
    assert_eq!(run(&t, &json!({ "memberOf": ["group2"] })), json!({}));
}

/// Entity condition is ignored for deleteEntity processing.
#[test]
fn entity_condition_ignored_on_delete() {
    let t: Transformation = parse(json!({ "user": {
        "condition": "$.userName EMPTY false",
        "mappings": [ { "scope": "deleteEntity", "constant": false, "targetPath": "$.active" } ]
    }}));
    let p = props(&[]);
    assert_eq!(
        out_op(&t, &json!({}), &p, Operation::Delete),
        json!({ "active": false })
    );
}
