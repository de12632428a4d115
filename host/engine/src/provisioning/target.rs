//! Writing to one target: the target's write transformation, the link store's verdict (create, update,
//! unchanged), matching of entities that already exist, the write itself with retries, group assignments,
//! and deletes. A run plans a page of entities synchronously, then executes the plans concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;

use provisio_transform::{Context, EntityIdResolver, Operation as TransformOp, Outcome, Transformation};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::diff;
use super::matching;
use super::retry::{RetryScope, with_retries};
use super::settings::{TargetSettings, TraceSettings};
use crate::connector::{ConnectorError, EntityKind};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};
use crate::store::links::{Link, LinkDigest, Links};
use crate::store::systems::System;

/// Everything a run needs to write to one target system.
pub struct TargetContext {
    /// The target system.
    pub system: System,
    /// Its connector.
    pub plugin: Arc<LoadedPlugin>,
    /// Where its calls go; jobs ask the connector to report create conflicts (the host matches).
    pub call: CallTarget,
    /// Its write transformation.
    pub transformation: Transformation,
    /// Its job settings.
    pub settings: TargetSettings,
    /// Which outcomes carry values in the log.
    pub trace: TraceSettings,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The stop request and run budget its retries answer to (a job run's; else never stopped).
    pub retry_scope: RetryScope,
    /// What the write transformation's output depends on besides the entity, for the memo (`None`: not
    /// memoised; see [`super::memo`]).
    pub memo_fingerprint: Option<super::memo::Digest>,
}

/// What to do with one source entity in one target.
#[derive(Debug)]
pub enum Plan {
    /// Written before with the same content (Read only).
    Unchanged,
    /// The transformation or `skipOperations` skipped it.
    Skip(String),
    /// The transformation failed.
    Fail(String),
    /// Create it (after a lookup, when an earlier create's outcome is unknown).
    Create {
        /// The target entity.
        entity: Value,
        /// Transformation variables (`assignGroup`, `entityIdTargetSystem`).
        variables: BTreeMap<String, Value>,
        /// Look the entity up before creating it.
        lookup_first: bool,
    },
    /// Replace the linked target entity.
    Update {
        /// Its id.
        target_id: String,
        /// The new content.
        entity: Value,
        /// Transformation variables.
        variables: BTreeMap<String, Value>,
        /// It existed before Provisio matched it.
        existed_before: bool,
    },
}

/// The planned write of one entity.
#[derive(Debug)]
pub struct Planned {
    /// The source entity id.
    pub source_id: String,
    /// What to do.
    pub plan: Plan,
    /// Digest of the transformed content.
    pub digest: Option<LinkDigest>,
}

/// How a write ended.
#[derive(Debug)]
pub enum Written {
    /// Created (or matched, `existed_before`) and linked.
    Created {
        /// Target id.
        target_id: String,
        /// Matched an entity that existed before.
        existed_before: bool,
        /// Found by a lookup after an earlier create whose outcome was unknown.
        recovered: bool,
        /// Extensions the target left out (see [`left_out`]).
        left_out: Vec<String>,
    },
    /// Updated.
    Updated {
        /// Target id.
        target_id: String,
        /// Existed before.
        existed_before: bool,
        /// Extensions the target left out (see [`left_out`]).
        left_out: Vec<String>,
    },
    /// Failed (after the retries of the target's policy).
    Failed {
        /// Why.
        reason: String,
        /// Whether the create intent recorded for it should be dropped.
        drop_intent: bool,
        /// Whether a later attempt may succeed (transient failure, throttling).
        retryable: bool,
        /// What it says about the target (the quarantine rules look at it).
        cause: FailureCause,
    },
}

/// What a failed write says about its target, for the quarantine rules ([`crate::quarantine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// The target (or its token endpoint) refused the credentials (401, 403).
    Credentials,
    /// A create found no endpoint (404): the base URL is wrong or gone.
    NotFound,
    /// The target or its connector failed (5xx, unreachable, timeouts, throttling, traps): not the entity's
    /// fault, but perhaps passing.
    Target,
    /// The entity was refused (its data, a conflict, a stale version): says nothing about the target.
    Entity,
}

impl FailureCause {
    /// The cause of a call error; `creating`: the call was a create, where a 404 can only mean the endpoint.
    pub fn of(e: &CallError, creating: bool) -> FailureCause {
        match e {
            CallError::Connector(ConnectorError::Unauthorized { message }) => {
                // The SDK reports an unreachable token endpoint as refused authentication too.
                if message.contains("could not be reached") {
                    FailureCause::Target
                } else {
                    FailureCause::Credentials
                }
            }
            CallError::Connector(ConnectorError::NotFound { .. }) if creating => FailureCause::NotFound,
            CallError::Connector(
                ConnectorError::Transient { .. }
                | ConnectorError::Throttled { .. }
                | ConnectorError::InvalidConfig { .. },
            ) => FailureCause::Target,
            CallError::Connector(_) => FailureCause::Entity,
            _ => FailureCause::Target,
        }
    }
}

