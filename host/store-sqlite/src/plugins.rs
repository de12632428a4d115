//! The plugin registry on SQLite.

use std::collections::BTreeMap;

use provisio_core::store::StoreError;
use provisio_core::store::plugins::{PluginRecord, PluginStore};
use rusqlite::{OptionalExtension, params};

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl PluginStore for SqliteStore {
    async fn record(&self, plugin: &PluginRecord) -> Result<(), StoreError> {
        let plugin = plugin.clone();
        self.blocking(move |s| s.record_plugin(&plugin)).await
    }

    async fn delete(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.blocking(move |s| s.delete_plugin(&name, &version)).await
    }

    async fn list(&self) -> Result<Vec<PluginRecord>, StoreError> {
        self.blocking(|s| s.list_plugins()).await
    }

    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (digest, bytes) = (digest.to_owned(), bytes.to_vec());
        self.blocking(move |s| {
            s.conn().execute(
                "INSERT OR IGNORE INTO plugin_components (digest, bytes) VALUES (?1, ?2)",
                params![digest, bytes],
            )?;
            Ok(())
        })
        .await
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = digest.to_owned();
        self.blocking(move |s| {
            Ok(s.conn()
                .query_row(
                    "SELECT bytes FROM plugin_components WHERE digest = ?1",
                    params![digest],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn selection(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.blocking(|s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached("SELECT name, version FROM plugin_selection")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_selection(&self, selection: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let selection = selection.clone();
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM plugin_selection", [])?;
            for (name, version) in &selection {
                tx.execute(
                    "INSERT INTO plugin_selection (name, version) VALUES (?1, ?2)",
                    params![name, version],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// Records a plugin version; the same digest again is a no-op, a different component with the same
    /// name and version is a conflict.
    fn record_plugin(&self, p: &PluginRecord) -> Result<(), Error> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT digest FROM plugins WHERE name = ?1 AND version = ?2",
                params![p.name, p.version],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(d) if d == p.digest => return Ok(()),
            Some(_) if p.bundled => {
                // A bundled connector rebuilt with the same version replaces its predecessor.
                conn.execute(
                    "DELETE FROM plugins WHERE name = ?1 AND version = ?2",
                    params![p.name, p.version],
                )?;
            }
            Some(_) => {
                return Err(Error::Conflict(format!(
                    "{}@{} is already loaded with different contents; give the new build a new version",
                    p.name, p.version
                )));
            }
            None => {}
        }
        conn.execute(
            "INSERT INTO plugins (digest, name, version, contract, size, bundled, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.digest, p.name, p.version, p.contract, p.size, p.bundled, now()],
        )?;
        Ok(())
    }

    /// Forgets a plugin version.
    fn delete_plugin(&self, name: &str, version: &str) -> Result<(), Error> {
        self.conn().execute(
            "DELETE FROM plugins WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        Ok(())
    }

    /// Every recorded plugin version.
    fn list_plugins(&self) -> Result<Vec<PluginRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT digest, name, version, contract, size, bundled, added_at FROM plugins ORDER BY name, added_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PluginRecord {
                digest: r.get(0)?,
                name: r.get(1)?,
                version: r.get(2)?,
                contract: r.get(3)?,
                size: r.get(4)?,
                bundled: r.get(5)?,
                added_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
