//! Golden tests for mapping functions (CIS transformation-functions-0cdac7c.md
//! and the function modifiers of transformation-expressions-bb8537b.md).

mod common;

use common::*;
use provisio_transform::{Context, EntityIdResolver, Outcome, Transformation};
use serde_json::{Value, json};

fn one(source: &str, target: &str, functions: Value) -> Transformation {
    user(json!([{ "sourcePath": source, "targetPath": target, "functions": functions }]))
}

fn fails(t: &Transformation, input: &Value) -> String {
    match t.apply("user", input, &Context::new(&props(&[]))) {
        Outcome::Failed { reason, .. } => reason,
        other => panic!("expected failure, got {other:?}"),
    }
}

/// concatString example 1: johnsmith + ips_ / 123 → ips_johnsmith123.
#[test]
fn concat_string_prefix_suffix() {
    let t = one(
        "$.sAMAccountName[0]",
        "$.userName",
        json!([{ "function": "concatString", "prefix": "ips_", "suffix": 123 }]),
    );
    assert_eq!(
        run(&t, &json!({ "sAMAccountName": ["johnsmith"] })),
        json!({ "userName": "ips_johnsmith123" })
    );
}

/// concatString example 2: suffix from a property `@%aad.domain.name%`.
#[test]
fn concat_string_property_suffix() {
    let t = one(
        "$.userId",
        "$.emails[0].value",
        json!([{ "function": "concatString", "suffix": "@%aad.domain.name%" }]),
    );
    let p = props(&[("aad.domain.name", "mail.acme.com")]);
    assert_eq!(
        out(&t, &json!({ "userId": "johnsmith123" }), &p),
        json!({ "emails": [{ "value": "johnsmith123@mail.acme.com" }] })
    );
}

/// concatString with a JSONPath suffix (SAP Jam default locale mapping).
#[test]
fn concat_string_jsonpath_suffix() {
    let t = user(json!([{
        "sourcePath": "$.locale", "targetPath": "$.locale",
        "functions": [
            { "function": "toLowerCaseString" },
            { "function": "concatString", "suffix": "$.addresses[?(@.type == 'work')].country" }
        ]
    }]));
    assert_eq!(
        run(
            &t,
            &json!({ "locale": "EN_", "addresses": [{ "type": "home", "country": "FR" }, { "type": "work", "country": "US" }] })
        ),
        json!({ "locale": "en_US" })
    );
}

/// replaceString: National → European.
#[test]
fn replace_string() {
    let t = one(
        "$.school",
        "$.school",
        json!([{ "function": "replaceString", "target": "National", "replacement": "European" }]),
    );
    assert_eq!(
        run(&t, &json!({ "school": "National College of Linguistics and History" })),
        json!({ "school": "European College of Linguistics and History" })
    );
}

/// replaceFirst/Last/AllString with regex `14\d{1}` and numeric replacement 123.
#[test]
fn replace_regex_variants() {
    let input = json!({ "sAMAccountName": ["a140b141c142"] });
    for (f, want) in [
        ("replaceFirstString", "a123b141c142"),
        ("replaceLastString", "a140b141c123"),
        ("replaceAllString", "a123b123c123"),
    ] {
        let t = one(
            "$.sAMAccountName[0]",
            "$.userName",
            json!([{ "function": f, "regex": "14\\d{1}", "replacement": 123 }]),
        );
        assert_eq!(run(&t, &input), json!({ "userName": want }), "{f}");
    }
    // Java group references in the replacement.
    let t = one(
        "$.n",
        "$.n",
        json!([{ "function": "replaceAllString", "regex": "(\\w+)@(\\w+)", "replacement": "$2\\$$1" }]),
    );
    assert_eq!(run(&t, &json!({ "n": "joe@acme" })), json!({ "n": "acme$joe" }));
}

