//! The job-related properties of source and target systems (`ips.*`, SAP's names), parsed once per run.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::connector::EntityKind;

/// Retries of transient failures and throttling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`ips.failed.request.retry.attempts`, default 2).
    pub attempts: u32,
    /// Base wait before the first retry (`ips.failed.request.retry.attempts.interval`, seconds, default 30);
    /// doubled for each further retry, with jitter.
    pub interval: Duration,
    /// Most waiting for one call's retries, `Retry-After` included
    /// (`provisio.job.maxRetryWaitPerCallSeconds`, default 600).
    pub max_wait_per_call: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            interval: Duration::from_secs(30),
            max_wait_per_call: Duration::from_secs(600),
        }
    }
}

/// A run's ceilings: a read past any of them fails (and deletes nothing). Properties of the source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunLimits {
    /// Pages read per entity type (`provisio.job.maxPages`, default 100,000).
    pub max_pages: u64,
    /// Entities read per entity type (`provisio.job.maxEntities`, default 10,000,000).
    pub max_entities: u64,
    /// The run's wall-clock time (`provisio.job.maxDurationSeconds`, default 86,400).
    pub max_duration: Duration,
    /// Pages in a row that bring nothing new — empty, or only entities this run has already read — while
    /// the connector keeps handing out a next cursor (`provisio.job.maxPagesWithoutProgress`, default 100).
    pub max_pages_without_progress: u64,
    /// Waiting for retries, summed over all calls of the run (`provisio.job.maxRetryWaitSeconds`, default
    /// 3,600).
    pub max_retry_wait: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_pages: 100_000,
            max_entities: 10_000_000,
            max_duration: Duration::from_secs(86_400),
            max_pages_without_progress: 100,
            max_retry_wait: Duration::from_secs(3_600),
        }
    }
}

impl RunLimits {
    /// Parses the `provisio.job.*` ceilings; each must be a positive whole number.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self, String> {
        let positive = |name: &str, default: u64| -> Result<u64, String> {
            match number::<u64>(props, name)? {
                None => Ok(default),
                Some(0) => Err(format!("property {name} must be at least 1")),
                Some(n) => Ok(n),
            }
        };
        let d = RunLimits::default();
        Ok(RunLimits {
            max_pages: positive("provisio.job.maxPages", d.max_pages)?,
            max_entities: positive("provisio.job.maxEntities", d.max_entities)?,
            max_duration: Duration::from_secs(positive("provisio.job.maxDurationSeconds", d.max_duration.as_secs())?),
            max_pages_without_progress: positive("provisio.job.maxPagesWithoutProgress", d.max_pages_without_progress)?,
            max_retry_wait: Duration::from_secs(positive(
                "provisio.job.maxRetryWaitSeconds",
                d.max_retry_wait.as_secs(),
            )?),
        })
    }
}

/// A delete threshold: above it, a run deletes nothing and holds the deletes for an admin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// No threshold (`off`).
    Off,
    /// More than this many deletes are held.
    Count(usize),
    /// More than this share (percent) of the linked entities are held.
    Percent(f64),
}

/// Deletes of at most this many entities are never held by the *default* threshold; an explicit one applies
/// to any number.
pub const DEFAULT_THRESHOLD_FLOOR: usize = 10;

/// The default threshold: 20 % of the linked entities (above [`DEFAULT_THRESHOLD_FLOOR`]).
pub const DEFAULT_THRESHOLD: Threshold = Threshold::Percent(20.0);

impl Threshold {
    /// Parses `N`, `P%` or `off`.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("disabled") {
            return Ok(Threshold::Off);
        }
        if let Some(p) = t.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(Threshold::Percent)
                .ok_or_else(|| format!("{text:?} is not a percentage between 0% and 100%"));
        }
        t.parse::<usize>()
            .map(Threshold::Count)
            .map_err(|_| format!("{text:?} is not a count, a percentage (20%) or off"))
    }

    /// Whether `deletes` out of `linked` entities exceed the threshold.
    pub fn exceeded(self, deletes: usize, linked: usize, explicit: bool) -> bool {
        if !explicit && deletes <= DEFAULT_THRESHOLD_FLOOR {
            return false;
        }
        match self {
            Threshold::Off => false,
            Threshold::Count(n) => deletes > n,
            Threshold::Percent(p) => linked > 0 && (deletes as f64) * 100.0 > p * linked as f64,
        }
    }
}

