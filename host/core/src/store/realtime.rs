//! The real-time outbox: every pushed event, stored before it is acknowledged, then worked off; the rows
//! stay as the real-time log until retention removes them.
//!
//! An appended event is durable when [`EventStore::append`] returns: the caller acknowledges the push only
//! then.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use super::links::{LinkChange, LinkScope};

/// An event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The pushing source system.
    pub source_id: String,
    /// `user` or `group`.
    pub kind: String,
    /// The entity's id in the source.
    pub entity_id: String,
    /// `create`, `replace`, `patch` or `delete`.
    pub operation: String,
    /// The entity (create, replace) or the PatchOp (patch).
    pub body: Option<Value>,
    /// The technical user that pushed it.
    pub received_by: String,
}

/// An event as stored.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Order of arrival.
    pub seq: i64,
    /// Source system.
    pub source_id: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Id in the source.
    pub entity_id: String,
    /// `create`, `replace`, `patch`, `delete`.
    pub operation: String,
    /// When it was acknowledged.
    pub received_at: String,
    /// Who pushed it.
    pub received_by: String,
    /// `pending`, `done`, `failed` (a target refused it for good) or `parked` (retries used up).
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Not before this instant (a retry).
    pub next_attempt_at: Option<String>,
    /// Per target: operation, state, reason.
    pub results: Option<Value>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The body (not in log listings).
    #[serde(skip)]
    pub body: Option<Value>,
}

/// The full entity an event leaves behind for an id (the base of the next PATCH): `body` `None` forgets it.
#[derive(Clone, Debug, PartialEq)]
pub struct PushedEntity {
    /// The pushing source system.
    pub source_id: String,
    /// `user` or `group`.
    pub kind: String,
    /// The entity's id in the source.
    pub entity_id: String,
    /// The entity after the event, or `None` (deleted).
    pub body: Option<Value>,
}

/// An attempt at an event that has ended: its outcome and the writes it made, recorded together by
/// [`EventStore::finish_batch`].
#[derive(Clone, Debug)]
pub struct Finished {
    /// The event.
    pub seq: i64,
    /// Recorded only while this node holds the event's claim (a shared store), as [`EventStore::finish`].
    pub fence: Option<String>,
    /// A final state, or `pending` with `next_attempt_at`.
    pub state: String,
    /// Per target: operation, state, reason.
    pub results: Value,
    /// The next attempt of an event that is retried.
    pub next_attempt_at: Option<String>,
    /// The entity the event leaves behind, when it changed it.
    pub pushed: Option<PushedEntity>,
    /// The link changes of its targets (the outcomes of the writes; create intents are stored before the
    /// write, on their own).
    pub links: Vec<(LinkScope, LinkChange)>,
}

/// The real-time events aggregate: the outbox, the log, and the last full entity pushed per id.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an event durably (committed when this returns) as `pending`.
    async fn append(&self, event: NewEvent) -> Result<EventRecord, StoreError>;
    /// Pending events in order of arrival, without their bodies. The events of an entity whose event is held
    /// under a live claim (being worked by a replica) are left out. The dispatcher takes work with
    /// [`EventStore::claim_next`]; nothing in the service calls this any more (the conformance suite does).
    async fn pending(&self, limit: i64) -> Result<Vec<EventRecord>, StoreError>;
    /// Claims these pending events for `node` for `lease` (by the database's clock), skipping those another
    /// replica holds under a live claim and those that are no longer pending; returns the ones claimed. So
    /// several replicas consume one outbox, each event worked by one replica at a time; a dead replica's
    /// claims expire and its events are claimed again.
    async fn claim(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<Vec<i64>, StoreError>;
    /// Claims for `node`, for `lease` (by the database's clock), up to `room` events that may be worked now,
    /// in order of arrival and with their bodies: pending, under no live claim, their retry time come, and
    /// each the first pending event of its entity (an entity's later event waits while an earlier one is
    /// pending, claimed or not, so per-entity order holds across replicas). Replicas that call this at once
    /// each get events of their own (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so together they fill their
    /// rooms instead of contending for the same head of the outbox. A store one process owns is claimed
    /// the same way: one transaction per scan hands out the events with their bodies.
    async fn claim_next(&self, node: &str, room: i64, lease: Duration) -> Result<Vec<EventRecord>, StoreError>;
    /// Renews `node`'s claims on these events (the ones it is still working on); how many.
    async fn renew_claims(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<u64, StoreError>;
    /// Hands back every claim `node` holds (a replica shutting down): its events may be claimed by another
    /// replica at once; how many.
    async fn release_claims(&self, node: &str) -> Result<u64, StoreError>;
    /// Records the outcome of an attempt: a final state, or `pending` with the time of the next attempt; the
    /// claim ends. With `fence`, only while that node holds the claim (else [`StoreError::Fenced`]).
    async fn finish(
        &self,
        seq: i64,
        fence: Option<&str>,
        state: &str,
        results: &Value,
        next_attempt_at: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Records several ended attempts in one transaction (group commit): each one's outcome as
    /// [`EventStore::finish`], with its pushed entity and link changes. An event whose fence no longer holds
    /// its claim is left as it is, its writes too; their seqs are returned. Either everything else is
    /// committed or nothing is.
    async fn finish_batch(&self, batch: Vec<Finished>) -> Result<Vec<i64>, StoreError>;
    /// Puts a parked or failed event back in the queue; whether it was one.
    async fn redrive(&self, seq: i64) -> Result<bool, StoreError>;
    /// Puts these parked or failed events back in the queue in one transaction (so that they keep their
    /// order among an entity's events); how many were.
    async fn redrive_many(&self, seqs: &[i64]) -> Result<u64, StoreError>;
    /// One event, with its body.
    async fn get(&self, seq: i64) -> Result<Option<EventRecord>, StoreError>;
    /// The log, newest first, optionally of one source and one state, before `before_seq`.
    async fn list(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The last full entity pushed for an id (the base of a PATCH).
    async fn pushed_entity(&self, source: &str, kind: &str, id: &str) -> Result<Option<Value>, StoreError>;
    /// Remembers (or, with `None`, forgets) the full entity of an id.
    async fn set_pushed_entity(
        &self,
        source: &str,
        kind: &str,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(), StoreError>;
}
