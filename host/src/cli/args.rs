//! The command line's grammar (clap): every command, its arguments and their environment variables.

use super::*;

/// Provisio: identity provisioning with sandboxed WebAssembly connectors.
#[derive(Debug, Parser)]
#[command(name = "provisio", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Manage systems on a running service.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage connector plugins on a running service.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run, watch and stop provisioning jobs on a running service.
    #[command(subcommand)]
    Job(JobCommand),
    /// Manage technical users on a running service.
    #[command(subcommand)]
    User(UserCommand),
    /// Read the real-time log and re-drive events on a running service.
    #[command(subcommand)]
    Realtime(RealtimeCommand),
    /// Export the audit log of a running service.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage notification subscriptions (webhooks, e-mail) and read the delivery log on a running service.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Work with transformations (no server needed).
    #[command(subcommand)]
    Transform(TransformCommand),
    /// Check a configuration file for `serve --config` (no server needed).
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `provisio config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: print "ok", or each problem as `FILE:LINE: KEY: reason` with exit code 1.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// `provisio serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file, whose keys are the long options below (`listen = "0.0.0.0:8080"`).
    /// A flag beats its environment variable, which beats the file, which beats the default.
    #[arg(long, env = "PROVISIO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PROVISIO_LISTEN")]
    pub listen: SocketAddr,
    /// Where the database, the master key, plugins and caches live.
    #[arg(long, default_value = "provisio-data", env = "PROVISIO_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Keep everything in this PostgreSQL database (14 or newer, `postgres://user:password@host/db`) instead of
    /// SQLite in the data directory; several replicas may share it. The master key and the plugin
    /// artifacts' cache stay in the data directory.
    #[arg(long, env = "PROVISIO_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Days the per-entity logs of ended job runs (and the runs) are kept [default: 30]. Pruned in the
    /// background in small batches.
    #[arg(long, env = "PROVISIO_RETENTION_JOB_LOGS_DAYS", value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_job_logs_days: Option<i64>,
    /// The former name of --retention-job-logs-days (which wins when both are given).
    #[arg(long, env = "PROVISIO_JOB_RETENTION_DAYS", value_parser = clap::value_parser!(i64).range(1..))]
    pub job_retention_days: Option<i64>,
    /// Days real-time events that ended (done, parked or failed) are kept.
    #[arg(long, default_value_t = provisio::retention::DEFAULT_EVENTS_DAYS, env = "PROVISIO_RETENTION_EVENTS_DAYS", value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_events_days: i64,
    /// Days audit log entries are kept (24 months by default, as SAP keeps its change log).
    #[arg(long, default_value_t = provisio::retention::DEFAULT_AUDIT_DAYS, env = "PROVISIO_RETENTION_AUDIT_DAYS", value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_audit_days: i64,
    /// Days notification deliveries that finished (delivered, or failed after their last attempt) are kept,
    /// with their attempts; pending ones are never pruned.
    #[arg(long, default_value_t = provisio::retention::DEFAULT_DELIVERIES_DAYS, env = "PROVISIO_RETENTION_DELIVERIES_DAYS", value_parser = clap::value_parser!(i64).range(1..))]
    pub retention_deliveries_days: i64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, env = "PROVISIO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PROVISIO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Request client certificates and verify them against these CA certificates (PEM). Optional for
    /// clients: without one they use Basic or a bearer token. A verified certificate's subject CN names
    /// the technical user.
    #[arg(long, env = "PROVISIO_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Requests per second each technical user may send to the proxy SCIM endpoints, in bursts of up to
    /// the same number; over it they get 429 with Retry-After. 0 means no limit.
    #[arg(long, default_value_t = 0.0, env = "PROVISIO_PROXY_RATE_LIMIT")]
    pub proxy_rate_limit: f64,
    /// Requests each technical user may have in flight at once on the proxy SCIM endpoints (so that one
    /// client waiting on a slow backend cannot hold every plugin call); over it they get 429 with Retry-After.
    #[arg(long, default_value_t = provisio::proxy::limit::DEFAULT_MAX_IN_FLIGHT, env = "PROVISIO_PROXY_MAX_IN_FLIGHT")]
    pub proxy_max_in_flight: usize,
    /// Seconds job runs and real-time events in progress may take to finish after SIGTERM (or Ctrl-C);
    /// meanwhile nothing new is claimed. On PostgreSQL what is still held then is handed back to the other
    /// replicas, which take it over at once.
    #[arg(long, default_value_t = provisio::server::DEFAULT_SHUTDOWN_GRACE.as_secs_f64(), env = "PROVISIO_SHUTDOWN_GRACE")]
    pub shutdown_grace: f64,
    /// Failed logins of one principal within 15 minutes that lock it (every password check: the admin API,
    /// `/oauth2/token`, the proxy, the real-time API, the console).
    #[arg(long, default_value_t = 10, env = "PROVISIO_LOGIN_MAX_FAILURES",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures: u32,
    /// Failed logins from one client address within 15 minutes that lock the address.
    #[arg(long, default_value_t = 50, env = "PROVISIO_LOGIN_MAX_FAILURES_PER_ADDRESS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures_per_address: u32,
    /// Minutes a login lock lasts (an admin ends one earlier with `provisio user unlock`).
    #[arg(long, default_value_t = 15, env = "PROVISIO_LOGIN_LOCK_MINUTES",
          value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub login_lock_minutes: u64,
    /// Seconds before the first probe (Test Connection) of a quarantined target; each next probe waits
    /// twice as long, up to an hour. A successful probe releases the target.
    #[arg(long, default_value_t = provisio::quarantine::DEFAULT_PROBE_INTERVAL.as_secs_f64(), env = "PROVISIO_QUARANTINE_PROBE_SECONDS")]
    pub quarantine_probe_seconds: f64,
    /// The SMTP server e-mail notifications go through: `smtp://[user:password@]host[:port]` (STARTTLS when
    /// the server offers it; `?tls=required` insists on it, `?tls=none` never starts it) or
    /// `smtps://…` (TLS from the start). Without it e-mail notifications fail, saying so.
    #[arg(long, env = "PROVISIO_SMTP_URL", hide_env_values = true, value_parser = parse_smtp_url)]
    pub smtp_url: Option<String>,
    /// The sender of notification mails (`Provisio <provisio@example.com>`).
    #[arg(long, env = "PROVISIO_SMTP_FROM", value_parser = parse_mailbox)]
    pub smtp_from: Option<String>,
}

