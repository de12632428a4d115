//! The real-time outbox on PostgreSQL. An append is committed (`synchronous_commit` as the server has it;
//! `docs/scale-out.md` says which settings lose nothing on a failover) before it returns.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::realtime::{EventRecord, EventStore, NewEvent};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Error, PostgresStore, now};

const COLUMNS: &str = "seq, source_id, kind, entity_id, operation, received_at, received_by, state, attempts, \
                       next_attempt_at, results, finished_at, body";

fn record(r: &PgRow) -> Result<EventRecord, Error> {
    let results: Option<String> = r.try_get(10)?;
    let body: Option<String> = r.try_get(12)?;
    Ok(EventRecord {
        seq: r.try_get(0)?,
        source_id: r.try_get(1)?,
        entity_type: r.try_get(2)?,
        entity_id: r.try_get(3)?,
        operation: r.try_get(4)?,
        received_at: r.try_get(5)?,
        received_by: r.try_get(6)?,
        state: r.try_get(7)?,
        attempts: r.try_get(8)?,
        next_attempt_at: r.try_get(9)?,
        results: results.and_then(|t| serde_json::from_str(&t).ok()),
        finished_at: r.try_get(11)?,
        body: body.and_then(|t| serde_json::from_str(&t).ok()),
    })
}

#[async_trait::async_trait]
impl EventStore for PostgresStore {
    async fn append(&self, e: NewEvent) -> Result<EventRecord, StoreError> {
        let at = now();
        let row = sqlx::query(
            "INSERT INTO realtime_events (source_id, kind, entity_id, operation, body, received_at, received_by, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') RETURNING seq",
        )
        .bind(&e.source_id)
        .bind(&e.kind)
        .bind(&e.entity_id)
        .bind(&e.operation)
        .bind(e.body.as_ref().map(Value::to_string))
        .bind(&at)
        .bind(&e.received_by)
        .fetch_one(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(EventRecord {
            seq: row.try_get(0).map_err(Error::from)?,
            source_id: e.source_id,
            entity_type: e.kind,
            entity_id: e.entity_id,
            operation: e.operation,
            received_at: at,
            received_by: e.received_by,
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: None,
            results: None,
            finished_at: None,
            body: e.body,
        })
    }

    async fn pending(&self, limit: i64) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, source_id, kind, entity_id, operation, received_at, received_by, state, attempts,
                    next_attempt_at, NULL::text, NULL::text, NULL::text
             FROM realtime_events e WHERE state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM realtime_events o
                               WHERE o.source_id = e.source_id AND o.kind = e.kind AND o.entity_id = e.entity_id
                                 AND o.state = 'pending' AND o.claimed_until > now())
             ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    async fn claim(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<Vec<i64>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // One statement: of replicas claiming the same event at once, the row lock lets one win.
        let rows = sqlx::query(
            "UPDATE realtime_events SET claimed_by = $1, claimed_until = now() + make_interval(secs => $3)
             WHERE seq = ANY($2) AND state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())
             RETURNING seq",
        )
        .bind(node)
        .bind(seqs)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(Error::from)?)
    }

    async fn renew_claims(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE realtime_events SET claimed_until = now() + make_interval(secs => $3)
             WHERE seq = ANY($2) AND claimed_by = $1 AND state = 'pending'",
        )
        .bind(node)
        .bind(seqs)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n)
    }

    async fn release_claims(&self, node: &str) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE realtime_events SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1 AND state = 'pending'",
        )
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n)
    }

    async fn finish(
        &self,
        seq: i64,
        fence: Option<&str>,
        state: &str,
        results: &Value,
        next_attempt_at: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = (state != "pending").then(now);
        let n = sqlx::query(
            "UPDATE realtime_events SET state = $2, results = $3, attempts = attempts + 1, next_attempt_at = $4,
                    finished_at = $5, claimed_by = NULL, claimed_until = NULL
             WHERE seq = $1 AND ($6::text IS NULL OR claimed_by = $6)",
        )
        .bind(seq)
        .bind(state)
        .bind(results.to_string())
        .bind(next_attempt_at)
        .bind(finished)
        .bind(fence)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        if n == 0 && fence.is_some() {
            return Err(StoreError::Fenced(format!(
                "real-time event {seq} is claimed by another replica"
            )));
        }
        Ok(())
    }

    async fn redrive(&self, seq: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE realtime_events SET state = 'pending', attempts = 0, next_attempt_at = NULL, finished_at = NULL,
                    claimed_by = NULL, claimed_until = NULL
             WHERE seq = $1 AND state IN ('parked', 'failed')",
        )
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn get(&self, seq: i64) -> Result<Option<EventRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM realtime_events WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn list(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM realtime_events
             WHERE ($1::text IS NULL OR source_id = $1) AND ($2::text IS NULL OR state = $2)
               AND ($3::bigint IS NULL OR seq < $3)
             ORDER BY seq DESC LIMIT $4"
        ))
        .bind(source)
        .bind(state)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    async fn prune(&self, before: &str) -> Result<usize, StoreError> {
        let n = sqlx::query("DELETE FROM realtime_events WHERE finished_at IS NOT NULL AND finished_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        Ok(n as usize)
    }

    async fn pushed_entity(&self, source: &str, kind: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let row =
            sqlx::query("SELECT body FROM realtime_entities WHERE source_id = $1 AND kind = $2 AND entity_id = $3")
                .bind(source)
                .bind(kind)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from)?;
        let text: Option<String> = row.map(|r| r.try_get(0)).transpose().map_err(Error::from)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn set_pushed_entity(
        &self,
        source: &str,
        kind: &str,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(), StoreError> {
        let query = match body {
            Some(b) => sqlx::query(
                "INSERT INTO realtime_entities (source_id, kind, entity_id, body, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (source_id, kind, entity_id) DO UPDATE SET body = $4, updated_at = $5",
            )
            .bind(source)
            .bind(kind)
            .bind(id)
            .bind(b.to_string())
            .bind(now()),
            None => sqlx::query("DELETE FROM realtime_entities WHERE source_id = $1 AND kind = $2 AND entity_id = $3")
                .bind(source)
                .bind(kind)
                .bind(id),
        };
        query.execute(&self.pool).await.map_err(Error::from)?;
        Ok(())
    }
}
