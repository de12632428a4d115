//! Retention: job logs (the per-entity logs of ended runs, then the runs), real-time events that ended, the
//! audit log and finished notification deliveries (never pending ones) are deleted once older than their retention, in the background and in small batches — at
//! most [`RetentionPolicy::batch`] rows per statement with [`RetentionPolicy::pause`] between statements, so
//! that real-time writes never wait behind one long delete. On a store several replicas share, one replica
//! prunes at a time. Every row deleted is counted in `provisio_pruned_rows_total{kind}`.

use std::time::Duration;

use crate::store::{StoreError, Stores};

/// Default days the logs of ended job runs are kept.
pub const DEFAULT_JOB_LOGS_DAYS: i64 = 30;
/// Default days ended real-time events are kept.
pub const DEFAULT_EVENTS_DAYS: i64 = 30;
/// Default days audit entries are kept (24 months, as SAP keeps its change log).
pub const DEFAULT_AUDIT_DAYS: i64 = 730;
/// Default days finished notification deliveries (delivered or given up) are kept.
pub const DEFAULT_DELIVERIES_DAYS: i64 = 30;
/// Default rows per delete statement.
pub const DEFAULT_BATCH: usize = 5_000;

/// How long what is kept, and how the pruning goes.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPolicy {
    /// Days the logs of ended job runs (and the runs) are kept.
    pub job_logs_days: i64,
    /// Days ended real-time events are kept.
    pub events_days: i64,
    /// Days audit entries are kept.
    pub audit_days: i64,
    /// Days finished notification deliveries (and their attempts) are kept.
    pub deliveries_days: i64,
    /// Rows per delete statement.
    pub batch: usize,
    /// The pause between two batches.
    pub pause: Duration,
    /// How often the pruner looks for what is due.
    pub every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            job_logs_days: DEFAULT_JOB_LOGS_DAYS,
            events_days: DEFAULT_EVENTS_DAYS,
            audit_days: DEFAULT_AUDIT_DAYS,
            deliveries_days: DEFAULT_DELIVERIES_DAYS,
            batch: DEFAULT_BATCH,
            pause: Duration::from_millis(50),
            every: Duration::from_secs(600),
        }
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Job log rows and runs.
    pub job_logs: u64,
    /// Real-time events.
    pub events: u64,
    /// Audit entries.
    pub audit: u64,
    /// Finished notification deliveries.
    pub deliveries: u64,
}

/// The kinds of what is pruned, as the metric labels them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    JobLogs,
    Events,
    Audit,
    Deliveries,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::JobLogs => "job_logs",
            Kind::Events => "events",
            Kind::Audit => "audit",
            Kind::Deliveries => "deliveries",
        }
    }
}

/// The background pruner; cheap to clone.
#[derive(Clone)]
pub struct Pruner {
    stores: Stores,
    policy: RetentionPolicy,
}

