//! Systems on PostgreSQL: as on SQLite, one row per system with the sealed secrets as one value and their
//! names apart, and every transformation version in its own table. Every write announces itself (`NOTIFY`)
//! in its transaction.

use std::collections::BTreeSet;

use provisio_core::secrets::SystemSecrets;
use provisio_core::store::StoreError;
use provisio_core::store::systems::{
    ConnectionTest, Health, Quarantine, Role, System, SystemSpec, SystemStore, TransformationVersion, VersionNote,
};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use crate::{Error, PostgresStore, SYSTEMS_CHANGED, from_json, is_unique_violation, now, to_json};

const SELECT: &str =
    "SELECT s.id, s.name, s.connector, s.connector_version, s.role, s.properties, s.secrets, s.sources,
    s.created_at, s.updated_at, CASE WHEN t.reset THEN NULL ELSE t.document END,
    CASE WHEN t.reset THEN NULL ELSE t.version END, s.secret_names, s.enabled,
    h.quarantined_since, h.quarantine_reason, h.quarantine_message, h.next_probe_at, h.probes,
    h.failed_runs, h.test_ok, h.test_message, h.test_at
    FROM systems s LEFT JOIN transformations t
      ON t.system_id = s.id AND t.version = (SELECT MAX(version) FROM transformations WHERE system_id = s.id)
    LEFT JOIN system_health h ON h.system_id = s.id";

/// The columns of a quarantine, in the order [`quarantine_at`] reads them.
const QUARANTINE: &str = "quarantined_since, quarantine_reason, quarantine_message, next_probe_at, probes";

