//! The read side: a resource by id, lists with filters, sorting, paging and projection (pushed down to the
//! backend where the read transformation allows), and the cross-type search.

use super::*;
use crate::text_answers::TextAnswers;

impl Proxy {
    /// Whether this proxy serves a kind.
    pub fn serves(&self, kind: EntityKind) -> bool {
        self.served.kinds.contains(&kind)
    }

    pub(super) fn supports(&self, op: Operation) -> bool {
        self.plugin.descriptor.operations.contains(&op)
    }

    /// `…/Users/{id}`, the id percent-encoded; `None` for an id no URL can address (`.`, `..`).
    pub fn location(&self, kind: EntityKind, id: &str) -> Option<String> {
        resource_url(&self.base, schema::type_name(kind).1, id)
    }

    /// The rules of a kind's attributes.
    pub fn rules(&self, kind: EntityKind) -> ResourceType<'_> {
        self.served.resource_type(kind)
    }

    /// A native entity through the read transformation; `None` when the transformation skips it.
    pub(super) fn to_scim(&self, kind: EntityKind, native: &Value) -> Result<Option<Value>, String> {
        let endpoint = schema::type_name(kind).1;
        let ctx = Context::new(&self.system.spec.properties)
            .operation(TransformOp::Update)
            .variable("entityBaseLocation", json!(format!("{}/{endpoint}/", self.base)));
        let mut resource = match self.read.apply(kind.as_str(), native, &ctx) {
            Outcome::Transformed { output, .. } => output,
            Outcome::Skipped { .. } => return Ok(None),
            Outcome::Failed { reason, .. } => return Err(reason),
        };
        let Some(id) = resource.get("id").and_then(id_text) else {
            return Err("the read transformation produced no id".into());
        };
        let version = etag(&resource);
        let (type_name, _) = schema::type_name(kind);
        let Some(location) = self.location(kind, &id) else {
            return Err(format!(
                "the backend's id {id:?} is a dot segment, which no URL can address; the entity is not served"
            ));
        };
        let Some(obj) = resource.as_object_mut() else {
            return Err("the read transformation produced no object".into());
        };
        obj.insert("id".into(), json!(id));
        // SCIM 2.0 clients need the 2.0 core schema even when the backend speaks SCIM 1.x.
        let core = schema::core_urn(kind);
        let mut schemas: Vec<Value> = obj
            .get("schemas")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter(|u| {
                        u.as_str()
                            .is_some_and(|u| u.starts_with("urn:ietf:params:scim:schemas:"))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !schemas.iter().any(|s| s == core) {
            schemas.insert(0, json!(core));
        }
        for ext in self.served.extensions(kind) {
            if obj.contains_key(ext) && !schemas.iter().any(|s| s == ext) {
                schemas.push(json!(ext));
            }
        }
        // Extension objects no served schema declares (see `schema::synthesize`) are not served.
        let undeclared: Vec<String> = obj
            .keys()
            .filter(|k| {
                k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && self.served.known_urn(kind, k).is_none()
            })
            .cloned()
            .collect();
        for k in undeclared {
            obj.shift_remove(&k);
            schemas.retain(|s| s.as_str().is_none_or(|s| !s.eq_ignore_ascii_case(&k)));
        }
        obj.insert("schemas".into(), Value::Array(schemas));
        // In any case, as a projection drops it: a page without projection is served as transformed.
        provisio_scim::patch::remove_ci(obj, "password");
        self.drop_undeclared(kind, obj);
        if kind == EntityKind::Group {
            self.normalize_members(obj);
        }
        // The proxy's own address, whatever the backend called itself.
        if let Some(m) = meta_of(obj) {
            m.insert("resourceType".into(), json!(type_name));
            m.insert("location".into(), json!(location));
            m.insert("version".into(), json!(version));
            // SCIM 1.x backends send integers or other shapes; SCIM 2.0 wants dateTime strings only.
            for key in ["created", "lastModified"] {
                if m.get(key).is_some_and(|v| !v.is_string()) {
                    m.shift_remove(key);
                }
            }
            m.shift_remove("attributes");
        }
        Ok(Some(resource))
    }

    /// A page of the connector's entity texts through [`Proxy::to_scim`], in order: a text the read
    /// transformation saw before comes from the memo (see [`super::memo`]), the others are parsed and
    /// transformed on every core, then remembered. `recall` holds the memo's answers, asked while the runtime
    /// checked every text new to the memo to be JSON (a text that is not fails the call there, counted as the
    /// plugin's invalid result); one that would still not parse here fails the page the same way. Resources
    /// are shared with the memo, not copied.
    pub(super) fn to_scim_texts(
        &self,
        kind: EntityKind,
        texts: Vec<String>,
        recall: Recall<'_>,
    ) -> Result<Vec<Result<memo::Remembered, String>>, ScimError> {
        use rayon::prelude::*;
        let recalled: Vec<Option<memo::Remembered>> = match recall.found(&texts) {
            Some(found) => found,
            None => texts.iter().map(|t| self.memo.get(kind, &self.base, t)).collect(),
        };
        let missed: Vec<&String> = texts
            .iter()
            .zip(&recalled)
            .filter(|(_, r)| r.is_none())
            .map(|(t, _)| t)
            .collect();
        let fresh: Vec<Result<Option<Value>, String>> = missed
            .par_iter()
            .with_min_len(crate::PARALLEL_CHUNK)
            .map(|text| serde_json::from_str::<Value>(text).map(|native| self.to_scim(kind, &native)))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ScimError::from_call(CallError::InvalidResult {
                    plugin: self.plugin.label(),
                    message: format!("an entity is not valid JSON: {e}"),
                })
            })?;
        let base: Arc<str> = Arc::from(self.base.as_str());
        let mut fresh = fresh.into_iter();
        let mut out = Vec::with_capacity(texts.len());
        for (text, recalled) in texts.into_iter().zip(recalled) {
            let transformed = match recalled {
                Some(remembered) => Ok(remembered),
                None => {
                    let transformed = fresh.next().unwrap_or_else(|| unreachable!("one per text missed"));
                    // Failures are not remembered: they are logged each time, as before.
                    transformed.map(|resource| {
                        let resource = resource.map(|r| Arc::new(memo::Written::new(r)));
                        self.memo.put(kind, &base, text, resource.clone());
                        resource
                    })
                }
            };
            out.push(transformed);
        }
        Ok(out)
    }

    /// Sub-attributes a backend adds to standard complex attributes (UAA's `members[].origin`) are not
    /// SCIM and strict clients refuse them: only declared sub-attributes are served.
    pub(super) fn drop_undeclared(&self, kind: EntityKind, obj: &mut serde_json::Map<String, Value>) {
        let Some((_, complex)) = self.sub_attributes.iter().find(|(k, _)| *k == kind) else {
            return;
        };
        for (name, value) in obj.iter_mut() {
            let Some((_, subs)) = complex.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let declared = |k: &str| subs.iter().any(|s| s.eq_ignore_ascii_case(k));
            match value {
                Value::Array(items) => {
                    for o in items.iter_mut().filter_map(Value::as_object_mut) {
                        o.retain(|k, _| declared(k));
                    }
                }
                Value::Object(o) => o.retain(|k, _| declared(k)),
                _ => {}
            }
        }
    }

    /// Members in SCIM 2.0 form: `type` `User`/`Group` (UAA says `USER`), and a `$ref` to the member
    /// through this proxy.
    pub(super) fn normalize_members(&self, obj: &mut serde_json::Map<String, Value>) {
        let Some(Value::Array(members)) = obj.get_mut("members") else {
            return;
        };
        for m in members.iter_mut().filter_map(Value::as_object_mut) {
            let kind = match m.get("type").and_then(Value::as_str) {
                Some(t) if t.eq_ignore_ascii_case("group") => EntityKind::Group,
                _ => EntityKind::User,
            };
            if m.contains_key("type") {
                m.insert("type".into(), json!(schema::type_name(kind).0));
            }
            if let Some(v) = m.get("value").and_then(id_text)
                && !m.contains_key("$ref")
                && let Some(location) = self.location(kind, &v)
            {
                m.insert("$ref".into(), json!(location));
            }
        }
    }

    /// One resource by id, through the memo as a page's are: an entity the read transformation saw before
    /// is served from what it became, with its text.
    pub async fn get(&self, kind: EntityKind, id: &str) -> Result<Arc<memo::Written>, ScimError> {
        let recall = Recall::new(self, kind);
        let text = self
            .runtime
            .get_text(&self.plugin, &self.call, kind, id, &|t| recall.known(t))
            .await
            .map_err(ScimError::from_call)?;
        let transformed = self.to_scim_texts(kind, vec![text], recall)?.pop();
        match transformed {
            Some(Ok(Some(resource))) => Ok(resource),
            Some(Ok(None)) | None => Err(ScimError::not_found(format!("{} {id} not found", kind.as_str()))),
            Some(Err(reason)) => Err(ScimError::backend(format!("the read transformation failed: {reason}"))),
        }
    }

    /// One resource by id, with the backend's own version of it.
    pub(super) async fn read(&self, kind: EntityKind, id: &str) -> Result<Current, ScimError> {
        let native = self
            .runtime
            .get(&self.plugin, &self.call, kind, id)
            .await
            .map_err(ScimError::from_call)?;
        let resource = self
            .to_scim(kind, &native)
            .map_err(|r| ScimError::backend(format!("the read transformation failed: {r}")))?
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.as_str())))?;
        let version = native.pointer("/meta/version").filter(|v| !v.is_null()).cloned();
        Ok(Current { resource, version })
    }

    /// Every resource of a kind, read page by page to the end; `prefilter` (when sound) narrows the backend
    /// read, and the host re-checks every result anyway.
    pub async fn read_all(&self, kind: EntityKind, prefilter: Option<String>) -> Result<Vec<Value>, ScimError> {
        let mut request = PageRequest::first(kind, READ_PAGE);
        request.filter = prefilter;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let recall = Recall::new(self, kind);
            let mut page = self
                .runtime
                .read_texts(&self.plugin, &self.call, &request, &|t| recall.known(t))
                .await
                .map_err(ScimError::from_call)?;
            let empty = page.entities.is_empty();
            for transformed in self.to_scim_texts(kind, std::mem::take(&mut page.entities), recall)? {
                match transformed {
                    // Filters, sorting and projection work on a copy; the memo keeps its own.
                    Ok(Some(r)) => out.push(r.value.clone()),
                    Ok(None) => {}
                    // One entity the transformation cannot handle must not hide all others.
                    Err(reason) => {
                        tracing::warn!(system = %self.system.id, %reason, "proxy read transformation failed for an entity")
                    }
                }
            }
            match page.next_cursor {
                Some(c) if !empty => request.cursor = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ScimError::backend(format!(
            "the backend did not finish paging after {MAX_PAGES} pages"
        )))
    }

    /// A list request on one kind: filter, sort, page, project. Answers the list response's JSON text.
    pub async fn list(&self, kind: EntityKind, q: &ListQuery) -> Result<Vec<u8>, ScimError> {
        q.projection.validate(&self.served, &[kind], &self.extra)?;
        let mut found = match q.filter.as_ref().and_then(|f| self.shortcut(kind, f)) {
            // `id eq "x"`: one get instead of a full read.
            Some(Shortcut::Id(id)) => match self.get(kind, &id).await {
                Ok(r) => vec![r.value.clone()],
                Err(e) if e.status == http::StatusCode::NOT_FOUND => vec![],
                Err(e) => return Err(e),
            },
            Some(Shortcut::Prefilter(text)) => self.read_filtered(kind, text).await?,
            None => {
                if let Some(page) = self.backend_page(kind, q).await? {
                    return Ok(page);
                }
                self.read_all(kind, None).await?
            }
        };
        let rules = self.rules(kind);
        if let Some(f) = &q.filter {
            found.retain(|r| f.matches(r, &rules));
        }
        if let Some(by) = &q.sort_by {
            query::sort(&mut found, by, q.descending, &rules);
        }
        Ok(crate::json::text(&self.page(found, q, |r| (r, kind))).into_bytes())
    }

    /// A full read narrowed by a native filter; when the backend refuses the filter (400, unsupported),
    /// the whole read without it (the host filters anyway).
    pub(super) async fn read_filtered(&self, kind: EntityKind, native: String) -> Result<Vec<Value>, ScimError> {
        match self.read_all(kind, Some(native.clone())).await {
            Err(e) if e.status == http::StatusCode::BAD_REQUEST || e.status == http::StatusCode::NOT_IMPLEMENTED => {
                tracing::debug!(system = %self.system.id, filter = %native, error = %e, "the backend refused a pushed-down filter; reading everything");
                self.read_all(kind, None).await
            }
            other => other,
        }
    }

    /// A list without filter or sort is one window of the backend's own order: asked of the backend page by
    /// page instead of reading everything, when the backend reports its total and the read transformation
    /// keeps every entity. `None` when that does not hold (the caller reads everything). The answer's JSON text:
    /// without a projection it is written straight from the resources the memo shares.
    pub(super) async fn backend_page(&self, kind: EntityKind, q: &ListQuery) -> Result<Option<Vec<u8>>, ScimError> {
        use std::sync::atomic::Ordering;
        if q.filter.is_some() || q.sort_by.is_some() || q.count == 0 {
            return Ok(None);
        }
        let start = q.start_index.max(1);
        let mut request = PageRequest::first(kind, q.count.min(u64::from(READ_PAGE)) as u32);
        if start > 1 {
            if self.index_cursors.load(Ordering::Relaxed) != 1 {
                return Ok(None);
            }
            request.cursor = Some(start.to_string());
        }
        let mut resources = Vec::new();
        let mut total = None;
        let mut first = true;
        while (resources.len() as u64) < q.count {
            request.page_size = (q.count - resources.len() as u64).min(u64::from(READ_PAGE)) as u32;
            let recall = Recall::new(self, kind);
            let mut page = self
                .runtime
                .read_texts(&self.plugin, &self.call, &request, &|t| recall.known(t))
                .await
                .map_err(ScimError::from_call)?;
            if first {
                first = false;
                let Some(t) = page.total else { return Ok(None) };
                total = Some(t);
                if request.cursor.is_none() && !page.entities.is_empty() {
                    // A connector that pages by start index answers the first page of n with cursor n + 1.
                    let expected = (page.entities.len() + 1).to_string();
                    let index = match &page.next_cursor {
                        Some(c) => c.trim() == expected,
                        None => false,
                    };
                    if page.next_cursor.is_some() {
                        self.index_cursors.store(if index { 1 } else { 2 }, Ordering::Relaxed);
                    }
                }
            }
            let empty = page.entities.is_empty();
            for transformed in self.to_scim_texts(kind, std::mem::take(&mut page.entities), recall)? {
                match transformed {
                    Ok(r) if r.is_some() && (resources.len() as u64) < q.count => resources.push(r),
                    Ok(r) if r.is_some() => {}
                    // Skipped or failed entities shift the window: only a full read pages correctly then.
                    _ => return Ok(None),
                }
            }
            match page.next_cursor {
                Some(c) if !empty => request.cursor = Some(c),
                _ => break,
            }
        }
        let Some(total) = total else { return Ok(None) };
        let resources: Vec<&memo::Written> = resources.iter().filter_map(|r| r.as_deref()).collect();
        if q.projection.is_empty() {
            let texts = resources.iter().map(|r| &*r.text);
            return Ok(Some(ListResponse::page_json(texts, total, start)));
        }
        let projected = resources
            .into_iter()
            .map(|r| {
                let mut r = r.value.clone();
                q.projection.apply(&mut r, &self.served, kind);
                r
            })
            .collect();
        Ok(Some(
            crate::json::text(&ListResponse::page(projected, total, start).into_json()).into_bytes(),
        ))
    }

    /// `POST /.search` at the root: users and groups together.
    pub async fn search_all(&self, q: &ListQuery) -> Result<Value, ScimError> {
        q.projection.validate(&self.served, &self.served.kinds, &self.extra)?;
        let mut found: Vec<(Value, EntityKind)> = Vec::new();
        for &kind in &self.served.kinds {
            let rules = self.rules(kind);
            for r in self.read_all(kind, None).await? {
                if q.filter.as_ref().is_none_or(|f| f.matches(&r, &rules)) {
                    found.push((r, kind));
                }
            }
        }
        if let Some(by) = &q.sort_by {
            // Sort each kind's keys by the user rules; the attribute means the same for both.
            let rules = self.rules(EntityKind::User);
            let mut values: Vec<Value> = found.iter().map(|(r, _)| r.clone()).collect();
            let mut order: Vec<usize> = (0..values.len()).collect();
            for (i, v) in values.iter_mut().enumerate() {
                v["__order"] = json!(i);
            }
            query::sort(&mut values, by, q.descending, &rules);
            order.clear();
            order.extend(values.iter().filter_map(|v| v["__order"].as_u64()).map(|i| i as usize));
            let mut sorted = Vec::with_capacity(found.len());
            let mut slots: Vec<Option<(Value, EntityKind)>> = found.into_iter().map(Some).collect();
            for i in order {
                if let Some(x) = slots.get_mut(i).and_then(Option::take) {
                    sorted.push(x);
                }
            }
            found = sorted;
        }
        Ok(self.page(found, q, |x| x))
    }

    pub(super) fn page<T>(&self, found: Vec<T>, q: &ListQuery, split: impl Fn(T) -> (Value, EntityKind)) -> Value {
        let total = found.len();
        let range = provisio_scim::list::window(total, q.start_index, q.count);
        let resources: Vec<Value> = found
            .into_iter()
            .skip(range.start)
            .take(range.len())
            .map(|x| {
                let (mut r, kind) = split(x);
                q.projection.apply(&mut r, &self.served, kind);
                r
            })
            .collect();
        ListResponse::page(resources, total as u64, q.start_index).into_json()
    }

    /// A filter the backend can narrow soundly: `id eq` becomes a get; an `eq` on an attribute the read
    /// transformation carries unchanged (`userName`, `displayName`, `externalId`, `emails.value`; see
    /// [`pushable`]) goes to the connector as a native filter — alone or as one side of an `and`. The host
    /// evaluates the full filter on the result anyway, so the pushdown only has to be a superset.
    pub(super) fn shortcut(&self, kind: EntityKind, f: &Filter) -> Option<Shortcut> {
        match f {
            Filter::And(a, b) => {
                let (a, b) = (self.shortcut(kind, a), self.shortcut(kind, b));
                match (a, b) {
                    (Some(Shortcut::Id(id)), _) | (_, Some(Shortcut::Id(id))) => Some(Shortcut::Id(id)),
                    (Some(p), _) | (_, Some(p)) => Some(p),
                    _ => None,
                }
            }
            Filter::Compare(path, filter::CompareOp::Eq, Value::String(v)) => {
                if path.urn.is_some() {
                    return None;
                }
                if path.name.eq_ignore_ascii_case("id") && path.sub.is_none() && path.index.is_none() {
                    return Some(Shortcut::Id(v.clone()));
                }
                self.native_eq(kind, path, v).map(Shortcut::Prefilter)
            }
            _ => None,
        }
    }

    /// `attr eq "v"` in the backend's filter language, when `path` is pushable for this kind.
    pub(super) fn native_eq(&self, kind: EntityKind, path: &filter::AttrPath, value: &str) -> Option<String> {
        let name = match &path.sub {
            Some(sub) => format!("{}.{sub}", path.name),
            None if path.index.is_none() => path.name.clone(),
            None => return None,
        };
        let (_, attr) = self
            .pushable
            .iter()
            .find(|(k, a)| *k == kind && a.eq_ignore_ascii_case(&name))?;
        Some(format!("{attr} eq {}", Value::String(value.to_string())))
    }
}

