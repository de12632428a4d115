//! Job runs on SQLite: runs, their per-entity log, deletes held for approval, the delta-read state of sources,
//! and schedules.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::jobs::{
    Claim, DeltaState, EntityLogEntry, HeldDelete, HeldKey, JobRecord, JobStatus, JobStore, RejectedDelete,
    ScheduleRecord, interrupted_summary,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::{Error, SqliteStore, millis_after, now};

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, job: &JobRecord, lease: Duration) -> Result<(), StoreError> {
        let job = job.clone();
        self.blocking(move |s| s.insert_job(&job, lease)).await
    }

    async fn update(
        &self,
        claim: &Claim,
        status: JobStatus,
        read_mode: &str,
        summary: &Value,
    ) -> Result<(), StoreError> {
        let (claim, read_mode, summary) = (claim.clone(), read_mode.to_owned(), summary.clone());
        self.blocking(move |s| s.update_job(&claim, status, &read_mode, &summary))
            .await
    }

    async fn start(&self, claim: &Claim) -> Result<bool, StoreError> {
        let claim = claim.clone();
        self.blocking(move |s| s.start_job(&claim)).await
    }

    async fn busy(&self, source: &str) -> Result<bool, StoreError> {
        let source = source.to_owned();
        self.blocking(move |s| {
            Ok(s.conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE source_id = ?1 AND status IN ('Running', 'Running with Error'))",
                params![source],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn release(&self, node: &str, jobs: &[String]) -> Result<u64, StoreError> {
        let (node, jobs) = (node.to_owned(), jobs.to_vec());
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "UPDATE jobs SET lease_until = ?3
                 WHERE node = ?1 AND id = ?2 AND status IN ('Queued', 'Running', 'Running with Error')",
            )?;
            let ended = millis_after(Duration::ZERO) - 1000;
            let mut n = 0;
            for job in &jobs {
                n += stmt.execute(params![node, job, ended])? as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.blocking(move |s| {
            s.conn().execute("DELETE FROM nodes WHERE name = ?1", params![node])?;
            Ok(())
        })
        .await
    }

    async fn renew(&self, node: &str, jobs: &[String], lease: Duration) -> Result<u64, StoreError> {
        let (node, jobs) = (node.to_owned(), jobs.to_vec());
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "UPDATE jobs SET lease_until = ?3
                 WHERE node = ?1 AND id = ?2 AND status IN ('Queued', 'Running', 'Running with Error')",
            )?;
            let until = millis_after(lease);
            let mut n = 0;
            for job in &jobs {
                n += stmt.execute(params![node, job, until])? as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn beat(&self, node: &str, within: Duration) -> Result<u64, StoreError> {
        let node = node.to_owned();
        self.blocking(move |s| {
            let conn = s.conn();
            let now = millis_after(Duration::ZERO);
            conn.execute(
                "INSERT INTO nodes (name, last_seen) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET last_seen = ?2",
                params![node, now],
            )?;
            let live: i64 = conn.query_row(
                "SELECT count(*) FROM nodes WHERE last_seen > ?1",
                params![now - within.as_millis() as i64],
                |r| r.get(0),
            )?;
            Ok(live.max(1) as u64)
        })
        .await
    }

    async fn request_stop(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "UPDATE jobs SET stop_requested = 1 WHERE id = ?1 AND status IN ('Queued', 'Running', 'Running with Error')",
                params![id],
            )? > 0)
        })
        .await
    }

    async fn stops_requested(&self, jobs: &[String]) -> Result<Vec<String>, StoreError> {
        let jobs = jobs.to_vec();
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND stop_requested = 1")?;
            let mut asked = Vec::new();
            for job in jobs {
                if stmt.exists(params![job])? {
                    asked.push(job);
                }
            }
            Ok(asked)
        })
        .await
    }

    async fn take_over(&self, node: &str, lease: Duration, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let node = node.to_owned();
        self.blocking(move |s| s.take_over_jobs(&node, lease, limit)).await
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

    async fn append_log(
        &self,
        job: &str,
        fence: Option<&Claim>,
        first_seq: i64,
        entries: Vec<EntityLogEntry>,
    ) -> Result<(), StoreError> {
        let (job, fence) = (job.to_owned(), fence.cloned());
        self.blocking(move |s| s.append_entity_log(&job, fence.as_ref(), first_seq, &entries))
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

    async fn hold_deletes(&self, claim: &Claim, held: Vec<HeldDelete>) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.blocking(move |s| s.hold_deletes(&claim, &held)).await
    }

    async fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, StoreError> {
        let job = job.to_owned();
        self.blocking(move |s| s.held_deletes(&job)).await
    }

    async fn decide_held_deletes(
        &self,
        job: &str,
        decision: &str,
        only: Option<&[HeldKey]>,
    ) -> Result<usize, StoreError> {
        let (job, decision, only) = (job.to_owned(), decision.to_owned(), only.map(<[HeldKey]>::to_vec));
        self.blocking(move |s| s.decide_held_deletes(&job, &decision, only.as_deref()))
            .await
    }

    async fn reject_deletes(&self, rejected: Vec<RejectedDelete>) -> Result<(), StoreError> {
        self.blocking(move |s| s.reject_deletes(&rejected)).await
    }

    async fn rejected_deletes(
        &self,
        source_system: &str,
        target: &str,
        entity_type: &str,
    ) -> Result<Vec<RejectedDelete>, StoreError> {
        let (source, target, kind) = (source_system.to_owned(), target.to_owned(), entity_type.to_owned());
        self.blocking(move |s| s.rejected_deletes(&source, &target, &kind))
            .await
    }

    async fn lapse_rejected_deletes(
        &self,
        target: &str,
        entity_type: &str,
        target_entities: Vec<String>,
    ) -> Result<usize, StoreError> {
        let (target, kind) = (target.to_owned(), entity_type.to_owned());
        self.blocking(move |s| s.lapse_rejected_deletes(&target, &kind, &target_entities))
            .await
    }

    async fn delta_state(&self, source: &str) -> Result<DeltaState, StoreError> {
        let source = source.to_owned();
        self.blocking(move |s| s.delta_state(&source)).await
    }

    async fn set_delta_state(&self, source: &str, state: &DeltaState, fence: Option<&Claim>) -> Result<(), StoreError> {
        let (source, state, fence) = (source.to_owned(), state.clone(), fence.cloned());
        self.blocking(move |s| s.set_delta_state(&source, &state, fence.as_ref()))
            .await
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
        node: r.get(10)?,
        attempt: r.get(11)?,
    })
}

