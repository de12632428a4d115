//! List requests (RFC 7644 §3.4.2): query parameters or a `/.search` body → filter, sort, page and
//! attribute projection, all applied by the host to the full, transformed result so that `totalResults` is
//! exact and every page is consistent.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::error::ScimError;
use provisio_scim::patch::remove_ci;
use provisio_scim::{AttrPath, Filter, Rules, get_ci};

use super::schema::{MAX_RESULTS, Served};
use crate::connector::EntityKind;

/// A parsed list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The filter.
    pub filter: Option<Filter>,
    /// 1-based start (values below 1 mean 1).
    pub start_index: u64,
    /// Page size, capped at [`MAX_RESULTS`].
    pub count: u64,
    /// Sort attribute.
    pub sort_by: Option<AttrPath>,
    /// `sortOrder=descending`.
    pub descending: bool,
    /// Attribute projection.
    pub projection: Projection,
}

/// `attributes` / `excludedAttributes`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Only these (plus `id`, `schemas`, `meta`).
    pub attributes: Vec<String>,
    /// All but these.
    pub excluded: Vec<String>,
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_number(name: &str, text: &str) -> Result<i64, ScimError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be an integer, not {text:?}")))
}

impl ListQuery {
    /// From URL query parameters (names match ignoring case).
    pub fn from_query(raw: Option<&str>) -> Result<ListQuery, ScimError> {
        let mut q = ListQuery::default();
        let mut start = None;
        let mut count = None;
        let mut sort_by = None;
        let mut order = None;
        let mut filter = None;
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.to_ascii_lowercase().as_str() {
                "filter" => filter = Some(v.to_string()),
                "startindex" => start = Some(parse_number("startIndex", &v)?),
                "count" => count = Some(parse_number("count", &v)?),
                "sortby" => sort_by = Some(v.to_string()),
                "sortorder" => order = Some(v.to_string()),
                "attributes" => q.projection.attributes = split_list(&v),
                "excludedattributes" => q.projection.excluded = split_list(&v),
                _ => {}
            }
        }
        q.finish(filter, start, count, sort_by, order)?;
        Ok(q)
    }

    /// From a `/.search` body (`SearchRequest`).
    pub fn from_search(body: &Value) -> Result<ListQuery, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::bad("invalidSyntax", "a search request is a JSON object"))?;
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::bad("invalidValue", format!("{name} must be a string"))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::bad("invalidValue", format!("{name} must be an integer"))),
                Some(Value::String(s)) => parse_number(name, s).map(Some),
                Some(_) => Err(ScimError::bad("invalidValue", format!("{name} must be an integer"))),
            }
        };
        let list = |name: &str| -> Result<Vec<String>, ScimError> {
            match get_ci(body, name) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => Ok(a.iter().filter_map(Value::as_str).flat_map(split_list).collect()),
                Some(Value::String(s)) => Ok(split_list(s)),
                Some(_) => Err(ScimError::bad(
                    "invalidValue",
                    format!("{name} must be a list of names"),
                )),
            }
        };
        let _ = obj;
        let mut q = ListQuery {
            projection: Projection {
                attributes: list("attributes")?,
                excluded: list("excludedAttributes")?,
            },
            ..Default::default()
        };
        q.finish(
            text("filter")?,
            number("startIndex")?,
            number("count")?,
            text("sortBy")?,
            text("sortOrder")?,
        )?;
        Ok(q)
    }

    fn finish(
        &mut self,
        filter: Option<String>,
        start: Option<i64>,
        count: Option<i64>,
        sort_by: Option<String>,
        order: Option<String>,
    ) -> Result<(), ScimError> {
        self.filter = match filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => {
                Some(Filter::parse(f).map_err(|e| ScimError::bad("invalidFilter", format!("invalid filter: {e}")))?)
            }
        };
        self.start_index = start.unwrap_or(1).max(1) as u64;
        self.count = count.unwrap_or(MAX_RESULTS as i64).clamp(0, MAX_RESULTS as i64) as u64;
        self.sort_by = match sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(AttrPath::parse(s).map_err(|e| ScimError::bad("invalidValue", format!("sortBy: {e}")))?),
        };
        self.descending = match order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("sortOrder must be ascending or descending, not {o:?}"),
                ));
            }
        };
        Ok(())
    }
}

/// The value a resource sorts by: the attribute, or for a multi-valued one its primary (else first) value.
fn sort_key<'a>(resource: &'a Value, path: &AttrPath, rules: &dyn Rules) -> Option<&'a Value> {
    let top = rules.attribute(resource, path)?;
    let pick = |v: &'a Value| -> Option<&'a Value> {
        match &path.sub {
            Some(s) => get_ci(v, s),
            None => v.get("value").or(Some(v)),
        }
    };
    match top {
        Value::Array(items) => {
            let chosen = items
                .iter()
                .find(|i| i.get("primary") == Some(&Value::Bool(true)))
                .or_else(|| items.first())?;
            pick(chosen)
        }
        Value::Object(_) => match &path.sub {
            Some(s) => get_ci(top, s),
            None => None,
        },
        v => Some(v),
    }
}

