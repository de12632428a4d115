//! Systems on SQLite: one row per system with the sealed secrets as one blob and their names apart (the plain
//! `properties` column never holds a secret), and every transformation version in its own table.

use std::collections::{BTreeMap, BTreeSet};

use provisio_core::secrets::{SecretBox, SystemSecrets};
use provisio_core::store::StoreError;
use provisio_core::store::systems::{
    ConnectionTest, Health, Quarantine, Role, System, SystemSpec, SystemStore, TransformationVersion, VersionNote,
};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl SystemStore for SqliteStore {
    fn generation(&self) -> u64 {
        self.systems_generation()
    }

    async fn create_noted(&self, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError> {
        let note = note.clone();
        self.blocking(move |s| s.create_system(spec, &note)).await
    }

    async fn replace_noted(&self, id: &str, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError> {
        let id = id.to_owned();
        let note = note.clone();
        self.blocking(move |s| s.replace_system(&id, spec, &note)).await
    }

    async fn transformation_versions(&self, id: &str) -> Result<Vec<TransformationVersion>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.transformation_versions(&id, None)).await
    }

    async fn transformation_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TransformationVersion>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| Ok(s.transformation_versions(&id, Some(version))?.pop()))
            .await
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.delete_system(&id)).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<System, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.set_system_enabled(&id, enabled)).await
    }

    async fn get(&self, id: &str) -> Result<Option<System>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| s.get_system(&id)).await
    }

    async fn list(&self) -> Result<Vec<System>, StoreError> {
        self.blocking(|s| s.list_systems()).await
    }

    async fn record_connection_test(&self, id: &str, test: &ConnectionTest) -> Result<(), StoreError> {
        let (id, test) = (id.to_owned(), test.clone());
        self.blocking(move |s| {
            s.conn().execute(
                "INSERT INTO system_health (system_id, test_ok, test_message, test_at)
                 SELECT id, ?2, ?3, ?4 FROM systems WHERE id = ?1
                 ON CONFLICT (system_id) DO UPDATE SET test_ok = excluded.test_ok, test_message = excluded.test_message,
                    test_at = excluded.test_at",
                params![id, test.ok, test.message, test.at],
            )?;
            Ok(())
        })
        .await
    }

    async fn quarantine(&self, id: &str, reason: &str, message: &str, next_probe_at: &str) -> Result<bool, StoreError> {
        let (id, reason, message, next) = (
            id.to_owned(),
            reason.to_owned(),
            message.to_owned(),
            next_probe_at.to_owned(),
        );
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found = tx
                .query_row("SELECT 1 FROM systems WHERE id = ?1", params![id], |_| Ok(()))
                .optional()?;
            if found.is_none() {
                return Err(Error::NotFound(format!("no system with id {id}")));
            }
            let n = tx.execute(
                "INSERT INTO system_health (system_id, quarantined_since, quarantine_reason, quarantine_message, next_probe_at, probes, failed_runs)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)
                 ON CONFLICT (system_id) DO UPDATE SET quarantined_since = excluded.quarantined_since,
                    quarantine_reason = excluded.quarantine_reason, quarantine_message = excluded.quarantine_message,
                    next_probe_at = excluded.next_probe_at, probes = 0, failed_runs = 0
                 WHERE system_health.quarantined_since IS NULL",
                params![id, now(), reason, message, next],
            )?;
            tx.commit()?;
            drop(conn);
            s.bump_systems();
            Ok(n > 0)
        })
        .await
    }

    async fn release(&self, id: &str) -> Result<Option<Quarantine>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current = tx
                .query_row(
                    &format!("SELECT {QUARANTINE} FROM system_health WHERE system_id = ?1 AND quarantined_since IS NOT NULL"),
                    params![id],
                    quarantine_row,
                )
                .optional()?;
            if current.is_some() {
                tx.execute(
                    "UPDATE system_health SET quarantined_since = NULL, quarantine_reason = NULL, quarantine_message = NULL,
                        next_probe_at = NULL, probes = 0, failed_runs = 0 WHERE system_id = ?1",
                    params![id],
                )?;
            }
            tx.commit()?;
            drop(conn);
            if current.is_some() {
                s.bump_systems();
            }
            Ok(current)
        })
        .await
    }

    async fn count_run(&self, id: &str, failed: bool) -> Result<i64, StoreError> {
        let id = id.to_owned();
        self.blocking(move |s| {
            let n = s
                .conn()
                .query_row(
                    "INSERT INTO system_health (system_id, failed_runs) SELECT id, ?2 FROM systems WHERE id = ?1
                     ON CONFLICT (system_id) DO UPDATE SET
                        failed_runs = CASE WHEN ?2 = 1 THEN system_health.failed_runs + 1 ELSE 0 END
                     RETURNING failed_runs",
                    params![id, i64::from(failed)],
                    |r| r.get(0),
                )
                .optional()?;
            n.ok_or_else(|| Error::NotFound(format!("no system with id {id}")))
        })
        .await
    }

    async fn claim_probe(&self, id: &str, now: &str, next_probe_at: &str) -> Result<bool, StoreError> {
        let (id, now, next) = (id.to_owned(), now.to_owned(), next_probe_at.to_owned());
        self.blocking(move |s| {
            Ok(s.conn().execute(
                "UPDATE system_health SET next_probe_at = ?3, probes = probes + 1
                 WHERE system_id = ?1 AND quarantined_since IS NOT NULL AND next_probe_at <= ?2",
                params![id, now, next],
            )? > 0)
        })
        .await
    }

    async fn quarantined(&self) -> Result<Vec<(String, Quarantine)>, StoreError> {
        self.blocking(|s| {
            let conn = s.conn();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT system_id, {QUARANTINE} FROM system_health WHERE quarantined_since IS NOT NULL
                 ORDER BY quarantined_since, system_id"
            ))?;
            let rows = stmt.query_map([], |r| {
                let id: String = r.get(0)?;
                Ok((id, quarantine_at(r, 1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// The columns of a quarantine, in the order [`quarantine_at`] reads them.
const QUARANTINE: &str = "quarantined_since, quarantine_reason, quarantine_message, next_probe_at, probes";

fn quarantine_row(r: &Row<'_>) -> rusqlite::Result<Quarantine> {
    quarantine_at(r, 0)
}

/// A quarantine from the [`QUARANTINE`] columns starting at `at`.
fn quarantine_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Quarantine> {
    Ok(Quarantine {
        since: r.get(at)?,
        reason: r.get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
        message: r.get::<_, Option<String>>(at + 2)?.unwrap_or_default(),
        next_probe_at: r.get::<_, Option<String>>(at + 3)?.unwrap_or_default(),
        probes: r.get(at + 4)?,
    })
}

impl SqliteStore {
    /// Changes with every write of a system or its transformation (create, replace, delete).
    fn systems_generation(&self) -> u64 {
        self.systems_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_systems(&self) {
        self.systems_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Stores a new system and returns it.
    fn create_system(&self, spec: SystemSpec, note: &VersionNote) -> Result<System, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO systems (id, name, connector, connector_version, role, properties, secrets, sources, created_at, updated_at, secret_names)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
            params![
                id,
                spec.name,
                spec.connector,
                spec.connector_version,
                spec.role.as_str(),
                to_json(&spec.properties)?,
                self.seal_secrets(&id, &spec.secrets)?,
                to_json(&spec.sources)?,
                at,
                secret_names(&spec.secrets)?
            ],
        );
        if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return Err(Error::Conflict(format!(
                "a system named {:?} already exists",
                spec.name
            )));
        }
        inserted?;
        check_sources(&tx, &spec.sources)?;
        if let Some(doc) = &spec.transformation {
            insert_transformation(&tx, &id, Some(doc), note)?;
        }
        tx.commit()?;
        drop(conn);
        self.bump_systems();
        self.get_system(&id)?
            .ok_or_else(|| Error::NotFound(format!("system {id} vanished")))
    }

    /// Replaces a system's definition. A changed transformation becomes a new version.
    fn replace_system(&self, id: &str, spec: SystemSpec, note: &VersionNote) -> Result<System, Error> {
        let current = self
            .get_system(id)?
            .ok_or_else(|| Error::NotFound(format!("no system with id {id}")))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let updated = tx.execute(
            "UPDATE systems SET name = ?2, connector = ?3, connector_version = ?4, role = ?5, properties = ?6, secrets = ?7,
             sources = ?8, updated_at = ?9, secret_names = ?10 WHERE id = ?1",
            params![
                id,
                spec.name,
                spec.connector,
                spec.connector_version,
                spec.role.as_str(),
                to_json(&spec.properties)?,
                self.seal_secrets(id, &spec.secrets)?,
                to_json(&spec.sources)?,
                now(),
                secret_names(&spec.secrets)?
            ],
        );
        if let Err(rusqlite::Error::SqliteFailure(e, _)) = &updated
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return Err(Error::Conflict(format!(
                "a system named {:?} already exists",
                spec.name
            )));
        }
        updated?;
        check_sources(&tx, &spec.sources)?;
        if spec.transformation != current.spec.transformation {
            insert_transformation(&tx, id, spec.transformation.as_ref(), note)?;
        }
        tx.commit()?;
        drop(conn);
        self.bump_systems();
        self.get_system(id)?
            .ok_or_else(|| Error::NotFound(format!("no system with id {id}")))
    }

    /// Deletes a system with its transformation versions, links, runs and rate state, in one transaction that
    /// first checks, in it, that no target receives from it and no run of it is under way.
    fn delete_system(&self, id: &str) -> Result<(), Error> {
        let mut conn = self.conn();
        // Immediate: the checks and the delete see the same database, and no other write slips in between.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = tx
            .query_row("SELECT 1 FROM systems WHERE id = ?1", params![id], |_| Ok(()))
            .optional()?;
        if found.is_none() {
            return Err(Error::NotFound(format!("no system with id {id}")));
        }
        let mut receivers = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT name, sources FROM systems WHERE id <> ?1 ORDER BY name")?;
            let rows = stmt.query_map(params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (name, sources) = row?;
                let sources: Vec<String> = from_json(&sources)?;
                if sources.iter().any(|s| s == id) {
                    receivers.push(name);
                }
            }
        }
        if !receivers.is_empty() {
            return Err(Error::Conflict(provisio_core::store::systems::still_a_source(
                &receivers,
            )));
        }
        let running: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs WHERE source_id = ?1 AND status IN ('Queued', 'Running', 'Running with Error') LIMIT 1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(job) = running {
            return Err(Error::Conflict(provisio_core::store::systems::run_under_way(&job)));
        }
        tx.execute("DELETE FROM held_deletes WHERE target_id = ?1", params![id])?;
        tx.execute("DELETE FROM target_limits WHERE target = ?1", params![id])?;
        tx.execute("DELETE FROM systems WHERE id = ?1", params![id])?;
        tx.commit()?;
        drop(conn);
        self.bump_systems();
        Ok(())
    }

    /// Enables or disables a system.
    fn set_system_enabled(&self, id: &str, enabled: bool) -> Result<System, Error> {
        let n = self.conn().execute(
            "UPDATE systems SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, enabled, now()],
        )?;
        self.bump_systems();
        if n == 0 {
            return Err(Error::NotFound(format!("no system with id {id}")));
        }
        self.get_system(id)?
            .ok_or_else(|| Error::NotFound(format!("no system with id {id}")))
    }

    /// One system by id.
    fn get_system(&self, id: &str) -> Result<Option<System>, Error> {
        let conn = self.conn();
        let row = conn
            .query_row(&format!("{SELECT} WHERE s.id = ?1"), params![id], raw_system)
            .optional()?;
        drop(conn);
        row.map(|r| self.decode(r)).transpose()
    }

    /// All systems, by name.
    fn list_systems(&self) -> Result<Vec<System>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY s.name"))?;
        let raws: Vec<RawSystem> = stmt.query_map([], raw_system)?.collect::<Result<_, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(|r| self.decode(r)).collect()
    }

    /// A system's transformation versions, newest first (or the one numbered `only`).
    fn transformation_versions(&self, id: &str, only: Option<i64>) -> Result<Vec<TransformationVersion>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, author, created_at, description, reset, document FROM transformations
             WHERE system_id = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC",
        )?;
        let rows: Vec<(i64, String, String, String, bool, String)> = stmt
            .query_map(params![id, only], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(version, author, created_at, description, reset, document)| {
                Ok(TransformationVersion {
                    version,
                    author,
                    created_at,
                    description: (!description.is_empty()).then_some(description),
                    reset,
                    document: if reset { None } else { Some(from_json(&document)?) },
                })
            })
            .collect()
    }

    fn seal_secrets(&self, id: &str, secrets: &SystemSecrets) -> Result<Vec<u8>, Error> {
        self.secrets
            .seal_secrets(id, secrets)
            .map_err(|e| Error::Corrupt(e.to_string()))
    }

    fn decode(&self, r: RawSystem) -> Result<System, Error> {
        let names: BTreeSet<String> = match &r.secret_names {
            Some(names) => from_json(names)?,
            None => return Err(Error::Corrupt(format!("system {} has no secret names", r.id))),
        };
        let secrets = SystemSecrets::stored(&r.id, names, r.secrets);
        Ok(System {
            spec: SystemSpec {
                name: r.name,
                connector: r.connector,
                connector_version: r.connector_version,
                role: Role::parse(&r.role),
                properties: from_json(&r.properties)?,
                secrets,
                sources: from_json(&r.sources)?,
                transformation: r.transformation.as_deref().map(from_json).transpose()?,
            },
            id: r.id,
            transformation_version: r.transformation_version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            enabled: r.enabled,
            health: r.health,
        })
    }
}

