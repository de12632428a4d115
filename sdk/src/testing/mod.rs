//! A native test harness: run a connector against canned HTTP exchanges, without a host.
//!
//! ```
//! use provisio_sdk::testing::{Exchange, Harness};
//! use provisio_sdk::{Config, http::Request};
//! use serde_json::json;
//!
//! let cfg = Config::new("test").with("URL", "http://scim.example/v2");
//! let mut h = Harness::new();
//! h.expect(Exchange::get("Users?startIndex=1&count=2").respond(200, json!({"Resources": [], "totalResults": 0})));
//! let status = h.run(|| Request::get("Users").query("startIndex", 1).query("count", 2).send(&cfg).map(|r| r.status));
//! assert_eq!(status, Ok(200));
//! assert_eq!(h.requests()[0].path, "Users?startIndex=1&count=2");
//! ```
//!
//! Every request the code sends inside [`Harness::run`] must be the next expected [`Exchange`]: same method,
//! upstream, path, query parameters (compared decoded and in any order), and body or headers when the
//! exchange names them. Anything else panics with a message that shows what was expected and what was sent,
//! which fails the test. A harness dropped with expected exchanges left over panics too (unless the test is
//! already failing); [`Harness::assert_done`] checks that explicitly.
//!
//! Log lines written with [`log`](crate::log) are collected ([`Harness::logs`]) and echoed to stderr.
//!
//! # Recorded exchanges
//!
//! [`Harness::recorded`] takes its exchanges from a JSON file (format: [`read_recording`]). When the
//! environment variable [`RECORD_VAR`] (`PROVISIO_RECORD`) names that file, the harness records instead: it
//! sends the connector's requests to the real system that `PROVISIO_RECORD_URL` and its companions describe,
//! hands the connector the real answers, and writes the exchanges, secrets redacted, to the file when it is
//! dropped (or on [`Harness::save`]). Run without the variable, the same test replays the file.
//!
//! ```no_run
//! use provisio_sdk::testing::Harness;
//! use provisio_sdk::{Config, http::Request};
//!
//! let cfg = Config::new("test").with("URL", "http://example/v1");
//! let mut h = Harness::recorded("recordings/users.json").unwrap();
//! let status = h.run(|| Request::get("users").query("limit", 1).send(&cfg).map(|r| r.status));
//! assert_eq!(status, Ok(200));
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;

use serde_json::Value;

use crate::Config;
use crate::bindings::provisio::connector::host::{HttpRequest, HttpResponse};
use crate::http::{HostError, decode_component};
use crate::log::Level;

mod live;
#[cfg(all(test, feature = "record"))]
mod record_tests;
mod recording;

pub use recording::{RECORD_VAR, REDACTED, RecordingError, read_recording, write_recording};
use recording::{Recorder, json_matches, text_matches};

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct State {
    expected: VecDeque<Exchange>,
    sent: Vec<SentRequest>,
    logs: Vec<(Level, String)>,
    /// Set in record mode: requests go to the real system.
    recorder: Option<Recorder>,
}

/// A test harness: queue the exchanges a connector should make, [`run`](Harness::run) it, inspect what it
/// sent.
#[derive(Default)]
pub struct Harness {
    state: Rc<RefCell<State>>,
}

impl Harness {
    /// An empty harness.
    pub fn new() -> Self {
        Self::default()
    }

    /// A harness whose exchanges come from the recording at `path` (relative paths are relative to the
    /// crate under test), or, when [`RECORD_VAR`] names that file, that records it: see the
    /// [module documentation](self).
    ///
    /// Errors: the file is missing, unreadable or not a recording; or record mode is asked for but the
    /// variables that describe the system are missing or wrong. Each message says what to do.
    pub fn recorded(path: impl AsRef<Path>) -> Result<Self, RecordingError> {
        Self::recorded_with(path.as_ref(), &|name| std::env::var(name).ok())
    }

