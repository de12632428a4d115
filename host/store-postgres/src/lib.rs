//! Provisio's store on PostgreSQL (14 or newer): every aggregate's interface of [`provisio_core::store`] on
//! one database that several replicas share. [`PostgresStore::connect`] migrates the schema (one replica at
//! a time), refuses a schema newer than it knows, and refuses a master key other than the one the database
//! was first opened with — before it touches anything else.
//!
//! Writes to systems are announced with `NOTIFY` in their own transaction; every replica listens and moves
//! its systems generation, so the views it cached from them are rebuilt (a reconnect of the listener moves it
//! too, since notifications may have been missed meanwhile).

mod audit;
mod jobs;
mod limits;
mod links;
mod logins;
mod migrations;
mod notifications;
mod plugins;
mod principals;
mod realtime;
mod systems;
mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use provisio_core::secrets::SecretBox;
use provisio_core::store::{StoreError, Stores};
pub use sqlx::postgres::PgConnectOptions;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};

/// The channel on which writes to systems are announced.
const SYSTEMS_CHANGED: &str = "provisio_systems";

/// Connections in the pool.
const POOL_SIZE: u32 = 16;
/// Connections for the rate schedules (one short statement each).
const LIMITS_POOL_SIZE: u32 = 4;

/// Tables whose plans go wrong without statistics (a new database answered `links.get` by reading every link
/// of the target): the store analyses them itself once they changed by a good part since their last
/// analysis, so no plan waits for autovacuum, which visits a database once a minute by default.
const ANALYSED: &[&str] = &["links", "realtime_events"];

/// How often the store looks whether [`ANALYSED`] tables are due.
const ANALYSE_CHECK: Duration = Duration::from_secs(5);

/// Errors inside this crate: the driver's own, or one of the store's.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Fenced(String),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::Sql(e) => StoreError::Backend(e.to_string()),
            Error::Conflict(m) => StoreError::Conflict(m),
            Error::Corrupt(m) => StoreError::Corrupt(m),
            Error::Fenced(m) => StoreError::Fenced(m),
        }
    }
}

