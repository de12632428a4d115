//! The Provisio connector SDK.
//!
//! A Provisio connector is a WebAssembly component that speaks to one kind of remote system. This crate is
//! all a connector author needs to write one in Rust:
//!
//! * the [`Connector`] trait, one method per operation of the contract, each with a documented default, and
//!   the [`export_connector!`] macro that turns an implementation into the component's exports;
//! * the contract's types, re-exported with helpers ([`Config`], [`PageRequest`], [`Page`], [`Error`],
//!   [`Descriptor`], [`PropertySpec`], …);
//! * [`ConfiguredConnector`]: the same operations taking the connector's validated settings, parsed once per
//!   call by one function;
//! * [`system`]: the properties most systems share (`URL`, `Authentication`, `User`,
//!   `OAuth2TokenServiceURL`, `ips.http.header.*`), parsed once;
//! * [`client`]: a SCIM client for the common connector (Test Connection probe, index and id paging,
//!   `If-Match` writes with one retry, the conflict lookup), with dialect hooks for UAA and Identity
//!   Authentication;
//! * [`http`]: requests to the configured system through the host (the only way out of the sandbox);
//! * [`status`]: HTTP answers turned into the [`Error`] variant the host acts on;
//! * [`scim`]: SCIM list responses, index and cursor paging, PatchOp documents and filters;
//! * [`json`]: dotted-path access into JSON documents;
//! * [`log`]: lines in the host's log;
//! * [`testing`] (native targets only): a harness that runs a connector against canned HTTP exchanges, or
//!   against exchanges it records from a real system and replays.
//!
//! ```no_run
//! use provisio_sdk::{Config, Connector, Descriptor, EntityKind, Operation, Page, PageRequest, Result};
//! use provisio_sdk::{http::Request, scim};
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("hello", "0.1.0")
//!             .entity_kinds([EntityKind::User])
//!             .operations([Operation::Read])
//!     }
//!
//!     fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
//!         let start = scim::start_index(req.cursor.as_deref())?;
//!         let resp = Request::get("Users")
//!             .query("startIndex", start)
//!             .query("count", req.page_size)
//!             .send(cfg)?
//!             .error_for_status()?;
//!         let list = scim::ListResponse::from_json(&resp.json()?)?;
//!         Ok(list.into_index_page(start, req.page_size))
//!     }
//! }
//!
//! provisio_sdk::export_connector!(Hello);
//! ```
#![deny(missing_docs)]

extern crate self as provisio_sdk;

/// What a successful Test Connection answers: the words SAP Identity Provisioning admins know.
pub const CONNECTION_OK: &str = "Connection to the selected target system was established successfully.";

pub mod client;
mod configured;
pub mod http;
pub mod json;
pub mod log;
pub mod scim;
pub mod status;
pub mod system;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types;

pub use configured::ConfiguredConnector;
pub use types::HOST_CONFLICT_RESOLUTION;

#[doc(hidden)]
pub mod bindings {
    //! The raw bindings of the WIT world `provisio:connector/plugin@0.4.0`. Not part of the public API.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        // A copy of `../wit/since_v0.4.0` that travels with the crate (see the test `the_wit_copy_is_the_current_contract`).
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "provisio_sdk::bindings",
        runtime_path: "provisio_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

#[doc(hidden)]
pub mod __private {
    //! What [`export_connector!`](crate::export_connector) expands to. Not part of the public API.
    pub use crate::bindings::__export_plugin;
    pub use crate::bindings::exports::provisio::connector::connector::{Guest, GuestSystem};
    pub use wit_bindgen;
}

pub use bindings::provisio::connector::types::{
    Config, ConnectorError as Error, Descriptor, EntityKind, Operation, Page, PageRequest, PropertySpec, Rejection,
    Throttle,
};

/// The result of a connector operation: `Err` carries the [`Error`] variant the host acts on.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The connector contract (`provisio:connector/connector@0.4.0`), one associated function per operation.
///
/// There is no `self`: everything a call needs arrives in its arguments ([`Config`] carries the system's
/// non-secret properties; the host hands it over once per instance, and the SDK passes it to every call) and
/// all I/O goes through [`http`].
///
/// **Instances and state.** The host may run a call in a fresh instance or in the instance that served an
/// earlier call *of the same system* (same plugin version, same properties) when that call ended cleanly (no
/// trap, no limit hit, no refused request, nothing on stderr); it drops a kept instance after 10,000 calls,
/// 60 s idle, or above 32 MiB of memory, and never hands one system's instance to another system. So
/// `static` state *may* survive from one call to the next, but nothing guarantees it will: use it only as a
/// cache whose loss costs a request (the SCIM connector keeps the schema extensions a system declares that
/// way), never for correctness, and never keep data of one call that must not reach the next call of the
/// same system. Every operation but [`describe`](Connector::describe) has a default that answers
/// [`Error::Unsupported`]; implement those your system supports and list them in the descriptor.
///
/// What each error variant tells the host:
///
/// | variant | the host … |
/// |---|---|
/// | [`Error::InvalidConfig`] | stops: the admin must fix the property the text names |
/// | [`Error::Unauthorized`] | stops: the credentials were refused (HTTP 401/403, or the token endpoint) |
/// | [`Error::NotFound`] | treats the entity as absent (for `delete`: as already done) |
/// | [`Error::Conflict`] | reports a uniqueness conflict or a stale version |
/// | [`Error::Throttled`] | waits (`retry_after_ms` when known) and retries |
/// | [`Error::Transient`] | retries with backoff (5xx, timeout, unreachable) |
/// | [`Error::Rejected`] | fails the entity: retrying the same request fails again |
/// | [`Error::Unsupported`] | falls back where it can (a full read instead of a delta read), else fails |
/// | [`Error::TooLarge`] | fails the entity: the payload is too large for the system or the host (HTTP 413) |
///
/// Entities cross the boundary as JSON text in the remote system's own format; the host applies the
/// system's read and write transformations on its side.
pub trait Connector {
    /// Static facts about the connector: name, version, entity kinds, supported operations, the properties it
    /// understands and its default transformations. The same answer every time, without I/O.
    fn describe() -> Descriptor;

