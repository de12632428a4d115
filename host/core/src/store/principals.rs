//! Admins and technical users: the inbound credentials of the API and the SCIM surfaces.
//!
//! Passwords are stored as Argon2id hashes. Verifying a hash costs tens of milliseconds by design, so a
//! successful verification is remembered in memory (keyed by a SHA-256 of name and password) for a few
//! minutes: the real-time API can then take thousands of Basic-authenticated requests a second.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, now};

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
}

impl Permission {
    /// Every permission (what an admin has).
    pub const ALL: [Permission; 6] = [
        Permission::ManageSystems,
        Permission::RunJobs,
        Permission::ReadLogs,
        Permission::ProxyApi,
        Permission::RealtimeApi,
        Permission::ManagePlugins,
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

const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Successful verifications: SHA-256 of name and password → principal and when it was verified.
type VerifiedCache = Mutex<HashMap<[u8; 32], (Principal, Instant)>>;

fn verified_cache() -> &'static VerifiedCache {
    static CACHE: OnceLock<VerifiedCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
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

impl Store {
    /// Creates a principal. Names are unique case-insensitively.
    pub fn create_principal(
        &self,
        name: &str,
        password: &str,
        kind: PrincipalKind,
        permissions: &[Permission],
    ) -> Result<Principal, StoreError> {
        let hash = hash_password(password)?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        let perms = serde_json::to_string(&permissions).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let kind_text = match kind {
            PrincipalKind::Admin => "admin",
            PrincipalKind::Technical => "technical",
        };
        let inserted = self.conn().execute(
            "INSERT INTO principals (id, name, kind, password_hash, permissions, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, name, kind_text, hash, perms, now()],
        );
        match inserted {
            Ok(_) => Ok(Principal {
                id,
                name: name.to_string(),
                kind,
                permissions,
            }),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Conflict(format!("a user named {name:?} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether any admin exists (first start creates one).
    pub fn has_admin(&self) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM principals WHERE kind = 'admin')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Technical users and admins, without hashes.
    pub fn list_principals(&self) -> Result<Vec<Principal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, kind, permissions FROM principals ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (id, name, kind, perms) = row?;
            principal_from_row(id, name, &kind, &perms)
        })
        .collect()
    }

    /// The principal with this name (case-insensitive, as names are unique), without its hash.
    pub fn principal_by_name(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, name, kind, permissions FROM principals WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(id, name, kind, perms)| principal_from_row(id, name, &kind, &perms))
            .transpose()
    }

    /// Deletes a principal by id.
    pub fn delete_principal(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM principals WHERE id = ?1", params![id])?;
        verified_cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (p, _)| p.id != id);
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user with id {id}")));
        }
        Ok(())
    }

    /// The principal when these credentials were verified a moment ago (no hashing, no database).
    pub fn recently_verified(&self, name: &str, password: &str) -> Option<Principal> {
        let key = cache_key(name, password);
        let cache = verified_cache().lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&key)
            .filter(|(_, at)| at.elapsed() < VERIFIED_FOR)
            .map(|(p, _)| p.clone())
    }

    /// Checks a name and password; `None` when they do not match a principal.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Principal>, StoreError> {
        let key = cache_key(name, password);
        {
            let mut cache = verified_cache().lock().unwrap_or_else(|e| e.into_inner());
            if let Some((p, at)) = cache.get(&key) {
                if at.elapsed() < VERIFIED_FOR {
                    return Ok(Some(p.clone()));
                }
                cache.remove(&key);
            }
        }
        let row = self
            .conn()
            .query_row(
                "SELECT id, name, kind, permissions, password_hash FROM principals WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, stored_name, kind, perms, hash)) = row else {
            // Spend the same time as a real check, so names cannot be probed by timing.
            let _ = hash_password(password);
            return Ok(None);
        };
        let parsed = PasswordHash::new(&hash).map_err(|e| StoreError::Corrupt(format!("password hash: {e}")))?;
        if Argon2::default().verify_password(password.as_bytes(), &parsed).is_err() {
            return Ok(None);
        }
        let principal = principal_from_row(id, stored_name, &kind, &perms)?;
        verified_cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (principal.clone(), Instant::now()));
        Ok(Some(principal))
    }
}

fn principal_from_row(id: String, name: String, kind: &str, perms: &str) -> Result<Principal, StoreError> {
    let kind = match kind {
        "admin" => PrincipalKind::Admin,
        _ => PrincipalKind::Technical,
    };
    let permissions = serde_json::from_str(perms).map_err(|e| StoreError::Corrupt(format!("permissions: {e}")))?;
    Ok(Principal {
        id,
        name,
        kind,
        permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_and_refuse() {
        let s = crate::store::test_store();
        assert!(!s.has_admin().unwrap());
        s.create_principal("admin", "pw-1", PrincipalKind::Admin, &[]).unwrap();
        assert!(s.has_admin().unwrap());
        let t = s
            .create_principal("ias-push", "pw-2", PrincipalKind::Technical, &[Permission::RealtimeApi])
            .unwrap();
        assert!(matches!(
            s.create_principal("IAS-PUSH", "x", PrincipalKind::Technical, &[]),
            Err(StoreError::Conflict(_))
        ));
        let p = s.verify_password("ias-push", "pw-2").unwrap().expect("valid");
        assert_eq!(p.id, t.id);
        assert!(p.may(Permission::RealtimeApi) && !p.may(Permission::ManageSystems));
        assert!(s.verify_password("ias-push", "wrong").unwrap().is_none());
        assert!(s.verify_password("nobody", "pw-2").unwrap().is_none());
        let admin = s.verify_password("admin", "pw-1").unwrap().expect("admin");
        assert!(Permission::ALL.iter().all(|p| admin.may(*p)));
        let found = s.principal_by_name("IAS-Push").unwrap().expect("case-insensitive");
        assert_eq!((found.id.as_str(), found.name.as_str()), (t.id.as_str(), "ias-push"));
        assert!(s.principal_by_name("nobody").unwrap().is_none());
        s.delete_principal(&t.id).unwrap();
        assert!(
            s.verify_password("ias-push", "pw-2").unwrap().is_none(),
            "the cache forgets deleted users"
        );
    }
}
