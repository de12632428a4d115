//! In-memory HTTP simulators of the remote systems Provisio's connectors talk to.
//!
//! Every simulator module offers the same shape of API:
//!
//! * `Options` (with `Default`): how many users and groups to seed, the client credentials it
//!   accepts, an optional rate limit in the system's own unit, and system-specific switches;
//! * `spawn(options).await` binds `127.0.0.1:0`, serves in the background and returns a
//!   `Simulator` carrying `base_url` (the connector's `URL` property), `token_url` (the
//!   `OAuth2TokenServiceURL` property, where the system uses OAuth), accessors to inspect and
//!   mutate the state directly, request statistics, and a graceful shutdown when dropped;
//! * `router(state)` builds the axum `Router` over a `State`, for a test that serves it itself
//!   (or drives it with `tower::ServiceExt::oneshot`).
//!
//! Shared machinery (filter parsing and evaluation, paging, rate limiting, token issuing, seed
//! data, RFC 7644 PATCH) lives in private modules under `common`, so each system's module reads
//! as that system's quirks.

pub(crate) mod common;
pub mod ias;
pub mod jam;
pub mod uaa;

pub use common::stats::{RequestRecord, Stats};
