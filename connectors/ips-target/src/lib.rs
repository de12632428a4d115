//! Identity Provisioning as a real-time target: a connector for Provisio.
//!
//! Pushes users and groups to the real-time provisioning API of an Identity Provisioning tenant
//! (Provisio's own, or SAP's), the way Identity Authentication does when an admin adds an *Identity
//! Provisioning* target under *Real-Time Provisioning* (SEED-0):
//!
//! | operation | request |
//! |---|---|
//! | create | `POST {URL}/user` (`/group`) |
//! | replace | `PUT {URL}/user/{id}` |
//! | patch | `PATCH {URL}/user/{id}` with an RFC 7644 PatchOp (version 2 only: the IAS SCIM API v1 has no PATCH) |
//! | delete | `DELETE {URL}/user/{id}` |
//! | test connection | `GET {URL}/user`: any answer but 401/403/404 shows the endpoint exists and took the credentials |
//!
//! `URL` is `https://<tenant>/ipsproxy/api/v1/systems/<source-system-id>/entities` (see the `settings` module for
//! why not the `…/entities/user` SCIM URL of the IAS console). `Version` 1 or 2 picks the payload form
//! (the `payload` module). The host authenticates: Basic (`User`/`Password`) or OAuth client credentials
//! (`OAuth2TokenServiceURL`); client certificates are refused as not supported yet.
//!
//! The real-time API only receives: `read` and `get` answer `unsupported`. An entity is known there by the
//! id the pusher gives it (IAS sends its own user id), so a create sends the entity's `id` and returns what
//! the API answered, or the sent entity when the answer has no body.

mod payload;
mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use provisio_sdk::http::{Response, encode_segment};
use provisio_sdk::scim::{self, PatchOp};
use provisio_sdk::{
    Config, ConfiguredConnector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, status,
};
use serde_json::Value;

use settings::{Settings, Version, segment};

pub use provisio_sdk::CONNECTION_OK;

/// The default write transformation. SAP publishes none for this system type (IAS pushes its users
/// unchanged), so this is Provisio's: the entity as the source read it, without `meta`, with the id the
/// receiving tenant knows it by and group members resolved to those ids.
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");

/// Why `read` and `get` cannot work.
const RECEIVE_ONLY: &str = "The real-time provisioning API of Identity Provisioning only receives pushed users and groups; it cannot be read. Use this system as a target only.";

/// The Identity Provisioning real-time target connector.
pub struct IpsTarget;

provisio_sdk::export_connector!(IpsTarget);

impl ConfiguredConnector for IpsTarget {
    type Settings<'a> = Settings<'a>;

