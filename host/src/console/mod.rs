//! The web console under `/console`: server-rendered HTML (askama templates in `host/templates/console/`,
//! escaped by default) with htmx 2 and its SSE extension for live progress, both vendored and embedded in the
//! binary. It calls the same admin operations as the JSON API ([`crate::api::ops`]), with the same
//! permission checks; it only renders their answers.
//!
//! - [`session`]: login sessions (the bearer-token machinery, so they work on every replica), CSRF.
//! - [`overview`]: the first page — running jobs live, systems in trouble, held deletes, real-time backlog,
//!   plugins.
//! - [`jobs`]: start, watch (server-sent events), stop, statistics, the per-entity log and its download.
//! - [`held`]: deletes a threshold held back, approve or reject.
//! - [`ondemand`]: one source entity through every step, simulated or for real.
//! - [`systems`]: systems by role, add and edit with the connector's properties, Test Connection, delete.
//! - [`transform`]: a system's transformation — JSON editor, reset, and a playground with the trace.
//! - [`history`]: the transformation's versions, a diff between two, rollback.
//! - [`users`]: technical users.
//! - [`realtime`]: the real-time log, an event's results, retry.
//! - [`plugins`]: plugin versions, upload, activate, roll back, remove.
//! - [`audit`]: the audit log, filtered, and its CSV download.
//! - [`notify`]: notification subscriptions, a test send, the delivery log.
//!
//! Every response carries a strict Content-Security-Policy (`default-src 'self'`, no inline script or style)
//! and `Cache-Control: no-store`.

pub mod audit;
pub mod held;
pub mod history;
pub mod jobs;
pub mod notify;
pub mod ondemand;
pub mod overview;
pub mod plugins;
pub mod realtime;
pub mod session;
pub mod systems;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
mod tests_notify;
pub mod transform;
pub mod users;

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::store::principals::{Permission, PrincipalKind};
pub use session::Session;

/// The Content-Security-Policy of every console response: nothing but the service's own files, no inline
/// script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How long one server-sent event stream lasts before the browser reconnects (and the session is checked
/// again: a logout or a deleted user ends the live updates within this).
pub const MAX_STREAM: Duration = Duration::from_secs(120);

/// htmx, vendored (see `host/static/console/vendor/README.md`).
const HTMX_JS: &str = include_str!("../../static/console/vendor/htmx-2.0.11.min.js");
/// htmx's SSE extension, vendored.
const HTMX_SSE_JS: &str = include_str!("../../static/console/vendor/htmx-ext-sse-2.2.4.min.js");
/// The console's style sheet (light and dark).
const CONSOLE_CSS: &str = include_str!("../../static/console/console.css");
/// The console's own script (copy buttons), loaded as a file: the CSP allows no inline script.
const CONSOLE_JS: &str = include_str!("../../static/console/console.js");

