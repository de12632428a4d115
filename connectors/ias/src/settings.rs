//! The system's properties, validated once per call.
//!
//! SAP names the properties of an Identity Authentication system `ias.*` for SCIM API version 2 and
//! `scim.*` for version 1 (list-of-properties-d6f3577, identity-authentication-e4e25f1). Both spellings are
//! accepted for either version; the one of the configured version wins when both are set.

use provisio_sdk::client::{Dialect, Paging as ClientPaging, ScimClient};
use provisio_sdk::system::{self, System};
use provisio_sdk::{Config, EntityKind, Error, PropertySpec, Result};

pub use provisio_sdk::system::{AUTHENTICATION, PASSWORD, RATE_LIMIT, TOKEN_URL, URL, USER};
pub const API_VERSION: &str = "ias.api.version";
pub const PAGING: &str = "ias.paging.mode";
pub const USER_FILTER: &str = "ias.user.filter";
pub const GROUP_FILTER: &str = "ias.group.filter";
pub const SUPPORT_PATCH: &str = "ias.support.patch.operation";
pub const USER_UNIQUE: &str = "ias.user.unique.attribute";
pub const GROUP_UNIQUE: &str = "ias.group.unique.attribute";
pub const CONFLICT_RESOLUTION: &str = "ias.user.automatic.conflict.resolution";
pub const UPDATE_INSTEAD_DELETE: &str = "ias.user.update.instead.delete";
pub const MEMBERS_THRESHOLD: &str = "ias.patch.group.members.above.threshold";
pub const CONTENT_TYPE: &str = "ias.content.type";
pub const IF_MATCH_WILDCARD: &str = "ias.include.if.match.wildcard.header";

/// IAS serves at most 100 resources a page (index and id paging alike).
pub const MAX_PAGE: u32 = 100;
/// IAS removes at most 50 group members per PATCH request (list-of-properties-d6f3577).
pub const MAX_REMOVALS_PER_PATCH: usize = 50;
/// The largest (and default) `ias.patch.group.members.above.threshold`.
pub const MAX_MEMBERS_THRESHOLD: usize = 20_000;
/// SAP's default unique attribute of groups for SCIM API version 2.
pub const DEFAULT_GROUP_UNIQUE_V2: &str = "['urn:sap:cloud:scim:schemas:extension:custom:2.0:Group']['name']";

const DEFAULT_CONTENT_TYPE: &str = "application/scim+json";
const AUTHENTICATIONS: &[&str] = &["BasicAuthentication", "BearerToken", "BearerTokenAuthentication"];

/// The properties this connector understands, for `describe`.
pub fn specs() -> Vec<PropertySpec> {
    vec![
        PropertySpec::new(URL, "The Identity Authentication tenant URL, e.g. https://<tenant>.accounts.ondemand.com; /scim (version 2) or /service/scim (version 1) is appended.")
            .required(),
        PropertySpec::new(AUTHENTICATION, "BasicAuthentication: the client id and secret of a technical user (System Administrator with Manage Users and Manage Groups) in User and Password.")
            .default_value("BasicAuthentication"),
        PropertySpec::new(USER, "The client id of the technical user (or the OAuth client id when OAuth2TokenServiceURL is set)."),
        PropertySpec::new(PASSWORD, "The client secret of the technical user.").secret(),
        PropertySpec::new(TOKEN_URL, "Optional OAuth 2.0 token endpoint (https://<tenant>.accounts.ondemand.com/oauth2/token): requests then carry a client-credentials token for User/Password."),
        PropertySpec::new(API_VERSION, "1: Identity Authentication SCIM API (/service/scim, legacy ids such as P000123, deprecated); 2: Identity Directory SCIM API (/scim, UUIDs).")
            .default_value("2"),
        PropertySpec::new(PAGING, "Provisio extension: `id` pages with startId=initial and nextId (recommended by SAP); `index` pages with startIndex and count.")
            .default_value("id"),
        PropertySpec::new(USER_FILTER, "SCIM filter for reading users (e.g. userName eq \"x\" or addresses.country eq \"FR\"), AND-combined with the filter of each request; scim.user.filter for version 1."),
        PropertySpec::new(GROUP_FILTER, "SCIM filter for reading groups (e.g. displayName eq \"a\" or displayName eq \"b\"), AND-combined with the filter of each request; scim.group.filter for version 1."),
        PropertySpec::new(SUPPORT_PATCH, "true: user patches are sent as SCIM PATCH (version 2); false: the user is read, patched and written back with PUT. Group membership always goes through PATCH in version 2.")
            .default_value("false"),
        PropertySpec::new(USER_UNIQUE, "Comma-separated attributes that find an existing user when a create conflicts (userName, emails[0].value, externalId, …); one match is overwritten.")
            .default_value("userName"),
        PropertySpec::new(GROUP_UNIQUE, "Comma-separated attributes that find an existing group when a create conflicts; one match is overwritten. Version 1 default: displayName.")
            .default_value(DEFAULT_GROUP_UNIQUE_V2),
        PropertySpec::new(CONFLICT_RESOLUTION, "true: a user create that conflicts (409) overwrites the user found by ias.user.unique.attribute; false: the conflict is reported.")
            .default_value("true"),
        PropertySpec::new(UPDATE_INSTEAD_DELETE, "true: deleting a user deactivates it instead (PATCH active=false in version 2; GET and PUT in version 1).")
            .default_value("false"),
        PropertySpec::new(MEMBERS_THRESHOLD, "Groups with more members than this (1 to 20000) are written with batched PATCH requests of at most this many additions; removals are always batched by 50.")
            .default_value("20000"),
        PropertySpec::new(CONTENT_TYPE, "Content-Type of request bodies.").default_value(DEFAULT_CONTENT_TYPE),
        PropertySpec::new(IF_MATCH_WILDCARD, "true: send `If-Match: *` on PUT when the entity carries no meta.version.").default_value("false"),
        PropertySpec::new(RATE_LIMIT, "Requests per second towards the tenant (IAS answers 429 above about 200 requests a minute).")
            .default_value("3"),
        system::header_spec(),
    ]
}

