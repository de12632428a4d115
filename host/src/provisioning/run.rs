//! One job run: read a source page by page (the next page is fetched while the current one is written),
//! transform each entity once, fan it out to every target, then — only after a complete full read — delete
//! what disappeared, within the deletion safety rules. Users first, then groups (whose members resolve to
//! the users' target ids); deletes groups first, then users.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use provisio_transform::{Context, Outcome, Transformation};
use serde::Serialize;
use serde_json::{Value, json};

use super::retry::{RetryScope, join_error_message, with_retries};
use super::settings::SourceSettings;
use super::stop::StopSignal;
use super::sync;
use super::target::{DeleteOutcome, LinkResolver, Plan, Planned, TargetContext, Written, plan_changes};
use super::{JobOptions, JobType, Trigger};
use crate::connector::{ConnectorError, EntityKind, Page, PageRequest};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};
use crate::store::jobs::{DeltaState, EntityLogEntry, HeldDelete, JobStatus};
use crate::store::links::{Link, LinkChange, LinkScope};
use crate::store::systems::System;
use crate::store::{Store, StoreError};

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

/// The source side of a run.
pub struct SourceReader {
    /// The source system.
    pub system: System,
    /// Its connector.
    pub plugin: Arc<LoadedPlugin>,
    /// Where its calls go.
    pub call: CallTarget,
    /// Its read transformation.
    pub transformation: Transformation,
    /// Its job settings.
    pub settings: SourceSettings,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The stop request and run budget its retries answer to (a job run's; else never stopped).
    pub retry_scope: RetryScope,
}

impl SourceReader {
    async fn read(&self, request: &PageRequest) -> Result<Page, CallError> {
        with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
            self.runtime.read(&self.plugin, &self.call, request)
        })
        .await
        .0
    }

    /// Whether the source delivers a kind.
    pub fn handles(&self, kind: EntityKind) -> bool {
        self.plugin.descriptor.entity_kinds.contains(&kind)
            && self
                .transformation
                .entity(kind.as_str())
                .is_some_and(|e| !e.is_ignored())
    }

    /// Applies the read transformation: `Ok((source id, intermediate))`, `Err(None)` when skipped (the entity
    /// is out of scope), `Err(Some(reason))` when it failed.
    pub fn transform(&self, kind: EntityKind, native: &Value) -> Result<(String, Value), (String, Option<String>)> {
        let ctx = Context::new(&self.system.spec.properties);
        match self.transformation.apply(kind.as_str(), native, &ctx) {
            Outcome::Transformed { output, variables, .. } => {
                let id = variables
                    .get("entityIdSourceSystem")
                    .and_then(scalar)
                    .or_else(|| output.get("id").and_then(scalar));
                match id {
                    Some(id) => Ok((id, output)),
                    None => Err((
                        "the read transformation yields no entityIdSourceSystem (and the entity has no id)".into(),
                        None,
                    )),
                }
            }
            Outcome::Skipped { reason, .. } => Err((reason, Some("skipped".into()))),
            Outcome::Failed { reason, .. } => Err((reason, None)),
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One target during a run, with its links in memory.
pub struct TargetRun {
    /// The target (shared with the write tasks).
    pub ctx: Arc<TargetContext>,
    /// Bounds the writes in flight to it (`provisio.job.concurrency`), across pages.
    permits: Arc<tokio::sync::Semaphore>,
    users: HashMap<String, Link>,
    groups: HashMap<String, Link>,
}

impl TargetRun {
    /// Wraps a target context.
    pub fn new(ctx: TargetContext) -> Self {
        TargetRun {
            permits: Arc::new(tokio::sync::Semaphore::new(ctx.settings.concurrency.max(1))),
            ctx: Arc::new(ctx),
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn links(&self, kind: EntityKind) -> &HashMap<String, Link> {
        match kind {
            EntityKind::User => &self.users,
            EntityKind::Group => &self.groups,
        }
    }

    fn links_mut(&mut self, kind: EntityKind) -> &mut HashMap<String, Link> {
        match kind {
            EntityKind::User => &mut self.users,
            EntityKind::Group => &mut self.groups,
        }
    }
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
    /// The store.
    pub store: Store,
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
    seen: HashMap<EntityKind, HashSet<String>>,
    outcome: Vec<String>,
    log_seq: i64,
    read_failed: bool,
    any_failed: bool,
    held: u64,
    delta: BTreeMap<EntityKind, bool>,
    progress: Value,
    last_flush: Instant,
}

/// Rows in one log append; keeps transactions short.
const LOG_BATCH: usize = 2000;

impl JobRun {
    /// Prepares a run.
    pub fn new(
        id: String,
        store: Store,
        options: JobOptions,
        reader: SourceReader,
        targets: Vec<TargetRun>,
        stop: StopSignal,
    ) -> Self {
        JobRun {
            id,
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
            last_flush: Instant::now(),
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
            "progress": self.progress,
            "interrupted": false,
        })
    }

    fn flush(&mut self, force: bool) -> Result<(), StoreError> {
        if force || self.last_flush.elapsed() >= Duration::from_millis(500) {
            self.store
                .update_job(&self.id, self.status(), self.read_mode(), &self.summary())?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn append_log(&mut self, entries: Vec<EntityLogEntry>) -> Result<(), StoreError> {
        for chunk in entries.chunks(LOG_BATCH) {
            self.store.append_entity_log(&self.id, self.log_seq + 1, chunk)?;
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
            Err(e) => {
                self.outcome.push(format!("The run stopped: the job store failed: {e}"));
                JobStatus::FinishedWithError
            }
        };
        self.progress = json!({"phase": "done"});
        if let Err(e) = self
            .store
            .update_job(&self.id, status, self.read_mode(), &self.summary())
        {
            tracing::error!(job = %self.id, error = %e, "cannot record the end of a job");
        }
        status
    }

    async fn run_inner(&mut self) -> Result<JobStatus, StoreError> {
        let mut delta_state = self.store.delta_state(&self.reader.system.id)?;
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
                    *t.links_mut(kind) = self.store.links(&scope)?;
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
            self.store.set_delta_state(&self.reader.system.id, &delta_state)?;
        }

        Ok(if self.stopped() {
            JobStatus::ManuallyTerminated
        } else if self.any_failed || self.read_failed || self.held > 0 {
            JobStatus::FinishedWithError
        } else {
            JobStatus::Success
        })
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
        let mut result = self.reader.read(&request).await;
        if request.delta_since.is_some()
            && let Err(CallError::Connector(ConnectorError::Unsupported { message })) = &result
        {
            self.outcome.push(format!(
                "The source cannot read {}s by delta ({message}); read everything instead.",
                kind.as_str()
            ));
            request.delta_since = None;
            self.delta.insert(kind, false);
            result = self.reader.read(&request).await;
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
                        self.flush(false)?;
                        return Ok(false);
                    }
                    let outcome = format!(
                        "Reading {}s from the source failed after {pages} pages: {e}",
                        kind.as_str()
                    );
                    return self.fail_read(kind, outcome, e);
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
                    let reader = self.reader.clone();
                    Some(ReadAhead(tokio::spawn(async move { reader.read(&next).await })))
                }
                _ => None,
            };
            let (source, items, log) = self.transform_page(kind, &page.entities);
            // Progress: an entity this run has not read yet (or one whose id is unknown: skipped, failed).
            let fresh = source.read > items.len() as u64
                || items.iter().any(|(id, _)| {
                    !self.seen.get(&kind).is_some_and(|s| s.contains(id))
                        && !in_flight.as_ref().is_some_and(|p| p.ids.contains(id))
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
                .is_some_and(|p| kind == EntityKind::Group || items.iter().any(|(id, _)| p.ids.contains(id)));
            if overlaps && let Some(previous) = in_flight.take() {
                self.finish_page(previous).await?;
            }
            let planned = self.plan_page(kind, source, items, log)?;
            if let Some(previous) = in_flight.replace(planned) {
                self.finish_page(previous).await?;
            }
            self.flush(false)?;
            if let Some(outcome) = failure {
                drop(next_read);
                if let Some(last) = in_flight.take() {
                    self.finish_page(last).await?;
                }
                let reason = outcome.clone();
                return self.fail_read(kind, outcome, reason);
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
                    self.flush(false)?;
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
    fn fail_read(&mut self, kind: EntityKind, outcome: String, reason: String) -> Result<bool, StoreError> {
        self.read_failed = true;
        self.any_failed = true;
        self.outcome.push(outcome);
        self.append_log(vec![EntityLogEntry {
            entity_type: kind.as_str().into(),
            operation: "read".into(),
            outcome: "failed".into(),
            reason: Some(reason),
            ..Default::default()
        }])?;
        self.flush(true)?;
        Ok(false)
    }

    fn merge(
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
        self.append_log(source_log)?;
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
            self.append_log(r.log)?;
        }
        Ok(())
    }

    /// Applies the source's read transformation to a page.
    fn transform_page(
        &self,
        kind: EntityKind,
        entities: &[Value],
    ) -> (SourcePageResult, Vec<(String, Value)>, Vec<EntityLogEntry>) {
        let mut source = SourcePageResult::default();
        let mut log = Vec::new();
        let mut items = Vec::with_capacity(entities.len());
        for native in entities {
            source.read += 1;
            match self.reader.transform(kind, native) {
                Ok((id, intermediate)) => {
                    source.ids.push(id.clone());
                    items.push((id, intermediate));
                }
                Err((reason, skipped)) => {
                    let id = native.get("id").and_then(scalar);
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

    /// Plans a transformed page for every target and starts its writes.
    fn plan_page(
        &mut self,
        kind: EntityKind,
        source: SourcePageResult,
        items: Vec<(String, Value)>,
        log: Vec<EntityLogEntry>,
    ) -> Result<PageInFlight, StoreError> {
        let items = Arc::new(items);
        let mut targets = Vec::new();
        for t in self.targets.iter().filter(|t| t.ctx.handles(kind)) {
            targets.push(plan_target(
                &self.store,
                &self.options,
                &self.stop,
                &self.reader.system.id,
                t,
                kind,
                &items,
            )?);
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
            results.push(finish_target(&self.store, self.options.simulate, t, planned).await?);
        }
        self.merge(page.kind, page.source, results, page.log)
    }

    /// Deletes, within the safety rules, the linked entities of a kind that the source no longer has.
    async fn delete_kind(&mut self, kind: EntityKind) -> Result<(), StoreError> {
        let seen = self.seen.remove(&kind).unwrap_or_default();
        self.progress = json!({"phase": format!("deleting {}s", kind.as_str())});
        for index in 0..self.targets.len() {
            if !self.targets[index].ctx.handles(kind) {
                continue;
            }
            let (candidates, protected) = {
                let t = &self.targets[index];
                let mut candidates = Vec::new();
                let mut protected = Vec::new();
                for (source_id, link) in t.links(kind) {
                    let Some(target_id) = &link.target_entity else { continue };
                    if seen.contains(source_id) {
                        continue;
                    }
                    if link.existed_before && !t.ctx.settings.delete_existed_before {
                        protected.push((source_id.clone(), target_id.clone()));
                    } else {
                        candidates.push((source_id.clone(), target_id.clone()));
                    }
                }
                candidates.sort();
                (candidates, protected)
            };
            let target_id = self.targets[index].ctx.system.id.clone();
            let target_name = self.targets[index].ctx.system.spec.name.clone();
            let linked = self.targets[index].links(kind).len();
            let mut log: Vec<EntityLogEntry> = protected
                .iter()
                .map(|(s, t)| EntityLogEntry {
                    target_id: Some(target_id.clone()),
                    entity_type: kind.as_str().into(),
                    source_id: Some(s.clone()),
                    target_entity_id: Some(t.clone()),
                    operation: "delete".into(),
                    outcome: "skipped".into(),
                    reason: Some(
                        "It existed in the target before Provisio matched it; set ips.delete.existedbefore.entities=true to allow deleting such entities."
                            .into(),
                    ),
                    ..Default::default()
                })
                .collect();
            self.count(&target_id, kind).skipped += protected.len() as u64;
            if candidates.is_empty() {
                self.append_log(log)?;
                continue;
            }
            let (threshold, explicit) = self.targets[index].ctx.settings.threshold(kind);
            if threshold.exceeded(candidates.len(), linked, explicit) {
                let property = match kind {
                    EntityKind::User => "ips.delete.threshold.users",
                    EntityKind::Group => "ips.delete.threshold.groups",
                };
                self.outcome.push(format!(
                    "{} {}s disappeared from the source, more than the delete threshold for {target_name} allows ({property}); none was deleted. Approve or reject the deletes of this run.",
                    candidates.len(),
                    kind.as_str()
                ));
                let held: Vec<HeldDelete> = candidates
                    .iter()
                    .map(|(s, t)| HeldDelete {
                        target_id: target_id.clone(),
                        entity_type: kind.as_str().into(),
                        source_id: s.clone(),
                        target_entity_id: t.clone(),
                        decision: None,
                    })
                    .collect();
                if !self.options.simulate {
                    self.store.hold_deletes(&self.id, &held)?;
                }
                log.extend(candidates.iter().map(|(s, t)| EntityLogEntry {
                    target_id: Some(target_id.clone()),
                    entity_type: kind.as_str().into(),
                    source_id: Some(s.clone()),
                    target_entity_id: Some(t.clone()),
                    operation: "delete".into(),
                    outcome: "held".into(),
                    reason: Some("held by the delete threshold until an admin approves".into()),
                    ..Default::default()
                }));
                self.held += candidates.len() as u64;
                self.count(&target_id, kind).held += candidates.len() as u64;
                self.append_log(log)?;
                continue;
            }
            let simulate = self.options.simulate;
            let stop = self.stop.clone();
            let (changes, entries, counts, failed) = execute_deletes(
                &self.targets[index].ctx,
                kind,
                &candidates,
                simulate,
                &stop,
                &self.store,
            )
            .await;
            if failed {
                self.any_failed = true;
            }
            log.extend(entries);
            let c = self.count(&target_id, kind);
            c.deleted += counts.deleted;
            c.skipped += counts.skipped;
            c.failed += counts.failed;
            if !simulate {
                let scope = LinkScope {
                    source: self.reader.system.id.clone(),
                    target: target_id.clone(),
                    kind,
                };
                self.store.apply_links(&scope, &changes)?;
                let links = self.targets[index].links_mut(kind);
                for change in &changes {
                    sync::apply_in_memory(links, change);
                }
            }
            self.append_log(log)?;
            self.flush(false)?;
        }
        Ok(())
    }
}

/// Executes deletes; returns link changes, log lines, counts and whether any failed.
pub async fn execute_deletes(
    ctx: &TargetContext,
    kind: EntityKind,
    candidates: &[(String, String)],
    simulate: bool,
    stop: &StopSignal,
    _store: &Store,
) -> (Vec<LinkChange>, Vec<EntityLogEntry>, Counts, bool) {
    let deletes: Vec<_> = candidates
        .iter()
        .enumerate()
        .map(|(i, (source_id, target_id))| async move {
            if stop.is_requested() {
                return (i, None);
            }
            (i, Some(ctx.delete(kind, source_id, target_id, simulate).await))
        })
        .collect();
    let outcomes: Vec<(usize, Option<DeleteOutcome>)> = futures::stream::iter(deletes)
        .buffer_unordered(ctx.settings.concurrency)
        .collect()
        .await;
    let mut changes = Vec::new();
    let mut log = Vec::new();
    let mut counts = Counts::default();
    let mut failed = false;
    let target = ctx.system.id.clone();
    for (i, outcome) in outcomes {
        let Some(outcome) = outcome else { continue };
        let (source_id, target_id) = &candidates[i];
        let mut entry = EntityLogEntry {
            target_id: Some(target.clone()),
            entity_type: kind.as_str().into(),
            source_id: Some(source_id.clone()),
            target_entity_id: Some(target_id.clone()),
            operation: "delete".into(),
            outcome: if simulate { "planned" } else { "success" }.into(),
            ..Default::default()
        };
        changes.extend(sync::settle_delete(source_id, &outcome));
        match outcome {
            DeleteOutcome::Deleted(problems) | DeleteOutcome::Deactivated(problems) if !problems.is_empty() => {
                counts.deleted += 1;
                entry.reason = Some(problems.join("; "));
                failed = true;
            }
            DeleteOutcome::Deleted(_) => {
                counts.deleted += 1;
            }
            DeleteOutcome::Deactivated(_) => {
                counts.deleted += 1;
                entry.operation = "deactivate".into();
                entry.reason = Some("deleteEntity mappings update the entity instead of deleting it".into());
            }
            DeleteOutcome::Skipped(reason) => {
                counts.skipped += 1;
                entry.outcome = "skipped".into();
                entry.reason = Some(reason);
            }
            DeleteOutcome::Failed(reason) => {
                counts.failed += 1;
                failed = true;
                entry.outcome = "failed".into();
                entry.reason = Some(reason);
            }
        }
        crate::metrics::job_entities(&entry.operation, &entry.outcome, 1);
        log.push(entry);
    }
    (changes, log, counts, failed)
}

/// What the source side made of one page.
#[derive(Default)]
struct SourcePageResult {
    read: u64,
    skipped: u64,
    failures: u64,
    failed: bool,
    ids: Vec<String>,
}

/// A page on its way: planned for every target, writes running.
struct PageInFlight {
    kind: EntityKind,
    /// The source ids of the page (a later page naming one of them waits for this one).
    ids: HashSet<String>,
    source: SourcePageResult,
    log: Vec<EntityLogEntry>,
    targets: Vec<TargetPage>,
}

/// One page planned for one target.
struct TargetPage {
    scope: LinkScope,
    items: Arc<Vec<(String, Value)>>,
    /// Plans with nothing to send (unchanged, skipped, failed, or everything when simulating).
    kept: Vec<(usize, Planned)>,
    /// Old contents of updated entities, for the diff.
    olds: HashMap<usize, Value>,
    /// The writes, each on a task of its own, with the source id it writes.
    writes: Vec<(String, tokio::task::JoinHandle<WriteDone>)>,
}

/// The read of the next page, on a task of its own; abandoned (aborted) when the run does not wait for it.
struct ReadAhead(tokio::task::JoinHandle<Result<Page, CallError>>);

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A finished write: the plan's index and the plan back, how it ended, failed group assignments.
type WriteDone = (usize, Planned, Option<Written>, Vec<String>);

/// Plans a page for one target, records create intents (durably, before any create is sent), and starts
/// the writes on tasks of their own; the target's permits bound how many run at once.
fn plan_target(
    store: &Store,
    options: &JobOptions,
    stop: &StopSignal,
    source_id: &str,
    t: &TargetRun,
    kind: EntityKind,
    items: &Arc<Vec<(String, Value)>>,
) -> Result<TargetPage, StoreError> {
    let rewrite = options.job_type == JobType::Resync;
    let scope = LinkScope {
        source: source_id.to_string(),
        target: t.ctx.system.id.clone(),
        kind,
    };
    let plans: Vec<Planned> = {
        let resolver = LinkResolver {
            users: &t.users,
            groups: &t.groups,
        };
        let links = t.links(kind);
        items
            .iter()
            .map(|(id, entity)| t.ctx.plan(kind, id, entity, links.get(id), &resolver, rewrite))
            .collect()
    };
    let mut olds = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        if matches!(p.plan, Plan::Update { .. })
            && let Some(old) = store.link_content(&scope, &p.source_id)?
        {
            olds.insert(i, old);
        }
    }
    let mut page = TargetPage {
        scope,
        items: items.clone(),
        kept: Vec::new(),
        olds,
        writes: Vec::new(),
    };
    if options.simulate {
        page.kept = plans.into_iter().enumerate().collect();
        return Ok(page);
    }
    let intents: Vec<LinkChange> = plans.iter().filter_map(sync::intent).collect();
    store.apply_links(&page.scope, &intents)?;
    for (i, p) in plans.into_iter().enumerate() {
        if !matches!(p.plan, Plan::Create { .. } | Plan::Update { .. }) {
            page.kept.push((i, p));
            continue;
        }
        let ctx = t.ctx.clone();
        let permits = t.permits.clone();
        let stop = stop.clone();
        let source_entity = p.source_id.clone();
        page.writes.push((
            source_entity,
            tokio::spawn(async move {
                // Waiting for a permit races the stop: a write not sent yet is not sent after a stop.
                let permit = tokio::select! {
                    permit = permits.acquire_owned() => permit.ok(),
                    _ = stop.requested() => None,
                };
                // The semaphore is never closed; without a permit the write is not sent (as after a stop).
                let Some(_permit) = permit else {
                    return (i, p, None, vec![]);
                };
                if stop.is_requested() {
                    return (i, p, None, vec![]);
                }
                let written = ctx.execute(kind, &p.plan).await;
                let mut problems = vec![];
                if kind == EntityKind::User
                    && let (
                        Some(Written::Created { target_id, .. } | Written::Updated { target_id, .. }),
                        Plan::Create { variables, .. } | Plan::Update { variables, .. },
                    ) = (&written, &p.plan)
                {
                    problems = ctx.assignments(target_id, variables, "assignGroup").await;
                }
                (i, p, written, problems)
            }),
        ));
    }
    Ok(page)
}

/// Waits for a target page's writes and records their outcomes: links (in memory and in the store),
/// counts and log lines.
async fn finish_target(
    store: &Store,
    simulate: bool,
    t: &mut TargetRun,
    page: TargetPage,
) -> Result<(String, PageResult), StoreError> {
    let kind = page.scope.kind;
    let trace = t.ctx.trace;
    let mut done: Vec<WriteDone> = Vec::with_capacity(page.writes.len() + page.kept.len());
    let mut result = PageResult::default();
    for (source_entity, write) in page.writes {
        match write.await {
            Ok(d) => done.push(d),
            Err(e) => {
                // A write task that died: its outcome is unknown, so the create intent stays and the next run
                // looks the entity up before creating it. It counts as a failed entity.
                let reason = format!(
                    "the write ended abnormally ({}); its outcome is unknown, so the next run looks the entity up before creating it",
                    join_error_message(e)
                );
                tracing::error!(source_entity = %source_entity, reason = %reason, "a write task ended abnormally");
                result.counts.failed += 1;
                result.failed = true;
                crate::metrics::job_entities("write", "failed", 1);
                result.log.push(EntityLogEntry {
                    target_id: Some(t.ctx.system.id.clone()),
                    entity_type: kind.as_str().into(),
                    source_id: Some(source_entity),
                    operation: "write".into(),
                    outcome: "failed".into(),
                    reason: Some(reason),
                    ..Default::default()
                });
            }
        }
    }
    done.extend(page.kept.into_iter().map(|(i, p)| (i, p, None, vec![])));
    done.sort_by_key(|d| d.0);
    let items = &page.items;
    let olds = &page.olds;
    let mut changes = Vec::new();
    let target_system = t.ctx.system.id.clone();
    for (i, p, written, problems) in done {
        let mut entry = EntityLogEntry {
            target_id: Some(target_system.clone()),
            entity_type: kind.as_str().into(),
            source_id: Some(p.source_id.clone()),
            ..Default::default()
        };
        let changes_of = |plan: &Plan| plan_changes(plan, olds.get(&i), trace);
        match &p.plan {
            Plan::Unchanged => {
                result.counts.unchanged += 1;
                continue;
            }
            Plan::Skip(reason) => {
                result.counts.skipped += 1;
                entry.operation = "write".into();
                entry.outcome = "skipped".into();
                entry.reason = Some(reason.clone());
            }
            Plan::Fail(reason) => {
                result.counts.failed += 1;
                result.failed = true;
                entry.operation = "transform".into();
                entry.outcome = "failed".into();
                entry.reason = Some(reason.clone());
            }
            Plan::Create { .. } | Plan::Update { .. } if simulate => {
                let (op, target_id) = match &p.plan {
                    Plan::Update { target_id, .. } => {
                        result.counts.updated += 1;
                        ("update", target_id.clone())
                    }
                    _ => {
                        result.counts.created += 1;
                        ("create", format!("(new {})", p.source_id))
                    }
                };
                entry.operation = op.into();
                entry.outcome = "planned".into();
                entry.target_entity_id = Some(target_id.clone());
                entry.changes = changes_of(&p.plan);
                // Later groups resolve their members to the planned users.
                let link = t.links_mut(kind).entry(p.source_id.clone()).or_default();
                link.target_entity = Some(target_id);
            }
            Plan::Create { .. } | Plan::Update { .. } => {
                let settled = {
                    let resolver = LinkResolver {
                        users: &t.users,
                        groups: &t.groups,
                    };
                    let (source_id, intermediate) = &items[i];
                    let ctx = &t.ctx;
                    sync::settle(&p, t.links(kind).get(&p.source_id), written, |target_id| {
                        ctx.update_form(kind, source_id, intermediate, target_id, &resolver)
                    })
                };
                if let Some(change) = settled.link {
                    sync::apply_in_memory(t.links_mut(kind), &change);
                    changes.push(change);
                }
                let operation = match p.plan {
                    Plan::Create { .. } => "create",
                    _ => "update",
                };
                match settled.outcome {
                    sync::Outcome::NotSent => continue,
                    sync::Outcome::Created { target_id, recovered } => {
                        result.counts.created += 1;
                        entry.operation = "create".into();
                        if recovered {
                            entry.reason =
                                Some("found the entity an interrupted earlier run had created; linked it".into());
                        }
                        entry.target_entity_id = Some(target_id);
                    }
                    sync::Outcome::Matched { target_id } => {
                        result.counts.updated += 1;
                        entry.operation = "match".into();
                        entry.reason = Some(
                            "an entity with the same unique attributes existed in the target; it was updated and linked"
                                .into(),
                        );
                        entry.target_entity_id = Some(target_id);
                    }
                    sync::Outcome::Updated { target_id } => {
                        result.counts.updated += 1;
                        entry.operation = "update".into();
                        entry.target_entity_id = Some(target_id);
                    }
                    sync::Outcome::Failed { reason, .. } => {
                        result.counts.failed += 1;
                        result.failed = true;
                        entry.operation = operation.into();
                        entry.outcome = "failed".into();
                        entry.reason = Some(reason);
                        if trace.failed {
                            entry.changes = changes_of(&p.plan);
                        }
                    }
                    sync::Outcome::Unchanged | sync::Outcome::Skipped(_) | sync::Outcome::Invalid(_) => continue,
                }
                if entry.target_entity_id.is_some() {
                    entry.outcome = "success".into();
                    entry.changes = changes_of(&p.plan);
                }
                if let Some(note) = settled.left_out {
                    entry.reason = Some(match entry.reason.take() {
                        Some(r) => format!("{r}; {note}"),
                        None => note,
                    });
                }
                if !problems.is_empty() {
                    result.failed = true;
                    let note = problems.join("; ");
                    entry.reason = Some(match entry.reason.take() {
                        Some(r) => format!("{r}; group assignment failed: {note}"),
                        None => format!("group assignment failed: {note}"),
                    });
                }
            }
        }
        crate::metrics::job_entities(&entry.operation, &entry.outcome, 1);
        result.log.push(entry);
    }
    if !simulate {
        store.apply_links(&page.scope, &changes)?;
    }
    Ok((target_system, result))
}
