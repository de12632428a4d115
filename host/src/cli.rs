//! The command line: `serve`, the admin commands that talk to a running service, and `transform test`,
//! which needs no server.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

pub mod scaffold;

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
    /// Work with transformations (no server needed).
    #[command(subcommand)]
    Transform(TransformCommand),
}

/// `provisio serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PROVISIO_LISTEN")]
    pub listen: SocketAddr,
    /// Where the database, the master key, plugins and caches live.
    #[arg(long, default_value = "provisio-data", env = "PROVISIO_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Days ended job runs and their per-entity logs are kept.
    #[arg(long, default_value_t = crate::provisioning::DEFAULT_RETENTION_DAYS, env = "PROVISIO_JOB_RETENTION_DAYS")]
    pub job_retention_days: i64,
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
    #[arg(long, default_value_t = crate::proxy::limit::DEFAULT_MAX_IN_FLIGHT, env = "PROVISIO_PROXY_MAX_IN_FLIGHT")]
    pub proxy_max_in_flight: usize,
}

impl ServeArgs {
    /// The TLS settings, when HTTPS was asked for.
    pub fn tls(&self) -> Option<crate::tls::TlsSettings> {
        Some(crate::tls::TlsSettings {
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

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

/// A failed command: the message, and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// For stderr.
    pub message: String,
    /// Process exit code.
    pub code: i32,
}

impl CliError {
    fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

fn read_json(path: &PathBuf) -> Result<Value, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| CliError::new(format!("{} is not valid JSON: {e}", path.display())))
}

/// Runs `transform test`: the output JSON on stdout; a skip or failure on stderr with exit code 2.
pub fn transform_test(command: TransformCommand) -> Result<(), CliError> {
    let TransformCommand::Test {
        transformation,
        entity,
        entity_type,
        properties,
        operation,
        trace,
    } = command;
    let run = crate::transform_test::TransformTest {
        transformation: read_json(&transformation)?,
        entity: read_json(&entity)?,
        entity_type,
        properties: properties.into_iter().collect::<BTreeMap<_, _>>(),
        operation,
        trace,
    };
    let outcome = run.run().map_err(CliError::new)?;
    if trace {
        for step in outcome.trace() {
            eprintln!("{}", serde_json::to_string(step).unwrap_or_default());
        }
    }
    match outcome {
        provisio_transform::Outcome::Transformed { output, .. } => {
            println!("{}", serde_json::to_string_pretty(&output).unwrap_or_default());
            Ok(())
        }
        provisio_transform::Outcome::Skipped { reason, .. } => Err(CliError {
            message: format!("skipped: {reason}"),
            code: 2,
        }),
        provisio_transform::Outcome::Failed {
            reason,
            mapping_index,
            path,
            ..
        } => {
            let at = match (mapping_index, path) {
                (Some(i), Some(p)) => format!(" (mapping {i}, {p})"),
                (Some(i), None) => format!(" (mapping {i})"),
                (None, Some(p)) => format!(" ({p})"),
                (None, None) => String::new(),
            };
            Err(CliError {
                message: format!("failed: {reason}{at}"),
                code: 2,
            })
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    user: Option<(String, String)>,
}

impl Client {
    fn new(c: &Connection) -> Result<Self, CliError> {
        let user = c
            .user
            .as_deref()
            .map(|u| {
                u.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| CliError::new("PROVISIO_USER (or --user) must be user:password"))
            })
            .transpose()?;
        Ok(Client {
            http: reqwest::Client::new(),
            base: c.server.trim_end_matches('/').to_string(),
            user,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        json_body: bool,
    ) -> Result<Value, CliError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some((u, p)) = &self.user {
            request = request.basic_auth(u, Some(p));
        }
        if let Some(body) = body {
            request = request
                .header(
                    "content-type",
                    if json_body {
                        "application/json"
                    } else {
                        "application/wasm"
                    },
                )
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            CliError::new(format!(
                "cannot reach the service at {} (PROVISIO_URL or --server): {e}",
                self.base
            ))
        })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("no details");
            let hint = match (status.as_u16(), &self.user) {
                (401, None) => "; no credentials were given: set PROVISIO_USER=user:password (or pass --user)",
                (401, Some(_)) => "; the credentials in PROVISIO_USER (or --user) were refused",
                (403, _) => "; the user in PROVISIO_USER (or --user) lacks the permission",
                _ => "",
            };
            return Err(CliError::new(format!(
                "HTTP {}: {}{hint}",
                status.as_u16(),
                terminal(message)
            )));
        }
        Ok(value)
    }
}

fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Runs `system …`.
pub async fn system(command: SystemCommand) -> Result<(), CliError> {
    match command {
        SystemCommand::Add {
            name,
            connector,
            connector_version,
            role,
            properties,
            sources,
            transformation,
            connection,
        } => {
            let transformation = transformation.as_ref().map(read_json).transpose()?;
            let body = json!({
                "name": name, "type": connector, "version": connector_version, "role": role,
                "properties": properties.into_iter().collect::<BTreeMap<_, _>>(),
                "sources": sources, "transformation": transformation,
            });
            let created = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    "/api/v1/systems",
                    Some(body.to_string().into()),
                    true,
                )
                .await?;
            print(&created);
        }
        SystemCommand::List { connection } => {
            let list = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/systems", None, true)
                .await?;
            for s in list.as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} {:<10} {}",
                    shown(s, "id"),
                    shown(s, "role"),
                    shown(s, "type"),
                    shown(s, "name")
                );
            }
        }
        SystemCommand::Test { id, connection } => {
            let result = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/systems/{}/test-connection", encode(&id)),
                    None,
                    true,
                )
                .await?;
            let message = shown(&result, "message").into_owned();
            if result["ok"].as_bool() != Some(true) {
                return Err(CliError::new(message));
            }
            println!("{message}");
        }
    }
    Ok(())
}

