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
    /// Calls by duration, one counter per bucket of [`DURATION_BUCKETS_MS`] and one past the last.
    durations: [AtomicU64; DURATION_BUCKETS_MS.len() + 1],
    last_incident: Mutex<Option<Incident>>,
}

/// The upper bounds, in milliseconds, of the buckets calls are counted in by duration (a last bucket takes
/// the longer ones).
pub const DURATION_BUCKETS_MS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
];

/// Calls whose duration fell in one bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationBucket {
    /// The bucket's upper bound in milliseconds (inclusive); `None` for the last, unbounded one.
    pub le_ms: Option<f64>,
    /// Calls in this bucket (not cumulative).
    pub count: u64,
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
    /// Calls by duration.
    pub duration_buckets: Vec<DurationBucket>,
    /// The median call duration in milliseconds, estimated from the buckets (`None` before any call).
    pub p50_ms: Option<f64>,
    /// The 95th percentile call duration in milliseconds, estimated from the buckets.
    pub p95_ms: Option<f64>,
}

/// The duration below which a share `q` of the counted calls fall, interpolated linearly inside the bucket
/// that holds it (the unbounded last bucket answers its lower bound).
pub fn quantile(buckets: &[DurationBucket], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let (mut seen, mut lower) = (0u64, 0.0);
    for b in buckets {
        let before = seen as f64;
        seen += b.count;
        if b.count > 0 && seen as f64 >= rank {
            return Some(match b.le_ms {
                Some(upper) => lower + (upper - lower) * ((rank - before) / b.count as f64),
                None => lower,
            });
        }
        if let Some(upper) = b.le_ms {
            lower = upper;
        }
    }
    Some(lower)
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
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = DURATION_BUCKETS_MS
            .iter()
            .position(|upper| ms <= *upper)
            .unwrap_or(DURATION_BUCKETS_MS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
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
        let duration_buckets: Vec<DurationBucket> = self
            .durations
            .iter()
            .enumerate()
            .map(|(i, count)| DurationBucket {
                le_ms: DURATION_BUCKETS_MS.get(i).copied(),
                count: count.load(Ordering::Relaxed),
            })
            .collect();
        StatsSnapshot {
            p50_ms: quantile(&duration_buckets, 0.5),
            p95_ms: quantile(&duration_buckets, 0.95),
            duration_buckets,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_buckets_and_give_percentiles() {
        let stats = PluginStats::default();
        assert_eq!(stats.snapshot().p50_ms, None);
        // 90 calls of 3 ms (the 2–5 ms bucket), 10 of 150 ms (100–200 ms).
        for _ in 0..90 {
            stats.record(&Ok("ok"), Duration::from_millis(3), None);
        }
        for _ in 0..10 {
            stats.record(&Ok("ok"), Duration::from_millis(150), None);
        }
        let s = stats.snapshot();
        assert_eq!(s.duration_buckets.len(), DURATION_BUCKETS_MS.len() + 1);
        assert_eq!(s.duration_buckets.iter().map(|b| b.count).sum::<u64>(), 100);
        assert_eq!(
            s.duration_buckets[2],
            DurationBucket {
                le_ms: Some(5.0),
                count: 90
            }
        );
        assert_eq!(s.duration_buckets[7].count, 10);
        let p50 = s.p50_ms.expect("p50");
        assert!((2.0..=5.0).contains(&p50), "{p50}");
        let p95 = s.p95_ms.expect("p95");
        assert!((100.0..=200.0).contains(&p95), "{p95}");
        // A call past the last bound counts in the unbounded bucket.
        stats.record(&Ok("ok"), Duration::from_secs(40), None);
        assert_eq!(
            stats.snapshot().duration_buckets.last().map(|b| (b.le_ms, b.count)),
            Some((None, 1))
        );
        let json = serde_json::to_value(stats.snapshot()).expect("json");
        assert!(
            json.get("durationBuckets").is_some() && json.get("p95Ms").is_some(),
            "{json}"
        );
    }

    #[test]
    fn quantiles_of_one_bucket() {
        let buckets = [
            DurationBucket {
                le_ms: Some(10.0),
                count: 0,
            },
            DurationBucket {
                le_ms: Some(20.0),
                count: 4,
            },
            DurationBucket { le_ms: None, count: 0 },
        ];
        assert_eq!(quantile(&buckets, 0.5), Some(15.0));
        assert_eq!(quantile(&buckets, 1.0), Some(20.0));
    }
}
