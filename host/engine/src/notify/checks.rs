//! The worker's periodic checks: a plugin version trapping repeatedly (`plugin.trapping`: at least
//! [`NotifySettings::trap_threshold`] traps within [`NotifySettings::trap_window`], from this replica's
//! runtime statistics), and the real-time backlog (`realtime.backlog`: the oldest pending event of a source
//! older than the subscription's `backlogMinutes`).
//!
//! [`NotifySettings::trap_threshold`]: super::NotifySettings::trap_threshold
//! [`NotifySettings::trap_window`]: super::NotifySettings::trap_window

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::json;

use super::{Notification, Notifier, SystemRef, wants};
use crate::store::StoreError;

/// Trap counts of each plugin version over time, and when each was last told.
#[derive(Default)]
pub struct TrapWatch {
    samples: HashMap<String, VecDeque<(Instant, u64)>>,
    told: HashMap<String, Instant>,
}

impl TrapWatch {
    /// Records `traps` (the count since load) of `label` now and answers how many traps happened within
    /// `window` (against the oldest sample within it; a version seen for the first time counts from 0).
    pub fn observe(&mut self, label: &str, traps: u64, now: Instant, window: std::time::Duration) -> u64 {
        let samples = self.samples.entry(label.to_string()).or_default();
        if samples.is_empty() {
            samples.push_back((now, 0));
        }
        // Keep one sample at or before the window's start as the baseline.
        while samples.len() > 1 && samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= window) {
            samples.pop_front();
        }
        let baseline = samples.front().map(|(_, n)| *n).unwrap_or(0);
        samples.push_back((now, traps));
        traps.saturating_sub(baseline)
    }

    /// Whether `label` may be told now (not told within `window`); marks it told when so.
    pub fn tell(&mut self, label: &str, now: Instant, window: std::time::Duration) -> bool {
        match self.told.get(label) {
            Some(at) if now.duration_since(*at) < window => false,
            _ => {
                self.told.insert(label.to_string(), now);
                true
            }
        }
    }
}

/// Publishes `plugin.trapping` for every loaded plugin version that trapped repeatedly of late.
pub async fn plugin_traps(notifier: &Notifier) -> Result<(), StoreError> {
    let settings = notifier.settings();
    let now = Instant::now();
    let mut trapping = Vec::new();
    {
        let mut watch = notifier.traps();
        for plugin in notifier.plugins().list() {
            let label = plugin.label();
            let snapshot = plugin.stats.snapshot();
            let recent = watch.observe(&label, snapshot.traps, now, settings.trap_window);
            if recent >= settings.trap_threshold.max(1) && watch.tell(&label, now, settings.trap_window) {
                trapping.push((plugin, label, recent, snapshot));
            }
        }
    }
    for (plugin, label, recent, snapshot) in trapping {
        let minutes = settings.trap_window.as_secs().div_ceil(60);
        notifier
            .publish(Notification {
                kind: "plugin.trapping".into(),
                system: None,
                summary: format!("Plugin {label} trapped {recent} times within {minutes} minutes"),
                details: json!({
                    "plugin": plugin.descriptor.name,
                    "version": plugin.descriptor.version,
                    "digest": plugin.digest,
                    "traps": recent,
                    "windowMinutes": minutes,
                    "trapsSinceLoad": snapshot.traps,
                    "lastIncident": snapshot.last_incident,
                }),
            })
            .await?;
    }
    Ok(())
}

/// Publishes `realtime.backlog` to each subscription whose threshold the oldest pending event of a source
/// has passed.
pub async fn realtime_backlog(notifier: &Notifier) -> Result<(), StoreError> {
    let store = notifier.store();
    let subscriptions: Vec<_> = store
        .notifications
        .subscriptions()
        .await?
        .into_iter()
        .filter(|s| s.spec.kinds.iter().any(|k| k == "realtime.backlog"))
        .collect();
    if subscriptions.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    for (source, oldest) in store.notifications.oldest_pending_events().await? {
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&oldest) else {
            continue;
        };
        let age = now.signed_duration_since(at.with_timezone(&chrono::Utc));
        let minutes = age.num_seconds() as f64 / 60.0;
        let due: Vec<_> = subscriptions
            .iter()
            .filter(|s| wants(s, "realtime.backlog", Some(&source)) && minutes >= f64::from(s.spec.backlog_minutes))
            .cloned()
            .collect();
        if due.is_empty() {
            continue;
        }
        let system = store.systems.get(&source).await?;
        let name = system
            .as_ref()
            .map(|s| s.spec.name.clone())
            .unwrap_or_else(|| source.clone());
        let whole = age.num_minutes();
        notifier
            .publish_to(
                &due,
                &Notification {
                    kind: "realtime.backlog".into(),
                    system: system.as_ref().map(SystemRef::of),
                    summary: format!("The oldest pending real-time event of {name} is {whole} minutes old"),
                    details: json!({"oldestPendingAt": oldest, "ageMinutes": whole}),
                },
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::TrapWatch;

    #[test]
    fn counts_traps_within_the_window() {
        let mut w = TrapWatch::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        assert_eq!(w.observe("p@1", 1, t0, window), 1);
        assert_eq!(w.observe("p@1", 3, t0 + Duration::from_secs(60), window), 3);
        // Six minutes on, the traps before the window no longer count.
        assert_eq!(w.observe("p@1", 5, t0 + Duration::from_secs(400), window), 2);
        assert_eq!(w.observe("p@1", 5, t0 + Duration::from_secs(800), window), 0);
        assert!(w.tell("p@1", t0, window));
        assert!(!w.tell("p@1", t0 + Duration::from_secs(10), window));
        assert!(w.tell("p@1", t0 + Duration::from_secs(301), window));
    }
}