    /// Checks that the system is reachable *and* that the credentials work, with a read-only request.
    ///
    /// `Ok` carries a message for the admin. Errors: [`Error::Unauthorized`] when the credentials were refused,
    /// [`Error::Transient`] when the system could not be reached, [`Error::InvalidConfig`] when a property is
    /// wrong. Must not change anything in the remote system.
    ///
    /// Default: [`Error::Unsupported`].
    fn test_connection(cfg: &Config) -> Result<String> {
        let _ = cfg;
        Err(Error::unsupported("test-connection"))
    }

    /// Reads one page of entities of `req.kind`.
    ///
    /// Paging: `req.cursor` is `None` for the first page and afterwards the previous page's
    /// [`Page::next_cursor`], verbatim; return `next_cursor: None` on the last page. Return at most
    /// `req.page_size` entities (fewer when the system's own maximum is lower). Read-only and repeatable: the
    /// same cursor gives the same page, give or take concurrent changes.
    ///
    /// `req.filter` (a SCIM filter) and `req.delta_since` (RFC 3339) narrow the read; a connector whose system
    /// cannot honour them answers [`Error::Unsupported`] (for a delta read the host then falls back to a full
    /// read). [`scim::start_index`] and [`scim::ListResponse`] implement SCIM index paging.
    ///
    /// Default: [`Error::Unsupported`].
    fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
        let _ = (cfg, req);
        Err(Error::unsupported("read"))
    }

    /// Reads one entity by its id in the remote system and returns its native JSON.
    ///
    /// [`Error::NotFound`] when it does not exist. Read-only.
    ///
    /// Default: [`Error::Unsupported`].
    fn get(cfg: &Config, kind: EntityKind, id: &str) -> Result<String> {
        let _ = (cfg, kind, id);
        Err(Error::unsupported("get"))
    }

    /// Creates an entity from its native JSON and returns the created entity as the system stores it; the
    /// host takes the new id from it.
    ///
    /// Not idempotent: a second call conflicts ([`Error::Conflict`]) or creates a duplicate, so the host looks
    /// up before it retries.
    ///
    /// Default: [`Error::Unsupported`].
    fn create(cfg: &Config, kind: EntityKind, entity: &str) -> Result<String> {
        let _ = (cfg, kind, entity);
        Err(Error::unsupported("create"))
    }

    /// Replaces the entity with this id by the given native JSON and returns it as stored.
    ///
    /// Idempotent. For systems with versioned resources: when the entity carries `meta.version`, that version
    /// is the caller's precondition (it read that version and built the entity from it) — send it (as
    /// `If-Match`) and answer a stale version with [`Error::Conflict`], without retrying; without one, read
    /// the current version, and re-read and retry once when it goes stale. A conflict that remains is
    /// [`Error::Conflict`]. [`Error::NotFound`] when the entity does not exist.
    ///
    /// Default: [`Error::Unsupported`].
    fn replace(cfg: &Config, kind: EntityKind, id: &str, entity: &str) -> Result<String> {
        let _ = (cfg, kind, id, entity);
        Err(Error::unsupported("replace"))
    }

