//! Notifications (issue 19): what happens to the service — a job failed or finished with errors, a source
//! is back to normal, deletes were held, a target was quarantined, a plugin version traps repeatedly, the
//! real-time backlog grows old — told to the admins who subscribed, by webhook or e-mail.
//!
//! [`Notifier::publish`] turns a [`Notification`] into one delivery per subscription that wants it, in the
//! store's outbox (durable: a restart continues them). The worker ([`Notifier::run`]) claims due deliveries
//! (one replica each, with a lease) and attempts them: a webhook is a signed JSON POST
//! ([`webhook`]), a mail goes over SMTP ([`email`]). Network errors, 5xx and 429 are retried with
//! exponential back-off; every attempt is in the delivery log. E-mail storms are collapsed: within a window,
//! one mail per subscription, kind and system, and the next mail says how many were suppressed.
//!
//! The producers are the job lifecycle ([`crate::provisioning`] calls [`Notifier::job_ended`]), and the
//! worker's periodic checks of plugin traps and the real-time backlog ([`checks`]).

pub mod checks;
pub mod email;
pub mod webhook;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::plugins::Plugins;
use crate::store::notifications::{AfterAttempt, Attempt, Channel, Delivery, NewDelivery, Subscription};
use crate::store::{StoreError, Stores};

pub use crate::store::notifications::EVENT_KINDS;

/// How notifications are sent.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// The SMTP server: `smtp://[user:password@]host[:port]` (STARTTLS when the server offers it; add
    /// `?tls=required` to insist, `?tls=none` never to), or `smtps://…` (TLS from the start). `None`: no
    /// e-mail (e-mail deliveries fail, saying so).
    pub smtp_url: Option<String>,
    /// The sender of the mails.
    pub smtp_from: Option<String>,
    /// The first retry's delay; each next one doubles it.
    pub retry_base: Duration,
    /// Attempts per delivery, the first one included.
    pub max_attempts: u32,
    /// Within this window one notification per subscription, kind and system goes by e-mail (and, for the
    /// periodic checks, by webhook); the rest are counted and the count goes with the next one.
    pub collapse_window: Duration,
    /// How often the worker looks for due deliveries (it is also woken by every publish).
    pub poll: Duration,
    /// How often plugin traps and the real-time backlog are checked.
    pub check_every: Duration,
    /// Traps of one plugin version within [`NotifySettings::trap_window`] that are worth a notification.
    pub trap_threshold: u64,
    /// See [`NotifySettings::trap_threshold`].
    pub trap_window: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            smtp_url: None,
            smtp_from: None,
            retry_base: Duration::from_secs(1),
            max_attempts: 6,
            collapse_window: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(1),
            check_every: Duration::from_secs(30),
            trap_threshold: 3,
            trap_window: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The system a notification is about.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemRef {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `source`, `target` or `proxy`.
    pub role: String,
}

impl SystemRef {
    /// The reference of a stored system.
    pub fn of(system: &crate::store::systems::System) -> SystemRef {
        SystemRef {
            id: system.id.clone(),
            name: system.spec.name.clone(),
            role: system.spec.role.as_str().to_string(),
        }
    }
}

/// Something worth telling the admins.
#[derive(Clone, Debug)]
pub struct Notification {
    /// One of [`EVENT_KINDS`].
    pub kind: String,
    /// The system it is about, if any (a source for job events, a target for `target.quarantined`).
    pub system: Option<SystemRef>,
    /// One line for a human.
    pub summary: String,
    /// What a script needs (job id, statistics, plugin version, …).
    pub details: Value,
}

/// Why a notification operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No such subscription.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// How long a replica holds a claimed delivery before another may take it.
const LEASE: Duration = Duration::from_secs(120);

/// Deliveries claimed at once.
const BATCH: i64 = 32;

/// Kinds produced by periodic checks: collapsed on every channel, so that a condition that lasts is told
/// once per window rather than at every check.
const PERIODIC: [&str; 2] = ["realtime.backlog", "plugin.trapping"];

struct Inner {
    stores: Stores,
    plugins: Arc<Plugins>,
    node: String,
    settings: RwLock<NotifySettings>,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
    mailer: email::Mailer,
    traps: Mutex<checks::TrapWatch>,
}