fn parse_smtp_url(s: &str) -> Result<String, String> {
    provisio::notify::email::check_url(s)?;
    Ok(s.to_string())
}

fn parse_mailbox(s: &str) -> Result<String, String> {
    provisio::notify::email::check_mailbox(s)?;
    Ok(s.to_string())
}

impl ServeArgs {
    /// The checks clap cannot make once options may come from a file: TLS options come in pairs.
    pub fn check(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(_), None, _) => Err("--tls-cert (tls-cert) needs --tls-key (tls-key)".into()),
            (None, Some(_), _) => Err("--tls-key (tls-key) needs --tls-cert (tls-cert)".into()),
            (None, None, Some(_)) => Err("--client-ca (client-ca) needs --tls-cert and --tls-key".into()),
            _ => Ok(()),
        }
    }

    /// The brute-force protection these options ask for (the delays and the window stay as documented).
    pub fn login_policy(&self) -> provisio::api::login_guard::LoginPolicy {
        provisio::api::login_guard::LoginPolicy {
            principal_failures: self.login_max_failures,
            address_failures: self.login_max_failures_per_address,
            lock: std::time::Duration::from_secs(self.login_lock_minutes * 60),
            ..Default::default()
        }
    }

    /// The TLS settings, when HTTPS was asked for.
    pub fn tls(&self) -> Option<provisio::tls::TlsSettings> {
        Some(provisio::tls::TlsSettings {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.client_ca.clone(),
        })
    }
}

/// How admin commands reach the service.
#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// The service's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "PROVISIO_URL")]
    pub server: String,
    /// Admin credentials, `user:password`.
    #[arg(long, global = true, env = "PROVISIO_USER", hide_env_values = true)]
    pub user: Option<String>,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Columns for people.
    #[default]
    Text,
    /// The service's JSON, for scripts.
    Json,
}

