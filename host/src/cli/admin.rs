//! The admin commands beyond running jobs: `system get|update|remove|export|import|release`, `user …` and
//! `realtime …`, each on the admin API only.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::Path;

use super::*;

/// Reads a new password: the first line of stdin with `--password-stdin`, else asked twice on the terminal
/// (never from argv, where other users of the machine could read it).
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "no terminal to ask for the password on: pass --password-stdin and write it to stdin",
            ));
        }
        let first = rpassword::prompt_password("New password: ")
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(CliError::usage("the passwords differ"));
        }
        first
    };
    if password.is_empty() {
        return Err(CliError::usage("the password is empty"));
    }
    Ok(password)
}

async fn systems(client: &Client) -> Result<Vec<Value>, CliError> {
    let list = client.call(reqwest::Method::GET, "/api/v1/systems", None, true).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

async fn system_id(client: &Client, system: &str) -> Result<String, CliError> {
    let all = systems(client).await?;
    find_system(&all, system).map(str::to_string).map_err(CliError::new)
}

/// `system get`.
pub(super) async fn system_get(system: &str, connection: &Connection) -> Result<(), CliError> {
    let client = Client::new(connection)?;
    let id = system_id(&client, system).await?;
    let view = client
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/systems/{}", encode(&id)),
            None,
            true,
        )
        .await?;
    print(&view);
    Ok(())
}

/// The body of a `PUT /api/v1/systems/{id}` from a system as the API shows it (masked secrets keep their
/// values).
fn input_of(view: &Value) -> Value {
    json!({
        "name": view["name"], "type": view["type"], "version": view["version"], "role": view["role"],
        "properties": view["properties"], "sources": view["sources"], "transformation": view["transformation"],
    })
}

/// `system update`.
pub(super) async fn system_update(command: SystemCommand) -> Result<(), CliError> {
    let SystemCommand::Update {
        system,
        name,
        properties,
        unset,
        sources,
        transformation,
        connector_version,
        connection,
    } = command
    else {
        return Err(CliError::usage("not an update"));
    };
    let client = Client::new(&connection)?;
    let all = systems(&client).await?;
    let id = find_system(&all, &system).map_err(CliError::new)?.to_string();
    let view = client
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/systems/{}", encode(&id)),
            None,
            true,
        )
        .await?;
    let mut input = input_of(&view);
    if let Some(name) = name {
        input["name"] = json!(name);
    }
    if let Some(props) = input["properties"].as_object_mut() {
        for key in &unset {
            if props.remove(key).is_none() {
                return Err(CliError::usage(format!("the system has no property {key:?}")));
            }
        }
        for (key, value) in properties {
            props.insert(key, json!(value));
        }
    }
    if !sources.is_empty() {
        let ids = sources
            .iter()
            .map(|s| find_system(&all, s).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CliError::new)?;
        input["sources"] = json!(ids);
    }
    if let Some(file) = &transformation {
        input["transformation"] = read_json(file)?;
    }
    match connector_version.as_deref() {
        Some("latest") => input["version"] = Value::Null,
        Some(v) => input["version"] = json!(v),
        None => {}
    }
    let saved = client
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/systems/{}", encode(&id)),
            Some(input.to_string().into()),
            true,
        )
        .await?;
    print(&saved);
    Ok(())
}

/// `system remove`.
pub(super) async fn system_remove(system: &str, connection: &Connection) -> Result<(), CliError> {
    let client = Client::new(connection)?;
    let id = system_id(&client, system).await?;
    client
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/systems/{}", encode(&id)),
            None,
            true,
        )
        .await?;
    println!("removed {}", terminal(&id));
    Ok(())
}

/// `system release`: `POST /api/v1/systems/{id}/release`.
pub(super) async fn system_release(system: &str, output: Output, connection: &Connection) -> Result<(), CliError> {
    let client = Client::new(connection)?;
    let id = resolve_system(&client, system).await?;
    let released = client
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/systems/{}/release", encode(&id)),
            None,
            true,
        )
        .await?;
    match output {
        Output::Json => print(&released),
        Output::Text => {
            println!("{}", shown(&released, "message"));
            if released["released"].is_object() {
                println!(
                    "quarantined since {} (reason: {}): {}",
                    shown(&released["released"], "since"),
                    shown(&released["released"], "reason"),
                    shown(&released["released"], "message")
                );
            }
        }
    }
    Ok(())
}

