//! The sandboxed wasm runtime: one engine for the process, one compiled component and `InstancePre` per
//! plugin version, and a store and instance per call: fresh, or kept from the same system's last call when
//! that one ended cleanly (`warm`).
//!
//! A call runs under a memory cap, an epoch deadline (the guest yields to tokio every tick and is
//! interrupted at the deadline), a wall-clock timeout around the whole call (host calls included), and
//! caps on argument and result sizes. A trap or a limit breach fails that call with an error naming the
//! plugin, its version and the limit; the store is dropped, and nothing else is affected. Calls that burn CPU
//! finish at idle priority (`background`).
//!
//! Calls in flight are bounded globally and per system (`inflight`), so a slow system cannot take every
//! slot. Everything a guest hands the host is bounded (requests in `outbound`, results and descriptors
//! here), and a panic in the host during a call fails that call, counted, instead of the task serving it.

pub mod background;
pub mod bindings;
pub mod cache;
pub mod engine;
pub mod inflight;
pub mod state;
pub mod stats;
pub mod warm;
pub mod wasi;

mod call;
mod descriptor;
mod errors;
mod send;

use call::*;
pub use descriptor::describe_limits;
use descriptor::{validate_default_transformations, validate_descriptor};
pub use errors::{CallError, LoadError};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::connector::{ConnectorError, Descriptor, DescriptorExtensions, EntityKind, Page, PageRequest, PageTexts};
use crate::outbound::{HttpError, HttpRequest, HttpResponse, Outbound, Secrets, SystemEndpoint};
use bindings::{Bindings, Instance};
use state::CallState;
pub use stats::{DURATION_BUCKETS_MS, DurationBucket, Incident, PluginStats, StatsSnapshot};

/// A caller's word that an entity text is JSON it has seen before (e.g. in a memo of texts it parsed), so
/// that [`Runtime::read_texts`] and [`Runtime::get_text`] need not check it again; `|_| false` vouches for none.
pub type KnownText<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// How many buckets a version's call durations are counted in (the last one unbounded).
pub fn stats_buckets() -> usize {
    DURATION_BUCKETS_MS.len() + 1
}

/// Limits applied to every plugin call.
#[derive(Clone, Debug)]
pub struct CallLimits {
    /// Most linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock limit of one call, guest code and host calls together.
    pub timeout: Duration,
    /// Largest argument (entity JSON, patch, config) passed in.
    pub max_argument_bytes: usize,
    /// Largest result accepted back.
    pub max_result_bytes: usize,
    /// HTTP requests one call may make.
    pub max_requests_per_call: u32,
    /// Log lines one call may write; more are dropped.
    pub max_log_lines: u32,
    /// Guest stderr kept per call.
    pub max_stderr_bytes: usize,
    /// Guest execution a call gets at full speed; beyond it the call is throttled (see `throttle_pause`),
    /// so that a call burning CPU cannot starve the calls of well-behaved systems. Connector calls are
    /// I/O-bound and stay far below it.
    pub cpu_budget: Duration,
    /// How long a throttled call waits at each epoch tick (10 ms of execution): 30 ms caps a runaway call
    /// at a quarter of a core.
    pub throttle_pause: Duration,
    /// Bytes of requests (path, headers and bodies together) one call may send.
    pub max_request_bytes_per_call: usize,
    /// Calls running at once, all systems together (instances alive; sizes the instance pool).
    pub max_concurrent_calls: u32,
    /// Calls running at once for one system; more wait.
    pub max_calls_per_system: usize,
    /// Calls waiting for one system; beyond it a call fails at once (`system-busy`).
    pub max_waiting_per_system: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(120),
            max_argument_bytes: 16 << 20,
            max_result_bytes: 32 << 20,
            max_requests_per_call: 1000,
            max_log_lines: 200,
            max_stderr_bytes: 64 << 10,
            cpu_budget: Duration::from_millis(100),
            throttle_pause: Duration::from_millis(30),
            max_request_bytes_per_call: 64 << 20,
            max_concurrent_calls: 256,
            max_calls_per_system: 64,
            max_waiting_per_system: 256,
        }
    }
}

