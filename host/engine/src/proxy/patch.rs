//! RFC 7644 §3.5.2 PATCH, applied by the host to a SCIM resource (for read-modify-replace).
//!
//! Operations apply in order to a copy, so a failing operation leaves the stored resource untouched (the
//! request is atomic). Paths are `attr`, `attr.sub`, `urn:…:attr[.sub]`, a bare extension URN, and value
//! paths `attr[filter][.sub]` with the full filter grammar. Op names and attribute names ignore case.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{AttrPath, PatchPath};
use super::schema::{SchemaRules, Served, remove_ci};
use crate::connector::EntityKind;

/// The PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// What it does.
    pub kind: OpKind,
    /// Its path, when given.
    pub path: Option<String>,
    /// Its value, when given.
    pub value: Option<Value>,
}

/// Parses a PatchOp request body: the PatchOp schema and a non-empty `Operations` array are required.
pub fn parse(doc: &Value) -> Result<Vec<Op>, ScimError> {
    let has_schema = doc.get("schemas").and_then(Value::as_array).is_some_and(|s| {
        s.iter()
            .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))
    });
    if !has_schema {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body must list the schema {PATCH_OP}"),
        ));
    }
    let ops = doc
        .get("Operations")
        .or_else(|| doc.get("operations"))
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a PATCH body needs a non-empty Operations array"))?;
    ops.iter()
        .enumerate()
        .map(|(i, o)| {
            let name = o.get("op").and_then(Value::as_str).unwrap_or_default();
            let kind = match name.to_ascii_lowercase().as_str() {
                "add" => OpKind::Add,
                "remove" => OpKind::Remove,
                "replace" => OpKind::Replace,
                _ => {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        format!("Operations[{i}]: op {name:?} is not add, remove or replace"),
                    ));
                }
            };
            let path = match o.get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if !p.trim().is_empty() => Some(p.trim().to_string()),
                Some(_) => {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("Operations[{i}]: path must be a non-empty string"),
                    ));
                }
            };
            let value = o.get("value").cloned();
            if kind != OpKind::Remove && value.is_none() {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("Operations[{i}]: {name} needs a value"),
                ));
            }
            Ok(Op { kind, path, value })
        })
        .collect()
}

/// Applies the operations to `resource` (atomically: on error `resource` is unchanged).
pub fn apply(resource: &mut Value, ops: &[Op], served: &Served, kind: EntityKind) -> Result<(), ScimError> {
    let mut work = resource.clone();
    let patcher = Patcher { served, kind };
    for op in ops {
        patcher.apply_one(&mut work, op.kind, op.path.as_deref(), op.value.clone())?;
    }
    *resource = work;
    Ok(())
}

struct Patcher<'a> {
    served: &'a Served,
    kind: EntityKind,
}

/// Attributes no PATCH may touch.
fn is_reserved(name: &str) -> bool {
    ["id", "meta", "schemas"].iter().any(|r| r.eq_ignore_ascii_case(name))
}

