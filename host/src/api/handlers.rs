//! Admin API handlers.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody};
use crate::plugins::PluginError;
use crate::store::principals::{Permission, PrincipalKind};
use crate::systems::{SystemInput, SystemView};

pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 while the store answers with the schema this Provisio knows, else 503 with why (a load
/// balancer sends no traffic to a replica that cannot store what it would acknowledge).
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.stores.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}

pub async fn metrics() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnicalUserInput {
    name: String,
    password: String,
    #[serde(default)]
    permissions: Vec<Permission>,
}

pub async fn create_technical_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<TechnicalUserInput>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageSystems)?;
    if input.name.trim().is_empty() || input.name.contains(':') {
        return Err(ApiError::bad_request("name must be non-empty and contain no ':'"));
    }
    if input.password.len() < 8 {
        return Err(ApiError::bad_request("password must be at least 8 characters"));
    }
    // Nobody grants what they do not hold themselves.
    if let Some(p) = input.permissions.iter().find(|p| !caller.0.may(**p)) {
        return Err(ApiError::forbidden(format!(
            "you cannot grant {p:?}, which you do not have"
        )));
    }
    let principal = state
        .stores
        .principals
        .create(
            input.name.trim(),
            &input.password,
            PrincipalKind::Technical,
            &input.permissions,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": principal.id, "name": principal.name, "permissions": principal.permissions })),
    )
        .into_response())
}

pub async fn list_technical_users(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    Ok(Json(json!(state.stores.principals.list().await?)))
}

pub async fn delete_technical_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
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
    state.stores.principals.delete(&id).await?;
    state.stores.tokens.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

fn plugin_json(p: &crate::runtime::LoadedPlugin) -> Value {
    json!({
        "name": p.descriptor.name,
        "version": p.descriptor.version,
        "digest": p.digest,
        "contract": p.contract,
        "size": p.size,
        "entityKinds": p.descriptor.entity_kinds,
        "operations": p.descriptor.operations,
        "properties": p.descriptor.properties.iter().map(|p| json!({
            "name": p.name, "required": p.required, "secret": p.secret, "default": p.default_value, "doc": p.doc,
        })).collect::<Vec<_>>(),
        "hasDefaultReadTransformation": p.descriptor.default_read_transformation.is_some(),
        "hasDefaultWriteTransformation": p.descriptor.default_write_transformation.is_some(),
        "hasDefaultProxyReadTransformation": p.extensions.default_proxy_read_transformation.is_some(),
        "hasDefaultProxyWriteTransformation": p.extensions.default_proxy_write_transformation.is_some(),
    })
}

fn version_json(info: &crate::plugins::VersionInfo) -> Value {
    let mut v = plugin_json(&info.plugin);
    if let Some(o) = v.as_object_mut() {
        o.insert("bundled".into(), json!(info.bundled));
        o.insert("active".into(), json!(info.active));
        o.insert("usedBy".into(), json!(info.used_by));
        o.insert("stats".into(), json!(info.plugin.stats.snapshot()));
    }
    v
}

/// `GET /api/v1/connectors`: what every loaded version declares, which systems run on it and its
/// statistics, for those who manage systems or plugins. Others (a proxy-only technical user) get 403: a
/// plugin's internals are no business of theirs, and the answer is only as small as the describe() limits.
pub async fn list_connectors(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if !(caller.0.may(Permission::ManagePlugins) || caller.0.may(Permission::ManageSystems)) {
        return Err(ApiError::forbidden(format!(
            "{} lacks the permission manage-plugins or manage-systems",
            caller.0.name
        )));
    }
    let overview = state.plugins.overview(&state.stores).await.map_err(plugin_error)?;
    Ok(Json(Value::Array(overview.iter().map(version_json).collect())))
}

