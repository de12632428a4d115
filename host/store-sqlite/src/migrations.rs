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
    // 2: standard provisioning — link store, job runs, per-entity log, held deletes, delta state, schedules.
    r#"
    CREATE TABLE links (
        source_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        target_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind           TEXT NOT NULL,
        source_entity  TEXT NOT NULL,
        target_entity  TEXT,
        digest         TEXT,
        content        TEXT,
        existed_before INTEGER NOT NULL DEFAULT 0,
        creating       INTEGER NOT NULL DEFAULT 0,
        updated_at     TEXT NOT NULL,
        PRIMARY KEY (source_id, target_id, kind, source_entity)
    ) WITHOUT ROWID;
    CREATE INDEX links_by_target_entity ON links (target_id, kind, target_entity);
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        source_id   TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        read_mode   TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        started_by  TEXT NOT NULL,
        status      TEXT NOT NULL,
        summary     TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT
    );
    CREATE INDEX jobs_by_source ON jobs (source_id, started_at);
    CREATE TABLE job_entities (
        job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL,
        at            TEXT NOT NULL,
        target_id     TEXT,
        kind          TEXT NOT NULL,
        source_entity TEXT,
        target_entity TEXT,
        operation     TEXT NOT NULL,
        outcome       TEXT NOT NULL,
        reason        TEXT,
        changes       TEXT,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE held_deletes (
        job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        target_id     TEXT NOT NULL,
        kind          TEXT NOT NULL,
        source_entity TEXT NOT NULL,
        target_entity TEXT NOT NULL,
        decision      TEXT,
        PRIMARY KEY (job_id, target_id, kind, source_entity)
    ) WITHOUT ROWID;
    CREATE TABLE source_state (
        source_id        TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        user_watermark   TEXT,
        group_watermark  TEXT,
        scheduled_deltas INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE schedules (
        source_id  TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        job_type   TEXT NOT NULL,
        every_secs INTEGER,
        cron       TEXT,
        enabled    INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    "#,
    // 3: real-time provisioning — the durable outbox of pushed events (kept as the real-time log), and the
    // last full entity per pushed id (the base a PATCH applies to).
    r#"
    CREATE TABLE realtime_events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id       TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind            TEXT NOT NULL,
        entity_id       TEXT NOT NULL,
        operation       TEXT NOT NULL,
        body            TEXT,
        received_at     TEXT NOT NULL,
        received_by     TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        results         TEXT,
        finished_at     TEXT
    );
    CREATE INDEX realtime_by_state ON realtime_events (state, seq);
    CREATE INDEX realtime_by_entity ON realtime_events (source_id, kind, entity_id, seq);
    CREATE TABLE realtime_entities (
        source_id  TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        body       TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (source_id, kind, entity_id)
    ) WITHOUT ROWID;
    CREATE INDEX links_recent_writes ON links (target_id, kind, target_entity, updated_at);
    "#,
    // 4: links_recent_writes starts with the columns of links_by_target_entity, so it serves its lookups
    // too; one index fewer to update on every link write.
    r#"
    DROP INDEX links_by_target_entity;
    "#,
    // 5: the names of a system's secret properties beside their sealed values, so that reading a system
    // opens nothing (filled from the sealed values when the store opens, see `SqliteStore::open`).
    r#"
    ALTER TABLE systems ADD COLUMN secret_names TEXT;
    "#,
    // 6: bearer tokens by their SHA-256, so that they outlive a restart; they go with their principal.
    r#"
    CREATE TABLE tokens (
        hash         TEXT PRIMARY KEY,
        principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
        expires_at   TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tokens_by_expiry ON tokens (expires_at);
    "#,
    // 7: the schedule slot last fired, so that several processes fire a schedule once per period.
    r#"
    ALTER TABLE schedules ADD COLUMN last_fired_at TEXT;
    "#,
    // 8: a run's claim and a real-time event's (the same columns as on PostgreSQL; one process holds every
    // claim here), with their leases as Unix milliseconds.
    r#"
    ALTER TABLE jobs ADD COLUMN node TEXT;
    ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
    ALTER TABLE jobs ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE realtime_events ADD COLUMN claimed_by TEXT;
    ALTER TABLE realtime_events ADD COLUMN claimed_until INTEGER;
    "#,
    // 9: plugin components by digest and the selected versions (as on PostgreSQL).
    r#"
    CREATE TABLE plugin_components (
        digest TEXT PRIMARY KEY,
        bytes  BLOB NOT NULL
    );
    CREATE TABLE plugin_selection (
        name    TEXT PRIMARY KEY,
        version TEXT NOT NULL
    );
    CREATE TABLE nodes (
        name      TEXT PRIMARY KEY,
        last_seen INTEGER NOT NULL
    );
    "#,
    // 10: targets' rate schedules and pauses (as on PostgreSQL; times in Unix milliseconds).
    r#"
    CREATE TABLE target_limits (
        target       TEXT PRIMARY KEY,
        tat          INTEGER NOT NULL,
        paused_until INTEGER
    );
    "#,
    // Deletes an admin rejected, per target entity with the link's digest at the time: the next runs neither
    // hold nor delete the entity while its link stays so (issue 19).
    r#"
    CREATE TABLE rejected_deletes (
        target_id     TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind          TEXT NOT NULL,
        target_entity TEXT NOT NULL,
        source_system TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        source_entity TEXT NOT NULL,
        digest        TEXT,
        rejected_by   TEXT NOT NULL,
        rejected_at   TEXT NOT NULL,
        PRIMARY KEY (target_id, kind, target_entity)
    ) WITHOUT ROWID;
    CREATE INDEX rejected_deletes_by_source ON rejected_deletes (source_system, target_id, kind);
    "#,
    // Failed logins and login locks (times in Unix milliseconds), counted per principal and per address.
    r#"
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at  INTEGER NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures (key, at);
    CREATE INDEX login_failures_by_age ON login_failures (at);
    CREATE TABLE login_locks (
        key   TEXT PRIMARY KEY,
        until INTEGER NOT NULL
    );
    "#,
    // Systems can be disabled: skipped by runs, schedules and real-time events (issue 18).
    r#"
    ALTER TABLE systems ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
    "#,
    // Transformation history: each version's author, and resets to the connector's default as versions
    // (their document is `null`); the descriptions the store used to write itself go.
    r#"
    ALTER TABLE transformations ADD COLUMN author TEXT NOT NULL DEFAULT '';
    ALTER TABLE transformations ADD COLUMN reset INTEGER NOT NULL DEFAULT 0;
    UPDATE transformations SET description = '' WHERE description IN ('initial', 'created', 'replaced');
    "#,
    // A system's health for every replica: its quarantine (with the next probe, claimed by one replica by
    // an UPDATE … WHERE next_probe_at <= now), its consecutive failed runs, and its last Test Connection
    // (issues 18 and 19).
    r#"
    CREATE TABLE system_health (
        system_id          TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        quarantined_since  TEXT,
        quarantine_reason  TEXT,
        quarantine_message TEXT,
        next_probe_at      TEXT,
        probes             INTEGER NOT NULL DEFAULT 0,
        failed_runs        INTEGER NOT NULL DEFAULT 0,
        test_ok            INTEGER,
        test_message       TEXT,
        test_at            TEXT
    ) WITHOUT ROWID;
    CREATE INDEX system_health_quarantined ON system_health (next_probe_at) WHERE quarantined_since IS NOT NULL;
    "#,
    // The audit log (issue 19), and indexes by age for the batched pruning of ended runs and events.
    r#"
    CREATE TABLE audit_log (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        at             TEXT NOT NULL,
        principal      TEXT NOT NULL,
        principal_id   TEXT NOT NULL,
        principal_kind TEXT NOT NULL,
        address        TEXT,
        channel        TEXT NOT NULL,
        action         TEXT NOT NULL,
        object_type    TEXT NOT NULL,
        object_id      TEXT NOT NULL,
        object_name    TEXT NOT NULL,
        changes        TEXT NOT NULL
    );
    CREATE INDEX audit_by_age ON audit_log (at);
    CREATE INDEX audit_by_object ON audit_log (object_type, object_id, id);
    CREATE INDEX jobs_by_end ON jobs (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX realtime_by_finish ON realtime_events (finished_at) WHERE finished_at IS NOT NULL;
    "#,
    // Notifications (issue 19): subscriptions (the webhook secret sealed), the durable outbox of their
    // deliveries with every attempt, and the windows that collapse storms.
    r#"
    CREATE TABLE notification_subscriptions (
        id              TEXT PRIMARY KEY,
        system_id       TEXT REFERENCES systems(id) ON DELETE CASCADE,
        kinds           TEXT NOT NULL,
        channel         TEXT NOT NULL,
        target          TEXT NOT NULL,
        secret          BLOB,
        backlog_minutes INTEGER NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE TABLE notification_deliveries (
        id              TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL REFERENCES notification_subscriptions(id) ON DELETE CASCADE,
        channel         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        next_attempt_at TEXT,
        finished_at     TEXT,
        claimed_by      TEXT,
        claim_until     TEXT
    );
    CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_attempt_at);
    CREATE INDEX notification_deliveries_by_subscription ON notification_deliveries (subscription_id, created_at);
    CREATE TABLE notification_attempts (
        delivery_id   TEXT NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
        number        INTEGER NOT NULL,
        at            TEXT NOT NULL,
        status        TEXT NOT NULL,
        response_code INTEGER,
        error         TEXT,
        PRIMARY KEY (delivery_id, number)
    );
    CREATE TABLE notification_windows (
        key        TEXT PRIMARY KEY,
        last_sent  TEXT NOT NULL,
        suppressed INTEGER NOT NULL DEFAULT 0
    );
    "#,
    // Finished notification deliveries are pruned by age (issue 19): an index on when they finished.
    r#"
    CREATE INDEX notification_deliveries_by_finish ON notification_deliveries (finished_at) WHERE finished_at IS NOT NULL;
    "#,
    // The creates in flight into a target (the real-time loop guard asks before each event from a system
    // that is also a target) by an index of their own: `links_recent_writes` fits only their target and
    // kind, so the lookup read every link of the target (16 ms among 20,000 links, under 1 ms with this). The
    // term is spelt `creating = 1` as the query spells it, so that SQLite uses the partial index.
    r#"
    CREATE INDEX links_creating ON links (target_id, kind, updated_at) WHERE creating = 1;
    "#,
    // Links and the last full entity of pushed ids become rowid tables (issue 20). As WITHOUT ROWID tables
    // they were b-trees keyed by random entity ids whose rows grow from an intent to a written link with its
    // content (about 1 KB): every write split and moved neighbouring rows, and every secondary index entry
    // carried the whole four-column key. In rowid order a page's intents and writes land together; the
    // key is kept by a unique index. Measured: see docs/performance.md ("links as a rowid table"). Links
    // also gain the memo digest of the native entity (`source_digest`, see `provisioning::memo`).
    r#"
    CREATE TABLE links_by_rowid (
        source_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        target_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind           TEXT NOT NULL,
        source_entity  TEXT NOT NULL,
        target_entity  TEXT,
        digest         TEXT,
        content        TEXT,
        existed_before INTEGER NOT NULL DEFAULT 0,
        creating       INTEGER NOT NULL DEFAULT 0,
        updated_at     TEXT NOT NULL,
        source_digest  TEXT,
        UNIQUE (source_id, target_id, kind, source_entity)
    );
    INSERT INTO links_by_rowid (source_id, target_id, kind, source_entity, target_entity, digest, content,
                                existed_before, creating, updated_at)
        SELECT source_id, target_id, kind, source_entity, target_entity, digest, content, existed_before, creating,
               updated_at
        FROM links;
    DROP TABLE links;
    ALTER TABLE links_by_rowid RENAME TO links;
    CREATE INDEX links_recent_writes ON links (target_id, kind, target_entity, updated_at);
    CREATE INDEX links_creating ON links (target_id, kind, updated_at) WHERE creating = 1;
    CREATE TABLE realtime_entities_by_rowid (
        source_id  TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        body       TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (source_id, kind, entity_id)
    );
    INSERT INTO realtime_entities_by_rowid (source_id, kind, entity_id, body, updated_at)
        SELECT source_id, kind, entity_id, body, updated_at FROM realtime_entities;
    DROP TABLE realtime_entities;
    ALTER TABLE realtime_entities_by_rowid RENAME TO realtime_entities;
    "#,
    // An entity's pending events by an index of their own: the dispatcher's claim asks, for each candidate,
    // whether an earlier event of its entity is still pending; over `realtime_by_entity` that read every past
    // event of the entity (an id pushed a thousand times: a thousand rows per candidate per scan). The term is
    // spelt `state = 'pending'` as the queries spell it, so that SQLite uses the partial index.
    r#"
    CREATE INDEX realtime_pending_by_entity ON realtime_events (source_id, kind, entity_id, seq)
        WHERE state = 'pending';
    "#,
];

/// The schema version this Provisio knows.
pub fn known() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the schema up to date, each migration in its own transaction.
pub fn run(conn: &mut Connection) -> rusqlite::Result<()> {
    run_until(conn, MIGRATIONS.len())
}

/// Applies the migrations up to schema version `last` (a test starts from an older schema this way).
fn run_until(conn: &mut Connection, last: usize) -> rusqlite::Result<()> {
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
    for (index, sql) in MIGRATIONS.iter().enumerate().take(last).skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::{run, run_until};

    /// The migration that made links and pushed entities rowid tables.
    const ROWID_TABLES: usize = 20;

    /// Links and pushed entities written under the WITHOUT ROWID schema survive the move to rowid tables,
    /// and the upserts that address them by their key still update in place.
    #[test]
    fn links_and_pushed_entities_keep_their_rows_as_rowid_tables() {
        let mut conn = Connection::open_in_memory().expect("db");
        conn.pragma_update(None, "foreign_keys", "ON").expect("fk");
        run_until(&mut conn, ROWID_TABLES - 1).expect("the schema before");
        for id in ["src", "tgt"] {
            conn.execute(
                "INSERT INTO systems (id, name, connector, role, properties, secrets, sources, created_at, updated_at)
                 VALUES (?1, ?1, 'x', 'source', '{}', x'', '[]', 'now', 'now')",
                params![id],
            )
            .expect("system");
        }
        conn.execute(
            "INSERT INTO links (source_id, target_id, kind, source_entity, target_entity, digest, content,
                                existed_before, creating, updated_at)
             VALUES ('src', 'tgt', 'user', 'u1', 't1', 'd1', '{\"userName\":\"ann\"}', 1, 0, 'then')",
            [],
        )
        .expect("link");
        conn.execute(
            "INSERT INTO realtime_entities (source_id, kind, entity_id, body, updated_at)
             VALUES ('src', 'user', 'u1', '{}', 'then')",
            [],
        )
        .expect("pushed entity");
        run(&mut conn).expect("migrate");

        let link: (String, String, String, bool) = conn
            .query_row(
                "SELECT target_entity, digest, content, existed_before FROM links
                 WHERE source_id = 'src' AND target_id = 'tgt' AND kind = 'user' AND source_entity = 'u1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("the link is kept");
        assert_eq!(link, ("t1".into(), "d1".into(), r#"{"userName":"ann"}"#.into(), true));
        conn.execute(
            "INSERT INTO links (source_id, target_id, kind, source_entity, creating, updated_at)
             VALUES ('src', 'tgt', 'user', 'u1', 1, 'now')
             ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET creating = 1, updated_at = 'now'",
            [],
        )
        .expect("upsert by key");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, 1, "the key is still unique");
        let body: String = conn
            .query_row("SELECT body FROM realtime_entities WHERE entity_id = 'u1'", [], |r| {
                r.get(0)
            })
            .expect("the pushed entity is kept");
        assert_eq!(body, "{}");
        // Both still go with their system.
        conn.execute("DELETE FROM systems WHERE id = 'src'", [])
            .expect("delete");
        let left: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM links) + (SELECT count(*) FROM realtime_entities)",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(left, 0);
    }
}
