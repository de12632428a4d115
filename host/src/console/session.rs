//! Console sessions and CSRF.
//!
//! A session is a bearer token of the admin API's own machinery ([`crate::store::tokens::Tokens`]): issued at
//! login for [`IDLE_TIMEOUT`], kept in the store by its SHA-256 (so it works on every replica and across
//! restarts, and ends with its principal), and renewed — a new token in a new cookie — when a request comes
//! more than [`RENEW_AFTER`] after it was issued. A session therefore ends after [`IDLE_TIMEOUT`] without a
//! request (at the latest; at least `IDLE_TIMEOUT - RENEW_AFTER`), or at logout, which revokes the token in the
//! store.
//!
//! The cookie (`HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` when served over TLS) holds the token,
//! a random CSRF seed chosen at login and the token's issue time. Every state-changing request must carry
//! the CSRF token — the SHA-256 of the seed — as the `_csrf` form field or the `X-CSRF-Token` header (a
//! multipart upload, whose body is not read before the check, carries it in the query); a page from another
//! site can neither read the cookie nor the pages that show the token. Requests whose `Origin` or
//! `Sec-Fetch-Site` says they come from another site are refused as well.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::store::principals::Principal;

/// The session cookie.
pub const COOKIE: &str = "provisio_session";
/// The cookie that carries the login form's CSRF token (there is no session yet).
pub const LOGIN_COOKIE: &str = "provisio_login";
/// The cookie that carries a one-time notice to the next page (after an action redirected).
pub const FLASH_COOKIE: &str = "provisio_flash";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A request this long after the session's token was issued gets a fresh one.
pub const RENEW_AFTER: Duration = Duration::from_secs(5 * 60);
/// Largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 1 << 20;

/// The signed-in user of a console request, and the CSRF token its pages embed.
#[derive(Clone)]
pub struct Session {
    /// The principal, read from the store (a deleted user or a changed permission shows within a second).
    pub principal: Principal,
    /// The CSRF token of this session.
    pub csrf: String,
    /// Whether the request came over TLS (cookies are then `Secure`).
    pub secure: bool,
    /// The client's address, when known (for the audit log).
    pub address: Option<std::net::IpAddr>,
}

impl Session {
    /// The caller as the admin operations take it.
    pub fn caller(&self) -> Caller {
        Caller(self.principal.clone(), crate::api::auth::Origin::console(self.address))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| Redirect::to("/console/login").into_response())
    }
}

