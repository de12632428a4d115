//! Instances kept warm between the calls of one system.
//!
//! A fresh store and instance per call costs instantiation and, when the store is dropped, the reset of the
//! memory the guest touched: together about half of a short call (a proxy `GET /Users/{id}`). A call that
//! ended cleanly therefore hands its instance back here, and the next call *for the same system, the same
//! plugin version and the same properties* takes it. Instances are never shared between systems, so one
//! system's data and credentials stay out of another's instance. Any trap, limit hit, throttling or stderr
//! output discards the instance (the next call starts fresh), as do [`MAX_USES`] calls and [`MAX_IDLE`]
//! of idleness.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::Instance;
use super::state::CallState;

/// Most instances kept idle across all systems; each holds one slot of the instance pool. As many as one
/// system may have in flight (`max_calls_per_system`'s default): with fewer, a busy proxy system dropped
/// (and reset the memory of) an instance after most calls and instantiated another for the next.
pub const CAPACITY: usize = 64;

/// Calls one instance serves before it is replaced, so that a guest's slow leaks cannot accumulate.
pub const MAX_USES: u32 = 10_000;

/// How long an idle instance is kept.
pub const MAX_IDLE: Duration = Duration::from_secs(60);

/// Linear memory above which an instance is not kept (a page read may have grown it a lot).
pub const MAX_MEMORY: usize = 32 << 20;

/// Whose calls an instance may serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The plugin version's content digest.
    pub digest: String,
    /// The system the instance has served.
    pub system_id: String,
    /// The non-secret properties the guest was given.
    pub properties: Vec<(String, String)>,
}

impl Owner {
    /// Whether this owner is the plugin version `digest` serving `system_id` with `properties` (compared in
    /// place: a call looks for its instance without copying its system's properties).
    pub fn is(&self, digest: &str, system_id: &str, properties: &[(String, String)]) -> bool {
        self.digest == digest && self.system_id == system_id && self.properties == properties
    }
}

/// An instance with its store, between calls.
pub struct Warm {
    /// The system and plugin version the instance was made for.
    pub owner: Owner,
    /// Its store (the guest's memory and the call state).
    pub store: Store<CallState>,
    /// The instance.
    pub instance: Instance,
    /// Calls made in it so far.
    pub uses: u32,
    idle_since: Instant,
}

impl Warm {
    /// An instance that has just served `uses` calls for `owner`.
    pub fn new(owner: Owner, store: Store<CallState>, instance: Instance, uses: u32) -> Warm {
        Warm {
            owner,
            store,
            instance,
            uses,
            idle_since: Instant::now(),
        }
    }
}

/// The idle instances, oldest first.
#[derive(Default)]
pub struct WarmPool {
    idle: Mutex<VecDeque<Warm>>,
}

impl WarmPool {
    /// An idle instance of plugin version `digest` for `system_id` with `properties`, if one is kept.
    pub fn take(&self, digest: &str, system_id: &str, properties: &[(String, String)]) -> Option<Warm> {
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while idle.front().is_some_and(|w| w.idle_since.elapsed() > MAX_IDLE) {
                expired.extend(idle.pop_front());
            }
            let position = idle.iter().rposition(|w| w.owner.is(digest, system_id, properties));
            position.and_then(|i| idle.remove(i))
        };
        // Dropping a store resets its memory: never under the lock.
        drop(expired);
        found
    }

    /// Keeps `warm` for the next call of its owner; the oldest idle instance goes when the pool is full.
    pub fn put(&self, warm: Warm) {
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push_back(warm);
            if idle.len() > CAPACITY { idle.pop_front() } else { None }
        };
        drop(evicted);
    }

    /// Drops every idle instance of a plugin version (it was removed or replaced).
    pub fn forget(&self, digest: &str) {
        let forgotten: VecDeque<Warm> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (gone, kept) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|w| w.owner.digest == digest);
            *idle = kept;
            gone
        };
        drop(forgotten);
    }

    /// How many instances are idle.
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
