//! Job endpoints: start (or simulate) a run on a source, watch it, stop it, read its per-entity log,
//! decide on held deletes, schedules, single-entity provisioning, and reset of a source's links.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody, PathParams, QueryParams, RawBody};
use super::ops;
use super::schemas::{self, ErrorBody};
use crate::store::jobs::{HeldKey, JobRecord, ScheduleRecord};

/// A run as the API shows it: the record with its summary (statistics, outcome, progress) spread out.
pub fn job_view(job: &JobRecord) -> Value {
    let mut view = json!({
        "id": job.id,
        "sourceId": job.source_id,
        "type": job.job_type,
        "readMode": job.read_mode,
        "trigger": job.trigger,
        "startedBy": job.started_by,
        "status": job.status,
        "startedAt": job.started_at,
        "endedAt": job.ended_at,
        "node": job.node,
        "attempt": job.attempt,
    });
    if let (Some(view), Some(summary)) = (view.as_object_mut(), job.summary.as_object()) {
        for (k, v) in summary {
            view.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    view
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartJob {
    /// `read` or `resync`.
    #[serde(rename = "type", default = "read")]
    #[schema(value_type = schemas::JobType)]
    job_type: String,
    #[serde(default)]
    simulate: bool,
}

fn read() -> String {
    "read".into()
}

#[utoipa::path(post, path = "/systems/{id}/jobs", tag = "jobs", request_body = StartJob, params(("id" = String, Path, description = "The source system's id")),
    responses((status = 202, description = "Started (or queued behind a running one)", body = schemas::Job),
        (status = 409, description = "The source is disabled, or not a source", body = ErrorBody)))]
pub async fn start_job(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
    JsonBody(input): JsonBody<StartJob>,
) -> Result<Response, ApiError> {
    let job = ops::start_job(&state, &caller, &source, &input.job_type, input.simulate).await?;
    Ok((StatusCode::ACCEPTED, Json(job_view(&job))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many runs (50 when absent).
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/systems/{id}/jobs", tag = "jobs", params(("id" = String, Path, description = "The source system's id"), ListQuery),
    responses((status = 200, description = "The source's runs, newest first", body = Vec<schemas::Job>)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let jobs = ops::jobs(&state, &caller, Some(&source), q.limit.unwrap_or(50)).await?;
    Ok(Json(Value::Array(jobs.iter().map(job_view).collect())))
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "Status, statistics, outcome, progress", body = schemas::Job)))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_view(&ops::job(&state, &caller, &id).await?)))
}

#[utoipa::path(post, path = "/jobs/{id}/stop", tag = "jobs", params(("id" = String, Path, description = "The run's id")),
    responses((status = 202, description = "Asked to stop at the next entity boundary", body = schemas::Job),
        (status = 409, description = "The run has ended", body = ErrorBody)))]
pub async fn stop_job(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let job = ops::stop_job(&state, &caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(job_view(&job))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines of this outcome (`success`, `failed`, `skipped`, `held`, `planned`).
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/jobs/{id}/entities", tag = "jobs", params(("id" = String, Path, description = "The run's id"), LogQuery),
    responses((status = 200, description = "A page of the per-entity log", body = schemas::LogPage)))]
pub async fn job_entities(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let entries = ops::job_log(&state, &caller, &id, q.outcome.as_deref(), q.after.unwrap_or(0), limit).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"entries": entries, "nextAfter": next})))
}

#[utoipa::path(get, path = "/jobs/{id}/held-deletes", tag = "jobs", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "The deletes a threshold held back", body = Vec<schemas::HeldDelete>)))]
pub async fn held_deletes(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(ops::held_deletes(&state, &caller, &id).await?)))
}

/// Which held deletes a decision is about: `{"entities": [{"targetId", "entityType", "sourceId"}, …]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldSelection {
    pub entities: Vec<HeldKey>,
}

/// The selection in a decision's body: `None` (every pending delete) when the body is empty.
pub fn held_selection(body: &[u8]) -> Result<Option<Vec<HeldKey>>, ApiError> {
    // An empty body, or `null`, decides on every pending delete.
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(None);
    }
    let selection: HeldSelection = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid JSON body: {e}; expected {{\"entities\": [{{\"targetId\": …, \"entityType\": …, \"sourceId\": …}}]}}"
        ))
    })?;
    Ok(Some(selection.entities))
}

/// `POST /api/v1/jobs/{id}/held-deletes/approve|reject`, with an optional body naming the entities.
#[utoipa::path(post, path = "/jobs/{id}/held-deletes/{decision}", tag = "jobs",
    params(("id" = String, Path, description = "The run's id"), ("decision" = schemas::Decision, Path, description = "`approve` or `reject`")),
    request_body(description = "The entities decided; all held deletes of the run when empty",
        content = Option<schemas::HeldSelection>),
    responses((status = 200, description = "What was decided and done", body = Value),
        (status = 409, description = "The run has not ended, or nothing is pending", body = ErrorBody)))]
pub async fn decide_deletes(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, decision)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let only = held_selection(&body)?;
    Ok(Json(
        ops::decide_deletes(&state, &caller, &id, &decision, only.as_deref()).await?,
    ))
}

#[utoipa::path(put, path = "/systems/{id}/schedule", tag = "jobs", request_body = schemas::Schedule, params(("id" = String, Path, description = "The source system's id")),
    responses((status = 200, description = "The schedule as set and its next run", body = schemas::ScheduleSet)))]
pub async fn put_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
    JsonBody(input): JsonBody<ScheduleRecord>,
) -> Result<Json<Value>, ApiError> {
    let (schedule, next) = ops::set_schedule(&state, &caller, &source, input).await?;
    Ok(Json(json!({"schedule": schedule, "nextRun": next})))
}

#[utoipa::path(get, path = "/systems/{id}/schedule", tag = "jobs", params(("id" = String, Path, description = "The source system's id")),
    responses((status = 200, description = "The schedule", body = schemas::Schedule)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    ops::schedule(&state, &caller, &source)
        .await?
        .map(|s| Json(json!(s)))
        .ok_or_else(|| ApiError::not_found("this system has no schedule"))
}

#[utoipa::path(delete, path = "/systems/{id}/schedule", tag = "jobs", params(("id" = String, Path, description = "The source system's id")),
    responses((status = 204, description = "Removed")))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    ops::delete_schedule(&state, &caller, &source).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProvisionOne {
    #[serde(default = "user")]
    #[schema(value_type = schemas::EntityType)]
    entity_type: String,
    id: String,
    #[serde(default)]
    simulate: bool,
}

fn user() -> String {
    "user".into()
}

#[utoipa::path(post, path = "/systems/{id}/provision-one", tag = "jobs", request_body = ProvisionOne, params(("id" = String, Path, description = "The source system's id")),
    responses((status = 200, description = "Each step, per target", body = Value)))]
pub async fn provision_one(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
    JsonBody(input): JsonBody<ProvisionOne>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        ops::provision_one(&state, &caller, &source, &input.entity_type, &input.id, input.simulate).await?,
    ))
}

#[utoipa::path(post, path = "/systems/{id}/reset", tag = "jobs", params(("id" = String, Path, description = "The source system's id")),
    responses((status = 200, description = "The links forgotten", body = schemas::ResetAnswer),
        (status = 409, description = "A run of the source is under way", body = ErrorBody)))]
pub async fn reset_source(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(source): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let n = ops::reset_source(&state, &caller, &source).await?;
    Ok(Json(json!({"linksRemoved": n})))
}
