//! Standard provisioning: Read, Resync and delta-read jobs from a source to all its targets, over the link
//! store, with deletion safety, retries, schedules, simulation and single-entity provisioning.
//!
//! At most one run per source goes at a time; a manual run asked for while one runs is queued behind it,
//! a scheduled one is skipped (SAP's overlapping slot). A run that a crash interrupted is marked at the next
//! start; the next run converges because create intents are recorded before creates are sent.
//!
//! On a store several replicas share, each run is claimed by the replica (node) that runs it, with a lease
//! it renews every [`HEARTBEAT`]; every write of the run is fenced by the claim. When a replica dies, another
//! takes its runs over once their lease has expired and runs them again under the same id, from their
//! durable intents and links: what was written is not written again, and a create whose outcome is unknown is
//! first looked up in the target.
//!
//! Each run goes on a task of its own, supervised: however that task ends — a panic, a cancel — the run is
//! finished with a status and an outcome, and its source is free for the next run.

pub mod diff;
pub mod matching;
pub mod memo;
pub mod one;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod settings;
pub mod stop;
pub mod sync;
pub mod target;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use provisio_transform::Transformation;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::retry::{RetryScope, join_error_message};
use self::run::{JobRun, SourceReader, TargetRun};
use self::settings::{SourceSettings, TargetSettings, TraceSettings};
use self::stop::StopSignal;
use self::target::TargetContext;
use crate::connector::EntityKind;
use crate::plugins::Plugins;
use crate::store::jobs::{Claim, HEARTBEAT, HeldDelete, HeldKey, JobRecord, JobStatus, LEASE, RejectedDelete};
use crate::store::links::{LinkChange, LinkScope};
use crate::store::systems::{Role, System};
use crate::store::{StoreError, Stores};
use crate::systems::Systems;

/// Read (write what changed, delete what disappeared) or Resync (rewrite everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Read.
    Read,
    /// Resync.
    Resync,
}

impl JobType {
    /// The type of a stored run (`read`, `resync`, or either with `simulate-` before it).
    fn of_record(job_type: &str) -> JobType {
        match job_type.trim_start_matches("simulate-") {
            "resync" => JobType::Resync,
            _ => JobType::Read,
        }
    }

    /// `read` or `resync`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Read => "read",
            JobType::Resync => "resync",
        }
    }
}

/// Who started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// An admin or the API.
    Manual,
    /// The source's schedule.
    Schedule,
}

/// What a run should do.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Read or Resync.
    pub job_type: JobType,
    /// Plan only: report what would be written, write nothing.
    pub simulate: bool,
    /// Manual or scheduled.
    pub trigger: Trigger,
    /// Who asked.
    pub started_by: String,
}

impl JobOptions {
    /// What a stored run was asked to do (a run taken over from another replica goes on with it).
    fn of_record(job: &JobRecord) -> JobOptions {
        JobOptions {
            job_type: JobType::of_record(&job.job_type),
            simulate: job.job_type.starts_with("simulate-"),
            trigger: if job.trigger == "schedule" {
                Trigger::Schedule
            } else {
                Trigger::Manual
            },
            started_by: job.started_by.clone(),
        }
    }
}

/// This replica's name in the claims it holds: `PROVISIO_NODE`, else the host's name, the process id and a
/// short random tag (two services in one process are two replicas).
pub fn this_node() -> String {
    if let Ok(node) = std::env::var("PROVISIO_NODE")
        && !node.trim().is_empty()
    {
        return node.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "provisio".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}-{}", std::process::id(), &tag[..4])
}

/// Errors of job management, each with a message for the admin.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request is invalid (not a source, bad configuration).
    #[error("{0}")]
    Invalid(String),
    /// No such job or system.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state (the run has ended, a scheduled run overlaps).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<crate::systems::SystemError> for JobError {
    fn from(e: crate::systems::SystemError) -> Self {
        use crate::systems::SystemError as S;
        match e {
            S::Invalid(m) => JobError::Invalid(m),
            S::NotFound(m) => JobError::NotFound(m),
            S::Conflict(m) => JobError::Conflict(m),
            S::Internal(m) => JobError::Store(StoreError::Corrupt(m)),
            S::Unavailable(m) => JobError::Store(StoreError::Backend(m)),
        }
    }
}

/// The run going on for a source, and those queued behind it.
struct SourceSlot {
    running: Claim,
    stop: StopSignal,
    queue: VecDeque<(Claim, JobOptions)>,
}

struct Inner {
    store: Stores,
    systems: Systems,
    plugins: Arc<Plugins>,
    active: Mutex<HashMap<String, SourceSlot>>,
    retention_days: i64,
    /// This replica's name in its claims.
    node: String,
    /// Shutting down: no new work is claimed, taken over, scheduled or started.
    draining: std::sync::atomic::AtomicBool,
    /// Runs executing here now (not those waiting for their source).
    executing: std::sync::atomic::AtomicUsize,
    /// Quarantine of the targets runs write to.
    quarantines: crate::quarantine::Quarantines,
    /// Told how each run ended.
    notifier: crate::notify::Notifier,
    /// Tests: the next run panics before it starts, as a bug in the run would.
    #[cfg(test)]
    panic_next_run: std::sync::atomic::AtomicBool,
    /// Tests: the panicking run waits for this, so that a run can be queued behind it first.
    #[cfg(test)]
    panic_gate: tokio::sync::Semaphore,
}

/// The provisioning service; cheap to clone.
#[derive(Clone)]
pub struct Provisioning {
    inner: Arc<Inner>,
}

