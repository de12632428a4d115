//! Job runs, their per-entity log, deletes held for approval, the delta-read state of sources, and
//! schedules.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;

/// The state of a job run, in the words of SAP's job log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting for the run of the same source before it.
    Queued,
    /// Running, nothing failed so far.
    Running,
    /// Running; at least one entity failed.
    #[serde(rename = "Running with Error")]
    RunningWithError,
    /// Finished, nothing failed.
    Success,
    /// Finished; entities failed, deletes were held, or the run was interrupted.
    #[serde(rename = "Finished with Error")]
    FinishedWithError,
    /// Stopped by an admin at an entity boundary.
    #[serde(rename = "Manually Terminated")]
    ManuallyTerminated,
}

impl JobStatus {
    /// The stored (and displayed) text.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "Queued",
            JobStatus::Running => "Running",
            JobStatus::RunningWithError => "Running with Error",
            JobStatus::Success => "Success",
            JobStatus::FinishedWithError => "Finished with Error",
            JobStatus::ManuallyTerminated => "Manually Terminated",
        }
    }

    /// The status of a stored name (see [`JobStatus::as_str`]).
    pub fn parse(s: &str) -> JobStatus {
        match s {
            "Queued" => JobStatus::Queued,
            "Running" => JobStatus::Running,
            "Running with Error" => JobStatus::RunningWithError,
            "Success" => JobStatus::Success,
            "Manually Terminated" => JobStatus::ManuallyTerminated,
            _ => JobStatus::FinishedWithError,
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Success | JobStatus::FinishedWithError | JobStatus::ManuallyTerminated
        )
    }
}

/// A job run as stored; `summary` carries statistics, outcome and progress as JSON.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// Id.
    pub id: String,
    /// The source system.
    pub source_id: String,
    /// `read`, `resync` or `simulate`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `full` or `delta`.
    pub read_mode: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// Who started it.
    pub started_by: String,
    /// Status.
    pub status: JobStatus,
    /// Statistics, outcome, progress.
    pub summary: Value,
    /// Start (or queue) time.
    pub started_at: String,
    /// End time.
    pub ended_at: Option<String>,
    /// The replica (node) that runs it, or ran it last.
    pub node: Option<String>,
    /// How many replicas have held it: 1, plus one per takeover.
    pub attempt: i64,
}

impl JobRecord {
    /// The claim this record's node holds on it.
    pub fn claim(&self) -> Claim {
        Claim {
            job: self.id.clone(),
            node: self.node.clone().unwrap_or_default(),
            attempt: self.attempt,
        }
    }
}

/// A replica's claim on a run. Every write the run makes is fenced by it: once another replica has taken
/// the run over (a higher attempt), the old claim's writes fail with [`StoreError::Fenced`], so a replica
/// that stalled and came back cannot write over its successor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The run.
    pub job: String,
    /// The replica holding it.
    pub node: String,
    /// Which holder this is (1 for the replica that started it).
    pub attempt: i64,
}

/// How long a claim holds without being renewed; after that another replica takes the run over.
pub const LEASE: Duration = Duration::from_secs(10);

/// How often a replica renews its claims and looks for runs whose claim expired. A run whose replica died is
/// taken over within `LEASE + HEARTBEAT` (12.5 s); a replica would have to miss four beats in a row to lose a
/// run it is still working on.
pub const HEARTBEAT: Duration = Duration::from_millis(2500);

/// One line of a job's per-entity log.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EntityLogEntry {
    /// Order within the job.
    #[serde(default)]
    pub seq: i64,
    /// When.
    #[serde(default)]
    pub at: String,
    /// The target it concerns; `None` for the source side (read, read transformation).
    pub target_id: Option<String>,
    /// `user` or `group`.
    pub entity_type: String,
    /// The source entity id, when known.
    pub source_id: Option<String>,
    /// The target entity id, when known.
    pub target_entity_id: Option<String>,
    /// `read`, `create`, `update`, `delete`, `match`, `assign`.
    pub operation: String,
    /// `success`, `failed`, `skipped`, `held` or `planned` (simulation).
    pub outcome: String,
    /// Why (failure message, skip reason).
    pub reason: Option<String>,
    /// The attribute-level change, values redacted unless tracing asks for content.
    pub changes: Option<Value>,
}

