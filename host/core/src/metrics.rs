//! Prometheus metrics: HTTP requests served, and plugin calls per plugin version with their outcome and
//! time spent. Rendered at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginOnly {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobEntityLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

struct Metrics {
    registry: Registry,
    quarantines: Family<ReasonLabels, Counter>,
    quarantined_targets: Gauge,
    pruned_rows: Family<KindLabels, Counter>,
    notification_attempts: Family<NotificationLabels, Counter>,
    notifications_suppressed: Family<ChannelLabels, Counter>,
    login_failures: Family<OutcomeLabels, Counter>,
    login_locks: Family<ScopeLabels, Counter>,
    job_entities: Family<JobEntityLabels, Counter>,
    job_retries: Family<RetryLabels, Counter>,
    http: Family<HttpLabels, Counter>,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_seconds: Family<PluginOnly, Histogram>,
    plugin_denied: Family<PluginOnly, Counter>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("provisio");
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            http.clone(),
        );
        let plugin_calls = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin version and outcome (ok, connector-error, trap, timeout, memory-limit, stack-overflow, result-too-large, ...)",
            plugin_calls.clone(),
        );
        let plugin_seconds = Family::<PluginOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register(
            "plugin_call_seconds",
            "Time spent in plugin calls, host calls included",
            plugin_seconds.clone(),
        );
        let plugin_denied = Family::<PluginOnly, Counter>::default();
        registry.register(
            "plugin_denied_requests",
            "Requests of plugins the host refused to send (outside the upstream, over the per-call cap), by plugin version",
            plugin_denied.clone(),
        );
        let job_entities = Family::<JobEntityLabels, Counter>::default();
        registry.register(
            "job_entities",
            "Entities handled by provisioning jobs, by operation and outcome",
            job_entities.clone(),
        );
        let job_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "job_retries",
            "Plugin calls of jobs retried, by reason (transient, throttled)",
            job_retries.clone(),
        );
        let login_failures = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Refused password checks, by outcome (invalid: wrong name or password; locked: refused during a lock)",
            login_failures.clone(),
        );
        let login_locks = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "login_locks",
            "Login locks started after repeated failures, by scope (principal, address)",
            login_locks.clone(),
        );
        let quarantines = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "quarantine",
            "Targets quarantined, by reason (credentials, not-found, failed-runs, failure-rate)",
            quarantines.clone(),
        );
        let quarantined_targets = Gauge::default();
        registry.register(
            "quarantined_targets",
            "Targets quarantined now (every replica's, as the store has them)",
            quarantined_targets.clone(),
        );
        let pruned_rows = Family::<KindLabels, Counter>::default();
        registry.register(
            "pruned_rows",
            "Rows deleted past their retention, by kind (job_logs, events, audit, deliveries)",
            pruned_rows.clone(),
        );
        let notification_attempts = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notification_attempts",
            "Attempts at notification deliveries, by channel (webhook, email) and outcome (delivered, retry, failed)",
            notification_attempts.clone(),
        );
        let notifications_suppressed = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "notifications_suppressed",
            "Notifications collapsed into an earlier one of the same subscription, kind and system, by channel",
            notifications_suppressed.clone(),
        );
        Metrics {
            registry,
            quarantines,
            quarantined_targets,
            pruned_rows,
            notification_attempts,
            notifications_suppressed,
            login_failures,
            login_locks,
            job_entities,
            job_retries,
            http,
            plugin_calls,
            plugin_seconds,
            plugin_denied,
        }
    })
}

/// Counts one served HTTP request.
pub fn http_request(method: &str, route: &str, status: u16) {
    metrics()
        .http
        .get_or_create(&HttpLabels {
            method: method.to_string(),
            route: route.to_string(),
            status,
        })
        .inc();
}

