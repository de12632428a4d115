//! Errors of the admin API as JSON answers: `{"error": "<reason>", "message": "<what to do>"}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::systems::SystemError;

/// An error answer of the admin API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the caller.
    pub message: String,
    /// Seconds for `Retry-After` (a 429 or 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same, answered with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401, with the challenge.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 500; the detail goes to the log, not to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the service log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let mut response = (self.status, Json(json!({ "error": reason, "message": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"provisio\", Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<SystemError> for ApiError {
    fn from(e: SystemError) -> Self {
        match e {
            SystemError::Invalid(m) => ApiError::bad_request(m),
            SystemError::NotFound(m) => ApiError::not_found(m),
            SystemError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            SystemError::Internal(m) => ApiError::internal(m),
            // The database does not answer: a client (or a load balancer) tries again, here or elsewhere.
            SystemError::Unavailable(m) => {
                tracing::warn!(error = %m, "the store does not answer");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database does not answer; try again shortly",
                )
            }
        }
    }
}

impl From<crate::provisioning::JobError> for ApiError {
    fn from(e: crate::provisioning::JobError) -> Self {
        use crate::provisioning::JobError as J;
        match e {
            J::Invalid(m) => ApiError::bad_request(m),
            J::NotFound(m) => ApiError::not_found(m),
            J::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            J::Store(e) => e.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        SystemError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        // 413 too large and 415 wrong content type keep their status; bad syntax and a wrong shape are 400.
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => e.status(),
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("invalid JSON body: {}", e.body_text()))
    }
}

/// A JSON object body whose rejection is an [`ApiError`] (a clear 400, not axum's plain text).
///
/// Every operation's body is an object. serde would also read a struct from an array of its fields in order
/// (`[]` for one whose fields all have defaults, `["resync", true]` for a job), which the document does not
/// allow: anything but an object is refused before it is read.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // As `axum::Json` does: the content type first (415), then the body within its limit (413).
        if !json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid JSON body: Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        // JSON's whitespace only (RFC 8259 §2); anything else before the `{` is refused by the parse below.
        let first = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first.is_some_and(|b| *b != b'{') {
            return Err(ApiError::bad_request("invalid JSON body: expected a JSON object"));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(JsonBody(value))
    }
}

/// Whether a request says its body is JSON: `application/json` or `application/…+json`, parameters aside.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    media_type(value)
        .split_once('/')
        .is_some_and(|(kind, subtype)| kind == "application" && (subtype == "json" || subtype.ends_with("+json")))
}

/// A `Content-Type` value's media type, lower-cased and without its parameters (`application/json` of
/// `Application/JSON; charset=utf-8`); empty when the value is not text.
pub(crate) fn media_type(value: &HeaderValue) -> String {
    let value = value.to_str().unwrap_or("");
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        // A segment that does not parse (a sequence number that is not one) is the caller's mistake: 400.
        let status = match e.status() {
            s if s.is_server_error() => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, format!("invalid path: {}", e.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError::new(e.status(), format!("cannot read the body: {}", e.body_text()))
    }
}

/// A query string whose rejection is an [`ApiError`] (400 in the API's error shape, not axum's plain text).
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Path parameters whose rejection is an [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

/// A raw body whose rejection (too large, cut short) is an [`ApiError`].
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(ApiError::from)
    }
}

/// The answer to a path under `/api/v1` that names no operation.
pub async fn no_such_path(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such operation: {}; the operations are listed in /api/v1/openapi.json",
        uri.path()
    ))
}

/// The answer to a method a path of the API does not take (axum adds the `Allow` header).
pub async fn no_such_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not an operation of {}; see /api/v1/openapi.json",
            uri.path()
        ),
    )
}
