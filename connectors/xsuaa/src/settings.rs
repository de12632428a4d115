//! The system's properties (SAP Identity Provisioning names), validated once per call.

use provisio_sdk::client::{Dialect, ScimClient};
use provisio_sdk::system::{self, System};
use provisio_sdk::{Config, Error, PropertySpec, Result};

pub use provisio_sdk::system::{AUTHENTICATION, PASSWORD, RATE_LIMIT, TOKEN_URL, URL, USER};
pub const ORIGIN: &str = "xsuaa.origin";
pub const ORIGIN_FILTER: &str = "xsuaa.origin.filter.enabled";
pub const SUPPORT_PATCH: &str = "scim.support.patch.operation";
pub const PATCH_RESPONSE: &str = "xsuaa.patch.response.with.resource";
pub const GROUP_PREFIX: &str = "xsuaa.group.prefix";
pub const USER_UNIQUE: &str = "xsuaa.user.unique.attribute";

/// BTP's documented limit on `/Users` and `/Groups`: 3 requests per second per subaccount.
pub const DEFAULT_RATE_LIMIT: &str = "3";
const DEFAULT_USER_UNIQUE: &str = "userName";
/// UAA's largest page (`userMaxCount`).
pub const MAX_COUNT: u32 = 500;

/// The properties this connector understands, for `describe`.
pub fn specs() -> Vec<PropertySpec> {
    vec![
        PropertySpec::new(URL, "API URL of the Authorization and Trust Management service, e.g. https://api.authentication.eu10.hana.ondemand.com (or a UAA base URL).")
            .required(),
        PropertySpec::new(TOKEN_URL, "OAuth token endpoint of the global account, directory or subaccount, e.g. https://<subdomain>.authentication.eu10.hana.ondemand.com/oauth/token.")
            .required(),
        PropertySpec::new(USER, "OAuth client id of the API credentials (client credentials grant).").required(),
        PropertySpec::new(PASSWORD, "OAuth client secret of the API credentials.").secret().required(),
        PropertySpec::new(AUTHENTICATION, "BasicAuthentication, as SAP documents it; the client credentials above are used for the token.")
            .default_value("BasicAuthentication"),
        PropertySpec::new(ORIGIN, "Origin key(s) of the identity provider, `;`-separated; several origins mean one user per origin. Unset: the server's default origin (sap.default on BTP, uaa on UAA)."),
        PropertySpec::new(ORIGIN_FILTER, "true: read only users whose origin is one of xsuaa.origin (which must then be set).")
            .default_value("false"),
        PropertySpec::new(SUPPORT_PATCH, "true: change group members with PATCH /Groups/{id}; false: with the members API (POST /Groups/{id}/members, DELETE /Groups/{id}/members/{memberId}).")
            .default_value("false"),
        PropertySpec::new(PATCH_RESPONSE, "With the members API: true re-reads the group after a membership change and returns it; false returns nothing.")
            .default_value("false"),
        PropertySpec::new(GROUP_PREFIX, "Role collection name prefix (e.g. XSUAA_): as target only prefixed groups are provisioned, prefix stripped; as source it is prepended (in the transformations)."),
        PropertySpec::new(USER_UNIQUE, "Comma-separated attributes (userName, origin, emails[0].value, externalId) that find an existing user when a create conflicts; one match is updated instead.")
            .default_value(DEFAULT_USER_UNIQUE),
        PropertySpec::new(RATE_LIMIT, "Requests per second the host sends to this system (BTP allows 3 per subaccount on /Users and /Groups).")
            .default_value(DEFAULT_RATE_LIMIT),
        system::header_spec(),
    ]
}

/// The validated settings of one call.
pub struct Settings<'a> {
    pub cfg: &'a Config,
    /// The SDK's SCIM client in UAA's dialect (plain JSON, integer versions, `ips.http.header.*`).
    pub client: ScimClient<'a>,
    /// The configured origins, in order; empty when unset.
    pub origins: Vec<String>,
    /// Whether reads keep only users of [`Settings::origins`].
    pub origin_filter: bool,
    /// Group member changes with `PATCH /Groups/{id}` (else the members API).
    pub patch: bool,
    /// With the members API, re-read the group after a change.
    pub patch_response: bool,
}

impl<'a> std::ops::Deref for Settings<'a> {
    type Target = ScimClient<'a>;

    fn deref(&self) -> &ScimClient<'a> {
        &self.client
    }
}

impl<'a> Settings<'a> {
    /// Validates the properties: `URL` is an http(s) URL, and the origin filter has origins to filter by.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        // UAA's largest page is its `userMaxCount`.
        let client = ScimClient::new(System::parse(cfg)?, Dialect::UAA).max_page(MAX_COUNT);
        let origins = split_origins(cfg.property(ORIGIN).unwrap_or(""));
        let origin_filter = cfg.flag(ORIGIN_FILTER);
        if origin_filter && origins.is_empty() {
            return Err(Error::invalid_config(format!(
                "The property `{ORIGIN_FILTER}` is true, but `{ORIGIN}` is not set: set the origin key(s) to read, or set `{ORIGIN_FILTER}` to false."
            )));
        }
        Ok(Settings {
            cfg,
            client,
            origins,
            origin_filter,
            patch: cfg.flag(SUPPORT_PATCH),
            patch_response: cfg.flag(PATCH_RESPONSE),
        })
    }

    /// The attributes that identify an existing user after a create conflicted.
    pub fn user_unique_attributes(&self) -> Vec<&'a str> {
        self.cfg
            .property_or(USER_UNIQUE, DEFAULT_USER_UNIQUE)
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// The SCIM filter that keeps only users of the configured origins, when the origin filter is on.
    pub fn origin_filter(&self) -> Option<String> {
        if !self.origin_filter {
            return None;
        }
        let clauses: Vec<String> = self
            .origins
            .iter()
            .map(|o| format!("origin eq {}", provisio_sdk::scim::quote(o)))
            .collect();
        Some(clauses.join(" or "))
    }
}

/// Splits an origin list (`idp1;idp2`). Blank parts and `null` (what an unset `%xsuaa.origin%` placeholder
/// becomes in a transformation) are dropped; duplicates are kept once.
pub fn split_origins(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in raw.split(';').map(str::trim) {
        if part.is_empty() || part == "null" || out.iter().any(|o| o == part) {
            continue;
        }
        out.push(part.to_string());
    }
    out
}