/// The order systems are created in: sources and proxies before the targets that name them.
fn role_rank(v: &Value) -> u8 {
    match text(v, "role") {
        "source" => 0,
        "proxy" => 1,
        _ => 2,
    }
}

/// `system export`: `{"systems": [...]}`, sources named instead of by id (ids differ between services).
pub(super) async fn system_export(connection: &Connection) -> Result<(), CliError> {
    let client = Client::new(connection)?;
    let mut all = systems(&client).await?;
    all.sort_by_key(|v| (role_rank(v), text(v, "name").to_lowercase()));
    let name_of = |id: &str| {
        all.iter()
            .find(|s| text(s, "id") == id)
            .map(|s| text(s, "name").to_string())
            .unwrap_or_else(|| id.to_string())
    };
    let exported: Vec<Value> = all
        .iter()
        .map(|view| {
            let mut input = input_of(view);
            let names: Vec<String> = view["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(name_of)
                .collect();
            input["sources"] = json!(names);
            input
        })
        .collect();
    print(&json!({ "systems": exported }));
    Ok(())
}

/// `system import FILE`.
pub(super) async fn system_import(file: &Path, connection: &Connection) -> Result<(), CliError> {
    let document = read_json(&file.to_path_buf())?;
    let mut wanted: Vec<Value> = document["systems"]
        .as_array()
        .cloned()
        .ok_or_else(|| CliError::usage(format!("{}: expected {{\"systems\": [...]}}", file.display())))?;
    for (i, s) in wanted.iter().enumerate() {
        if text(s, "name").is_empty() {
            return Err(CliError::usage(format!("{}: systems[{i}] has no name", file.display())));
        }
    }
    wanted.sort_by_key(role_rank);
    let client = Client::new(connection)?;
    let mut existing = systems(&client).await?;
    for mut input in wanted {
        let name = text(&input, "name").to_string();
        // Sources by name (as exported) or by id.
        let mut ids = Vec::new();
        for source in input["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            ids.push(
                find_system(&existing, source)
                    .map_err(|e| CliError::new(format!("{name}: source: {e}")))?
                    .to_string(),
            );
        }
        input["sources"] = json!(ids);
        let found = existing
            .iter()
            .find(|s| text(s, "name").eq_ignore_ascii_case(&name))
            .map(|s| text(s, "id").to_string());
        let (method, path, verb) = match &found {
            Some(id) => (
                reqwest::Method::PUT,
                format!("/api/v1/systems/{}", encode(id)),
                "updated",
            ),
            None => (reqwest::Method::POST, "/api/v1/systems".to_string(), "created"),
        };
        let saved = client
            .call(method, &path, Some(input.to_string().into()), true)
            .await
            .map_err(|e| CliError::new(format!("{}: {}", terminal(&name), e.message)))?;
        println!("{verb} {}  {}", shown(&saved, "id"), terminal(&name));
        if found.is_none() {
            existing.push(saved);
        }
    }
    Ok(())
}