/// A delete held back by a threshold until an admin decides.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeldDelete {
    /// The target system.
    pub target_id: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// The source entity id.
    pub source_id: String,
    /// The target entity id.
    pub target_entity_id: String,
    /// `approved`, `rejected` or `None` while pending.
    pub decision: Option<String>,
}

/// One held delete of a run, as a decision names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeldKey {
    /// The target system.
    pub target_id: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// The source entity id.
    pub source_id: String,
}

impl HeldDelete {
    /// Whether `key` names this held delete.
    pub fn is(&self, key: &HeldKey) -> bool {
        self.target_id == key.target_id && self.entity_type == key.entity_type && self.source_id == key.source_id
    }
}

/// A delete an admin rejected: the next runs neither hold nor delete the entity while its link stays as it
/// was when rejected. Kept per target entity (target system, entity type, target entity id).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedDelete {
    /// The source system whose run held it.
    pub source_system: String,
    /// The target system.
    pub target_id: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// The source entity id.
    pub source_id: String,
    /// The target entity id.
    pub target_entity_id: String,
    /// The link's digest when it was rejected (a change of it lapses the rejection).
    pub digest: Option<String>,
    /// Who rejected it.
    pub rejected_by: String,
    /// When.
    pub rejected_at: String,
}

/// What a delta read of a source needs to remember between runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaState {
    /// Start time of the last successful full or delta read of users.
    pub user_watermark: Option<String>,
    /// The same for groups.
    pub group_watermark: Option<String>,
    /// Scheduled delta runs since the last full read.
    pub scheduled_deltas: i64,
}

/// A source's schedule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    /// The source system.
    #[serde(default)]
    pub source_id: String,
    /// `read` or `resync`.
    #[serde(default = "default_job_type")]
    pub job_type: String,
    /// Run every so many seconds.
    #[serde(default)]
    pub every_seconds: Option<i64>,
    /// Or at the times of a cron expression (UTC).
    #[serde(default)]
    pub cron: Option<String>,
    /// Whether the scheduler is on for this source.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_job_type() -> String {
    "read".into()
}

fn yes() -> bool {
    true
}

/// The summary of a run the process died in, from its stored text: marked interrupted, with an outcome that
/// says so (every backend's [`JobStore::interrupt_unfinished`] writes this).
pub fn interrupted_summary(stored: &str) -> Value {
    let mut summary: Value = serde_json::from_str(stored).unwrap_or_else(|_| Value::Object(Default::default()));
    if let Some(object) = summary.as_object_mut() {
        object.insert("interrupted".into(), Value::Bool(true));
        let outcome = object.entry("outcome").or_insert_with(|| Value::Array(vec![]));
        if let Some(list) = outcome.as_array_mut() {
            list.push(Value::String(
                "The service stopped during this run. The next run continues from what was recorded; nothing is written twice.".into(),
            ));
        }
    }
    summary
}