/// Refuses sources that are gone (deleted since the definition was validated) or are no source systems.
fn check_sources(tx: &rusqlite::Transaction<'_>, sources: &[String]) -> Result<(), Error> {
    for source in sources {
        let role: Option<String> = tx
            .query_row("SELECT role FROM systems WHERE id = ?1", params![source], |r| r.get(0))
            .optional()?;
        if role.as_deref() != Some("source") {
            return Err(Error::Conflict(format!(
                "source system {source} does not exist (any more)"
            )));
        }
    }
    Ok(())
}

const SELECT: &str =
    "SELECT s.id, s.name, s.connector, s.connector_version, s.role, s.properties, s.secrets, s.sources,
    s.created_at, s.updated_at, CASE WHEN t.reset = 1 THEN NULL ELSE t.document END,
    CASE WHEN t.reset = 1 THEN NULL ELSE t.version END, s.secret_names, s.enabled,
    h.quarantined_since, h.quarantine_reason, h.quarantine_message, h.next_probe_at, h.probes,
    h.failed_runs, h.test_ok, h.test_message, h.test_at
    FROM systems s LEFT JOIN transformations t
      ON t.system_id = s.id AND t.version = (SELECT MAX(version) FROM transformations WHERE system_id = s.id)
    LEFT JOIN system_health h ON h.system_id = s.id";

