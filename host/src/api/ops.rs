//! The admin operations behind both HTTP faces — the JSON API ([`super::handlers`], [`super::jobs`],
//! [`super::realtime`]) and the web console ([`crate::console`]): each checks the caller's permission and the
//! rule of the operation once, here, and calls the engine. A handler only decodes its request and encodes
//! the answer.

use crate::audit::{self, FieldChange, Object, SECRET_CHANGED};
use crate::connector::EntityKind;
use crate::plugins::PluginError;
use crate::provisioning::schedule::Schedule;
use crate::provisioning::{JobOptions, JobType, Trigger};
use crate::store::jobs::{EntityLogEntry, HeldDelete, JobRecord, ScheduleRecord};
use crate::store::principals::{Permission, Principal, PrincipalKind};
use crate::store::realtime::EventRecord;
use crate::store::systems::System;
use crate::systems::{ConnectionCheck, SystemInput};
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// Records a change by the caller in the audit log (one entry per change, whichever face it came through).
async fn record(state: &AppState, caller: &Caller, action: &str, object: Object, changes: Vec<FieldChange>) {
    state.audit.record(&caller.actor(), action, object, changes).await;
}

/// [`record`], under a name that no local variable hides.
async fn record_change(state: &AppState, caller: &Caller, action: &str, object: Object, changes: Vec<FieldChange>) {
    record(state, caller, action, object, changes).await;
}

/// A principal as an audited object.
fn principal_object(p: &Principal) -> Object {
    Object::new("principal", p.id.clone(), p.name.clone())
}

/// Fails with 403 unless the caller may read job and real-time logs (`read-logs`, or `run-jobs`: who starts
/// runs sees them).
pub fn require_logs(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.may(Permission::ReadLogs) || caller.0.may(Permission::RunJobs) {
        Ok(())
    } else {
        caller.require(Permission::ReadLogs)
    }
}

/// Fails with 403 unless the caller may see the loaded connectors (`manage-plugins` or `manage-systems`).
pub fn require_connectors(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.may(Permission::ManagePlugins) || caller.0.may(Permission::ManageSystems) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} lacks the permission manage-plugins or manage-systems",
            caller.0.name
        )))
    }
}

/// Creates a technical user: `manage-systems`, a non-empty name without `:`, a password of 8 characters or
/// more, and only permissions the caller holds itself.
pub async fn create_technical_user(
    state: &AppState,
    caller: &Caller,
    name: &str,
    password: &str,
    permissions: &[Permission],
) -> Result<Principal, ApiError> {
    caller.require(Permission::ManageSystems)?;
    if name.trim().is_empty() || name.contains(':') {
        return Err(ApiError::bad_request("name must be non-empty and contain no ':'"));
    }
    // Characters, not bytes: "é" is one character of the eight.
    if password.chars().count() < 8 {
        return Err(ApiError::bad_request("password must be at least 8 characters"));
    }
    // Nobody grants what they do not hold themselves.
    if let Some(p) = permissions.iter().find(|p| !caller.0.may(**p)) {
        return Err(ApiError::forbidden(format!(
            "you cannot grant {p:?}, which you do not have"
        )));
    }
    let created = state
        .stores
        .principals
        .create(name.trim(), password, PrincipalKind::Technical, permissions)
        .await?;
    let changes = vec![
        audit::set("name", json!(created.name)),
        audit::set("kind", json!(created.kind)),
        audit::set("permissions", json!(created.permissions)),
        audit::set("password", json!(SECRET_CHANGED)),
    ];
    record(state, caller, "principal.create", principal_object(&created), changes).await;
    Ok(created)
}

