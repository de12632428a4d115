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
pub mod openapi;
#[cfg(test)]
mod openapi_tests;
pub mod ops;
#[cfg(test)]
mod password_tests;
pub mod realtime;
#[cfg(test)]
mod routes_tests;
pub mod schemas;
#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use crate::state::AppState;

/// Largest plugin component accepted by upload.
pub use crate::plugins::MAX_PLUGIN_BYTES;

/// Every operation of the admin API (`/api/v1`), and `/oauth2/token`, `/healthz`, `/readyz`, `/metrics`: the one
/// list both the router and the OpenAPI document ([`openapi`]) are made from.
pub fn api_routes() -> OpenApiRouter<AppState> {
    use handlers::*;
    let v1 = OpenApiRouter::new()
        .routes(routes!(create_technical_user, list_technical_users))
        .routes(routes!(delete_technical_user))
        .routes(routes!(set_technical_user_password))
        .routes(routes!(list_login_locks))
        .routes(routes!(unlock_login))
        .routes(routes!(list_connectors))
        .routes(routes!(list_plugins, upload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)))
        .routes(routes!(rollback_plugin))
        .routes(routes!(activate_plugin))
        .routes(routes!(delete_plugin))
        .routes(routes!(create_system, list_systems))
        .routes(routes!(get_system, replace_system, delete_system))
        .routes(routes!(test_connection))
        .routes(routes!(release_system))
        .routes(routes!(enable_system))
        .routes(routes!(disable_system))
        .routes(routes!(jobs::start_job, jobs::list_jobs))
        .routes(routes!(jobs::get_schedule, jobs::put_schedule, jobs::delete_schedule))
        .routes(routes!(jobs::provision_one))
        .routes(routes!(jobs::reset_source))
        .routes(routes!(crate::proxy::export::export))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::stop_job))
        .routes(routes!(jobs::job_entities))
        .routes(routes!(jobs::held_deletes))
        .routes(routes!(jobs::decide_deletes))
        .routes(routes!(test_transformation))
        .routes(routes!(history::list_versions))
        .routes(routes!(history::get_version))
        .routes(routes!(history::post_rollback))
        .routes(routes!(history::get_diff))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(notify::create_subscription, notify::list_subscriptions))
        .routes(routes!(
            notify::get_subscription,
            notify::replace_subscription,
            notify::delete_subscription
        ))
        .routes(routes!(notify::test_subscription))
        .routes(routes!(notify::list_deliveries))
        .routes(routes!(realtime::list_events))
        .routes(routes!(realtime::get_event))
        .routes(routes!(realtime::retry_event))
        .routes(routes!(openapi::openapi_json));
    OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", v1)
        .routes(routes!(auth::token))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The router of the whole service.
pub fn router(state: AppState) -> Router {
    // Methods a path of the API does not take, and paths under /api/v1 that name no operation, are answered
    // in the API's error shape (axum's own answers are empty or plain text).
    let api = Router::from(api_routes())
        .route("/api/v1/{*rest}", any(error::no_such_path))
        .method_not_allowed_fallback(error::no_such_method);
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
    api.merge(crate::proxy::router())
        .nest("/ipsproxy/api/v1", realtime_api.clone())
        .nest("/ipsproxy/service/api/v1", realtime_api)
        // The web console (`/` leads to it), on the same operations as the API.
        .merge(crate::console::router(state.clone()))
        .fallback(no_route)
        .layer(middleware::from_fn(observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(300),
        ))
        .with_state(state)
}

/// A path no route takes: SCIM's 404 under the proxy's prefixes, elsewhere an empty 404 (axum's own).
async fn no_route(uri: axum::http::Uri) -> Response {
    if crate::proxy::serves(uri.path()) {
        crate::proxy::unknown_endpoint().await.into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// Counts every request by its route template (never by raw path, which carries ids).
async fn observe(request: Request, next: Next) -> Response {
    // Known methods only: arbitrary extension methods must not mint new metric series.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    // The route's template is shared (`MatchedPath` holds an `Arc<str>`): kept without a copy.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::metrics::http_request(method, route, response.status().as_u16());
    response
}
