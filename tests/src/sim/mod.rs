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
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use provisio_tests::sim::uaa;
//!
//! let sim = uaa::spawn(uaa::Options { users: 1000, groups: 20, ..Default::default() }).await?;
//! // Connector properties: URL = sim.base_url, OAuth2TokenServiceURL = sim.token_url,
//! // User/Password = client id/secret from sim.options().
//! let url = sim.base_url.clone();
//! # let _ = url;
//! assert_eq!(sim.user_count(), 1000);
//! let jane = sim.insert_user(serde_json::json!({
//!     "userName": "jane.doe", "emails": [{"value": "jane@example.com", "primary": true}]
//! }));
//! assert!(jane.is_ok());
//! println!("{} requests, {} refused with 429", sim.stats().requests(), sim.stats().throttled());
//! # Ok(()) }
//! ```
//!
//! Shared machinery (filter parsing and evaluation, paging, rate limiting, token issuing, seed
//! data, RFC 7644 PATCH) lives in private modules under `common`, so each system's module reads
//! as that system's quirks.

pub(crate) mod common;
pub mod ias;
pub mod jam;
pub mod uaa;

pub use common::stats::{RequestRecord, Stats};