/// Deletes a user by id: `manage-systems`; never oneself; admins only by an admin, and never the last one.
/// Its tokens (and console sessions) stop working at once.
pub async fn delete_technical_user(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Permission::ManageSystems)?;
    if id == caller.0.id {
        return Err(ApiError::bad_request("you cannot delete yourself"));
    }
    let principals = state.stores.principals.list().await?;
    let target = principals
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    // Admins are managed by admins only, and the last one stays.
    if target.kind == PrincipalKind::Admin {
        if caller.0.kind != PrincipalKind::Admin {
            return Err(ApiError::forbidden("only an admin can delete an admin"));
        }
        if principals.iter().filter(|p| p.kind == PrincipalKind::Admin).count() <= 1 {
            return Err(ApiError::bad_request("the last admin cannot be deleted"));
        }
    }
    state.stores.principals.delete(id).await?;
    state.stores.tokens.forget(id);
    let changes = vec![
        audit::changed("kind", json!(target.kind), serde_json::Value::Null),
        audit::changed("permissions", json!(target.permissions), serde_json::Value::Null),
    ];
    record(state, caller, "principal.delete", principal_object(target), changes).await;
    Ok(())
}

/// Changes a user's password (`manage-systems`), by the creation's rule (8 characters or more). Admins'
/// passwords only by an admin; nobody changes the password of a user holding a permission they lack (they
/// could then act with it). The user's bearer tokens and console sessions end at once.
pub async fn set_technical_user_password(
    state: &AppState,
    caller: &Caller,
    id: &str,
    password: &str,
) -> Result<Principal, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let target = state
        .stores
        .principals
        .list()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    if password.is_empty() {
        return Err(ApiError::bad_request("password must not be empty"));
    }
    // Characters, not bytes: "é" is one character of the eight.
    if password.chars().count() < 8 {
        return Err(ApiError::bad_request("password must be at least 8 characters"));
    }
    if target.kind == PrincipalKind::Admin && caller.0.kind != PrincipalKind::Admin {
        return Err(ApiError::forbidden("only an admin can change an admin's password"));
    }
    if caller.0.kind != PrincipalKind::Admin
        && let Some(p) = target.permissions.iter().find(|p| !caller.0.may(**p))
    {
        return Err(ApiError::forbidden(format!(
            "you cannot change the password of a user who holds {p:?}, which you do not have"
        )));
    }
    state.stores.principals.set_password(id, password).await?;
    state.stores.tokens.forget(id);
    let change = audit::changed("password", json!(SECRET_CHANGED), json!(SECRET_CHANGED));
    record(
        state,
        caller,
        "principal.password",
        principal_object(&target),
        vec![change],
    )
    .await;
    tracing::info!(user = %target.name, by = %caller.0.name, "password changed; the user's tokens and sessions end");
    Ok(target)
}

/// One entity read live from a source for a system's transformation playground (`manage-systems`): from the
/// system itself when it is a source, else from one of the sources a target receives from. `key` is the
/// entity's id, or its `userName` (`displayName` for groups).
pub async fn sample_entity(
    state: &AppState,
    caller: &Caller,
    system_id: &str,
    source_id: &str,
    entity_type: &str,
    key: &str,
) -> Result<crate::provisioning::one::SampleEntity, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let kind: EntityKind = entity_type.parse().map_err(ApiError::bad_request)?;
    let system = state.systems.get(system_id).await?;
    let allowed = match system.spec.role {
        crate::store::systems::Role::Source => source_id == system.id,
        crate::store::systems::Role::Target => system.spec.sources.iter().any(|s| s == source_id),
        crate::store::systems::Role::Proxy => false,
    };
    if !allowed {
        return Err(ApiError::bad_request(
            "pick the entity from the system itself (a source) or from a source the target receives from",
        ));
    }
    if key.trim().is_empty() {
        return Err(ApiError::bad_request("give the entity's id or name"));
    }
    Ok(state.provisioning.sample_entity(source_id, kind, key.trim()).await?)
}

