//! Proxy systems: any connector-backed system served as a SCIM 2.0 service provider under
//! `/ipsproxy/api/v1/scim/{systemId}/…` (and `/ipsproxy/service/api/v1/scim/…`), for an external identity
//! manager (SAP Identity Management, Entra, Okta, midPoint) — the hybrid scenario.
//!
//! Data flow: reads call the connector's `read`/`get`, then the proxy's **read** transformation (with
//! `entityBaseLocation`) turns each native entity into a SCIM resource; writes run the **write**
//! transformation (`Create` on POST, `Update` on PUT, `Patch` where the mappings are `patchEntity`-scoped),
//! call the connector, and answer the result through the read transformation. Filters, sorting, paging and
//! attribute projection run in the host over the transformed resources, so they mean the same for every
//! backend and `totalResults` is exact. The proxy keeps no state of its own (no tables).

pub mod backend;
pub mod error;
pub mod limit;
pub mod query;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use provisio_transform::{Context, EntityIdResolver, Operation as TransformOp, Outcome, Transformation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Engine;
use crate::connector::{ConnectorError, EntityKind, Operation, PageRequest};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};
use crate::store::generation::ByGeneration;
use crate::store::systems::{Role, System};
use error::ScimError;
/// Filters and PatchOp are the shared SCIM crate's.
pub use provisio_scim::filter;
use provisio_scim::schema::ResourceType;
use provisio_scim::{Filter, ListResponse, PatchOp, get_ci};
use query::ListQuery;
use schema::Served;

/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";
pub use provisio_scim::LIST_RESPONSE;
/// Page size asked of connectors when the proxy reads a whole backend.
const READ_PAGE: u32 = 500;
/// A backend read stops after this many pages (500,000 entities), so a connector whose cursor never ends
/// cannot hold a request forever.
const MAX_PAGES: usize = 1000;

/// Proxy defaults for connectors whose descriptor carries only their source/target defaults (components
/// built for contract 0.1.0, which cannot declare proxy defaults): SAP's for xsuaa; for scim a pass-through write (a proxy's ids are the backend's, so the target default's
/// `resolveEntityIds` and member rewriting would only lose `$ref`, `display` and `type`).
fn proxy_default(connector: &str, direction: &str) -> Option<&'static str> {
    match (connector, direction) {
        ("scim", "write") => Some(include_str!("defaults/scim-write.json")),
        ("xsuaa", "read") => Some(include_str!(
            "../../../../connectors/xsuaa/transformations/proxy-read.json"
        )),
        ("xsuaa", "write") => Some(include_str!(
            "../../../../connectors/xsuaa/transformations/proxy-write.json"
        )),
        _ => None,
    }
}

/// What a backend cannot keep, so that the served schemas tell the truth: attributes it always holds
/// because it defaults them (UAA: `active`, `verified`; a client cannot remove them, so they are served as
/// required), and sub-attributes it drops (UAA keeps an e-mail's value and primary flag only).
fn backend_limits(connector: &str) -> schema::Limits {
    match connector {
        "xsuaa" => schema::Limits {
            always: &["active", "verified"],
            dropped: &[
                "emails.display",
                "emails.type",
                "emails.primary",
                "phoneNumbers.display",
                "phoneNumbers.type",
                "phoneNumbers.primary",
                "members.display",
            ],
        },
        _ => schema::Limits::default(),
    }
}

/// A proxy system's transformation document of one direction: stored, else the proxy default the
/// connector declares (contract 0.2.0), else the host's proxy default for the connector, else the
/// connector's own default.
pub fn proxy_transformation(system: &System, plugin: &LoadedPlugin, direction: &str) -> Result<Value, String> {
    let declared = match direction {
        "read" => plugin.extensions.default_proxy_read_transformation.as_deref(),
        _ => plugin.extensions.default_proxy_write_transformation.as_deref(),
    };
    let default = declared
        .or_else(|| proxy_default(&system.spec.connector, direction))
        .or(match direction {
            "read" => plugin.descriptor.default_read_transformation.as_deref(),
            _ => plugin.descriptor.default_write_transformation.as_deref(),
        });
    crate::provisioning::transformation_document(system, direction, default)
}

/// Proxy ids are backend ids: `resolveEntityIds` in a write transformation resolves an id to itself.
struct SameIds;

impl EntityIdResolver for SameIds {
    fn resolve(&self, _: &str, id: &str, _: Option<&str>, _: Option<&str>) -> Option<String> {
        Some(id.to_string())
    }
}

/// What the proxy endpoints share across requests: the resolved view of each proxy system (so that a
/// request neither reads the system nor decrypts its secrets nor parses its transformations again) and the
/// per-client limits.
pub struct ProxyState {
    views: ByGeneration<View>,
    /// Requests per second per technical user; `None` is no limit.
    pub limiter: Option<limit::RateLimiter>,
    /// Requests in flight per technical user.
    pub in_flight: Arc<limit::InFlight>,
}

