//! What happened in a plugin version's calls since it was loaded: calls, failures, traps, limit hits,
//! requests the sandbox refused and time spent, and the last incident with its message. Served by
//! `GET /api/v1/plugins` (the same events are counted in `/metrics`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::CallError;
use super::state::CallState;

/// Counters of one plugin version. Cheap to update from any call: atomics, and a mutex only on failures.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    connector_errors: AtomicU64,
    failures: AtomicU64,
    traps: AtomicU64,
    limit_hits: AtomicU64,
    denied_requests: AtomicU64,
    throttled: AtomicU64,
    demoted: AtomicU64,
    nanos: AtomicU64,
    last_incident: Mutex<Option<Incident>>,
}

/// A call the sandbox stopped or a request it refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    /// `trap`, `timeout`, `memory-limit`, `stack-overflow`, `result-too-large`, `denied-request`, …
    pub kind: String,
    /// The error, naming the limit.
    pub message: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// The counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Calls made (describe, test-connection, read, …).
    pub calls: u64,
    /// Calls that answered with a connector error (the remote system's answer, classified).
    pub connector_errors: u64,
    /// Calls the host failed: traps, limits, invalid results.
    pub failures: u64,
    /// Calls that trapped (a panic, an abort, an out-of-bounds access).
    pub traps: u64,
    /// Calls stopped by a limit: time, memory, stack, argument or result size.
    pub limit_hits: u64,
    /// Requests the host refused to send for the plugin (outside its upstream, over the per-call cap).
    pub denied_requests: u64,
    /// Calls that used their CPU budget and ran throttled.
    pub throttled_calls: u64,
    /// Calls that finished at idle priority on the background pool (past their CPU budget, or on probation
    /// after a trap or limit hit for the same system).
    pub background_calls: u64,
    /// Time spent in calls, host calls included, in milliseconds.
    pub time_ms: f64,
    /// The most recent trap, limit hit or refused request.
    pub last_incident: Option<Incident>,
}

impl PluginStats {
    /// Records one call: its outcome kind (`ok`, `connector-error`) or its error, its duration, and the
    /// requests the host refused during it.
    /// `state` is `None` for a call that never ran to its end (refused before it started, or lost to a
    /// host panic).
    pub fn record(&self, outcome: &Result<&'static str, &CallError>, elapsed: Duration, state: Option<&CallState>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let mut incident = None;
        match outcome {
            Ok("connector-error") => {
                self.connector_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if matches!(e, CallError::Trap { .. }) {
                    self.traps.fetch_add(1, Ordering::Relaxed);
                }
                if e.is_limit() {
                    self.limit_hits.fetch_add(1, Ordering::Relaxed);
                }
                incident = Some((e.kind().to_string(), e.to_string()));
            }
        }
        if let Some(state) = state {
            self.record_state(outcome, state, &mut incident);
        }
        if let Some((kind, message)) = incident {
            let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            *self.last_incident.lock().unwrap_or_else(|p| p.into_inner()) = Some(Incident { kind, message, at });
        }
    }

    /// What the call's store says about it: throttling, demotion, a request cut at the deadline, refused
    /// requests.
    fn record_state(
        &self,
        outcome: &Result<&'static str, &CallError>,
        state: &CallState,
        incident: &mut Option<(String, String)>,
    ) {
        if state.throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        if state.demoted.load(Ordering::Relaxed) {
            self.demoted.fetch_add(1, Ordering::Relaxed);
        }
        let limit_already = matches!(outcome, Err(e) if e.is_limit());
        if state.host_deadline_hit && !limit_already {
            // The guest answered, but only after a request of its was cut off at the call's deadline.
            self.limit_hits.fetch_add(1, Ordering::Relaxed);
            incident.get_or_insert_with(|| {
                (
                    "timeout".into(),
                    format!(
                        "plugin {} reached its time limit of {:?} inside a host call",
                        state.plugin, state.limits.timeout
                    ),
                )
            });
        }
        if state.denied > 0 {
            self.denied_requests
                .fetch_add(u64::from(state.denied), Ordering::Relaxed);
            if incident.is_none() {
                let reason = state.last_denied.clone().unwrap_or_default();
                *incident = Some(("denied-request".into(), format!("request refused: {reason}")));
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            connector_errors: self.connector_errors.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            limit_hits: self.limit_hits.load(Ordering::Relaxed),
            denied_requests: self.denied_requests.load(Ordering::Relaxed),
            throttled_calls: self.throttled.load(Ordering::Relaxed),
            background_calls: self.demoted.load(Ordering::Relaxed),
            time_ms: self.nanos.load(Ordering::Relaxed) as f64 / 1e6,
            last_incident: self.last_incident.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