/// substring(3, 5) and out-of-range failing like Java.
#[test]
fn substring() {
    let t = one(
        "$.sAMAccountName[0]",
        "$.userName",
        json!([{ "function": "substring", "beginIndex": 3, "endIndex": 5 }]),
    );
    assert_eq!(
        run(&t, &json!({ "sAMAccountName": ["johnsmith"] })),
        json!({ "userName": "ns" })
    );
    let t2 = one("$.a", "$.a", json!([{ "function": "substring", "beginIndex": 2 }]));
    assert_eq!(run(&t2, &json!({ "a": "héllo" })), json!({ "a": "llo" }));
    assert!(fails(&t, &json!({ "sAMAccountName": ["abc"] })).contains("substring"));
}

/// toUpperCaseString / toLowerCaseString (locale en_EN default; tr dotted i).
#[test]
fn case_conversion() {
    let up = one(
        "$.a",
        "$.a",
        json!([{ "function": "toUpperCaseString", "locale": "en_EN" }]),
    );
    let low = one("$.a", "$.a", json!([{ "function": "toLowerCaseString" }]));
    let tr = one(
        "$.a",
        "$.a",
        json!([{ "function": "toUpperCaseString", "locale": "tr_TR" }]),
    );
    assert_eq!(run(&up, &json!({ "a": "John.Smith" })), json!({ "a": "JOHN.SMITH" }));
    assert_eq!(run(&low, &json!({ "a": "John.Smith" })), json!({ "a": "john.smith" }));
    assert_eq!(run(&tr, &json!({ "a": "istanbul" })), json!({ "a": "İSTANBUL" }));
}

/// encode base32 skipPadding: JOHN*SMITH/Junior → JJHUQTRKKNGUSVCIF5FHK3TJN5ZA; decode + toString back.
#[test]
fn encode_decode_base32() {
    let enc = user(
        json!([{ "sourcePath": "$.USERNAME", "targetPath": "$.id", "targetVariable": "entityIdSourceSystem",
        "functions": [{ "function": "encode", "algorithm": "base32", "skipPadding": true }] }]),
    );
    assert_eq!(
        run(&enc, &json!({ "USERNAME": "JOHN*SMITH/Junior" })),
        json!({ "id": "JJHUQTRKKNGUSVCIF5FHK3TJN5ZA" })
    );
    let padded = one("$.u", "$.id", json!([{ "function": "encode", "algorithm": "base32" }]));
    assert_eq!(
        run(&padded, &json!({ "u": "JOHN*SMITH/Junior" })),
        json!({ "id": "JJHUQTRKKNGUSVCIF5FHK3TJN5ZA====" })
    );
    let dec = one(
        "$.id",
        "$.USERNAME",
        json!([
            { "function": "decode", "algorithm": "base32", "skipPadding": true },
            { "function": "toString" }
        ]),
    );
    assert_eq!(
        run(&dec, &json!({ "id": "JJHUQTRKKNGUSVCIF5FHK3TJN5ZA====" })),
        json!({ "USERNAME": "JOHN*SMITH/Junior" })
    );
    assert_eq!(
        run(&dec, &json!({ "id": "JJHUQTRKKNGUSVCIF5FHK3TJN5ZA" })),
        json!({ "USERNAME": "JOHN*SMITH/Junior" })
    );
    let b64 = one("$.u", "$.u", json!([{ "function": "encode", "algorithm": "base64" }]));
    assert_eq!(run(&b64, &json!({ "u": "hi" })), json!({ "u": "aGk=" }));
    assert!(fails(&dec, &json!({ "id": "!!!" })).contains("decode"));
}

/// applyOnElements: decode members then toString on each (AS ABAP proxy write).
#[test]
fn apply_on_elements_decode_members() {
    let t = user(json!([{
        "sourcePath": "$.members[*].value", "preserveArrayWithSingleElement": true, "optional": true,
        "targetPath": "$.USERLIST[?(@.USERNAME)]",
        "functions": [
            { "function": "decode", "algorithm": "base32", "skipPadding": true },
            { "function": "toString", "applyOnElements": true }
        ]
    }]));
    let input = json!({ "members": [{ "value": "JJHUQTRKKNGUSVCIF5FHK3TJN5ZA" }, { "value": "JBSWY3DP" }] });
    assert_eq!(
        run(&t, &input),
        json!({ "USERLIST": [{ "USERNAME": "JOHN*SMITH/Junior" }, { "USERNAME": "Hello" }] })
    );
}

