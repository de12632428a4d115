//! The attribute-level change of an entity (old → new), as job logs and simulations show it. Values are
//! left out unless the admin turned content tracing on: attribute names say what changed, values are
//! personal data.

use serde_json::{Map, Value, json};

/// The changed attributes between what was written last (`old`, `None` for a create) and `new`, as a
/// list of `{"attribute", "change", "old"?, "new"?}`; values only when `with_values`.
pub fn changes(old: Option<&Value>, new: &Value, with_values: bool) -> Value {
    let mut out = Vec::new();
    walk("", old, Some(new), with_values, &mut out);
    Value::Array(out)
}

/// The change list of a delete: every attribute removed.
pub fn removal(old: Option<&Value>, with_values: bool) -> Value {
    let mut out = Vec::new();
    if let Some(old) = old {
        walk("", Some(old), None, with_values, &mut out);
    }
    Value::Array(out)
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, with_values: bool, out: &mut Vec<Value>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in b {
                walk(&join(path, key), a.get(key), Some(value), with_values, out);
            }
            for (key, value) in a {
                if !b.contains_key(key) {
                    walk(&join(path, key), Some(value), None, with_values, out);
                }
            }
        }
        (None, Some(Value::Object(b))) if !path.is_empty() || !b.is_empty() => {
            for (key, value) in b {
                walk(&join(path, key), None, Some(value), with_values, out);
            }
        }
        (Some(Value::Object(a)), None) => {
            for (key, value) in a {
                walk(&join(path, key), Some(value), None, with_values, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let change = match (a, b) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            let mut entry = Map::new();
            entry.insert("attribute".into(), json!(path));
            entry.insert("change".into(), json!(change));
            if with_values {
                if let Some(a) = a {
                    entry.insert("old".into(), a.clone());
                }
                if let Some(b) = b {
                    entry.insert("new".into(), b.clone());
                }
            }
            out.push(Value::Object(entry));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else if key.contains(':') || key.contains('.') {
        format!("{path}['{key}']")
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_changed_attributes_without_values_by_default() {
        let old = json!({"userName": "a", "name": {"givenName": "Ann", "familyName": "Lee"}, "title": "x"});
        let new = json!({"userName": "a", "name": {"givenName": "Anna", "familyName": "Lee"}, "active": true});
        let c = changes(Some(&old), &new, false);
        assert_eq!(
            c,
            json!([
                {"attribute": "name.givenName", "change": "changed"},
                {"attribute": "active", "change": "added"},
                {"attribute": "title", "change": "removed"},
            ])
        );
        let traced = changes(Some(&old), &new, true);
        assert_eq!(
            traced[0],
            json!({"attribute": "name.givenName", "change": "changed", "old": "Ann", "new": "Anna"})
        );
    }

    #[test]
    fn a_create_adds_everything_and_a_delete_removes_everything() {
        let new = json!({"userName": "a", "urn:x:ext": {"k": 1}});
        let c = changes(None, &new, false);
        assert_eq!(c.as_array().map(Vec::len), Some(2));
        assert_eq!(
            c,
            json!([
                {"attribute": "userName", "change": "added"},
                {"attribute": "urn:x:ext.k", "change": "added"},
            ])
        );
        assert_eq!(removal(Some(&new), false).as_array().map(Vec::len), Some(2));
        assert_eq!(changes(Some(&new), &new, true), json!([]));
    }
}
