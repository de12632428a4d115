//! The loaded connector plugins: bundled ones and uploaded ones, by name and version.
//!
//! The set is swapped atomically (`ArcSwap`): a call that resolved a plugin keeps its `Arc` and finishes on
//! that version, whatever is loaded meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cap_std::fs::Dir;

use crate::runtime::{LoadError, LoadedPlugin, Runtime};
use crate::store::Store;
use crate::store::plugins::PluginRecord;

/// Why a plugin could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Another component with the same name and version exists.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("cannot store the plugin: {0}")]
    Storage(String),
}

type Loaded = BTreeMap<String, Vec<Arc<LoadedPlugin>>>;

/// The registry of loaded plugins.
pub struct Plugins {
    runtime: Arc<Runtime>,
    loaded: ArcSwap<Loaded>,
    dir: Option<Dir>,
}

impl Plugins {
    /// An empty registry; `dir` keeps uploaded components (`None`: in memory only).
    pub fn new(runtime: Arc<Runtime>, dir: Option<Dir>) -> Self {
        Plugins {
            runtime,
            loaded: ArcSwap::from_pointee(BTreeMap::new()),
            dir,
        }
    }

    /// The runtime that runs them.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads the connectors built into the binary, then the uploaded ones stored in the data directory.
    pub async fn load_installed(&self, store: &Store) -> Result<(), PluginError> {
        for (_, bytes) in crate::bundled::BUNDLED {
            self.add(store, bytes.to_vec(), true).await?;
        }
        let stored = store.list_plugins().map_err(|e| PluginError::Storage(e.to_string()))?;
        for record in stored.into_iter().filter(|r| !r.bundled) {
            let Some(dir) = &self.dir else { break };
            match dir.read(format!("{}.wasm", record.digest)) {
                Ok(bytes) => {
                    if let Err(e) = self.add(store, bytes, false).await {
                        tracing::error!(plugin = %record.name, version = %record.version, error = %e, "stored plugin no longer loads");
                    }
                }
                Err(e) => {
                    tracing::error!(plugin = %record.name, error = %e, "stored plugin file is missing")
                }
            }
        }
        Ok(())
    }

    /// Validates and loads a component, records it, and makes it available.
    pub async fn add(&self, store: &Store, bytes: Vec<u8>, bundled: bool) -> Result<Arc<LoadedPlugin>, PluginError> {
        let copy = (!bundled && self.dir.is_some()).then(|| bytes.clone());
        let plugin = Arc::new(self.runtime.load(bytes).await?);
        let record = PluginRecord {
            digest: plugin.digest.clone(),
            name: plugin.descriptor.name.clone(),
            version: plugin.descriptor.version.clone(),
            contract: plugin.contract.to_string(),
            size: plugin.size as i64,
            bundled,
            added_at: String::new(),
        };
        store.record_plugin(&record).map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => PluginError::Conflict(m),
            other => PluginError::Storage(other.to_string()),
        })?;
        if let (Some(dir), Some(bytes)) = (&self.dir, copy) {
            let name = format!("{}.wasm", plugin.digest);
            if !dir.exists(&name) {
                // Written whole or not at all: a crash never leaves a truncated component behind.
                let tmp = format!("{name}.{}.tmp", uuid::Uuid::new_v4());
                dir.write(&tmp, bytes)
                    .map_err(|e| PluginError::Storage(e.to_string()))?;
                dir.rename(&tmp, dir, &name)
                    .map_err(|e| PluginError::Storage(e.to_string()))?;
            }
        }
        tracing::info!(plugin = %plugin.label(), digest = %plugin.digest, from_cache = plugin.from_cache,
            load_ms = plugin.load_time.as_millis() as u64, "plugin loaded");
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            let versions = next.entry(plugin.descriptor.name.clone()).or_default();
            versions.retain(|p| p.descriptor.version != plugin.descriptor.version);
            versions.push(plugin.clone());
            versions.sort_by(|a, b| compare_versions(&a.descriptor.version, &b.descriptor.version));
            next
        });
        Ok(plugin)
    }

    /// The plugin for a connector type: the pinned version, or the latest.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Option<Arc<LoadedPlugin>> {
        let loaded = self.loaded.load();
        let versions = loaded.get(name)?;
        match version {
            Some(v) => versions.iter().find(|p| p.descriptor.version == v).cloned(),
            None => versions.last().cloned(),
        }
    }

    /// Every loaded plugin version.
    pub fn list(&self) -> Vec<Arc<LoadedPlugin>> {
        self.loaded.load().values().flatten().cloned().collect()
    }
}

/// Orders versions numerically where they are numbers (`1.10.0` after `1.9.0`).
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<(u64, String)> {
        v.split(['.', '-', '+'])
            .map(|p| (p.parse().unwrap_or(0), p.to_string()))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["1.10.0", "1.9.0", "0.1.0"];
        v.sort_by(|a, b| super::compare_versions(a, b));
        assert_eq!(v, ["0.1.0", "1.9.0", "1.10.0"]);
    }
}
