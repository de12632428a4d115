//! Schedules: a source runs every so often (an interval) or at the times of a cron expression (UTC). The
//! scheduler never starts a run of a source while one is going (the slot is skipped, as in SAP); turning a
//! schedule off does not stop a running job.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobError, JobOptions, JobType, Provisioning, Trigger};
use crate::store::jobs::ScheduleRecord;

/// Shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When a source runs.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every so long, counted from the last slot.
    Every(Duration),
    /// At the times of a cron expression.
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// Validates a stored or submitted schedule.
    pub fn parse(record: &ScheduleRecord) -> Result<Schedule, String> {
        if !matches!(record.job_type.as_str(), "read" | "resync") {
            return Err(format!("jobType must be read or resync, not {:?}", record.job_type));
        }
        match (record.every_seconds, record.cron.as_deref()) {
            (Some(secs), None) => {
                let every = Duration::from_secs(secs.max(0) as u64);
                if every < MIN_INTERVAL {
                    return Err("everySeconds must be at least 1".into());
                }
                Ok(Schedule::Every(every))
            }
            (None, Some(expr)) => croner::Cron::new(expr)
                .with_seconds_optional()
                .parse()
                .map(|c| Schedule::Cron(Box::new(c)))
                .map_err(|e| format!("cron expression {expr:?} is invalid: {e}")),
            _ => Err("give either everySeconds or cron".into()),
        }
    }

    /// Where the period of the slot `due` begins for claiming it: a slot fired at or after this instant (by any
    /// replica) is this period's, so two runs are never closer than that. Cron slots are the same instants on
    /// every replica; interval slots are counted from when each replica first saw the schedule, so a period
    /// (less a tenth, at most a second, for the scheduler's tick) back from the slot.
    pub fn claim_window_start(&self, due: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => {
                let slack = (*d / 10).min(Duration::from_secs(1));
                chrono::Duration::from_std(*d - slack).map_or(due, |period| due - period)
            }
            Schedule::Cron(_) => due,
        }
    }

    /// The slot after `due`, which fired at `now`: intervals keep their phase (so that the replica that fired
    /// keeps firing first), unless slots were missed; cron takes its next time.
    pub fn following(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let next = due + chrono::Duration::from_std(*d).ok()?;
                if next > now { Some(next) } else { self.next_after(now) }
            }
            Schedule::Cron(_) => self.next_after(now),
        }
    }

    /// The first slot after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => chrono::Duration::from_std(*d).ok().map(|d| t + d),
            Schedule::Cron(c) => c.find_next_occurrence(&t, false).ok(),
        }
    }
}