/// Counts one plugin call.
pub fn plugin_call(plugin: &str, outcome: &str, elapsed: Duration) {
    let m = metrics();
    m.plugin_calls
        .get_or_create(&PluginLabels {
            plugin: plugin.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
    m.plugin_seconds
        .get_or_create(&PluginOnly {
            plugin: plugin.to_string(),
        })
        .observe(elapsed.as_secs_f64());
}

/// One plugin version's call metrics, looked up in their families once instead of at every call (each lookup
/// hashes and copies the labels): a counter per outcome seen so far and the time histogram. They feed the same
/// series as [`plugin_call`].
#[derive(Default)]
pub struct PluginCalls {
    outcomes: std::sync::Mutex<Vec<(&'static str, Counter)>>,
    seconds: OnceLock<Histogram>,
}

impl PluginCalls {
    /// Counts one call of `plugin` (`name@version`, the same for every call of this value).
    pub fn record(&self, plugin: &str, outcome: &'static str, elapsed: Duration) {
        let m = metrics();
        {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            match outcomes.iter().find(|(o, _)| *o == outcome) {
                Some((_, counter)) => {
                    counter.inc();
                }
                None => {
                    let counter = m
                        .plugin_calls
                        .get_or_create(&PluginLabels {
                            plugin: plugin.to_string(),
                            outcome: outcome.to_string(),
                        })
                        .clone();
                    counter.inc();
                    outcomes.push((outcome, counter));
                }
            }
        }
        self.seconds
            .get_or_init(|| {
                m.plugin_seconds
                    .get_or_create(&PluginOnly {
                        plugin: plugin.to_string(),
                    })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// Counts requests the host refused to send for a plugin.
pub fn plugin_denied_requests(plugin: &str, n: u64) {
    metrics()
        .plugin_denied
        .get_or_create(&PluginOnly {
            plugin: plugin.to_string(),
        })
        .inc_by(n);
}

/// Counts entities handled by jobs.
pub fn job_entities(operation: &str, outcome: &str, n: u64) {
    metrics()
        .job_entities
        .get_or_create(&JobEntityLabels {
            operation: operation.to_string(),
            outcome: outcome.to_string(),
        })
        .inc_by(n);
}

/// Counts one retried call of a job.
pub fn job_retry(reason: &str) {
    metrics()
        .job_retries
        .get_or_create(&RetryLabels {
            reason: reason.to_string(),
        })
        .inc();
}

/// Counts one refused password check (`invalid` or `locked`).
pub fn login_failure(outcome: &str) {
    metrics()
        .login_failures
        .get_or_create(&OutcomeLabels {
            outcome: outcome.to_string(),
        })
        .inc();
}

/// Counts one login lock started (`principal` or `address`).
pub fn login_lock(scope: &str) {
    metrics()
        .login_locks
        .get_or_create(&ScopeLabels {
            scope: scope.to_string(),
        })
        .inc();
}

/// Counts one target quarantined, by reason.
pub fn quarantined(reason: &str) {
    metrics()
        .quarantines
        .get_or_create(&ReasonLabels {
            reason: reason.to_string(),
        })
        .inc();
}

/// Counts one attempt at a notification delivery (`delivered`, `retry`, `failed`).
pub fn notification_attempt(channel: &str, outcome: &str) {
    metrics()
        .notification_attempts
        .get_or_create(&NotificationLabels {
            channel: channel.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

/// Sets how many targets are quarantined now.
pub fn set_quarantined_targets(n: i64) {
    metrics().quarantined_targets.set(n);
}

/// Counts rows pruned past their retention (`job_logs`, `events`, `audit` or `deliveries`).
pub fn pruned_rows(kind: &str, n: u64) {
    metrics()
        .pruned_rows
        .get_or_create(&KindLabels { kind: kind.to_string() })
        .inc_by(n);
}

/// Counts one notification collapsed into an earlier one.
pub fn notification_suppressed(channel: &str) {
    metrics()
        .notifications_suppressed
        .get_or_create(&ChannelLabels {
            channel: channel.to_string(),
        })
        .inc();
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics().registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugins_kept_handles_feed_the_series_plugin_call_feeds() {
        let calls = PluginCalls::default();
        for outcome in ["ok", "trap", "ok"] {
            calls.record("handles-test@1.0.0", outcome, Duration::from_millis(2));
        }
        plugin_call("handles-test@1.0.0", "ok", Duration::from_millis(2));
        let text = render();
        for line in [
            "provisio_plugin_calls_total{plugin=\"handles-test@1.0.0\",outcome=\"ok\"} 3",
            "provisio_plugin_calls_total{plugin=\"handles-test@1.0.0\",outcome=\"trap\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let count = text
            .lines()
            .find(|l| l.starts_with("provisio_plugin_call_seconds_count{plugin=\"handles-test@1.0.0\"}"))
            .unwrap_or_else(|| panic!("the histogram's count in\n{text}"));
        assert!(count.ends_with(" 4"), "{count}");
    }
}
