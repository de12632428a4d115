//! The command line: `serve`, the admin commands that talk to a running service, and `transform test`,
//! which needs no server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

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
        #[command(flatten)]
        connection: Connection,
    },
    /// List systems.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Test the connection of a system.
    Test {
        /// The system id.
        id: String,
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
                    .ok_or_else(|| CliError::new("--user must be user:password"))
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
        let response = request
            .send()
            .await
            .map_err(|e| CliError::new(format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("no details");
            return Err(CliError::new(format!("HTTP {}: {message}", status.as_u16())));
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
            role,
            properties,
            sources,
            transformation,
            connection,
        } => {
            let transformation = transformation.as_ref().map(read_json).transpose()?;
            let body = json!({
                "name": name, "type": connector, "role": role,
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
                    s["id"].as_str().unwrap_or(""),
                    s["role"].as_str().unwrap_or(""),
                    s["type"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                );
            }
        }
        SystemCommand::Test { id, connection } => {
            let result = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/systems/{id}/test-connection"),
                    None,
                    true,
                )
                .await?;
            let message = result["message"].as_str().unwrap_or("").to_string();
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
            println!(
                "loaded {}@{}",
                added["name"].as_str().unwrap_or("?"),
                added["version"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
