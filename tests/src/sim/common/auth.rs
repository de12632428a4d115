//! OAuth 2.0 client-credentials token issuing and checking.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::http::{Params, basic_credentials};
use super::time::now_millis;

/// A token handed out by a simulator.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

/// Why a bearer token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    Unknown,
    Expired,
}

/// The tokens a simulator issued.
#[derive(Debug)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
}

/// Client credentials sent to a token endpoint.
pub(crate) struct ClientAuth {
    pub client_id: String,
    pub client_secret: String,
}

/// Reads client credentials from the Basic header, else from `client_id`/`client_secret` form fields.
pub(crate) fn client_auth(headers: &HeaderMap, form: &Params) -> Option<ClientAuth> {
    if let Some((id, secret)) = basic_credentials(headers) {
        return Some(ClientAuth {
            client_id: id,
            client_secret: secret,
        });
    }
    Some(ClientAuth {
        client_id: form.get("client_id")?.to_string(),
        client_secret: form.get("client_secret").unwrap_or_default().to_string(),
    })
}

impl Tokens {
    pub(crate) fn new() -> Tokens {
        Tokens {
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Issues a JWT-shaped token (the signature is random bytes: clients must not verify it).
    /// Returns (token, jti).
    pub(crate) fn issue(
        &self,
        client_id: &str,
        scopes: &[String],
        validity: Duration,
        issuer: &str,
        zone_id: &str,
    ) -> (String, String) {
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let iat = now_millis() / 1000;
        let header = json!({"alg": "RS256", "jku": format!("{issuer}/token_keys"), "kid": "sim-key-1", "typ": "JWT"});
        let payload = json!({
            "jti": jti,
            "sub": client_id,
            "authorities": scopes,
            "scope": scopes,
            "client_id": client_id,
            "cid": client_id,
            "azp": client_id,
            "grant_type": "client_credentials",
            "rev_sig": "sim",
            "iat": iat,
            "exp": iat + validity.as_secs() as i64,
            "iss": issuer,
            "zid": zone_id,
            "aud": scopes.iter().filter_map(|s| s.split('.').next()).collect::<Vec<_>>(),
        });
        let sig = uuid::Uuid::new_v4().as_bytes().repeat(4);
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        let mut map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, t| t.expires_at > now);
        map.insert(
            token.clone(),
            Issued {
                scopes: scopes.to_vec(),
                expires_at: now.checked_add(validity).unwrap_or(now),
            },
        );
        (token, jti)
    }

    pub(crate) fn check(&self, token: &str) -> Result<Issued, TokenError> {
        let map = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(token) {
            None => Err(TokenError::Unknown),
            Some(t) if t.expires_at <= Instant::now() => Err(TokenError::Expired),
            Some(t) => Ok(t.clone()),
        }
    }

    /// Forgets every token (as if the system's signing key rotated).
    pub(crate) fn revoke_all(&self) {
        self.issued.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
