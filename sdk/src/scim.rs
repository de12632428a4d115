//! SCIM 2.0 helpers: list responses and paging, filters, PatchOp documents.
//!
//! Index paging (RFC 7644 §3.4.2.4): the cursor is the next `startIndex` as a decimal string.
//!
//! ```no_run
//! # use provisio_sdk::{Config, PageRequest, Page, Result, http::Request, scim};
//! # fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
//! let start = scim::start_index(req.cursor.as_deref())?;
//! let resp = Request::get("Users").query("startIndex", start).query("count", req.page_size).send(cfg)?;
//! let list = scim::ListResponse::from_response(&resp.error_for_status()?)?;
//! Ok(list.into_index_page(start, req.page_size))
//! # }
//! ```
//!
//! Cursor paging as SAP Identity Authentication does it: send `startId=initial` first, then the answer's
//! `nextId` until it is `end` ([`start_id`], [`ListResponse::into_cursor_page`]).

use serde_json::{Map, Value, json};

use crate::http::Response;
use crate::{Error, Page, Result};

/// The schema URN of a list response.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema URN of a PatchOp document.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The schema URN of an error body.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM list response, also in the SCIM 1.1/UAA shape (lowercase `resources`).
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// `Resources` (or `resources`); empty when absent.
    pub resources: Vec<Value>,
    /// `totalResults`, when given.
    pub total_results: Option<u64>,
    /// `itemsPerPage`, when given.
    pub items_per_page: Option<u64>,
    /// `startIndex`, when given.
    pub start_index: Option<u64>,
    /// `nextId` (cursor paging), when given.
    pub next_id: Option<String>,
}

impl ListResponse {
    /// Reads a list response from a 2xx answer; [`Error::Rejected`] with the answer's status when the body is
    /// not one.
    pub fn from_response(resp: &Response) -> Result<Self> {
        Self::from_owned_json(resp.json()?).map_err(|e| match e {
            Error::Rejected(r) => Error::rejected(resp.status, r.detail),
            other => other,
        })
    }

    /// Reads a list response from JSON; [`Error::Rejected`] (status 0) when it is not an object, or when
    /// `Resources` is present but not an array.
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::from_owned_json(v.clone())
    }

    /// [`from_json`](Self::from_json) without copying the resources (a page of them is most of the answer).
    pub fn from_owned_json(mut v: Value) -> Result<Self> {
        let obj = v
            .as_object_mut()
            .ok_or_else(|| Error::rejected(0, "The system's answer is not a SCIM list response (not an object)."))?;
        let taken = ["Resources", "resources"].iter().find_map(|n| obj.remove(*n));
        let field = |names: &[&str]| names.iter().find_map(|n| obj.get(*n));
        let resources = match taken {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(Error::rejected(
                    0,
                    "The system's answer is not a SCIM list response (`Resources` is not an array).",
                ));
            }
        };
        let number = |names: &[&str]| field(names).and_then(as_u64);
        Ok(ListResponse {
            resources,
            total_results: number(&["totalResults", "totalresults"]),
            items_per_page: number(&["itemsPerPage", "itemsperpage"]),
            start_index: number(&["startIndex", "startindex"]),
            next_id: field(&["nextId", "nextid"])
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }

    /// The cursor of the page after this one under index paging, or `None` when this is the last page: the
    /// page is empty, or `start + itemsPerPage > totalResults`, or (without `totalResults`) the page holds
    /// fewer than `requested` entities.
    ///
    /// The step is `itemsPerPage` when the server gives one between the number of resources on the page and
    /// `requested` (servers that filter after paging, such as SAP's proxy API, report more items than they
    /// return), else the number of resources; and `requested` when the server returned more than asked (the
    /// page is then cut short by [`into_index_page`](Self::into_index_page)).
    pub fn next_index(&self, start: u64, requested: u32) -> Option<String> {
        next_index(
            self.resources.len() as u64,
            self.items_per_page,
            self.total_results,
            start,
            requested,
        )
    }

    /// This list as a [`Page`] under index paging: at most `page_size` entities (a server that returns more is
    /// cut short, and the cursor continues after the last entity kept), the next cursor, and the total.
    pub fn into_index_page(mut self, start: u64, page_size: u32) -> Page {
        let next = self.next_index(start, page_size);
        self.resources.truncate(page_size.max(1) as usize);
        Page::from_values(self.resources, next, self.total_results)
    }

    /// This list as a [`Page`] under cursor paging: the next cursor is `nextId`, and there is none when it is
    /// absent, empty or `end`, or when the page is empty.
    pub fn into_cursor_page(self) -> Page {
        let next = self
            .next_id
            .filter(|id| !id.is_empty() && id != "end" && !self.resources.is_empty());
        Page::from_values(self.resources, next, self.total_results)
    }
}

