//! Bearer tokens on PostgreSQL: hash, principal, expiry.

use provisio_core::store::StoreError;
use provisio_core::store::principals::Principal;
use provisio_core::store::tokens::TokenStore;

use crate::principals::principal;
use crate::{Error, PostgresStore};

#[async_trait::async_trait]
impl TokenStore for PostgresStore {
    async fn insert(&self, hash: &str, principal_id: &str, expires_at: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (hash, principal_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(principal_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn principal(&self, hash: &str, now: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT p.id, p.name, p.kind, p.permissions FROM tokens t JOIN principals p ON p.id = t.principal_id
             WHERE t.hash = $1 AND t.expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(principal).transpose()?)
    }

    async fn prune(&self, now: &str) -> Result<usize, StoreError> {
        let n = sqlx::query("DELETE FROM tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        Ok(n as usize)
    }

    async fn revoke(&self, hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn revoke_all(&self, principal_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tokens WHERE principal_id = $1")
            .bind(principal_id)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }
}
