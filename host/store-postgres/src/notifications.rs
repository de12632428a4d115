//! Notification subscriptions and the delivery outbox on PostgreSQL, shared by the replicas: a due delivery
//! is claimed by one replica (`FOR UPDATE SKIP LOCKED`) with a lease; a dead replica's claims expire.

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::notifications::{
    AfterAttempt, Attempt, Channel, Delivery, NewDelivery, NotificationStore, Subscription, SubscriptionSpec,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Error, PostgresStore, now};

const SUBSCRIPTION_COLUMNS: &str =
    "id, system_id, kinds, channel, target, secret IS NOT NULL, backlog_minutes, description, created_at, updated_at";

const DELIVERY_COLUMNS: &str =
    "id, subscription_id, channel, kind, payload, status, created_at, next_attempt_at, finished_at";

fn secret_context(id: &str) -> String {
    format!("notification secret {id}")
}

fn channel_columns(channel: &Channel) -> (&'static str, String) {
    match channel {
        Channel::Webhook { url } => ("webhook", url.clone()),
        Channel::Email { recipients } => (
            "email",
            serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into()),
        ),
    }
}

fn channel_of(name: &str, target: String) -> Result<Channel, Error> {
    match name {
        "webhook" => Ok(Channel::Webhook { url: target }),
        "email" => Ok(Channel::Email {
            recipients: crate::from_json(&target)?,
        }),
        other => Err(Error::Corrupt(format!("unknown stored channel {other}"))),
    }
}

fn after(after: Duration) -> String {
    let d = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    provisio_core::store::timestamp(chrono::Utc::now() + d)
}