    fn settings(cfg: &Config) -> Result<Settings<'_>> {
        Settings::new(cfg)
    }

    fn describe() -> Descriptor {
        let mut d = Descriptor::new("ips-target", env!("CARGO_PKG_VERSION"))
            .entity_kinds([EntityKind::User, EntityKind::Group])
            .operations([
                Operation::TestConnection,
                Operation::Create,
                Operation::Replace,
                Operation::Patch,
                Operation::Delete,
            ])
            .write_transformation(WRITE_TRANSFORMATION);
        for spec in settings::specs() {
            d = d.property(spec);
        }
        d
    }

    fn test_connection(s: &Settings) -> Result<String> {
        // Harmless: the real-time API has no read, so a GET changes nothing. What it answers tells whether the
        // endpoint exists and whether it took the credentials.
        let resp = s.request("GET", segment(EntityKind::User)).send(s.cfg)?;
        match resp.status {
            200..=299 | 405 | 501 => Ok(CONNECTION_OK.to_string()),
            401 | 403 => Err(Error::unauthorized(format!(
                "The real-time provisioning API refused the credentials (HTTP {}); check `{}` and `{}` (a technical user with Access Real-Time Provisioning API, or the OAuth client). {}",
                resp.status,
                settings::USER,
                settings::PASSWORD,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "There is no real-time provisioning endpoint at `{}/user` (HTTP 404); check the source system id in the property `{}`. {}",
                s.cfg.property(settings::URL).unwrap_or_default().trim_end_matches('/'),
                settings::URL,
                status::detail(&resp.body)
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn read(s: &Settings, req: &PageRequest) -> Result<Page> {
        let _ = (s, req);
        Err(Error::Unsupported(RECEIVE_ONLY.into()))
    }

    fn get(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
        let _ = (s, kind, id);
        Err(Error::Unsupported(RECEIVE_ONLY.into()))
    }

    fn create(s: &Settings, kind: EntityKind, entity: &str) -> Result<String> {
        let entity = json::parse_object(entity, kind.as_str())?;
        let body = payload::shape(s.version, kind, entity, None);
        let resp = s
            .request_with("POST", segment(kind), &body)
            .send(s.cfg)?
            .error_for_status()?;
        let mut stored = stored_or_sent(&resp, &body)?;
        let id_of = |v: &Value| {
            v.get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        };
        // An answer without an id: the entity is known by the id it was sent with.
        if let (None, Some(sent), Some(obj)) = (id_of(&stored), id_of(&body), stored.as_object_mut()) {
            obj.insert("id".into(), Value::String(sent));
        }
        if id_of(&stored).is_none() {
            return Err(Error::rejected(
                resp.status,
                format!(
                    "The real-time API answered without an id, and the {} had none: map `$.id` in the write transformation to the id the receiving tenant should know it by.",
                    kind.as_str()
                ),
            ));
        }
        Ok(stored.to_string())
    }

    fn replace(s: &Settings, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let entity = json::parse_object(entity, kind.as_str())?;
        let body = payload::shape(s.version, kind, entity, Some(id));
        let resp = s.request_with("PUT", entity_path(kind, id), &body).send(s.cfg)?;
        let resp = ok_or_not_found(resp, kind, id)?;
        stored_or_sent(&resp, &body).map(|v| json::text(&v))
    }

    fn patch(s: &Settings, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        if s.version == Version::V1 {
            return Err(Error::Unsupported(format!(
                "PATCH with `{}` 1: the IAS SCIM API v1 has no PATCH, so neither has a version-1 real-time API; send the whole {} (replace) instead.",
                settings::VERSION,
                kind.as_str()
            )));
        }
        let mut doc = json::parse(operations, "PatchOp document")?;
        PatchOp::parse(&doc)?;
        scim::ensure_patch_schema(&mut doc);
        let resp = s.request_with("PATCH", entity_path(kind, id), &doc).send(s.cfg)?;
        let resp = ok_or_not_found(resp, kind, id)?;
        if resp.is_empty() {
            return Ok(None);
        }
        resp.json().map(|v| Some(json::text(&v)))
    }

    fn delete(s: &Settings, kind: EntityKind, id: &str) -> Result<()> {
        let resp = s.request("DELETE", entity_path(kind, id)).send(s.cfg)?;
        ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// `user/{id}` or `group/{id}`, the id percent-encoded.
fn entity_path(kind: EntityKind, id: &str) -> String {
    format!("{}/{}", segment(kind), encode_segment(id))
}

/// The answer if it is 2xx; a 404 becomes a not-found error naming the entity.
fn ok_or_not_found(resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
    match resp.status {
        404 => Err(Error::not_found(format!(
            "The {} `{id}` is unknown to the real-time API: {}",
            kind.as_str(),
            status::detail(&resp.body)
        ))),
        _ => resp.error_for_status(),
    }
}

/// The entity the API answered with, or — when it answered without one (`202`/`204`, say) — what was sent.
fn stored_or_sent(resp: &Response, sent: &Value) -> Result<Value> {
    if resp.is_empty() {
        return Ok(sent.clone());
    }
    match resp.json()? {
        v @ Value::Object(_) => Ok(v),
        _ => Ok(sent.clone()),
    }
}
