//! Groups (BTP role collections): members in UAA's shape, PATCH in UAA's dialect or the members API.

use provisio_sdk::scim::{self, PatchOp, PatchOperation};
use provisio_sdk::{EntityKind, Error, Result, log, status};
use serde_json::{Map, Value, json};

use crate::settings::Settings;
use crate::uaa::{
    self, SCHEMA, Stale, entity_of, entity_path, error_code, fetch, ok_or_not_found, put_versioned, writable,
};

const KIND: EntityKind = EntityKind::Group;

/// A member in UAA's shape: `{value, type: USER|GROUP, origin}`. The type defaults to USER; a USER member
/// without origin gets the first configured origin (UAA's own default is `uaa`). `None` without a value.
fn member(s: &Settings, m: &Value) -> Option<Value> {
    let value = match m {
        Value::String(v) => v.clone(),
        _ => m.get("value")?.as_str()?.to_string(),
    };
    let kind = m
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .filter(|t| t == "USER" || t == "GROUP")
        .unwrap_or_else(|| "USER".into());
    let mut out = Map::new();
    out.insert("value".into(), json!(value));
    out.insert("type".into(), json!(kind));
    match m.get("origin").and_then(Value::as_str) {
        Some(o) if !o.trim().is_empty() => {
            out.insert("origin".into(), json!(o));
        }
        _ if kind == "USER" => {
            if let Some(o) = s.origins.first() {
                out.insert("origin".into(), json!(o));
            }
        }
        _ => {}
    }
    Some(Value::Object(out))
}

fn members_of(s: &Settings, v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(list)) => list.iter().filter_map(|m| member(s, m)).collect(),
        Some(one @ Value::Object(_)) => member(s, one).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A group body ready to write: read-only attributes and `id` dropped, members in UAA's shape.
fn body_of(s: &Settings, entity: Map<String, Value>) -> Value {
    let mut b = writable(entity);
    if let Some(m) = b.get("members") {
        let members = members_of(s, Some(m));
        b.insert("members".into(), Value::Array(members));
    }
    Value::Object(b)
}

/// Creates the group; on a conflict, the group of that displayName is overwritten instead.
pub fn create(s: &Settings, entity: Map<String, Value>) -> Result<Value> {
    let body = body_of(s, entity);
    let resp = s.request_with("POST", "Groups", &body).send(s.cfg)?;
    match resp.status {
        200..=299 => entity_of(&resp, "created"),
        409 => {
            let conflict = status::error_for(&resp);
            if s.cfg.host_resolves_conflicts() {
                return Err(conflict);
            }
            let Some(name) = body.get("displayName").and_then(Value::as_str) else {
                return Err(conflict);
            };
            let found = uaa::search(s, KIND, &format!("displayName eq {}", scim::quote(name)))?;
            let [existing] = found.as_slice() else {
                return Err(conflict);
            };
            let Some(id) = existing.get("id").and_then(Value::as_str).map(str::to_string) else {
                return Err(conflict);
            };
            log::info(format_args!("group already exists as {id}; updating it instead"));
            put_versioned(s, KIND, &id, existing.clone(), Stale::Retry, |_| Ok(body.clone()))
        }
        _ => Err(status::error_for(&resp)),
    }
}

/// Replaces the group (members included) with its version as `If-Match`: the version the entity carries,
/// as a precondition ([`Stale::Fail`]), else the current one (read first, retried once when stale).
pub fn replace(s: &Settings, id: &str, entity: Map<String, Value>) -> Result<Value> {
    let has_version = uaa::version_of(&Value::Object(entity.clone())).is_some();
    let (current, on_stale) = if has_version {
        (Value::Object(entity.clone()), Stale::Fail)
    } else {
        (fetch(s, KIND, id)?, Stale::Retry)
    };
    let body = body_of(s, entity);
    put_versioned(s, KIND, id, current, on_stale, |_| Ok(body.clone()))
}

/// What a PatchOp document asks of a group, in terms UAA can do.
#[derive(Debug, Default, PartialEq)]
struct Change {
    /// Remove every member first.
    clear: bool,
    /// Members to add, in UAA's shape.
    add: Vec<Value>,
    /// Member ids to remove.
    remove: Vec<String>,
    /// Attributes to set (`displayName`, `description`).
    set: Map<String, Value>,
    /// Attributes to clear (`description`).
    unset: Vec<String>,
}

