//! Inbound authentication: HTTP Basic against admins and technical users, bearer tokens issued by
//! `POST /oauth2/token` (OAuth2 client credentials, the technical user's name and password as client id
//! and secret), and X.509 client certificates verified by the service's own TLS (the subject CN names a
//! technical user).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;

use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::audit::{Actor, Channel, Object};
use crate::store::principals::{Permission, Principal, PrincipalKind};
use crate::tls::{ClientCertificate, MAX_CN_CHARS};

/// Lifetime of issued access tokens.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a request is not authenticated.
#[derive(Debug, PartialEq)]
pub enum AuthFailure {
    /// No credentials were sent.
    Missing,
    /// Credentials were sent and are wrong, or in a form we do not take.
    Invalid(String),
    /// The credentials could not be checked: the store does not answer (503, try again).
    Unavailable,
    /// Too many failed logins of the principal or from the address: locked for this long still (429 with
    /// `Retry-After`), whatever the password.
    Locked(Duration),
}

impl AuthFailure {
    /// The message for the caller.
    pub fn message(&self) -> String {
        match self {
            AuthFailure::Missing => {
                "authentication required: send HTTP Basic credentials, a bearer token from /oauth2/token or a client certificate".into()
            }
            AuthFailure::Invalid(m) => m.clone(),
            AuthFailure::Unavailable => "the credentials cannot be checked now: the database does not answer; try again shortly".into(),
            AuthFailure::Locked(left) => format!(
                "too many failed logins: try again in {}",
                super::login_guard::minutes(*left)
            ),
        }
    }

    /// Seconds for `Retry-After`, when the failure is a lock.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthFailure::Locked(left) => Some(left.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }

    /// The HTTP status to answer: 401, 429 during a lock, or 503 when the credentials could not be checked.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            AuthFailure::Unavailable => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            AuthFailure::Locked(_) => axum::http::StatusCode::TOO_MANY_REQUESTS,
            _ => axum::http::StatusCode::UNAUTHORIZED,
        }
    }
}