fn compare_values(a: Option<&Value>, b: Option<&Value>, exact: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        // Resources without the attribute sort last (RFC 7644 §3.4.2.3).
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Value::String(x)), Some(Value::String(y))) => {
            if exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// Sorts resources in place (stable, so equal keys keep the backend's order).
pub fn sort(resources: &mut [Value], by: &AttrPath, descending: bool, rules: &dyn Rules) {
    let exact = rules.case_exact(by);
    resources.sort_by(|a, b| {
        let o = compare_values(sort_key(a, by, rules), sort_key(b, by, rules), exact);
        // Missing values stay last in both orders.
        match (
            descending,
            sort_key(a, by, rules).is_some(),
            sort_key(b, by, rules).is_some(),
        ) {
            (true, true, true) => o.reverse(),
            _ => o,
        }
    });
}

/// The slice of a result of `total` items that a page of `start_index`/`count` shows.
pub use provisio_scim::list::window;

impl Projection {
    /// Refuses names that are no attribute of the resource type (a typo would otherwise return nothing).
    pub fn validate(&self, served: &Served, kinds: &[EntityKind], extra: &[String]) -> Result<(), ScimError> {
        for name in self.attributes.iter().chain(&self.excluded) {
            let known = kinds.iter().any(|&k| {
                if served.known_urn(k, name).is_some() {
                    return true;
                }
                match AttrPath::parse(name) {
                    Ok(p) => {
                        ["id", "externalId", "meta", "schemas"]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(&p.name))
                            || served.definition(k, &p).is_some()
                            || extra.iter().any(|e| e.eq_ignore_ascii_case(&p.name))
                    }
                    Err(_) => false,
                }
            });
            if !known {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("{name:?} is not an attribute of this resource type"),
                ));
            }
        }
        Ok(())
    }

    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }

    /// Applies the projection to a resource; `password` (returned: never) is always dropped.
    pub fn apply(&self, resource: &mut Value, served: &Served, kind: EntityKind) {
        let Some(obj) = resource.as_object_mut() else { return };
        remove_ci(obj, "password");
        if !self.attributes.is_empty() {
            let original = std::mem::take(obj);
            for (k, v) in &original {
                if ["id", "schemas", "meta"].iter().any(|n| n.eq_ignore_ascii_case(k)) {
                    obj.insert(k.clone(), v.clone());
                }
            }
            for name in &self.attributes {
                copy_selected(&original, obj, name, served, kind);
            }
        }
        for name in &self.excluded {
            remove_selected(obj, name, served, kind);
        }
    }
}

/// Where a projected name points: (extension key or None, attribute, sub-attribute).
fn locate<'s>(
    name: &str,
    served: &'s Served,
    kind: EntityKind,
) -> Option<(Option<&'s str>, Option<String>, Option<String>)> {
    if let Some(urn) = served.known_urn(kind, name) {
        return Some((Some(urn).filter(|u| *u != super::schema::core_urn(kind)), None, None));
    }
    let p = AttrPath::parse(name).ok()?;
    let urn = match &p.urn {
        Some(u) => served
            .known_urn(kind, u)
            .filter(|u| *u != super::schema::core_urn(kind)),
        None => None,
    };
    Some((urn, Some(p.name), p.sub))
}

fn copy_selected(
    from: &Map<String, Value>,
    to: &mut Map<String, Value>,
    name: &str,
    served: &Served,
    kind: EntityKind,
) {
    let Some((urn, attr, sub)) = locate(name, served, kind) else {
        return;
    };
    let (src, dst) = match urn {
        Some(u) => {
            let Some((key, Value::Object(ext))) = from.iter().find(|(k, _)| k.eq_ignore_ascii_case(u)) else {
                return;
            };
            if attr.is_none() {
                to.insert(key.clone(), Value::Object(ext.clone()));
                return;
            }
            let dst = to.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            (ext, dst)
        }
        None => {
            let Some(attr) = &attr else { return };
            copy_attr(from, to, attr, sub.as_deref());
            return;
        }
    };
    if let (Some(attr), Some(dst)) = (attr, dst.as_object_mut()) {
        copy_attr(src, dst, &attr, sub.as_deref());
    }
}

fn copy_attr(from: &Map<String, Value>, to: &mut Map<String, Value>, attr: &str, sub: Option<&str>) {
    let Some((key, value)) = from.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)) else {
        return;
    };
    let Some(sub) = sub else {
        to.insert(key.clone(), value.clone());
        return;
    };
    let pick = |v: &Value| -> Option<Value> {
        let (k, s) = v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(sub))?;
        let mut m = Map::new();
        m.insert(k.clone(), s.clone());
        Some(Value::Object(m))
    };
    let projected = match value {
        Value::Array(items) => Value::Array(items.iter().filter_map(pick).collect()),
        v => match pick(v) {
            Some(p) => p,
            None => return,
        },
    };
    match (to.get_mut(key), projected) {
        (Some(Value::Object(existing)), Value::Object(p)) => existing.extend(p),
        (_, p) => {
            to.insert(key.clone(), p);
        }
    }
}

