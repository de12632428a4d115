//! Admins and technical users: the inbound credentials of the API and the SCIM surfaces.
//!
//! Passwords are stored as Argon2id hashes. Verifying a hash costs tens of milliseconds by design, so a
//! successful verification is remembered in memory (keyed by a SHA-256 of name and password) for a few
//! minutes: the real-time API can then take thousands of Basic-authenticated requests a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Create, change and delete systems and technical users.
    ManageSystems,
    /// Start and stop jobs.
    RunJobs,
    /// Read job and real-time logs.
    ReadLogs,
    /// Use the proxy SCIM API.
    ProxyApi,
    /// Push to the real-time provisioning API.
    RealtimeApi,
    /// Upload and remove plugins.
    ManagePlugins,
    /// Read and export the audit log.
    ReadAudit,
}

impl Permission {
    /// Every permission (what an admin has).
    pub const ALL: [Permission; 7] = [
        Permission::ManageSystems,
        Permission::RunJobs,
        Permission::ReadLogs,
        Permission::ProxyApi,
        Permission::RealtimeApi,
        Permission::ManagePlugins,
        Permission::ReadAudit,
    ];
}

/// Admin or technical user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A human administrator: every permission.
    Admin,
    /// A technical user: the permissions it was given.
    Technical,
}

/// An authenticated principal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Principal {
    /// Id.
    pub id: String,
    /// Login name.
    pub name: String,
    /// Admin or technical.
    pub kind: PrincipalKind,
    /// What it may do.
    pub permissions: Vec<Permission>,
}

impl Principal {
    /// Whether it may do `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.kind == PrincipalKind::Admin || self.permissions.contains(&p)
    }
}

/// How long a successful verification is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// How long a remembered verification is trusted without asking the store whether the principal is still
/// there with the same password: a principal deleted (or its password changed) on another replica stops
/// authenticating here within this.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// The principals aggregate as a backend stores it: principals with their password hashes.
#[async_trait::async_trait]
pub trait PrincipalStore: Send + Sync {
    /// Stores a new principal with its password hash; names are unique case-insensitively (a conflict).
    async fn insert(&self, principal: &Principal, password_hash: &str) -> Result<(), StoreError>;
    /// Whether any admin exists.
    async fn has_admin(&self) -> Result<bool, StoreError>;
    /// Every principal, by name.
    async fn list(&self) -> Result<Vec<Principal>, StoreError>;
    /// The principal with this name (case-insensitive).
    async fn by_name(&self, name: &str) -> Result<Option<Principal>, StoreError>;
    /// The principal with this name and its password hash.
    async fn credentials(&self, name: &str) -> Result<Option<(Principal, String)>, StoreError>;
    /// Deletes a principal by id (not found when there is none).
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Replaces a principal's password hash and, in the same transaction, removes every bearer token (and
    /// console session) it holds (not found when there is no such principal).
    async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<(), StoreError>;
}

/// Successful verifications by SHA-256 of name and password: the principal, the hash it was verified
/// against, when it was verified, and when the store last confirmed it.
type Verified = HashMap<[u8; 32], Remembered>;

struct Remembered {
    principal: Principal,
    hash: String,
    verified_at: Instant,
    confirmed_at: Instant,
}

/// Principals with their passwords checked above the backend: hashing, verifying and the cache of recent
/// verifications are the same whatever stores the hashes. Hashing runs on the blocking pool.
#[derive(Clone)]
pub struct Principals {
    store: Arc<dyn PrincipalStore>,
    /// Successful verifications: SHA-256 of name and password → principal and when it was verified.
    verified: Arc<Mutex<Verified>>,
}

impl Principals {
    /// Checks passwords against `store`.
    pub fn new(store: Arc<dyn PrincipalStore>) -> Principals {
        Principals {
            store,
            verified: Arc::default(),
        }
    }

    /// The same principals as another replica sees them: the same store, a cache of its own.
    pub fn beside(&self) -> Principals {
        Principals::new(self.store.clone())
    }

    fn verified(&self) -> MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a principal. Names are unique case-insensitively.
    pub async fn create(
        &self,
        name: &str,
        password: &str,
        kind: PrincipalKind,
        permissions: &[Permission],
    ) -> Result<Principal, StoreError> {
        let password = password.to_owned();
        let hash = hashed(move || hash_password(&password)).await??;
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        let principal = Principal {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            kind,
            permissions,
        };
        self.store.insert(&principal, &hash).await?;
        Ok(principal)
    }

