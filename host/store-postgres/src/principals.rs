//! Principals on PostgreSQL: names unique whatever their case (a unique index on `lower(name)`).

use provisio_core::store::StoreError;
use provisio_core::store::principals::{Principal, PrincipalKind, PrincipalStore};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Error, PostgresStore, from_json, is_unique_violation, now, to_json};

pub(crate) fn principal(r: &PgRow) -> Result<Principal, Error> {
    let kind: String = r.try_get(2)?;
    Ok(Principal {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        kind: match kind.as_str() {
            "admin" => PrincipalKind::Admin,
            _ => PrincipalKind::Technical,
        },
        permissions: from_json(&r.try_get::<String, _>(3)?)?,
    })
}

#[async_trait::async_trait]
impl PrincipalStore for PostgresStore {
    async fn insert(&self, p: &Principal, password_hash: &str) -> Result<(), StoreError> {
        let kind = match p.kind {
            PrincipalKind::Admin => "admin",
            PrincipalKind::Technical => "technical",
        };
        let inserted = sqlx::query(
            "INSERT INTO principals (id, name, kind, password_hash, permissions, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(kind)
        .bind(password_hash)
        .bind(to_json(&p.permissions)?)
        .bind(now())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a user named {:?} already exists",
                p.name
            ))),
            Err(e) => Err(Error::from(e).into()),
        }
    }

    async fn has_admin(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT EXISTS(SELECT 1 FROM principals WHERE kind = 'admin')")
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.try_get(0).map_err(Error::from)?)
    }

    async fn list(&self) -> Result<Vec<Principal>, StoreError> {
        let rows = sqlx::query("SELECT id, name, kind, permissions FROM principals ORDER BY lower(name)")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(rows.iter().map(principal).collect::<Result<_, _>>()?)
    }

    async fn by_name(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        Ok(self.credentials(name).await?.map(|(p, _)| p))
    }

    async fn credentials(&self, name: &str) -> Result<Option<(Principal, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, kind, permissions, password_hash FROM principals WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        let credentials = |r: PgRow| -> Result<(Principal, String), Error> { Ok((principal(&r)?, r.try_get(4)?)) };
        Ok(row.map(credentials).transpose()?)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let n = sqlx::query("DELETE FROM principals WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user with id {id}")));
        }
        Ok(())
    }

    async fn set_password_hash(&self, id: &str, password_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let n = sqlx::query("UPDATE principals SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no user with id {id}")));
        }
        sqlx::query("DELETE FROM tokens WHERE principal_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }
}