/// The SCIM API version of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Identity Authentication SCIM API, `/service/scim`, legacy ids, no PATCH.
    V1,
    /// Identity Directory SCIM API, `/scim`, UUIDs.
    V2,
}

/// How `read` pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `startId=initial`, then each answer's `nextId` until `end`.
    Id,
    /// `startIndex` and `count`.
    Index,
}

/// The validated settings of one call.
pub struct Settings<'a> {
    /// The call's configuration.
    pub cfg: &'a Config,
    /// The SDK's SCIM client: the version's SCIM root, media types, paging, `If-Match`.
    pub client: ScimClient<'a>,
    /// `ias.api.version`.
    pub api: Api,
    /// `ias.paging.mode`.
    pub paging: Paging,
    /// `ias.support.patch.operation`.
    pub patch: bool,
    /// `ias.user.automatic.conflict.resolution`.
    pub conflict_resolution: bool,
    /// `ias.user.update.instead.delete`.
    pub update_instead_delete: bool,
    /// Members per PATCH addition batch, and the member count above which groups are written by PATCH.
    pub members_threshold: usize,
}

impl<'a> std::ops::Deref for Settings<'a> {
    type Target = ScimClient<'a>;

    fn deref(&self) -> &ScimClient<'a> {
        &self.client
    }
}

