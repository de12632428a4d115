//! The loaded connector plugins: bundled ones and uploaded ones, by name and version.
//!
//! Several versions of a connector can be loaded at once. A system either pins a version (`"version"` in
//! its definition) or follows the connector's *active* version. The active version is the highest loaded
//! one (semantic-version order), unless an admin selected another: a rollback selects the version below
//! the active one, `activate` selects any loaded version, and uploading a version higher than every loaded
//! one moves the connector on to it (an upgrade). Adding a *lower* version never changes what unpinned
//! systems run: it is there to be pinned. The selection is kept in `plugins/active.json`.
//!
//! The set is swapped atomically (`ArcSwap`): a call that resolved a plugin keeps its `Arc` and finishes on
//! that version, whatever is loaded meanwhile; the next call resolves the new one.
//!
//! Components dropped into `plugins/inbox/` are loaded by [`Plugins::watch_inbox`]: loaded ones leave the
//! inbox, refused ones move to `plugins/rejected/` with a `.reason.txt` beside them.
//!
//! On a store several replicas share, an uploaded component's bytes and the selection are kept in the store
//! too, and [`Plugins::watch_registry`] brings every replica to what the store records within a second: it
//! loads (and compiles) versions another replica received, unloads removed ones and applies the selection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use cap_std::fs::Dir;
use serde::Serialize;

use crate::runtime::{LoadError, LoadedPlugin, Runtime};
use crate::store::Stores;
use crate::store::plugins::PluginRecord;

/// Why a plugin operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Another component with the same name and version exists, or the change conflicts with its use.
    #[error("{0}")]
    Conflict(String),
    /// The version is used by systems and cannot be removed.
    #[error("{label} is in use by {}; pin those systems to another version or delete them first", .systems.iter().map(|s| format!("{} ({})", s.name, s.id)).collect::<Vec<_>>().join(", "))]
    InUse {
        /// `name@version`.
        label: String,
        /// The systems that run on it.
        systems: Vec<SystemRef>,
    },
    /// No such connector or version.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be honoured (e.g. removing a bundled connector).
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error("cannot store the plugin: {0}")]
    Storage(String),
}

/// A system, as plugin answers name it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemRef {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it pins the version (else it follows the active one).
    pub pinned: bool,
}

/// One loaded version.
#[derive(Clone, Debug)]
struct Entry {
    plugin: Arc<LoadedPlugin>,
    bundled: bool,
}

/// The loaded versions of one connector, lowest first, and the version an admin selected, if any.
#[derive(Clone, Debug, Default)]
struct Versions {
    entries: Vec<Entry>,
    selected: Option<String>,
}

impl Versions {
    fn find(&self, version: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.plugin.descriptor.version == version)
    }

    /// The version unpinned systems run: the selected one while it is loaded, else the highest.
    fn active(&self) -> Option<&Entry> {
        self.selected
            .as_deref()
            .and_then(|v| self.find(v))
            .or_else(|| self.entries.last())
    }

    fn sort(&mut self) {
        self.entries
            .sort_by(|a, b| compare_versions(&a.plugin.descriptor.version, &b.plugin.descriptor.version));
    }
}

type Loaded = BTreeMap<String, Versions>;

/// What adding a component did.
#[derive(Clone, Debug)]
pub struct Added {
    /// The loaded version.
    pub plugin: Arc<LoadedPlugin>,
    /// Whether unpinned systems of this connector now run it.
    pub active: bool,
    /// The version unpinned systems ran before, when this one replaced it (`name@version`).
    pub replaced: Option<String>,
    /// Whether exactly this component was loaded already (nothing changed).
    pub unchanged: bool,
}

/// A loaded version as the admin API and CLI show it.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Built into the binary.
    pub bundled: bool,
    /// What unpinned systems run.
    pub active: bool,
    /// Systems that run this version (pinned, or following it as the active one).
    pub used_by: Vec<SystemRef>,
}

/// What a rollback or an activation changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Switched {
    /// The connector.
    pub name: String,
    /// The version unpinned systems ran before.
    pub from: String,
    /// The version they run now.
    pub to: String,
}