/// What an upload that is not WebAssembly at all is told (it lacks the `\0asm` magic bytes).
pub const NOT_WASM: &str = "the file is not WebAssembly (it does not start with the \\0asm magic bytes); upload the .wasm component that `cargo build --release --target wasm32-wasip2` wrote";

/// A compiled, validated plugin version, ready to instantiate.
pub struct LoadedPlugin {
    /// What the plugin declared.
    pub descriptor: Descriptor,
    /// What it declared beyond the 0.1.0 descriptor (contract 0.2.0 and later).
    pub extensions: DescriptorExtensions,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// The contract version it was built for.
    pub contract: &'static str,
    /// Size of the component in bytes.
    pub size: usize,
    /// How long compiling (or loading the precompiled artifact) took.
    pub load_time: Duration,
    /// Whether it came from the artifact cache.
    pub from_cache: bool,
    /// Calls, failures, traps, limit hits and time spent, since it was loaded.
    pub stats: PluginStats,
    bindings: Bindings,
    /// While `describe()` runs at load time: the plugin's name is not known yet, so the call is counted in
    /// `/metrics` by [`Runtime::load`] under the name it declares, not under the digest.
    describing: bool,
    /// `name@version`, built once: every call names its plugin in `/metrics`.
    label: String,
    /// Its call counters and time histogram in `/metrics`, looked up once.
    metrics: crate::metrics::PluginCalls,
}

impl LoadedPlugin {
    /// `name@version`.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// The connector's default transformation for a system role (`source`, `target`, `proxy`) and direction
    /// (`read`, `write`): a proxy's own default when the connector declares one (contract 0.2.0), else the
    /// source/target default of that direction.
    pub fn default_transformation(&self, proxy: bool, direction: &str) -> Option<&str> {
        let (own, proxied) = match direction {
            "read" => (
                &self.descriptor.default_read_transformation,
                &self.extensions.default_proxy_read_transformation,
            ),
            _ => (
                &self.descriptor.default_write_transformation,
                &self.extensions.default_proxy_write_transformation,
            ),
        };
        if proxy {
            proxied.as_deref().or(own.as_deref())
        } else {
            own.as_deref()
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.descriptor.name)
            .field("version", &self.descriptor.version)
            .field("digest", &self.digest)
            .field("contract", &self.contract)
            .finish()
    }
}

/// The system a call is for: what the guest is told, and where its requests may go.
#[derive(Clone, Debug)]
pub struct CallTarget {
    /// Non-secret properties, passed to the guest.
    pub properties: Vec<(String, String)>,
    /// The outbound endpoint, built from the stored configuration including secrets.
    pub endpoint: SystemEndpoint,
}

/// The engine, the linker and the shared capabilities.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: cache::ArtifactCache,
    outbound: Arc<Outbound>,
    limits: CallLimits,
    slots: Semaphore,
    systems: inflight::SystemGates,
    pooling: bool,
    warm: warm::WarmPool,
    background: background::Background,
    fresh_instances: AtomicU64,
    /// When a plugin version (digest) last trapped or hit a limit for a system: its calls for that system
    /// then start on the background pool for a while.
    probation: std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>,
}

/// How long after a trap or a limit hit a plugin version's calls for that system run at idle priority.
pub const PROBATION: Duration = Duration::from_secs(30);

