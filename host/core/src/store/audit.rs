//! The audit log: who changed what, when, from where, with the before → after of the changed fields. Entries
//! are appended by the admin operations (through the API, the CLI or the console) and never changed; they
//! are read newest first, filtered, in pages, and pruned by age ([`super::retention`]).
//!
//! Secret values never reach an entry: the recording side writes [`SECRET_CHANGED`] in their place.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;

/// What stands in an entry for a secret or a password that changed.
pub const SECRET_CHANGED: &str = "(changed)";

/// One changed field of an audited object: its value before and after (`None`: it did not exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field (`properties.URL`, `enabled`, `transformation`, …).
    pub field: String,
    /// Before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// After the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Its number: ascending in the order of recording (0 before it is stored).
    pub id: i64,
    /// When, in the store's text form (RFC 3339 UTC with milliseconds).
    pub at: String,
    /// Who: the principal's name (for a failed login, the name that was tried).
    pub principal: String,
    /// The principal's id; empty when there is none (a failed login).
    pub principal_id: String,
    /// `admin`, `technical`, or `unknown` (a failed login).
    pub principal_kind: String,
    /// The client's address, when known.
    pub address: Option<String>,
    /// `api` (the admin API and the CLI, which calls it) or `console`.
    pub channel: String,
    /// What was done: `system.create`, `transformation.rollback`, `login.failed`, …
    pub action: String,
    /// The kind of object: `system`, `transformation`, `principal`, `plugin`, `schedule`, `job`, …
    pub object_type: String,
    /// The object's id.
    pub object_id: String,
    /// The object's name, when it has one.
    pub object_name: String,
    /// The changed fields.
    pub changes: Vec<FieldChange>,
}

/// Which entries a listing returns; every given filter must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    /// The principal's name (exact, case-insensitive).
    pub principal: Option<String>,
    /// The action (exact).
    pub action: Option<String>,
    /// The object type (exact).
    pub object_type: Option<String>,
    /// The object id (exact).
    pub object_id: Option<String>,
    /// At or after this instant (store text form).
    pub from: Option<String>,
    /// Before this instant (store text form).
    pub to: Option<String>,
}

/// The audit log as a backend stores it.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry (its `id` is ignored); answers the number it got.
    async fn append(&self, entry: &AuditEntry) -> Result<i64, StoreError>;
    /// Entries matching `filter`, newest first, with numbers below `before` when given, at most `limit`.
    async fn list(&self, filter: &AuditFilter, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
}
