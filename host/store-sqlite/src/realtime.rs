//! The real-time outbox on SQLite: every pushed event, stored before it is acknowledged, then worked off; the
//! rows stay as the real-time log until retention removes them.
//!
//! Appending goes through [`Appender`]: one thread with its own connection at `synchronous=FULL` that commits
//! whatever events arrived meanwhile in one transaction (group commit), so that acknowledged means on disk
//! without one fsync per event. Everything else uses the store's shared connection.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::realtime::{EventRecord, EventStore, Finished, NewEvent};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, event: NewEvent) -> Result<EventRecord, StoreError> {
        match &self.appender {
            Some(appender) => appender.append(event).await.map_err(StoreError::Backend),
            // In memory there is no file to make durable: the shared connection stores it.
            None => {
                self.blocking(move |s| {
                    let mut records = insert_events(&mut s.conn(), std::iter::once(&event))?;
                    records
                        .pop()
                        .ok_or_else(|| Error::Corrupt("the event was not stored".into()))
                })
                .await
            }
        }
    }

    async fn pending(&self, limit: i64) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(move |s| s.pending_events(limit)).await
    }

    async fn claim(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<Vec<i64>, StoreError> {
        let (node, seqs) = (node.to_owned(), seqs.to_vec());
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "UPDATE realtime_events SET claimed_by = ?2, claimed_until = ?3
                 WHERE seq = ?1 AND state = 'pending' AND (claimed_until IS NULL OR claimed_until < ?4)",
            )?;
            let (until, now) = (crate::millis_after(lease), crate::millis_after(Duration::ZERO));
            let mut claimed = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if stmt.execute(params![seq, node, until, now])? == 1 {
                    claimed.push(seq);
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn claim_next(&self, node: &str, room: i64, lease: Duration) -> Result<Vec<EventRecord>, StoreError> {
        if room <= 0 {
            return Ok(Vec::new());
        }
        let node = node.to_owned();
        self.blocking(move |s| s.claim_next_events(&node, room, lease)).await
    }

    async fn renew_claims(&self, node: &str, seqs: &[i64], lease: Duration) -> Result<u64, StoreError> {
        let (node, seqs) = (node.to_owned(), seqs.to_vec());
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "UPDATE realtime_events SET claimed_until = ?3 WHERE seq = ?1 AND claimed_by = ?2 AND state = 'pending'",
            )?;
            let until = crate::millis_after(lease);
            let mut n = 0;
            for seq in seqs {
                n += stmt.execute(params![seq, node, until])? as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn release_claims(&self, node: &str) -> Result<u64, StoreError> {
        let node = node.to_owned();
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "UPDATE realtime_events SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?1 AND state = 'pending'",
                params![node],
            )? as u64)
        })
        .await
    }

    async fn finish(
        &self,
        seq: i64,
        fence: Option<&str>,
        state: &str,
        results: &Value,
        next_attempt_at: Option<&str>,
    ) -> Result<(), StoreError> {
        let (state, results, next) = (state.to_owned(), results.clone(), next_attempt_at.map(str::to_owned));
        let fence = fence.map(str::to_owned);
        self.blocking(move |s| s.finish_event(seq, fence.as_deref(), &state, &results, next.as_deref()))
            .await
    }

    async fn finish_batch(&self, batch: Vec<Finished>) -> Result<Vec<i64>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |s| s.finish_events(&batch)).await
    }

    async fn redrive(&self, seq: i64) -> Result<bool, StoreError> {
        self.blocking(move |s| s.redrive_event(seq)).await
    }

    async fn redrive_many(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        let seqs = seqs.to_vec();
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut n = 0u64;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE realtime_events SET state = 'pending', attempts = 0, next_attempt_at = NULL, finished_at = NULL,
                            claimed_by = NULL, claimed_until = NULL
                     WHERE seq = ?1 AND state IN ('parked', 'failed')",
                )?;
                for seq in &seqs {
                    n += stmt.execute(params![seq])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn get(&self, seq: i64) -> Result<Option<EventRecord>, StoreError> {
        self.blocking(move |s| s.event(seq)).await
    }

    async fn list(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (source, state) = (source.map(str::to_owned), state.map(str::to_owned));
        self.blocking(move |s| s.events(source.as_deref(), state.as_deref(), before_seq, limit))
            .await
    }

    async fn pushed_entity(&self, source: &str, kind: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let (source, kind, id) = (source.to_owned(), kind.to_owned(), id.to_owned());
        self.blocking(move |s| s.pushed_entity(&source, &kind, &id)).await
    }

    async fn set_pushed_entity(
        &self,
        source: &str,
        kind: &str,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(), StoreError> {
        let (source, kind, id, body) = (source.to_owned(), kind.to_owned(), id.to_owned(), body.cloned());
        self.blocking(move |s| s.set_pushed_entity(&source, &kind, &id, body.as_ref()))
            .await
    }
}

type Reply = oneshot::Sender<Result<EventRecord, String>>;

/// Appends events durably with group commit.
#[derive(Clone)]
pub(crate) struct Appender {
    tx: mpsc::Sender<(NewEvent, Reply)>,
}

/// Events committed in one transaction at most.
const MAX_BATCH: usize = 512;

impl Appender {
    /// Opens a second connection to the database file and starts the writer thread.
    pub(crate) fn open(path: &Path) -> Result<Appender, Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Acknowledged events survive a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The store's checkpoint thread copies the log back; an append never waits for that.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (tx, rx) = mpsc::channel::<(NewEvent, Reply)>();
        std::thread::Builder::new()
            .name("provisio-outbox".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(|e| Error::Corrupt(format!("cannot start the outbox writer: {e}")))?;
        Ok(Appender { tx })
    }

    /// Appends one event; resolves once it is committed.
    async fn append(&self, event: NewEvent) -> Result<EventRecord, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .map_err(|_| "the outbox writer has stopped".to_string())?;
        answer.await.map_err(|_| "the outbox writer has stopped".to_string())?
    }
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<(NewEvent, Reply)>) {
    while let Some(first) = provisio_core::idle::recv(&rx) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match insert_events(&mut conn, batch.iter().map(|(event, _)| event)) {
            Ok(records) => {
                for ((_, reply), record) in batch.into_iter().zip(records) {
                    let _ = reply.send(Ok(record));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store real-time events");
                for (_, reply) in batch {
                    let _ = reply.send(Err(format!("cannot store the event: {e}")));
                }
            }
        }
    }
}

