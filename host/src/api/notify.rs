//! Notification endpoints (admins only): subscriptions under `/api/v1/notifications/subscriptions`, a test
//! send, and the delivery log at `/api/v1/notifications/deliveries`.
//!
//! A webhook subscription's secret is write-only: it is taken on POST and PUT (a PUT without one keeps the
//! one set) and never answered — but when a POST sets none, one is generated and answered once, in that
//! POST's answer (`secret`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody, PathParams, QueryParams};
use super::schemas;
use crate::notify::{EVENT_KINDS, NotifyError};
use crate::store::notifications::{Channel, Delivery, Subscription, SubscriptionSpec};
use crate::store::principals::PrincipalKind;

/// Default `backlogMinutes`.
pub const DEFAULT_BACKLOG_MINUTES: u32 = 15;

/// The shortest webhook secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Fails with 403 unless the caller is an admin.
fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.kind == PrincipalKind::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} is not an admin; notifications are managed by admins",
            caller.0.name
        )))
    }
}

/// A subscription as the API shows it (never with its secret).
pub fn subscription_view(s: &Subscription) -> Value {
    let mut view = json!({
        "id": s.id,
        "systemId": s.spec.system_id,
        "kinds": s.spec.kinds,
        "channel": s.spec.channel.name(),
        "backlogMinutes": s.spec.backlog_minutes,
        "description": s.spec.description,
        "hasSecret": s.has_secret,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
    });
    match &s.spec.channel {
        Channel::Webhook { url } => view["url"] = json!(url),
        Channel::Email { recipients } => view["recipients"] = json!(recipients),
    }
    view
}

/// A delivery as the API shows it: its state, the notification, and every attempt.
pub fn delivery_view(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "idempotencyKey": d.id,
        "subscriptionId": d.subscription_id,
        "channel": d.channel,
        "kind": d.kind,
        "status": d.status,
        "summary": d.payload["summary"],
        "createdAt": d.created_at,
        "nextAttemptAt": d.next_attempt_at,
        "finishedAt": d.finished_at,
        "attempts": d.attempts,
        "notification": d.payload,
    })
}

/// The body of POST and PUT.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    /// The source system it is about; every system when absent.
    #[serde(default)]
    system_id: Option<String>,
    /// The event kinds (at least one): `job.failed`, `job.finished_with_errors`, `job.recovered`, `deletes.held`,
    /// `target.quarantined`, `plugin.trapping`, `realtime.backlog`.
    #[serde(default)]
    #[schema(value_type = Vec<schemas::EventKind>, min_items = 1)]
    kinds: Vec<String>,
    /// `webhook` or `email`.
    #[schema(value_type = schemas::ChannelName)]
    channel: String,
    /// A webhook's http(s) URL.
    #[serde(default)]
    url: Option<String>,
    /// An e-mail subscription's recipients.
    #[serde(default)]
    recipients: Option<Vec<String>>,
    /// A webhook's HMAC secret (16 characters or more; write-only).
    #[serde(default)]
    secret: Option<String>,
    /// For `realtime.backlog`: how old the backlog may grow, in minutes (15 when absent).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10080)]
    backlog_minutes: Option<u32>,
    /// Free text.
    #[serde(default)]
    description: Option<String>,
}

/// Checks a body and makes the settings of it; answers the secret given, if any.
async fn spec_of(state: &AppState, body: SubscriptionBody) -> Result<(SubscriptionSpec, Option<String>), ApiError> {
    if body.kinds.is_empty() {
        return Err(ApiError::bad_request(format!(
            "kinds must name at least one event kind of: {}",
            EVENT_KINDS.join(", ")
        )));
    }
    let mut kinds: Vec<String> = Vec::new();
    for k in body.kinds {
        if !EVENT_KINDS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown event kind {k:?}; the kinds are: {}",
                EVENT_KINDS.join(", ")
            )));
        }
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let system_id = body.system_id.filter(|s| !s.trim().is_empty());
    if let Some(id) = &system_id
        && state.stores.systems.get(id).await?.is_none()
    {
        return Err(ApiError::bad_request(format!("no system with id {id}")));
    }
    let backlog_minutes = body.backlog_minutes.unwrap_or(DEFAULT_BACKLOG_MINUTES);
    if !(1..=10_080).contains(&backlog_minutes) {
        return Err(ApiError::bad_request("backlogMinutes must be from 1 to 10080 (a week)"));
    }
    let channel = match body.channel.as_str() {
        "webhook" => {
            if body.recipients.is_some() {
                return Err(ApiError::bad_request("a webhook has a url, not recipients"));
            }
            let url = body.url.ok_or_else(|| ApiError::bad_request("a webhook needs a url"))?;
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => {}
                _ => return Err(ApiError::bad_request(format!("url {url:?} is not an http(s) URL"))),
            }
            if let Some(secret) = &body.secret
                && secret.chars().count() < MIN_SECRET_LEN
            {
                return Err(ApiError::bad_request(format!(
                    "the secret must be at least {MIN_SECRET_LEN} characters"
                )));
            }
            Channel::Webhook { url }
        }
        "email" => {
            if body.url.is_some() || body.secret.is_some() {
                return Err(ApiError::bad_request(
                    "an e-mail subscription has recipients, not a url or a secret",
                ));
            }
            let recipients = body.recipients.unwrap_or_default();
            if recipients.is_empty() {
                return Err(ApiError::bad_request(
                    "an e-mail subscription needs at least one recipient",
                ));
            }
            for r in &recipients {
                crate::notify::email::check_mailbox(r).map_err(ApiError::bad_request)?;
            }
            Channel::Email { recipients }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "channel {other:?} is not one of webhook, email"
            )));
        }
    };
    Ok((
        SubscriptionSpec {
            system_id,
            kinds,
            channel,
            backlog_minutes,
            description: body.description.unwrap_or_default(),
        },
        body.secret,
    ))
}