/// applyOnAttribute / assignToAttribute with replaceString on PRIVILEGES.
#[test]
fn apply_on_attribute_and_assign() {
    let input =
        json!({ "PRIVILEGES": [{ "COMPOSITE_PRIVILEGE": "SAP_01_COMP" }, { "COMPOSITE_PRIVILEGE": "SAP_02_COMP" }] });
    let on_attr = one(
        "$.PRIVILEGES",
        "$.groups",
        json!([{ "function": "replaceString", "applyOnElements": true,
        "target": "SAP", "replacement": "test", "applyOnAttribute": "COMPOSITE_PRIVILEGE" }]),
    );
    assert_eq!(
        run(&on_attr, &input),
        json!({ "groups": [{ "COMPOSITE_PRIVILEGE": "test_01_COMP" }, { "COMPOSITE_PRIVILEGE": "test_02_COMP" }] })
    );
    let assign = one(
        "$.PRIVILEGES",
        "$.groups",
        json!([{ "function": "replaceString", "applyOnElements": true,
        "target": "SAP", "replacement": "test", "applyOnAttribute": "COMPOSITE_PRIVILEGE", "assignToAttribute": "ASSIGNMENT" }]),
    );
    assert_eq!(
        run(&assign, &input),
        json!({ "groups": [
        { "COMPOSITE_PRIVILEGE": "SAP_01_COMP", "ASSIGNMENT": "test_01_COMP" },
        { "COMPOSITE_PRIVILEGE": "SAP_02_COMP", "ASSIGNMENT": "test_02_COMP" }
    ] })
    );
    // Deprecated alias applyOnJsonAttribute.
    let alias = one(
        "$.PRIVILEGES",
        "$.groups",
        json!([{ "function": "replaceString", "target": "SAP", "replacement": "x", "applyOnJsonAttribute": "COMPOSITE_PRIVILEGE" }]),
    );
    assert_eq!(run(&alias, &input)["groups"][1]["COMPOSITE_PRIVILEGE"], "x_02_COMP");
}

/// matchRegex ".*_COMP" assigned to "composite".
#[test]
fn match_regex() {
    let t = one(
        "$.PRIVILEGES",
        "$.groups",
        json!([{ "function": "matchRegex", "regex": ".*_COMP", "applyOnAttribute": "COMPOSITE_PRIVILEGE", "assignToAttribute": "composite" }]),
    );
    let input =
        json!({ "PRIVILEGES": [{ "COMPOSITE_PRIVILEGE": "SAP_01_COMP" }, { "COMPOSITE_PRIVILEGE": "SAP_02" }] });
    assert_eq!(
        run(&t, &input),
        json!({ "groups": [
        { "COMPOSITE_PRIVILEGE": "SAP_01_COMP", "composite": true },
        { "COMPOSITE_PRIVILEGE": "SAP_02", "composite": false }
    ] })
    );
}

/// elementAt index 0 on primary emails, guarded by a condition.
#[test]
fn element_at() {
    let t = user(json!([{
        "condition": "$.emails[?(@.primary == true)].value != []",
        "sourcePath": "$.emails[?(@.primary == true)].value", "preserveArrayWithSingleElement": true,
        "optional": true, "targetPath": "$.email", "functions": [{ "function": "elementAt", "index": 0 }]
    }]));
    assert_eq!(
        run(&t, &fixture("scim-user.json")),
        json!({ "email": "john.smith@company.com" })
    );
    assert_eq!(run(&t, &json!({ "emails": [{ "value": "x@y.z" }] })), json!({}));
}

