//! Admin API handlers.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody, PathParams, RawBody};
use super::ops::{self, plugin_error};
use super::schemas::{self, ErrorBody};
use crate::store::principals::Permission;
use crate::systems::{SystemInput, SystemView};

#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "The process runs", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 while the store answers with the schema this Provisio knows, else 503 with why (a load
/// balancer sends no traffic to a replica that cannot store what it would acknowledge).
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses(
        (status = 200, description = "The store answers with the schema this Provisio knows", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready, and why", body = String, content_type = "text/plain"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.stores.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TechnicalUserInput {
    /// Unique; no `:`.
    #[schema(min_length = 1, pattern = "^[^:]+$")]
    name: String,
    /// 8 characters or more.
    #[schema(min_length = 8)]
    password: String,
    #[serde(default)]
    #[schema(value_type = Vec<schemas::Permission>)]
    permissions: Vec<Permission>,
}

#[utoipa::path(post, path = "/technical-users", tag = "users", request_body = TechnicalUserInput,
    responses((status = 201, description = "Created", body = schemas::TechnicalUser),
        (status = 409, description = "The name is taken", body = ErrorBody)))]
pub async fn create_technical_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<TechnicalUserInput>,
) -> Result<Response, ApiError> {
    let principal =
        ops::create_technical_user(&state, &caller, &input.name, &input.password, &input.permissions).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": principal.id, "name": principal.name, "permissions": principal.permissions })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/technical-users", tag = "users",
    responses((status = 200, description = "The admins and technical users", body = Vec<schemas::Principal>)))]
pub async fn list_technical_users(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(ops::principals(&state, &caller).await?)))
}

#[utoipa::path(delete, path = "/technical-users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Removed"), (status = 409, description = "Refused (the last admin, or oneself)", body = ErrorBody)))]
pub async fn delete_technical_user(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    ops::delete_technical_user(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/login-locks`: the login locks still running (admins only).
#[utoipa::path(get, path = "/login-locks", tag = "users",
    responses((status = 200, description = "The locks still running", body = Vec<schemas::LoginLock>)))]
pub async fn list_login_locks(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(ops::login_locks(&state, &caller).await?)))
}

/// `DELETE /api/v1/login-locks/{scope}/{subject}` (`principal/NAME` or `address/IP`): 204 when a lock ended,
/// 404 when none was running.
#[utoipa::path(delete, path = "/login-locks/{scope}/{subject}", tag = "users",
    params(("scope" = schemas::LockScope, Path, description = "`principal` or `address`"),
        ("subject" = String, Path, description = "The principal's name or the client address")),
    responses((status = 204, description = "The lock ended")))]
pub async fn unlock_login(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((scope, subject)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ops::unlock_login(&state, &caller, &scope, &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    /// 8 characters or more.
    #[schema(min_length = 8)]
    password: String,
}

/// `PUT /api/v1/technical-users/{id}/password`: 200 with the user; its tokens and sessions end.
#[utoipa::path(put, path = "/technical-users/{id}/password", tag = "users", request_body = PasswordInput,
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "Changed; the user's tokens and sessions ended", body = schemas::TechnicalUser)))]
pub async fn set_technical_user_password(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(input): JsonBody<PasswordInput>,
) -> Result<Json<Value>, ApiError> {
    let principal = ops::set_technical_user_password(&state, &caller, &id, &input.password).await?;
    Ok(Json(
        json!({ "id": principal.id, "name": principal.name, "permissions": principal.permissions }),
    ))
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
#[utoipa::path(get, path = "/connectors", tag = "plugins",
    responses((status = 200, description = "Every loaded connector version", body = Vec<schemas::Plugin>)))]
pub async fn list_connectors(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    ops::require_connectors(&caller)?;
    let overview = state.plugins.overview(&state.stores).await.map_err(plugin_error)?;
    Ok(Json(Value::Array(overview.iter().map(version_json).collect())))
}

/// `GET /api/v1/plugins`: every loaded version, with whether it is bundled or active, the systems on it, and
/// its call statistics.
#[utoipa::path(get, path = "/plugins", tag = "plugins",
    responses((status = 200, description = "Every loaded version with its statistics", body = Vec<schemas::Plugin>)))]
pub async fn list_plugins(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let overview = ops::plugins(&state, &caller).await?;
    Ok(Json(Value::Array(overview.iter().map(version_json).collect())))
}

#[utoipa::path(post, path = "/plugins", tag = "plugins",
    request_body(description = "The `.wasm` component (any content type; the CLI sends `application/wasm`)",
        content((schemas::WasmComponent = "application/wasm"), (schemas::WasmComponent = "application/octet-stream"))),
    responses((status = 200, description = "This version was loaded already", body = schemas::Plugin),
        (status = 201, description = "Loaded", body = schemas::Plugin),
        (status = 409, description = "Another component with this name and version is loaded", body = ErrorBody),
        (status = 413, description = "Larger than the limit", body = ErrorBody),
        (status = 422, description = "Not a valid connector component, and why", body = ErrorBody)))]
pub async fn upload_plugin(
    State(state): State<AppState>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let added = ops::upload_plugin(&state, &caller, body.to_vec()).await?;
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
#[utoipa::path(delete, path = "/plugins/{name}/{version}", tag = "plugins",
    params(("name" = String, Path, description = "The connector"), ("version" = String, Path, description = "The version")),
    responses((status = 204, description = "Removed"),
        (status = 409, description = "Systems run on it (named), or it is bundled", body = ErrorBody)))]
pub async fn delete_plugin(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ops::remove_plugin(&state, &caller, &name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/plugins/{name}/rollback`: systems that follow the connector run the version below the
/// active one from their next call.
#[utoipa::path(post, path = "/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path, description = "The connector")),
    responses((status = 200, description = "What changed", body = schemas::Switched),
        (status = 409, description = "No version below the active one", body = ErrorBody)))]
