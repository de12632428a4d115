//! The HTTP surface: the admin API under `/api/v1`, `/oauth2/token`, `/healthz`, `/readyz` and `/metrics`, and
//! the web console under `/console` ([`crate::console`]).
//! Handlers are thin: they authenticate, check a permission, and call the domain modules.

pub mod audit;
#[cfg(test)]
mod audit_tests;
pub mod auth;
pub mod error;
mod handlers;
pub mod history;
#[cfg(test)]
pub(crate) mod history_tests;
mod jobs;
pub mod login_guard;
#[cfg(test)]
mod login_tests;
pub mod notify;
pub mod ops;
#[cfg(test)]
mod password_tests;
pub mod realtime;
#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use crate::state::AppState;

/// Largest plugin component accepted by upload.
pub use crate::plugins::MAX_PLUGIN_BYTES;

/// The router of the whole service.
pub fn router(state: AppState) -> Router {
    use handlers::*;
    let api = Router::new()
        .route(
            "/technical-users",
            post(create_technical_user).get(list_technical_users),
        )
        .route("/technical-users/{id}", axum::routing::delete(delete_technical_user))
        .route(
            "/technical-users/{id}/password",
            axum::routing::put(set_technical_user_password),
        )
        .route("/login-locks", get(list_login_locks))
        .route("/login-locks/{scope}/{subject}", axum::routing::delete(unlock_login))
        .route("/connectors", get(list_connectors))
        .route(
            "/plugins",
            get(list_plugins)
                .post(upload_plugin)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/plugins/{name}/rollback", post(rollback_plugin))
        .route("/plugins/{name}/activate", post(activate_plugin))
        .route("/plugins/{name}/{version}", axum::routing::delete(delete_plugin))
        .route("/systems", post(create_system).get(list_systems))
        .route(
            "/systems/{id}",
            get(get_system).put(replace_system).delete(delete_system),
        )
        .route("/systems/{id}/test-connection", post(test_connection))
        .route("/systems/{id}/release", post(release_system))
        .route("/systems/{id}/enable", post(handlers::enable_system))
        .route("/systems/{id}/disable", post(handlers::disable_system))
        .route("/systems/{id}/jobs", post(jobs::start_job).get(jobs::list_jobs))
        .route(
            "/systems/{id}/schedule",
            get(jobs::get_schedule)
                .put(jobs::put_schedule)
                .delete(jobs::delete_schedule),
        )
        .route("/systems/{id}/provision-one", post(jobs::provision_one))
        .route("/systems/{id}/reset", post(jobs::reset_source))
        .route("/systems/{id}/export", get(crate::proxy::export::export))
        .route("/jobs/{id}", get(jobs::get_job))
        .route("/jobs/{id}/stop", post(jobs::stop_job))
        .route("/jobs/{id}/entities", get(jobs::job_entities))
        .route("/jobs/{id}/held-deletes", get(jobs::held_deletes))
        .route("/jobs/{id}/held-deletes/{decision}", post(jobs::decide_deletes))
        .route("/transformations/test", post(test_transformation))
        .route("/systems/{id}/transformation/versions", get(history::list_versions))
        .route("/systems/{id}/transformation/versions/{n}", get(history::get_version))
        .route(
            "/systems/{id}/transformation/versions/{n}/rollback",
            post(history::post_rollback),
        )
        .route("/systems/{id}/transformation/diff", get(history::get_diff))
        .route("/audit", get(audit::list))
        .route("/audit/export", get(audit::export))
        .route(
            "/notifications/subscriptions",
            post(notify::create_subscription).get(notify::list_subscriptions),
        )
        .route(
            "/notifications/subscriptions/{id}",
            get(notify::get_subscription)
                .put(notify::replace_subscription)
                .delete(notify::delete_subscription),
        )
        .route(
            "/notifications/subscriptions/{id}/test",
            post(notify::test_subscription),
        )
        .route("/notifications/deliveries", get(notify::list_deliveries));
    // The real-time API at SAP's paths, with and without `/service`.
    let realtime_api = Router::new()
        .route(
            "/systems/{source}/entities/{kind}",
            post(realtime::create).get(realtime::probe),
        )
        .route(
            "/systems/{source}/entities/{kind}/{id}",
            axum::routing::put(realtime::replace)
                .patch(realtime::patch)
                .delete(realtime::delete),
        );
    let api = api
        .route("/realtime/events", get(realtime::list_events))
        .route("/realtime/events/{seq}", get(realtime::get_event))
        .route("/realtime/events/{seq}/retry", post(realtime::retry_event));
    Router::new()
        .nest("/api/v1", api)
        .nest("/ipsproxy/api/v1/scim", crate::proxy::router())
        .nest("/ipsproxy/service/api/v1/scim", crate::proxy::router())
        .nest("/ipsproxy/api/v1", realtime_api.clone())
        .nest("/ipsproxy/service/api/v1", realtime_api)
        .route("/oauth2/token", post(auth::token))
        .route("/healthz", get(healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(metrics))
        // The web console (`/` leads to it), on the same operations as the API.
        .merge(crate::console::router(state.clone()))
        .layer(middleware::from_fn(observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(300),
        ))
        .with_state(state)
}

/// Counts every request by its route template (never by raw path, which carries ids).
async fn observe(request: Request, next: Next) -> Response {
    // Known methods only: arbitrary extension methods must not mint new metric series.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    crate::metrics::http_request(&method, &route, response.status().as_u16());
    response
}
