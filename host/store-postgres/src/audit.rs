//! The audit log and batched pruning on PostgreSQL; one replica prunes at a time (a session advisory lock,
//! per schema, held while it prunes).

use provisio_core::store::StoreError;
use provisio_core::store::audit::{AuditEntry, AuditFilter, AuditStore};
use provisio_core::store::retention::{PruneLease, RetentionStore};
use sqlx::Row;
use sqlx::pool::PoolConnection;

use crate::{Error, PostgresStore, from_json, to_json};

/// The advisory lock class of pruning (with the schema's hash as the second key).
const PRUNE_LOCK: i32 = 0x7072756e;

fn entry(r: &sqlx::postgres::PgRow) -> Result<AuditEntry, Error> {
    let changes: String = r.try_get("changes")?;
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        principal: r.try_get("principal")?,
        principal_id: r.try_get("principal_id")?,
        principal_kind: r.try_get("principal_kind")?,
        address: r.try_get("address")?,
        channel: r.try_get("channel")?,
        action: r.try_get("action")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        object_name: r.try_get("object_name")?,
        changes: from_json(&changes)?,
    })
}

#[async_trait::async_trait]
impl AuditStore for PostgresStore {
    async fn append(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, principal, principal_id, principal_kind, address, channel, action,
                 object_type, object_id, object_name, changes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&entry.at)
        .bind(&entry.principal)
        .bind(&entry.principal_id)
        .bind(&entry.principal_kind)
        .bind(&entry.address)
        .bind(&entry.channel)
        .bind(&entry.action)
        .bind(&entry.object_type)
        .bind(&entry.object_id)
        .bind(&entry.object_name)
        .bind(to_json(&entry.changes)?)
        .fetch_one(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.try_get::<i64, _>(0).map_err(Error::from)?)
    }

    async fn list(&self, filter: &AuditFilter, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, principal, principal_id, principal_kind, address, channel, action, object_type,
                    object_id, object_name, changes
             FROM audit_log
             WHERE ($1::text IS NULL OR lower(principal) = lower($1))
               AND ($2::text IS NULL OR action = $2)
               AND ($3::text IS NULL OR object_type = $3)
               AND ($4::text IS NULL OR object_id = $4)
               AND ($5::text IS NULL OR at >= $5)
               AND ($6::text IS NULL OR at < $6)
               AND ($7::bigint IS NULL OR id < $7)
             ORDER BY id DESC LIMIT $8",
        )
        .bind(&filter.principal)
        .bind(&filter.action)
        .bind(&filter.object_type)
        .bind(&filter.object_id)
        .bind(&filter.from)
        .bind(&filter.to)
        .bind(before)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(entry).collect::<Result<_, _>>()?)
    }
}

/// The session that holds the pruning lock; unlocked (and handed back to the pool) when dropped.
struct LockHold {
    conn: std::sync::Mutex<Option<PoolConnection<sqlx::Postgres>>>,
}

impl Drop for LockHold {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
                        .bind(PRUNE_LOCK)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        // Closing the session ends its locks.
                        drop(conn.detach());
                    }
                });
            }
            Err(_) => drop(conn.detach()),
        }
    }
}

#[async_trait::async_trait]
impl RetentionStore for PostgresStore {
    async fn prune_job_logs(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let batch = batch.max(1) as i64;
        let logs = sqlx::query(
            "DELETE FROM job_entities WHERE (job_id, seq) IN (
                 SELECT e.job_id, e.seq FROM jobs j JOIN job_entities e ON e.job_id = j.id
                 WHERE j.ended_at IS NOT NULL AND j.ended_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected() as i64;
        let left = batch - logs;
        let runs = if left > 0 {
            sqlx::query(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs j WHERE j.ended_at IS NOT NULL AND j.ended_at < $1
                       AND NOT EXISTS (SELECT 1 FROM job_entities e WHERE e.job_id = j.id)
                     LIMIT $2)",
            )
            .bind(before)
            .bind(left)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected() as i64
        } else {
            0
        };
        Ok((logs + runs) as usize)
    }

    async fn prune_events(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let n = sqlx::query(
            "DELETE FROM realtime_events WHERE seq IN (
                 SELECT seq FROM realtime_events WHERE finished_at IS NOT NULL AND finished_at < $1 AND state <> 'parked' LIMIT $2)",
        )
        .bind(before)
        .bind(batch.max(1) as i64)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n as usize)
    }

    async fn prune_audit(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let n = sqlx::query(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(batch.max(1) as i64)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n as usize)
    }

    async fn prune_deliveries(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        // Attempts go with their delivery (ON DELETE CASCADE). A pending delivery has no finished_at.
        let n = sqlx::query(
            "DELETE FROM notification_deliveries WHERE id IN (
                 SELECT id FROM notification_deliveries
                 WHERE finished_at IS NOT NULL AND finished_at < $1 AND status <> 'pending' LIMIT $2)",
        )
        .bind(before)
        .bind(batch.max(1) as i64)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n as usize)
    }

    async fn lead_pruning(&self) -> Result<Option<PruneLease>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(PRUNE_LOCK)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::from)?
            .try_get(0)
            .map_err(Error::from)?;
        Ok(got.then(|| {
            PruneLease::holding(Box::new(LockHold {
                conn: std::sync::Mutex::new(Some(conn)),
            }))
        }))
    }
}
