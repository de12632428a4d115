//! The source side of a run: its reader, and the read transformation that turns a native entity into the
//! intermediate form every target starts from.

use super::*;

/// The source side of a run.
pub struct SourceReader {
    /// The source system.
    pub system: System,
    /// Its connector.
    pub plugin: Arc<LoadedPlugin>,
    /// Where its calls go.
    pub call: CallTarget,
    /// Its read transformation.
    pub transformation: Transformation,
    /// Its job settings.
    pub settings: SourceSettings,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The stop request and run budget its retries answer to (a job run's; else never stopped).
    pub retry_scope: RetryScope,
    /// What the read transformation's output depends on besides the entity, for the memo (`None`: not
    /// memoised; see [`crate::provisioning::memo`]).
    pub memo_fingerprint: Option<crate::provisioning::memo::Digest>,
}

impl SourceReader {
    pub(super) async fn read(&self, request: &PageRequest) -> Result<Page, CallError> {
        with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
            self.runtime.read(&self.plugin, &self.call, request)
        })
        .await
        .0
    }

    /// Whether the source delivers a kind.
    pub fn handles(&self, kind: EntityKind) -> bool {
        self.plugin.descriptor.entity_kinds.contains(&kind)
            && self
                .transformation
                .entity(kind.as_str())
                .is_some_and(|e| !e.is_ignored())
    }

    /// Applies the read transformation: `Ok((source id, intermediate))`, `Err(None)` when skipped (the entity
    /// is out of scope), `Err(Some(reason))` when it failed.
    pub fn transform(&self, kind: EntityKind, native: &Value) -> Result<(String, Value), (String, Option<String>)> {
        let ctx = Context::new(&self.system.spec.properties);
        match self.transformation.apply(kind.as_str(), native, &ctx) {
            Outcome::Transformed { output, variables, .. } => {
                let id = variables
                    .get("entityIdSourceSystem")
                    .and_then(scalar)
                    .or_else(|| output.get("id").and_then(scalar));
                match id {
                    Some(id) => Ok((id, output)),
                    None => Err((
                        "the read transformation yields no entityIdSourceSystem (and the entity has no id)".into(),
                        None,
                    )),
                }
            }
            Outcome::Skipped { reason, .. } => Err((reason, Some("skipped".into()))),
            Outcome::Failed { reason, .. } => Err((reason, None)),
        }
    }
}

pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
