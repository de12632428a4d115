//! The system's properties, validated once per call, and where the SCIM resources live.

use provisio_sdk::http::Request;
use provisio_sdk::{Config, EntityKind, Error, PropertySpec, Result};

pub const URL: &str = "URL";
pub const AUTHENTICATION: &str = "Authentication";
pub const USER: &str = "User";
pub const PASSWORD: &str = "Password";
pub const TOKEN_URL: &str = "OAuth2TokenServiceURL";
pub const PROXY_TYPE: &str = "ProxyType";
pub const GROUP_PREFIX: &str = "jam.group.prefix";
pub const RATE_LIMIT: &str = "provisio.rate.limit";

/// Where Jam serves SCIM 2.0, relative to the Jam host (next to the documented token endpoint
/// `/api/v1/auth/token`; the resource path itself is not in SAP's documentation).
pub const SCIM_PATH: &str = "api/v1/scim";

/// 180 requests a minute: under Jam's documented 200 a minute (and, at most 3 600 an hour of
/// provisioning bursts, far from 13 000 an hour in practice).
pub const DEFAULT_RATE: &str = "3";

/// Jam's own maximum page size (`count`).
pub const MAX_PAGE: u32 = 100;

const CONTENT_TYPE: &str = "application/scim+json";
const ACCEPT: &str = "application/scim+json, application/json";

/// The properties this connector understands, for `describe`.
pub fn specs() -> Vec<PropertySpec> {
    vec![
        PropertySpec::new(URL, "The SAP Jam host, e.g. https://jam4.sapjam.com; SCIM users and groups are served under /api/v1/scim.")
            .required(),
        PropertySpec::new(AUTHENTICATION, "BasicAuthentication, as SAP documents it: User and Password are the OAuth client key and secret.")
            .default_value("BasicAuthentication"),
        PropertySpec::new(USER, "The key of the Jam OAuth client (\"SCIM API Client\" under Integrations > OAuth Clients).").required(),
        PropertySpec::new(PASSWORD, "The secret of the Jam OAuth client.").required().secret(),
        PropertySpec::new(TOKEN_URL, "The Jam token endpoint, https://<jam-host>/api/v1/auth/token; the host fetches client-credentials tokens there.")
            .required(),
        PropertySpec::new(PROXY_TYPE, "Internet (OnPremise is not supported).").default_value("Internet"),
        PropertySpec::new(GROUP_PREFIX, "Only groups whose display name starts with this prefix are provisioned (target); read groups get it prepended (source)."),
        PropertySpec::new(RATE_LIMIT, "Requests per second the host sends at most; Jam allows 200 a minute and 13,000 an hour.")
            .default_value(DEFAULT_RATE),
    ]
}

/// The validated settings of one call.
pub struct Settings<'a> {
    pub cfg: &'a Config,
    /// The path prefix of the SCIM resources relative to `URL` (empty when `URL` already ends in it).
    prefix: &'static str,
}

impl<'a> Settings<'a> {
    /// Validates the properties: `URL` is an http(s) URL and the OAuth client is configured.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        let url = cfg.require(URL)?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(Error::invalid_config(format!(
                "The property `{URL}` must be the Jam host as an https:// URL (e.g. https://jam4.sapjam.com), not `{url}`."
            )));
        }
        if cfg.property(TOKEN_URL).is_none() {
            return Err(Error::invalid_config(format!(
                "The property `{TOKEN_URL}` is required: SAP Jam's SCIM API takes OAuth tokens from https://<jam-host>/api/v1/auth/token."
            )));
        }
        if cfg.property(USER).is_none() {
            return Err(Error::invalid_config(format!(
                "The property `{USER}` (the OAuth client key of the Jam \"SCIM API Client\") is required."
            )));
        }
        // Admins may give the SCIM base itself (https://host/api/v1/scim) instead of the host.
        let path = lower
            .split_once("://")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, path)| path.split(['?', '#']).next().unwrap_or_default())
            .unwrap_or_default()
            .trim_end_matches('/');
        let prefix = if path.ends_with(SCIM_PATH) { "" } else { SCIM_PATH };
        Ok(Settings { cfg, prefix })
    }

    /// The path of a SCIM resource relative to `URL`: `api/v1/scim/Users`, say.
    pub fn path(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// The collection path of a kind.
    pub fn collection(&self, kind: EntityKind) -> String {
        self.path(kind.scim_endpoint())
    }

    /// A request with the SCIM `Accept` header.
    pub fn request(&self, method: &str, path: impl Into<String>) -> Request {
        Request::new(method, path).header("Accept", ACCEPT)
    }

    /// A request with a SCIM JSON body.
    pub fn request_with(&self, method: &str, path: impl Into<String>, body: &serde_json::Value) -> Request {
        self.request(method, path)
            .header("Content-Type", CONTENT_TYPE)
            .json(body)
    }
}