impl Runtime {
    /// Creates the engine (pooling where possible), links the allowed imports and starts the epoch ticker.
    /// `cache_dir` holds precompiled artifacts.
    pub fn new(
        limits: CallLimits,
        outbound: Arc<Outbound>,
        cache_dir: Option<cap_std::fs::Dir>,
    ) -> Result<Self, String> {
        let max_calls = limits.max_concurrent_calls.max(1);
        let (engine, pooling) = engine::build(max_calls + warm::CAPACITY as u32, limits.memory_bytes)?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(|e| format!("cannot link WASI: {e}"))?;
        bindings::v0_1_0::add_to_linker(&mut linker).map_err(|e| format!("cannot link the host interface: {e}"))?;
        bindings::v0_2_0::add_to_linker(&mut linker)
            .map_err(|e| format!("cannot link the host interface 0.2.0: {e}"))?;
        bindings::v0_3_0::add_to_linker(&mut linker)
            .map_err(|e| format!("cannot link the host interface 0.3.0: {e}"))?;
        bindings::v0_4_0::add_to_linker(&mut linker)
            .map_err(|e| format!("cannot link the host interface 0.4.0: {e}"))?;
        engine::start_epoch_ticker(&engine);
        let cache = cache::ArtifactCache::new(&engine, cache_dir);
        let systems = inflight::SystemGates::new(limits.max_calls_per_system, limits.max_waiting_per_system);
        Ok(Runtime {
            engine,
            linker,
            cache,
            outbound,
            limits,
            slots: Semaphore::new(max_calls as usize),
            systems,
            pooling,
            warm: warm::WarmPool::default(),
            background: background::Background::default(),
            fresh_instances: AtomicU64::new(0),
            probation: Default::default(),
        })
    }