    /// [`recorded`](Harness::recorded), reading the variables through `var`.
    fn recorded_with(path: &Path, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, RecordingError> {
        let h = Harness::new();
        if var(RECORD_VAR).is_some_and(|v| recording::names(&v, path)) {
            h.state.borrow_mut().recorder = Some(Recorder::start(path, var)?);
        } else {
            h.state.borrow_mut().expected.extend(read_recording(path)?);
        }
        Ok(h)
    }

    /// Whether this harness records (sends to the real system) rather than answers from exchanges. A test
    /// can skip assertions that only hold for the recorded data while it records.
    pub fn is_recording(&self) -> bool {
        self.state.borrow().recorder.is_some()
    }

    /// In record mode, writes the recording now (otherwise it is written when the harness is dropped).
    /// Does nothing when replaying.
    pub fn save(&self) -> Result<(), RecordingError> {
        match self.state.borrow_mut().recorder.as_mut() {
            Some(recorder) => recorder.save(),
            None => Ok(()),
        }
    }

    /// Queues the next expected exchange.
    ///
    /// Panics in record mode, where the real system answers.
    pub fn expect(&mut self, exchange: Exchange) -> &mut Self {
        let mut state = self.state.borrow_mut();
        if state.recorder.is_some() {
            drop(state);
            panic!(
                "this harness is recording ({RECORD_VAR} is set): the real system answers, so it takes no \
                 expected exchanges; use `Harness::new()` for canned ones"
            );
        }
        state.expected.push_back(exchange);
        drop(state);
        self
    }

    /// Runs `f` (a connector call) with this harness answering its HTTP requests, and returns its result.
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Reset(Option<Rc<RefCell<State>>>);
        impl Drop for Reset {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(Rc::clone(&self.state)));
        let _reset = Reset(previous);
        f()
    }

    /// The requests sent so far, in order.
    pub fn requests(&self) -> Vec<SentRequest> {
        self.state.borrow().sent.clone()
    }

    /// The log lines written so far, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.borrow().logs.clone()
    }

    /// How many expected exchanges have not happened yet.
    pub fn pending(&self) -> usize {
        self.state.borrow().expected.len()
    }

    /// Panics unless every expected exchange has happened.
    pub fn assert_done(&self) {
        let state = self.state.borrow();
        if !state.expected.is_empty() {
            let mut msg = format!("{} expected request(s) were not sent:\n", state.expected.len());
            for e in &state.expected {
                let _ = writeln!(msg, "  {}", e.describe());
            }
            panic!("{msg}");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let unsaved = self.state.borrow().recorder.as_ref().is_some_and(|r| !r.saved());
        // Written also when the test failed: the recording is what the system answered, and replaying it
        // shows the same failure without the system.
        if unsaved && let Err(e) = self.save() {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
        if !std::thread::panicking() {
            self.assert_done();
        }
    }
}

/// A request the code under test sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// The upstream (`api`, `token`, …).
    pub upstream: String,
    /// The method.
    pub method: String,
    /// The path with its query string, as sent.
    pub path: String,
    /// The headers, as set.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
}

impl SentRequest {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> Option<String> {
        self.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        self.body.as_ref().and_then(|b| serde_json::from_slice(b).ok())
    }
}

/// An expected request and the answer to give it.
#[derive(Debug, Clone)]
pub struct Exchange {
    upstream: String,
    method: String,
    path: String,
    body: Option<ExpectedBody>,
    headers: Vec<(String, String)>,
    outcome: Result<HttpResponse, HostError>,
}

/// The body an [`Exchange`] expects.
#[derive(Debug, Clone)]
enum ExpectedBody {
    /// A JSON document, compared as JSON.
    Json(Value),
    /// Text, compared exactly.
    Text(String),
}

