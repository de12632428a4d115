//! Save-time validation: every error names its location (entity type,
//! mapping index, key); nothing invalid is accepted.

use provisio_transform::Transformation;
use serde_json::{Value, json};

fn err(doc: Value) -> String {
    match Transformation::parse(&doc) {
        Ok(_) => panic!("accepted invalid document {doc}"),
        Err(e) => e.to_string(),
    }
}

fn mappings(m: Value) -> Value {
    json!({ "user": { "mappings": m } })
}

#[test]
fn unknown_function_names_location() {
    let e = err(mappings(
        json!([{}, {}, {}, { "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "fooBar" }] }]),
    ));
    assert!(e.starts_with("user.mappings[0]"), "{e}");
    let e = err(mappings(
        json!([{ "sourcePath": "$.a", "targetPath": "$.a" }, { "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "fooBar" }] }]),
    ));
    assert_eq!(e, "user.mappings[1].functions[0]: unknown function \"fooBar\"");
}

#[test]
fn unknown_keys() {
    assert_eq!(
        err(json!({ "user": { "mapping": [] } })),
        "user: unknown key \"mapping\""
    );
    assert_eq!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "targetPath": "$.a", "optinal": true }])
        )),
        "user.mappings[0]: unknown key \"optinal\""
    );
    assert_eq!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "concatString", "sufix": "x" }] }])
        )),
        "user.mappings[0].functions[0]: unknown parameter \"sufix\""
    );
}

#[test]
fn bad_paths_conditions_regexes() {
    let e = err(mappings(json!([{ "sourcePath": "$.a[", "targetPath": "$.a" }])));
    assert!(e.starts_with("user.mappings[0].sourcePath: invalid JSONPath"), "{e}");
    let e = err(mappings(json!([{ "sourcePath": "$.a ]", "targetPath": "$.a" }])));
    assert!(e.starts_with("user.mappings[0].sourcePath"), "{e}");
    // Jayway reads a path without `$` relative to the root (SAP's Entra ID default does).
    let relative = mappings(json!([{ "sourcePath": "name.givenName", "targetPath": "$.a" }]));
    assert!(Transformation::parse(&relative).is_ok());
    let e = err(mappings(json!([{ "sourcePath": "$.a", "targetPath": "$..a" }])));
    assert!(e.starts_with("user.mappings[0].targetPath"), "{e}");
    let e = err(json!({ "group": { "condition": "$.a ==", "mappings": [] } }));
    assert!(e.starts_with("group.condition: invalid condition"), "{e}");
    let e = err(mappings(
        json!([{ "condition": "$.a =~ /(/", "constant": 1, "targetPath": "$.a" }]),
    ));
    assert!(e.starts_with("user.mappings[0].condition"), "{e}");
    let e = err(mappings(
        json!([{ "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "replaceAllString", "regex": "(", "replacement": "" }] }]),
    ));
    assert!(
        e.starts_with("user.mappings[0].functions[0].regex: invalid regex"),
        "{e}"
    );
}

#[test]
fn missing_and_bad_parameters() {
    let e = err(mappings(
        json!([{ "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "substring" }] }]),
    ));
    assert_eq!(e, "user.mappings[0].functions[0]: missing parameter \"beginIndex\"");
    let e = err(mappings(
        json!([{ "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "function": "encode", "algorithm": "rot13" }] }]),
    ));
    assert!(e.starts_with("user.mappings[0].functions[0].algorithm"), "{e}");
    let e = err(mappings(
        json!([{ "targetPath": "$.p", "functions": [{ "function": "randomPassword", "passwordLength": 8,
        "minimumNumberOfLowercaseLetters": 4, "minimumNumberOfUppercaseLetters": 4, "minimumNumberOfDigits": 1, "minimumNumberOfSpecialSymbols": 0 }] }]),
    ));
    assert!(e.contains("exceeds passwordLength"), "{e}");
    let e = err(mappings(
        json!([{ "targetPath": "$.p", "functions": [{ "function": "randomPassword", "passwordLength": 8,
        "minimumNumberOfLowercaseLetters": 1, "minimumNumberOfUppercaseLetters": 1, "minimumNumberOfDigits": 1, "minimumNumberOfSpecialSymbols": 0, "specialSymbols": "#" }] }]),
    ));
    assert!(e.contains("minimumNumberOfSpecialSymbols"), "{e}");
    let e = err(mappings(
        json!([{ "sourcePath": "$.a", "targetPath": "$.a", "functions": [{ "type": "convertTimezoneCode", "outputFormat": "windows" }] }]),
    ));
    assert!(e.starts_with("user.mappings[0].functions[0].outputFormat"), "{e}");
}

#[test]
fn structural_errors() {
    assert!(err(json!([])).starts_with("$:"));
    assert_eq!(
        err(json!({ "user": 5 })),
        "user: an entity transformation must be a JSON object"
    );
    assert!(err(mappings(json!([{ "targetPath": "$.a" }]))).contains("needs a sourcePath"));
    assert!(err(mappings(json!([{ "sourcePath": "$.a" }]))).contains("needs a targetPath or a targetVariable"));
    assert!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "constant": 1, "targetPath": "$.a" }])
        ))
        .contains("only one of")
    );
    assert!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "targetPath": "$.a", "scope": "updateEntity" }])
        ))
        .starts_with("user.mappings[0].scope")
    );
    assert!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "targetPath": "$.a", "type": "move" }])
        ))
        .starts_with("user.mappings[0].type")
    );
    assert!(err(mappings(json!([{ "type": "rename", "targetPath": "$.a" }]))).starts_with("user.mappings[0].constant"));
    assert!(
        err(mappings(
            json!([{ "type": "valueMapping", "sourcePaths": ["$.a", "$.b"], "targetPath": "$.t",
        "valueMappings": [{ "key": ["x"], "mappedValue": 1 }] }])
        ))
        .starts_with("user.mappings[0].valueMappings[0].key")
    );
    assert!(
        err(json!({ "user": { "skipOperations": ["insert"], "mappings": [] } })).starts_with("user.skipOperations[0]")
    );
    assert!(
        err(mappings(
            json!([{ "sourcePath": "$.a", "targetPath": "$.a", "optional": "maybe" }])
        ))
        .starts_with("user.mappings[0].optional")
    );
    assert!(Transformation::from_str("{ not json").is_err());
}

#[test]
fn valid_documents_are_accepted() {
    let ok = json!({ "user": { "condition": "isValidEmail($.emails[0].value)", "mappings": [
        { "sourcePath": "$.%prop%", "targetPath": "$.a", "functions": [{ "function": "getMatchedRegexGroup", "regex": "${re}", "groupIndex": 1 }] },
        { "constant": "%a%[]", "targetVariable": "v" },
        { "targetPath": "$.p", "functions": [{ "function": "randomPassword", "passwordLength": 8, "minimumNumberOfLowercaseLetters": 2,
          "minimumNumberOfUppercaseLetters": 2, "minimumNumberOfDigits": 2, "minimumNumberOfSpecialSymbols": 2 }] }
    ]}, "role": { "ignore": true } });
    assert!(Transformation::parse(&ok).is_ok());
    assert!(Transformation::from_str("{}").is_ok());
}
