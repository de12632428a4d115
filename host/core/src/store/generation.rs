//! Views built from systems — secrets decrypted, transformations parsed — kept until a system is written.
//! Each entry remembers the [`SystemStore::generation`](super::systems::SystemStore::generation) it was built
//! at and is stale once the generation has moved on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Most entries kept; beyond it the cache starts over (systems are few: this only bounds a flood of ids).
const MAX_ENTRIES: usize = 1024;

/// Values by system id, each valid for the systems generation it was built at.
pub struct ByGeneration<V> {
    entries: Mutex<HashMap<String, (u64, Arc<V>)>>,
}

impl<V> Default for ByGeneration<V> {
    fn default() -> Self {
        ByGeneration {
            entries: Mutex::default(),
        }
    }
}

impl<V> ByGeneration<V> {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, (u64, Arc<V>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `id` if it was built at `generation`.
    pub fn get(&self, id: &str, generation: u64) -> Option<Arc<V>> {
        self.entries()
            .get(id)
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value` for `id`, built at `generation`.
    pub fn insert(&self, id: &str, generation: u64, value: Arc<V>) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(id.to_string(), (generation, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_its_generation_only_and_the_cache_stays_bounded() {
        let cache = ByGeneration::default();
        cache.insert("a", 1, Arc::new("one"));
        assert_eq!(cache.get("a", 1).as_deref(), Some(&"one"));
        assert_eq!(cache.get("a", 2), None);
        assert_eq!(cache.get("b", 1), None);
        for i in 0..MAX_ENTRIES + 5 {
            cache.insert(&i.to_string(), 1, Arc::new("x"));
        }
        assert!(cache.entries().len() <= MAX_ENTRIES);
    }
}
