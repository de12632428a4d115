//! HTTP requests to the configured system, through the host.
//!
//! A connector never sees a URL or a credential: it names an *upstream* (`api`, the system's `URL`; `token`,
//! its `OAuth2TokenServiceURL`) and a path relative to it, and the host joins them, attaches the credentials
//! and enforces rate limits, timeouts and size caps.
//!
//! ```no_run
//! # use provisio_sdk::{Config, Result, http::Request};
//! # fn f(cfg: &Config) -> Result<()> {
//! let users = Request::get("Users")
//!     .query("filter", r#"userName eq "jdoe""#)
//!     .header("Accept", "application/scim+json")
//!     .send(cfg)?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```
//!
//! On `wasm32` targets [`Request::send`] calls the host's `send` import; on native targets it goes to the
//! [`testing::Harness`](crate::testing::Harness) running the current test.

use crate::bindings::provisio::connector::host::{HttpRequest, HttpResponse};
use crate::{Config, Error, Result};

/// Why the host produced no response (the WIT `http-error`). [`Request::send`] maps it to an [`Error`]; the
/// test harness lets a test simulate it.
pub use crate::bindings::provisio::connector::host::HttpError as HostError;

/// The upstream that is the system's `URL` property.
pub const API: &str = "api";
/// The upstream that is the system's `OAuth2TokenServiceURL` property.
pub const TOKEN: &str = "token";

/// An HTTP request under construction. Build it with [`get`](Request::get), [`post`](Request::post), …, then
/// [`send`](Request::send) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    upstream: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A request with this method to `path`, relative to the upstream's base URL (`Users`, `Users/123`), on the
    /// `api` upstream. `path` may carry a query string already; it is sent as given, so percent-encode what
    /// needs it (see [`encode_segment`]) or add parameters with [`query`](Request::query).
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            upstream: API.to_string(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `GET` request.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    /// A `POST` request.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    /// A `PUT` request.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new("PUT", path)
    }

    /// A `PATCH` request.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new("PATCH", path)
    }

    /// A `DELETE` request.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }

    /// Sends the request to another upstream than `api` (e.g. [`TOKEN`]).
    pub fn upstream(mut self, name: impl Into<String>) -> Self {
        self.upstream = name.into();
        self
    }

    /// Appends a query parameter; name and value are percent-encoded.
    pub fn query(mut self, name: impl Into<String>, value: impl std::fmt::Display) -> Self {
        self.query.push((name.into(), value.to_string()));
        self
    }

    /// Appends a query parameter when `value` is `Some`.
    pub fn query_opt(self, name: impl Into<String>, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    /// Sets a header, replacing any earlier value of the same name (case-insensitive). The host sets
    /// `Authorization` and `Host` itself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets a JSON body, with `Content-Type: application/json` unless a content type is set already.
    pub fn json(self, value: &serde_json::Value) -> Self {
        let req = self.body(value.to_string().into_bytes());
        if req.header_value("content-type").is_some() {
            req
        } else {
            req.header("Content-Type", "application/json")
        }
    }

    /// Sets a raw body.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// The method.
    pub fn method_name(&self) -> &str {
        &self.method
    }

    /// The path with its query string, exactly as it is sent (`Users?startIndex=1&count=100`).
    pub fn full_path(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let query: Vec<String> = self
            .query
            .iter()
            .map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v)))
            .collect();
        let sep = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{sep}{}", self.path, query.join("&"))
    }

    /// The value of a header set on this request (case-insensitive name).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends the request to the system `cfg` describes and returns its answer, whatever the status; call
    /// [`Response::error_for_status`] to turn a failure status into an [`Error`].
    ///
    /// When the host produces no answer the error says why: [`Error::Unauthorized`] when the credentials
    /// could not be obtained, [`Error::Transient`] on a timeout or an unreachable system,
    /// [`Error::InvalidConfig`] when the host refused to send the request, [`Error::Rejected`] (status 0) when
    /// the answer was larger than the host allows.
    pub fn send(self, cfg: &Config) -> Result<Response> {
        let wire = self.wire();
        match transport(cfg, &wire) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(host_error(&wire, e)),
        }
    }

    /// [`send`](Self::send) for a list answer whose entities the host may keep (contract 0.3.0): when the
    /// answer is 2xx and one JSON object with exactly one top-level member named `member` (ASCII
    /// case-insensitive, e.g. `Resources`) holding an array, the host keeps that array's elements for this
    /// call's page and answers the rest of the answer (the array emptied) with how many it kept; the page
    /// then puts the first of them on it with [`Page::listed`](crate::Page::listed), and they never cross into
    /// the plugin. Any other answer comes whole, with `None`. In the native test harness the answer always
    /// comes whole.
    pub fn send_list(self, cfg: &Config, member: &str) -> Result<(Response, Option<u32>)> {
        let wire = self.wire();
        match list_transport(cfg, &wire, member) {
            Ok((r, items)) => Ok((
                Response {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                },
                items,
            )),
            Err(e) => Err(host_error(&wire, e)),
        }
    }

    fn wire(self) -> HttpRequest {
        HttpRequest {
            path: self.full_path(),
            upstream: self.upstream,
            method: self.method,
            headers: self.headers,
            body: self.body,
        }
    }
}

