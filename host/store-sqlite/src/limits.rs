//! Targets' shared limits on SQLite, as on PostgreSQL (one row per target: the rate schedule's theoretical
//! arrival time and the pause, in Unix milliseconds). One process uses this file, so its own limiter would
//! do; the table keeps both backends answering the interface alike.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::limits::LimitStore;
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, millis_after};

#[async_trait::async_trait]
impl LimitStore for SqliteStore {
    async fn reserve(&self, target: &str, per_second: f64, burst: f64) -> Result<Duration, StoreError> {
        let target = target.to_owned();
        let interval = (1000.0 / per_second.max(0.001)).round() as i64;
        let ahead = (burst.max(1.0) * interval as f64).round() as i64;
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let conn = s.conn();
            let row: Option<(i64, Option<i64>)> = conn
                .query_row(
                    "SELECT tat, paused_until FROM target_limits WHERE target = ?1",
                    params![target],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (tat, paused) = row.unwrap_or((now, None));
            // As on PostgreSQL: no burst right after a pause.
            let after_pause = paused.map_or(i64::MIN, |p| p + ahead - interval);
            let tat = tat.max(now).max(after_pause) + interval;
            conn.execute(
                "INSERT INTO target_limits (target, tat) VALUES (?1, ?2) ON CONFLICT (target) DO UPDATE SET tat = ?2",
                params![target, tat],
            )?;
            let wait = (tat - now - ahead).max(paused.unwrap_or(now) - now).max(0);
            Ok(Duration::from_millis(wait as u64))
        })
        .await
    }

    async fn pause(&self, target: &str, pause: Duration) -> Result<(), StoreError> {
        let target = target.to_owned();
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let until = now + pause.as_millis() as i64;
            s.conn().execute(
                "INSERT INTO target_limits (target, tat, paused_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (target) DO UPDATE SET paused_until = max(coalesce(paused_until, 0), ?3)",
                params![target, now, until],
            )?;
            Ok(())
        })
        .await
    }

    async fn pauses(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        self.blocking(move |s| {
            let now = millis_after(Duration::ZERO);
            let conn = s.conn();
            let mut stmt =
                conn.prepare_cached("SELECT target, paused_until FROM target_limits WHERE paused_until > ?1")?;
            let rows = stmt.query_map(params![now], |r| {
                let until: i64 = r.get(1)?;
                Ok((r.get(0)?, Duration::from_millis((until - now).max(0) as u64)))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