/// Starts a run on a source (`run-jobs`): `kind` is `read`, `resync` or `simulate` (a simulated read);
/// `simulate` makes a read or resync a dry run.
pub async fn start_job(
    state: &AppState,
    caller: &Caller,
    source: &str,
    kind: &str,
    simulate: bool,
) -> Result<JobRecord, ApiError> {
    caller.require(Permission::RunJobs)?;
    let (job_type, simulate) = match kind.to_ascii_lowercase().as_str() {
        "simulate" => (JobType::Read, true),
        other => (other.parse::<JobType>().map_err(ApiError::bad_request)?, simulate),
    };
    let job = state
        .provisioning
        .start(
            source,
            JobOptions {
                job_type,
                simulate,
                trigger: Trigger::Manual,
                started_by: caller.0.name.clone(),
            },
        )
        .await?;
    tracing::info!(job = %job.id, source = %source, by = %caller.0.name, "job started");
    let changes = vec![
        audit::set("source", json!(source)),
        audit::set("type", json!(job.job_type)),
        audit::set("simulate", json!(simulate)),
    ];
    record(
        state,
        caller,
        "job.start",
        Object::new("job", job.id.clone(), source),
        changes,
    )
    .await;
    Ok(job)
}

/// Asks a run to stop at the next entity boundary (`run-jobs`).
pub async fn stop_job(state: &AppState, caller: &Caller, id: &str) -> Result<JobRecord, ApiError> {
    caller.require(Permission::RunJobs)?;
    let job = state.provisioning.stop(id).await?;
    tracing::info!(job = %id, by = %caller.0.name, "job stop requested");
    let object = Object::new("job", id, job.source_id.clone());
    record(
        state,
        caller,
        "job.stop",
        object,
        vec![audit::set("status", json!(job.status))],
    )
    .await;
    Ok(job)
}

/// One run (`read-logs` or `run-jobs`).
pub async fn job(state: &AppState, caller: &Caller, id: &str) -> Result<JobRecord, ApiError> {
    require_logs(caller)?;
    Ok(state.provisioning.job(id).await?)
}

/// A page of a run's per-entity log (`read-logs` or `run-jobs`): entries after `after`, of one outcome if
/// given, at most `limit` (clamped to 1..=10,000).
pub async fn job_log(
    state: &AppState,
    caller: &Caller,
    id: &str,
    outcome: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<EntityLogEntry>, ApiError> {
    require_logs(caller)?;
    state.provisioning.job(id).await?;
    Ok(state
        .stores
        .jobs
        .log(id, outcome, after, limit.clamp(1, 10_000))
        .await?)
}

/// The deletes a threshold held in a run (`read-logs` or `run-jobs`).
pub async fn held_deletes(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<HeldDelete>, ApiError> {
    require_logs(caller)?;
    state.provisioning.job(id).await?;
    Ok(state.stores.jobs.held_deletes(id).await?)
}

/// Approves or rejects the deletes held in an ended run (`run-jobs`); `decision` is `approve` or `reject`.
pub async fn decide_deletes(
    state: &AppState,
    caller: &Caller,
    id: &str,
    decision: &str,
    only: Option<&[crate::store::jobs::HeldKey]>,
) -> Result<serde_json::Value, ApiError> {
    caller.require(Permission::RunJobs)?;
    let approve = match decision {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown decision {other:?}; use approve or reject"
            )));
        }
    };
    let outcome = state
        .provisioning
        .decide_held_deletes(id, approve, &caller.0.name, only)
        .await?;
    tracing::info!(job = %id, by = %caller.0.name, approve, "held deletes decided");
    let mut changes = vec![audit::set("decision", json!(decision))];
    if let Some(only) = only {
        changes.push(audit::set("selected", json!(only)));
    }
    changes.push(audit::set("outcome", outcome.clone()));
    let action = if approve {
        "held-deletes.approve"
    } else {
        "held-deletes.reject"
    };
    record(state, caller, action, Object::new("job", id, ""), changes).await;
    Ok(outcome)
}