/// The console's routes, to be merged into the service's router.
pub fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/console", get(overview::page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/overview/events", get(overview::events))
        .route("/console/logout", post(logout))
        .route("/console/jobs", get(jobs::list).post(jobs::start))
        .route("/console/jobs/schedule", post(jobs::set_schedule))
        .route("/console/jobs/schedule/delete", post(jobs::delete_schedule))
        .route("/console/jobs/{id}", get(jobs::page))
        .route("/console/jobs/{id}/events", get(jobs::events))
        .route("/console/jobs/{id}/stop", post(jobs::stop))
        .route("/console/jobs/{id}/log", get(jobs::log))
        .route("/console/jobs/{id}/log.csv", get(jobs::download_csv))
        .route("/console/jobs/{id}/log.json", get(jobs::download_json))
        .route("/console/held", get(held::list))
        .route("/console/jobs/{id}/held", get(held::page))
        .route("/console/jobs/{id}/held/{decision}", post(held::decide))
        .route("/console/systems", get(systems::list).post(systems::create))
        .route("/console/systems/new", get(systems::new_form))
        .route(
            "/console/systems/import",
            get(systems::import_form).post(systems::import),
        )
        .route("/console/systems/{id}/export.json", get(systems::export))
        .route("/console/systems/{id}/idm.csv", get(systems::idm_csv))
        .route("/console/systems/{id}", get(systems::page).post(systems::update))
        .route("/console/systems/{id}/edit", get(systems::edit_form))
        .route("/console/systems/{id}/test", post(systems::test))
        .route("/console/systems/{id}/release", post(systems::release))
        .route("/console/systems/{id}/state/{action}", post(systems::set_enabled))
        .route(
            "/console/systems/{id}/transformation",
            get(transform::page).post(transform::save),
        )
        .route("/console/systems/{id}/transformation/reset", post(transform::reset))
        .route("/console/systems/{id}/transformation/try", post(transform::try_it))
        .route("/console/systems/{id}/transformation/sample", post(transform::sample))
        .route("/console/systems/{id}/transformation/history", get(history::page))
        .route(
            "/console/systems/{id}/transformation/history/{n}",
            get(history::version),
        )
        .route(
            "/console/systems/{id}/transformation/history/{n}/rollback",
            post(history::rollback),
        )
        .route("/console/systems/{id}/transformation/diff", get(history::diff))
        .route(
            "/console/systems/{id}/delete",
            get(systems::confirm_delete).post(systems::delete),
        )
        .route(
            "/console/systems/{id}/provision-one",
            get(ondemand::form).post(ondemand::run),
        )
        .route("/console/users", get(users::list).post(users::create))
        .route("/console/users/{id}/delete", post(users::delete))
        .route("/console/users/{id}/password", post(users::set_password))
        .route("/console/realtime", get(realtime::list))
        .route("/console/realtime/{seq}", get(realtime::page))
        .route("/console/realtime/{seq}/retry", post(realtime::retry))
        .route(
            "/console/plugins",
            get(plugins::list)
                .post(plugins::upload)
                .layer(DefaultBodyLimit::max(crate::plugins::MAX_PLUGIN_BYTES + 64 * 1024)),
        )
        .route("/console/plugins/{name}/activate", post(plugins::activate))
        .route("/console/audit", get(audit::list))
        .route("/console/audit/export.csv", get(audit::export))
        .route("/console/notifications", get(notify::list).post(notify::create))
        .route("/console/notifications/new", get(notify::new_form))
        .route(
            "/console/notifications/{id}/delete",
            get(notify::confirm_delete).post(notify::delete),
        )
        .route("/console/notifications/{id}/test", post(notify::test))
        .route("/console/plugins/{name}/rollback", post(plugins::rollback))
        .route("/console/plugins/{name}/{version}/delete", post(plugins::remove))
        // `route_layer`: the session check runs for these routes only, never for the service's fallback.
        .route_layer(middleware::from_fn_with_state(state, session::require));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/assets/{name}", get(asset))
        .merge(signed_in)
        .route_layer(middleware::from_fn(security_headers))
}

/// Adds the console's security headers to every response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "htmx-2.0.11.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        "htmx-ext-sse-2.2.4.min.js" => (HTMX_SSE_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            // The names carry versions; the style sheet changes with the binary only.
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// A one-line message shown at the top of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Whether it reports a success (else a failure).
    pub ok: bool,
    /// The message.
    pub text: String,
}

/// What every signed-in page shows around its content: who is signed in, the navigation the caller's
/// permissions allow, the CSRF token for its forms, and a notice.
pub struct Frame {
    /// The signed-in user's name.
    pub user: String,
    /// Whether the user is an admin (else a technical user).
    pub admin: bool,
    /// The CSRF token for forms.
    pub csrf: String,
    /// The section of the navigation this page belongs to.
    pub section: &'static str,
    /// `manage-systems`.
    pub can_systems: bool,
    /// `run-jobs`.
    pub can_run: bool,
    /// `read-logs` or `run-jobs` (job logs).
    pub can_job_logs: bool,
    /// `read-logs` (the real-time log).
    pub can_logs: bool,
    /// `manage-plugins`.
    pub can_plugins: bool,
    /// `read-audit` (admins).
    pub can_audit: bool,
    /// Notifications (admins, as the API's notification endpoints).
    pub can_notify: bool,
    /// A notice from the previous action.
    pub notice: Option<Notice>,
}

