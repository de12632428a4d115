//! Configured systems: sources, targets and proxies, with properties, secrets and transformations.
//!
//! A backend stores secret property values as one sealed JSON object per system (see [`crate::secrets`]),
//! never beside the plain properties, with their names kept apart. Reading a system opens nothing: its
//! [`SystemSecrets`] stay sealed until [`Stores::open_secrets`](super::Stores::open_secrets). Every saved
//! transformation is a new version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::secrets::SystemSecrets;

/// What a system is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Entities are read from it.
    Source,
    /// Entities are written to it.
    Target,
    /// Served as a SCIM service provider.
    Proxy,
}

impl Role {
    /// The stored name (`source`, `target`, `proxy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
            Role::Proxy => "proxy",
        }
    }

    /// The role of a stored name.
    pub fn parse(s: &str) -> Role {
        match s {
            "source" => Role::Source,
            "target" => Role::Target,
            _ => Role::Proxy,
        }
    }
}

/// A system as the admin defines it; properties already split into plain and secret.
#[derive(Clone, Debug)]
pub struct SystemSpec {
    /// Unique name.
    pub name: String,
    /// Connector type.
    pub connector: String,
    /// Pinned connector version, or `None` to follow the latest.
    pub connector_version: Option<String>,
    /// Role.
    pub role: Role,
    /// Non-secret properties.
    pub properties: BTreeMap<String, String>,
    /// Secret properties: sealed as read from the store, values entered in clear sealed on write.
    pub secrets: SystemSecrets,
    /// For targets: the source systems it receives from.
    pub sources: Vec<String>,
    /// The transformation document (validated by the caller), `None` for the connector default.
    pub transformation: Option<serde_json::Value>,
}

/// A stored system.
#[derive(Clone, Debug)]
pub struct System {
    /// Id.
    pub id: String,
    /// Definition (secrets still sealed).
    pub spec: SystemSpec,
    /// Version number of the current transformation, when one is stored.
    pub transformation_version: Option<i64>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Whether the system takes part in provisioning (a disabled source runs no jobs and takes no pushes; a
    /// disabled target is skipped by runs and real-time events). New systems are enabled.
    pub enabled: bool,
    /// Its quarantine and last Test Connection, as every replica sees them.
    pub health: Health,
}

/// A system's health as the store keeps it for every replica: its quarantine, its consecutive failed runs,
/// and the outcome of its last Test Connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Set while the system is quarantined.
    pub quarantine: Option<Quarantine>,
    /// Job runs in a row in which every write to it failed (reset by a run with a successful write).
    pub failed_runs: i64,
    /// The last Test Connection (by an admin or a quarantine probe).
    pub last_test: Option<ConnectionTest>,
}

/// A target held out of provisioning because its writes fail for a reason retrying cannot fix.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// When it began.
    pub since: String,
    /// Why, as a code: `credentials`, `not-found`, `failed-runs` or `failure-rate`.
    pub reason: String,
    /// Why, in words for the admin.
    pub message: String,
    /// When the next probe (Test Connection) is due.
    pub next_probe_at: String,
    /// Probes made since it began.
    pub probes: i64,
}

/// The outcome of a Test Connection, as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionTest {
    /// Whether it succeeded.
    pub ok: bool,
    /// The connector's message.
    pub message: String,
    /// When (the store's text form of instants).
    pub at: String,
}

/// Who made a transformation version and why (the store adds the number and the date).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionNote {
    /// The principal's name; empty when the change came from no one in particular.
    pub author: String,
    /// The admin's description, if any.
    pub description: Option<String>,
}

/// One version of a system's transformation.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformationVersion {
    /// Number, from 1, per system.
    pub version: i64,
    /// Who saved it (empty when unknown, as for versions stored before authors were kept).
    pub author: String,
    /// When.
    pub created_at: String,
    /// The admin's description, if any.
    pub description: Option<String>,
    /// Whether it is a reset to the connector's default (then it has no document).
    pub reset: bool,
    /// The document; `None` for a reset.
    pub document: Option<serde_json::Value>,
}

