//! SAP BTP XS Advanced UAA (Cloud Foundry) connector for Provisio.
//!
//! Reads and writes users (BTP shadow users) and groups (role collections) through the UAA SCIM API of the
//! SAP Authorization and Trust Management service, as target, source and proxy system. It speaks UAA's
//! dialect: SCIM 1.0 schemas, lower-case `resources` in lists, an integer `meta.version` sent as `If-Match`
//! on PUT (re-read and retried once when stale: 409, 412 or 422), UAA's partial PATCH for groups (removed
//! members marked `operation: "delete"`) or its members API, and DELETE answering 200 with the entity.
//!
//! Origins (`xsuaa.origin`, `;`-separated): a user is created once per origin; with
//! `xsuaa.origin.filter.enabled` reads keep only users of those origins. The host fetches the client
//! credentials token from `OAuth2TokenServiceURL` and applies `provisio.rate.limit` (BTP: 3 requests/s).

mod groups;
mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
mod uaa;
mod users;

use provisio_sdk::scim::{self, ListResponse, PatchOp};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, status,
};
use serde_json::Value;

use settings::Settings;

pub use provisio_sdk::CONNECTION_OK;

/// The default read transformation: SAP's for an XSUAA *source* system.
pub const READ_TRANSFORMATION: &str = include_str!("../transformations/read.json");
/// The default write transformation: SAP's for an XSUAA *target* system.
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");
/// SAP's default read transformation for an XSUAA *proxy* system, declared in the descriptor (contract 0.2.0).
pub const PROXY_READ_TRANSFORMATION: &str = include_str!("../transformations/proxy-read.json");
/// SAP's default write transformation for an XSUAA *proxy* system.
pub const PROXY_WRITE_TRANSFORMATION: &str = include_str!("../transformations/proxy-write.json");

/// UAA's largest page (`userMaxCount`).
const MAX_COUNT: u32 = 500;

/// The XSUAA connector.
pub struct Xsuaa;

provisio_sdk::export_connector!(Xsuaa);

impl Connector for Xsuaa {
    fn describe() -> Descriptor {
        let mut d = Descriptor::new("xsuaa", env!("CARGO_PKG_VERSION"))
            .entity_kinds([EntityKind::User, EntityKind::Group])
            .operations(Operation::ALL)
            .read_transformation(READ_TRANSFORMATION)
            .write_transformation(WRITE_TRANSFORMATION)
            .proxy_read_transformation(PROXY_READ_TRANSFORMATION)
            .proxy_write_transformation(PROXY_WRITE_TRANSFORMATION);
        for spec in settings::specs() {
            d = d.property(spec);
        }
        d
    }

    fn test_connection(cfg: &Config) -> Result<String> {
        let s = Settings::new(cfg)?;
        let filter = s.origin_filter();
        let resp = s
            .request("GET", "Users")
            .query("startIndex", 1)
            .query("count", 1)
            .query_opt("filter", filter.as_deref())
            .send(cfg)
            .map_err(|e| match e {
                Error::Unauthorized(m) => Error::unauthorized(format!(
                    "{m}. Check {} (client id) and {} (client secret) and {}.",
                    settings::USER,
                    settings::PASSWORD,
                    settings::TOKEN_URL
                )),
                other => other,
            })?;
        match resp.status {
            200..=299 => match resp.json().and_then(|v| ListResponse::from_json(&v)) {
                Ok(_) => Ok(CONNECTION_OK.to_string()),
                Err(_) => Err(Error::invalid_config(format!(
                    "The system answered, but not as the UAA SCIM API: `GET Users` did not return a list. Check the property `{}`.",
                    settings::URL
                ))),
            },
            401 | 403 => Err(Error::unauthorized(format!(
                "The system refused the credentials (HTTP {}): {}. The client needs the scopes to read users (e.g. xs_user.read or scim.read).",
                resp.status,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "The system has no `Users` endpoint under this URL (HTTP 404); check the property `{}`.",
                settings::URL
            ))),
            400 if filter.is_some() => Err(Error::invalid_config(format!(
                "The system refused the origin filter built from `{}`: {}",
                settings::ORIGIN,
                status::detail(&resp.body)
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        let s = Settings::new(cfg)?;
        let start = scim::start_index(req.cursor.as_deref())?;
        let count = req.page_size.clamp(1, MAX_COUNT);
        let delta = req.delta_since.as_deref().map(scim::modified_since);
        let origins = match req.kind {
            EntityKind::User => s.origin_filter(),
            EntityKind::Group => None,
        };
        let filter = scim::and_filters([origins.as_deref(), req.filter.as_deref(), delta.as_deref()]);
        let resp = s
            .request("GET", req.kind.scim_endpoint())
            .query("startIndex", start)
            .query("count", count)
            .query_opt("filter", filter.as_deref())
            .send(cfg)?;
        if resp.status == 400 && delta.is_some() {
            return Err(Error::Unsupported(format!(
                "The system refused the delta-read filter `meta.lastModified gt …`: {}",
                status::detail(&resp.body)
            )));
        }
        let resp = resp.error_for_status()?;
        scim::index_page(&resp, start, count)
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        uaa::fetch(&s, kind, id).map(|v| v.to_string())
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let entity = json::parse_object(entity, kind.as_str())?;
        match kind {
            EntityKind::User => users::create(&s, entity),
            EntityKind::Group => groups::create(&s, entity),
        }
        .map(|v| v.to_string())
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let entity = json::parse_object(entity, kind.as_str())?;
        match kind {
            EntityKind::User => users::replace(&s, id, entity),
            EntityKind::Group => groups::replace(&s, id, entity),
        }
        .map(|v| v.to_string())
    }

    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let s = Settings::new(cfg)?;
        let ops = PatchOp::parse(&json::parse(operations, "PatchOp document")?)?;
        let patched = match kind {
            EntityKind::User => users::patch(&s, id, &ops).map(Some)?,
            EntityKind::Group => groups::patch(&s, id, &ops)?,
        };
        Ok(patched.map(|v: Value| v.to_string()))
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        let s = Settings::new(cfg)?;
        match kind {
            EntityKind::User => users::delete(&s, id),
            EntityKind::Group => {
                let resp = s.request("DELETE", uaa::entity_path(kind, id)).send(cfg)?;
                uaa::ok_or_not_found(resp, kind, id).map(|_| ())
            }
        }
    }
}