    /// The outbound capability connectors' requests go through (the proxy asks SCIM backends for their
    /// discovery documents through it, with the system's endpoint).
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Validates, compiles (or loads from the cache) and describes a component. Compilation runs on a
    /// blocking thread.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(&wasm));
        let size = wasm.len();
        let (component, from_cache) = match self.cache.load(&self.engine, &digest) {
            Some(c) => (c, true),
            None => {
                let engine = self.engine.clone();
                let component = tokio::task::spawn_blocking(move || {
                    // Not WebAssembly at all (a text file, an archive, random bytes): one line, not the
                    // parser's dump of the bytes it found.
                    if !wasm.starts_with(b"\0asm") {
                        return Err(LoadError::Invalid(NOT_WASM.into()));
                    }
                    // Parse fully first: wasmtime expects a valid component.
                    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
                        .validate_all(&wasm)
                        .map_err(|e| LoadError::Invalid(e.to_string()))?;
                    if !wasmparser::Parser::is_component(&wasm) {
                        return Err(LoadError::Invalid(
                            "this is a core module, not a component; build with --target wasm32-wasip2".into(),
                        ));
                    }
                    Component::new(&engine, &wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))
                })
                .await
                .map_err(|e| LoadError::Invalid(format!("compilation failed: {e}")))??;
                self.cache.store(&digest, &component);
                (component, false)
            }
        };
        let contract = self.contract_of(&component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::ForbiddenImport(format!("{e:#}")))?;
        let bindings = match contract {
            bindings::v0_1_0::VERSION => Bindings::V0_1_0(
                bindings::v0_1_0::PluginPre::new(pre).map_err(|e| LoadError::NotAConnector(format!("{e:#}")))?,
            ),
            bindings::v0_2_0::VERSION => Bindings::V0_2_0(
                bindings::v0_2_0::PluginPre::new(pre).map_err(|e| LoadError::NotAConnector(format!("{e:#}")))?,
            ),
            bindings::v0_3_0::VERSION => Bindings::V0_3_0(
                bindings::v0_3_0::PluginPre::new(pre).map_err(|e| LoadError::NotAConnector(format!("{e:#}")))?,
            ),
            bindings::v0_4_0::VERSION => Bindings::V0_4_0(
                bindings::v0_4_0::PluginPre::new(pre).map_err(|e| LoadError::NotAConnector(format!("{e:#}")))?,
            ),
            other => {
                return Err(LoadError::UnsupportedContract {
                    found: other.to_string(),
                    supported: bindings::SUPPORTED.join(", "),
                });
            }
        };
        let name = format!("upload-{}", &digest[..12]);
        let mut plugin = LoadedPlugin {
            label: format!("{name}@unknown"),
            // Until describe() answers, the plugin is known by its digest.
            descriptor: Descriptor {
                name,
                version: "unknown".into(),
                entity_kinds: vec![],
                operations: vec![],
                properties: vec![],
                default_read_transformation: None,
                default_write_transformation: None,
            },
            extensions: DescriptorExtensions::default(),
            digest: digest.clone(),
            contract,
            size,
            load_time: Duration::ZERO,
            from_cache,
            stats: PluginStats::default(),
            bindings,
            describing: true,
            metrics: Default::default(),
        };
        let describing = Instant::now();
        let described = self.invoke(&plugin, None, Request::Describe).await;
        let (descriptor, extensions) = match described {
            Ok(Response::Describe(d, x)) => (d, x),
            Ok(_) => {
                crate::metrics::plugin_call(&plugin.label, "connector-error", describing.elapsed());
                return Err(LoadError::Describe("internal error: mismatched response kind".into()));
            }
            Err(e) => {
                crate::metrics::plugin_call(&plugin.label, e.kind(), describing.elapsed());
                return Err(LoadError::Describe(e.to_string()));
            }
        };
        // Counted under the name and version it declares (not `upload-<digest>@unknown`).
        plugin.label = format!("{}@{}", descriptor.name, descriptor.version);
        crate::metrics::plugin_call(&plugin.label, "ok", describing.elapsed());
        plugin.describing = false;
        validate_descriptor(&descriptor, &extensions).map_err(LoadError::Describe)?;
        validate_default_transformations(&descriptor, &extensions)?;
        plugin.descriptor = descriptor;
        plugin.extensions = extensions;
        // describe() at load time is not a call anybody made: the counters start at zero.
        plugin.stats = PluginStats::default();
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }

    /// Reads the contract version from the component's exports.
    fn contract_of(&self, component: &Component) -> Result<&'static str, LoadError> {
        let ty = component.component_type();
        let exported: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let connector = exported
            .iter()
            .find_map(|name| {
                name.strip_prefix(bindings::CONNECTOR_INTERFACE)
                    .map(|rest| rest.trim_start_matches('@'))
            })
            .ok_or_else(|| {
                LoadError::NotAConnector(format!(
                    "it does not export {} (it exports: {})",
                    bindings::CONNECTOR_INTERFACE,
                    if exported.is_empty() {
                        "nothing".to_string()
                    } else {
                        exported.join(", ")
                    }
                ))
            })?;
        bindings::SUPPORTED
            .iter()
            .copied()
            .find(|v| *v == connector)
            .ok_or_else(|| LoadError::UnsupportedContract {
                found: if connector.is_empty() {
                    "(unversioned)".into()
                } else {
                    connector.to_string()
                },
                supported: bindings::SUPPORTED.join(", "),
            })
    }

    /// `describe()`, in a store without a system.
    pub async fn describe(&self, plugin: &LoadedPlugin) -> Result<Descriptor, CallError> {
        self.invoke(plugin, None, Request::Describe).await.map(|r| match r {
            Response::Describe(d, _) => Ok(d),
            _ => wrong_response(),
        })?
    }

    /// `test-connection`.
    pub async fn test_connection(&self, plugin: &LoadedPlugin, target: &CallTarget) -> Result<String, CallError> {
        match self.invoke(plugin, Some(target), Request::TestConnection).await? {
            Response::Text(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `read`: one page.
    pub async fn read(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        request: &PageRequest,
    ) -> Result<Page, CallError> {
        match self
            .invoke(plugin, Some(target), Request::Read(request.clone()))
            .await?
        {
            Response::Page(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `read`, with the page's entities left as the JSON texts the connector returned (scrubbed of the
    /// credentials the call attached, within the limits on size and page size, checked to be JSON but not
    /// parsed). `known` vouches for texts the caller has seen valid before (its memo), which are not checked
    /// again; a text that is not JSON fails the call as `invalid-result`, counted so.
    pub async fn read_texts(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        request: &PageRequest,
        known: KnownText<'_>,
    ) -> Result<PageTexts, CallError> {
        match self
            .call(plugin, Some(target), Request::Read(request.clone()), Some(known))
            .await?
        {
            Response::PageTexts(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `get`.
    pub async fn get(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        id: &str,
    ) -> Result<serde_json::Value, CallError> {
        match self
            .invoke(plugin, Some(target), Request::Get(kind, id.to_string()))
            .await?
        {
            Response::Entity(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `get`, with the entity left as the JSON text the connector returned (scrubbed of the credentials the
    /// call attached, within the limit on size, checked as [`Runtime::read_texts`] checks, not parsed).
    pub async fn get_text(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        id: &str,
        known: KnownText<'_>,
    ) -> Result<String, CallError> {
        match self
            .call(plugin, Some(target), Request::Get(kind, id.to_string()), Some(known))
            .await?
        {
            Response::EntityText(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `create`.
    pub async fn create(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        entity: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        match self
            .invoke(plugin, Some(target), Request::Create(kind, crate::json::text(entity)))
            .await?
        {
            Response::Entity(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `replace`.
    pub async fn replace(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        id: &str,
        entity: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        match self
            .invoke(
                plugin,
                Some(target),
                Request::Replace(kind, id.to_string(), crate::json::text(entity)),
            )
            .await?
        {
            Response::Entity(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `patch` with an RFC 7644 PatchOp document.
    pub async fn patch(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        id: &str,
        operations: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, CallError> {
        match self
            .invoke(
                plugin,
                Some(target),
                Request::Patch(kind, id.to_string(), crate::json::text(operations)),
            )
            .await?
        {
            Response::MaybeEntity(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// `delete`. A connector's `not-found` is success: the entity is gone either way.
    pub async fn delete(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        id: &str,
    ) -> Result<(), CallError> {
        match self
            .invoke(plugin, Some(target), Request::Delete(kind, id.to_string()))
            .await?
        {
            Response::Unit(Err(ConnectorError::NotFound { .. })) => Ok(()),
            Response::Unit(r) => r.map_err(CallError::from),
            _ => wrong_response(),
        }
    }

    /// A fresh store for one plugin's calls: the memory cap and the epoch callback that enforces the
    /// deadline and the CPU budget.
    fn new_store(&self, label: String, endpoint: Option<SystemEndpoint>) -> Store<CallState> {
        let state = CallState::new(&self.limits, self.outbound.clone(), endpoint, label);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // One callback per epoch tick of guest execution: stop at the deadline, yield to tokio at every
        // tick, and once the call has used its CPU budget, move it to the background pool and pause at
        // every tick (a fair share for the rest).
        let budget_ticks = (self.limits.cpu_budget.as_millis() / engine::EPOCH_TICK.as_millis().max(1)) as u32;
        let pause = self.limits.throttle_pause;
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.deadline_hit = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            // A tick during which the guest waited on a request is not CPU it burnt, and the task has just
            // been scheduled again: yielding once more would only add a trip through the run queue to the
            // call's latency (half the calls to a backend taking 5 ms saw one).
            if std::mem::take(&mut state.waited) {
                return Ok(UpdateDeadline::Continue(1));
            }
            state.ticks += 1;
            if state.ticks > budget_ticks {
                state.throttled = true;
                state.demoted.store(true, Ordering::Relaxed);
                if !pause.is_zero() {
                    return Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause))));
                }
            }
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        store
    }

    /// Runs one call under the limits: in the instance kept from the system's last call when there is one
    /// (see [`warm`]), else in a fresh store and instance. A call that uses its CPU budget, or any call of a
    /// plugin version that trapped or hit a limit for the same system recently, finishes on the background pool.
    async fn invoke(
        &self,
        plugin: &LoadedPlugin,
        target: Option<&CallTarget>,
        request: Request,
    ) -> Result<Response, CallError> {
        self.call(plugin, target, request, None).await
    }

    /// [`Runtime::invoke`], leaving the entities of a page or of a `get` as (checked) texts when `texts`
    /// says so.
    async fn call(
        &self,
        plugin: &LoadedPlugin,
        target: Option<&CallTarget>,
        request: Request,
        texts: Option<KnownText<'_>>,
    ) -> Result<Response, CallError> {
        let label = plugin.label.as_str();
        let started = Instant::now();
        let argument_size =
            request.size() + target.map_or(0, |t| t.properties.iter().map(|(k, v)| k.len() + v.len()).sum());
        if argument_size > self.limits.max_argument_bytes {
            let error = CallError::ArgumentTooLarge {
                plugin: label.to_string(),
                size: argument_size,
                limit: self.limits.max_argument_bytes,
            };
            return self.not_run(plugin, label, target, error, started);
        }
        // A page may hold at most the entities asked for (`page-size`, at least 1).
        let max_entities = match &request {
            Request::Read(r) => Some(r.page_size.max(1) as usize),
            _ => None,
        };
        // The system's own bound first: calls of a slow system wait here, not for a global slot.
        let _system_slot = match target {
            Some(t) => match self.systems.enter(&t.endpoint.system_id).await {
                Ok(permit) => Some(permit),
                Err(busy) => {
                    let error = CallError::SystemBusy {
                        plugin: label.to_string(),
                        system: t.endpoint.system_id.clone(),
                        in_flight: busy.in_flight,
                        waiting: busy.waiting,
                    };
                    return self.not_run(plugin, label, target, error, started);
                }
            },
            None => None,
        };
        let _slot = self.slots.acquire().await.map_err(|e| CallError::Host {
            plugin: label.to_string(),
            message: e.to_string(),
        })?;
        // `describe` has no system: it always runs in a fresh instance. A kept instance brings its owner
        // along (the same system and properties as this call's), so nothing of the target is copied for it.
        let kept = target.and_then(|t| self.warm.take(&plugin.digest, &t.endpoint.system_id, &t.properties));
        let (mut store, instance, uses, owner) = match kept {
            Some(mut kept) => {
                kept.store.data_mut().begin_next_call(target.map(|t| &t.endpoint));
                (kept.store, Some(kept.instance), kept.uses, Some(kept.owner))
            }
            None => {
                self.fresh_instances.fetch_add(1, Ordering::Relaxed);
                let owner = target.map(|t| warm::Owner {
                    digest: plugin.digest.clone(),
                    system_id: t.endpoint.system_id.clone(),
                    properties: t.properties.clone(),
                });
                let store = self.new_store(label.to_string(), target.map(|t| t.endpoint.clone()));
                (store, None, 0, owner)
            }
        };
        store.set_epoch_deadline(1);
        let demoted = store.data().demoted.clone();
        let bindings = plugin.bindings.clone();
        let timeout = self.limits.timeout + Duration::from_millis(500);
        let probation = self.on_probation(&plugin.digest, owner.as_ref().map_or("", |o| o.system_id.as_str()));
        // The call may finish on the background pool, so it owns what it reads: the owner goes in with the
        // call and comes back with the store.
        let call = async move {
            let (system_id, properties) = owner
                .as_ref()
                .map_or(("", &[][..]), |o| (o.system_id.as_str(), o.properties.as_slice()));
            let outcome = tokio::time::timeout(
                timeout,
                run(&bindings, &mut store, instance, system_id, properties, request),
            )
            .await;
            (outcome, store, owner)
        };
        // A panic in the host while the call runs (in an import, in the bindings) fails this call: the
        // store it left half-done is dropped with the future.
        // Boxed here, before it is moved anywhere (see `background::drive`).
        let call = Box::pin(std::panic::AssertUnwindSafe(call).catch_unwind());
        let ran = if probation {
            demoted.store(true, Ordering::Relaxed);
            self.background.run(call).await
        } else {
            background::drive(call, &demoted, &self.background).await
        };
        let (outcome, store, owner) = match ran {
            Ok(Ok(ran)) => ran,
            Ok(Err(panic)) => {
                let error = CallError::HostPanic {
                    plugin: label.to_string(),
                    message: panic_message(panic.as_ref()),
                };
                return self.not_run(plugin, label, target, error, started);
            }
            Err(e) => {
                let error = CallError::Host {
                    plugin: label.to_string(),
                    message: e.to_string(),
                };
                return self.not_run(plugin, label, target, error, started);
            }
        };
        let mut instance = None;
        let outcome = outcome.map(|r| {
            r.map(|(response, kept)| {
                instance = Some(kept);
                response
            })
        });
        let result = Self::conclude(&self.limits, label, store.data(), outcome, max_entities, texts);
        let kind = match &result {
            Ok(
                Response::Text(Err(_))
                | Response::Page(Err(_))
                | Response::PageTexts(Err(_))
                | Response::Entity(Err(_))
                | Response::EntityText(Err(_))
                | Response::MaybeEntity(Err(_))
                | Response::Unit(Err(_)),
            ) => "connector-error",
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        let elapsed = started.elapsed();
        if !plugin.describing {
            plugin.metrics.record(label, kind, elapsed);
        }
        let state = store.data();
        if state.denied > 0 && !plugin.describing {
            crate::metrics::plugin_denied_requests(label, u64::from(state.denied));
        }
        plugin
            .stats
            .record(&result.as_ref().map(|_| kind), elapsed, Some(state));
        if let Err(e) = &result
            && Self::earns_probation(e)
        {
            self.put_on_probation(&plugin.digest, owner.as_ref().map_or("", |o| o.system_id.as_str()));
        }
        if let Err(e) = &result {
            tracing::warn!(plugin = %label, system = %state.endpoint.as_ref().map(|e| e.system_id.as_str()).unwrap_or(""), kind, error = %e, "plugin call failed");
        }
        // Only an instance that did nothing wrong serves the system's next call.
        let keep = result.is_ok()
            && state.ended_cleanly()
            && state.memory.used() <= warm::MAX_MEMORY
            && uses + 1 < warm::MAX_USES;
        match (owner, instance) {
            (Some(owner), Some(instance)) if keep => self.warm.put(warm::Warm::new(owner, store, instance, uses + 1)),
            // Resetting a runaway call's memory is work too: it happens on the background pool.
            _ if demoted.load(Ordering::Relaxed) => self.background.release(store),
            _ => drop(store),
        }
        result
    }

    /// Whether a failure puts the plugin version on probation for the system (its next calls start at idle
    /// priority).
    fn earns_probation(e: &CallError) -> bool {
        e.is_limit() || matches!(e, CallError::Trap { .. } | CallError::HostPanic { .. })
    }

    /// Ends a call that did not run to its end (refused before it started, or lost to a host panic) the way
    /// every call ends: counted in `/metrics` and the plugin's statistics, and logged.
    fn not_run(
        &self,
        plugin: &LoadedPlugin,
        label: &str,
        target: Option<&CallTarget>,
        error: CallError,
        started: Instant,
    ) -> Result<Response, CallError> {
        let elapsed = started.elapsed();
        let kind = error.kind();
        if !plugin.describing {
            plugin.metrics.record(label, kind, elapsed);
        }
        plugin.stats.record(&Err(&error), elapsed, None);
        let system = target.map_or("", |t| t.endpoint.system_id.as_str());
        if Self::earns_probation(&error) {
            self.put_on_probation(&plugin.digest, system);
        }
        tracing::warn!(plugin = %label, system, kind, error = %error, "plugin call failed");
        Err(error)
    }

    /// Whether the plugin version trapped or hit a limit for this system within the last [`PROBATION`].
    fn on_probation(&self, digest: &str, system_id: &str) -> bool {
        let probation = self.probation.lock().unwrap_or_else(|p| p.into_inner());
        // Almost always empty: no key is built for the lookup then.
        !probation.is_empty()
            && probation
                .get(&(digest.to_string(), system_id.to_string()))
                .is_some_and(|at| at.elapsed() < PROBATION)
    }

    fn put_on_probation(&self, digest: &str, system_id: &str) {
        let mut probation = self.probation.lock().unwrap_or_else(|p| p.into_inner());
        if probation.len() >= 4096 {
            probation.retain(|_, at| at.elapsed() < PROBATION);
        }
        probation.insert((digest.to_string(), system_id.to_string()), Instant::now());
    }

    /// Instances created so far (calls that found no kept instance of their system).
    pub fn fresh_instances(&self) -> u64 {
        self.fresh_instances.load(Ordering::Relaxed)
    }

    /// Drops the kept instances of a plugin version that is no longer used.
    pub fn forget(&self, plugin: &LoadedPlugin) {
        self.warm.forget(&plugin.digest);
    }

    /// Turns a call's outcome into its answer, naming the limit that stopped it, if one did.
    fn conclude(
        limits: &CallLimits,
        label: &str,
        state: &CallState,
        outcome: Result<wasmtime::Result<RawResponse>, tokio::time::error::Elapsed>,
        max_entities: Option<usize>,
        texts: Option<KnownText<'_>>,
    ) -> Result<Response, CallError> {
        match outcome {
            Err(_) => Err(CallError::Timeout {
                plugin: label.to_string(),
                limit: limits.timeout,
            }),
            Ok(Ok(mut response)) => {
                let size = response.size();
                if size > limits.max_result_bytes {
                    return Err(CallError::ResultTooLarge {
                        plugin: label.to_string(),
                        size,
                        limit: limits.max_result_bytes,
                    });
                }
                if let RawResponse::Invalid(message) = response {
                    return Err(CallError::InvalidResult {
                        plugin: label.to_string(),
                        message,
                    });
                }
                // Checked before parsing: parsed entities take several times their text in host memory.
                if let (Some(max), RawResponse::Page(Ok(page))) = (max_entities, &response)
                    && page.entities.len() > max
                {
                    return Err(CallError::InvalidResult {
                        plugin: label.to_string(),
                        message: format!(
                            "a page of {} entities, over the page size of {max} asked for (the limit: a page holds at most page-size entities)",
                            page.entities.len()
                        ),
                    });
                }
                response.scrub(&state.secrets, state.listed_scrubbed);
                response.parse(label, texts)
            }
            Ok(Err(trap)) => {
                if state.deadline_hit {
                    return Err(CallError::Timeout {
                        plugin: label.to_string(),
                        limit: limits.timeout,
                    });
                }
                if let Some(requested) = state.memory.hit {
                    return Err(CallError::MemoryLimit {
                        plugin: label.to_string(),
                        limit: limits.memory_bytes,
                        requested,
                    });
                }
                if trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow) {
                    return Err(CallError::StackOverflow {
                        plugin: label.to_string(),
                        limit: engine::MAX_WASM_STACK,
                    });
                }
                let mut stderr = state.stderr_text();
                state.secrets.scrub_string(&mut stderr);
                let message = if !stderr.is_empty() {
                    stderr
                } else if trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::MemoryOutOfBounds) {
                    // Rust guests keep their stack in linear memory: overflowing it ends here, not in the
                    // host's stack limit.
                    format!(
                        "{trap:#}: most often the guest's own stack (in its linear memory) overflowed, from deep recursion or large locals; else a bug in the guest"
                    )
                } else {
                    format!("{trap:#}")
                };
                Err(CallError::Trap {
                    plugin: label.to_string(),
                    message,
                })
            }
        }
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// `run` answers each request with its own response variant; anything else is a host bug, reported as one.
fn wrong_response<T>() -> Result<T, CallError> {
    Err(CallError::Host {
        plugin: String::new(),
        message: "internal error: mismatched response kind".into(),
    })
}