impl Exchange {
    /// Expects `method` on `path` (with its query string) on the `api` upstream, answered by default with
    /// `200` and an empty body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Exchange {
            upstream: crate::http::API.to_string(),
            method: method.into(),
            path: path.into(),
            body: None,
            headers: Vec::new(),
            outcome: Ok(HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            }),
        }
    }

    /// Expects a `GET`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    /// Expects a `POST`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    /// Expects a `PUT`.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new("PUT", path)
    }

    /// Expects a `PATCH`.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new("PATCH", path)
    }

    /// Expects a `DELETE`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }

    /// Expects the request on another upstream than `api`.
    pub fn upstream(mut self, name: impl Into<String>) -> Self {
        self.upstream = name.into();
        self
    }

    /// Expects a JSON body equal to `body` (a [`REDACTED`] string in it matches any value).
    pub fn body_json(mut self, body: Value) -> Self {
        self.body = Some(ExpectedBody::Json(body));
        self
    }

    /// Expects a body equal to this text (each [`REDACTED`] in it matches any text).
    pub fn body_text(mut self, body: impl Into<String>) -> Self {
        self.body = Some(ExpectedBody::Text(body.into()));
        self
    }

    /// Expects a header with this value (case-insensitive name; [`REDACTED`] matches any value).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers with `status` and `body` as JSON (`Content-Type: application/scim+json`).
    pub fn respond(self, status: u16, body: Value) -> Self {
        self.respond_text(status, body.to_string())
            .with_header("content-type", "application/scim+json")
    }

    /// Answers with `status` and a text body.
    pub fn respond_text(mut self, status: u16, body: impl Into<String>) -> Self {
        let headers = self.outcome.map(|r| r.headers).unwrap_or_default();
        self.outcome = Ok(HttpResponse {
            status,
            headers,
            body: body.into().into_bytes(),
        });
        self
    }

    /// Answers with `status` and no body (`204`, say).
    pub fn respond_empty(self, status: u16) -> Self {
        self.respond_text(status, "")
    }

    /// Adds a header to the answer (`Retry-After`, `ETag`, …).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Ok(r) = &mut self.outcome {
            r.headers.push((name.into().to_ascii_lowercase(), value.into()));
        }
        self
    }

    /// Makes the host fail the request instead of answering (a timeout, an unreachable system, …).
    pub fn fail(mut self, error: HostError) -> Self {
        self.outcome = Err(error);
        self
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}:{}", self.method, self.upstream, self.path);
        match &self.body {
            Some(ExpectedBody::Json(b)) => {
                let _ = write!(s, " with body {b}");
            }
            Some(ExpectedBody::Text(t)) => {
                let _ = write!(s, " with body {t}");
            }
            None => {}
        }
        s
    }

    /// What differs between this expectation and `req`, if anything.
    fn mismatch(&self, req: &SentRequest) -> Option<String> {
        if !self.method.eq_ignore_ascii_case(&req.method) || self.upstream != req.upstream {
            return Some("method or upstream differ".into());
        }
        if !path_matches(&self.path, &req.path) {
            return Some("path or query differ".into());
        }
        for (n, v) in &self.headers {
            if !req.header(n).is_some_and(|sent| text_matches(v, sent)) {
                return Some(format!("header `{n}` is {:?}, expected {v:?}", req.header(n)));
            }
        }
        match &self.body {
            Some(ExpectedBody::Json(expected)) => match req.json() {
                Some(actual) if json_matches(expected, &actual) => {}
                Some(actual) => {
                    return Some(format!("body differs:\n    expected {expected}\n    sent     {actual}"));
                }
                None => return Some(format!("body is not JSON: {:?}", req.text())),
            },
            Some(ExpectedBody::Text(expected)) => {
                let actual = req.text().unwrap_or_default();
                if !text_matches(expected, &actual) {
                    return Some(format!("body differs:\n    expected {expected}\n    sent     {actual}"));
                }
            }
            None => {}
        }
        None
    }
}

/// Whether a sent path matches an expected one: the same path, the same query parameters in any order,
/// [`REDACTED`] in the expected one matching anything.
fn path_matches(expected: &str, sent: &str) -> bool {
    let ((path, params), (sent_path, sent_params)) = (split_path(expected), split_path(sent));
    text_matches(&path, &sent_path)
        && params.len() == sent_params.len()
        && params
            .iter()
            .zip(&sent_params)
            .all(|((k, v), (sk, sv))| k == sk && text_matches(v, sv))
}

