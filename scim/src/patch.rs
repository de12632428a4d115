//! RFC 7644 §3.5.2 PATCH: build a PatchOp document, parse one, apply it to a resource under its schema
//! [`Rules`].
//!
//! Operations apply in order to a copy, so a failing operation leaves the resource untouched (the request is
//! atomic). Paths are `attr`, `attr.sub`, `urn:…:attr[.sub]`, a bare extension URN, and value paths
//! `attr[filter][.sub]` with the full filter grammar. Op names and attribute names ignore case. The schema
//! rules decide what is multi-valued, what is read-only, and whether attributes it does not define may be
//! added; `id`, `meta` and `schemas` never change (a path-less value that echoes them is not a change).
//! When the last value of a multi-valued attribute is removed the attribute is unassigned (§3.5.2.2), and
//! at most one value stays `primary` (RFC 7643 §2.4: the last one marked).
//!
//! ```
//! use provisio_scim::PatchOp;
//! use serde_json::json;
//! let doc = PatchOp::new()
//!     .replace(Some("active"), json!(false))
//!     .add(Some("members"), json!([{"value": "u1"}]))
//!     .remove("members[value eq \"u2\"]");
//! let mut group = json!({"displayName": "G", "members": [{"value": "u2"}]});
//! doc.apply(&mut group).unwrap();
//! assert_eq!(group, json!({"displayName": "G", "members": [{"value": "u1"}], "active": false}));
//! assert_eq!(doc.to_json()["Operations"].as_array().map(Vec::len), Some(3));
//! ```

use serde_json::{Map, Value, json};

use crate::error::ScimError;
use crate::filter::get_ci;
use crate::path::{AttrPath, PatchPath, is_urn};
use crate::rules::{Rules, Schemaless};

/// The PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// One operation of a PatchOp document.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// `add`, `replace` or `remove`, lower case.
    pub op: String,
    /// The target path, when given.
    pub path: Option<String>,
    /// The value, when given.
    pub value: Option<Value>,
}

/// An RFC 7644 PatchOp document: build one to send, or parse one and [`apply`](PatchOp::apply) it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchOp {
    /// The operations, in order.
    pub operations: Vec<PatchOperation>,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Remove,
    Replace,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "add" => Some(Kind::Add),
            "remove" => Some(Kind::Remove),
            "replace" => Some(Kind::Replace),
            _ => None,
        }
    }
}