/// The jobs aggregate: runs, their entity logs, held deletes, the delta-read state of sources, schedules.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Records a new run, claimed by its `node` (attempt 1) for `lease`.
    async fn insert(&self, job: &JobRecord, lease: Duration) -> Result<(), StoreError>;
    /// Sets a run's status, read mode and summary (a final status also sets its end); fenced by `claim`.
    async fn update(
        &self,
        claim: &Claim,
        status: JobStatus,
        read_mode: &str,
        summary: &Value,
    ) -> Result<(), StoreError>;
    /// Makes a claimed run its source's running one, unless another run of the same source is running (on
    /// any replica): `false` then, and the run stays queued. Fenced by `claim`; a run that is running already
    /// answers `true`.
    async fn start(&self, claim: &Claim) -> Result<bool, StoreError>;
    /// Whether a run of `source` is running, on any replica.
    async fn busy(&self, source: &str) -> Result<bool, StoreError>;
    /// Hands `node`'s claims on these unfinished runs back (a replica shutting down): their leases end now,
    /// so that another replica takes them over at its next beat rather than after the lease; how many.
    async fn release(&self, node: &str, jobs: &[String]) -> Result<u64, StoreError>;
    /// Forgets `node` among the live replicas (it is shutting down): the others' shares of rate limits grow
    /// at their next beat.
    async fn leave(&self, node: &str) -> Result<(), StoreError>;
    /// Renews, for `lease` from now by the database's clock, `node`'s claims on these unfinished runs (the
    /// ones it is running or has queued: a run it no longer works on expires and is taken over); how many.
    async fn renew(&self, node: &str, jobs: &[String], lease: Duration) -> Result<u64, StoreError>;
    /// Claims for `node` (for `lease`) up to `limit` unfinished runs whose claim has expired, each with its
    /// attempt raised by one: the old holder's writes are fenced from then on. Returns them as claimed now;
    /// two replicas never claim the same run.
    async fn take_over(&self, node: &str, lease: Duration, limit: i64) -> Result<Vec<JobRecord>, StoreError>;
    /// One run.
    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// The newest runs, optionally of one source.
    async fn list(&self, source: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, StoreError>;
    /// Records that `node` is alive now (by the database's clock) and answers how many replicas were seen
    /// within `within` (itself included): each sends its share of a target's rate limit.
    async fn beat(&self, node: &str, within: Duration) -> Result<u64, StoreError>;
    /// Asks the replica holding an unfinished run to stop it (a stop that reached another replica); whether
    /// the run was unfinished.
    async fn request_stop(&self, id: &str) -> Result<bool, StoreError>;
    /// Of these runs, those whose stop was asked through [`JobStore::request_stop`].
    async fn stops_requested(&self, jobs: &[String]) -> Result<Vec<String>, StoreError>;
    /// Runs that were going when the process died: finished with an error that says so; returns their ids.
    /// Only for a store one process owns (on a shared store, other replicas' runs are alive, and a dead
    /// replica's runs are taken over instead).
    async fn interrupt_unfinished(&self) -> Result<Vec<String>, StoreError>;
    /// Appends lines to a run's log, numbered on from `first_seq`; fenced by `fence` when the run writes them
    /// (an admin's decision on a finished run has none).
    async fn append_log(
        &self,
        job: &str,
        fence: Option<&Claim>,
        first_seq: i64,
        entries: Vec<EntityLogEntry>,
    ) -> Result<(), StoreError>;
    /// The last sequence number of a run's log (0 when empty).
    async fn last_log_seq(&self, job: &str) -> Result<i64, StoreError>;
    /// A page of a run's log after `after_seq`, optionally of one outcome.
    async fn log(
        &self,
        job: &str,
        outcome: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EntityLogEntry>, StoreError>;
    /// Holds deletes back for the admin's decision; fenced by the run's claim.
    async fn hold_deletes(&self, claim: &Claim, held: Vec<HeldDelete>) -> Result<(), StoreError>;
    /// A run's held deletes.
    async fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, StoreError>;
    /// Approves or rejects a run's undecided held deletes — all of them, or only those `only` names; how many
    /// were decided.
    async fn decide_held_deletes(
        &self,
        job: &str,
        decision: &str,
        only: Option<&[HeldKey]>,
    ) -> Result<usize, StoreError>;
    /// Remembers rejected deletes (replacing an earlier rejection of the same target entity).
    async fn reject_deletes(&self, rejected: Vec<RejectedDelete>) -> Result<(), StoreError>;
    /// The rejected deletes of a source's entities of one type in a target.
    async fn rejected_deletes(
        &self,
        source_system: &str,
        target: &str,
        entity_type: &str,
    ) -> Result<Vec<RejectedDelete>, StoreError>;
    /// Forgets the rejections of these target entities (their link changed, or the source has them again);
    /// how many.
    async fn lapse_rejected_deletes(
        &self,
        target: &str,
        entity_type: &str,
        target_entities: Vec<String>,
    ) -> Result<usize, StoreError>;
    /// A source's delta-read state.
    async fn delta_state(&self, source: &str) -> Result<DeltaState, StoreError>;
    /// Stores a source's delta-read state; fenced by the claim of the run that read it.
    async fn set_delta_state(&self, source: &str, state: &DeltaState, fence: Option<&Claim>) -> Result<(), StoreError>;
    /// Creates or replaces a source's schedule.
    async fn set_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError>;
    /// Removes a source's schedule; whether there was one.
    async fn delete_schedule(&self, source: &str) -> Result<bool, StoreError>;
    /// Every schedule.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// Claims a source's schedule slot `slot` for this replica: true when no slot was fired at or after
    /// `unless_since` (then `slot` is recorded as fired), false when another replica fired this period
    /// already. The same for all replicas, so that a schedule fires once per period across the cluster.
    async fn claim_schedule_slot(&self, source: &str, slot: &str, unless_since: &str) -> Result<bool, StoreError>;
}
