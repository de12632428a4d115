//! One job run: read a source page by page (the next page is fetched while the current one is written),
//! transform each entity once, fan it out to every target, then — only after a complete full read — delete
//! what disappeared, within the deletion safety rules. Users first, then groups (whose members resolve to
//! the users' target ids); deletes groups first, then users.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use provisio_transform::{Context, Outcome, Transformation};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use super::memo::{self, Memo};
use super::retry::{RetryScope, join_error_message, with_retries};
use super::settings::SourceSettings;
use super::stop::StopSignal;
use super::sync;
use super::target::{DeleteOutcome, LinkResolver, Plan, Planned, TargetContext, Written, plan_changes};
use super::{JobOptions, JobType, Trigger};
use crate::connector::{ConnectorError, EntityKind, PageRequest};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};
use crate::store::jobs::{Claim, DeltaState, EntityLogEntry, HeldDelete, JobStatus};
use crate::store::links::{LinkChange, LinkDigest, LinkScope, Links};
use crate::store::systems::System;
use crate::store::{StoreError, Stores};

mod delete;
mod source;
mod write;

pub use delete::execute_deletes;

use crate::PARALLEL_CHUNK;
pub use source::SourceReader;
use source::{Memos, SourceEntity, SourcePage, scalar};
pub use write::TargetRun;
use write::{TargetPage, finish_target, plan_target};

/// Counts per target and entity type, as the job log shows them.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Source entities read.
    pub read: u64,
    /// Created in the target.
    pub created: u64,
    /// Updated (changed content, Resync, or matched existing entities).
    pub updated: u64,
    /// Deleted (or deactivated by `deleteEntity` mappings).
    pub deleted: u64,
    /// Skipped by a condition, `skipOperations`, or deletion safety.
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Read and unchanged since the last write: nothing sent.
    pub unchanged: u64,
    /// Deletes held back by a threshold.
    pub held: u64,
}

/// What one target made of one page.
#[derive(Default)]
struct PageResult {
    counts: Counts,
    log: Vec<EntityLogEntry>,
    failed: bool,
}

/// A job run in progress.
pub struct JobRun {
    /// The run's id.
    pub id: String,
    /// This replica's claim on it, which fences every write.
    pub claim: Claim,
    /// The store.
    pub store: Stores,
    /// What was asked for.
    pub options: JobOptions,
    /// The source (shared with the task that reads the next page).
    pub reader: Arc<SourceReader>,
    /// The targets.
    pub targets: Vec<TargetRun>,
    /// Set by Stop; checked at entity boundaries, and cuts every wait short.
    pub stop: StopSignal,
    /// When the run started (`provisio.job.maxDurationSeconds`).
    started: Instant,
    counts: BTreeMap<(String, EntityKind), Counts>,
    source_counts: BTreeMap<EntityKind, Counts>,
    seen: HashMap<EntityKind, HashSet<Arc<str>>>,
    outcome: Vec<String>,
    log_seq: i64,
    read_failed: bool,
    any_failed: bool,
    held: u64,
    delta: BTreeMap<EntityKind, bool>,
    progress: Value,
    previous_attempts: Vec<Value>,
    last_flush: Instant,
    skipped_targets: Vec<Value>,
    quarantines: Option<crate::quarantine::Quarantines>,
    quarantined: Vec<Value>,
}

/// Rows in one log append; keeps transactions short.
const LOG_BATCH: usize = 2000;

impl JobRun {
    /// Prepares a run.
    pub fn new(
        claim: Claim,
        store: Stores,
        options: JobOptions,
        reader: SourceReader,
        targets: Vec<TargetRun>,
        stop: StopSignal,
    ) -> Self {
        JobRun {
            id: claim.job.clone(),
            claim,
            store,
            options,
            reader: Arc::new(reader),
            targets,
            stop,
            started: Instant::now(),
            counts: BTreeMap::new(),
            source_counts: BTreeMap::new(),
            seen: HashMap::new(),
            outcome: Vec::new(),
            log_seq: 0,
            read_failed: false,
            any_failed: false,
            held: 0,
            delta: BTreeMap::new(),
            progress: json!({}),
            previous_attempts: Vec::new(),
            last_flush: Instant::now(),
            skipped_targets: Vec::new(),
            quarantines: None,
            quarantined: Vec::new(),
        }
    }

