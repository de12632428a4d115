//! Real-time provisioning: a source pushes each change (SCIM create, replace, patch, delete) to
//! `/ipsproxy/api/v1/systems/{source}/entities/{user,group}`; Provisio acknowledges once the event is in the
//! outbox on disk, then provisions it to every target of the source — in order per entity, in parallel
//! across entities — with the job engine's pieces: the read and write transformations, the link store,
//! matching and deletes. A target that is down gets retries with backoff; after the retry budget the event
//! is parked, visible in the real-time log and re-drivable.
//!
//! On a store several replicas share, every replica consumes the one outbox: an event is worked only by the
//! replica that claimed it (a lease it renews while working, by the database's clock), and an entity's next
//! event is not claimed while an earlier one is pending, so per-entity order holds across replicas. A dead
//! replica's claims expire after [`LEASE`] and its events are claimed again.

pub mod events;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use provisio_transform::EntityIdResolver;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::connector::EntityKind;
use crate::provisioning::Provisioning;
use crate::provisioning::retry::backoff;
use crate::provisioning::run::SourceReader;
use crate::provisioning::sync::{self, Outcome};
use crate::provisioning::target::{DeleteOutcome, TargetContext};
use crate::store::generation::ByGeneration;
use crate::store::jobs::{HEARTBEAT, LEASE};
use crate::store::links::{LinkChange, LinkScope};
use crate::store::realtime::{EventRecord, Finished, NewEvent, PushedEntity};
use crate::store::systems::System;
use crate::store::{StoreError, Stores};

/// Events worked on at once.
const MAX_IN_FLIGHT: usize = 32;

/// How long the dispatcher gathers wakes before it claims again.
const GATHER: Duration = Duration::from_millis(1);

/// Ended attempts recorded in one transaction at most.
const MAX_COMMIT: usize = 256;

/// Where something to record goes to be committed with whatever came meanwhile, and how it went.
type GroupCommit<T, A> = tokio::sync::mpsc::UnboundedSender<(T, tokio::sync::oneshot::Sender<Result<A, StoreError>>)>;

/// The group commits of the events being worked.
#[derive(Clone)]
struct Commits {
    /// An ended attempt with its writes; recorded (true), or fenced out (false).
    outcomes: GroupCommit<Finished, bool>,
    /// A create intent, stored before its create is sent.
    intents: GroupCommit<(LinkScope, LinkChange), ()>,
}

impl Commits {
    /// Starts the committers; they end when the last sender is dropped.
    fn start(store: &Stores) -> Commits {
        let (outcomes, to_finish) = tokio::sync::mpsc::unbounded_channel();
        let events = store.clone();
        tokio::spawn(group_commit(to_finish, move |batch: Vec<Finished>| {
            let store = events.clone();
            async move {
                let seqs: Vec<i64> = batch.iter().map(|f| f.seq).collect();
                let fenced = store.events.finish_batch(batch).await?;
                Ok(seqs.iter().map(|seq| !fenced.contains(seq)).collect())
            }
        }));
        let (intents, to_store) = tokio::sync::mpsc::unbounded_channel();
        let links = store.clone();
        tokio::spawn(group_commit(to_store, move |batch: Vec<(LinkScope, LinkChange)>| {
            let store = links.clone();
            async move {
                let n = batch.len();
                store.links.apply_across(batch).await?;
                Ok(vec![(); n])
            }
        }));
        Commits { outcomes, intents }
    }
}

/// Sends `item` to its group commit and waits for its answer.
async fn committed<T, A>(to: &GroupCommit<T, A>, item: T) -> Result<A, StoreError> {
    let stopped = || StoreError::Backend("the real-time committer has stopped".into());
    let (reply, answer) = tokio::sync::oneshot::channel();
    to.send((item, reply)).map_err(|_| stopped())?;
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

/// Attempts before an event whose targets keep failing transiently is parked.
pub const MAX_ATTEMPTS: i64 = 20;

/// Attempts an event from a system that Provisio is creating entities in waits for those creates' outcome
/// (it may be the echo of one of them).
const ECHO_WAITS: i64 = 3;

/// How long after Provisio wrote an entity into a system a push of that entity from the same system is taken
/// as the echo of that write.
const ECHO_WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// The real-time service; cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

struct Inner {
    store: Stores,
    provisioning: Provisioning,
    wake: Notify,
    /// Entities with an event being worked here, and that event.
    in_flight: Mutex<HashMap<(String, String, String), i64>>,
    retry_base: Duration,
    prepared: ByGeneration<Prepared>,
    systems: ByGeneration<System>,
}

/// Why an event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The outbox cannot take events (the store failed, its writer stopped).
    #[error("{0}")]
    Unavailable(String),
}

