//! The real-time provisioning API (`/ipsproxy/api/v1/systems/{source}/entities/{user,group}[/{id}]`, also
//! under `/ipsproxy/service/api/v1/…`) and the real-time log for admins. Pushes answer once the event is
//! on disk; every refusal is an RFC 7644 error body.

// Helpers return the SCIM error answer itself as their `Err`; it is answered at once, never stored, so its
// size does not matter.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, PeerCertificate, authenticate_at};
use super::error::{ApiError, PathParams, QueryParams};
use super::schemas;
use crate::connector::EntityKind;
use crate::proxy::error::ScimError;
use crate::realtime::events::{self, Refusal};
use crate::store::principals::{Permission, Principal};
use crate::store::realtime::NewEvent;
use crate::store::systems::Role;

/// An RFC 7644 §3.12 error answer (the proxy's [`ScimError`], so both SCIM surfaces answer alike).
pub fn scim_error(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Response {
    ScimError::new(status, scim_type, detail).into_http().into_response()
}

fn refused(r: Refusal) -> Response {
    scim_error(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        r.scim_type,
        r.detail,
    )
}

/// The pushing technical user, with the real-time permission.
async fn pusher(state: &AppState, headers: &HeaderMap, peer: &PeerCertificate) -> Result<Principal, Response> {
    let principal = authenticate_at(state, headers, peer.0.as_ref(), peer.1)
        .await
        .map_err(|f| {
            let mut e = ScimError::new(f.status(), None, f.message());
            e.retry_after = f.retry_after();
            e.into_http().into_response()
        })?;
    if !principal.may(Permission::RealtimeApi) {
        return Err(scim_error(
            StatusCode::FORBIDDEN,
            None,
            format!("{} lacks the permission realtime-api", principal.name),
        ));
    }
    Ok(principal)
}

/// The source system, if it takes pushes; and whether it speaks IAS SCIM 1.0.
async fn push_source(state: &AppState, source: &str) -> Result<bool, Response> {
    let system = match state.realtime.source_system(source).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(scim_error(
                StatusCode::NOT_FOUND,
                None,
                format!("no source system with id {source}"),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up the source of a push");
            return Err(scim_error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the source system cannot be looked up now: the database does not answer; try again",
            ));
        }
    };
    if system.spec.role != Role::Source {
        return Err(scim_error(
            StatusCode::NOT_FOUND,
            None,
            format!("{} is not a source system", system.spec.name),
        ));
    }
    if !system.enabled {
        return Err(scim_error(
            StatusCode::CONFLICT,
            None,
            format!(
                "{} is disabled; enable it (POST /api/v1/systems/{source}/enable) to push changes",
                system.spec.name
            ),
        ));
    }
    let props = &system.spec.properties;
    if props
        .get("ips.realtime.enabled")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        return Err(scim_error(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "real-time provisioning is disabled for {} (ips.realtime.enabled=false)",
                system.spec.name
            ),
        ));
    }
    Ok(props.get("ias.api.version").is_some_and(|v| v.trim() == "1"))
}

fn kind_of(segment: &str) -> Result<EntityKind, Response> {
    match segment {
        "user" | "users" | "Users" => Ok(EntityKind::User),
        "group" | "groups" | "Groups" => Ok(EntityKind::Group),
        other => Err(scim_error(
            StatusCode::NOT_FOUND,
            None,
            format!("unknown entity type {other:?}; use user or group"),
        )),
    }
}

async fn queue(
    state: &AppState,
    principal: &Principal,
    source: &str,
    kind: EntityKind,
    entity_id: String,
    operation: &str,
    body: Option<Value>,
) -> Result<(), Response> {
    state
        .realtime
        .accept(NewEvent {
            source_id: source.to_string(),
            kind: kind.as_str().to_string(),
            entity_id,
            operation: operation.to_string(),
            body,
            received_by: principal.name.clone(),
        })
        .await
        .map(|_| ())
        .map_err(|e| scim_error(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()))
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    response
}

/// `POST …/entities/{user,group}`: a create.
pub async fn create(
    State(state): State<AppState>,
    Path((source, kind)): Path<(String, String)>,
    headers: HeaderMap,
    peer: PeerCertificate,
    body: Bytes,
) -> Response {
    let principal = match pusher(&state, &headers, &peer).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = async {
        let kind = kind_of(&kind)?;
        let v1 = push_source(&state, &source).await?;
        let entity = events::entity(kind, &body, None, v1).map_err(refused)?;
        let id = entity.get("id").and_then(events::id_text).unwrap_or_default();
        queue(&state, &principal, &source, kind, id, "create", Some(entity.clone())).await?;
        Ok::<_, Response>(scim_json(StatusCode::CREATED, entity))
    }
    .await;
    result.unwrap_or_else(|r| r)
}