/// A random secret for a webhook created without one.
fn generated_secret() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// `POST /api/v1/notifications/subscriptions`: 201 with the subscription (and the generated secret, once).
#[utoipa::path(post, path = "/notifications/subscriptions", tag = "notifications", request_body = SubscriptionBody,
    responses((status = 201, description = "Created (a webhook given no secret answers a generated one, once)", body = schemas::Subscription)))]
pub async fn create_subscription(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let (spec, secret) = spec_of(&state, body).await?;
    let generated = match (&spec.channel, &secret) {
        (Channel::Webhook { .. }, None) => Some(generated_secret()),
        _ => None,
    };
    let created = state
        .stores
        .notifications
        .create_subscription(&spec, secret.as_deref().or(generated.as_deref()))
        .await
        .map_err(not_found_is_bad_request)?;
    let mut view = subscription_view(&created);
    if let Some(secret) = generated {
        view["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A system removed between the check and the write.
fn not_found_is_bad_request(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::NotFound(m) => ApiError::bad_request(m),
        e => e.into(),
    }
}

/// `GET /api/v1/notifications/subscriptions`.
#[utoipa::path(get, path = "/notifications/subscriptions", tag = "notifications",
    responses((status = 200, description = "Every subscription", body = Vec<schemas::Subscription>)))]
pub async fn list_subscriptions(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let all = state.stores.notifications.subscriptions().await?;
    Ok(Json(Value::Array(all.iter().map(subscription_view).collect())))
}

/// `GET /api/v1/notifications/subscriptions/{id}`.
#[utoipa::path(get, path = "/notifications/subscriptions/{id}", tag = "notifications", params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "The subscription", body = schemas::Subscription)))]
pub async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let found = state
        .stores
        .notifications
        .subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no subscription with id {id}")))?;
    Ok(Json(subscription_view(&found)))
}

/// `PUT /api/v1/notifications/subscriptions/{id}`: replaces its settings; without `secret` the secret stays.
#[utoipa::path(put, path = "/notifications/subscriptions/{id}", tag = "notifications", request_body = SubscriptionBody, params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "Saved (a webhook given no secret keeps its own)", body = schemas::Subscription)))]
pub async fn replace_subscription(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let current = state
        .stores
        .notifications
        .subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no subscription with id {id}")))?;
    let (spec, secret) = spec_of(&state, body).await?;
    if matches!(spec.channel, Channel::Webhook { .. }) && secret.is_none() && !current.has_secret {
        return Err(ApiError::bad_request(
            "this subscription becomes a webhook: give it a secret",
        ));
    }
    let updated = state
        .stores
        .notifications
        .update_subscription(&id, &spec, secret.as_deref())
        .await
        .map_err(not_found_is_bad_request)?
        .ok_or_else(|| ApiError::not_found(format!("no subscription with id {id}")))?;
    Ok(Json(subscription_view(&updated)))
}

/// `DELETE /api/v1/notifications/subscriptions/{id}`: 204; its deliveries go with it.
#[utoipa::path(delete, path = "/notifications/subscriptions/{id}", tag = "notifications", params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Removed")))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if state.stores.notifications.delete_subscription(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no subscription with id {id}")))
    }
}

/// `POST /api/v1/notifications/subscriptions/{id}/test`: sends a test notification now (one attempt) and
/// answers its delivery: `status` `delivered` or `failed`, with the attempt's response code and error.
#[utoipa::path(post, path = "/notifications/subscriptions/{id}/test", tag = "notifications", params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "The test delivery, sent", body = schemas::Delivery)))]
pub async fn test_subscription(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let delivery = state.notifier.test(&id).await.map_err(|e| match e {
        NotifyError::NotFound(m) => ApiError::not_found(m),
        NotifyError::Store(e) => e.into(),
    })?;
    Ok(Json(delivery_view(&delivery)))
}

/// The filters of the delivery log.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this subscription's deliveries.
    subscription: Option<String>,
    /// At most this many (100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// `GET /api/v1/notifications/deliveries?subscription=..&limit=..`: newest first, with every attempt.
#[utoipa::path(get, path = "/notifications/deliveries", tag = "notifications", params(DeliveryQuery),
    responses((status = 200, description = "The delivery log, newest first", body = Vec<schemas::Delivery>)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be from 1 to 1000"));
    }
    let deliveries = state
        .stores
        .notifications
        .deliveries(q.subscription.as_deref().filter(|s| !s.is_empty()), limit)
        .await?;
    Ok(Json(Value::Array(deliveries.iter().map(delivery_view).collect())))
}
