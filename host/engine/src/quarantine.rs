//! Quarantine of target systems (issue 19): a target whose writes all fail for a reason retrying cannot fix
//! is held out of provisioning until it is healthy again, rather than failing every run and every real-time
//! event for days.
//!
//! A job run's writes to each target are tallied ([`WriteTally`]); at the run's end [`Quarantines::assess`]
//! quarantines the target when
//!
//! - the target (or its token endpoint) refused the credentials (401/403) and no write succeeded
//!   (`credentials`),
//! - a create found no endpoint (404 on the base URL) and no write succeeded (`not-found`),
//! - more than 40 % of the run's writes failed, in a run of at least [`MIN_WRITES_FOR_RATE`] writes
//!   (`failure-rate`), or
//! - every write failed, not for the entities' data, in [`DEFAULT_FAILED_RUNS`] runs in a row (the target
//!   property `provisio.quarantine.failed.runs` changes the number) (`failed-runs`).
//!
//! While it is quarantined, runs skip it (the run's `skippedTargets` says so, with the reason), real-time
//! events for it are parked (re-driven when it is released), and a probe — the system's Test Connection —
//! re-tests it with back-off: [`DEFAULT_PROBE_INTERVAL`] (the serve option `--quarantine-probe-seconds`)
//! doubling up to an hour. One replica probes at a time: the store's claim moves the next probe before the
//! probe is made. A successful probe, or an admin's release, ends the quarantine; the events parked for it
//! go back in the queue, and its sources' next runs read everything (a delta read would miss what changed
//! meanwhile).
//!
//! The hook for notifications: [`Quarantines::subscribe`] answers a `tokio::sync::broadcast` receiver of
//! every [`QuarantineChange`] made on this replica.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::provisioning::target::{FailureCause, Written};
use crate::store::systems::{ConnectionTest, Quarantine, System};
use crate::store::{StoreError, Stores};
use crate::systems::Systems;

/// The target property that sets how many failed runs in a row quarantine it.
pub const FAILED_RUNS_PROPERTY: &str = "provisio.quarantine.failed.runs";

/// Failed runs in a row that quarantine a target by default.
pub const DEFAULT_FAILED_RUNS: i64 = 3;

/// The share of a run's writes that must fail to quarantine a target: more than this.
pub const FAILURE_RATE: f64 = 0.4;

/// Writes a run must have made to a target for [`FAILURE_RATE`] to apply (so that one failed write of
/// two quarantines nothing).
pub const MIN_WRITES_FOR_RATE: u64 = 10;

/// The first probe's delay by default; each next one waits twice as long.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// The longest wait between probes (unless the base interval is longer).
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a target was quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The target or its token endpoint refused the credentials.
    Credentials,
    /// The base URL answered 404.
    NotFound,
    /// Every write failed in several runs in a row.
    FailedRuns,
    /// Over 40 % of a run's writes failed.
    FailureRate,
}

impl Reason {
    /// The code stored and shown (`credentials`, `not-found`, `failed-runs`, `failure-rate`); the label of
    /// `provisio_quarantine_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Credentials => "credentials",
            Reason::NotFound => "not-found",
            Reason::FailedRuns => "failed-runs",
            Reason::FailureRate => "failure-rate",
        }
    }
}

/// A change of a target's quarantine, as [`Quarantines::subscribe`] hands it out.
#[derive(Clone, Debug, PartialEq)]
pub enum QuarantineChange {
    /// The target was quarantined.
    Quarantined {
        /// The target's id.
        system_id: String,
        /// Its name.
        system_name: String,
        /// [`Reason::as_str`].
        reason: String,
        /// Why, in words.
        message: String,
    },
    /// The quarantine ended.
    Released {
        /// The target's id.
        system_id: String,
        /// Its name.
        system_name: String,
        /// `probe` when a probe succeeded, else the admin's name.
        by: String,
    },
}

/// How one target's writes went in one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteTally {
    /// Writes that succeeded.
    pub ok: u64,
    /// Writes that failed.
    pub failed: u64,
    /// Failed writes that were not the entities' fault (refused credentials, 404, 5xx, unreachable, traps).
    pub target_failures: u64,
    /// The last refusal of the credentials, if any.
    pub credentials: Option<String>,
    /// The last 404 of a create, if any.
    pub not_found: Option<String>,
}

impl WriteTally {
    /// Counts one write's outcome.
    pub fn note(&mut self, written: &Written) {
        match written {
            Written::Created { .. } | Written::Updated { .. } => self.ok += 1,
            Written::Failed { reason, cause, .. } => self.note_failure(*cause, reason),
        }
    }