fn subscription_of(r: &PgRow) -> Result<Subscription, Error> {
    let kinds: String = r.try_get(2)?;
    let channel: String = r.try_get(3)?;
    let minutes: i64 = r.try_get(6)?;
    Ok(Subscription {
        id: r.try_get(0)?,
        spec: SubscriptionSpec {
            system_id: r.try_get(1)?,
            kinds: crate::from_json(&kinds)?,
            channel: channel_of(&channel, r.try_get(4)?)?,
            backlog_minutes: minutes.clamp(0, u32::MAX as i64) as u32,
            description: r.try_get(7)?,
        },
        has_secret: r.try_get(5)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

fn delivery_of(r: &PgRow) -> Result<Delivery, Error> {
    let payload: String = r.try_get(4)?;
    Ok(Delivery {
        id: r.try_get(0)?,
        subscription_id: r.try_get(1)?,
        channel: r.try_get(2)?,
        kind: r.try_get(3)?,
        payload: crate::from_json(&payload)?,
        status: r.try_get(5)?,
        created_at: r.try_get(6)?,
        next_attempt_at: r.try_get(7)?,
        finished_at: r.try_get(8)?,
        attempts: Vec::new(),
    })
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

impl PostgresStore {
    async fn with_attempts(&self, mut deliveries: Vec<Delivery>) -> Result<Vec<Delivery>, Error> {
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
        let rows = sqlx::query(
            "SELECT delivery_id, number, at, status, response_code, error FROM notification_attempts
             WHERE delivery_id = ANY($1) ORDER BY delivery_id, number",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let id: String = r.try_get(0)?;
            let attempt = Attempt {
                number: r.try_get(1)?,
                at: r.try_get(2)?,
                status: r.try_get(3)?,
                response_code: r.try_get(4)?,
                error: r.try_get(5)?,
            };
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == id) {
                d.attempts.push(attempt);
            }
        }
        Ok(deliveries)
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>, Error> {
        sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(subscription_of)
        .transpose()
    }
}

/// Inserts one delivery, pending and due `at`; already claimed when `claim` (node, until) says so.
async fn insert_delivery(
    executor: impl sqlx::PgExecutor<'_>,
    d: &NewDelivery,
    at: &str,
    claim: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notification_deliveries
         (id, subscription_id, channel, kind, payload, status, created_at, next_attempt_at, claimed_by, claim_until)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7, $8)",
    )
    .bind(&d.id)
    .bind(&d.subscription_id)
    .bind(&d.channel)
    .bind(&d.kind)
    .bind(crate::to_json(&d.payload)?)
    .bind(at)
    .bind(claim.map(|(node, _)| node))
    .bind(claim.map(|(_, until)| until))
    .execute(executor)
    .await
    .map_err(Error::from)?;
    Ok(())
}

#[async_trait::async_trait]
impl NotificationStore for PostgresStore {
    async fn create_subscription(
        &self,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Subscription, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = secret.map(|plain| self.secrets.seal(&secret_context(&id), plain.as_bytes()));
        let (channel, target) = channel_columns(&spec.channel);
        let at = now();
        let inserted = sqlx::query(
            "INSERT INTO notification_subscriptions
             (id, system_id, kinds, channel, target, secret, backlog_minutes, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&id)
        .bind(&spec.system_id)
        .bind(crate::to_json(&spec.kinds)?)
        .bind(channel)
        .bind(target)
        .bind(sealed)
        .bind(spec.backlog_minutes as i64)
        .bind(&spec.description)
        .bind(at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound(format!(
                    "no system with id {}",
                    spec.system_id.clone().unwrap_or_default()
                )));
            }
            Err(e) => return Err(Error::from(e).into()),
        }
        Ok(self
            .get_subscription(&id)
            .await?
            .ok_or_else(|| Error::Corrupt("the subscription vanished".into()))?)
    }

    async fn update_subscription(
        &self,
        id: &str,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Option<Subscription>, StoreError> {
        let sealed = secret.map(|plain| self.secrets.seal(&secret_context(id), plain.as_bytes()));
        let (channel, target) = channel_columns(&spec.channel);
        let updated = sqlx::query(
            "UPDATE notification_subscriptions SET system_id = $2, kinds = $3, channel = $4, target = $5,
             secret = coalesce($6, secret), backlog_minutes = $7, description = $8, updated_at = $9
             WHERE id = $1",
        )
        .bind(id)
        .bind(&spec.system_id)
        .bind(crate::to_json(&spec.kinds)?)
        .bind(channel)
        .bind(target)
        .bind(sealed)
        .bind(spec.backlog_minutes as i64)
        .bind(&spec.description)
        .bind(now())
        .execute(&self.pool)
        .await;
        let n = match updated {
            Ok(done) => done.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound(format!(
                    "no system with id {}",
                    spec.system_id.clone().unwrap_or_default()
                )));
            }
            Err(e) => return Err(Error::from(e).into()),
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(self.get_subscription(id).await?)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM notification_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Ok(self.get_subscription(id).await?)
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(subscription_of).collect::<Result<_, _>>()?)
    }

    async fn subscription_secret(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret FROM notification_subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Option<Vec<u8>> = row.try_get(0).map_err(Error::from)?;
        let Some(sealed) = sealed else { return Ok(None) };
        let plain = self
            .secrets
            .open_sealed(&secret_context(id), &sealed)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(Some(
            String::from_utf8(plain).map_err(|_| Error::Corrupt("the stored secret is not text".into()))?,
        ))
    }

    async fn collapse(&self, key: &str, window: Duration) -> Result<Option<u64>, StoreError> {
        let at = now();
        let since = provisio_core::store::timestamp(
            chrono::Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
        );
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        // The first of racing replicas inserts the window; everyone then decides under its row lock.
        let inserted = sqlx::query(
            "INSERT INTO notification_windows (key, last_sent, suppressed) VALUES ($1, $2, 0)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await.map_err(Error::from)?;
            return Ok(Some(0));
        }
        let row = sqlx::query("SELECT last_sent, suppressed FROM notification_windows WHERE key = $1 FOR UPDATE")
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)?;
        let last: String = row.try_get(0).map_err(Error::from)?;
        let suppressed: i64 = row.try_get(1).map_err(Error::from)?;
        let answer = if last > since {
            sqlx::query("UPDATE notification_windows SET suppressed = suppressed + 1 WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            None
        } else {
            sqlx::query("UPDATE notification_windows SET last_sent = $2, suppressed = 0 WHERE key = $1")
                .bind(key)
                .bind(&at)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            Some(suppressed.max(0) as u64)
        };
        tx.commit().await.map_err(Error::from)?;
        Ok(answer)
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        for d in &deliveries {
            insert_delivery(&mut *tx, d, &at, None).await?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn enqueue_claimed(
        &self,
        delivery: NewDelivery,
        node: &str,
        lease: Duration,
    ) -> Result<Delivery, StoreError> {
        let at = now();
        insert_delivery(&self.pool, &delivery, &at, Some((node, &after(lease)))).await?;
        Ok(delivery.queued_at(at))
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        lease: Duration,
        limit: i64,
        only: Option<&str>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let at = now();
        let rows = sqlx::query(&format!(
            "UPDATE notification_deliveries SET claimed_by = $1, claim_until = $2
             WHERE id IN (
                 SELECT id FROM notification_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= $3 AND (claim_until IS NULL OR claim_until < $3)
                   AND ($5::text IS NULL OR id = $5)
                 ORDER BY next_attempt_at, id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(node)
        .bind(after(lease))
        .bind(&at)
        .bind(limit.max(0))
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let deliveries = rows.iter().map(delivery_of).collect::<Result<Vec<_>, _>>()?;
        Ok(self.with_attempts(deliveries).await?)
    }

    async fn record_attempt(
        &self,
        id: &str,
        node: &str,
        attempt: &Attempt,
        after: &AfterAttempt,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let holder: Option<Option<String>> = sqlx::query(
            "SELECT claimed_by FROM notification_deliveries WHERE id = $1 AND status = 'pending' FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(Error::from)?;
        if holder.flatten().as_deref() != Some(node) {
            return Err(StoreError::Fenced(format!("delivery {id} is not claimed by {node}")));
        }
        sqlx::query(
            "INSERT INTO notification_attempts (delivery_id, number, at, status, response_code, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(attempt.number)
        .bind(&attempt.at)
        .bind(&attempt.status)
        .bind(attempt.response_code)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        let (status, next, finished) = match after {
            AfterAttempt::Delivered => ("delivered", None, Some(now())),
            AfterAttempt::RetryAt(at) => ("pending", Some(at.clone()), None),
            AfterAttempt::Failed => ("failed", None, Some(now())),
        };
        sqlx::query(
            "UPDATE notification_deliveries SET status = $2, next_attempt_at = $3, finished_at = $4,
             claimed_by = NULL, claim_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(next)
        .bind(finished)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        let deliveries = row.as_ref().map(delivery_of).transpose()?.into_iter().collect();
        Ok(self.with_attempts(deliveries).await?.pop())
    }

    async fn deliveries(&self, subscription: Option<&str>, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries
             WHERE $1::text IS NULL OR subscription_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(subscription)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let deliveries = rows.iter().map(delivery_of).collect::<Result<Vec<_>, _>>()?;
        Ok(self.with_attempts(deliveries).await?)
    }

    async fn oldest_pending_events(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source_id, min(received_at) FROM realtime_events WHERE state = 'pending' GROUP BY source_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)?)
    }
}