/// Runs `plugin …`.
pub async fn plugin(command: PluginCommand) -> Result<(), CliError> {
    match command {
        PluginCommand::Add { file, connection } => {
            let bytes =
                std::fs::read(&file).map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
            let added = Client::new(&connection)?
                .call(reqwest::Method::POST, "/api/v1/plugins", Some(bytes.into()), false)
                .await?;
            let label = format!("{}@{}", shown(&added, "name"), shown(&added, "version"));
            match (added["active"].as_bool(), added["replaced"].as_str()) {
                (Some(true), Some(previous)) => {
                    println!(
                        "loaded {label}; systems that follow {} now run it instead of {previous}",
                        shown(&added, "name")
                    )
                }
                (Some(true), None) => println!("loaded {label}"),
                _ => println!(
                    "loaded {label}; systems that follow {} keep their version (pin --connector-version {} to use it, or `plugin activate`)",
                    shown(&added, "name"),
                    shown(&added, "version")
                ),
            }
        }
        PluginCommand::Check { file, json } => return plugin_check(&file, json).await,
        PluginCommand::New {
            name,
            dir,
            sdk_path,
            sdk_git,
            sdk_rev,
        } => {
            let sdk = match (sdk_path, sdk_git) {
                (Some(path), _) => scaffold::Sdk::Path(path),
                (None, Some(url)) => scaffold::Sdk::Git { url, rev: sdk_rev },
                (None, None) => scaffold::Sdk::built_from().ok_or_else(|| {
                    CliError::new("say where the SDK is: --sdk-path <the sdk/ folder of a Provisio checkout> or --sdk-git <the Provisio repository URL>")
                })?,
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            println!("{}", scaffold::create(&name, &dir, &sdk).map_err(CliError::new)?);
        }
        PluginCommand::List { connection } => {
            let list = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/plugins", None, true)
                .await?;
            println!(
                "{:<16} {:<12} {:<8} {:<7} {:>8} {:>7} {:>6} {:>6}  used by",
                "CONNECTOR", "VERSION", "CONTRACT", "ACTIVE", "CALLS", "ERRORS", "TRAPS", "LIMITS"
            );
            for p in list.as_array().into_iter().flatten() {
                let stats = &p["stats"];
                let used: Vec<String> = p["usedBy"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{}{}",
                            shown(s, "name"),
                            if s["pinned"] == true { " (pinned)" } else { "" }
                        )
                    })
                    .collect();
                println!(
                    "{:<16} {:<12} {:<8} {:<7} {:>8} {:>7} {:>6} {:>6}  {}",
                    shown(p, "name"),
                    format!("{}{}", shown(p, "version"), if p["bundled"] == true { "*" } else { "" }),
                    shown(p, "contract"),
                    if p["active"] == true { "yes" } else { "" },
                    stats["calls"].as_u64().unwrap_or(0),
                    stats["failures"].as_u64().unwrap_or(0) + stats["connectorErrors"].as_u64().unwrap_or(0),
                    stats["traps"].as_u64().unwrap_or(0),
                    stats["limitHits"].as_u64().unwrap_or(0),
                    used.join(", ")
                );
            }
            println!("(* bundled with this binary)");
        }
        PluginCommand::Remove {
            name,
            version,
            connection,
        } => {
            Client::new(&connection)?
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/plugins/{}/{}", encode(&name), encode(&version)),
                    None,
                    true,
                )
                .await?;
            println!("removed {name}@{version}");
        }
        PluginCommand::Rollback { name, connection } => {
            let switched = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/plugins/{}/rollback", encode(&name)),
                    None,
                    true,
                )
                .await?;
            println!(
                "{name}: systems that follow it run {} instead of {}",
                shown(&switched, "to"),
                shown(&switched, "from")
            );
        }
        PluginCommand::Activate {
            name,
            version,
            connection,
        } => {
            let switched = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/plugins/{}/activate", encode(&name)),
                    Some(json!({ "version": version }).to_string().into()),
                    true,
                )
                .await?;
            println!(
                "{name}: systems that follow it run {} instead of {}",
                shown(&switched, "to"),
                shown(&switched, "from")
            );
        }
    }
    Ok(())
}