/// Provisions one source entity now (`run-jobs`), as a simulation or for real.
pub async fn provision_one(
    state: &AppState,
    caller: &Caller,
    source: &str,
    entity_type: &str,
    id: &str,
    simulate: bool,
) -> Result<serde_json::Value, ApiError> {
    caller.require(Permission::RunJobs)?;
    let kind: EntityKind = entity_type.parse().map_err(ApiError::bad_request)?;
    if id.trim().is_empty() {
        return Err(ApiError::bad_request("id must name the source entity"));
    }
    let outcome = state
        .provisioning
        .provision_one(source, kind, id.trim(), simulate)
        .await?;
    if !simulate {
        let object = Object::new("entity", format!("{source}/{entity_type}/{}", id.trim()), id.trim());
        record(
            state,
            caller,
            "job.provision-one",
            object,
            vec![audit::set("source", json!(source))],
        )
        .await;
    }
    Ok(outcome)
}

/// Re-drives a parked or failed real-time event (`run-jobs`); 409 when it is neither.
pub async fn retry_event(state: &AppState, caller: &Caller, seq: i64) -> Result<(), ApiError> {
    caller.require(Permission::RunJobs)?;
    if state.realtime.redrive(seq).await? {
        tracing::info!(event = seq, by = %caller.0.name, "real-time event re-driven");
        record(
            state,
            caller,
            "realtime.retry",
            Object::new("realtime-event", seq.to_string(), ""),
            vec![],
        )
        .await;
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("event {seq} is not parked or failed"),
        ))
    }
}

/// A plugin registry error as an API error.
pub fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::Load(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        PluginError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
        e @ PluginError::InUse { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        PluginError::NotFound(m) => ApiError::not_found(m),
        PluginError::Invalid(m) => ApiError::bad_request(m),
        PluginError::Storage(m) => ApiError::internal(m),
    }
}

/// Validates and loads an uploaded component (`manage-plugins`).
pub async fn upload_plugin(
    state: &AppState,
    caller: &Caller,
    bytes: Vec<u8>,
) -> Result<crate::plugins::Added, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("send the component (.wasm) as the request body"));
    }
    let added = state
        .plugins
        .add(&state.stores, bytes, false)
        .await
        .map_err(plugin_error)?;
    tracing::info!(plugin = %added.plugin.descriptor.name, version = %added.plugin.descriptor.version, by = %caller.0.name, "plugin uploaded");
    if !added.unchanged {
        let d = &added.plugin.descriptor;
        let object = Object::new("plugin", format!("{}@{}", d.name, d.version), d.name.clone());
        let mut changes = vec![
            audit::set("version", json!(d.version)),
            audit::set("digest", json!(added.plugin.digest)),
            audit::set("active", json!(added.active)),
        ];
        if let Some(replaced) = &added.replaced {
            changes.push(audit::changed("activeVersion", json!(replaced), json!(d.version)));
        }
        record(state, caller, "plugin.upload", object, changes).await;
    }
    Ok(added)
}

/// Removes an uploaded version (`manage-plugins`); refused while systems run on it.
pub async fn remove_plugin(state: &AppState, caller: &Caller, name: &str, version: &str) -> Result<(), ApiError> {
    caller.require(Permission::ManagePlugins)?;
    state
        .plugins
        .remove(&state.stores, name, version)
        .await
        .map_err(plugin_error)?;
    tracing::info!(plugin = %name, version = %version, by = %caller.0.name, "plugin version removed");
    let object = Object::new("plugin", format!("{name}@{version}"), name);
    record(state, caller, "plugin.remove", object, vec![]).await;
    Ok(())
}

/// Systems that follow a connector run the version below the active one (`manage-plugins`).
pub async fn rollback_plugin(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<crate::plugins::Switched, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    let switched = state.plugins.rollback(name).await.map_err(plugin_error)?;
    record_switch(state, caller, "plugin.rollback", &switched).await;
    Ok(switched)
}

async fn record_switch(state: &AppState, caller: &Caller, action: &str, s: &crate::plugins::Switched) {
    let object = Object::new("plugin", format!("{}@{}", s.name, s.to), s.name.clone());
    let change = audit::changed("activeVersion", json!(s.from), json!(s.to));
    record(state, caller, action, object, vec![change]).await;
}