pub(super) enum Shortcut {
    Id(String),
    Prefilter(String),
}

/// Complex attributes (top-level names) with the names of their declared sub-attributes.
pub(super) type ComplexAttributes = Vec<(String, Vec<String>)>;

/// The complex attributes of a kind (core schema first, then extensions; top-level names) with the names of
/// their declared sub-attributes.
pub(super) fn complex_attributes(served: &Served, kind: EntityKind) -> ComplexAttributes {
    let mut out: ComplexAttributes = Vec::new();
    for urn in std::iter::once(schema::core_urn(kind)).chain(served.extensions(kind)) {
        let attributes = served
            .schema(urn)
            .and_then(|s| s.get("attributes"))
            .and_then(Value::as_array);
        for attr in attributes.into_iter().flatten() {
            let (Some(name), Some(subs)) = (
                attr.get("name").and_then(Value::as_str),
                attr.get("subAttributes").and_then(Value::as_array),
            ) else {
                continue;
            };
            if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            let subs = subs
                .iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str).map(String::from))
                .collect();
            out.push((name.to_string(), subs));
        }
    }
    out
}

/// Attributes whose `eq` filters may go to the backend: those the read transformation carries unchanged.
/// Every mapping whose target overlaps the attribute must copy the same path (no functions, default,
/// variable or element filter), so that a native `attr eq "v"` selects a superset of what the host's
/// filter keeps (the backend must compare at least as loosely as SCIM: case-insensitively for `userName`).
pub(super) fn pushable(read: &Value) -> Vec<(EntityKind, &'static str)> {
    const CANDIDATES: [(EntityKind, &str); 6] = [
        (EntityKind::User, "userName"),
        (EntityKind::User, "externalId"),
        (EntityKind::User, "emails.value"),
        (EntityKind::User, "displayName"),
        (EntityKind::Group, "displayName"),
        (EntityKind::Group, "externalId"),
    ];
    CANDIDATES
        .into_iter()
        .filter(|(kind, attr)| carried_unchanged(read, *kind, attr))
        .collect()
}

