//! Configured systems: sources, targets and proxies, with properties, secrets and transformations.
//!
//! Secret property values are stored as one sealed JSON object per system (see [`crate::secrets`]);
//! the plain `properties` column never holds a secret, `secret_names` names them. Reading a system opens
//! nothing: its [`SystemSecrets`] stay sealed until [`Store::open_secrets`]. Every saved transformation is a
//! new version.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now};
use crate::secrets::{Secret, SecretBox, SystemSecrets};

/// What a system is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Entities are read from it.
    Source,
    /// Entities are written to it.
    Target,
    /// Served as a SCIM service provider.
    Proxy,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
            Role::Proxy => "proxy",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "source" => Role::Source,
            "target" => Role::Target,
            _ => Role::Proxy,
        }
    }
}

/// A system as the admin defines it; properties already split into plain and secret.
#[derive(Clone, Debug)]
pub struct SystemSpec {
    /// Unique name.
    pub name: String,
    /// Connector type.
    pub connector: String,
    /// Pinned connector version, or `None` to follow the latest.
    pub connector_version: Option<String>,
    /// Role.
    pub role: Role,
    /// Non-secret properties.
    pub properties: BTreeMap<String, String>,
    /// Secret properties: sealed as read from the store, values entered in clear sealed on write.
    pub secrets: SystemSecrets,
    /// For targets: the source systems it receives from.
    pub sources: Vec<String>,
    /// The transformation document (validated by the caller), `None` for the connector default.
    pub transformation: Option<serde_json::Value>,
}

/// A stored system.
#[derive(Clone, Debug)]
pub struct System {
    /// Id.
    pub id: String,
    /// Definition (secrets still sealed).
    pub spec: SystemSpec,
    /// Version number of the current transformation, when one is stored.
    pub transformation_version: Option<i64>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl Store {
    /// Changes with every write of a system or its transformation (create, replace, delete).
    pub fn systems_generation(&self) -> u64 {
        self.systems_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_systems(&self) {
        self.systems_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The values of a system's secrets: the one way to their plaintext, for building a connection to it.
    pub fn open_secrets(&self, secrets: &SystemSecrets) -> Result<BTreeMap<String, Secret>, StoreError> {
        self.secrets
            .open_secrets(secrets)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Stores a new system and returns it.
    pub fn create_system(&self, spec: SystemSpec) -> Result<System, StoreError> {
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
            return Err(StoreError::Conflict(format!(
                "a system named {:?} already exists",
                spec.name
            )));
        }
        inserted?;
        if let Some(doc) = &spec.transformation {
            insert_transformation(&tx, &id, doc, "initial")?;
        }
        tx.commit()?;
        drop(conn);
        self.bump_systems();
        self.get_system(&id)?
            .ok_or_else(|| StoreError::NotFound(format!("system {id} vanished")))
    }

    /// Replaces a system's definition. A changed transformation becomes a new version.
    pub fn replace_system(&self, id: &str, spec: SystemSpec) -> Result<System, StoreError> {
        let current = self
            .get_system(id)?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))?;
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
            return Err(StoreError::Conflict(format!(
                "a system named {:?} already exists",
                spec.name
            )));
        }
        updated?;
        if spec.transformation != current.spec.transformation {
            match &spec.transformation {
                Some(doc) => insert_transformation(&tx, id, doc, "replaced")?,
                None => {
                    tx.execute("DELETE FROM transformations WHERE system_id = ?1", params![id])?;
                }
            }
        }
        tx.commit()?;
        drop(conn);
        self.bump_systems();
        self.get_system(id)?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))
    }

    /// Deletes a system and its transformation versions.
    pub fn delete_system(&self, id: &str) -> Result<(), StoreError> {
        let n = self.conn().execute("DELETE FROM systems WHERE id = ?1", params![id])?;
        self.bump_systems();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no system with id {id}")));
        }
        Ok(())
    }

    /// One system by id.
    pub fn get_system(&self, id: &str) -> Result<Option<System>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(&format!("{SELECT} WHERE s.id = ?1"), params![id], raw_system)
            .optional()?;
        drop(conn);
        row.map(|r| self.decode(r)).transpose()
    }

    /// All systems, by name.
    pub fn list_systems(&self) -> Result<Vec<System>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY s.name"))?;
        let raws: Vec<RawSystem> = stmt.query_map([], raw_system)?.collect::<Result<_, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(|r| self.decode(r)).collect()
    }

    /// Targets that receive from `source_id`.
    pub fn targets_of(&self, source_id: &str) -> Result<Vec<System>, StoreError> {
        Ok(self
            .list_systems()?
            .into_iter()
            .filter(|s| s.spec.sources.iter().any(|x| x == source_id))
            .collect())
    }

    fn seal_secrets(&self, id: &str, secrets: &SystemSecrets) -> Result<Vec<u8>, StoreError> {
        self.secrets
            .seal_secrets(id, secrets)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn decode(&self, r: RawSystem) -> Result<System, StoreError> {
        let names: BTreeSet<String> = match &r.secret_names {
            Some(names) => from_json(names)?,
            None => return Err(StoreError::Corrupt(format!("system {} has no secret names", r.id))),
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
        })
    }
}