/// `plugin check FILE`: loads the component in a runtime of its own, exactly as upload does (component,
/// contract version, imports, describe(), version, default transformations), and prints what it declares.
async fn plugin_check(file: &std::path::Path, as_json: bool) -> Result<(), CliError> {
    let bytes = std::fs::read(file).map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
    let outbound = crate::outbound::Outbound::new(crate::outbound::OutboundLimits::default()).map_err(CliError::new)?;
    let runtime = crate::runtime::Runtime::new(
        crate::runtime::CallLimits::default(),
        std::sync::Arc::new(outbound),
        None,
    )
    .map_err(CliError::new)?;
    let plugin = runtime.load(bytes).await.map_err(|e| CliError {
        message: format!("{} is not a loadable Provisio connector: {e}", file.display()),
        code: 2,
    })?;
    let d = &plugin.descriptor;
    let x = &plugin.extensions;
    if as_json {
        print(&json!({
            "name": d.name, "version": d.version, "contract": plugin.contract, "digest": plugin.digest,
            "size": plugin.size, "entityKinds": d.entity_kinds, "operations": d.operations,
            "properties": d.properties, "compileMs": plugin.load_time.as_secs_f64() * 1e3,
            "defaultTransformations": {
                "read": d.default_read_transformation.is_some(), "write": d.default_write_transformation.is_some(),
                "proxyRead": x.default_proxy_read_transformation.is_some(),
                "proxyWrite": x.default_proxy_write_transformation.is_some(),
            },
            "supportedContracts": crate::runtime::bindings::SUPPORTED,
        }));
        return Ok(());
    }
    let list = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    let has = |t: &Option<String>| if t.is_some() { "valid" } else { "none" };
    println!("name:         {}", terminal(&d.name));
    println!("version:      {}", terminal(&d.version));
    println!(
        "contract:     provisio:connector@{} (this host serves {})",
        plugin.contract,
        crate::runtime::bindings::SUPPORTED.join(", ")
    );
    println!("digest:       sha256:{}", plugin.digest);
    println!(
        "size:         {} bytes (compiled in {} ms)",
        plugin.size,
        plugin.load_time.as_millis()
    );
    println!(
        "entity kinds: {}",
        list(d.entity_kinds.iter().map(|k| k.as_str().to_string()).collect())
    );
    println!(
        "capabilities: {}",
        list(
            d.operations
                .iter()
                .map(|o| serde_json::to_value(o)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default())
                .collect()
        )
    );
    println!(
        "default transformations: read {}, write {}, proxy read {}, proxy write {}",
        has(&d.default_read_transformation),
        has(&d.default_write_transformation),
        has(&x.default_proxy_read_transformation),
        has(&x.default_proxy_write_transformation)
    );
    println!("properties:");
    for p in &d.properties {
        let mut flags = Vec::new();
        if p.required {
            flags.push("required".to_string());
        }
        if p.secret {
            flags.push("secret".to_string());
        }
        if let Some(v) = &p.default_value {
            flags.push(format!("default {v:?}"));
        }
        println!(
            "  {:<32} {:<28} {}",
            terminal(&p.name),
            terminal(&flags.join(", ")),
            terminal(&p.doc)
        );
    }
    println!(
        "OK: {}@{} is a valid Provisio connector",
        terminal(&d.name),
        terminal(&d.version)
    );
    Ok(())
}

