//! Users (BTP shadow users): origins, conflict resolution on create, versioned writes.

use provisio_sdk::scim::{self, PatchOp};
use provisio_sdk::{EntityKind, Error, Result, json, log, status};
use serde_json::{Map, Value};

use crate::settings::{Settings, split_origins};
use crate::uaa::{self, Stale, entity_of, entity_path, fetch, ok_or_not_found, put_versioned, writable};

const KIND: EntityKind = EntityKind::User;

/// The origins a user body asks for: its `origin` (`idp1;idp2` as the `%xsuaa.origin%` constant yields it, or
/// an array), else the configured ones. Empty means "the server's default origin".
pub fn origins_for(s: &Settings, body: &Map<String, Value>) -> Vec<String> {
    let asked = match body.get("origin") {
        Some(Value::String(o)) => split_origins(o),
        Some(Value::Array(list)) => {
            let joined: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            split_origins(&joined.join(";"))
        }
        _ => Vec::new(),
    };
    if asked.is_empty() { s.origins.clone() } else { asked }
}

/// The body with `origin` set to one origin, or without it (server default).
fn with_origin(body: &Map<String, Value>, origin: Option<&str>) -> Map<String, Value> {
    let mut b = writable(body.clone());
    match origin {
        Some(o) => {
            b.insert("origin".into(), Value::String(o.to_string()));
        }
        None => {
            b.shift_remove("origin");
        }
    }
    b
}

/// Creates the user, once per origin when several are configured; returns the first one created (the host
/// keeps its id; the others are found again by userName and origin on replace and delete).
pub fn create(s: &Settings, body: Map<String, Value>) -> Result<Value> {
    let origins = origins_for(s, &body);
    if origins.len() <= 1 {
        return create_one(s, with_origin(&body, origins.first().map(String::as_str)));
    }
    let mut first = None;
    for origin in &origins {
        let created = create_one(s, with_origin(&body, Some(origin)))?;
        first.get_or_insert(created);
    }
    first.ok_or_else(|| Error::rejected(0, "No origin to create the user in."))
}

fn create_one(s: &Settings, body: Map<String, Value>) -> Result<Value> {
    let body = Value::Object(body);
    let resp = s.request_with("POST", "Users", &body).send(s.cfg)?;
    match resp.status {
        200..=299 => entity_of(&resp, "created"),
        409 => resolve_conflict(s, &body, status::error_for(&resp)),
        _ => Err(status::error_for(&resp)),
    }
}

/// After a create conflicted: look the user up by `xsuaa.user.unique.attribute` (within the body's origin,
/// since UAA user names are unique per origin) and, when exactly one matches, overwrite it, as SAP Identity
/// Provisioning does; otherwise keep the conflict.
fn resolve_conflict(s: &Settings, body: &Value, conflict: Error) -> Result<Value> {
    if s.cfg.host_resolves_conflicts() {
        return Err(conflict);
    }
    let mut attrs = s.user_unique_attributes();
    if body.get("origin").is_some() && !attrs.iter().any(|a| a.eq_ignore_ascii_case("origin")) {
        attrs.push("origin");
    }
    let mut clauses = Vec::new();
    for attr in attrs {
        let (Some(name), Some(value)) = (filter_attribute(attr), json::get(body, attr)) else {
            return Err(conflict);
        };
        let literal = match value {
            Value::String(v) => scim::quote(v),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => return Err(conflict),
        };
        clauses.push(format!("{name} eq {literal}"));
    }
    let filter = clauses.join(" and ");
    let found = uaa::search(s, KIND, &filter)?;
    let [existing] = found.as_slice() else {
        log::info(format_args!(
            "create conflicted and `{filter}` matches {} users; keeping the conflict",
            found.len()
        ));
        return Err(conflict);
    };
    let Some(id) = existing.get("id").and_then(Value::as_str) else {
        return Err(conflict);
    };
    log::info(format_args!(
        "user already exists as {id} ({filter}); updating it instead"
    ));
    let id = id.to_string();
    put_versioned(s, KIND, &id, existing.clone(), Stale::Retry, |_| Ok(body.clone()))
}

/// The UAA filter attribute of a unique-attribute path: `emails[0].value` → `emails.value`.
fn filter_attribute(path: &str) -> Option<String> {
    let keys: Vec<String> = json::parse_path(path)?
        .into_iter()
        .filter_map(|seg| match seg {
            json::Segment::Key(k) => Some(k),
            json::Segment::Index(_) => None,
        })
        .collect();
    (!keys.is_empty()).then(|| keys.join("."))
}