#[async_trait::async_trait]
impl SystemStore for PostgresStore {
    fn generation(&self) -> u64 {
        self.systems_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn create_noted(&self, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError> {
        let id = new_id();
        let sealed = self.seal(&id, &spec.secrets)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let at = now();
        let inserted = sqlx::query(
            "INSERT INTO systems (id, name, connector, connector_version, role, properties, secrets, secret_names, sources, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(&id)
        .bind(&spec.name)
        .bind(&spec.connector)
        .bind(&spec.connector_version)
        .bind(spec.role.as_str())
        .bind(to_json(&spec.properties)?)
        .bind(sealed)
        .bind(secret_names(&spec.secrets)?)
        .bind(to_json(&spec.sources)?)
        .bind(&at)
        .execute(&mut *tx)
        .await;
        conflict_on_name(inserted, &spec.name)?;
        check_sources(&mut tx, &spec.sources).await?;
        if let Some(doc) = &spec.transformation {
            insert_transformation(&mut tx, &id, Some(doc), note).await?;
        }
        announce(&mut tx).await?;
        tx.commit().await.map_err(Error::from)?;
        self.bump_systems();
        self.get(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))
    }

    async fn replace_noted(&self, id: &str, spec: SystemSpec, note: &VersionNote) -> Result<System, StoreError> {
        let current = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))?;
        let sealed = self.seal(id, &spec.secrets)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let updated = sqlx::query(
            "UPDATE systems SET name = $2, connector = $3, connector_version = $4, role = $5, properties = $6,
             secrets = $7, sources = $8, updated_at = $9, secret_names = $10 WHERE id = $1",
        )
        .bind(id)
        .bind(&spec.name)
        .bind(&spec.connector)
        .bind(&spec.connector_version)
        .bind(spec.role.as_str())
        .bind(to_json(&spec.properties)?)
        .bind(sealed)
        .bind(to_json(&spec.sources)?)
        .bind(now())
        .bind(secret_names(&spec.secrets)?)
        .execute(&mut *tx)
        .await;
        conflict_on_name(updated, &spec.name)?;
        check_sources(&mut tx, &spec.sources).await?;
        if spec.transformation != current.spec.transformation {
            insert_transformation(&mut tx, id, spec.transformation.as_ref(), note).await?;
        }
        announce(&mut tx).await?;
        tx.commit().await.map_err(Error::from)?;
        self.bump_systems();
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        // The row lock orders this delete with a create or replace of a target naming it as a source (they
        // lock their sources FOR SHARE): whichever comes second sees what the first committed.
        let found = sqlx::query("SELECT 1 FROM systems WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("no system with id {id}")));
        }
        let rows = sqlx::query("SELECT name, sources FROM systems WHERE id <> $1 ORDER BY lower(name)")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::from)?;
        let mut receivers = Vec::new();
        for row in &rows {
            let sources: Vec<String> = from_json(&row.try_get::<String, _>(1).map_err(Error::from)?)?;
            if sources.iter().any(|s| s == id) {
                receivers.push(row.try_get::<String, _>(0).map_err(Error::from)?);
            }
        }
        if !receivers.is_empty() {
            return Err(StoreError::Conflict(provisio_core::store::systems::still_a_source(
                &receivers,
            )));
        }
        let running: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE source_id = $1 AND status IN ('Queued', 'Running', 'Running with Error') LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?;
        if let Some(job) = running {
            return Err(StoreError::Conflict(provisio_core::store::systems::run_under_way(&job)));
        }
        for sql in [
            "DELETE FROM held_deletes WHERE target_id = $1",
            "DELETE FROM target_limits WHERE target = $1",
            "DELETE FROM systems WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(Error::from)?;
        }
        announce(&mut tx).await?;
        tx.commit().await.map_err(Error::from)?;
        self.bump_systems();
        Ok(())
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<System, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let n = sqlx::query("UPDATE systems SET enabled = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(enabled)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?
            .rows_affected();
        announce(&mut tx).await?;
        tx.commit().await.map_err(Error::from)?;
        self.bump_systems();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no system with id {id}")));
        }
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))
    }

    async fn get(&self, id: &str) -> Result<Option<System>, StoreError> {
        let row = sqlx::query(&format!("{SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(row.map(|r| decode(&r)).transpose()?)
    }

    async fn list(&self) -> Result<Vec<System>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY lower(s.name)"))
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
    }

    async fn transformation_versions(&self, id: &str) -> Result<Vec<TransformationVersion>, StoreError> {
        self.versions(id, None).await
    }

    async fn record_connection_test(&self, id: &str, test: &ConnectionTest) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO system_health (system_id, test_ok, test_message, test_at)
             SELECT id, $2, $3, $4 FROM systems WHERE id = $1
             ON CONFLICT (system_id) DO UPDATE SET test_ok = excluded.test_ok, test_message = excluded.test_message,
                test_at = excluded.test_at",
        )
        .bind(id)
        .bind(test.ok)
        .bind(&test.message)
        .bind(&test.at)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn quarantine(&self, id: &str, reason: &str, message: &str, next_probe_at: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let found = sqlx::query("SELECT 1 FROM systems WHERE id = $1 FOR SHARE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("no system with id {id}")));
        }
        let n = sqlx::query(
            "INSERT INTO system_health (system_id, quarantined_since, quarantine_reason, quarantine_message, next_probe_at, probes, failed_runs)
             VALUES ($1, $2, $3, $4, $5, 0, 0)
             ON CONFLICT (system_id) DO UPDATE SET quarantined_since = excluded.quarantined_since,
                quarantine_reason = excluded.quarantine_reason, quarantine_message = excluded.quarantine_message,
                next_probe_at = excluded.next_probe_at, probes = 0, failed_runs = 0
             WHERE system_health.quarantined_since IS NULL",
        )
        .bind(id)
        .bind(now())
        .bind(reason)
        .bind(message)
        .bind(next_probe_at)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?
        .rows_affected();
        if n > 0 {
            announce(&mut tx).await?;
        }
        tx.commit().await.map_err(Error::from)?;
        if n > 0 {
            self.bump_systems();
        }
        Ok(n > 0)
    }

    async fn release(&self, id: &str) -> Result<Option<Quarantine>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let row = sqlx::query(&format!(
            "SELECT {QUARANTINE} FROM system_health WHERE system_id = $1 AND quarantined_since IS NOT NULL FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?;
        let current = row.map(|r| quarantine_at(&r, 0)).transpose()?;
        if current.is_some() {
            sqlx::query(
                "UPDATE system_health SET quarantined_since = NULL, quarantine_reason = NULL, quarantine_message = NULL,
                    next_probe_at = NULL, probes = 0, failed_runs = 0 WHERE system_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
            announce(&mut tx).await?;
        }
        tx.commit().await.map_err(Error::from)?;
        if current.is_some() {
            self.bump_systems();
        }
        Ok(current)
    }

    async fn count_run(&self, id: &str, failed: bool) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "INSERT INTO system_health (system_id, failed_runs) SELECT id, CASE WHEN $2 THEN 1 ELSE 0 END FROM systems WHERE id = $1
             ON CONFLICT (system_id) DO UPDATE SET
                failed_runs = CASE WHEN $2 THEN system_health.failed_runs + 1 ELSE 0 END
             RETURNING failed_runs",
        )
        .bind(id)
        .bind(failed)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        n.ok_or_else(|| StoreError::NotFound(format!("no system with id {id}")))
    }

    async fn claim_probe(&self, id: &str, now: &str, next_probe_at: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE system_health SET next_probe_at = $3, probes = probes + 1
             WHERE system_id = $1 AND quarantined_since IS NOT NULL AND next_probe_at <= $2",
        )
        .bind(id)
        .bind(now)
        .bind(next_probe_at)
        .execute(&self.pool)
        .await
        .map_err(Error::from)?
        .rows_affected()
            > 0)
    }

    async fn quarantined(&self) -> Result<Vec<(String, Quarantine)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {QUARANTINE}, system_id FROM system_health WHERE quarantined_since IS NOT NULL
             ORDER BY quarantined_since, system_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(5)?, quarantine_at(r, 0)?)))
            .collect::<Result<_, Error>>()?)
    }

    async fn transformation_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TransformationVersion>, StoreError> {
        Ok(self.versions(id, Some(version)).await?.pop())
    }
}

