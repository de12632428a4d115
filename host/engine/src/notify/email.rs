//! E-mail deliveries over SMTP (lettre, on tokio with rustls).
//!
//! `smtp://[user:password@]host[:port]` (port 25 by default) uses STARTTLS when the server offers it and
//! plain SMTP when it does not; `?tls=required` refuses a server without STARTTLS and `?tls=none` never
//! starts TLS. `smtps://…` (port 465 by default) speaks TLS from the start. A transient reply (4xx) or a
//! lost connection is tried again; a permanent one (5xx) ends the delivery.

use std::sync::Mutex;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::{NotifySettings, Outcome};
use crate::store::notifications::Delivery;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The SMTP transport, built once from the configured URL.
#[derive(Default)]
pub struct Mailer {
    transport: Mutex<Option<(String, Transport)>>,
}

/// Why an SMTP URL is not usable.
pub fn check_url(url: &str) -> Result<(), String> {
    transport(url, Duration::from_secs(1)).map(|_| ())
}

/// Why an address (`name <user@host>` or `user@host`) is not usable.
pub fn check_mailbox(address: &str) -> Result<(), String> {
    address
        .parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("{address} is not a valid e-mail address: {e}"))
}

/// A transport for `url`.
fn transport(url: &str, timeout: Duration) -> Result<Transport, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("the SMTP URL is not valid: {e}"))?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the SMTP URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls_mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.to_string());
    let params = || TlsParameters::new(host.clone()).map_err(|e| format!("TLS for {host}: {e}"));
    let (tls, default_port) = match (parsed.scheme(), tls_mode.as_deref()) {
        ("smtps", _) => (Tls::Wrapper(params()?), 465),
        ("smtp", None | Some("opportunistic")) => (Tls::Opportunistic(params()?), 25),
        ("smtp", Some("required")) => (Tls::Required(params()?), 25),
        ("smtp", Some("none")) => (Tls::None, 25),
        ("smtp", Some(other)) => {
            return Err(format!(
                "the SMTP URL's tls={other} is not one of opportunistic, required, none"
            ));
        }
        (other, _) => return Err(format!("the SMTP URL's scheme {other} is not smtp or smtps")),
    };
    let mut builder = Transport::builder_dangerous(host.clone())
        .port(parsed.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(timeout));
    if !parsed.username().is_empty() {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_string();
        builder = builder.credentials(Credentials::new(
            decode(parsed.username()),
            decode(parsed.password().unwrap_or_default()),
        ));
    }
    Ok(builder.build())
}

impl Mailer {
    /// Forgets the transport (the settings changed).
    pub fn reset(&self) {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn transport(&self, url: &str, timeout: Duration) -> Result<Transport, String> {
        let mut cached = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((u, t)) = cached.as_ref()
            && u == url
        {
            return Ok(t.clone());
        }
        let t = transport(url, timeout)?;
        *cached = Some((url.to_string(), t.clone()));
        Ok(t)
    }

    /// Attempts one mail delivery.
    pub async fn send(&self, settings: &NotifySettings, recipients: &[String], delivery: &Delivery) -> Outcome {
        let Some(url) = settings.smtp_url.as_deref() else {
            return Outcome {
                error: Some("no SMTP server is configured (serve --smtp-url)".into()),
                ..Outcome::default()
            };
        };
        let transport = match self.transport(url, settings.timeout) {
            Ok(t) => t,
            Err(e) => {
                return Outcome {
                    error: Some(e),
                    ..Outcome::default()
                };
            }
        };
        let message = match message(settings, recipients, delivery) {
            Ok(m) => m,
            Err(e) => {
                return Outcome {
                    error: Some(e),
                    ..Outcome::default()
                };
            }
        };
        match transport.send(message).await {
            Ok(response) => Outcome {
                delivered: true,
                code: response.code().to_string().parse().ok(),
                ..Outcome::default()
            },
            Err(e) => Outcome {
                delivered: false,
                retryable: !e.is_permanent(),
                code: e.status().and_then(|c| c.to_string().parse().ok()),
                error: Some(format!("SMTP: {}", chain(&e))),
            },
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The mail of a delivery: the summary as subject, then the details in words and as JSON.
pub fn message(settings: &NotifySettings, recipients: &[String], delivery: &Delivery) -> Result<Message, String> {
    let from: Mailbox = settings
        .smtp_from
        .as_deref()
        .unwrap_or("Provisio <provisio@localhost>")
        .parse()
        .map_err(|e| format!("the sender address is not valid: {e}"))?;
    let mut builder = Message::builder().from(from);
    for r in recipients {
        let to: Mailbox = r
            .parse()
            .map_err(|e| format!("the recipient {r} is not a valid address: {e}"))?;
        builder = builder.to(to);
    }
    let p = &delivery.payload;
    let summary = p["summary"].as_str().unwrap_or("Provisio notification");
    let subject: String = format!("[Provisio] {summary}").chars().take(200).collect();
    builder
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .message_id(Some(format!("<{}@provisio>", delivery.id)))
        .body(body(p))
        .map_err(|e| format!("cannot build the mail: {e}"))
}

/// The plain-text body of a notification.
pub fn body(p: &Value) -> String {
    let mut text = String::new();
    text.push_str(p["summary"].as_str().unwrap_or_default());
    text.push_str("\n\n");
    text.push_str(&format!("Event:    {}\n", p["kind"].as_str().unwrap_or_default()));
    text.push_str(&format!("When:     {}\n", p["occurredAt"].as_str().unwrap_or_default()));
    if let Some(system) = p["system"].as_object() {
        text.push_str(&format!(
            "System:   {} ({}, id {})\n",
            system.get("name").and_then(Value::as_str).unwrap_or_default(),
            system.get("role").and_then(Value::as_str).unwrap_or_default(),
            system.get("id").and_then(Value::as_str).unwrap_or_default()
        ));
    }
    if let Some(n) = p["details"]["suppressed"].as_u64() {
        text.push_str(&format!(
            "\n{n} more occurrence(s) of this event were suppressed since the last mail (one mail per window).\n"
        ));
    }
    if let Some(outcome) = p["details"]["outcome"].as_array()
        && !outcome.is_empty()
    {
        text.push_str("\nOutcome:\n");
        for line in outcome {
            text.push_str(&format!("  - {}\n", line.as_str().unwrap_or_default()));
        }
    }
    text.push_str("\nDetails:\n");
    text.push_str(&serde_json::to_string_pretty(&p["details"]).unwrap_or_default());
    text.push_str(&format!(
        "\n\nNotification id: {}\n",
        p["id"].as_str().unwrap_or_default()
    ));
    text
}
