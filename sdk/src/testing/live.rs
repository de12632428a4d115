//! Record mode's transport: plays the host's part natively. It joins the connector's relative path to the
//! system's URL, drops the headers the host owns, attaches the credentials (Basic, a bearer token, or an
//! OAuth2 client-credentials token it fetches once) and sends the request with a blocking client.
//!
//! The system comes from environment variables named after the SAP properties a system has:
//!
//! | variable | property |
//! |---|---|
//! | `PROVISIO_RECORD_URL` | `URL` (the `api` upstream), required |
//! | `PROVISIO_RECORD_TOKEN_URL` | `OAuth2TokenServiceURL` (the `token` upstream); set, it means client credentials |
//! | `PROVISIO_RECORD_AUTHENTICATION` | `Authentication`: `BasicAuthentication`, `BearerToken` or `NoAuthentication` |
//! | `PROVISIO_RECORD_USER` | `User` (the client id with a token URL) |
//! | `PROVISIO_RECORD_PASSWORD` | `Password` (the token with `BearerToken`, the client secret with a token URL) |

#[cfg(not(feature = "record"))]
pub(super) use disabled::Live;
#[cfg(feature = "record")]
pub(super) use enabled::Live;

/// The `api` upstream's base URL.
pub(super) const URL_VAR: &str = "PROVISIO_RECORD_URL";
/// The `token` upstream's base URL; set, it means OAuth2 client credentials.
pub(super) const TOKEN_URL_VAR: &str = "PROVISIO_RECORD_TOKEN_URL";
/// How requests are authenticated.
pub(super) const AUTHENTICATION_VAR: &str = "PROVISIO_RECORD_AUTHENTICATION";
/// The user, or client id.
pub(super) const USER_VAR: &str = "PROVISIO_RECORD_USER";
/// The password, token or client secret.
pub(super) const PASSWORD_VAR: &str = "PROVISIO_RECORD_PASSWORD";

#[cfg(not(feature = "record"))]
mod disabled {
    use crate::bindings::provisio::connector::host::HttpResponse;
    use crate::http::HostError;
    use crate::testing::SentRequest;

    /// Without the `record` feature there is no client: asking to record says how to get one.
    pub(in crate::testing) enum Live {}

    impl Live {
        pub(in crate::testing) fn from_vars(_: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
            Err(
                "record mode needs the `record` feature of provisio-sdk (on by default; it was turned off \
                 with default-features = false)"
                    .into(),
            )
        }

        pub(in crate::testing) fn describe(&self) -> String {
            match *self {}
        }

        pub(in crate::testing) fn secrets(&self) -> Vec<String> {
            match *self {}
        }

        pub(in crate::testing) fn send(&mut self, _: &SentRequest) -> Result<HttpResponse, HostError> {
            match *self {}
        }
    }
}

#[cfg(feature = "record")]
mod enabled {
    use std::time::Duration;

    use crate::http::is_host_owned_header;

    use base64::Engine as _;

    use super::{AUTHENTICATION_VAR, PASSWORD_VAR, TOKEN_URL_VAR, URL_VAR, USER_VAR};
    use crate::bindings::provisio::connector::host::HttpResponse;
    use crate::http::HostError;
    use crate::testing::SentRequest;

    /// How long one request may take, connection to last byte.
    const TIMEOUT: Duration = Duration::from_secs(60);
    /// The largest answer read.
    const MAX_ANSWER: u64 = 32 << 20;

    enum Auth {
        None,
        Basic { user: String, password: String },
        Bearer(String),
        ClientCredentials { client_id: String, client_secret: String },
    }

    /// The real system a recording is made from.
    pub(in crate::testing) struct Live {
        agent: ureq::Agent,
        api: String,
        token: Option<String>,
        auth: Auth,
        /// The client-credentials token, once fetched.
        fetched: Option<String>,
    }

