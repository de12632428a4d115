//! Bearer tokens issued by `POST /oauth2/token`, kept in the store by their SHA-256 (neither the database nor a
//! memory dump holds a usable token), so that a token works on every replica and across restarts, and stops
//! working when its principal is deleted (the rows go with the principal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::StoreError;
use super::principals::Principal;

/// How long a replica trusts what it last read about a token: a deleted principal's tokens stop working on
/// every replica within this.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

/// How often expired tokens are removed, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The tokens aggregate as a backend stores it.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// Records a token's hash for a principal until `expires_at` (the store's text form of an instant).
    async fn insert(&self, hash: &str, principal_id: &str, expires_at: &str) -> Result<(), StoreError>;
    /// The principal of a token hash that has not expired at `now`.
    async fn principal(&self, hash: &str, now: &str) -> Result<Option<Principal>, StoreError>;
    /// Removes the tokens that expired before `now`; how many.
    async fn prune(&self, now: &str) -> Result<usize, StoreError>;
    /// Removes one token by its hash (a console logout); nothing when there is none.
    async fn revoke(&self, hash: &str) -> Result<(), StoreError>;
    /// Removes every token of a principal (its password changed); nothing when there is none.
    async fn revoke_all(&self, principal_id: &str) -> Result<(), StoreError>;
}

/// Issues and checks bearer tokens over a [`TokenStore`], with a short-lived cache of what was read.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn TokenStore>,
    /// Token hash → its principal and when that was read.
    read: Arc<Mutex<HashMap<String, (Principal, Instant)>>>,
    last_prune: Arc<Mutex<Option<Instant>>>,
}

impl Tokens {
    /// Tokens kept in `store`.
    pub fn new(store: Arc<dyn TokenStore>) -> Tokens {
        Tokens {
            store,
            read: Arc::default(),
            last_prune: Arc::default(),
        }
    }

    fn read(&self) -> MutexGuard<'_, HashMap<String, (Principal, Instant)>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new token for `principal`, valid for `lifetime` on every replica.
    pub async fn issue(&self, principal: &Principal, lifetime: Duration) -> Result<String, StoreError> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let expires = chrono::Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default();
        self.store
            .insert(&hash(&token), &principal.id, &super::timestamp(expires))
            .await?;
        self.prune_now_and_then().await;
        Ok(token)
    }

    /// The principal of a valid token; `None` for an unknown, expired or revoked one.
    pub async fn principal(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let key = hash(token);
        let now = Instant::now();
        if let Some((principal, at)) = self.read().get(&key)
            && now.duration_since(*at) < REVALIDATE_AFTER
        {
            return Ok(Some(principal.clone()));
        }
        let found = self.store.principal(&key, &super::now()).await?;
        let mut read = self.read();
        match &found {
            Some(principal) => {
                read.retain(|_, (_, at)| now.duration_since(*at) < REVALIDATE_AFTER);
                read.insert(key, (principal.clone(), now));
            }
            None => {
                read.remove(&key);
            }
        }
        Ok(found)
    }

    /// Ends a token at once on every replica (within [`REVALIDATE_AFTER`] on the others): the console's
    /// logout.
    pub async fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let key = hash(token);
        self.read().remove(&key);
        self.store.revoke(&key).await
    }

    /// Ends every token of a principal (bearer tokens and console sessions) at once on this replica, within
    /// [`REVALIDATE_AFTER`] on the others.
    pub async fn revoke_all(&self, principal_id: &str) -> Result<(), StoreError> {
        self.forget(principal_id);
        self.store.revoke_all(principal_id).await
    }

    /// Forgets what this replica read about a principal's tokens (it was deleted; the store dropped them).
    pub fn forget(&self, principal_id: &str) {
        self.read().retain(|_, (p, _)| p.id != principal_id);
    }

    async fn prune_now_and_then(&self) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.store.prune(&super::now()).await {
            tracing::warn!(error = %e, "cannot remove expired bearer tokens");
        }
    }
}

/// The stored form of a token.
fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