/// Systems that follow a connector run this version (`manage-plugins`).
pub async fn activate_plugin(
    state: &AppState,
    caller: &Caller,
    name: &str,
    version: &str,
) -> Result<crate::plugins::Switched, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    let switched = state.plugins.activate(name, version).await.map_err(plugin_error)?;
    record_switch(state, caller, "plugin.activate", &switched).await;
    Ok(switched)
}

/// Every loaded plugin version with its systems and statistics (`manage-plugins`).
pub async fn plugins(state: &AppState, caller: &Caller) -> Result<Vec<crate::plugins::VersionInfo>, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    state.plugins.overview(&state.stores).await.map_err(plugin_error)
}

/// Every system (`manage-systems`).
pub async fn systems(state: &AppState, caller: &Caller) -> Result<Vec<System>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    Ok(state.systems.list().await?)
}

/// One system (`manage-systems`).
pub async fn system(state: &AppState, caller: &Caller, id: &str) -> Result<System, ApiError> {
    caller.require(Permission::ManageSystems)?;
    Ok(state.systems.get(id).await?)
}

/// Registers a system (`manage-systems`), validated against its connector.
pub async fn create_system(state: &AppState, caller: &Caller, input: SystemInput) -> Result<System, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let entered = values_entered(&input);
    let system = state.systems.create_by(input, &caller.0.name).await?;
    tracing::info!(system = %system.id, name = %system.spec.name, by = %caller.0.name, "system created");
    let changes = audit::system_changes(None, Some(&system), &entered);
    record(state, caller, "system.create", system_object(&system), changes).await;
    Ok(system)
}

/// Replaces a system's definition (`manage-systems`); masked secrets keep their sealed values.
pub async fn replace_system(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: SystemInput,
) -> Result<System, ApiError> {
    replace_system_as(state, caller, id, input, None).await
}

/// A system as an audited object.
fn system_object(system: &System) -> Object {
    Object::new("system", system.id.clone(), system.spec.name.clone())
}

/// The properties an input gives a value (not the mask of a kept secret).
fn values_entered(input: &SystemInput) -> Vec<String> {
    input
        .properties
        .iter()
        .filter(|(_, v)| v.as_str() != Some(crate::systems::MASK))
        .map(|(k, _)| k.clone())
        .collect()
}

/// [`replace_system`], audited as `action` when given; else as `system.update`, or as
/// `transformation.save` (`transformation.reset` to the connector's default) when only the transformation
/// changed.
pub async fn replace_system_as(
    state: &AppState,
    caller: &Caller,
    id: &str,
    input: SystemInput,
    action: Option<&str>,
) -> Result<System, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let before = state.systems.get(id).await?;
    let entered = values_entered(&input);
    let system = state.systems.replace_by(id, input, &caller.0.name).await?;
    tracing::info!(system = %system.id, by = %caller.0.name, "system replaced");
    let changes = audit::system_changes(Some(&before), Some(&system), &entered);
    let only_transformation = !changes.is_empty()
        && changes
            .iter()
            .all(|c| c.field == "transformation" || c.field == "transformationVersion");
    let (action, kind) = match action {
        Some(a) => (a, "transformation"),
        None if only_transformation && system.spec.transformation.is_none() => {
            ("transformation.reset", "transformation")
        }
        None if only_transformation => ("transformation.save", "transformation"),
        None => ("system.update", "system"),
    };
    let object = Object::new(kind, system.id.clone(), system.spec.name.clone());
    record(state, caller, action, object, changes).await;
    Ok(system)
}

/// Deletes a system (`manage-systems`).
pub async fn delete_system(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Permission::ManageSystems)?;
    let before = state.systems.get(id).await?;
    state.systems.delete(id).await?;
    tracing::info!(system = %id, by = %caller.0.name, "system deleted");
    let changes = audit::system_changes(Some(&before), None, &[]);
    record(state, caller, "system.delete", system_object(&before), changes).await;
    Ok(())
}