    impl Live {
        /// The system the variables describe, read through `var` (the environment, or a test's map).
        pub(in crate::testing) fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
            let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            let api = get(URL_VAR).ok_or_else(|| format!("{URL_VAR} must give the system's URL"))?;
            check_url(URL_VAR, &api)?;
            let token = get(TOKEN_URL_VAR);
            if let Some(t) = &token {
                check_url(TOKEN_URL_VAR, t)?;
            }
            let user = get(USER_VAR).unwrap_or_default();
            let password = var(PASSWORD_VAR).unwrap_or_default();
            // The host's rules for the SAP properties (a token URL means client credentials).
            let auth = if token.is_some() {
                if user.is_empty() || password.is_empty() {
                    return Err(format!(
                        "{TOKEN_URL_VAR} is set, so {USER_VAR} (client id) and {PASSWORD_VAR} (client secret) are required"
                    ));
                }
                Auth::ClientCredentials {
                    client_id: user,
                    client_secret: password,
                }
            } else {
                match get(AUTHENTICATION_VAR).as_deref() {
                    Some("NoAuthentication") => Auth::None,
                    Some("BasicAuthentication") if user.is_empty() => {
                        return Err(format!(
                            "{AUTHENTICATION_VAR} is BasicAuthentication, so {USER_VAR} is required"
                        ));
                    }
                    Some("BasicAuthentication") => Auth::Basic { user, password },
                    Some("BearerToken" | "BearerTokenAuthentication") if password.is_empty() => {
                        return Err(format!(
                            "{AUTHENTICATION_VAR} is BearerToken, so {PASSWORD_VAR} (the token) is required"
                        ));
                    }
                    Some("BearerToken" | "BearerTokenAuthentication") => Auth::Bearer(password),
                    Some(other) => {
                        return Err(format!(
                            "{AUTHENTICATION_VAR} {other:?} is unknown; use NoAuthentication, BasicAuthentication or \
                             BearerToken, or set {TOKEN_URL_VAR}"
                        ));
                    }
                    None if !user.is_empty() => Auth::Basic { user, password },
                    None => Auth::None,
                }
            };
            let agent = ureq::Agent::config_builder()
                // Every status is an answer to record, not an error.
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                // The host follows redirects within the upstream with the credentials; so does this.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
                .build()
                .into();
            Ok(Live {
                agent,
                api,
                token,
                auth,
                fetched: None,
            })
        }

        /// Where the requests go and how they are authenticated (no secret).
        pub(in crate::testing) fn describe(&self) -> String {
            let how = match &self.auth {
                Auth::None => "no authentication".to_string(),
                Auth::Basic { user, .. } => format!("Basic authentication as {user}"),
                Auth::Bearer(_) => "a bearer token".to_string(),
                Auth::ClientCredentials { client_id, .. } => format!("OAuth2 client credentials of {client_id}"),
            };
            format!("{} with {how}", self.api)
        }

        /// Every credential literal, for the redaction of the recording.
        pub(in crate::testing) fn secrets(&self) -> Vec<String> {
            let mut out = Vec::new();
            match &self.auth {
                Auth::None => {}
                Auth::Basic { user, password } => {
                    out.push(password.clone());
                    out.push(basic(user, password));
                }
                Auth::Bearer(token) => out.push(token.clone()),
                Auth::ClientCredentials {
                    client_id,
                    client_secret,
                } => {
                    out.push(client_secret.clone());
                    out.push(basic(client_id, client_secret));
                }
            }
            out.extend(self.fetched.clone());
            out
        }

