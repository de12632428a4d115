//! The properties most systems share, parsed once per call: `URL`, `Authentication`, `User`, `Password`,
//! `OAuth2TokenServiceURL` and `ips.http.header.*` (SAP Identity Provisioning's names).
//!
//! The host reads the credentials itself (a connector never sees `Password`); the connector validates what
//! it can and says which property is wrong. [`System::parse`] checks `URL`; the other checks are opt-in,
//! because systems differ in what they require:
//!
//! ```
//! # use provisio_sdk::{Config, Result, system::System};
//! # fn f() -> Result<()> {
//! let cfg = Config::new("s")
//!     .with("URL", "https://api.example.com/v1")
//!     .with("Authentication", "BearerToken")
//!     .with("ips.http.header.X-Tenant", "acme");
//! let system = System::parse(&cfg)?;
//! system.check_authentication(&["BasicAuthentication", "BearerToken"], "use BasicAuthentication or BearerToken")?;
//! let request = system.request("GET", "users"); // carries `X-Tenant: acme`
//! assert_eq!(request.header_value("X-Tenant"), Some("acme"));
//! # Ok(()) }
//! ```

use crate::http::Request;
use crate::{Config, Error, PropertySpec, Result};

/// The system's base URL; request paths are relative to it (the `api` upstream).
pub const URL: &str = "URL";
/// How the host authenticates: `BasicAuthentication`, `BearerToken`, `NoAuthentication`, … (ignored by the
/// host when [`TOKEN_URL`] is set: OAuth 2.0 client credentials then).
pub const AUTHENTICATION: &str = "Authentication";
/// The user, or the OAuth client id.
pub const USER: &str = "User";
/// The password, static token or OAuth client secret: a secret the connector never receives.
pub const PASSWORD: &str = "Password";
/// The OAuth 2.0 token endpoint (the `token` upstream); the host fetches client-credentials tokens there.
pub const TOKEN_URL: &str = "OAuth2TokenServiceURL";
/// The prefix of extra headers: `ips.http.header.X-Tenant = acme` sends `X-Tenant: acme` with every request.
pub const HEADER_PREFIX: &str = "ips.http.header.";
/// Requests per second the host sends to the system at most.
pub const RATE_LIMIT: &str = "provisio.rate.limit";

/// The shared properties of one call's system, validated.
#[derive(Debug, Clone)]
pub struct System<'a> {
    /// The call's configuration.
    pub cfg: &'a Config,
    /// `URL`, an `http://` or `https://` URL.
    pub url: &'a str,
    /// `Authentication`, when set.
    pub authentication: Option<&'a str>,
    /// `User`, when set.
    pub user: Option<&'a str>,
    /// `OAuth2TokenServiceURL`, when set.
    pub token_url: Option<&'a str>,
    /// The `ips.http.header.*` headers, name (without the prefix) and value.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> System<'a> {
    /// Reads the shared properties; [`Error::InvalidConfig`] naming `URL` when it is missing or not an
    /// `http://` or `https://` URL.
    pub fn parse(cfg: &'a Config) -> Result<Self> {
        let url = cfg.require(URL)?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(Error::invalid_config(format!(
                "The property `{URL}` must be an http:// or https:// URL, not `{url}`."
            )));
        }
        Ok(System {
            cfg,
            url,
            authentication: cfg.property(AUTHENTICATION),
            user: cfg.property(USER),
            token_url: cfg.property(TOKEN_URL),
            headers: cfg.with_prefix(HEADER_PREFIX).collect(),
        })
    }

    /// Whether the host authenticates with OAuth 2.0 client credentials (`OAuth2TokenServiceURL` is set).
    pub fn oauth(&self) -> bool {
        self.token_url.is_some()
    }

    /// Without OAuth, checks that `Authentication` (when set) is one of `allowed`; `advice` says what to
    /// do instead.
    pub fn check_authentication(&self, allowed: &[&str], advice: impl std::fmt::Display) -> Result<()> {
        match self.authentication {
            Some(auth) if !self.oauth() && !allowed.contains(&auth) => Err(Error::invalid_config(format!(
                "The property `{AUTHENTICATION}` is `{auth}`; {advice}."
            ))),
            _ => Ok(()),
        }
    }

    /// `User`, or [`Error::InvalidConfig`] saying `what` it must be.
    pub fn require_user(&self, what: impl std::fmt::Display) -> Result<&'a str> {
        self.user
            .ok_or_else(|| Error::invalid_config(format!("The property `{USER}` ({what}) is required.")))
    }

    /// The path of `URL` in lower case, without query, fragment and trailing slashes (`/scim/v2`), so that
    /// a connector can tell whether the admin gave the API root or the host.
    pub fn url_path(&self) -> String {
        let lower = self.url.to_ascii_lowercase();
        let rest = lower.split_once("://").map_or(lower.as_str(), |(_, rest)| rest);
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        rest.find('/')
            .map(|i| rest[i..].trim_end_matches('/').to_string())
            .unwrap_or_default()
    }

    /// A request to `path` (relative to `URL`) with the configured `ips.http.header.*` headers.
    pub fn request(&self, method: &str, path: impl Into<String>) -> Request {
        self.with_headers(Request::new(method, path))
    }

    /// Adds the configured `ips.http.header.*` headers to a request.
    pub fn with_headers(&self, mut request: Request) -> Request {
        for (name, value) in &self.headers {
            request = request.header(*name, *value);
        }
        request
    }
}

/// The `ips.http.header.<name>` entry of a descriptor.
pub fn header_spec() -> PropertySpec {
    PropertySpec::new(
        format!("{HEADER_PREFIX}<name>"),
        "An extra HTTP header <name> sent with every request.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shared_properties() {
        let cfg = Config::new("s")
            .with(URL, "HTTPS://Host.example.com/SCIM/v2/?x=1")
            .with(USER, "client")
            .with("ips.http.header.X-A", " 1 ")
            .with("ips.http.header.", "ignored");
        let s = System::parse(&cfg).expect("valid");
        assert_eq!(
            (s.user, s.oauth(), s.url_path().as_str()),
            (Some("client"), false, "/scim/v2")
        );
        assert_eq!(s.headers, [("X-A", "1")]);
        assert_eq!(s.request("GET", "Users").header_value("x-a"), Some("1"));
        let bare = Config::new("s").with(URL, "https://host");
        assert_eq!(System::parse(&bare).expect("valid").url_path(), "");
        for bad in [Config::new("s"), Config::new("s").with(URL, "ftp://x")] {
            assert!(matches!(System::parse(&bad), Err(Error::InvalidConfig(m)) if m.contains("`URL`")));
        }
    }

    #[test]
    fn checks_authentication_unless_oauth() {
        let cfg = Config::new("s").with(URL, "https://h").with(AUTHENTICATION, "Kerberos");
        let s = System::parse(&cfg).expect("valid");
        assert!(matches!(
            s.check_authentication(&["BasicAuthentication"], "use BasicAuthentication"),
            Err(Error::InvalidConfig(m)) if m == "The property `Authentication` is `Kerberos`; use BasicAuthentication."
        ));
        assert!(matches!(s.require_user("the client id"), Err(Error::InvalidConfig(m)) if m.contains("`User`")));
        let oauth = cfg.clone().with(TOKEN_URL, "https://h/token");
        let s = System::parse(&oauth).expect("valid");
        assert!(s.check_authentication(&["BasicAuthentication"], "").is_ok());
    }
}