/// What a run takes from the source system's properties.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSettings {
    /// `ips.delta.read`: enabled/true.
    pub delta_read: bool,
    /// `ips.full.read.force.count`: a full read after this many scheduled delta runs.
    pub full_read_force_count: Option<i64>,
    /// Page size asked of the connector (`provisio.read.page.size`, default 500).
    pub page_size: u32,
    /// Retries of source reads.
    pub retry: RetryPolicy,
    /// `ips.trace.*` switches: which outcomes log entity content.
    pub trace: TraceSettings,
    /// The run's ceilings (`provisio.job.max*`).
    pub limits: RunLimits,
}

/// Which outcomes carry entity content (values) in the job log; everything else is redacted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TraceSettings {
    /// `ips.trace.created.entity.content`.
    pub created: bool,
    /// `ips.trace.updated.entity.content`.
    pub updated: bool,
    /// `ips.trace.deleted.entity.content` (Provisio's; SAP has no content for deletes).
    pub deleted: bool,
    /// `ips.trace.failed.entity.content`.
    pub failed: bool,
    /// `ips.trace.skipped.entity.content`.
    pub skipped: bool,
}

/// What a run takes from a target system's properties.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSettings {
    /// `ips.delete.existedbefore.entities`.
    pub delete_existed_before: bool,
    /// `ips.delete.threshold.users`, and whether the admin set it.
    pub user_threshold: (Threshold, bool),
    /// `ips.delete.threshold.groups`, and whether the admin set it.
    pub group_threshold: (Threshold, bool),
    /// Retries of writes.
    pub retry: RetryPolicy,
    /// Writes in flight at once (`provisio.job.concurrency`, default 8; at most the rate limit).
    pub concurrency: usize,
}

impl TargetSettings {
    /// The threshold for an entity kind.
    pub fn threshold(&self, kind: EntityKind) -> (Threshold, bool) {
        match kind {
            EntityKind::User => self.user_threshold,
            EntityKind::Group => self.group_threshold,
        }
    }
}

fn flag(props: &BTreeMap<String, String>, name: &str) -> bool {
    props
        .get(name)
        .map(|v| v.trim())
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("enabled"))
}

fn number<T: std::str::FromStr>(props: &BTreeMap<String, String>, name: &str) -> Result<Option<T>, String> {
    match props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| format!("property {name} must be a number, not {v:?}")),
    }
}

fn retry(props: &BTreeMap<String, String>) -> Result<RetryPolicy, String> {
    let mut policy = RetryPolicy::default();
    if let Some(n) = number::<u32>(props, "ips.failed.request.retry.attempts")? {
        policy.attempts = n.min(10);
    }
    if let Some(secs) = number::<f64>(props, "ips.failed.request.retry.attempts.interval")? {
        if !(0.0..=3600.0).contains(&secs) {
            return Err("property ips.failed.request.retry.attempts.interval must be 0 to 3600 seconds".into());
        }
        policy.interval = Duration::from_secs_f64(secs);
    }
    if let Some(secs) = number::<u64>(props, "provisio.job.maxRetryWaitPerCallSeconds")? {
        policy.max_wait_per_call = Duration::from_secs(secs);
    }
    Ok(policy)
}

impl SourceSettings {
    /// Parses the source's properties.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self, String> {
        Ok(SourceSettings {
            delta_read: flag(props, "ips.delta.read"),
            full_read_force_count: number::<i64>(props, "ips.full.read.force.count")?.filter(|n| *n > 0),
            page_size: number::<u32>(props, "provisio.read.page.size")?
                .unwrap_or(500)
                .clamp(1, 5000),
            retry: retry(props)?,
            trace: TraceSettings::from_properties(props),
            limits: RunLimits::from_properties(props)?,
        })
    }
}

impl TraceSettings {
    /// Reads `ips.trace.<outcome>.entity.content`; `true` on the source or the target turns it on.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Self {
        let on = |what: &str| flag(props, &format!("ips.trace.{what}.entity.content"));
        TraceSettings {
            created: on("created"),
            updated: on("updated"),
            deleted: on("deleted"),
            failed: on("failed"),
            skipped: on("skipped"),
        }
    }

    /// Either's switches.
    pub fn or(self, other: TraceSettings) -> Self {
        TraceSettings {
            created: self.created || other.created,
            updated: self.updated || other.updated,
            deleted: self.deleted || other.deleted,
            failed: self.failed || other.failed,
            skipped: self.skipped || other.skipped,
        }
    }
}

