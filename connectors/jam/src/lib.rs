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

use provisio_sdk::http::{Response, encode_segment};
use provisio_sdk::scim::{self, ListResponse, PatchOp};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
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

impl Connector for Jam {
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

    fn test_connection(cfg: &Config) -> Result<String> {
        let s = Settings::new(cfg)?;
        let resp = s
            .request("GET", s.collection(EntityKind::User))
            .query("startIndex", 1)
            .query("count", 1)
            .send(cfg)?;
        match resp.status {
            200..=299 => match resp.json().and_then(|v| ListResponse::from_json(&v)) {
                Ok(_) => Ok(CONNECTION_OK.to_string()),
                Err(_) => Err(Error::invalid_config(format!(
                    "The system answered, but not as SAP Jam: `GET {}` did not return a SCIM list response. Check the property `{}`.",
                    s.collection(EntityKind::User),
                    settings::URL
                ))),
            },
            401 | 403 => Err(Error::unauthorized(format!(
                "SAP Jam refused the access token (HTTP {}); check that `{}` and `{}` are the key and secret of the Jam \"SCIM API Client\" and that `{}` is this Jam's token endpoint. {}",
                resp.status,
                settings::USER,
                settings::PASSWORD,
                settings::TOKEN_URL,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "SAP Jam has no SCIM `Users` endpoint under this URL (HTTP 404 for `{}`); set `{}` to the Jam host, e.g. https://jam4.sapjam.com.",
                s.collection(EntityKind::User),
                settings::URL
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        let s = Settings::new(cfg)?;
        if req.delta_since.is_some() {
            // Jam filters only with `eq`; it cannot answer `meta.lastModified gt …`.
            return Err(Error::Unsupported(
                "SAP Jam cannot filter by meta.lastModified, so it has no delta read; read everything instead.".into(),
            ));
        }
        let start = scim::start_index(req.cursor.as_deref())?;
        let count = req.page_size.clamp(1, settings::MAX_PAGE);
        let resp = s
            .request("GET", s.collection(req.kind))
            .query("startIndex", start)
            .query("count", count)
            .query_opt("filter", req.filter.as_deref())
            .send(cfg)?
            .error_for_status()?;
        scim::index_page(&resp, start, count)
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        fetch(&s, kind, id).map(|v| v.to_string())
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        let resp = s.request_with("POST", s.collection(kind), &entity).send(cfg)?;
        match resp.status {
            200..=299 => entity_of(&resp, "created"),
            409 => resolve_conflict(&s, kind, &entity, status::error_for(&resp)),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        put(&s, kind, id, &entity).map(|v| v.to_string())
    }

    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let s = Settings::new(cfg)?;
        let mut doc = json::parse(operations, "PatchOp document")?;
        // Refuse a malformed document here rather than send it.
        PatchOp::parse(&doc)?;
        scim::ensure_patch_schema(&mut doc);
        let resp = s.request_with("PATCH", entity_path(&s, kind, id), &doc).send(cfg)?;
        let resp = ok_or_not_found(resp, kind, id)?;
        if resp.is_empty() {
            return Ok(None);
        }
        entity_of(&resp, "patched").map(Some)
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        let s = Settings::new(cfg)?;
        let resp = s.request("DELETE", entity_path(&s, kind, id)).send(cfg)?;
        ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// `api/v1/scim/Users/{id}` (or `…/Groups/{id}`), the id percent-encoded.
fn entity_path(s: &Settings, kind: EntityKind, id: &str) -> String {
    s.path(&format!("{}/{}", kind.scim_endpoint(), encode_segment(id)))
}

/// The answer if it is 2xx; a 404 becomes a not-found error naming the entity.
fn ok_or_not_found(resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
    match resp.status {
        404 => Err(Error::not_found(format!(
            "The {} `{id}` does not exist in SAP Jam: {}",
            kind.as_str(),
            status::detail(&resp.body)
        ))),
        _ => resp.error_for_status(),
    }
}

/// Reads one entity.
fn fetch(s: &Settings, kind: EntityKind, id: &str) -> Result<Value> {
    let resp = s.request("GET", entity_path(s, kind, id)).send(s.cfg)?;
    ok_or_not_found(resp, kind, id)?.json()
}

/// The entity a 2xx write answered with, as JSON text.
fn entity_of(resp: &Response, what: &str) -> Result<String> {
    if resp.is_empty() {
        return Err(Error::rejected(
            resp.status,
            format!("SAP Jam answered without the {what} entity."),
        ));
    }
    resp.json().map(|v| v.to_string())
}

/// Replaces an entity with PUT; an empty answer is read back.
fn put(s: &Settings, kind: EntityKind, id: &str, entity: &Value) -> Result<Value> {
    let resp = s.request_with("PUT", entity_path(s, kind, id), entity).send(s.cfg)?;
    let resp = ok_or_not_found(resp, kind, id)?;
    if resp.is_empty() {
        return fetch(s, kind, id);
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
    let resp = s
        .request("GET", s.collection(kind))
        .query("filter", &filter)
        .send(s.cfg)?
        .error_for_status()?;
    let found = ListResponse::from_response(&resp)?.resources;
    let [existing] = found.as_slice() else {
        log::info(format_args!(
            "create conflicted and `{filter}` matches {} {}s; keeping the conflict",
            found.len(),
            kind.as_str()
        ));
        return Err(conflict);
    };
    let Some(id) = existing.get("id").and_then(Value::as_str) else {
        return Err(conflict);
    };
    log::info(format_args!(
        "{} already exists in SAP Jam as {id}; updating it instead",
        kind.as_str()
    ));
    put(s, kind, id, entity).map(|v| v.to_string())
}
