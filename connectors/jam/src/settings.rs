//! The system's properties, validated once per call, and where the SCIM resources live.

use provisio_sdk::client::{Dialect, ScimClient};
use provisio_sdk::system::System;
use provisio_sdk::{Config, Error, PropertySpec, Result};

pub use provisio_sdk::system::{AUTHENTICATION, PASSWORD, RATE_LIMIT, TOKEN_URL, URL, USER};
pub const PROXY_TYPE: &str = "ProxyType";
pub const GROUP_PREFIX: &str = "jam.group.prefix";

/// Where Jam serves SCIM 2.0, relative to the Jam host (next to the documented token endpoint
/// `/api/v1/auth/token`; the resource path itself is not in SAP's documentation).
pub const SCIM_PATH: &str = "api/v1/scim";

/// 180 requests a minute: under Jam's documented 200 a minute (and, at most 3 600 an hour of
/// provisioning bursts, far from 13 000 an hour in practice).
pub const DEFAULT_RATE: &str = "3";

/// Jam's own maximum page size (`count`).
pub const MAX_PAGE: u32 = 100;

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

/// The validated settings of one call: the SDK's SCIM client, rooted at Jam's SCIM path.
pub struct Settings<'a> {
    pub cfg: &'a Config,
    /// The SCIM client.
    pub client: ScimClient<'a>,
}

impl<'a> std::ops::Deref for Settings<'a> {
    type Target = ScimClient<'a>;

    fn deref(&self) -> &ScimClient<'a> {
        &self.client
    }
}

impl<'a> Settings<'a> {
    /// Validates the properties: `URL` is an http(s) URL and the OAuth client is configured.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        let url = cfg.require(URL)?;
        let system = System::parse(cfg).map_err(|_| {
            Error::invalid_config(format!(
                "The property `{URL}` must be the Jam host as an https:// URL (e.g. https://jam4.sapjam.com), not `{url}`."
            ))
        })?;
        if !system.oauth() {
            return Err(Error::invalid_config(format!(
                "The property `{TOKEN_URL}` is required: SAP Jam's SCIM API takes OAuth tokens from https://<jam-host>/api/v1/auth/token."
            )));
        }
        system.require_user("the OAuth client key of the Jam \"SCIM API Client\"")?;
        // Admins may give the SCIM base itself (https://host/api/v1/scim) instead of the host.
        let root = if system.url_path().ends_with(SCIM_PATH) {
            ""
        } else {
            SCIM_PATH
        };
        let client = ScimClient::new(system, Dialect::SCIM2)
            .root(root)
            .named("SAP Jam")
            .max_page(MAX_PAGE);
        Ok(Settings { cfg, client })
    }
}
