//! Provisio's core: what every part of the service stands on and nothing of it depends on.
//!
//! - [`connector`]: the host's view of the connector contract (kinds, pages, descriptors, errors).
//! - [`runtime`]: the sandboxed wasm runtime that loads connector components and calls them under limits.
//! - [`outbound`]: the one way a connector reaches the network: a system's own endpoint, credentials
//!   attached by the host, every request bounded and scrubbed.
//! - [`secrets`]: the master key, sealed values, and the types that keep secrets sealed in memory.
//! - [`store`]: the store's interfaces, one per aggregate (principals, systems, plugins, jobs, links,
//!   real-time events), bundled as [`store::Stores`]; backends (`provisio-store-sqlite`) implement them.
//! - [`metrics`]: the Prometheus registry.
//! - [`json`]: compact JSON text of a value, the fast way.
//! - [`idle`]: threads that wait for work hand back the memory they freed.
//!
//! Dependencies point one way: `provisio` (HTTP, CLI) → `provisio-engine` → `provisio-core`, and a store
//! backend → `provisio-core`.

pub mod connector;
pub mod idle;
pub mod json;
pub mod metrics;
pub mod outbound;
pub mod runtime;
pub mod secrets;
pub mod store;
