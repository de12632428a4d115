//! Provisio: an identity provisioning service whose connectors are sandboxed WebAssembly components.
//!
//! Dependencies point one way: `api`/`cli` → `systems`/`plugins` → `runtime`, `outbound`, `store`,
//! and the pure transformation engine (`provisio_transform`).

/// With glibc's malloc a job spent about a third of its CPU in the allocator's own bookkeeping (JSON values
/// are many small allocations freed on other threads); mimalloc does not. Declared in the library so that
/// every binary that runs the service — `provisio`, the tests, the benchmarks — runs on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod bundled;
pub mod cli;
pub mod connector;
pub mod metrics;
pub mod outbound;
pub mod plugins;
pub mod provisioning;
pub mod proxy;
pub mod realtime;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod store;
pub mod systems;
pub mod tls;
pub mod transform_test;