/// How often a run queued behind another replica's run of its source asks whether the source is free.
const SOURCE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Default number of days job runs and their logs are kept.
pub const DEFAULT_RETENTION_DAYS: i64 = crate::retention::DEFAULT_JOB_LOGS_DAYS;

impl Provisioning {
    /// Wires the service. `retention_days` bounds how long ended runs are kept.
    pub fn new(store: Stores, plugins: Arc<Plugins>, retention_days: i64) -> Self {
        let systems = Systems::new(store.clone(), plugins.clone());
        let quarantines = crate::quarantine::Quarantines::new(store.clone(), systems.clone());
        let node = this_node();
        let notifier = crate::notify::Notifier::new(store.clone(), plugins.clone(), node.clone());
        Provisioning {
            inner: Arc::new(Inner {
                quarantines,
                store,
                systems,
                plugins,
                active: Mutex::new(HashMap::new()),
                retention_days: retention_days.max(1),
                node,
                notifier,
                draining: std::sync::atomic::AtomicBool::new(false),
                executing: std::sync::atomic::AtomicUsize::new(0),
                #[cfg(test)]
                panic_next_run: std::sync::atomic::AtomicBool::new(false),
                #[cfg(test)]
                panic_gate: tokio::sync::Semaphore::new(0),
            }),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, SourceSlot>> {
        self.inner.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At start: on a store this process owns, marks runs a crash interrupted (returns their ids); on a
    /// shared store, starts keeping this replica's claims and taking over those of dead replicas (see
    /// [`Provisioning::keep_leases`]). Old runs are pruned by [`crate::retention::Pruner`].
    pub async fn recover(&self) -> Result<Vec<String>, JobError> {
        let ids = if self.inner.store.is_shared() {
            self.keep_leases();
            Vec::new()
        } else {
            self.inner.store.jobs.interrupt_unfinished().await?
        };
        for id in &ids {
            tracing::warn!(job = %id, "a job run was interrupted by a restart; the next run converges");
        }
        Ok(ids)
    }

    /// Quarantine of targets (see [`crate::quarantine`]).
    pub fn quarantines(&self) -> &crate::quarantine::Quarantines {
        &self.inner.quarantines
    }

    /// The notification service, told how each run ends.
    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.inner.notifier
    }

    /// This replica's name in the claims it holds.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether this replica is shutting down (see [`Provisioning::drain`]).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Shuts the job side down (SIGTERM): from now on nothing is taken over, scheduled or started here; the
    /// runs executing here get up to `grace` to finish; then, on a shared store, the claims on the runs still
    /// held here (executing or queued) are handed back, so that another replica takes them over at its next
    /// beat, and this replica leaves the live ones. On a store of its own, runs still going are marked
    /// interrupted at the next start. Answers how many runs were handed back.
    pub async fn drain(&self, grace: std::time::Duration) -> usize {
        self.inner.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.executing.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if !self.inner.store.is_shared() {
            return 0;
        }
        let held = self.held();
        let jobs = &self.inner.store.jobs;
        let handed = if held.is_empty() {
            0
        } else {
            match jobs.release(&self.inner.node, &held).await {
                Ok(n) => n as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand job runs back; they are taken over when their lease ends");
                    0
                }
            }
        };
        if let Err(e) = jobs.leave(&self.inner.node).await {
            tracing::warn!(error = %e, "cannot leave the live replicas; the others see it gone after three beats");
        }
        handed
    }

    /// The runs this replica holds: executing, waiting for their source, or queued.
    fn held(&self) -> Vec<String> {
        self.active()
            .values()
            .flat_map(|slot| std::iter::once(&slot.running).chain(slot.queue.iter().map(|(c, _)| c)))
            .map(|claim| claim.job.clone())
            .collect()
    }

    /// Every [`HEARTBEAT`]: renews the claims on the runs this replica holds, and takes over runs whose
    /// replica stopped renewing theirs. A database that does not answer is tried again at the next beat
    /// (nothing is claimed meanwhile).
    pub fn keep_leases(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                beat.tick().await;
                if let Err(e) = this.tend_leases().await {
                    tracing::warn!(error = %e, "cannot renew or take over job claims; trying again");
                }
            }
        });
    }

    /// One beat of [`Provisioning::keep_leases`].
    pub async fn tend_leases(&self) -> Result<(), JobError> {
        if self.is_draining() {
            // The claims are handed back by `drain`; renewing them now would hold them from the others.
            return Ok(());
        }
        let held = self.held();
        let jobs = &self.inner.store.jobs;
        // Each live replica sends its share of a target's rate limit.
        let replicas = jobs.beat(&self.inner.node, 3 * HEARTBEAT).await?;
        self.inner.plugins.runtime().outbound().set_replicas(replicas);
        if !held.is_empty() {
            jobs.renew(&self.inner.node, &held, LEASE).await?;
            // Stops asked of other replicas for runs held here.
            for id in jobs.stops_requested(&held).await? {
                let job = self.job(&id).await?;
                if let Err(e) = self.stop_here(job).await {
                    tracing::warn!(job = %id, error = %e, "cannot stop a run as another replica asked");
                }
            }
        }
        for record in jobs.take_over(&self.inner.node, LEASE, 8).await? {
            self.adopt(record).await;
        }
        Ok(())
    }

    /// Makes a claimed run the source's running one (stopped by `stop`) and answers its options, or queues it
    /// behind the source's running run and answers `None`.
    fn enter(&self, source_id: &str, claim: &Claim, options: JobOptions, stop: &StopSignal) -> Option<JobOptions> {
        let mut active = self.active();
        match active.get_mut(source_id) {
            Some(slot) => {
                slot.queue.push_back((claim.clone(), options));
                None
            }
            None => {
                let slot = SourceSlot {
                    running: claim.clone(),
                    stop: stop.clone(),
                    queue: VecDeque::new(),
                };
                active.insert(source_id.to_string(), slot);
                Some(options)
            }
        }
    }

    /// Goes on with a run taken over from a replica that died: it runs again, under its id and this claim.
    async fn adopt(&self, record: JobRecord) {
        let claim = record.claim();
        tracing::warn!(job = %claim.job, source = %record.source_id, node = %claim.node, attempt = claim.attempt,
            "took over a job run whose replica stopped renewing its claim");
        let options = JobOptions::of_record(&record);
        let stop = StopSignal::new();
        let starts = self.enter(&record.source_id, &claim, options, &stop);
        let jobs = &self.inner.store.jobs;
        let Some(options) = starts else {
            if let Err(e) = jobs
                .update(&claim, JobStatus::Queued, &record.read_mode, &record.summary)
                .await
            {
                tracing::error!(job = %claim.job, error = %e, "cannot queue a run taken over");
            }
            return;
        };
        // A queued run starts once its source is free (see `drive`).
        let this = self.clone();
        tokio::spawn(async move { this.drive(record.source_id, claim, options, stop).await });
    }

    /// Starts a run on a source, or queues it behind the running one. A scheduled run while one runs is
    /// refused (`Conflict`): the slot is skipped.
    pub async fn start(&self, source_id: &str, options: JobOptions) -> Result<JobRecord, JobError> {
        let source = self.inner.systems.get(source_id).await?;
        if source.spec.role != Role::Source {
            return Err(JobError::Invalid(format!(
                "{} is a {:?} system; jobs run on source systems",
                source.spec.name, source.spec.role
            )));
        }
        if !source.enabled {
            return Err(JobError::Conflict(format!(
                "{} is disabled; enable it (POST /api/v1/systems/{source_id}/enable) to run jobs",
                source.spec.name
            )));
        }
        if self.is_draining() {
            return Err(JobError::Store(StoreError::Backend(
                "this replica is shutting down; start the run on another one".into(),
            )));
        }
        let busy = self.active().contains_key(source_id);
        // Another replica's run counts too (one running run per source, whichever replica holds it).
        let skip = options.trigger == Trigger::Schedule
            && (busy || (self.inner.store.is_shared() && self.inner.store.jobs.busy(source_id).await?));
        if skip {
            return Err(JobError::Conflict(format!(
                "a run of {} is still going; this scheduled run is skipped",
                source.spec.name
            )));
        }
        let record = JobRecord {
            id: uuid::Uuid::new_v4().to_string(),
            source_id: source_id.to_string(),
            job_type: if options.simulate {
                format!("simulate-{}", options.job_type.as_str())
            } else {
                options.job_type.as_str().to_string()
            },
            read_mode: "full".into(),
            trigger: match options.trigger {
                Trigger::Manual => "manual",
                Trigger::Schedule => "schedule",
            }
            .into(),
            started_by: options.started_by.clone(),
            // Queued until the store makes it the source's running run (below, or in `drive`).
            status: JobStatus::Queued,
            summary: json!({"sourceName": source.spec.name, "simulate": options.simulate, "statistics": [], "outcome": []}),
            started_at: crate::store::now(),
            ended_at: None,
            node: Some(self.inner.node.clone()),
            attempt: 1,
        };
        self.inner.store.jobs.insert(&record, LEASE).await?;
        let claim = record.claim();
        let stop = StopSignal::new();
        let starting = self.enter(source_id, &claim, options, &stop);
        let mut record = record;
        let Some(options) = starting else {
            tracing::info!(job = %record.id, source = %source_id, "job queued behind the running one");
            return Ok(record);
        };
        // It goes first here; another replica may still be running the source (then `drive` waits for it).
        match self.inner.store.jobs.start(&claim).await {
            Ok(true) => record.status = JobStatus::Running,
            Ok(false) => {
                tracing::info!(job = %record.id, source = %source_id, "job queued behind another replica's run")
            }
            // `drive` asks again.
            Err(e) => tracing::warn!(job = %record.id, error = %e, "cannot start the run yet; trying again"),
        }
        let this = self.clone();
        let source_id = source_id.to_string();
        tokio::spawn(async move { this.drive(source_id, claim, options, stop).await });
        Ok(record)
    }

    /// Runs a source's jobs one after another until its queue is empty. Each run goes on a task of its own;
    /// a run whose task dies is finished here, and the source is freed however this loop ends.
    async fn drive(self, source_id: String, mut claim: Claim, mut options: JobOptions, mut stop: StopSignal) {
        let mut guard = SourceGuard {
            service: self.clone(),
            source_id: source_id.clone(),
            armed: true,
        };
        loop {
            let started = std::time::Instant::now();
            if self.is_draining() {
                // Left held, to be handed back by `drain`.
                guard.armed = false;
                return;
            }
            let status = if self.take_source(&claim, &stop).await {
                use std::sync::atomic::Ordering::SeqCst;
                self.inner.executing.fetch_add(1, SeqCst);
                let status = self.supervise(&source_id, &claim, &options, &stop).await;
                self.inner.executing.fetch_sub(1, SeqCst);
                self.inner.notifier.job_ended(&claim.job, claim.attempt).await;
                status
            } else {
                JobStatus::ManuallyTerminated
            };
            tracing::info!(job = %claim.job, source = %source_id, status = status.as_str(),
                seconds = started.elapsed().as_secs_f64(), "job run ended");
            let next = {
                let mut active = self.active();
                let next = active.get_mut(&source_id).and_then(|slot| {
                    let (next, next_options) = slot.queue.pop_front()?;
                    slot.running = next.clone();
                    slot.stop = StopSignal::new();
                    Some((next, next_options, slot.stop.clone()))
                });
                if next.is_none() {
                    active.remove(&source_id);
                }
                next
            };
            let Some((next, next_options, next_stop)) = next else {
                guard.armed = false;
                return;
            };
            (claim, options, stop) = (next, next_options, next_stop);
        }
    }

    /// Waits until the store makes this run its source's running one — at once, unless another replica is
    /// running the source — and answers `true`; `false` when it was stopped meanwhile (recorded so) or its
    /// claim is gone. A store that does not answer is asked again.
    async fn take_source(&self, claim: &Claim, stop: &StopSignal) -> bool {
        let jobs = &self.inner.store.jobs;
        let mut waiting = false;
        loop {
            if self.is_draining() {
                return false;
            }
            match jobs.start(claim).await {
                Ok(true) => return true,
                Ok(false) if !waiting => {
                    waiting = true;
                    tracing::info!(job = %claim.job, "waiting for another replica's run of the same source");
                }
                Ok(false) => {}
                Err(StoreError::Fenced(m)) => {
                    tracing::warn!(job = %claim.job, "{m}");
                    return false;
                }
                Err(e) => tracing::warn!(job = %claim.job, error = %e, "cannot start a queued run; trying again"),
            }
            if !stop.sleep(SOURCE_POLL).await {
                let summary = json!({"statistics": [], "outcome": ["Stopped by an admin before it started."]});
                if let Err(e) = jobs
                    .update(claim, JobStatus::ManuallyTerminated, "full", &summary)
                    .await
                {
                    tracing::error!(job = %claim.job, error = %e, "cannot record a run stopped before it started");
                }
                return false;
            }
        }
    }

    /// Runs one job on a task of its own and waits for it. A task that ends without a status (it panicked,
    /// or was cancelled) leaves the run finished with an error that says so.
    async fn supervise(&self, source_id: &str, claim: &Claim, options: &JobOptions, stop: &StopSignal) -> JobStatus {
        let this = self.clone();
        let job_id = &claim.job;
        let (source, job, opts, signal) = (source_id.to_string(), claim.clone(), options.clone(), stop.clone());
        let task = AbortOnDrop(tokio::spawn(
            async move { this.run_one(&source, &job, &opts, signal).await },
        ));
        let joined = {
            let mut task = task;
            (&mut task.0).await
        };
        match joined {
            Ok(status) => status,
            Err(e) => {
                let why = join_error_message(e);
                tracing::error!(job = %job_id, source = %source_id, why = %why, "a job run ended abnormally");
                self.finish_abnormally(claim, &format!("The run ended abnormally ({why}); nothing was deleted after that. The source is free for the next run.")).await;
                JobStatus::FinishedWithError
            }
        }
    }

    /// Finishes a run that cannot finish itself: its last recorded statistics, the reason in its outcome,
    /// *Finished with Error*. A run that has ended already is left as it is.
    async fn finish_abnormally(&self, claim: &Claim, reason: &str) {
        let job_id = &claim.job;
        let job = match self.inner.store.jobs.get(job_id).await {
            Ok(Some(job)) if !job.status.is_final() => job,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "cannot read a job that ended abnormally");
                return;
            }
        };
        let mut summary = job.summary;
        if !summary.is_object() {
            summary = json!({});
        }
        let mut outcome = summary["outcome"].as_array().cloned().unwrap_or_default();
        outcome.push(json!(reason));
        summary["outcome"] = json!(outcome);
        summary["progress"] = json!({"phase": "done"});
        if let Err(e) = self
            .inner
            .store
            .jobs
            .update(claim, JobStatus::FinishedWithError, &job.read_mode, &summary)
            .await
        {
            tracing::error!(job = %job_id, error = %e, "cannot record the end of a job that ended abnormally");
        }
    }

    async fn run_one(&self, source_id: &str, claim: &Claim, options: &JobOptions, stop: StopSignal) -> JobStatus {
        let job_id = &claim.job;
        #[cfg(test)]
        if self
            .inner
            .panic_next_run
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let _ = self.inner.panic_gate.acquire().await;
            panic!("a bug in the run (injected by a test)");
        }
        let prepared = self
            .prepare(source_id)
            .await
            .map_err(|message| (vec![message], Vec::new()))
            .and_then(|(reader, targets)| {
                // Quarantined targets are skipped, each saying why; a run with none left fails saying so.
                let (quarantined, targets): (Vec<_>, Vec<_>) =
                    targets.into_iter().partition(|t| t.system.health.quarantine.is_some());
                let skips: Vec<Value> = quarantined.iter().map(|t| quarantined_skip(&t.system)).collect();
                if targets.is_empty() {
                    let mut outcome: Vec<String> = skips.iter().map(run::skip_line).collect();
                    outcome.push(format!(
                        "Every enabled target of {} is quarantined; nothing was provisioned.",
                        reader.system.spec.name
                    ));
                    return Err((outcome, skips));
                }
                Ok((reader, targets, skips))
            });
        match prepared {
            Ok((mut reader, targets, quarantined)) => {
                // Every retry of the run races its stop and pays from its budget of waiting.
                let scope = RetryScope::for_run(stop.clone(), reader.settings.limits.max_retry_wait);
                reader.retry_scope = scope.clone();
                let targets = targets
                    .into_iter()
                    .map(|mut ctx| {
                        ctx.retry_scope = scope.clone();
                        TargetRun::new(ctx)
                    })
                    .collect();
                let mut run = JobRun::new(
                    claim.clone(),
                    self.inner.store.clone(),
                    options.clone(),
                    reader,
                    targets,
                    stop,
                );
                let mut skipped = self.skipped_targets(source_id).await;
                skipped.extend(quarantined);
                run.skip_targets(skipped);
                run.assess_targets(self.inner.quarantines.clone());
                run.run().await
            }
            Err((outcome, quarantined)) => {
                let mut skipped = self.skipped_targets(source_id).await;
                skipped.extend(quarantined);
                let summary = json!({"statistics": [], "outcome": outcome, "simulate": options.simulate,
                    "skippedTargets": skipped, "quarantinedTargets": []});
                if let Err(e) = self
                    .inner
                    .store
                    .jobs
                    .update(claim, JobStatus::FinishedWithError, "full", &summary)
                    .await
                {
                    tracing::error!(job = %job_id, error = %e, "cannot record a job that could not start");
                }
                JobStatus::FinishedWithError
            }
        }
    }

    /// The systems that decide which plugin version each system runs on.
    pub(crate) fn systems(&self) -> &Systems {
        &self.inner.systems
    }

    /// Loads the source and its targets for a run; a message for the job log when it cannot.
    pub(crate) async fn prepare(&self, source_id: &str) -> Result<(SourceReader, Vec<TargetContext>), String> {
        let systems = &self.inner.systems;
        let source = systems.get(source_id).await.map_err(|e| e.to_string())?;
        let reader = self.source_reader(source)?;
        let targets = self
            .inner
            .store
            .systems
            .targets_of(source_id)
            .await
            .map_err(|e| e.to_string())?;
        if targets.is_empty() {
            return Err(format!(
                "{} has no target systems; add it to the sources of a target first",
                reader.system.spec.name
            ));
        }
        let (targets, skipped): (Vec<System>, Vec<System>) = targets.into_iter().partition(|t| t.enabled);
        if targets.is_empty() {
            let names: Vec<&str> = skipped.iter().map(|t| t.spec.name.as_str()).collect();
            return Err(format!(
                "every target of {} is disabled ({}); enable one to provision",
                reader.system.spec.name,
                names.join(", ")
            ));
        }
        let mut contexts = Vec::new();
        for target in targets {
            let name = target.spec.name.clone();
            let ctx = self
                .target_context(target, reader.settings.trace)
                .map_err(|e| format!("target {name}: {e}"))?;
            contexts.push(ctx);
        }
        Ok((reader, contexts))
    }

    /// The targets of a source that runs and real-time events skip for being disabled, with why (for the
    /// run's outcome; quarantined ones are added by the run, see [`quarantined_skip`]).
    pub(crate) async fn skipped_targets(&self, source_id: &str) -> Vec<Value> {
        match self.inner.store.systems.targets_of(source_id).await {
            Ok(targets) => targets
                .into_iter()
                .filter(|t| !t.enabled)
                .map(|t| json!({"targetId": t.id, "targetName": t.spec.name, "reason": "disabled"}))
                .collect(),
            Err(e) => {
                tracing::warn!(source = %source_id, error = %e, "cannot list the targets a run skips");
                Vec::new()
            }
        }
    }

    /// The source side of a run.
    pub(crate) fn source_reader(&self, source: System) -> Result<SourceReader, String> {
        let plugin = self.inner.systems.plugin_for(&source).map_err(|e| e.to_string())?;
        let call = self
            .inner
            .systems
            .call_target(&source, &plugin.descriptor)
            .map_err(|e| e.to_string())?;
        let doc = transformation_document(
            &source,
            "read",
            plugin.descriptor.default_read_transformation.as_deref(),
        )?;
        let transformation =
            Transformation::parse(&doc).map_err(|e| format!("the read transformation is invalid: {e}"))?;
        let props = source.spec.properties.clone();
        Ok(SourceReader {
            settings: SourceSettings::from_properties(&props)?,
            memo_fingerprint: memo::fingerprint("read", &doc, &props),
            system: source,
            plugin,
            call,
            transformation,
            runtime: self.inner.plugins.runtime().clone(),
            retry_scope: RetryScope::default(),
        })
    }

    /// Everything needed to write to a target.
    pub fn target_context(&self, target: System, source_trace: TraceSettings) -> Result<TargetContext, String> {
        let plugin = self.inner.systems.plugin_for(&target).map_err(|e| e.to_string())?;
        let mut call = self
            .inner
            .systems
            .call_target(&target, &plugin.descriptor)
            .map_err(|e| e.to_string())?;
        // The host resolves create conflicts itself, so that it knows which entities existed before.
        call.properties.retain(|(k, _)| k != provisio_sdk_property());
        call.properties
            .push((provisio_sdk_property().to_string(), "host".to_string()));
        let doc = transformation_document(
            &target,
            "write",
            plugin.descriptor.default_write_transformation.as_deref(),
        )?;
        let transformation =
            Transformation::parse(&doc).map_err(|e| format!("the write transformation is invalid: {e}"))?;
        let settings = TargetSettings::from_properties(&target.spec.properties, call.endpoint.rate_per_second)?;
        let trace = source_trace.or(TraceSettings::from_properties(&target.spec.properties));
        // A user whose update `skipOperations` excludes is skipped, not unchanged: the memo would say otherwise.
        let updates_users = !transformation
            .entity(EntityKind::User.as_str())
            .is_some_and(|e| e.skips(provisio_transform::Operation::Update));
        let memo_fingerprint = updates_users
            .then(|| memo::fingerprint("write", &doc, &target.spec.properties))
            .flatten();
        Ok(TargetContext {
            memo_fingerprint,
            system: target,
            plugin,
            call,
            transformation,
            settings,
            trace,
            runtime: self.inner.plugins.runtime().clone(),
            retry_scope: RetryScope::default(),
        })
    }

    /// Asks a run to stop at the next entity boundary, or takes a queued run off the queue. A run another
    /// replica holds is asked through the store: its holder sees the request at its next beat.
    pub async fn stop(&self, job_id: &str) -> Result<JobRecord, JobError> {
        let job = self.job(job_id).await?;
        let held_elsewhere = self.inner.store.is_shared()
            && !job.status.is_final()
            && job.node.as_deref() != Some(self.inner.node.as_str());
        if held_elsewhere {
            if !self.inner.store.jobs.request_stop(job_id).await? {
                return Err(nothing_to_stop(&self.job(job_id).await?));
            }
            tracing::info!(job = %job_id, node = ?job.node, "stop requested of the replica running it");
            return self.job(job_id).await;
        }
        self.stop_here(job).await
    }

    /// Stops a run this replica holds (see [`Provisioning::stop`]).
    async fn stop_here(&self, job: JobRecord) -> Result<JobRecord, JobError> {
        // A run whose end is recorded holds its source's slot a moment longer: it has nothing left to stop.
        if job.status.is_final() {
            return Err(nothing_to_stop(&job));
        }
        let job_id = job.id.as_str();
        let taken_off_queue = {
            let mut active = self.active();
            match active.get_mut(&job.source_id) {
                Some(slot) if slot.running.job == job_id => {
                    slot.stop.request();
                    false
                }
                Some(slot) => match slot.queue.iter().position(|(claim, _)| claim.job == job_id) {
                    Some(pos) => {
                        slot.queue.remove(pos);
                        true
                    }
                    None => return Err(nothing_to_stop(&job)),
                },
                None => return Err(nothing_to_stop(&job)),
            }
        };
        if !taken_off_queue {
            tracing::info!(job = %job_id, "stop requested");
            return self.job(job_id).await;
        }
        let mut summary = job.summary.clone();
        summary["outcome"] = json!(["Stopped by an admin before it started."]);
        self.inner
            .store
            .jobs
            .update(&job.claim(), JobStatus::ManuallyTerminated, &job.read_mode, &summary)
            .await?;
        self.job(job_id).await
    }

    /// One run.
    pub async fn job(&self, job_id: &str) -> Result<JobRecord, JobError> {
        self.inner
            .store
            .jobs
            .get(job_id)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("no job with id {job_id}")))
    }
    /// How many days ended runs (and real-time events) are kept.
    pub fn retention_days(&self) -> i64 {
        self.inner.retention_days
    }

    /// The store (for the log and list endpoints).
    pub fn store(&self) -> &Stores {
        &self.inner.store
    }

    /// Approves (deletes them now) or rejects (keeps the entities and their links) the deletes a threshold
    /// held in a run: all pending ones, or only those `only` names (each must be a held delete of the run,
    /// else [`JobError::Invalid`]). A rejection is remembered: the next runs neither hold nor delete the
    /// entity while its link stays as it was. Returns the counts.
    pub async fn decide_held_deletes(
        &self,
        job_id: &str,
        approve: bool,
        by: &str,
        only: Option<&[HeldKey]>,
    ) -> Result<Value, JobError> {
        let job = self.job(job_id).await?;
        if !job.status.is_final() {
            return Err(JobError::Conflict(
                "the run is still going; decide when it has ended".into(),
            ));
        }
        let held = self.inner.store.jobs.held_deletes(job_id).await?;
        if let Some(only) = only {
            if only.is_empty() {
                return Err(JobError::Invalid("\"entities\" names no held delete".into()));
            }
            if let Some(unknown) = only.iter().find(|k| !held.iter().any(|h| h.is(k))) {
                return Err(JobError::Invalid(format!(
                    "the run held no delete of {} {} in target {}",
                    unknown.entity_type, unknown.source_id, unknown.target_id
                )));
            }
            if let Some(decided) = only
                .iter()
                .find_map(|k| held.iter().find(|h| h.is(k) && h.decision.is_some()))
            {
                return Err(JobError::Conflict(format!(
                    "the delete of {} {} was {} already",
                    decided.entity_type,
                    decided.source_id,
                    decided.decision.as_deref().unwrap_or_default()
                )));
            }
        }
        let pending: Vec<_> = held
            .into_iter()
            .filter(|h| h.decision.is_none())
            .filter(|h| only.is_none_or(|only| only.iter().any(|k| h.is(k))))
            .collect();
        if pending.is_empty() {
            return Err(JobError::Conflict("this run holds no pending deletes".into()));
        }
        let decision = if approve { "approved" } else { "rejected" };
        let count = self
            .inner
            .store
            .jobs
            .decide_held_deletes(job_id, decision, only)
            .await?;
        if count == 0 {
            // Another admin (or replica) decided them between the read and the update.
            return Err(JobError::Conflict("these deletes were decided meanwhile".into()));
        }
        tracing::info!(job = %job_id, by = %by, decision, count = pending.len(), "held deletes decided");
        if !approve {
            self.remember_rejections(&job.source_id, &pending, by).await?;
            return Ok(json!({"decision": decision, "count": pending.len()}));
        }
        let source = self.inner.systems.get(&job.source_id).await?;
        let trace = SourceSettings::from_properties(&source.spec.properties)
            .map(|s| s.trace)
            .unwrap_or_default();
        let mut by_target: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for h in pending {
            by_target
                .entry((h.target_id, h.entity_type))
                .or_default()
                .push((h.source_id, h.target_entity_id));
        }
        let mut deleted = 0u64;
        let mut failed = 0u64;
        let mut seq = self.inner.store.jobs.last_log_seq(job_id).await?;
        let never = StopSignal::new();
        for ((target_id, kind_name), candidates) in by_target {
            let kind: EntityKind = kind_name.parse().map_err(JobError::Invalid)?;
            let target = self.inner.systems.get(&target_id).await?;
            let ctx = self.target_context(target, trace).map_err(JobError::Invalid)?;
            let scope = LinkScope {
                source: job.source_id.clone(),
                target: target_id.clone(),
                kind,
            };
            // Only what is still linked as it was: a later run may have seen the entity again.
            let links = self.inner.store.links.all(&scope).await?;
            let still: Vec<(String, String)> = candidates
                .into_iter()
                .filter(|(s, t)| {
                    links
                        .get(s.as_str())
                        .and_then(|l| l.target_entity.as_ref())
                        .is_some_and(|id| id.is(t))
                })
                .collect();
            let (changes, mut log, counts, _) = run::execute_deletes(&ctx, kind, &still, false, &never).await;
            self.inner.store.links.apply(&scope, changes, None).await?;
            for entry in &mut log {
                entry.reason = Some(match entry.reason.take() {
                    Some(r) => format!("approved by {by}; {r}"),
                    None => format!("approved by {by}"),
                });
            }
            let logged = log.len() as i64;
            self.inner.store.jobs.append_log(job_id, None, seq + 1, log).await?;
            seq += logged;
            deleted += counts.deleted;
            failed += counts.failed;
            // Reflect the deletes in the run's statistics.
            let mut summary = self.job(job_id).await?.summary;
            if let Some(rows) = summary["statistics"].as_array_mut() {
                for row in rows {
                    if row["targetId"] == json!(target_id) && row["entityType"] == json!(kind_name) {
                        let add = |row: &mut Value, key: &str, n: u64| {
                            row[key] = json!(row[key].as_u64().unwrap_or(0) + n);
                        };
                        add(row, "deleted", counts.deleted);
                        add(row, "failed", counts.failed);
                    }
                }
            }
            let current = self.job(job_id).await?;
            self.inner
                .store
                .jobs
                .update(&current.claim(), current.status, &current.read_mode, &summary)
                .await?;
        }
        Ok(json!({"decision": decision, "deleted": deleted, "failed": failed}))
    }

    /// Remembers rejected deletes with the link each had, so that the next runs leave the entity alone until
    /// its link changes or the source has it again.
    async fn remember_rejections(&self, source: &str, rejected: &[HeldDelete], by: &str) -> Result<(), JobError> {
        let mut by_scope: BTreeMap<(String, String), Vec<&HeldDelete>> = BTreeMap::new();
        for h in rejected {
            by_scope
                .entry((h.target_id.clone(), h.entity_type.clone()))
                .or_default()
                .push(h);
        }
        let at = crate::store::now();
        let mut remembered = Vec::new();
        for ((target, kind_name), held) in by_scope {
            let kind: EntityKind = kind_name.parse().map_err(JobError::Invalid)?;
            let scope = LinkScope {
                source: source.to_string(),
                target: target.clone(),
                kind,
            };
            let links = self.inner.store.links.all(&scope).await?;
            for h in held {
                // Only what is still linked as it was held: anything else is proposed afresh anyway.
                let Some(link) = links
                    .get(h.source_id.as_str())
                    .filter(|l| l.target_entity.as_ref().is_some_and(|id| id.is(&h.target_entity_id)))
                else {
                    continue;
                };
                remembered.push(RejectedDelete {
                    source_system: source.to_string(),
                    target_id: target.clone(),
                    entity_type: kind_name.clone(),
                    source_id: h.source_id.clone(),
                    target_entity_id: h.target_entity_id.clone(),
                    digest: link.digest.map(|d| d.to_hex()),
                    rejected_by: by.to_string(),
                    rejected_at: at.clone(),
                });
            }
        }
        Ok(self.inner.store.jobs.reject_deletes(remembered).await?)
    }

    /// Forgets every link of a source (SAP's *Reset*): targets keep their entities, which afterwards look
    /// like they existed before.
    pub async fn reset(&self, source_id: &str) -> Result<usize, JobError> {
        let source = self.inner.systems.get(source_id).await?;
        if self.active().contains_key(source_id) {
            return Err(JobError::Conflict(format!(
                "a run of {} is going; stop it before resetting",
                source.spec.name
            )));
        }
        Ok(self.inner.store.links.reset(source_id).await?)
    }

    /// Single-entity provisioning (Entra's *provision on demand*); see [`one`].
    pub async fn provision_one(
        &self,
        source_id: &str,
        kind: EntityKind,
        entity_id: &str,
        simulate: bool,
    ) -> Result<Value, JobError> {
        one::provision_one(self, source_id, kind, entity_id, simulate).await
    }

    /// One entity read live from a source for the transformation playground, by id or name; see
    /// [`one::sample_entity`].
    pub async fn sample_entity(
        &self,
        source_id: &str,
        kind: EntityKind,
        key: &str,
    ) -> Result<one::SampleEntity, JobError> {
        one::sample_entity(self, source_id, kind, key).await
    }

    async fn link_changes(&self, scope: &LinkScope, changes: Vec<LinkChange>) -> Result<(), JobError> {
        Ok(self.inner.store.links.apply(scope, changes, None).await?)
    }
}