/// The notification service; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// The service over the stores; `node` names this replica in its claims.
    pub fn new(stores: Stores, plugins: Arc<Plugins>, node: String) -> Notifier {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Provisio/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Notifier {
            inner: Arc::new(Inner {
                stores,
                plugins,
                node,
                settings: RwLock::new(NotifySettings::default()),
                http,
                wake: tokio::sync::Notify::new(),
                mailer: email::Mailer::default(),
                traps: Mutex::default(),
            }),
        }
    }

    /// Sets how notifications are sent (at boot).
    pub fn configure(&self, settings: NotifySettings) {
        *self.inner.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
        self.inner.mailer.reset();
    }

    /// The settings in force.
    pub fn settings(&self) -> NotifySettings {
        self.inner.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// Queues `notification` for every subscription that wants it (its kind, and its system or every
    /// system); answers how many deliveries were queued (collapsed ones are counted, not queued).
    pub async fn publish(&self, notification: Notification) -> Result<usize, StoreError> {
        let subscriptions = self.stores().notifications.subscriptions().await?;
        let wanting: Vec<Subscription> = subscriptions
            .into_iter()
            .filter(|s| {
                wants(
                    s,
                    &notification.kind,
                    notification.system.as_ref().map(|s| s.id.as_str()),
                )
            })
            .collect();
        self.publish_to(&wanting, &notification).await
    }

    /// Tells subscribers of `target.quarantined` about every target this replica quarantines (the replica
    /// that decides is the one that tells, so each quarantine is told once across replicas). Runs until the
    /// quarantine service is gone.
    pub async fn follow_quarantines(
        self,
        mut changes: tokio::sync::broadcast::Receiver<crate::quarantine::QuarantineChange>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "quarantine notifications fell behind");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let crate::quarantine::QuarantineChange::Quarantined {
                system_id,
                system_name,
                reason,
                message,
            } = change
            else {
                continue;
            };
            let notification = Notification {
                kind: "target.quarantined".into(),
                system: Some(SystemRef {
                    id: system_id.clone(),
                    name: system_name.clone(),
                    role: "target".into(),
                }),
                summary: format!("Target {system_name} is quarantined ({reason}): {message}"),
                details: serde_json::json!({ "reason": reason, "message": message }),
            };
            if let Err(e) = self.publish(notification).await {
                tracing::warn!(error = %e, system = %system_id, "cannot queue the quarantine notification");
            }
        }
    }

    /// Queues `notification` for these subscriptions (which want it).
    pub(crate) async fn publish_to(
        &self,
        subscriptions: &[Subscription],
        notification: &Notification,
    ) -> Result<usize, StoreError> {
        if subscriptions.is_empty() {
            return Ok(0);
        }
        let window = self.settings().collapse_window;
        let id = uuid::Uuid::new_v4().to_string();
        let occurred_at = crate::store::now();
        let mut deliveries = Vec::new();
        for s in subscriptions {
            let collapsed =
                matches!(s.spec.channel, Channel::Email { .. }) || PERIODIC.contains(&notification.kind.as_str());
            let mut details = notification.details.clone();
            if collapsed {
                let key = format!(
                    "{}|{}|{}",
                    s.id,
                    notification.kind,
                    notification.system.as_ref().map(|s| s.id.as_str()).unwrap_or("")
                );
                match self.stores().notifications.collapse(&key, window).await? {
                    None => {
                        crate::metrics::notification_suppressed(s.spec.channel.name());
                        tracing::debug!(subscription = %s.id, kind = %notification.kind, "notification collapsed into the last one");
                        continue;
                    }
                    Some(suppressed) if suppressed > 0 => {
                        if !details.is_object() {
                            details = json!({});
                        }
                        details["suppressed"] = json!(suppressed);
                    }
                    Some(_) => {}
                }
            }
            let payload = json!({
                "id": id,
                "kind": notification.kind,
                "occurredAt": occurred_at,
                "system": notification.system,
                "summary": notification.summary,
                "details": details,
            });
            deliveries.push(NewDelivery {
                id: uuid::Uuid::new_v4().to_string(),
                subscription_id: s.id.clone(),
                channel: s.spec.channel.name().to_string(),
                kind: notification.kind.clone(),
                payload,
            });
        }
        let n = deliveries.len();
        self.stores().notifications.enqueue(deliveries).await?;
        if n > 0 {
            tracing::info!(kind = %notification.kind, deliveries = n, "notification queued");
            self.inner.wake.notify_one();
        }
        Ok(n)
    }

    /// Sends a test notification to one subscription now (one attempt, no retry) and answers the delivery
    /// with its attempt.
    pub async fn test(&self, subscription_id: &str) -> Result<Delivery, NotifyError> {
        let subscription = self
            .stores()
            .notifications
            .subscription(subscription_id)
            .await?
            .ok_or_else(|| NotifyError::NotFound(format!("no subscription with id {subscription_id}")))?;
        let system = match &subscription.spec.system_id {
            Some(id) => self.stores().systems.get(id).await?.map(|s| SystemRef::of(&s)),
            None => None,
        };
        let delivery_id = uuid::Uuid::new_v4().to_string();
        let payload = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "kind": "test",
            "occurredAt": crate::store::now(),
            "system": system,
            "summary": "Test notification from Provisio: this subscription works.",
            "details": {"subscriptionId": subscription.id, "kinds": subscription.spec.kinds},
        });
        // Queued under this node's claim, so the worker cannot take it before this attempt.
        let delivery = self
            .stores()
            .notifications
            .enqueue_claimed(
                NewDelivery {
                    id: delivery_id.clone(),
                    subscription_id: subscription.id.clone(),
                    channel: subscription.spec.channel.name().to_string(),
                    kind: "test".into(),
                    payload,
                },
                &self.inner.node,
                LEASE,
            )
            .await?;
        self.attempt(delivery).await;
        self.stores()
            .notifications
            .delivery(&delivery_id)
            .await?
            .ok_or_else(|| NotifyError::NotFound(format!("the test delivery {delivery_id} vanished")))
    }

    /// The worker: attempts due deliveries (woken by every publish, else every `poll`), and runs the periodic
    /// checks. Runs until the process ends.
    pub async fn run(self) {
        let mut last_check = tokio::time::Instant::now();
        loop {
            let settings = self.settings();
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(settings.poll) => {}
            }
            self.deliver_due().await;
            if last_check.elapsed() >= settings.check_every {
                last_check = tokio::time::Instant::now();
                self.check().await;
            }
        }
    }

    /// Runs the periodic checks once: plugin traps and the real-time backlog.
    pub async fn check(&self) {
        if let Err(e) = checks::plugin_traps(self).await {
            tracing::warn!(error = %e, "cannot check plugin traps for notifications");
        }
        if let Err(e) = checks::realtime_backlog(self).await {
            tracing::warn!(error = %e, "cannot check the real-time backlog for notifications");
        }
    }

    /// Claims the due deliveries and attempts each on a task of its own; answers how many were claimed.
    pub async fn deliver_due(&self) -> usize {
        let claimed = match self
            .stores()
            .notifications
            .claim_deliveries(&self.inner.node, LEASE, BATCH, None)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim notification deliveries");
                return 0;
            }
        };
        let n = claimed.len();
        for delivery in claimed {
            let this = self.clone();
            tokio::spawn(async move { this.attempt(delivery).await });
        }
        n
    }

    /// Attempts one claimed delivery and records the attempt and what follows.
    async fn attempt(&self, delivery: Delivery) {
        let settings = self.settings();
        let number = delivery.attempts.len() as i64 + 1;
        let subscription = match self
            .stores()
            .notifications
            .subscription(&delivery.subscription_id)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return, // removed meanwhile: its deliveries went with it
            Err(e) => {
                tracing::warn!(delivery = %delivery.id, error = %e, "cannot read a delivery's subscription");
                return;
            }
        };
        let outcome = match &subscription.spec.channel {
            Channel::Webhook { url } => {
                let secret = match self.stores().notifications.subscription_secret(&subscription.id).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(delivery = %delivery.id, error = %e, "cannot open a webhook secret");
                        return;
                    }
                };
                webhook::send(&self.inner.http, url, secret.as_deref(), &delivery, settings.timeout).await
            }
            Channel::Email { recipients } => self.inner.mailer.send(&settings, recipients, &delivery).await,
        };
        let retries = delivery.kind != "test" && number < i64::from(settings.max_attempts.max(1));
        let after = if outcome.delivered {
            AfterAttempt::Delivered
        } else if outcome.retryable && retries {
            let factor = 2u32.saturating_pow(u32::try_from(number - 1).unwrap_or(u32::MAX).min(20));
            let delay = settings.retry_base.saturating_mul(factor);
            AfterAttempt::RetryAt(crate::store::timestamp(
                chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
            ))
        } else {
            AfterAttempt::Failed
        };
        let status = match &after {
            AfterAttempt::Delivered => "delivered",
            AfterAttempt::RetryAt(_) => "retry",
            AfterAttempt::Failed => "failed",
        };
        crate::metrics::notification_attempt(&delivery.channel, status);
        if !outcome.delivered {
            tracing::warn!(delivery = %delivery.id, subscription = %subscription.id, attempt = number,
                code = ?outcome.code, error = ?outcome.error, next = status, "a notification was not delivered");
        }
        let attempt = Attempt {
            number,
            at: crate::store::now(),
            status: status.into(),
            response_code: outcome.code,
            error: outcome.error,
        };
        match self
            .stores()
            .notifications
            .record_attempt(&delivery.id, &self.inner.node, &attempt, &after)
            .await
        {
            Ok(()) => {
                if let AfterAttempt::RetryAt(_) = after {
                    // Due again later: the worker's poll finds it.
                }
            }
            Err(e) => tracing::warn!(delivery = %delivery.id, error = %e, "cannot record a notification attempt"),
        }
    }

    /// Tells the subscribers how a job run ended: `job.failed`, `job.finished_with_errors`, `deletes.held`,
    /// or `job.recovered` when it succeeded after its source's previous run had failed. Simulations and
    /// stopped runs tell nothing. Errors go to the log.
    pub async fn job_ended(&self, job_id: &str, attempt: i64) {
        if let Err(e) = self.job_ended_inner(job_id, attempt).await {
            tracing::warn!(job = %job_id, error = %e, "cannot notify the end of a job run");
        }
    }

    async fn job_ended_inner(&self, job_id: &str, attempt: i64) -> Result<(), StoreError> {
        use crate::store::jobs::JobStatus;
        let stores = self.stores();
        let Some(job) = stores.jobs.get(job_id).await? else {
            return Ok(());
        };
        // A run another replica took over is told by that replica.
        if !job.status.is_final() || job.attempt != attempt || is_simulation(&job) {
            return Ok(());
        }
        let system = stores.systems.get(&job.source_id).await?;
        let name = system
            .as_ref()
            .map(|s| s.spec.name.clone())
            .unwrap_or_else(|| job.source_id.clone());
        let system = system.as_ref().map(SystemRef::of);
        let summary = &job.summary;
        let outcome: Vec<String> = summary["outcome"]
            .as_array()
            .map(|o| o.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let details = json!({
            "jobId": job.id,
            "status": job.status.as_str(),
            "type": job.job_type,
            "trigger": job.trigger,
            "startedBy": job.started_by,
            "startedAt": job.started_at,
            "endedAt": job.ended_at,
            "outcome": outcome,
            "statistics": summary["statistics"],
            "heldDeletes": summary["heldDeletes"].as_u64().unwrap_or(0),
        });
        let mut out = Vec::new();
        match job.status {
            JobStatus::Success => {
                let previous = stores.jobs.list(Some(&job.source_id), 20).await?;
                let before = previous.iter().find(|p| {
                    p.id != job.id
                        && p.started_at <= job.started_at
                        && matches!(p.status, JobStatus::Success | JobStatus::FinishedWithError)
                        && !is_simulation(p)
                });
                if before.is_some_and(|p| p.status == JobStatus::FinishedWithError) {
                    let mut details = details.clone();
                    details["previousJobId"] = json!(before.map(|p| p.id.clone()));
                    out.push((
                        "job.recovered",
                        format!("{name} is back to normal: its run succeeded again"),
                        details,
                    ));
                }
            }
            JobStatus::FinishedWithError => {
                let held = summary["heldDeletes"].as_u64().unwrap_or(0);
                let failed: u64 = summary["statistics"]
                    .as_array()
                    .map(|rows| rows.iter().map(|r| r["failed"].as_u64().unwrap_or(0)).sum())
                    .unwrap_or(0);
                let read_failed = summary["readFailed"].as_bool().unwrap_or(false);
                let first = outcome.first().cloned().unwrap_or_default();
                if read_failed || (failed == 0 && held == 0) {
                    out.push((
                        "job.failed",
                        format!("The run of {name} failed: {first}"),
                        details.clone(),
                    ));
                } else if failed > 0 {
                    out.push((
                        "job.finished_with_errors",
                        format!("The run of {name} finished with errors: {failed} entities failed"),
                        details.clone(),
                    ));
                }
                if held > 0 {
                    out.push((
                        "deletes.held",
                        format!("The run of {name} held {held} deletes back for approval"),
                        details.clone(),
                    ));
                }
            }
            _ => {}
        }
        for (kind, summary, details) in out {
            self.publish(Notification {
                kind: kind.into(),
                system: system.clone(),
                summary,
                details,
            })
            .await?;
        }
        Ok(())
    }

    pub(crate) fn plugins(&self) -> &Arc<Plugins> {
        &self.inner.plugins
    }

    pub(crate) fn traps(&self) -> std::sync::MutexGuard<'_, checks::TrapWatch> {
        self.inner.traps.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn store(&self) -> &Stores {
        self.stores()
    }
}

