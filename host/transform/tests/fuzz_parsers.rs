//! Property tests: the path, condition and document parsers (and applying
//! whatever parses) never panic on arbitrary input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use provisio_transform::{Context, Operation, Transformation, check_condition, check_path};
use serde_json::{Value, json};

/// Strings biased toward the grammar's characters.
fn syntaxy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("$".to_string()),
            Just("@".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("[*]".to_string()),
            Just("[?(".to_string()),
            Just(")".to_string()),
            Just("(".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("==".to_string()),
            Just("!=".to_string()),
            Just("=~".to_string()),
            Just("/".to_string()),
            Just("&&".to_string()),
            Just("||".to_string()),
            Just(" EMPTY ".to_string()),
            Just(" nin ".to_string()),
            Just(" contains ".to_string()),
            Just("true".to_string()),
            Just(".length()".to_string()),
            Just("isValidEmail(".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("-1".to_string()),
            Just("%p%".to_string()),
            Just("${v}".to_string()),
            Just("emails".to_string()),
            Just("0".to_string()),
            "[a-z]{1,3}".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A few published transformations exercising most features, parsed once.
fn published() -> &'static [Transformation] {
    static DOCS: std::sync::OnceLock<Vec<Transformation>> = std::sync::OnceLock::new();
    DOCS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let corpus: Value = std::fs::read_to_string(format!("{dir}sap-published-transformations.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut docs: Vec<Value> = [
            "identity-authentication-f217bd3-1",
            "sap-jam-collaboration-c5af5f0-0",
            "sap-btp-xs-advanced-uaa-cloud-foundry-ecddce6-0",
            "sap-btp-xs-advanced-uaa-cloud-foundry-fef74f6-1",
        ]
        .iter()
        .filter_map(|k| corpus.get(*k).cloned())
        .collect();
        for f in ["xsuaa-proxy-read.json", "xsuaa-proxy-write.json"] {
            if let Some(v) = std::fs::read_to_string(format!("{dir}{f}"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                docs.push(v);
            }
        }
        assert_eq!(docs.len(), 6);
        docs.iter().filter_map(|d| Transformation::parse(d).ok()).collect()
    })
}

fn entity() -> Value {
    json!({ "userName": "u", "emails": [{ "value": "a@b.co", "primary": true }, { "value": "x" }],
            "name": { "familyName": "F" }, "groups": [{ "display": "ABC" }], "n": 3 })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn path_parser_never_panics(s in syntaxy()) {
        let _ = check_path(&s);
    }

    #[test]
    fn condition_parser_never_panics(s in syntaxy()) {
        let _ = check_condition(&s);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = check_path(&s);
        let _ = check_condition(&s);
        let _ = Transformation::from_str(&s);
    }

    /// Whatever parses also evaluates without panicking.
    #[test]
    fn parsed_conditions_and_paths_apply(cond in syntaxy(), src in syntaxy(), tgt in syntaxy()) {
        let doc = json!({ "user": { "condition": cond, "mappings": [
            { "sourcePath": src, "targetPath": tgt, "optional": true },
            { "sourcePath": "$.userName", "targetPath": tgt.clone(), "optional": true }
        ]}});
        if let Ok(t) = Transformation::parse(&doc) {
            let props = BTreeMap::from([("p".to_string(), "x".to_string())]);
            let _ = t.apply("user", &entity(), &Context::new(&props).operation(Operation::Create).trace(true));
        }
        let doc = json!({ "user": { "mappings": [{ "sourcePath": "$.n", "targetPath": "$.o", "condition": src,
            "functions": [{ "function": "replaceAllString", "regex": tgt, "replacement": cond }] }]}});
        if let Ok(t) = Transformation::parse(&doc) {
            let props = BTreeMap::new();
            let _ = t.apply("user", &entity(), &Context::new(&props));
        }
    }

    /// Arbitrary entities never panic the published transformations.
    #[test]
    fn arbitrary_entities_apply(e in arb_json()) {
        let props = BTreeMap::from([("xsuaa.origin".to_string(), "o".to_string())]);
        for t in published() {
            for op in [Operation::Create, Operation::Update, Operation::Patch, Operation::Delete] {
                let ctx = Context::new(&props).operation(op).trace(true);
                let _ = t.apply("user", &e, &ctx);
                let _ = t.apply("group", &e, &ctx);
            }
        }
    }

    /// Random JSON documents never panic the validator.
    #[test]
    fn random_documents(v in arb_json()) {
        let _ = Transformation::parse(&v);
        let _ = Transformation::parse(&json!({ "user": v.clone() }));
        let _ = Transformation::parse(&json!({ "user": { "mappings": [v] } }));
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("$.a".to_string()),
            Just("sourcePath".to_string()),
            Just("concatString".to_string()),
            Just("function".to_string()),
            "[a-zA-Z$.]{0,6}".prop_map(|s| s)
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("sourcePath".to_string()),
                    Just("targetPath".to_string()),
                    Just("constant".to_string()),
                    Just("functions".to_string()),
                    Just("function".to_string()),
                    Just("mappings".to_string()),
                    Just("condition".to_string()),
                    Just("type".to_string()),
                    Just("regex".to_string()),
                    Just("emails".to_string()),
                    Just("members".to_string()),
                    Just("value".to_string()),
                    Just("userName".to_string()),
                    Just("primary".to_string()),
                    Just("displayName".to_string()),
                    Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
                    "[a-z]{1,8}".prop_map(|s| s)
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Hostile nesting and size are rejected, not a stack overflow.
#[test]
fn deep_and_huge_inputs_are_rejected() {
    let n = 20_000;
    assert!(check_condition(&format!("{}$.a{}", "(".repeat(n), ")".repeat(n))).is_err());
    assert!(check_condition(&format!("{}true", "!".repeat(n))).is_err());
    assert!(check_condition(&vec!["$.a == 1"; n].join(" && ")).is_err());
    assert!(check_condition(&format!("$.a in {}{}", "[".repeat(n), "]".repeat(n))).is_err());
    assert!(check_path(&format!("${}", ".a".repeat(n))).is_err());
    assert!(check_path(&format!("$.a{}{}", "[?(@.a".repeat(n), ")]".repeat(n))).is_err());
    // Realistic sizes still parse.
    assert!(check_condition(&vec!["($.a == 1 || $.b EMPTY false)"; 50].join(" && ")).is_ok());
    assert!(check_path(&format!("${}", ".a".repeat(200))).is_ok());
}