impl Written {
    /// What the target left out of a written entity, for its log entry.
    pub fn left_out_note(&self) -> Option<String> {
        match self {
            Written::Created { left_out, .. } | Written::Updated { left_out, .. } if !left_out.is_empty() => {
                Some(format!("left out by the target: {}", left_out.join(", ")))
            }
            _ => None,
        }
    }

    /// A failure from a call error: retryable when the error is transient or throttling.
    fn from_error(e: &CallError, reason: String, drop_intent: bool) -> Written {
        Written::Failed {
            reason,
            drop_intent,
            retryable: !matches!(super::retry::classify(e), super::retry::Retry::Never),
            cause: FailureCause::of(e, false),
        }
    }

    /// [`Written::from_error`] of a create (where a 404 means the endpoint is missing).
    fn from_create_error(e: &CallError, reason: String, drop_intent: bool) -> Written {
        let mut written = Written::from_error(e, reason, drop_intent);
        if let Written::Failed { cause, .. } = &mut written {
            *cause = FailureCause::of(e, true);
        }
        written
    }
}

/// Extension objects (top-level `urn:` keys with content) the entity sent had and the target's answer lacks:
/// what the target left out (a SCIM target keeps only the extensions it declares). Nothing when the answer
/// is not the entity (empty, only an id and `meta`): it must echo at least one other attribute sent.
fn left_out(sent: &Value, answer: &Value) -> Vec<String> {
    let (Some(sent), Some(answer)) = (sent.as_object(), answer.as_object()) else {
        return Vec::new();
    };
    let is_urn = |k: &str| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let echoed = sent
        .keys()
        .filter(|k| !is_urn(k) && !["id", "meta", "schemas"].contains(&k.as_str()))
        .any(|k| answer.contains_key(k));
    if !echoed {
        return Vec::new();
    }
    let has_content = |v: &Value| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty()));
    sent.iter()
        .filter(|(k, v)| is_urn(k) && has_content(v) && !answer.keys().any(|a| a.eq_ignore_ascii_case(k)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Group assignments (`assignGroup`/`unassignGroup` variables) that failed, as log lines.
pub type AssignmentFailures = Vec<String>;

/// Resolves `resolveEntityIds` from the in-memory links of this target.
pub struct LinkResolver<'a> {
    /// User links of this source/target pair.
    pub users: &'a Links,
    /// Group links.
    pub groups: &'a Links,
}

impl EntityIdResolver for LinkResolver<'_> {
    fn resolve(&self, entity_type: &str, source_id: &str, _: Option<&str>, _: Option<&str>) -> Option<String> {
        let links = if entity_type.eq_ignore_ascii_case("group") {
            self.groups
        } else {
            self.users
        };
        links
            .get(source_id)
            .and_then(|l| l.target_entity.as_ref())
            .map(String::from)
    }
}

/// SHA-256 of the canonical JSON text.
pub fn digest(entity: &Value) -> LinkDigest {
    LinkDigest::from(Sha256::digest(crate::json::text(entity).as_bytes()))
}

impl TargetContext {
    /// Whether this target receives entities of a kind at all.
    pub fn handles(&self, kind: EntityKind) -> bool {
        self.plugin.descriptor.entity_kinds.contains(&kind)
            && self
                .transformation
                .entity(kind.as_str())
                .is_some_and(|e| !e.is_ignored())
    }

