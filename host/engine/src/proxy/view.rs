//! A proxy system resolved for serving: its system, plugin and call target, its read and write
//! transformations, the schemas it serves and what can be pushed down to the backend; cached per system
//! until the system or its plugin changes.

use super::*;

/// Proxy defaults for connectors whose descriptor carries only their source/target defaults (components
/// built for contract 0.1.0, which cannot declare proxy defaults): SAP's for xsuaa; for scim a pass-through write (a proxy's ids are the backend's, so the target default's
/// `resolveEntityIds` and member rewriting would only lose `$ref`, `display` and `type`).
pub(super) fn proxy_default(connector: &str, direction: &str) -> Option<&'static str> {
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
pub(super) fn backend_limits(connector: &str) -> schema::Limits {
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
pub(super) struct SameIds;

impl EntityIdResolver for SameIds {
    fn resolve(&self, _: &str, id: &str, _: Option<&str>, _: Option<&str>) -> Option<String> {
        Some(id.to_string())
    }
}

/// What the proxy endpoints share across requests: the resolved view of each proxy system (so that a
/// request neither reads the system nor decrypts its secrets nor parses its transformations again) and the
/// per-client limits.
pub struct ProxyState {
    pub(super) views: ByGeneration<View>,
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
    pub(super) plugin: Arc<LoadedPlugin>,
    pub(super) call: CallTarget,
    pub(super) runtime: Arc<Runtime>,
    pub(super) read: Transformation,
    pub(super) write: Transformation,
    /// The schemas it serves.
    pub served: Served,
    /// Top-level attributes the read transformation writes that no served schema defines (`origin`, …).
    pub extra: Vec<String>,
    /// Attributes an `eq` filter on which goes to the backend as a native filter (see [`pushable`]).
    pub(super) pushable: Vec<(EntityKind, &'static str)>,
    /// Per kind, the served complex attributes and their declared sub-attributes (for `drop_undeclared`,
    /// which runs on every entity served).
    pub(super) sub_attributes: Vec<(EntityKind, ComplexAttributes)>,
    /// Whether the connector's read cursors are 1-based start indexes (learnt from a first page), so that a
    /// page at any `startIndex` can be asked for directly: 0 unknown, 1 yes, 2 no.
    pub(super) index_cursors: std::sync::atomic::AtomicU8,
    /// When what the backend declared about itself is to be asked again (`None`: never, nothing was asked).
    pub(super) rediscover_at: Option<std::time::Instant>,
    /// What backend entities' texts became through the read transformation (see [`super::memo`]).
    pub(super) memo: super::memo::ReadMemo,
}

/// How long what a SCIM backend declared (its schema extensions) is trusted before it is asked again.
pub(super) const DISCOVERY_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How soon a backend that did not answer its discovery is asked again.
pub(super) const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// One proxy system, for one request: the shared [`View`] and the base URL the client used.
pub struct Proxy {
    pub(super) view: Arc<View>,
    /// `…/scim/{systemId}`, as the client reached it.
    pub base: String,
    /// The client's place among its requests in flight, given back when the request ends.
    pub(super) _admitted: Option<limit::Admitted>,
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
        let generation = state.stores.systems.generation();
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
        // Boxed: loading is rare and its future large; this one is part of every proxy request's.
        let view = Arc::new(Box::pin(View::load(state, id)).await?);
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
    pub(super) async fn load(state: &Engine, id: &str) -> Result<View, ScimError> {
        let missing = || ScimError::not_found(format!("no proxy system with id {id}"));
        let system = state.systems.get(id).await.map_err(|_| missing())?;
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
        let memoised = served
            .kinds
            .iter()
            .copied()
            .filter(|k| read_doc.get(k.as_str()).is_none_or(crate::provisioning::memo::pure))
            .collect();
        Ok(View {
            memo: super::memo::ReadMemo::new(memoised),
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
