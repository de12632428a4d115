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
        let (status, text) = self.send(reqwest::Method::GET, path, None, false).await?;
        if !status.is_success() {
            return Err(self.refusal(status, &text, " (admins, or read-audit)"));
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
        let (status, text) = self.send(method, path, body, json_body).await?;
        if !status.is_success() {
            return Err(self.refusal(status, &text, ""));
        }
        // A success without a JSON body (204) reads as null.
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends one request with the credentials; the answer's status and body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        json_body: bool,
    ) -> Result<(reqwest::StatusCode, String), CliError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some((u, p)) = &self.user {
            request = request.basic_auth(u, Some(p));
        }
        if let Some(body) = body {
            let content_type = if json_body {
                "application/json"
            } else {
                "application/wasm"
            };
            request = request.header("content-type", content_type).body(body);
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
        Ok((status, text))
    }

    /// The error of a refused request: the service's message and which setting to fix.
    fn refusal(&self, status: reqwest::StatusCode, body: &str, permission_hint: &str) -> CliError {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let message = value.get("message").and_then(Value::as_str).unwrap_or("no details");
        let hint = match (status.as_u16(), &self.user) {
            (401, None) => "; no credentials were given: set PROVISIO_USER=user:password (or pass --user)".to_string(),
            (401, Some(_)) => "; the credentials in PROVISIO_USER (or --user) were refused".to_string(),
            (403, _) => format!("; the user in PROVISIO_USER (or --user) lacks the permission{permission_hint}"),
            _ => String::new(),
        };
        CliError::new(format!("HTTP {}: {}{hint}", status.as_u16(), terminal(message)))
    }
}