    /// Counts one failed write.
    pub fn note_failure(&mut self, cause: FailureCause, reason: &str) {
        self.failed += 1;
        match cause {
            FailureCause::Credentials => self.credentials = Some(reason.to_string()),
            FailureCause::NotFound => self.not_found = Some(reason.to_string()),
            FailureCause::Target | FailureCause::Entity => {}
        }
        if cause != FailureCause::Entity {
            self.target_failures += 1;
        }
    }

    /// Whether the run failed for the target: it wrote something, nothing succeeded, and not only because
    /// of the entities' data.
    pub fn failed_run(&self) -> bool {
        self.ok == 0 && self.failed > 0 && self.target_failures > 0
    }

    /// The reason this tally alone quarantines its target, with the words for it; `failed_runs` is the
    /// count of failed runs in a row this one makes (`None` when not counted) and `limit` the number
    /// that quarantines.
    pub fn verdict(&self, failed_runs: Option<i64>, limit: i64) -> Option<(Reason, String)> {
        let writes = self.ok + self.failed;
        if self.ok == 0
            && let Some(why) = &self.credentials
        {
            return Some((
                Reason::Credentials,
                format!("the target refused the credentials on every write ({why})"),
            ));
        }
        if self.ok == 0
            && let Some(why) = &self.not_found
        {
            return Some((
                Reason::NotFound,
                format!("the target's URL answered 404 Not Found ({why})"),
            ));
        }
        if writes >= MIN_WRITES_FOR_RATE && self.failed as f64 > FAILURE_RATE * writes as f64 {
            return Some((
                Reason::FailureRate,
                format!(
                    "{} of {writes} writes failed in one run (more than {} %)",
                    self.failed,
                    (FAILURE_RATE * 100.0).round()
                ),
            ));
        }
        match failed_runs {
            Some(n) if self.failed_run() && n >= limit => Some((
                Reason::FailedRuns,
                format!("every write to the target failed in {n} runs in a row"),
            )),
            _ => None,
        }
    }
}

/// The failed runs in a row that quarantine a target: its `provisio.quarantine.failed.runs` (1 or more),
/// else [`DEFAULT_FAILED_RUNS`].
pub fn failed_runs_limit(target: &System) -> i64 {
    target
        .spec
        .properties
        .get(FAILED_RUNS_PROPERTY)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_FAILED_RUNS)
}

/// The wait after the `n`-th probe (0: before the first): `base × 2^n`, at most an hour (or `base`).
pub fn probe_delay(base: Duration, n: i64) -> Duration {
    let n = n.clamp(0, 20) as u32;
    base.saturating_mul(1u32 << n).min(MAX_PROBE_INTERVAL.max(base))
}

/// The instant `after` from now, in the store's text form.
fn from_now(after: Duration) -> String {
    crate::store::timestamp(chrono::Utc::now() + chrono::Duration::from_std(after).unwrap_or_default())
}

/// Quarantine of targets over the store; cheap to clone.
#[derive(Clone)]
pub struct Quarantines {
    inner: Arc<Inner>,
}

struct Inner {
    store: Stores,
    systems: Systems,
    probe_base_ms: AtomicU64,
    changes: broadcast::Sender<QuarantineChange>,
}

impl Quarantines {
    /// Wires the service.
    pub fn new(store: Stores, systems: Systems) -> Self {
        let (changes, _) = broadcast::channel(256);
        Quarantines {
            inner: Arc::new(Inner {
                store,
                systems,
                probe_base_ms: AtomicU64::new(DEFAULT_PROBE_INTERVAL.as_millis() as u64),
                changes,
            }),
        }
    }

    /// Sets the first probe's delay (`--quarantine-probe-seconds`), at least 100 ms.
    pub fn set_probe_interval(&self, base: Duration) {
        let ms = (base.as_millis() as u64).max(100);
        self.inner.probe_base_ms.store(ms, Ordering::Relaxed);
    }

