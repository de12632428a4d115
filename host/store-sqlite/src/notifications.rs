//! Notification subscriptions and the delivery outbox on SQLite, as on PostgreSQL (times in the store's
//! text form).

use std::time::Duration;

use provisio_core::store::StoreError;
use provisio_core::store::notifications::{
    AfterAttempt, Attempt, Channel, Delivery, NewDelivery, NotificationStore, Subscription, SubscriptionSpec,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Error, SqliteStore, now};

const SUBSCRIPTION_COLUMNS: &str =
    "id, system_id, kinds, channel, target, secret IS NOT NULL, backlog_minutes, description, created_at, updated_at";

const DELIVERY_COLUMNS: &str =
    "id, subscription_id, channel, kind, payload, status, created_at, next_attempt_at, finished_at";

/// The context a subscription's secret is sealed under.
fn secret_context(id: &str) -> String {
    format!("notification secret {id}")
}

/// The channel's stored name and target (a URL, or the recipients as JSON).
pub(crate) fn channel_columns(channel: &Channel) -> (&'static str, String) {
    match channel {
        Channel::Webhook { url } => ("webhook", url.clone()),
        Channel::Email { recipients } => (
            "email",
            serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into()),
        ),
    }
}

/// The channel of stored columns.
pub(crate) fn channel_of(name: &str, target: String) -> Result<Channel, String> {
    match name {
        "webhook" => Ok(Channel::Webhook { url: target }),
        "email" => Ok(Channel::Email {
            recipients: serde_json::from_str(&target).map_err(|e| format!("stored recipients: {e}"))?,
        }),
        other => Err(format!("unknown stored channel {other}")),
    }
}

/// An instant `after` from now, in the store's text form.
pub(crate) fn after(after: Duration) -> String {
    let d = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    provisio_core::store::timestamp(chrono::Utc::now() + d)
}

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Subscription, String>> {
    let (kinds, channel, target, minutes): (String, String, String, i64) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?);
    let (id, system_id, has_secret, description, created_at, updated_at) =
        (r.get(0)?, r.get(1)?, r.get(5)?, r.get(7)?, r.get(8)?, r.get(9)?);
    let kinds = match serde_json::from_str(&kinds) {
        Ok(k) => k,
        Err(e) => return Ok(Err(format!("stored kinds: {e}"))),
    };
    let channel = match channel_of(&channel, target) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Subscription {
        id,
        spec: SubscriptionSpec {
            system_id,
            kinds,
            channel,
            backlog_minutes: minutes.clamp(0, u32::MAX as i64) as u32,
            description,
        },
        has_secret,
        created_at,
        updated_at,
    }))
}

fn get_subscription(conn: &Connection, id: &str) -> Result<Option<Subscription>, Error> {
    let row = conn
        .query_row(
            &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE id = ?1"),
            params![id],
            subscription_row,
        )
        .optional()?;
    row.transpose().map_err(Error::Corrupt)
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Delivery, String)> {
    let payload: String = r.get(4)?;
    Ok((
        Delivery {
            id: r.get(0)?,
            subscription_id: r.get(1)?,
            channel: r.get(2)?,
            kind: r.get(3)?,
            payload: serde_json::Value::Null,
            status: r.get(5)?,
            created_at: r.get(6)?,
            next_attempt_at: r.get(7)?,
            finished_at: r.get(8)?,
            attempts: Vec::new(),
        },
        payload,
    ))
}

/// Fills in the payloads and attempts of deliveries read from their rows.
fn complete(conn: &Connection, rows: Vec<(Delivery, String)>) -> Result<Vec<Delivery>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, at, status, response_code, error FROM notification_attempts
         WHERE delivery_id = ?1 ORDER BY number",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (mut d, payload) in rows {
        d.payload = serde_json::from_str(&payload).map_err(|e| Error::Corrupt(format!("stored payload: {e}")))?;
        d.attempts = stmt
            .query_map(params![d.id], |r| {
                Ok(Attempt {
                    number: r.get(0)?,
                    at: r.get(1)?,
                    status: r.get(2)?,
                    response_code: r.get(3)?,
                    error: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        out.push(d);
    }
    Ok(out)
}

/// Inserts one delivery, pending and due `at`; already claimed when `claim` (node, until) says so.
fn insert_delivery(
    conn: &Connection,
    d: &NewDelivery,
    at: &str,
    claim: Option<(&str, &str)>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO notification_deliveries
         (id, subscription_id, channel, kind, payload, status, created_at, next_attempt_at, claimed_by, claim_until)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7, ?8)",
        params![
            d.id,
            d.subscription_id,
            d.channel,
            d.kind,
            serde_json::to_string(&d.payload).unwrap_or_else(|_| "null".into()),
            at,
            claim.map(|(node, _)| node),
            claim.map(|(_, until)| until)
        ],
    )
}

