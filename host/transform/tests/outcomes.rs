//! Outcomes and the trace: transformed / skipped (with SAP's reason text) /
//! failed (mapping index and path), and a per-mapping trace on request.

mod common;

use common::*;
use provisio_transform::{Context, Operation, Outcome, TraceAction};
use serde_json::json;

#[test]
fn skipped_reason_is_verbatim() {
    let t = parse(
        json!({ "user": { "condition": "($.emails EMPTY false) && isValidEmail($.emails[0].value)", "mappings": [] } }),
    );
    let p = props(&[]);
    assert_eq!(
        t.apply("user", &json!({}), &Context::new(&p)),
        Outcome::Skipped {
            reason: "The condition: (($.emails EMPTY false) && isValidEmail($.emails[0].value)) is not fulfilled."
                .into(),
            trace: vec![]
        }
    );
    assert!(matches!(
        t.apply("role", &json!({}), &Context::new(&p)),
        Outcome::Skipped { .. }
    ));
}

#[test]
fn function_failure_reports_mapping_and_path() {
    let t = user(json!([
        { "sourcePath": "$.a", "targetPath": "$.a" },
        { "sourcePath": "$.d", "targetPath": "$.d", "functions": [{ "function": "manipulateDate", "sourceDateFormat": "yyyy-MM-dd" }] }
    ]));
    match t.apply("user", &json!({ "a": 1, "d": "yesterday" }), &Context::new(&props(&[]))) {
        Outcome::Failed {
            reason,
            mapping_index,
            path,
            ..
        } => {
            assert_eq!(mapping_index, Some(1));
            assert_eq!(path.as_deref(), Some("$.d"));
            assert!(reason.starts_with("Function manipulateDate failed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trace_records_every_mapping() {
    let t = parse(json!({ "user": { "condition": "$.userName EMPTY false", "mappings": [
        { "sourcePath": "$.userName", "targetPath": "$.userName" },
        { "scope": "createEntity", "constant": "x", "targetPath": "$.c" },
        { "condition": "$.nope EMPTY false", "constant": 1, "targetPath": "$.n" },
        { "sourcePath": "$.title", "targetPath": "$.title", "optional": true },
        { "sourcePath": "$.type", "targetPath": "$.type", "optional": true, "defaultValue": "employee" },
        { "ignore": true, "constant": 1, "targetPath": "$.i" },
        { "type": "remove", "targetPath": "$.userName" },
        { "targetPath": "$.pw", "functions": [{ "function": "randomPassword", "passwordLength": 4, "minimumNumberOfLowercaseLetters": 4,
          "minimumNumberOfUppercaseLetters": 0, "minimumNumberOfDigits": 0, "minimumNumberOfSpecialSymbols": 0 }] }
    ]}}));
    let p = props(&[]);
    let o = t.apply(
        "user",
        &json!({ "userName": "u" }),
        &Context::new(&p).operation(Operation::Update).trace(true),
    );
    let actions: Vec<_> = o.trace().iter().map(|s| (s.mapping, s.action)).collect();
    assert_eq!(
        actions,
        vec![
            (None, TraceAction::EntityAccepted),
            (Some(0), TraceAction::Applied),
            (Some(1), TraceAction::SkippedByScope),
            (Some(2), TraceAction::SkippedByCondition),
            (Some(3), TraceAction::NoValue),
            (Some(4), TraceAction::Defaulted),
            (Some(5), TraceAction::Ignored),
            (Some(6), TraceAction::Removed),
            (Some(7), TraceAction::Applied),
        ]
    );
    assert_eq!(o.trace()[1].value, Some(json!("u")));
    assert_eq!(o.trace()[8].value, Some(json!("********")), "passwords are masked");
    let text = serde_json::to_string(&o).unwrap_or_default();
    assert!(
        text.contains("\"outcome\":\"transformed\"")
            && text.contains("\"skippedByScope\"")
            && text.contains("\"targetPath\":\"$.c\""),
        "{text}"
    );
    // No trace unless asked.
    assert!(
        t.apply("user", &json!({ "userName": "u" }), &Context::new(&p))
            .trace()
            .is_empty()
    );
}

#[test]
fn failed_trace_ends_with_failure() {
    let t = user(json!([{ "sourcePath": "$.userName", "targetPath": "$.userName" }]));
    let p = props(&[]);
    let o = t.apply("user", &json!({}), &Context::new(&p).trace(true));
    assert_eq!(o.trace().last().map(|s| s.action), Some(TraceAction::Failed));
}

/// A parsed transformation is shared across threads by the job engine.
#[test]
fn transformation_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<provisio_transform::Transformation>();
    check::<provisio_transform::Outcome>();
    check::<Context<'static>>();
    let t = std::sync::Arc::new(user(json!([{ "constant": "%p%-${v}", "targetPath": "$.x" }])));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || {
                let p = props(&[("p", &i.to_string())]);
                let o = t.apply("user", &json!({}), &Context::new(&p).variable("v", json!(i)));
                o.output().map(|o| o["x"].clone())
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().ok().flatten(), Some(json!(format!("{i}-{i}"))));
    }
}