    /// The first probe's delay.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.inner.probe_base_ms.load(Ordering::Relaxed))
    }

    /// Every quarantine change made on this replica from now on (the notifications' hook). A receiver
    /// that falls more than 256 changes behind loses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<QuarantineChange> {
        self.inner.changes.subscribe()
    }

    /// Applies the rules to a target after a run with `tally` (see the module's documentation); answers
    /// the reason and words when this quarantined it.
    pub async fn assess(&self, target: &System, tally: &WriteTally) -> Option<(Reason, String)> {
        if tally.ok + tally.failed == 0 {
            // Nothing was written: the run says nothing about the target.
            return None;
        }
        let limit = failed_runs_limit(target);
        let mut verdict = tally.verdict(None, limit);
        if verdict.is_none() {
            match self.inner.store.systems.count_run(&target.id, tally.failed_run()).await {
                Ok(n) => verdict = tally.verdict(Some(n), limit),
                Err(e) => {
                    tracing::warn!(target = %target.id, error = %e, "cannot count a target's failed runs");
                }
            }
        }
        let (reason, message) = verdict?;
        match self.quarantine(target, reason, &message).await {
            Ok(true) => Some((reason, message)),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(target = %target.id, error = %e, "cannot quarantine a target");
                None
            }
        }
    }

    /// Quarantines a target (unless it is already); answers whether this call did.
    pub async fn quarantine(&self, target: &System, reason: Reason, message: &str) -> Result<bool, StoreError> {
        let next = from_now(self.probe_interval());
        let done = self
            .inner
            .store
            .systems
            .quarantine(&target.id, reason.as_str(), message, &next)
            .await?;
        if done {
            crate::metrics::quarantined(reason.as_str());
            tracing::warn!(target = %target.id, name = %target.spec.name, reason = reason.as_str(), %message,
                "target quarantined: runs skip it and its real-time events are parked until a probe or an admin releases it");
            let _ = self.inner.changes.send(QuarantineChange::Quarantined {
                system_id: target.id.clone(),
                system_name: target.spec.name.clone(),
                reason: reason.as_str().to_string(),
                message: message.to_string(),
            });
            self.refresh_gauge().await;
        }
        Ok(done)
    }

    /// Ends a target's quarantine (`by`: `probe` or the admin's name); answers the quarantine it ended, or
    /// `None` when the system was not quarantined. The real-time events parked for it go back in the queue,
    /// and its sources' next runs read everything.
    pub async fn release(&self, id: &str, by: &str) -> Result<Option<Quarantine>, StoreError> {
        let Some(ended) = self.inner.store.systems.release(id).await? else {
            return Ok(None);
        };
        let system = self.inner.store.systems.get(id).await?;
        let (name, sources) = system.map(|s| (s.spec.name, s.spec.sources)).unwrap_or_default();
        let unparked = match self.unpark(id, &sources).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(target = %id, error = %e, "cannot put the events parked for a released target back in the queue; re-drive them from the real-time log");
                0
            }
        };
        for source in &sources {
            if let Err(e) = self.forget_watermarks(source).await {
                tracing::warn!(source = %source, error = %e, "cannot make the next run of a released target's source a full read");
            }
        }
        tracing::info!(target = %id, name = %name, by = %by, reason = %ended.reason, events_resumed = unparked,
            "target released from quarantine");
        let _ = self.inner.changes.send(QuarantineChange::Released {
            system_id: id.to_string(),
            system_name: name,
            by: by.to_string(),
        });
        self.refresh_gauge().await;
        Ok(Some(ended))
    }

    /// Puts the real-time events parked for this target's quarantine back in the queue, in one go (so each
    /// entity's events keep their order); how many.
    async fn unpark(&self, target: &str, sources: &[String]) -> Result<u64, StoreError> {
        let events = &self.inner.store.events;
        let mut seqs = BTreeSet::new();
        for source in sources {
            let mut before = None;
            loop {
                let page = events.list(Some(source), Some("parked"), before, 1000).await?;
                let Some(last) = page.last() else { break };
                before = Some(last.seq);
                seqs.extend(
                    page.iter()
                        .filter(|e| parked_for(e.results.as_ref(), target))
                        .map(|e| e.seq),
                );
            }
        }
        let seqs: Vec<i64> = seqs.into_iter().collect();
        events.redrive_many(&seqs).await
    }

    /// Makes the next run of a source a full read: what changed while a target was quarantined would escape
    /// a delta read.
    async fn forget_watermarks(&self, source: &str) -> Result<(), StoreError> {
        let jobs = &self.inner.store.jobs;
        let mut state = jobs.delta_state(source).await?;
        if state.user_watermark.is_none() && state.group_watermark.is_none() {
            return Ok(());
        }
        state.user_watermark = None;
        state.group_watermark = None;
        jobs.set_delta_state(source, &state, None).await
    }

    /// Sets `provisio_quarantined_targets` from the store (every replica's quarantines).
    async fn refresh_gauge(&self) {
        if let Ok(all) = self.inner.store.systems.quarantined().await {
            crate::metrics::set_quarantined_targets(all.len() as i64);
        }
    }

    /// One round of probes: every quarantined target whose probe is due and that this replica claims is
    /// tested, and released when the test succeeds. Answers how many were released.
    pub async fn probe_due(&self) -> Result<usize, StoreError> {
        let all = self.inner.store.systems.quarantined().await?;
        crate::metrics::set_quarantined_targets(all.len() as i64);
        let now = crate::store::now();
        let base = self.probe_interval();
        let mut released = 0;
        for (id, quarantine) in all {
            if quarantine.next_probe_at.as_str() > now.as_str() {
                continue;
            }
            let next = from_now(probe_delay(base, quarantine.probes + 1));
            if !self.inner.store.systems.claim_probe(&id, &now, &next).await? {
                // Another replica probes it.
                continue;
            }
            let check = match self.inner.systems.test_connection(&id).await {
                Ok(check) => check,
                Err(e) => {
                    tracing::warn!(target = %id, error = %e, "cannot probe a quarantined target");
                    continue;
                }
            };
            if check.ok {
                if self.release(&id, "probe").await?.is_some() {
                    released += 1;
                }
            } else {
                tracing::info!(target = %id, probes = quarantine.probes + 1, next_probe_at = %next, message = %check.message,
                    "a quarantined target's probe failed; it stays quarantined");
            }
        }
        Ok(released)
    }

    /// Probes quarantined targets until the process ends (the serve command starts it), every second or
    /// every base interval, whichever is shorter.
    pub async fn run_probes(self) {
        loop {
            let tick = self
                .probe_interval()
                .clamp(Duration::from_millis(100), Duration::from_secs(1));
            tokio::time::sleep(tick).await;
            if let Err(e) = self.probe_due().await {
                tracing::warn!(error = %e, "cannot probe quarantined targets; trying again");
            }
        }
    }
}

