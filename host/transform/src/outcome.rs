//! What applying a transformation to one entity produced.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The result for one entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Outcome {
    /// The entity was transformed.
    Transformed {
        /// The output JSON.
        output: Value,
        /// All variables after the run: the initial ones plus those set by
        /// `targetVariable` (e.g. `entityIdSourceSystem`).
        variables: BTreeMap<String, Value>,
        /// Per-mapping trace (empty unless requested).
        trace: Vec<TraceStep>,
    },
    /// The entity is not processed: its type is ignored or absent, or the
    /// entity-level condition is false.
    Skipped {
        /// E.g. `The condition: ($.emails EMPTY false) is not fulfilled.`
        reason: String,
        /// Trace up to the decision.
        trace: Vec<TraceStep>,
    },
    /// A mandatory value was missing or a function failed.
    Failed {
        /// What went wrong.
        reason: String,
        /// Index of the failing mapping.
        mapping_index: Option<usize>,
        /// The path involved (source path, variable or target path).
        path: Option<String>,
        /// Trace up to the failure.
        trace: Vec<TraceStep>,
    },
}

impl Outcome {
    /// The trace, whatever the outcome.
    pub fn trace(&self) -> &[TraceStep] {
        match self {
            Outcome::Transformed { trace, .. } | Outcome::Skipped { trace, .. } | Outcome::Failed { trace, .. } => {
                trace
            }
        }
    }

    /// The output JSON when transformed.
    pub fn output(&self) -> Option<&Value> {
        match self {
            Outcome::Transformed { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// What happened to one mapping (or to the entity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TraceAction {
    /// The entity-level condition held (or was not evaluated for a delete).
    EntityAccepted,
    /// The entity was skipped (see the outcome's reason).
    EntitySkipped,
    /// A value was written.
    Applied,
    /// The source had no value; `defaultValue` was written.
    Defaulted,
    /// The source had no value and the mapping is optional: nothing written.
    NoValue,
    /// A `remove` mapping removed something (or found nothing to remove).
    Removed,
    /// A `rename` mapping renamed the attribute.
    Renamed,
    /// `ignore: true`.
    Ignored,
    /// The mapping's `scope` does not match the operation.
    SkippedByScope,
    /// The mapping's condition is false.
    SkippedByCondition,
    /// The mapping failed the entity.
    Failed,
}

/// One trace entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceStep {
    /// Mapping index; `None` for entity-level steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<usize>,
    /// What happened.
    pub action: TraceAction,
    /// The mapping's target path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// The mapping's target variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_variable: Option<String>,
    /// The value written (`"********"` for generated passwords).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Extra explanation (condition text, scope, failure reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
