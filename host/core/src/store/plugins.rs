//! The registry of plugin versions: which components are stored, by digest, with name and version.
//! The component bytes live as files in the data directory's `plugins/` folder.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, now};

/// A stored plugin version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginRecord {
    /// SHA-256 of the component.
    pub digest: String,
    /// Connector name.
    pub name: String,
    /// Connector version.
    pub version: String,
    /// Contract version it was built for.
    pub contract: String,
    /// Component size.
    pub size: i64,
    /// Whether it ships inside the binary.
    pub bundled: bool,
    /// When it was added.
    pub added_at: String,
}

impl Store {
    /// Records a plugin version; the same digest again is a no-op, a different component with the same
    /// name and version is a conflict.
    pub fn record_plugin(&self, p: &PluginRecord) -> Result<(), StoreError> {
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
                return Err(StoreError::Conflict(format!(
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
    pub fn delete_plugin(&self, name: &str, version: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM plugins WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        Ok(())
    }

    /// Every recorded plugin version.
    pub fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
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