/// splitStringToArray into strings, and into objects with `[?(@.name)]`.
#[test]
fn split_string_to_array() {
    let input = json!({ "countries": "Serbia,Germany,Spain" });
    let strings = one(
        "$.countries",
        "$.countryList",
        json!([{ "function": "splitStringToArray", "separator": "," }]),
    );
    assert_eq!(
        run(&strings, &input),
        json!({ "countryList": ["Serbia", "Germany", "Spain"] })
    );
    let objects = one(
        "$.countries",
        "$.countryList[?(@.name)]",
        json!([{ "function": "splitStringToArray", "separator": "," }]),
    );
    assert_eq!(
        run(&objects, &input),
        json!({ "countryList": [{ "name": "Serbia" }, { "name": "Germany" }, { "name": "Spain" }] })
    );
}

/// getMatchedRegexGroup: nested OU from the DN; regex from a variable.
#[test]
fn get_matched_regex_group() {
    let t = one(
        "$.distinguishedName[0]",
        "$['urn:sap:cloud:scim:schemas:extension:ad:2.0:User']['nestedPath']",
        json!([{ "function": "getMatchedRegexGroup", "regex": "(?i)cn=.*?,(.*?),OU=testUsers", "groupIndex": 1 }]),
    );
    let input = json!({ "distinguishedName": ["CN=test10,OU=subUsers,OU=testUsers"] });
    assert_eq!(
        run(&t, &input),
        json!({ "urn:sap:cloud:scim:schemas:extension:ad:2.0:User": { "nestedPath": "OU=subUsers" } })
    );
    let whole = one(
        "$.distinguishedName[0]",
        "$.x",
        json!([{ "function": "getMatchedRegexGroup", "regex": "OU=\\w+", "groupIndex": 0 }]),
    );
    assert_eq!(run(&whole, &input), json!({ "x": "OU=subUsers" }));
}

/// The LDAP example: a variable holds the regex built by concatString, the
/// next mapping uses it through `${nestedPathRegex}`; defaultValue "" on no match.
#[test]
fn regex_from_variable_transformation_example() {
    let t = user(json!([
        { "sourcePath": "$.%ldap.attribute.user.id%[0]", "targetVariable": "entityIdSourceSystem", "correlationAttribute": true },
        { "condition": "('%ldap.attribute.user.id%' == '%ldap.attribute.dn%')", "constant": "", "targetVariable": "nestedPathRegex",
          "functions": [{ "function": "concatString", "prefix": "(?i)cn=.*?,(.*?)", "suffix": ",%ldap.user.path%" }] },
        { "condition": "('%ldap.attribute.user.id%' == '%ldap.attribute.dn%')", "sourcePath": "$.%ldap.attribute.user.id%[0]",
          "targetPath": "$['urn:sap:cloud:scim:schemas:extension:ad:2.0:User']['nestedPath']",
          "functions": [{ "function": "getMatchedRegexGroup", "regex": "${nestedPathRegex}", "groupIndex": 1 }], "defaultValue": "" }
    ]));
    let p = props(&[
        ("ldap.attribute.user.id", "dn"),
        ("ldap.attribute.dn", "dn"),
        ("ldap.user.path", "OU=testUsers,DC=corp"),
    ]);
    let ctx = Context::new(&p);
    let input = json!({ "dn": ["CN=test10,OU=subUsers,OU=testUsers,DC=corp"] });
    let Outcome::Transformed { output, variables, .. } = t.apply("user", &input, &ctx) else {
        panic!()
    };
    assert_eq!(
        output,
        json!({ "urn:sap:cloud:scim:schemas:extension:ad:2.0:User": { "nestedPath": "OU=subUsers" } })
    );
    assert_eq!(
        variables["entityIdSourceSystem"],
        "CN=test10,OU=subUsers,OU=testUsers,DC=corp"
    );
    assert_eq!(variables["nestedPathRegex"], "(?i)cn=.*?,(.*?),OU=testUsers,DC=corp");
    let other = json!({ "dn": ["CN=x,OU=elsewhere"] });
    assert_eq!(
        out(&t, &other, &p)["urn:sap:cloud:scim:schemas:extension:ad:2.0:User"]["nestedPath"],
        ""
    );
}