    /// At its end the run applies the quarantine rules to each target it wrote to (not when simulating).
    pub fn assess_targets(&mut self, quarantines: crate::quarantine::Quarantines) {
        self.quarantines = Some(quarantines);
    }

    /// Targets of the source this run leaves out (`{"targetId", "targetName", "reason"}`): shown in the
    /// summary (`skippedTargets`) and, in words, in the outcome.
    pub fn skip_targets(&mut self, skipped: Vec<Value>) {
        self.outcome.extend(skipped.iter().map(skip_line));
        self.skipped_targets = skipped;
    }

    /// Quarantines the targets whose writes in this run call for it (see [`crate::quarantine`]), saying so
    /// in the outcome and in `quarantinedTargets`.
    async fn assess(&mut self) {
        let Some(quarantines) = self.quarantines.clone() else {
            return;
        };
        if self.options.simulate {
            return;
        }
        for t in &self.targets {
            let Some((reason, message)) = quarantines.assess(&t.ctx.system, &t.tally).await else {
                continue;
            };
            let name = &t.ctx.system.spec.name;
            self.outcome.push(format!(
                "Target {name} was quarantined ({}): {message}. Runs skip it and its real-time events are parked until a probe finds it healthy or an admin releases it.",
                reason.as_str()
            ));
            self.quarantined
                .push(json!({"targetId": t.ctx.system.id, "targetName": name,
                "reason": reason.as_str(), "message": message}));
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_requested()
    }

    fn status(&self) -> JobStatus {
        if self.any_failed {
            JobStatus::RunningWithError
        } else {
            JobStatus::Running
        }
    }

    fn read_mode(&self) -> &'static str {
        if self.delta.values().any(|d| *d) {
            "delta"
        } else {
            "full"
        }
    }

    /// The summary stored with the run: statistics, outcome, progress.
    pub fn summary(&self) -> Value {
        let names: HashMap<&str, &str> = self
            .targets
            .iter()
            .map(|t| (t.ctx.system.id.as_str(), t.ctx.system.spec.name.as_str()))
            .collect();
        let statistics: Vec<Value> = self
            .counts
            .iter()
            .map(|((target, kind), c)| {
                let mut row = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
                if let Some(o) = row.as_object_mut() {
                    o.insert("targetId".into(), json!(target));
                    o.insert(
                        "targetName".into(),
                        json!(names.get(target.as_str()).copied().unwrap_or("")),
                    );
                    o.insert("entityType".into(), json!(kind.as_str()));
                }
                row
            })
            .collect();
        let source: BTreeMap<&str, &Counts> = self.source_counts.iter().map(|(k, c)| (k.as_str(), c)).collect();
        json!({
            "sourceName": self.reader.system.spec.name,
            "simulate": self.options.simulate,
            "statistics": statistics,
            "source": source,
            "outcome": self.outcome,
            "heldDeletes": self.held,
            "readFailed": self.read_failed,
            "progress": self.progress,
            "interrupted": false,
            "previousAttempts": self.previous_attempts,
            "plugins": self.plugins(),
            "skippedTargets": self.skipped_targets,
            "quarantinedTargets": self.quarantined,
        })
    }

    /// The connector version (and its component's sha256) each system of the run ran on: a run keeps the
    /// versions it started with, whatever is activated meanwhile.
    fn plugins(&self) -> Value {
        let source = (&self.reader.system, &self.reader.plugin, "source");
        let targets = self.targets.iter().map(|t| (&t.ctx.system, &t.ctx.plugin, "target"));
        std::iter::once(source)
            .chain(targets)
            .map(|(system, plugin, role)| {
                json!({"systemId": system.id, "systemName": system.spec.name, "role": role,
                    "plugin": plugin.label(), "digest": plugin.digest})
            })
            .collect()
    }