/// `GET /api/v1/plugins`: every loaded version, with whether it is bundled or active, the systems on it, and
/// its call statistics.
pub async fn list_plugins(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    let overview = state.plugins.overview(&state.stores).await.map_err(plugin_error)?;
    Ok(Json(Value::Array(overview.iter().map(version_json).collect())))
}

fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::Load(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        PluginError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
        e @ PluginError::InUse { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        PluginError::NotFound(m) => ApiError::not_found(m),
        PluginError::Invalid(m) => ApiError::bad_request(m),
        PluginError::Storage(m) => ApiError::internal(m),
    }
}

pub async fn upload_plugin(State(state): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("send the component (.wasm) as the request body"));
    }
    let added = state
        .plugins
        .add(&state.stores, body.to_vec(), false)
        .await
        .map_err(plugin_error)?;
    let mut answer = plugin_json(&added.plugin);
    if let Some(o) = answer.as_object_mut() {
        o.insert("active".into(), json!(added.active));
        o.insert("replaced".into(), json!(added.replaced));
    }
    let status = if added.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(answer)).into_response())
}

/// `DELETE /api/v1/plugins/{name}/{version}`: refused (409) while systems run on it, naming them.
pub async fn delete_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    state
        .plugins
        .remove(&state.stores, &name, &version)
        .await
        .map_err(plugin_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/plugins/{name}/rollback`: systems that follow the connector run the version below the
/// active one from their next call.
pub async fn rollback_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    let switched = state.plugins.rollback(&name).await.map_err(plugin_error)?;
    Ok(Json(json!(switched)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateInput {
    version: String,
}

/// `POST /api/v1/plugins/{name}/activate` `{"version"}`: systems that follow the connector run this version.
pub async fn activate_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<ActivateInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManagePlugins)?;
    let switched = state
        .plugins
        .activate(&name, &input.version)
        .await
        .map_err(plugin_error)?;
    Ok(Json(json!(switched)))
}

fn saved(system: &crate::store::systems::System, status: StatusCode) -> Response {
    let mut body = serde_json::to_value(SystemView::from(system)).unwrap_or(Value::Null);
    if let Some(object) = body.as_object_mut() {
        // The words SAP admins know from the console.
        object.insert(
            "message".into(),
            json!(format!("System {} configuration updated.", system.spec.name)),
        );
    }
    (status, Json(body)).into_response()
}

pub async fn create_system(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<SystemInput>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let system = state.systems.create(input).await?;
    tracing::info!(system = %system.id, name = %system.spec.name, by = %caller.0.name, "system created");
    Ok(saved(&system, StatusCode::CREATED))
}

pub async fn list_systems(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let views: Vec<SystemView> = state.systems.list().await?.iter().map(SystemView::from).collect();
    Ok(Json(json!(views)))
}

pub async fn get_system(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SystemView>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    Ok(Json(SystemView::from(&state.systems.get(&id).await?)))
}

pub async fn replace_system(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SystemInput>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let system = state.systems.replace(&id, input).await?;
    tracing::info!(system = %system.id, by = %caller.0.name, "system replaced");
    Ok(saved(&system, StatusCode::OK))
}

pub async fn delete_system(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageSystems)?;
    state.systems.delete(&id).await?;
    tracing::info!(system = %id, by = %caller.0.name, "system deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn test_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let check = state.systems.test_connection(&id).await?;
    Ok(Json(json!(check)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransformationTest {
    transformation: Value,
    entity: Value,
    #[serde(default = "default_entity_type")]
    entity_type: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    trace: bool,
}

fn default_entity_type() -> String {
    "user".into()
}

pub async fn test_transformation(
    caller: Caller,
    JsonBody(input): JsonBody<TransformationTest>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let run = crate::transform_test::TransformTest {
        transformation: input.transformation,
        entity: input.entity,
        entity_type: input.entity_type,
        properties: input.properties,
        operation: input.operation,
        trace: input.trace,
    };
    let outcome = run.run().map_err(ApiError::bad_request)?;
    Ok(Json(outcome).into_response())
}
