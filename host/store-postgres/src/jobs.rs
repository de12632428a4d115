//! Job runs on PostgreSQL: runs, their per-entity log, held deletes, the delta-read state of sources and
//! schedules, in the same rows as on SQLite.

use provisio_core::store::StoreError;
use std::time::Duration;

use provisio_core::store::jobs::{
    Claim, DeltaState, EntityLogEntry, HeldDelete, HeldKey, JobRecord, JobStatus, JobStore, RejectedDelete,
    ScheduleRecord, interrupted_summary,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{Error, PostgresStore, now};

const JOB_COLUMNS: &str =
    "id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at, node, attempt";

/// Holds `claim`'s run row shared until the transaction ends, or fails with `Fenced` when the claim is no
/// longer the run's: a takeover (which updates the row) then waits for this transaction, and this
/// transaction's writes never land after it.
pub(crate) async fn fence(conn: &mut PgConnection, claim: &Claim) -> Result<(), Error> {
    let held = sqlx::query("SELECT 1 FROM jobs WHERE id = $1 AND node = $2 AND attempt = $3 FOR SHARE")
        .bind(&claim.job)
        .bind(&claim.node)
        .bind(claim.attempt)
        .fetch_optional(conn)
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(fenced(claim)),
    }
}

fn fenced(claim: &Claim) -> Error {
    Error::Fenced(format!(
        "run {} is no longer held by {} (attempt {})",
        claim.job, claim.node, claim.attempt
    ))
}

