//! Credentials the host attaches to a system's requests, and the OAuth2 token cache.
//!
//! Connectors never see secrets: they send unauthenticated requests, and the host adds Basic or Bearer
//! authorization here. OAuth2 client-credentials tokens are fetched from the system's
//! `OAuth2TokenServiceURL`, cached per client until shortly before they expire, and fetched once for all
//! concurrent callers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use url::Url;

use super::HttpError;

/// How the host authenticates a system's outbound requests.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    /// No authorization header.
    None,
    /// HTTP Basic with the system's `User` and `Password`.
    Basic {
        /// `User`.
        user: String,
        /// `Password`.
        password: String,
    },
    /// A static bearer token (the `Password` property).
    Bearer {
        /// The token.
        token: String,
    },
    /// OAuth2 client credentials: `User`/`Password` are the client id and secret.
    OAuth2(OAuth2Client),
}

/// An OAuth2 client: where its tokens come from and its credentials, with the key of its tokens in the
/// [`TokenCache`] digested once (not at every request that needs a token).
#[derive(Clone, PartialEq)]
pub struct OAuth2Client {
    /// `OAuth2TokenServiceURL`.
    pub token_url: Url,
    /// `User`.
    pub client_id: String,
    /// `Password`.
    pub client_secret: String,
    cache_key: [u8; 32],
}

impl OAuth2Client {
    /// A client of `token_url`.
    pub fn new(token_url: Url, client_id: String, client_secret: String) -> Self {
        let cache_key = cache_key(&token_url, &client_id, &client_secret);
        OAuth2Client {
            token_url,
            client_id,
            client_secret,
            cache_key,
        }
    }
}

impl std::fmt::Debug for Credentials {
    // Never print a secret, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Credentials::Bearer { .. } => f.write_str("Bearer(***)"),
            Credentials::OAuth2(client) => write!(f, "OAuth2({}, {}, ***)", client.token_url, client.client_id),
        }
    }
}

impl Credentials {
    /// Reads the SAP connection properties (`Authentication`, `User`, `Password`, `OAuth2TokenServiceURL`).
    /// As in SAP Identity Provisioning, a set `OAuth2TokenServiceURL` means client credentials, whatever
    /// `Authentication` says.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |name: &str| properties.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let user = get("User").unwrap_or_default().to_string();
        let password = get("Password").unwrap_or_default().to_string();
        if let Some(token_url) = get("OAuth2TokenServiceURL") {
            let token_url =
                Url::parse(token_url).map_err(|e| format!("OAuth2TokenServiceURL is not a valid URL: {e}"))?;
            if user.is_empty() || password.is_empty() {
                return Err(
                    "OAuth2TokenServiceURL is set, so User (client id) and Password (client secret) are required"
                        .into(),
                );
            }
            return Ok(Credentials::OAuth2(OAuth2Client::new(token_url, user, password)));
        }
        match get("Authentication") {
            Some("NoAuthentication") => Ok(Credentials::None),
            Some("BasicAuthentication") => {
                if user.is_empty() {
                    return Err("Authentication is BasicAuthentication, so User is required".into());
                }
                Ok(Credentials::Basic { user, password })
            }
            Some("BearerToken") | Some("BearerTokenAuthentication") => {
                if password.is_empty() {
                    return Err("Authentication is BearerToken, so Password (the token) is required".into());
                }
                Ok(Credentials::Bearer { token: password })
            }
            Some("ClientCertificateAuthentication") => Err(
                "Authentication ClientCertificateAuthentication is not supported for outbound calls yet; use BasicAuthentication, BearerToken or OAuth2TokenServiceURL".into(),
            ),
            Some(other) => Err(format!(
                "Authentication {other:?} is unknown; use NoAuthentication, BasicAuthentication, BearerToken, or set OAuth2TokenServiceURL"
            )),
            // SAP destinations with a User and no Authentication mean Basic.
            None if !user.is_empty() => Ok(Credentials::Basic { user, password }),
            None => Ok(Credentials::None),
        }
    }
}

/// The credentials of an HTTP Basic `Authorization` header (RFC 7617): `user:password` in base64. One function
/// for what the host sends and what it scrubs from answers, so the two cannot drift apart.
pub(super) fn basic_credentials(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// OAuth2 tokens per client, shared by all systems that use the same client (the same token URL, client id and
/// secret).
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<[u8; 32], Slot>>,
}