/// A quarantined target as a run's `skippedTargets` lists it: `"reason": "quarantined"`, with the quarantine.
pub fn quarantined_skip(target: &System) -> Value {
    json!({"targetId": target.id, "targetName": target.spec.name, "reason": "quarantined",
        "quarantine": target.health.quarantine})
}

/// Why a run that has ended cannot be stopped.
fn nothing_to_stop(job: &JobRecord) -> JobError {
    JobError::Conflict(format!(
        "the run has ended ({}); there is nothing to stop",
        job.status.as_str()
    ))
}

/// Aborts a run's task when its supervisor goes away (so that no run goes on unsupervised).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Frees a source if the loop that drives its runs ends without doing so (it panicked, or its task was
/// cancelled): the running and queued runs are finished with an error, and the next run can start.
struct SourceGuard {
    service: Provisioning,
    source_id: String,
    armed: bool,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let slot = self.service.active().remove(&self.source_id);
        let Some(slot) = slot else { return };
        tracing::error!(source = %self.source_id, job = %slot.running.job, "the loop driving a source's runs ended abnormally; the source is freed");
        slot.stop.request();
        // Recorded on a task of its own: a destructor cannot wait for the store.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(job = %slot.running.job, "no runtime left to record the abnormal end; the next start marks it interrupted");
            return;
        };
        let service = self.service.clone();
        runtime.spawn(async move {
            service
                .finish_abnormally(
                    &slot.running,
                    "The run ended abnormally (its supervisor went away); nothing was deleted after that. The source is free for the next run.",
                )
                .await;
            for (queued, _) in slot.queue {
                service
                    .finish_abnormally(
                        &queued,
                        "The run never started: the runs of its source were interrupted. Start it again.",
                    )
                    .await;
            }
        });
    }
}