    /// Plans one source entity (the intermediate, SCIM-shaped form). `rewrite` is Resync: write even when
    /// unchanged.
    pub fn plan(
        &self,
        kind: EntityKind,
        source_id: &str,
        intermediate: &Value,
        link: Option<&Link>,
        resolver: &dyn EntityIdResolver,
        rewrite: bool,
    ) -> Planned {
        let linked_id = link.and_then(|l| l.target_entity.as_ref()).map(String::from);
        let op = if linked_id.is_some() {
            TransformOp::Update
        } else {
            TransformOp::Create
        };
        let mut ctx = Context::new(&self.system.spec.properties)
            .operation(op)
            .resolver(resolver)
            .variable("entityIdSourceSystem", Value::String(source_id.to_string()));
        if let Some(id) = &linked_id {
            ctx = ctx.variable("entityIdTargetSystem", Value::String(id.clone()));
        }
        let planned = |plan, digest| Planned {
            source_id: source_id.to_string(),
            plan,
            digest,
        };
        let (entity, variables) = match self.transformation.apply(kind.as_str(), intermediate, &ctx) {
            Outcome::Transformed { output, variables, .. } => (output, variables),
            Outcome::Skipped { reason, .. } => return planned(Plan::Skip(reason), None),
            Outcome::Failed { reason, .. } => return planned(Plan::Fail(reason), None),
        };
        if self.transformation.entity(kind.as_str()).is_some_and(|e| e.skips(op)) {
            let reason = format!("skipOperations excludes {} for {}s", op.skip_name(), kind.as_str());
            return planned(Plan::Skip(reason), None);
        }
        let digest = digest(&entity);
        let plan = match (linked_id, link) {
            (Some(target_id), Some(link)) => {
                if !rewrite && link.digest == Some(digest) {
                    Plan::Unchanged
                } else {
                    Plan::Update {
                        target_id,
                        entity,
                        variables,
                        existed_before: link.existed_before,
                    }
                }
            }
            _ => Plan::Create {
                entity,
                variables,
                lookup_first: link.is_some_and(|l| l.creating),
            },
        };
        planned(plan, Some(digest))
    }

    /// What a later Read compares with: the update transformation's output with the target id known.
    /// (Create runs `createEntity` mappings and lacks the id, so its output differs from every later run's.)
    pub fn update_form(
        &self,
        kind: EntityKind,
        source_id: &str,
        intermediate: &Value,
        target_id: &str,
        resolver: &dyn EntityIdResolver,
    ) -> Option<Value> {
        let ctx = Context::new(&self.system.spec.properties)
            .operation(TransformOp::Update)
            .resolver(resolver)
            .variable("entityIdSourceSystem", Value::String(source_id.to_string()))
            .variable("entityIdTargetSystem", Value::String(target_id.to_string()));
        match self.transformation.apply(kind.as_str(), intermediate, &ctx) {
            Outcome::Transformed { output, .. } => Some(output),
            _ => None,
        }
    }

    /// Executes a create or update plan. Other plans have nothing to execute.
    pub async fn execute(&self, kind: EntityKind, plan: &Plan) -> Option<Written> {
        Some(match plan {
            Plan::Create {
                entity,
                variables,
                lookup_first,
            } => self.create(kind, entity, variables, *lookup_first).await,
            Plan::Update {
                target_id,
                entity,
                existed_before,
                variables,
            } => match self.replace(kind, target_id, entity).await {
                Ok(written) => Written::Updated {
                    target_id: target_id.clone(),
                    existed_before: *existed_before,
                    left_out: left_out(entity, &written),
                },
                // Gone from the target behind our back: create it again.
                Err(CallError::Connector(ConnectorError::NotFound { .. })) => {
                    self.create(kind, entity, variables, false).await
                }
                Err(e) => Written::from_error(&e, format!("{e}"), false),
            },
            _ => return None,
        })
    }