const SELECT: &str =
    "SELECT s.id, s.name, s.connector, s.connector_version, s.role, s.properties, s.secrets, s.sources,
    s.created_at, s.updated_at, t.document, t.version, s.secret_names
    FROM systems s LEFT JOIN transformations t
      ON t.system_id = s.id AND t.version = (SELECT MAX(version) FROM transformations WHERE system_id = s.id)";

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
    })
}

fn secret_names(secrets: &SystemSecrets) -> Result<String, StoreError> {
    to_json(&secrets.names().collect::<Vec<_>>())
}

/// Fills in the names of systems stored before they were kept beside the sealed values (migration 5).
pub(super) fn name_sealed_secrets(conn: &rusqlite::Connection, secret_box: &SecretBox) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("SELECT id, secrets FROM systems WHERE secret_names IS NULL")?;
    let unnamed: Vec<(String, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, sealed) in unnamed {
        let plain = secret_box
            .open_sealed(&id, &sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let values: BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        conn.execute(
            "UPDATE systems SET secret_names = ?2 WHERE id = ?1",
            params![id, to_json(&values.keys().collect::<Vec<_>>())?],
        )?;
    }
    Ok(())
}

fn insert_transformation(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    doc: &serde_json::Value,
    description: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO transformations (system_id, version, document, description, created_at)
         VALUES (?1, COALESCE((SELECT MAX(version) FROM transformations WHERE system_id = ?1), 0) + 1, ?2, ?3, ?4)",
        params![id, doc.to_string(), description, now()],
    )?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
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
        let s = crate::store::test_store();
        let created = s.create_system(spec("Target A")).unwrap();
        assert!(!format!("{created:?}").contains("s3cret-value"));
        assert_eq!(
            s.open_secrets(&created.spec.secrets).unwrap()["Password"].expose(),
            "s3cret-value"
        );
        assert_eq!(created.transformation_version, Some(1));
        assert!(matches!(
            s.create_system(spec("target a")),
            Err(StoreError::Conflict(_))
        ));
        let mut changed = spec("Target A");
        changed.transformation =
            Some(serde_json::json!({"user": {"mappings": [{"constant": 1, "targetPath": "$.x"}]}}));
        let replaced = s.replace_system(&created.id, changed).unwrap();
        assert_eq!(replaced.transformation_version, Some(2));
        assert_eq!(s.list_systems().unwrap().len(), 1);
        let raw: Vec<u8> = s
            .conn()
            .query_row("SELECT secrets FROM systems", [], |r| r.get(0))
            .unwrap();
        assert!(!raw.windows(12).any(|w| w == b"s3cret-value"));
        // A database from before secret names were stored: the names are filled in from the sealed values.
        s.conn().execute("UPDATE systems SET secret_names = NULL", []).unwrap();
        assert!(matches!(s.get_system(&created.id), Err(StoreError::Corrupt(_))));
        name_sealed_secrets(&s.conn(), &s.secrets).unwrap();
        let named = s.get_system(&created.id).unwrap().unwrap();
        assert_eq!(named.spec.secrets.names().collect::<Vec<_>>(), ["Password"]);
        s.delete_system(&created.id).unwrap();
        assert!(s.get_system(&created.id).unwrap().is_none());
        assert!(matches!(s.delete_system(&created.id), Err(StoreError::NotFound(_))));
    }
}
