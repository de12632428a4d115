//! The audit log and batched pruning on SQLite.

use provisio_core::store::StoreError;
use provisio_core::store::audit::{AuditEntry, AuditFilter, AuditStore};
use provisio_core::store::retention::{PruneLease, RetentionStore};
use rusqlite::params;

use crate::{Error, SqliteStore};

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AuditEntry, String)> {
    Ok((
        AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            principal: r.get(2)?,
            principal_id: r.get(3)?,
            principal_kind: r.get(4)?,
            address: r.get(5)?,
            channel: r.get(6)?,
            action: r.get(7)?,
            object_type: r.get(8)?,
            object_id: r.get(9)?,
            object_name: r.get(10)?,
            changes: Vec::new(),
        },
        r.get(11)?,
    ))
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let entry = entry.clone();
        self.blocking(move |s| {
            let changes = serde_json::to_string(&entry.changes).map_err(|e| Error::Corrupt(e.to_string()))?;
            let conn = s.conn();
            conn.execute(
                "INSERT INTO audit_log (at, principal, principal_id, principal_kind, address, channel, action,
                     object_type, object_id, object_name, changes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    entry.at,
                    entry.principal,
                    entry.principal_id,
                    entry.principal_kind,
                    entry.address,
                    entry.channel,
                    entry.action,
                    entry.object_type,
                    entry.object_id,
                    entry.object_name,
                    changes
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn list(&self, filter: &AuditFilter, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let f = filter.clone();
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, principal, principal_id, principal_kind, address, channel, action, object_type,
                        object_id, object_name, changes
                 FROM audit_log
                 WHERE (?1 IS NULL OR lower(principal) = lower(?1))
                   AND (?2 IS NULL OR action = ?2)
                   AND (?3 IS NULL OR object_type = ?3)
                   AND (?4 IS NULL OR object_id = ?4)
                   AND (?5 IS NULL OR at >= ?5)
                   AND (?6 IS NULL OR at < ?6)
                   AND (?7 IS NULL OR id < ?7)
                 ORDER BY id DESC LIMIT ?8",
            )?;
            let rows = stmt.query_map(
                params![
                    f.principal,
                    f.action,
                    f.object_type,
                    f.object_id,
                    f.from,
                    f.to,
                    before,
                    limit.max(0)
                ],
                entry,
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (mut e, changes) = row?;
                e.changes = serde_json::from_str(&changes).map_err(|e| Error::Corrupt(e.to_string()))?;
                out.push(e);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl RetentionStore for SqliteStore {
    async fn prune_job_logs(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let before = before.to_owned();
        let batch = batch.max(1) as i64;
        self.blocking(move |s| {
            let conn = s.conn();
            let logs = conn.execute(
                "DELETE FROM job_entities WHERE (job_id, seq) IN (
                     SELECT e.job_id, e.seq FROM jobs j JOIN job_entities e ON e.job_id = j.id
                     WHERE j.ended_at IS NOT NULL AND j.ended_at < ?1 LIMIT ?2)",
                params![before, batch],
            )?;
            let left = batch - logs as i64;
            let runs = if left > 0 {
                conn.execute(
                    "DELETE FROM jobs WHERE id IN (
                         SELECT id FROM jobs j WHERE j.ended_at IS NOT NULL AND j.ended_at < ?1
                           AND NOT EXISTS (SELECT 1 FROM job_entities e WHERE e.job_id = j.id)
                         LIMIT ?2)",
                    params![before, left],
                )?
            } else {
                0
            };
            Ok(logs + runs)
        })
        .await
    }

    async fn prune_events(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let before = before.to_owned();
        let batch = batch.max(1) as i64;
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "DELETE FROM realtime_events WHERE seq IN (
                     SELECT seq FROM realtime_events
                     WHERE finished_at IS NOT NULL AND finished_at < ?1 AND state <> 'parked' LIMIT ?2)",
                params![before, batch],
            )?)
        })
        .await
    }

    async fn prune_audit(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let before = before.to_owned();
        let batch = batch.max(1) as i64;
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ?1 ORDER BY id LIMIT ?2)",
                params![before, batch],
            )?)
        })
        .await
    }

    async fn prune_deliveries(&self, before: &str, batch: usize) -> Result<usize, StoreError> {
        let before = before.to_owned();
        let batch = batch.max(1) as i64;
        self.blocking(move |s| {
            // Attempts go with their delivery (ON DELETE CASCADE). A pending delivery has no finished_at.
            Ok(s.conn().execute(
                "DELETE FROM notification_deliveries WHERE id IN (
                     SELECT id FROM notification_deliveries
                     WHERE finished_at IS NOT NULL AND finished_at < ?1 AND status <> 'pending' LIMIT ?2)",
                params![before, batch],
            )?)
        })
        .await
    }

    async fn lead_pruning(&self) -> Result<Option<PruneLease>, StoreError> {
        // One process owns the file.
        Ok(Some(PruneLease::local()))
    }
}
