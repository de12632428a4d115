//! Precompiled components on disk, keyed by the component's digest and the engine's compatibility hash.
//!
//! Compiling a component takes 100+ ms; loading the precompiled artifact takes well under a millisecond.
//! Only artifacts this process family compiled are ever deserialized: they live in the data directory,
//! which the host alone writes, under names derived from what was compiled.

use std::hash::{Hash, Hasher};

use cap_std::fs::Dir;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The artifact cache, or none (tests, read-only installs).
pub struct ArtifactCache {
    dir: Option<Dir>,
    engine_tag: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing) for components compiled by `engine`.
    pub fn new(engine: &Engine, dir: Option<Dir>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_tag: format!("{:016x}", hasher.finish()),
        }
    }

    fn file_name(&self, digest: &str) -> String {
        format!("{digest}-{}.cwasm", self.engine_tag)
    }

    /// The cached component for this digest, if there is a usable one.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let dir = self.dir.as_ref()?;
        let bytes = dir.read(self.file_name(digest)).ok()?;
        // SAFETY: the file was written by `store` below from `Component::serialize` of an engine with the
        // same compatibility hash (it is in the name); nothing else writes this directory.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(digest, error = %e, "discarding an unusable precompiled artifact");
                let _ = dir.remove_file(self.file_name(digest));
                None
            }
        }
    }

    /// Stores a compiled component; failures only cost a recompilation later.
    pub fn store(&self, digest: &str, component: &Component) {
        let Some(dir) = self.dir.as_ref() else { return };
        let result = component.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            // A unique temporary name: concurrent writers never share a file, and the rename is atomic.
            let tmp = format!("{}.{}.tmp", self.file_name(digest), uuid::Uuid::new_v4());
            dir.write(&tmp, bytes).map_err(|e| e.to_string())?;
            dir.rename(&tmp, dir, self.file_name(digest)).map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            tracing::warn!(digest, error = %e, "cannot cache the precompiled artifact");
        }
    }
}