    /// Whether any admin exists (first start creates one).
    pub async fn has_admin(&self) -> Result<bool, StoreError> {
        self.store.has_admin().await
    }

    /// Technical users and admins, without hashes.
    pub async fn list(&self) -> Result<Vec<Principal>, StoreError> {
        self.store.list().await
    }

    /// The principal with this name (case-insensitive, as names are unique), without its hash.
    pub async fn by_name(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        self.store.by_name(name).await
    }

    /// Deletes a principal by id; its remembered verifications go with it.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let deleted = self.store.delete(id).await;
        self.verified().retain(|_, r| r.principal.id != id);
        deleted
    }

    /// Changes a principal's password: its tokens and console sessions end (the store drops them; the
    /// caller also tells [`Tokens::forget`](super::tokens::Tokens::forget)), and so do its remembered
    /// verifications here (other replicas re-check within [`RECHECK_AFTER`]).
    pub async fn set_password(&self, id: &str, password: &str) -> Result<(), StoreError> {
        let password = password.to_owned();
        let hash = hashed(move || hash_password(&password)).await??;
        let changed = self.store.set_password_hash(id, &hash).await;
        self.verified().retain(|_, r| r.principal.id != id);
        changed
    }

    /// The principal when these credentials were verified and confirmed by the store a moment ago (no
    /// hashing, no database).
    pub fn recently_verified(&self, name: &str, password: &str) -> Option<Principal> {
        self.verified()
            .get(&cache_key(name, password))
            .filter(|r| r.verified_at.elapsed() < VERIFIED_FOR && r.confirmed_at.elapsed() < RECHECK_AFTER)
            .map(|r| r.principal.clone())
    }

    /// Checks a name and password; `None` when they do not match a principal. A verification remembered
    /// from the last minutes is confirmed against the store (the principal is there, with the same password
    /// hash and its current permissions) at most every [`RECHECK_AFTER`], without hashing again.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Principal>, StoreError> {
        let key = cache_key(name, password);
        let remembered = {
            let mut verified = self.verified();
            match verified.get(&key) {
                Some(r) if r.verified_at.elapsed() >= VERIFIED_FOR => {
                    verified.remove(&key);
                    None
                }
                Some(r) if r.confirmed_at.elapsed() < RECHECK_AFTER => return Ok(Some(r.principal.clone())),
                Some(r) => Some(r.hash.clone()),
                None => None,
            }
        };
        let stored = self.store.credentials(name).await?;
        if let (Some(remembered), Some((principal, hash))) = (&remembered, &stored)
            && remembered == hash
        {
            if let Some(r) = self.verified().get_mut(&key) {
                r.principal = principal.clone();
                r.confirmed_at = Instant::now();
            }
            return Ok(Some(principal.clone()));
        }
        if remembered.is_some() {
            // Deleted, or its password changed, perhaps on another replica.
            self.verified().remove(&key);
        }
        let password = password.to_owned();
        let Some((principal, hash)) = stored else {
            // Spend the same time as a real check, so names cannot be probed by timing.
            let _ = hashed(move || hash_password(&password)).await;
            return Ok(None);
        };
        let turn = hashing_turn().await?;
        // A request with the same credentials (a client's parallel first requests) may have verified them
        // while this one waited for its turn: one hash serves them all.
        if let Some(r) = self.verified().get(&key).filter(|r| r.hash == hash) {
            return Ok(Some(r.principal.clone()));
        }
        let checked = hash.clone();
        let matches = blocking(move || check_password(&password, &checked)).await??;
        drop(turn);
        if !matches {
            return Ok(None);
        }
        let now = Instant::now();
        self.verified().insert(
            key,
            Remembered {
                principal: principal.clone(),
                hash,
                verified_at: now,
                confirmed_at: now,
            },
        );
        Ok(Some(principal))
    }
}

