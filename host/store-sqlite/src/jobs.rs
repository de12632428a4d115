//! Job runs on SQLite: runs, their per-entity log, deletes held for approval, the delta-read state of sources,
//! and schedules.

use provisio_core::store::StoreError;
use provisio_core::store::jobs::{
    DeltaState, EntityLogEntry, HeldDelete, JobRecord, JobStatus, JobStore, ScheduleRecord, interrupted_summary,
};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, job: &JobRecord) -> Result<(), StoreError> {
        let job = job.clone();
        self.blocking(move |s| s.insert_job(&job)).await
    }

    async fn update(&self, id: &str, status: JobStatus, read_mode: &str, summary: &Value) -> Result<(), StoreError> {
        let (id, read_mode, summary) = (id.to_owned(), read_mode.to_owned(), summary.clone());
        self.blocking(move |s| s.update_job(&id, status, &read_mode, &summary))
            .await
    }

    async fn start(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.start_job(&id)).await
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.get_job(&id)).await
    }

    async fn list(&self, source: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let source = source.map(str::to_owned);
        self.blocking(move |s| s.list_jobs(source.as_deref(), limit)).await
    }

    async fn interrupt_unfinished(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|s| s.interrupt_unfinished_jobs()).await
    }

    async fn prune(&self, before: &str) -> Result<usize, StoreError> {
        let before = before.to_owned();
        self.blocking(move |s| s.prune_jobs(&before)).await
    }

    async fn append_log(&self, job: &str, first_seq: i64, entries: Vec<EntityLogEntry>) -> Result<(), StoreError> {
        let job = job.to_owned();
        self.blocking(move |s| s.append_entity_log(&job, first_seq, &entries))
            .await
    }

    async fn last_log_seq(&self, job: &str) -> Result<i64, StoreError> {
        let job = job.to_owned();
        self.blocking(move |s| s.last_log_seq(&job)).await
    }

    async fn log(
        &self,
        job: &str,
        outcome: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EntityLogEntry>, StoreError> {
        let (job, outcome) = (job.to_owned(), outcome.map(str::to_owned));
        self.blocking(move |s| s.entity_log(&job, outcome.as_deref(), after_seq, limit))
            .await
    }

    async fn hold_deletes(&self, job: &str, held: Vec<HeldDelete>) -> Result<(), StoreError> {
        let job = job.to_owned();
        self.blocking(move |s| s.hold_deletes(&job, &held)).await
    }

    async fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, StoreError> {
        let job = job.to_owned();
        self.blocking(move |s| s.held_deletes(&job)).await
    }

    async fn decide_held_deletes(&self, job: &str, decision: &str) -> Result<usize, StoreError> {
        let (job, decision) = (job.to_owned(), decision.to_owned());
        self.blocking(move |s| s.decide_held_deletes(&job, &decision)).await
    }

    async fn delta_state(&self, source: &str) -> Result<DeltaState, StoreError> {
        let source = source.to_owned();
        self.blocking(move |s| s.delta_state(&source)).await
    }

    async fn set_delta_state(&self, source: &str, state: &DeltaState) -> Result<(), StoreError> {
        let (source, state) = (source.to_owned(), state.clone());
        self.blocking(move |s| s.set_delta_state(&source, &state)).await
    }

    async fn set_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        let schedule = schedule.clone();
        self.blocking(move |s| s.set_schedule(&schedule)).await
    }

    async fn delete_schedule(&self, source: &str) -> Result<bool, StoreError> {
        let source = source.to_owned();
        self.blocking(move |s| s.delete_schedule(&source)).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.blocking(|s| s.schedules()).await
    }

    async fn claim_schedule_slot(&self, source: &str, slot: &str, unless_since: &str) -> Result<bool, StoreError> {
        let (source, slot, since) = (source.to_owned(), slot.to_owned(), unless_since.to_owned());
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "UPDATE schedules SET last_fired_at = ?2
                 WHERE source_id = ?1 AND (last_fired_at IS NULL OR last_fired_at < ?3)",
                params![source, slot, since],
            )? == 1)
        })
        .await
    }
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

