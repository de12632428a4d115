//! Pruning by age in small batches: each call deletes at most `batch` rows (one statement, one short
//! transaction) and answers how many, so that the pruner can pause between batches and real-time writes are
//! never held up behind one long delete. On a store several replicas share, one replica prunes at a time
//! ([`RetentionStore::lead_pruning`]).

use super::StoreError;

/// The right to prune, held by one replica at a time while it lives (dropped: released).
pub struct PruneLease {
    _hold: Option<Box<dyn Send + Sync>>,
}

impl PruneLease {
    /// A lease that holds nothing (a store one process owns).
    pub fn local() -> PruneLease {
        PruneLease { _hold: None }
    }

    /// A lease that holds `hold` (a database session with a lock, say) until it is dropped.
    pub fn holding(hold: Box<dyn Send + Sync>) -> PruneLease {
        PruneLease { _hold: Some(hold) }
    }
}

/// Deleting what is past its retention, a batch at a time.
#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes at most `batch` per-entity log rows of job runs that ended before `before` (store text form);
    /// once a run has no log rows left, the run itself goes (with its held deletes), counted as a row too.
    /// Answers the rows deleted: fewer than `batch` when nothing more is due.
    async fn prune_job_logs(&self, before: &str, batch: usize) -> Result<usize, StoreError>;
    /// Deletes at most `batch` real-time events that ended (done, parked or failed) before `before`.
    async fn prune_events(&self, before: &str, batch: usize) -> Result<usize, StoreError>;
    /// Deletes at most `batch` audit entries recorded before `before`.
    async fn prune_audit(&self, before: &str, batch: usize) -> Result<usize, StoreError>;
    /// Deletes at most `batch` notification deliveries that finished (delivered or failed) before `before`,
    /// with their attempts; a pending delivery stays whatever its age. Answers the deliveries deleted.
    async fn prune_deliveries(&self, before: &str, batch: usize) -> Result<usize, StoreError>;
    /// The right to prune now: `None` while another replica holds it.
    async fn lead_pruning(&self) -> Result<Option<PruneLease>, StoreError>;
}
