//! The outbound HTTP capability: the only way a connector reaches the network.
//!
//! A connector names an upstream and a relative path; the host joins the path to the system's configured
//! base URL (refusing anything outside it), attaches credentials, waits for the system's rate limit (its
//! schedule in the store when several replicas share it) and for a pause its `429 Retry-After` asked for,
//! and enforces timeouts and a body-size cap. Redirects are followed by hand, and only within the upstream.
//!
//! Everything a guest hands over is checked before the host builds anything from it: the method (ordinary
//! methods only), the number and size of headers, the path's length and the body's size. The credentials
//! the host attached are scrubbed from the response before the guest sees it (`scrub`).

pub mod auth;
pub mod path;
pub mod pause;
pub mod rate;
pub mod scrub;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::store::LimitStore;

pub use auth::{Credentials, OAuth2Client};
use pause::Pauses;
use rate::RateLimiter;
pub use scrub::Secrets;

/// The methods a connector may use. TRACE and CONNECT are refused: TRACE makes an upstream echo the
/// request, credentials included, and CONNECT opens a tunnel.
pub const ALLOWED_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A request as a connector asked for it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// `api` or `token`.
    pub upstream: String,
    /// HTTP method.
    pub method: String,
    /// Path relative to the upstream, with optional query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
}

/// A response as the connector sees it.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a request produced no response.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HttpError {
    /// Refused by the host's policy.
    #[error("request denied: {0}")]
    Denied(String),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Could not connect.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Credentials could not be obtained.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// Response body over the cap.
    #[error("response too large: {0}")]
    TooLarge(String),
}

/// Where and how one system's requests go. Built by the host from the system's stored configuration,
/// never from anything the guest says.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemEndpoint {
    /// The system's id, for logs and the rate limiter.
    pub system_id: String,
    /// `URL`.
    pub api: Option<Url>,
    /// `OAuth2TokenServiceURL`.
    pub token: Option<Url>,
    /// How requests to `api` are authenticated.
    pub credentials: Credentials,
    /// Requests per second allowed towards this system (`None`: unlimited).
    pub rate_per_second: Option<f64>,
    /// Headers the host attaches to every `api` request, as it attaches credentials: the sealed
    /// `ips.http.header.*` properties (an `X-Api-Key`, say), which the guest never sees.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl SystemEndpoint {
    /// Whether requests to `other` carry the same credentials and sealed headers (so the same secrets).
    pub fn attaches_the_same(&self, other: &SystemEndpoint) -> bool {
        self.credentials == other.credentials && self.headers == other.headers
    }
}

/// Limits on every outbound request.
#[derive(Clone, Debug)]
pub struct OutboundLimits {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole request timeout (including the body).
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Redirects followed (same upstream only).
    pub max_redirects: usize,
    /// Headers one request may carry.
    pub max_request_headers: usize,
    /// Names and values of one request's headers together, in bytes.
    pub max_request_header_bytes: usize,
    /// Length of the path (with its query) a connector names.
    pub max_path_bytes: usize,
    /// Largest request body a connector may send.
    pub max_request_body_bytes: usize,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        OutboundLimits {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 32 * 1024 * 1024,
            max_redirects: 5,
            max_request_headers: 100,
            max_request_header_bytes: 64 << 10,
            max_path_bytes: 8 << 10,
            max_request_body_bytes: 16 << 20,
        }
    }
}

/// Shared outbound machinery: one HTTP client (connection pooling), the token cache, rate limiters.
pub struct Outbound {
    transport: transport::Transport,
    tokens: auth::TokenCache,
    limiters: Mutex<HashMap<String, Arc<RateLimiter>>>,
    limits: OutboundLimits,
    /// Live replicas sending to the same systems: when the shared schedule cannot be reached, each sends its
    /// share of a system's rate limit, so that together they keep to it (1 on a store of its own).
    replicas: std::sync::atomic::AtomicU64,
    /// Systems paused by their `429 Retry-After`.
    pauses: Pauses,
    /// The schedules and pauses several replicas share (set on a shared store).
    shared: std::sync::OnceLock<Arc<dyn LimitStore>>,
}

pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    // reqwest's own text ("error sending request for url …") says nothing its causes do not.
    with_causes(what, e.source())
}