// In a component the host sends to the system of the call it is in (the config it made the instance's
// `system` with); natively the test harness takes `cfg` for that system.
#[cfg(target_arch = "wasm32")]
fn list_transport(
    _cfg: &Config,
    req: &HttpRequest,
    member: &str,
) -> std::result::Result<(HttpResponse, Option<u32>), HostError> {
    crate::bindings::provisio::connector::host::send_list(req, member).map(|r| {
        (
            HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            },
            r.items,
        )
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn list_transport(
    cfg: &Config,
    req: &HttpRequest,
    _member: &str,
) -> std::result::Result<(HttpResponse, Option<u32>), HostError> {
    crate::testing::dispatch(cfg, req).map(|r| (r, None))
}

#[cfg(target_arch = "wasm32")]
fn transport(_cfg: &Config, req: &HttpRequest) -> std::result::Result<HttpResponse, HostError> {
    crate::bindings::provisio::connector::host::send(req)
}

#[cfg(not(target_arch = "wasm32"))]
fn transport(cfg: &Config, req: &HttpRequest) -> std::result::Result<HttpResponse, HostError> {
    crate::testing::dispatch(cfg, req)
}

/// Maps a host failure to the connector error the host acts on, naming the request.
fn host_error(req: &HttpRequest, e: HostError) -> Error {
    let what = format!("{} {}", req.method, req.path);
    match e {
        HostError::AuthFailed(m) => Error::unauthorized(format!(
            "The credentials for the system could not be obtained ({what}): {m}"
        )),
        HostError::Timeout(m) => Error::transient(format!("The system did not answer in time ({what}): {m}")),
        HostError::Unreachable(m) => Error::transient(format!("The system could not be reached ({what}): {m}")),
        HostError::Denied(m) => Error::invalid_config(format!("The request was refused by the host ({what}): {m}")),
        HostError::TooLarge(m) => Error::too_large(format!("The answer was larger than the host allows ({what}): {m}")),
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the body is empty or only whitespace (a `204 No Content`, say).
    pub fn is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body parsed as JSON; [`Error::Rejected`] (with this status) when it is not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::rejected(
                self.status,
                format!(
                    "The system's answer is not valid JSON ({e}): {}",
                    crate::status::shorten(&self.text(), crate::status::DETAIL_MAX)
                ),
            )
        })
    }

    /// The body as the JSON object text it is: checked to be one JSON object as strictly as parsing it would
    /// (escapes decoded, numbers in range), not built into values and written again (what a connector's `get`
    /// hands on; the host parses it once). [`Error::Rejected`] (with this status) when it is not.
    pub fn json_object_text(&self) -> Result<String> {
        let not_json = |e: &dyn std::fmt::Display| {
            Error::rejected(
                self.status,
                format!(
                    "The system's answer is not valid JSON ({e}): {}",
                    crate::status::shorten(&self.text(), crate::status::DETAIL_MAX)
                ),
            )
        };
        // UTF-8 first, once for the whole text: the check then need not validate each string again.
        let text = std::str::from_utf8(&self.body).map_err(|e| not_json(&e))?;
        provisio_scim::json::check_str(text).map_err(|e| not_json(&e))?;
        // One JSON value with whitespace around it: the value is the text trimmed.
        let text = text.trim();
        if !text.starts_with('{') {
            return Err(Error::rejected(
                self.status,
                format!(
                    "The system's answer is not a JSON object: {}",
                    crate::status::shorten(text, crate::status::DETAIL_MAX)
                ),
            ));
        }
        Ok(text.to_owned())
    }

    /// `Ok(self)` for a 2xx status, else the [`Error`] the status means (see [`status::error_for`]).
    ///
    /// [`status::error_for`]: crate::status::error_for
    pub fn error_for_status(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(crate::status::error_for(&self))
        }
    }
}