impl Patcher<'_> {
    fn rules(&self) -> SchemaRules<'_> {
        SchemaRules {
            served: self.served,
            kind: self.kind,
        }
    }

    fn apply_one(
        &self,
        resource: &mut Value,
        kind: OpKind,
        path: Option<&str>,
        value: Option<Value>,
    ) -> Result<(), ScimError> {
        let Some(path) = path else {
            // No path: the value is an object of attributes (dotted keys and extension URNs allowed).
            if kind == OpKind::Remove {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            let Some(Value::Object(attrs)) = value else {
                return Err(ScimError::bad(
                    "invalidValue",
                    "an operation without a path needs an object value",
                ));
            };
            for (k, v) in attrs {
                if is_reserved(&k) {
                    continue; // clients echo id/meta/schemas back; they are not changes
                }
                self.apply_one(resource, kind, Some(&k), Some(v))?;
            }
            return Ok(());
        };
        // A bare extension URN: the extension object as a whole.
        if let Some(urn) = self.served.known_urn(self.kind, path) {
            if urn == super::schema::core_urn(self.kind) {
                return self.apply_one(resource, kind, None, value);
            }
            return match (kind, value) {
                (OpKind::Remove, _) => {
                    if let Some(obj) = resource.as_object_mut() {
                        remove_ci(obj, urn);
                    }
                    Ok(())
                }
                (_, Some(Value::Object(attrs))) => {
                    for (k, v) in attrs.into_iter().filter(|(k, _)| !is_reserved(k)) {
                        self.apply_one(resource, kind, Some(&format!("{urn}:{k}")), Some(v))?;
                    }
                    Ok(())
                }
                _ => Err(ScimError::bad("invalidValue", format!("{urn} takes an object value"))),
            };
        }
        let parsed = PatchPath::parse(path).map_err(|e| ScimError::bad("invalidPath", e.0))?;
        let attr = parsed.attr.clone();
        if is_reserved(&attr.name) && attr.urn.is_none() {
            return Err(ScimError::bad("mutability", format!("{} cannot be changed", attr.name)));
        }
        let urn = match &attr.urn {
            Some(u) => Some(
                self.served
                    .known_urn(self.kind, u)
                    .ok_or_else(|| ScimError::bad("invalidPath", format!("unknown schema {u}")))?,
            ),
            None => None,
        };
        let sub_name = parsed.sub_after_filter.clone().or_else(|| attr.sub.clone());
        let definition = self.served.definition(
            self.kind,
            &AttrPath {
                sub: sub_name.clone(),
                ..attr.clone()
            },
        );
        let common = attr.urn.is_none() && attr.name.eq_ignore_ascii_case("externalId");
        let multi = match &definition {
            Some((d, _)) => d["multiValued"] == true,
            // RFC 7643 §3.1: a common attribute of every resource, in no schema's attribute list.
            None if common => false,
            None => {
                // Not in the served schemas: only attributes the resource already carries may change.
                let present = self
                    .rules()
                    .container(resource, &attr)
                    .and_then(|c| super::filter::get_ci(c, &attr.name));
                match present {
                    Some(v) => v.is_array(),
                    None => {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("{path}: this system has no attribute {}", attr.name),
                        ));
                    }
                }
            }
        };
        if let Some((d, sub)) = &definition {
            let m = sub.map(|s| &s["mutability"]).unwrap_or(&d["mutability"]);
            if m == "readOnly" || (sub.is_none() && d["mutability"] == "readOnly") {
                return Err(ScimError::bad("mutability", format!("{path} is read-only")));
            }
        }
        // The object that holds the attribute: the resource or its extension object.
        let container = container_mut(resource, urn, self.kind, kind != OpKind::Remove)?;
        let Some(container) = container else { return Ok(()) };
        let key = existing_key(container, &attr.name);
        let is_members = self.kind == EntityKind::Group && attr.name.eq_ignore_ascii_case("members");

        if let Some(filter) = &parsed.filter {
            let rules = self.rules();
            let parent = AttrPath {
                urn: attr.urn.clone(),
                name: attr.name.clone(),
                sub: None,
                index: None,
            };
            let Some(Value::Array(items)) = container.get_mut(&key) else {
                return match kind {
                    OpKind::Remove => Ok(()),
                    _ => Err(ScimError::bad("noTarget", format!("{path} matches no value"))),
                };
            };
            let hits: Vec<usize> = (0..items.len())
                .filter(|&i| filter.matches_element(&items[i], &parent, &rules))
                .collect();
            if hits.is_empty() {
                return match kind {
                    OpKind::Remove => Ok(()),
                    _ => Err(ScimError::bad("noTarget", format!("{path} matches no value"))),
                };
            }
            match (kind, &parsed.sub_after_filter) {
                (OpKind::Remove, None) => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&i);
                        i += 1;
                        keep
                    });
                    if items.is_empty() {
                        container.shift_remove(&key);
                    }
                }
                (OpKind::Remove, Some(sub)) => {
                    for &i in &hits {
                        if let Some(o) = items[i].as_object_mut() {
                            remove_ci(o, sub);
                        }
                    }
                }
                (_, Some(sub)) => {
                    let v = value.unwrap_or(Value::Null);
                    for &i in &hits {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = existing_key(o, sub);
                            o.insert(k, v.clone());
                        }
                    }
                }
                (_, None) => {
                    let v = value.unwrap_or(Value::Null);
                    for &i in &hits {
                        merge(&mut items[i], v.clone());
                    }
                }
            }
            if kind != OpKind::Remove {
                normalize_primary(container.get_mut(&key));
            }
            return Ok(());
        }

        match (&attr.sub, kind) {
            (None, OpKind::Remove) => {
                match (value, container.get_mut(&key)) {
                    // Entra's form: remove with the values to take out of a multi-valued attribute.
                    (Some(Value::Array(gone)), Some(Value::Array(items))) => {
                        items.retain(|item| !gone.iter().any(|g| same_element(item, g, true)));
                        if items.is_empty() {
                            container.shift_remove(&key);
                        }
                    }
                    _ => {
                        container.shift_remove(&key);
                    }
                }
            }
            (None, OpKind::Add) if multi => {
                let new = match value.unwrap_or(Value::Null) {
                    Value::Array(a) => a,
                    Value::Null => vec![],
                    v => vec![v],
                };
                let slot = container.entry(key.clone()).or_insert_with(|| Value::Array(vec![]));
                if !slot.is_array() {
                    *slot = Value::Array(vec![]);
                }
                if let Value::Array(items) = slot {
                    for n in new {
                        if let Some(pos) = items.iter().position(|i| same_element(i, &n, is_members)) {
                            items[pos] = n;
                        } else {
                            items.push(n);
                        }
                    }
                }
                prefer_new_primary(container.get_mut(&key));
            }
            (None, OpKind::Replace) if multi => {
                let new = match value.unwrap_or(Value::Null) {
                    Value::Array(a) => a,
                    Value::Null => vec![],
                    v => vec![v],
                };
                if new.is_empty() {
                    container.shift_remove(&key);
                } else {
                    container.insert(key.clone(), Value::Array(new));
                    normalize_primary(container.get_mut(&key));
                }
            }
            (None, _) => {
                let v = value.unwrap_or(Value::Null);
                match (container.get_mut(&key), &v) {
                    (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, v),
                    _ if v.is_null() => {
                        container.shift_remove(&key);
                    }
                    _ => {
                        container.insert(key, v);
                    }
                }
            }
            (Some(sub), _) => {
                let slot = container.entry(key.clone()).or_insert(Value::Null);
                let targets: Vec<&mut Value> = match slot {
                    Value::Array(items) => items.iter_mut().collect(),
                    other => {
                        if other.is_null() {
                            if kind == OpKind::Remove {
                                container.shift_remove(&key);
                                return Ok(());
                            }
                            *other = Value::Object(Map::new());
                        }
                        vec![other]
                    }
                };
                for t in targets {
                    let Some(o) = t.as_object_mut() else {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("{path}: {} is not complex", attr.name),
                        ));
                    };
                    let k = existing_key(o, sub);
                    match (kind, &value) {
                        (OpKind::Remove, _) | (_, None | Some(Value::Null)) => {
                            o.shift_remove(&k);
                        }
                        (_, Some(v)) => {
                            o.insert(k, v.clone());
                        }
                    }
                }
                if container
                    .get(&key)
                    .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
                {
                    container.shift_remove(&key);
                }
            }
        }
        Ok(())
    }
}

