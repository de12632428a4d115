//! Receivers of notifications for the tests: a webhook receiver (axum on 127.0.0.1:0) that checks each
//! request's HMAC signature itself, and an SMTP sink (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no
//! STARTTLS offered) that keeps every mail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct Hook {
    pub delivery: String,
    pub idempotency_key: String,
    pub event: String,
    pub body: Value,
    /// Whether `Provisio-Signature` is the HMAC-SHA256 of the raw body under the receiver's secret.
    pub signed: bool,
    /// The status answered.
    pub answered: u16,
}

#[derive(Default)]
struct HookState {
    secret: String,
    /// Statuses to answer first, one per request; then 200.
    script: VecDeque<u16>,
    received: Vec<Hook>,
}

/// A webhook receiver.
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<HookState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn receive(State(state): State<Arc<Mutex<HookState>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut s = state.lock().expect("lock");
    let expected = format!("sha256={}", hmac_hex(&s.secret, &body));
    let answered = s.script.pop_front().unwrap_or(200);
    let hook = Hook {
        delivery: header("provisio-delivery"),
        idempotency_key: header("idempotency-key"),
        event: header("provisio-event"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed: header("provisio-signature") == expected,
        answered,
    };
    s.received.push(hook);
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

impl WebhookReceiver {
    /// Starts a receiver that checks signatures under `secret` and answers `script` first (then 200).
    pub async fn start(secret: &str, script: &[u16]) -> WebhookReceiver {
        let state = Arc::new(Mutex::new(HookState {
            secret: secret.to_string(),
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        WebhookReceiver {
            url: format!("http://{addr}/hook"),
            state,
            task,
        }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Hook> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Answers these statuses to the next requests.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().expect("lock").script.extend(statuses.iter().copied());
    }

    /// The requests answered 2xx for event `kind`.
    pub fn delivered(&self, kind: &str) -> Vec<Hook> {
        self.received()
            .into_iter()
            .filter(|h| h.event == kind && (200..300).contains(&h.answered))
            .collect()
    }

    /// Waits until `n` requests for `kind` were answered 2xx (or panics after `within`).
    pub async fn wait_delivered(&self, kind: &str, n: usize, within: Duration) -> Vec<Hook> {
        let started = Instant::now();
        loop {
            let got = self.delivered(kind);
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < within,
                "{n} webhook(s) of {kind} expected, got {}: {:?}",
                got.len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One mail the SMTP sink received.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body, dot-unstuffed).
    pub data: String,
}

impl Mail {
    /// The `Subject:` header (unfolded).
    pub fn subject(&self) -> String {
        let mut subject = String::new();
        let mut in_subject = false;
        for line in self.data.lines() {
            if in_subject && (line.starts_with(' ') || line.starts_with('\t')) {
                // Unfolding removes the line break only.
                subject.push_str(line);
                continue;
            }
            in_subject = false;
            if let Some(rest) = line.strip_prefix("Subject: ") {
                subject.push_str(rest);
                in_subject = true;
            }
        }
        subject
    }
}

/// A local SMTP server that keeps what it receives.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP test sink\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            // No STARTTLS: a client that insists on TLS must refuse, one that may go plain goes on.
            write
                .write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_string();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().trim_matches(['<', '>']).to_string());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(l));
                data.push('\n');
            }
            mails.lock().expect("lock").push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            write.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 command not implemented\r\n").await?;
        }
    }
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mails = kept.clone();
                tokio::spawn(async move {
                    let _ = session(stream, mails).await;
                });
            }
        });
        SmtpSink { port, mails, task }
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }

    /// The mails to `recipient` whose subject contains `text`.
    pub fn mails_to(&self, recipient: &str, text: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == recipient) && m.subject().contains(text))
            .collect()
    }

    /// Waits until `n` such mails arrived (or panics after `within`).
    pub async fn wait_mails(&self, recipient: &str, text: &str, n: usize, within: Duration) -> Vec<Mail> {
        let started = Instant::now();
        loop {
            let got = self.mails_to(recipient, text);
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < within,
                "{n} mail(s) to {recipient} about {text:?} expected, got {}: {:?}",
                got.len(),
                self.mails()
                    .iter()
                    .map(|m| (m.to.clone(), m.subject()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
