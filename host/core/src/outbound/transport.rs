//! How a connector's request reaches the network: hyper's pooled HTTP/1.1 client over rustls, directly.
//!
//! Requests that a proxy from the environment applies to (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less
//! `NO_PROXY`) go through reqwest, which tunnels them as it always has. The direct path exists because reqwest's
//! layers cost every request a URL parse or two, a redirect policy and a proxy lookup on the way out and
//! another URL parse on the way back: several per cent of a proxied GET's CPU (docs/performance.md,
//! thirteenth session). The host already does what those layers are for: it follows redirects by hand,
//! within the upstream, and bounds each request's time itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector, bounded by the connect timeout as reqwest bounds it: name lookup, TCP and the TLS handshake
/// together (hyper's own connect timeout covers TCP alone).
#[derive(Clone)]
struct Timed {
    inner: Https,
    limit: Duration,
}

impl tower_service::Service<Uri> for Timed {
    type Response = <Https as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (limit, connecting) = (self.limit, self.inner.call(uri));
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {limit:?}"),
                )) as BoxError),
            }
        })
    }
}

/// One request, as the host built it: method, absolute URL, headers (credentials attached), body.
pub(crate) struct Outgoing {
    pub method: Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// Why a request got no answer: a timeout, or anything else (with the causes, for the message).
#[derive(Debug)]
pub(crate) struct Failed {
    pub timeout: bool,
    pub text: String,
}

impl Failed {
    /// The request's time limit passed.
    fn timed_out() -> Failed {
        Failed {
            timeout: true,
            text: "timed out".into(),
        }
    }

    /// What reqwest said, on the proxied path.
    fn of_reqwest(e: &reqwest::Error) -> Failed {
        Failed {
            timeout: e.is_timeout(),
            text: super::describe_reqwest_error(e),
        }
    }
}

/// The answer's head, its body still to be read before the request's deadline.
pub(crate) struct Answer {
    body: AnswerBody,
    deadline: Instant,
    status: StatusCode,
    headers: HeaderMap,
}

enum AnswerBody {
    Direct(hyper::body::Incoming),
    Proxied(reqwest::Response),
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body's length as announced, where the answer has one: none for a chunked answer, 0 for the answer
    /// to a HEAD and for a 204 or 304 (whatever their `Content-Length` says, they carry no body).
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            AnswerBody::Direct(body) => hyper::body::Body::size_hint(body).exact(),
            AnswerBody::Proxied(response) => response.content_length(),
        }
    }

    /// The next piece of the body (`None` at its end), within the request's time limit.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Failed> {
        let deadline = self.deadline;
        let next = async {
            match &mut self.body {
                AnswerBody::Direct(body) => loop {
                    match body.frame().await {
                        None => return Ok(None),
                        Some(Ok(frame)) => {
                            // Trailers carry nothing a connector reads.
                            if let Ok(data) = frame.into_data() {
                                return Ok(Some(data));
                            }
                        }
                        Some(Err(e)) => return Err(failed(&e, "request failed")),
                    }
                },
                AnswerBody::Proxied(response) => response.chunk().await.map_err(|e| Failed::of_reqwest(&e)),
            }
        };
        tokio::time::timeout_at(deadline, next)
            .await
            .unwrap_or_else(|_| Err(Failed::timed_out()))
    }
}

/// The two clients and the environment's proxies, built once.
pub(crate) struct Transport {
    direct: Client<Timed, Full<Bytes>>,
    proxies: Matcher,
    /// For requests a proxy applies to, and the token endpoint's (rare, and its answers are cached).
    pub proxied: reqwest::Client,
    request_timeout: Duration,
}

/// As reqwest names itself, so that a backend sees the same agent whichever path a request took.
const USER_AGENT: &str = concat!("provisio/", env!("CARGO_PKG_VERSION"));