fn is_simulation(job: &crate::store::jobs::JobRecord) -> bool {
    job.job_type.starts_with("simulate") || job.summary["simulate"].as_bool().unwrap_or(false)
}

/// Whether a subscription wants a notification of `kind` about `system`.
pub fn wants(subscription: &Subscription, kind: &str, system: Option<&str>) -> bool {
    subscription.spec.kinds.iter().any(|k| k == kind)
        && match &subscription.spec.system_id {
            None => true,
            Some(id) => system == Some(id.as_str()),
        }
}

/// What one attempt came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// It arrived.
    pub delivered: bool,
    /// It did not, and another attempt may succeed (network error, 5xx, 429, a transient SMTP reply).
    pub retryable: bool,
    /// The HTTP status or the SMTP reply code.
    pub code: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A webhook receiver that answers every request 204 and counts them.
    async fn receiver() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..n]);
                        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            count.fetch_add(1, Ordering::SeqCst);
                            let _ = socket
                                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                });
            }
        });
        (url, received)
    }

    /// A test send is the caller's own attempt: the worker, claiming whatever is due as fast as it can, never
    /// takes it first (which left the caller answering `pending` with no attempt).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_test_send_is_attempted_by_its_caller_while_the_worker_runs() {
        let stores = provisio_store_sqlite::SqliteStore::in_memory(crate::secrets::SecretBox::from_key([5; 32]))
            .expect("store")
            .stores();
        let outbound = crate::outbound::Outbound::new(crate::outbound::OutboundLimits::default()).expect("outbound");
        let runtime = crate::runtime::Runtime::new(crate::runtime::CallLimits::default(), Arc::new(outbound), None)
            .expect("runtime");
        let notifier = Notifier::new(
            stores.clone(),
            Arc::new(Plugins::new(Arc::new(runtime), None)),
            "me".into(),
        );
        let (url, received) = receiver().await;
        let subscription = stores
            .notifications
            .create_subscription(
                &crate::store::notifications::SubscriptionSpec {
                    system_id: None,
                    kinds: vec!["job.failed".into()],
                    channel: Channel::Webhook { url },
                    backlog_minutes: 15,
                    description: String::new(),
                },
                None,
            )
            .await
            .expect("subscription");
        let worker = {
            let notifier = notifier.clone();
            tokio::spawn(async move {
                loop {
                    notifier.deliver_due().await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let sends = 40;
        for _ in 0..sends {
            let delivery = notifier.test(&subscription.id).await.expect("test send");
            assert_eq!(delivery.status, "delivered", "{delivery:?}");
            assert_eq!(delivery.attempts.len(), 1, "{delivery:?}");
        }
        worker.abort();
        assert_eq!(received.load(Ordering::SeqCst), sends, "each test send went once");
    }
}