/// What the session cookie holds.
struct CookieValue {
    token: String,
    seed: String,
    issued: i64,
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn session_cookie(headers: &HeaderMap) -> Option<CookieValue> {
    let raw = cookie(headers, COOKIE)?;
    let mut parts = raw.split('.');
    let (token, seed, issued) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || token.is_empty() || seed.is_empty() {
        return None;
    }
    Some(CookieValue {
        token: token.to_string(),
        seed: seed.to_string(),
        issued: issued.parse().ok()?,
    })
}

/// Whether the request reached the service over TLS (its own, or a proxy's that says so).
fn over_tls(headers: &HeaderMap, extensions: &axum::http::Extensions) -> bool {
    extensions.get::<crate::tls::ServedOverTls>().is_some()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the console's cookies; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("provisio_invalid=; Max-Age=0"))
}

/// Random URL-safe text of `bytes` random bytes.
pub fn random(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The CSRF token of a session's seed.
pub fn csrf_token(seed: &str) -> String {
    hex::encode(Sha256::digest(format!("provisio-console-csrf\0{seed}").as_bytes()))
}

/// Compares two tokens in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Starts a session for `principal`: the `Set-Cookie` value.
pub async fn start(state: &AppState, principal: &Principal, secure: bool) -> Result<HeaderValue, String> {
    let token = state
        .stores
        .tokens
        .issue(principal, IDLE_TIMEOUT)
        .await
        .map_err(|e| format!("the session cannot be stored now ({e}); try again"))?;
    let value = format!("{token}.{}.{}", random(24), now_secs());
    Ok(set_cookie(COOKIE, &value, IDLE_TIMEOUT, secure))
}

/// Ends the request's session: revokes its token in the store. The `Set-Cookie` value that clears it.
pub async fn end(state: &AppState, headers: &HeaderMap, secure: bool) -> HeaderValue {
    if let Some(c) = session_cookie(headers)
        && let Err(e) = state.stores.tokens.revoke(&c.token).await
    {
        tracing::warn!(error = %e, "cannot revoke a console session at logout; it ends at its idle timeout");
    }
    set_cookie(COOKIE, "", Duration::ZERO, secure)
}

/// Whether the request says it comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return true;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        // `null` (a page with a no-referrer policy, a sandboxed frame) says nothing; Sec-Fetch-Site decides.
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// The `_csrf` field of an URL-encoded form body.
fn form_field(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "_csrf")
        .map(|(_, v)| v.into_owned())
}

/// Checks the CSRF token of a state-changing request against `expected`; gives the request back (its body
/// re-assembled when it was read) or the refusal.
// The refusal is the answer itself, sent at once: its size does not matter.
#[allow(clippy::result_large_err)]
pub async fn check_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(request);
    }
    let refuse = |why: &str| super::error_page(StatusCode::FORBIDDEN, &format!("{why} Reload the page and try again."));
    if cross_site(request.headers()) {
        return Err(refuse("The request came from another site."));
    }
    if let Some(sent) = request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if same(sent, expected) {
            Ok(request)
        } else {
            Err(refuse("The form's security token does not match this session."))
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let sent = request.uri().query().and_then(|q| form_field(q.as_bytes()));
        return match sent {
            Some(sent) if same(&sent, expected) => Ok(request),
            _ => Err(refuse(
                "The form's security token is missing or does not match this session.",
            )),
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| super::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    match form_field(&bytes) {
        Some(sent) if same(&sent, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(refuse(
            "The form's security token is missing or does not match this session.",
        )),
    }
}

/// Middleware of the signed-in pages: authenticates the session cookie (else sends to the login page),
/// checks CSRF on state-changing requests, puts the [`Session`] in the request, and renews the cookie when
/// due.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let secure = over_tls(request.headers(), request.extensions());
    let Some(value) = session_cookie(request.headers()) else {
        return to_login(&request);
    };
    let principal = match state.stores.tokens.principal(&value.token).await {
        Ok(Some(p)) => p,
        Ok(None) => return to_login(&request),
        Err(e) => {
            tracing::error!(error = %e, "cannot check a console session");
            return super::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session cannot be checked now: the database does not answer. Try again shortly.",
            );
        }
    };
    let csrf = csrf_token(&value.seed);
    let mut request = match check_csrf(request, &csrf).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let renew = now_secs().saturating_sub(value.issued) >= RENEW_AFTER.as_secs() as i64;
    let address = crate::api::auth::client_address(request.extensions());
    request.extensions_mut().insert(Session {
        principal: principal.clone(),
        csrf,
        secure,
        address,
    });
    let mut response = next.run(request).await;
    if renew {
        match state.stores.tokens.issue(&principal, IDLE_TIMEOUT).await {
            Ok(token) => {
                // The old token stays valid until its own expiry: requests in flight with it (a live progress
                // stream) go on.
                let fresh = format!("{token}.{}.{}", value.seed, now_secs());
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, set_cookie(COOKIE, &fresh, IDLE_TIMEOUT, secure));
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew a console session"),
        }
    }
    response
}

/// Sends an unauthenticated request to the login page (htmx requests by `HX-Redirect`).
fn to_login(request: &Request) -> Response {
    let next = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| request.method() == Method::GET && p.starts_with("/console") && !p.starts_with("//"))
        .unwrap_or("/console");
    let target = format!(
        "/console/login?next={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    );
    if request.headers().contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            response.headers_mut().insert("hx-redirect", v);
        }
        return response;
    }
    Redirect::to(&target).into_response()
}

/// Whether a request is over TLS (for the cookies the login sets).
pub fn secure(request: &Request) -> bool {
    over_tls(request.headers(), request.extensions())
}
