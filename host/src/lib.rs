//! Provisio: an identity provisioning service whose connectors are sandboxed WebAssembly components.
//!
//! Three crates, dependencies pointing one way:
//!
//! - `provisio` (this crate, the HTTP layer and the composition root): the admin API ([`api`]), the web
//!   console ([`console`]), the SCIM
//!   proxy's and the real-time API's HTTP surfaces ([`proxy`]), server start-up and the state bundle
//!   ([`server`]), TLS ([`tls`]), and the bundled connectors ([`bundled`]); the CLI is the binary's (`src/main.rs`, `src/cli/`). It depends on
//!   neither `wasmtime` nor the SQL driver.
//! - `provisio-engine`: systems, plugins, provisioning jobs and the sync engine, real-time provisioning, the
//!   proxy's logic — no HTTP.
//! - `provisio-core`: connector types, the wasm runtime, outbound HTTP, secrets, the store, metrics.
//!
//! The engine's and the core's modules are re-exported here under their names (`provisio::store`,
//! `provisio::systems`, …), so the service reads as one library to its tests and tools.

/// With glibc's malloc a job spent about a third of its CPU in the allocator's own bookkeeping (JSON values
/// are many small allocations freed on other threads); mimalloc does not. Declared in the library so that
/// every binary that runs the service — `provisio`, the tests, the benchmarks — runs on the same allocator.
/// Built without its transparent-huge-page requests (`no_thp` in Cargo.toml): they cost resident memory, not
/// speed; and as mimalloc 2 (`v2`), whose segments held less at the peak of a large job than mimalloc 3's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use provisio_engine::{
    audit, connector, idle, json, metrics, notify, outbound, plugins, provisioning, quarantine, realtime, retention,
    runtime, secrets, store, systems, transform_test,
};

pub mod api;
pub mod bundled;
pub mod console;
pub mod memory;
pub mod proxy;
pub mod server;
pub mod state;
pub mod tls;

#[cfg(test)]
pub(crate) mod test_state;
