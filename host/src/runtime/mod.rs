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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::connector::{ConnectorError, Descriptor, DescriptorExtensions, EntityKind, Page, PageRequest};
use crate::outbound::{HttpError, HttpRequest, HttpResponse, Outbound, Secrets, SystemEndpoint};
use bindings::{Bindings, Instance};
use state::CallState;
pub use stats::{Incident, PluginStats, StatsSnapshot};

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

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// A component, but not a Provisio connector.
    #[error("not a Provisio connector: {0}")]
    NotAConnector(String),
    /// Built against a contract version this host does not serve.
    #[error("the component was built for connector contract {found}; this host supports {supported}")]
    UnsupportedContract {
        /// The version the component exports.
        found: String,
        /// The versions this host serves.
        supported: String,
    },
    /// Imports something the host does not provide.
    #[error("the component imports something Provisio does not provide: {0}")]
    ForbiddenImport(String),
    /// `describe()` failed or answered nonsense.
    #[error("describe() failed: {0}")]
    Describe(String),
    /// A default transformation the connector declares does not parse.
    #[error("the connector's default {which} transformation is invalid: {message}")]
    Transformation {
        /// `read`, `write`, `proxy read` or `proxy write`.
        which: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connector answered with an error.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The guest trapped (a panic, an abort, an out-of-bounds access).
    #[error("plugin {plugin} trapped: {message}")]
    Trap {
        /// `name@version`.
        plugin: String,
        /// The panic message from stderr, or the trap.
        message: String,
    },
    /// The guest ran past its deadline.
    #[error("plugin {plugin} exceeded its time limit of {limit:?} and was stopped")]
    Timeout {
        /// `name@version`.
        plugin: String,
        /// The limit.
        limit: Duration,
    },
    /// The guest's call stack grew past the cap (runaway recursion).
    #[error("plugin {plugin} exceeded its stack limit of {limit} bytes (call stack exhausted) and was stopped")]
    StackOverflow {
        /// `name@version`.
        plugin: String,
        /// The cap.
        limit: usize,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("plugin {plugin} exceeded its memory limit of {limit} bytes (it asked for {requested}) and was stopped")]
    MemoryLimit {
        /// `name@version`.
        plugin: String,
        /// The cap.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// An argument was over the cap; the call was not made.
    #[error("argument of {size} bytes exceeds the limit of {limit} bytes for plugin {plugin}")]
    ArgumentTooLarge {
        /// `name@version`.
        plugin: String,
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The result was over the cap.
    #[error("plugin {plugin} returned {size} bytes, over the limit of {limit} bytes")]
    ResultTooLarge {
        /// `name@version`.
        plugin: String,
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The result was not what the contract promises (e.g. invalid JSON).
    #[error("plugin {plugin} returned an invalid result: {message}")]
    InvalidResult {
        /// `name@version`.
        plugin: String,
        /// What was wrong.
        message: String,
    },
    /// The system already has as many calls running and waiting as it may; the call was not made.
    #[error(
        "system {system} has too many calls in flight ({in_flight} running, {waiting} waiting, the limits); plugin {plugin} was not called, try again later"
    )]
    SystemBusy {
        /// `name@version`.
        plugin: String,
        /// The system's id.
        system: String,
        /// The limit of calls running.
        in_flight: usize,
        /// The limit of calls waiting.
        waiting: usize,
    },
    /// The host panicked while running the call (a bug in the host, reached through this call): the call
    /// failed, nothing else did.
    #[error("plugin {plugin}: the host failed while running the call (internal error: {message})")]
    HostPanic {
        /// `name@version`.
        plugin: String,
        /// The panic message.
        message: String,
    },
    /// The host could not run the call at all.
    #[error("cannot run plugin {plugin}: {message}")]
    Host {
        /// `name@version`.
        plugin: String,
        /// What failed.
        message: String,
    },
}

impl CallError {
    /// The limit or failure kind, for metrics and plugin statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Connector(_) => "connector-error",
            CallError::Trap { .. } => "trap",
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::StackOverflow { .. } => "stack-overflow",
            CallError::ArgumentTooLarge { .. } => "argument-too-large",
            CallError::ResultTooLarge { .. } => "result-too-large",
            CallError::InvalidResult { .. } => "invalid-result",
            CallError::SystemBusy { .. } => "system-busy",
            CallError::HostPanic { .. } => "host-panic",
            CallError::Host { .. } => "host",
        }
    }

    /// Whether the call was stopped by one of the sandbox's limits (time, memory, stack, sizes).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CallError::Timeout { .. }
                | CallError::MemoryLimit { .. }
                | CallError::StackOverflow { .. }
                | CallError::ArgumentTooLarge { .. }
                | CallError::ResultTooLarge { .. }
        )
    }
}

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
}