/// Whether a real-time event's results say it was parked for `target`'s quarantine.
pub fn parked_for(results: Option<&Value>, target: &str) -> bool {
    results.and_then(Value::as_array).is_some_and(|items| {
        items
            .iter()
            .any(|r| r["quarantined"] == json!(true) && r["targetId"] == json!(target))
    })
}

/// The connection test to keep for a Test Connection's outcome.
pub fn connection_test(ok: bool, message: &str) -> ConnectionTest {
    ConnectionTest {
        ok,
        message: message.to_string(),
        at: crate::store::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(ok: u64, failures: &[(FailureCause, &str)]) -> WriteTally {
        let mut t = WriteTally {
            ok,
            ..Default::default()
        };
        for (cause, reason) in failures {
            t.note_failure(*cause, reason);
        }
        t
    }

    #[test]
    fn the_rules() {
        use FailureCause::*;
        let refused = tally(0, &[(Credentials, "401"), (Credentials, "401")]);
        assert_eq!(refused.verdict(None, 3).map(|v| v.0), Some(Reason::Credentials));
        // A refusal among successes is one entity's permission, not the target's credentials.
        assert_eq!(tally(5, &[(Credentials, "403")]).verdict(None, 3), None);
        assert_eq!(
            tally(0, &[(NotFound, "404")]).verdict(None, 3).map(|v| v.0),
            Some(Reason::NotFound)
        );
        // Over 40 % of at least 10 writes.
        let five_of_ten = tally(5, &[(Entity, "400"); 5]);
        assert_eq!(five_of_ten.verdict(None, 3).map(|v| v.0), Some(Reason::FailureRate));
        assert_eq!(
            tally(6, &[(Entity, "400"); 4]).verdict(None, 3),
            None,
            "40 % is not over"
        );
        assert_eq!(tally(1, &[(Target, "500")]).verdict(None, 3), None, "one of two writes");
        // Failed runs in a row: only runs where nothing succeeded and the target is to blame.
        let down = tally(0, &[(Target, "503")]);
        assert!(down.failed_run());
        assert_eq!(down.verdict(Some(2), 3), None);
        assert_eq!(down.verdict(Some(3), 3).map(|v| v.0), Some(Reason::FailedRuns));
        let bad_data = tally(0, &[(Entity, "400")]);
        assert!(!bad_data.failed_run(), "one entity's data is not the target's failure");
        assert_eq!(bad_data.verdict(Some(5), 3), None);
        assert!(!WriteTally::default().failed_run());
    }

    #[test]
    fn probes_back_off_to_an_hour() {
        let base = Duration::from_secs(60);
        assert_eq!(probe_delay(base, 0), base);
        assert_eq!(probe_delay(base, 1), Duration::from_secs(120));
        assert_eq!(probe_delay(base, 5), Duration::from_secs(1920));
        assert_eq!(probe_delay(base, 6), MAX_PROBE_INTERVAL);
        assert_eq!(probe_delay(base, 1000), MAX_PROBE_INTERVAL);
        assert_eq!(probe_delay(Duration::from_secs(1), 2), Duration::from_secs(4));
        assert_eq!(probe_delay(Duration::from_secs(7200), 3), Duration::from_secs(7200));
    }

    #[test]
    fn events_parked_for_a_target() {
        let results =
            json!([{"targetId": "a", "state": "Created"}, {"targetId": "b", "state": "Parked", "quarantined": true}]);
        assert!(parked_for(Some(&results), "b"));
        assert!(!parked_for(Some(&results), "a"));
        assert!(!parked_for(None, "b"));
    }
}
