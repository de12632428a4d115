//! RFC 7644 §3.12 error answers over HTTP (the body is `provisio_scim`'s), and how connector failures map
//! onto them.

use http::{HeaderValue, StatusCode, header};

use crate::connector::ConnectorError;
use crate::runtime::CallError;

/// The SCIM error message schema.
pub use provisio_scim::ERROR as ERROR_SCHEMA;

/// A SCIM error answer: status, optional `scimType`, a detail for the client (never a secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {scim_type:?}: {detail}")]
pub struct ScimError {
    /// HTTP status.
    pub status: StatusCode,
    /// RFC 7644 Table 9 `scimType`, where one applies.
    pub scim_type: Option<&'static str>,
    /// What went wrong, for the client.
    pub detail: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
}

impl ScimError {
    /// An error with a status and detail.
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 with a `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, None, detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, None, detail)
    }

    /// 412: the resource changed since the client read it.
    pub fn precondition(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, None, detail)
    }

    /// 409 uniqueness.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }

    /// 502: the backend or its connector failed; the detail goes to the log too.
    pub fn backend(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::warn!(detail = %detail, "proxy backend failure");
        Self::new(StatusCode::BAD_GATEWAY, None, detail)
    }

    /// A connector call's failure, in SCIM terms: not found → 404, conflict → 409 uniqueness, throttled →
    /// 429 with Retry-After, unreachable → 503, a 4xx from the backend → the same class, the rest → 502.
    pub fn from_call(e: CallError) -> Self {
        match e {
            CallError::Connector(c) => match c {
                ConnectorError::NotFound { message } => Self::not_found(message),
                ConnectorError::Conflict { message } => Self::uniqueness(message),
                ConnectorError::Throttled {
                    retry_after_ms,
                    message,
                } => {
                    let mut e = Self::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        None,
                        format!("the backend system is throttling: {message}"),
                    );
                    e.retry_after = Some(retry_after_ms.map_or(1, |ms| ms.div_ceil(1000).max(1)));
                    e
                }
                ConnectorError::Transient { message } => {
                    let mut e = Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        None,
                        format!("the backend system is unavailable: {message}"),
                    );
                    e.retry_after = Some(5);
                    tracing::warn!(detail = %e.detail, "proxy backend unavailable");
                    e
                }
                ConnectorError::Rejected { status, message } => match status {
                    404 => Self::not_found(message),
                    409 => Self::uniqueness(message),
                    412 => Self::precondition(message),
                    400..=499 => Self::bad("invalidValue", format!("the backend system refused: {message}")),
                    _ => Self::backend(format!("the backend system answered {status}: {message}")),
                },
                ConnectorError::Unsupported { message } => Self::new(
                    StatusCode::NOT_IMPLEMENTED,
                    None,
                    format!("the backend system does not support this: {message}"),
                ),
                ConnectorError::Unauthorized { message } => Self::backend(format!(
                    "the backend system refused the proxy system's credentials: {message}"
                )),
                ConnectorError::InvalidConfig { message } => {
                    Self::backend(format!("the proxy system's configuration is invalid: {message}"))
                }
            },
            other => Self::backend(format!("the connector failed: {other}")),
        }
    }
}

/// A filter's or PATCH's refusal (400 with its `scimType`).
impl From<provisio_scim::ScimError> for ScimError {
    fn from(e: provisio_scim::ScimError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.scim_type, e.detail)
    }
}

impl ScimError {
    /// The HTTP answer: the RFC 7644 error body as `application/scim+json`, the challenge with a 401, and
    /// `Retry-After` where a retry is due. The HTTP layer sends it as it is.
    pub fn into_http(self) -> http::Response<String> {
        let body = provisio_scim::error::body(self.status.as_u16(), self.scim_type, &self.detail);
        let mut response = http::Response::new(crate::json::text(&body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(super::SCIM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"provisio\", Bearer"),
            );
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}
