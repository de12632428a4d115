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
            if let Some(due) = schedule.next_after(now) {
                next.insert(record.source_id.clone(), (record, due));
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
}