/// Starts scheduled runs until the process ends. Checks once a second; picks up schedule changes.
pub async fn run_scheduler(service: Provisioning) {
    let mut next: HashMap<String, (ScheduleRecord, DateTime<Utc>)> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        if service.is_draining() {
            // Shutting down: the other replicas fire the schedules.
            return;
        }
        let records = match service.store().jobs.schedules().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read schedules");
                continue;
            }
        };
        let now = Utc::now();
        next.retain(|source, _| records.iter().any(|r| &r.source_id == source && r.enabled));
        for record in records.into_iter().filter(|r| r.enabled) {
            let schedule = match Schedule::parse(&record) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(source = %record.source_id, error = %e, "ignoring an invalid schedule");
                    continue;
                }
            };
            let due = match next.get(&record.source_id) {
                Some((known, due)) if known == &record => *due,
                _ => {
                    // New or changed: the first slot is one period (or cron slot) from now.
                    if let Some(due) = schedule.next_after(now) {
                        next.insert(record.source_id.clone(), (record.clone(), due));
                    }
                    continue;
                }
            };
            if due > now {
                continue;
            }
            if let Some(next_due) = schedule.following(due, now) {
                next.insert(record.source_id.clone(), (record.clone(), next_due));
            }
            // A disabled source's schedule is kept but not fired.
            match service.systems().get(&record.source_id).await {
                Ok(system) if !system.enabled => {
                    tracing::debug!(source = %record.source_id, "the source is disabled; its scheduled run is skipped");
                    continue;
                }
                _ => {}
            }
            // Several replicas: the one that claims the slot starts the run, the others skip it.
            let slot = crate::store::timestamp(due);
            let unless_since = crate::store::timestamp(schedule.claim_window_start(due));
            match service
                .store()
                .jobs
                .claim_schedule_slot(&record.source_id, &slot, &unless_since)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(source = %record.source_id, %slot, "another replica fired this slot");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(source = %record.source_id, error = %e, "cannot claim a schedule slot; skipped");
                    continue;
                }
            }
            let options = JobOptions {
                job_type: JobType::from_str(&record.job_type).unwrap_or(JobType::Read),
                simulate: false,
                trigger: Trigger::Schedule,
                started_by: "scheduler".into(),
            };
            match service.start(&record.source_id, options).await {
                Ok(job) => tracing::info!(job = %job.id, source = %record.source_id, "scheduled run started"),
                Err(JobError::Conflict(m)) => tracing::info!(source = %record.source_id, "{m}"),
                Err(e) => tracing::warn!(source = %record.source_id, error = %e, "scheduled run could not start"),
            }
        }
    }
}

impl std::str::FromStr for JobType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Ok(JobType::Read),
            "resync" => Ok(JobType::Resync),
            other => Err(format!("unknown job type {other:?} (expected read or resync)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(every: Option<i64>, cron: Option<&str>) -> ScheduleRecord {
        ScheduleRecord {
            source_id: "s".into(),
            job_type: "read".into(),
            every_seconds: every,
            cron: cron.map(str::to_string),
            enabled: true,
        }
    }

    #[test]
    fn intervals_and_cron_expressions() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:07:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let every = Schedule::parse(&record(Some(2400), None)).expect("interval");
        assert_eq!(
            every.next_after(t).map(|d| d.to_rfc3339()),
            Some("2026-11-23T10:47:00+00:00".into())
        );
        let cron = Schedule::parse(&record(None, Some("0 */2 * * *"))).expect("cron");
        assert_eq!(
            cron.next_after(t).map(|d| d.to_rfc3339()),
            Some("2026-11-23T12:00:00+00:00".into())
        );
        assert!(Schedule::parse(&record(None, Some("not cron"))).is_err());
        assert!(Schedule::parse(&record(Some(0), None)).is_err());
        assert!(Schedule::parse(&record(Some(60), Some("* * * * *"))).is_err());
        assert!(Schedule::parse(&record(None, None)).is_err());
    }

    #[test]
    fn intervals_keep_their_phase_and_claim_a_period_back() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let every = Schedule::parse(&record(Some(60), None)).expect("interval");
        let due = at("2026-11-23T10:00:00Z");
        // Fired a moment late: the next slot keeps the phase.
        assert_eq!(
            every.following(due, at("2026-11-23T10:00:00.900Z")),
            Some(at("2026-11-23T10:01:00Z"))
        );
        // Slots missed (the process slept): one period from now, not a burst.
        assert_eq!(
            every.following(due, at("2026-11-23T10:05:30Z")),
            Some(at("2026-11-23T10:06:30Z"))
        );
        // A run claimed within the last 59 s (a period less a second) is this period's.
        assert_eq!(every.claim_window_start(due), at("2026-11-23T09:59:01Z"));
        let short = Schedule::parse(&record(Some(2), None)).expect("interval");
        assert_eq!(short.claim_window_start(due), at("2026-11-23T09:59:58.200Z"));
        let cron = Schedule::parse(&record(None, Some("0 * * * *"))).expect("cron");
        assert_eq!(
            cron.claim_window_start(due),
            due,
            "cron slots are the same on every replica"
        );
    }
}
