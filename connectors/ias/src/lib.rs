//! SAP Cloud Identity Services – Identity Authentication (IAS) connector for Provisio.
//!
//! Reads and writes users and groups of an Identity Authentication tenant, as source, target or proxy,
//! through either SCIM API (`ias.api.version`):
//!
//! * **2, Identity Directory** (default): `{URL}/scim/Users|Groups`, UUID ids, SAP, enterprise and custom
//!   extension schemas. A user's `groups` is read-only, so membership goes through `PATCH /Groups/{id}`,
//!   split into requests of at most 50 removals (IAS refuses more) and at most
//!   `ias.patch.group.members.above.threshold` additions; groups with more members than that threshold are
//!   written with such batched PATCHes instead of one PUT.
//! * **1, Identity Authentication SCIM API** (deprecated): `{URL}/service/scim/Users|Groups`, legacy ids
//!   (`P000123`), writable user `groups`, no PATCH (patches are applied with GET and PUT).
//!
//! Reads page by id (`startId=initial`, then `nextId` until `end`, SAP's recommendation) or by index
//! (`ias.paging.mode`), at most 100 a page, with `ias.user.filter`/`ias.group.filter` AND-combined with the
//! request's filter. Creates that conflict are resolved as SAP does: the existing entity is found by
//! `ias.user.unique.attribute`/`ias.group.unique.attribute` and overwritten. Entities pass through as they
//! are: extension sections the connector does not know are kept, and their URNs are added to `schemas`.

mod members;
mod remote;
mod settings;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use provisio_sdk::client::{Probe, ReadFilter, eq_clause};
use provisio_sdk::scim::{self, PatchOp};
use provisio_sdk::{
    Config, ConfiguredConnector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
};
use serde_json::{Value, json as j};

use members::Step;
use remote::{fetch, put, version_of};
use settings::{Api, MAX_REMOVALS_PER_PATCH, Settings};

pub use provisio_sdk::CONNECTION_OK;

/// The default read transformation: SAP's Identity Authentication source default for SCIM API version 2
/// (identity-authentication-e4e25f1). Version 1 systems need SAP's version 1 transformation set explicitly.
pub const READ_TRANSFORMATION: &str = include_str!("../transformations/read.json");
/// The default write transformation: SAP's Identity Authentication target default for SCIM API version 2
/// (identity-authentication-f217bd3).
pub const WRITE_TRANSFORMATION: &str = include_str!("../transformations/write.json");

/// The Identity Authentication connector.
pub struct Ias;

provisio_sdk::export_connector!(Ias);

impl ConfiguredConnector for Ias {
    type Settings<'a> = Settings<'a>;