fn decode_basic(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Password checks running at once: Argon2 takes ~19 MiB and tens of milliseconds each, so a flood of
/// bad credentials must queue here instead of growing the blocking pool.
fn verification_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Checks a name and password, under the brute-force protection ([`super::login_guard`]): refused with
/// [`AuthFailure::Locked`] during a lock before the password is looked at; a failure counted and answered
/// after the growing delay.
async fn verify(
    state: &AppState,
    user: String,
    password: String,
    address: Option<IpAddr>,
    channel: Channel,
) -> Result<Principal, AuthFailure> {
    use super::login_guard::Refusal;
    match state.logins.admit(&state.stores, &user, address).await {
        Ok(()) => {}
        Err(Refusal::Locked(left)) => return Err(AuthFailure::Locked(left)),
        Err(Refusal::Unavailable) => return Err(AuthFailure::Unavailable),
    }
    // The common case — a client that authenticates on every request — needs neither a slot nor a thread.
    if let Some(p) = state.stores.principals.recently_verified(&user, &password) {
        return Ok(p);
    }
    // Boxed: the rest's future is large (the store, Argon2, a failure's delay and audit), and this one is part of
    // every request's, which the router's layers move whole before it runs (docs/performance.md, "twenty-first
    // session").
    Box::pin(verify_password(state, user, password, address, channel)).await
}

/// [`verify`] for credentials not verified a moment ago: Argon2 against the store, the failure counted.
async fn verify_password(
    state: &AppState,
    user: String,
    password: String,
    address: Option<IpAddr>,
    channel: Channel,
) -> Result<Principal, AuthFailure> {
    let checked = {
        let _slot = verification_slots()
            .acquire()
            .await
            .map_err(|_| AuthFailure::Invalid("authentication failed".into()))?;
        // Argon2 is slow on purpose: `verify` runs it off the async workers.
        state.stores.principals.verify(&user, &password).await
    };
    match checked {
        Ok(Some(p)) => {
            state.logins.succeeded(&state.stores, &user).await;
            Ok(p)
        }
        // The delay is waited without holding a verification slot.
        Ok(None) => {
            let locked = state.logins.failed(&state.stores, &user, address).await;
            audit_failed_login(state, &user, address, channel, locked).await;
            match locked {
                Some(lock) => Err(AuthFailure::Locked(lock)),
                None => Err(AuthFailure::Invalid("invalid user name or password".into())),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot verify credentials");
            Err(AuthFailure::Unavailable)
        }
    }
}

/// Records a failed login in the audit log, and the lock it started, if any.
async fn audit_failed_login(
    state: &AppState,
    user: &str,
    address: Option<IpAddr>,
    channel: Channel,
    locked: Option<Duration>,
) {
    let actor = Actor::unauthenticated(user, address, channel);
    let object = || Object::new("principal", "", actor.name.clone());
    state.audit.record(&actor, "login.failed", object(), vec![]).await;
    if let Some(lock) = locked {
        let change = crate::audit::set("lockedSeconds", serde_json::json!(lock.as_secs()));
        state.audit.record(&actor, "login.locked", object(), vec![change]).await;
    }
}

/// The technical user a verified client certificate names by its subject CN.
async fn by_certificate(state: &AppState, cert: &ClientCertificate) -> Result<Principal, AuthFailure> {
    let cn = cert.subject_cn.as_str();
    if cn.is_empty() || cn.chars().count() > MAX_CN_CHARS {
        return Err(AuthFailure::Invalid(format!(
            "the client certificate's subject CN must have 1 to {MAX_CN_CHARS} characters"
        )));
    }
    match state.stores.principals.by_name(cn).await {
        Ok(Some(p)) if p.kind == PrincipalKind::Technical => {
            tracing::debug!(user = %p.name, fingerprint = %cert.fingerprint_sha256, "authenticated by client certificate");
            Ok(p)
        }
        Ok(_) => Err(AuthFailure::Invalid(format!(
            "the client certificate's subject CN {cn:?} is not the name of a technical user"
        ))),
        Err(e) => {
            tracing::error!(error = %e, "cannot look up the user of a client certificate");
            Err(AuthFailure::Unavailable)
        }
    }
}

/// Authenticates a request by its `Authorization` header or, without one, by the verified client
/// certificate of its TLS connection. Shared by the admin API and the SCIM surfaces, which differ only
/// in how they answer a failure. Without the client's address, failed passwords are throttled per
/// principal only: callers that have the request pass it to [`authenticate_at`].
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    cert: Option<&ClientCertificate>,
) -> Result<Principal, AuthFailure> {
    authenticate_at(state, headers, cert, None).await
}

/// [`authenticate`], with failed passwords throttled per client address too.
pub async fn authenticate_at(
    state: &AppState,
    headers: &HeaderMap,
    cert: Option<&ClientCertificate>,
    address: Option<IpAddr>,
) -> Result<Principal, AuthFailure> {
    authenticate_on(state, headers, cert, address, Channel::Api).await
}

/// [`authenticate_at`] for a request of `channel` (a failed login is audited with it).
pub async fn authenticate_on(
    state: &AppState,
    headers: &HeaderMap,
    cert: Option<&ClientCertificate>,
    address: Option<IpAddr>,
    channel: Channel,
) -> Result<Principal, AuthFailure> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return match cert {
            Some(cert) => Box::pin(by_certificate(state, cert)).await,
            None => Err(AuthFailure::Missing),
        };
    };
    let value = value
        .to_str()
        .map_err(|_| AuthFailure::Invalid("malformed Authorization header".into()))?;
    if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        return match state.stores.tokens.principal(token.trim()).await {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => Err(AuthFailure::Invalid("invalid or expired bearer token".into())),
            Err(e) => {
                tracing::error!(error = %e, "cannot check a bearer token");
                Err(AuthFailure::Unavailable)
            }
        };
    }
    let (user, password) = decode_basic(value)
        .ok_or_else(|| AuthFailure::Invalid("unsupported or malformed Authorization header".into()))?;
    verify(state, user, password, address, channel).await
}