/// Statuses after which a run changes no more.
const FINAL_STATUSES: [&str; 3] = ["Success", "Finished with Error", "Manually Terminated"];

/// How often `job run --follow` asks for the run's state.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Characters left as they are in a URL path segment or query value.
const URL_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a value (an id, a name, a filter) for a URL.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, URL_SAFE).to_string()
}

/// A string field of a server answer; empty when absent.
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// A string field of a server answer as it may be printed on a terminal (see [`terminal`]).
fn shown<'a>(v: &'a Value, key: &str) -> Cow<'a, str> {
    terminal(text(v, key))
}

/// Text from the server (ids, names, reasons) made safe to print on a terminal: control characters
/// (escape sequences, carriage returns, newlines) and bidirectional overrides are written as escapes
/// (`\u{1b}`, `\n`, `\u{202e}`), so a value cannot move the cursor, recolour, rewrite earlier lines or
/// reorder what follows it.
pub fn terminal(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The id of the system `source` names: an exact id, an exact name, or the one name equal ignoring case.
fn find_system<'a>(systems: &'a [Value], source: &str) -> Result<&'a str, String> {
    let id_of = |s: &'a Value| s["id"].as_str();
    if let Some(id) = systems.iter().find(|s| text(s, "id") == source).and_then(id_of) {
        return Ok(id);
    }
    if let Some(id) = systems.iter().find(|s| text(s, "name") == source).and_then(id_of) {
        return Ok(id);
    }
    let wanted = source.to_lowercase();
    let matches: Vec<&str> = systems
        .iter()
        .filter(|s| text(s, "name").to_lowercase() == wanted)
        .filter_map(id_of)
        .collect();
    match matches.as_slice() {
        [id] => Ok(id),
        [] => Err(format!("no system has the id or name {source:?}")),
        _ => Err(format!("several systems are named {source:?}; give the id")),
    }
}

