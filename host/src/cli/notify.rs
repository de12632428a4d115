//! `provisio notify list|add|remove|test|deliveries`: notification subscriptions and their delivery log,
//! on the admin API only.

use std::io::BufRead as _;

use super::*;

/// Runs `notify …`.
pub async fn notify(command: NotifyCommand) -> Result<(), CliError> {
    match command {
        NotifyCommand::List { output, connection } => {
            let list = Client::new(&connection)?
                .call(reqwest::Method::GET, "/api/v1/notifications/subscriptions", None, true)
                .await?;
            if output == Output::Json {
                print(&list);
                return Ok(());
            }
            println!("{:<36}  {:<8} {:<36} {:<40} KINDS", "ID", "CHANNEL", "SYSTEM", "TO");
            for s in list.as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<8} {:<36} {:<40} {}",
                    shown(s, "id"),
                    shown(s, "channel"),
                    s["systemId"].as_str().map(terminal).unwrap_or("(all)".into()),
                    terminal(&to(s)),
                    terminal(&strings(&s["kinds"]).join(","))
                );
            }
        }
        NotifyCommand::Add {
            kinds,
            system,
            url,
            recipients,
            secret_stdin,
            backlog_minutes,
            description,
            output,
            connection,
        } => {
            let client = Client::new(&connection)?;
            let mut body = json!({"kinds": kinds});
            match (url, recipients.is_empty()) {
                (Some(url), true) => {
                    body["channel"] = json!("webhook");
                    body["url"] = json!(url);
                }
                (None, false) => {
                    body["channel"] = json!("email");
                    body["recipients"] = json!(recipients);
                }
                _ => {
                    return Err(CliError::usage(
                        "give either --url (a webhook) or --recipient (e-mail, repeatable)",
                    ));
                }
            }
            if secret_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| CliError::usage(format!("cannot read the secret from stdin: {e}")))?;
                body["secret"] = json!(line.trim_end_matches(['\n', '\r']));
            }
            if let Some(system) = system {
                body["systemId"] = json!(resolve_system(&client, &system).await?);
            }
            if let Some(minutes) = backlog_minutes {
                body["backlogMinutes"] = json!(minutes);
            }
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            let created = client
                .call(
                    reqwest::Method::POST,
                    "/api/v1/notifications/subscriptions",
                    Some(body.to_string().into()),
                    true,
                )
                .await?;
            if output == Output::Json {
                print(&created);
                return Ok(());
            }
            println!("subscription {} added", shown(&created, "id"));
            if let Some(secret) = created["secret"].as_str() {
                println!("signing secret (shown once, store it now): {}", terminal(secret));
            }
        }
        NotifyCommand::Remove { id, connection } => {
            Client::new(&connection)?
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/notifications/subscriptions/{}", encode(&id)),
                    None,
                    true,
                )
                .await?;
            println!("removed {}", terminal(&id));
        }
        NotifyCommand::Test { id, output, connection } => {
            let delivery = Client::new(&connection)?
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/notifications/subscriptions/{}/test", encode(&id)),
                    None,
                    true,
                )
                .await?;
            let delivered = delivery["status"] == "delivered";
            if output == Output::Json {
                print(&delivery);
            } else {
                let attempt = delivery["attempts"].as_array().and_then(|a| a.last()).cloned();
                let attempt = attempt.unwrap_or(Value::Null);
                let code = attempt["responseCode"]
                    .as_i64()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into());
                if delivered {
                    println!("delivered (response {code})");
                } else {
                    println!("not delivered (response {code}): {}", shown(&attempt, "error"));
                }
            }
            if !delivered {
                return Err(CliError::new("the test notification was not delivered"));
            }
        }
        NotifyCommand::Deliveries {
            subscription,
            limit,
            output,
            connection,
        } => {
            let mut query = format!("limit={limit}");
            if let Some(s) = subscription {
                query.push_str(&format!("&subscription={}", encode(&s)));
            }
            let list = Client::new(&connection)?
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/notifications/deliveries?{query}"),
                    None,
                    true,
                )
                .await?;
            if output == Output::Json {
                print(&list);
                return Ok(());
            }
            println!(
                "{:<36}  {:<10} {:<8} {:<26} {:>8} {:>5}  {:<24} LAST ERROR",
                "ID", "STATUS", "CHANNEL", "KIND", "ATTEMPTS", "CODE", "CREATED"
            );
            for d in list.as_array().into_iter().flatten() {
                let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
                let last = attempts.last().cloned().unwrap_or(Value::Null);
                println!(
                    "{:<36}  {:<10} {:<8} {:<26} {:>8} {:>5}  {:<24} {}",
                    shown(d, "id"),
                    shown(d, "status"),
                    shown(d, "channel"),
                    shown(d, "kind"),
                    attempts.len(),
                    last["responseCode"]
                        .as_i64()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    shown(d, "createdAt"),
                    shown(&last, "error")
                );
            }
        }
    }
    Ok(())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Where a subscription's notifications go: the URL or the recipients.
fn to(s: &Value) -> String {
    match s["url"].as_str() {
        Some(url) => url.to_string(),
        None => strings(&s["recipients"]).join(","),
    }
}
