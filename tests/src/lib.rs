//! Test support for Provisio: in-memory simulators of the remote systems its connectors talk to.
//!
//! See [`sim`] for the simulators of Cloud Foundry UAA / SAP BTP XSUAA ([`sim::uaa`]),
//! SAP Jam Collaboration ([`sim::jam`]) and SAP Cloud Identity Services – Identity
//! Authentication ([`sim::ias`]). Each one is an axum router over shared in-memory state that
//! reproduces the wire format and the documented quirks of the real system (authentication,
//! error bodies, paging, ETags, rate limits), so connectors can be tested and benchmarked
//! against them without network access.

// Handlers answer `Result<Response, Response>`: the error side is the HTTP answer itself.
#![allow(clippy::result_large_err)]

pub mod sim;
