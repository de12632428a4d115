//! Schema migrations, applied in order by one replica at a time (a transaction-scoped advisory lock) and
//! recorded in `provisio_schema`. Released migrations are never edited; a change is a new entry. Instants are
//! RFC 3339 text in the "C" collation, so that they sort as the SQLite backend's do.

use sqlx::{PgPool, Row};

use crate::Error;

/// The advisory lock key of migrations ("provisio" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x70726f7669736f;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite backend's migrations 1 to 5 hold, in PostgreSQL's types.
    r#"
    CREATE TABLE principals (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('admin', 'technical')),
        password_hash TEXT NOT NULL,
        permissions   TEXT NOT NULL,
        created_at    TEXT COLLATE "C" NOT NULL
    );
    CREATE UNIQUE INDEX principals_by_name ON principals (lower(name));
    CREATE TABLE systems (
        id                TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        connector         TEXT NOT NULL,
        connector_version TEXT,
        role              TEXT NOT NULL CHECK (role IN ('source', 'target', 'proxy')),
        properties        TEXT NOT NULL,
        secrets           BYTEA NOT NULL,
        secret_names      TEXT NOT NULL,
        sources           TEXT NOT NULL,
        created_at        TEXT COLLATE "C" NOT NULL,
        updated_at        TEXT COLLATE "C" NOT NULL
    );
    CREATE UNIQUE INDEX systems_by_name ON systems (lower(name));
    CREATE TABLE transformations (
        system_id   TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        version     BIGINT NOT NULL,
        document    TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (system_id, version)
    );
    CREATE TABLE plugins (
        digest     TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        version    TEXT NOT NULL,
        contract   TEXT NOT NULL,
        size       BIGINT NOT NULL,
        bundled    BOOLEAN NOT NULL,
        added_at   TEXT COLLATE "C" NOT NULL,
        UNIQUE (name, version)
    );
    CREATE TABLE links (
        source_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        target_id      TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind           TEXT NOT NULL,
        source_entity  TEXT NOT NULL,
        target_entity  TEXT,
        digest         TEXT,
        content        TEXT,
        existed_before BOOLEAN NOT NULL DEFAULT FALSE,
        creating       BOOLEAN NOT NULL DEFAULT FALSE,
        updated_at     TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (source_id, target_id, kind, source_entity)
    );
    CREATE INDEX links_recent_writes ON links (target_id, kind, target_entity, updated_at);
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        source_id   TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        type        TEXT NOT NULL,
        read_mode   TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        started_by  TEXT NOT NULL,
        status      TEXT NOT NULL,
        summary     TEXT NOT NULL,
        started_at  TEXT COLLATE "C" NOT NULL,
        ended_at    TEXT COLLATE "C"
    );
    CREATE INDEX jobs_by_source ON jobs (source_id, started_at);
    CREATE TABLE job_entities (
        job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq           BIGINT NOT NULL,
        at            TEXT COLLATE "C" NOT NULL,
        target_id     TEXT,
        kind          TEXT NOT NULL,
        source_entity TEXT,
        target_entity TEXT,
        operation     TEXT NOT NULL,
        outcome       TEXT NOT NULL,
        reason        TEXT,
        changes       TEXT,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE held_deletes (
        job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        target_id     TEXT NOT NULL,
        kind          TEXT NOT NULL,
        source_entity TEXT NOT NULL,
        target_entity TEXT NOT NULL,
        decision      TEXT,
        PRIMARY KEY (job_id, target_id, kind, source_entity)
    );
    CREATE TABLE source_state (
        source_id        TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        user_watermark   TEXT,
        group_watermark  TEXT,
        scheduled_deltas BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE schedules (
        source_id  TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        job_type   TEXT NOT NULL,
        every_secs BIGINT,
        cron       TEXT,
        enabled    BOOLEAN NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE realtime_events (
        seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source_id       TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind            TEXT NOT NULL,
        entity_id       TEXT NOT NULL,
        operation       TEXT NOT NULL,
        body            TEXT,
        received_at     TEXT COLLATE "C" NOT NULL,
        received_by     TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT COLLATE "C",
        results         TEXT,
        finished_at     TEXT COLLATE "C"
    );
    CREATE INDEX realtime_by_state ON realtime_events (state, seq);
    CREATE INDEX realtime_by_entity ON realtime_events (source_id, kind, entity_id, seq);
    CREATE TABLE realtime_entities (
        source_id  TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        body       TEXT NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (source_id, kind, entity_id)
    );
    -- A value sealed with the master key at the first start: a replica with another key cannot open it.
    CREATE TABLE key_check (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        sealed BYTEA NOT NULL
    );
    "#,
    // 2: bearer tokens by their SHA-256, valid on every replica and across restarts; they go with their
    // principal.
    r#"
    CREATE TABLE tokens (
        hash         TEXT PRIMARY KEY,
        principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
        expires_at   TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX tokens_by_expiry ON tokens (expires_at);
    "#,
    // 3: the schedule slot last fired, so that the replicas fire a schedule once per period.
    r#"
    ALTER TABLE schedules ADD COLUMN last_fired_at TEXT COLLATE "C";
    "#,
    // 4: a run is claimed by one replica with a lease (by the database's clock); `attempt` fences the writes
    // of a replica whose run was taken over. Real-time events are claimed the same way.
    r#"
    ALTER TABLE jobs ADD COLUMN node TEXT;
    ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN lease_until TIMESTAMPTZ;
    ALTER TABLE jobs ADD COLUMN stop_requested BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE INDEX jobs_unfinished ON jobs (lease_until) WHERE status IN ('Queued', 'Running', 'Running with Error');
    -- The real-time outbox is consumed by every replica: an event is worked by the one that claimed it.
    ALTER TABLE realtime_events ADD COLUMN claimed_by TEXT;
    ALTER TABLE realtime_events ADD COLUMN claimed_until TIMESTAMPTZ;
    "#,
    // 5: plugin components by digest and the versions admins selected, so that every replica loads what one
    // of them received.
    r#"
    CREATE TABLE plugin_components (
        digest TEXT PRIMARY KEY,
        bytes  BYTEA NOT NULL
    );
    CREATE TABLE plugin_selection (
        name    TEXT PRIMARY KEY,
        version TEXT NOT NULL
    );
    -- The replicas, by their last beat: each sends its share of a target's rate limit.
    CREATE TABLE nodes (
        name      TEXT PRIMARY KEY,
        last_seen TIMESTAMPTZ NOT NULL
    );
    "#,
    // 6: one running run per source across the replicas, and targets' rate schedules and pauses shared by
    // them. Runs that a replica started beside another's before this (the index needs one) wait again.
    r#"
    UPDATE jobs SET status = 'Queued' WHERE status IN ('Running', 'Running with Error') AND id NOT IN (
        SELECT DISTINCT ON (source_id) id FROM jobs WHERE status IN ('Running', 'Running with Error')
        ORDER BY source_id, started_at
    );
    CREATE UNIQUE INDEX jobs_one_running_per_source ON jobs (source_id)
        WHERE status IN ('Running', 'Running with Error');
    CREATE TABLE target_limits (
        target       TEXT PRIMARY KEY,
        tat          TIMESTAMPTZ NOT NULL,
        paused_until TIMESTAMPTZ
    );
    "#,
    // 7: links looked up by the target entity a write landed on (the loop guard) and the creates in flight,
    // by indexes that do not also fit a lookup by source entity: without statistics (a new database)
    // PostgreSQL answered `links.get` through the old index and read every link of the target. Analysed
    // sooner than by default, as these tables grow from empty.
    r#"
    DROP INDEX links_recent_writes;
    CREATE INDEX links_written_by_target_entity ON links (target_entity, target_id, kind, updated_at);
    CREATE INDEX links_creating ON links (target_id, kind, updated_at) WHERE creating;
    ALTER TABLE links SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
    ALTER TABLE realtime_events SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
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
    );
    CREATE INDEX rejected_deletes_by_source ON rejected_deletes (source_system, target_id, kind);
    "#,
    // Failed logins and login locks, counted per principal and per address on the database's clock.
    r#"
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at  TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures (key, at);
    CREATE INDEX login_failures_by_age ON login_failures (at);
    CREATE TABLE login_locks (
        key   TEXT PRIMARY KEY,
        until TIMESTAMPTZ NOT NULL
    );
    "#,
    // Systems can be disabled: skipped by runs, schedules and real-time events (issue 18).
    r#"
    ALTER TABLE systems ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
    "#,
    // Transformation history: each version's author, and resets to the connector's default as versions
    // (their document is `null`); the descriptions the store used to write itself go.
    r#"
    ALTER TABLE transformations ADD COLUMN author TEXT NOT NULL DEFAULT '';
    ALTER TABLE transformations ADD COLUMN reset BOOLEAN NOT NULL DEFAULT FALSE;
    UPDATE transformations SET description = '' WHERE description IN ('initial', 'created', 'replaced');
    "#,
    // A system's health for every replica: its quarantine (with the next probe, claimed by one replica by
    // an UPDATE … WHERE next_probe_at <= now), its consecutive failed runs, and its last Test Connection
    // (issues 18 and 19).
    r#"
    CREATE TABLE system_health (
        system_id          TEXT PRIMARY KEY REFERENCES systems(id) ON DELETE CASCADE,
        quarantined_since  TEXT COLLATE "C",
        quarantine_reason  TEXT,
        quarantine_message TEXT,
        next_probe_at      TEXT COLLATE "C",
        probes             BIGINT NOT NULL DEFAULT 0,
        failed_runs        BIGINT NOT NULL DEFAULT 0,
        test_ok            BOOLEAN,
        test_message       TEXT,
        test_at            TEXT COLLATE "C"
    );
    CREATE INDEX system_health_quarantined ON system_health (next_probe_at) WHERE quarantined_since IS NOT NULL;
    "#,
    // The audit log (issue 19), and indexes by age for the batched pruning of ended runs and events.
    r#"
    CREATE TABLE audit_log (
        id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at             TEXT COLLATE "C" NOT NULL,
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
        secret          BYTEA,
        backlog_minutes BIGINT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        created_at      TEXT COLLATE "C" NOT NULL,
        updated_at      TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE notification_deliveries (
        id              TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL REFERENCES notification_subscriptions(id) ON DELETE CASCADE,
        channel         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL,
        created_at      TEXT COLLATE "C" NOT NULL,
        next_attempt_at TEXT COLLATE "C",
        finished_at     TEXT COLLATE "C",
        claimed_by      TEXT,
        claim_until     TEXT COLLATE "C"
    );
    CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_attempt_at);
    CREATE INDEX notification_deliveries_by_subscription ON notification_deliveries (subscription_id, created_at);
    CREATE TABLE notification_attempts (
        delivery_id   TEXT NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
        number        BIGINT NOT NULL,
        at            TEXT COLLATE "C" NOT NULL,
        status        TEXT NOT NULL,
        response_code BIGINT,
        error         TEXT,
        PRIMARY KEY (delivery_id, number)
    );
    CREATE TABLE notification_windows (
        key        TEXT PRIMARY KEY,
        last_sent  TEXT COLLATE "C" NOT NULL,
        suppressed BIGINT NOT NULL DEFAULT 0
    );
    "#,
    // Finished notification deliveries are pruned by age (issue 19): an index on when they finished.
    r#"
    CREATE INDEX notification_deliveries_by_finish ON notification_deliveries (finished_at) WHERE finished_at IS NOT NULL;
    "#,
    // The claim of the next real-time events asks, for each candidate, whether an earlier event of its
    // entity is still pending: answered from the pending events alone, whatever the statistics say of how
    // many are pending (the entity's past events are not read).
    r#"
    CREATE INDEX realtime_pending_by_entity ON realtime_events (source_id, kind, entity_id, seq)
        WHERE state = 'pending';
    "#,
    // The memo digest of the native entity a link's content came from (issue 20, `provisioning::memo`).
    r#"
    ALTER TABLE links ADD COLUMN source_digest TEXT;
    "#,
];

/// Brings the schema up to date; refuses a schema newer than this Provisio knows.
pub(crate) async fn run(pool: &PgPool) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    // One replica at a time; released with the transaction.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS provisio_schema (version BIGINT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .execute(&mut *tx)
        .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM provisio_schema")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(Error::Corrupt(format!(
            "the database has schema version {current}, newer than this Provisio knows ({known}); upgrade Provisio"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO provisio_schema (version) VALUES ($1)")
            .bind(index as i64 + 1)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version recorded in the database.
pub(crate) async fn version(pool: &PgPool) -> Result<i64, Error> {
    Ok(sqlx::query("SELECT COALESCE(MAX(version), 0) FROM provisio_schema")
        .fetch_one(pool)
        .await?
        .try_get(0)?)
}