pub(super) fn carried_unchanged(read: &Value, kind: EntityKind, attr: &str) -> bool {
    let Some(mappings) = read
        .get(kind.as_str())
        .and_then(|e| e.get("mappings"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    let wanted: Vec<String> = attr.split('.').map(str::to_ascii_lowercase).collect();
    let lower = |p: &str| -> Vec<String> { schema::segments(p).iter().map(|s| s.to_ascii_lowercase()).collect() };
    let mut carried = false;
    for m in mappings {
        let Some(target) = m.get("targetPath").and_then(Value::as_str) else {
            continue;
        };
        let t = lower(target);
        let overlaps = t.iter().zip(&wanted).all(|(a, b)| a == b);
        if !overlaps {
            continue;
        }
        let plain_copy = m
            .get("sourcePath")
            .and_then(Value::as_str)
            .is_some_and(|source| !source.contains('[') && !target.contains('[') && lower(source) == t)
            && m.get("functions").and_then(Value::as_array).is_none_or(Vec::is_empty)
            && m.get("defaultValue").is_none()
            && m.get("sourceVariable").is_none()
            && m.get("constant").is_none();
        if !plain_copy {
            return false;
        }
        carried = true;
    }
    carried
}

pub(super) fn unique_attribute(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "userName",
        EntityKind::Group => "displayName",
    }
}

/// The memo's answers for the texts of one connector call, asked while the runtime checks them: a text the
/// memo holds is JSON (the runtime need not check it), and [`Proxy::to_scim_texts`] need not look it up again.
pub(super) struct Recall<'a> {
    proxy: &'a Proxy,
    kind: EntityKind,
    found: TextAnswers<Option<memo::Remembered>>,
}

impl<'a> Recall<'a> {
    pub(super) fn new(proxy: &'a Proxy, kind: EntityKind) -> Recall<'a> {
        Recall {
            proxy,
            kind,
            found: TextAnswers::new(),
        }
    }

    /// The runtime's question for each text: whether the memo holds it.
    fn known(&self, text: &str) -> bool {
        let remembered = self.proxy.memo.get(self.kind, &self.proxy.base, text);
        let known = remembered.is_some();
        self.found.keep(text, remembered);
        known
    }

    /// The answers for `texts`, in order; `None` unless the runtime asked about exactly these texts.
    fn found(self, texts: &[String]) -> Option<Vec<Option<memo::Remembered>>> {
        self.found.for_texts(texts)
    }
}