struct RawSystem {
    id: String,
    name: String,
    connector: String,
    connector_version: Option<String>,
    role: String,
    properties: String,
    secrets: Vec<u8>,
    sources: String,
    created_at: String,
    updated_at: String,
    transformation: Option<String>,
    transformation_version: Option<i64>,
    secret_names: Option<String>,
    enabled: bool,
    health: Health,
}

fn raw_system(r: &Row<'_>) -> rusqlite::Result<RawSystem> {
    Ok(RawSystem {
        id: r.get(0)?,
        name: r.get(1)?,
        connector: r.get(2)?,
        connector_version: r.get(3)?,
        role: r.get(4)?,
        properties: r.get(5)?,
        secrets: r.get(6)?,
        sources: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        transformation: r.get(10)?,
        transformation_version: r.get(11)?,
        secret_names: r.get(12)?,
        enabled: r.get(13)?,
        health: Health {
            quarantine: match r.get::<_, Option<String>>(14)? {
                Some(_) => Some(quarantine_at(r, 14)?),
                None => None,
            },
            failed_runs: r.get::<_, Option<i64>>(19)?.unwrap_or(0),
            last_test: match (r.get::<_, Option<bool>>(20)?, r.get::<_, Option<String>>(22)?) {
                (Some(ok), Some(at)) => Some(ConnectionTest {
                    ok,
                    message: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
                    at,
                }),
                _ => None,
            },
        },
    })
}

