//! Failed logins and login locks on PostgreSQL, on the database's clock, shared by every replica.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::logins::LoginStore;
use sqlx::Row;

use crate::{Error, PostgresStore};

#[async_trait::async_trait]
impl LoginStore for PostgresStore {
    async fn record_failure(&self, keys: &[String], window: Duration) -> Result<Vec<u32>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        sqlx::query("DELETE FROM login_failures WHERE at <= now() - make_interval(secs => $1)")
            .bind(window.as_secs_f64())
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        let mut counts = Vec::with_capacity(keys.len());
        for key in keys {
            sqlx::query("INSERT INTO login_failures (key, at) VALUES ($1, now())")
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            // Every replica's failures count (READ COMMITTED sees the ones committed before this statement).
            let n: i64 = sqlx::query(
                "SELECT count(*) FROM login_failures WHERE key = $1 AND at > now() - make_interval(secs => $2)",
            )
            .bind(key)
            .bind(window.as_secs_f64())
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)?
            .try_get(0)
            .map_err(Error::from)?;
            counts.push(n.clamp(0, u32::MAX as i64) as u32);
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(counts)
    }

    async fn lock(&self, key: &str, lock: Duration) -> Result<(), StoreError> {
        // Locks are rare: ended ones are swept here.
        sqlx::query("DELETE FROM login_locks WHERE until <= now()")
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        sqlx::query(
            "INSERT INTO login_locks AS l (key, until) VALUES ($1, now() + make_interval(secs => $2))
             ON CONFLICT (key) DO UPDATE SET until = greatest(l.until, excluded.until)",
        )
        .bind(key)
        .bind(lock.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn locked(&self, keys: &[String]) -> Result<Option<Duration>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT extract(epoch FROM max(until) - now())::float8 FROM login_locks
             WHERE key = ANY($1) AND until > now()",
        )
        .bind(keys.to_vec())
        .fetch_one(&self.pool)
        .await
        .map_err(Error::from)?;
        let left: Option<f64> = row.try_get(0).map_err(Error::from)?;
        Ok(left.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    async fn forget_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn locks(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, extract(epoch FROM until - now())::float8 FROM login_locks
             WHERE until > now() ORDER BY until DESC, key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get(0)?;
                let left: f64 = r.try_get(1)?;
                Ok((key, Duration::from_secs_f64(left.max(0.0))))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| Error::from(e).into())
    }

    async fn unlock(&self, key: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        // One statement ends the lock and tells whether it was still running (an ended one is swept too).
        let running: Option<bool> =
            sqlx::query_scalar("DELETE FROM login_locks WHERE key = $1 RETURNING until > now()")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::from)?;
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(running == Some(true))
    }
}
