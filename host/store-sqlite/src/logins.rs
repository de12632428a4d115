//! Failed logins and login locks on SQLite, as on PostgreSQL (times in Unix milliseconds).

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::logins::LoginStore;
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, millis_after};

#[async_trait::async_trait]
impl LoginStore for SqliteStore {
    async fn record_failure(&self, keys: &[String], window: Duration) -> Result<Vec<u32>, StoreError> {
        let keys = keys.to_vec();
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let since = now - window.as_millis() as i64;
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM login_failures WHERE at <= ?1", params![since])?;
            let mut counts = Vec::with_capacity(keys.len());
            for key in &keys {
                tx.execute(
                    "INSERT INTO login_failures (key, at) VALUES (?1, ?2)",
                    params![key, now],
                )?;
                let n: i64 = tx.query_row(
                    "SELECT count(*) FROM login_failures WHERE key = ?1 AND at > ?2",
                    params![key, since],
                    |r| r.get(0),
                )?;
                counts.push(n.clamp(0, u32::MAX as i64) as u32);
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }

    async fn lock(&self, key: &str, lock: Duration) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| {
            let until = millis_after(lock);
            s.conn().execute(
                "INSERT INTO login_locks (key, until) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET until = max(until, ?2)",
                params![key, until],
            )?;
            Ok(())
        })
        .await
    }

    async fn locked(&self, keys: &[String]) -> Result<Option<Duration>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let keys = keys.to_vec();
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let conn = s.conn();
            let mut until: Option<i64> = None;
            let mut stmt = conn.prepare_cached("SELECT until FROM login_locks WHERE key = ?1")?;
            let mut ended = false;
            for key in &keys {
                let mut rows = stmt.query(params![key])?;
                if let Some(row) = rows.next()? {
                    let u: i64 = row.get(0)?;
                    if u > now {
                        until = Some(until.map_or(u, |x| x.max(u)));
                    } else {
                        ended = true;
                    }
                }
            }
            drop(stmt);
            if ended {
                conn.execute("DELETE FROM login_locks WHERE until <= ?1", params![now])?;
            }
            Ok(until.map(|u| Duration::from_millis((u - now).max(0) as u64)))
        })
        .await
    }

    async fn forget_failures(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| {
            s.conn()
                .execute("DELETE FROM login_failures WHERE key = ?1", params![key])?;
            Ok(())
        })
        .await
    }

    async fn locks(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let conn = s.conn();
            let mut stmt =
                conn.prepare_cached("SELECT key, until FROM login_locks WHERE until > ?1 ORDER BY until DESC, key")?;
            let rows = stmt.query_map(params![now], |r| {
                let until: i64 = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    Duration::from_millis((until - now).max(0) as u64),
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn unlock(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            // One statement ends the lock and tells whether it was still running (an ended one is swept too).
            let running: Option<bool> = tx
                .query_row(
                    "DELETE FROM login_locks WHERE key = ?1 RETURNING until > ?2",
                    params![key, now],
                    |row| row.get(0),
                )
                .optional()?;
            tx.execute("DELETE FROM login_failures WHERE key = ?1", params![key])?;
            tx.commit()?;
            Ok(running == Some(true))
        })
        .await
    }
}
