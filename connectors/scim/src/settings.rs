//! The system's properties, validated once per call.

use provisio_sdk::client::{Dialect, ScimClient};
use provisio_sdk::system::{self, System};
use provisio_sdk::{Config, EntityKind, PropertySpec, Result};

pub use provisio_sdk::system::{AUTHENTICATION, PASSWORD, TOKEN_URL, URL, USER};
pub const USER_FILTER: &str = "scim.user.filter";
pub const GROUP_FILTER: &str = "scim.group.filter";
pub const SUPPORT_PATCH: &str = "scim.support.patch.operation";
pub const USER_UNIQUE: &str = "scim.user.unique.attribute";
pub const GROUP_UNIQUE: &str = "scim.group.unique.attribute";
pub const CONTENT_TYPE: &str = "scim.content.type";
pub const IF_MATCH_WILDCARD: &str = "scim.include.if.match.wildcard.header";

const DEFAULT_CONTENT_TYPE: &str = "application/scim+json";
const AUTHENTICATIONS: &[&str] = &[
    "NoAuthentication",
    "BasicAuthentication",
    "BearerToken",
    "BearerTokenAuthentication",
];

/// The properties this connector understands, for `describe`.
pub fn specs() -> Vec<PropertySpec> {
    vec![
        PropertySpec::new(URL, "Base URL of the SCIM 2.0 service; `Users` and `Groups` are relative to it (e.g. https://host/scim/v2).")
            .required(),
        PropertySpec::new(
            AUTHENTICATION,
            "NoAuthentication, BasicAuthentication (User, Password) or BearerToken (the token in Password); ignored when OAuth2TokenServiceURL is set.",
        ),
        PropertySpec::new(USER, "User name for BasicAuthentication, or the OAuth client id when OAuth2TokenServiceURL is set."),
        PropertySpec::new(PASSWORD, "Password for BasicAuthentication, the static token for BearerToken, or the OAuth client secret.")
            .secret(),
        PropertySpec::new(TOKEN_URL, "OAuth 2.0 token endpoint: when set, requests carry a client-credentials token for User/Password."),
        PropertySpec::new(USER_FILTER, "SCIM filter for reading users (e.g. active eq true), AND-combined with the filter of each request."),
        PropertySpec::new(GROUP_FILTER, "SCIM filter for reading groups, AND-combined with the filter of each request."),
        PropertySpec::new(SUPPORT_PATCH, "true: send patches as SCIM PATCH; false: read the entity, apply the patch, and write it back with PUT.")
            .default_value("false"),
        PropertySpec::new(USER_UNIQUE, "Comma-separated attributes that find an existing user when a create conflicts; one match is updated instead.")
            .default_value("userName"),
        PropertySpec::new(GROUP_UNIQUE, "Comma-separated attributes that find an existing group when a create conflicts; one match is updated instead.")
            .default_value("displayName"),
        PropertySpec::new(CONTENT_TYPE, "Content-Type of request bodies.").default_value(DEFAULT_CONTENT_TYPE),
        PropertySpec::new(IF_MATCH_WILDCARD, "true: send `If-Match: *` on PUT when the entity carries no meta.version.").default_value("false"),
        system::header_spec(),
    ]
}

/// The validated settings of one call: the SDK's SCIM client and this connector's own properties.
pub struct Settings<'a> {
    pub cfg: &'a Config,
    /// The SCIM client (shared properties, `ips.http.header.*`, media types, `If-Match`).
    pub client: ScimClient<'a>,
    /// `scim.support.patch.operation`.
    pub patch: bool,
}

impl<'a> std::ops::Deref for Settings<'a> {
    type Target = ScimClient<'a>;

    fn deref(&self) -> &ScimClient<'a> {
        &self.client
    }
}

impl<'a> Settings<'a> {
    /// Validates the properties: `URL` is an http(s) URL and `Authentication` a value the host understands.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        let system = System::parse(cfg)?;
        system.check_authentication(
            AUTHENTICATIONS,
            format_args!("use NoAuthentication, BasicAuthentication or BearerToken, or set {TOKEN_URL} for OAuth 2.0 client credentials"),
        )?;
        let client = ScimClient::new(system, Dialect::SCIM2)
            .content_type(cfg.property_or(CONTENT_TYPE, DEFAULT_CONTENT_TYPE))
            .if_match_wildcard(cfg.flag(IF_MATCH_WILDCARD));
        Ok(Settings {
            cfg,
            client,
            patch: cfg.flag(SUPPORT_PATCH),
        })
    }

    /// The configured read filter for this kind.
    pub fn filter(&self, kind: EntityKind) -> Option<&'a str> {
        self.cfg.property(filter_property(kind))
    }

    /// The configured unique attributes for this kind.
    pub fn unique_attributes(&self, kind: EntityKind) -> Vec<&'a str> {
        let (name, default) = match kind {
            EntityKind::User => (USER_UNIQUE, "userName"),
            EntityKind::Group => (GROUP_UNIQUE, "displayName"),
        };
        self.cfg
            .property_or(name, default)
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect()
    }
}

/// The name of the read-filter property of this kind.
pub fn filter_property(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => USER_FILTER,
        EntityKind::Group => GROUP_FILTER,
    }
}