/// The client's address of a request: the TCP peer (`ConnectInfo`, set by the server), `None` where the
/// router is served without it (tests calling it directly). A reverse proxy in front is the peer.
pub fn client_address(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// The authenticated caller of an admin request (API or console), and where it came from (for the audit
/// log).
pub struct Caller(pub Principal, pub Origin);

/// Where a request came from: the client's address and the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client's address, when known.
    pub address: Option<IpAddr>,
    /// The admin API or the console.
    pub channel: Channel,
}

impl Origin {
    /// A request of the admin API from `address`.
    pub fn api(address: Option<IpAddr>) -> Origin {
        Origin {
            address,
            channel: Channel::Api,
        }
    }

    /// A request of the console from `address`.
    pub fn console(address: Option<IpAddr>) -> Origin {
        Origin {
            address,
            channel: Channel::Console,
        }
    }
}

impl Caller {
    /// Who acts, as the audit log records it.
    pub fn actor(&self) -> Actor {
        Actor::of(&self.0, self.1.address, self.1.channel)
    }

    /// Fails with 403 unless the caller has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.0.may(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} lacks the permission {}",
                self.0.name,
                serde_json::to_value(permission)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cert = parts.extensions.get::<ClientCertificate>();
        let address = client_address(&parts.extensions);
        authenticate_at(state, &parts.headers, cert, address)
            .await
            .map(|p| Caller(p, Origin::api(address)))
            .map_err(|f| match f {
                AuthFailure::Unavailable => ApiError::new(f.status(), f.message()),
                AuthFailure::Locked(_) => {
                    ApiError::new(f.status(), f.message()).retry_after(f.retry_after().unwrap_or(1))
                }
                _ => ApiError::unauthorized(f.message()),
            })
    }
}

/// The verified client certificate of the request's connection, if any, and the client's address (an
/// extractor that never fails).
pub struct PeerCertificate(pub Option<ClientCertificate>, pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerCertificate(
            parts.extensions.get::<ClientCertificate>().cloned(),
            client_address(&parts.extensions),
        ))
    }
}

/// The form of a client-credentials token request.
#[derive(Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: axum::http::StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `POST /oauth2/token`: client credentials → a bearer token.
#[utoipa::path(post, path = "/oauth2/token", tag = "service", security((), ("basic" = [])),
    request_body(content = super::schemas::TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "The credentials as `client_id`/`client_secret`, or as HTTP Basic"),
    responses(
        (status = 200, description = "A bearer token for the admin API", body = super::schemas::TokenAnswer),
        (status = 400, description = "Not a client-credentials request", body = super::schemas::OAuthError),
        (status = 401, description = "Bad or missing credentials", body = super::schemas::OAuthError),
        (status = 429, description = "Locked after repeated failures (`Retry-After`)", body = super::schemas::OAuthError),
        (status = 503, description = "The credentials cannot be checked now", body = super::schemas::OAuthError),
    ))]
pub async fn token(
    State(state): State<AppState>,
    peer: PeerCertificate,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    use axum::http::StatusCode;
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send a form body with grant_type=client_credentials",
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let from_header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(decode_basic);
    let Some((id, secret)) = from_header.or(form.client_id.zip(form.client_secret)) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required",
        );
    };
    match verify(&state, id, secret, peer.1, Channel::Api).await {
        Ok(principal) => match state.stores.tokens.issue(&principal, TOKEN_LIFETIME).await {
            Ok(token) => {
                Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME.as_secs() }))
                    .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store an issued token");
                oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the token could not be stored; try again",
                )
            }
        },
        Err(AuthFailure::Unavailable) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the credentials cannot be checked now; try again",
        ),
        Err(f @ AuthFailure::Locked(_)) => {
            let mut response = oauth_error(StatusCode::TOO_MANY_REQUESTS, "invalid_client", &f.message());
            if let Some(secs) = f.retry_after() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            }
            response
        }
        Err(_) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Bad credentials"),
    }
}
