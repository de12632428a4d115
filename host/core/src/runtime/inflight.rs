//! Calls in flight per system: one slow system must not take every call slot.
//!
//! The runtime's global slots bound instances alive at once. Without a bound per system, calls to one
//! backend that answers slowly hold all of them, and every other system's calls queue behind it. So each
//! system gets at most `max_calls_per_system` calls running and `max_waiting_per_system` waiting; a call
//! beyond both fails at once, naming the system, instead of piling up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Systems whose gates are kept; beyond it idle gates are dropped.
const KEPT_GATES: usize = 1024;

struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The per-system gates.
pub struct SystemGates {
    in_flight: usize,
    waiting: usize,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// A system has as many calls running and waiting as it may have.
#[derive(Debug, Clone, PartialEq)]
pub struct Busy {
    /// Calls running for it (the limit).
    pub in_flight: usize,
    /// Calls waiting for it (the limit).
    pub waiting: usize,
}

/// Decrements a gate's waiting count when the waiting call is admitted or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SystemGates {
    /// At most `in_flight` calls running and `waiting` waiting per system (each at least 1 and 0).
    pub fn new(in_flight: usize, waiting: usize) -> Self {
        SystemGates {
            in_flight: in_flight.max(1),
            waiting,
            gates: Mutex::default(),
        }
    }

    fn gate(&self, system_id: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = gates.get(system_id) {
            return gate.clone();
        }
        if gates.len() >= KEPT_GATES {
            // A gate nobody holds or waits on has nothing to remember.
            gates.retain(|_, g| Arc::strong_count(&g.slots) > 1 || g.waiting.load(Ordering::Relaxed) > 0);
        }
        let gate = Arc::new(Gate {
            slots: Arc::new(Semaphore::new(self.in_flight)),
            waiting: AtomicUsize::new(0),
        });
        gates.insert(system_id.to_string(), gate.clone());
        gate
    }

    /// Admits a call of `system_id`: at once when it has a free slot, after waiting when fewer than the
    /// limit wait, else not at all. The permit is the slot; dropping it frees the slot.
    pub async fn enter(&self, system_id: &str) -> Result<OwnedSemaphorePermit, Busy> {
        let gate = self.gate(system_id);
        if let Ok(permit) = gate.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let before = gate.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&gate.waiting);
        if before >= self.waiting {
            return Err(self.busy());
        }
        // The semaphore is never closed.
        gate.slots.clone().acquire_owned().await.map_err(|_| self.busy())
    }

    fn busy(&self) -> Busy {
        Busy {
            in_flight: self.in_flight,
            waiting: self.waiting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_system_refuses_at_once_and_others_are_untouched() {
        let gates = SystemGates::new(2, 1);
        let a1 = gates.enter("a").await.expect("first slot");
        let _a2 = gates.enter("a").await.expect("second slot");
        // The third waits; the fourth finds the queue full.
        let gates = Arc::new(gates);
        let waiter = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.enter("a").await.map(drop) })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            gates.enter("a").await.map(drop),
            Err(Busy {
                in_flight: 2,
                waiting: 1
            })
        );
        // Another system is not affected.
        let _b = gates.enter("b").await.expect("b has its own slots");
        drop(a1);
        waiter.await.expect("joined").expect("admitted once a slot is free");
        // The waiter left: the queue is free again.
        let gate = gates.gate("a");
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }
}