/// Whether a driver error is a broken uniqueness rule.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Connections for the targets' shared rate schedules only (`LimitStore`), which commit without waiting
    /// for the WAL flush (`synchronous_commit = off`): every request to a rate-limited target takes a turn
    /// there, and a schedule a crash loses costs one burst, not data.
    limits: PgPool,
    secrets: SecretBox,
    /// Moved by every write to a system here or, through `NOTIFY`, on another replica.
    systems_generation: Arc<AtomicU64>,
    /// The writer task that commits pushed events in groups.
    appender: realtime::Appender,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`), migrates, checks the master key, and starts listening for changes
    /// other replicas make.
    pub async fn connect(url: &str, secrets: SecretBox) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the database URL is not valid: {e}")))?;
        Self::connect_with(options, secrets).await
    }

    /// As [`PostgresStore::connect`], with connection options built in code (a schema of its own through
    /// `search_path`, say).
    pub async fn connect_with(options: PgConnectOptions, secrets: SecretBox) -> Result<Self, StoreError> {
        let limits = PgPoolOptions::new()
            .max_connections(LIMITS_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        migrations::run(&pool).await?;
        check_key(&pool, &secrets).await?;
        let store = PostgresStore {
            appender: realtime::Appender::start(pool.clone()),
            pool,
            limits,
            secrets,
            systems_generation: Arc::default(),
        };
        store.listen().await?;
        tokio::spawn(keep_statistics(
            store.pool.clone(),
            Arc::downgrade(&store.systems_generation),
        ));
        Ok(store)
    }

    /// Every aggregate's interface, backed by this store.
    pub fn stores(&self) -> Stores {
        Stores::new(Arc::new(self.clone()), self.secrets.clone()).shared_by_replicas()
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(migrations::version(&self.pool).await?)
    }

    fn bump_systems(&self) {
        self.systems_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Follows `NOTIFY` of system writes on a connection of its own, reconnecting when it drops.
    async fn listen(&self) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(Error::from)?;
        listener.listen(SYSTEMS_CHANGED).await.map_err(Error::from)?;
        let generation = Arc::downgrade(&self.systems_generation);
        tokio::spawn(async move {
            loop {
                // `try_recv` reconnects by itself and answers `None` after a reconnect.
                let received = listener.try_recv().await;
                let Some(generation) = generation.upgrade() else { return };
                match received {
                    Ok(_) => {
                        generation.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => {
                        generation.fetch_add(1, Ordering::AcqRel);
                        tracing::warn!(error = %e, "lost the PostgreSQL change feed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl provisio_core::store::Readiness for PostgresStore {
    async fn ready(&self) -> Result<(), StoreError> {
        let version = self.schema_version().await?;
        let known = migrations::MIGRATIONS.len() as i64;
        if version != known {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {version}, this Provisio knows {known}"
            )));
        }
        Ok(())
    }
}

/// Analyses the [`ANALYSED`] tables of this schema that changed by 1,000 rows and a fifth of their size since
/// their last analysis (by this store, another replica's, or autovacuum), until the store is dropped.
async fn keep_statistics(pool: PgPool, alive: std::sync::Weak<AtomicU64>) {
    loop {
        tokio::time::sleep(ANALYSE_CHECK).await;
        if alive.upgrade().is_none() {
            return;
        }
        let due: Vec<String> = match sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables
             WHERE schemaname = current_schema() AND relname = ANY($1)
               AND n_mod_since_analyze >= 1000 + 0.2 * n_live_tup",
        )
        .bind(ANALYSED)
        .fetch_all(&pool)
        .await
        {
            Ok(due) => due,
            // The database is away: the readiness check says so; statistics wait.
            Err(_) => continue,
        };
        for table in ANALYSED.iter().filter(|t| due.iter().any(|d| d == *t)) {
            // SKIP_LOCKED: a replica analysing it at the same moment does it for all.
            if let Err(e) = sqlx::query(&format!("ANALYZE (SKIP_LOCKED) {table}"))
                .execute(&pool)
                .await
            {
                tracing::debug!(table, error = %e, "cannot analyse a table");
            }
        }
    }
}

/// A value sealed with the master key at the first start; opening it on every later start proves the key is
/// the same. Another key stops the start before anything is written.
async fn check_key(pool: &PgPool, secrets: &SecretBox) -> Result<(), Error> {
    const CONTEXT: &str = "provisio key check";
    const PLAIN: &[u8] = b"provisio";
    let stored: Option<Vec<u8>> = sqlx::query("SELECT sealed FROM key_check WHERE id = 1")
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match stored {
        Some(sealed) => match secrets.open_sealed(CONTEXT, &sealed) {
            Ok(plain) if plain == PLAIN => Ok(()),
            _ => Err(Error::Corrupt(
                "the master key differs from the one this database was first opened with; start every replica \
                 with the same key (PROVISIO_MASTER_KEY or master.key)"
                    .into(),
            )),
        },
        None => {
            sqlx::query("INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                .bind(secrets.seal(CONTEXT, PLAIN))
                .execute(pool)
                .await?;
            // Another replica may have won the race with another key.
            Box::pin(check_key(pool, secrets)).await
        }
    }
}

/// Now, in the store's text form.
fn now() -> String {
    provisio_core::store::now()
}

/// JSON text of a value (the columns hold JSON as text, as the SQLite backend's do).
fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(e.to_string()))
}

/// The database the tests use: `PROVISIO_TEST_DATABASE_URL`, else the local server's `test` database.
pub fn test_database_url() -> String {
    std::env::var("PROVISIO_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Test schemas older than this are left over from runs that ended (tests drop nothing on the way out).
const STALE_TEST_SCHEMA: Duration = Duration::from_secs(6 * 3600);

/// A fresh, empty schema of the test database for one test (`{prefix}_{unix seconds}_{uuid}`), created on
/// `admin`'s connection. Test schemas older than six hours (and those of the old `{prefix}_{uuid}` form,
/// which carry no time) are dropped first, so the test database does not fill up run after run.
pub async fn test_schema(admin: &mut sqlx::PgConnection, prefix: &str) -> Result<String, sqlx::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let pattern = format!("{}\\_%", prefix.replace('_', "\\_"));
    let names: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(&pattern)
        .fetch_all(&mut *admin)
        .await?;
    for name in names {
        let created = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(secs, _)| secs.parse::<u64>().ok());
        if created.is_none_or(|secs| now.saturating_sub(secs) > STALE_TEST_SCHEMA.as_secs()) {
            // Another test may be sweeping the same schema: whoever loses finds it gone.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut *admin)
                .await;
        }
    }
    let schema = format!("{prefix}_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *admin)
        .await?;
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use provisio_core::secrets::SecretBox;
    use provisio_core::store::conformance;
    use sqlx::Connection;

    use super::*;

    /// A store in a schema of its own, created for the caller.
    async fn fresh(key: [u8; 32]) -> PostgresStore {
        let url = test_database_url();
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set PROVISIO_TEST_DATABASE_URL): {e}"));
        let schema = test_schema(&mut admin, "provisio_test").await.expect("schema");
        let options: PgConnectOptions = url.parse().expect("url");
        PostgresStore::connect_with(
            options.options([("search_path", schema.as_str())]),
            SecretBox::from_key(key),
        )
        .await
        .expect("connect")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_to_the_store_interfaces() {
        conformance::all(|| async { fresh([4; 32]).await.stores() }).await;
    }

    /// Only the rate schedules commit without waiting for the WAL flush; everything else stays durable.
    #[tokio::test]
    async fn only_the_rate_schedules_commit_asynchronously() {
        let store = fresh([9; 32]).await;
        let setting = |pool: PgPool| async move {
            sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await
                .expect("show")
        };
        let server_default = setting(PgPool::connect(&test_database_url()).await.expect("connect")).await;
        assert_eq!(setting(store.limits.clone()).await, "off");
        assert_eq!(
            setting(store.pool.clone()).await,
            server_default,
            "the server's own setting"
        );
    }

    /// A test schema is dropped by a later test once it is old (or of the old form without a time); a recent
    /// one stays, whatever test made it.
    #[tokio::test]
    async fn old_test_schemas_are_swept() {
        let mut admin = sqlx::PgConnection::connect(&test_database_url())
            .await
            .expect("PostgreSQL");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let (old, untimed, recent) = (
            format!("provisio_sweep_{}_old", now - 7 * 3600),
            "provisio_sweep_0123456789abcdef".to_string(),
            format!("provisio_sweep_{}_recent", now - 3600),
        );
        for name in [&old, &untimed, &recent] {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {name}"))
                .execute(&mut admin)
                .await
                .expect("create");
        }
        let fresh = test_schema(&mut admin, "provisio_sweep").await.expect("a fresh schema");
        let left: Vec<String> =
            sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'provisio\\_sweep\\_%'")
                .fetch_all(&mut admin)
                .await
                .expect("schemas");
        assert!(left.contains(&recent) && left.contains(&fresh), "{left:?}");
        assert!(!left.contains(&old) && !left.contains(&untimed), "{left:?}");
        for name in [&recent, &fresh] {
            sqlx::query(&format!("DROP SCHEMA {name}"))
                .execute(&mut admin)
                .await
                .expect("drop");
        }
    }

    /// A new schema's outbox is analysed by the store once it has grown, not a minute later by autovacuum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_growing_outbox_is_analysed_by_the_store() {
        use provisio_core::store::realtime::{EventStore, NewEvent};
        let store = fresh([8; 32]).await;
        let stores = store.stores();
        let source = stores
            .systems
            .create(provisio_core::store::systems::SystemSpec {
                name: "pushing".into(),
                connector: "scim".into(),
                connector_version: None,
                role: provisio_core::store::systems::Role::Source,
                properties: Default::default(),
                secrets: Default::default(),
                sources: vec![],
                transformation: None,
            })
            .await
            .expect("source");
        let analysed = || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
                 WHERE schemaname = current_schema() AND relname = 'realtime_events'",
            )
            .fetch_one(&store.pool)
            .await
            .expect("statistics")
        };
        assert!(!analysed().await, "a new table has not been analysed");
        // Pushed at once, as clients do: the writer commits them in groups.
        let mut appends = tokio::task::JoinSet::new();
        for i in 0..1_500 {
            let (store, source) = (store.clone(), source.id.clone());
            appends.spawn(async move {
                let event = NewEvent {
                    source_id: source,
                    kind: "user".into(),
                    entity_id: format!("u{i}"),
                    operation: "create".into(),
                    body: None,
                    received_by: "pusher".into(),
                };
                EventStore::append(&store, event).await
            });
        }
        while let Some(appended) = appends.join_next().await {
            appended.expect("joined").expect("appended");
        }
        let deadline = std::time::Instant::now() + ANALYSE_CHECK * 3;
        while !analysed().await {
            assert!(
                std::time::Instant::now() < deadline,
                "not analysed within {:?}",
                ANALYSE_CHECK * 3
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_start_migrates_nothing_and_a_newer_schema_or_another_key_is_refused() {
        let store = fresh([5; 32]).await;
        let known = migrations::MIGRATIONS.len() as i64;
        assert_eq!(store.schema_version().await.expect("version"), known);
        provisio_core::store::Readiness::ready(&store).await.expect("ready");
        let options = store.pool.connect_options().as_ref().clone();
        // Started again, with the same key: nothing to do.
        PostgresStore::connect_with(options.clone(), SecretBox::from_key([5; 32]))
            .await
            .expect("the same key opens it again");
        // Another key: refused, before anything is written.
        let refused = PostgresStore::connect_with(options.clone(), SecretBox::from_key([6; 32])).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("master key differs"), "{message}");
        // A newer Provisio migrated it further: refused, saying so.
        sqlx::query("INSERT INTO provisio_schema (version) VALUES ($1)")
            .bind(known + 1)
            .execute(&store.pool)
            .await
            .expect("pretend a newer schema");
        let refused = PostgresStore::connect_with(options, SecretBox::from_key([5; 32])).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("newer than this Provisio knows"), "{message}");
        assert!(
            provisio_core::store::Readiness::ready(&store).await.is_err(),
            "not ready on a schema it does not know"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_system_written_through_one_replica_moves_the_generation_of_another() {
        use provisio_core::store::SystemStore;
        let a = fresh([7; 32]).await;
        let options = a.pool.connect_options().as_ref().clone();
        let b = PostgresStore::connect_with(options, SecretBox::from_key([7; 32]))
            .await
            .expect("second replica");
        let before = SystemStore::generation(&b);
        let spec = provisio_core::store::systems::SystemSpec {
            name: "on a".into(),
            connector: "scim".into(),
            connector_version: None,
            role: provisio_core::store::systems::Role::Source,
            properties: Default::default(),
            secrets: Default::default(),
            sources: vec![],
            transformation: None,
        };
        let created = SystemStore::create(&a, spec).await.expect("create on a");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while SystemStore::generation(&b) == before {
            assert!(std::time::Instant::now() < deadline, "b never heard of the change");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = SystemStore::get(&b, &created.id).await.expect("get on b");
        assert_eq!(seen.map(|s| s.spec.name), Some("on a".to_string()));
    }
}
