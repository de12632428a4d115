//! RFC 7644 §3.5.2 PATCH (`urn:ietf:params:scim:api:messages:2.0:PatchOp`) over JSON resources.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, Dialect, Eval, Filter};

pub(crate) const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH failure: SCIM `scimType` and detail.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PatchError {
    pub scim_type: &'static str,
    pub detail: String,
}

fn err(scim_type: &'static str, detail: impl Into<String>) -> PatchError {
    PatchError {
        scim_type,
        detail: detail.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Add,
    Replace,
    Remove,
}

/// One operation of a PatchOp request.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub kind: Kind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Validates a PatchOp body and returns its operations.
pub(crate) fn parse_request(body: &Value) -> Result<Vec<Operation>, PatchError> {
    let schemas_ok = filter::get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(PATCH_OP_SCHEMA)));
    if !schemas_ok {
        return Err(err(
            "invalidSyntax",
            format!("The request must carry the schema {PATCH_OP_SCHEMA}"),
        ));
    }
    let ops = filter::get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| err("invalidSyntax", "The request has no 'Operations' array"))?;
    if ops.is_empty() {
        return Err(err("invalidSyntax", "The 'Operations' array is empty"));
    }
    ops.iter()
        .map(|op| {
            let name = filter::get_ci(op, "op")
                .and_then(Value::as_str)
                .ok_or_else(|| err("invalidSyntax", "An operation has no 'op'"))?;
            let kind = match name.to_ascii_lowercase().as_str() {
                "add" => Kind::Add,
                "replace" => Kind::Replace,
                "remove" => Kind::Remove,
                other => return Err(err("invalidSyntax", format!("Unknown operation '{other}'"))),
            };
            let path = match filter::get_ci(op, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(_) => return Err(err("invalidPath", "'path' must be a string")),
            };
            let value = filter::get_ci(op, "value").cloned();
            if kind != Kind::Remove && value.is_none() {
                return Err(err("invalidValue", format!("The '{name}' operation needs a 'value'")));
            }
            if kind == Kind::Remove && path.is_none() {
                return Err(err("noTarget", "A 'remove' operation needs a 'path'"));
            }
            Ok(Operation { kind, path, value })
        })
        .collect()
}

/// A parsed PATCH path: `attr[.sub]`, `attr[filter][.sub]`, optionally schema-qualified.
#[derive(Clone, Debug)]
struct Path {
    schema: Option<String>,
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn parse_path(raw: &str) -> Result<Path, PatchError> {
    let bad = || err("invalidPath", format!("Invalid path '{raw}'"));
    let raw = raw.trim();
    let (head, filter, tail) = match raw.find('[') {
        Some(open) => {
            let close = raw.rfind(']').ok_or_else(bad)?;
            if close < open {
                return Err(bad());
            }
            let inner = &raw[open + 1..close];
            let f = filter::parse(inner, &Dialect::FULL)
                .map_err(|e| err("invalidFilter", format!("Invalid filter in path '{raw}': {e}")))?;
            let rest = &raw[close + 1..];
            let tail = match rest {
                "" => None,
                r if r.starts_with('.') && r.len() > 1 => Some(r[1..].to_string()),
                _ => return Err(bad()),
            };
            (&raw[..open], Some(f), tail)
        }
        None => (raw, None, None),
    };
    let ap = AttrPath::parse(head).ok_or_else(bad)?;
    let mut names = ap.names.into_iter();
    let attr = names.next().ok_or_else(bad)?;
    let sub = match (names.next(), tail) {
        (Some(s), None) => Some(s),
        (None, t) => t,
        (Some(_), Some(_)) => return Err(bad()),
    };
    if names.next().is_some() {
        return Err(bad());
    }
    Ok(Path {
        schema: ap.schema,
        attr,
        filter,
        sub,
    })
}

/// Settings of the resource type being patched.
pub(crate) struct Rules<'a> {
    /// The resource's core schema URN (paths qualified with it address top-level attributes).
    pub core_schema: &'a str,
    /// Lower-cased top-level attributes clients may not change (`id`, `meta`, `groups`…).
    pub read_only: &'a [&'a str],
}

fn key_ci(map: &Map<String, Value>, key: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

fn merge(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Object(t), Value::Object(v)) => {
            for (k, v) in v {
                let key = key_ci(t, &k);
                match t.get_mut(&key) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(key, v);
                    }
                }
            }
        }
        (t, v) => *t = v,
    }
}

