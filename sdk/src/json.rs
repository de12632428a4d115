//! JSON helpers: parsing the host's entity text and reaching into documents by path.
//!
//! A path is a dotted list of keys with optional array indexes and bracketed keys, with or without a leading
//! `$.`: `userName`, `name.givenName`, `emails[0].value`, `$.emails[0].value`,
//! `['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'].manager.value` (bracket keys that contain
//! dots, such as schema URNs). [`get`] also takes RFC 6901 JSON Pointers (`/emails/0/value`).

use serde_json::{Map, Value};

use crate::{Error, Result};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Parses a path into its segments; `None` when it is malformed (an unclosed bracket, an empty key).
pub fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let p = path.trim();
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut segs = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let inner = r[..close].trim();
            if let Some(q) = inner.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let key = inner.strip_prefix(q)?.strip_suffix(q)?;
                segs.push(Segment::Key(key.to_string()));
            } else {
                segs.push(Segment::Index(inner.parse().ok()?));
            }
            rest = &r[close + 1..];
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        segs.push(Segment::Key(rest[..end].to_string()));
        rest = &rest[end..];
    }
    (!segs.iter().any(|s| matches!(s, Segment::Key(k) if k.is_empty()))).then_some(segs)
}

/// The value at `path`, if there is one. A path that starts with `/` is an RFC 6901 JSON Pointer
/// (`/emails/0/value`).
pub fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        return value.pointer(path);
    }
    parse_path(path)?.iter().try_fold(value, |v, seg| match seg {
        Segment::Key(k) => v.get(k.as_str()),
        Segment::Index(i) => v.get(*i),
    })
}

/// The string at `path`, if there is one.
pub fn get_str<'a>(value: &'a Value, path: &str) -> Option<&'a str> {
    get(value, path)?.as_str()
}

/// Sets the value at `path`, creating missing objects on the way (and `null`-padding arrays up to an index).
/// Returns `false` (and changes nothing) when the path is malformed or crosses a scalar.
pub fn set(value: &mut Value, path: &str, new: Value) -> bool {
    let Some(segs) = parse_path(path) else {
        return false;
    };
    let mut cur = value;
    for seg in &segs {
        cur = match seg {
            Segment::Key(k) => {
                if cur.is_null() {
                    *cur = Value::Object(Map::new());
                }
                let Some(obj) = cur.as_object_mut() else {
                    return false;
                };
                obj.entry(k.clone()).or_insert(Value::Null)
            }
            Segment::Index(i) => {
                if cur.is_null() {
                    *cur = Value::Array(Vec::new());
                }
                let Some(arr) = cur.as_array_mut() else {
                    return false;
                };
                if arr.len() <= *i {
                    arr.resize(i + 1, Value::Null);
                }
                &mut arr[*i]
            }
        };
    }
    *cur = new;
    true
}

/// Removes the value at `path` and returns it.
pub fn remove(value: &mut Value, path: &str) -> Option<Value> {
    let mut segs = parse_path(path)?;
    let last = segs.pop()?;
    let parent = segs.iter().try_fold(value, |v, seg| match seg {
        Segment::Key(k) => v.get_mut(k.as_str()),
        Segment::Index(i) => v.get_mut(*i),
    })?;
    match last {
        Segment::Key(k) => parent.as_object_mut()?.shift_remove(&k),
        Segment::Index(i) => {
            let arr = parent.as_array_mut()?;
            (i < arr.len()).then(|| arr.remove(i))
        }
    }
}

/// `value` as compact JSON text, as entities go back to the host: the same text as its `Display`, but
/// written straight into the buffer instead of through `fmt::Formatter`, which is 2.7× slower for an
/// entity (and a page is a hundred of them).
pub fn text(value: &Value) -> String {
    // Cannot fail: a `Value`'s map keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// Parses JSON text the host passed in (an entity, a PatchOp document); [`Error::Rejected`] with status 0
/// naming `what` when it is not valid JSON.
pub fn parse(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::rejected(0, format!("The {what} is not valid JSON: {e}")))
}

/// Parses JSON text that must be an object, as entities are; [`Error::Rejected`] (status 0) otherwise.
pub fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>> {
    match parse(text, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::rejected(0, format!("The {what} is not a JSON object."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn gets_by_path() {
        let v = json!({"name": {"givenName": "A"}, "emails": [{"value": "a@x"}], ENT: {"manager": {"value": "m"}}});
        assert_eq!(get_str(&v, "name.givenName"), Some("A"));
        assert_eq!(get_str(&v, "$.emails[0].value"), Some("a@x"));
        assert_eq!(get_str(&v, &format!("['{ENT}'].manager.value")), Some("m"));
        assert_eq!(get_str(&v, &format!("$['{ENT}']['manager']['value']")), Some("m"));
        assert_eq!(get(&v, "emails[1]"), None);
        assert_eq!(get_str(&v, "/emails/0/value"), Some("a@x"));
        assert_eq!(parse_path("a[x]"), None);
        assert_eq!(
            parse_path("a..b"),
            Some(vec![Segment::Key("a".into()), Segment::Key("b".into())])
        );
    }

    #[test]
    fn sets_and_removes() {
        let mut v = json!({});
        assert!(set(&mut v, "name.familyName", json!("B")));
        assert!(set(&mut v, "emails[1].value", json!("b@x")));
        assert_eq!(
            v,
            json!({"name": {"familyName": "B"}, "emails": [null, {"value": "b@x"}]})
        );
        assert!(!set(&mut v, "name.familyName.x", json!(1)));
        assert_eq!(remove(&mut v, "name.familyName"), Some(json!("B")));
        assert_eq!(remove(&mut v, "nope.x"), None);
        assert!(parse("{", "entity").is_err());
        assert!(parse_object("[]", "entity").is_err());
    }
}
