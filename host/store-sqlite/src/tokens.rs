//! Bearer tokens on SQLite: hash, principal, expiry.

use provisio_core::store::StoreError;
use provisio_core::store::principals::Principal;
use provisio_core::store::tokens::TokenStore;
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use crate::principals::{RawPrincipal, raw_principal};

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn insert(&self, hash: &str, principal_id: &str, expires_at: &str) -> Result<(), StoreError> {
        let (hash, principal, expires) = (hash.to_owned(), principal_id.to_owned(), expires_at.to_owned());
        self.blocking(move |s| {
            s.conn().execute(
                "INSERT INTO tokens (hash, principal_id, expires_at) VALUES (?1, ?2, ?3)",
                params![hash, principal, expires],
            )?;
            Ok(())
        })
        .await
    }

    async fn principal(&self, hash: &str, now: &str) -> Result<Option<Principal>, StoreError> {
        let (hash, now) = (hash.to_owned(), now.to_owned());
        self.blocking(move |s| {
            let row: Option<RawPrincipal> = s
                .conn()
                .query_row(
                    "SELECT p.id, p.name, p.kind, p.permissions FROM tokens t JOIN principals p ON p.id = t.principal_id
                     WHERE t.hash = ?1 AND t.expires_at > ?2",
                    params![hash, now],
                    raw_principal,
                )
                .optional()?;
            row.map(RawPrincipal::decode).transpose()
        })
        .await
    }

    async fn prune(&self, now: &str) -> Result<usize, StoreError> {
        let now = now.to_owned();
        self.blocking(move |s| {
            Ok(s.conn()
                .execute("DELETE FROM tokens WHERE expires_at <= ?1", params![now])?)
        })
        .await
    }

    async fn revoke(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.blocking(move |s| {
            s.conn().execute("DELETE FROM tokens WHERE hash = ?1", params![hash])?;
            Ok(())
        })
        .await
    }

    async fn revoke_all(&self, principal_id: &str) -> Result<(), StoreError> {
        let id = principal_id.to_owned();
        self.blocking(move |s| {
            s.conn()
                .execute("DELETE FROM tokens WHERE principal_id = ?1", params![id])?;
            Ok(())
        })
        .await
    }
}
