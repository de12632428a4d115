//! Targets' shared limits on PostgreSQL: one row per target with its rate schedule (the theoretical arrival
//! time of the next request, a generic cell rate algorithm) and its pause, both on the database's clock.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::limits::LimitStore;
use sqlx::Row;

use crate::{Error, PostgresStore};

#[async_trait::async_trait]
impl LimitStore for PostgresStore {
    async fn reserve(&self, target: &str, per_second: f64, burst: f64) -> Result<Duration, StoreError> {
        let interval = 1.0 / per_second.max(0.001);
        // The schedule moves on by one interval from where it stood (or from now, when it lags behind); a
        // request waits until its slot, less the burst the schedule may run ahead. After a pause it starts
        // again without a burst (the target has just said it was over its limit).
        let row = sqlx::query(
            "INSERT INTO target_limits AS l (target, tat) VALUES ($1, now() + make_interval(secs => $2))
             ON CONFLICT (target) DO UPDATE SET tat = greatest(l.tat, now(), l.paused_until + make_interval(secs => $3 - $2))
                                                  + make_interval(secs => $2)
             RETURNING greatest(0, extract(epoch FROM l.tat - now()) - $3)::float8,
                       greatest(0, extract(epoch FROM coalesce(l.paused_until, now()) - now()))::float8",
        )
        .bind(target)
        .bind(interval)
        .bind(burst.max(1.0) * interval)
        .fetch_one(&self.limits)
        .await
        .map_err(Error::from)?;
        let (turn, paused): (f64, f64) = (
            row.try_get(0).map_err(Error::from)?,
            row.try_get(1).map_err(Error::from)?,
        );
        Ok(Duration::from_secs_f64(turn.max(paused).max(0.0)))
    }

    async fn pause(&self, target: &str, pause: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO target_limits AS l (target, tat, paused_until) VALUES ($1, now(), now() + make_interval(secs => $2))
             ON CONFLICT (target) DO UPDATE SET paused_until = greatest(l.paused_until, excluded.paused_until)",
        )
        .bind(target)
        .bind(pause.as_secs_f64())
        .execute(&self.limits)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn pauses(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        let rows = sqlx::query(
            "SELECT target, extract(epoch FROM paused_until - now())::float8 FROM target_limits WHERE paused_until > now()",
        )
        .fetch_all(&self.limits)
        .await
        .map_err(Error::from)?;
        rows.iter()
            .map(|row| {
                let target: String = row.try_get(0).map_err(Error::from)?;
                let left: f64 = row.try_get(1).map_err(Error::from)?;
                Ok((target, Duration::from_secs_f64(left.max(0.0))))
            })
            .collect()
    }
}
