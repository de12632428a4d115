//! Brute-force protection of every password check (HTTP Basic on the admin API, the proxy and the
//! real-time API, `POST /oauth2/token`, the console's login form): failures are counted per principal (the
//! name given, whether it exists or not) and per client address in the store, so that every replica sees
//! them. Each failure is answered after a growing delay (100 ms, doubling, up to 3 s); 10 failures of a
//! principal within 15 minutes, or 50 of an address, lock it for 15 minutes. During a lock every attempt —
//! a correct password too — gets the same 429 with `Retry-After`, before any password is checked, so a lock
//! reveals nothing about the password.
//!
//! Audit: every failed login (`login.failed`) and every lock it starts (`login.locked`) is recorded in the
//! audit log by the password check that called [`LoginGuard::failed`] (`api::auth`), with the name tried, the
//! client's address and the channel. Attempts refused during a lock are counted in the metrics only (they
//! check no password, and an attacker could otherwise fill the log at no cost).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Stores;

/// How failures are counted and punished.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Delay after the first failure; each further failure in the window doubles it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// How long a failure counts.
    pub window: Duration,
    /// Failures of one principal within the window that lock it.
    pub principal_failures: u32,
    /// Failures from one client address within the window that lock it.
    pub address_failures: u32,
    /// How long a lock lasts.
    pub lock: Duration,
    /// How long this replica trusts that a key is not locked before asking the store again (locks set by
    /// this replica hold at once; another replica's after at most this long).
    pub recheck: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(3),
            window: Duration::from_secs(15 * 60),
            principal_failures: 10,
            address_failures: 50,
            lock: Duration::from_secs(15 * 60),
            recheck: Duration::from_secs(1),
        }
    }
}

impl LoginPolicy {
    /// The delay answering the `failures`-th failure in the window (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The principal or the address is locked for this long still.
    Locked(Duration),
    /// The store cannot say.
    Unavailable,
}

/// The guard of password checks; one per process, its state in the store.
pub struct LoginGuard {
    policy: LoginPolicy,
    /// What this replica found unlocked, and when it asked.
    unlocked: Mutex<Unlocked>,
}

/// Principals (by [folded](folded) name) and addresses (as [counted](counted)) found unlocked, and when: kept
/// apart from the store's keys so that a request's check formats no key (docs/performance.md,
/// "twenty-second session").
#[derive(Default)]
struct Unlocked {
    principals: HashMap<String, Instant>,
    addresses: HashMap<IpAddr, Instant>,
}