impl Default for ProxyState {
    fn default() -> Self {
        ProxyState::new(None, limit::DEFAULT_MAX_IN_FLIGHT)
    }
}

impl ProxyState {
    /// The shared state, with a rate limit of `per_second` requests per technical user (bursts of the
    /// same size, at least 1) when given, and at most `max_in_flight` requests of one technical user in flight.
    pub fn new(per_second: Option<f64>, max_in_flight: usize) -> ProxyState {
        ProxyState {
            views: Default::default(),
            limiter: per_second.and_then(|r| limit::RateLimiter::new(r, r.ceil().clamp(1.0, 1e6) as u32)),
            in_flight: limit::InFlight::new(max_in_flight),
        }
    }

    /// Admits one request of `client`: 429 with `Retry-After` when it has too many in flight or is over
    /// its rate. The request keeps its place until the answer is dropped.
    pub fn admit(&self, client: &str) -> Result<limit::Admitted, ScimError> {
        let admitted = self.in_flight.enter(client).ok_or_else(|| {
            let mut e = ScimError::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                Some("tooMany"),
                format!(
                    "too many requests in flight: this client may have {} requests at once in progress on the proxy endpoints",
                    self.in_flight.max()
                ),
            );
            e.retry_after = Some(1);
            e
        })?;
        let Some(limiter) = &self.limiter else {
            return Ok(admitted);
        };
        limiter.check(client).map(|()| admitted).map_err(|wait| {
            let mut e = ScimError::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                Some("tooMany"),
                format!(
                    "too many requests: this client may send {} requests per second to the proxy endpoints",
                    limiter.per_second()
                ),
            );
            e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            e
        })
    }
}

/// One proxy system resolved for serving: the system with its secrets, its plugin and call target, its
/// parsed transformations and served schemas. Shared by requests until the system changes.
pub struct View {
    /// The system.
    pub system: System,
    plugin: Arc<LoadedPlugin>,
    call: CallTarget,
    runtime: Arc<Runtime>,
    read: Transformation,
    write: Transformation,
    /// The schemas it serves.
    pub served: Served,
    /// Top-level attributes the read transformation writes that no served schema defines (`origin`, …).
    pub extra: Vec<String>,
    /// Attributes an `eq` filter on which goes to the backend as a native filter (see [`pushable`]).
    pushable: Vec<(EntityKind, &'static str)>,
    /// Per kind, the served complex attributes and their declared sub-attributes (for `drop_undeclared`,
    /// which runs on every entity served).
    sub_attributes: Vec<(EntityKind, ComplexAttributes)>,
    /// Whether the connector's read cursors are 1-based start indexes (learnt from a first page), so that a
    /// page at any `startIndex` can be asked for directly: 0 unknown, 1 yes, 2 no.
    index_cursors: std::sync::atomic::AtomicU8,
    /// When what the backend declared about itself is to be asked again (`None`: never, nothing was asked).
    rediscover_at: Option<std::time::Instant>,
}

/// How long what a SCIM backend declared (its schema extensions) is trusted before it is asked again.
const DISCOVERY_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How soon a backend that did not answer its discovery is asked again.
const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// One proxy system, for one request: the shared [`View`] and the base URL the client used.
pub struct Proxy {
    view: Arc<View>,
    /// `…/scim/{systemId}`, as the client reached it.
    pub base: String,
    /// The client's place among its requests in flight, given back when the request ends.
    _admitted: Option<limit::Admitted>,
}

impl std::ops::Deref for Proxy {
    type Target = View;
    fn deref(&self) -> &View {
        &self.view
    }
}

impl Proxy {
    /// Proxy system `id`, from the cache while the system and its plugin are unchanged; `base` is the URL
    /// prefix the client used (for `meta.location`).
    pub async fn load(state: &Engine, id: &str, base: String) -> Result<Proxy, ScimError> {
        let generation = state.store.systems_generation();
        if let Some(view) = state.proxy.views.get(id, generation)
            && state.systems.runs_on(&view.system, &view.plugin)
            && view.rediscover_at.is_none_or(|at| std::time::Instant::now() < at)
        {
            return Ok(Proxy {
                view,
                base,
                _admitted: None,
            });
        }
        let view = Arc::new(View::load(state, id).await?);
        state.proxy.views.insert(id, generation, view.clone());
        Ok(Proxy {
            view,
            base,
            _admitted: None,
        })
    }