impl Pruner {
    /// Over the stores, with a policy.
    pub fn new(stores: Stores, policy: RetentionPolicy) -> Pruner {
        Pruner { stores, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// Deletes everything due now, batch after batch; `None` when another replica is pruning.
    pub async fn sweep(&self) -> Result<Option<Pruned>, StoreError> {
        self.sweep_as_of(chrono::Utc::now()).await
    }

    /// [`Pruner::sweep`] as if it were `now` (tests look ahead instead of back-dating rows).
    pub async fn sweep_as_of(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Pruned>, StoreError> {
        let Some(_lease) = self.stores.retention.lead_pruning().await? else {
            return Ok(None);
        };
        let p = &self.policy;
        Ok(Some(Pruned {
            job_logs: self.prune(Kind::JobLogs, now, p.job_logs_days).await?,
            events: self.prune(Kind::Events, now, p.events_days).await?,
            audit: self.prune(Kind::Audit, now, p.audit_days).await?,
            deliveries: self.prune(Kind::Deliveries, now, p.deliveries_days).await?,
        }))
    }

    async fn prune(&self, kind: Kind, now: chrono::DateTime<chrono::Utc>, days: i64) -> Result<u64, StoreError> {
        let before = crate::store::timestamp(now - chrono::Duration::days(days.max(1)));
        let batch = self.policy.batch.max(1);
        let mut total = 0u64;
        loop {
            let r = &self.stores.retention;
            let n = match kind {
                Kind::JobLogs => r.prune_job_logs(&before, batch).await?,
                Kind::Events => r.prune_events(&before, batch).await?,
                Kind::Audit => r.prune_audit(&before, batch).await?,
                Kind::Deliveries => r.prune_deliveries(&before, batch).await?,
            };
            crate::metrics::pruned_rows(kind.label(), n as u64);
            total += n as u64;
            if n < batch {
                break;
            }
            tokio::time::sleep(self.policy.pause).await;
        }
        if total > 0 {
            tracing::info!(kind = kind.label(), rows = total, days, "pruned past the retention");
        }
        Ok(total)
    }

    /// Sweeps now and every [`RetentionPolicy::every`] until the process ends.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "cannot prune past the retention; trying again later");
            }
            tokio::time::sleep(self.policy.every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::AuditEntry;

    fn entry(at: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: at.into(),
            principal: "admin".into(),
            principal_id: "a1".into(),
            principal_kind: "admin".into(),
            address: None,
            channel: "api".into(),
            action: "system.update".into(),
            object_type: "system".into(),
            object_id: "s1".into(),
            object_name: "HR".into(),
            changes: vec![],
        }
    }

    fn counted(kind: &str) -> u64 {
        let text = crate::metrics::render();
        let prefix = format!("provisio_pruned_rows_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A sweep deletes what is past the retention in batches of the policy's size, keeps the rest, and
    /// counts what it deleted in the metric.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_prunes_what_is_due_in_batches_and_counts_it() {
        let stores = provisio_store_sqlite::SqliteStore::in_memory(crate::secrets::SecretBox::from_key([3; 32]))
            .expect("store")
            .stores();
        for _ in 0..5 {
            stores
                .audit
                .append(&entry("2001-01-01T00:00:00.000Z"))
                .await
                .expect("old");
        }
        let recent = crate::store::now();
        stores.audit.append(&entry(&recent)).await.expect("recent");
        let pruner = Pruner::new(
            stores.clone(),
            RetentionPolicy {
                audit_days: 30,
                batch: 2,
                pause: Duration::from_millis(1),
                ..RetentionPolicy::default()
            },
        );
        let before = counted("audit");
        let pruned = pruner.sweep().await.expect("sweep").expect("leads");
        assert_eq!(
            pruned,
            Pruned {
                job_logs: 0,
                events: 0,
                audit: 5,
                deliveries: 0,
            }
        );
        assert!(counted("audit") >= before + 5, "counted in provisio_pruned_rows_total");
        let left = stores.audit.list(&Default::default(), None, 10).await.expect("left");
        assert_eq!(
            left.iter().map(|e| e.at.as_str()).collect::<Vec<_>>(),
            [recent.as_str()]
        );
        assert_eq!(pruner.sweep().await.expect("again"), Some(Pruned::default()));
    }

    /// Finished deliveries past the retention go, with the metric counting them; pending ones stay
    /// however old they are: one not tried yet and one waiting for its next attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_deliveries_survive_a_sweep() {
        use crate::store::notifications::{AfterAttempt, Attempt, Channel, NewDelivery, SubscriptionSpec};
        let stores = provisio_store_sqlite::SqliteStore::in_memory(crate::secrets::SecretBox::from_key([3; 32]))
            .expect("store")
            .stores();
        let n = &stores.notifications;
        let sub = n
            .create_subscription(
                &SubscriptionSpec {
                    system_id: None,
                    kinds: vec!["job.failed".into()],
                    channel: Channel::Webhook {
                        url: "http://127.0.0.1:9/hook".into(),
                    },
                    backlog_minutes: 15,
                    description: String::new(),
                },
                None,
            )
            .await
            .expect("subscription");
        let new = |id: &str| NewDelivery {
            id: id.into(),
            subscription_id: sub.id.clone(),
            channel: "webhook".into(),
            kind: "job.failed".into(),
            payload: serde_json::json!({"id": id}),
        };
        n.enqueue(["sent", "given-up", "retrying", "new"].map(new).to_vec())
            .await
            .expect("enqueue");
        n.claim_deliveries("me", Duration::from_secs(30), 10, None)
            .await
            .expect("claim");
        let attempt = |status: &str| Attempt {
            number: 1,
            at: crate::store::now(),
            status: status.into(),
            response_code: Some(503),
            error: None,
        };
        let next = crate::store::timestamp(chrono::Utc::now() + chrono::Duration::days(400));
        for (id, status, after) in [
            ("sent", "delivered", AfterAttempt::Delivered),
            ("given-up", "failed", AfterAttempt::Failed),
            ("retrying", "retry", AfterAttempt::RetryAt(next)),
        ] {
            n.record_attempt(id, "me", &attempt(status), &after)
                .await
                .expect("attempt");
        }
        let pruner = Pruner::new(
            stores.clone(),
            RetentionPolicy {
                deliveries_days: 30,
                batch: 1,
                pause: Duration::from_millis(1),
                ..RetentionPolicy::default()
            },
        );
        let before = counted("deliveries");
        let soon = chrono::Utc::now() + chrono::Duration::days(29);
        assert_eq!(
            pruner
                .sweep_as_of(soon)
                .await
                .expect("sweep")
                .expect("leads")
                .deliveries,
            0,
            "within the retention"
        );
        let later = chrono::Utc::now() + chrono::Duration::days(365);
        let pruned = pruner.sweep_as_of(later).await.expect("sweep").expect("leads");
        assert_eq!(pruned.deliveries, 2);
        assert!(
            counted("deliveries") >= before + 2,
            "counted in provisio_pruned_rows_total"
        );
        let mut left: Vec<(String, String)> = n
            .deliveries(None, 10)
            .await
            .expect("log")
            .into_iter()
            .map(|d| (d.id, d.status))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("new".to_string(), "pending".to_string()),
                ("retrying".to_string(), "pending".to_string())
            ]
        );
    }
}