/// Argon2 hashes computed at once, process-wide. Each takes 19 MiB of memory (Argon2id's default cost) and a
/// core for tens of milliseconds: a burst of logins (a client opening many connections with Basic
/// credentials, or someone trying passwords) queues instead of taking memory and CPU without bound.
pub const MAX_CONCURRENT_HASHES: usize = 2;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// Waits for a turn to hash (see [`MAX_CONCURRENT_HASHES`]).
async fn hashing_turn() -> Result<tokio::sync::SemaphorePermit<'static>, StoreError> {
    HASHING
        .acquire()
        .await
        .map_err(|e| StoreError::Corrupt(format!("password hashing is closed: {e}")))
}

/// Runs CPU-heavy password work on the blocking pool, in its turn (a caller that already holds one passes
/// through [`blocking`]).
async fn hashed<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    let _turn = hashing_turn().await?;
    blocking(work).await
}

/// Runs password work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    #[cfg(test)]
    let _counted = tests::Hashing::start();
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Corrupt(format!("password check did not finish: {e}")))
}

fn cache_key(name: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.to_lowercase().as_bytes());
    h.update(password.as_bytes());
    h.finalize().into()
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Corrupt(format!("cannot hash the password: {e}")))
}

fn check_password(password: &str, hash: &str) -> Result<bool, StoreError> {
    let parsed = PasswordHash::new(hash).map_err(|e| StoreError::Corrupt(format!("password hash: {e}")))?;
    Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static NOW: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    static TOTAL: AtomicUsize = AtomicUsize::new(0);

    /// Counts the password work running at once (every test of this module shares the counters, so the one
    /// test that reads them is the only one that hashes).
    pub(super) struct Hashing;

    impl Hashing {
        pub(super) fn start() -> Hashing {
            let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
            MOST.fetch_max(now, Ordering::SeqCst);
            TOTAL.fetch_add(1, Ordering::SeqCst);
            Hashing
        }
    }

    impl Drop for Hashing {
        fn drop(&mut self) {
            NOW.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Principals in memory.
    #[derive(Default)]
    struct InMemory(Mutex<Vec<(Principal, String)>>);

    #[async_trait::async_trait]
    impl PrincipalStore for InMemory {
        async fn insert(&self, principal: &Principal, password_hash: &str) -> Result<(), StoreError> {
            let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
            all.push((principal.clone(), password_hash.to_owned()));
            Ok(())
        }
        async fn has_admin(&self) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn list(&self) -> Result<Vec<Principal>, StoreError> {
            Ok(Vec::new())
        }
        async fn by_name(&self, name: &str) -> Result<Option<Principal>, StoreError> {
            Ok(self.credentials(name).await?.map(|(p, _)| p))
        }
        async fn credentials(&self, name: &str) -> Result<Option<(Principal, String)>, StoreError> {
            let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
            Ok(all.iter().find(|(p, _)| p.name.eq_ignore_ascii_case(name)).cloned())
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn set_password_hash(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_logins_hashes_a_few_at_a_time_and_once_per_credentials() {
        let principals = Arc::new(Principals::new(Arc::new(InMemory::default())));
        principals
            .create("client", "client-secret-1", PrincipalKind::Technical, &[])
            .await
            .expect("created");
        let before = TOTAL.load(Ordering::SeqCst);
        // 12 parallel first requests of one client, and 8 wrong passwords tried at the same time.
        let logins = (0..20).map(|i| {
            let principals = principals.clone();
            tokio::spawn(async move {
                let password = if i < 12 {
                    "client-secret-1".to_owned()
                } else {
                    format!("guess-{i}")
                };
                principals
                    .verify("client", &password)
                    .await
                    .expect("verified")
                    .is_some()
            })
        });
        let accepted: Vec<bool> = futures::future::join_all(logins)
            .await
            .into_iter()
            .map(|r| r.expect("joined"))
            .collect();
        assert_eq!(accepted.iter().filter(|a| **a).count(), 12, "{accepted:?}");
        assert!(accepted[12..].iter().all(|a| !a));
        assert!(
            MOST.load(Ordering::SeqCst) <= MAX_CONCURRENT_HASHES,
            "{} hashes at once",
            MOST.load(Ordering::SeqCst)
        );
        // One hash per wrong password; the right one is hashed by those that got a turn before it was
        // verified (at most one per turn), and the others find it verified after their wait.
        let hashes = TOTAL.load(Ordering::SeqCst) - before;
        assert!((8 + 1..=8 + MAX_CONCURRENT_HASHES).contains(&hashes), "{hashes} hashes");
    }
}