    /// Applies an RFC 7644 PatchOp document (`{"Operations":[…]}`) to the entity.
    ///
    /// Returns the entity as stored when the system answered with it, `None` otherwise (the host reads it with
    /// [`get`](Connector::get) if it needs it). [`Error::NotFound`] when the entity does not exist.
    /// [`scim::PatchOp`] builds and applies such documents.
    ///
    /// Default: [`Error::Unsupported`].
    fn patch(cfg: &Config, kind: EntityKind, id: &str, operations: &str) -> Result<Option<String>> {
        let _ = (cfg, kind, id, operations);
        Err(Error::unsupported("patch"))
    }

    /// Deletes the entity.
    ///
    /// [`Error::NotFound`] when it is already gone, which the host counts as success; so deleting is
    /// idempotent from the host's point of view.
    ///
    /// Default: [`Error::Unsupported`].
    fn delete(cfg: &Config, kind: EntityKind, id: &str) -> Result<()> {
        let _ = (cfg, kind, id);
        Err(Error::unsupported("delete"))
    }
}

/// Exports a [`Connector`] implementation as the component's `provisio:connector/connector` interface.
///
/// Invoke it once, at the root of the connector crate (built as a `cdylib` for `wasm32-wasip2`):
///
/// ```ignore
/// provisio_sdk::export_connector!(MyConnector);
/// ```
///
/// On native targets it expands to nothing, so the crate still builds and unit-tests natively.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __ProvisioExport;

            impl $crate::__private::Guest for __ProvisioExport {
                type System = __ProvisioSystem;

                fn describe() -> $crate::Descriptor {
                    <$connector as $crate::Connector>::describe()
                }
            }

            /// The configured system the host made this instance for: its config, kept for every call.
            struct __ProvisioSystem($crate::Config);

            impl $crate::__private::GuestSystem for __ProvisioSystem {
                fn new(config: $crate::Config) -> Self {
                    __ProvisioSystem(config)
                }
                fn test_connection(&self) -> $crate::Result<::std::string::String> {
                    <$connector as $crate::Connector>::test_connection(&self.0)
                }
                fn read(&self, request: $crate::PageRequest) -> $crate::Result<$crate::Page> {
                    <$connector as $crate::Connector>::read(&self.0, &request)
                }
                fn get(
                    &self,
                    kind: $crate::EntityKind,
                    id: ::std::string::String,
                ) -> $crate::Result<::std::string::String> {
                    <$connector as $crate::Connector>::get(&self.0, kind, &id)
                }
                fn create(
                    &self,
                    kind: $crate::EntityKind,
                    entity: ::std::string::String,
                ) -> $crate::Result<::std::string::String> {
                    <$connector as $crate::Connector>::create(&self.0, kind, &entity)
                }
                fn replace(
                    &self,
                    kind: $crate::EntityKind,
                    id: ::std::string::String,
                    entity: ::std::string::String,
                ) -> $crate::Result<::std::string::String> {
                    <$connector as $crate::Connector>::replace(&self.0, kind, &id, &entity)
                }
                fn patch(
                    &self,
                    kind: $crate::EntityKind,
                    id: ::std::string::String,
                    operations: ::std::string::String,
                ) -> $crate::Result<::std::option::Option<::std::string::String>> {
                    <$connector as $crate::Connector>::patch(&self.0, kind, &id, &operations)
                }
                fn delete(&self, kind: $crate::EntityKind, id: ::std::string::String) -> $crate::Result<()> {
                    <$connector as $crate::Connector>::delete(&self.0, kind, &id)
                }
            }

    $crate::__private::__export_plugin!(__ProvisioExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    /// `wit/connector.wit` travels with the crate so that it builds from its own folder (vendored, packaged,
    /// a `git` dependency); it must be the newest contract of the repository's `wit/`. Outside the
    /// repository there is nothing to compare with, and the test passes.
    #[test]
    fn the_wit_copy_is_the_current_contract() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let Ok(entries) = std::fs::read_dir(root.join("../wit")) else {
            return;
        };
        let version = |name: &str| -> Option<Vec<u64>> {
            name.strip_prefix("since_v")?
                .split('.')
                .map(|n| n.parse().ok())
                .collect()
        };
        let newest = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                version(&name).map(|v| (v, e.path()))
            })
            .max()
            .map(|(_, path)| path)
            .expect("wit/ holds since_vX.Y.Z directories");
        let current = std::fs::read_to_string(newest.join("connector.wit")).expect("the current contract");
        let copy = std::fs::read_to_string(root.join("wit/connector.wit")).expect("sdk/wit/connector.wit");
        assert!(
            copy == current,
            "sdk/wit/connector.wit differs from {}: copy it over (cp {}/connector.wit sdk/wit/)",
            newest.display(),
            newest.display()
        );
    }
}