impl Frame {
    /// The frame of a page in `section` for a session.
    pub fn new(session: &Session, section: &'static str, notice: Option<Notice>) -> Frame {
        let p = &session.principal;
        Frame {
            user: p.name.clone(),
            admin: p.kind == PrincipalKind::Admin,
            csrf: session.csrf.clone(),
            section,
            can_systems: p.may(Permission::ManageSystems),
            can_run: p.may(Permission::RunJobs),
            can_job_logs: p.may(Permission::ReadLogs) || p.may(Permission::RunJobs),
            can_logs: p.may(Permission::ReadLogs),
            can_plugins: p.may(Permission::ManagePlugins),
            can_audit: p.may(Permission::ReadAudit),
            can_notify: p.kind == PrincipalKind::Admin,
            notice,
        }
    }
}

/// Renders a template as an HTML answer.
pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

/// Renders a template as an HTML answer with a status.
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a console page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page cannot be rendered; see the service log",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A page that says what went wrong and links back to the console.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    render_with(
        status,
        &ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

/// A failed console request: the admin operation's error, shown as a page.
#[derive(Debug)]
pub struct ConsoleError(pub ApiError);

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError(e)
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let message = if self.0.status == StatusCode::FORBIDDEN {
            format!(
                "{}. Ask an admin for the permission, or go back to the overview.",
                self.0.message
            )
        } else {
            self.0.message
        };
        error_page(self.0.status, &message)
    }
}

impl ConsoleError {
    /// The error as a page.
    pub fn into_response_page(self) -> Response {
        self.into_response()
    }
}

/// The result of a console handler.
pub type ConsoleResult = Result<Response, ConsoleError>;

/// Redirects (303) to `to` with a notice for the next page.
pub fn redirect_with(session: &Session, to: &str, ok: bool, text: &str) -> Response {
    let mut text: String = text.chars().take(1500).collect();
    if text.is_empty() {
        text.push_str(if ok { "Done." } else { "Failed." });
    }
    let value =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}{text}", if ok { '1' } else { '0' }));
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::FLASH_COOKIE, &value, Duration::from_secs(60), session.secure),
    );
    response
}

/// Redirects with the notice of an operation's outcome: `done` on success, the error's message otherwise.
pub fn outcome<T>(
    session: &Session,
    to: &str,
    result: Result<T, ApiError>,
    done: impl FnOnce(T) -> String,
) -> Response {
    match result {
        Ok(v) => redirect_with(session, to, true, &done(v)),
        Err(e) => redirect_with(session, to, false, &e.message),
    }
}

/// The notice the previous action left, if any (read from its cookie; the page's answer clears it).
pub fn take_notice(headers: &HeaderMap) -> Option<Notice> {
    let raw = session::cookie(headers, session::FLASH_COOKIE)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut chars = text.chars();
    let ok = chars.next()? == '1';
    Some(Notice {
        ok,
        text: chars.as_str().to_string(),
    })
}

/// A page answer that also clears the notice cookie when the request had one.
pub fn page_with_notice(headers: &HeaderMap, session: &Session, response: Response) -> Response {
    let mut response = response;
    if session::cookie(headers, session::FLASH_COOKIE).is_some() {
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(session::FLASH_COOKIE, "", Duration::ZERO, session.secure),
        );
    }
    response
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Only a path inside the console may follow a login (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.contains("//") && !n.contains('\\') => n.to_string(),
        _ => "/console".into(),
    }
}

