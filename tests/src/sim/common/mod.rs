//! Machinery shared by the simulators.

pub(crate) mod auth;
pub(crate) mod filter;
pub(crate) mod http;
pub(crate) mod paging;
pub(crate) mod patch;
pub(crate) mod rate;
pub(crate) mod seed;
pub(crate) mod server;
pub mod stats;
pub(crate) mod store;
pub(crate) mod time;