/// How often `provisio serve` scans `plugins/inbox/`. A file is read once it stayed unchanged for one
/// interval (a copy may still be in progress).
pub const INBOX_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often a replica of a shared store compares its loaded plugins with the store's registry.
pub const REGISTRY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The registry of loaded plugins.
pub struct Plugins {
    runtime: Arc<Runtime>,
    loaded: ArcSwap<Loaded>,
    dir: Option<Dir>,
    /// Serialises changes (add, remove, rollback, activate), so that checks and swaps do not interleave.
    changes: tokio::sync::Mutex<()>,
    /// Read while a system is validated against the loaded versions and stored ([`Plugins::pinning`]),
    /// written while a removal checks which systems run on a version and unloads it: otherwise a system
    /// saved between that check and the unloading would be left on a version that is gone.
    pins: tokio::sync::RwLock<()>,
    /// Files seen in the inbox: size and modification time at the last scan.
    inbox_seen: Mutex<HashMap<String, (u64, Option<SystemTime>)>>,
    /// The connectors built into the binary, loaded first by [`Plugins::load_installed`].
    bundled: Bundled,
    /// The store, when several replicas share it: uploads and selections go there too.
    shared: std::sync::OnceLock<Stores>,
}

/// Connectors built into a binary: (connector directory name, component bytes).
pub type Bundled = &'static [(&'static str, &'static [u8])];

/// Largest plugin component accepted (upload, inbox).
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// The file, in the plugins folder, that keeps the versions admins selected.
const ACTIVE_FILE: &str = "active.json";
/// Where components to load are dropped.
pub const INBOX: &str = "inbox";
/// Where refused components are moved.
pub const REJECTED: &str = "rejected";

impl Plugins {
    /// An empty registry; `dir` keeps uploaded components (`None`: in memory only).
    pub fn new(runtime: Arc<Runtime>, dir: Option<Dir>) -> Self {
        Plugins {
            runtime,
            loaded: ArcSwap::from_pointee(BTreeMap::new()),
            dir,
            changes: tokio::sync::Mutex::new(()),
            pins: tokio::sync::RwLock::new(()),
            inbox_seen: Mutex::new(HashMap::new()),
            bundled: &[],
            shared: std::sync::OnceLock::new(),
        }
    }

    /// The registry with the connectors built into the binary, which [`Plugins::load_installed`] loads first.
    pub fn with_bundled(mut self, bundled: Bundled) -> Self {
        self.bundled = bundled;
        self
    }

    /// The runtime that runs them.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Hold this while a system's connector version is checked and the system stored: a removal of that
    /// version waits until the system is stored, and then sees it. Holders do not block one another.
    pub async fn pinning(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.pins.read().await
    }