/// Replaces the user with a PUT and a version as `If-Match`: the version the body carries, as a precondition
/// (a stale one is [`Error::Conflict`], never retried), else the current one (read first, re-read and retried
/// once when stale). With several origins, the user's twins in the other origins (same userName) are updated
/// too, and created where missing.
pub fn replace(s: &Settings, id: &str, body: Map<String, Value>) -> Result<Value> {
    let origins = origins_for(s, &body);
    let concrete = match body.get("origin") {
        Some(Value::String(o)) => {
            let o = split_origins(o);
            (o.len() == 1).then(|| o[0].clone())
        }
        _ => None,
    };
    // The entity's own version saves a read; without it (or to learn the origin) read the user first.
    let precondition = uaa::version_of(&Value::Object(body.clone()));
    let mut current = match (precondition, &concrete) {
        (Some(_), Some(_)) if origins.len() <= 1 => Value::Object(body.clone()),
        _ => fetch(s, KIND, id)?,
    };
    let on_stale = match precondition {
        Some(version) => {
            // The caller's version, not the one just read: a change in between must fail the write.
            if let Some(meta) = current.get_mut("meta").and_then(Value::as_object_mut) {
                meta.insert("version".into(), version.into());
            }
            Stale::Fail
        }
        None => Stale::Retry,
    };
    let own_origin = concrete
        .clone()
        .or_else(|| json::get_str(&current, "origin").map(str::to_string));
    let main = put_versioned(s, KIND, id, current, on_stale, |cur| {
        // Origin is immutable in UAA: keep the stored one unless the body names exactly one.
        let origin = own_origin
            .clone()
            .or_else(|| json::get_str(cur, "origin").map(str::to_string));
        Ok(Value::Object(with_origin(&body, origin.as_deref())))
    })?;
    if origins.len() > 1 {
        let main_origin = json::get_str(&main, "origin").unwrap_or_default().to_string();
        let Some(user_name) = json::get_str(&main, "userName").map(str::to_string) else {
            return Ok(main);
        };
        for origin in origins.iter().filter(|o| **o != main_origin) {
            match twin(s, &user_name, origin)? {
                Some(t) => {
                    let Some(tid) = t.get("id").and_then(Value::as_str).map(str::to_string) else {
                        continue;
                    };
                    put_versioned(s, KIND, &tid, t, Stale::Retry, |_| {
                        Ok(Value::Object(with_origin(&body, Some(origin))))
                    })?;
                }
                None => {
                    create_one(s, with_origin(&body, Some(origin)))?;
                }
            }
        }
    }
    Ok(main)
}

/// The user with this userName in this origin, if there is one.
fn twin(s: &Settings, user_name: &str, origin: &str) -> Result<Option<Value>> {
    let filter = format!(
        "userName eq {} and origin eq {}",
        scim::quote(user_name),
        scim::quote(origin)
    );
    Ok(uaa::search(s, KIND, &filter)?.into_iter().next())
}

/// Applies an RFC 7644 PatchOp: read the user, apply the operations, PUT it back with its version (re-read,
/// re-applied and retried once when stale).
pub fn patch(s: &Settings, id: &str, ops: &PatchOp) -> Result<Value> {
    let current = fetch(s, KIND, id)?;
    put_versioned(s, KIND, id, current, Stale::Retry, |cur| {
        let mut patched = cur.clone();
        ops.apply(&mut patched)?;
        match patched {
            Value::Object(m) => Ok(Value::Object(writable(m))),
            _ => Err(Error::rejected(0, "The patched user is not an object.")),
        }
    })
}

/// Deletes the user (UAA answers 200 with it); with several origins, its twins in the other origins too.
pub fn delete(s: &Settings, id: &str) -> Result<()> {
    if s.origins.len() <= 1 {
        let resp = s.request("DELETE", entity_path(KIND, id)).send(s.cfg)?;
        return ok_or_not_found(resp, KIND, id).map(|_| ());
    }
    let current = fetch(s, KIND, id)?;
    let resp = s.request("DELETE", entity_path(KIND, id)).send(s.cfg)?;
    ok_or_not_found(resp, KIND, id)?;
    let origin = json::get_str(&current, "origin").unwrap_or_default();
    let Some(user_name) = json::get_str(&current, "userName") else {
        return Ok(());
    };
    for other in s.origins.iter().filter(|o| o.as_str() != origin) {
        if let Some(tid) =
            twin(s, user_name, other)?.and_then(|t| t.get("id").and_then(Value::as_str).map(str::to_string))
        {
            let resp = s.request("DELETE", entity_path(KIND, &tid)).send(s.cfg)?;
            if resp.status != 404 {
                ok_or_not_found(resp, KIND, &tid)?;
            }
        }
    }
    Ok(())
}