fn login_form(
    headers: &HeaderMap,
    secure: bool,
    next: String,
    name: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    // One token per browser while its login cookie lasts: several login pages (tabs, reloads) stay valid.
    let csrf = session::cookie(headers, session::LOGIN_COOKIE)
        .filter(|c| c.len() >= 32 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(|| session::random(24));
    let mut response = render_with(
        status,
        &LoginPage {
            csrf: csrf.clone(),
            next,
            name,
            error,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(session::LOGIN_COOKIE, &csrf, Duration::from_secs(3600), secure),
    );
    response
}

async fn login_page(Query(q): Query<LoginQuery>, request: Request) -> Response {
    login_form(
        request.headers(),
        session::secure(&request),
        safe_next(q.next.as_deref()),
        String::new(),
        None,
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

async fn login(State(state): State<AppState>, request: Request) -> Response {
    let secure = session::secure(&request);
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    };
    let form: LoginForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(f) => f,
        Err(_) => {
            return login_form(
                &parts.headers,
                secure,
                "/console".into(),
                String::new(),
                Some("Send the login form: a name and a password.".into()),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let next = safe_next(form.next.as_deref());
    // The login form's token must match its cookie (a login from another site's page is refused).
    let expected = session::cookie(&parts.headers, session::LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(&form.csrf, &expected) {
        return login_form(
            &parts.headers,
            secure,
            next,
            form.name,
            Some("The login form expired. Enter your name and password again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let mut headers = HeaderMap::new();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", form.name.trim(), form.password));
    match HeaderValue::from_str(&format!("Basic {basic}")) {
        Ok(v) => {
            headers.insert(header::AUTHORIZATION, v);
        }
        Err(_) => {
            return login_form(
                &parts.headers,
                secure,
                next,
                form.name,
                Some("Invalid user name or password.".into()),
                StatusCode::UNAUTHORIZED,
            );
        }
    }
    // The admin API's own password check (Argon2 off the async workers, the same slots and cache).
    let address = crate::api::auth::client_address(&parts.extensions);
    let principal = match crate::api::auth::authenticate_on(
        &state,
        &headers,
        None,
        address,
        crate::audit::Channel::Console,
    )
    .await
    {
        Ok(p) => p,
        Err(f @ crate::api::auth::AuthFailure::Locked(left)) => {
            tracing::info!(user = %form.name, "console login refused: locked after repeated failures");
            let mut page = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed login attempts. Try again in {}.",
                    crate::api::login_guard::minutes(left)
                ),
            );
            if let Some(secs) = f.retry_after() {
                page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return page;
        }
        Err(crate::api::auth::AuthFailure::Unavailable) => {
            return login_form(
                &parts.headers,
                secure,
                next,
                form.name,
                Some("The credentials cannot be checked now: the database does not answer. Try again shortly.".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
        Err(_) => {
            tracing::info!(user = %form.name, "console login refused");
            return login_form(
                &parts.headers,
                secure,
                next,
                form.name,
                Some("Invalid user name or password.".into()),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    match session::start(&state, &principal, secure).await {
        Ok(cookie) => {
            tracing::info!(user = %principal.name, "console login");
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(session::LOGIN_COOKIE, "", Duration::ZERO, secure),
            );
            response
        }
        Err(message) => login_form(
            &parts.headers,
            secure,
            next,
            form.name,
            Some(message),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}

async fn logout(State(state): State<AppState>, session: Session, headers: HeaderMap) -> Response {
    let cookie = session::end(&state, &headers, session.secure).await;
    tracing::info!(user = %session.principal.name, "console logout");
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// A permission's name as the API writes it.
pub fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::ManageSystems => "manage-systems",
        Permission::RunJobs => "run-jobs",
        Permission::ReadLogs => "read-logs",
        Permission::ProxyApi => "proxy-api",
        Permission::RealtimeApi => "realtime-api",
        Permission::ManagePlugins => "manage-plugins",
        Permission::ReadAudit => "read-audit",
    }
}

/// A stored instant for people: `2026-12-03 21:54:04` (UTC).
pub fn when(at: &str) -> String {
    let t = at.replace('T', " ");
    let t = t.trim_end_matches('Z');
    t.split('.').next().unwrap_or(t).to_string()
}
