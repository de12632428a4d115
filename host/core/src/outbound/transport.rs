//! How a connector's request reaches the network: hyper's pooled HTTP/1.1 client over rustls, directly.
//!
//! Requests that a proxy from the environment applies to (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less
//! `NO_PROXY`) go through reqwest, which tunnels them as it always has. The direct path exists because reqwest's
//! layers cost every request a URL parse or two, a redirect policy and a proxy lookup on the way out and
//! another URL parse on the way back: several per cent of a proxied GET's CPU (docs/performance.md,
//! thirteenth session). The host already does what those layers are for: it follows redirects by hand,
//! within the upstream, and bounds each request's time itself.

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
                        Some(Err(e)) => return Err(failed(&e, false)),
                    }
                },
                AnswerBody::Proxied(response) => response.chunk().await.map_err(|e| Failed {
                    timeout: e.is_timeout(),
                    text: super::describe_reqwest_error(&e),
                }),
            }
        };
        tokio::time::timeout_at(deadline, next).await.unwrap_or_else(|_| {
            Err(Failed {
                timeout: true,
                text: "timed out".into(),
            })
        })
    }
}

/// The two clients and the environment's proxies, built once.
pub(crate) struct Transport {
    direct: Client<Https, Full<Bytes>>,
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

    /// The transport; `proxy` (tests) replaces the environment's proxies with one for every request.
    fn with_proxy(connect_timeout: Duration, request_timeout: Duration, proxy: Option<&str>) -> Result<Self, String> {
        let mut proxied = reqwest::Client::builder();
        let proxies = match proxy {
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
        // What reqwest's `rustls-tls` feature sets up: the ring provider, the webpki roots, HTTP/1.1 only (the
        // connector's builder sets the ALPN from `enable_http1`).
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(15)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
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
                let connect = e.is_connect();
                return Err(failed(&e, connect));
            }
            Err(_) => {
                return Err(Failed {
                    timeout: true,
                    text: "timed out".into(),
                });
            }
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
        let response = builder.send().await.map_err(|e| Failed {
            timeout: e.is_timeout(),
            text: super::describe_reqwest_error(&e),
        })?;
        Ok(Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: AnswerBody::Proxied(response),
            deadline,
        })
    }
}

/// An error and its causes, as one line (as reqwest's are described).
fn failed(e: &(dyn std::error::Error + 'static), connect: bool) -> Failed {
    let mut text = if connect { "connection failed" } else { "request failed" }.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    Failed { timeout: false, text }
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
        let transport = Transport::with_proxy(Duration::from_secs(5), Duration::from_secs(5), None).expect("transport");
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
        let transport =
            Transport::with_proxy(Duration::from_secs(5), Duration::from_millis(200), None).expect("transport");
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
        let transport =
            Transport::with_proxy(Duration::from_secs(5), Duration::from_millis(300), None).expect("transport");
        let answer = transport.send(get(&url)).await.expect("the head arrives");
        let failed = body(answer).await.expect_err("the rest never does");
        assert!(failed.timeout, "{failed:?}");
    }
}