    /// Loads the connectors built into the binary, then the uploaded ones stored in the data directory, then
    /// applies the versions admins selected.
    pub async fn load_installed(&self, store: &Stores) -> Result<(), PluginError> {
        if store.is_shared() {
            let _ = self.shared.set(store.clone());
        }
        for (_, bytes) in self.bundled {
            self.add(store, bytes.to_vec(), true).await?;
        }
        let stored = store
            .plugins
            .list()
            .await
            .map_err(|e| PluginError::Storage(e.to_string()))?;
        for record in stored.into_iter().filter(|r| !r.bundled) {
            match self.component_bytes(store, &record.digest).await {
                Some(bytes) => {
                    if let Err(e) = self.add(store, bytes, false).await {
                        tracing::error!(plugin = %record.name, version = %record.version, error = %e, "stored plugin no longer loads");
                    }
                }
                None => {
                    tracing::error!(plugin = %record.name, version = %record.version, "stored plugin component is missing")
                }
            }
        }
        let selected = match self.shared.get() {
            Some(store) => store
                .plugins
                .selection()
                .await
                .map_err(|e| PluginError::Storage(e.to_string()))?,
            None => self.read_selection(),
        };
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            for (name, versions) in next.iter_mut() {
                versions.selected = selected.get(name).filter(|v| versions.find(v).is_some()).cloned();
            }
            next
        });
        for (name, version) in &selected {
            match self.loaded.load().get(name) {
                Some(v) if v.find(version).is_some() => {
                    if let Some(highest) = v.entries.last().filter(|h| h.plugin.descriptor.version != *version) {
                        tracing::warn!(connector = %name, selected = %version, highest = %highest.plugin.descriptor.version,
                            "systems that follow the connector run the version an admin selected, not the highest; `provisio plugin activate` moves them on");
                    }
                }
                _ => tracing::warn!(connector = %name, version = %version,
                    "the selected version is no longer loaded; systems follow the highest version"),
            }
        }
        Ok(())
    }

    /// Validates and loads a component, records it, and makes it available. It becomes the connector's
    /// active version when it is higher than every loaded version of that connector.
    pub async fn add(&self, store: &Stores, bytes: Vec<u8>, bundled: bool) -> Result<Added, PluginError> {
        let copy = (!bundled && (self.dir.is_some() || store.is_shared())).then(|| bytes.clone());
        let plugin = Arc::new(self.runtime.load(bytes).await?);
        let _guard = self.changes.lock().await;
        let name = plugin.descriptor.name.clone();
        let version = plugin.descriptor.version.clone();
        if let Some(existing) = self.loaded.load().get(&name).and_then(|v| v.find(&version))
            && existing.plugin.digest == plugin.digest
        {
            let active = self
                .loaded
                .load()
                .get(&name)
                .and_then(Versions::active)
                .is_some_and(|a| a.plugin.digest == plugin.digest);
            return Ok(Added {
                plugin: existing.plugin.clone(),
                active,
                replaced: None,
                unchanged: true,
            });
        }
        let record = PluginRecord {
            digest: plugin.digest.clone(),
            name: name.clone(),
            version: version.clone(),
            contract: plugin.contract.to_string(),
            size: plugin.size as i64,
            bundled,
            added_at: String::new(),
        };
        // The bytes before the record: a replica that sees the record finds them.
        if let (true, Some(bytes)) = (store.is_shared(), &copy) {
            store
                .plugins
                .put_component(&plugin.digest, bytes)
                .await
                .map_err(|e| PluginError::Storage(e.to_string()))?;
        }
        store.plugins.record(&record).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => PluginError::Conflict(m),
            other => PluginError::Storage(other.to_string()),
        })?;
        if let (Some(dir), Some(bytes)) = (&self.dir, copy) {
            let file = format!("{}.wasm", plugin.digest);
            if !dir.exists(&file) {
                // Written whole or not at all: a crash never leaves a truncated component behind.
                write_atomically(dir, &file, &bytes).map_err(PluginError::Storage)?;
            }
        }
        let before = self
            .loaded
            .load()
            .get(&name)
            .and_then(Versions::active)
            .map(|e| e.plugin.clone());
        let higher_than_all = self
            .loaded
            .load()
            .get(&name)
            .and_then(|v| v.entries.last())
            .is_none_or(|h| compare_versions(&version, &h.plugin.descriptor.version).is_gt());
        let mut selection_cleared = false;
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            let versions = next.entry(name.clone()).or_default();
            versions.entries.retain(|e| e.plugin.descriptor.version != version);
            versions.entries.push(Entry {
                plugin: plugin.clone(),
                bundled,
            });
            versions.sort();
            // An upgrade: a version above every loaded one is what unpinned systems follow from now on,
            // even after a rollback. Bundled connectors at boot keep an admin's selection (applied later).
            selection_cleared = higher_than_all && !bundled && versions.selected.is_some();
            if selection_cleared {
                versions.selected = None;
            }
            next
        });
        if selection_cleared {
            self.persist_selection().await?;
        }
        let after = self
            .loaded
            .load()
            .get(&name)
            .and_then(Versions::active)
            .map(|e| e.plugin.clone());
        let active = after.as_ref().is_some_and(|a| a.digest == plugin.digest);
        let replaced = before
            .filter(|b| active && b.digest != plugin.digest)
            .map(|b| b.label());
        tracing::info!(plugin = %plugin.label(), digest = %plugin.digest, contract = plugin.contract,
            from_cache = plugin.from_cache, load_ms = plugin.load_time.as_millis() as u64, active,
            replaced = replaced.as_deref().unwrap_or(""), "plugin loaded");
        if !bundled && self.bundled.iter().any(|(n, _)| *n == name) && active {
            tracing::warn!(plugin = %plugin.label(), "an uploaded version of a bundled connector is now the one systems that follow it run");
        }
        Ok(Added {
            plugin,
            active,
            replaced,
            unchanged: false,
        })
    }

    /// The plugin for a connector type: the pinned version, or the active one.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Option<Arc<LoadedPlugin>> {
        let loaded = self.loaded.load();
        let versions = loaded.get(name)?;
        match version {
            Some(v) => versions.find(v).map(|e| e.plugin.clone()),
            None => versions.active().map(|e| e.plugin.clone()),
        }
    }

    /// Every loaded plugin version.
    pub fn list(&self) -> Vec<Arc<LoadedPlugin>> {
        self.loaded
            .load()
            .values()
            .flat_map(|v| v.entries.iter().map(|e| e.plugin.clone()))
            .collect()
    }

    /// Every loaded version with whether it is bundled, whether it is active, and the systems on it.
    pub async fn overview(&self, store: &Stores) -> Result<Vec<VersionInfo>, PluginError> {
        let systems = store
            .systems
            .list()
            .await
            .map_err(|e| PluginError::Storage(e.to_string()))?;
        let loaded = self.loaded.load();
        let mut out = Vec::new();
        for (name, versions) in loaded.iter() {
            let active = versions.active().map(|e| e.plugin.descriptor.version.clone());
            for entry in &versions.entries {
                let version = &entry.plugin.descriptor.version;
                let is_active = active.as_deref() == Some(version);
                out.push(VersionInfo {
                    plugin: entry.plugin.clone(),
                    bundled: entry.bundled,
                    active: is_active,
                    used_by: users(&systems, name, version, is_active),
                });
            }
        }
        Ok(out)
    }

    /// Removes an uploaded version, unless a system runs on it.
    pub async fn remove(&self, store: &Stores, name: &str, version: &str) -> Result<(), PluginError> {
        let _guard = self.changes.lock().await;
        // From the usage check to the unloading, no system can be saved onto this version; it waits only for
        // system saves under way.
        let _pins = self.pins.write().await;
        let systems = store
            .systems
            .list()
            .await
            .map_err(|e| PluginError::Storage(e.to_string()))?;
        let loaded = self.loaded.load();
        let versions = loaded
            .get(name)
            .ok_or_else(|| PluginError::NotFound(format!("no connector {name:?} is loaded")))?;
        let entry = versions
            .find(version)
            .ok_or_else(|| PluginError::NotFound(format!("{name}@{version} is not loaded")))?;
        if entry.bundled {
            return Err(PluginError::Invalid(format!(
                "{name}@{version} is built into this binary and cannot be removed; pin systems to another version instead"
            )));
        }
        let is_active = versions
            .active()
            .is_some_and(|a| a.plugin.descriptor.version == version);
        let used_by = users(&systems, name, version, is_active);
        if !used_by.is_empty() {
            return Err(PluginError::InUse {
                label: entry.plugin.label(),
                systems: used_by,
            });
        }
        let digest = entry.plugin.digest.clone();
        self.runtime.forget(&entry.plugin);
        drop(loaded);
        store
            .plugins
            .delete(name, version)
            .await
            .map_err(|e| PluginError::Storage(e.to_string()))?;
        let mut selection_changed = false;
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            if let Some(v) = next.get_mut(name) {
                v.entries.retain(|e| e.plugin.descriptor.version != version);
                if v.selected.as_deref() == Some(version) {
                    v.selected = None;
                    selection_changed = true;
                }
                if v.entries.is_empty() {
                    next.remove(name);
                }
            }
            next
        });
        if selection_changed {
            self.persist_selection().await?;
        }
        if let Some(dir) = &self.dir {
            let _ = dir.remove_file(format!("{digest}.wasm"));
        }
        tracing::info!(plugin = %format!("{name}@{version}"), "plugin version removed");
        Ok(())
    }

    /// Rolls the connector back: unpinned systems run the version below the active one from the next call.
    pub async fn rollback(&self, name: &str) -> Result<Switched, PluginError> {
        let _guard = self.changes.lock().await;
        let loaded = self.loaded.load();
        let versions = loaded
            .get(name)
            .ok_or_else(|| PluginError::NotFound(format!("no connector {name:?} is loaded")))?;
        let active = versions
            .active()
            .map(|e| e.plugin.descriptor.version.clone())
            .ok_or_else(|| PluginError::NotFound(format!("no version of {name} is loaded")))?;
        let previous = versions
            .entries
            .iter()
            .rev()
            .map(|e| e.plugin.descriptor.version.clone())
            .find(|v| compare_versions(v, &active).is_lt())
            .ok_or_else(|| {
                PluginError::Conflict(format!(
                    "{name}@{active} is the lowest loaded version; there is nothing to roll back to"
                ))
            })?;
        drop(loaded);
        self.select(name, &previous).await?;
        tracing::warn!(connector = %name, from = %active, to = %previous, "rolled back");
        Ok(Switched {
            name: name.to_string(),
            from: active,
            to: previous,
        })
    }

    /// Makes `version` the one unpinned systems run (the highest: follow the latest again).
    pub async fn activate(&self, name: &str, version: &str) -> Result<Switched, PluginError> {
        let _guard = self.changes.lock().await;
        let loaded = self.loaded.load();
        let versions = loaded
            .get(name)
            .ok_or_else(|| PluginError::NotFound(format!("no connector {name:?} is loaded")))?;
        if versions.find(version).is_none() {
            let have: Vec<&str> = versions
                .entries
                .iter()
                .map(|e| e.plugin.descriptor.version.as_str())
                .collect();
            return Err(PluginError::NotFound(format!(
                "{name}@{version} is not loaded (loaded: {})",
                have.join(", ")
            )));
        }
        let from = versions
            .active()
            .map(|e| e.plugin.descriptor.version.clone())
            .unwrap_or_default();
        drop(loaded);
        self.select(name, version).await?;
        tracing::info!(connector = %name, from = %from, to = %version, "active version changed");
        Ok(Switched {
            name: name.to_string(),
            from,
            to: version.to_string(),
        })
    }

    /// Selects a loaded version for unpinned systems; selecting the highest clears the selection.
    async fn select(&self, name: &str, version: &str) -> Result<(), PluginError> {
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            if let Some(v) = next.get_mut(name) {
                let highest = v.entries.last().map(|e| e.plugin.descriptor.version.clone());
                v.selected = (highest.as_deref() != Some(version)).then(|| version.to_string());
            }
            next
        });
        self.persist_selection().await
    }

    /// Keeps the selection in `plugins/active.json`, and in the store when replicas share it.
    async fn persist_selection(&self) -> Result<(), PluginError> {
        self.write_selection().map_err(PluginError::Storage)?;
        if let Some(store) = self.shared.get() {
            store
                .plugins
                .set_selection(&self.selection())
                .await
                .map_err(|e| PluginError::Storage(e.to_string()))?;
        }
        Ok(())
    }

    /// The versions selected per connector.
    fn selection(&self) -> BTreeMap<String, String> {
        self.loaded
            .load()
            .iter()
            .filter_map(|(n, v)| v.selected.clone().map(|s| (n.clone(), s)))
            .collect()
    }

    /// A stored component's bytes: the file in the plugins folder, else the store's copy (kept as a file
    /// from then on).
    async fn component_bytes(&self, store: &Stores, digest: &str) -> Option<Vec<u8>> {
        let file = format!("{digest}.wasm");
        if let Some(bytes) = self.dir.as_ref().and_then(|dir| dir.read(&file).ok()) {
            return Some(bytes);
        }
        let bytes = match store.plugins.component(digest).await {
            Ok(bytes) => bytes?,
            Err(e) => {
                tracing::warn!(digest, error = %e, "cannot read a plugin component from the store");
                return None;
            }
        };
        if let Some(dir) = &self.dir
            && let Err(e) = write_atomically(dir, &file, &bytes)
        {
            tracing::warn!(digest, error = %e, "cannot keep a plugin component in the plugins folder");
        }
        Some(bytes)
    }

    /// Every `interval`, brings this replica to what the shared store records (see [`Plugins::sync`]).
    pub async fn watch_registry(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "cannot follow the plugin registry; trying again");
            }
        }
    }

    /// On a shared store: loads the versions another replica received, unloads the ones removed, and applies
    /// the selection. Calls in flight finish on the version they resolved.
    pub async fn sync(&self) -> Result<(), PluginError> {
        let Some(store) = self.shared.get() else { return Ok(()) };
        let storage = |e: crate::store::StoreError| PluginError::Storage(e.to_string());
        let _guard = self.changes.lock().await;
        // Read under the lock: a change made here meanwhile is in the store before this reads it.
        let records = store.plugins.list().await.map_err(storage)?;
        let selection = store.plugins.selection().await.map_err(storage)?;
        for record in records.iter().filter(|r| !r.bundled) {
            let present = self
                .loaded
                .load()
                .get(&record.name)
                .and_then(|v| v.find(&record.version))
                .is_some_and(|e| e.plugin.digest == record.digest);
            if present {
                continue;
            }
            let Some(bytes) = self.component_bytes(store, &record.digest).await else {
                continue;
            };
            let plugin = match self.runtime.load(bytes).await {
                Ok(plugin) => Arc::new(plugin),
                Err(e) => {
                    tracing::error!(plugin = %record.name, version = %record.version, error = %e, "a plugin another replica loaded does not load here");
                    continue;
                }
            };
            tracing::info!(plugin = %plugin.label(), digest = %plugin.digest, "plugin loaded (added on another replica)");
            self.loaded.rcu(|current| {
                let mut next = (**current).clone();
                let versions = next.entry(record.name.clone()).or_default();
                versions
                    .entries
                    .retain(|e| e.plugin.descriptor.version != record.version);
                versions.entries.push(Entry {
                    plugin: plugin.clone(),
                    bundled: false,
                });
                versions.sort();
                next
            });
        }
        let recorded: HashSet<&str> = records.iter().map(|r| r.digest.as_str()).collect();
        let gone: Vec<Arc<LoadedPlugin>> = self
            .loaded
            .load()
            .values()
            .flat_map(|v| v.entries.iter())
            .filter(|e| !e.bundled && !recorded.contains(e.plugin.digest.as_str()))
            .map(|e| e.plugin.clone())
            .collect();
        for plugin in &gone {
            tracing::info!(plugin = %plugin.label(), "plugin version removed (on another replica)");
            self.runtime.forget(plugin);
        }
        let current_selection = self.selection();
        if gone.is_empty() && current_selection == selection {
            return Ok(());
        }
        self.loaded.rcu(|current| {
            let mut next = (**current).clone();
            for versions in next.values_mut() {
                versions
                    .entries
                    .retain(|e| e.bundled || recorded.contains(e.plugin.digest.as_str()));
            }
            next.retain(|_, v| !v.entries.is_empty());
            for (name, versions) in next.iter_mut() {
                versions.selected = selection.get(name).filter(|v| versions.find(v).is_some()).cloned();
            }
            next
        });
        self.write_selection().map_err(PluginError::Storage)
    }

    fn read_selection(&self) -> BTreeMap<String, String> {
        let Some(dir) = &self.dir else {
            return BTreeMap::new();
        };
        match dir.read_to_string(ACTIVE_FILE) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::error!(error = %e, "plugins/{ACTIVE_FILE} is not valid; systems follow the highest versions");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        }
    }

    fn write_selection(&self) -> Result<(), String> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let owned = self.selection();
        let text = serde_json::to_string_pretty(&owned).map_err(|e| e.to_string())?;
        write_atomically(dir, ACTIVE_FILE, text.as_bytes())
    }

    /// Loads the components in `plugins/inbox/` that stayed unchanged since the previous scan; moves the
    /// ones that fail to `plugins/rejected/` with a reason file. Answers what happened to each file.
    pub async fn scan_inbox(&self, store: &Stores) -> Vec<InboxOutcome> {
        let Some(dir) = &self.dir else { return vec![] };
        for sub in [INBOX, REJECTED] {
            if let Err(e) = dir.create_dir_all(sub) {
                tracing::error!(error = %e, "cannot create plugins/{sub}/");
                return vec![];
            }
        }
        let (inbox, rejected) = match (dir.open_dir(INBOX), dir.open_dir(REJECTED)) {
            (Ok(i), Ok(r)) => (i, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot open the plugins inbox");
                return vec![];
            }
        };
        let mut ready = Vec::new();
        {
            let mut seen = self.inbox_seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut now_seen = HashMap::new();
            let Ok(entries) = inbox.entries() else { return vec![] };
            for entry in entries.flatten() {
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                if !file_name.to_ascii_lowercase().ends_with(".wasm") {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let stamp = (meta.len(), meta.modified().ok().map(|m| m.into_std()));
                if seen.get(&file_name) == Some(&stamp) {
                    ready.push(file_name.clone());
                }
                now_seen.insert(file_name, stamp);
            }
            *seen = now_seen;
        }
        let mut outcomes = Vec::new();
        for file_name in ready {
            let result = match inbox.metadata(&file_name) {
                Ok(m) if m.len() as usize > MAX_PLUGIN_BYTES => Err(format!(
                    "the file has {} bytes; the most a plugin may have is {}",
                    m.len(),
                    MAX_PLUGIN_BYTES
                )),
                Ok(_) => match inbox.read(&file_name) {
                    Ok(bytes) => self.add(store, bytes, false).await.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("cannot read it: {e}")),
                },
                Err(e) => Err(format!("cannot read it: {e}")),
            };
            self.inbox_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&file_name);
            match result {
                Ok(added) => {
                    // Stored under its digest in plugins/: the inbox copy has served its purpose.
                    if let Err(e) = inbox.remove_file(&file_name) {
                        tracing::error!(file = %file_name, error = %e, "cannot remove a loaded plugin from the inbox");
                    }
                    tracing::info!(file = %file_name, plugin = %added.plugin.label(), active = added.active, "plugin loaded from the inbox");
                    outcomes.push(InboxOutcome {
                        file: file_name,
                        result: Ok(added.plugin.label()),
                    });
                }
                Err(reason) => {
                    tracing::warn!(file = %file_name, reason = %reason, "plugin in the inbox refused; moved to plugins/rejected/");
                    let mut target = file_name.clone();
                    if rejected.exists(&target) {
                        target = format!("{}-{file_name}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
                    }
                    if let Err(e) = inbox.rename(&file_name, &rejected, &target) {
                        tracing::error!(file = %file_name, error = %e, "cannot move a refused plugin out of the inbox");
                        let _ = inbox.remove_file(&file_name);
                    }
                    let note = format!("{target} was refused: {reason}\n");
                    if let Err(e) = rejected.write(format!("{target}.reason.txt"), note) {
                        tracing::error!(file = %file_name, error = %e, "cannot write the reason file");
                    }
                    outcomes.push(InboxOutcome {
                        file: file_name,
                        result: Err(reason),
                    });
                }
            }
        }
        outcomes
    }

    /// Scans the inbox every `interval`, forever. A file is loaded once it stayed the same size and
    /// modification time for one interval, so a copy in progress is not read half-written.
    pub async fn watch_inbox(self: Arc<Self>, store: Stores, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.scan_inbox(&store).await;
        }
    }
}

