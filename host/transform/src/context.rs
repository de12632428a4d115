//! What the caller tells the engine about one application: system
//! properties, the operation, known variables, the link-store lookup, the
//! clock and whether to trace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The provisioning operation the entity is transformed for; it selects
/// mappings by `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// Entity is being created: unscoped and `createEntity` mappings run.
    Create,
    /// Entity is being updated (PUT): only unscoped mappings run.
    #[default]
    Update,
    /// SCIM PATCH through a proxy: only `patchEntity` mappings run.
    Patch,
    /// Entity deleted (or filtered out) at the source: only `deleteEntity`
    /// mappings run and the entity-level condition is not evaluated.
    Delete,
}

impl Operation {
    /// The `skipOperations` word for this operation (`patch` counts as `update`).
    pub fn skip_name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update | Operation::Patch => "update",
            Operation::Delete => "delete",
        }
    }

    /// Parses `create`, `update`, `patch` or `delete` (any case).
    pub fn parse(s: &str) -> Option<Operation> {
        match s.to_ascii_lowercase().as_str() {
            "create" => Some(Operation::Create),
            "update" => Some(Operation::Update),
            "patch" => Some(Operation::Patch),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// Looks up the target-system ID of an entity already provisioned, for
/// `resolveEntityIds`. Backed by the link store in production.
pub trait EntityIdResolver: Send + Sync {
    /// The target ID for `source_id` of `entity_type` (`user`/`group`), or
    /// `None` when that entity was not (yet) provisioned. `source_system` and
    /// `target_system` are the function's optional `sourceSystemName` and
    /// `targetSystemName`.
    fn resolve(
        &self,
        entity_type: &str,
        source_id: &str,
        source_system: Option<&str>,
        target_system: Option<&str>,
    ) -> Option<String>;
}

/// Everything one [`crate::Transformation::apply`] call needs besides the
/// entity. Build it with [`Context::new`] and the builder methods.
#[derive(Clone)]
pub struct Context<'a> {
    pub(crate) properties: &'a BTreeMap<String, String>,
    pub(crate) operation: Operation,
    pub(crate) variables: BTreeMap<String, Value>,
    pub(crate) resolver: Option<&'a dyn EntityIdResolver>,
    pub(crate) trace: bool,
    pub(crate) now: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("properties", &self.properties)
            .field("operation", &self.operation)
            .field("variables", &self.variables)
            .field("resolver", &self.resolver.is_some())
            .field("trace", &self.trace)
            .field("now", &self.now)
            .finish()
    }
}

impl<'a> Context<'a> {
    /// A context with the system's properties, operation `Update`, no
    /// variables, no resolver, no trace and the real clock.
    pub fn new(properties: &'a BTreeMap<String, String>) -> Self {
        Context {
            properties,
            operation: Operation::Update,
            variables: BTreeMap::new(),
            resolver: None,
            trace: false,
            now: None,
        }
    }

    /// Sets the operation.
    pub fn operation(mut self, operation: Operation) -> Self {
        self.operation = operation;
        self
    }

    /// Sets an initial variable, e.g. `entityIdTargetSystem` from the link
    /// store or `entityBaseLocation` for a proxy read.
    pub fn variable(mut self, name: impl Into<String>, value: Value) -> Self {
        self.variables.insert(name.into(), value);
        self
    }

    /// Sets the lookup used by `resolveEntityIds`.
    pub fn resolver(mut self, resolver: &'a dyn EntityIdResolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Records a [`crate::TraceStep`] per mapping when `on`.
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// Pins the clock used for `currentDate` (tests, reproducible runs).
    pub fn now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }
}
