//! The target side of a run: each page planned per target, create intents stored, writes on tasks of
//! their own, and their outcomes settled ([`crate::provisioning::sync`]) into links, counts and log lines.

use super::*;

/// One target during a run, with its links in memory.
pub struct TargetRun {
    /// The target (shared with the write tasks).
    pub ctx: Arc<TargetContext>,
    /// Bounds the writes in flight to it (`provisio.job.concurrency`), across pages.
    permits: Arc<tokio::sync::Semaphore>,
    users: Links,
    groups: Links,
    /// Its users' transformation memo for this run (`None`: not memoised).
    pub(super) memo: Option<Arc<Memo>>,
    /// How its writes went in this run (the quarantine rules look at it).
    pub tally: crate::quarantine::WriteTally,
}

impl TargetRun {
    /// Wraps a target context.
    pub fn new(ctx: TargetContext) -> Self {
        TargetRun {
            permits: Arc::new(tokio::sync::Semaphore::new(ctx.settings.concurrency.max(1))),
            ctx: Arc::new(ctx),
            users: Links::new(),
            groups: Links::new(),
            memo: None,
            tally: Default::default(),
        }
    }

    pub(super) fn links(&self, kind: EntityKind) -> &Links {
        match kind {
            EntityKind::User => &self.users,
            EntityKind::Group => &self.groups,
        }
    }

    /// The memo digest of a page's entity for this target, when it memoises.
    fn memo_digest(&self, item: &Item) -> Option<LinkDigest> {
        let (memo, native) = (self.memo.as_ref()?, item.native.as_ref()?);
        Some(memo.digest(native))
    }

    /// What a run that found an entity unchanged by transforming it tells its link: the memo digest, when
    /// the link does not carry it yet.
    fn remember(&self, kind: EntityKind, item: &Item) -> Option<LinkChange> {
        if item.remembered {
            return None;
        }
        let digest = self.memo_digest(item)?;
        let known = self.links(kind).get(&item.id)?.source_digest;
        (known != Some(digest)).then(|| LinkChange::Remembered {
            source_entity: item.id.to_string(),
            source_digest: digest,
        })
    }

    pub(super) fn links_mut(&mut self, kind: EntityKind) -> &mut Links {
        match kind {
            EntityKind::User => &mut self.users,
            EntityKind::Group => &mut self.groups,
        }
    }
}

/// One page planned for one target.
pub(super) struct TargetPage {
    pub(super) scope: LinkScope,
    items: Arc<Vec<Item>>,
    /// Plans with nothing to send (unchanged, skipped, failed, or everything when simulating).
    kept: Vec<(usize, Planned)>,
    /// Old contents of updated entities, for the diff.
    olds: HashMap<usize, Value>,
    /// The writes, each on a task of its own, with the source id it writes.
    writes: Vec<(String, tokio::task::JoinHandle<WriteDone>)>,
}

/// A finished write: the plan's index and the plan back, how it ended, failed group assignments.
type WriteDone = (usize, Planned, Option<Written>, Vec<String>);

/// Plans a page for one target, records create intents (durably, before any create is sent), and starts
/// the writes on tasks of their own; the target's permits bound how many run at once.
pub(super) async fn plan_target(
    (store, claim): (&Stores, &Claim),
    options: &JobOptions,
    stop: &StopSignal,
    source_id: &str,
    t: &TargetRun,
    kind: EntityKind,
    items: &Arc<Vec<Item>>,
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
        // Pure CPU work (the write transformation and a digest per entity): spread over the cores, in order.
        items
            .par_iter()
            .with_min_len(crate::PARALLEL_CHUNK)
            .map(|item| {
                if item.remembered {
                    Planned {
                        source_id: item.id.to_string(),
                        plan: Plan::Unchanged,
                        digest: None,
                    }
                } else {
                    t.ctx.plan(
                        kind,
                        &item.id,
                        &item.intermediate,
                        links.get(&item.id),
                        &resolver,
                        rewrite,
                    )
                }
            })
            .collect()
    };
    // The old side of each update's diff, read in one go.
    let updates: Vec<String> = plans
        .iter()
        .filter(|p| matches!(p.plan, Plan::Update { .. }))
        .map(|p| p.source_id.clone())
        .collect();
    let mut contents = if updates.is_empty() {
        HashMap::new()
    } else {
        store.links.contents(&scope, updates).await?
    };
    let olds: HashMap<usize, Value> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.plan, Plan::Update { .. }))
        .filter_map(|(i, p)| contents.remove(&p.source_id).map(|old| (i, old)))
        .collect();
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
    store.links.apply(&page.scope, intents, Some(claim)).await?;
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
                // Boxed: a page's writes all wait here as tasks, and the connector call's state (kilobytes)
                // would otherwise be part of every waiting task, not only of the few that hold a permit.
                let written = Box::pin(ctx.execute(kind, &p.plan)).await;
                let mut problems = vec![];
                if kind == EntityKind::User
                    && let (
                        Some(Written::Created { target_id, .. } | Written::Updated { target_id, .. }),
                        Plan::Create { variables, .. } | Plan::Update { variables, .. },
                    ) = (&written, &p.plan)
                {
                    problems = Box::pin(ctx.assignments(target_id, variables, "assignGroup")).await;
                }
                (i, p, written, problems)
            }),
        ));
    }
    Ok(page)
}

/// Waits for a target page's writes and records their outcomes: links (in memory and in the store),
/// counts and log lines.
pub(super) async fn finish_target(
    (store, claim): (&Stores, &Claim),
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
                t.tally
                    .note_failure(crate::provisioning::target::FailureCause::Target, &reason);
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
                if let Some(change) = t.remember(kind, &items[i]) {
                    sync::apply_in_memory(t.links_mut(kind), &change);
                    changes.push(change);
                }
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
                let link = sync::link_mut(t.links_mut(kind), &p.source_id);
                link.target_entity = Some(target_id.into());
            }
            Plan::Create { .. } | Plan::Update { .. } => {
                if let Some(w) = &written {
                    t.tally.note(w);
                }
                let settled = {
                    let resolver = LinkResolver {
                        users: &t.users,
                        groups: &t.groups,
                    };
                    let item = &items[i];
                    let ctx = &t.ctx;
                    let prior = t.links(kind).get(p.source_id.as_str());
                    sync::settle(&p, prior, written, t.memo_digest(item), |target_id| {
                        ctx.update_form(kind, &item.id, &item.intermediate, target_id, &resolver)
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
        store.links.apply(&page.scope, changes, Some(claim)).await?;
    }
    Ok((target_system, result))
}