fn insert_events<'a>(
    conn: &mut Connection,
    events: impl ExactSizeIterator<Item = &'a NewEvent>,
) -> rusqlite::Result<Vec<EventRecord>> {
    let tx = conn.transaction()?;
    let mut records = Vec::with_capacity(events.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO realtime_events (source_id, kind, entity_id, operation, body, received_at, received_by, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
        )?;
        let at = now();
        for e in events {
            stmt.execute(params![
                e.source_id,
                e.kind,
                e.entity_id,
                e.operation,
                e.body.as_ref().map(Value::to_string),
                at,
                e.received_by
            ])?;
            records.push(EventRecord {
                seq: tx.last_insert_rowid(),
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
            });
        }
    }
    tx.commit()?;
    Ok(records)
}

const COLUMNS: &str = "seq, source_id, kind, entity_id, operation, received_at, received_by, state, attempts, \
                       next_attempt_at, results, finished_at, body";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    let results: Option<String> = r.get(10)?;
    let body: Option<String> = r.get(12)?;
    Ok(EventRecord {
        seq: r.get(0)?,
        source_id: r.get(1)?,
        entity_type: r.get(2)?,
        entity_id: r.get(3)?,
        operation: r.get(4)?,
        received_at: r.get(5)?,
        received_by: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt_at: r.get(9)?,
        results: results.and_then(|t| serde_json::from_str(&t).ok()),
        finished_at: r.get(11)?,
        body: body.and_then(|t| serde_json::from_str(&t).ok()),
    })
}