/// `PUT …/entities/{kind}/{id}`: a replace.
pub async fn replace(
    State(state): State<AppState>,
    Path((source, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    peer: PeerCertificate,
    body: Bytes,
) -> Response {
    let principal = match pusher(&state, &headers, &peer).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = async {
        let kind = kind_of(&kind)?;
        events::check_id(&id).map_err(refused)?;
        let v1 = push_source(&state, &source).await?;
        let entity = events::entity(kind, &body, Some(&id), v1).map_err(refused)?;
        queue(&state, &principal, &source, kind, id, "replace", Some(entity.clone())).await?;
        Ok::<_, Response>(scim_json(StatusCode::OK, entity))
    }
    .await;
    result.unwrap_or_else(|r| r)
}

/// `PATCH …/entities/{kind}/{id}`: an RFC 7644 PatchOp.
pub async fn patch(
    State(state): State<AppState>,
    Path((source, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    peer: PeerCertificate,
    body: Bytes,
) -> Response {
    let principal = match pusher(&state, &headers, &peer).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = async {
        let kind = kind_of(&kind)?;
        events::check_id(&id).map_err(refused)?;
        push_source(&state, &source).await?;
        let doc = events::patch(&body).map_err(refused)?;
        queue(&state, &principal, &source, kind, id, "patch", Some(doc)).await?;
        Ok::<_, Response>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(|r| r)
}

/// `DELETE …/entities/{kind}/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path((source, kind, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    peer: PeerCertificate,
) -> Response {
    let principal = match pusher(&state, &headers, &peer).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = async {
        let kind = kind_of(&kind)?;
        events::check_id(&id).map_err(refused)?;
        push_source(&state, &source).await?;
        queue(&state, &principal, &source, kind, id, "delete", None).await?;
        Ok::<_, Response>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(|r| r)
}

/// `GET …/entities/{kind}`: the API only receives; the answer tells a client that checks the endpoint (Test
/// Connection of a pushing system) that it exists and took the credentials.
pub async fn probe(
    State(state): State<AppState>,
    Path((source, kind)): Path<(String, String)>,
    headers: HeaderMap,
    peer: PeerCertificate,
) -> Response {
    if let Err(r) = pusher(&state, &headers, &peer).await {
        return r;
    }
    if let Err(r) = kind_of(&kind) {
        return r;
    }
    if let Err(r) = push_source(&state, &source).await {
        return r;
    }
    scim_error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "the real-time provisioning API receives pushes (POST, PUT, PATCH, DELETE); it cannot be read",
    )
}

/// The filters of `GET /api/v1/realtime/events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this source's events.
    source: Option<String>,
    /// Only events in this state (`pending`, `done`, `failed`, `parked`).
    state: Option<String>,
    /// Events before this sequence number (paging).
    before: Option<i64>,
    /// At most this many (100 when absent).
    limit: Option<i64>,
}

/// `GET /api/v1/realtime/events`: the real-time log, newest first.
#[utoipa::path(get, path = "/realtime/events", tag = "realtime", params(EventQuery),
    responses((status = 200, description = "The real-time log, newest first", body = Vec<schemas::Event>)))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<EventQuery>,
) -> Result<Json<Value>, ApiError> {
    let events = super::ops::events(
        &state,
        &caller,
        q.source.as_deref(),
        q.state.as_deref(),
        q.before,
        q.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(json!(events)))
}

/// `GET /api/v1/realtime/events/{seq}`.
#[utoipa::path(get, path = "/realtime/events/{seq}", tag = "realtime", params(("seq" = i64, Path, description = "The event's sequence number")),
    responses((status = 200, description = "The event with its results per target", body = schemas::Event)))]
pub async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(seq): PathParams<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(super::ops::event(&state, &caller, seq).await?)))
}

/// `POST /api/v1/realtime/events/{seq}/retry`: re-drives a parked or failed event.
#[utoipa::path(post, path = "/realtime/events/{seq}/retry", tag = "realtime", params(("seq" = i64, Path, description = "The event's sequence number")),
    responses((status = 202, description = "Queued again"),
        (status = 409, description = "The event is not parked or failed", body = schemas::ErrorBody)))]
pub async fn retry_event(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(seq): PathParams<i64>,
) -> Result<Response, ApiError> {
    super::ops::retry_event(&state, &caller, seq).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
