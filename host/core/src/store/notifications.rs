//! Notification subscriptions and the durable outbox of their deliveries (issue 19).
//!
//! A subscription names a source system (or every system), the event kinds it wants, and a channel: a
//! webhook (URL, with a secret the HMAC signature is made with; the secret is sealed with the master key and
//! never read back through the API) or e-mail (recipients). Each notification a subscription wants becomes a
//! delivery in the outbox, claimed by one replica at a time with a lease, attempted until it is delivered or
//! its attempts are used up; every attempt is kept in the delivery log. Storms are collapsed with a
//! per-key window ([`NotificationStore::collapse`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;

/// The event kinds a subscription can want, in the words of the API.
pub const EVENT_KINDS: [&str; 7] = [
    "job.failed",
    "job.finished_with_errors",
    "job.recovered",
    "deletes.held",
    "target.quarantined",
    "plugin.trapping",
    "realtime.backlog",
];

/// Where a subscription's notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Channel {
    /// An HTTP POST of the JSON notification, signed.
    Webhook {
        /// `http://` or `https://`.
        url: String,
    },
    /// A mail over SMTP.
    Email {
        /// Addresses.
        recipients: Vec<String>,
    },
}

impl Channel {
    /// `webhook` or `email`.
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Email { .. } => "email",
        }
    }
}

/// What an admin sets on a subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionSpec {
    /// The system whose events it wants; `None` for every system (and events of no system).
    pub system_id: Option<String>,
    /// The event kinds it wants (of [`EVENT_KINDS`]).
    pub kinds: Vec<String>,
    /// Where they go.
    pub channel: Channel,
    /// `realtime.backlog`: the age in minutes of the oldest pending real-time event that is worth a
    /// notification.
    pub backlog_minutes: u32,
    /// A note for the admin.
    pub description: String,
}

/// A subscription as stored (never with its secret).
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// Id.
    pub id: String,
    /// What it wants.
    pub spec: SubscriptionSpec,
    /// Whether a webhook secret is set.
    pub has_secret: bool,
    /// When it was created.
    pub created_at: String,
    /// When it was last changed.
    pub updated_at: String,
}

/// A delivery to put in the outbox.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    /// Its id: the idempotency key the receiver sees on every attempt.
    pub id: String,
    /// The subscription.
    pub subscription_id: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The event kind (or `test`).
    pub kind: String,
    /// The notification as JSON (the webhook's body).
    pub payload: Value,
}

impl NewDelivery {
    /// The delivery as stored when queued `at`: pending, due then, no attempt yet.
    pub fn queued_at(self, at: String) -> Delivery {
        Delivery {
            id: self.id,
            subscription_id: self.subscription_id,
            channel: self.channel,
            kind: self.kind,
            payload: self.payload,
            status: "pending".into(),
            next_attempt_at: Some(at.clone()),
            created_at: at,
            finished_at: None,
            attempts: Vec::new(),
        }
    }
}

/// One attempt at a delivery.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first.
    pub number: i64,
    /// When it was made.
    pub at: String,
    /// `delivered`, `retry` (a later attempt follows) or `failed` (none follows).
    pub status: String,
    /// The receiver's HTTP status, or the SMTP reply code.
    pub response_code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Id (the idempotency key).
    pub id: String,
    /// The subscription.
    pub subscription_id: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The event kind (or `test`).
    pub kind: String,
    /// The notification.
    pub payload: Value,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// When it was queued.
    pub created_at: String,
    /// The next attempt's time, while pending.
    pub next_attempt_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Its attempts so far, oldest first.
    pub attempts: Vec<Attempt>,
}

/// What follows an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterAttempt {
    /// Delivered: the delivery ends.
    Delivered,
    /// Another attempt at this instant (store text form).
    RetryAt(String),
    /// No more attempts: the delivery ends as failed.
    Failed,
}

/// The subscriptions and the delivery outbox, as a backend stores them.
#[async_trait::async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores a new subscription, with its webhook secret (sealed) if any.
    async fn create_subscription(
        &self,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Subscription, StoreError>;
    /// Replaces a subscription's settings; `secret` `None` keeps the secret it has. `None` when there is no
    /// such subscription.
    async fn update_subscription(
        &self,
        id: &str,
        spec: &SubscriptionSpec,
        secret: Option<&str>,
    ) -> Result<Option<Subscription>, StoreError>;
    /// Removes a subscription and its deliveries; whether there was one.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;
    /// One subscription.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;
    /// Every subscription, oldest first.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// The plaintext webhook secret of a subscription (to sign with); `None` when it has none.
    async fn subscription_secret(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Collapses a storm: for `key`, answers `Some(n)` when a notification may go now — none went within
    /// `window`; `n` is how many were suppressed since the last one, and the count starts again — or `None`
    /// when one went within `window` (this one is counted as suppressed). Atomic across replicas.
    async fn collapse(&self, key: &str, window: Duration) -> Result<Option<u64>, StoreError>;
    /// Puts deliveries in the outbox, pending, due now.
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> Result<(), StoreError>;
    /// Puts one delivery in the outbox already claimed by `node` for `lease`, and answers it: a send made
    /// now (a subscription's test) that no worker may take between its queueing and its attempt.
    async fn enqueue_claimed(&self, delivery: NewDelivery, node: &str, lease: Duration)
    -> Result<Delivery, StoreError>;
    /// Claims up to `limit` due pending deliveries (only `only`, when given) for `node` for `lease`; those
    /// another node holds under a live claim are skipped. A dead node's claims expire.
    async fn claim_deliveries(
        &self,
        node: &str,
        lease: Duration,
        limit: i64,
        only: Option<&str>,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records an attempt and what follows it; the claim ends. Only while `node` holds the claim (else
    /// [`StoreError::Fenced`]).
    async fn record_attempt(
        &self,
        id: &str,
        node: &str,
        attempt: &Attempt,
        after: &AfterAttempt,
    ) -> Result<(), StoreError>;
    /// One delivery with its attempts.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;
    /// The delivery log, newest first, optionally of one subscription, with their attempts.
    async fn deliveries(&self, subscription: Option<&str>, limit: i64) -> Result<Vec<Delivery>, StoreError>;
    /// Per source system with pending real-time events: the arrival time of its oldest pending one.
    async fn oldest_pending_events(&self) -> Result<Vec<(String, String)>, StoreError>;
}