/// `provisio system …`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Register a system.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Connector type (`scim`, `xsuaa`, …).
        #[arg(long = "type")]
        connector: String,
        /// Pin a connector version; without it the system follows the connector's active version.
        #[arg(long = "connector-version")]
        connector_version: Option<String>,
        /// source, target or proxy.
        #[arg(long)]
        role: String,
        /// A property, `name=value`; repeat for more.
        #[arg(long = "property", short = 'p', value_parser = parse_key_value)]
        properties: Vec<(String, String)>,
        /// For targets: a source system id; repeat for more.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// A transformation file (JSON); the connector's default when absent.
        #[arg(long)]
        transformation: Option<PathBuf>,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// List systems.
    List {
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a system (JSON, secrets masked).
    Get {
        /// The system: its id or its name (case-insensitive).
        system: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Change a system: what is given replaces what it had, the rest stays (secrets too).
    Update {
        /// The system: its id or its name (case-insensitive).
        system: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Set a property, `name=value`; repeat for more.
        #[arg(long = "property", short = 'p', value_parser = parse_key_value)]
        properties: Vec<(String, String)>,
        /// Remove a property; repeat for more.
        #[arg(long = "unset-property")]
        unset: Vec<String>,
        /// For targets: the sources (ids or names), replacing the current ones; repeat for more.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// A new transformation file (JSON).
        #[arg(long)]
        transformation: Option<PathBuf>,
        /// Pin this connector version (`latest`: follow the connector's active version again).
        #[arg(long = "connector-version")]
        connector_version: Option<String>,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a system.
    Remove {
        /// The system: its id or its name (case-insensitive).
        system: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Print every system's configuration as one JSON document (secrets masked, sources by name), for
    /// `system import` here or on another service.
    Export {
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Create or update (by name) the systems of a `system export` document; sources before their targets.
    /// Masked secrets keep the value a system has; a new system needs them entered.
    Import {
        /// The document (JSON).
        file: PathBuf,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// End a target's quarantine now, without waiting for its probe: its parked real-time events resume
    /// and its sources' next runs read everything. Exit code 1 when it is not quarantined (HTTP 409).
    Release {
        /// The system: its id or its name (case-insensitive).
        system: String,
        /// text (the message) or json (the system as it is now, with the quarantine that ended as
        /// `released`).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Test the connection of a system.
    Test {
        /// The system id.
        id: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `provisio plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a connector component (.wasm).
    Add {
        /// The component file.
        file: PathBuf,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Validate a component offline (no server): contract version, describe(), default transformations;
    /// print what it declares.
    Check {
        /// The component file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the loaded versions: which one systems follow, the systems on each, call statistics.
    List {
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove an uploaded version (refused while systems run on it).
    Remove {
        /// The connector name.
        name: String,
        /// The version.
        version: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Systems that follow the connector run the version below the active one from their next call.
    Rollback {
        /// The connector name.
        name: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Create a connector crate from the template (connectors/example) that builds outside this
    /// repository: `provisio plugin new my-api`, then `cargo build --release --target wasm32-wasip2`.
    New {
        /// The connector's name (1–64 of a-z 0-9 - _); the crate is `provisio-connector-NAME`.
        name: String,
        /// The folder to create (default: ./NAME); it must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on the SDK by path: the sdk/ folder of a Provisio checkout (default: the one this binary
        /// was built from, when it exists).
        #[arg(long, conflicts_with = "sdk_git")]
        sdk_path: Option<PathBuf>,
        /// Depend on the SDK by git: the URL of the Provisio repository.
        #[arg(long)]
        sdk_git: Option<String>,
        /// With --sdk-git: the commit, tag or branch to build against.
        #[arg(long, requires = "sdk_git")]
        sdk_rev: Option<String>,
    },
    /// Systems that follow the connector run this version (the highest: follow the latest again).
    Activate {
        /// The connector name.
        name: String,
        /// The version.
        version: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `provisio job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Start a run on a source system.
    Run {
        /// The source system: its id or its name (case-insensitive).
        source: String,
        /// read (write what changed) or resync (rewrite everything).
        #[arg(long = "type", default_value = "read", value_parser = ["read", "resync"])]
        job_type: String,
        /// Compute and log the changes without writing to the targets.
        #[arg(long)]
        simulate: bool,
        /// Watch the run until it ends; Ctrl-C asks the service to stop it, a second Ctrl-C stops watching.
        #[arg(long)]
        follow: bool,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a run's statistics, outcome and status.
    Status {
        /// The job id.
        job_id: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Ask the service to stop a run.
    Stop {
        /// The job id.
        job_id: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a run's per-entity log.
    Log {
        /// The job id.
        job_id: String,
        /// Only entries with this outcome (success, failed, skipped, held, planned).
        #[arg(long)]
        outcome: Option<String>,
        /// text (one line an entry) or json (one array of every entry).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `provisio user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a technical user; the password is asked for (or read from stdin), never taken from argv.
    Add {
        /// The login name.
        name: String,
        /// A permission (manage-systems, run-jobs, read-logs, proxy-api, realtime-api, manage-plugins, read-audit);
        /// repeat for more.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// List admins and technical users.
    List {
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a user; its tokens stop working at once.
    Remove {
        /// The user: its id or its name (case-insensitive).
        #[arg(value_name = "USER")]
        who: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Set a user's password; its bearer tokens and console sessions end.
    Passwd {
        /// The user: its id or its name (case-insensitive).
        #[arg(value_name = "USER")]
        who: String,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// List the login locks still running (principals and client addresses locked after failed logins).
    Locks {
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// End a login lock at once: a user's (by the name it signs in with) or, with --address, a client
    /// address's. Exit code 1 when it was not locked.
    Unlock {
        /// The login name, or the client address with --address.
        subject: String,
        /// SUBJECT is a client address (IPv4 or IPv6).
        #[arg(long)]
        address: bool,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `provisio realtime …`.
#[derive(Debug, Subcommand)]
pub enum RealtimeCommand {
    /// The real-time log, newest first.
    Events {
        /// Only events of this source system (its id or name).
        #[arg(long)]
        source: Option<String>,
        /// Only events in this state (pending, done, failed, parked).
        #[arg(long)]
        state: Option<String>,
        /// Only events older than this sequence number (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Re-drive a parked or failed event.
    Retry {
        /// The event's sequence number.
        seq: i64,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// The form of an audit export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// CSV in the columns of SAP's change log, then the value before and Provisio's own columns.
    #[default]
    Csv,
    /// The entries as the API answers them.
    Json,
}

/// `provisio audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every audit entry (newest first), or those of a time span, principal or action; to stdout or a file.
    Export {
        /// csv or json.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Entries at or after this instant (RFC 3339, `2026-01-31T00:00:00Z`).
        #[arg(long)]
        from: Option<String>,
        /// Entries before this instant (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only the changes of this principal (its name).
        #[arg(long)]
        principal: Option<String>,
        /// Only this action (`system.update`, `login.failed`, …).
        #[arg(long)]
        action: Option<String>,
        /// Write the export to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `provisio transform …`.
#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Apply a transformation to a sample entity and print the result.
    Test {
        /// The transformation (JSON file).
        #[arg(long)]
        transformation: PathBuf,
        /// The entity (JSON file).
        #[arg(long)]
        entity: PathBuf,
        /// user, group, …
        #[arg(long, default_value = "user")]
        entity_type: String,
        /// A system property for `%placeholders%`, `name=value`; repeat for more.
        #[arg(long = "property", value_parser = parse_key_value)]
        properties: Vec<(String, String)>,
        /// create, update, patch or delete.
        #[arg(long)]
        operation: Option<String>,
        /// Print the per-mapping trace on stderr.
        #[arg(long)]
        trace: bool,
    },
}

pub(super) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

/// `provisio notify …`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// The subscriptions.
    List {
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Subscribe a webhook (`--url`) or e-mail recipients (`--recipient`) to event kinds.
    Add {
        /// An event kind (job.failed, job.finished_with_errors, job.recovered, deletes.held,
        /// target.quarantined, plugin.trapping, realtime.backlog); repeat for more.
        #[arg(long = "kind", required = true)]
        kinds: Vec<String>,
        /// Only events of this system (its id or name); every system's without it.
        #[arg(long)]
        system: Option<String>,
        /// POST the notifications to this URL (a webhook).
        #[arg(long, conflicts_with = "recipients")]
        url: Option<String>,
        /// Mail the notifications to this address; repeat for more.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
        /// Read the webhook's signing secret from the first line of stdin; without it the service generates
        /// one and it is printed once.
        #[arg(long, requires = "url")]
        secret_stdin: bool,
        /// realtime.backlog: the age in minutes of the oldest pending event worth a notification.
        #[arg(long)]
        backlog_minutes: Option<u32>,
        /// A note for the admins.
        #[arg(long)]
        description: Option<String>,
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove a subscription (and its delivery log).
    Remove {
        /// The subscription's id.
        id: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// Send a test notification to a subscription now; exit code 1 when it was not delivered.
    Test {
        /// The subscription's id.
        id: String,
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
    /// The delivery log, newest first, with every attempt.
    Deliveries {
        /// Only the deliveries of this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// At most this many deliveries.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// text or json.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Where the service is and who calls it.
        #[command(flatten)]
        connection: Connection,
    },
}
