//! The command line: `serve`, the admin commands that talk to a running service, and `transform test`,
//! which needs no server.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

mod admin;
mod args;
mod client;
pub mod config;
mod notify;
mod output;
pub mod scaffold;

pub use args::*;
use client::Client;
use output::*;

/// A failed command: the message, and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// For stderr.
    pub message: String,
    /// Process exit code.
    pub code: i32,
}

impl CliError {
    /// The service refused or failed (or could not be reached): exit code 1.
    fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    /// The command itself is unusable (its input, a file it reads, missing credentials' form): exit code
    /// 2, as clap's own usage errors.
    fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
}

pub use admin::{audit, realtime, user};
pub use notify::notify;

fn read_json(path: &PathBuf) -> Result<Value, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| CliError::usage(format!("{} is not valid JSON: {e}", path.display())))
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
    let run = provisio::transform_test::TransformTest {
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

/// Runs `config check FILE`: "ok", or every problem on stderr and exit code 1.
pub fn config_check(command: ConfigCommand) -> Result<(), CliError> {
    let ConfigCommand::Check { file } = command;
    match config::load(&file) {
        Ok(_) => {
            println!("ok");
            Ok(())
        }
        Err(errors) => Err(CliError::new(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        )),
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
        SystemCommand::List { output, connection } => {
            let list = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/systems", None, true)
                .await?;
            if output == Output::Json {
                print(&list);
                return Ok(());
            }
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
        SystemCommand::Get { system, connection } => return admin::system_get(&system, &connection).await,
        update @ SystemCommand::Update { .. } => return admin::system_update(update).await,
        SystemCommand::Remove { system, connection } => return admin::system_remove(&system, &connection).await,
        SystemCommand::Export { connection } => return admin::system_export(&connection).await,
        SystemCommand::Import { file, connection } => return admin::system_import(&file, &connection).await,
        SystemCommand::Release {
            system,
            output,
            connection,
        } => return admin::system_release(&system, output, &connection).await,
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
        PluginCommand::List { output, connection } => {
            let list = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/plugins", None, true)
                .await?;
            if output == Output::Json {
                print(&list);
                return Ok(());
            }
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
    let outbound =
        provisio::outbound::Outbound::new(provisio::outbound::OutboundLimits::default()).map_err(CliError::new)?;
    let runtime = provisio::runtime::Runtime::new(
        provisio::runtime::CallLimits::default(),
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
            "supportedContracts": provisio::runtime::bindings::SUPPORTED,
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
        provisio::runtime::bindings::SUPPORTED.join(", ")
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
            output,
            connection,
        } => {
            let mut all = Vec::new();
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
                    match output {
                        Output::Text => println!("{}", log_line(entry)),
                        Output::Json => all.push(entry.clone()),
                    }
                }
                match page["nextAfter"].as_i64() {
                    Some(next) if next > after => after = next,
                    _ => break,
                }
            }
            if output == Output::Json {
                print(&Value::Array(all));
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
