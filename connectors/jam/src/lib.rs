//! SAP Jam Collaboration connector for Provisio.
//!
//! SAP Jam (and SAP Build Work Zone, advanced edition, which serves the same API) provisions users and
//! groups through SCIM 2.0 under `https://<jam-host>/api/v1/scim`, authorised by OAuth client-credentials
//! tokens from `https://<jam-host>/api/v1/auth/token` (the "SCIM API Client" key and secret). The host fetches
//! and attaches the token; this connector only speaks SCIM:
//!
//! * read with index paging (`startIndex`/`count`, Jam's maximum page is 100), get, create, replace (PUT),
//!   patch (RFC 7644 PatchOp), delete, for users and groups;
//! * `delete` really deletes. Off-boarding by deactivation is the write transformation's business: SAP's
//!   default Jam transformation maps `deleteEntity` to `active=false`, which the host sends as a replace;
//! * groups are ignored by SAP's default transformations (`"group": {"ignore": true}`), but the connector
//!   handles them for admins who switch them on;
//! * a create that conflicts (HTTP 409) finds the existing user by `userName` (group by `displayName`) and
//!   overwrites it, as SAP Identity Provisioning does;
//! * Jam allows 200 requests a minute and 13 000 an hour: the descriptor declares `provisio.rate.limit` = 3
//!   (180 a minute) so the host stays under it, and a 429 becomes `throttled` with Jam's `Retry-After`.

mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use provisio_sdk::client::{Probe, ReadFilter};
use provisio_sdk::scim::{self, PatchOp};
use provisio_sdk::{
    Config, ConfiguredConnector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
};
use serde_json::Value;

use settings::Settings;

pub use provisio_sdk::CONNECTION_OK;

/// The default read transformation: SAP's default for an SAP Jam Collaboration source system.
pub const READ_TRANSFORMATION: &str = include_str!("../transformations/read.json");
/// The default write transformation: SAP's default for an SAP Jam Collaboration target system.
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");

/// The SAP Jam Collaboration connector.
pub struct Jam;

provisio_sdk::export_connector!(Jam);

impl ConfiguredConnector for Jam {
    type Settings<'a> = Settings<'a>;

    fn settings(cfg: &Config) -> Result<Settings<'_>> {
        Settings::new(cfg)
    }

    fn describe() -> Descriptor {
        let mut d = Descriptor::new("jam", env!("CARGO_PKG_VERSION"))
            .entity_kinds([EntityKind::User, EntityKind::Group])
            .operations(Operation::ALL)
            .read_transformation(READ_TRANSFORMATION)
            .write_transformation(WRITE_TRANSFORMATION);
        for spec in settings::specs() {
            d = d.property(spec);
        }
        d
    }

    fn test_connection(s: &Settings) -> Result<String> {
        let credentials = format!(
            "check that `{}` and `{}` are the key and secret of the Jam \"SCIM API Client\" and that `{}` is this Jam's token endpoint",
            settings::USER,
            settings::PASSWORD,
            settings::TOKEN_URL
        );
        let check = format!(
            "the property `{}`: the Jam host, e.g. https://jam4.sapjam.com",
            settings::URL
        );
        s.client.test_connection(&Probe {
            credentials: &credentials,
            check: &check,
            ..Probe::default()
        })
    }

    fn read(s: &Settings, req: &PageRequest) -> Result<Page> {
        if req.delta_since.is_some() {
            // Jam filters only with `eq`; it cannot answer `meta.lastModified gt …`.
            return Err(Error::Unsupported(
                "SAP Jam cannot filter by meta.lastModified, so it has no delta read; read everything instead.".into(),
            ));
        }
        s.client.read(req, &ReadFilter::default())
    }

    fn get(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
        s.fetch_text(kind, id)
    }

    fn create(s: &Settings, kind: EntityKind, entity: &str) -> Result<String> {
        let entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        let resp = s.request_with("POST", s.collection(kind), &entity).send(s.cfg)?;
        match resp.status {
            200..=299 => s.entity_of(&resp, "created").map(|v| json::text(&v)),
            409 => resolve_conflict(s, kind, &entity, status::error_for(&resp)),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn replace(s: &Settings, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        put(s, kind, id, &entity).map(|v| json::text(&v))
    }

    fn patch(s: &Settings, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let mut doc = json::parse(operations, "PatchOp document")?;
        // Refuse a malformed document here rather than send it.
        PatchOp::parse(&doc)?;
        scim::ensure_patch_schema(&mut doc);
        let resp = s.request_with("PATCH", s.entity_path(kind, id), &doc).send(s.cfg)?;
        let resp = s.ok_or_not_found(resp, kind, id)?;
        if resp.is_empty() {
            return Ok(None);
        }
        s.entity_of(&resp, "patched").map(|v| Some(json::text(&v)))
    }

    fn delete(s: &Settings, kind: EntityKind, id: &str) -> Result<()> {
        let resp = s.request("DELETE", s.entity_path(kind, id)).send(s.cfg)?;
        s.ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// Replaces an entity with PUT (Jam keeps no versions); an empty answer is read back.
fn put(s: &Settings, kind: EntityKind, id: &str, entity: &Value) -> Result<Value> {
    let resp = s.ok_or_not_found(s.send_put(kind, id, entity, None)?, kind, id)?;
    if resp.is_empty() {
        return s.fetch(kind, id);
    }
    resp.json()
}

/// After a create conflicted: find the existing entity by its unique attribute (`userName` for users,
/// `displayName` for groups) and overwrite it, as SAP Identity Provisioning does; otherwise keep the conflict.
fn resolve_conflict(s: &Settings, kind: EntityKind, entity: &Value, conflict: Error) -> Result<String> {
    if s.cfg.host_resolves_conflicts() {
        return Err(conflict);
    }
    let attr = match kind {
        EntityKind::User => "userName",
        EntityKind::Group => "displayName",
    };
    let Some(value) = entity.get(attr).and_then(Value::as_str) else {
        return Err(conflict);
    };
    let filter = format!("{attr} eq {}", scim::quote(value));
    let Some((id, _)) = s.find_one(kind, &filter)? else {
        return Err(conflict);
    };
    log::info(format_args!(
        "{} already exists in SAP Jam as {id}; updating it instead",
        kind.as_str()
    ));
    put(s, kind, &id, entity).map(|v| json::text(&v))
}
