//! Provisioning one source entity on demand (Entra's *provision on demand*): read it, transform it, match
//! it in each target, and act — showing every step, with the attribute values, so an admin can see why an
//! entity lands the way it does. With `simulate`, nothing is written.

use serde_json::{Value, json};

use super::sync::{self, Outcome};
use super::target::{LinkResolver, Plan};
use super::{JobError, Provisioning};
use crate::connector::EntityKind;
use crate::store::links::{Link, LinkScope};

fn step(name: &str, outcome: &str, detail: impl Into<Value>) -> Value {
    json!({"step": name, "outcome": outcome, "detail": detail.into()})
}

pub(super) async fn provision_one(
    service: &Provisioning,
    source_id: &str,
    kind: EntityKind,
    entity_id: &str,
    simulate: bool,
) -> Result<Value, JobError> {
    let (reader, targets) = service.prepare(source_id).await.map_err(JobError::Invalid)?;
    let mut steps = Vec::new();
    let read = reader.runtime.get(&reader.plugin, &reader.call, kind, entity_id);
    let native = match super::retry::guarded(&reader.plugin.label(), read).await {
        Ok(n) => {
            steps.push(step(
                "read",
                "success",
                format!("read {} {entity_id} from the source", kind.as_str()),
            ));
            n
        }
        Err(e) => {
            steps.push(step("read", "failed", e.to_string()));
            return Ok(json!({"steps": steps, "targets": []}));
        }
    };
    let (source_entity, intermediate) = match reader.transform(kind, &native) {
        Ok(x) => {
            steps.push(step("transform", "success", json!({"sourceId": x.0, "entity": x.1})));
            x
        }
        Err((reason, skipped)) => {
            let outcome = if skipped.is_some() { "skipped" } else { "failed" };
            steps.push(step("transform", outcome, reason));
            return Ok(json!({"steps": steps, "targets": []}));
        }
    };
    let store = service.store().clone();
    let mut results = Vec::new();
    for ctx in &targets {
        let mut tsteps = Vec::new();
        if let Some(q) = ctx.system.health.quarantine.as_ref().filter(|_| !simulate) {
            tsteps.push(step(
                "quarantine",
                "skipped",
                format!(
                    "the target is quarantined since {} ({}: {}); release it first",
                    q.since, q.reason, q.message
                ),
            ));
            results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
            continue;
        }
        if !ctx.handles(kind) {
            tsteps.push(step(
                "scope",
                "skipped",
                format!("the target does not take {}s", kind.as_str()),
            ));
            results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
            continue;
        }
        let scope = |k: EntityKind| LinkScope {
            source: source_id.to_string(),
            target: ctx.system.id.clone(),
            kind: k,
        };
        let users = store.links.all(&scope(EntityKind::User)).await?;
        let groups = store.links.all(&scope(EntityKind::Group)).await?;
        let resolver = LinkResolver {
            users: &users,
            groups: &groups,
        };
        let link = match kind {
            EntityKind::User => users.get(source_entity.as_str()),
            EntityKind::Group => groups.get(source_entity.as_str()),
        }
        .cloned();
        let mut planned = ctx.plan(kind, &source_entity, &intermediate, link.as_ref(), &resolver, true);
        match &planned.plan {
            Plan::Skip(reason) => {
                tsteps.push(step("transform", "skipped", reason.clone()));
                results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
                continue;
            }
            Plan::Fail(reason) => {
                tsteps.push(step("transform", "failed", reason.clone()));
                results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
                continue;
            }
            Plan::Create { entity, .. } | Plan::Update { entity, .. } => {
                tsteps.push(step("transform", "success", entity.clone()));
            }
            Plan::Unchanged => {}
        }
        // Match: the link store, else the target's unique attributes.
        match (&link, &mut planned.plan) {
            (
                Some(Link {
                    target_entity: Some(id),
                    ..
                }),
                _,
            ) => {
                tsteps.push(step("match", "success", format!("linked to target entity {id}")));
            }
            (_, Plan::Create { entity, variables, .. }) => match ctx.lookup(kind, entity).await {
                Ok(Some(id)) => {
                    tsteps.push(step(
                        "match",
                        "success",
                        format!("found target entity {id} by the unique attributes; it will be updated and linked"),
                    ));
                    planned.plan = Plan::Update {
                        target_id: id,
                        entity: entity.clone(),
                        variables: variables.clone(),
                        existed_before: true,
                    };
                    // The entity is the create form: the link gets the update form (see sync::settle).
                    planned.digest = None;
                }
                Ok(None) => tsteps.push(step("match", "success", "no existing entity; it will be created")),
                Err(e) => tsteps.push(step("match", "failed", format!("looking up failed: {e}"))),
            },
            _ => {}
        }
        let action = match &planned.plan {
            Plan::Create { .. } => "create",
            Plan::Update { .. } => "update",
            _ => "none",
        };
        if simulate {
            tsteps.push(step("action", "planned", action));
            results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
            continue;
        }
        if let Some(intent) = sync::intent(&planned) {
            service.link_changes(&scope(kind), vec![intent]).await?;
        }
        let written = ctx.execute(kind, &planned.plan).await;
        // Provisioning one entity keeps no memo digest: the next Read transforms it again.
        let settled = sync::settle(&planned, link.as_ref(), written, None, |target_id| {
            ctx.update_form(kind, &source_entity, &intermediate, target_id, &resolver)
        });
        match &settled.outcome {
            Outcome::Created { target_id, .. } | Outcome::Matched { target_id } | Outcome::Updated { target_id } => {
                tsteps.push(step(
                    "action",
                    "success",
                    json!({"operation": action, "targetEntityId": target_id}),
                ));
            }
            Outcome::Failed { reason, .. } => {
                tsteps.push(step("action", "failed", json!({"operation": action, "reason": reason})));
            }
            _ => {}
        }
        if let Some(change) = settled.link {
            service.link_changes(&scope(kind), vec![change]).await?;
        }
        results.push(json!({"targetId": ctx.system.id, "targetName": ctx.system.spec.name, "steps": tsteps}));
    }
    Ok(
        json!({"simulate": simulate, "entityType": kind.as_str(), "sourceId": source_entity, "steps": steps, "targets": results}),
    )
}