impl LoadedPlugin {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.descriptor.name, self.descriptor.version)
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
            other => {
                return Err(LoadError::UnsupportedContract {
                    found: other.to_string(),
                    supported: bindings::SUPPORTED.join(", "),
                });
            }
        };
        let mut plugin = LoadedPlugin {
            // Until describe() answers, the plugin is known by its digest.
            descriptor: Descriptor {
                name: format!("upload-{}", &digest[..12]),
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
        };
        let (descriptor, extensions) = match self.invoke(&plugin, None, Request::Describe).await {
            Ok(Response::Describe(d, x)) => (d, x),
            Ok(_) => return Err(LoadError::Describe("internal error: mismatched response kind".into())),
            Err(e) => return Err(LoadError::Describe(e.to_string())),
        };
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

    /// `create`.
    pub async fn create(
        &self,
        plugin: &LoadedPlugin,
        target: &CallTarget,
        kind: EntityKind,
        entity: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        match self
            .invoke(plugin, Some(target), Request::Create(kind, entity.to_string()))
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
                Request::Replace(kind, id.to_string(), entity.to_string()),
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
                Request::Patch(kind, id.to_string(), operations.to_string()),
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
            // A tick during which the guest waited on a request is not CPU it burnt.
            if !std::mem::take(&mut state.waited) {
                state.ticks += 1;
            }
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
        let label = plugin.label();
        let started = Instant::now();
        let argument_size =
            request.size() + target.map_or(0, |t| t.properties.iter().map(|(k, v)| k.len() + v.len()).sum());
        if argument_size > self.limits.max_argument_bytes {
            let error = CallError::ArgumentTooLarge {
                plugin: label.clone(),
                size: argument_size,
                limit: self.limits.max_argument_bytes,
            };
            return self.not_run(plugin, &label, target, error, started);
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
                        plugin: label.clone(),
                        system: t.endpoint.system_id.clone(),
                        in_flight: busy.in_flight,
                        waiting: busy.waiting,
                    };
                    return self.not_run(plugin, &label, target, error, started);
                }
            },
            None => None,
        };
        let _slot = self.slots.acquire().await.map_err(|e| CallError::Host {
            plugin: label.clone(),
            message: e.to_string(),
        })?;
        // `describe` has no system: it always runs in a fresh instance.
        let owner = target.map(|t| warm::Owner {
            digest: plugin.digest.clone(),
            system_id: t.endpoint.system_id.clone(),
            properties: t.properties.clone(),
        });
        let endpoint = target.map(|t| t.endpoint.clone());
        let (mut store, instance, uses) = match owner.as_ref().and_then(|o| self.warm.take(o)) {
            Some(mut kept) => {
                kept.store.data_mut().begin_next_call(endpoint);
                (kept.store, Some(kept.instance), kept.uses)
            }
            None => {
                self.fresh_instances.fetch_add(1, Ordering::Relaxed);
                (self.new_store(label.clone(), endpoint), None, 0)
            }
        };
        store.set_epoch_deadline(1);
        let demoted = store.data().demoted.clone();
        let bindings = plugin.bindings.clone();
        let system_id = target.map(|t| t.endpoint.system_id.clone()).unwrap_or_default();
        let properties = target.map(|t| t.properties.clone()).unwrap_or_default();
        let timeout = self.limits.timeout + Duration::from_millis(500);
        let probation = self.on_probation(&plugin.digest, &system_id);
        let call = async move {
            let outcome = tokio::time::timeout(
                timeout,
                run(&bindings, &mut store, instance, &system_id, &properties, request),
            )
            .await;
            (outcome, store)
        };
        // A panic in the host while the call runs (in an import, in the bindings) fails this call: the
        // store it left half-done is dropped with the future.
        let call = std::panic::AssertUnwindSafe(call).catch_unwind();
        let ran = if probation {
            demoted.store(true, Ordering::Relaxed);
            self.background.run(call).await
        } else {
            background::drive(call, &demoted, &self.background).await
        };
        let (outcome, store) = match ran {
            Ok(Ok(ran)) => ran,
            Ok(Err(panic)) => {
                let error = CallError::HostPanic {
                    plugin: label.clone(),
                    message: panic_message(panic.as_ref()),
                };
                return self.not_run(plugin, &label, target, error, started);
            }
            Err(e) => {
                let error = CallError::Host {
                    plugin: label.clone(),
                    message: e.to_string(),
                };
                return self.not_run(plugin, &label, target, error, started);
            }
        };
        let mut instance = None;
        let outcome = outcome.map(|r| {
            r.map(|(response, kept)| {
                instance = Some(kept);
                response
            })
        });
        let result = Self::conclude(&self.limits, label.clone(), store.data(), outcome, max_entities);
        let kind = match &result {
            Ok(
                Response::Text(Err(_))
                | Response::Page(Err(_))
                | Response::Entity(Err(_))
                | Response::MaybeEntity(Err(_))
                | Response::Unit(Err(_)),
            ) => "connector-error",
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        let elapsed = started.elapsed();
        crate::metrics::plugin_call(&label, kind, elapsed);
        let state = store.data();
        if state.denied > 0 {
            crate::metrics::plugin_denied_requests(&label, u64::from(state.denied));
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
        crate::metrics::plugin_call(label, kind, elapsed);
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
        probation
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
        label: String,
        state: &CallState,
        outcome: Result<wasmtime::Result<RawResponse>, tokio::time::error::Elapsed>,
        max_entities: Option<usize>,
    ) -> Result<Response, CallError> {
        match outcome {
            Err(_) => Err(CallError::Timeout {
                plugin: label,
                limit: limits.timeout,
            }),
            Ok(Ok(mut response)) => {
                let size = response.size();
                if size > limits.max_result_bytes {
                    return Err(CallError::ResultTooLarge {
                        plugin: label,
                        size,
                        limit: limits.max_result_bytes,
                    });
                }
                // Checked before parsing: parsed entities take several times their text in host memory.
                if let (Some(max), RawResponse::Page(Ok(page))) = (max_entities, &response)
                    && page.entities.len() > max
                {
                    return Err(CallError::InvalidResult {
                        plugin: label,
                        message: format!(
                            "a page of {} entities, over the page size of {max} asked for (the limit: a page holds at most page-size entities)",
                            page.entities.len()
                        ),
                    });
                }
                response.scrub(&state.secrets);
                response.parse(&label)
            }
            Ok(Err(trap)) => {
                if state.deadline_hit {
                    return Err(CallError::Timeout {
                        plugin: label,
                        limit: limits.timeout,
                    });
                }
                if let Some(requested) = state.memory.hit {
                    return Err(CallError::MemoryLimit {
                        plugin: label,
                        limit: limits.memory_bytes,
                        requested,
                    });
                }
                if trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow) {
                    return Err(CallError::StackOverflow {
                        plugin: label,
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
                Err(CallError::Trap { plugin: label, message })
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

/// Caps on what `describe()` may declare: the host keeps the descriptor while the plugin is loaded and
/// serves it in the API, so a connector cannot make either hold megabytes.
pub mod describe_limits {
    /// Properties a connector may declare.
    pub const MAX_PROPERTIES: usize = 256;
    /// Length of a property's name.
    pub const MAX_PROPERTY_NAME_BYTES: usize = 256;
    /// Length of a property's doc, and of its default value.
    pub const MAX_PROPERTY_TEXT_BYTES: usize = 4 << 10;
    /// Entity kinds, and operations, a connector may list (each is one of a handful).
    pub const MAX_LISTED: usize = 16;
    /// All default transformations (read, write, proxy read, proxy write) together.
    pub const MAX_TRANSFORMATION_BYTES: usize = 1 << 20;
}

fn validate_descriptor(d: &Descriptor, x: &DescriptorExtensions) -> Result<(), String> {
    use describe_limits::*;
    if d.properties.len() > MAX_PROPERTIES {
        return Err(format!(
            "{} properties declared, over the limit of {MAX_PROPERTIES}",
            d.properties.len()
        ));
    }
    for p in &d.properties {
        let shown: String = p.name.chars().take(64).collect();
        if p.name.len() > MAX_PROPERTY_NAME_BYTES {
            return Err(format!(
                "property {shown:?}… has a name of {} bytes, over the limit of {MAX_PROPERTY_NAME_BYTES}",
                p.name.len()
            ));
        }
        let longest = p.doc.len().max(p.default_value.as_deref().map_or(0, str::len));
        if longest > MAX_PROPERTY_TEXT_BYTES {
            return Err(format!(
                "property {shown:?} has a doc or default value of {longest} bytes, over the limit of {MAX_PROPERTY_TEXT_BYTES}"
            ));
        }
    }
    if d.entity_kinds.len() > MAX_LISTED || d.operations.len() > MAX_LISTED {
        return Err(format!(
            "{} entity kinds and {} operations declared, over the limit of {MAX_LISTED} each",
            d.entity_kinds.len(),
            d.operations.len()
        ));
    }
    let transformations = [
        &d.default_read_transformation,
        &d.default_write_transformation,
        &x.default_proxy_read_transformation,
        &x.default_proxy_write_transformation,
    ]
    .iter()
    .map(|t| t.as_deref().map_or(0, str::len))
    .sum::<usize>();
    if transformations > MAX_TRANSFORMATION_BYTES {
        return Err(format!(
            "default transformations of {transformations} bytes together, over the limit of {MAX_TRANSFORMATION_BYTES} bytes"
        ));
    }
    let valid_name = !d.name.is_empty()
        && d.name.len() <= 64
        && d.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "connector name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
            d.name
        ));
    }
    if d.version.is_empty()
        || d.version.len() > 64
        || !d
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
    {
        return Err(format!("connector version {:?} is not a version", d.version));
    }
    if let Err(e) = semver::Version::parse(&d.version) {
        return Err(format!(
            "connector version {:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0): {e}",
            d.version
        ));
    }
    Ok(())
}

/// Parses every default transformation a connector declares: a connector whose defaults do not load is
/// refused at upload, not at its first job.
fn validate_default_transformations(d: &Descriptor, x: &DescriptorExtensions) -> Result<(), LoadError> {
    let all = [
        ("read", &d.default_read_transformation),
        ("write", &d.default_write_transformation),
        ("proxy read", &x.default_proxy_read_transformation),
        ("proxy write", &x.default_proxy_write_transformation),
    ];
    for (which, text) in all {
        let Some(text) = text else { continue };
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::Transformation {
            which,
            message: format!("not JSON: {e}"),
        })?;
        provisio_transform::Transformation::parse(&doc).map_err(|e| LoadError::Transformation {
            which,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// A call to make, independent of the contract version.
enum Request {
    Describe,
    TestConnection,
    Read(PageRequest),
    Get(EntityKind, String),
    Create(EntityKind, String),
    Replace(EntityKind, String, String),
    Patch(EntityKind, String, String),
    Delete(EntityKind, String),
}

impl Request {
    fn size(&self) -> usize {
        match self {
            Request::Describe | Request::TestConnection => 0,
            Request::Read(r) => r.cursor.as_deref().map_or(0, str::len) + r.filter.as_deref().map_or(0, str::len),
            Request::Get(_, id) | Request::Delete(_, id) | Request::Create(_, id) => id.len(),
            Request::Replace(_, id, body) | Request::Patch(_, id, body) => id.len() + body.len(),
        }
    }
}

/// A call's raw answer, before the JSON in it is parsed.
enum RawResponse {
    Describe(Descriptor, DescriptorExtensions),
    Text(Result<String, ConnectorError>),
    Page(Result<RawPage, ConnectorError>),
    Entity(Result<String, ConnectorError>),
    MaybeEntity(Result<Option<String>, ConnectorError>),
    Unit(Result<(), ConnectorError>),
}

/// A page as the guest returned it: entities still JSON text.
struct RawPage {
    entities: Vec<String>,
    next_cursor: Option<String>,
    total: Option<u64>,
}

/// A call's answer, JSON parsed.
enum Response {
    Describe(Descriptor, DescriptorExtensions),
    Text(Result<String, ConnectorError>),
    Page(Result<Page, ConnectorError>),
    Entity(Result<serde_json::Value, ConnectorError>),
    MaybeEntity(Result<Option<serde_json::Value>, ConnectorError>),
    Unit(Result<(), ConnectorError>),
}

impl RawResponse {
    fn size(&self) -> usize {
        let err = |e: &ConnectorError| e.to_string().len();
        match self {
            RawResponse::Describe(d, x) => {
                d.default_read_transformation.as_deref().map_or(0, str::len)
                    + d.default_write_transformation.as_deref().map_or(0, str::len)
                    + x.default_proxy_read_transformation.as_deref().map_or(0, str::len)
                    + x.default_proxy_write_transformation.as_deref().map_or(0, str::len)
                    + d.properties
                        .iter()
                        .map(|p| p.name.len() + p.doc.len() + p.default_value.as_deref().map_or(0, str::len))
                        .sum::<usize>()
                    + d.entity_kinds.len()
                    + d.operations.len()
            }
            RawResponse::Text(r) | RawResponse::Entity(r) => r.as_ref().map_or_else(err, String::len),
            RawResponse::Page(r) => r.as_ref().map_or_else(err, |p| {
                p.entities.iter().map(String::len).sum::<usize>() + p.next_cursor.as_deref().map_or(0, str::len)
            }),
            RawResponse::MaybeEntity(r) => r.as_ref().map_or_else(err, |e| e.as_deref().map_or(0, str::len)),
            RawResponse::Unit(r) => r.as_ref().map_or_else(err, |_| 0),
        }
    }

    /// Masks the credentials the host attached in this call wherever the answer holds text; nothing to do
    /// (and no scan) for a call without credentials.
    fn scrub(&mut self, secrets: &Secrets) {
        if secrets.is_empty() {
            return;
        }
        let error = |e: &mut ConnectorError| secrets.scrub_string(e.message_mut());
        match self {
            RawResponse::Describe(..) => {}
            RawResponse::Text(r) | RawResponse::Entity(r) => match r {
                Ok(text) => secrets.scrub_string(text),
                Err(e) => error(e),
            },
            RawResponse::Page(r) => match r {
                Ok(page) => {
                    for entity in page.entities.iter_mut().chain(page.next_cursor.as_mut()) {
                        secrets.scrub_string(entity);
                    }
                }
                Err(e) => error(e),
            },
            RawResponse::MaybeEntity(r) => match r {
                Ok(entity) => entity.iter_mut().for_each(|text| secrets.scrub_string(text)),
                Err(e) => error(e),
            },
            RawResponse::Unit(r) => {
                if let Err(e) = r {
                    error(e)
                }
            }
        }
    }

    fn parse(self, plugin: &str) -> Result<Response, CallError> {
        let json = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| CallError::InvalidResult {
                plugin: plugin.to_string(),
                message: format!("an entity is not valid JSON: {e}"),
            })
        };
        Ok(match self {
            RawResponse::Describe(d, x) => Response::Describe(d, x),
            RawResponse::Text(r) => Response::Text(r),
            RawResponse::Page(Ok(raw)) => Response::Page(Ok(Page {
                entities: raw.entities.iter().map(|e| json(e)).collect::<Result<_, _>>()?,
                next_cursor: raw.next_cursor,
                total: raw.total,
            })),
            RawResponse::Page(Err(e)) => Response::Page(Err(e)),
            RawResponse::Entity(Ok(e)) => Response::Entity(Ok(json(&e)?)),
            RawResponse::Entity(Err(e)) => Response::Entity(Err(e)),
            RawResponse::MaybeEntity(Ok(Some(e))) => Response::MaybeEntity(Ok(Some(json(&e)?))),
            RawResponse::MaybeEntity(Ok(None)) => Response::MaybeEntity(Ok(None)),
            RawResponse::MaybeEntity(Err(e)) => Response::MaybeEntity(Err(e)),
            RawResponse::Unit(r) => Response::Unit(r),
        })
    }
}

/// Makes one call through the bindings module `$v` of a contract version, in the kept instance `$instance`
/// or a new one; `$describe` turns that version's descriptor into the host's descriptor and extensions.
/// Answers the response and the instance.
macro_rules! call_guest {
    ($v:path, $variant:ident, $pre:expr, $instance:expr, $store:expr, $system_id:expr, $properties:expr, $request:expr, $describe:expr) => {{
        use $v as v;
        let store = $store;
        let plugin = match $instance {
            Some(kept) => kept,
            None => $pre.instantiate_async(&mut *store).await?,
        };
        let guest = plugin.provisio_connector_connector();
        let config = v::config($system_id, $properties);
        let err = |e: v::provisio::connector::types::ConnectorError| ConnectorError::from(e);
        let response = match $request {
            Request::Describe => {
                let (d, x) = $describe(guest.call_describe(&mut *store).await?);
                RawResponse::Describe(d, x)
            }
            Request::TestConnection => {
                RawResponse::Text(guest.call_test_connection(&mut *store, &config).await?.map_err(err))
            }
            Request::Read(r) => RawResponse::Page(
                guest
                    .call_read(&mut *store, &config, &v::page_request(&r))
                    .await?
                    .map(|p| RawPage {
                        entities: p.entities,
                        next_cursor: p.next_cursor,
                        total: p.total,
                    })
                    .map_err(err),
            ),
            Request::Get(kind, id) => RawResponse::Entity(
                guest
                    .call_get(&mut *store, &config, kind.into(), &id)
                    .await?
                    .map_err(err),
            ),
            Request::Create(kind, body) => RawResponse::Entity(
                guest
                    .call_create(&mut *store, &config, kind.into(), &body)
                    .await?
                    .map_err(err),
            ),
            Request::Replace(kind, id, body) => RawResponse::Entity(
                guest
                    .call_replace(&mut *store, &config, kind.into(), &id, &body)
                    .await?
                    .map_err(err),
            ),
            Request::Patch(kind, id, body) => RawResponse::MaybeEntity(
                guest
                    .call_patch(&mut *store, &config, kind.into(), &id, &body)
                    .await?
                    .map_err(err),
            ),
            Request::Delete(kind, id) => RawResponse::Unit(
                guest
                    .call_delete(&mut *store, &config, kind.into(), &id)
                    .await?
                    .map_err(err),
            ),
        };
        Ok((response, Instance::$variant(plugin)))
    }};
}

/// Makes the call in `instance` (kept from an earlier call of the same system) or in a new instance of the
/// plugin, through the bindings of its contract version.
async fn run(
    bindings: &Bindings,
    store: &mut Store<CallState>,
    instance: Option<Instance>,
    system_id: &str,
    properties: &[(String, String)],
    request: Request,
) -> wasmtime::Result<(RawResponse, Instance)> {
    match bindings {
        Bindings::V0_1_0(pre) => call_guest!(
            bindings::v0_1_0,
            V0_1_0,
            pre,
            match instance {
                Some(Instance::V0_1_0(kept)) => Some(kept),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            |d: bindings::v0_1_0::provisio::connector::types::Descriptor| (
                Descriptor::from(d),
                DescriptorExtensions::default()
            )
        ),
        Bindings::V0_2_0(pre) => call_guest!(
            bindings::v0_2_0,
            V0_2_0,
            pre,
            match instance {
                Some(Instance::V0_2_0(kept)) => Some(kept),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            bindings::v0_2_0::descriptor
        ),
    }
}

impl CallState {
    /// The `send` import: counts, then hands the request to the outbound capability for this call's system.
    pub async fn send_http(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let started = Instant::now();
        let result = self.send_checked(request).await;
        if started.elapsed() >= Duration::from_millis(1) {
            self.waited = true;
        }
        if let Err(HttpError::Denied(reason)) = &result {
            self.denied += 1;
            self.last_denied = Some(reason.clone());
        }
        result
    }

    async fn send_checked(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests += 1;
        if self.requests > self.limits.max_requests_per_call {
            return Err(HttpError::Denied(format!(
                "more than {} requests in one call",
                self.limits.max_requests_per_call
            )));
        }
        let Some(endpoint) = self.endpoint.as_ref() else {
            return Err(HttpError::Denied("no system is configured for this call".into()));
        };
        // The request's own bounds first (method, headers, path, body), then the call's byte budget.
        self.outbound.check(&request)?;
        let size = request.path.len()
            + request.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + request.body.as_ref().map_or(0, Vec::len);
        self.request_bytes = self.request_bytes.saturating_add(size);
        if self.request_bytes > self.limits.max_request_bytes_per_call {
            return Err(HttpError::Denied(format!(
                "requests of more than {} bytes in one call (the limit of bytes sent per call)",
                self.limits.max_request_bytes_per_call
            )));
        }
        // A guest that is past its deadline gets no more network.
        if Instant::now() >= self.deadline {
            self.host_deadline_hit = true;
            return Err(HttpError::Timeout(format!(
                "the call's time limit of {:?} is reached",
                self.limits.timeout
            )));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let sent = match &self.home {
            // A demoted call's requests are still driven by the service's runtime: pooled connections
            // and cached tokens are shared with well-behaved systems.
            Some(home) if self.demoted.load(std::sync::atomic::Ordering::Relaxed) => {
                let (outbound, endpoint) = (self.outbound.clone(), endpoint.clone());
                let mut secrets = std::mem::take(&mut self.secrets);
                let mut task = background::AbortOnDrop(home.spawn(async move {
                    let sent =
                        tokio::time::timeout(remaining, outbound.send_scrubbed(&endpoint, request, &mut secrets)).await;
                    (sent, secrets)
                }));
                match (&mut task.0).await {
                    Ok((sent, secrets)) => {
                        self.secrets = secrets;
                        sent
                    }
                    // A panic there is this call's panic: the runtime turns it into the call's error.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => {
                        // The attached credentials went with the task: scrub with the system's own.
                        self.secrets = self.endpoint.as_ref().map(Secrets::of_endpoint).unwrap_or_default();
                        Ok(Err(HttpError::Unreachable(format!(
                            "the request failed in the host: {e}"
                        ))))
                    }
                }
            }
            _ => {
                tokio::time::timeout(
                    remaining,
                    self.outbound.send_scrubbed(endpoint, request, &mut self.secrets),
                )
                .await
            }
        };
        match sent {
            Ok(result) => result,
            Err(_) => {
                self.host_deadline_hit = true;
                Err(HttpError::Timeout(format!(
                    "the call's time limit of {:?} was reached during the request",
                    self.limits.timeout
                )))
            }
        }
    }

    /// The `log` import, rate-limited per call.
    pub fn guest_log(&mut self, level: tracing::Level, message: &str) {
        self.log_lines += 1;
        if self.log_lines > self.limits.max_log_lines {
            if self.log_lines == self.limits.max_log_lines + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin log limit reached; further lines of this call are dropped");
            }
            return;
        }
        // Control characters would let a guest forge log lines.
        let message: String = message
            .chars()
            .take(2000)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let system = self.endpoint.as_ref().map(|e| e.system_id.as_str()).unwrap_or("");
        match level {
            tracing::Level::ERROR => tracing::error!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin = %self.plugin, system, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin = %self.plugin, system, "{message}"),
            _ => tracing::trace!(plugin = %self.plugin, system, "{message}"),
        }
    }
}