impl Realtime {
    /// Wires the service.
    pub fn new(store: Stores, provisioning: Provisioning) -> Self {
        Realtime {
            inner: Arc::new(Inner {
                store,
                provisioning,
                wake: Notify::new(),
                in_flight: Mutex::new(HashMap::new()),
                retry_base: Duration::from_secs(1),
                prepared: ByGeneration::default(),
                systems: ByGeneration::default(),
            }),
        }
    }

    /// Stores an event durably; returns once it is committed, and wakes the dispatcher.
    pub async fn accept(&self, event: NewEvent) -> Result<EventRecord, RealtimeError> {
        let record = self
            .inner
            .store
            .events
            .append(event)
            .await
            .map_err(|e| RealtimeError::Unavailable(format!("the real-time outbox cannot take the event: {e}")))?;
        self.inner.wake.notify_one();
        Ok(record)
    }

    /// The system a push names, cached per systems generation (every push asks; unknown ids are not
    /// cached, so they cannot grow the cache).
    pub async fn source_system(&self, id: &str) -> Result<Option<Arc<System>>, StoreError> {
        let generation = self.inner.store.systems.generation();
        if let Some(system) = self.inner.systems.get(id, generation) {
            return Ok(Some(system));
        }
        let Some(system) = self.inner.store.systems.get(id).await? else {
            return Ok(None);
        };
        let system = Arc::new(system);
        self.inner.systems.insert(id, generation, system.clone());
        Ok(Some(system))
    }

    /// The store.
    pub fn store(&self) -> &Stores {
        &self.inner.store
    }

    /// Puts a parked or failed event back in the queue.
    pub async fn redrive(&self, seq: i64) -> Result<bool, StoreError> {
        let ok = self.inner.store.events.redrive(seq).await?;
        if ok {
            self.inner.wake.notify_one();
        }
        Ok(ok)
    }

    /// Works off the outbox until the process ends: resumes what a crash left pending (ended events past
    /// the retention are dropped by [`crate::retention::Pruner`]).
    pub async fn run_dispatcher(self) {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let commits = Commits::start(&self.inner.store);
        let mut last_renewal = std::time::Instant::now();
        loop {
            if last_renewal.elapsed() >= HEARTBEAT {
                self.renew_claims().await;
                last_renewal = std::time::Instant::now();
            }
            self.dispatch_ready(&done_tx, &commits).await;
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = done_rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            // Under load, wakes come by the thousand: one claim serves all that came meanwhile. Short, because
            // a slot freed stays idle until then (5 ms held each of the 32 slots idle a third of the time).
            tokio::time::sleep(GATHER).await;
            while done_rx.try_recv().is_ok() {}
        }
    }

