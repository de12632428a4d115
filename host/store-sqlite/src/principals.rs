//! Principals on SQLite: name (unique, case-insensitive), kind, permissions and the Argon2id hash.

use provisio_core::store::StoreError;
use provisio_core::store::principals::{Principal, PrincipalKind, PrincipalStore};
use rusqlite::{OptionalExtension, Row, params};

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl PrincipalStore for SqliteStore {
    async fn insert(&self, principal: &Principal, password_hash: &str) -> Result<(), StoreError> {
        let (principal, hash) = (principal.clone(), password_hash.to_owned());
        self.blocking(move |s| s.insert_principal(&principal, &hash)).await
    }

    async fn has_admin(&self) -> Result<bool, StoreError> {
        self.blocking(|s| {
            Ok(s.conn().query_row(
                "SELECT EXISTS(SELECT 1 FROM principals WHERE kind = 'admin')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Principal>, StoreError> {
        self.blocking(|s| {
            let conn = s.conn();
            let mut stmt = conn.prepare("SELECT id, name, kind, permissions FROM principals ORDER BY name")?;
            let rows = stmt.query_map([], raw_principal)?;
            rows.map(|row| row?.decode()).collect()
        })
        .await
    }

    async fn by_name(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        Ok(self.credentials(name).await?.map(|(p, _)| p))
    }

    async fn credentials(&self, name: &str) -> Result<Option<(Principal, String)>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |s| {
            let row = s
                .conn()
                .query_row(
                    "SELECT id, name, kind, permissions, password_hash FROM principals WHERE name = ?1",
                    params![name],
                    |r| Ok((raw_principal(r)?, r.get::<_, String>(4)?)),
                )
                .optional()?;
            row.map(|(raw, hash)| Ok((raw.decode()?, hash))).transpose()
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            if s.conn().execute("DELETE FROM principals WHERE id = ?1", params![id])? == 0 {
                return Err(Error::NotFound(format!("no user with id {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<(), StoreError> {
        let (id, hash) = (id.to_owned(), password_hash.to_owned());
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            if tx.execute(
                "UPDATE principals SET password_hash = ?2 WHERE id = ?1",
                params![id, hash],
            )? == 0
            {
                return Err(Error::NotFound(format!("no user with id {id}")));
            }
            tx.execute("DELETE FROM tokens WHERE principal_id = ?1", params![id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    fn insert_principal(&self, p: &Principal, hash: &str) -> Result<(), Error> {
        let perms = serde_json::to_string(&p.permissions).map_err(|e| Error::Corrupt(e.to_string()))?;
        let kind = match p.kind {
            PrincipalKind::Admin => "admin",
            PrincipalKind::Technical => "technical",
        };
        let inserted = self.conn().execute(
            "INSERT INTO principals (id, name, kind, password_hash, permissions, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![p.id, p.name, kind, hash, perms, now()],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::Conflict(format!("a user named {:?} already exists", p.name)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A principal's columns as stored.
pub(crate) struct RawPrincipal {
    id: String,
    name: String,
    kind: String,
    permissions: String,
}

pub(crate) fn raw_principal(r: &Row<'_>) -> rusqlite::Result<RawPrincipal> {
    Ok(RawPrincipal {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        permissions: r.get(3)?,
    })
}

impl RawPrincipal {
    pub(crate) fn decode(self) -> Result<Principal, Error> {
        let kind = match self.kind.as_str() {
            "admin" => PrincipalKind::Admin,
            _ => PrincipalKind::Technical,
        };
        let permissions =
            serde_json::from_str(&self.permissions).map_err(|e| Error::Corrupt(format!("permissions: {e}")))?;
        Ok(Principal {
            id: self.id,
            name: self.name,
            kind,
            permissions,
        })
    }
}