/// The path, and the query parameters decoded and sorted.
fn split_path(p: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = p.split_once('?').unwrap_or((p, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect();
    params.sort();
    (path.to_string(), params)
}

fn current() -> Rc<RefCell<State>> {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_else(|| {
        panic!(
            "provisio_sdk::http: a request was sent on a native target outside a test harness; \
             wrap the connector call in `provisio_sdk::testing::Harness::run`"
        )
    })
}

/// Answers a request from the running harness (what [`http`](crate::http) does on native targets).
pub(crate) fn dispatch(_cfg: &Config, req: &HttpRequest) -> Result<HttpResponse, HostError> {
    let state = current();
    let mut state = state.borrow_mut();
    let sent = SentRequest {
        upstream: req.upstream.clone(),
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
    };
    let shown = format!(
        "{} {}:{}{}",
        sent.method,
        sent.upstream,
        sent.path,
        match sent.text() {
            Some(t) => format!(" with body {t}"),
            None => String::new(),
        }
    );
    state.sent.push(sent.clone());
    if let Some(recorder) = state.recorder.as_mut() {
        return recorder.send(&sent);
    }
    let Some(next) = state.expected.pop_front() else {
        drop(state);
        panic!("unexpected request (no more requests were expected): {shown}");
    };
    if let Some(why) = next.mismatch(&sent) {
        drop(state);
        panic!(
            "unexpected request: {why}\n  expected: {}\n  sent:     {shown}",
            next.describe()
        );
    }
    next.outcome
}

/// Records a log line (what [`log`](crate::log) does on native targets).
pub(crate) fn record_log(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
    if let Some(state) = CURRENT.with(|c| c.borrow().clone()) {
        state.borrow_mut().logs.push((level, message.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;
    use crate::{Error, log};
    use serde_json::json;

    fn cfg() -> Config {
        Config::new("t")
    }

    #[test]
    fn answers_in_order_and_records_requests() {
        let mut h = Harness::new();
        h.expect(Exchange::get("Users?count=1&startIndex=1").respond(200, json!({"a": 1})))
            .expect(
                Exchange::post("Users")
                    .body_json(json!({"userName": "x"}))
                    .respond(201, json!({"id": "1"})),
            );
        let (a, b) = h.run(|| {
            log::info("hello");
            let a = Request::get("Users")
                .query("startIndex", 1)
                .query("count", 1)
                .send(&cfg())
                .unwrap();
            let b = Request::post("Users")
                .json(&json!({"userName": "x"}))
                .send(&cfg())
                .unwrap();
            (a, b)
        });
        assert_eq!(a.json().unwrap(), json!({"a": 1}));
        assert_eq!(a.header("Content-Type"), Some("application/scim+json"));
        assert_eq!(b.status, 201);
        let sent = h.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].json(), Some(json!({"userName": "x"})));
        assert_eq!(h.logs(), vec![(Level::Info, "hello".to_string())]);
    }

    #[test]
    fn simulates_host_failures() {
        let mut h = Harness::new();
        h.expect(Exchange::get("Users").fail(HostError::Unreachable("connection refused".into())));
        h.expect(Exchange::get("Users").fail(HostError::AuthFailed("bad client".into())));
        h.expect(Exchange::get("Users").fail(HostError::Timeout("30 s".into())));
        h.expect(Exchange::get("Users").fail(HostError::Denied("absolute URL".into())));
        let errs: Vec<Error> = h.run(|| {
            (0..4)
                .map(|_| Request::get("Users").send(&cfg()).unwrap_err())
                .collect()
        });
        assert!(matches!(&errs[0], Error::Transient(m) if m.contains("could not be reached")));
        assert!(matches!(&errs[1], Error::Unauthorized(_)));
        assert!(matches!(&errs[2], Error::Transient(m) if m.contains("in time")));
        assert!(matches!(&errs[3], Error::InvalidConfig(m) if m.contains("absolute URL")));
    }

    #[test]
    #[should_panic(expected = "unexpected request: path or query differ")]
    fn panics_on_an_unexpected_request() {
        let mut h = Harness::new();
        h.expect(Exchange::get("Groups"));
        h.run(|| Request::get("Users").send(&cfg()).map(|_| ())).ok();
    }

    #[test]
    #[should_panic(expected = "were not sent")]
    fn panics_when_expected_requests_are_left() {
        let mut h = Harness::new();
        h.expect(Exchange::get("Groups"));
    }

    #[test]
    fn run_restores_after_a_panic() {
        let r = std::panic::catch_unwind(|| {
            let mut h = Harness::new();
            h.run(|| Request::get("Users").send(&cfg()).map(|_| ())).ok();
        });
        assert!(r.is_err());
        assert!(CURRENT.with(|c| c.borrow().is_none()));
    }
}