/// A source entity read live for the transformation playground.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleEntity {
    /// How it was found: `id` or the attribute searched (`userName`, `displayName`).
    pub found_by: String,
    /// The entity as the source's connector answers it.
    pub native: Value,
    /// The entity after the source's read transformation (what targets' transformations get), or why there
    /// is none (skipped, failed).
    pub intermediate: Result<Value, String>,
}

/// The SCIM filter that finds an entity by its name: `userName` for users, `displayName` for groups.
fn name_filter(kind: EntityKind, key: &str) -> (String, &'static str) {
    let attribute = match kind {
        EntityKind::User => "userName",
        EntityKind::Group => "displayName",
    };
    let quoted = key.replace('\\', "\\\\").replace('"', "\\\"");
    (format!("{attribute} eq \"{quoted}\""), attribute)
}

/// Reads one entity from a source, by id, else by `userName` (users) or `displayName` (groups), and runs the
/// source's read transformation on it. Nothing is stored or written.
pub(super) async fn sample_entity(
    service: &Provisioning,
    source_id: &str,
    kind: EntityKind,
    key: &str,
) -> Result<SampleEntity, JobError> {
    let (reader, _) = service.prepare(source_id).await.map_err(JobError::Invalid)?;
    let label = reader.plugin.label();
    let read = reader.runtime.get(&reader.plugin, &reader.call, kind, key);
    let (native, found_by) = match super::retry::guarded(&label, read).await {
        Ok(native) if !native.is_null() => (native, "id".to_string()),
        by_id => {
            let (filter, attribute) = name_filter(kind, key);
            let request = crate::connector::PageRequest {
                filter: Some(filter),
                ..crate::connector::PageRequest::first(kind, 2)
            };
            let search = reader.runtime.read(&reader.plugin, &reader.call, &request);
            match super::retry::guarded(&label, search).await {
                Ok(page) if !page.entities.is_empty() => (
                    page.entities.into_iter().next().unwrap_or(Value::Null),
                    attribute.to_string(),
                ),
                Ok(_) => {
                    let why = by_id.err().map(|e| format!(" (by id: {e})")).unwrap_or_default();
                    return Err(JobError::NotFound(format!(
                        "the source has no {} with the id or {attribute} {key:?}{why}",
                        kind.as_str()
                    )));
                }
                Err(e) => {
                    return Err(JobError::Invalid(format!(
                        "the source could not be read: {}",
                        by_id.err().map(|e| e.to_string()).unwrap_or_else(|| e.to_string())
                    )));
                }
            }
        }
    };
    let intermediate = reader
        .transform(kind, &native)
        .map(|(_, entity)| entity)
        .map_err(|(reason, _)| reason);
    Ok(SampleEntity {
        found_by,
        native,
        intermediate,
    })
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn names_are_searched_with_a_quoted_filter() {
        assert_eq!(name_filter(EntityKind::User, "jdoe").0, r#"userName eq "jdoe""#);
        assert_eq!(
            name_filter(EntityKind::Group, r#"a"b\c"#).0,
            r#"displayName eq "a\"b\\c""#
        );
    }
}