fn cache_key(token_url: &Url, client_id: &str, client_secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [token_url.as_str(), client_id, client_secret] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl TokenCache {
    fn slot(&self, key: [u8; 32]) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key).or_default().clone()
    }

    /// A valid token for `oauth`, from the cache or freshly fetched with `client`.
    pub async fn token(&self, client: &reqwest::Client, oauth: &OAuth2Client) -> Result<String, HttpError> {
        let slot = self.slot(oauth.cache_key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let fresh = fetch_token(client, oauth).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets the token of this client if it is still `rejected` (the API answered 401 with it); a token
    /// another request refreshed meanwhile is kept, so concurrent 401s cause one refresh, not many.
    pub async fn invalidate(&self, oauth: &OAuth2Client, rejected: &str) {
        let slot = self.slot(oauth.cache_key);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == rejected) {
            *cached = None;
        }
    }
}

async fn fetch_token(client: &reqwest::Client, oauth: &OAuth2Client) -> Result<CachedToken, HttpError> {
    let token_url = &oauth.token_url;
    let basic = basic_credentials(&oauth.client_id, &oauth.client_secret);
    let response = client
        .post(token_url.clone())
        .header("authorization", format!("Basic {basic}"))
        .header("accept", "application/json")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| {
            HttpError::AuthFailed(format!(
                "the token endpoint {} could not be reached: {}",
                token_url.origin().ascii_serialization(),
                super::describe_reqwest_error(&e)
            ))
        })?;
    let status = response.status();
    // A token answer is small; read at most 64 KiB of it.
    let body = read_capped(response, 64 << 10).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let said = json
            .get("error_description")
            .or_else(|| json.get("error"))
            .and_then(|v| v.as_str())
            .unwrap_or("no reason given");
        return Err(HttpError::AuthFailed(format!(
            "the token endpoint refused the client credentials (HTTP {}: {said})",
            status.as_u16()
        )));
    }
    let value = json
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| HttpError::AuthFailed("the token endpoint answered without an access_token".into()))?
        .to_string();
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(300)
    // A day at most: the host refreshes long before, and absurd values cannot overflow the clock.
    .min(86_400);
    // Refresh a little before expiry: a tenth of the lifetime, at most a minute.
    let margin = (expires_in / 10).min(60);
    Ok(CachedToken {
        value,
        refresh_at: Instant::now() + Duration::from_secs(expires_in.saturating_sub(margin)),
    })
}

async fn read_capped(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > max {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn token_url_means_client_credentials() {
        let c = Credentials::from_properties(&props(&[
            ("OAuth2TokenServiceURL", "https://x.example/oauth/token"),
            ("User", "client"),
            ("Password", "secret"),
            ("Authentication", "BasicAuthentication"),
        ]))
        .expect("valid");
        assert!(matches!(c, Credentials::OAuth2(_)));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn a_clients_tokens_are_shared_by_the_same_url_id_and_secret_only() {
        let url = |u: &str| Url::parse(u).expect("url");
        let client = |u: &str, id: &str, secret: &str| OAuth2Client::new(url(u), id.into(), secret.into());
        let cache = TokenCache::default();
        let a = client("https://x.example/oauth/token", "client", "secret");
        let same = client("https://x.example/oauth/token", "client", "secret");
        assert!(Arc::ptr_eq(&cache.slot(a.cache_key), &cache.slot(same.cache_key)));
        for other in [
            client("https://y.example/oauth/token", "client", "secret"),
            client("https://x.example/oauth/token", "client2", "secret"),
            client("https://x.example/oauth/token", "client", "secret2"),
            // The parts are length-prefixed: moving a character from one to the next is another client.
            client("https://x.example/oauth/token", "clients", "ecret"),
        ] {
            assert!(!Arc::ptr_eq(&cache.slot(a.cache_key), &cache.slot(other.cache_key)));
        }
    }

    #[test]
    fn explains_missing_or_unknown_settings() {
        let e = Credentials::from_properties(&props(&[("Authentication", "Kerberos")])).unwrap_err();
        assert!(e.contains("Kerberos"), "{e}");
        let e = Credentials::from_properties(&props(&[("Authentication", "BearerToken")])).unwrap_err();
        assert!(e.contains("Password"), "{e}");
        let e = Credentials::from_properties(&props(&[
            ("OAuth2TokenServiceURL", "not a url"),
            ("User", "u"),
            ("Password", "p"),
        ]))
        .unwrap_err();
        assert!(e.contains("OAuth2TokenServiceURL"), "{e}");
        assert!(matches!(
            Credentials::from_properties(&props(&[])),
            Ok(Credentials::None)
        ));
        assert!(matches!(
            Credentials::from_properties(&props(&[("User", "u"), ("Password", "p")])),
            Ok(Credentials::Basic { .. })
        ));
    }
}