impl PatchOp {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, op: &str, path: Option<&str>, value: Option<Value>) -> Self {
        self.operations.push(PatchOperation {
            op: op.to_string(),
            path: path.map(str::to_string),
            value,
        });
        self
    }

    /// Adds an `add` operation.
    pub fn add(self, path: Option<&str>, value: Value) -> Self {
        self.push("add", path, Some(value))
    }

    /// Adds a `replace` operation.
    pub fn replace(self, path: Option<&str>, value: Value) -> Self {
        self.push("replace", path, Some(value))
    }

    /// Adds a `remove` operation.
    pub fn remove(self, path: &str) -> Self {
        self.push("remove", Some(path), None)
    }

    /// The document as JSON, with the PatchOp schema.
    pub fn to_json(&self) -> Value {
        let ops: Vec<Value> = self
            .operations
            .iter()
            .map(|o| {
                let mut m = Map::new();
                m.insert("op".into(), json!(o.op));
                if let Some(p) = &o.path {
                    m.insert("path".into(), json!(p));
                }
                if let Some(v) = &o.value {
                    m.insert("value".into(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    /// Parses a PatchOp document whose `schemas` may be missing (many clients omit it): a non-empty
    /// `Operations` array (member names in any case) of `add`/`replace`/`remove` (any case), each `path` a
    /// non-empty string when given, `add` and `replace` with a `value`. 400 `invalidSyntax`, `invalidPath`
    /// or `invalidValue` otherwise.
    pub fn parse(doc: &Value) -> Result<Self, ScimError> {
        let ops = get_ci(doc, "Operations")
            .and_then(Value::as_array)
            .filter(|o| !o.is_empty())
            .ok_or_else(|| ScimError::bad("invalidSyntax", "a PATCH body needs a non-empty Operations array"))?;
        let operations = ops
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let name = get_ci(o, "op").and_then(Value::as_str).unwrap_or_default();
                let kind = Kind::parse(name).ok_or_else(|| {
                    ScimError::bad(
                        "invalidSyntax",
                        format!("Operations[{i}]: op {name:?} is not add, remove or replace"),
                    )
                })?;
                let path = match get_ci(o, "path") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(p)) if !p.trim().is_empty() => Some(p.trim().to_string()),
                    Some(_) => {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("Operations[{i}]: path must be a non-empty string"),
                        ));
                    }
                };
                let value = get_ci(o, "value").cloned();
                if kind != Kind::Remove && value.is_none() {
                    return Err(ScimError::bad(
                        "invalidValue",
                        format!("Operations[{i}]: {name} needs a value"),
                    ));
                }
                Ok(PatchOperation {
                    op: name.to_ascii_lowercase(),
                    path,
                    value,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(PatchOp { operations })
    }

    /// [`parse`](Self::parse) for a server: the document must also list the PatchOp schema (RFC 7644
    /// §3.5.2), else 400 `invalidSyntax`.
    pub fn parse_request(doc: &Value) -> Result<Self, ScimError> {
        let has_schema = get_ci(doc, "schemas").and_then(Value::as_array).is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))
        });
        if !has_schema {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("a PATCH body must list the schema {PATCH_OP}"),
            ));
        }
        Self::parse(doc)
    }

    /// Applies the operations, in order, to a resource without a schema ([`Schemaless`]: what a connector
    /// patches in a system without PATCH): `add` appends to multi-valued attributes and merges into complex
    /// ones, `replace` sets (merging complex values), `remove` deletes; a remove with a `value` array removes
    /// the listed elements (as Entra sends). See [`apply_with`](Self::apply_with).
    pub fn apply(&self, resource: &mut Value) -> Result<(), ScimError> {
        self.apply_with(resource, &Schemaless::default())
    }

    /// Applies the operations, in order, to `resource` under `rules` (atomically: on error `resource` is
    /// unchanged). Errors are 400 with the `scimType` RFC 7644 names: `noTarget`, `invalidPath`,
    /// `invalidFilter`, `invalidValue`, `mutability`, `invalidSyntax`.
    pub fn apply_with(&self, resource: &mut Value, rules: &dyn Rules) -> Result<(), ScimError> {
        let mut work = resource.clone();
        let patcher = Patcher { rules };
        for op in &self.operations {
            let kind = Kind::parse(&op.op).ok_or_else(|| {
                ScimError::bad("invalidSyntax", format!("op {:?} is not add, remove or replace", op.op))
            })?;
            patcher.apply_one(&mut work, kind, op.path.as_deref(), op.value.clone())?;
        }
        *resource = work;
        Ok(())
    }
}

/// Adds the PatchOp schema to a document that lacks `schemas` (many hosts and clients omit it; servers such as
/// scim2-server refuse documents without it).
pub fn ensure_patch_schema(doc: &mut Value) {
    if let Some(obj) = doc.as_object_mut()
        && !obj.contains_key("schemas")
    {
        obj.insert("schemas".into(), json!([PATCH_OP]));
    }
}

struct Patcher<'a> {
    rules: &'a dyn Rules,
}

/// Attributes no PATCH may touch.
fn is_reserved(name: &str) -> bool {
    ["id", "meta", "schemas"].iter().any(|r| r.eq_ignore_ascii_case(name))
}