/// The SDK's property for host-side conflict resolution (kept in one place).
fn provisio_sdk_property() -> &'static str {
    "provisio.conflict.resolution"
}

/// A system's transformation document of one direction: the stored one (a proxy stores
/// `{"read", "write"}`), else the connector's default.
pub fn transformation_document(system: &System, direction: &str, default: Option<&str>) -> Result<Value, String> {
    if let Some(doc) = &system.spec.transformation {
        if system.spec.role == Role::Proxy {
            if let Some(part) = doc.get(direction) {
                return Ok(part.clone());
            }
        } else {
            return Ok(doc.clone());
        }
    }
    let text = default.ok_or_else(|| {
        format!(
            "{} has no {direction} transformation and its connector has no default",
            system.spec.name
        )
    })?;
    serde_json::from_str(text)
        .map_err(|e| format!("the connector's default {direction} transformation is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;

    /// The service, and a source system whose connector is not loaded.
    async fn service() -> (Provisioning, String) {
        let store = provisio_store_sqlite::SqliteStore::in_memory(crate::secrets::SecretBox::from_key([1; 32]))
            .expect("in-memory store")
            .stores();
        let source = store
            .systems
            .create(crate::store::systems::SystemSpec {
                name: "source".into(),
                connector: "nothing".into(),
                connector_version: None,
                role: Role::Source,
                properties: BTreeMap::new(),
                secrets: Default::default(),
                sources: vec![],
                transformation: None,
            })
            .await
            .expect("system");
        let outbound = crate::outbound::Outbound::new(crate::outbound::OutboundLimits::default()).expect("outbound");
        let runtime = crate::runtime::Runtime::new(crate::runtime::CallLimits::default(), Arc::new(outbound), None)
            .expect("runtime");
        let service = Provisioning::new(store, Arc::new(Plugins::new(Arc::new(runtime), None)), 30);
        (service, source.id)
    }

    fn manual() -> JobOptions {
        JobOptions {
            job_type: JobType::Read,
            simulate: false,
            trigger: Trigger::Manual,
            started_by: "test".into(),
        }
    }

    async fn ended(service: &Provisioning, id: &str) -> JobRecord {
        for _ in 0..500 {
            let job = service.job(id).await.expect("job");
            if job.status.is_final() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} did not end: {:?}", service.job(id).await.expect("job"));
    }

    /// Waits until no run holds a source: a run's slot is let go just after its end is recorded, so an ended
    /// job may still hold it for a moment.
    async fn freed(service: &Provisioning) {
        let since = std::time::Instant::now();
        while !service.active().is_empty() {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(5),
                "the source stays held"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_task_panics_ends_failed_and_frees_its_source() {
        let (service, source) = service().await;
        service.inner.panic_next_run.store(true, Ordering::SeqCst);
        let first = service.start(&source, manual()).await.expect("start");
        // Queued behind the one that panics: it must still run.
        let queued = service.start(&source, manual()).await.expect("queue");
        assert_eq!(queued.status, JobStatus::Queued);
        service.inner.panic_gate.add_permits(1);
        let first = ended(&service, &first.id).await;
        assert_eq!(first.status, JobStatus::FinishedWithError, "{first:?}");
        let outcome = first.summary["outcome"].to_string();
        assert!(
            outcome.contains("ended abnormally") && outcome.contains("a bug in the run"),
            "{outcome}"
        );
        assert!(first.ended_at.is_some());
        // The queued run started and ended by itself (its source has no connector, which its outcome says).
        let queued = ended(&service, &queued.id).await;
        assert_eq!(queued.status, JobStatus::FinishedWithError, "{queued:?}");
        assert!(
            !queued.summary["outcome"].to_string().contains("abnormally"),
            "{queued:?}"
        );
        // And the source is free (its slot is let go just after the run's end is recorded): a further run
        // starts at once, not queued.
        freed(&service).await;
        let third = service.start(&source, manual()).await.expect("start again");
        assert_eq!(third.status, JobStatus::Running);
        ended(&service, &third.id).await;
        freed(&service).await;
        assert!(
            service.stop(&third.id).await.is_err(),
            "an ended run has nothing to stop"
        );
    }
}
