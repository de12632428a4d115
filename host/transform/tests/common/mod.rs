//! Shared helpers for the golden tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use provisio_transform::{Context, Operation, Outcome, Transformation};
use serde_json::Value;

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn parse(doc: Value) -> Transformation {
    Transformation::parse(&doc).unwrap_or_else(|e| panic!("invalid transformation: {e}"))
}

/// Wraps mappings into a `user` transformation.
pub fn user(mappings: Value) -> Transformation {
    parse(serde_json::json!({ "user": { "mappings": mappings } }))
}

/// Applies as `user` with an Update and returns the output, panicking otherwise.
pub fn out(t: &Transformation, input: &Value, props: &BTreeMap<String, String>) -> Value {
    out_op(t, input, props, Operation::Update)
}

pub fn out_op(t: &Transformation, input: &Value, props: &BTreeMap<String, String>, op: Operation) -> Value {
    match t.apply("user", input, &Context::new(props).operation(op)) {
        Outcome::Transformed { output, .. } => output,
        other => panic!("expected Transformed, got {other:?}"),
    }
}

pub fn run(t: &Transformation, input: &Value) -> Value {
    out(t, input, &BTreeMap::new())
}