    /// Shuts the real-time side down (SIGTERM; call after [`Provisioning::drain`] has begun, which stops the
    /// dispatcher claiming): the events being worked here get up to `grace` to finish, then the claims on
    /// any still held here are handed back so that another replica works them at once. Answers how many.
    pub async fn drain(&self, grace: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.in_flight().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match self
            .inner
            .store
            .events
            .release_claims(self.inner.provisioning.node())
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand real-time events back; they are claimed again when their lease ends");
                0
            }
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), i64>> {
        self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replica whose claims fence the outcomes it records, on a shared store; `None` on a store this
    /// process owns (no other replica can take an event over).
    fn fence(&self) -> Option<&str> {
        self.inner.store.is_shared().then(|| self.inner.provisioning.node())
    }

    /// Renews the claims on the events being worked here.
    async fn renew_claims(&self) {
        let node = self.inner.provisioning.node();
        let seqs: Vec<i64> = self.in_flight().values().copied().collect();
        if seqs.is_empty() {
            return;
        }
        if let Err(e) = self.inner.store.events.renew_claims(node, &seqs, LEASE).await {
            tracing::warn!(error = %e, "cannot renew the claims on real-time events");
        }
    }

    /// Starts every pending event that may run now: the first pending event of each entity that has none in
    /// flight, whose retry time has come.
    async fn dispatch_ready(&self, done: &tokio::sync::mpsc::UnboundedSender<()>, commits: &Commits) {
        if self.inner.provisioning.is_draining() {
            // Shutting down: nothing new is claimed here (see `drain`).
            return;
        }
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight().len());
        if room == 0 {
            return;
        }
        let ready = self.claim_ready(self.inner.provisioning.node(), room).await;
        for (key, event) in ready {
            let this = self.clone();
            let (done, commits) = (done.clone(), commits.clone());
            tokio::spawn(async move {
                this.work(event, &commits).await;
                this.in_flight().remove(&key);
                let _ = done.send(());
            });
        }
    }

    /// The next events this replica may work, claimed by it with their bodies in one statement that skips
    /// what other replicas hold or are claiming (each fills its own slots). The store keeps per-entity order;
    /// what is in flight here is left alone all the same. On a store of its own the claim costs one
    /// transaction per scan and spares a read per event (the body, and whether it is still pending).
    async fn claim_ready(&self, node: &str, room: usize) -> Vec<((String, String, String), EventRecord)> {
        let claimed = match self.inner.store.events.claim_next(node, room as i64, LEASE).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim real-time events");
                return Vec::new();
            }
        };
        let mut in_flight = self.in_flight();
        claimed
            .into_iter()
            .filter_map(|event| {
                let key = (
                    event.source_id.clone(),
                    event.entity_type.clone(),
                    event.entity_id.clone(),
                );
                // Only when this replica's claim on the entity's event ran out while it was still working on
                // it (the lease not renewed in time): that attempt ends first; this claim then expires and
                // the event is claimed again.
                if in_flight.contains_key(&key) {
                    return None;
                }
                in_flight.insert(key.clone(), event.seq);
                Some((key, event))
            })
            .collect()
    }

    /// One attempt at one event: every target, then the outcome recorded with the writes it made, in a
    /// group commit with the other events that ended meanwhile; returns once it is committed (the entity's
    /// next event may start only then).
    /// The event comes claimed with its body: pending, and this replica's until its lease runs out.
    async fn work(&self, event: EventRecord, commits: &Commits) {
        let (state, results, writes) = self.provision(&event, commits).await;
        let attempts = event.attempts + 1;
        let retried = state == Attempt::Retry;
        let (state, next) = match state {
            Attempt::Retry if attempts >= MAX_ATTEMPTS => ("parked", None),
            Attempt::Retry => {
                tracing::info!(seq = event.seq, attempts, results = %results, "a real-time event will be retried");
                let wait = backoff(self.inner.retry_base, attempts as u32).min(Duration::from_secs(30));
                let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                ("pending", Some(crate::store::timestamp(at)))
            }
            Attempt::Failed => ("failed", None),
            // Re-driven when the target is released (see `crate::quarantine`).
            Attempt::Parked => ("parked", None),
            Attempt::Done => ("done", None),
        };
        let linked_targets: Vec<String> = writes.links.iter().map(|(scope, _)| scope.target.clone()).collect();
        let finished = Finished {
            seq: event.seq,
            fence: self.fence().map(str::to_owned),
            state: state.to_owned(),
            results: results.clone(),
            next_attempt_at: next,
            // A retried PATCH applies again to the entity as it was before it.
            pushed: if retried { None } else { writes.pushed },
            links: writes.links,
        };
        match committed(&commits.outcomes, finished).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    seq = event.seq,
                    "a real-time event's claim passed to another replica; its outcome here is not recorded"
                );
                return;
            }
            Err(e) => {
                // Written to the targets, but the links (or the pushed entity) cannot be stored: the attempt is
                // recorded without them as one to retry, saying why; the retry finds what it created by the
                // create intent's lookup.
                tracing::warn!(seq = event.seq, error = %e, "cannot record a real-time event's writes; it will be retried");
                let mut results = results;
                if let Value::Array(items) = &mut results {
                    for item in items.iter_mut() {
                        let target = item.get("targetId").and_then(Value::as_str).unwrap_or_default();
                        if linked_targets.iter().any(|t| t == target) {
                            item["state"] = json!("Failed");
                            item["reason"] =
                                json!(format!("written to the target, but its link could not be stored: {e}"));
                        }
                    }
                    if linked_targets.is_empty() {
                        items.push(json!({"state": "Failed", "reason": format!("the event's outcome could not be stored: {e}")}));
                    }
                }
                let (state, next) = if attempts >= MAX_ATTEMPTS {
                    ("parked", None)
                } else {
                    let wait = backoff(self.inner.retry_base, attempts as u32).min(Duration::from_secs(30));
                    let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    ("pending", Some(crate::store::timestamp(at)))
                };
                if let Err(e) = self
                    .inner
                    .store
                    .events
                    .finish(event.seq, self.fence(), state, &results, next.as_deref())
                    .await
                {
                    tracing::error!(seq = event.seq, error = %e, "cannot record a real-time event's outcome");
                }
                return;
            }
        }
        crate::metrics::job_entities(&format!("realtime-{}", event.operation), state, 1);
        tracing::debug!(seq = event.seq, state, "real-time event worked");
    }

    async fn provision(&self, event: &EventRecord, commits: &Commits) -> (Attempt, Value, Writes) {
        let fail = |reason: String| {
            (
                Attempt::Failed,
                json!([{"state": "Failed", "reason": reason}]),
                Writes::default(),
            )
        };
        let kind: EntityKind = match event.entity_type.parse() {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        let store = &self.inner.store;
        let prepared = match self.prepared(&event.source_id).await {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let (reader, targets) = (&prepared.reader, &prepared.targets);
        // The loop guard: this system received the entity from Provisio a moment ago.
        let since = crate::store::timestamp(chrono::Utc::now() - ECHO_WINDOW);
        if self.echo(&prepared.same_tenant, event, kind, &since).await {
            return (
                Attempt::Done,
                json!([{"state": "Skipped", "reason": "an echo of a change Provisio wrote into this system; not provisioned again"}]),
                Writes::default(),
            );
        }
        // A system may push a create back before Provisio has recorded it: while creates into it are in flight,
        // an unknown entity waits for their outcome (a few attempts, then it is provisioned as any other).
        if event.attempts < ECHO_WAITS
            && event.operation != "delete"
            && self.creating_into(&prepared.same_tenant, kind, &since).await
        {
            return (
                Attempt::Retry,
                json!([{"state": "Waiting", "reason": "Provisio is creating entities in this system; this push may be the echo of one, so it waits for their outcome"}]),
                Writes::default(),
            );
        }
        // The full entity after this event.
        let native = match event.operation.as_str() {
            "delete" => None,
            "patch" => {
                let base = match store
                    .events
                    .pushed_entity(&event.source_id, kind.as_str(), &event.entity_id)
                    .await
                {
                    Ok(Some(b)) => Some(b),
                    _ => reader
                        .runtime
                        .get(&reader.plugin, &reader.call, kind, &event.entity_id)
                        .await
                        .ok(),
                };
                let Some(mut base) = base else {
                    return fail(format!(
                        "PATCH of {} {} that Provisio has not received before and cannot read from the source",
                        kind.as_str(),
                        event.entity_id
                    ));
                };
                let patch = event.body.clone().unwrap_or(Value::Null);
                if let Err(e) = apply_patch(kind, &mut base, &patch) {
                    return fail(format!("the PATCH cannot be applied: {e}"));
                }
                Some(base)
            }
            _ => event.body.clone(),
        };
        // Remembered with the event's outcome (the base of the entity's next PATCH).
        let mut writes = Writes {
            pushed: Some(PushedEntity {
                source_id: event.source_id.clone(),
                kind: kind.as_str().to_owned(),
                entity_id: event.entity_id.clone(),
                body: native.clone(),
            }),
            links: Vec::new(),
        };
        let intermediate = match &native {
            None => None,
            Some(native) => match reader.transform(kind, native) {
                Ok((_, intermediate)) => Some(intermediate),
                Err((reason, Some(_))) => {
                    // Out of scope by a condition: nothing to write (SAP: Skipped).
                    return (Attempt::Done, json!([{"state": "Skipped", "reason": reason}]), writes);
                }
                Err((reason, None)) => {
                    let (attempt, results, _) = fail(reason);
                    return (attempt, results, writes);
                }
            },
        };
        // A replay of an event parked for a quarantine (re-driven: its attempts start again from 0): the
        // targets it reached then keep that outcome (writing them again could put back an older state than a
        // later event wrote), and its pushed entity was kept then.
        let before: Vec<Value> = event
            .results
            .as_ref()
            .filter(|_| event.attempts == 0)
            .and_then(Value::as_array)
            .filter(|items| items.iter().any(|r| r["quarantined"] == json!(true)))
            .cloned()
            .unwrap_or_default();
        if !before.is_empty() {
            writes.pushed = None;
        }
        let reached = |target: &str| {
            before
                .iter()
                .find(|r| r["targetId"] == json!(target) && r["quarantined"] != json!(true))
                .filter(|r| {
                    matches!(
                        r["state"].as_str(),
                        Some("Created" | "Updated" | "Deleted" | "Already Provisioned" | "Skipped" | "Not Provisioned")
                    )
                })
                .cloned()
        };
        let futures = targets.iter().map(|t| {
            let intermediate = intermediate.as_ref();
            let earlier = reached(&t.system.id);
            async move {
                if let Some(earlier) = earlier {
                    return (earlier, Attempt::Done, None);
                }
                if let Some(q) = &t.system.health.quarantine {
                    return (parked(t, q), Attempt::Parked, None);
                }
                provision_target(
                    store,
                    commits,
                    &event.source_id,
                    &event.entity_id,
                    kind,
                    intermediate,
                    t,
                )
                .await
            }
        });
        let outcomes = futures::future::join_all(futures).await;
        let mut attempt = Attempt::Done;
        let mut results = Vec::new();
        for (outcome, retry, link) in outcomes {
            attempt = attempt.worst(retry);
            results.push(outcome);
            writes.links.extend(link);
        }
        (attempt, Value::Array(results), writes)
    }
}

impl Realtime {
    /// Whether Provisio wrote this entity into the pushing system a moment ago. The pushing system may be
    /// registered twice — as this source and as a target of another source — so every system with the same
    /// `URL` counts as the same tenant.
    /// Whether Provisio has creates into one of these systems in flight.
    async fn creating_into(&self, same_tenant: &[String], kind: EntityKind, since: &str) -> bool {
        for id in same_tenant {
            if matches!(
                self.inner.store.links.creating_since(id, kind.as_str(), since).await,
                Ok(true)
            ) {
                return true;
            }
        }
        false
    }

    async fn echo(&self, same_tenant: &[String], event: &EventRecord, kind: EntityKind, since: &str) -> bool {
        for id in same_tenant {
            let links = &self.inner.store.links;
            if matches!(
                links.written_since(id, kind.as_str(), &event.entity_id, since).await,
                Ok(true)
            ) {
                return true;
            }
        }
        false
    }

    /// A source's systems as events need them, cached until a system or the plugin one of them uses
    /// changes: decrypting credentials and parsing transformations would otherwise dominate each event.
    async fn prepared(&self, source_id: &str) -> Result<Arc<Prepared>, String> {
        let store = &self.inner.store;
        let provisioning = &self.inner.provisioning;
        let generation = store.systems.generation();
        let systems = provisioning.systems();
        if let Some(p) = self.inner.prepared.get(source_id, generation)
            && systems.runs_on(&p.reader.system, &p.reader.plugin)
            && p.targets.iter().all(|t| systems.runs_on(&t.system, &t.plugin))
        {
            return Ok(p);
        }
        let (reader, contexts) = provisioning.prepare(source_id).await?;
        let targets = contexts
            .into_iter()
            .map(|mut ctx| {
                // Retries happen per event, with the event's backoff: one attempt per call here, so that a
                // target that is down does not hold the entity's queue inside a call.
                ctx.settings.retry.attempts = 0;
                Arc::new(ctx)
            })
            .collect();
        // The loop guard's tenant: every system with the source's URL (registered twice, as this source and
        // as a target of another source).
        let url = |s: &System| {
            s.spec
                .properties
                .get("URL")
                .map(|u| u.trim().trim_end_matches('/').to_ascii_lowercase())
        };
        let tenant = url(&reader.system);
        let same_tenant = store
            .systems
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.id == reader.system.id || (tenant.is_some() && url(s) == tenant))
            .map(|s| s.id)
            .collect();
        let prepared = Arc::new(Prepared {
            reader,
            targets,
            same_tenant,
        });
        self.inner.prepared.insert(source_id, generation, prepared.clone());
        Ok(prepared)
    }
}