impl<'a> Settings<'a> {
    /// Validates the properties.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        let system = System::parse(cfg)?;
        system.check_authentication(
            AUTHENTICATIONS,
            format_args!("Identity Authentication needs BasicAuthentication (client id and secret in User and Password), or set {TOKEN_URL}"),
        )?;
        let api = match cfg.property(API_VERSION) {
            None | Some("2") => Api::V2,
            Some("1") => Api::V1,
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "The property `{API_VERSION}` is `{other}`; use 1 (Identity Authentication SCIM API) or 2 (Identity Directory SCIM API)."
                )));
            }
        };
        let paging = match cfg.property(PAGING).map(str::to_ascii_lowercase).as_deref() {
            None | Some("id") => Paging::Id,
            Some("index") => Paging::Index,
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "The property `{PAGING}` is `{other}`; use id or index."
                )));
            }
        };
        let path = system.url_path();
        let root = match api {
            Api::V1 if path.ends_with("/service/scim") => "",
            Api::V1 => "service/scim",
            Api::V2 if path.ends_with("/scim") => "",
            Api::V2 => "scim",
        };
        let client = ScimClient::new(system, Dialect::IAS)
            .root(root)
            .named("Identity Authentication")
            .max_page(MAX_PAGE)
            .paging(match paging {
                Paging::Id => ClientPaging::Id,
                Paging::Index => ClientPaging::Index,
            });
        let settings = Settings {
            cfg,
            client,
            api,
            paging,
            patch: false,
            conflict_resolution: true,
            update_instead_delete: false,
            members_threshold: MAX_MEMBERS_THRESHOLD,
        };
        let members_threshold = match settings.property(MEMBERS_THRESHOLD) {
            None => MAX_MEMBERS_THRESHOLD,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(MAX_MEMBERS_THRESHOLD),
                _ => {
                    return Err(Error::invalid_config(format!(
                        "The property `{MEMBERS_THRESHOLD}` is `{v}`; use a whole number from 1 to {MAX_MEMBERS_THRESHOLD}."
                    )));
                }
            },
        };
        let content_type = settings.property(CONTENT_TYPE).unwrap_or(DEFAULT_CONTENT_TYPE);
        let if_match_wildcard = settings.flag(IF_MATCH_WILDCARD, false);
        Ok(Settings {
            patch: settings.flag(SUPPORT_PATCH, false),
            conflict_resolution: settings.flag(CONFLICT_RESOLUTION, true),
            update_instead_delete: settings.flag(UPDATE_INSTEAD_DELETE, false),
            members_threshold,
            client: settings
                .client
                .clone()
                .content_type(content_type)
                .if_match_wildcard(if_match_wildcard),
            ..settings
        })
    }

    /// The value of an `ias.*` property, also under its `scim.*` name (SAP's name for version 1); the
    /// spelling of the configured version wins.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        let alias = name.strip_prefix("ias.").map(|rest| format!("scim.{rest}"));
        let alias = alias.as_deref();
        let (first, second) = match self.api {
            Api::V2 => (Some(name), alias),
            Api::V1 => (alias, Some(name)),
        };
        first
            .and_then(|n| self.cfg.property(n))
            .or_else(|| second.and_then(|n| self.cfg.property(n)))
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        match self.property(name) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        }
    }

    /// `Users` or `Groups` under the version's SCIM root.
    pub fn endpoint(&self, kind: EntityKind) -> String {
        self.client.collection(kind)
    }

    /// The configured read filter for this kind.
    pub fn filter(&self, kind: EntityKind) -> Option<&'a str> {
        self.property(filter_property(kind))
    }

    /// The configured unique attributes for this kind.
    pub fn unique_attributes(&self, kind: EntityKind) -> Vec<&'a str> {
        let (name, default) = match (kind, self.api) {
            (EntityKind::User, _) => (USER_UNIQUE, "userName"),
            (EntityKind::Group, Api::V2) => (GROUP_UNIQUE, DEFAULT_GROUP_UNIQUE_V2),
            (EntityKind::Group, Api::V1) => (GROUP_UNIQUE, "displayName"),
        };
        split_attributes(self.property(name).unwrap_or(default))
    }
}

/// Splits a comma-separated attribute list; commas inside brackets (`['a','b']`) do not split.
fn split_attributes(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out.into_iter().map(str::trim).filter(|a| !a.is_empty()).collect()
}

/// The name of the read-filter property of this kind.
pub fn filter_property(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => USER_FILTER,
        EntityKind::Group => GROUP_FILTER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_attribute_lists_outside_brackets() {
        assert_eq!(
            split_attributes("userName, emails[0].value"),
            vec!["userName", "emails[0].value"]
        );
        assert_eq!(
            split_attributes("['urn:a:Group']['type'],['urn:a:Group']['name']"),
            vec!["['urn:a:Group']['type']", "['urn:a:Group']['name']"]
        );
    }

    #[test]
    fn version_picks_root_and_property_spelling() {
        let cfg = Config::new("t")
            .with(URL, "https://t.example.com")
            .with("scim.user.filter", "a eq \"1\"");
        let s = Settings::new(&cfg).unwrap();
        assert_eq!(s.api, Api::V2);
        assert_eq!(s.endpoint(EntityKind::User), "scim/Users");
        assert_eq!(s.filter(EntityKind::User), Some("a eq \"1\""));
        let cfg = cfg.with(API_VERSION, "1").with(USER_FILTER, "b eq \"2\"");
        let s = Settings::new(&cfg).unwrap();
        assert_eq!(s.endpoint(EntityKind::Group), "service/scim/Groups");
        assert_eq!(s.filter(EntityKind::User), Some("a eq \"1\""));
        let cfg = Config::new("t").with(URL, "https://t.example.com/scim/");
        assert_eq!(Settings::new(&cfg).unwrap().endpoint(EntityKind::User), "Users");
    }

    #[test]
    fn refuses_bad_values() {
        let base = Config::new("t").with(URL, "https://t.example.com");
        for (name, value) in [
            (API_VERSION, "3"),
            (PAGING, "cursor"),
            (MEMBERS_THRESHOLD, "0"),
            (MEMBERS_THRESHOLD, "1,000"),
            (AUTHENTICATION, "ClientCertificateAuthentication"),
            (URL, "ftp://x"),
        ] {
            let cfg = base.clone().with(name, value);
            assert!(
                matches!(Settings::new(&cfg), Err(Error::InvalidConfig(m)) if m.contains(name)),
                "{name}={value}"
            );
        }
        let cfg = base.with(MEMBERS_THRESHOLD, "90000");
        assert_eq!(Settings::new(&cfg).unwrap().members_threshold, MAX_MEMBERS_THRESHOLD);
    }
}