/// A principal's name as its failures are counted: trimmed and lower-cased.
fn folded(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    if name.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(name.to_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// An address as its failures are counted: an IPv4 client on a dual-stack socket as over IPv4.
fn counted(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn principal_key(name: &str) -> String {
    format!("principal:{}", folded(name))
}

fn address_key(address: IpAddr) -> String {
    format!("address:{}", counted(address))
}

impl LoginGuard {
    /// A guard with this policy.
    pub fn new(policy: LoginPolicy) -> Self {
        LoginGuard {
            policy,
            unlocked: Mutex::new(Unlocked::default()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    fn keys(name: &str, address: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![principal_key(name)];
        keys.extend(address.map(address_key));
        keys
    }

    /// Before a password is checked: refused while the principal or the address is locked.
    pub async fn admit(&self, stores: &Stores, name: &str, address: Option<IpAddr>) -> Result<(), Refusal> {
        let (principal, address) = (folded(name), address.map(counted));
        let now = Instant::now();
        {
            let unlocked = self.unlocked.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = |at: Option<&Instant>| at.is_some_and(|at| now.duration_since(*at) < self.policy.recheck);
            if fresh(unlocked.principals.get(principal.as_ref()))
                && address.is_none_or(|a| fresh(unlocked.addresses.get(&a)))
            {
                return Ok(());
            }
        }
        match stores.logins.locked(&Self::keys(name, address)).await {
            Ok(Some(left)) => {
                crate::metrics::login_failure("locked");
                Err(Refusal::Locked(left))
            }
            Ok(None) => {
                let mut unlocked = self.unlocked.lock().unwrap_or_else(|e| e.into_inner());
                if unlocked.principals.len() + unlocked.addresses.len() > 10_000 {
                    *unlocked = Unlocked::default();
                }
                unlocked.principals.insert(principal.into_owned(), now);
                if let Some(a) = address {
                    unlocked.addresses.insert(a, now);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot check login locks");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// After a wrong password (or an unknown name): counts the failure, locks what went over its limit,
    /// and waits the growing delay. `Some` when this failure started a lock (answer it as locked).
    pub async fn failed(&self, stores: &Stores, name: &str, address: Option<IpAddr>) -> Option<Duration> {
        crate::metrics::login_failure("invalid");
        let keys = Self::keys(name, address);
        let counts = match stores.logins.record_failure(&keys, self.policy.window).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a failed login");
                tokio::time::sleep(self.policy.max_delay).await;
                return None;
            }
        };
        let mut locked = None;
        for ((key, count), (scope, limit)) in keys.iter().zip(&counts).zip([
            ("principal", self.policy.principal_failures),
            ("address", self.policy.address_failures),
        ]) {
            if *count >= limit {
                match stores.logins.lock(key, self.policy.lock).await {
                    Ok(()) => {
                        tracing::warn!(key = %key, failures = count, lock_secs = self.policy.lock.as_secs(), "login locked after repeated failures");
                        crate::metrics::login_lock(scope);
                        locked = Some(self.policy.lock);
                    }
                    Err(e) => tracing::error!(error = %e, key = %key, "cannot lock a login"),
                }
                let mut unlocked = self.unlocked.lock().unwrap_or_else(|e| e.into_inner());
                match address {
                    Some(a) if scope == "address" => unlocked.addresses.remove(&counted(a)),
                    _ => unlocked.principals.remove(folded(name).as_ref()),
                };
            }
        }
        if locked.is_none() {
            let worst = counts.iter().copied().max().unwrap_or(1);
            tokio::time::sleep(self.policy.delay(worst)).await;
        }
        locked
    }

    /// After a correct password: the principal's failures are forgotten (the address's stay, so that one
    /// valid account does not reset an address that tries many names).
    pub async fn succeeded(&self, stores: &Stores, name: &str) {
        if let Err(e) = stores.logins.forget_failures(&principal_key(name)).await {
            tracing::warn!(error = %e, "cannot reset the failed logins of a principal");
        }
    }
}

/// A running lock, as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginLock {
    /// `principal` or `address`.
    pub scope: String,
    /// The principal's name (as typed, lower-cased) or the client address.
    pub subject: String,
    /// Seconds the lock lasts still (rounded up).
    pub retry_after_seconds: u64,
}

/// What an admin unlocks: a principal by name, or a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockSubject {
    /// A principal's name.
    Principal(String),
    /// A client address.
    Address(IpAddr),
}

impl LockSubject {
    /// From the `{scope}/{subject}` of a request; `None` for an unknown scope or an address that is none.
    pub fn parse(scope: &str, subject: &str) -> Option<Self> {
        match scope {
            "principal" if !subject.trim().is_empty() => Some(LockSubject::Principal(subject.to_owned())),
            "address" => subject.parse().ok().map(LockSubject::Address),
            _ => None,
        }
    }

    fn key(&self) -> String {
        match self {
            LockSubject::Principal(name) => principal_key(name),
            LockSubject::Address(address) => address_key(*address),
        }
    }
}

impl LoginGuard {
    /// The locks still running, longest first.
    pub async fn locks(&self, stores: &Stores) -> Result<Vec<LoginLock>, crate::store::StoreError> {
        Ok(stores
            .logins
            .locks()
            .await?
            .into_iter()
            .filter_map(|(key, left)| {
                let (scope, subject) = key.split_once(':')?;
                Some(LoginLock {
                    scope: scope.to_owned(),
                    subject: subject.to_owned(),
                    retry_after_seconds: left.as_secs() + u64::from(left.subsec_nanos() > 0),
                })
            })
            .collect())
    }

    /// An admin's unlock: the lock ends at once on every replica (they ask the store before each password
    /// check of a key they have not seen unlocked within a second) and the subject's failures are forgotten,
    /// so its next failure starts from the first delay. `false` when no lock was running.
    pub async fn unlock(&self, stores: &Stores, subject: &LockSubject) -> Result<bool, crate::store::StoreError> {
        stores.logins.unlock(&subject.key()).await
    }
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard::new(LoginPolicy::default())
    }
}

/// Minutes for people, rounded up: "1 minute", "15 minutes".
pub fn minutes(d: Duration) -> String {
    let m = d.as_secs().div_ceil(60).max(1);
    if m == 1 {
        "1 minute".into()
    } else {
        format!("{m} minutes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_100_ms_up_to_3_s() {
        let p = LoginPolicy::default();
        let delays: Vec<u128> = (0..8).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1600, 3000, 3000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(3));
    }

    #[test]
    fn keys_fold_case_and_mapped_addresses() {
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(
            LoginGuard::keys(" Admin ", Some(mapped)),
            vec!["principal:admin".to_string(), "address:10.1.2.3".to_string()]
        );
        assert_eq!(LoginGuard::keys("admin", Some(v4))[1], "address:10.1.2.3");
        assert_eq!(LoginGuard::keys("admin", None).len(), 1);
        // The fast path's forms of the same: the name folded (borrowed when it is already), the address mapped.
        assert!(matches!(folded(" admin "), Cow::Borrowed("admin")));
        assert_eq!(folded(" ÄDMIN\t"), "ädmin");
        assert_eq!(counted(mapped), v4);
        assert_eq!(minutes(Duration::from_secs(899)), "15 minutes");
        assert_eq!(minutes(Duration::from_secs(5)), "1 minute");
    }
}