/// What an attempt wrote besides its outcome, recorded with it.
#[derive(Default)]
struct Writes {
    pushed: Option<PushedEntity>,
    links: Vec<(LinkScope, LinkChange)>,
}

/// Commits what comes, whatever came meanwhile in one call of `commit` (one transaction), and answers each.
/// One item may fail where the others would not (its system deleted meanwhile): a batch that fails is
/// committed again item by item, so that each gets its own answer.
async fn group_commit<T, A, F, Fut>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(T, tokio::sync::oneshot::Sender<Result<A, StoreError>>)>,
    commit: F,
) where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_COMMIT).await > 0 {
        let (items, replies): (Vec<T>, Vec<_>) = batch.drain(..).unzip();
        match commit(items.clone()).await {
            Ok(answers) => {
                for (answer, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(_) if items.len() > 1 => {
                for (item, reply) in items.into_iter().zip(replies) {
                    let answer = commit(vec![item]).await.and_then(|mut answers| {
                        answers
                            .pop()
                            .ok_or_else(|| StoreError::Backend("the commit gave no answer".into()))
                    });
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A source with its targets, ready for events.
struct Prepared {
    reader: SourceReader,
    targets: Vec<Arc<TargetContext>>,
    /// Systems with the source's URL: the loop guard's tenant.
    same_tenant: Vec<String>,
}

/// How an attempt went.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attempt {
    Done,
    Failed,
    /// A target is quarantined: the event waits, parked, for its release.
    Parked,
    Retry,
}

impl Attempt {
    fn worst(self, other: Attempt) -> Attempt {
        match (self, other) {
            (Attempt::Retry, _) | (_, Attempt::Retry) => Attempt::Retry,
            (Attempt::Parked, _) | (_, Attempt::Parked) => Attempt::Parked,
            (Attempt::Failed, _) | (_, Attempt::Failed) => Attempt::Failed,
            _ => Attempt::Done,
        }
    }
}

/// The result of an event for a quarantined target: parked, marked `quarantined` so that its release
/// re-drives it.
fn parked(ctx: &TargetContext, q: &crate::store::systems::Quarantine) -> Value {
    json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "state": "Parked", "quarantined": true,
        "reason": format!("the target is quarantined since {} ({}: {}); the event resumes when it is released",
            q.since, q.reason, q.message)})
}

/// `resolveEntityIds` for one event from links read ahead of the transformation, which is synchronous and
/// cannot wait for the store: a pass answers what is known and notes what was asked; [`Prefetched::fetch`]
/// reads those links; passes repeat until nothing new is asked (a real-time event touches few ids).
struct Prefetched<'a> {
    store: &'a Stores,
    source: &'a str,
    target: &'a str,
    known: Mutex<std::collections::HashMap<(EntityKind, String), Option<String>>>,
    asked: Mutex<Vec<(EntityKind, String)>>,
}

/// Passes at most: each fetches at least one new id, and a transformation asks for few.
const MAX_PREFETCH_PASSES: usize = 8;

impl<'a> Prefetched<'a> {
    fn new(store: &'a Stores, source: &'a str, target: &'a str) -> Self {
        Prefetched {
            store,
            source,
            target,
            known: Mutex::default(),
            asked: Mutex::default(),
        }
    }

    /// Reads the links asked for since the last fetch; whether there were any.
    async fn fetch(&self) -> Result<bool, StoreError> {
        let asked = std::mem::take(&mut *self.asked.lock().unwrap_or_else(|e| e.into_inner()));
        if asked.is_empty() {
            return Ok(false);
        }
        for (kind, source_id) in asked {
            let scope = LinkScope {
                source: self.source.to_string(),
                target: self.target.to_string(),
                kind,
            };
            let target_id = self
                .store
                .links
                .get(&scope, &source_id)
                .await?
                .and_then(|l| l.target_entity)
                .map(|t| t.to_string());
            self.known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((kind, source_id), target_id);
        }
        Ok(true)
    }
}

impl EntityIdResolver for Prefetched<'_> {
    fn resolve(&self, entity_type: &str, source_id: &str, _: Option<&str>, _: Option<&str>) -> Option<String> {
        let kind: EntityKind = entity_type.parse().ok()?;
        let key = (kind, source_id.to_string());
        if let Some(known) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return known.clone();
        }
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        None
    }
}

