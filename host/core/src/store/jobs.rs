//! Job runs, their per-entity log, deletes held for approval, the delta-read state of sources, and
//! schedules.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, StoreError, now};

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

    fn parse(s: &str) -> JobStatus {
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
}

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

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = r.get(6)?;
    let summary: String = r.get(7)?;
    Ok(JobRecord {
        id: r.get(0)?,
        source_id: r.get(1)?,
        job_type: r.get(2)?,
        read_mode: r.get(3)?,
        trigger: r.get(4)?,
        started_by: r.get(5)?,
        status: JobStatus::parse(&status),
        summary: serde_json::from_str(&summary).unwrap_or(Value::Null),
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
    })
}

const JOB_COLUMNS: &str = "id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at";

impl Store {
    /// Records a new job run.
    pub fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO jobs (id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                job.id,
                job.source_id,
                job.job_type,
                job.read_mode,
                job.trigger,
                job.started_by,
                job.status.as_str(),
                job.summary.to_string(),
                job.started_at,
                job.ended_at
            ],
        )?;
        Ok(())
    }

    /// Updates a run's status, mode and summary; a final status sets the end time.
    pub fn update_job(&self, id: &str, status: JobStatus, read_mode: &str, summary: &Value) -> Result<(), StoreError> {
        let ended = status.is_final().then(now);
        self.conn().execute(
            "UPDATE jobs SET status = ?2, read_mode = ?3, summary = ?4, ended_at = COALESCE(?5, ended_at) WHERE id = ?1",
            params![id, status.as_str(), read_mode, summary.to_string(), ended],
        )?;
        Ok(())
    }

    /// Marks a queued run as started.
    pub fn start_job(&self, id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET status = 'Running', started_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// One run.
    pub fn get_job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?)
    }

    /// Runs, newest first, of one source or of all.
    pub fn list_jobs(&self, source: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR source_id = ?1) ORDER BY started_at DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![source, limit], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs that were going when the process died: marked as interrupted (Finished with Error); returns them.
    pub fn interrupt_unfinished_jobs(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let ids: Vec<String> = {
            let mut stmt =
                conn.prepare("SELECT id FROM jobs WHERE status IN ('Queued', 'Running', 'Running with Error')")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for id in &ids {
            let summary: String =
                conn.query_row("SELECT summary FROM jobs WHERE id = ?1", params![id], |r| r.get(0))?;
            let mut summary: Value =
                serde_json::from_str(&summary).unwrap_or_else(|_| Value::Object(Default::default()));
            if let Some(object) = summary.as_object_mut() {
                object.insert("interrupted".into(), Value::Bool(true));
                let outcome = object.entry("outcome").or_insert_with(|| Value::Array(vec![]));
                if let Some(list) = outcome.as_array_mut() {
                    list.push(Value::String(
                        "The service stopped during this run. The next run continues from what was recorded; nothing is written twice.".into(),
                    ));
                }
            }
            conn.execute(
                "UPDATE jobs SET status = 'Finished with Error', summary = ?2, ended_at = ?3 WHERE id = ?1",
                params![id, summary.to_string(), now()],
            )?;
        }
        Ok(ids)
    }

    /// Deletes runs (and their logs) that ended before `before` (RFC 3339).
    pub fn prune_jobs(&self, before: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?1",
            params![before],
        )?)
    }

    /// Appends lines to a run's log; `seq` numbers continue from `first_seq`.
    pub fn append_entity_log(&self, job: &str, first_seq: i64, entries: &[EntityLogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO job_entities (job_id, seq, at, target_id, kind, source_entity, target_entity, operation, outcome, reason, changes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let at = now();
            for (i, e) in entries.iter().enumerate() {
                stmt.execute(params![
                    job,
                    first_seq + i as i64,
                    at,
                    e.target_id,
                    e.entity_type,
                    e.source_id,
                    e.target_entity_id,
                    e.operation,
                    e.outcome,
                    e.reason,
                    e.changes.as_ref().map(Value::to_string)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last sequence number of a run's log (0 when empty).
    pub fn last_log_seq(&self, job: &str) -> Result<i64, StoreError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM job_entities WHERE job_id = ?1",
            params![job],
            |r| r.get(0),
        )?)
    }

    /// A page of a run's log, optionally only one outcome (`failed`, …).
    pub fn entity_log(
        &self,
        job: &str,
        outcome: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EntityLogEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, target_id, kind, source_entity, target_entity, operation, outcome, reason, changes
             FROM job_entities WHERE job_id = ?1 AND seq > ?2 AND (?3 IS NULL OR outcome = ?3) ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![job, after_seq, outcome, limit], |r| {
            let changes: Option<String> = r.get(9)?;
            Ok(EntityLogEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                target_id: r.get(2)?,
                entity_type: r.get(3)?,
                source_id: r.get(4)?,
                target_entity_id: r.get(5)?,
                operation: r.get(6)?,
                outcome: r.get(7)?,
                reason: r.get(8)?,
                changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records deletes held back by a threshold.
    pub fn hold_deletes(&self, job: &str, held: &[HeldDelete]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO held_deletes (job_id, target_id, kind, source_entity, target_entity, decision)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            )?;
            for h in held {
                stmt.execute(params![
                    job,
                    h.target_id,
                    h.entity_type,
                    h.source_id,
                    h.target_entity_id
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The deletes a run held, decided or not.
    pub fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT target_id, kind, source_entity, target_entity, decision FROM held_deletes WHERE job_id = ?1
             ORDER BY target_id, kind DESC, source_entity",
        )?;
        let rows = stmt.query_map(params![job], |r| {
            Ok(HeldDelete {
                target_id: r.get(0)?,
                entity_type: r.get(1)?,
                source_id: r.get(2)?,
                target_entity_id: r.get(3)?,
                decision: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the admin's decision on every pending held delete of a run; returns how many were pending.
    pub fn decide_held_deletes(&self, job: &str, decision: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE held_deletes SET decision = ?2 WHERE job_id = ?1 AND decision IS NULL",
            params![job, decision],
        )?)
    }

    /// The delta-read state of a source.
    pub fn delta_state(&self, source: &str) -> Result<DeltaState, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT user_watermark, group_watermark, scheduled_deltas FROM source_state WHERE source_id = ?1",
                params![source],
                |r| {
                    Ok(DeltaState {
                        user_watermark: r.get(0)?,
                        group_watermark: r.get(1)?,
                        scheduled_deltas: r.get(2)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Stores the delta-read state of a source.
    pub fn set_delta_state(&self, source: &str, state: &DeltaState) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO source_state (source_id, user_watermark, group_watermark, scheduled_deltas) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source_id) DO UPDATE SET user_watermark = ?2, group_watermark = ?3, scheduled_deltas = ?4",
            params![source, state.user_watermark, state.group_watermark, state.scheduled_deltas],
        )?;
        Ok(())
    }

    /// Sets (replaces) a source's schedule.
    pub fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO schedules (source_id, job_type, every_secs, cron, enabled, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (source_id) DO UPDATE SET job_type = ?2, every_secs = ?3, cron = ?4, enabled = ?5, updated_at = ?6",
            params![s.source_id, s.job_type, s.every_seconds, s.cron, s.enabled, now()],
        )?;
        Ok(())
    }

    /// Removes a source's schedule; whether there was one.
    pub fn delete_schedule(&self, source: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM schedules WHERE source_id = ?1", params![source])?
            > 0)
    }

    /// Every schedule.
    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT source_id, job_type, every_secs, cron, enabled FROM schedules")?;
        let rows = stmt.query_map([], |r| {
            Ok(ScheduleRecord {
                source_id: r.get(0)?,
                job_type: r.get(1)?,
                every_seconds: r.get(2)?,
                cron: r.get(3)?,
                enabled: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store_with_source() -> Store {
        let store = crate::store::test_store();
        store
            .conn()
            .execute(
                "INSERT INTO systems (id, name, connector, role, properties, secrets, sources, created_at, updated_at)
                 VALUES ('s', 's', 'scim', 'source', '{}', x'', '[]', '', '')",
                [],
            )
            .expect("system");
        store
    }

    fn job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            source_id: "s".into(),
            job_type: "read".into(),
            read_mode: "full".into(),
            trigger: "manual".into(),
            started_by: "admin".into(),
            status: JobStatus::Running,
            summary: json!({}),
            started_at: now(),
            ended_at: None,
        }
    }

    #[test]
    fn a_killed_run_is_marked_interrupted() {
        let store = store_with_source();
        store.insert_job(&job("j1")).expect("insert");
        assert_eq!(
            store.interrupt_unfinished_jobs().expect("interrupt"),
            vec!["j1".to_string()]
        );
        let j = store.get_job("j1").expect("get").expect("present");
        assert_eq!(j.status, JobStatus::FinishedWithError);
        assert_eq!(j.summary["interrupted"], json!(true));
        assert!(j.ended_at.is_some());
        assert!(store.interrupt_unfinished_jobs().expect("again").is_empty());
    }

    #[test]
    fn entity_log_pages_and_filters() {
        let store = store_with_source();
        store.insert_job(&job("j1")).expect("insert");
        let entry = |outcome: &str| EntityLogEntry {
            entity_type: "user".into(),
            operation: "create".into(),
            outcome: outcome.into(),
            ..Default::default()
        };
        store
            .append_entity_log("j1", 1, &[entry("success"), entry("failed"), entry("success")])
            .expect("append");
        assert_eq!(store.entity_log("j1", None, 0, 10).expect("all").len(), 3);
        assert_eq!(store.entity_log("j1", None, 1, 1).expect("page")[0].seq, 2);
        assert_eq!(store.entity_log("j1", Some("failed"), 0, 10).expect("failed").len(), 1);
    }

    #[test]
    fn held_deletes_are_decided_once() {
        let store = store_with_source();
        store.insert_job(&job("j1")).expect("insert");
        let held = HeldDelete {
            target_id: "t".into(),
            entity_type: "user".into(),
            source_id: "a".into(),
            target_entity_id: "T-a".into(),
            decision: None,
        };
        store.hold_deletes("j1", &[held]).expect("hold");
        assert_eq!(store.decide_held_deletes("j1", "approved").expect("decide"), 1);
        assert_eq!(store.decide_held_deletes("j1", "rejected").expect("again"), 0);
        assert_eq!(
            store.held_deletes("j1").expect("list")[0].decision.as_deref(),
            Some("approved")
        );
    }
}