/// Enables or disables a system (`manage-systems`).
pub async fn set_system_enabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    enabled: bool,
) -> Result<crate::store::systems::System, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let before = state.systems.get(id).await?;
    let system = state.systems.set_enabled(id, enabled).await?;
    tracing::info!(system = %id, by = %caller.0.name, enabled, "system enabled or disabled");
    let changes = audit::system_changes(Some(&before), Some(&system), &[]);
    let action = if enabled { "system.enable" } else { "system.disable" };
    record(state, caller, action, system_object(&system), changes).await;
    Ok(system)
}

/// Test Connection (`manage-systems`); its outcome is kept with the system (`lastConnectionTest`).
pub async fn test_connection(state: &AppState, caller: &Caller, id: &str) -> Result<ConnectionCheck, ApiError> {
    caller.require(Permission::ManageSystems)?;
    Ok(state.systems.test_connection(id).await?)
}

/// Ends a target's quarantine (`manage-systems`): 404 for an unknown system, 409 when it is not
/// quarantined. Its parked real-time events resume; answers the system as it is now and the quarantine
/// that ended.
pub async fn release_system(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(System, crate::store::systems::Quarantine), ApiError> {
    caller.require(Permission::ManageSystems)?;
    let system = state.systems.get(id).await?;
    let Some(ended) = state.quarantine.release(id, &caller.0.name).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{} is not quarantined; there is nothing to release", system.spec.name),
        ));
    };
    tracing::info!(system = %id, by = %caller.0.name, "quarantine released by an admin");
    Ok((state.systems.get(id).await?, ended))
}

/// The newest runs, of one source (which must exist) or of all, at most `limit` (clamped to 1..=1000)
/// (`read-logs` or `run-jobs`).
pub async fn jobs(
    state: &AppState,
    caller: &Caller,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRecord>, ApiError> {
    require_logs(caller)?;
    if let Some(source) = source {
        state.systems.get(source).await?;
    }
    Ok(state.stores.jobs.list(source, limit.clamp(1, 1000)).await?)
}

/// The real-time log, newest first (`read-logs`).
pub async fn events(
    state: &AppState,
    caller: &Caller,
    source: Option<&str>,
    event_state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRecord>, ApiError> {
    caller.require(Permission::ReadLogs)?;
    Ok(state
        .stores
        .events
        .list(source, event_state, before, limit.clamp(1, 5000))
        .await?)
}

/// One real-time event (`read-logs`).
pub async fn event(state: &AppState, caller: &Caller, seq: i64) -> Result<EventRecord, ApiError> {
    caller.require(Permission::ReadLogs)?;
    state
        .stores
        .events
        .get(seq)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no real-time event {seq}")))
}

/// Fails with 403 unless the caller may manage systems and technical users (`manage-systems`).
pub fn require_manage(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::ManageSystems)
}

/// Admins and technical users, without password hashes (`manage-systems`).
pub async fn principals(state: &AppState, caller: &Caller) -> Result<Vec<Principal>, ApiError> {
    require_manage(caller)?;
    Ok(state.stores.principals.list().await?)
}

/// A source's schedule, if it has one (`read-logs` or `run-jobs`).
pub async fn schedule(state: &AppState, caller: &Caller, source: &str) -> Result<Option<ScheduleRecord>, ApiError> {
    require_logs(caller)?;
    Ok(state
        .stores
        .jobs
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.source_id == source))
}