/// The object holding an attribute: the resource itself, or the extension object of `urn` (created for
/// add/replace).
fn container_mut<'v>(
    resource: &'v mut Value,
    urn: Option<&str>,
    kind: EntityKind,
    create: bool,
) -> Result<Option<&'v mut Map<String, Value>>, ScimError> {
    let root = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidValue", "the resource is not an object"))?;
    match urn {
        Some(u) if u != super::schema::core_urn(kind) => {
            let key = existing_key(root, u);
            if !root.contains_key(&key) {
                if !create {
                    return Ok(None);
                }
                root.insert(key.clone(), Value::Object(Map::new()));
                add_schema(root, u);
            }
            Ok(root.get_mut(&key).and_then(Value::as_object_mut))
        }
        _ => Ok(Some(root)),
    }
}

fn add_schema(root: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(schemas)) = root.get_mut("schemas")
        && !schemas
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
    {
        schemas.push(Value::String(urn.to_string()));
    }
}

/// The key of `obj` equal to `name` ignoring case, or `name`.
fn existing_key(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Whether two elements of a multi-valued attribute are the same: equal, or (members) the same `value`.
fn same_element(a: &Value, b: &Value, by_value: bool) -> bool {
    if a == b {
        return true;
    }
    if by_value {
        let va = a.get("value").or(Some(a));
        let vb = b.get("value").or(Some(b));
        return va == vb;
    }
    false
}

/// Merges `value` into `target`: objects key by key (ignoring case), anything else replaces.
fn merge(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Object(t), Value::Object(v)) => {
            for (k, v) in v {
                let key = existing_key(t, &k);
                match t.get_mut(&key) {
                    Some(existing @ Value::Object(_)) if v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(key, v);
                    }
                }
            }
        }
        (t, v) => *t = v,
    }
}