/// compositeId: johnsmith + e0123456 → johnsmith:e0123456.
#[test]
fn composite_id() {
    let t = one(
        "$.qualifierId",
        "$['composite_id.custom_separator.colon']",
        json!([{ "function": "compositeId", "separator": ":", "subId": "e0123456" }]),
    );
    assert_eq!(
        run(&t, &json!({ "qualifierId": "johnsmith" })),
        json!({ "composite_id.custom_separator.colon": "johnsmith:e0123456" })
    );
    let dash = one(
        "$.qualifierId",
        "$.c",
        json!([{ "function": "compositeId", "separator": "-", "subId": "$.sub" }]),
    );
    assert_eq!(
        run(&dash, &json!({ "qualifierId": "johnsmith", "sub": "e0123456" })),
        json!({ "c": "johnsmith-e0123456" })
    );
}

/// copyMapEntry / renameMapEntry on roles.
#[test]
fn copy_and_rename_map_entry() {
    let input = json!({ "user": { "role": [{ "roleName": "ROLE1" }, { "roleName": "ROLE2" }] } });
    let copy = user(
        json!([{ "sourcePath": "$.user.role", "optional": true, "targetPath": "$.groups", "preserveArrayWithSingleElement": true,
        "functions": [{ "function": "copyMapEntry", "sourceKey": "roleName", "targetKey": "value" }] }]),
    );
    assert_eq!(
        run(&copy, &input),
        json!({ "groups": [{ "roleName": "ROLE1", "value": "ROLE1" }, { "roleName": "ROLE2", "value": "ROLE2" }] })
    );
    let rename = user(
        json!([{ "sourcePath": "$.user.role", "optional": true, "targetPath": "$.groups", "preserveArrayWithSingleElement": true,
        "functions": [{ "function": "renameMapEntry", "sourceKey": "roleName", "targetKey": "value" }] }]),
    );
    assert_eq!(
        run(&rename, &input),
        json!({ "groups": [{ "value": "ROLE1" }, { "value": "ROLE2" }] })
    );
}

/// putIfAbsent / putIfPresent with `(@.type NIN ['work', 'home'])` (IAS defaults).
#[test]
fn put_if_absent_and_present() {
    let t = user(
        json!([{ "sourcePath": "$.addresses", "targetPath": "$.addresses", "preserveArrayWithSingleElement": true, "defaultValue": [], "optional": true,
        "functions": [
            { "function": "putIfAbsent", "key": "type", "defaultValue": "work" },
            { "condition": "(@.type NIN ['work', 'home'])", "function": "putIfPresent", "key": "type", "defaultValue": "work" }
        ] }]),
    );
    let input = json!({ "addresses": [{ "locality": "A" }, { "type": "home" }, { "type": "other" }] });
    assert_eq!(
        run(&t, &input),
        json!({ "addresses": [{ "locality": "A", "type": "work" }, { "type": "home" }, { "type": "work" }] })
    );
    assert_eq!(run(&t, &json!({})), json!({ "addresses": [] }));
}

/// randomPassword: length and per-set minimums hold; custom special symbols.
#[test]
fn random_password() {
    let t = user(
        json!([{ "targetPath": "$.password", "scope": "createEntity", "functions": [{ "function": "randomPassword",
        "passwordLength": 16, "minimumNumberOfLowercaseLetters": 4, "minimumNumberOfUppercaseLetters": 4,
        "minimumNumberOfDigits": 4, "minimumNumberOfSpecialSymbols": 4, "specialSymbols": ",.<>/?~`!@#" }] }]),
    );
    let p = props(&[]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let o = out_op(&t, &json!({}), &p, provisio_transform::Operation::Create);
        let pw = o["password"].as_str().unwrap_or_default().to_string();
        assert_eq!(pw.chars().count(), 16);
        assert!(pw.chars().filter(char::is_ascii_lowercase).count() >= 4);
        assert!(pw.chars().filter(char::is_ascii_uppercase).count() >= 4);
        assert!(pw.chars().filter(char::is_ascii_digit).count() >= 4);
        assert!(pw.chars().filter(|c| ",.<>/?~`!@#".contains(*c)).count() >= 4);
        assert!(
            pw.chars()
                .all(|c| c.is_ascii_alphanumeric() || ",.<>/?~`!@#".contains(c))
        );
        seen.insert(pw);
    }
    assert!(seen.len() > 15, "passwords repeat");
    // Not generated on update (createEntity scope).
    assert_eq!(out(&t, &json!({}), &p), json!({}));
}