    /// The proxy, holding the client's place among its requests in flight until it is dropped.
    pub fn admitted(mut self, admitted: limit::Admitted) -> Proxy {
        self._admitted = Some(admitted);
        self
    }
}

impl View {
    async fn load(state: &Engine, id: &str) -> Result<View, ScimError> {
        let missing = || ScimError::not_found(format!("no proxy system with id {id}"));
        let system = state.systems.get(id).map_err(|_| missing())?;
        if system.spec.role != Role::Proxy {
            return Err(missing());
        }
        let plugin = state
            .systems
            .plugin_for(&system)
            .map_err(|e| ScimError::backend(e.to_string()))?;
        let call = state
            .systems
            .call_target(&system, &plugin.descriptor)
            .map_err(|e| ScimError::backend(e.to_string()))?;
        let doc = |direction: &str| proxy_transformation(&system, &plugin, direction).map_err(ScimError::backend);
        let (read_doc, write_doc) = (doc("read")?, doc("write")?);
        let parse = |d: &Value, label: &str| {
            Transformation::parse(d)
                .map_err(|e| ScimError::backend(format!("the proxy's {label} transformation is invalid: {e}")))
        };
        // A SCIM backend says which schema extensions it keeps: only those are served (see `backend`).
        let (declared, rediscover_at) = if system.spec.connector == backend::SCIM_CONNECTOR {
            let now = std::time::Instant::now();
            let runtime = state.plugins.runtime();
            match backend::discover(runtime.outbound(), &call.endpoint, &call.properties).await {
                backend::Discovery::Declared(d) => (Some(d), Some(now + DISCOVERY_TTL)),
                backend::Discovery::Silent => (None, Some(now + DISCOVERY_TTL)),
                backend::Discovery::Unreachable(e) => {
                    tracing::warn!(system = %system.id, error = %e, "the SCIM backend did not answer its discovery (ResourceTypes); serving the standard schemas for now");
                    (None, Some(now + DISCOVERY_RETRY))
                }
            }
        } else {
            (None, None)
        };
        let served = Served::for_backend(
            &plugin.descriptor.entity_kinds,
            &read_doc,
            &write_doc,
            backend_limits(&system.spec.connector),
            declared.as_ref(),
        );
        let extra = extra_attributes(&read_doc, &served);
        Ok(View {
            read: parse(&read_doc, "read")?,
            write: parse(&write_doc, "write")?,
            pushable: pushable(&read_doc),
            sub_attributes: served
                .kinds
                .iter()
                .map(|&k| (k, complex_attributes(&served, k)))
                .collect(),
            served,
            extra,
            system,
            plugin,
            call,
            runtime: state.plugins.runtime().clone(),
            index_cursors: std::sync::atomic::AtomicU8::new(0),
            rediscover_at,
        })
    }
}

impl Proxy {
    /// Whether this proxy serves a kind.
    pub fn serves(&self, kind: EntityKind) -> bool {
        self.served.kinds.contains(&kind)
    }