const JOB_COLUMNS: &str =
    "id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at, node, attempt";

/// Fails with `Fenced` unless `claim` still holds its run (checked inside the writing transaction).
pub(crate) fn fence(conn: &Connection, claim: &Claim) -> Result<(), Error> {
    let held = conn
        .query_row(
            "SELECT 1 FROM jobs WHERE id = ?1 AND node IS ?2 AND attempt = ?3",
            params![claim.job, claim.node, claim.attempt],
            |_| Ok(()),
        )
        .optional()?;
    held.ok_or_else(|| fenced(claim))
}

fn fenced(claim: &Claim) -> Error {
    Error::Fenced(format!(
        "run {} is no longer held by {} (attempt {})",
        claim.job, claim.node, claim.attempt
    ))
}

impl SqliteStore {
    /// Records a new job run.
    fn insert_job(&self, job: &JobRecord, lease: Duration) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO jobs (id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at,
                               node, attempt, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                job.ended_at,
                job.node,
                job.attempt,
                millis_after(lease)
            ],
        )?;
        Ok(())
    }

    /// Updates a run's status, mode and summary; a final status sets the end time.
    fn update_job(&self, claim: &Claim, status: JobStatus, read_mode: &str, summary: &Value) -> Result<(), Error> {
        let ended = status.is_final().then(now);
        let n = self.conn().execute(
            "UPDATE jobs SET status = ?4, read_mode = ?5, summary = ?6, ended_at = COALESCE(?7, ended_at)
             WHERE id = ?1 AND node IS ?2 AND attempt = ?3",
            params![
                claim.job,
                claim.node,
                claim.attempt,
                status.as_str(),
                read_mode,
                summary.to_string(),
                ended
            ],
        )?;
        if n == 0 {
            return Err(fenced(claim));
        }
        Ok(())
    }

    /// Marks a queued run as started.
    fn start_job(&self, claim: &Claim) -> Result<bool, Error> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE jobs SET status = 'Running', started_at = CASE WHEN status = 'Queued' THEN ?4 ELSE started_at END
             WHERE id = ?1 AND node IS ?2 AND attempt = ?3
               AND NOT EXISTS (SELECT 1 FROM jobs other WHERE other.source_id = jobs.source_id AND other.id <> jobs.id
                                 AND other.status IN ('Running', 'Running with Error'))",
            params![claim.job, claim.node, claim.attempt, now()],
        )?;
        if n > 0 {
            return Ok(true);
        }
        // Not started: because another run holds the source, or because the claim is gone.
        let held: Option<String> = conn
            .query_row(
                "SELECT status FROM jobs WHERE id = ?1 AND node IS ?2 AND attempt = ?3",
                params![claim.job, claim.node, claim.attempt],
                |r| r.get(0),
            )
            .optional()?;
        match held.as_deref() {
            Some("Running" | "Running with Error") => Ok(true),
            Some("Queued") => Ok(false),
            _ => Err(fenced(claim)),
        }
    }

    /// Claims unfinished runs whose lease ended, for `node`, each with its attempt raised.
    fn take_over_jobs(&self, node: &str, lease: Duration, limit: i64) -> Result<Vec<JobRecord>, Error> {
        let mut conn = self.conn();
        // Immediate: the fence reads before it writes, and a deferred transaction that another connection wrote
        // under meanwhile fails at once with "database is locked" instead of waiting for the lock.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM jobs WHERE status IN ('Queued', 'Running', 'Running with Error')
                   AND (lease_until IS NULL OR lease_until < ?1) ORDER BY started_at LIMIT ?2",
            )?;
            stmt.query_map(params![millis_after(Duration::ZERO), limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            tx.execute(
                "UPDATE jobs SET node = ?2, attempt = attempt + 1, lease_until = ?3 WHERE id = ?1",
                params![id, node, millis_after(lease)],
            )?;
            claimed.push(tx.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )?);
        }
        tx.commit()?;
        Ok(claimed)
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

    /// Appends lines to a run's log; `seq` numbers continue from `first_seq`.
    fn append_entity_log(
        &self,
        job: &str,
        fence: Option<&Claim>,
        first_seq: i64,
        entries: &[EntityLogEntry],
    ) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        // Immediate: the fence reads before it writes, and a deferred transaction that another connection wrote
        // under meanwhile fails at once with "database is locked" instead of waiting for the lock.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(claim) = fence {
            self::fence(&tx, claim)?;
        }
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
    fn hold_deletes(&self, claim: &Claim, held: &[HeldDelete]) -> Result<(), Error> {
        let mut conn = self.conn();
        // Immediate: the fence reads before it writes, and a deferred transaction that another connection wrote
        // under meanwhile fails at once with "database is locked" instead of waiting for the lock.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fence(&tx, claim)?;
        let job = &claim.job;
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
    fn decide_held_deletes(&self, job: &str, decision: &str, only: Option<&[HeldKey]>) -> Result<usize, Error> {
        let Some(only) = only else {
            return Ok(self.conn().execute(
                "UPDATE held_deletes SET decision = ?2 WHERE job_id = ?1 AND decision IS NULL",
                params![job, decision],
            )?);
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE held_deletes SET decision = ?2 WHERE job_id = ?1 AND decision IS NULL
                 AND target_id = ?3 AND kind = ?4 AND source_entity = ?5",
            )?;
            for key in only {
                n += stmt.execute(params![job, decision, key.target_id, key.entity_type, key.source_id])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Remembers rejected deletes, replacing earlier rejections of the same target entities.
    fn reject_deletes(&self, rejected: &[RejectedDelete]) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO rejected_deletes
                 (target_id, kind, target_entity, source_system, source_entity, digest, rejected_by, rejected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rejected {
                stmt.execute(params![
                    r.target_id,
                    r.entity_type,
                    r.target_entity_id,
                    r.source_system,
                    r.source_id,
                    r.digest,
                    r.rejected_by,
                    r.rejected_at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The rejected deletes of a source's entities of one type in a target.
    fn rejected_deletes(&self, source: &str, target: &str, kind: &str) -> Result<Vec<RejectedDelete>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT source_system, target_id, kind, source_entity, target_entity, digest, rejected_by, rejected_at
             FROM rejected_deletes WHERE source_system = ?1 AND target_id = ?2 AND kind = ?3",
        )?;
        let rows = stmt.query_map(params![source, target, kind], |r| {
            Ok(RejectedDelete {
                source_system: r.get(0)?,
                target_id: r.get(1)?,
                entity_type: r.get(2)?,
                source_id: r.get(3)?,
                target_entity_id: r.get(4)?,
                digest: r.get(5)?,
                rejected_by: r.get(6)?,
                rejected_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the rejections of these target entities; how many.
    fn lapse_rejected_deletes(&self, target: &str, kind: &str, entities: &[String]) -> Result<usize, Error> {
        if entities.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM rejected_deletes WHERE target_id = ?1 AND kind = ?2 AND target_entity = ?3",
            )?;
            for entity in entities {
                n += stmt.execute(params![target, kind, entity])?;
            }
        }
        tx.commit()?;
        Ok(n)
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
    fn set_delta_state(&self, source: &str, state: &DeltaState, fence: Option<&Claim>) -> Result<(), Error> {
        let conn = self.conn();
        if let Some(claim) = fence {
            self::fence(&conn, claim)?;
        }
        conn.execute(
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