pub async fn rollback_plugin(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let switched = ops::rollback_plugin(&state, &caller, &name).await?;
    Ok(Json(json!(switched)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateInput {
    version: String,
}

/// `POST /api/v1/plugins/{name}/activate` `{"version"}`: systems that follow the connector run this version.
#[utoipa::path(post, path = "/plugins/{name}/activate", tag = "plugins", request_body = ActivateInput,
    params(("name" = String, Path, description = "The connector")),
    responses((status = 200, description = "What changed", body = schemas::Switched),
        (status = 409, description = "Refused", body = ErrorBody)))]
pub async fn activate_plugin(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    JsonBody(input): JsonBody<ActivateInput>,
) -> Result<Json<Value>, ApiError> {
    let switched = ops::activate_plugin(&state, &caller, &name, &input.version).await?;
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

#[utoipa::path(post, path = "/systems", tag = "systems", request_body = schemas::SystemInput,
    responses((status = 201, description = "Created", body = schemas::System),
        (status = 409, description = "The name is taken", body = ErrorBody)))]
pub async fn create_system(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<SystemInput>,
) -> Result<Response, ApiError> {
    let system = ops::create_system(&state, &caller, input).await?;
    Ok(saved(&system, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/systems", tag = "systems",
    responses((status = 200, description = "Every system, secrets masked", body = Vec<schemas::System>)))]
pub async fn list_systems(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let views: Vec<SystemView> = ops::systems(&state, &caller)
        .await?
        .iter()
        .map(SystemView::from)
        .collect();
    Ok(Json(json!(views)))
}

#[utoipa::path(get, path = "/systems/{id}", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "The system, secrets masked", body = schemas::System)))]
pub async fn get_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<SystemView>, ApiError> {
    Ok(Json(SystemView::from(&ops::system(&state, &caller, &id).await?)))
}

#[utoipa::path(put, path = "/systems/{id}", tag = "systems", request_body = schemas::SystemInput, params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "Saved", body = schemas::System),
        (status = 409, description = "Refused (the name is taken, or the role would change under a target)", body = ErrorBody)))]
pub async fn replace_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(input): JsonBody<SystemInput>,
) -> Result<Response, ApiError> {
    let system = ops::replace_system(&state, &caller, &id, input).await?;
    Ok(saved(&system, StatusCode::OK))
}

#[utoipa::path(delete, path = "/systems/{id}", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 204, description = "Removed"),
        (status = 409, description = "A target receives from it, or a run of it is under way", body = ErrorBody)))]
pub async fn delete_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    ops::delete_system(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/systems/{id}/enable`: the system as it is now.
#[utoipa::path(post, path = "/systems/{id}/enable", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "The system as it is now", body = schemas::System)))]
pub async fn enable_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let system = ops::set_system_enabled(&state, &caller, &id, true).await?;
    Ok(saved(&system, StatusCode::OK))
}

/// `POST /api/v1/systems/{id}/disable`: the system as it is now.
#[utoipa::path(post, path = "/systems/{id}/disable", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "The system as it is now", body = schemas::System)))]
pub async fn disable_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let system = ops::set_system_enabled(&state, &caller, &id, false).await?;
    Ok(saved(&system, StatusCode::OK))
}

/// `POST /api/v1/systems/{id}/release`: ends the target's quarantine; the system as it is now, with the
/// quarantine that ended as `released`.
#[utoipa::path(post, path = "/systems/{id}/release", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "The system as it is now, with the quarantine that ended as `released`", body = schemas::System),
        (status = 409, description = "The system is not quarantined", body = ErrorBody)))]
pub async fn release_system(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let (system, ended) = ops::release_system(&state, &caller, &id).await?;
    let mut body = serde_json::to_value(SystemView::from(&system)).unwrap_or(Value::Null);
    if let Some(object) = body.as_object_mut() {
        object.insert("released".into(), json!(ended));
        object.insert(
            "message".into(),
            json!(format!("System {} was released from quarantine.", system.spec.name)),
        );
    }
    Ok(Json(body))
}

#[utoipa::path(post, path = "/systems/{id}/test-connection", tag = "systems", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "Whether the system answered and took the credentials", body = schemas::ConnectionCheck)))]
pub async fn test_connection(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let check = ops::test_connection(&state, &caller, &id).await?;
    Ok(Json(json!(check)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransformationTest {
    /// The transformation document (SAP's JSON mapping language).
    #[schema(value_type = Object)]
    transformation: Value,
    /// The entity it runs on.
    #[schema(value_type = Object)]
    entity: Value,
    /// The entity type in the transformation (`user` when absent).
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

#[utoipa::path(post, path = "/transformations/test", tag = "systems", request_body = TransformationTest,
    responses((status = 200, description = "The transformed entity (and the trace when asked)", body = Value)))]
pub async fn test_transformation(
    caller: Caller,
    JsonBody(input): JsonBody<TransformationTest>,
) -> Result<Response, ApiError> {
    // A transformation maps the attributes of an entity: anything else is a mistake, not an empty entity.
    if !input.entity.is_object() {
        return Err(ApiError::bad_request("entity must be a JSON object"));
    }
    let run = crate::transform_test::TransformTest {
        transformation: input.transformation,
        entity: input.entity,
        entity_type: input.entity_type,
        properties: input.properties,
        operation: input.operation,
        trace: input.trace,
    };
    let outcome = ops::test_transformation(&caller, &run)?;
    Ok(Json(outcome).into_response())
}