impl PostgresStore {
    /// A system's transformation versions, newest first (or the one numbered `only`).
    async fn versions(&self, id: &str, only: Option<i64>) -> Result<Vec<TransformationVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, author, created_at, description, reset, document FROM transformations
             WHERE system_id = $1 AND ($2::BIGINT IS NULL OR version = $2) ORDER BY version DESC",
        )
        .bind(id)
        .bind(only)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let decode = |r: &PgRow| -> Result<TransformationVersion, Error> {
            let description: String = r.try_get(3)?;
            let reset: bool = r.try_get(4)?;
            Ok(TransformationVersion {
                version: r.try_get(0)?,
                author: r.try_get(1)?,
                created_at: r.try_get(2)?,
                description: (!description.is_empty()).then_some(description),
                reset,
                document: if reset {
                    None
                } else {
                    Some(from_json(&r.try_get::<String, _>(5)?)?)
                },
            })
        };
        Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
    }

    fn seal(&self, id: &str, secrets: &SystemSecrets) -> Result<Vec<u8>, Error> {
        self.secrets
            .seal_secrets(id, secrets)
            .map_err(|e| Error::Corrupt(e.to_string()))
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn conflict_on_name(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>, name: &str) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(Error::Conflict(format!("a system named {name:?} already exists"))),
        Err(e) => Err(e.into()),
    }
}

/// Refuses sources that are gone (deleted since the definition was validated) or are no source systems;
/// locks them FOR SHARE until the transaction ends, so that none is deleted meanwhile.
async fn check_sources(tx: &mut Transaction<'_, Postgres>, sources: &[String]) -> Result<(), Error> {
    for source in sources {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM systems WHERE id = $1 FOR SHARE")
            .bind(source)
            .fetch_optional(&mut **tx)
            .await?;
        if role.as_deref() != Some("source") {
            return Err(Error::Conflict(format!(
                "source system {source} does not exist (any more)"
            )));
        }
    }
    Ok(())
}

/// Tells every replica that systems changed, when the transaction commits.
async fn announce(tx: &mut Transaction<'_, Postgres>) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(SYSTEMS_CHANGED)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A new transformation version: `doc`, or a reset to the connector's default when `None`.
async fn insert_transformation(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    doc: Option<&serde_json::Value>,
    note: &VersionNote,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO transformations (system_id, version, document, description, created_at, author, reset)
         VALUES ($1, COALESCE((SELECT MAX(version) FROM transformations WHERE system_id = $1), 0) + 1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(doc.map(|d| d.to_string()).unwrap_or_else(|| "null".into()))
    .bind(note.description.as_deref().unwrap_or(""))
    .bind(now())
    .bind(&note.author)
    .bind(doc.is_none())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn secret_names(secrets: &SystemSecrets) -> Result<String, Error> {
    to_json(&secrets.names().collect::<Vec<_>>())
}

fn decode(r: &PgRow) -> Result<System, Error> {
    let id: String = r.try_get(0)?;
    let names: BTreeSet<String> = from_json(&r.try_get::<String, _>(12)?)?;
    let secrets = SystemSecrets::stored(&id, names, r.try_get(6)?);
    let transformation: Option<String> = r.try_get(10)?;
    Ok(System {
        spec: SystemSpec {
            name: r.try_get(1)?,
            connector: r.try_get(2)?,
            connector_version: r.try_get(3)?,
            role: Role::parse(&r.try_get::<String, _>(4)?),
            properties: from_json(&r.try_get::<String, _>(5)?)?,
            secrets,
            sources: from_json(&r.try_get::<String, _>(7)?)?,
            transformation: transformation.as_deref().map(from_json).transpose()?,
        },
        id,
        transformation_version: r.try_get(11)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        enabled: r.try_get(13)?,
        health: Health {
            quarantine: match r.try_get::<Option<String>, _>(14)? {
                Some(_) => Some(quarantine_at(r, 14)?),
                None => None,
            },
            failed_runs: r.try_get::<Option<i64>, _>(19)?.unwrap_or(0),
            last_test: match (r.try_get::<Option<bool>, _>(20)?, r.try_get::<Option<String>, _>(22)?) {
                (Some(ok), Some(at)) => Some(ConnectionTest {
                    ok,
                    message: r.try_get::<Option<String>, _>(21)?.unwrap_or_default(),
                    at,
                }),
                _ => None,
            },
        },
    })
}

/// A quarantine from the [`QUARANTINE`] columns starting at `at`.
fn quarantine_at(r: &PgRow, at: usize) -> Result<Quarantine, Error> {
    Ok(Quarantine {
        since: r.try_get(at)?,
        reason: r.try_get::<Option<String>, _>(at + 1)?.unwrap_or_default(),
        message: r.try_get::<Option<String>, _>(at + 2)?.unwrap_or_default(),
        next_probe_at: r.try_get::<Option<String>, _>(at + 3)?.unwrap_or_default(),
        probes: r.try_get(at + 4)?,
    })
}
