//! The embedded store: one SQLite file (WAL) in the data directory, with migrations.
//!
//! Holds admins and technical users (password hashes), systems (secret properties encrypted with the
//! master key, see [`crate::secrets`]), their transformation versions, and the registry of plugins.
//! Queries are short; callers run them inline, and the connection is shared behind a mutex.

pub mod generation;
pub mod jobs;
pub mod links;
mod migrations;
pub mod plugins;
pub mod principals;
pub mod realtime;
pub mod systems;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::secrets::SecretBox;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// A stored value could not be decoded or decrypted.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    secrets: SecretBox,
    path: Option<std::path::PathBuf>,
    /// Bumped on every change to a system or its transformation, so views cached from them (the proxy's)
    /// know they are stale.
    systems_generation: Arc<std::sync::atomic::AtomicU64>,
}

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints the write-ahead log on a thread with its own connection while the store lives. SQLite would
/// otherwise run a checkpoint — a copy of the log and an fsync — inside whichever commit crosses 1,000 pages,
/// and every request waiting for the store's connection would wait for it too. PASSIVE never blocks writers.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<Mutex<Connection>>) -> Result<(), StoreError> {
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
        .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

impl Store {
    /// Opens (creating and migrating) the database file at `path`.
    pub fn open(path: &Path, secrets: SecretBox) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Checkpoints run on a thread of their own (below), not inside a request's commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let mut store = Self::init(conn, secrets)?;
        store.path = Some(path.to_path_buf());
        spawn_checkpointer(path, Arc::downgrade(&store.conn))?;
        Ok(store)
    }

    /// An in-memory store (tests).
    pub fn in_memory(secrets: SecretBox) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, secrets)
    }

    fn init(mut conn: Connection, secrets: SecretBox) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 32 MiB of page cache (the default is 2 MiB): a job's link upserts land on random pages of a table
        // that grows by a few hundred bytes per entity.
        conn.pragma_update(None, "cache_size", -32768)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::run(&mut conn)?;
        systems::name_sealed_secrets(&conn, &secrets)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            secrets,
            path: None,
            systems_generation: Arc::default(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The current schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// An instant in the store's text form (RFC 3339 UTC with milliseconds, sortable as text, like [`now`]).
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Now, in the store's text form (see [`timestamp`]).
pub fn now() -> String {
    // RFC 3339 UTC with milliseconds, sortable as text.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
pub(crate) fn test_store() -> Store {
    Store::in_memory(SecretBox::from_key([1; 32])).expect("in-memory store")
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrates_and_formats_time() {
        let s = super::test_store();
        assert!(s.schema_version().expect("version") >= 1);
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_415), (2025, 11, 23));
        assert!(super::now().ends_with('Z'));
    }
}
