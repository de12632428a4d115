//! SCIM 2.0 (RFC 7643, RFC 7644) as Provisio's host, its connector SDK and its test simulators share it:
//! one filter grammar and evaluator, one PatchOp engine, one list response and paging, one error body.
//!
//! - [`filter`]: parse a filter (RFC 7644 §3.4.2.2) once, evaluate it against JSON resources.
//! - [`patch`]: build, parse and apply PatchOp documents (§3.5.2), atomically.
//! - [`rules`], [`schema`]: what filters and PATCH consult about a resource's schema — case-exactness,
//!   dateTimes, multi-valued and read-only attributes, extensions — from schema documents
//!   ([`ResourceType`]) or from the resource itself ([`Schemaless`]).
//! - [`list`]: list responses, index and cursor paging (§3.4.2.4).
//! - [`error`]: the error body (§3.12).
//! - [`json`]: a JSON text checked as a `Value` parse would check it, without building the value.
//!
//! The crate is pure (JSON in, JSON out; no I/O, no async runtime), so it builds for `wasm32-wasip2`: the
//! SDK re-exports it to connectors as `provisio_sdk::scim`.
#![warn(missing_docs)]

pub mod error;
pub mod filter;
pub mod json;
pub mod list;
pub mod patch;
pub mod path;
pub mod rules;
pub mod schema;
mod time;

pub use error::{ERROR, ScimError};
pub use filter::{CompareOp, Filter, FilterError, and_filters, get_ci, modified_since, quote};
pub use list::{LIST_RESPONSE, ListResponse, start_id, start_index};
pub use patch::{PATCH_OP, PatchOp, PatchOperation, ensure_patch_schema};
pub use path::{AttrPath, PatchPath};
pub use rules::{Definition, Rules, Schemaless};
pub use schema::ResourceType;
