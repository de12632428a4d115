//! Recordings: the exchanges of a test kept in a JSON file (the format is on [`read_recording`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::live::{AUTHENTICATION_VAR, Live, PASSWORD_VAR, TOKEN_URL_VAR, URL_VAR, USER_VAR};
use super::{Exchange, ExpectedBody, SentRequest};
use crate::bindings::provisio::connector::host::HttpResponse;
use crate::http::{HostError, decode_component, encode_component};

/// What replaces a secret in a recording; in an expectation it matches any value.
pub const REDACTED: &str = "<redacted>";

/// Names the recording to (re)record: `PROVISIO_RECORD=recordings/users.json`.
pub const RECORD_VAR: &str = "PROVISIO_RECORD";

/// The version of the file format.
const FORMAT: u64 = 1;

/// Why a recording could not be read, made or written. `Debug` prints the same message as `Display`, so
/// that `Harness::recorded(..).unwrap()` in a test shows it as it is.
#[derive(thiserror::Error)]
pub enum RecordingError {
    /// The file does not exist.
    #[error(
        "the recording {} does not exist; record it once against the real system: {RECORD_VAR}={} \
         {URL_VAR}=<the system's URL> (and {AUTHENTICATION_VAR}, {USER_VAR}, {PASSWORD_VAR} or \
         {TOKEN_URL_VAR} as it needs) cargo test <this test>",
        .path.display(),
        .path.display()
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("the recording {} cannot be read: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a recording.
    #[error("the recording {} is not valid: {reason}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// Record mode is asked for, but cannot run (a missing variable, the `record` feature turned off).
    #[error("cannot record {}: {reason}", .path.display())]
    Setup {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The recording could not be written.
    #[error("cannot write the recording {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl fmt::Debug for RecordingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Reads the exchanges of a recording, in order.
///
/// Record mode writes a recording from what a real system answered; replay reads it back as the harness's
/// expected [`Exchange`]s. The file holds exactly what an `Exchange` holds, so a hand-written file works
/// too:
///
/// ```json
/// {
///   "format": 1,
///   "exchanges": [
///     {
///       "request": {"method": "GET", "upstream": "api", "path": "users?offset=0&limit=2",
///                   "headers": {"accept": "application/json"}},
///       "response": {"status": 200, "headers": {"content-type": "application/json"},
///                    "json": {"users": [], "total": 0}}
///     },
///     {
///       "request": {"method": "POST", "path": "users", "json": {"userName": "a", "password": "<redacted>"}},
///       "error": {"kind": "timeout", "message": "no answer in 60 s"}
///     }
///   ]
/// }
/// ```
///
/// `request`: `method` and `path` (with its query string) are required; `upstream` defaults to `api`;
/// `headers` and a body (`json`, or `text`) are expectations on what the connector sends. `response`:
/// `status`, `headers` (a value may be a list when the header repeats) and a body: `json`, `text`, or
/// `bytes` (a list of numbers) — JSON bodies are kept parsed and answered compact (so a recording leaves
/// out `content-length` and the other framing headers). Instead of `response`, `error` makes the host fail
/// the request (`kind`: `auth-failed`, `timeout`, `unreachable`, `denied`, `too-large`).
///
/// Secrets never reach the file: values of `Authorization`, cookies and headers named like a token, a key,
/// a password or a secret; JSON fields and form or query parameters named like them (`password`,
/// `access_token`, `client_secret`, …); and every occurrence of the credentials the harness was given are
/// written as [`REDACTED`]. In an expectation, `REDACTED` matches any value, so a connector that sends a
/// password still matches its recording.
pub fn read_recording(path: impl AsRef<Path>) -> Result<Vec<Exchange>, RecordingError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RecordingError::Missing {
            path: path.to_path_buf(),
        },
        _ => RecordingError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let malformed = |reason: String| RecordingError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| malformed(format!("not JSON: {e}")))?;
    if let Some(format) = doc.get("format")
        && format.as_u64() != Some(FORMAT)
    {
        return Err(malformed(format!(
            "`format` is {format}; this SDK reads format {FORMAT}"
        )));
    }
    let list = doc
        .get("exchanges")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("expected an object with an `exchanges` list".into()))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| exchange_from_json(v).map_err(|why| malformed(format!("exchange {}: {why}", i + 1))))
        .collect()
}