        /// Sends one connector request as the host would.
        pub(in crate::testing) fn send(&mut self, req: &SentRequest) -> Result<HttpResponse, HostError> {
            let base = match req.upstream.as_str() {
                crate::http::API => self.api.clone(),
                crate::http::TOKEN => self
                    .token
                    .clone()
                    .ok_or_else(|| HostError::Denied(format!("the system has no token URL ({TOKEN_URL_VAR})")))?,
                other => {
                    return Err(HostError::Denied(format!(
                        "unknown upstream {other:?}; use \"api\" or \"token\""
                    )));
                }
            };
            let url = join(&base, &req.path).map_err(HostError::Denied)?;
            let mut builder = ureq::http::Request::builder()
                .method(req.method.to_ascii_uppercase().as_str())
                .uri(&url);
            for (name, value) in &req.headers {
                if !is_host_owned_header(name) {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            // As on the host: only the system's API gets the credentials.
            if req.upstream == crate::http::API
                && let Some(authorization) = self.authorization()?
            {
                builder = builder.header("authorization", authorization);
            }
            let sent = match &req.body {
                Some(body) => builder.body(body.clone()).map(|r| self.agent.run(r)),
                None => builder.body(()).map(|r| self.agent.run(r)),
            };
            let mut response = sent
                .map_err(|e| HostError::Denied(format!("the request is not valid HTTP: {e}")))?
                .map_err(|e| classify(e, &url))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_vec()
                .map_err(|e| classify(e, &url))?;
            Ok(HttpResponse { status, headers, body })
        }

        fn authorization(&mut self) -> Result<Option<String>, HostError> {
            Ok(match &self.auth {
                Auth::None => None,
                Auth::Basic { user, password } => Some(format!("Basic {}", basic(user, password))),
                Auth::Bearer(token) => Some(format!("Bearer {token}")),
                Auth::ClientCredentials {
                    client_id,
                    client_secret,
                } => {
                    if self.fetched.is_none() {
                        let token_url = self.token.clone().unwrap_or_default();
                        self.fetched = Some(fetch_token(&self.agent, &token_url, client_id, client_secret)?);
                    }
                    self.fetched.as_ref().map(|t| format!("Bearer {t}"))
                }
            })
        }
    }

    fn basic(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    fn check_url(var: &str, url: &str) -> Result<(), String> {
        let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
            return Err(format!("{var} must be an http or https URL, not {url:?}"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{var} has no host: {url:?}"));
        }
        // Credentials in the URL would be written into nothing, but they belong in the variables.
        if authority.contains('@') {
            return Err(format!(
                "{var} must not carry credentials; give them in {USER_VAR} and {PASSWORD_VAR}"
            ));
        }
        Ok(())
    }

    /// The host's rule: a relative path (with its query) under the base, never another host.
    fn join(base: &str, relative: &str) -> Result<String, String> {
        if relative.starts_with("//") {
            return Err(format!("path {relative:?} names another host"));
        }
        let relative = relative.strip_prefix('/').unwrap_or(relative);
        let path = relative.split(['?', '#']).next().unwrap_or_default();
        if path.split('/').next().is_some_and(|first| first.contains(':')) {
            return Err(format!(
                "path {relative:?} is an absolute URL; connectors send relative paths only"
            ));
        }
        if path.split('/').any(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e")) {
            return Err(format!("path {relative:?} leaves the upstream with a dot segment"));
        }
        Ok(format!("{}/{relative}", base.trim_end_matches('/')))
    }

    fn fetch_token(agent: &ureq::Agent, token_url: &str, id: &str, secret: &str) -> Result<String, HostError> {
        let request = ureq::http::Request::post(token_url)
            .header("authorization", format!("Basic {}", basic(id, secret)))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .map_err(|e| HostError::AuthFailed(format!("the token URL is not valid: {e}")))?;
        let mut response = agent
            .run(request)
            .map_err(|e| HostError::AuthFailed(format!("the token endpoint could not be reached: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_vec()
            .unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !(200..300).contains(&status) {
            let said = answer
                .get("error_description")
                .or_else(|| answer.get("error"))
                .and_then(|v| v.as_str())
                .unwrap_or("no reason given");
            return Err(HostError::AuthFailed(format!(
                "the token endpoint refused the client credentials (HTTP {status}: {said})"
            )));
        }
        answer
            .get("access_token")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| HostError::AuthFailed("the token endpoint answered without an access_token".into()))
    }

    /// A client failure as the host reports it.
    fn classify(e: ureq::Error, url: &str) -> HostError {
        match e {
            ureq::Error::Timeout(_) => HostError::Timeout(format!("no answer from {url} within {TIMEOUT:?}")),
            ureq::Error::BodyExceedsLimit(_) => {
                HostError::TooLarge(format!("the answer from {url} is larger than {MAX_ANSWER} bytes"))
            }
            ureq::Error::BadUri(why) => HostError::Denied(format!("{url} is not a valid URL: {why}")),
            other => HostError::Unreachable(format!("{url}: {other}")),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn joins_like_the_host() {
            let base = "http://h/v1/";
            assert_eq!(join(base, "users?limit=1").as_deref(), Ok("http://h/v1/users?limit=1"));
            assert_eq!(join(base, "/users").as_deref(), Ok("http://h/v1/users"));
            assert!(join(base, "//evil/x").is_err());
            assert!(join(base, "http://evil/x").is_err());
            assert!(join(base, "a/../../x").is_err());
        }

        #[test]
        fn reads_the_system_from_the_variables() {
            let vars = |pairs: &'static [(&'static str, &'static str)]| {
                move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
            };
            let err = |pairs| Live::from_vars(&vars(pairs)).err().unwrap_or_default();
            assert!(err(&[]).contains("PROVISIO_RECORD_URL"));
            assert!(err(&[(URL_VAR, "ftp://h")]).contains("http or https"));
            assert!(err(&[(URL_VAR, "http://u:p@h")]).contains("must not carry credentials"));
            assert!(err(&[(URL_VAR, "http://h"), (AUTHENTICATION_VAR, "BearerToken")]).contains("PASSWORD"));
            assert!(err(&[(URL_VAR, "http://h"), (TOKEN_URL_VAR, "http://t")]).contains("client id"));
            let live = Live::from_vars(&vars(&[
                (URL_VAR, "http://h/v1"),
                (USER_VAR, "me"),
                (PASSWORD_VAR, "pw-1234"),
            ]))
            .expect("basic");
            assert_eq!(live.describe(), "http://h/v1 with Basic authentication as me");
            assert!(live.secrets().contains(&"pw-1234".to_string()));
        }
    }
}