impl Patcher<'_> {
    fn apply_one(
        &self,
        resource: &mut Value,
        kind: Kind,
        path: Option<&str>,
        value: Option<Value>,
    ) -> Result<(), ScimError> {
        let Some(path) = path else {
            // No path: the value is an object of attributes (dotted keys and extension URNs allowed).
            if kind == Kind::Remove {
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
                // An extension the resource does not carry yet, given whole (open rules only).
                if is_urn(&k) && v.is_object() && self.rules.open() && self.rules.schema_urn(resource, &k).is_none() {
                    self.apply_extension(resource, kind, &k, Some(v))?;
                    continue;
                }
                self.apply_one(resource, kind, Some(&k), Some(v))?;
            }
            return Ok(());
        };
        // A bare schema URN: the core attributes, or the extension object as a whole.
        if let Some(urn) = self.rules.schema_urn(resource, path) {
            if self.rules.is_core(&urn) {
                return self.apply_one(resource, kind, None, value);
            }
            return self.apply_extension(resource, kind, &urn, value);
        }
        let parsed = PatchPath::parse(path).map_err(|e| ScimError::bad("invalidPath", e.0))?;
        let urn = match &parsed.attr.urn {
            Some(u) => Some(
                self.rules
                    .schema_urn(resource, u)
                    .or_else(|| self.rules.open().then(|| u.clone()))
                    .ok_or_else(|| ScimError::bad("invalidPath", format!("unknown schema {u}")))?,
            ),
            None => None,
        };
        let core = urn.as_deref().is_none_or(|u| self.rules.is_core(u));
        let attr = AttrPath {
            urn: urn.clone(),
            ..parsed.attr.clone()
        };
        if core && is_reserved(&attr.name) {
            return Err(ScimError::bad("mutability", format!("{} cannot be changed", attr.name)));
        }
        let sub_name = parsed.sub_after_filter.clone().or_else(|| attr.sub.clone());
        let definition = self.rules.definition(&AttrPath {
            sub: sub_name,
            ..attr.clone()
        });
        let common = attr.urn.is_none() && attr.name.eq_ignore_ascii_case("externalId");
        let multi = match &definition {
            Some(d) => d.multi_valued,
            // RFC 7643 §3.1: a common attribute of every resource, in no schema's attribute list.
            None if common => false,
            None => {
                let present = container_ref(resource, urn.as_deref(), core).and_then(|c| get_ci(c, &attr.name));
                match present {
                    Some(v) => v.is_array(),
                    None if self.rules.open() => matches!(value, Some(Value::Array(_))),
                    // Not in the schemas: only attributes the resource already carries may change.
                    None => {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("{path}: this system has no attribute {}", attr.name),
                        ));
                    }
                }
            }
        };
        if definition.is_some_and(|d| d.read_only) {
            return Err(ScimError::bad("mutability", format!("{path} is read-only")));
        }
        // The object that holds the attribute: the resource or its extension object.
        let container = container_mut(resource, urn.as_deref(), core, kind != Kind::Remove)?;
        let Some(container) = container else { return Ok(()) };
        let key = existing_key(container, &attr.name);
        let by_value = self.rules.same_by_value(&attr);

        if let Some(filter) = &parsed.filter {
            let parent = AttrPath {
                sub: None,
                index: None,
                ..attr.clone()
            };
            let Some(Value::Array(items)) = container.get_mut(&key) else {
                return match kind {
                    Kind::Remove => Ok(()),
                    _ => Err(ScimError::bad("noTarget", format!("{path} matches no value"))),
                };
            };
            let hits: Vec<usize> = (0..items.len())
                .filter(|&i| filter.matches_element(&items[i], &parent, self.rules))
                .collect();
            if hits.is_empty() {
                return match kind {
                    Kind::Remove => Ok(()),
                    _ => Err(ScimError::bad("noTarget", format!("{path} matches no value"))),
                };
            }
            match (kind, &parsed.sub_after_filter) {
                (Kind::Remove, None) => {
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
                (Kind::Remove, Some(sub)) => {
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
            if kind != Kind::Remove {
                normalize_primary(container.get_mut(&key));
            }
            return Ok(());
        }

        match (&attr.sub, kind) {
            (None, Kind::Remove) => {
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
            (None, Kind::Add) if multi => {
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
                        if let Some(pos) = items.iter().position(|i| same_element(i, &n, by_value)) {
                            items[pos] = n;
                        } else {
                            items.push(n);
                        }
                    }
                }
                // The newly added primary (the last one) wins.
                normalize_primary(container.get_mut(&key));
            }
            (None, Kind::Replace) if multi => {
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
                            if kind == Kind::Remove {
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
                        (Kind::Remove, _) | (_, None | Some(Value::Null)) => {
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

    /// An extension object as a whole: removed, or each of its attributes added or replaced.
    fn apply_extension(
        &self,
        resource: &mut Value,
        kind: Kind,
        urn: &str,
        value: Option<Value>,
    ) -> Result<(), ScimError> {
        match (kind, value) {
            (Kind::Remove, _) => {
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
        }
    }
}

/// The object holding an attribute, read-only: the resource, or the extension object of `urn`.
fn container_ref<'v>(resource: &'v Value, urn: Option<&str>, core: bool) -> Option<&'v Value> {
    match urn {
        Some(u) if !core => get_ci(resource, u),
        _ => Some(resource),
    }
}

/// The object holding an attribute: the resource itself, or the extension object of `urn` (created, and
/// listed in `schemas`, for add/replace).
fn container_mut<'v>(
    resource: &'v mut Value,
    urn: Option<&str>,
    core: bool,
    create: bool,
) -> Result<Option<&'v mut Map<String, Value>>, ScimError> {
    let root = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidValue", "the resource is not an object"))?;
    match urn {
        Some(u) if !core => {
            let key = existing_key(root, u);
            if !root.contains_key(&key) {
                if !create {
                    return Ok(None);
                }
                root.insert(key.clone(), Value::Object(Map::new()));
                add_schema(root, u);
            }
            let ext = root
                .get_mut(&key)
                .ok_or_else(|| ScimError::bad("invalidPath", format!("{u} is missing")))?;
            if !ext.is_object() {
                if !create {
                    return Ok(None);
                }
                *ext = Value::Object(Map::new());
            }
            Ok(ext.as_object_mut())
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

/// Removes a key of an object, ignoring case.
pub fn remove_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()?;
    obj.shift_remove(&key)
}

/// Whether two elements of a multi-valued attribute are the same: equal, or (by value) the same `value`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ResourceType;

    fn doc(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    /// The standard schemas, closed to other attributes (as a proxy that serves everything).
    fn closed(group: bool) -> ResourceType<'static> {
        let mut t = if group {
            ResourceType::standard_group()
        } else {
            ResourceType::standard_user()
        };
        t.open = false;
        t
    }

    fn run(resource: Value, rules: &dyn Rules, ops: Value) -> Result<Value, ScimError> {
        let mut r = resource;
        PatchOp::parse_request(&doc(ops))?.apply_with(&mut r, rules)?;
        Ok(r)
    }

    fn user() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.org", "type": "home"}]})
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
            (doc(json!([{"op": "add", "path": "", "value": 1}])), "invalidPath"),
            (doc(json!([{"op": "add", "path": "title"}])), "invalidValue"),
        ];
        for (body, expected) in cases {
            let mut u = user();
            let result = PatchOp::parse_request(&body).and_then(|ops| ops.apply_with(&mut u, &closed(false)));
            let e = result.expect_err(&body.to_string());
            assert_eq!(e.scim_type, Some(expected), "{body}: {e}");
            assert_eq!(u, user(), "{body} changed the resource");
        }
    }

    /// Without a schema: what a connector applies to a native resource (the SDK's `PatchOp::apply`).
    #[test]
    fn schemaless() {
        let rules = Schemaless::default();
        let apply = |r: Value, ops: Value| -> Result<Value, ScimError> {
            let mut r = r;
            PatchOp::parse(&json!({"Operations": ops}))?.apply_with(&mut r, &rules)?;
            Ok(r)
        };
        // A native resource: vendor attributes, an extension it does not list in `schemas`.
        let user = json!({"login": "a", "name": {"first": "A"}, "emails": [{"value": "a@x", "type": "work"}]});
        let mut r = user.clone();
        PatchOp::new()
            .replace(Some("name.first"), json!("B"))
            .add(Some("emails"), json!({"value": "b@x", "type": "home", "primary": true}))
            .add(None, json!({"urn:x:ext": {"a": 1}, "name.last": "F"}))
            .add(Some("urn:ietf:params:scim:schemas:core:2.0:User:origin"), json!("ldap"))
            .apply(&mut r)
            .unwrap();
        assert_eq!(
            r,
            json!({"login": "a", "name": {"first": "B", "last": "F"}, "origin": "ldap", "urn:x:ext": {"a": 1},
                   "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home", "primary": true}]})
        );
        // The last value removed: the attribute is unassigned (RFC 7644 §3.5.2.2).
        let r = apply(
            user.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
        )
        .unwrap();
        assert!(r.get("emails").is_none());
        let e = apply(user.clone(), json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(e.scim_type, Some("noTarget"));
        // Atomic: a failing operation leaves the resource as it was.
        let mut u = user.clone();
        let ops = PatchOp::new()
            .replace(Some("userName"), json!("changed"))
            .replace(Some("emails[type eq \"none\"].value"), json!(1));
        assert!(ops.apply(&mut u).is_err());
        assert_eq!(u, user);
        // A simulated system's read-only attributes.
        let sim = Schemaless {
            core_schema: Some("urn:x:core"),
            read_only: &["groups"],
            ..Default::default()
        };
        let e = PatchOp::new()
            .add(Some("groups"), json!([]))
            .apply_with(&mut u, &sim)
            .unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
        let urns = json!({"schemas": ["urn:a:b"], "urn:a:b": {"x": 1}});
        let mut r = urns.clone();
        PatchOp::new()
            .replace(Some("urn:a:b:x"), json!(2))
            .add(Some("urn:a:b"), json!({"y": 3}))
            .apply(&mut r)
            .unwrap();
        assert_eq!(r["urn:a:b"], json!({"x": 2, "y": 3}));
        PatchOp::new().remove("urn:a:b").apply(&mut r).unwrap();
        assert!(r.get("urn:a:b").is_none());
    }

    /// A real-time PATCH (a pushed resource under the standard schemas, open to vendor attributes) and a proxy
    /// PATCH (the same schemas as a proxy serves them) of the same operations give the same resource.
    #[test]
    fn open_and_served_schemas_agree() {
        let sets = [
            json!([{"op": "replace", "path": "name.givenName", "value": "B"},
                   {"op": "add", "path": "emails", "value": {"value": "n@x", "type": "other", "primary": true}},
                   {"op": "remove", "path": "emails[type eq \"home\"]"},
                   {"op": "add", "path": "phoneNumbers", "value": {"value": "1", "type": "work"}},
                   {"op": "replace", "value": {"active": false, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}}}]),
            json!([{"op": "remove", "path": "emails"}, {"op": "add", "path": "title", "value": "T"}]),
            json!([{"op": "replace", "path": "emails[primary eq true].value", "value": "p@x"},
                   {"op": "remove", "path": "name.familyName"}]),
        ];
        for ops in sets {
            let open = run(user(), &ResourceType::standard_user(), ops.clone()).expect("open");
            let served = run(user(), &closed(false), ops.clone()).expect("served");
            assert_eq!(open, served, "{ops}");
        }
    }

    #[test]
    fn parsed_documents_read_back() {
        // Op names any case, member names any case, paths trimmed; `to_json` writes the canonical form.
        let sent =
            json!({"operations": [{"OP": "Add", "Path": " title ", "Value": "T"}, {"op": "REMOVE", "path": "x"}]});
        let parsed = PatchOp::parse(&sent).expect("lenient");
        assert_eq!(
            parsed.to_json(),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "T"},
                                                          {"op": "remove", "path": "x"}]})
        );
        assert!(PatchOp::parse_request(&sent).is_err());
        assert_eq!(PatchOp::parse_request(&parsed.to_json()), Ok(parsed));
    }
}