#[async_trait::async_trait]
impl NotificationStore for SqliteStore {
    async fn create_subscription(
        &self,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Subscription, StoreError> {
        let spec = spec.clone();
        let secret = secret.map(str::to_owned);
        self.blocking(move |s| {
            let id = uuid::Uuid::new_v4().to_string();
            let sealed = secret.map(|plain| s.secrets.seal(&secret_context(&id), plain.as_bytes()));
            let (channel, target) = channel_columns(&spec.channel);
            let at = now();
            let conn = s.conn();
            conn.execute(
                "INSERT INTO notification_subscriptions
                 (id, system_id, kinds, channel, target, secret, backlog_minutes, description, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    id,
                    spec.system_id,
                    serde_json::to_string(&spec.kinds).unwrap_or_else(|_| "[]".into()),
                    channel,
                    target,
                    sealed,
                    spec.backlog_minutes as i64,
                    spec.description,
                    at
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Error::NotFound(format!(
                        "no system with id {}",
                        spec.system_id.clone().unwrap_or_default()
                    ))
                }
                e => Error::Sql(e),
            })?;
            get_subscription(&conn, &id)?.ok_or_else(|| Error::Corrupt("the subscription vanished".into()))
        })
        .await
    }

    async fn update_subscription(
        &self,
        id: &str,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Option<Subscription>, StoreError> {
        let (id, spec, secret) = (id.to_owned(), spec.clone(), secret.map(str::to_owned));
        self.blocking(move |s| {
            let sealed = secret.map(|plain| s.secrets.seal(&secret_context(&id), plain.as_bytes()));
            let (channel, target) = channel_columns(&spec.channel);
            let conn = s.conn();
            let n = conn
                .execute(
                    "UPDATE notification_subscriptions SET system_id = ?2, kinds = ?3, channel = ?4, target = ?5,
                     secret = coalesce(?6, secret), backlog_minutes = ?7, description = ?8, updated_at = ?9
                     WHERE id = ?1",
                    params![
                        id,
                        spec.system_id,
                        serde_json::to_string(&spec.kinds).unwrap_or_else(|_| "[]".into()),
                        channel,
                        target,
                        sealed,
                        spec.backlog_minutes as i64,
                        spec.description,
                        now()
                    ],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                        Error::NotFound(format!(
                            "no system with id {}",
                            spec.system_id.clone().unwrap_or_default()
                        ))
                    }
                    e => Error::Sql(e),
                })?;
            if n == 0 {
                return Ok(None);
            }
            get_subscription(&conn, &id)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            let n = s
                .conn()
                .execute("DELETE FROM notification_subscriptions WHERE id = ?1", params![id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| get_subscription(&s.conn(), &id)).await
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], subscription_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|r| r.map_err(Error::Corrupt)).collect()
        })
        .await
    }

    async fn subscription_secret(&self, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            let sealed: Option<Option<Vec<u8>>> = s
                .conn()
                .query_row(
                    "SELECT secret FROM notification_subscriptions WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(Some(sealed)) = sealed else { return Ok(None) };
            let plain = s
                .secrets
                .open_sealed(&secret_context(&id), &sealed)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            String::from_utf8(plain)
                .map(Some)
                .map_err(|_| Error::Corrupt("the stored secret is not text".into()))
        })
        .await
    }

    async fn collapse(&self, key: &str, window: Duration) -> Result<Option<u64>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| {
            let at = now();
            let since = provisio_core::store::timestamp(
                chrono::Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
            );
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            let row: Option<(String, i64)> = tx
                .query_row(
                    "SELECT last_sent, suppressed FROM notification_windows WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let answer = match row {
                Some((last, _)) if last > since => {
                    tx.execute(
                        "UPDATE notification_windows SET suppressed = suppressed + 1 WHERE key = ?1",
                        params![key],
                    )?;
                    None
                }
                Some((_, suppressed)) => {
                    tx.execute(
                        "UPDATE notification_windows SET last_sent = ?2, suppressed = 0 WHERE key = ?1",
                        params![key, at],
                    )?;
                    Some(suppressed.max(0) as u64)
                }
                None => {
                    tx.execute(
                        "INSERT INTO notification_windows (key, last_sent, suppressed) VALUES (?1, ?2, 0)",
                        params![key, at],
                    )?;
                    Some(0)
                }
            };
            tx.commit()?;
            Ok(answer)
        })
        .await
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| {
            let at = now();
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            for d in &deliveries {
                insert_delivery(&tx, d, &at, None)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn enqueue_claimed(
        &self,
        delivery: NewDelivery,
        node: &str,
        lease: Duration,
    ) -> Result<Delivery, StoreError> {
        let node = node.to_owned();
        self.blocking(move |s| {
            let at = now();
            insert_delivery(&s.conn(), &delivery, &at, Some((&node, &after(lease))))?;
            Ok(delivery.queued_at(at))
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        lease: Duration,
        limit: i64,
        only: Option<&str>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (node, only) = (node.to_owned(), only.map(str::to_owned));
        self.blocking(move |s| {
            let at = now();
            let until = after(lease);
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            let rows = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= ?1 AND (claim_until IS NULL OR claim_until < ?1)
                       AND (?2 IS NULL OR id = ?2)
                     ORDER BY next_attempt_at, id LIMIT ?3"
                ))?;
                stmt.query_map(params![at, only, limit], delivery_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            for (d, _) in &rows {
                tx.execute(
                    "UPDATE notification_deliveries SET claimed_by = ?2, claim_until = ?3 WHERE id = ?1",
                    params![d.id, node, until],
                )?;
            }
            let out = complete(&tx, rows)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn record_attempt(
        &self,
        id: &str,
        node: &str,
        attempt: &Attempt,
        after: &AfterAttempt,
    ) -> Result<(), StoreError> {
        let (id, node, attempt, after) = (id.to_owned(), node.to_owned(), attempt.clone(), after.clone());
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            let holder: Option<Option<String>> = tx
                .query_row(
                    "SELECT claimed_by FROM notification_deliveries WHERE id = ?1 AND status = 'pending'",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            if holder.flatten().as_deref() != Some(node.as_str()) {
                return Err(Error::Fenced(format!("delivery {id} is not claimed by {node}")));
            }
            tx.execute(
                "INSERT INTO notification_attempts (delivery_id, number, at, status, response_code, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    attempt.number,
                    attempt.at,
                    attempt.status,
                    attempt.response_code,
                    attempt.error
                ],
            )?;
            let (status, next, finished) = match &after {
                AfterAttempt::Delivered => ("delivered", None, Some(now())),
                AfterAttempt::RetryAt(at) => ("pending", Some(at.clone()), None),
                AfterAttempt::Failed => ("failed", None, Some(now())),
            };
            tx.execute(
                "UPDATE notification_deliveries SET status = ?2, next_attempt_at = ?3, finished_at = ?4,
                 claimed_by = NULL, claim_until = NULL WHERE id = ?1",
                params![id, status, next, finished],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            let conn = s.conn();
            let row = conn
                .query_row(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE id = ?1"),
                    params![id],
                    delivery_row,
                )
                .optional()?;
            Ok(complete(&conn, row.into_iter().collect())?.pop())
        })
        .await
    }

    async fn deliveries(&self, subscription: Option<&str>, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let subscription = subscription.map(str::to_owned);
        self.blocking(move |s| {
            let conn = s.conn();
            let rows = {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries
                     WHERE ?1 IS NULL OR subscription_id = ?1
                     ORDER BY created_at DESC, id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![subscription, limit.max(0)], delivery_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            complete(&conn, rows)
        })
        .await
    }

    async fn oldest_pending_events(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT source_id, min(received_at) FROM realtime_events WHERE state = 'pending' GROUP BY source_id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