/// What happened to one file of the inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct InboxOutcome {
    /// Its name.
    pub file: String,
    /// `name@version` loaded, or why it was refused.
    pub result: Result<String, String>,
}

/// The systems that run `name@version`: those that pin it, and, when it is the active version, those that
/// follow the connector.
fn users(systems: &[crate::store::systems::System], name: &str, version: &str, active: bool) -> Vec<SystemRef> {
    systems
        .iter()
        .filter(|s| s.spec.connector == name)
        .filter(|s| match s.spec.connector_version.as_deref() {
            Some(v) => v == version,
            None => active,
        })
        .map(|s| SystemRef {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            pinned: s.spec.connector_version.is_some(),
        })
        .collect()
}

fn write_atomically(dir: &Dir, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = format!("{name}.{}.tmp", uuid::Uuid::new_v4());
    dir.write(&tmp, bytes).map_err(|e| e.to_string())?;
    dir.rename(&tmp, dir, name).map_err(|e| e.to_string())
}

/// Orders versions by semantic-version precedence (`1.10.0` after `1.9.0`, `1.0.0-rc.1` before `1.0.0`).
/// Versions are checked to be semantic versions at load; anything else sorts first, by text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp_precedence(&b).then_with(|| a.build.cmp(&b.build)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
        (Err(_), Ok(_)) => std::cmp::Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::compare_versions;

    #[test]
    fn versions_sort_by_semver_precedence() {
        let mut v = vec![
            "1.10.0",
            "1.9.0",
            "0.1.0",
            "1.0.0",
            "1.0.0-rc.1",
            "1.0.0-alpha",
            "2.0.0-beta.2",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "0.1.0",
                "1.0.0-alpha",
                "1.0.0-rc.1",
                "1.0.0",
                "1.9.0",
                "1.10.0",
                "2.0.0-beta.2"
            ]
        );
        assert!(compare_versions("1.0.0", "not-semver").is_gt());
    }
}
