//! Generic SCIM 2.0 connector for Provisio.
//!
//! Reads and writes users and groups of any SCIM 2.0 service provider (RFC 7643/7644) through the host:
//! `Users` and `Groups` relative to the system's `URL`, index paging, filters, delta reads by
//! `meta.lastModified`, PUT with `If-Match`, PATCH (or get + apply + PUT where the service has none), and
//! conflict resolution on create by the configured unique attributes. Writes carry only the schema
//! extensions the system declares in `ResourceTypes` (see `extensions`). Written with `provisio-sdk` only.

mod extensions;
mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use provisio_sdk::client::{Probe, ReadFilter, eq_clause};
use provisio_sdk::scim::{self, PatchOp};
use provisio_sdk::{
    Config, ConfiguredConnector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
};
use serde_json::Value;

use settings::Settings;

pub use provisio_sdk::CONNECTION_OK;

/// The default read transformation (SAP Identity Provisioning JSON dialect).
pub const READ_TRANSFORMATION: &str = include_str!("../transformations/read.json");
/// The default write transformation (SAP Identity Provisioning JSON dialect).
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");

/// The generic SCIM 2.0 connector.
pub struct Scim;

provisio_sdk::export_connector!(Scim);

impl ConfiguredConnector for Scim {
    type Settings<'a> = Settings<'a>;

    fn settings(cfg: &Config) -> Result<Settings<'_>> {
        Settings::new(cfg)
    }

    fn describe() -> Descriptor {
        let mut d = Descriptor::new("scim", env!("CARGO_PKG_VERSION"))
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
        s.client.test_connection(&Probe::default())
    }

    fn read(s: &Settings, req: &PageRequest) -> Result<Page> {
        let filter = ReadFilter {
            system: s.filter(req.kind),
            property: Some(settings::filter_property(req.kind)),
        };
        s.client.read(req, &filter)
    }

    fn get(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
        s.fetch_text(kind, id)
    }

    fn create(s: &Settings, kind: EntityKind, entity: &str) -> Result<String> {
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        extensions::strip_entity(s, kind, &mut entity);
        let resp = s.request_with("POST", s.collection(kind), &entity).send(s.cfg)?;
        match resp.status {
            200..=299 => s.entity_of(&resp, "created").map(|v| json::text(&v)),
            409 => resolve_conflict(s, kind, &entity, status::error_for(&resp)),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn replace(s: &Settings, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        extensions::strip_entity(s, kind, &mut entity);
        // A version the entity carries is the caller's precondition: a stale one fails, it is not retried.
        let version = s.version_of(&entity);
        s.put(kind, id, &entity, version, false).map(|v| json::text(&v))
    }

    fn patch(s: &Settings, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let mut doc = json::parse(operations, "PatchOp document")?;
        PatchOp::parse(&doc)?;
        if !extensions::strip_patch(s, kind, &mut doc).is_empty()
            && doc
                .get("Operations")
                .or_else(|| doc.get("operations"))
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        {
            // Nothing the system keeps was to change.
            return s.fetch(kind, id).map(|v| Some(json::text(&v)));
        }
        let ops = PatchOp::parse(&doc)?;
        if s.patch {
            scim::ensure_patch_schema(&mut doc);
            let resp = s.request_with("PATCH", s.entity_path(kind, id), &doc).send(s.cfg)?;
            if matches!(resp.status, 405 | 501) {
                log::warn(format_args!(
                    "the system refused PATCH (HTTP {}) although {} is true; applying the patch with GET and PUT",
                    resp.status,
                    settings::SUPPORT_PATCH
                ));
            } else {
                let resp = s.ok_or_not_found(resp, kind, id)?;
                if resp.is_empty() {
                    return Ok(None);
                }
                return s.entity_of(&resp, "patched").map(|v| Some(json::text(&v)));
            }
        }
        // No PATCH in this system: read, apply, write back (re-reading once on a stale version).
        s.patch_by_put(kind, id, &ops).map(|v| Some(json::text(&v)))
    }

    fn delete(s: &Settings, kind: EntityKind, id: &str) -> Result<()> {
        let resp = s.request("DELETE", s.entity_path(kind, id)).send(s.cfg)?;
        s.ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// After a create conflicted: look the entity up by the configured unique attributes and, when exactly one
/// matches, replace it (SAP Identity Provisioning's conflict resolution); otherwise keep the conflict.
fn resolve_conflict(s: &Settings, kind: EntityKind, entity: &Value, conflict: Error) -> Result<String> {
    if s.cfg.host_resolves_conflicts() {
        return Err(conflict);
    }
    let mut clauses = Vec::new();
    for attr in s.unique_attributes(kind) {
        match json::get(entity, attr).and_then(|value| eq_clause(attr, value)) {
            Some(clause) => clauses.push(clause),
            None => return Err(conflict),
        }
    }
    if clauses.is_empty() {
        return Err(conflict);
    }
    let filter = clauses.join(" and ");
    let Some((id, existing)) = s.find_one(kind, &filter)? else {
        return Err(conflict);
    };
    log::info(format_args!(
        "{} already exists as {id} ({filter}); updating it instead",
        kind.as_str()
    ));
    s.put(kind, &id, entity, s.version_of(&existing), true)
        .map(|v| json::text(&v))
}
