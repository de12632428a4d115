//! The SAP Identity Provisioning transformation language: pure JSON in,
//! JSON out.
//!
//! A transformation document has one key per entity type (`user`, `group`,
//! …), each with ordered `mappings` and optional `condition`, `ignore`,
//! `skipOperations` and `scimEntityEndpoint`. [`Transformation::parse`]
//! validates it once (unknown keys, JSONPath, regexes, functions and their
//! parameters, with the location of any error); [`Transformation::apply`]
//! runs it on an entity any number of times, without I/O.
//!
//! ```
//! use std::collections::BTreeMap;
//! use provisio_transform::{Context, Operation, Outcome, Transformation};
//! use serde_json::json;
//!
//! let t = Transformation::parse(&json!({
//!     "user": { "mappings": [
//!         { "sourcePath": "$.userName", "targetPath": "$.userName" },
//!         { "constant": "%xsuaa.origin%", "targetPath": "$.origin" }
//!     ]}
//! })).unwrap();
//! let props = BTreeMap::from([("xsuaa.origin".to_string(), "sap.custom".to_string())]);
//! let ctx = Context::new(&props).operation(Operation::Create);
//! let Outcome::Transformed { output, .. } = t.apply("user", &json!({"userName": "jdoe"}), &ctx) else {
//!     panic!("not transformed")
//! };
//! assert_eq!(output, json!({"userName": "jdoe", "origin": "sap.custom"}));
//! ```
#![deny(missing_docs)]

mod apply;
mod condition;
mod context;
mod env;
mod error;
mod functions;
mod outcome;
mod path;
mod syntax;
mod template;
mod transformation;

pub use chrono;
pub use context::{Context, EntityIdResolver, Operation};
pub use error::ValidationError;
pub use outcome::{Outcome, TraceAction, TraceStep};
pub use syntax::SyntaxError;
pub use transformation::{EntityTransformation, Transformation};

/// Every mapping function name the engine implements.
pub const FUNCTION_NAMES: &[&str] = functions::NAMES;

/// Checks a JSONPath expression (fuzzing, editors): `Ok` if it parses.
pub fn check_path(text: &str) -> Result<(), SyntaxError> {
    path::Path::parse(text).map(|_| ())
}

/// Checks a condition expression (fuzzing, editors): `Ok` if it parses.
pub fn check_condition(text: &str) -> Result<(), SyntaxError> {
    condition::parse(text).map(|_| ())
}
