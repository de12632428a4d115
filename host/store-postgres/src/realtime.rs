//! The real-time outbox on PostgreSQL. An append is committed (`synchronous_commit` as the server has it;
//! `docs/scale-out.md` says which settings lose nothing on a failover) before it returns.
//!
//! Appends go through [`Appender`]: one task per replica that inserts whatever pushes arrived meanwhile in
//! one statement (one commit, one WAL flush), then answers each — a push is acknowledged only after its row
//! is committed. Ended attempts are recorded the same way, many in one transaction
//! ([`EventStore::finish_batch`]).

use std::collections::HashMap;
use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::links::{LinkChange, LinkScope};
use provisio_core::store::realtime::{EventRecord, EventStore, Finished, NewEvent};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};

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
        self.appender.append(e).await
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

    async fn claim_next(&self, node: &str, room: i64, lease: Duration) -> Result<Vec<EventRecord>, StoreError> {
        if room <= 0 {
            return Ok(Vec::new());
        }
        // Rows another replica is claiming right now are skipped, not waited for: each replica takes the next
        // free ones. A row claimed and committed meanwhile is checked again after its lock (a live claim now:
        // left out). An entity's later event never qualifies while an earlier one is pending in this
        // statement's snapshot, and one that finished after it stays out until the next call.
        // `OFFSET 0` keeps the earlier-event test a lookup per candidate by its entity
        // (`realtime_pending_by_entity`): as a join, statistics taken while few events were pending made
        // PostgreSQL compare every candidate with every pending event (75 ms for a burst of 10,000, 1 ms so).
        let rows = sqlx::query(
            "WITH free AS (
                 SELECT seq FROM realtime_events e
                 WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())
                   AND (next_attempt_at IS NULL OR next_attempt_at <= $3)
                   AND NOT EXISTS (SELECT 1 FROM realtime_events o
                                   WHERE o.source_id = e.source_id AND o.kind = e.kind
                                     AND o.entity_id = e.entity_id AND o.seq < e.seq AND o.state = 'pending'
                                   OFFSET 0)
                 ORDER BY seq LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE realtime_events r SET claimed_by = $1, claimed_until = now() + make_interval(secs => $4)
             FROM free WHERE r.seq = free.seq
             RETURNING r.seq, r.source_id, r.kind, r.entity_id, r.operation, r.received_at, r.received_by, r.state,
                       r.attempts, r.next_attempt_at, r.results, r.finished_at, r.body",
        )
        .bind(node)
        .bind(room)
        .bind(now())
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let mut claimed = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_unstable_by_key(|e| e.seq);
        Ok(claimed)
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

    async fn finish_batch(&self, batch: Vec<Finished>) -> Result<Vec<i64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let at = now();
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        // The outcomes in one statement; an event whose fence no longer holds its claim is not updated.
        let (mut seqs, mut states, mut results, mut nexts, mut fences) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for f in &batch {
            seqs.push(f.seq);
            states.push(f.state.as_str());
            results.push(f.results.to_string());
            nexts.push(f.next_attempt_at.as_deref());
            fences.push(f.fence.as_deref());
        }
        let rows = sqlx::query(
            "UPDATE realtime_events e SET state = u.state, results = u.results, attempts = e.attempts + 1,
                    next_attempt_at = u.next, finished_at = CASE WHEN u.state = 'pending' THEN NULL ELSE $6 END,
                    claimed_by = NULL, claimed_until = NULL
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(seq, state, results, next, fence)
             WHERE e.seq = u.seq AND (u.fence IS NULL OR e.claimed_by = u.fence)
             RETURNING e.seq",
        )
        .bind(&seqs)
        .bind(&states)
        .bind(&results)
        .bind(&nexts)
        .bind(&fences)
        .bind(&at)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from)?;
        let mut recorded = std::collections::HashSet::with_capacity(rows.len());
        for r in &rows {
            recorded.insert(r.try_get::<i64, _>(0).map_err(Error::from)?);
        }
        let kept = |f: &&Finished| f.fence.is_none() || recorded.contains(&f.seq);
        let fenced: Vec<i64> = batch
            .iter()
            .filter(|f| f.fence.is_some() && !recorded.contains(&f.seq))
            .map(|f| f.seq)
            .collect();
        // The entities they leave behind: the last per id (one statement cannot change a row twice).
        let mut pushed: HashMap<(&str, &str, &str), Option<String>> = HashMap::new();
        for f in batch.iter().filter(kept) {
            if let Some(p) = &f.pushed {
                pushed.insert(
                    (&p.source_id, &p.kind, &p.entity_id),
                    p.body.as_ref().map(Value::to_string),
                );
            }
        }
        let (mut kept_ids, mut gone_ids): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
        for (id, body) in pushed {
            match body {
                Some(body) => kept_ids.push((id, body)),
                None => gone_ids.push(id),
            }
        }
        if !kept_ids.is_empty() {
            let (mut sources, mut kinds, mut ids, mut bodies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((source, kind, id), body) in kept_ids {
                sources.push(source);
                kinds.push(kind);
                ids.push(id);
                bodies.push(body);
            }
            sqlx::query(
                "INSERT INTO realtime_entities (source_id, kind, entity_id, body, updated_at)
                 SELECT s, k, i, b, $5 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(s, k, i, b)
                 ON CONFLICT (source_id, kind, entity_id) DO UPDATE SET body = EXCLUDED.body, updated_at = $5",
            )
            .bind(&sources)
            .bind(&kinds)
            .bind(&ids)
            .bind(&bodies)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        if !gone_ids.is_empty() {
            let (mut sources, mut kinds, mut ids) = (Vec::new(), Vec::new(), Vec::new());
            for (source, kind, id) in gone_ids {
                sources.push(source);
                kinds.push(kind);
                ids.push(id);
            }
            sqlx::query(
                "DELETE FROM realtime_entities r USING UNNEST($1::text[], $2::text[], $3::text[]) AS u(s, k, i)
                 WHERE r.source_id = u.s AND r.kind = u.k AND r.entity_id = u.i",
            )
            .bind(&sources)
            .bind(&kinds)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        // The links, per scope and kind of change, each run as one statement over arrays.
        let mut runs: Vec<((&LinkScope, std::mem::Discriminant<LinkChange>), Vec<LinkChange>)> = Vec::new();
        for f in batch.iter().filter(kept) {
            for (scope, change) in &f.links {
                let key = (scope, std::mem::discriminant(change));
                match runs.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, run)) => run.push(change.clone()),
                    None => runs.push((key, vec![change.clone()])),
                }
            }
        }
        for ((scope, _), run) in &runs {
            crate::links::apply_run(&mut tx, scope, run, &at).await?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(fenced)
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

    async fn redrive_many(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let n = sqlx::query(
            "UPDATE realtime_events SET state = 'pending', attempts = 0, next_attempt_at = NULL, finished_at = NULL,
                    claimed_by = NULL, claimed_until = NULL
             WHERE seq = ANY($1) AND state IN ('parked', 'failed')",
        )
        .bind(seqs)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected();
        Ok(n)
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

type Reply = oneshot::Sender<Result<EventRecord, StoreError>>;

/// Appends pushed events with group commit: one writer task per replica.
#[derive(Clone)]
pub(crate) struct Appender {
    tx: mpsc::UnboundedSender<(NewEvent, Reply)>,
}

/// Events inserted in one statement at most.
const MAX_BATCH: usize = 512;

impl Appender {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub(crate) fn start(pool: PgPool) -> Appender {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(pool, rx));
        Appender { tx }
    }

    /// Appends one event; resolves once it is committed.
    async fn append(&self, event: NewEvent) -> Result<EventRecord, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Backend("the outbox writer has stopped".into());
        self.tx.send((event, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_loop(pool: PgPool, mut rx: mpsc::UnboundedReceiver<(NewEvent, Reply)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<&NewEvent> = batch.iter().map(|(e, _)| e).collect();
        match insert_events(&pool, &events).await {
            Ok(records) => {
                for ((_, reply), record) in batch.drain(..).zip(records) {
                    let _ = reply.send(Ok(record));
                }
            }
            // One bad event (its source deleted meanwhile) must not refuse the others: alone, each gets its
            // own answer.
            Err(_) if batch.len() > 1 => {
                for (event, reply) in batch.drain(..) {
                    let answer = insert_events(&pool, &[&event])
                        .await
                        .map_err(StoreError::from)
                        .and_then(|mut r| {
                            r.pop()
                                .ok_or_else(|| StoreError::Corrupt("the event was not stored".into()))
                        });
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Inserts events in one statement (one transaction); their records, in the order given.
async fn insert_events(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<EventRecord>, Error> {
    let at = now();
    let (mut sources, mut kinds, mut ids, mut operations, mut bodies, mut by) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in events {
        sources.push(e.source_id.as_str());
        kinds.push(e.kind.as_str());
        ids.push(e.entity_id.as_str());
        operations.push(e.operation.as_str());
        bodies.push(e.body.as_ref().map(Value::to_string));
        by.push(e.received_by.as_str());
    }
    // Rows are inserted in the order of the select, each taking the next value of the identity: the seqs,
    // sorted, are the events' in the order given.
    let rows = sqlx::query(
        "INSERT INTO realtime_events (source_id, kind, entity_id, operation, body, received_at, received_by, state)
         SELECT s, k, i, o, b, $7, r, 'pending'
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY
              AS u(s, k, i, o, b, r, n)
         ORDER BY n
         RETURNING seq",
    )
    .bind(&sources)
    .bind(&kinds)
    .bind(&ids)
    .bind(&operations)
    .bind(&bodies)
    .bind(&by)
    .bind(&at)
    .fetch_all(pool)
    .await?;
    let mut seqs = rows
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if seqs.len() != events.len() {
        return Err(Error::Corrupt("the events were not all stored".into()));
    }
    seqs.sort_unstable();
    Ok(events
        .iter()
        .zip(seqs)
        .map(|(e, seq)| EventRecord {
            seq,
            source_id: e.source_id.clone(),
            entity_type: e.kind.clone(),
            entity_id: e.entity_id.clone(),
            operation: e.operation.clone(),
            received_at: at.clone(),
            received_by: e.received_by.clone(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: None,
            results: None,
            finished_at: None,
            body: e.body.clone(),
        })
        .collect())
}
