//! Why a plugin could not be loaded, and why a call failed: each error names the plugin, its version and
//! the limit or rule it met.

use super::*;

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
