//! The real-time outbox: every pushed event, stored before it is acknowledged, then worked off; the rows
//! stay as the real-time log until retention removes them.
//!
//! Appending goes through [`Appender`]: one thread with its own connection at `synchronous=FULL` that commits
//! whatever events arrived meanwhile in one transaction (group commit), so that acknowledged means on disk
//! without one fsync per event. Everything else uses the store's shared connection.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Store, StoreError, now};

/// An event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The pushing source system.
    pub source_id: String,
    /// `user` or `group`.
    pub kind: String,
    /// The entity's id in the source.
    pub entity_id: String,
    /// `create`, `replace`, `patch` or `delete`.
    pub operation: String,
    /// The entity (create, replace) or the PatchOp (patch).
    pub body: Option<Value>,
    /// The technical user that pushed it.
    pub received_by: String,
}

/// An event as stored.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Order of arrival.
    pub seq: i64,
    /// Source system.
    pub source_id: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Id in the source.
    pub entity_id: String,
    /// `create`, `replace`, `patch`, `delete`.
    pub operation: String,
    /// When it was acknowledged.
    pub received_at: String,
    /// Who pushed it.
    pub received_by: String,
    /// `pending`, `done`, `failed` (a target refused it for good) or `parked` (retries used up).
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Not before this instant (a retry).
    pub next_attempt_at: Option<String>,
    /// Per target: operation, state, reason.
    pub results: Option<Value>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The body (not in log listings).
    #[serde(skip)]
    pub body: Option<Value>,
}

type Reply = oneshot::Sender<Result<EventRecord, String>>;

/// Appends events durably with group commit.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<(NewEvent, Reply)>,
}

/// Events committed in one transaction at most.
const MAX_BATCH: usize = 512;

impl Appender {
    /// Opens a second connection to the database file and starts the writer thread.
    pub fn open(path: &Path) -> Result<Appender, StoreError> {
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
            .map_err(|e| StoreError::Corrupt(format!("cannot start the outbox writer: {e}")))?;
        Ok(Appender { tx })
    }

    /// Appends one event; resolves once it is committed.
    pub async fn append(&self, event: NewEvent) -> Result<EventRecord, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .map_err(|_| "the outbox writer has stopped".to_string())?;
        answer.await.map_err(|_| "the outbox writer has stopped".to_string())?
    }
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<(NewEvent, Reply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match insert_batch(&mut conn, &batch) {
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

fn insert_batch(conn: &mut Connection, batch: &[(NewEvent, Reply)]) -> rusqlite::Result<Vec<EventRecord>> {
    let tx = conn.transaction()?;
    let mut records = Vec::with_capacity(batch.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO realtime_events (source_id, kind, entity_id, operation, body, received_at, received_by, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
        )?;
        let at = now();
        for (e, _) in batch {
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

impl Store {
    /// Pending events in order of arrival, without their bodies (the dispatcher decides which may run and
    /// loads the body of those with [`Store::event`]).
    pub fn pending_events(&self, limit: i64) -> Result<Vec<EventRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, source_id, kind, entity_id, operation, received_at, received_by, state, attempts,
                    next_attempt_at, NULL, NULL, NULL
             FROM realtime_events WHERE state = 'pending' ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the outcome of an attempt: a final state, or `pending` with the time of the next attempt.
    pub fn finish_event(
        &self,
        seq: i64,
        state: &str,
        results: &Value,
        next_attempt_at: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = (state != "pending").then(now);
        self.conn().execute(
            "UPDATE realtime_events SET state = ?2, results = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                    finished_at = ?5 WHERE seq = ?1",
            params![seq, state, results.to_string(), next_attempt_at, finished],
        )?;
        Ok(())
    }

    /// Puts a parked or failed event back in the queue; whether it was.
    pub fn redrive_event(&self, seq: i64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE realtime_events SET state = 'pending', attempts = 0, next_attempt_at = NULL, finished_at = NULL
             WHERE seq = ?1 AND state IN ('parked', 'failed')",
            params![seq],
        )? > 0)
    }

    /// One event.
    pub fn event(&self, seq: i64) -> Result<Option<EventRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM realtime_events WHERE seq = ?1"),
                params![seq],
                record,
            )
            .optional()?)
    }

    /// The real-time log, newest first, optionally of one source and one state.
    pub fn events(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM realtime_events
             WHERE (?1 IS NULL OR source_id = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR seq < ?3)
             ORDER BY seq DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![source, state, before_seq, limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops ended events older than `before`.
    pub fn prune_events(&self, before: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM realtime_events WHERE finished_at IS NOT NULL AND finished_at < ?1",
            params![before],
        )?)
    }

    /// The last full entity pushed for an id (the base of a PATCH).
    pub fn pushed_entity(&self, source: &str, kind: &str, id: &str) -> Result<Option<Value>, StoreError> {
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
    pub fn set_pushed_entity(
        &self,
        source: &str,
        kind: &str,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match body {
            Some(b) => conn.execute(
                "INSERT INTO realtime_entities (source_id, kind, entity_id, body, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source_id, kind, entity_id) DO UPDATE SET body = ?4, updated_at = ?5",
                params![source, kind, id, b.to_string(), now()],
            )?,
            None => conn.execute(
                "DELETE FROM realtime_entities WHERE source_id = ?1 AND kind = ?2 AND entity_id = ?3",
                params![source, kind, id],
            )?,
        };
        Ok(())
    }

    /// Whether Provisio itself wrote this entity into `system` since `since` (the loop guard: a system that
    /// is a target and also pushes changes must not echo Provisio's own writes back).
    pub fn written_by_provisio_since(
        &self,
        system: &str,
        kind: &str,
        entity: &str,
        since: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM links WHERE target_id = ?1 AND kind = ?2 AND target_entity = ?3 AND updated_at >= ?4 LIMIT 1",
                params![system, kind, entity, since],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::secrets::SecretBox;

    #[tokio::test]
    async fn appended_events_are_durable_and_worked_off() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.db");
        let store = Store::open(&path, SecretBox::from_key([3; 32])).expect("store");
        store
            .conn()
            .execute(
                "INSERT INTO systems (id, name, connector, role, properties, secrets, sources, created_at, updated_at)
                 VALUES ('s', 's', 'ias', 'source', '{}', x'', '[]', '', '')",
                [],
            )
            .expect("system");
        let appender = Appender::open(&path).expect("appender");
        let event = |id: &str| NewEvent {
            source_id: "s".into(),
            kind: "user".into(),
            entity_id: id.into(),
            operation: "create".into(),
            body: Some(json!({"userName": id})),
            received_by: "rt".into(),
        };
        let appended = futures::future::join_all((0..50).map(|i| appender.append(event(&format!("u{i}"))))).await;
        let seqs: Vec<i64> = appended.into_iter().map(|r| r.expect("appended").seq).collect();
        assert_eq!(seqs.len(), 50);
        let pending = store.pending_events(100).expect("pending");
        assert_eq!(pending.len(), 50);
        let first = store.event(pending[0].seq).expect("event").expect("present");
        assert_eq!(first.body, Some(json!({"userName": first.entity_id})));
        store.finish_event(seqs[0], "parked", &json!([]), None).expect("finish");
        assert_eq!(store.pending_events(100).expect("pending").len(), 49);
        assert!(store.redrive_event(seqs[0]).expect("redrive"));
        assert!(!store.redrive_event(seqs[0]).expect("not twice"));
        assert_eq!(
            store.events(Some("s"), Some("pending"), None, 10).expect("log").len(),
            10
        );
    }
}