impl Transport {
    /// The transport, with the proxies the environment names.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Result<Self, String> {
        Self::with_proxy(connect_timeout, request_timeout, None)
    }

    /// The transport; `proxy` (tests) replaces the environment's proxies: `Some("")` none, `Some(url)` one
    /// for every request.
    fn with_proxy(connect_timeout: Duration, request_timeout: Duration, proxy: Option<&str>) -> Result<Self, String> {
        let mut proxied = reqwest::Client::builder();
        let proxies = match proxy {
            Some("") => Matcher::builder().build(),
            Some(url) => {
                proxied = proxied.proxy(reqwest::Proxy::all(url).map_err(|e| format!("invalid proxy: {e}"))?);
                Matcher::builder().all(url.to_string()).build()
            }
            None => Matcher::from_env(),
        };
        let proxied = proxied
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        // What reqwest's `rustls-tls` feature sets up: the ring provider, the webpki roots, HTTP/1.1 offered by
        // ALPN (some gateways refuse a handshake without it).
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        // reqwest's TCP settings: no Nagle delay, and a peer that vanished from a pooled connection noticed
        // within about 30 s.
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_keepalive_interval(Some(Duration::from_secs(15)));
        http.set_keepalive_retries(Some(3));
        http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        // As reqwest: the connect timeout is also split across a name's addresses, so that one that drops
        // packets leaves time to try the next; `Timed` bounds the whole connect.
        http.set_connect_timeout(Some(connect_timeout));
        let https = Timed {
            inner: hyper_rustls::HttpsConnector::from((http, tls)),
            limit: connect_timeout,
        };
        let direct = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Transport {
            direct,
            proxies,
            proxied,
            request_timeout,
        })
    }

    /// Sends `request` and answers its head; the body is read with [`Answer::chunk`].
    pub async fn send(&self, request: Outgoing) -> Result<Answer, Failed> {
        let deadline = Instant::now() + self.request_timeout;
        let uri = Uri::try_from(request.url.as_str()).map_err(|e| Failed {
            timeout: false,
            text: format!("invalid URL: {e}"),
        })?;
        if self.proxies.intercept(&uri).is_some() {
            return self.send_proxied(request, deadline).await;
        }
        let mut headers = request.headers;
        headers
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        headers.entry(header::ACCEPT).or_insert(HeaderValue::from_static("*/*"));
        let mut outgoing = http::Request::new(Full::new(request.body.unwrap_or_default()));
        *outgoing.method_mut() = request.method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let sent = tokio::time::timeout_at(deadline, self.direct.request(outgoing)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let what = if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                return Err(failed(&e, what));
            }
            Err(_) => return Err(Failed::timed_out()),
        };
        let (head, body) = response.into_parts();
        Ok(Answer {
            body: AnswerBody::Direct(body),
            deadline,
            status: head.status,
            headers: head.headers,
        })
    }

    async fn send_proxied(&self, request: Outgoing, deadline: Instant) -> Result<Answer, Failed> {
        let mut builder = self
            .proxied
            .request(request.method, request.url)
            .headers(request.headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| Failed::of_reqwest(&e))?;
        Ok(Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: AnswerBody::Proxied(response),
            deadline,
        })
    }
}

