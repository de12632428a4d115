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

use provisio_sdk::client::{Probe, ReadFilter};
use provisio_sdk::scim::PatchOp;
use provisio_sdk::{Config, ConfiguredConnector, Descriptor, EntityKind, Operation, Page, PageRequest, Result, json};
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

/// The XSUAA connector.
pub struct Xsuaa;

provisio_sdk::export_connector!(Xsuaa);

impl ConfiguredConnector for Xsuaa {
    type Settings<'a> = Settings<'a>;

    fn settings(cfg: &Config) -> Result<Settings<'_>> {
        Settings::new(cfg)
    }

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

    fn test_connection(s: &Settings) -> Result<String> {
        let filter = s.origin_filter();
        let credentials = format!(
            "check {} (client id), {} (client secret) and {}; the client needs the scopes to read users (e.g. xs_user.read or scim.read)",
            settings::USER,
            settings::PASSWORD,
            settings::TOKEN_URL
        );
        s.client.test_connection(&Probe {
            filter: filter.as_deref().map(|f| (f, settings::ORIGIN)),
            credentials: &credentials,
            ..Probe::default()
        })
    }

    fn read(s: &Settings, req: &PageRequest) -> Result<Page> {
        let origins = match req.kind {
            EntityKind::User => s.origin_filter(),
            EntityKind::Group => None,
        };
        let filter = ReadFilter {
            system: origins.as_deref(),
            property: None,
        };
        s.client.read(req, &filter)
    }

    fn get(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
        uaa::fetch_text(s, kind, id)
    }

    fn create(s: &Settings, kind: EntityKind, entity: &str) -> Result<String> {
        let entity = json::parse_object(entity, kind.as_str())?;
        match kind {
            EntityKind::User => users::create(s, entity),
            EntityKind::Group => groups::create(s, entity),
        }
        .map(|v| json::text(&v))
    }

    fn replace(s: &Settings, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let entity = json::parse_object(entity, kind.as_str())?;
        match kind {
            EntityKind::User => users::replace(s, id, entity),
            EntityKind::Group => groups::replace(s, id, entity),
        }
        .map(|v| json::text(&v))
    }

    fn patch(s: &Settings, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let ops = PatchOp::parse(&json::parse(operations, "PatchOp document")?)?;
        let patched = match kind {
            EntityKind::User => users::patch(s, id, &ops).map(Some)?,
            EntityKind::Group => groups::patch(s, id, &ops)?,
        };
        Ok(patched.map(|v: Value| json::text(&v)))
    }

    fn delete(s: &Settings, kind: EntityKind, id: &str) -> Result<()> {
        match kind {
            EntityKind::User => users::delete(s, id),
            EntityKind::Group => {
                let resp = s.request("DELETE", uaa::entity_path(kind, id)).send(s.cfg)?;
                uaa::ok_or_not_found(resp, kind, id).map(|_| ())
            }
        }
    }
}