    fn settings(cfg: &Config) -> Result<Settings<'_>> {
        Settings::new(cfg)
    }

    fn describe() -> Descriptor {
        let mut d = Descriptor::new("ias", env!("CARGO_PKG_VERSION"))
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
        let check = format!(
            "the properties `{}` (the tenant URL, e.g. https://<tenant>.accounts.ondemand.com) and `{}`",
            settings::URL,
            settings::API_VERSION
        );
        s.client.test_connection(&Probe {
            credentials: "check User (the client id) and Password (the client secret) of the technical user, and that it may manage users and groups",
            check: &check,
            ..Probe::default()
        })
    }

    fn read(s: &Settings, req: &PageRequest) -> Result<Page> {
        if req.delta_since.is_some() && s.api == Api::V1 {
            return Err(Error::Unsupported(
                "Delta read needs the Identity Directory SCIM API (ias.api.version 2).".into(),
            ));
        }
        let filter = ReadFilter {
            system: s.filter(req.kind),
            property: Some(settings::filter_property(req.kind)),
        };
        s.client.read(req, &filter)
    }

    fn get(s: &Settings, kind: EntityKind, id: &str) -> Result<String> {
        s.client.fetch_text(kind, id)
    }

    fn create(s: &Settings, kind: EntityKind, entity: &str) -> Result<String> {
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        remote::declare_schemas(&mut entity, kind);
        // A v2 group with more members than the threshold is created with the first batch; the rest follow
        // as PATCH additions.
        let mut later = Vec::new();
        if kind == EntityKind::Group
            && s.api == Api::V2
            && let Some(list) = members_mut(&mut entity)
            && list.len() > s.members_threshold
        {
            later = list.split_off(s.members_threshold);
        }
        let resp = s.request_with("POST", s.collection(kind), &entity).send(s.cfg)?;
        let created = match resp.status {
            200..=299 => resp.json()?,
            409 if kind == EntityKind::User && !s.conflict_resolution => {
                return Err(status::error_for(&resp));
            }
            409 => {
                if let Some(list) = members_mut(&mut entity) {
                    list.append(&mut later);
                }
                return resolve_conflict(s, kind, &entity, status::error_for(&resp));
            }
            _ => return Err(status::error_for(&resp)),
        };
        if later.is_empty() {
            return Ok(created.to_string());
        }
        let Some(id) = created.get("id").and_then(Value::as_str) else {
            return Err(Error::rejected(resp.status, "The created group has no id."));
        };
        let docs = members::pack(vec![Step::Add(later)], s.members_threshold, MAX_REMOVALS_PER_PATCH);
        let added = send_patches(s, kind, id, docs).inspect_err(|_| {
            log::warn(format_args!(
                "group {id} was created, but adding its remaining members failed; the next update completes them"
            ))
        })?;
        match added {
            Some(v) => Ok(json::text(&v)),
            None => fetch(s, kind, id).map(|v| json::text(&v)),
        }
    }

    fn replace(s: &Settings, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        remote::declare_schemas(&mut entity, kind);
        replace_entity(s, kind, id, &entity, version_of(&entity)).map(|v| json::text(&v))
    }

    fn patch(s: &Settings, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let mut doc = json::parse(operations, "PatchOp document")?;
        let ops = PatchOp::parse(&doc)?;
        let result = match (s.api, kind) {
            (Api::V2, EntityKind::Group) => patch_group(s, id, &ops)?,
            (Api::V2, EntityKind::User) if s.patch => {
                scim::ensure_patch_schema(&mut doc);
                let resp = s.request_with("PATCH", s.entity_path(kind, id), &doc).send(s.cfg)?;
                let resp = s.ok_or_not_found(resp, kind, id)?;
                if resp.is_empty() { None } else { Some(resp.json()?) }
            }
            // Version 1 has no PATCH; and with ias.support.patch.operation false SAP writes users with PUT.
            _ => Some(patch_by_put(s, kind, id, &ops)?),
        };
        Ok(result.map(|v| json::text(&v)))
    }

    fn delete(s: &Settings, kind: EntityKind, id: &str) -> Result<()> {
        if kind == EntityKind::User && s.update_instead_delete {
            log::info(format_args!(
                "{} is true: deactivating user {id} instead of deleting it",
                settings::UPDATE_INSTEAD_DELETE
            ));
            let ops = PatchOp::new().replace(Some("active"), Value::Bool(false));
            return match s.api {
                Api::V2 => {
                    let resp = s
                        .request_with("PATCH", s.entity_path(kind, id), &ops.to_json())
                        .send(s.cfg)?;
                    s.ok_or_not_found(resp, kind, id).map(|_| ())
                }
                Api::V1 => patch_by_put(s, kind, id, &ops).map(|_| ()),
            };
        }
        let resp = s.request("DELETE", s.entity_path(kind, id)).send(s.cfg)?;
        s.ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// The `members` array of an entity, when it has one.
fn members_mut(entity: &mut Value) -> Option<&mut Vec<Value>> {
    let obj = entity.as_object_mut()?;
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case("members"))?.clone();
    obj.get_mut(&key)?.as_array_mut()
}