/// `what`, then each cause from `first` on, as one line: `what: cause: its cause`.
pub(crate) fn with_causes(what: &str, first: Option<&(dyn std::error::Error + 'static)>) -> String {
    std::iter::successors(first, |c| c.source()).fold(what.to_string(), |text, c| format!("{text}: {c}"))
}

impl Outbound {
    /// Builds the client with the given limits.
    pub fn new(limits: OutboundLimits) -> Result<Self, String> {
        let transport = transport::Transport::new(limits.connect_timeout, limits.request_timeout)?;
        Ok(Outbound {
            transport,
            tokens: auth::TokenCache::default(),
            limiters: Mutex::new(HashMap::new()),
            limits,
            replicas: std::sync::atomic::AtomicU64::new(1),
            pauses: Pauses::default(),
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Shares rate limits and pauses with the other replicas through `store`: every request to a
    /// rate-limited system takes its turn from the system's one schedule, and a pause one replica is told of
    /// is recorded there. Call [`Outbound::follow_pauses`] too.
    pub fn share_limits(&self, store: Arc<dyn LimitStore>) {
        let _ = self.shared.set(store);
    }

    /// Follows the pauses other replicas recorded, every `every`, for as long as it runs.
    pub async fn follow_pauses(self: Arc<Self>, every: Duration) {
        let Some(shared) = self.shared.get().cloned() else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match shared.pauses().await {
                Ok(paused) => {
                    for (system, left) in paused {
                        self.pauses.pause(&system, left);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the systems other replicas paused"),
            }
        }
    }

    /// Tells how many live replicas send to the same systems (at least 1): when the shared schedule cannot
    /// be reached, this one sends its share of each system's rate limit.
    pub fn set_replicas(&self, replicas: u64) {
        self.replicas
            .store(replicas.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    fn limiter(&self, endpoint: &SystemEndpoint) -> Option<Arc<RateLimiter>> {
        let replicas = self.replicas.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let rate = endpoint.rate_per_second? / replicas as f64;
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry(endpoint.system_id.clone())
            .or_insert_with(|| Arc::new(RateLimiter::new(rate)));
        if (limiter.requested() - rate).abs() > f64::EPSILON {
            *limiter = Arc::new(RateLimiter::new(rate));
        }
        Some(limiter.clone())
    }

    /// Waits for the system's rate limit: its turn in the shared schedule, or in this replica's own limiter
    /// (its share of the limit) on a store of its own or while the shared one does not answer.
    async fn take_turn(&self, endpoint: &SystemEndpoint) {
        let Some(rate) = endpoint.rate_per_second else {
            return;
        };
        if let Some(shared) = self.shared.get() {
            // Bursts as the local limiter allows them: one second's worth.
            match shared.reserve(&endpoint.system_id, rate, rate.max(1.0)).await {
                Ok(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return;
                }
                Err(e) => tracing::warn!(system = %endpoint.system_id, error = %e,
                    "cannot take a turn in the shared rate limit; sending this replica's share"),
            }
        }
        if let Some(limiter) = self.limiter(endpoint) {
            limiter.acquire().await;
        }
    }

    /// Pauses a system that answered 429 with `Retry-After`, here and, on a shared store, for every replica.
    async fn pause(&self, endpoint: &SystemEndpoint, pause: std::time::Duration) {
        tracing::info!(system = %endpoint.system_id, seconds = pause.as_secs_f64(),
            "the system asked for a pause (429 Retry-After); nothing is sent to it meanwhile");
        self.pauses.pause(&endpoint.system_id, pause);
        if let Some(shared) = self.shared.get()
            && let Err(e) = shared.pause(&endpoint.system_id, pause).await
        {
            tracing::warn!(system = %endpoint.system_id, error = %e, "cannot record a pause for the other replicas");
        }
    }

    /// The limits every request is checked against.
    pub fn limits(&self) -> &OutboundLimits {
        &self.limits
    }

    /// Sends a connector's request for `endpoint`'s system; the credentials attached are scrubbed from the
    /// answer.
    pub async fn send(&self, endpoint: &SystemEndpoint, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send_scrubbed(endpoint, request, &mut Secrets::of_endpoint(endpoint))
            .await
    }

    /// Checks what the guest handed over against the limits, before anything is built from it; answers
    /// the method.
    pub fn check(&self, request: &HttpRequest) -> Result<reqwest::Method, HttpError> {
        let limits = &self.limits;
        // Compared without building an upper-case copy: this runs for every request a connector sends.
        let Some(allowed) = ALLOWED_METHODS.iter().find(|m| m.eq_ignore_ascii_case(&request.method)) else {
            let shown: String = request.method.chars().take(32).collect();
            return Err(HttpError::Denied(format!(
                "method {shown:?} is not allowed; use one of {}",
                ALLOWED_METHODS.join(", ")
            )));
        };
        if request.headers.len() > limits.max_request_headers {
            return Err(HttpError::Denied(format!(
                "{} headers exceed the limit of {} headers per request",
                request.headers.len(),
                limits.max_request_headers
            )));
        }
        let header_bytes: usize = request.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if header_bytes > limits.max_request_header_bytes {
            return Err(HttpError::Denied(format!(
                "headers of {header_bytes} bytes exceed the limit of {} bytes per request",
                limits.max_request_header_bytes
            )));
        }
        if request.path.len() > limits.max_path_bytes {
            return Err(HttpError::Denied(format!(
                "a path of {} bytes exceeds the limit of {} bytes",
                request.path.len(),
                limits.max_path_bytes
            )));
        }
        let body = request.body.as_ref().map_or(0, Vec::len);
        if body > limits.max_request_body_bytes {
            return Err(HttpError::Denied(format!(
                "a request body of {body} bytes exceeds the limit of {} bytes",
                limits.max_request_body_bytes
            )));
        }
        reqwest::Method::from_bytes(allowed.as_bytes())
            .map_err(|_| HttpError::Denied(format!("invalid HTTP method {:?}", request.method)))
    }

    /// Sends a connector's request for `endpoint`'s system. `secrets` holds what the caller already scrubs;
    /// the authorization attached to this request is added to it, and all of it is scrubbed from the
    /// answer (headers, body and error messages).
    pub async fn send_scrubbed(
        &self,
        endpoint: &SystemEndpoint,
        request: HttpRequest,
        secrets: &mut Secrets,
    ) -> Result<HttpResponse, HttpError> {
        let mut attached = Vec::new();
        let result = self.send_unscrubbed(endpoint, request, &mut attached).await;
        for value in &attached {
            secrets.add_header_value(value);
        }
        if secrets.is_empty() {
            return result;
        }
        match result {
            Ok(mut response) => {
                secrets.scrub_bytes(&mut response.body);
                for (_, value) in &mut response.headers {
                    secrets.scrub_string(value);
                }
                Ok(response)
            }
            Err(mut e) => {
                let (HttpError::Denied(m)
                | HttpError::Timeout(m)
                | HttpError::Unreachable(m)
                | HttpError::AuthFailed(m)
                | HttpError::TooLarge(m)) = &mut e;
                secrets.scrub_string(m);
                Err(e)
            }
        }
    }

    async fn send_unscrubbed(
        &self,
        endpoint: &SystemEndpoint,
        request: HttpRequest,
        attached: &mut Vec<String>,
    ) -> Result<HttpResponse, HttpError> {
        let method = self.check(&request)?;
        let base = match request.upstream.as_str() {
            "api" => endpoint
                .api
                .as_ref()
                .ok_or_else(|| HttpError::Denied("the system has no URL property".into()))?,
            "token" => endpoint
                .token
                .as_ref()
                .ok_or_else(|| HttpError::Denied("the system has no OAuth2TokenServiceURL property".into()))?,
            other => {
                // Shown cut short: the name is the guest's, of any length.
                let shown: String = other.chars().take(64).collect();
                return Err(HttpError::Denied(format!(
                    "unknown upstream {shown:?}; use \"api\" or \"token\""
                )));
            }
        };
        let url = path::join(base, &request.path).map_err(HttpError::Denied)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &request.headers {
            // The host owns these: credentials, routing and framing.
            if is_host_owned_header(name)
                || endpoint
                    .headers
                    .iter()
                    .any(|(own, _)| own.as_str().eq_ignore_ascii_case(name))
            {
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let name = reqwest::header::HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| HttpError::Denied(format!("invalid header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| HttpError::Denied(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
        let authenticate = request.upstream == "api";
        // One copy of the body, shared (not copied) by redirects and the retry.
        let body = request.body.map(bytes::Bytes::from);
        let (response, sent) = self
            .send_authenticated(endpoint, base, url.clone(), &method, &headers, &body, authenticate)
            .await?;
        attached.extend(sent.clone());
        // A cached OAuth token may have been revoked: fetch a new one and try once more.
        if response.status == 401
            && authenticate
            && let Credentials::OAuth2(oauth) = &endpoint.credentials
        {
            let rejected = sent
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_default();
            self.tokens.invalidate(oauth, rejected).await;
            let (response, sent) = self
                .send_authenticated(endpoint, base, url, &method, &headers, &body, authenticate)
                .await?;
            // Both tokens were attached in this call: the rejected one may be echoed too.
            attached.extend(sent);
            return Ok(response);
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_authenticated(
        &self,
        endpoint: &SystemEndpoint,
        base: &Url,
        mut url: Url,
        method: &reqwest::Method,
        headers: &reqwest::header::HeaderMap,
        body: &Option<bytes::Bytes>,
        authenticate: bool,
    ) -> Result<(HttpResponse, Option<String>), HttpError> {
        let authorization = if authenticate {
            self.authorization(&endpoint.credentials).await?
        } else {
            None
        };
        let mut method = method.clone();
        let mut body = body.clone();
        for _ in 0..=self.limits.max_redirects {
            if let Some(left) = self.pauses.remaining(&endpoint.system_id) {
                if left > pause::WAIT_IN_CALL {
                    return Ok((pause::paused_response(left), None));
                }
                tokio::time::sleep(left).await;
            }
            self.take_turn(endpoint).await;
            let mut outgoing = transport::Outgoing {
                method: method.clone(),
                url: url.clone(),
                headers: headers.clone(),
                body: body.clone(),
            };
            if let Some(auth) = &authorization {
                let value = reqwest::header::HeaderValue::from_str(auth)
                    .map_err(|_| HttpError::AuthFailed("the credentials are not a valid header value".into()))?;
                outgoing.headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            if authenticate {
                for (name, value) in &endpoint.headers {
                    outgoing.headers.append(name, value.clone());
                }
            }
            let response = self.transport.send(outgoing).await.map_err(|e| classify(&e, &url))?;
            let status = response.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                && let Some(pause) = pause::retry_after(response.headers())
            {
                self.pause(endpoint, pause).await;
            }
            if status.is_redirection()
                && let Some(location) = response.headers().get("location")
            {
                let location = location
                    .to_str()
                    .map_err(|_| HttpError::Denied("redirect with an invalid Location".into()))?;
                let next = url
                    .join(location)
                    .map_err(|_| HttpError::Denied("redirect with an invalid Location".into()))?;
                path::ensure_within(base, &next)
                    .map_err(|why| HttpError::Denied(format!("redirect refused: {why}")))?;
                if matches!(status.as_u16(), 301..=303) && method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            return Ok((self.read_response(response, &url).await?, authorization));
        }
        Err(HttpError::Denied(format!(
            "more than {} redirects",
            self.limits.max_redirects
        )))
    }

    async fn authorization(&self, credentials: &Credentials) -> Result<Option<String>, HttpError> {
        Ok(match credentials {
            Credentials::None => None,
            Credentials::Basic { user, password } => Some(format!("Basic {}", auth::basic_credentials(user, password))),
            Credentials::Bearer { token } => Some(format!("Bearer {token}")),
            Credentials::OAuth2(oauth) => {
                let token = self.tokens.token(&self.transport.proxied, oauth).await?;
                Some(format!("Bearer {token}"))
            }
        })
    }

    async fn read_response(&self, mut response: transport::Answer, url: &Url) -> Result<HttpResponse, HttpError> {
        let max = self.limits.max_response_bytes;
        let announced = response.content_length();
        if announced.is_some_and(|len| len > max as u64) {
            return Err(HttpError::TooLarge(format!(
                "the response announced more than {max} bytes"
            )));
        }
        let status = response.status().as_u16();
        let headers = guest_headers(response.headers());
        // Sized from the announced length, so that a 60 KB page is not copied again at each doubling (at most
        // 1 MiB up front: an announcement is not a body).
        let mut body = Vec::with_capacity(announced.map_or(0, |len| len.min(1 << 20) as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, url))? {
            if body.len() + chunk.len() > max {
                return Err(HttpError::TooLarge(format!("the response body exceeded {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body })
    }
}

/// Whether the host owns a request header: credentials, routing and framing. A guest's value for these is
/// dropped and the host sets its own. (The SDK's test harness drops the same list in record mode; a test in
/// `tests/` checks that the two agree.)
pub fn is_host_owned_header(name: &str) -> bool {
    const OWNED: [&str; 11] = [
        "authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
        "trailer",
        "expect",
        "cookie",
    ];
    OWNED.iter().any(|h| h.eq_ignore_ascii_case(name))
        || name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

/// Whether an answer's header describes its framing (`content-length`, `transfer-encoding`, `connection`,
/// `keep-alive`), which the guest never receives. (The SDK's test harness leaves the same ones out of a
/// recording; a test in `tests/` checks that the two agree.)
pub fn is_framing_header(name: &str) -> bool {
    const FRAMING: [&str; 4] = ["content-length", "transfer-encoding", "connection", "keep-alive"];
    FRAMING.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// An answer's headers as the guest receives them: names in lower case, values that are text, and none of the
/// framing headers ([`is_framing_header`]). The host has read the body whole and decoded its framing, so they
/// describe a connection the guest never sees — and each header costs the call two allocations in the guest.
/// (A recording replays answers without them too.)
fn guest_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !is_framing_header(k.as_str()))
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect()
}

fn classify(e: &transport::Failed, url: &Url) -> HttpError {
    let origin = url.origin().ascii_serialization();
    if e.timeout {
        HttpError::Timeout(format!("{origin} did not answer in time"))
    } else {
        HttpError::Unreachable(format!("{origin} could not be reached ({})", e.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_gets_an_answers_headers_without_its_framing() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("content-length", "42"),
            ("Transfer-Encoding", "chunked"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("etag", "W/\"3\""),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ] {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_static(value),
            );
        }
        let seen = guest_headers(&headers);
        let pairs: Vec<(&str, &str)> = seen.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "application/json"),
                ("etag", "W/\"3\""),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
            ]
        );
    }
}