/// At most one element may be primary (RFC 7643 §2.4): the last one marked wins.
fn normalize_primary(slot: Option<&mut Value>) {
    let Some(Value::Array(items)) = slot else { return };
    let last = items.iter().rposition(|i| i.get("primary") == Some(&Value::Bool(true)));
    if let Some(last) = last {
        for (i, item) in items.iter_mut().enumerate() {
            if i != last
                && let Some(o) = item.as_object_mut()
                && o.get("primary") == Some(&Value::Bool(true))
            {
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

/// After an add, the newly added primary (the last one) wins.
fn prefer_new_primary(slot: Option<&mut Value>) {
    normalize_primary(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served() -> Served {
        let all = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                         "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        Served::new(
            &[EntityKind::User, EntityKind::Group],
            &all,
            &all,
            crate::proxy::schema::Limits::default(),
        )
    }

    fn doc(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    fn run(resource: Value, kind: EntityKind, ops: Value) -> Result<Value, ScimError> {
        let mut r = resource;
        apply(&mut r, &parse(&doc(ops))?, &served(), kind)?;
        Ok(r)
    }

    fn user() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.org", "type": "home"}]})
    }

    #[test]
    fn add_replace_remove() {
        let u = run(user(), EntityKind::User, json!([
            {"op": "Replace", "path": "name.givenName", "value": "Babs"},
            {"op": "add", "path": "nickName", "value": "B"},
            {"op": "ADD", "path": "emails", "value": [{"value": "c@z.net", "type": "other", "primary": true}]},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.com"},
            {"op": "replace", "value": {"name.familyName": "J", "active": false,
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}}},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m1"}
        ])).expect("applied");
        assert_eq!(u["name"], json!({"givenName": "Babs", "familyName": "J"}));
        assert_eq!(u["nickName"], "B");
        assert_eq!(u["active"], false);
        let emails = u["emails"].as_array().expect("emails");
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0], json!({"value": "w@x.com", "type": "work", "primary": false}));
        assert_eq!(emails[1]["primary"], true);
        let ext = &u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(ext, &json!({"employeeNumber": "7", "manager": {"value": "m1"}}));
        assert!(
            u["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!(super::super::schema::ENTERPRISE))
        );
        let u = run(
            u,
            EntityKind::User,
            json!([{"op": "remove", "path": "name"}, {"op": "remove", "path": "emails"}]),
        )
        .expect("removed");
        assert!(u.get("name").is_none() && u.get("emails").is_none());
    }

    #[test]
    fn members() {
        let g = json!({"id": "g", "displayName": "G", "members": [{"value": "a"}, {"value": "b"}]});
        let g = run(
            g,
            EntityKind::Group,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "c", "display": "C"}, {"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"b\"]"},
                {"op": "remove", "path": "members[value eq \"zz\"]"}
            ]),
        )
        .expect("applied");
        assert_eq!(g["members"], json!([{"value": "a"}, {"value": "c", "display": "C"}]));
        let g = run(
            g,
            EntityKind::Group,
            json!([{"op": "remove", "path": "members", "value": [{"value": "a"}]}]),
        )
        .expect("entra form");
        assert_eq!(g["members"], json!([{"value": "c", "display": "C"}]));
        let g = run(
            g,
            EntityKind::Group,
            json!([{"op": "replace", "path": "members", "value": []}]),
        )
        .expect("all removed");
        assert!(g.get("members").is_none());
    }

    #[test]
    fn errors_leave_the_resource_alone() {
        let cases = [
            (
                json!({"Operations": [{"op": "add", "path": "nickName", "value": "x"}]}),
                "invalidSyntax",
            ),
            (doc(json!([])), "invalidSyntax"),
            (doc(json!([{"op": "move", "path": "x"}])), "invalidSyntax"),
            (doc(json!([{"op": "remove"}])), "noTarget"),
            (
                doc(json!([{"op": "replace", "path": "id", "value": "x"}])),
                "mutability",
            ),
            (
                doc(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
                "mutability",
            ),
            (
                doc(json!([{"op": "replace", "path": "emails[type eq \"none\"].value", "value": "x"}])),
                "noTarget",
            ),
            (
                doc(json!([{"op": "replace", "path": "emails[type eq]", "value": "x"}])),
                "invalidPath",
            ),
            (
                doc(
                    json!([{"op": "add", "path": "nickName", "value": "ok"}, {"op": "add", "path": "bogus", "value": 1}]),
                ),
                "invalidPath",
            ),
        ];
        for (body, expected) in cases {
            let mut u = user();
            let result = parse(&body).and_then(|ops| apply(&mut u, &ops, &served(), EntityKind::User));
            let e = result.expect_err(&body.to_string());
            assert_eq!(e.scim_type, Some(expected), "{body}: {e}");
            assert_eq!(u, user(), "{body} changed the resource");
        }
    }
}
