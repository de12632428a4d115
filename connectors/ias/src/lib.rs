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

use provisio_sdk::scim::{self, ListResponse, PatchOp};
use provisio_sdk::{
    Config, Connector, Descriptor, EntityKind, Error, Operation, Page, PageRequest, Result, json, log, status,
};
use serde_json::{Value, json as j};

use members::Step;
use remote::{fetch, ok_or_not_found, put, version_of};
use settings::{Api, MAX_PAGE, MAX_REMOVALS_PER_PATCH, Paging, Settings};

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

impl Connector for Ias {
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

    fn test_connection(cfg: &Config) -> Result<String> {
        let s = Settings::new(cfg)?;
        let path = s.endpoint(EntityKind::User);
        let resp = s
            .request("GET", &path)
            .query("startIndex", 1)
            .query("count", 1)
            .send(cfg)?;
        match resp.status {
            200..=299 => match resp.json().and_then(|v| ListResponse::from_json(&v)) {
                Ok(_) => Ok(CONNECTION_OK.to_string()),
                Err(_) => Err(Error::invalid_config(format!(
                    "The system answered `GET {path}`, but not with a SCIM list; check the properties `{}` and `{}`.",
                    settings::URL,
                    settings::API_VERSION
                ))),
            },
            401 | 403 => Err(Error::unauthorized(format!(
                "Identity Authentication answered HTTP {} to `GET {path}`; check User (the client id) and Password (the client secret) of the technical user, and that it may manage users and groups. {}",
                resp.status,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "The tenant has no `{path}` endpoint (HTTP 404); check the property `{}` (the tenant URL, e.g. https://<tenant>.accounts.ondemand.com) and `{}`.",
                settings::URL,
                settings::API_VERSION
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        let s = Settings::new(cfg)?;
        let count = req.page_size.clamp(1, MAX_PAGE);
        let delta = match (&req.delta_since, s.api) {
            (Some(_), Api::V1) => {
                return Err(Error::Unsupported(
                    "Delta read needs the Identity Directory SCIM API (ias.api.version 2).".into(),
                ));
            }
            (Some(since), Api::V2) => Some(scim::modified_since(since)),
            (None, _) => None,
        };
        let filter = scim::and_filters([s.filter(req.kind), req.filter.as_deref(), delta.as_deref()]);
        let mut request = s
            .request("GET", s.endpoint(req.kind))
            .query_opt("filter", filter.as_deref());
        let mut start = 1;
        match s.paging {
            Paging::Id => request = request.query("startId", scim::start_id(req.cursor.as_deref())),
            Paging::Index => {
                start = scim::start_index(req.cursor.as_deref())?;
                request = request.query("startIndex", start);
            }
        }
        let resp = request.query("count", count).send(cfg)?;
        if resp.status == 400 && filter.is_some() {
            let detail = status::detail(&resp.body);
            if delta.is_some() {
                return Err(Error::Unsupported(format!(
                    "The system refused the delta-read filter `meta.lastModified gt …`: {detail}"
                )));
            }
            if req.filter.is_none() {
                return Err(Error::invalid_config(format!(
                    "The system refused the filter in the property `{}`: {detail}",
                    settings::filter_property(req.kind)
                )));
            }
        }
        let resp = resp.error_for_status()?;
        let list = ListResponse::from_response(&resp)?;
        match s.paging {
            Paging::Index => Ok(list.into_index_page(start, count)),
            Paging::Id => id_page(list, req.cursor.as_deref(), count as usize),
        }
    }

    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        fetch(&s, kind, id).map(|v| v.to_string())
    }

    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
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
        let resp = s.request_with("POST", s.endpoint(kind), &entity).send(cfg)?;
        let created = match resp.status {
            200..=299 => resp.json()?,
            409 if kind == EntityKind::User && !s.conflict_resolution => {
                return Err(status::error_for(&resp));
            }
            409 => {
                if let Some(list) = members_mut(&mut entity) {
                    list.append(&mut later);
                }
                return resolve_conflict(&s, kind, &entity, status::error_for(&resp));
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
        let added = send_patches(&s, kind, id, docs).inspect_err(|_| {
            log::warn(format_args!(
                "group {id} was created, but adding its remaining members failed; the next update completes them"
            ))
        })?;
        match added {
            Some(v) => Ok(v.to_string()),
            None => fetch(&s, kind, id).map(|v| v.to_string()),
        }
    }

    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let s = Settings::new(cfg)?;
        let mut entity = Value::Object(json::parse_object(entity, kind.as_str())?);
        remote::declare_schemas(&mut entity, kind);
        replace_entity(&s, kind, id, &entity, version_of(&entity)).map(|v| v.to_string())
    }

    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let s = Settings::new(cfg)?;
        let mut doc = json::parse(operations, "PatchOp document")?;
        let ops = PatchOp::parse(&doc)?;
        let result = match (s.api, kind) {
            (Api::V2, EntityKind::Group) => patch_group(&s, id, &ops)?,
            (Api::V2, EntityKind::User) if s.patch => {
                scim::ensure_patch_schema(&mut doc);
                let resp = s
                    .request_with("PATCH", remote::entity_path(&s, kind, id), &doc)
                    .send(cfg)?;
                let resp = ok_or_not_found(resp, kind, id)?;
                if resp.is_empty() { None } else { Some(resp.json()?) }
            }
            // Version 1 has no PATCH; and with ias.support.patch.operation false SAP writes users with PUT.
            _ => Some(patch_by_put(&s, kind, id, &ops)?),
        };
        Ok(result.map(|v| v.to_string()))
    }

    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        let s = Settings::new(cfg)?;
        if kind == EntityKind::User && s.update_instead_delete {
            log::info(format_args!(
                "{} is true: deactivating user {id} instead of deleting it",
                settings::UPDATE_INSTEAD_DELETE
            ));
            let ops = PatchOp::new().replace(Some("active"), Value::Bool(false));
            return match s.api {
                Api::V2 => {
                    let resp = s
                        .request_with("PATCH", remote::entity_path(&s, kind, id), &ops.to_json())
                        .send(cfg)?;
                    ok_or_not_found(resp, kind, id).map(|_| ())
                }
                Api::V1 => patch_by_put(&s, kind, id, &ops).map(|_| ()),
            };
        }
        let resp = s.request("DELETE", remote::entity_path(&s, kind, id)).send(cfg)?;
        ok_or_not_found(resp, kind, id).map(|_| ())
    }
}

/// A page under id paging: the next cursor is `nextId`. A server that returned more than asked is cut
/// short, and the next page starts at the first entity dropped (ids are served in order); a `nextId` that
/// does not move is refused rather than read forever.
fn id_page(mut list: ListResponse, cursor: Option<&str>, count: usize) -> Result<Page> {
    if list.resources.len() > count {
        let next = list.resources[count]
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string);
        list.resources.truncate(count);
        list.next_id = next.or(Some("end".into()));
    }
    let page = list.into_cursor_page();
    if let (Some(next), Some(current)) = (&page.next_cursor, cursor)
        && next == current
    {
        return Err(Error::rejected(
            200,
            format!("The system answered startId={current} with the same nextId; paging does not advance."),
        ));
    }
    Ok(page)
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
        let resp = s
            .request_with("PATCH", remote::entity_path(s, kind, id), &doc)
            .send(s.cfg)?;
        let resp = ok_or_not_found(resp, kind, id).inspect_err(|_| {
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
    let mut attempt = 0;
    loop {
        let current = fetch(s, kind, id)?;
        let version = version_of(&current);
        let mut patched = current;
        ops.apply(&mut patched)?;
        if let Some(obj) = patched.as_object_mut() {
            obj.shift_remove("meta");
        }
        match remote::send_put(s, kind, id, &patched, version.as_deref())? {
            resp if resp.status == 412 && attempt == 0 => attempt += 1,
            resp => return remote::finish_put(resp, kind, id),
        }
    }
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
        let (Some(name), Some(value)) = (remote::filter_attribute(attr), value) else {
            log::info(format_args!(
                "create conflicted and the {} has no `{attr}`; keeping the conflict",
                kind.as_str()
            ));
            return Err(conflict);
        };
        let literal = match value {
            Value::String(v) => scim::quote(v),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => return Err(conflict),
        };
        clauses.push(format!("{name} eq {literal}"));
    }
    if clauses.is_empty() {
        return Err(conflict);
    }
    let filter = clauses.join(" and ");
    let resp = s
        .request("GET", s.endpoint(kind))
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
        "{} already exists as {id} ({filter}); overwriting it",
        kind.as_str()
    ));
    let mut entity = entity.clone();
    if let Some(obj) = entity.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_string()));
    }
    replace_entity(s, kind, id, &entity, version_of(existing)).map(|v| v.to_string())
}