impl TargetSettings {
    /// Parses the target's properties; `rate` is its effective request rate limit, if any.
    pub fn from_properties(props: &BTreeMap<String, String>, rate: Option<f64>) -> Result<Self, String> {
        let threshold = |name: &str| -> Result<(Threshold, bool), String> {
            match props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok((DEFAULT_THRESHOLD, false)),
                Some(v) => Threshold::parse(v)
                    .map(|t| (t, true))
                    .map_err(|e| format!("property {name}: {e}")),
            }
        };
        let mut concurrency = number::<usize>(props, "provisio.job.concurrency")?
            .unwrap_or(8)
            .clamp(1, 64);
        if let Some(rate) = rate {
            // More writes in flight than the system allows per second only queue up inside calls.
            concurrency = concurrency.min(rate.ceil().max(1.0) as usize);
        }
        Ok(TargetSettings {
            delete_existed_before: flag(props, "ips.delete.existedbefore.entities"),
            user_threshold: threshold("ips.delete.threshold.users")?,
            group_threshold: threshold("ips.delete.threshold.groups")?,
            retry: retry(props)?,
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn thresholds_parse_and_apply() {
        assert_eq!(Threshold::parse("100"), Ok(Threshold::Count(100)));
        assert_eq!(Threshold::parse(" 5% "), Ok(Threshold::Percent(5.0)));
        assert_eq!(Threshold::parse("off"), Ok(Threshold::Off));
        assert!(Threshold::parse("lots").is_err());
        assert!(Threshold::parse("150%").is_err());
        // Explicit: any count.
        assert!(Threshold::Count(2).exceeded(3, 100, true));
        assert!(!Threshold::Count(3).exceeded(3, 100, true));
        // Default: 20 %, but small deletes pass.
        assert!(!DEFAULT_THRESHOLD.exceeded(5, 6, false));
        assert!(DEFAULT_THRESHOLD.exceeded(30, 100, false));
        assert!(!DEFAULT_THRESHOLD.exceeded(19, 100, false));
        assert!(!Threshold::Off.exceeded(1000, 1000, true));
    }

    #[test]
    fn source_and_target_properties() {
        let s = SourceSettings::from_properties(&props(&[
            ("ips.delta.read", "enabled"),
            ("ips.full.read.force.count", "3"),
            ("ips.trace.updated.entity.content", "true"),
        ]))
        .expect("source");
        assert!(s.delta_read && s.trace.updated && !s.trace.created);
        assert_eq!(s.full_read_force_count, Some(3));
        assert!(
            SourceSettings::from_properties(&props(&[("ips.delta.read", "TRUE")]))
                .expect("ok")
                .delta_read
        );
        assert!(
            !SourceSettings::from_properties(&props(&[("ips.delta.read", "disabled")]))
                .expect("ok")
                .delta_read
        );

        let t = TargetSettings::from_properties(
            &props(&[
                ("ips.delete.threshold.users", "10"),
                ("ips.failed.request.retry.attempts", "3"),
                ("ips.failed.request.retry.attempts.interval", "0.5"),
            ]),
            Some(3.0),
        )
        .expect("target");
        assert_eq!(t.user_threshold, (Threshold::Count(10), true));
        assert_eq!(t.group_threshold, (DEFAULT_THRESHOLD, false));
        assert_eq!(t.retry.attempts, 3);
        assert_eq!(t.retry.interval, Duration::from_millis(500));
        assert_eq!(t.concurrency, 3);
        assert!(TargetSettings::from_properties(&props(&[("ips.delete.threshold.groups", "x")]), None).is_err());
    }

    #[test]
    fn run_ceilings_and_retry_budgets() {
        let s = SourceSettings::from_properties(&props(&[])).expect("defaults");
        assert_eq!(s.limits, RunLimits::default());
        assert_eq!(s.retry.max_wait_per_call, Duration::from_secs(600));
        let s = SourceSettings::from_properties(&props(&[
            ("provisio.job.maxPages", "20"),
            ("provisio.job.maxEntities", "1000"),
            ("provisio.job.maxDurationSeconds", "60"),
            ("provisio.job.maxPagesWithoutProgress", "5"),
            ("provisio.job.maxRetryWaitSeconds", "30"),
            ("provisio.job.maxRetryWaitPerCallSeconds", "0"),
        ]))
        .expect("set");
        assert_eq!(
            s.limits,
            RunLimits {
                max_pages: 20,
                max_entities: 1000,
                max_duration: Duration::from_secs(60),
                max_pages_without_progress: 5,
                max_retry_wait: Duration::from_secs(30),
            }
        );
        assert_eq!(s.retry.max_wait_per_call, Duration::ZERO, "0: no retry waits at all");
        let zero = SourceSettings::from_properties(&props(&[("provisio.job.maxPages", "0")]));
        assert!(zero.expect_err("refused").contains("provisio.job.maxPages"));
        assert!(SourceSettings::from_properties(&props(&[("provisio.job.maxEntities", "lots")])).is_err());
    }
}
