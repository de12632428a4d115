//! The embedded store: one SQLite file (WAL) in the data directory, with migrations. It implements every
//! aggregate's interface of [`provisio_core::store`]; [`SqliteStore::stores`] hands them out as [`Stores`].
//!
//! Queries run one after the other on a thread of their own that owns the shared connection ([`Queries`]): no
//! query holds a tokio worker (a commit's fsync or a large read must not stall the requests being served
//! meanwhile), and under load the thread goes from one query to the next without a hand-over. Real-time
//! events are appended by a thread of their own with group commit ([`realtime`]); a third thread checkpoints
//! the write-ahead log.

mod audit;
mod jobs;
mod limits;
mod links;
mod logins;
mod migrations;
mod notifications;
mod plugins;
mod principals;
mod realtime;
mod systems;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use provisio_core::secrets::SecretBox;
use provisio_core::store::{StoreError, Stores};
use rusqlite::Connection;

/// Errors inside this crate: SQLite's own, or one of the store's.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Fenced(String),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::Sql(e) => StoreError::Backend(e.to_string()),
            Error::Conflict(m) => StoreError::Conflict(m),
            Error::NotFound(m) => StoreError::NotFound(m),
            Error::Corrupt(m) => StoreError::Corrupt(m),
            Error::Fenced(m) => StoreError::Fenced(m),
        }
    }
}

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    queries: Queries,
    secrets: SecretBox,
    path: Option<PathBuf>,
    /// Appends real-time events with group commit; `None` in memory (appends use the shared connection).
    appender: Option<realtime::Appender>,
    /// Bumped on every change to a system or its transformation.
    systems_generation: Arc<AtomicU64>,
}

/// A query handed to the query thread.
type Job = Box<dyn FnOnce() + Send>;

/// The thread that runs every query on the shared connection, in the order they come. Measured against the
/// connection behind a mutex with each query in `block_in_place` (docs/performance.md, "the query thread"):
/// with real-time events in flight, about 50 threads waited on the mutex and it stood free 44 % of the time
/// between one holder and the next being scheduled.
#[derive(Clone)]
struct Queries(std::sync::mpsc::Sender<Job>);

impl Queries {
    /// Starts the thread; it ends when the last store handle is dropped.
    fn start() -> Result<Queries, Error> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("provisio-sqlite".into())
            .spawn(move || {
                while let Some(job) = provisio_core::idle::recv(&rx) {
                    job();
                }
            })
            .map_err(|e| Error::Corrupt(format!("cannot start the query thread: {e}")))?;
        Ok(Queries(tx))
    }
}

/// Prepared statements the shared connection keeps compiled.
const STATEMENT_CACHE: usize = 64;

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints the write-ahead log on a thread with its own connection while the store lives. SQLite would
/// otherwise run a checkpoint — a copy of the log and an fsync — inside whichever commit crosses 1,000 pages,
/// and every request waiting for the store's connection would wait for it too. PASSIVE never blocks writers.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<Mutex<Connection>>) -> Result<(), Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    std::thread::Builder::new()
        .name("provisio-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "cannot checkpoint the database's write-ahead log");
                }
            }
        })
        .map_err(|e| Error::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database file at `path`.
    pub fn open(path: &Path, secrets: SecretBox) -> Result<Self, StoreError> {
        let open = || -> Result<Self, Error> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // Checkpoints run on a thread of their own (below), not inside a request's commit.
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            let mut store = Self::init(conn, secrets)?;
            // Claims on real-time events matter only to the process that owns the file: those a crash left
            // would hold their events back until their lease ran out.
            store.conn().execute(
                "UPDATE realtime_events SET claimed_by = NULL, claimed_until = NULL
                 WHERE state = 'pending' AND claimed_by IS NOT NULL",
                [],
            )?;
            store.path = Some(path.to_path_buf());
            store.appender = Some(realtime::Appender::open(path)?);
            spawn_checkpointer(path, Arc::downgrade(&store.conn))?;
            Ok(store)
        };
        Ok(open()?)
    }

    /// An in-memory store (tests).
    pub fn in_memory(secrets: SecretBox) -> Result<Self, StoreError> {
        let open = || Self::init(Connection::open_in_memory()?, secrets);
        Ok(open()?)
    }

    fn init(mut conn: Connection, secrets: SecretBox) -> Result<Self, Error> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 8 MiB of page cache (the default is 2 MiB). It was 32 MiB while links were a WITHOUT ROWID table whose
        // upserts landed on random pages; as a rowid table a page's links land together, and 8 MiB writes as fast
        // with 31-37 MiB less peak RSS in the 100,000-user Read (docs/performance.md, 2026-12-05).
        conn.pragma_update(None, "cache_size", -8192)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement the store caches (about 50): with rusqlite's default of 16, a real-time
        // event's dozen statements beside a job's evicted each other and were compiled again.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrations::run(&mut conn)?;
        systems::name_sealed_secrets(&conn, &secrets)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            queries: Queries::start()?,
            secrets,
            path: None,
            appender: None,
            systems_generation: Arc::default(),
        })
    }

    /// Every aggregate's interface, backed by this store.
    pub fn stores(&self) -> Stores {
        Stores::new(Arc::new(self.clone()), self.secrets.clone())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `work` on the query thread and waits for it without holding a tokio worker.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let store = self.clone();
        let job: Job = Box::new(move || {
            // A panic is this query's error, as a panic in a plugin call is that call's; the thread goes on.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&store)));
            drop(store);
            let _ = reply.send(result);
        });
        let stopped = || StoreError::Backend("the store's query thread has stopped".into());
        self.queries.0.send(job).map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Backend("the query did not finish: it panicked".into())),
        }
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The current schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let version = || -> Result<i64, Error> { Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?) };
        Ok(version()?)
    }
}

#[async_trait::async_trait]
impl provisio_core::store::Readiness for SqliteStore {
    async fn ready(&self) -> Result<(), StoreError> {
        let known = migrations::known();
        let version = self
            .blocking(|s| Ok(s.conn().query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?))
            .await?;
        if version != known {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {version}, this Provisio knows {known}"
            )));
        }
        Ok(())
    }
}

/// Unix milliseconds `lease` from now (the end of a claim's lease; claims only matter to this process here).
pub(crate) fn millis_after(lease: std::time::Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now + lease).as_millis() as i64
}

/// Now, in the store's text form.
fn now() -> String {
    provisio_core::store::now()
}

#[cfg(test)]
pub(crate) fn test_store() -> SqliteStore {
    SqliteStore::in_memory(SecretBox::from_key([1; 32])).expect("in-memory store")
}

#[cfg(test)]
mod tests {
    use provisio_core::secrets::SecretBox;
    use provisio_core::store::conformance;

    use super::SqliteStore;

    #[test]
    fn migrates() {
        let s = super::test_store();
        assert!(s.schema_version().expect("version") >= 1);
    }

    /// Every aggregate behaves as the store's interfaces say, in memory and on a file (where real-time
    /// events are appended by their own writer thread).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_to_the_store_interfaces() {
        conformance::all(|| async { super::test_store().stores() }).await;
        let dir = tempfile::tempdir().expect("dir");
        let n = std::sync::atomic::AtomicUsize::new(0);
        conformance::all(|| async {
            let file = dir
                .path()
                .join(format!("{}.db", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
            SqliteStore::open(&file, SecretBox::from_key([2; 32]))
                .expect("open")
                .stores()
        })
        .await;
    }
}