/// An error and its causes, as one line (as reqwest's are described); a timed-out cause (the connect
/// timeout) makes it a timeout, as reqwest counts it.
fn failed(e: &(dyn std::error::Error + 'static), what: &str) -> Failed {
    let timeout = std::iter::successors(Some(e), |c| c.source()).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    Failed {
        timeout,
        text: super::with_causes(what, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection's first request with `answer` (none: it never answers) and
    /// hands back the request's head as it arrived.
    async fn server(answer: Option<&'static str>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (heads, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let heads = heads.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                    if let Some(answer) = answer {
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    // The connection stays open: an answer cut short is waited for, not ended.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(socket);
                });
            }
        });
        (url, received)
    }

    /// A transport that sends directly, its reqwest client pointed at a proxy that is not there: a request
    /// that took reqwest's path fails.
    fn direct(connect: Duration, request: Duration) -> Result<Transport, String> {
        let mut transport = Transport::with_proxy(connect, request, Some(""))?;
        transport.proxied = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all("http://127.0.0.1:9").map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(transport)
    }

    fn get(url: &str) -> Outgoing {
        Outgoing {
            method: Method::GET,
            url: url::Url::parse(url).expect("url"),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    async fn body(mut answer: Answer) -> Result<Vec<u8>, Failed> {
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"id\":\"u1\"}";

    #[tokio::test]
    async fn a_request_goes_out_directly_with_the_agent_and_accept_reqwest_sent() {
        let (url, mut heads) = server(Some(OK)).await;
        let transport = direct(Duration::from_secs(5), Duration::from_secs(5)).expect("transport");
        let mut request = get(&format!("{url}/Users/u1?attributes=id"));
        request.headers.insert("x-trace", HeaderValue::from_static("t1"));
        let answer = transport.send(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(answer).await.expect("body"), b"{\"id\":\"u1\"}");
        let head = heads.recv().await.expect("request").to_ascii_lowercase();
        assert!(head.starts_with("get /users/u1?attributes=id http/1.1\r\n"), "{head}");
        for line in [
            &format!("host: {}", url.trim_start_matches("http://")),
            &format!("user-agent: {USER_AGENT}"),
            "accept: */*",
            "x-trace: t1",
        ] {
            assert!(head.contains(line), "{line:?} missing from {head}");
        }
    }

    #[tokio::test]
    async fn a_request_a_proxy_applies_to_goes_through_it() {
        let (proxy, mut heads) = server(Some(OK)).await;
        let transport =
            Transport::with_proxy(Duration::from_secs(5), Duration::from_secs(5), Some(&proxy)).expect("transport");
        let answer = transport
            .send(get("http://backend.invalid/Users/u1"))
            .await
            .expect("answer");
        assert_eq!(body(answer).await.expect("body"), b"{\"id\":\"u1\"}");
        // The absolute form: the request was handed to the proxy, not sent to the backend.
        let head = heads.recv().await.expect("request").to_ascii_lowercase();
        assert!(
            head.starts_with("get http://backend.invalid/users/u1 http/1.1\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_backend_that_never_answers_times_out_and_a_closed_port_fails_to_connect() {
        let (url, _heads) = server(None).await;
        let transport = direct(Duration::from_secs(5), Duration::from_millis(200)).expect("transport");
        let started = std::time::Instant::now();
        let failed = transport.send(get(&url)).await.err().expect("no answer");
        assert!(failed.timeout, "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let failed = transport
            .send(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .err()
            .expect("refused");
        assert!(!failed.timeout);
        assert!(failed.text.starts_with("connection failed: "), "{failed:?}");
    }

    #[tokio::test]
    async fn a_body_that_stops_midway_times_out_within_the_request_s_time() {
        const HALF: &str = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"id\":";
        let (url, _heads) = server(Some(HALF)).await;
        let transport = direct(Duration::from_secs(5), Duration::from_millis(300)).expect("transport");
        let answer = transport.send(get(&url)).await.expect("the head arrives");
        let failed = body(answer).await.expect_err("the rest never does");
        assert!(failed.timeout, "{failed:?}");
    }

    #[tokio::test]
    async fn a_head_answer_announces_no_body_whatever_its_content_length_says() {
        const HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n";
        let (url, _heads) = server(Some(HEAD)).await;
        let transport = direct(Duration::from_secs(5), Duration::from_secs(5)).expect("transport");
        let mut request = get(&url);
        request.method = Method::HEAD;
        let answer = transport.send(request).await.expect("answer");
        assert_eq!(answer.content_length(), Some(0));
        assert_eq!(body(answer).await.expect("body"), b"");
    }

    #[tokio::test]
    async fn a_tls_handshake_that_never_ends_is_a_connect_timeout() {
        // A server that takes the TCP connection and never answers the TLS client hello.
        let (url, _heads) = server(None).await;
        let url = url.replace("http://", "https://");
        let transport = direct(Duration::from_millis(300), Duration::from_secs(20)).expect("transport");
        let started = std::time::Instant::now();
        let failed = transport.send(get(&url)).await.err().expect("no connection");
        assert!(failed.timeout, "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
