//! Provisio: an identity provisioning service whose connectors are sandboxed WebAssembly components.
//!
//! Dependencies point one way: `api`/`cli` → `systems`/`plugins` → `runtime`, `outbound`, `store`,
//! and the pure transformation engine (`provisio_transform`).

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