fn secret_names(secrets: &SystemSecrets) -> Result<String, Error> {
    to_json(&secrets.names().collect::<Vec<_>>())
}

/// Fills in the names of systems stored before they were kept beside the sealed values (migration 5).
pub(super) fn name_sealed_secrets(conn: &rusqlite::Connection, secret_box: &SecretBox) -> Result<(), Error> {
    let mut stmt = conn.prepare("SELECT id, secrets FROM systems WHERE secret_names IS NULL")?;
    let unnamed: Vec<(String, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, sealed) in unnamed {
        let plain = secret_box
            .open_sealed(&id, &sealed)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        let values: BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|e| Error::Corrupt(e.to_string()))?;
        conn.execute(
            "UPDATE systems SET secret_names = ?2 WHERE id = ?1",
            params![id, to_json(&values.keys().collect::<Vec<_>>())?],
        )?;
    }
    Ok(())
}

/// A new transformation version: `doc`, or a reset to the connector's default when `None`.
fn insert_transformation(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    doc: Option<&serde_json::Value>,
    note: &VersionNote,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO transformations (system_id, version, document, description, created_at, author, reset)
         VALUES (?1, COALESCE((SELECT MAX(version) FROM transformations WHERE system_id = ?1), 0) + 1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            doc.map(|d| d.to_string()).unwrap_or_else(|| "null".into()),
            note.description.as_deref().unwrap_or(""),
            now(),
            note.author,
            doc.is_none()
        ],
    )?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> SystemSpec {
        SystemSpec {
            name: name.into(),
            connector: "scim".into(),
            connector_version: None,
            role: Role::Target,
            properties: [("URL".to_string(), "http://x".to_string())].into(),
            secrets: SystemSecrets::entered([("Password".to_string(), "s3cret-value".to_string())]),
            sources: vec![],
            transformation: Some(serde_json::json!({"user": {"mappings": []}})),
        }
    }

    #[test]
    fn crud_with_sealed_secrets_and_versions() {
        let s = crate::test_store();
        let created = s.create_system(spec("Target A"), &VersionNote::default()).unwrap();
        assert!(!format!("{created:?}").contains("s3cret-value"));
        assert_eq!(
            s.secrets.open_secrets(&created.spec.secrets).unwrap()["Password"].expose(),
            "s3cret-value"
        );
        assert_eq!(created.transformation_version, Some(1));
        assert!(matches!(
            s.create_system(spec("target a"), &VersionNote::default()),
            Err(Error::Conflict(_))
        ));
        let mut changed = spec("Target A");
        changed.transformation =
            Some(serde_json::json!({"user": {"mappings": [{"constant": 1, "targetPath": "$.x"}]}}));
        let replaced = s.replace_system(&created.id, changed, &VersionNote::default()).unwrap();
        assert_eq!(replaced.transformation_version, Some(2));
        assert_eq!(s.list_systems().unwrap().len(), 1);
        let raw: Vec<u8> = s
            .conn()
            .query_row("SELECT secrets FROM systems", [], |r| r.get(0))
            .unwrap();
        assert!(!raw.windows(12).any(|w| w == b"s3cret-value"));
        // A database from before secret names were stored: the names are filled in from the sealed values.
        s.conn().execute("UPDATE systems SET secret_names = NULL", []).unwrap();
        assert!(matches!(s.get_system(&created.id), Err(Error::Corrupt(_))));
        name_sealed_secrets(&s.conn(), &s.secrets).unwrap();
        let named = s.get_system(&created.id).unwrap().unwrap();
        assert_eq!(named.spec.secrets.names().collect::<Vec<_>>(), ["Password"]);
        s.delete_system(&created.id).unwrap();
        assert!(s.get_system(&created.id).unwrap().is_none());
        assert!(matches!(s.delete_system(&created.id), Err(Error::NotFound(_))));
    }
}
