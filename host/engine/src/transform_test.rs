//! Running a transformation on a sample entity: `provisio transform test` and
//! `POST /api/v1/transformations/test` share this.

use std::collections::BTreeMap;

use provisio_transform::{Context, Operation, Outcome, Transformation};
use serde_json::Value;

/// One test run.
pub struct TransformTest {
    /// The transformation document.
    pub transformation: Value,
    /// The sample entity.
    pub entity: Value,
    /// `user`, `group`, …
    pub entity_type: String,
    /// System properties for `%placeholders%`.
    pub properties: BTreeMap<String, String>,
    /// `create`, `update`, `patch` or `delete`; update when absent.
    pub operation: Option<String>,
    /// Whether to record the per-mapping trace.
    pub trace: bool,
}

impl TransformTest {
    /// Validates the transformation and applies it. `Err` is an invalid request (bad document or
    /// operation); a skipped or failed entity is an `Ok` outcome.
    pub fn run(&self) -> Result<Outcome, String> {
        let transformation =
            Transformation::parse(&self.transformation).map_err(|e| format!("invalid transformation: {e}"))?;
        let operation = match self.operation.as_deref() {
            None => Operation::Update,
            Some(op) => Operation::parse(op)
                .ok_or_else(|| format!("unknown operation {op:?} (use create, update, patch or delete)"))?,
        };
        let context = Context::new(&self.properties).operation(operation).trace(self.trace);
        Ok(transformation.apply(&self.entity_type, &self.entity, &context))
    }
}
