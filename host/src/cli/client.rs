//! The admin API client the commands use: the service's URL and credentials (`PROVISIO_URL`,
//! `PROVISIO_USER`), and errors that say which of them to fix.

use super::*;

pub(super) struct Client {
    http: reqwest::Client,
    base: String,
    user: Option<(String, String)>,
}

impl Client {
    pub(super) fn new(c: &Connection) -> Result<Self, CliError> {
        let user = c
            .user
            .as_deref()
            .map(|u| {
                u.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| CliError::usage("PROVISIO_USER (or --user) must be user:password"))
            })
            .transpose()?;
        Ok(Client {
            http: reqwest::Client::new(),
            base: c.server.trim_end_matches('/').to_string(),
            user,
        })
    }

    /// `GET path`, the answer's body as text (an export).
    pub(super) async fn get_text(&self, path: &str) -> Result<String, CliError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some((u, p)) = &self.user {
            request = request.basic_auth(u, Some(p));
        }
        let response = request.send().await.map_err(|e| {
            CliError::new(format!(
                "cannot reach the service at {} (PROVISIO_URL or --server): {e}",
                self.base
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::new(format!("the answer was cut off: {e}")))?;
        if !status.is_success() {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message = value.get("message").and_then(Value::as_str).unwrap_or("no details");
            let hint = match (status.as_u16(), &self.user) {
                (401, None) => "; no credentials were given: set PROVISIO_USER=user:password (or pass --user)",
                (401, Some(_)) => "; the credentials in PROVISIO_USER (or --user) were refused",
                (403, _) => "; the user in PROVISIO_USER (or --user) lacks the permission (admins, or read-audit)",
                _ => "",
            };
            return Err(CliError::new(format!(
                "HTTP {}: {}{hint}",
                status.as_u16(),
                terminal(message)
            )));
        }
        Ok(text)
    }

    pub(super) async fn call(
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