/// Whether the host owns a request header: credentials, routing and framing. The host drops a guest's
/// value for these and sets its own; the test harness's record mode does the same.
pub fn is_host_owned_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "authorization"
            | "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "trailer"
            | "expect"
            | "cookie"
    ) || lower.starts_with("proxy-")
}

/// Whether an answer's header describes its framing (`content-length`, `transfer-encoding`, `connection`,
/// `keep-alive`): the host reads a body whole and hands a connector its answer without these, and a
/// recording leaves them out too (a JSON body is replayed compact, so its length would be wrong).
pub fn is_framing_header(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "keep-alive"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// Percent-encodes a query parameter name or value (everything but RFC 3986 unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes one path segment (an id in `Users/{id}`), so that `/`, `?`, `#`, `%` and `..` in it
/// cannot change the path.
pub fn encode_segment(s: &str) -> String {
    match s {
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => encode_component(s),
    }
}

/// Decodes percent-encoding (and nothing else); invalid escapes are kept as they are.
pub fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_owns_credentials_routing_and_framing_headers() {
        for owned in [
            "Authorization",
            "host",
            "Content-Length",
            "cookie",
            "proxy-authorization",
        ] {
            assert!(is_host_owned_header(owned), "{owned}");
        }
        for free in ["accept", "content-type", "x-csrf-token", "if-match"] {
            assert!(!is_host_owned_header(free), "{free}");
        }
    }

    #[test]
    fn an_object_answer_is_handed_on_as_its_text() {
        let answer = |body: &str| Response {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let text = r#"{"id":"1","name":{"givenName":"\u00e9"},"emails":[]}"#;
        assert_eq!(answer(&format!(" \n{text}\n ")).json_object_text().as_deref(), Ok(text));
        for (body, says) in [
            (r#"{"id":"1""#, "not valid JSON"),
            (r#"{"id":"1"} {}"#, "not valid JSON"),
            (r#"[{"id":"1"}]"#, "not a JSON object"),
            ("\"x\"", "not a JSON object"),
            (r#"{"id":"\ud800"}"#, "not valid JSON"),
            (r#"{"n":1e400}"#, "not valid JSON"),
        ] {
            match answer(body).json_object_text() {
                Err(Error::Rejected(r)) if r.status == 200 => assert!(r.detail.contains(says), "{body}: {}", r.detail),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn builds_paths_with_encoded_queries() {
        let r = Request::get("Users")
            .query("filter", r#"userName eq "a b&c""#)
            .query("count", 10);
        assert_eq!(r.full_path(), "Users?filter=userName%20eq%20%22a%20b%26c%22&count=10");
        let r = Request::get("Users?attributes=id").query("startIndex", 1);
        assert_eq!(r.full_path(), "Users?attributes=id&startIndex=1");
        assert_eq!(encode_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(decode_component("a%20b%2"), "a b%2");
    }

    #[test]
    fn json_body_keeps_an_explicit_content_type() {
        let r = Request::post("Users")
            .header("content-type", "application/scim+json")
            .json(&serde_json::json!({}));
        assert_eq!(r.header_value("Content-Type"), Some("application/scim+json"));
        let r = Request::post("Users").json(&serde_json::json!({}));
        assert_eq!(r.header_value("Content-Type"), Some("application/json"));
    }
}
