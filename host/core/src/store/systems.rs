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
}

/// The systems aggregate.
#[async_trait::async_trait]
pub trait SystemStore: Send + Sync {
    /// Changes with every write of a system or its transformation (create, replace, delete), so views cached
    /// from them know they are stale.
    fn generation(&self) -> u64;
    /// Stores a new system (names are unique) with its first transformation version, and returns it.
    async fn create(&self, spec: SystemSpec) -> Result<System, StoreError>;
    /// Replaces a system's definition; a changed transformation becomes a new version. Secrets left sealed in
    /// `spec` keep their values.
    async fn replace(&self, id: &str, spec: SystemSpec) -> Result<System, StoreError>;
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
