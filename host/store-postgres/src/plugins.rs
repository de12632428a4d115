//! The plugin registry on PostgreSQL.

use std::collections::BTreeMap;

use provisio_core::store::StoreError;
use provisio_core::store::plugins::{PluginRecord, PluginStore};
use sqlx::Row;

use crate::{Error, PostgresStore, now};

#[async_trait::async_trait]
impl PluginStore for PostgresStore {
    async fn record(&self, p: &PluginRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let existing: Option<String> =
            sqlx::query("SELECT digest FROM plugins WHERE name = $1 AND version = $2 FOR UPDATE")
                .bind(&p.name)
                .bind(&p.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::from)?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(Error::from)?;
        match existing {
            Some(d) if d == p.digest => return Ok(()),
            Some(_) if p.bundled => {
                // A bundled connector rebuilt with the same version replaces its predecessor.
                sqlx::query("DELETE FROM plugins WHERE name = $1 AND version = $2")
                    .bind(&p.name)
                    .bind(&p.version)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from)?;
            }
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "{}@{} is already loaded with different contents; give the new build a new version",
                    p.name, p.version
                )));
            }
            None => {}
        }
        sqlx::query(
            "INSERT INTO plugins (digest, name, version, contract, size, bundled, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT DO NOTHING",
        )
        .bind(&p.digest)
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.contract)
        .bind(p.size)
        .bind(p.bundled)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn delete(&self, name: &str, version: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM plugins WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT digest, name, version, contract, size, bundled, added_at FROM plugins ORDER BY name, added_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let record = |r: &sqlx::postgres::PgRow| -> Result<PluginRecord, Error> {
            Ok(PluginRecord {
                digest: r.try_get(0)?,
                name: r.try_get(1)?,
                version: r.try_get(2)?,
                contract: r.try_get(3)?,
                size: r.try_get(4)?,
                bundled: r.try_get(5)?,
                added_at: r.try_get(6)?,
            })
        };
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO plugin_components (digest, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(digest)
            .bind(bytes)
            .execute(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM plugin_components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.map(|r| r.try_get(0)).transpose().map_err(Error::from)?)
    }

    async fn selection(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT name, version FROM plugin_selection")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        let mut selection = BTreeMap::new();
        for r in rows {
            selection.insert(r.try_get(0).map_err(Error::from)?, r.try_get(1).map_err(Error::from)?);
        }
        Ok(selection)
    }

    async fn set_selection(&self, selection: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        sqlx::query("DELETE FROM plugin_selection")
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        for (name, version) in selection {
            sqlx::query("INSERT INTO plugin_selection (name, version) VALUES ($1, $2)")
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }
}