fn remove_selected(obj: &mut Map<String, Value>, name: &str, served: &Served, kind: EntityKind) {
    let Some((urn, attr, sub)) = locate(name, served, kind) else {
        return;
    };
    let target = match urn {
        Some(u) => {
            let Some(attr) = &attr else {
                remove_ci(obj, u);
                return;
            };
            let key = obj.keys().find(|k| k.eq_ignore_ascii_case(u)).cloned();
            match key.and_then(|k| obj.get_mut(&k)).and_then(Value::as_object_mut) {
                Some(ext) => (ext, attr.clone()),
                None => return,
            }
        }
        None => match &attr {
            Some(a) => (obj, a.clone()),
            None => return,
        },
    };
    let (container, attr) = target;
    if ["id", "schemas"].iter().any(|n| n.eq_ignore_ascii_case(&attr)) {
        return; // returned: always
    }
    match sub {
        None => {
            remove_ci(container, &attr);
        }
        Some(sub) => {
            let key = container.keys().find(|k| k.eq_ignore_ascii_case(&attr)).cloned();
            match key.and_then(|k| container.get_mut(&k)) {
                Some(Value::Array(items)) => {
                    for i in items.iter_mut().filter_map(Value::as_object_mut) {
                        remove_ci(i, &sub);
                    }
                }
                Some(Value::Object(o)) => {
                    remove_ci(o, &sub);
                }
                _ => {}
            }
        }
    }
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

    #[test]
    fn paging_rules() {
        assert_eq!(window(10, 1, 3), 0..3);
        assert_eq!(window(10, 0, 3), 0..3);
        assert_eq!(window(10, 9, 5), 8..10);
        assert_eq!(window(10, 11, 5), 10..10);
        assert_eq!(window(10, 1, 0), 0..0);
        let q = ListQuery::from_query(Some("startIndex=-4&count=-1")).expect("query");
        assert_eq!((q.start_index, q.count), (1, 0));
        let q = ListQuery::from_query(Some("count=100000")).expect("query");
        assert_eq!(q.count, MAX_RESULTS);
        assert!(ListQuery::from_query(Some("count=abc")).is_err());
        let e = ListQuery::from_query(Some("filter=userName%20eq")).expect_err("bad filter");
        assert_eq!(e.scim_type, Some("invalidFilter"));
        assert!(ListQuery::from_query(Some("sortOrder=sideways")).is_err());
        let q = ListQuery::from_search(&json!({"filter": "userName pr", "startIndex": 2, "count": 5, "sortBy": "userName", "sortOrder": "descending"})).expect("search");
        assert_eq!((q.start_index, q.count, q.descending), (2, 5, true));
    }

    #[test]
    fn sorting() {
        let served = served();
        let rules = served.resource_type(EntityKind::User);
        let mut list = vec![
            json!({"userName": "b"}),
            json!({"id": "x"}),
            json!({"userName": "A"}),
            json!({"userName": "c"}),
        ];
        sort(&mut list, &AttrPath::parse("username").expect("path"), false, &rules);
        let names: Vec<_> = list.iter().map(|u| u["userName"].clone()).collect();
        assert_eq!(names, vec![json!("A"), json!("b"), json!("c"), Value::Null]);
        sort(&mut list, &AttrPath::parse("userName").expect("path"), true, &rules);
        let names: Vec<_> = list.iter().map(|u| u["userName"].clone()).collect();
        assert_eq!(names, vec![json!("c"), json!("b"), json!("A"), Value::Null]);
    }

    #[test]
    fn projection() {
        let served = served();
        let user = json!({"schemas": ["s"], "id": "1", "userName": "u", "password": "p", "name": {"givenName": "G", "familyName": "F"},
            "emails": [{"value": "a", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "costCenter": "c"}});
        let mut u = user.clone();
        let p = Projection {
            attributes: vec![
                "name.givenName".into(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber".into(),
                "EMAILS.value".into(),
            ],
            excluded: vec![],
        };
        p.validate(&served, &[EntityKind::User], &[]).expect("known");
        p.apply(&mut u, &served, EntityKind::User);
        assert_eq!(
            u,
            json!({"schemas": ["s"], "id": "1", "name": {"givenName": "G"}, "emails": [{"value": "a"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}})
        );
        let mut u = user.clone();
        let p = Projection {
            attributes: vec![],
            excluded: vec![
                "name".into(),
                "id".into(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
            ],
        };
        p.apply(&mut u, &served, EntityKind::User);
        assert_eq!(
            u,
            json!({"schemas": ["s"], "id": "1", "userName": "u", "emails": [{"value": "a", "type": "work"}]})
        );
        let bad = Projection {
            attributes: vec!["nosuch".into()],
            excluded: vec![],
        };
        assert!(bad.validate(&served, &[EntityKind::User], &[]).is_err());
    }
}