/// manipulateDate: Java formats, +/- offsets, Date(milliseconds), currentDate.
#[test]
fn manipulate_date() {
    let t = one(
        "$.d",
        "$.d",
        json!([{ "function": "manipulateDate", "sourceDateFormat": "yyyy-MM-dd HH:mm:ss.SSS", "targetDateFormat": "MM/dd/yyyy" }]),
    );
    assert_eq!(
        run(&t, &json!({ "d": "2018-02-28 11:00:00.000" })),
        json!({ "d": "02/28/2018" })
    );
    let shift = one(
        "$.d",
        "$.d",
        json!([{ "function": "manipulateDate", "sourceDateFormat": "yyyy-MM-dd HH:mm:ss.SSS", "targetDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'", "days": "3", "hours": "+2", "months": -1 }]),
    );
    assert_eq!(
        run(&shift, &json!({ "d": "2018-02-28 11:00:00.000" })),
        json!({ "d": "2018-01-31T13:00:00Z" })
    );
    let ms = one(
        "$.date",
        "$.d",
        json!([{ "function": "manipulateDate", "sourceDateFormat": "Date(milliseconds)", "targetDateFormat": "yyyy-MM-dd HH:mm:ss.SSS" }]),
    );
    assert_eq!(
        run(&ms, &json!({ "date": "/Date(1519809649123+0000)/" })),
        json!({ "d": "2018-02-28 09:20:49.123" })
    );
    assert_eq!(
        run(&ms, &json!({ "date": 1519809649123_i64 })),
        json!({ "d": "2018-02-28 09:20:49.123" })
    );
    // currentDate with only a target format (variables page example).
    let now = user(
        json!([{ "targetPath": "$.start", "sourceVariable": "currentDate", "functions": [{ "type": "manipulateDate", "targetDateFormat": "yyyy-MM-dd" }] }]),
    );
    let p = props(&[]);
    let at = provisio_transform::chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let ctx = Context::new(&p).now(at);
    assert_eq!(
        now.apply("user", &json!({}), &ctx).output(),
        Some(&json!({ "start": "2026-09-21" }))
    );
    assert!(fails(&t, &json!({ "d": "28.02.2018" })).contains("manipulateDate"));
}

struct Links;
impl EntityIdResolver for Links {
    fn resolve(
        &self,
        entity_type: &str,
        source_id: &str,
        source_system: Option<&str>,
        _t: Option<&str>,
    ) -> Option<String> {
        match (entity_type, source_id, source_system) {
            ("user", "u1", None) => Some("T-u1".into()),
            ("user", "u2", None) => Some("T-u2".into()),
            ("group", "g1", None) => Some("T-g1".into()),
            ("user", "u1", Some("SourceSystem1")) => Some("S1-u1".into()),
            _ => None,
        }
    }
}