impl SqliteStore {
    /// Records a new job run.
    fn insert_job(&self, job: &JobRecord) -> Result<(), Error> {
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
    fn update_job(&self, id: &str, status: JobStatus, read_mode: &str, summary: &Value) -> Result<(), Error> {
        let ended = status.is_final().then(now);
        self.conn().execute(
            "UPDATE jobs SET status = ?2, read_mode = ?3, summary = ?4, ended_at = COALESCE(?5, ended_at) WHERE id = ?1",
            params![id, status.as_str(), read_mode, summary.to_string(), ended],
        )?;
        Ok(())
    }

    /// Marks a queued run as started.
    fn start_job(&self, id: &str) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE jobs SET status = 'Running', started_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// One run.
    fn get_job(&self, id: &str) -> Result<Option<JobRecord>, Error> {
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
    fn list_jobs(&self, source: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR source_id = ?1) ORDER BY started_at DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![source, limit], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs that were going when the process died: marked as interrupted (Finished with Error); returns them.
    fn interrupt_unfinished_jobs(&self) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let ids: Vec<String> = {
            let mut stmt =
                conn.prepare("SELECT id FROM jobs WHERE status IN ('Queued', 'Running', 'Running with Error')")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for id in &ids {
            let summary: String =
                conn.query_row("SELECT summary FROM jobs WHERE id = ?1", params![id], |r| r.get(0))?;
            let summary = interrupted_summary(&summary);
            conn.execute(
                "UPDATE jobs SET status = 'Finished with Error', summary = ?2, ended_at = ?3 WHERE id = ?1",
                params![id, summary.to_string(), now()],
            )?;
        }
        Ok(ids)
    }

    /// Deletes runs (and their logs) that ended before `before` (RFC 3339).
    fn prune_jobs(&self, before: &str) -> Result<usize, Error> {
        Ok(self.conn().execute(
            "DELETE FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?1",
            params![before],
        )?)
    }

    /// Appends lines to a run's log; `seq` numbers continue from `first_seq`.
    fn append_entity_log(&self, job: &str, first_seq: i64, entries: &[EntityLogEntry]) -> Result<(), Error> {
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
    fn last_log_seq(&self, job: &str) -> Result<i64, Error> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM job_entities WHERE job_id = ?1",
            params![job],
            |r| r.get(0),
        )?)
    }

    /// A page of a run's log, optionally only one outcome (`failed`, …).
    fn entity_log(
        &self,
        job: &str,
        outcome: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EntityLogEntry>, Error> {
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
    fn hold_deletes(&self, job: &str, held: &[HeldDelete]) -> Result<(), Error> {
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
    fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, Error> {
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
    fn decide_held_deletes(&self, job: &str, decision: &str) -> Result<usize, Error> {
        Ok(self.conn().execute(
            "UPDATE held_deletes SET decision = ?2 WHERE job_id = ?1 AND decision IS NULL",
            params![job, decision],
        )?)
    }

    /// The delta-read state of a source.
    fn delta_state(&self, source: &str) -> Result<DeltaState, Error> {
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
    fn set_delta_state(&self, source: &str, state: &DeltaState) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO source_state (source_id, user_watermark, group_watermark, scheduled_deltas) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source_id) DO UPDATE SET user_watermark = ?2, group_watermark = ?3, scheduled_deltas = ?4",
            params![source, state.user_watermark, state.group_watermark, state.scheduled_deltas],
        )?;
        Ok(())
    }

    /// Sets (replaces) a source's schedule.
    fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO schedules (source_id, job_type, every_secs, cron, enabled, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (source_id) DO UPDATE SET job_type = ?2, every_secs = ?3, cron = ?4, enabled = ?5, updated_at = ?6",
            params![s.source_id, s.job_type, s.every_seconds, s.cron, s.enabled, now()],
        )?;
        Ok(())
    }

    /// Removes a source's schedule; whether there was one.
    fn delete_schedule(&self, source: &str) -> Result<bool, Error> {
        Ok(self
            .conn()
            .execute("DELETE FROM schedules WHERE source_id = ?1", params![source])?
            > 0)
    }

    /// Every schedule.
    fn schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
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