impl SqliteStore {
    /// Pending events in order of arrival, without their bodies (the dispatcher decides which may run and
    /// loads the body of those with `event`).
    fn pending_events(&self, limit: i64) -> Result<Vec<EventRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, source_id, kind, entity_id, operation, received_at, received_by, state, attempts,
                    next_attempt_at, NULL, NULL, NULL
             FROM realtime_events e WHERE state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM realtime_events o
                               WHERE o.source_id = e.source_id AND o.kind = e.kind AND o.entity_id = e.entity_id
                                 AND o.state = 'pending' AND o.claimed_until > ?2)
             ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit, crate::millis_after(std::time::Duration::ZERO)], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Claims the next events that may be worked (see `EventStore::claim_next`): found and claimed in one
    /// write transaction, so two claimers never take the same event or two events of one entity.
    fn claim_next_events(&self, node: &str, room: i64, lease: std::time::Duration) -> Result<Vec<EventRecord>, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let claimed = {
            let mut free = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM realtime_events e
                 WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < ?2)
                   AND (next_attempt_at IS NULL OR next_attempt_at <= ?3)
                   AND NOT EXISTS (SELECT 1 FROM realtime_events o
                                   WHERE o.source_id = e.source_id AND o.kind = e.kind
                                     AND o.entity_id = e.entity_id AND o.seq < e.seq AND o.state = 'pending')
                 ORDER BY seq LIMIT ?1"
            ))?;
            let claimed = free
                .query_map(params![room, crate::millis_after(Duration::ZERO), now()], record)?
                .collect::<Result<Vec<_>, _>>()?;
            let mut claim =
                tx.prepare_cached("UPDATE realtime_events SET claimed_by = ?2, claimed_until = ?3 WHERE seq = ?1")?;
            let until = crate::millis_after(lease);
            for event in &claimed {
                claim.execute(params![event.seq, node, until])?;
            }
            claimed
        };
        tx.commit()?;
        Ok(claimed)
    }

    /// Records the outcome of an attempt: a final state, or `pending` with the time of the next attempt.
    fn finish_event(
        &self,
        seq: i64,
        fence: Option<&str>,
        state: &str,
        results: &Value,
        next_attempt_at: Option<&str>,
    ) -> Result<(), Error> {
        if !record_outcome(&self.conn(), seq, fence, state, results, next_attempt_at, &now())? {
            return Err(Error::Fenced(format!(
                "real-time event {seq} is claimed by another replica"
            )));
        }
        Ok(())
    }

    /// Records ended attempts with their writes in one transaction; the seqs of those fenced out.
    fn finish_events(&self, batch: &[Finished]) -> Result<Vec<i64>, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = now();
        let mut fenced = Vec::new();
        for f in batch {
            if !record_outcome(
                &tx,
                f.seq,
                f.fence.as_deref(),
                &f.state,
                &f.results,
                f.next_attempt_at.as_deref(),
                &at,
            )? {
                fenced.push(f.seq);
                continue;
            }
            if let Some(p) = &f.pushed {
                write_pushed_entity(&tx, &p.source_id, &p.kind, &p.entity_id, p.body.as_ref(), &at)?;
            }
            for (scope, change) in &f.links {
                crate::links::write_links(&tx, scope, std::slice::from_ref(change), &at)?;
            }
        }
        tx.commit()?;
        Ok(fenced)
    }

    /// Puts a parked or failed event back in the queue; whether it was.
    fn redrive_event(&self, seq: i64) -> Result<bool, Error> {
        Ok(self.conn().execute(
            "UPDATE realtime_events SET state = 'pending', attempts = 0, next_attempt_at = NULL, finished_at = NULL,
                    claimed_by = NULL, claimed_until = NULL
             WHERE seq = ?1 AND state IN ('parked', 'failed')",
            params![seq],
        )? > 0)
    }

    /// One event.
    fn event(&self, seq: i64) -> Result<Option<EventRecord>, Error> {
        Ok(self
            .conn()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM realtime_events WHERE seq = ?1"))?
            .query_row(params![seq], record)
            .optional()?)
    }

    /// The real-time log, newest first, optionally of one source and one state.
    fn events(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM realtime_events
             WHERE (?1 IS NULL OR source_id = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR seq < ?3)
             ORDER BY seq DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![source, state, before_seq, limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last full entity pushed for an id (the base of a PATCH).
    fn pushed_entity(&self, source: &str, kind: &str, id: &str) -> Result<Option<Value>, Error> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM realtime_entities WHERE source_id = ?1 AND kind = ?2 AND entity_id = ?3",
                params![source, kind, id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Remembers (or, with `None`, forgets) the full entity of an id.
    fn set_pushed_entity(&self, source: &str, kind: &str, id: &str, body: Option<&Value>) -> Result<(), Error> {
        write_pushed_entity(&self.conn(), source, kind, id, body, &now())
    }
}

/// Records an attempt's outcome and ends its claim; false when `fence` does not hold the claim (nothing
/// recorded).
fn record_outcome(
    conn: &Connection,
    seq: i64,
    fence: Option<&str>,
    state: &str,
    results: &Value,
    next_attempt_at: Option<&str>,
    at: &str,
) -> Result<bool, Error> {
    let finished = (state != "pending").then_some(at);
    let n = conn
        .prepare_cached(
            "UPDATE realtime_events SET state = ?2, results = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                    finished_at = ?5, claimed_by = NULL, claimed_until = NULL
             WHERE seq = ?1 AND (?6 IS NULL OR claimed_by = ?6)",
        )?
        .execute(params![
            seq,
            state,
            provisio_core::json::text(results),
            next_attempt_at,
            finished,
            fence
        ])?;
    Ok(n > 0 || fence.is_none())
}

fn write_pushed_entity(
    conn: &Connection,
    source: &str,
    kind: &str,
    id: &str,
    body: Option<&Value>,
    at: &str,
) -> Result<(), Error> {
    match body {
        Some(b) => conn
            .prepare_cached(
                "INSERT INTO realtime_entities (source_id, kind, entity_id, body, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source_id, kind, entity_id) DO UPDATE SET body = ?4, updated_at = ?5",
            )?
            .execute(params![source, kind, id, provisio_core::json::text(b), at])?,
        None => conn
            .prepare_cached("DELETE FROM realtime_entities WHERE source_id = ?1 AND kind = ?2 AND entity_id = ?3")?
            .execute(params![source, kind, id])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use provisio_core::secrets::SecretBox;
    use provisio_core::store::systems::{Role, SystemSpec};
    use serde_json::json;

    use super::*;

    /// Events appended at once are committed together by the writer thread, and are there after a reopen,
    /// free of the claims the process before held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_events_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.db");
        let key = SecretBox::from_key([3; 32]);
        let stores = SqliteStore::open(&path, key.clone()).expect("store").stores();
        let source = stores
            .systems
            .create(SystemSpec {
                name: "s".into(),
                connector: "ias".into(),
                connector_version: None,
                role: Role::Source,
                properties: Default::default(),
                secrets: Default::default(),
                sources: vec![],
                transformation: None,
            })
            .await
            .expect("system");
        let event = |id: String| NewEvent {
            source_id: source.id.clone(),
            kind: "user".into(),
            entity_id: id.clone(),
            operation: "create".into(),
            body: Some(json!({"userName": id})),
            received_by: "rt".into(),
        };
        let appended = futures::future::join_all((0..50).map(|i| stores.events.append(event(format!("u{i}"))))).await;
        for result in appended {
            result.expect("appended");
        }
        // A process that claimed some and crashed: its claims do not hold the events back after a reopen.
        let claimed = stores
            .events
            .claim_next("crashed", 10, Duration::from_secs(600))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 10);
        drop(stores);
        let reopened = SqliteStore::open(&path, key).expect("reopen").stores();
        let pending = reopened.events.pending(100).await.expect("pending");
        assert_eq!(pending.len(), 50);
        let again = reopened
            .events
            .claim_next("restarted", 100, Duration::from_secs(600))
            .await
            .expect("claim");
        assert_eq!(again.len(), 50, "every event is free again");
        let first = reopened
            .events
            .get(pending[0].seq)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(first.body, Some(json!({"userName": first.entity_id})));
    }
}