/// The next `n` times a schedule fires after `after` (none when it is disabled or cannot be parsed).
pub fn next_runs(record: &ScheduleRecord, after: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<String> {
    let Ok(schedule) = Schedule::parse(record) else {
        return Vec::new();
    };
    if !record.enabled {
        return Vec::new();
    }
    let mut times = Vec::new();
    let mut t = after;
    while times.len() < n {
        match schedule.next_after(t) {
            Some(next) if next > t => {
                times.push(next.to_rfc3339());
                t = next;
            }
            _ => break,
        }
    }
    times
}

/// Sets a source's schedule (`run-jobs`; sources only); the stored record and its next run.
pub async fn set_schedule(
    state: &AppState,
    caller: &Caller,
    source: &str,
    mut record: ScheduleRecord,
) -> Result<(ScheduleRecord, Option<String>), ApiError> {
    caller.require(Permission::RunJobs)?;
    let system = state.systems.get(source).await?;
    if system.spec.role != crate::store::systems::Role::Source {
        return Err(ApiError::bad_request("only source systems have schedules"));
    }
    record.source_id = source.to_string();
    let schedule = Schedule::parse(&record).map_err(ApiError::bad_request)?;
    let before = state
        .stores
        .jobs
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.source_id == source);
    state.stores.jobs.set_schedule(&record).await?;
    let changes = audit::value_changes(before.map(|b| json!(b)).as_ref(), Some(&json!(record)));
    record_change(
        state,
        caller,
        "schedule.set",
        Object::new("schedule", source, system.spec.name.clone()),
        changes,
    )
    .await;
    let next = record
        .enabled
        .then(|| schedule.next_after(chrono::Utc::now()))
        .flatten()
        .map(|t| t.to_rfc3339());
    tracing::info!(source = %source, by = %caller.0.name, "schedule set");
    Ok((record, next))
}

/// Removes a source's schedule (`run-jobs`); 404 when it has none.
pub async fn delete_schedule(state: &AppState, caller: &Caller, source: &str) -> Result<(), ApiError> {
    caller.require(Permission::RunJobs)?;
    let before = state
        .stores
        .jobs
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.source_id == source);
    if state.stores.jobs.delete_schedule(source).await? {
        tracing::info!(source = %source, by = %caller.0.name, "schedule removed");
        let changes = audit::value_changes(before.map(|b| json!(b)).as_ref(), None);
        record(
            state,
            caller,
            "schedule.delete",
            Object::new("schedule", source, ""),
            changes,
        )
        .await;
        Ok(())
    } else {
        Err(ApiError::not_found("this system has no schedule"))
    }
}

/// Runs a transformation on a sample entity (`manage-systems`); an invalid document or operation is a 400.
pub fn test_transformation(
    caller: &Caller,
    run: &crate::transform_test::TransformTest,
) -> Result<provisio_transform::Outcome, ApiError> {
    caller.require(Permission::ManageSystems)?;
    run.run().map_err(ApiError::bad_request)
}

/// The login locks still running (admins only: a lock names who was being guessed at).
pub async fn login_locks(state: &AppState, caller: &Caller) -> Result<Vec<super::login_guard::LoginLock>, ApiError> {
    require_admin(caller)?;
    Ok(state.logins.locks(&state.stores).await?)
}

/// Ends a login lock at once (admins only); 404 when none was running.
pub async fn unlock_login(state: &AppState, caller: &Caller, scope: &str, subject: &str) -> Result<(), ApiError> {
    require_admin(caller)?;
    let parsed = super::login_guard::LockSubject::parse(scope, subject).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unlock what: `principal/NAME` or `address/IP`, not `{scope}/{subject}`"
        ))
    })?;
    if state.logins.unlock(&state.stores, &parsed).await? {
        tracing::warn!(by = %caller.0.name, scope, subject, "login lock ended by an admin");
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{scope} {subject} is not locked")))
    }
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.kind == PrincipalKind::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{} is not an admin", caller.0.name)))
    }
}

/// Resets a source (`manage-systems`): forgets its links, so that the next run provisions everything anew;
/// how many links went.
pub async fn reset_source(state: &AppState, caller: &Caller, source: &str) -> Result<usize, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let n = state.provisioning.reset(source).await?;
    tracing::info!(source = %source, by = %caller.0.name, links = n, "source reset");
    let name = state.systems.get(source).await.map(|s| s.spec.name).unwrap_or_default();
    let change = audit::set("linksRemoved", json!(n));
    record(
        state,
        caller,
        "system.reset",
        Object::new("system", source, name),
        vec![change],
    )
    .await;
    Ok(n)
}