    /// Replaces the entity; the target's answer.
    async fn replace(&self, kind: EntityKind, id: &str, entity: &Value) -> Result<Value, CallError> {
        // A version in the entity is a precondition to the connector (the proxy's read-modify-write). What
        // a transformation carried over from the source is no version of the target's: the connector reads
        // the target's own.
        let mut entity = std::borrow::Cow::Borrowed(entity);
        if entity.pointer("/meta/version").is_some()
            && let Some(meta) = entity.to_mut().get_mut("meta").and_then(Value::as_object_mut)
        {
            meta.shift_remove("version");
        }
        let (result, _) = with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
            self.runtime.replace(&self.plugin, &self.call, kind, id, &entity)
        })
        .await;
        result
    }

    /// Looks the entity up by the unique attributes; `Ok(None)` when it has none of them or nothing matches.
    pub async fn lookup(&self, kind: EntityKind, entity: &Value) -> Result<Option<String>, CallError> {
        let attributes = matching::unique_attributes(&self.plugin.descriptor, &self.system.spec.properties, kind);
        let Some(filter) = matching::filter_for(entity, &attributes) else {
            return Ok(None);
        };
        let (found, _) = with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
            matching::find_existing(&self.runtime, &self.plugin, &self.call, kind, &filter)
        })
        .await;
        Ok(found?.map(|(id, _)| id))
    }

    async fn create(
        &self,
        kind: EntityKind,
        entity: &Value,
        variables: &BTreeMap<String, Value>,
        lookup_first: bool,
    ) -> Written {
        let failed = |reason: String| Written::Failed {
            reason,
            drop_intent: true,
            retryable: false,
            cause: FailureCause::Entity,
        };
        // An earlier create may have happened (crash, timeout): find it before creating a duplicate.
        if lookup_first {
            match self.lookup(kind, entity).await {
                Ok(Some(id)) => {
                    return match self.replace(kind, &id, entity).await {
                        Ok(written) => Written::Created {
                            target_id: id,
                            existed_before: false,
                            recovered: true,
                            left_out: left_out(entity, &written),
                        },
                        Err(e) => Written::from_error(&e, e.to_string(), false),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    let reason = format!("could not check whether an earlier create happened: {e}");
                    return Written::from_error(&e, reason, false);
                }
            }
        }
        let (result, _) = with_retries(
            self.settings.retry,
            &self.retry_scope,
            &self.plugin.label(),
            |attempt| async move {
                if attempt > 0 {
                    // The failed attempt may have created it after all.
                    if let Ok(Some(id)) = self.lookup(kind, entity).await {
                        return Ok(json!({ "id": id }));
                    }
                }
                self.runtime.create(&self.plugin, &self.call, kind, entity).await
            },
        )
        .await;
        match result {
            Ok(created) => {
                let id = matching::entity_id(&created).or_else(|| {
                    variables
                        .get("entityIdTargetSystem")
                        .and_then(|v| v.as_str().map(str::to_string))
                });
                match id {
                    Some(target_id) => Written::Created {
                        target_id,
                        existed_before: false,
                        recovered: false,
                        left_out: left_out(entity, &created),
                    },
                    None => Written::Failed {
                        reason: "the target answered the create without an id".into(),
                        drop_intent: false,
                        retryable: false,
                        cause: FailureCause::Target,
                    },
                }
            }
            Err(CallError::Connector(ConnectorError::Conflict { message })) => {
                if !matching::conflict_resolution_enabled(&self.system.spec.properties, kind) {
                    return failed(format!("conflict: {message} (automatic conflict resolution is off)"));
                }
                match self.lookup(kind, entity).await {
                    Ok(Some(id)) => match self.replace(kind, &id, entity).await {
                        Ok(written) => Written::Created {
                            target_id: id,
                            existed_before: true,
                            recovered: false,
                            left_out: left_out(entity, &written),
                        },
                        Err(e) => failed(format!("matched an existing entity, but updating it failed: {e}")),
                    },
                    Ok(None) => failed(format!(
                        "conflict: {message}; {}",
                        matching::explain_no_match(&self.plugin.descriptor, &self.system.spec.properties, kind, entity)
                    )),
                    Err(e) => Written::from_error(
                        &e,
                        format!("conflict: {message}; looking the existing entity up failed: {e}"),
                        true,
                    ),
                }
            }
            Err(e) => Written::from_create_error(&e, e.to_string(), true),
        }
    }

    /// Applies `assignGroup` (after a write) or `unassignGroup` (after a delete) for a user.
    pub async fn assignments(
        &self,
        user_target_id: &str,
        variables: &BTreeMap<String, Value>,
        variable: &str,
    ) -> AssignmentFailures {
        let Some(groups) = variables.get(variable) else {
            return vec![];
        };
        let ids: Vec<String> = match groups {
            Value::Array(items) => items
                .iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s.clone()),
                    other => other.get("id").and_then(Value::as_str).map(str::to_string),
                })
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => vec![],
        };
        let op = if variable == "unassignGroup" {
            json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{user_target_id}\"]")}]})
        } else {
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": user_target_id}]}]})
        };
        let mut failures = Vec::new();
        for group in ids {
            let (result, _) = with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
                self.runtime
                    .patch(&self.plugin, &self.call, EntityKind::Group, &group, &op)
            })
            .await;
            if let Err(e) = result {
                failures.push(format!("{variable} {group}: {e}"));
            }
        }
        failures
    }

    /// Deletes a linked entity whose source entity is gone: `deleteEntity` mappings turn the delete into an
    /// update (e.g. `active=false`); `skipOperations: ["delete"]` keeps it. Returns what happened.
    pub async fn delete(&self, kind: EntityKind, source_id: &str, target_id: &str, simulate: bool) -> DeleteOutcome {
        let empty = Value::Object(Default::default());
        let ctx = Context::new(&self.system.spec.properties)
            .operation(TransformOp::Delete)
            .variable("entityIdSourceSystem", Value::String(source_id.to_string()))
            .variable("entityIdTargetSystem", Value::String(target_id.to_string()));
        let (update, variables) = match self.transformation.apply(kind.as_str(), &empty, &ctx) {
            Outcome::Transformed { output, variables, .. } => (output, variables),
            Outcome::Skipped { reason, .. } => return DeleteOutcome::Skipped(reason),
            Outcome::Failed { reason, .. } => return DeleteOutcome::Failed(reason),
        };
        if self
            .transformation
            .entity(kind.as_str())
            .is_some_and(|e| e.skips(TransformOp::Delete))
        {
            return DeleteOutcome::Skipped(format!("skipOperations excludes delete for {}s", kind.as_str()));
        }
        let fields: Vec<(String, Value)> = update
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str() != "id" && k.as_str() != "schemas")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if simulate {
            return if fields.is_empty() {
                DeleteOutcome::Deleted(vec![])
            } else {
                DeleteOutcome::Deactivated(vec![])
            };
        }
        if !fields.is_empty() {
            let ops: Vec<Value> = fields
                .iter()
                .map(|(k, v)| json!({"op": "replace", "path": k, "value": v}))
                .collect();
            let doc = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
            let (result, _) = with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
                self.runtime.patch(&self.plugin, &self.call, kind, target_id, &doc)
            })
            .await;
            return match result {
                Ok(_) => DeleteOutcome::Deactivated(self.assignments(target_id, &variables, "unassignGroup").await),
                Err(e) => DeleteOutcome::Failed(e.to_string()),
            };
        }
        let failures = if kind == EntityKind::User {
            self.assignments(target_id, &variables, "unassignGroup").await
        } else {
            vec![]
        };
        let (result, _) = with_retries(self.settings.retry, &self.retry_scope, &self.plugin.label(), |_| {
            self.runtime.delete(&self.plugin, &self.call, kind, target_id)
        })
        .await;
        match result {
            Ok(()) => DeleteOutcome::Deleted(failures),
            Err(e) => DeleteOutcome::Failed(e.to_string()),
        }
    }
}