async fn users(client: &Client) -> Result<Vec<Value>, CliError> {
    let list = client
        .call(reqwest::Method::GET, "/api/v1/technical-users", None, true)
        .await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// A user's id from its id or name (case-insensitive).
async fn user_id(client: &Client, user: &str) -> Result<String, CliError> {
    let all = users(client).await?;
    all.iter()
        .find(|u| text(u, "id") == user)
        .or_else(|| all.iter().find(|u| text(u, "name").eq_ignore_ascii_case(user)))
        .map(|u| text(u, "id").to_string())
        .ok_or_else(|| CliError::new(format!("no user has the id or name {user:?}")))
}

/// Runs `user …`.
pub async fn user(command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Add {
            name,
            permissions,
            password_stdin,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let password = read_password(password_stdin)?;
            let created = client
                .call(
                    reqwest::Method::POST,
                    "/api/v1/technical-users",
                    Some(
                        json!({"name": name, "password": password, "permissions": permissions})
                            .to_string()
                            .into(),
                    ),
                    true,
                )
                .await?;
            print(&created);
        }
        UserCommand::List { output, connection } => {
            let all = users(&Client::new(&connection)?).await?;
            if output == Output::Json {
                print(&Value::Array(all));
                return Ok(());
            }
            println!("{:<36}  {:<9} {:<24} PERMISSIONS", "ID", "KIND", "NAME");
            for u in &all {
                let permissions: Vec<&str> = u["permissions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<36}  {:<9} {:<24} {}",
                    shown(u, "id"),
                    shown(u, "kind"),
                    shown(u, "name"),
                    terminal(&permissions.join(","))
                );
            }
        }
        UserCommand::Remove { who, connection } => {
            let client = Client::new(&connection)?;
            let id = user_id(&client, &who).await?;
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/technical-users/{}", encode(&id)),
                    None,
                    true,
                )
                .await?;
            println!("removed {}", terminal(&who));
        }
        UserCommand::Passwd {
            who,
            password_stdin,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let password = read_password(password_stdin)?;
            let id = user_id(&client, &who).await?;
            client
                .call(
                    reqwest::Method::PUT,
                    &format!("/api/v1/technical-users/{}/password", encode(&id)),
                    Some(json!({ "password": password }).to_string().into()),
                    true,
                )
                .await?;
            println!("password of {} set; its tokens and sessions ended", terminal(&who));
        }
        UserCommand::Locks { output, connection } => {
            let locks = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/login-locks", None, true)
                .await?;
            if output == Output::Json {
                print(&locks);
                return Ok(());
            }
            println!("{:<10} {:<40} SECONDS LEFT", "SCOPE", "SUBJECT");
            for lock in locks.as_array().into_iter().flatten() {
                println!(
                    "{:<10} {:<40} {}",
                    shown(lock, "scope"),
                    shown(lock, "subject"),
                    lock["retryAfterSeconds"]
                );
            }
        }
        UserCommand::Unlock {
            subject,
            address,
            connection,
        } => {
            let scope = if address { "address" } else { "principal" };
            Client::new(&connection)?
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/login-locks/{scope}/{}", encode(&subject)),
                    None,
                    true,
                )
                .await?;
            println!("unlocked {scope} {}", terminal(&subject));
        }
    }
    Ok(())
}

/// Runs `realtime …`.
pub async fn realtime(command: RealtimeCommand) -> Result<(), CliError> {
    match command {
        RealtimeCommand::Events {
            source,
            state,
            before,
            limit,
            output,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let mut query = format!("limit={limit}");
            if let Some(source) = source {
                let id = resolve_system(&client, &source).await?;
                query.push_str(&format!("&source={}", encode(&id)));
            }
            if let Some(state) = state {
                query.push_str(&format!("&state={}", encode(&state)));
            }
            if let Some(before) = before {
                query.push_str(&format!("&before={before}"));
            }
            let list = client
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/realtime/events?{query}"),
                    None,
                    true,
                )
                .await?;
            if output == Output::Json {
                print(&list);
                return Ok(());
            }
            println!(
                "{:>8}  {:<8} {:<8} {:<6} {:>8}  {:<20} ENTITY",
                "SEQ", "STATE", "OP", "TYPE", "ATTEMPTS", "RECEIVED"
            );
            for e in list.as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<8} {:<8} {:<6} {:>8}  {:<20} {}",
                    e["seq"].as_i64().unwrap_or(0),
                    shown(e, "state"),
                    shown(e, "operation"),
                    shown(e, "entityType"),
                    e["attempts"].as_i64().unwrap_or(0),
                    shown(e, "receivedAt"),
                    shown(e, "entityId")
                );
            }
        }
        RealtimeCommand::Retry { seq, connection } => {
            Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/realtime/events/{seq}/retry"),
                    None,
                    true,
                )
                .await?;
            println!("event {seq} queued again");
        }
    }
    Ok(())
}

/// Runs `audit …`.
pub async fn audit(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Export {
            format,
            from,
            to,
            principal,
            action,
            output,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let mut query = format!(
                "format={}",
                match format {
                    ExportFormat::Csv => "csv",
                    ExportFormat::Json => "json",
                }
            );
            for (key, value) in [("from", from), ("to", to), ("principal", principal), ("action", action)] {
                if let Some(v) = value {
                    query.push_str(&format!("&{key}={}", encode(&v)));
                }
            }
            let body = client.get_text(&format!("/api/v1/audit/export?{query}")).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, body.as_bytes())
                        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?;
                    eprintln!("audit log written to {}", path.display());
                }
                None => {
                    use std::io::Write as _;
                    std::io::stdout()
                        .write_all(body.as_bytes())
                        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
                }
            }
        }
    }
    Ok(())
}
