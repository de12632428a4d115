//! Webhook deliveries: the notification as a JSON POST, signed.
//!
//! Headers: `Provisio-Signature: sha256=<hex HMAC-SHA256 of the raw body under the subscription's secret>`,
//! `Provisio-Delivery` and `Idempotency-Key` (the delivery's id, the same on every attempt), and
//! `Provisio-Event` (the kind). A 2xx is delivered; a network error, 5xx or 429 is tried again; any other
//! answer ends the delivery as failed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Outcome;
use crate::store::notifications::Delivery;

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (a `Provisio-Signature` value) is the signature of `body` under `secret`, compared in
/// constant time (for receivers written in Rust, and the tests).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Attempts one webhook delivery.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    delivery: &Delivery,
    timeout: Duration,
) -> Outcome {
    let body = match serde_json::to_vec(&delivery.payload) {
        Ok(b) => b,
        Err(e) => {
            return Outcome {
                error: Some(format!("cannot encode the notification: {e}")),
                ..Outcome::default()
            };
        }
    };
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Provisio-Delivery", &delivery.id)
        .header("Idempotency-Key", &delivery.id)
        .header("Provisio-Event", &delivery.kind);
    if let Some(secret) = secret {
        request = request.header("Provisio-Signature", signature(secret, &body));
    }
    match request.body(body).send().await {
        Ok(response) => {
            let status = response.status();
            let code = Some(i64::from(status.as_u16()));
            if status.is_success() {
                Outcome {
                    delivered: true,
                    code,
                    ..Outcome::default()
                }
            } else {
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                Outcome {
                    delivered: false,
                    retryable: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                    code,
                    error: Some(format!("the receiver answered {status}: {}", text.trim())),
                }
            }
        }
        Err(e) => Outcome {
            delivered: false,
            retryable: true,
            code: None,
            error: Some(format!("cannot reach the receiver: {}", error_chain(&e))),
        },
    }
}

/// An error with its causes, for the delivery log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_and_verifies() {
        // RFC 4231 test case 2.
        let sig = super::signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(super::verify("Jefe", b"what do ya want for nothing?", &sig));
        assert!(!super::verify("Jefe", b"what do ya want for nothing!", &sig));
        assert!(!super::verify("jefe", b"what do ya want for nothing?", &sig));
        assert!(!super::verify("Jefe", b"what do ya want for nothing?", "sha256=zz"));
    }
}
