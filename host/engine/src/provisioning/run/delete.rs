//! Deletes after a complete full read: what disappeared from the source, within the deletion safety rules
//! (held above a threshold, never what existed before unless configured).

use super::*;

impl JobRun {
    /// Deletes, within the safety rules, the linked entities of a kind that the source no longer has.
    pub(super) async fn delete_kind(&mut self, kind: EntityKind) -> Result<(), StoreError> {
        let seen = self.seen.remove(&kind).unwrap_or_default();
        self.progress = json!({"phase": format!("deleting {}s", kind.as_str())});
        for index in 0..self.targets.len() {
            if !self.targets[index].ctx.handles(kind) {
                continue;
            }
            let (mut candidates, protected) = {
                let t = &self.targets[index];
                let mut candidates = Vec::new();
                let mut protected = Vec::new();
                for (source_id, link) in t.links(kind) {
                    let Some(target_id) = &link.target_entity else { continue };
                    if seen.contains(source_id) {
                        continue;
                    }
                    if link.existed_before && !t.ctx.settings.delete_existed_before {
                        protected.push((source_id.to_string(), target_id.to_string()));
                    } else {
                        candidates.push((source_id.to_string(), target_id.to_string()));
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
            // Deletes an admin rejected stay rejected while the link is as it was and the source still lacks the
            // entity; otherwise the rejection lapses and the entity is treated as any other.
            let rejected = self
                .store
                .jobs
                .rejected_deletes(&self.reader.system.id, &target_id, kind.as_str())
                .await?;
            if !rejected.is_empty() {
                let links = self.targets[index].links(kind);
                let mut lapsed = Vec::new();
                let mut kept = HashMap::new();
                for r in rejected {
                    let unchanged = links.get(r.source_id.as_str()).is_some_and(|l| {
                        l.target_entity.as_ref().is_some_and(|id| id.is(&r.target_entity_id))
                            && r.digest.as_deref().map(LinkDigest::from_hex) == l.digest.map(Some)
                    });
                    if unchanged && !seen.contains(r.source_id.as_str()) {
                        kept.insert(r.source_id.clone(), r);
                    } else {
                        lapsed.push(r.target_entity_id);
                    }
                }
                if !self.options.simulate && !lapsed.is_empty() {
                    self.store
                        .jobs
                        .lapse_rejected_deletes(&target_id, kind.as_str(), lapsed)
                        .await?;
                }
                let before = candidates.len();
                candidates.retain(|(s, t)| {
                    let Some(r) = kept.get(s) else { return true };
                    log.push(EntityLogEntry {
                        target_id: Some(target_id.clone()),
                        entity_type: kind.as_str().into(),
                        source_id: Some(s.clone()),
                        target_entity_id: Some(t.clone()),
                        operation: "delete".into(),
                        outcome: "skipped".into(),
                        reason: Some(format!(
                            "{} rejected this delete at {}; it is kept until the source has the entity again or its link changes",
                            r.rejected_by, r.rejected_at
                        )),
                        ..Default::default()
                    });
                    false
                });
                self.count(&target_id, kind).skipped += (before - candidates.len()) as u64;
            }
            if candidates.is_empty() {
                self.append_log(log).await?;
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
                    self.store.jobs.hold_deletes(&self.claim, held).await?;
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
                self.append_log(log).await?;
                continue;
            }
            let simulate = self.options.simulate;
            let stop = self.stop.clone();
            let (changes, entries, counts, failed) =
                execute_deletes(&self.targets[index].ctx, kind, &candidates, simulate, &stop).await;
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
                self.store
                    .links
                    .apply(&scope, changes.clone(), Some(&self.claim))
                    .await?;
                let links = self.targets[index].links_mut(kind);
                for change in &changes {
                    sync::apply_in_memory(links, change);
                }
            }
            self.append_log(log).await?;
            self.flush(false).await?;
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