/// resolveEntityIds: members and manager mapped through the link store;
/// unresolvable members are dropped, the manager is missing until provisioned.
#[test]
fn resolve_entity_ids() {
    let members = user(
        json!([{ "sourcePath": "$.members[*].value", "preserveArrayWithSingleElement": true, "optional": true,
        "targetPath": "$.members[?(@.value)]", "functions": [{ "type": "resolveEntityIds" }] }]),
    );
    let p = props(&[]);
    let ctx = Context::new(&p).resolver(&Links);
    let input = json!({ "members": [{ "value": "u1" }, { "value": "nope" }, { "value": "u2" }] });
    assert_eq!(
        members.apply("user", &input, &ctx).output(),
        Some(&json!({ "members": [{ "value": "T-u1" }, { "value": "T-u2" }] }))
    );
    let manager = user(
        json!([{ "sourcePath": "$['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User']['manager']['value']",
        "targetPath": "$['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User']['manager']['value']", "optional": true,
        "functions": [{ "function": "resolveEntityIds" }] }]),
    );
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    assert_eq!(
        manager
            .apply("user", &json!({ ent: { "manager": { "value": "u2" } } }), &ctx)
            .output(),
        Some(&json!({ ent: { "manager": { "value": "T-u2" } } }))
    );
    assert_eq!(
        manager
            .apply("user", &json!({ ent: { "manager": { "value": "zz" } } }), &ctx)
            .output(),
        Some(&json!({}))
    );
    let sys = one(
        "$.m",
        "$.m",
        json!([{ "sourceSystemName": "SourceSystem1", "function": "resolveEntityIds" }]),
    );
    assert_eq!(
        sys.apply("user", &json!({ "m": "u1" }), &ctx).output(),
        Some(&json!({ "m": "S1-u1" }))
    );
    // AD default: conditional resolution per member type, on elements.
    let ad = user(
        json!([{ "sourcePath": "$.members[*]", "targetVariable": "membersVariable", "preserveArrayWithSingleElement": true, "optional": true,
        "functions": [
            { "condition": "@.type != 'Group'", "entityType": "user", "applyOnElements": true, "type": "resolveEntityIds" },
            { "condition": "@.type == 'Group'", "entityType": "group", "applyOnElements": true, "type": "resolveEntityIds" }
        ] }, { "sourceVariable": "membersVariable", "targetPath": "$.member", "variablePath": "$[*].value", "preserveArrayWithSingleElement": true }]),
    );
    let g = json!({ "members": [{ "value": "u1", "type": "User" }, { "value": "g1", "type": "Group" }] });
    assert_eq!(
        ad.apply("group", &g, &ctx),
        provisio_transform::Outcome::Skipped {
            reason: "The entity type group is not defined in the transformation.".into(),
            trace: vec![]
        }
    );
    assert_eq!(
        ad.apply("user", &g, &ctx).output(),
        Some(&json!({ "member": ["T-u1", "T-g1"] }))
    );
}

/// convertCountryCode: United States → US / USA / 840 / United States.
#[test]
fn convert_country_code() {
    for (format, want) in [
        ("alpha2", "US"),
        ("alpha3", "USA"),
        ("numeric", "840"),
        ("fullName", "United States"),
    ] {
        let t = user(
            json!([{ "sourcePath": "$.addresses", "preserveArrayWithSingleElement": true, "optional": true, "targetPath": "$.addresses",
            "functions": [{ "type": "convertCountryCode", "outputFormat": format, "inputAttributes": ["country"], "outputAttribute": "country" }] }]),
        );
        let o = run(
            &t,
            &json!({ "addresses": [{ "country": "United States" }, { "country": "deu" }, { "country": "Atlantis" }] }),
        );
        assert_eq!(o["addresses"][0]["country"], want, "{format}");
        assert_eq!(o["addresses"][2]["country"], "Atlantis");
    }
    let t = one(
        "$.c",
        "$.c",
        json!([{ "type": "convertCountryCode", "outputFormat": "fullName", "inputAttributes": "country", "outputAttribute": "country" }]),
    );
    assert_eq!(run(&t, &json!({ "c": "KOR" })), json!({ "c": "Korea, South" }));
    assert_eq!(run(&t, &json!({ "c": "276" })), json!({ "c": "Germany" }));
}