/// One event in one target: the state SAP's real-time log shows, whether to retry, and the link change to
/// record with the event's outcome.
async fn provision_target(
    store: &Stores,
    commits: &Commits,
    source: &str,
    entity_id: &str,
    kind: EntityKind,
    intermediate: Option<&Value>,
    ctx: &TargetContext,
) -> (Value, Attempt, Option<(LinkScope, LinkChange)>) {
    let scope = LinkScope {
        source: source.to_string(),
        target: ctx.system.id.clone(),
        kind,
    };
    // The connector version that worked the event, for the event's log.
    let mut result = json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name,
        "plugin": ctx.plugin.label(), "pluginDigest": ctx.plugin.digest});
    let mut set = |state: &str, reason: Option<String>, target_entity: Option<&str>| {
        result["state"] = json!(state);
        if let Some(r) = reason {
            result["reason"] = json!(r);
        }
        if let Some(t) = target_entity {
            result["targetEntityId"] = json!(t);
        }
    };
    if !ctx.handles(kind) {
        set("Skipped", Some(format!("the target takes no {}s", kind.as_str())), None);
        return (result, Attempt::Done, None);
    }
    let link = match store.links.get(&scope, entity_id).await {
        Ok(l) => l,
        Err(e) => {
            set("Failed", Some(e.to_string()), None);
            return (result, Attempt::Retry, None);
        }
    };
    let Some(intermediate) = intermediate else {
        // Delete.
        let Some(target_id) = link.as_ref().and_then(|l| l.target_entity.as_ref()).map(String::from) else {
            set(
                "Not Provisioned",
                Some("the entity was never provisioned to this target".into()),
                None,
            );
            return (result, Attempt::Done, None);
        };
        if link.as_ref().is_some_and(|l| l.existed_before) && !ctx.settings.delete_existed_before {
            set(
                "Skipped",
                Some("it existed in the target before Provisio matched it (ips.delete.existedbefore.entities)".into()),
                Some(&target_id),
            );
            return (result, Attempt::Done, None);
        }
        let outcome = ctx.delete(kind, entity_id, &target_id, false).await;
        // The link's change is recorded with the event's outcome.
        let change = sync::settle_delete(entity_id, &outcome).map(|c| (scope.clone(), c));
        let attempt = match outcome {
            DeleteOutcome::Deleted(_) => {
                set("Deleted", None, Some(&target_id));
                Attempt::Done
            }
            DeleteOutcome::Deactivated(_) => {
                set(
                    "Updated",
                    Some("deleteEntity mappings update it instead of deleting it".into()),
                    Some(&target_id),
                );
                Attempt::Done
            }
            DeleteOutcome::Skipped(reason) => {
                set("Skipped", Some(reason), Some(&target_id));
                Attempt::Done
            }
            DeleteOutcome::Failed(reason) => {
                set("Failed", Some(reason), Some(&target_id));
                Attempt::Retry
            }
        };
        return (result, attempt, change);
    };
    let resolver = Prefetched::new(store, source, &ctx.system.id);
    let mut passes = 0;
    let planned = loop {
        let planned = ctx.plan(kind, entity_id, intermediate, link.as_ref(), &resolver, false);
        // The update form written after a create asks too (a condition may depend on the operation).
        let _ = ctx.update_form(kind, entity_id, intermediate, "", &resolver);
        passes += 1;
        match resolver.fetch().await {
            Ok(true) if passes < MAX_PREFETCH_PASSES => {}
            Ok(_) => break planned,
            Err(e) => {
                set("Failed", Some(e.to_string()), None);
                return (result, Attempt::Retry, None);
            }
        }
    };
    // Committed with the intents of the other events being worked (their creates wait for it too).
    if let Some(intent) = sync::intent(&planned)
        && let Err(e) = committed(&commits.intents, (scope.clone(), intent)).await
    {
        set(
            "Failed",
            Some(format!("the create intent could not be stored: {e}")),
            None,
        );
        return (result, Attempt::Retry, None);
    }
    // Only creates and updates have something to execute.
    let written = ctx.execute(kind, &planned.plan).await;
    // Real-time keeps no memo digests: its links are transformed again by the next Read.
    let settled = sync::settle(&planned, link.as_ref(), written, None, |target_id| {
        ctx.update_form(kind, entity_id, intermediate, target_id, &resolver)
    });
    // Written, and linked with the event's outcome (if that commit fails, the retry finds the entity by the
    // create intent's lookup).
    let linked = settled.link.clone().map(|change| (scope.clone(), change));
    let (result, attempt) = match settled.outcome {
        Outcome::Unchanged => {
            let target_entity = link.as_ref().and_then(|l| l.target_entity.as_ref()).map(String::from);
            set("Already Provisioned", None, target_entity.as_deref());
            (result, Attempt::Done)
        }
        Outcome::Skipped(reason) => {
            set("Skipped", Some(reason), None);
            (result, Attempt::Done)
        }
        Outcome::Invalid(reason) => {
            set("Failed", Some(reason), None);
            (result, Attempt::Failed)
        }
        Outcome::Created { target_id, .. } => {
            set("Created", settled.left_out, Some(&target_id));
            (result, Attempt::Done)
        }
        Outcome::Matched { target_id } | Outcome::Updated { target_id } => {
            set("Updated", settled.left_out, Some(&target_id));
            (result, Attempt::Done)
        }
        Outcome::Failed { reason, retryable } => {
            set("Failed", Some(reason), None);
            (result, if retryable { Attempt::Retry } else { Attempt::Failed })
        }
        Outcome::NotSent => (result, Attempt::Done),
    };
    (result, attempt, linked)
}