    fn supports(&self, op: Operation) -> bool {
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
    fn to_scim(&self, kind: EntityKind, native: &Value) -> Result<Option<Value>, String> {
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
        obj.shift_remove("password");
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

    /// Sub-attributes a backend adds to standard complex attributes (UAA's `members[].origin`) are not
    /// SCIM and strict clients refuse them: only declared sub-attributes are served.
    fn drop_undeclared(&self, kind: EntityKind, obj: &mut serde_json::Map<String, Value>) {
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
    fn normalize_members(&self, obj: &mut serde_json::Map<String, Value>) {
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

    /// One resource by id.
    pub async fn get(&self, kind: EntityKind, id: &str) -> Result<Value, ScimError> {
        Ok(self.read(kind, id).await?.resource)
    }

    /// One resource by id, with the backend's own version of it.
    async fn read(&self, kind: EntityKind, id: &str) -> Result<Current, ScimError> {
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
            let page = self
                .runtime
                .read(&self.plugin, &self.call, &request)
                .await
                .map_err(ScimError::from_call)?;
            for native in &page.entities {
                match self.to_scim(kind, native) {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => {}
                    // One entity the transformation cannot handle must not hide all others.
                    Err(reason) => {
                        tracing::warn!(system = %self.system.id, %reason, "proxy read transformation failed for an entity")
                    }
                }
            }
            match page.next_cursor {
                Some(c) if !page.entities.is_empty() => request.cursor = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ScimError::backend(format!(
            "the backend did not finish paging after {MAX_PAGES} pages"
        )))
    }

    /// A list request on one kind: filter, sort, page, project.
    pub async fn list(&self, kind: EntityKind, q: &ListQuery) -> Result<Value, ScimError> {
        q.projection.validate(&self.served, &[kind], &self.extra)?;
        let mut found = match q.filter.as_ref().and_then(|f| self.shortcut(kind, f)) {
            // `id eq "x"`: one get instead of a full read.
            Some(Shortcut::Id(id)) => match self.get(kind, &id).await {
                Ok(r) => vec![r],
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
        Ok(self.page(found, q, |r| (r, kind)))
    }

    /// A full read narrowed by a native filter; when the backend refuses the filter (400, unsupported),
    /// the whole read without it (the host filters anyway).
    async fn read_filtered(&self, kind: EntityKind, native: String) -> Result<Vec<Value>, ScimError> {
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
    /// keeps every entity. `None` when that does not hold (the caller reads everything).
    async fn backend_page(&self, kind: EntityKind, q: &ListQuery) -> Result<Option<Value>, ScimError> {
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
            let page = self
                .runtime
                .read(&self.plugin, &self.call, &request)
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
            for native in &page.entities {
                match self.to_scim(kind, native) {
                    Ok(Some(r)) if (resources.len() as u64) < q.count => resources.push(r),
                    Ok(Some(_)) => {}
                    // Skipped or failed entities shift the window: only a full read pages correctly then.
                    _ => return Ok(None),
                }
            }
            match page.next_cursor {
                Some(c) if !page.entities.is_empty() => request.cursor = Some(c),
                _ => break,
            }
        }
        let Some(total) = total else { return Ok(None) };
        for r in &mut resources {
            q.projection.apply(r, &self.served, kind);
        }
        Ok(Some(ListResponse::page(resources, total, start).to_json()))
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

    fn page<T>(&self, found: Vec<T>, q: &ListQuery, split: impl Fn(T) -> (Value, EntityKind)) -> Value {
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
        ListResponse::page(resources, total as u64, q.start_index).to_json()
    }

    /// A filter the backend can narrow soundly: `id eq` becomes a get; an `eq` on an attribute the read
    /// transformation carries unchanged (`userName`, `displayName`, `externalId`, `emails.value`; see
    /// [`pushable`]) goes to the connector as a native filter — alone or as one side of an `and`. The host
    /// evaluates the full filter on the result anyway, so the pushdown only has to be a superset.
    fn shortcut(&self, kind: EntityKind, f: &Filter) -> Option<Shortcut> {
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
    fn native_eq(&self, kind: EntityKind, path: &filter::AttrPath, value: &str) -> Option<String> {
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

    fn write_context(&self, op: TransformOp, id: Option<&str>) -> Context<'_> {
        let mut ctx = Context::new(&self.system.spec.properties)
            .operation(op)
            .resolver(&SameIds);
        if let Some(id) = id {
            ctx = ctx
                .variable("entityIdTargetSystem", json!(id))
                .variable("entityIdSourceSystem", json!(id));
        }
        ctx
    }

    fn transform_write(
        &self,
        kind: EntityKind,
        op: TransformOp,
        id: Option<&str>,
        resource: &Value,
    ) -> Result<Value, ScimError> {
        match self.write.apply(kind.as_str(), resource, &self.write_context(op, id)) {
            Outcome::Transformed { output, .. } => Ok(output),
            Outcome::Skipped { reason, .. } => Err(ScimError::bad(
                "invalidValue",
                format!(
                    "the proxy's write transformation does not take this {}: {reason}",
                    kind.as_str()
                ),
            )),
            Outcome::Failed { reason, .. } => Err(ScimError::bad(
                "invalidValue",
                format!("the proxy's write transformation failed: {reason}"),
            )),
        }
    }

    /// The resource a write returned, or (for an empty answer or one without an id) a fresh read.
    async fn answer(&self, kind: EntityKind, native: Option<Value>, id: Option<&str>) -> Result<Value, ScimError> {
        if let Some(n) = native.filter(|n| n.get("id").and_then(id_text).is_some())
            && let Ok(Some(r)) = self.to_scim(kind, &n)
        {
            return Ok(r);
        }
        match id {
            Some(id) => self.get(kind, id).await,
            None => Err(ScimError::backend("the backend did not return the written entity")),
        }
    }

    /// POST: a new resource.
    pub async fn create(&self, kind: EntityKind, mut body: Value) -> Result<Value, ScimError> {
        clean_input(&mut body, kind)?;
        self.check_extensions(kind, &mut body)?;
        self.check_required(kind, &body)?;
        self.check_unique(kind, &body, None).await?;
        let native = self.transform_write(kind, TransformOp::Create, None, &body)?;
        let created = self
            .runtime
            .create(&self.plugin, &self.call, kind, &native)
            .await
            .map_err(ScimError::from_call)?;
        let id = created.get("id").and_then(id_text);
        self.answer(kind, Some(created), id.as_deref()).await
    }

    /// PUT: a full replacement; `if_match` is the client's `If-Match`.
    pub async fn replace(
        &self,
        kind: EntityKind,
        id: &str,
        mut body: Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        clean_input(&mut body, kind)?;
        self.check_extensions(kind, &mut body)?;
        self.check_required(kind, &body)?;
        let current = self.read(kind, id).await?;
        check_if_match(if_match, &current.resource)?;
        self.check_unique(kind, &body, Some(id)).await?;
        // The version the client matched is the backend's precondition too: a change in between is a 412,
        // not a silent overwrite. Without If-Match a PUT replaces whatever is there.
        let precondition = names_a_version(if_match).then_some(current.version).flatten();
        match self.write_replace(kind, id, body, precondition).await? {
            Written::Done(r) => Ok(r),
            Written::Stale(_) => Err(ScimError::precondition(format!(
                "the {} changed while it was being replaced; read it again",
                kind.as_str()
            ))),
        }
    }

    /// Writes `body` over the resource; with `precondition` (the backend version the body was built from)
    /// the connector fails instead of overwriting a newer version, which is [`Written::Stale`].
    async fn write_replace(
        &self,
        kind: EntityKind,
        id: &str,
        mut body: Value,
        precondition: Option<Value>,
    ) -> Result<Written, ScimError> {
        if let Some(o) = body.as_object_mut() {
            o.insert("id".into(), json!(id));
        }
        let mut native = self.transform_write(kind, TransformOp::Update, Some(id), &body)?;
        if let (Some(version), Some(meta)) = (&precondition, native.as_object_mut().and_then(meta_of)) {
            meta.insert("version".into(), version.clone());
        }
        let written = match self.runtime.replace(&self.plugin, &self.call, kind, id, &native).await {
            Ok(w) => w,
            // A conflict is a uniqueness clash or a stale version: the backend's version now tells which.
            Err(
                e
                @ CallError::Connector(ConnectorError::Conflict { .. } | ConnectorError::Rejected { status: 412, .. }),
            ) if precondition.is_some() => {
                let now = self.read(kind, id).await?;
                if now.version != precondition {
                    return Ok(Written::Stale(now));
                }
                return Err(ScimError::from_call(e));
            }
            Err(e) => return Err(ScimError::from_call(e)),
        };
        self.answer(kind, Some(written), Some(id)).await.map(Written::Done)
    }

    /// PATCH: the connector's own patch when the write transformation has `patchEntity` mappings for it
    /// (SAP's model) and the connector supports it; otherwise the host applies the operations to the
    /// current resource and replaces it. Either way the answer is 200 with the full resource.
    pub async fn patch(
        &self,
        kind: EntityKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let mut ops = PatchOp::parse_request(body)?;
        self.check_patch_extensions(kind, &mut ops)?;
        let mut current = self.read(kind, id).await?;
        for _ in 0..PATCH_ATTEMPTS {
            check_if_match(if_match, &current.resource)?;
            // Applied in the host first in any case: it validates paths, mutability and values.
            let mut patched = current.resource.clone();
            ops.apply_with(&mut patched, &self.rules(kind))?;
            if self.supports(Operation::Patch) {
                let doc = match self
                    .write
                    .apply(kind.as_str(), body, &self.write_context(TransformOp::Patch, Some(id)))
                {
                    Outcome::Transformed { output, .. } => Some(output),
                    _ => None,
                };
                if let Some(doc) = doc.filter(|d| get_ci(d, "Operations").is_some()) {
                    let result = self
                        .runtime
                        .patch(&self.plugin, &self.call, kind, id, &doc)
                        .await
                        .map_err(ScimError::from_call)?;
                    return self.answer(kind, result, Some(id)).await;
                }
            }
            if patched == current.resource {
                return Ok(current.resource);
            }
            clean_input(&mut patched, kind)?;
            self.check_required(kind, &patched)?;
            self.check_unique(kind, &patched, Some(id)).await?;
            // Written over the version it was built from: a change made meanwhile is never lost.
            match self.write_replace(kind, id, patched, current.version).await? {
                Written::Done(r) => return Ok(r),
                Written::Stale(_) if names_a_version(if_match) => {
                    return Err(ScimError::precondition(format!(
                        "the {} changed while it was being patched; read it again",
                        kind.as_str()
                    )));
                }
                // The operations apply to whatever is current: apply them again to the version now there.
                Written::Stale(now) => current = now,
            }
        }
        Err(ScimError::new(
            http::StatusCode::CONFLICT,
            None,
            format!(
                "the {} kept changing while the patch was applied ({PATCH_ATTEMPTS} attempts); try again",
                kind.as_str()
            ),
        ))
    }

    /// DELETE. A user's group memberships go with it (some backends keep dangling members).
    pub async fn delete(&self, kind: EntityKind, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        let current = self.get(kind, id).await?;
        check_if_match(if_match, &current)?;
        self.runtime
            .delete(&self.plugin, &self.call, kind, id)
            .await
            .map_err(ScimError::from_call)?;
        if kind == EntityKind::User && self.serves(EntityKind::Group) {
            self.drop_memberships(id).await;
        }
        Ok(())
    }

    async fn drop_memberships(&self, user_id: &str) {
        let groups = match self.read_all(EntityKind::Group, None).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(system = %self.system.id, error = %e, "cannot check the deleted user's memberships");
                return;
            }
        };
        for g in groups {
            let member = g.get("members").and_then(Value::as_array).is_some_and(|m| {
                m.iter()
                    .any(|m| m.get("value").and_then(Value::as_str) == Some(user_id))
            });
            let Some(gid) = g.get("id").and_then(id_text).filter(|_| member) else {
                continue;
            };
            let body = json!({"schemas": [provisio_scim::PATCH_OP], "Operations": [
                {"op": "remove", "path": format!("members[value eq {}]", json!(user_id))}
            ]});
            if let Err(e) = self.patch(EntityKind::Group, &gid, &body, None).await {
                tracing::warn!(system = %self.system.id, group = %gid, error = %e, "cannot remove a deleted user from a group");
            }
        }
    }

    /// Schema URIs this proxy does not serve, in a written resource: dropped from `schemas` (Entra's Create
    /// Group names one of Microsoft's, `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group`,
    /// with no attributes under it), and so are empty objects under such a URN. An object with attributes
    /// under one is refused (400 `invalidValue`): the backend does not keep that extension, and a success
    /// would lose the values.
    fn check_extensions(&self, kind: EntityKind, body: &mut Value) -> Result<(), ScimError> {
        let Some(obj) = body.as_object_mut() else {
            return Ok(());
        };
        let unserved: Vec<String> = obj
            .keys()
            .filter(|k| is_urn(k) && self.served.known_urn(kind, k).is_none())
            .cloned()
            .collect();
        for urn in unserved {
            if obj.get(&urn).is_some_and(has_content) {
                return Err(not_served(&urn));
            }
            obj.shift_remove(&urn);
        }
        if let Some(schemas) = obj.get_mut("schemas").and_then(Value::as_array_mut) {
            schemas.retain(|u| u.as_str().is_none_or(|u| self.served.known_urn(kind, u).is_some()));
            if schemas.is_empty() {
                schemas.push(json!(schema::core_urn(kind)));
            }
        }
        Ok(())
    }

    /// [`Proxy::check_extensions`] for PATCH operations: a path into an extension not served is refused,
    /// and so is a path-less value carrying one; empty ones are dropped from the value.
    fn check_patch_extensions(&self, kind: EntityKind, ops: &mut PatchOp) -> Result<(), ScimError> {
        for op in &mut ops.operations {
            match (&op.path, &mut op.value) {
                (Some(path), _) => {
                    let path = path.trim();
                    let served = std::iter::once(schema::core_urn(kind))
                        .chain(self.served.extensions(kind))
                        .any(|u| {
                            path.eq_ignore_ascii_case(u)
                                || (path.get(..u.len()).is_some_and(|h| h.eq_ignore_ascii_case(u))
                                    && path.get(u.len()..).is_some_and(|t| t.starts_with(':')))
                        });
                    if is_urn(path) && !served {
                        return Err(not_served(path));
                    }
                }
                (None, Some(value @ Value::Object(_))) => self.check_extensions(kind, value)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn check_required(&self, kind: EntityKind, body: &Value) -> Result<(), ScimError> {
        let name = unique_attribute(kind);
        match get_ci(body, name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
            _ => Err(ScimError::bad("invalidValue", format!("{name} is required"))),
        }
    }

    /// 409 when another resource has the same `userName` (users) or `displayName` (groups), ignoring case.
    async fn check_unique(&self, kind: EntityKind, body: &Value, own_id: Option<&str>) -> Result<(), ScimError> {
        let name = unique_attribute(kind);
        let Some(wanted) = get_ci(body, name).and_then(Value::as_str) else {
            return Ok(());
        };
        let path = filter::AttrPath {
            urn: None,
            name: name.to_string(),
            sub: None,
            index: None,
        };
        let all = match self.native_eq(kind, &path, wanted) {
            Some(native) => self.read_filtered(kind, native).await?,
            None => self.read_all(kind, None).await?,
        };
        let taken = all.iter().any(|r| {
            get_ci(r, name)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase() == wanted.to_lowercase())
                && r.get("id").and_then(id_text).as_deref() != own_id
        });
        if taken {
            return Err(ScimError::uniqueness(format!(
                "a {} with {name} {wanted:?} exists",
                kind.as_str()
            )));
        }
        Ok(())
    }
}

enum Shortcut {
    Id(String),
    Prefilter(String),
}

/// Complex attributes (top-level names) with the names of their declared sub-attributes.
type ComplexAttributes = Vec<(String, Vec<String>)>;

/// The complex attributes of a kind (core schema first, then extensions; top-level names) with the names of
/// their declared sub-attributes.
fn complex_attributes(served: &Served, kind: EntityKind) -> ComplexAttributes {
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
fn pushable(read: &Value) -> Vec<(EntityKind, &'static str)> {
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

fn carried_unchanged(read: &Value, kind: EntityKind, attr: &str) -> bool {
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

fn unique_attribute(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => "userName",
        EntityKind::Group => "displayName",
    }
}

/// Characters an id keeps as they are in a URL path segment: RFC 3986 unreserved. Everything else —
/// `/`, `?`, `#`, `%`, spaces, non-ASCII — is percent-encoded, so a backend's id cannot end the path, start
/// a query or fragment, or climb out of the proxy's path.
pub const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL of a resource: `{base}/{endpoint}/{id}` with the id percent-encoded as one path segment (axum's
/// `Path` decodes it back on the way in). `None` for `.` and `..`: URL parsers treat them — and their
/// encodings `%2E`, `%2E%2E` — as dot segments, so no URL can address such an id.
pub fn resource_url(base: &str, endpoint: &str, id: &str) -> Option<String> {
    if matches!(id, "." | "..") {
        return None;
    }
    Some(format!(
        "{base}/{endpoint}/{}",
        percent_encoding::utf8_percent_encode(id, SEGMENT)
    ))
}

/// Whether a key is a schema URN (an extension object's key).
fn is_urn(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Whether a value sets anything (not null, not an empty object).
fn has_content(v: &Value) -> bool {
    !(v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty))
}

/// 400 for a write into a schema extension the proxy does not serve.
fn not_served(what: &str) -> ScimError {
    ScimError::bad(
        "invalidValue",
        format!(
            "{what}: this system does not serve that schema extension (see /Schemas and /ResourceTypes; its backend does not declare it), so the value would be lost"
        ),
    )
}

/// The URL of a schema or resource type: its id (`User`, or a URN, which a backend may declare) percent-encoded as one
/// path segment like [`resource_url`], but with `:` kept — it is allowed in a path segment, and clients know
/// `…/Schemas/urn:ietf:params:scim:schemas:core:2.0:User` so.
pub fn discovery_url(base: &str, endpoint: &str, id: &str) -> String {
    const URN_SEGMENT: &percent_encoding::AsciiSet = &SEGMENT.remove(b':');
    format!(
        "{base}/{endpoint}/{}",
        percent_encoding::utf8_percent_encode(id, URN_SEGMENT)
    )
}

/// An id as text (backends may use numbers).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Drops what a client may not set (`id`, `meta`, read-only `groups` of a user) and checks the shape.
fn clean_input(body: &mut Value, kind: EntityKind) -> Result<(), ScimError> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body must be a JSON object"))?;
    for key in ["id", "meta"] {
        provisio_scim::patch::remove_ci(obj, key);
    }
    if kind == EntityKind::User {
        provisio_scim::patch::remove_ci(obj, "groups");
    }
    if !obj.contains_key("schemas") {
        obj.insert("schemas".into(), json!([schema::core_urn(kind)]));
    }
    Ok(())
}

/// A resource as read, with the backend's own `meta.version` (a write's precondition) when it has one.
struct Current {
    resource: Value,
    version: Option<Value>,
}

/// How a versioned write ended.
enum Written {
    /// Written; the resource as it is now.
    Done(Value),
    /// Not written: the backend's version moved past the one the write was built from; the resource as it
    /// is now.
    Stale(Current),
}

/// A resource's `meta` object, made one if it is missing or not an object (always `Some`).
fn meta_of(resource: &mut serde_json::Map<String, Value>) -> Option<&mut serde_json::Map<String, Value>> {
    let meta = resource.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

/// How often a read-modify-write PATCH re-reads and re-applies its operations when the resource changes
/// between its read and its write.
const PATCH_ATTEMPTS: usize = 3;

/// Whether an `If-Match` names versions (rather than `*` or nothing).
fn names_a_version(if_match: Option<&str>) -> bool {
    if_match.map(str::trim).is_some_and(|h| !h.is_empty() && h != "*")
}

/// The ETag of a resource: its backend version when it has one, else a digest of its content.
pub fn etag(resource: &Value) -> String {
    match resource.pointer("/meta/version") {
        Some(Value::String(s)) if s.starts_with("W/\"") || s.starts_with('"') => s.clone(),
        Some(Value::String(s)) if !s.is_empty() => format!("W/\"{s}\""),
        Some(Value::Number(n)) => format!("W/\"{n}\""),
        _ => {
            let mut copy = resource.clone();
            if let Some(o) = copy.as_object_mut() {
                o.shift_remove("meta");
            }
            let digest = Sha256::digest(copy.to_string().as_bytes());
            format!("W/\"{}\"", hex::encode(&digest[..8]))
        }
    }
}

/// `If-Match`: `*`, or one of the listed tags equals the current one (weak comparison).
pub fn check_if_match(header: Option<&str>, current: &Value) -> Result<(), ScimError> {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    if header == "*" {
        return Ok(());
    }
    let strip = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_string();
    let now = strip(&etag(current));
    if header.split(',').any(|t| strip(t) == now) {
        Ok(())
    } else {
        Err(ScimError::precondition(format!(
            "the resource changed: its version is {}, the request expected {header}",
            etag(current)
        )))
    }
}

/// Top-level attributes the read transformation writes outside the served schemas.
fn extra_attributes(read: &Value, served: &Served) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kind in [EntityKind::User, EntityKind::Group] {
        let Some(mappings) = read
            .get(kind.as_str())
            .and_then(|e| e.get("mappings"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for m in mappings {
            let Some(p) = m.get("targetPath").and_then(Value::as_str) else {
                continue;
            };
            let Some(name) = p.strip_prefix("$.").map(|r| r.split(['.', '[']).next().unwrap_or("")) else {
                continue;
            };
            let path = filter::AttrPath::parse(name);
            let known = path.as_ref().is_ok_and(|p| served.definition(kind, p).is_some());
            if !name.is_empty() && !known && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Variables a transformation test of a proxy read needs (for the CLI and docs).
pub fn read_variables(base: &str, kind: EntityKind) -> BTreeMap<String, Value> {
    BTreeMap::from([(
        "entityBaseLocation".to_string(),
        json!(format!("{base}/{}/", schema::type_name(kind).1)),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(etag(&json!({"meta": {"version": 3}})), "W/\"3\"");
        assert_eq!(etag(&json!({"meta": {"version": "W/\"1\""}})), "W/\"1\"");
        let a = etag(&json!({"id": "1", "userName": "a"}));
        assert_ne!(a, etag(&json!({"id": "1", "userName": "b"})));
        let current = json!({"meta": {"version": "W/\"4\""}});
        assert!(check_if_match(Some("*"), &current).is_ok());
        assert!(check_if_match(Some("W/\"4\""), &current).is_ok());
        assert!(check_if_match(Some("\"4\""), &current).is_ok());
        assert!(check_if_match(Some("W/\"1\", W/\"4\""), &current).is_ok());
        assert_eq!(
            check_if_match(Some("W/\"3\""), &current).map_err(|e| e.status),
            Err(http::StatusCode::PRECONDITION_FAILED)
        );
        assert!(check_if_match(None, &current).is_ok());
    }

    #[test]
    fn ids_are_one_encoded_path_segment() {
        let base = "http://h/ipsproxy/api/v1/scim/s1";
        let url = |id: &str| resource_url(base, "Users", id);
        assert_eq!(
            url("a.b-c_d~9").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/a.b-c_d~9")
        );
        assert_eq!(
            url("victim?x=1").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/victim%3Fx%3D1")
        );
        assert_eq!(
            url("../x").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/..%2Fx")
        );
        assert_eq!(
            url("a#b%c d").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/a%23b%25c%20d")
        );
        assert_eq!(
            url("é").as_deref(),
            Some("http://h/ipsproxy/api/v1/scim/s1/Users/%C3%A9")
        );
        assert_eq!(url(".."), None);
        assert_eq!(url("."), None);
    }

    #[test]
    fn pushable_only_when_copied_unchanged() {
        let pass = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                          "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        assert_eq!(pushable(&pass).len(), 6);
        let read = json!({"user": {"mappings": [
            {"sourcePath": "$.userName", "targetPath": "$.userName"},
            {"sourcePath": "$.emails", "targetPath": "$.emails"},
            // A function changes the value: not pushable.
            {"sourcePath": "$.externalId", "targetPath": "$.externalId", "functions": [{"type": "toUpperCase"}]},
            // An element filter picks one e-mail, and a second mapping writes the same target: not pushable.
            {"sourcePath": "$.displayName", "targetPath": "$.displayName"},
            {"sourcePath": "$.name.formatted", "targetPath": "$.displayName", "optional": true}
        ]}, "group": {"mappings": [
            {"sourcePath": "$.name", "targetPath": "$.displayName"},
            {"sourceVariable": "x", "targetPath": "$.externalId"}
        ]}});
        assert_eq!(
            pushable(&read),
            vec![(EntityKind::User, "userName"), (EntityKind::User, "emails.value")]
        );
        let filtered = json!({"user": {"mappings": [
            {"sourcePath": "$.emails[?(@.primary == true)]", "targetPath": "$.emails"}
        ]}});
        assert!(pushable(&filtered).is_empty());
    }
}