/// The systems aggregate.
#[async_trait::async_trait]
pub trait SystemStore: Send + Sync {
    /// Changes with every write of a system or its transformation (create, replace, delete), so views cached
    /// from them know they are stale.
    fn generation(&self) -> u64;
    /// Stores a new system (names are unique) with its first transformation version, and returns it.
    async fn create(&self, spec: SystemSpec) -> Result<System, StoreError> {
        self.create_noted(spec, &VersionNote::default()).await
    }
    /// [`create`](Self::create), the first transformation version carrying `note`.
    async fn create_noted(&self, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError>;
    /// Replaces a system's definition; a changed transformation becomes a new version (a change back to the
    /// connector's default, `None`, a reset version without a document). Secrets left sealed in `spec` keep
    /// their values.
    async fn replace(&self, id: &str, spec: SystemSpec) -> Result<System, StoreError> {
        self.replace_noted(id, spec, &VersionNote::default()).await
    }
    /// [`replace`](Self::replace), a new transformation version carrying `note`.
    async fn replace_noted(&self, id: &str, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError>;
    /// A system's transformation versions, newest first (documents included).
    async fn transformation_versions(&self, id: &str) -> Result<Vec<TransformationVersion>, StoreError>;
    /// One transformation version of a system.
    async fn transformation_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TransformationVersion>, StoreError> {
        Ok(self
            .transformation_versions(id)
            .await?
            .into_iter()
            .find(|v| v.version == version))
    }
    /// Deletes a system with its transformations, links, runs and rate state, all or nothing. Refused with
    /// [`StoreError::Conflict`] (message from [`still_a_source`] or [`run_under_way`]) while a target receives
    /// from it or a run of it is queued or running, checked in the same transaction. Creating or replacing a
    /// target checks its sources in its transaction too, so neither can slip past the other.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Enables or disables a system; answers it as stored. Moves the generation.
    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<System, StoreError>;
    /// One system.
    async fn get(&self, id: &str) -> Result<Option<System>, StoreError>;
    /// Every system, by name.
    async fn list(&self) -> Result<Vec<System>, StoreError>;
    /// Keeps the outcome of a system's Test Connection (the last one is what every replica shows).
    async fn record_connection_test(&self, id: &str, test: &ConnectionTest) -> Result<(), StoreError>;
    /// Quarantines a system (its failed runs start again from 0) with its first probe due at
    /// `next_probe_at`, unless it is quarantined already: answers whether this call quarantined it.
    /// [`StoreError::NotFound`] when there is no such system. Moves the generation.
    async fn quarantine(&self, id: &str, reason: &str, message: &str, next_probe_at: &str) -> Result<bool, StoreError>;
    /// Ends a system's quarantine; answers the quarantine this call ended, `None` when it was not
    /// quarantined (so of two concurrent releases one gets it). Moves the generation.
    async fn release(&self, id: &str) -> Result<Option<Quarantine>, StoreError>;
    /// Counts a job run for a target: a failed run adds one to its consecutive failed runs, any other run
    /// resets them; answers the count after this run.
    async fn count_run(&self, id: &str, failed: bool) -> Result<i64, StoreError>;
    /// Claims the probe of a quarantined system when it is due at `now`: moves its next probe to
    /// `next_probe_at` and counts the probe, in one statement, so that of several replicas one probes.
    /// Answers whether this caller claimed it.
    async fn claim_probe(&self, id: &str, now: &str, next_probe_at: &str) -> Result<bool, StoreError>;
    /// Every quarantined system's id with its quarantine, oldest first.
    async fn quarantined(&self) -> Result<Vec<(String, Quarantine)>, StoreError>;
    /// The targets that receive from `source_id`.
    async fn targets_of(&self, source_id: &str) -> Result<Vec<System>, StoreError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|s| s.spec.sources.iter().any(|x| x == source_id))
            .collect())
    }
}

/// Why a system that targets receive from cannot be deleted.
pub fn still_a_source(targets: &[String]) -> String {
    format!(
        "the system is the source of {}; remove it from their sources first",
        targets.join(", ")
    )
}

/// Why a system with a run under way cannot be deleted.
pub fn run_under_way(job: &str) -> String {
    format!("a run of the system is queued or running (job {job}); stop it or let it end first")
}