impl Change {
    fn is_members_only(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    fn add_member(&mut self, m: Value) {
        if let Some(v) = m.get("value").and_then(Value::as_str) {
            self.remove.retain(|r| r != v);
            self.add.retain(|a| a.get("value").and_then(Value::as_str) != Some(v));
        }
        self.add.push(m);
    }

    fn remove_member(&mut self, id: &str) {
        self.add.retain(|a| a.get("value").and_then(Value::as_str) != Some(id));
        if !self.remove.iter().any(|r| r == id) {
            self.remove.push(id.to_string());
        }
    }

    fn clear_members(&mut self) {
        self.clear = true;
        self.add.clear();
        self.remove.clear();
    }
}

/// `members[value eq "x"]` → `x`.
fn member_filter_value(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    if !lower.starts_with("members[") || !path.ends_with(']') {
        return None;
    }
    let inner = path.get("members[".len()..path.len() - 1)?.trim();
    let (attr, rest) = inner.split_once(char::is_whitespace)?;
    let (op, literal) = rest.trim_start().split_once(char::is_whitespace)?;
    if !attr.eq_ignore_ascii_case("value") || !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    // A quoted JSON string and nothing else (`… or value eq "y"` is not this simple form).
    serde_json::from_str::<String>(literal.trim()).ok()
}

/// Translates the operations; `None` when one of them is beyond what UAA can express (the caller then reads,
/// applies and writes the whole group).
fn translate(s: &Settings, ops: &PatchOp) -> Option<Change> {
    let mut c = Change::default();
    for op in &ops.operations {
        match &op.path {
            Some(path) => translate_path(s, &mut c, op, path)?,
            None => {
                // No path: the value is an object of attributes to add or replace.
                if op.op == "remove" {
                    return None;
                }
                for (k, v) in op.value.as_ref()?.as_object()? {
                    let one = PatchOperation {
                        op: op.op.clone(),
                        path: Some(k.clone()),
                        value: Some(v.clone()),
                    };
                    translate_path(s, &mut c, &one, k)?;
                }
            }
        }
    }
    Some(c)
}

fn translate_path(s: &Settings, c: &mut Change, op: &PatchOperation, path: &str) -> Option<()> {
    let lower = path.to_ascii_lowercase();
    match (op.op.as_str(), lower.as_str()) {
        ("add", "members") => {
            for m in members_of(s, op.value.as_ref()) {
                c.add_member(m);
            }
        }
        ("replace", "members") => {
            c.clear_members();
            for m in members_of(s, op.value.as_ref()) {
                c.add_member(m);
            }
        }
        ("remove", "members") => match op.value.as_ref() {
            Some(v) => {
                for m in members_of(s, Some(v)) {
                    c.remove_member(m.get("value")?.as_str()?);
                }
            }
            None => c.clear_members(),
        },
        ("remove", _) if lower.starts_with("members[") => {
            let id = member_filter_value(path)?;
            c.remove_member(&id);
        }
        ("add" | "replace", "displayname" | "description") => {
            let value = op.value.as_ref()?.as_str()?;
            let key = if lower == "displayname" {
                "displayName"
            } else {
                "description"
            };
            c.unset.retain(|u| u != key);
            c.set.insert(key.into(), json!(value));
        }
        ("remove", "description") => {
            c.set.shift_remove("description");
            c.unset.push("description".into());
        }
        // The SCIM 2.0 schemas a client may send along change nothing in UAA.
        (_, "schemas") => {}
        _ => return None,
    }
    Some(())
}

/// Applies an RFC 7644 PatchOp document to the group: member changes with UAA's `PATCH /Groups/{id}` or its
/// members API (per `scim.support.patch.operation`), attribute changes with PATCH or a versioned PUT.
pub fn patch(s: &Settings, id: &str, ops: &PatchOp) -> Result<Option<Value>> {
    let Some(change) = translate(s, ops) else {
        log::debug(format_args!(
            "the patch of group {id} is beyond UAA's PATCH; reading, applying and writing it back"
        ));
        return read_apply_put(s, id, ops).map(Some);
    };
    if s.patch {
        return uaa_patch(s, id, &change).map(Some);
    }
    members_api(s, id, &change)?;
    if !change.is_members_only() {
        let current = fetch(s, KIND, id)?;
        let written = put_versioned(s, KIND, id, current, Stale::Retry, |cur| {
            let mut g = cur.as_object().cloned().unwrap_or_default();
            for (k, v) in &change.set {
                g.insert(k.clone(), v.clone());
            }
            for k in &change.unset {
                g.shift_remove(k);
            }
            Ok(body_of(s, g))
        })?;
        return Ok(Some(written));
    }
    if s.patch_response {
        return fetch(s, KIND, id).map(Some);
    }
    Ok(None)
}

/// UAA's PATCH: a partial group, removed members marked `operation: "delete"`, cleared attributes named in
/// `meta.attributes`. `If-Match: *`, because a PATCH merges: it cannot lose a concurrent change it does not name.
fn uaa_patch(s: &Settings, id: &str, c: &Change) -> Result<Value> {
    let mut body = Map::new();
    body.insert("schemas".into(), json!([SCHEMA]));
    for (k, v) in &c.set {
        body.insert(k.clone(), v.clone());
    }
    let mut members = c.add.clone();
    if !c.clear {
        members.extend(c.remove.iter().map(|r| json!({"value": r, "operation": "delete"})));
    }
    if !members.is_empty() {
        body.insert("members".into(), Value::Array(members));
    }
    let mut cleared = c.unset.clone();
    if c.clear {
        cleared.push("members".into());
    }
    if !cleared.is_empty() {
        body.insert("meta".into(), json!({"attributes": cleared}));
    }
    let resp = s
        .request_with("PATCH", entity_path(KIND, id), &Value::Object(body))
        .header("If-Match", "*")
        .send(s.cfg)?;
    entity_of(&ok_or_not_found(resp, KIND, id)?, "patched")
}

fn members_path(id: &str) -> String {
    format!("{}/members", entity_path(KIND, id))
}

/// The members API: `GET|POST /Groups/{id}/members`, `DELETE /Groups/{id}/members/{memberId}`. Adding a
/// member that is there already and removing one that is gone count as done.
fn members_api(s: &Settings, id: &str, c: &Change) -> Result<()> {
    let mut remove = c.remove.clone();
    if c.clear {
        let resp = s.request("GET", members_path(id)).send(s.cfg)?;
        let list = ok_or_not_found(resp, KIND, id)?.json()?;
        let keep: Vec<&str> = c
            .add
            .iter()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
            .collect();
        remove = list
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
            .filter(|v| !keep.contains(v))
            .map(str::to_string)
            .collect();
    }
    for mid in &remove {
        let path = format!("{}/{}", members_path(id), provisio_sdk::http::encode_segment(mid));
        let resp = s.request("DELETE", path).send(s.cfg)?;
        if resp.status == 404 && error_code(&resp).as_deref() == Some("member_not_found") {
            continue;
        }
        ok_or_not_found(resp, KIND, id)?;
    }
    for m in &c.add {
        let resp = s.request_with("POST", members_path(id), m).send(s.cfg)?;
        if resp.status == 409 && error_code(&resp).as_deref() == Some("member_already_exists") {
            continue;
        }
        ok_or_not_found(resp, KIND, id)?;
    }
    Ok(())
}

/// Reads the group, applies the PatchOp, and writes it back with its version (re-applied once when stale).
fn read_apply_put(s: &Settings, id: &str, ops: &PatchOp) -> Result<Value> {
    let current = fetch(s, KIND, id)?;
    put_versioned(s, KIND, id, current, Stale::Retry, |cur| {
        let mut patched = cur.clone();
        ops.apply(&mut patched)?;
        match patched {
            Value::Object(m) => Ok(body_of(s, m)),
            _ => Err(Error::rejected(0, "The patched group is not an object.")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use provisio_sdk::Config;

    #[test]
    fn parses_member_filters() {
        assert_eq!(
            member_filter_value(r#"members[value eq "u-1"]"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(
            member_filter_value(r#"Members[ VALUE EQ "a b" ]"#).as_deref(),
            Some("a b")
        );
        assert_eq!(member_filter_value(r#"members[value eq "a" or value eq "b"]"#), None);
        assert_eq!(member_filter_value(r#"members[display eq "a"]"#), None);
        assert_eq!(member_filter_value("members[é"), None);
        assert_eq!(member_filter_value("members[valueé]"), None);
    }

    #[test]
    fn translates_patch_operations() {
        let cfg = Config::new("s").with("URL", "http://uaa").with("xsuaa.origin", "idp1");
        let s = Settings::new(&cfg).expect("valid");
        let ops = PatchOp::parse(&json!({"Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "g1", "type": "Group"}]},
            {"op": "remove", "path": "members[value eq \"u2\"]"},
            {"op": "replace", "value": {"description": "D", "displayName": "N"}},
        ]}))
        .expect("valid");
        let c = translate(&s, &ops).expect("translatable");
        assert_eq!(
            c.add,
            vec![
                json!({"value": "u1", "type": "USER", "origin": "idp1"}),
                json!({"value": "g1", "type": "GROUP"})
            ]
        );
        assert_eq!(c.remove, vec!["u2".to_string()]);
        assert_eq!(
            c.set,
            json!({"description": "D", "displayName": "N"})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        let ops = PatchOp::parse(&json!({"Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u1"}]},
            {"op": "replace", "path": "members", "value": [{"value": "u3"}]},
            {"op": "remove", "path": "description"},
        ]}))
        .expect("valid");
        let c = translate(&s, &ops).expect("translatable");
        assert!(c.clear);
        assert_eq!(c.add.len(), 1);
        assert_eq!(c.unset, vec!["description".to_string()]);
        let ops = PatchOp::parse(&json!({"Operations": [{"op": "replace", "path": "urn:x:y:attr", "value": 1}]}))
            .expect("valid");
        assert_eq!(translate(&s, &ops), None);
    }
}