/// Applies a pushed PatchOp document to the entity Provisio last received: the same engine as a proxy
/// PATCH (`provisio_scim`), under RFC 7643's schemas for the kind — open to the vendor attributes and
/// extensions a pushed resource carries, so that the same operations on the same resource give the same
/// result on both paths.
pub fn apply_patch(kind: EntityKind, base: &mut Value, document: &Value) -> Result<(), provisio_scim::ScimError> {
    let rules = match kind {
        EntityKind::User => provisio_scim::ResourceType::standard_user(),
        EntityKind::Group => provisio_scim::ResourceType::standard_group(),
    };
    provisio_scim::PatchOp::parse(document)?.apply_with(base, &rules)
}

#[cfg(test)]
mod patch_tests {
    use serde_json::json;

    use super::*;
    use crate::proxy::schema::{Limits, Served};

    /// A real-time PATCH and a proxy PATCH (a proxy whose transformations pass everything through) of the
    /// same operations on the same resource give the same resource.
    #[test]
    fn a_realtime_patch_and_a_proxy_patch_agree() {
        let pass = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                          "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        let served = Served::new(&[EntityKind::User, EntityKind::Group], &pass, &pass, Limits::default());
        let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"}, "active": true,
            "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.org", "type": "home"}]});
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "G",
            "members": [{"value": "u1"}, {"value": "u2"}]});
        let cases = [
            (
                EntityKind::User,
                &user,
                json!([
                {"op": "replace", "path": "name.givenName", "value": "Babs"},
                {"op": "add", "path": "emails", "value": {"value": "c@z.net", "type": "other", "primary": true}},
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.com"},
                {"op": "replace", "value": {"active": false, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}}},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m1"}]),
            ),
            (
                EntityKind::User,
                &user,
                json!([{"op": "remove", "path": "emails"}, {"op": "add", "path": "title", "value": "T"}]),
            ),
            (
                EntityKind::Group,
                &group,
                json!([
                {"op": "add", "path": "members", "value": [{"value": "u3", "display": "C"}, {"value": "u1", "display": "A"}]},
                {"op": "remove", "path": "members[value eq \"u2\"]"},
                {"op": "replace", "path": "displayName", "value": "H"}]),
            ),
            (
                EntityKind::Group,
                &group,
                json!([{"op": "remove", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}]),
            ),
        ];
        for (kind, resource, ops) in cases {
            let doc = json!({"schemas": [provisio_scim::PATCH_OP], "Operations": ops});
            let mut realtime = resource.clone();
            apply_patch(kind, &mut realtime, &doc).expect("real-time");
            let mut proxy = resource.clone();
            provisio_scim::PatchOp::parse_request(&doc)
                .and_then(|p| p.apply_with(&mut proxy, &served.resource_type(kind)))
                .expect("proxy");
            assert_eq!(realtime, proxy, "{doc}");
            assert_ne!(&realtime, resource, "{doc}");
        }
    }
}