/// Writes exchanges as a recording (pretty JSON), replacing the file whole.
pub fn write_recording(path: impl AsRef<Path>, exchanges: &[Exchange]) -> Result<(), RecordingError> {
    let path = path.as_ref();
    let failed = |source| RecordingError::Write {
        path: path.to_path_buf(),
        source,
    };
    let doc = json!({
        "format": FORMAT,
        "exchanges": exchanges.iter().map(exchange_to_json).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| failed(std::io::Error::other(e)))?;
    text.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    // Written beside and renamed: an interrupted run never leaves half a recording.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })
}

/// Whether `value` (of [`RECORD_VAR`]) names the recording at `path`: the same file, or a path that ends
/// with it (so that it can be given relative to the workspace as well as to the crate).
pub(super) fn names(value: &str, path: &Path) -> bool {
    let wanted = Path::new(value.trim());
    if wanted.as_os_str().is_empty() {
        return false;
    }
    let absolute = |p: &Path| match std::env::current_dir() {
        Ok(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    };
    absolute(wanted) == absolute(path) || wanted.ends_with(path)
}

fn exchange_to_json(e: &Exchange) -> Value {
    let mut request = Map::new();
    request.insert("method".into(), json!(e.method));
    request.insert("upstream".into(), json!(e.upstream));
    request.insert("path".into(), json!(e.path));
    if !e.headers.is_empty() {
        request.insert("headers".into(), headers_to_json(&e.headers));
    }
    match &e.body {
        Some(ExpectedBody::Json(v)) => {
            request.insert("json".into(), v.clone());
        }
        Some(ExpectedBody::Text(t)) => {
            request.insert("text".into(), json!(t));
        }
        None => {}
    }
    let mut out = Map::new();
    out.insert("request".into(), Value::Object(request));
    match &e.outcome {
        Ok(r) => {
            let mut response = Map::new();
            response.insert("status".into(), json!(r.status));
            if !r.headers.is_empty() {
                response.insert("headers".into(), headers_to_json(&r.headers));
            }
            let (key, body) = body_to_json(&r.body);
            if let Some(key) = key {
                response.insert(key.into(), body);
            }
            out.insert("response".into(), Value::Object(response));
        }
        Err(err) => {
            let (kind, message) = match err {
                HostError::AuthFailed(m) => ("auth-failed", m),
                HostError::Timeout(m) => ("timeout", m),
                HostError::Unreachable(m) => ("unreachable", m),
                HostError::Denied(m) => ("denied", m),
                HostError::TooLarge(m) => ("too-large", m),
            };
            out.insert("error".into(), json!({"kind": kind, "message": message}));
        }
    }
    Value::Object(out)
}

/// A body as the file keeps it: JSON documents parsed, text as text, anything else as bytes.
fn body_to_json(body: &[u8]) -> (Option<&'static str>, Value) {
    if body.is_empty() {
        return (None, Value::Null);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() || v.is_array() => (Some("json"), v),
        _ => match std::str::from_utf8(body) {
            Ok(text) => (Some("text"), json!(text)),
            Err(_) => (Some("bytes"), json!(body)),
        },
    }
}

/// Headers as an object; a repeated header becomes a list of its values.
fn headers_to_json(headers: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        match map.get_mut(name) {
            Some(Value::Array(values)) => values.push(json!(value)),
            Some(first) => *first = json!([first.take(), value]),
            None => {
                map.insert(name.clone(), json!(value));
            }
        }
    }
    Value::Object(map)
}

fn headers_from_json(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let map = v
        .as_object()
        .ok_or_else(|| format!("`{what}.headers` must be an object of header names and values"))?;
    let mut out = Vec::new();
    for (name, value) in map {
        let bad = || format!("`{what}.headers.{name}` must be a string or a list of strings");
        match value {
            Value::String(s) => out.push((name.clone(), s.clone())),
            Value::Array(values) => {
                for v in values {
                    out.push((name.clone(), v.as_str().ok_or_else(bad)?.to_string()));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

fn exchange_from_json(v: &Value) -> Result<Exchange, String> {
    let object = v
        .as_object()
        .ok_or("expected an object with `request` and `response` or `error`")?;
    let request = object
        .get("request")
        .and_then(Value::as_object)
        .ok_or("`request` is missing or not an object")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match request.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`request.{key}` must be a string")),
        }
    };
    let method = text("method")?.ok_or("`request.method` is missing")?;
    let path = text("path")?.ok_or("`request.path` is missing")?;
    let mut e = Exchange::new(method, path);
    if let Some(upstream) = text("upstream")? {
        e.upstream = upstream;
    }
    e.headers = headers_from_json(request.get("headers"), "request")?;
    e.body = match (request.get("json"), text("text")?) {
        (Some(_), Some(_)) => return Err("`request` has both `json` and `text`; give one body".into()),
        (Some(v), None) => Some(ExpectedBody::Json(v.clone())),
        (None, Some(t)) => Some(ExpectedBody::Text(t)),
        (None, None) => None,
    };
    let shown = format!("{} {}", e.method, e.path);
    e.outcome = match (object.get("response"), object.get("error")) {
        (Some(r), None) => Ok(response_from_json(r).map_err(|why| format!("({shown}) {why}"))?),
        (None, Some(err)) => Err(error_from_json(err).map_err(|why| format!("({shown}) {why}"))?),
        (Some(_), Some(_)) => return Err(format!("({shown}) has both `response` and `error`; give one")),
        (None, None) => return Err(format!("({shown}) has neither `response` nor `error`")),
    };
    Ok(e)
}

fn response_from_json(v: &Value) -> Result<HttpResponse, String> {
    let object = v.as_object().ok_or("`response` must be an object")?;
    let status = object
        .get("status")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))
        .ok_or("`response.status` must be a number from 100 to 599")? as u16;
    let headers = headers_from_json(object.get("headers"), "response")?;
    let body = match (object.get("json"), object.get("text"), object.get("bytes")) {
        (None, None, None) => Vec::new(),
        (Some(v), None, None) => v.to_string().into_bytes(),
        (None, Some(Value::String(t)), None) => t.clone().into_bytes(),
        (None, Some(_), None) => return Err("`response.text` must be a string".into()),
        (None, None, Some(Value::Array(bytes))) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or("`response.bytes` must be a list of numbers from 0 to 255")?,
        (None, None, Some(_)) => return Err("`response.bytes` must be a list of numbers from 0 to 255".into()),
        _ => return Err("`response` has more than one of `json`, `text` and `bytes`; give one body".into()),
    };
    Ok(HttpResponse { status, headers, body })
}

fn error_from_json(v: &Value) -> Result<HostError, String> {
    let kind = v.get("kind").and_then(Value::as_str).ok_or("`error.kind` is missing")?;
    let message = v.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(match kind {
        "auth-failed" => HostError::AuthFailed(message),
        "timeout" => HostError::Timeout(message),
        "unreachable" => HostError::Unreachable(message),
        "denied" => HostError::Denied(message),
        "too-large" => HostError::TooLarge(message),
        other => {
            return Err(format!(
                "`error.kind` {other:?} is unknown; use auth-failed, timeout, unreachable, denied or too-large"
            ));
        }
    })
}

/// Whether `text` matches `pattern`, where each [`REDACTED`] in the pattern stands for any text.
pub(super) fn text_matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(REDACTED) {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split(REDACTED).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` equals `expected`, where a [`REDACTED`] string in `expected` matches any value.
pub(super) fn json_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if e == REDACTED => true,
        (Value::String(e), Value::String(a)) => text_matches(e, a),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| json_matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_matches(e, a)),
        _ => expected == actual,
    }
}

/// A harness in record mode: sends the requests to the real system and keeps the exchanges, redacted.
pub(super) struct Recorder {
    path: PathBuf,
    live: Live,
    exchanges: Vec<Exchange>,
    saved: bool,
}

impl Recorder {
    /// Record mode for `path`, against the system the variables (read through `var`) describe.
    pub(super) fn start(path: &Path, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, RecordingError> {
        let live = Live::from_vars(var).map_err(|reason| RecordingError::Setup {
            path: path.to_path_buf(),
            reason,
        })?;
        eprintln!(
            "provisio_sdk::testing: recording {}: the requests go to {}",
            path.display(),
            live.describe()
        );
        Ok(Recorder {
            path: path.to_path_buf(),
            live,
            exchanges: Vec::new(),
            saved: false,
        })
    }

    /// Sends a request for real; the connector gets the real answer, the recording a redacted copy.
    pub(super) fn send(&mut self, sent: &SentRequest) -> Result<HttpResponse, HostError> {
        let outcome = self.live.send(sent);
        // Asked after sending: an OAuth token fetched for this request is one of the secrets.
        let redactor = Redactor::new(self.live.secrets());
        self.exchanges.push(redactor.exchange(sent, &outcome));
        self.saved = false;
        outcome
    }

    /// Writes the recording.
    pub(super) fn save(&mut self) -> Result<(), RecordingError> {
        write_recording(&self.path, &self.exchanges)?;
        self.saved = true;
        eprintln!(
            "provisio_sdk::testing: recorded {} exchange(s) in {}",
            self.exchanges.len(),
            self.path.display()
        );
        Ok(())
    }

    /// Whether everything recorded is written.
    pub(super) fn saved(&self) -> bool {
        self.saved
    }
}

/// Whether a JSON field, form field or query parameter of this name holds a secret.
fn secret_name(name: &str) -> bool {
    let key: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    matches!(
        key.as_str(),
        "accesstoken"
            | "refreshtoken"
            | "idtoken"
            | "token"
            | "clientsecret"
            | "secret"
            | "password"
            | "apikey"
            | "authorization"
            | "privatekey"
            | "assertion"
    ) || key.ends_with("password")
        || key.ends_with("secret")
}

/// Whether a header of this name carries credentials.
fn secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || secret_name(&lower)
        || ["token", "secret", "password", "api-key", "apikey"]
            .iter()
            .any(|w| lower.contains(w))
}

/// Turns what was sent and answered into an [`Exchange`] with the secrets taken out.
pub(super) struct Redactor {
    /// Literal credentials (passwords, tokens, their encodings), replaced wherever they occur.
    secrets: Vec<String>,
}

impl Redactor {
    /// Literals shorter than this are not searched for: they would blank out ordinary text.
    const MIN_SECRET: usize = 4;

    pub(super) fn new(secrets: Vec<String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= Self::MIN_SECRET)
            .flat_map(|s| {
                let encoded = encode_component(&s);
                [s, encoded]
            })
            .collect();
        // Longest first: a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub(super) fn exchange(&self, sent: &SentRequest, outcome: &Result<HttpResponse, HostError>) -> Exchange {
        let mut e = Exchange::new(sent.method.clone(), self.path(&sent.path)).upstream(sent.upstream.clone());
        e.headers = self.headers(&sent.headers);
        e.body = sent
            .body
            .as_deref()
            .and_then(|body| match serde_json::from_slice::<Value>(body) {
                Ok(v) if v.is_object() || v.is_array() => Some(ExpectedBody::Json(self.json(v))),
                _ => std::str::from_utf8(body)
                    .ok()
                    .map(|t| ExpectedBody::Text(self.text_body(t))),
            });
        e.outcome = match outcome {
            Ok(r) => {
                // Framing belongs to the connection (the host never hands it over), and a JSON body is
                // replayed compact: its length would be wrong.
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .filter(|(n, _)| !crate::http::is_framing_header(n))
                    .cloned()
                    .collect();
                Ok(HttpResponse {
                    status: r.status,
                    headers: self.headers(&headers),
                    body: self.body(&r.body),
                })
            }
            Err(err) => Err(match err {
                HostError::AuthFailed(m) => HostError::AuthFailed(self.scrub(m)),
                HostError::Timeout(m) => HostError::Timeout(self.scrub(m)),
                HostError::Unreachable(m) => HostError::Unreachable(self.scrub(m)),
                HostError::Denied(m) => HostError::Denied(self.scrub(m)),
                HostError::TooLarge(m) => HostError::TooLarge(self.scrub(m)),
            }),
        };
        e
    }

    /// Every credential literal replaced.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    fn headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| {
                let v = if secret_header(n) {
                    REDACTED.to_string()
                } else {
                    self.scrub(v)
                };
                (n.clone(), v)
            })
            .collect()
    }

    fn path(&self, path: &str) -> String {
        match path.split_once('?') {
            Some((p, query)) => format!("{}?{}", self.scrub(p), self.form(query)),
            None => self.scrub(path),
        }
    }

    /// `a=1&password=x` with the values of secret names replaced.
    fn form(&self, query: &str) -> String {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_name(&decode_component(k)) => format!("{k}={REDACTED}"),
                _ => self.scrub(pair),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn text_body(&self, text: &str) -> String {
        let form_like = text.contains('=') && !text.contains(char::is_whitespace);
        if form_like { self.form(text) } else { self.scrub(text) }
    }

    fn body(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) if v.is_object() || v.is_array() => self.json(v).to_string().into_bytes(),
            _ => match std::str::from_utf8(body) {
                Ok(text) => self.text_body(text).into_bytes(),
                Err(_) => body.to_vec(),
            },
        }
    }

    fn json(&self, v: Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let secret = secret_name(&k)
                            && (matches!(v, Value::Number(_)) || matches!(&v, Value::String(s) if !s.is_empty()));
                        let v = if secret { json!(REDACTED) } else { self.json(v) };
                        (k, v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::String(s) => Value::String(self.scrub(&s)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_what_was_redacted() {
        assert!(text_matches("Bearer <redacted>", "Bearer abc"));
        assert!(text_matches("a<redacted>b<redacted>c", "a1b2c"));
        assert!(!text_matches("a<redacted>b", "a1c"));
        assert!(!text_matches("ab<redacted>ba", "aba"));
        assert!(json_matches(
            &json!({"user": "x", "password": REDACTED}),
            &json!({"password": "secret!", "user": "x"})
        ));
        assert!(!json_matches(&json!({"user": "x"}), &json!({"user": "y"})));
    }

    #[test]
    fn secrets_are_taken_out_by_name_and_by_value() {
        let r = Redactor::new(vec!["s3cr3t-token".into(), "abc".into()]);
        let sent = SentRequest {
            upstream: "api".into(),
            method: "POST".into(),
            path: "users?api_key=k1&q=s3cr3t-token&n=abc".into(),
            headers: vec![
                ("X-Api-Key".into(), "k2".into()),
                ("Accept".into(), "application/json".into()),
            ],
            body: Some(br#"{"userName":"a","password":"pw","note":"token s3cr3t-token"}"#.to_vec()),
        };
        let answer = HttpResponse {
            status: 200,
            headers: vec![("set-cookie".into(), "session=1".into())],
            body: br#"{"access_token":"t0k3n","token_type":"bearer"}"#.to_vec(),
        };
        let e = r.exchange(&sent, &Ok(answer));
        let text = exchange_to_json(&e).to_string();
        for leaked in ["k1", "k2", "s3cr3t-token", "\"pw\"", "t0k3n", "session=1"] {
            assert!(!text.contains(leaked), "{leaked} leaked: {text}");
        }
        assert!(text.contains("bearer") && text.contains("n=abc"), "{text}");
    }

    fn temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("provisio-sdk-{}-{name}.json", std::process::id()));
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn missing_or_malformed_recordings_are_errors_that_say_so() {
        let missing = Path::new("recordings/never-recorded.json");
        let err = read_recording(missing).expect_err("missing");
        assert!(matches!(err, RecordingError::Missing { .. }));
        // `unwrap()` shows the message itself, with the command that records it.
        let shown = format!("{err:?}");
        assert_eq!(shown, err.to_string());
        assert!(
            shown.contains("recordings/never-recorded.json does not exist")
                && shown.contains("PROVISIO_RECORD=recordings/never-recorded.json PROVISIO_RECORD_URL="),
            "{shown}"
        );

        let cases = [
            (
                "syntax",
                "{\"exchanges\": [",
                "not JSON: EOF while parsing a list at line 1 column 15",
            ),
            ("shape", "[]", "expected an object with an `exchanges` list"),
            (
                "format",
                r#"{"format": 2, "exchanges": []}"#,
                "`format` is 2; this SDK reads format 1",
            ),
            (
                "status",
                r#"{"exchanges": [{"request": {"method": "GET", "path": "users"}, "response": {"status": "ok"}}]}"#,
                "exchange 1: (GET users) `response.status` must be a number from 100 to 599",
            ),
            (
                "method",
                r#"{"exchanges": [{"request": {"path": "users"}, "response": {"status": 200}}]}"#,
                "exchange 1: `request.method` is missing",
            ),
            (
                "outcome",
                r#"{"exchanges": [{"request": {"method": "GET", "path": "a"}, "response": {"status": 200}},
                                  {"request": {"method": "GET", "path": "b"}}]}"#,
                "exchange 2: (GET b) has neither `response` nor `error`",
            ),
            (
                "kind",
                r#"{"exchanges": [{"request": {"method": "GET", "path": "a"}, "error": {"kind": "oops"}}]}"#,
                "`error.kind` \"oops\" is unknown",
            ),
        ];
        for (name, text, expected) in cases {
            let path = temp(name, text);
            let err = read_recording(&path).expect_err(name);
            let _ = std::fs::remove_file(&path);
            assert!(matches!(err, RecordingError::Malformed { .. }), "{name}: {err}");
            assert!(err.to_string().contains(expected), "{name}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{name}: {err}");
        }
    }

    #[test]
    fn canned_exchanges_survive_the_file() {
        let exchanges = [
            Exchange::get("users?limit=1")
                .header("accept", "application/json")
                .respond(200, json!({"users": []}))
                .with_header("set-cookie", "a")
                .with_header("set-cookie", "b"),
            Exchange::post("token")
                .upstream("token")
                .body_text("grant_type=client_credentials")
                .respond_text(200, "plain"),
            Exchange::put("users/1")
                .body_json(json!({"id": "1"}))
                .fail(HostError::Timeout("30 s".into())),
            Exchange::get("photo")
                .respond_text(200, "")
                .with_header("content-type", "image/png"),
        ];
        let mut binary = exchanges[3].clone();
        if let Ok(r) = &mut binary.outcome {
            r.body = vec![0x89, b'P', 0xff];
        }
        let exchanges = [&exchanges[..3], &[binary]].concat();
        let path = temp("roundtrip", "");
        write_recording(&path, &exchanges).expect("written");
        let back = read_recording(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.len(), 4);
        for (a, b) in exchanges.iter().zip(&back) {
            assert_eq!(exchange_to_json(a), exchange_to_json(b));
            assert_eq!((&a.upstream, &a.method, &a.path), (&b.upstream, &b.method, &b.path));
            assert_eq!(a.outcome, b.outcome);
        }
    }

    #[test]
    fn names_the_recording_relative_or_by_its_tail() {
        assert!(names("recordings/a.json", Path::new("recordings/a.json")));
        assert!(names("connectors/x/recordings/a.json", Path::new("recordings/a.json")));
        assert!(!names("recordings/b.json", Path::new("recordings/a.json")));
        assert!(!names("", Path::new("recordings/a.json")));
    }
}
