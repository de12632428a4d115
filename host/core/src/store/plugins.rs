//! The registry of plugin versions: which components are stored, by digest, with name and version; the
//! component bytes by digest (so that every replica of a shared store can load what one of them received;
//! each keeps a file copy in its data directory's `plugins/` folder and compiles its own artifact); and the
//! versions admins selected per connector.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StoreError;

/// A stored plugin version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginRecord {
    /// SHA-256 of the component.
    pub digest: String,
    /// Connector name.
    pub name: String,
    /// Connector version.
    pub version: String,
    /// Contract version it was built for.
    pub contract: String,
    /// Component size.
    pub size: i64,
    /// Whether it ships inside the binary.
    pub bundled: bool,
    /// When it was added.
    pub added_at: String,
}

/// The plugins aggregate: the registry of stored components.
#[async_trait::async_trait]
pub trait PluginStore: Send + Sync {
    /// Records a plugin version; the same digest again is a no-op, a different component with the same name
    /// and version a conflict (unless bundled: a rebuilt bundled connector replaces its predecessor).
    async fn record(&self, plugin: &PluginRecord) -> Result<(), StoreError>;
    /// Forgets a plugin version.
    async fn delete(&self, name: &str, version: &str) -> Result<(), StoreError>;
    /// Every recorded plugin version, by name and age.
    async fn list(&self) -> Result<Vec<PluginRecord>, StoreError>;
    /// Keeps a component's bytes under its digest (the same digest again is a no-op).
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A component's bytes, if kept.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The version admins selected per connector (a connector without one follows its highest version).
    async fn selection(&self) -> Result<BTreeMap<String, String>, StoreError>;
    /// Replaces the selection.
    async fn set_selection(&self, selection: &BTreeMap<String, String>) -> Result<(), StoreError>;
}