/// See [`ListResponse::next_index`].
fn next_index(got: u64, items_per_page: Option<u64>, total: Option<u64>, start: u64, requested: u32) -> Option<String> {
    let requested = u64::from(requested.max(1));
    if got == 0 {
        return None;
    }
    let step = if got > requested {
        requested
    } else {
        items_per_page.filter(|n| (got..=requested).contains(n)).unwrap_or(got)
    };
    let next = start.saturating_add(step);
    match total {
        Some(total) if next > total => None,
        None if step < requested => None,
        _ => Some(next.to_string()),
    }
}

/// A list answer as a [`Page`] under index paging: the same as
/// `ListResponse::from_response(resp)?.into_index_page(start, page_size)`, but each entity is handed on as
/// the slice of the answer it is, without building and re-serialising a JSON tree of the whole page (most of
/// a read's time in the plugin). Answers that are not plain list responses take the general path, which
/// also gives its error messages.
pub fn index_page(resp: &Response, start: u64, page_size: u32) -> Result<Page> {
    match raw_index_page(&resp.body, start, page_size) {
        Some(page) => Ok(page),
        None => Ok(ListResponse::from_response(resp)?.into_index_page(start, page_size)),
    }
}

fn raw_index_page(body: &[u8], start: u64, page_size: u32) -> Option<Page> {
    use serde_json::value::RawValue;
    let text = std::str::from_utf8(body).ok()?;
    let fields: std::collections::HashMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let field = |names: &[&str]| names.iter().find_map(|n| fields.get(*n));
    let resources: Vec<&RawValue> = match field(&["Resources", "resources"]) {
        None => Vec::new(),
        Some(raw) => serde_json::from_str::<Option<Vec<&RawValue>>>(raw.get())
            .ok()?
            .unwrap_or_default(),
    };
    let number = |names: &[&str]| {
        field(names)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .and_then(|v| as_u64(&v))
    };
    let total = number(&["totalResults", "totalresults"]);
    let next = next_index(
        resources.len() as u64,
        number(&["itemsPerPage", "itemsperpage"]),
        total,
        start,
        page_size,
    );
    let entities = resources
        .iter()
        .take(page_size.max(1) as usize)
        .map(|raw| raw.get().to_string())
        .collect();
    Some(Page {
        entities,
        next_cursor: next,
        total,
    })
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The `startIndex` a cursor stands for under index paging: 1 for the first page (`None`), else the cursor as
/// a number ≥ 1; [`Error::Rejected`] (status 0) for anything else.
pub fn start_index(cursor: Option<&str>) -> Result<u64> {
    match cursor {
        None => Ok(1),
        Some(c) => c
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::rejected(0, format!("Invalid paging cursor `{c}`: expected a startIndex."))),
    }
}

/// The `startId` a cursor stands for under cursor paging: `initial` for the first page, else the cursor.
pub fn start_id(cursor: Option<&str>) -> &str {
    cursor.unwrap_or("initial")
}

/// A SCIM filter string literal: `"…"` with `"` and `\` escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// AND-combines filters, skipping absent and blank ones; each is parenthesised when there are several.
/// `None` when none is left.
pub fn and_filters<'a>(filters: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let parts: Vec<&str> = filters
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    match parts.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(many.iter().map(|f| format!("({f})")).collect::<Vec<_>>().join(" and ")),
    }
}

/// The delta-read filter: entities modified after `since` (`meta.lastModified gt "…"`).
pub fn modified_since(since: &str) -> String {
    format!("meta.lastModified gt {}", quote(since.trim()))
}

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