fn seconds(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

fn job(r: &PgRow) -> Result<JobRecord, Error> {
    let status: String = r.try_get(6)?;
    let summary: String = r.try_get(7)?;
    Ok(JobRecord {
        id: r.try_get(0)?,
        source_id: r.try_get(1)?,
        job_type: r.try_get(2)?,
        read_mode: r.try_get(3)?,
        trigger: r.try_get(4)?,
        started_by: r.try_get(5)?,
        status: JobStatus::parse(&status),
        summary: serde_json::from_str(&summary).unwrap_or(Value::Null),
        started_at: r.try_get(8)?,
        ended_at: r.try_get(9)?,
        node: r.try_get(10)?,
        attempt: r.try_get(11)?,
    })
}

#[async_trait::async_trait]
impl JobStore for PostgresStore {
    async fn insert(&self, job: &JobRecord, lease: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (id, source_id, type, read_mode, trigger, started_by, status, summary, started_at, ended_at,
                               node, attempt, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now() + make_interval(secs => $13))",
        )
        .bind(&job.id)
        .bind(&job.source_id)
        .bind(&job.job_type)
        .bind(&job.read_mode)
        .bind(&job.trigger)
        .bind(&job.started_by)
        .bind(job.status.as_str())
        .bind(job.summary.to_string())
        .bind(&job.started_at)
        .bind(&job.ended_at)
        .bind(&job.node)
        .bind(job.attempt)
        .bind(seconds(lease))
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn update(
        &self,
        claim: &Claim,
        status: JobStatus,
        read_mode: &str,
        summary: &Value,
    ) -> Result<(), StoreError> {
        let ended = status.is_final().then(now);
        let n = sqlx::query(
            "UPDATE jobs SET status = $4, read_mode = $5, summary = $6, ended_at = COALESCE($7, ended_at)
             WHERE id = $1 AND node = $2 AND attempt = $3",
        )
        .bind(&claim.job)
        .bind(&claim.node)
        .bind(claim.attempt)
        .bind(status.as_str())
        .bind(read_mode)
        .bind(summary.to_string())
        .bind(ended)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        if n == 0 {
            return Err(fenced(claim).into());
        }
        Ok(())
    }

    async fn start(&self, claim: &Claim) -> Result<bool, StoreError> {
        // Only while no other run of the source is running; the unique index on running runs per source
        // settles two replicas starting at the same instant (one of them meets a unique violation).
        let started = sqlx::query(
            "UPDATE jobs SET status = 'Running', started_at = CASE WHEN status = 'Queued' THEN $4 ELSE started_at END
             WHERE id = $1 AND node = $2 AND attempt = $3
               AND NOT EXISTS (SELECT 1 FROM jobs other WHERE other.source_id = jobs.source_id AND other.id <> jobs.id
                                 AND other.status IN ('Running', 'Running with Error'))",
        )
        .bind(&claim.job)
        .bind(&claim.node)
        .bind(claim.attempt)
        .bind(now())
        .execute(&self.pool)
        .await;
        match started {
            Ok(done) if done.rows_affected() > 0 => return Ok(true),
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
            Err(e) => return Err(Error::from(e).into()),
        }
        // Not started: because another run holds the source, or because the claim is gone.
        let held: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 AND node = $2 AND attempt = $3")
                .bind(&claim.job)
                .bind(&claim.node)
                .bind(claim.attempt)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from)?;
        match held.as_deref() {
            Some("Running" | "Running with Error") => Ok(true),
            Some("Queued") => Ok(false),
            _ => Err(fenced(claim).into()),
        }
    }

    async fn busy(&self, source: &str) -> Result<bool, StoreError> {
        let busy: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE source_id = $1 AND status IN ('Running', 'Running with Error'))",
        )
        .bind(source)
        .fetch_one(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(busy)
    }

    async fn release(&self, node: &str, jobs: &[String]) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = now() - interval '1 second'
             WHERE node = $1 AND id = ANY($2) AND status IN ('Queued', 'Running', 'Running with Error')",
        )
        .bind(node)
        .bind(jobs)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n)
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn renew(&self, node: &str, jobs: &[String], lease: Duration) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
             WHERE node = $1 AND id = ANY($2) AND status IN ('Queued', 'Running', 'Running with Error')",
        )
        .bind(node)
        .bind(jobs)
        .bind(seconds(lease))
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n)
    }

    async fn beat(&self, node: &str, within: Duration) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        sqlx::query(
            "INSERT INTO nodes (name, last_seen) VALUES ($1, now()) ON CONFLICT (name) DO UPDATE SET last_seen = now()",
        )
        .bind(node)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        let live: i64 = sqlx::query("SELECT count(*) FROM nodes WHERE last_seen > now() - make_interval(secs => $1)")
            .bind(seconds(within))
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)?
            .try_get(0)
            .map_err(Error::from)?;
        // Replicas gone for a day are forgotten.
        sqlx::query("DELETE FROM nodes WHERE last_seen < now() - interval '1 day'")
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(live.max(1) as u64)
    }

    async fn request_stop(&self, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET stop_requested = TRUE WHERE id = $1 AND status IN ('Queued', 'Running', 'Running with Error')",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn stops_requested(&self, jobs: &[String]) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM jobs WHERE id = ANY($1) AND stop_requested")
            .bind(jobs)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(Error::from)?)
    }

    async fn take_over(&self, node: &str, lease: Duration, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        // SKIP LOCKED: replicas looking at the same time each claim different runs, and none waits for a run
        // whose old holder is still writing (its fence holds the row).
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET node = $1, attempt = attempt + 1, lease_until = now() + make_interval(secs => $2)
             WHERE id IN (SELECT id FROM jobs
                          WHERE status IN ('Queued', 'Running', 'Running with Error')
                            AND (lease_until IS NULL OR lease_until < now())
                          ORDER BY started_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(node)
        .bind(seconds(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.as_ref().map(job).transpose()?)
    }

    async fn list(&self, source: Option<&str>, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR source_id = $1) ORDER BY started_at DESC LIMIT $2"
        ))
        .bind(source)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
    }

    async fn interrupt_unfinished(&self) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let rows = sqlx::query(
            "SELECT id, summary FROM jobs WHERE status IN ('Queued', 'Running', 'Running with Error') FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from)?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0).map_err(Error::from)?;
            let summary: String = r.try_get(1).map_err(Error::from)?;
            let summary = interrupted_summary(&summary);
            sqlx::query("UPDATE jobs SET status = 'Finished with Error', summary = $2, ended_at = $3 WHERE id = $1")
                .bind(&id)
                .bind(summary.to_string())
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            ids.push(id);
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(ids)
    }

    async fn append_log(
        &self,
        job: &str,
        fence: Option<&Claim>,
        first_seq: i64,
        entries: Vec<EntityLogEntry>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some(claim) = fence {
            self::fence(&mut tx, claim).await?;
        }
        let mut c: (
            Vec<i64>,
            Vec<Option<String>>,
            Vec<String>,
            Vec<Option<String>>,
            Vec<Option<String>>,
        ) = Default::default();
        let mut d: (Vec<String>, Vec<String>, Vec<Option<String>>, Vec<Option<String>>) = Default::default();
        for (i, e) in entries.into_iter().enumerate() {
            c.0.push(first_seq + i as i64);
            c.1.push(e.target_id);
            c.2.push(e.entity_type);
            c.3.push(e.source_id);
            c.4.push(e.target_entity_id);
            d.0.push(e.operation);
            d.1.push(e.outcome);
            d.2.push(e.reason);
            d.3.push(e.changes.as_ref().map(Value::to_string));
        }
        sqlx::query(
            "INSERT INTO job_entities (job_id, seq, at, target_id, kind, source_entity, target_entity, operation, outcome, reason, changes)
             SELECT $1, l.seq, $2, l.t, l.k, l.s, l.te, l.op, l.o, l.r, l.c
             FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
               AS l(seq, t, k, s, te, op, o, r, c)",
        )
        .bind(job)
        .bind(now())
        .bind(&c.0)
        .bind(&c.1)
        .bind(&c.2)
        .bind(&c.3)
        .bind(&c.4)
        .bind(&d.0)
        .bind(&d.1)
        .bind(&d.2)
        .bind(&d.3)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn last_log_seq(&self, job: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM job_entities WHERE job_id = $1")
            .bind(job)
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.try_get(0).map_err(Error::from)?)
    }

    async fn log(
        &self,
        job: &str,
        outcome: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EntityLogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, target_id, kind, source_entity, target_entity, operation, outcome, reason, changes
             FROM job_entities WHERE job_id = $1 AND seq > $2 AND ($3::text IS NULL OR outcome = $3) ORDER BY seq LIMIT $4",
        )
        .bind(job)
        .bind(after_seq)
        .bind(outcome)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let entry = |r: &PgRow| -> Result<EntityLogEntry, Error> {
            let changes: Option<String> = r.try_get(9)?;
            Ok(EntityLogEntry {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                target_id: r.try_get(2)?,
                entity_type: r.try_get(3)?,
                source_id: r.try_get(4)?,
                target_entity_id: r.try_get(5)?,
                operation: r.try_get(6)?,
                outcome: r.try_get(7)?,
                reason: r.try_get(8)?,
                changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
            })
        };
        Ok(rows.iter().map(entry).collect::<Result<_, _>>()?)
    }

    async fn hold_deletes(&self, claim: &Claim, held: Vec<HeldDelete>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        fence(&mut tx, claim).await?;
        let job = &claim.job;
        for h in held {
            sqlx::query(
                "INSERT INTO held_deletes (job_id, target_id, kind, source_entity, target_entity, decision)
                 VALUES ($1, $2, $3, $4, $5, NULL)
                 ON CONFLICT (job_id, target_id, kind, source_entity) DO UPDATE SET target_entity = $5, decision = NULL",
            )
            .bind(job)
            .bind(&h.target_id)
            .bind(&h.entity_type)
            .bind(&h.source_id)
            .bind(&h.target_entity_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn held_deletes(&self, job: &str) -> Result<Vec<HeldDelete>, StoreError> {
        let rows = sqlx::query(
            "SELECT target_id, kind, source_entity, target_entity, decision FROM held_deletes WHERE job_id = $1
             ORDER BY target_id, kind DESC, source_entity",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let held = |r: &PgRow| -> Result<HeldDelete, Error> {
            Ok(HeldDelete {
                target_id: r.try_get(0)?,
                entity_type: r.try_get(1)?,
                source_id: r.try_get(2)?,
                target_entity_id: r.try_get(3)?,
                decision: r.try_get(4)?,
            })
        };
        Ok(rows.iter().map(held).collect::<Result<_, _>>()?)
    }

    async fn decide_held_deletes(
        &self,
        job: &str,
        decision: &str,
        only: Option<&[HeldKey]>,
    ) -> Result<usize, StoreError> {
        let Some(only) = only else {
            let n = sqlx::query("UPDATE held_deletes SET decision = $2 WHERE job_id = $1 AND decision IS NULL")
                .bind(job)
                .bind(decision)
                .execute(&self.pool)
                .await
                .map_err(Error::from)?
                .rows_affected();
            return Ok(n as usize);
        };
        let targets: Vec<&str> = only.iter().map(|k| k.target_id.as_str()).collect();
        let kinds: Vec<&str> = only.iter().map(|k| k.entity_type.as_str()).collect();
        let entities: Vec<&str> = only.iter().map(|k| k.source_id.as_str()).collect();
        let n = sqlx::query(
            "UPDATE held_deletes h SET decision = $2 FROM UNNEST($3::text[], $4::text[], $5::text[]) AS k(t, kind, s)
             WHERE h.job_id = $1 AND h.decision IS NULL AND h.target_id = k.t AND h.kind = k.kind AND h.source_entity = k.s",
        )
        .bind(job)
        .bind(decision)
        .bind(&targets)
        .bind(&kinds)
        .bind(&entities)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n as usize)
    }

    async fn reject_deletes(&self, rejected: Vec<RejectedDelete>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        for r in &rejected {
            sqlx::query(
                "INSERT INTO rejected_deletes
                 (target_id, kind, target_entity, source_system, source_entity, digest, rejected_by, rejected_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (target_id, kind, target_entity) DO UPDATE SET source_system = EXCLUDED.source_system,
                 source_entity = EXCLUDED.source_entity, digest = EXCLUDED.digest,
                 rejected_by = EXCLUDED.rejected_by, rejected_at = EXCLUDED.rejected_at",
            )
            .bind(&r.target_id)
            .bind(&r.entity_type)
            .bind(&r.target_entity_id)
            .bind(&r.source_system)
            .bind(&r.source_id)
            .bind(&r.digest)
            .bind(&r.rejected_by)
            .bind(&r.rejected_at)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn rejected_deletes(
        &self,
        source_system: &str,
        target: &str,
        entity_type: &str,
    ) -> Result<Vec<RejectedDelete>, StoreError> {
        let rows = sqlx::query(
            "SELECT source_system, target_id, kind, source_entity, target_entity, digest, rejected_by, rejected_at
             FROM rejected_deletes WHERE source_system = $1 AND target_id = $2 AND kind = $3",
        )
        .bind(source_system)
        .bind(target)
        .bind(entity_type)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let rejected = |r: &PgRow| -> Result<RejectedDelete, Error> {
            Ok(RejectedDelete {
                source_system: r.try_get(0)?,
                target_id: r.try_get(1)?,
                entity_type: r.try_get(2)?,
                source_id: r.try_get(3)?,
                target_entity_id: r.try_get(4)?,
                digest: r.try_get(5)?,
                rejected_by: r.try_get(6)?,
                rejected_at: r.try_get(7)?,
            })
        };
        Ok(rows.iter().map(rejected).collect::<Result<_, _>>()?)
    }

    async fn lapse_rejected_deletes(
        &self,
        target: &str,
        entity_type: &str,
        target_entities: Vec<String>,
    ) -> Result<usize, StoreError> {
        if target_entities.is_empty() {
            return Ok(0);
        }
        let n =
            sqlx::query("DELETE FROM rejected_deletes WHERE target_id = $1 AND kind = $2 AND target_entity = ANY($3)")
                .bind(target)
                .bind(entity_type)
                .bind(&target_entities)
                .execute(&self.pool)
                .await
                .map_err(Error::from)?
                .rows_affected();
        Ok(n as usize)
    }

    async fn delta_state(&self, source: &str) -> Result<DeltaState, StoreError> {
        let row = sqlx::query(
            "SELECT user_watermark, group_watermark, scheduled_deltas FROM source_state WHERE source_id = $1",
        )
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        let state = |r: PgRow| -> Result<DeltaState, Error> {
            Ok(DeltaState {
                user_watermark: r.try_get(0)?,
                group_watermark: r.try_get(1)?,
                scheduled_deltas: r.try_get(2)?,
            })
        };
        Ok(row.map(state).transpose()?.unwrap_or_default())
    }

    async fn set_delta_state(&self, source: &str, state: &DeltaState, fence: Option<&Claim>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some(claim) = fence {
            self::fence(&mut tx, claim).await?;
        }
        sqlx::query(
            "INSERT INTO source_state (source_id, user_watermark, group_watermark, scheduled_deltas) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source_id) DO UPDATE SET user_watermark = $2, group_watermark = $3, scheduled_deltas = $4",
        )
        .bind(source)
        .bind(&state.user_watermark)
        .bind(&state.group_watermark)
        .bind(state.scheduled_deltas)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn set_schedule(&self, s: &ScheduleRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO schedules (source_id, job_type, every_secs, cron, enabled, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (source_id) DO UPDATE SET job_type = $2, every_secs = $3, cron = $4, enabled = $5, updated_at = $6",
        )
        .bind(&s.source_id)
        .bind(&s.job_type)
        .bind(s.every_seconds)
        .bind(&s.cron)
        .bind(s.enabled)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn delete_schedule(&self, source: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM schedules WHERE source_id = $1")
            .bind(source)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT source_id, job_type, every_secs, cron, enabled FROM schedules ORDER BY source_id")
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from)?;
        let schedule = |r: &PgRow| -> Result<ScheduleRecord, Error> {
            Ok(ScheduleRecord {
                source_id: r.try_get(0)?,
                job_type: r.try_get(1)?,
                every_seconds: r.try_get(2)?,
                cron: r.try_get(3)?,
                enabled: r.try_get(4)?,
            })
        };
        Ok(rows.iter().map(schedule).collect::<Result<_, _>>()?)
    }

    async fn claim_schedule_slot(&self, source: &str, slot: &str, unless_since: &str) -> Result<bool, StoreError> {
        // One row update: concurrent claims of one slot serialise on the row, and one of them wins.
        let n = sqlx::query(
            "UPDATE schedules SET last_fired_at = $2
             WHERE source_id = $1 AND (last_fired_at IS NULL OR last_fired_at < $3)",
        )
        .bind(source)
        .bind(slot)
        .bind(unless_since)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n == 1)
    }
}
