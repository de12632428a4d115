//! Schema migrations, applied in order and recorded in `PRAGMA user_version`. Released migrations are
//! never edited; a change is a new entry.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: principals, systems, transformation versions, plugins.
    r#"
    CREATE TABLE principals (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
        kind          TEXT NOT NULL CHECK (kind IN ('admin', 'technical')),
        password_hash TEXT NOT NULL,
        permissions   TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE systems (
        id                TEXT PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE COLLATE NOCASE,
        connector         TEXT NOT NULL,
        connector_version TEXT,
        role              TEXT NOT NULL CHECK (role IN ('source', 'target', 'proxy')),
        properties        TEXT NOT NULL,
        secrets           BLOB NOT NULL,
        sources           TEXT NOT NULL,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE TABLE transformations (
        system_id   TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        version     INTEGER NOT NULL,
        document    TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (system_id, version)
    );
    CREATE TABLE plugins (
        digest     TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        version    TEXT NOT NULL,
        contract   TEXT NOT NULL,
        size       INTEGER NOT NULL,
        bundled    INTEGER NOT NULL,
        added_at   TEXT NOT NULL,
        UNIQUE (name, version)
    );
    "#,
];

/// Brings the schema up to date, each migration in its own transaction.
pub fn run(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?
        .max(0) as usize;
    if current > MIGRATIONS.len() {
        // A newer Provisio wrote this database; running older code on it could corrupt it.
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {current}, newer than this Provisio knows ({}); upgrade Provisio",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