/// How a delete ended.
#[derive(Debug)]
pub enum DeleteOutcome {
    /// Deleted (with failed unassignments, if any).
    Deleted(AssignmentFailures),
    /// Updated instead (`deleteEntity` mappings), link kept.
    Deactivated(AssignmentFailures),
    /// Not deleted on purpose.
    Skipped(String),
    /// Failed.
    Failed(String),
}

/// The log's change list for a plan.
pub fn plan_changes(plan: &Plan, old: Option<&Value>, trace: TraceSettings) -> Option<Value> {
    match plan {
        Plan::Create { entity, .. } => Some(diff::changes(None, entity, trace.created)),
        Plan::Update { entity, .. } => Some(diff::changes(old, entity, trace.updated)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_the_target_did_not_keep_are_left_out() {
        let sap = "urn:sap:cloud:scim:schemas:extension:custom:2.0:User";
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let sent = json!({"userName": "a", sap: {"attributes": [1]}, enterprise: {"employeeNumber": "1"},
            "urn:x:empty": {}});
        let kept = json!({"id": "1", "userName": "a", enterprise: {"employeeNumber": "1"}});
        assert_eq!(left_out(&sent, &kept), vec![sap.to_string()]);
        // An answer that is no entity says nothing.
        assert!(left_out(&sent, &json!({"id": "1"})).is_empty());
        assert!(left_out(&sent, &json!({"id": "1", "meta": {"version": "1"}})).is_empty());
        assert!(left_out(&sent, &Value::Null).is_empty());
        let written = Written::Updated {
            target_id: "1".into(),
            existed_before: false,
            left_out: left_out(&sent, &kept),
        };
        assert_eq!(
            written.left_out_note().as_deref(),
            Some(format!("left out by the target: {sap}").as_str())
        );
    }

    #[test]
    fn digests_are_stable_and_content_sensitive() {
        let a = json!({"userName": "a", "active": true});
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&json!({"userName": "a", "active": false})));
        assert_eq!(digest(&a).to_hex().len(), 32);
    }

    #[test]
    fn the_resolver_uses_links_of_the_kind() {
        let mut users = Links::new();
        users.insert(
            "s1".into(),
            Link {
                target_entity: Some("t1".into()),
                ..Default::default()
            },
        );
        users.insert(
            "s2".into(),
            Link {
                creating: true,
                ..Default::default()
            },
        );
        let groups = Links::new();
        let r = LinkResolver {
            users: &users,
            groups: &groups,
        };
        assert_eq!(r.resolve("user", "s1", None, None).as_deref(), Some("t1"));
        assert_eq!(r.resolve("user", "s2", None, None), None);
        assert_eq!(r.resolve("group", "s1", None, None), None);
    }
}