fn same_member(a: &Value, b: &Value) -> bool {
    match (filter::get_ci(a, "value"), filter::get_ci(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Applies all `ops` to `resource` (the caller applies them to a copy for atomicity).
pub(crate) fn apply(resource: &mut Value, ops: &[Operation], rules: &Rules<'_>) -> Result<(), PatchError> {
    for op in ops {
        match &op.path {
            None => {
                let Some(Value::Object(map)) = op.value.clone() else {
                    return Err(err("invalidValue", "Without a 'path', 'value' must be an object"));
                };
                for (k, v) in map {
                    let is_extension = k.to_ascii_lowercase().starts_with("urn:")
                        && !k.eq_ignore_ascii_case(rules.core_schema)
                        && v.is_object();
                    if is_extension {
                        // Each extension attribute is its own add/replace.
                        if let Value::Object(attrs) = v {
                            for (ak, av) in attrs {
                                apply_path(resource, op.kind, &parse_path(&format!("{k}:{ak}"))?, Some(av), rules)?;
                            }
                        }
                    } else if k.eq_ignore_ascii_case(rules.core_schema) && v.is_object() {
                        if let Value::Object(attrs) = v {
                            for (ak, av) in attrs {
                                apply_path(resource, op.kind, &parse_path(&ak)?, Some(av), rules)?;
                            }
                        }
                    } else {
                        apply_path(resource, op.kind, &parse_path(&k)?, Some(v), rules)?;
                    }
                }
            }
            Some(p) => {
                let path = parse_path(p)?;
                apply_path(resource, op.kind, &path, op.value.clone(), rules)?;
            }
        }
    }
    Ok(())
}

fn apply_path(
    resource: &mut Value,
    kind: Kind,
    path: &Path,
    value: Option<Value>,
    rules: &Rules<'_>,
) -> Result<(), PatchError> {
    let core = match &path.schema {
        None => true,
        Some(s) => s.eq_ignore_ascii_case(rules.core_schema),
    };
    if core && rules.read_only.contains(&path.attr.to_ascii_lowercase().as_str()) {
        return Err(err("mutability", format!("The attribute '{}' is read-only", path.attr)));
    }
    if core && path.attr.eq_ignore_ascii_case("schemas") {
        return Err(err("mutability", "The attribute 'schemas' cannot be patched"));
    }
    let Value::Object(root) = resource else {
        return Err(err("invalidValue", "Resource is not an object"));
    };
    let container: &mut Map<String, Value> = if core {
        root
    } else {
        let urn = path.schema.clone().unwrap_or_default();
        let key = key_ci(root, &urn);
        if kind == Kind::Remove && !root.contains_key(&key) {
            return Ok(());
        }
        let ext = root.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !ext.is_object() {
            *ext = Value::Object(Map::new());
        }
        if let Some(Value::Array(schemas)) = root.get_mut("schemas")
            && !schemas
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&urn)))
        {
            schemas.push(Value::String(urn.clone()));
        }
        match root.get_mut(&key) {
            Some(Value::Object(m)) => m,
            _ => return Err(err("invalidPath", "Extension is not an object")),
        }
    };
    let attr = key_ci(container, &path.attr);

    if let Some(f) = &path.filter {
        let Some(Value::Array(items)) = container.get_mut(&attr) else {
            return match kind {
                Kind::Remove => Ok(()),
                _ => Err(err(
                    "noTarget",
                    format!("No values of '{}' match the filter", path.attr),
                )),
            };
        };
        let eval = Eval::default();
        let hits: Vec<usize> = (0..items.len()).filter(|i| f.matches(&items[*i], &eval)).collect();
        if hits.is_empty() {
            return match kind {
                Kind::Remove => Ok(()),
                _ => Err(err(
                    "noTarget",
                    format!("No values of '{}' match the filter", path.attr),
                )),
            };
        }
        match (kind, &path.sub) {
            (Kind::Remove, None) => {
                for i in hits.into_iter().rev() {
                    items.remove(i);
                }
            }
            (Kind::Remove, Some(sub)) => {
                for i in hits {
                    if let Value::Object(m) = &mut items[i] {
                        let k = key_ci(m, sub);
                        m.remove(&k);
                    }
                }
            }
            (_, None) => {
                let v = value.unwrap_or(Value::Null);
                for i in hits {
                    if kind == Kind::Add || !v.is_object() {
                        merge(&mut items[i], v.clone());
                    } else {
                        items[i] = v.clone();
                    }
                }
            }
            (_, Some(sub)) => {
                let v = value.unwrap_or(Value::Null);
                for i in hits {
                    if let Value::Object(m) = &mut items[i] {
                        let k = key_ci(m, sub);
                        m.insert(k, v.clone());
                    }
                }
            }
        }
        if container
            .get(&attr)
            .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
        {
            container.remove(&attr);
        }
        return Ok(());
    }

    match (&path.sub, kind) {
        (None, Kind::Remove) => {
            match (container.get_mut(&attr), value) {
                // `{"op":"remove","path":"members","value":[{"value":"id"}]}` removes those members.
                (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                    items.retain(|i| !gone.iter().any(|g| same_member(i, g)));
                    if items.is_empty() {
                        container.remove(&attr);
                    }
                }
                _ => {
                    container.remove(&attr);
                }
            }
        }
        (None, Kind::Add) => {
            let v = value.unwrap_or(Value::Null);
            match (container.get_mut(&attr), v) {
                (Some(Value::Array(items)), Value::Array(new)) => {
                    for n in new {
                        if !items.iter().any(|i| same_member(i, &n)) {
                            items.push(n);
                        }
                    }
                }
                (Some(Value::Array(items)), n) if !n.is_array() => {
                    if !items.iter().any(|i| same_member(i, &n)) {
                        items.push(n);
                    }
                }
                (Some(existing @ Value::Object(_)), v @ Value::Object(_)) => merge(existing, v),
                (_, v) => {
                    container.insert(attr, v);
                }
            }
        }
        (None, Kind::Replace) => {
            let v = value.unwrap_or(Value::Null);
            match (container.get_mut(&attr), v) {
                (Some(existing @ Value::Object(_)), v @ Value::Object(_)) => merge(existing, v),
                (_, v) => {
                    container.insert(attr, v);
                }
            }
        }
        (Some(sub), kind) => {
            let entry = container.entry(attr.clone());
            let target = entry.or_insert_with(|| Value::Object(Map::new()));
            let targets: Vec<&mut Value> = match target {
                Value::Array(items) => items.iter_mut().collect(),
                other => vec![other],
            };
            for t in targets {
                if !t.is_object() {
                    *t = Value::Object(Map::new());
                }
                if let Value::Object(m) = t {
                    let k = key_ci(m, sub);
                    match kind {
                        Kind::Remove => {
                            m.remove(&k);
                        }
                        _ => {
                            let v = value.clone().unwrap_or(Value::Null);
                            match m.get_mut(&k) {
                                Some(existing @ Value::Object(_)) if v.is_object() => merge(existing, v),
                                _ => {
                                    m.insert(k, v);
                                }
                            }
                        }
                    }
                }
            }
            if container
                .get(&attr)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
            {
                container.remove(&attr);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: Rules<'static> = Rules {
        core_schema: "urn:ietf:params:scim:schemas:core:2.0:User",
        read_only: &["id", "meta", "groups"],
    };

    fn run(resource: Value, ops: Value) -> Result<Value, PatchError> {
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
        let ops = parse_request(&body)?;
        let mut r = resource;
        apply(&mut r, &ops, &RULES)?;
        Ok(r)
    }

    #[test]
    fn add_replace_remove() {
        let u = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "userName": "a",
                       "name": {"givenName": "A", "familyName": "B"},
                       "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        let r = run(
            u.clone(),
            json!([
                {"op": "Replace", "path": "name.givenName", "value": "Z"},
                {"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home"}]},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x"},
                {"op": "add", "value": {"name.familyName": "Q", "active": false,
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}}}
            ]),
        )
        .unwrap();
        assert_eq!(r["name"], json!({"givenName": "Z", "familyName": "Q"}));
        assert_eq!(r["emails"][0]["value"], "w@x");
        assert_eq!(r["emails"][1]["value"], "b@x");
        assert_eq!(r["active"], false);
        assert_eq!(
            r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "7"
        );
        assert!(r["schemas"].as_array().unwrap().len() == 2);
        let r = run(
            r,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}, {"op": "remove", "path": "name"}]),
        )
        .unwrap();
        assert_eq!(r["emails"].as_array().unwrap().len(), 1);
        assert!(r.get("name").is_none());
    }

    #[test]
    fn members() {
        let g = json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]});
        let r = run(
            g.clone(),
            json!([{"op": "remove", "path": "members[value eq \"2\"]"},
                                      {"op": "add", "path": "members", "value": [{"value": "1"}, {"value": "4"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "1"}, {"value": "3"}, {"value": "4"}]));
        let r = run(
            g,
            json!([{"op": "remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "2"}]));
    }

    #[test]
    fn errors() {
        let u = json!({"id": "1", "userName": "a"});
        assert_eq!(
            run(u.clone(), json!([{"op": "remove"}])).unwrap_err().scim_type,
            "noTarget"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "replace", "path": "id", "value": "x"}]))
                .unwrap_err()
                .scim_type,
            "mutability"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "move", "path": "x", "value": 1}]))
                .unwrap_err()
                .scim_type,
            "invalidSyntax"
        );
        assert_eq!(run(u.clone(), json!([])).unwrap_err().scim_type, "invalidSyntax");
        assert_eq!(
            run(
                u.clone(),
                json!([{"op": "replace", "path": "emails[type eq \"x\"].value", "value": "v"}])
            )
            .unwrap_err()
            .scim_type,
            "noTarget"
        );
        assert_eq!(
            run(u.clone(), json!([{"op": "replace", "path": "a..b", "value": 1}]))
                .unwrap_err()
                .scim_type,
            "invalidPath"
        );
        assert!(parse_request(&json!({"Operations": [{"op": "add", "path": "x", "value": 1}]})).is_err());
    }
}