/// Replaces an entity: one PUT, except v2 groups above the member threshold, which are written with
/// batched PATCHes (SAP's `ias.patch.group.members.above.threshold`).
fn replace_entity(s: &Settings, kind: EntityKind, id: &str, entity: &Value, version: Option<String>) -> Result<Value> {
    let members = entity
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")))
        .and_then(|(_, v)| v.as_array());
    if kind == EntityKind::Group
        && s.api == Api::V2
        && let Some(list) = members
        && list.len() > s.members_threshold
    {
        log::info(format_args!(
            "group {id} has {} members, above {} ({}): writing it with batched PATCH requests",
            list.len(),
            s.members_threshold,
            settings::MEMBERS_THRESHOLD
        ));
        let mut rest = entity.as_object().cloned().unwrap_or_default();
        rest.retain(|k, _| {
            !["id", "meta", "schemas", "members"]
                .iter()
                .any(|x| k.eq_ignore_ascii_case(x))
        });
        let mut steps = Vec::new();
        if !rest.is_empty() {
            steps.push(Step::Other(j!({"op": "replace", "value": Value::Object(rest)})));
        }
        steps.push(Step::Set(list.clone()));
        let current = members::member_ids(&fetch(s, kind, id)?);
        let docs = members::pack(
            members::resolve(steps, &current),
            s.members_threshold,
            MAX_REMOVALS_PER_PATCH,
        );
        return match send_patches(s, kind, id, docs)? {
            Some(v) => Ok(v),
            None => fetch(s, kind, id),
        };
    }
    put(s, kind, id, entity, version)
}

/// A v2 group patch: member operations batched (at most 50 removals and `threshold` additions a request).
fn patch_group(s: &Settings, id: &str, ops: &PatchOp) -> Result<Option<Value>> {
    let steps = members::steps(ops);
    let current = if members::needs_current(&steps) {
        members::member_ids(&fetch(s, EntityKind::Group, id)?)
    } else {
        Vec::new()
    };
    let docs = members::pack(
        members::resolve(steps, &current),
        s.members_threshold,
        MAX_REMOVALS_PER_PATCH,
    );
    send_patches(s, EntityKind::Group, id, docs)
}

/// Sends PatchOp documents one after the other; the entity of the last answer that carried one.
fn send_patches(s: &Settings, kind: EntityKind, id: &str, docs: Vec<Value>) -> Result<Option<Value>> {
    let total = docs.len();
    let mut last = None;
    for (i, doc) in docs.into_iter().enumerate() {
        if total > 1 {
            log::debug(format_args!("{} {id}: PATCH {} of {total}", kind.as_str(), i + 1));
        }
        let resp = s.request_with("PATCH", s.entity_path(kind, id), &doc).send(s.cfg)?;
        let resp = s.ok_or_not_found(resp, kind, id).inspect_err(|_| {
            if i > 0 {
                log::warn(format_args!(
                    "{} {id}: PATCH {} of {total} failed; the first {i} were applied",
                    kind.as_str(),
                    i + 1
                ));
            }
        })?;
        if !resp.is_empty() {
            last = Some(resp.json()?);
        }
    }
    Ok(last)
}

/// Applies a patch by reading the entity, applying the operations and writing it back with PUT (re-reading
/// once on a stale version).
fn patch_by_put(s: &Settings, kind: EntityKind, id: &str, ops: &PatchOp) -> Result<Value> {
    s.client.patch_by_put(kind, id, ops)
}

/// After a create conflicted: find the entity by the configured unique attributes and, when exactly one
/// matches, overwrite it (SAP's conflict resolution); otherwise keep the conflict.
fn resolve_conflict(s: &Settings, kind: EntityKind, entity: &Value, conflict: Error) -> Result<String> {
    if s.cfg.host_resolves_conflicts() {
        return Err(conflict);
    }
    let mut clauses = Vec::new();
    for attr in s.unique_attributes(kind) {
        let value = json::get(entity, attr).or_else(|| {
            // IAS names a group after its displayName when the custom `name` is not given.
            (kind == EntityKind::Group && attr == settings::DEFAULT_GROUP_UNIQUE_V2)
                .then(|| json::get(entity, "displayName"))
                .flatten()
        });
        let Some(value) = value else {
            log::info(format_args!(
                "create conflicted and the {} has no `{attr}`; keeping the conflict",
                kind.as_str()
            ));
            return Err(conflict);
        };
        let Some(clause) = eq_clause(attr, value) else {
            return Err(conflict);
        };
        clauses.push(clause);
    }
    if clauses.is_empty() {
        return Err(conflict);
    }
    let filter = clauses.join(" and ");
    let Some((id, existing)) = s.find_one(kind, &filter)? else {
        return Err(conflict);
    };
    log::info(format_args!(
        "{} already exists as {id} ({filter}); overwriting it",
        kind.as_str()
    ));
    let mut entity = entity.clone();
    if let Some(obj) = entity.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_string()));
    }
    replace_entity(s, kind, &id, &entity, version_of(&existing)).map(|v| json::text(&v))
}
