//! Golden tests for placeholders and variables (ips-behaviour.md §1.3-1.4,
//! CIS transformation-variables-8376adb.md, configure-single-and-multiple-origins).

mod common;

use common::*;
use provisio_transform::chrono::{DateTime, Utc};
use provisio_transform::{Context, Outcome};
use serde_json::json;

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:08:07.654Z")
        .map(|d| d.to_utc())
        .unwrap_or_default()
}

/// `%property%` in constants; an unset property renders as `null`.
#[test]
fn property_placeholders() {
    let t = user(json!([
        { "constant": "%xsuaa.origin%", "targetPath": "$.origin" },
        { "constant": "pre-%a%-%b%", "targetPath": "$.mixed" },
        { "constant": ["%a%", { "k": "%b%" }], "targetPath": "$.nested" },
        { "constant": "100%", "targetPath": "$.literal" }
    ]));
    let p = props(&[("xsuaa.origin", "sap.custom"), ("a", "A")]);
    assert_eq!(
        out(&t, &json!({}), &p),
        json!({ "origin": "sap.custom", "mixed": "pre-A-null", "nested": ["A", { "k": "null" }], "literal": "100%" })
    );
}

/// `%prop%[]` expands a `;`-separated property into an array (multiple origins).
#[test]
fn multi_valued_property() {
    let t = user(json!([{ "constant": "%xsuaa.origin%[]", "targetPath": "$.origins" }]));
    assert_eq!(
        out(&t, &json!({}), &props(&[("xsuaa.origin", "idp1;idp2")])),
        json!({ "origins": ["idp1", "idp2"] })
    );
    assert_eq!(
        out(&t, &json!({}), &props(&[("xsuaa.origin", "idp1")])),
        json!({ "origins": ["idp1"] })
    );
}

/// A placeholder inside a source path (`$.%ldap.attribute.user.id%[0]`).
#[test]
fn placeholder_in_path() {
    let t = user(json!([{ "sourcePath": "$.%ldap.attribute.user.id%[0]", "targetPath": "$.userName" }]));
    assert_eq!(
        out(
            &t,
            &json!({ "uid": ["jdoe"], "cn": ["John"] }),
            &props(&[("ldap.attribute.user.id", "uid")])
        ),
        json!({ "userName": "jdoe" })
    );
    assert_eq!(
        out(
            &t,
            &json!({ "uid": ["jdoe"], "cn": ["John"] }),
            &props(&[("ldap.attribute.user.id", "cn")])
        ),
        json!({ "userName": "John" })
    );
}

/// `${variable}` in constants and function parameters.
#[test]
fn variable_placeholders() {
    let t = user(json!([
        { "sourcePath": "$.id", "targetVariable": "entityIdSourceSystem" },
        { "constant": "user-${entityIdSourceSystem}", "targetPath": "$.ref" },
        { "constant": "${undefinedVar}", "targetPath": "$.u" }
    ]));
    assert_eq!(
        run(&t, &json!({ "id": "42" })),
        json!({ "ref": "user-42", "u": "null" })
    );
}

/// currentDate: default format yyyy-MM-dd HH:mm:ss.SSS, or ips.date.variable.format.
#[test]
fn current_date() {
    let t = user(json!([
        { "sourceVariable": "currentDate", "targetPath": "$.now" },
        { "constant": "at ${currentDate}", "targetPath": "$.text" }
    ]));
    let p = props(&[]);
    let o = t.apply("user", &json!({}), &Context::new(&p).now(at()));
    assert_eq!(
        o.output(),
        Some(&json!({ "now": "2026-11-23 09:08:07.654", "text": "at 2026-11-23 09:08:07.654" }))
    );
    let p = props(&[("ips.date.variable.format", "dd.MM.yyyy'T'HH:mm")]);
    let o = t.apply("user", &json!({}), &Context::new(&p).now(at()));
    assert_eq!(o.output().map(|o| o["now"].clone()), Some(json!("23.11.2026T09:08")));
}

/// entityBaseLocation → entityLocationSourceSystem (proxy read, variables page).
#[test]
fn entity_location_variables() {
    let t = user(json!([
        { "sourcePath": "$.id", "targetPath": "$.id", "targetVariable": "entityIdSourceSystem" },
        { "sourceVariable": "entityBaseLocation", "targetVariable": "entityLocationSourceSystem", "targetPath": "$.meta.location",
          "functions": [{ "type": "concatString", "suffix": "${entityIdSourceSystem}" }] }
    ]));
    let p = props(&[]);
    let base = "https://ipsproxyp-c.hana.ondemand.com:443/ipsproxy/api/v1/scim/s1/Users/";
    let Outcome::Transformed { output, variables, .. } = t.apply(
        "user",
        &json!({ "id": "u9" }),
        &Context::new(&p).variable("entityBaseLocation", json!(base)),
    ) else {
        panic!()
    };
    assert_eq!(output["meta"]["location"], format!("{base}u9"));
    assert_eq!(variables["entityLocationSourceSystem"], format!("{base}u9"));
    assert_eq!(variables["entityBaseLocation"], base);
}

/// Placeholders in a condition regex and in a function regex.
#[test]
fn placeholders_in_regexes() {
    let t = user(json!([
        { "condition": "$.displayName =~ /%prefix%.*/", "sourcePath": "$.displayName", "targetPath": "$.id",
          "functions": [{ "function": "replaceFirstString", "regex": "^%prefix%", "replacement": "" }] }
    ]));
    let p = props(&[("prefix", "XS_")]);
    assert_eq!(
        out(&t, &json!({ "displayName": "XS_Admins" }), &p),
        json!({ "id": "Admins" })
    );
    assert_eq!(out(&t, &json!({ "displayName": "Admins" }), &p), json!({}));
    // Properties change between systems: the cached compilation follows them.
    assert_eq!(
        out(&t, &json!({ "displayName": "AB_Admins" }), &props(&[("prefix", "AB_")])),
        json!({ "id": "Admins" })
    );
}

/// Placeholders in defaultValue render like in constants.
#[test]
fn placeholders_in_default_value() {
    let t = user(
        json!([{ "sourcePath": "$.origin", "targetPath": "$.origin", "optional": true, "defaultValue": "%xsuaa.origin%" }]),
    );
    let p = props(&[("xsuaa.origin", "sap.custom")]);
    assert_eq!(out(&t, &json!({}), &p), json!({ "origin": "sap.custom" }));
    assert_eq!(out(&t, &json!({ "origin": "idp" }), &p), json!({ "origin": "idp" }));
}