    async fn flush(&mut self, force: bool) -> Result<(), StoreError> {
        if force || self.last_flush.elapsed() >= Duration::from_millis(500) {
            self.store
                .jobs
                .update(&self.claim, self.status(), self.read_mode(), &self.summary())
                .await?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    async fn append_log(&mut self, entries: Vec<EntityLogEntry>) -> Result<(), StoreError> {
        for chunk in entries.chunks(LOG_BATCH) {
            self.store
                .jobs
                .append_log(&self.id, Some(&self.claim), self.log_seq + 1, chunk.to_vec())
                .await?;
            self.log_seq += chunk.len() as i64;
        }
        Ok(())
    }

    fn count(&mut self, target: &str, kind: EntityKind) -> &mut Counts {
        self.counts.entry((target.to_string(), kind)).or_default()
    }

    /// Runs to the end; returns the final status. Storage failures end the run with an error.
    pub async fn run(mut self) -> JobStatus {
        let status = match self.run_inner().await {
            Ok(status) => status,
            Err(StoreError::Fenced(why)) => {
                // Another replica holds the run now: it records the outcome, not this one.
                tracing::warn!(job = %self.id, why = %why, "the run was taken over by another replica; this one stops");
                return JobStatus::FinishedWithError;
            }
            Err(e) => {
                self.outcome.push(format!("The run stopped: the job store failed: {e}"));
                JobStatus::FinishedWithError
            }
        };
        self.assess().await;
        self.progress = json!({"phase": "done"});
        if let Err(e) = self
            .store
            .jobs
            .update(&self.claim, status, self.read_mode(), &self.summary())
            .await
        {
            tracing::error!(job = %self.id, error = %e, "cannot record the end of a job");
        }
        status
    }

    async fn run_inner(&mut self) -> Result<JobStatus, StoreError> {
        // A run taken over goes on with the log its first holder wrote, and keeps that holder's figures.
        self.log_seq = self.store.jobs.last_log_seq(&self.id).await?;
        if self.claim.attempt > 1 {
            self.continue_attempt().await?;
        }
        let mut delta_state = self.store.jobs.delta_state(&self.reader.system.id).await?;
        let (delta_wanted, delta_note) = self.delta_decision(&delta_state);
        if let Some(note) = delta_note {
            self.outcome.push(note);
        }
        let started = chrono::Utc::now() - chrono::Duration::seconds(2);
        let mut watermarks: BTreeMap<EntityKind, bool> = BTreeMap::new();
        let mut deletes_note = None;
        for kind in [EntityKind::User, EntityKind::Group] {
            if !self.reader.handles(kind) {
                continue;
            }
            for t in &mut self.targets {
                if t.ctx.handles(kind) {
                    let scope = LinkScope {
                        source: self.reader.system.id.clone(),
                        target: t.ctx.system.id.clone(),
                        kind,
                    };
                    *t.links_mut(kind) = self.store.links.all(&scope).await?;
                    if kind == EntityKind::User {
                        let key = memo::pair_key(self.reader.memo_fingerprint, t.ctx.memo_fingerprint);
                        t.memo = key.map(|key| Arc::new(Memo::new(key, t.links(kind))));
                    }
                }
            }
            let since = if delta_wanted {
                match kind {
                    EntityKind::User => delta_state.user_watermark.clone(),
                    EntityKind::Group => delta_state.group_watermark.clone(),
                }
            } else {
                None
            };
            let complete = self.read_kind(kind, since).await?;
            watermarks.insert(kind, complete);
            if self.stopped() {
                break;
            }
            // Users are deleted before groups are written, so that memberships no longer name them.
            let delta = self.delta.get(&kind).copied().unwrap_or(false);
            if delta {
                deletes_note = Some("Delta read: deletes are not detected by delta reads; nothing was deleted.");
            } else if self.read_failed {
                deletes_note = Some(
                    "Not every source entity could be read; to protect the targets, nothing was deleted after the failure.",
                );
            } else {
                self.delete_kind(kind).await?;
            }
            if self.stopped() {
                break;
            }
        }
        let stopped = self.stopped();
        let full = !self.delta.values().any(|d| *d);
        if stopped {
            self.outcome
                .push("Stopped by an admin; nothing was deleted after the stop.".into());
        } else if let Some(note) = deletes_note {
            self.outcome.push(note.into());
        }

        // Remember where delta reads continue, after reads that saw everything they asked for.
        if !self.options.simulate && !stopped {
            let stamp = crate::store::timestamp(started);
            for (kind, complete) in &watermarks {
                if *complete {
                    match kind {
                        EntityKind::User => delta_state.user_watermark = Some(stamp.clone()),
                        EntityKind::Group => delta_state.group_watermark = Some(stamp.clone()),
                    }
                }
            }
            let all_complete = watermarks.values().all(|c| *c);
            if full && all_complete {
                delta_state.scheduled_deltas = 0;
            } else if !full && self.options.trigger == Trigger::Schedule {
                delta_state.scheduled_deltas += 1;
            }
            self.store
                .jobs
                .set_delta_state(&self.reader.system.id, &delta_state, Some(&self.claim))
                .await?;
        }

        Ok(if self.stopped() {
            JobStatus::ManuallyTerminated
        } else if self.any_failed || self.read_failed || self.held > 0 {
            JobStatus::FinishedWithError
        } else {
            JobStatus::Success
        })
    }

    /// Takes over what the run's previous holder recorded: its outcome, and its figures as a previous attempt
    /// (this attempt reads everything again: what was written then counts as unchanged now).
    async fn continue_attempt(&mut self) -> Result<(), StoreError> {
        let previous = self
            .store
            .jobs
            .get(&self.id)
            .await?
            .map(|j| j.summary)
            .unwrap_or_default();
        if let Some(earlier) = previous["previousAttempts"].as_array() {
            self.previous_attempts.extend(earlier.iter().cloned());
        }
        self.previous_attempts.push(json!({
            "attempt": self.claim.attempt - 1,
            "statistics": previous["statistics"],
            "source": previous["source"],
        }));
        if let Some(outcome) = previous["outcome"].as_array() {
            self.outcome
                .extend(outcome.iter().filter_map(|o| o.as_str().map(str::to_string)));
        }
        self.outcome.push(format!(
            "Taken over by {} (attempt {}): the replica running it stopped renewing its claim. The run goes on from what was recorded; nothing written before is written twice.",
            self.claim.node, self.claim.attempt
        ));
        self.flush(true).await
    }

    /// Whether this run reads deltas, and a note for the outcome.
    fn delta_decision(&self, state: &DeltaState) -> (bool, Option<String>) {
        if !self.reader.settings.delta_read {
            return (false, None);
        }
        if self.options.job_type == JobType::Resync {
            return (
                false,
                Some("Resync reads everything, whatever ips.delta.read says.".into()),
            );
        }
        if state.user_watermark.is_none() && state.group_watermark.is_none() {
            return (false, Some("First run with delta read: a full read.".into()));
        }
        if let Some(n) = self.reader.settings.full_read_force_count
            && self.options.trigger == Trigger::Schedule
            && state.scheduled_deltas >= n
        {
            return (
                false,
                Some(format!(
                    "A full read after {n} scheduled delta reads (ips.full.read.force.count)."
                )),
            );
        }
        (true, None)
    }

    /// Reads every page of a kind and provisions it. Returns whether the read was complete.
    ///
    /// Three things overlap: the next page is read on a task of its own, the current page is transformed
    /// and planned on this task, and the previous page's writes run on tasks of their own (a window of
    /// `provisio.job.concurrency` per target that spans pages). A page's results are recorded once its
    /// writes are done.
    async fn read_kind(&mut self, kind: EntityKind, since: Option<String>) -> Result<bool, StoreError> {
        let limits = self.reader.settings.limits;
        let mut request = PageRequest {
            delta_since: since,
            ..PageRequest::first(kind, self.reader.settings.page_size)
        };
        self.delta.insert(kind, request.delta_since.is_some());
        let memos = self.memos(kind);
        let mut result = self.reader.read(&request, &memos).await;
        if request.delta_since.is_some()
            && let Err(CallError::Connector(ConnectorError::Unsupported { message })) = &result
        {
            self.outcome.push(format!(
                "The source cannot read {}s by delta ({message}); read everything instead.",
                kind.as_str()
            ));
            request.delta_since = None;
            self.delta.insert(kind, false);
            result = self.reader.read(&request, &memos).await;
        }
        let mut result = result.map_err(|e| e.to_string());
        let mut pages = 0u64;
        let mut entities = 0u64;
        let mut without_progress = 0u64;
        let mut seen_cursors = HashSet::new();
        let mut in_flight: Option<PageInFlight> = None;
        loop {
            let page = match result {
                Ok(page) => page,
                Err(e) => {
                    if let Some(previous) = in_flight.take() {
                        self.finish_page(previous).await?;
                    }
                    if self.stopped() {
                        // A call given up on because of the stop is not a failure of the source.
                        self.flush(false).await?;
                        return Ok(false);
                    }
                    let outcome = format!(
                        "Reading {}s from the source failed after {pages} pages: {e}",
                        kind.as_str()
                    );
                    return self.fail_read(kind, outcome, e).await;
                }
            };
            pages += 1;
            entities += page.entities.len() as u64;
            if let Some(total) = page.total {
                self.progress = json!({"phase": format!("{}s", kind.as_str()), "total": total,
                    "read": self.source_counts.get(&kind).map(|c| c.read).unwrap_or(0)});
            }
            // A read that does not end the way the contract says fails: this page is still provisioned, no
            // further page is read, and (as for any read failure) nothing is deleted.
            let mut failure = page
                .next_cursor
                .as_ref()
                .and_then(|cursor| self.runaway_read(kind, cursor, &mut seen_cursors, pages, entities));
            let next_read = match (&page.next_cursor, &failure) {
                (Some(cursor), None) => {
                    let next = PageRequest {
                        cursor: Some(cursor.clone()),
                        ..request.clone()
                    };
                    let (reader, memos) = (self.reader.clone(), memos.clone());
                    Some(ReadAhead(tokio::spawn(async move { reader.read(&next, &memos).await })))
                }
                _ => None,
            };
            let (source, items, log) = self.transform_page(kind, &page.entities, in_flight.as_ref().map(|p| &p.ids));
            // Progress: an entity this run has not read yet (or one whose id is unknown: skipped, failed).
            let fresh = source.read > items.len() as u64
                || items.iter().any(|item| {
                    !self.seen.get(&kind).is_some_and(|s| s.contains(&item.id))
                        && !in_flight.as_ref().is_some_and(|p| p.ids.contains(&item.id))
                });
            without_progress = if fresh { 0 } else { without_progress + 1 };
            if failure.is_none() && page.next_cursor.is_some() && without_progress >= limits.max_pages_without_progress
            {
                failure = Some(format!(
                    "The read of {}s makes no progress: {without_progress} pages in a row brought no entity this run had not read yet, yet each named a next page (after {pages} pages). The read failed (provisio.job.maxPagesWithoutProgress = {} on the source; raise it if the source really pages like that).",
                    kind.as_str(),
                    limits.max_pages_without_progress
                ));
            }
            drop(page);
            // Plans see the links of finished pages only: a page that names an entity still being written,
            // and every group page (members may be groups of the page before), waits for the page before.
            let overlaps = in_flight
                .as_ref()
                .is_some_and(|p| kind == EntityKind::Group || items.iter().any(|item| p.ids.contains(&item.id)));
            if overlaps && let Some(previous) = in_flight.take() {
                self.finish_page(previous).await?;
            }
            let planned = self.plan_page(kind, source, items, log).await?;
            if let Some(previous) = in_flight.replace(planned) {
                self.finish_page(previous).await?;
            }
            self.flush(false).await?;
            if let Some(outcome) = failure {
                drop(next_read);
                if let Some(last) = in_flight.take() {
                    self.finish_page(last).await?;
                }
                let reason = outcome.clone();
                return self.fail_read(kind, outcome, reason).await;
            }
            let stop = self.stop.clone();
            let next = match next_read {
                Some(mut read) if !self.stopped() => tokio::select! {
                    joined = &mut read.0 => Some(match joined {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("the page read ended abnormally ({})", join_error_message(e))),
                    }),
                    // A read has no side effects: after a stop it is abandoned, not waited for.
                    _ = stop.requested() => None,
                },
                _ => None,
            };
            match next {
                Some(r) => result = r,
                None => {
                    if let Some(last) = in_flight.take() {
                        self.finish_page(last).await?;
                    }
                    self.flush(false).await?;
                    return Ok(!self.stopped());
                }
            }
        }
    }

    /// Why a read that names a next page must not go on: a cursor it named before, or a ceiling.
    fn runaway_read(
        &self,
        kind: EntityKind,
        cursor: &str,
        seen_cursors: &mut HashSet<String>,
        pages: u64,
        entities: u64,
    ) -> Option<String> {
        let limits = &self.reader.settings.limits;
        let kind = kind.as_str();
        if !seen_cursors.insert(cursor.to_string()) {
            let shown: String = cursor.chars().take(200).collect();
            return Some(format!(
                "The source's connector returned the cursor {shown:?} twice (after {pages} pages of {kind}s): the read would go round in circles and did not end the way the connector contract says, so it failed."
            ));
        }
        if pages >= limits.max_pages {
            return Some(format!(
                "Reading {kind}s stopped after {pages} pages, the ceiling provisio.job.maxPages allows, and the source named yet another page. The read failed; raise provisio.job.maxPages on the source if it really has that many pages."
            ));
        }
        if entities > limits.max_entities {
            return Some(format!(
                "Reading {kind}s stopped after {entities} entities, more than the ceiling provisio.job.maxEntities = {} allows. The read failed; raise provisio.job.maxEntities on the source if it really has that many.",
                limits.max_entities
            ));
        }
        if self.started.elapsed() > limits.max_duration {
            return Some(format!(
                "Reading {kind}s stopped after {pages} pages: the run has taken longer than provisio.job.maxDurationSeconds = {} s allows. The read failed; raise provisio.job.maxDurationSeconds on the source if the source is really that slow.",
                limits.max_duration.as_secs()
            ));
        }
        None
    }

    /// Ends a kind's read as failed: the outcome says why, the log has a failed read line, and nothing is
    /// deleted afterwards.
    async fn fail_read(&mut self, kind: EntityKind, outcome: String, reason: String) -> Result<bool, StoreError> {
        self.read_failed = true;
        self.any_failed = true;
        self.outcome.push(outcome);
        self.append_log(vec![EntityLogEntry {
            entity_type: kind.as_str().into(),
            operation: "read".into(),
            outcome: "failed".into(),
            reason: Some(reason),
            ..Default::default()
        }])
        .await?;
        self.flush(true).await?;
        Ok(false)
    }

    async fn merge(
        &mut self,
        kind: EntityKind,
        source: SourcePageResult,
        results: Vec<(String, PageResult)>,
        source_log: Vec<EntityLogEntry>,
    ) -> Result<(), StoreError> {
        if source.failed {
            self.read_failed = true;
            self.any_failed = true;
        }
        let sc = self.source_counts.entry(kind).or_default();
        sc.read += source.read;
        sc.skipped += source.skipped;
        sc.failed += source.failures;
        let read = sc.read;
        self.seen.entry(kind).or_default().extend(source.ids);
        self.progress["phase"] = json!(format!("{}s", kind.as_str()));
        self.progress["read"] = json!(read);
        self.append_log(source_log).await?;
        for (target, r) in results {
            if r.failed {
                self.any_failed = true;
            }
            let c = self.count(&target, kind);
            c.read += source.read;
            c.created += r.counts.created;
            c.updated += r.counts.updated;
            c.skipped += r.counts.skipped;
            c.failed += r.counts.failed;
            c.unchanged += r.counts.unchanged;
            self.append_log(r.log).await?;
        }
        Ok(())
    }

    /// The memos of the targets of a kind, when every one of them memoises it (see [`memo`]); else none.
    fn memos(&self, kind: EntityKind) -> Memos {
        if kind != EntityKind::User || self.options.job_type == JobType::Resync {
            return Arc::new([]);
        }
        let handling: Vec<&TargetRun> = self.targets.iter().filter(|t| t.ctx.handles(kind)).collect();
        let memos: Vec<Arc<Memo>> = handling.iter().filter_map(|t| t.memo.clone()).collect();
        if memos.is_empty() || memos.len() != handling.len() {
            return Arc::new([]);
        }
        memos.into()
    }

    /// Applies the source's read transformation to a page, except to the entities every target's memo
    /// finds unchanged. `in_flight`: the ids of the page still being written.
    fn transform_page(
        &self,
        kind: EntityKind,
        entities: &[SourceEntity],
        in_flight: Option<&HashSet<Arc<str>>>,
    ) -> (SourcePageResult, Vec<Item>, Vec<EntityLogEntry>) {
        let mut source = SourcePageResult::default();
        let mut log = Vec::new();
        let mut items = Vec::with_capacity(entities.len());
        // The memo's answers came with the page (see `SourceReader::read`).
        let mut recalled: Vec<(Option<memo::Digest>, Option<Arc<str>>)> =
            entities.iter().map(|e| (e.digest, e.remembered.clone())).collect();
        // A remembered entity must be new to this run and to its page: a source that names an id twice is
        // planned against what the run wrote for it first, as without the memo.
        let seen = self.seen.get(&kind);
        let mut named: HashMap<&str, usize> = HashMap::new();
        for id in recalled.iter().filter_map(|(_, id)| id.as_deref()) {
            *named.entry(id).or_default() += 1;
        }
        let again: HashSet<Arc<str>> = named
            .into_iter()
            .filter(|(id, n)| {
                *n > 1 || seen.is_some_and(|s| s.contains(*id)) || in_flight.is_some_and(|p| p.contains(*id))
            })
            .map(|(id, _)| Arc::from(id))
            .collect();
        for (_, id) in &mut recalled {
            if id.as_ref().is_some_and(|id| again.contains(id)) {
                *id = None;
            }
        }
        // The transformations are pure CPU work and most of a page's time: spread over the cores (in order),
        // then tallied here.
        let mut transformed: Vec<Option<TransformResult>> = entities
            .par_iter()
            .zip(&recalled)
            .with_min_len(PARALLEL_CHUNK)
            .map(|(entity, (_, id))| id.is_none().then(|| self.transform(kind, entity)))
            .collect();
        // A remembered id that an entity transformed on this page also has: transformed too.
        let clashes: Vec<usize> = {
            let fresh: HashSet<&str> = transformed
                .iter()
                .flatten()
                .filter_map(|r| r.as_ref().ok())
                .map(|(id, _)| id.as_str())
                .collect();
            recalled
                .iter()
                .enumerate()
                .filter(|(_, (_, id))| id.as_deref().is_some_and(|id| fresh.contains(id)))
                .map(|(i, _)| i)
                .collect()
        };
        for i in clashes {
            recalled[i].1 = None;
            transformed[i] = Some(self.transform(kind, &entities[i]));
        }
        for ((entity, (digest, remembered)), transformed) in entities.iter().zip(recalled).zip(transformed) {
            source.read += 1;
            let item = match remembered {
                Some(id) => Ok(Item {
                    id,
                    intermediate: Value::Null,
                    native: digest,
                    remembered: true,
                }),
                None => transformed
                    .unwrap_or_else(|| self.transform(kind, entity))
                    .map(|(id, intermediate)| Item {
                        id: id.into(),
                        intermediate,
                        native: digest,
                        remembered: false,
                    }),
            };
            match item {
                Ok(item) => {
                    source.ids.push(item.id.clone());
                    items.push(item);
                }
                Err((reason, skipped)) => {
                    let id = entity
                        .native()
                        .ok()
                        .and_then(|native| native.get("id").and_then(scalar));
                    if skipped.is_some() {
                        source.skipped += 1;
                    } else {
                        source.failures += 1;
                        source.failed = true;
                    }
                    log.push(EntityLogEntry {
                        entity_type: kind.as_str().into(),
                        source_id: id,
                        operation: "read".into(),
                        outcome: if skipped.is_some() { "skipped" } else { "failed" }.into(),
                        reason: Some(reason),
                        ..Default::default()
                    });
                }
            }
        }
        (source, items, log)
    }

    /// The read transformation of one entity of a page (see [`SourceReader::transform`]).
    fn transform(&self, kind: EntityKind, entity: &SourceEntity) -> TransformResult {
        let native = entity.native().map_err(|reason| (reason, None))?;
        self.reader.transform(kind, &native)
    }

    /// Plans a transformed page for every target and starts its writes.
    async fn plan_page(
        &mut self,
        kind: EntityKind,
        source: SourcePageResult,
        items: Vec<Item>,
        log: Vec<EntityLogEntry>,
    ) -> Result<PageInFlight, StoreError> {
        let items = Arc::new(items);
        let mut targets = Vec::new();
        for t in self.targets.iter().filter(|t| t.ctx.handles(kind)) {
            targets.push(
                plan_target(
                    (&self.store, &self.claim),
                    &self.options,
                    &self.stop,
                    &self.reader.system.id,
                    t,
                    kind,
                    &items,
                )
                .await?,
            );
        }
        Ok(PageInFlight {
            kind,
            ids: source.ids.iter().cloned().collect(),
            source,
            log,
            targets,
        })
    }

    /// Waits for a page's writes, records them in the links, and adds its counts and log lines to the run.
    async fn finish_page(&mut self, page: PageInFlight) -> Result<(), StoreError> {
        let mut results = Vec::with_capacity(page.targets.len());
        for planned in page.targets {
            let Some(t) = self
                .targets
                .iter_mut()
                .find(|t| t.ctx.system.id == planned.scope.target)
            else {
                continue;
            };
            results.push(finish_target((&self.store, &self.claim), self.options.simulate, t, planned).await?);
        }
        self.merge(page.kind, page.source, results, page.log).await
    }
}

/// A skipped target (`{"targetId", "targetName", "reason", "quarantine"?}`) in the words of a run's outcome.
pub fn skip_line(t: &Value) -> String {
    let name = t["targetName"].as_str().unwrap_or_default();
    match t["reason"].as_str().unwrap_or_default() {
        "disabled" => format!("Target {name} is disabled; this run skipped it."),
        "quarantined" => format!(
            "Target {name} is quarantined since {} ({}: {}); this run skipped it. A probe re-tests it (next at {}); an admin can release it (POST /api/v1/systems/{}/release).",
            t["quarantine"]["since"].as_str().unwrap_or("?"),
            t["quarantine"]["reason"].as_str().unwrap_or("?"),
            t["quarantine"]["message"].as_str().unwrap_or(""),
            t["quarantine"]["nextProbeAt"].as_str().unwrap_or("?"),
            t["targetId"].as_str().unwrap_or_default(),
        ),
        other => format!("Target {name} was skipped: {other}."),
    }
}

/// What the source side made of one page.
#[derive(Default)]
struct SourcePageResult {
    read: u64,
    skipped: u64,
    failures: u64,
    failed: bool,
    ids: Vec<Arc<str>>,
}

/// A page's entity after the read transformation.
pub(super) struct Item {
    /// The source entity's id (shared with the run's ids read and, when remembered, its links).
    pub(super) id: Arc<str>,
    /// The read transformation's output (`Null` when the memo found the entity unchanged: nothing ran).
    pub(super) intermediate: Value,
    /// The native entity's digest, when the targets memoise this kind.
    pub(super) native: Option<memo::Digest>,
    /// Found unchanged in every target by the memo, without transforming it.
    pub(super) remembered: bool,
}

/// What the read transformation made of a native entity (see [`SourceReader::transform`]).
type TransformResult = Result<(String, Value), (String, Option<String>)>;

/// A page on its way: planned for every target, writes running.
struct PageInFlight {
    kind: EntityKind,
    /// The source ids of the page (a later page naming one of them waits for this one).
    ids: HashSet<Arc<str>>,
    source: SourcePageResult,
    log: Vec<EntityLogEntry>,
    targets: Vec<TargetPage>,
}

/// The read of the next page, on a task of its own; abandoned (aborted) when the run does not wait for it.
struct ReadAhead(tokio::task::JoinHandle<Result<SourcePage, CallError>>);

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}
