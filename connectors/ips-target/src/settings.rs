//! The system's properties, validated once per call.
//!
//! `URL` is the real-time API of one source system of the receiving tenant, **without** the entity
//! type: `https://<tenant>/ipsproxy/api/v1/systems/<source-system-id>/entities` (or the
//! `/ipsproxy/service/api/v1/…` form). Users go to `…/entities/user`, groups to `…/entities/group`. The
//! IAS console calls `…/entities/user` the *SCIM URL*; the host keeps every request under `URL`, so with
//! that URL groups could not be reached and a create would go to `…/entities/user/` (the host joins an
//! empty path with a trailing slash). Such a URL is refused with the URL to use instead.

use provisio_sdk::http::Request;
use provisio_sdk::{Config, EntityKind, Error, PropertySpec, Result};

pub use provisio_sdk::system::{AUTHENTICATION, PASSWORD, RATE_LIMIT, TOKEN_URL, URL, USER};
pub const VERSION: &str = "Version";

/// 120 requests a minute: SAP's proxy and real-time APIs slow down above 150 a minute and refuse above 200.
pub const DEFAULT_RATE: &str = "2";

const CONTENT_TYPE: &str = "application/scim+json";
const ACCEPT: &str = "application/scim+json, application/json";

/// Which payload the receiving tenant expects: what Identity Authentication sends with `ias.api.version` 1
/// or 2 on its source system there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The Identity Authentication SCIM API (`/service/scim`): SAP attributes flat on the user.
    V1,
    /// The Identity Directory SCIM API (`/scim`): SCIM 2.0 with the SAP extension.
    V2,
}

/// The properties this connector understands, for `describe`.
pub fn specs() -> Vec<PropertySpec> {
    vec![
        PropertySpec::new(URL, "Real-time API of the receiving source system without the entity type: https://<tenant>/ipsproxy/api/v1/systems/<source-system-id>/entities.")
            .required(),
        PropertySpec::new(VERSION, "1 or 2, as ias.api.version on the receiving source system: 1 sends users as the IAS SCIM API v1 does, 2 as SCIM 2.0 (Identity Directory).")
            .default_value("2"),
        PropertySpec::new(AUTHENTICATION, "BasicAuthentication (User, Password); ignored when OAuth2TokenServiceURL is set. Client certificates are not supported yet.")
            .default_value("BasicAuthentication"),
        PropertySpec::new(USER, "The user (client id) of a technical user with Access Real-Time Provisioning API, or the OAuth client id.").required(),
        PropertySpec::new(PASSWORD, "Its password (client secret), or the OAuth client secret.").required().secret(),
        PropertySpec::new(TOKEN_URL, "OAuth token endpoint of the receiving tenant (e.g. https://<tenant>/oauth2/token): when set, the host sends a client-credentials token."),
        PropertySpec::new(RATE_LIMIT, "Requests per second the host sends at most; the real-time API slows down above 150 a minute and refuses above 200.")
            .default_value(DEFAULT_RATE),
    ]
}

/// The validated settings of one call.
pub struct Settings<'a> {
    /// The call's configuration.
    pub cfg: &'a Config,
    /// The payload form.
    pub version: Version,
}

impl<'a> Settings<'a> {
    /// Validates `URL`, `Version` and `Authentication`.
    pub fn new(cfg: &'a Config) -> Result<Self> {
        check_url(cfg.require(URL)?)?;
        let version = match cfg.property_or(VERSION, "2") {
            "1" => Version::V1,
            "2" => Version::V2,
            other => {
                return Err(Error::invalid_config(format!(
                    "The property `{VERSION}` is `{other}`; use 1 or 2, the ias.api.version of the receiving source system."
                )));
            }
        };
        if cfg.property(TOKEN_URL).is_none() {
            match cfg.property(AUTHENTICATION) {
                None | Some("BasicAuthentication") => {}
                Some("ClientCertificateAuthentication") => {
                    return Err(Error::invalid_config(format!(
                        "The property `{AUTHENTICATION}` is ClientCertificateAuthentication: client certificates are not supported yet; use BasicAuthentication, or set {TOKEN_URL} for OAuth."
                    )));
                }
                Some(other) => {
                    return Err(Error::invalid_config(format!(
                        "The property `{AUTHENTICATION}` is `{other}`; use BasicAuthentication (User, Password), or set {TOKEN_URL} for OAuth."
                    )));
                }
            }
        }
        if cfg.property(USER).is_none() {
            return Err(Error::invalid_config(format!(
                "The property `{USER}` is required: the user (or OAuth client id) the real-time API accepts."
            )));
        }
        Ok(Settings { cfg, version })
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

/// The path segment of a kind below `…/entities`.
pub fn segment(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "user",
        EntityKind::Group => "group",
    }
}

/// Checks that `url` is `http(s)://host/…/systems/<id>/entities`, and says what to write otherwise.
fn check_url(url: &str) -> Result<()> {
    let example = "https://<tenant>/ipsproxy/api/v1/systems/<source-system-id>/entities";
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return Err(Error::invalid_config(format!(
            "The property `{URL}` must be an https:// URL such as {example}, not `{url}`."
        )));
    };
    if rest.contains(['?', '#']) {
        return Err(Error::invalid_config(format!(
            "The property `{URL}` must not carry a query or fragment; use {example}."
        )));
    }
    let trimmed = url.trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "systems", id, "entities"] if !id.is_empty() => Ok(()),
        [.., "systems", _, "entities", "user" | "group"] => {
            let base = trimmed.rsplit_once('/').map_or(trimmed, |(b, _)| b);
            Err(Error::invalid_config(format!(
                "The property `{URL}` ends with the entity type (`{url}`, the SCIM URL as the IAS console shows it). Set it to `{base}`: users are sent to …/entities/user and groups to …/entities/group below it."
            )))
        }
        _ => Err(Error::invalid_config(format!(
            "The property `{URL}` must be the real-time API of a source system, {example}, not `{url}`."
        ))),
    }
}