/// An RFC 7644 PatchOp document: build one to send, or parse one and [`apply`](PatchOp::apply) it to a
/// resource (for systems without PATCH).
///
/// ```
/// use provisio_sdk::scim::PatchOp;
/// use serde_json::json;
/// let doc = PatchOp::new()
///     .replace(Some("active"), json!(false))
///     .add(Some("members"), json!([{"value": "u1"}]))
///     .remove("members[value eq \"u2\"]")
///     .to_json();
/// assert_eq!(doc["Operations"].as_array().map(Vec::len), Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchOp {
    /// The operations, in order.
    pub operations: Vec<PatchOperation>,
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

    /// Parses a PatchOp document (`schemas` optional; `Operations` or `operations`; op names in any case);
    /// [`Error::Rejected`] (400) when it is malformed.
    pub fn parse(doc: &Value) -> Result<Self> {
        let bad = |m: &str| Error::rejected(400, format!("invalidSyntax: {m}"));
        let ops = doc
            .get("Operations")
            .or_else(|| doc.get("operations"))
            .and_then(Value::as_array)
            .ok_or_else(|| bad("the PatchOp document has no `Operations` array"))?;
        if ops.is_empty() {
            return Err(bad("the PatchOp document has no operations"));
        }
        let operations = ops
            .iter()
            .map(|o| {
                let op = o
                    .get("op")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default();
                if !matches!(op.as_str(), "add" | "replace" | "remove") {
                    return Err(bad(&format!("unknown PatchOp operation `{op}`")));
                }
                let path = o
                    .get("path")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|p| !p.is_empty());
                Ok(PatchOperation {
                    op,
                    path: path.map(str::to_string),
                    value: o.get("value").cloned(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(PatchOp { operations })
    }

    /// Applies the operations, in order, to `resource` (RFC 7644 §3.5.2): `add` appends to multi-valued
    /// attributes and merges into complex ones, `replace` sets (merging complex values), `remove` deletes;
    /// paths are `attr`, `attr.sub`, `urn:…:attr`, and value paths `attr[filter]` / `attr[filter].sub` with
    /// `eq ne co sw ew pr` comparisons joined by `and`/`or`. A remove with a `value` array removes the listed
    /// elements (as Entra sends). Attribute names match case-insensitively.
    ///
    /// Errors are [`Error::Rejected`] with status 400 and the SCIM `scimType` in the text (`noTarget`,
    /// `invalidPath`, `invalidFilter`, `invalidValue`); the resource may then be partly changed, so apply to a
    /// copy when that matters.
    pub fn apply(&self, resource: &mut Value) -> Result<()> {
        for o in &self.operations {
            apply_one(resource, o)?;
        }
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

fn reject(scim_type: &str, msg: impl std::fmt::Display) -> Error {
    Error::rejected(400, format!("{scim_type}: {msg}"))
}

/// A parsed patch path: the key path to an attribute, an optional value filter, an optional sub-attribute.
struct Target {
    keys: Vec<String>,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn parse_target(resource: &Value, path: &str) -> Result<Target> {
    let invalid = || reject("invalidPath", format!("cannot parse the path `{path}`"));
    let mut keys = Vec::new();
    let mut rest = path.trim();
    if is_urn(rest) {
        // A schema URN prefix: the longest known schema (a key of the resource or a `schemas` entry) first.
        let mut known: Vec<String> = resource
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(s) = resource.get("schemas").and_then(Value::as_array) {
            known.extend(s.iter().filter_map(Value::as_str).map(str::to_string));
        }
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        let schema = known
            .into_iter()
            .filter(|k| is_urn(k))
            .find(|k| {
                rest.get(..k.len()).is_some_and(|head| head.eq_ignore_ascii_case(k))
                    && (rest.len() == k.len() || rest[k.len()..].starts_with(':'))
            })
            .or_else(|| {
                let head = &rest[..rest.find('[').unwrap_or(rest.len())];
                head.rfind(':').map(|i| rest[..i].to_string())
            })
            .ok_or_else(invalid)?;
        rest = rest[schema.len()..].strip_prefix(':').unwrap_or(&rest[schema.len()..]);
        keys.push(schema);
        if rest.is_empty() {
            return Ok(Target {
                keys,
                filter: None,
                sub: None,
            });
        }
    }
    let (attr, filter, sub) = match rest.find('[') {
        Some(open) => {
            let close = rest.rfind(']').filter(|c| *c > open).ok_or_else(invalid)?;
            let filter = Filter::parse(&rest[open + 1..close])?;
            let after = &rest[close + 1..];
            let sub = match after {
                "" => None,
                s => Some(
                    s.strip_prefix('.')
                        .filter(|s| !s.is_empty())
                        .ok_or_else(invalid)?
                        .to_string(),
                ),
            };
            (&rest[..open], Some(filter), sub)
        }
        None => (rest, None, None),
    };
    if filter.is_some() {
        keys.push(attr.to_string());
    } else {
        keys.extend(attr.split('.').map(str::to_string));
    }
    if keys.iter().any(|k| k.is_empty()) {
        return Err(invalid());
    }
    Ok(Target { keys, filter, sub })
}

/// Whether `s` starts with `urn:` (any case) and has more after it.
fn is_urn(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// The key of `obj` equal to `name` ignoring case, or `name` itself.
fn key_in(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// The slot at `keys`, creating objects on the way when `create`.
fn slot<'a>(resource: &'a mut Value, keys: &[String], create: bool) -> Result<Option<&'a mut Value>> {
    let mut cur = resource;
    for k in keys {
        if cur.is_null() && create {
            *cur = Value::Object(Map::new());
        }
        let Some(obj) = cur.as_object_mut() else {
            return Err(reject(
                "invalidPath",
                format!("`{k}` is under a value that is not complex"),
            ));
        };
        let key = key_in(obj, k);
        if !obj.contains_key(&key) {
            if !create {
                return Ok(None);
            }
            obj.insert(key.clone(), Value::Null);
        }
        cur = obj.get_mut(&key).ok_or_else(|| reject("invalidPath", k))?;
    }
    Ok(Some(cur))
}

fn merge(target: &mut Value, value: Value, append: bool) {
    match (target, value) {
        (Value::Object(t), Value::Object(v)) => {
            for (k, v) in v {
                let key = key_in(t, &k);
                match t.get_mut(&key) {
                    Some(existing) if append => merge(existing, v, append),
                    _ => {
                        t.insert(key, v);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(v)) if append => {
            for item in v {
                if !t.contains(&item) {
                    t.push(item);
                }
            }
        }
        (Value::Array(t), v) if append => {
            if !t.contains(&v) {
                t.push(v);
            }
        }
        (t, v) => *t = v,
    }
}

fn apply_one(resource: &mut Value, o: &PatchOperation) -> Result<()> {
    let Some(path) = &o.path else {
        return match (o.op.as_str(), &o.value) {
            ("remove", _) => Err(reject("noTarget", "remove needs a path")),
            (_, Some(Value::Object(attrs))) => {
                for (k, v) in attrs {
                    let sub = PatchOperation {
                        op: o.op.clone(),
                        path: Some(k.clone()),
                        value: Some(v.clone()),
                    };
                    apply_one(resource, &sub)?;
                }
                Ok(())
            }
            _ => Err(reject(
                "invalidValue",
                format!("{} without a path needs an object value", o.op),
            )),
        };
    };
    let t = parse_target(resource, path)?;
    let append = o.op == "add";
    match (o.op.as_str(), &t.filter) {
        ("remove", None) => {
            let (last, parents) = t.keys.split_last().ok_or_else(|| reject("invalidPath", path))?;
            let Some(parent) = slot(resource, parents, false)? else {
                return Ok(());
            };
            let Some(obj) = parent.as_object_mut() else {
                return Ok(());
            };
            let key = key_in(obj, last);
            match (&o.value, obj.get_mut(&key)) {
                (Some(Value::Array(gone)), Some(Value::Array(items))) => {
                    items.retain(|i| !gone.iter().any(|g| same_element(i, g)));
                }
                _ => {
                    obj.shift_remove(&key);
                }
            }
            Ok(())
        }
        ("remove", Some(f)) => {
            let Some(Value::Array(items)) = slot(resource, &t.keys, false)? else {
                return Err(reject("noTarget", format!("`{path}` matches nothing")));
            };
            match &t.sub {
                None => items.retain(|i| !f.matches(i)),
                Some(sub) => {
                    for i in items.iter_mut().filter(|i| f.matches(i)) {
                        if let Some(obj) = i.as_object_mut() {
                            let key = key_in(obj, sub);
                            obj.shift_remove(&key);
                        }
                    }
                }
            }
            Ok(())
        }
        (_, None) => {
            let value = o
                .value
                .clone()
                .ok_or_else(|| reject("invalidValue", format!("{} needs a value", o.op)))?;
            let target = slot(resource, &t.keys, true)?.ok_or_else(|| reject("invalidPath", path))?;
            merge(target, value, append);
            Ok(())
        }
        (_, Some(f)) => {
            let value = o
                .value
                .clone()
                .ok_or_else(|| reject("invalidValue", format!("{} needs a value", o.op)))?;
            let items = match slot(resource, &t.keys, false)? {
                Some(Value::Array(items)) => items,
                _ => return Err(reject("noTarget", format!("`{path}` matches nothing"))),
            };
            let mut matched = false;
            for item in items.iter_mut().filter(|i| f.matches(i)) {
                matched = true;
                match &t.sub {
                    Some(sub) => {
                        let Some(obj) = item.as_object_mut() else {
                            continue;
                        };
                        obj.insert(key_in(obj, sub), value.clone());
                    }
                    None => merge(item, value.clone(), append),
                }
            }
            if matched {
                Ok(())
            } else {
                Err(reject("noTarget", format!("`{path}` matches nothing")))
            }
        }
    }
}

/// Whether `item` is the element `gone` names: equal, or the same `value` sub-attribute.
fn same_element(item: &Value, gone: &Value) -> bool {
    item == gone || (gone.get("value").is_some() && item.get("value") == gone.get("value"))
}

/// A value filter: comparisons joined by `or` of `and`s (no parentheses, no `not`).
struct Filter(Vec<Vec<Comparison>>);

struct Comparison {
    attr: String,
    op: String,
    value: Value,
}

impl Filter {
    fn parse(text: &str) -> Result<Filter> {
        let invalid = |m: &str| reject("invalidFilter", format!("{m} in `{text}`"));
        let tokens = tokenize(text).ok_or_else(|| invalid("unterminated string"))?;
        let mut alternatives = vec![Vec::new()];
        let mut it = tokens.into_iter().peekable();
        loop {
            let attr = it.next().ok_or_else(|| invalid("a comparison is missing"))?;
            let op = it
                .next()
                .ok_or_else(|| invalid("an operator is missing"))?
                .to_ascii_lowercase();
            let value = match op.as_str() {
                "pr" => Value::Null,
                "eq" | "ne" | "co" | "sw" | "ew" | "gt" | "ge" | "lt" | "le" => {
                    let raw = it.next().ok_or_else(|| invalid("a value is missing"))?;
                    literal(&raw).ok_or_else(|| invalid("a value is not a literal"))?
                }
                _ => return Err(invalid(&format!("unknown operator `{op}`"))),
            };
            if let Some(current) = alternatives.last_mut() {
                current.push(Comparison { attr, op, value });
            }
            match it.next().map(|t| t.to_ascii_lowercase()) {
                None => break,
                Some(j) if j == "and" => {}
                Some(j) if j == "or" => alternatives.push(Vec::new()),
                Some(j) => return Err(invalid(&format!("unexpected `{j}`"))),
            }
        }
        Ok(Filter(alternatives))
    }

    fn matches(&self, item: &Value) -> bool {
        self.0.iter().any(|all| all.iter().all(|c| c.matches(item)))
    }
}

impl Comparison {
    fn matches(&self, item: &Value) -> bool {
        let actual = item.as_object().and_then(|o| o.get(&key_in(o, &self.attr)));
        let (Some(actual), op) = (actual, self.op.as_str()) else {
            return self.op == "ne";
        };
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let (a, b) = (text(actual), text(&self.value));
        match op {
            "pr" => !actual.is_null(),
            "eq" => actual == &self.value || (actual.is_string() && a == b),
            "ne" => !(actual == &self.value || (actual.is_string() && a == b)),
            "co" => a.contains(&b),
            "sw" => a.starts_with(&b),
            "ew" => a.ends_with(&b),
            "gt" => a > b,
            "ge" => a >= b,
            "lt" => a < b,
            "le" => a <= b,
            _ => false,
        }
    }
}

/// Splits a filter into words and string literals (kept quoted); `None` on an unterminated string.
fn tokenize(text: &str) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut s = String::from('"');
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => s.push(chars.next()?),
                    '"' => break,
                    ch => s.push(ch),
                }
            }
            s.push('"');
            tokens.push(s);
        } else {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                w.push(ch);
                chars.next();
            }
            tokens.push(w);
        }
    }
    Some(tokens)
}

fn literal(raw: &str) -> Option<Value> {
    if let Some(s) = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Some(Value::String(s.to_string()));
    }
    match raw.to_ascii_lowercase().as_str() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        _ => serde_json::from_str::<serde_json::Number>(raw).ok().map(Value::Number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": i.to_string()})).collect()
    }

    #[test]
    fn index_paging() {
        let list = |n, total: Option<u64>, per| ListResponse {
            resources: users(n),
            total_results: total,
            items_per_page: per,
            start_index: None,
            next_id: None,
        };
        assert_eq!(list(2, Some(5), Some(2)).next_index(1, 2), Some("3".into()));
        assert_eq!(list(2, Some(5), Some(2)).next_index(3, 2), Some("5".into()));
        assert_eq!(list(1, Some(5), Some(1)).next_index(5, 2), None);
        assert_eq!(list(2, Some(4), Some(2)).next_index(3, 2), None);
        assert_eq!(list(0, Some(9), Some(0)).next_index(3, 2), None);
        assert_eq!(list(2, None, None).next_index(1, 2), Some("3".into()));
        assert_eq!(list(1, None, None).next_index(1, 2), None);
        // itemsPerPage above the resources returned (filtered after paging) is the step.
        assert_eq!(list(2, Some(10), Some(3)).next_index(1, 3), Some("4".into()));
        // itemsPerPage that undercounts the resources is ignored.
        assert_eq!(list(3, Some(10), Some(1)).next_index(1, 3), Some("4".into()));
        // A server that ignores `count` is cut short, and the next page starts after what was kept.
        let page = list(5, Some(10), Some(5)).into_index_page(1, 2);
        assert_eq!(page.entities.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("3"));
        assert_eq!(page.total, Some(10));
        assert_eq!(start_index(None), Ok(1));
        assert_eq!(start_index(Some("41")), Ok(41));
        assert!(start_index(Some("0")).is_err());
        assert!(start_index(Some("x")).is_err());
    }

    #[test]
    fn index_page_hands_on_the_answer_slices_like_the_general_path() {
        let response = |body: &str| Response {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let general =
            |r: &Response, start, size| ListResponse::from_response(r).map(|l| l.into_index_page(start, size));
        let parsed = |p: &Page| {
            p.entities
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).expect("an entity"))
                .collect::<Vec<_>>()
        };
        for (body, start, size) in [
            (
                r#"{"schemas":["x"],"totalResults":5,"itemsPerPage":2,"startIndex":1,"Resources":[{"id":"a","n":{"b":[1,2]}}, {"id":"b"}]}"#,
                1,
                2,
            ),
            // SCIM 1.1 / UAA: lowercase, numbers as strings, a server that ignores `count`.
            (
                r#"{"totalresults":"4","resources":[{"id":"1"},{"id":"2"},{"id":"3"}]}"#,
                1,
                2,
            ),
            (r#"{"totalResults":0,"Resources":null}"#, 1, 10),
            (r#"{"totalResults":0}"#, 1, 10),
        ] {
            let r = response(body);
            let fast = index_page(&r, start, size).expect("a page");
            let slow = general(&r, start, size).expect("a page");
            assert_eq!(parsed(&fast), parsed(&slow), "{body}");
            assert_eq!((fast.next_cursor, fast.total), (slow.next_cursor, slow.total), "{body}");
        }
        // Not a list answer: the general path's error.
        for body in [r#"[1,2]"#, r#"{"Resources":{"id":"a"}}"#, "not json"] {
            let r = response(body);
            assert_eq!(index_page(&r, 1, 2).is_err(), general(&r, 1, 2).is_err(), "{body}");
            assert!(index_page(&r, 1, 2).is_err(), "{body}");
        }
    }

    #[test]
    fn parses_list_responses_in_both_spellings() {
        let l = ListResponse::from_json(&json!({"resources": [{"id": "a"}], "totalResults": 1, "itemsPerPage": "1"}))
            .unwrap();
        assert_eq!(l.resources.len(), 1);
        assert_eq!(l.items_per_page, Some(1));
        let l = ListResponse::from_json(&json!({"Resources": [{"id": "a"}], "nextId": "end"})).unwrap();
        assert_eq!(l.into_cursor_page().next_cursor, None);
        let l = ListResponse::from_json(&json!({"Resources": [{"id": "a"}], "nextId": "abc"})).unwrap();
        assert_eq!(l.into_cursor_page().next_cursor.as_deref(), Some("abc"));
        assert!(ListResponse::from_json(&json!({"Resources": 1})).is_err());
        assert!(ListResponse::from_json(&json!([])).is_err());
        assert_eq!(start_id(None), "initial");
    }

    #[test]
    fn filters() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(and_filters([None, Some(" ")]), None);
        assert_eq!(and_filters([Some("a eq 1"), None]).as_deref(), Some("a eq 1"));
        assert_eq!(
            and_filters([Some("a eq 1"), Some("b pr")]).as_deref(),
            Some("(a eq 1) and (b pr)")
        );
        assert_eq!(
            modified_since("2026-01-01T00:00:00Z"),
            r#"meta.lastModified gt "2026-01-01T00:00:00Z""#
        );
    }

    fn apply(resource: Value, ops: Value) -> Result<Value> {
        let mut r = resource;
        PatchOp::parse(&json!({"Operations": ops}))?.apply(&mut r)?;
        Ok(r)
    }

    #[test]
    fn applies_patch_operations() {
        let user = json!({"userName": "a", "name": {"givenName": "A"}, "emails": [{"value": "a@x", "type": "work"}]});
        let r = apply(
            user.clone(),
            json!([
                {"op": "Replace", "path": "name.givenName", "value": "B"},
                {"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home"}]},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x"},
                {"op": "add", "value": {"active": false, "name.familyName": "F"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            r,
            json!({"userName": "a", "name": {"givenName": "B", "familyName": "F"},
            "emails": [{"value": "w@x", "type": "work"}, {"value": "b@x", "type": "home"}], "active": false})
        );
        let r = apply(
            user.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
        )
        .unwrap();
        assert_eq!(r["emails"], json!([]));
        assert!(
            matches!(apply(user.clone(), json!([{"op": "remove"}])), Err(Error::Rejected(r)) if r.detail.starts_with("noTarget"))
        );
        assert!(apply(user.clone(), json!([{"op": "move", "path": "x"}])).is_err());
        assert!(apply(user.clone(), json!([])).is_err());
        // Non-ASCII paths never panic.
        for p in ["urné:x", "uré", "ü[value eq \"x\"]", "emails[", "a.b]"] {
            let _ = apply(user.clone(), json!([{"op": "replace", "path": p, "value": 1}]));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_paths_and_filters() {
        const ALPHABET: &[&str] = &[
            "urn:", ":", ".", "[", "]", "\"", "\\", " ", "eq", "and", "or", "pr", "value", "é", "ü", "x", "0", "'", "$",
        ];
        let resource = json!({"schemas": ["urn:a:b"], "urn:a:b": {"x": 1}, "value": [{"value": "x"}], "x": "é"});
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5000 {
            let mut path = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                path.push_str(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            for op in ["add", "replace", "remove"] {
                let _ = apply(
                    resource.clone(),
                    json!([{"op": op, "path": path, "value": [{"value": "x"}]}]),
                );
            }
            let _ = crate::json::get(&resource, &path);
        }
    }

    #[test]
    fn applies_group_member_patches() {
        let group = json!({"displayName": "g", "members": [{"value": "u1"}, {"value": "u2"}]});
        let r = apply(
            group.clone(),
            json!([{"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u2"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "u2"}, {"value": "u3"}]));
        let r = apply(
            group.clone(),
            json!([{"op": "remove", "path": "members", "value": [{"value": "u2"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "u1"}]));
        let r = apply(group, json!([{"op": "remove", "path": "members"}])).unwrap();
        assert_eq!(r.get("members"), None);
    }

    #[test]
    fn applies_urn_paths() {
        const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let user = json!({"schemas": [ENT], "userName": "a"});
        let r = apply(
            user,
            json!([
                {"op": "add", "path": format!("{ENT}:manager.value"), "value": "m1"},
                {"op": "replace", "path": format!("{ENT}:employeeNumber"), "value": "7"},
            ]),
        )
        .unwrap();
        assert_eq!(r[ENT], json!({"manager": {"value": "m1"}, "employeeNumber": "7"}));
    }

    #[test]
    fn builds_patch_documents() {
        let doc = PatchOp::new()
            .replace(Some("active"), json!(false))
            .remove("members")
            .to_json();
        assert_eq!(
            doc,
            json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": false}, {"op": "remove", "path": "members"}]})
        );
        let mut d = json!({"Operations": []});
        ensure_patch_schema(&mut d);
        assert_eq!(d["schemas"], json!([PATCH_OP]));
    }
}