/// Resolves a system id or name to an id. When the systems cannot be listed (a caller who may run jobs
/// but not manage systems), the argument is used as an id and the service judges it.
async fn resolve_system(client: &Client, source: &str) -> Result<String, CliError> {
    let Ok(list) = client.call(reqwest::Method::GET, "/api/v1/systems", None, true).await else {
        return Ok(source.to_string());
    };
    let systems = list.as_array().map(Vec::as_slice).unwrap_or_default();
    find_system(systems, source).map(str::to_string).map_err(CliError::new)
}

/// The counts columns of the statistics table, as the API names them.
const COUNT_FIELDS: [&str; 8] = [
    "read",
    "created",
    "updated",
    "deleted",
    "skipped",
    "failed",
    "unchanged",
    "held",
];

/// A run's statistics as a text table: one row per target and entity type, counts right-aligned.
pub fn statistics_table(statistics: &[Value]) -> String {
    let mut header = vec!["target".to_string(), "entity type".to_string()];
    header.extend(COUNT_FIELDS.iter().map(|f| f.to_string()));
    let mut rows = vec![header];
    for s in statistics {
        // The target's name, or its id when the name is unknown (e.g. the target was deleted).
        let target = match text(s, "targetName") {
            "" => shown(s, "targetId"),
            name => terminal(name),
        };
        let mut row = vec![target.to_string(), shown(s, "entityType").to_string()];
        row.extend(
            COUNT_FIELDS
                .iter()
                .map(|f| s[*f].as_u64().map_or_else(|| "-".to_string(), |n| n.to_string())),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The report of a run: its statistics table, the lines of its outcome, and its status.
pub fn job_report(job: &Value) -> String {
    let statistics = job["statistics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = statistics_table(statistics);
    for line in job["outcome"].as_array().into_iter().flatten() {
        match line.as_str() {
            Some(s) => out.push_str(&terminal(s)),
            None => out.push_str(&line.to_string()),
        }
        out.push('\n');
    }
    out.push_str(&format!("status: {}\n", shown(job, "status")));
    out
}

/// The progress bar's message: the run's phase (its status before it has one) and the counts so far,
/// summed over targets and entity types.
fn progress_message(job: &Value) -> String {
    let phase = terminal(job["progress"]["phase"].as_str().unwrap_or_else(|| text(job, "status")));
    let statistics = job["statistics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let sum = |field: &str| statistics.iter().filter_map(|s| s[field].as_u64()).sum::<u64>();
    format!(
        "{phase}: {} created, {} updated, {} deleted, {} failed",
        sum("created"),
        sum("updated"),
        sum("deleted"),
        sum("failed")
    )
}

/// One line of a run's entity log: seq, entity type, source id, operation, outcome, reason.
fn log_line(entry: &Value) -> String {
    let seq = entry["seq"].as_i64().map(|n| n.to_string()).unwrap_or_default();
    let source_id = match text(entry, "sourceId") {
        "" => Cow::Borrowed("-"),
        id => terminal(id),
    };
    format!(
        "{seq}  {}  {source_id}  {}  {}  {}",
        shown(entry, "entityType"),
        shown(entry, "operation"),
        shown(entry, "outcome"),
        shown(entry, "reason")
    )
    .trim_end()
    .to_string()
}

/// Whether the run has ended.
fn is_final(job: &Value) -> bool {
    FINAL_STATUSES.contains(&text(job, "status"))
}

/// Shows a run's state on the bar: a bar when the total to read is known, a spinner otherwise.
fn show_progress(bar: &indicatif::ProgressBar, job: &Value) {
    use indicatif::ProgressStyle;
    let progress = &job["progress"];
    match progress["total"].as_u64() {
        Some(total) if bar.length() != Some(total) => {
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_length(total);
        }
        None if bar.length().is_some() => {
            bar.set_style(ProgressStyle::default_spinner());
            bar.unset_length();
        }
        _ => {}
    }
    bar.set_position(progress["read"].as_u64().unwrap_or(0));
    bar.set_message(progress_message(job));
}

/// Watches a run until it ends and returns its last state. The first Ctrl-C asks the service to stop
/// the run (and the watch goes on until it has stopped); a second one stops watching.
async fn follow_job(client: &Client, id: &str) -> Result<Value, CliError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    // Ctrl-C presses arrive on a channel, so that none is lost while a request is under way.
    let (tx, mut interrupts) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let path = format!("/api/v1/jobs/{}", encode(id));
    let mut stop_requested = false;
    let mut catching = true;
    let result = loop {
        let job = match client.call(reqwest::Method::GET, &path, None, true).await {
            Ok(job) => job,
            Err(e) => break Err(e),
        };
        show_progress(&bar, &job);
        if is_final(&job) {
            break Ok(job);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            interrupt = interrupts.recv(), if catching => match interrupt {
                // Ctrl-C cannot be caught here: it ends the process as usual.
                None => catching = false,
                Some(()) if stop_requested => {
                    break Err(CliError {
                        message: format!("stopped watching job {}; the service is still stopping it", terminal(id)),
                        code: 130,
                    })
                }
                Some(()) => {
                    stop_requested = true;
                    // `suspend`, not `println`: the note must show even when the bar is hidden (no terminal).
                    bar.suspend(|| eprintln!("stopping the run…"));
                    let stop = format!("{path}/stop");
                    if let Err(e) = client.call(reqwest::Method::POST, &stop, None, true).await {
                        bar.suspend(|| eprintln!("cannot stop the run: {}", e.message));
                    }
                }
            },
        }
    };
    listener.abort();
    // The report (or the error) that follows says it all; a bar left drawn would run into it.
    bar.finish_and_clear();
    result
}

/// Runs `job …`.
pub async fn job(command: JobCommand) -> Result<(), CliError> {
    match command {
        JobCommand::Run {
            source,
            job_type,
            simulate,
            follow,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let source = resolve_system(&client, &source).await?;
            let body = json!({"type": job_type, "simulate": simulate});
            let started = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/systems/{}/jobs", encode(&source)),
                    Some(body.to_string().into()),
                    true,
                )
                .await?;
            let id = started["id"]
                .as_str()
                .ok_or_else(|| CliError::new("the service answered without a job id"))?
                .to_string();
            println!("{}  {}", terminal(&id), shown(&started, "status"));
            if follow {
                let job = follow_job(&client, &id).await?;
                print!("{}", job_report(&job));
                let status = text(&job, "status");
                if status != "Success" {
                    return Err(CliError::new(format!(
                        "job {} ended: {}",
                        terminal(&id),
                        terminal(status)
                    )));
                }
            }
        }
        JobCommand::Status { job_id, connection } => {
            let job = Client::new(&connection)?
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/jobs/{}", encode(&job_id)),
                    None,
                    true,
                )
                .await?;
            print!("{}", job_report(&job));
        }
        JobCommand::Stop { job_id, connection } => {
            let job = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/jobs/{}/stop", encode(&job_id)),
                    None,
                    true,
                )
                .await?;
            println!("{job_id}  {}", shown(&job, "status"));
        }
        JobCommand::Log {
            job_id,
            outcome,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let filter = outcome.map(|o| format!("&outcome={}", encode(&o))).unwrap_or_default();
            // The log comes in pages; `nextAfter` is set while there may be more.
            let mut after = 0;
            loop {
                let page = client
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/jobs/{}/entities?after={after}{filter}", encode(&job_id)),
                        None,
                        true,
                    )
                    .await?;
                for entry in page["entries"].as_array().into_iter().flatten() {
                    println!("{}", log_line(entry));
                }
                match page["nextAfter"].as_i64() {
                    Some(next) if next > after => after = next,
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, kind: &str, counts: [u64; 8]) -> Value {
        let mut row = json!({"targetId": "t-1", "targetName": target, "entityType": kind});
        for (field, n) in COUNT_FIELDS.iter().zip(counts) {
            row[*field] = json!(n);
        }
        row
    }

    #[test]
    fn statistics_table_aligns_columns() {
        let table = statistics_table(&[
            row("HR target", "user", [120, 3, 10, 1, 0, 2, 104, 0]),
            row("LDAP", "group", [7, 0, 0, 0, 0, 0, 7, 0]),
        ]);
        let expected = "\
target     entity type  read  created  updated  deleted  skipped  failed  unchanged  held
HR target  user          120        3       10        1        0       2        104     0
LDAP       group           7        0        0        0        0       0          7     0
";
        assert_eq!(table, expected);
    }

    #[test]
    fn statistics_table_falls_back_to_the_target_id_and_marks_missing_counts() {
        let table = statistics_table(&[json!({"targetId": "t-9", "entityType": "user", "read": 4})]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["t-9", "user", "4", "-", "-", "-", "-", "-", "-", "-"]);
        // No statistics: the header only.
        assert_eq!(statistics_table(&[]).lines().count(), 1);
    }

    #[test]
    fn job_report_has_table_outcome_and_status() {
        let job = json!({
            "status": "Finished with Error",
            "statistics": [row("HR", "user", [1, 1, 0, 0, 0, 0, 0, 0])],
            "outcome": ["2 users failed.", 42],
        });
        let report = job_report(&job);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("target"));
        assert!(lines[1].starts_with("HR"));
        assert_eq!(lines[2..], ["2 users failed.", "42", "status: Finished with Error"]);
        // Whatever the server leaves out, the report still renders.
        assert_eq!(job_report(&json!({})).lines().last(), Some("status: "));
    }

    #[test]
    fn progress_message_sums_over_targets() {
        let job = json!({
            "status": "Running",
            "progress": {"phase": "users", "read": 10, "total": 50},
            "statistics": [row("A", "user", [10, 2, 1, 0, 0, 1, 6, 0]), row("B", "user", [10, 3, 0, 4, 0, 0, 3, 0])],
        });
        assert_eq!(
            progress_message(&job),
            "users: 5 created, 1 updated, 4 deleted, 1 failed"
        );
        let queued = json!({"status": "Queued", "progress": {}, "statistics": []});
        assert_eq!(
            progress_message(&queued),
            "Queued: 0 created, 0 updated, 0 deleted, 0 failed"
        );
    }

    #[test]
    fn final_statuses() {
        for status in ["Success", "Finished with Error", "Manually Terminated"] {
            assert!(is_final(&json!({ "status": status })));
        }
        for status in ["Queued", "Running", "Running with Error"] {
            assert!(!is_final(&json!({ "status": status })));
        }
        assert!(!is_final(&json!({})));
    }

    #[test]
    fn log_lines() {
        let entry = json!({"seq": 7, "entityType": "user", "sourceId": "u-1", "operation": "create",
            "outcome": "failed", "reason": "HTTP 409"});
        assert_eq!(log_line(&entry), "7  user  u-1  create  failed  HTTP 409");
        let entry = json!({"seq": 8, "entityType": "group", "sourceId": null, "operation": "read",
            "outcome": "success", "reason": null});
        assert_eq!(log_line(&entry), "8  group  -  read  success");
    }

    #[test]
    fn server_text_is_escaped_on_the_terminal() {
        // An id that would clear the screen, rewrite the line and reverse the text after it.
        let entry = json!({"seq": 9, "entityType": "user", "sourceId": "a\u{1b}[2Jb\rc\u{202e}d\ne",
            "operation": "create", "outcome": "failed", "reason": "bad\u{7}\tthing"});
        let line = log_line(&entry);
        assert_eq!(
            line,
            "9  user  a\\u{1b}[2Jb\\rc\\u{202e}d\\ne  create  failed  bad\\u{7}\\tthing"
        );
        assert!(!line.chars().any(char::is_control));
        assert!(matches!(terminal("plain ünïcode"), Cow::Borrowed(_)));
        let stats = [json!({"targetName": "", "targetId": "t\u{1b}]0;x\u{7}", "entityType": "user"})];
        assert!(
            !statistics_table(&stats)
                .trim_end()
                .lines()
                .any(|l| l.chars().any(char::is_control))
        );
        let job = json!({"statistics": [], "outcome": ["line\u{1b}[1A"], "status": "Failed\r"});
        assert_eq!(job_report(&job).matches('\n').count(), 3);
        assert!(job_report(&job).contains("line\\u{1b}[1A") && job_report(&job).contains("Failed\\r"));
    }

    #[test]
    fn systems_resolve_by_id_then_name_ignoring_case() {
        let systems = [
            json!({"id": "s-1", "name": "HR Source"}),
            json!({"id": "s-2", "name": "s-1"}),
            json!({"id": "s-3", "name": "Müller"}),
        ];
        assert_eq!(find_system(&systems, "s-1"), Ok("s-1"));
        assert_eq!(find_system(&systems, "hr source"), Ok("s-1"));
        assert_eq!(find_system(&systems, "MÜLLER"), Ok("s-3"));
        assert!(find_system(&systems, "nothing").is_err());
        // An exact name wins; otherwise names equal ignoring case must be unique.
        let twins = [json!({"id": "a", "name": "Ab"}), json!({"id": "b", "name": "aB"})];
        assert_eq!(find_system(&twins, "aB"), Ok("b"));
        assert!(find_system(&twins, "ab").is_err_and(|e| e.contains("several")));
    }

    #[test]
    fn values_are_encoded_for_urls() {
        assert_eq!(encode("3f2a-b_c.d~e"), "3f2a-b_c.d~e");
        assert_eq!(encode("HR source/1&x=y"), "HR%20source%2F1%26x%3Dy");
    }

    #[test]
    fn job_commands_parse() {
        let cli = Cli::try_parse_from([
            "provisio",
            "job",
            "run",
            "HR",
            "--type",
            "resync",
            "--simulate",
            "--follow",
        ])
        .expect("parses");
        let Command::Job(JobCommand::Run {
            source,
            job_type,
            simulate,
            follow,
            ..
        }) = cli.command
        else {
            panic!("not job run");
        };
        assert_eq!(
            (source.as_str(), job_type.as_str(), simulate, follow),
            ("HR", "resync", true, true)
        );
        let cli = Cli::try_parse_from(["provisio", "job", "run", "HR"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Job(JobCommand::Run { ref job_type, simulate: false, follow: false, .. }) if job_type == "read")
        );
        assert!(Cli::try_parse_from(["provisio", "job", "run", "HR", "--type", "simulate"]).is_err());
        let cli = Cli::try_parse_from(["provisio", "job", "log", "j-1", "--outcome", "failed"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Job(JobCommand::Log { ref outcome, .. }) if outcome.as_deref() == Some("failed"))
        );
    }

    #[test]
    fn serve_tls_options_parse() {
        let cli = Cli::try_parse_from([
            "provisio",
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--client-ca",
            "ca.pem",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let tls = args.tls().expect("TLS asked for");
        assert_eq!(
            (
                tls.cert.to_str(),
                tls.key.to_str(),
                tls.client_ca.as_deref().and_then(|p| p.to_str())
            ),
            (Some("c.pem"), Some("k.pem"), Some("ca.pem"))
        );
        let Command::Serve(plain) = Cli::try_parse_from(["provisio", "serve"]).expect("parses").command else {
            panic!("not serve");
        };
        assert!(plain.tls().is_none());
        assert!(
            Cli::try_parse_from(["provisio", "serve", "--tls-cert", "c.pem"]).is_err(),
            "needs the key"
        );
        assert!(
            Cli::try_parse_from(["provisio", "serve", "--client-ca", "ca.pem"]).is_err(),
            "needs TLS"
        );
    }
}