/// convertCountryRegion: US-AL or AL (+country) → US-AL / Alabama.
#[test]
fn convert_country_region() {
    for (format, want) in [("alpha2", "US-AL"), ("fullName", "Alabama")] {
        let t = user(
            json!([{ "condition": "($.addresses[*].region EMPTY false) && ($.addresses[*].country EMPTY false)",
            "sourcePath": "$.addresses", "preserveArrayWithSingleElement": true, "optional": true, "targetPath": "$.addresses",
            "functions": [{ "type": "convertCountryRegion", "outputFormat": format, "inputAttributes": ["region", "country"], "outputAttribute": "region" }] }]),
        );
        let o = run(
            &t,
            &json!({ "addresses": [{ "region": "US-AL", "country": "US" }, { "region": "AL", "country": "United States" }, { "region": "BW", "country": "DE" }] }),
        );
        assert_eq!(o["addresses"][0]["region"], want);
        assert_eq!(o["addresses"][1]["region"], want);
        assert_eq!(
            o["addresses"][2]["region"],
            if format == "alpha2" {
                "DE-BW"
            } else {
                "Baden-Württemberg"
            }
        );
    }
}

/// convertLocaleCode: bcp47 / iso639, unknown languages become English.
#[test]
fn convert_locale_code() {
    let bcp = one(
        "$.locale",
        "$.locale",
        json!([{ "type": "convertLocaleCode", "outputFormat": "bcp47" }]),
    );
    let iso = one(
        "$.locale",
        "$.locale",
        json!([{ "type": "convertLocaleCode", "outputFormat": "iso639" }]),
    );
    for (input, b, i) in [
        ("en_US", "en-US", "EN"),
        ("DE", "de-DE", "DE"),
        ("pt_BR", "pt-BR", "pt_BR"),
        ("EO", "en-US", "EN"),
        ("iw", "he-IL", "HE"),
        ("fr-CA", "fr-CA", "fr_CA"),
    ] {
        assert_eq!(run(&bcp, &json!({ "locale": input }))["locale"], b, "{input}");
        assert_eq!(run(&iso, &json!({ "locale": input }))["locale"], i, "{input}");
    }
}

/// convertTimezoneCode: America/Phoenix → MSTNO; AST → America/Halifax;
/// unknown → Europe/Berlin / CET; first table row is the default region.
#[test]
fn convert_timezone_code() {
    let sap = one(
        "$.timezone",
        "$.timezone",
        json!([{ "type": "convertTimezoneCode", "outputFormat": "sap" }]),
    );
    let iana = one(
        "$.timezone",
        "$.timezone",
        json!([{ "type": "convertTimezoneCode", "outputFormat": "iana" }]),
    );
    assert_eq!(
        run(&sap, &json!({ "timezone": "America/Phoenix" })),
        json!({ "timezone": "MSTNO" })
    );
    assert_eq!(
        run(&iana, &json!({ "timezone": "AST" })),
        json!({ "timezone": "America/Halifax" })
    );
    assert_eq!(
        run(&iana, &json!({ "timezone": "Europe/Paris" })),
        json!({ "timezone": "Europe/Berlin" })
    );
    assert_eq!(
        run(&iana, &json!({ "timezone": "Mars/Olympus" })),
        json!({ "timezone": "Europe/Berlin" })
    );
    assert_eq!(
        run(&sap, &json!({ "timezone": "Mars/Olympus" })),
        json!({ "timezone": "CET" })
    );
    assert_eq!(run(&sap, &json!({})), json!({ "timezone": "CET" }));
    assert_eq!(
        run(&sap, &json!({ "timezone": "Asia/Kolkata" })),
        json!({ "timezone": "INDIA" })
    );
}

/// Functions chain: the output of one is the input of the next.
#[test]
fn chaining() {
    let t = one(
        "$.n",
        "$.n",
        json!([
            { "function": "toLowerCaseString" },
            { "function": "replaceAllString", "regex": "\\s+", "replacement": "." },
            { "function": "concatString", "suffix": "@corp.example" }
        ]),
    );
    assert_eq!(
        run(&t, &json!({ "n": "John  Smith" })),
        json!({ "n": "john.smith@corp.example" })
    );
}
