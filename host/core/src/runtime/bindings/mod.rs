//! One module per released contract version, each with its own `bindgen!` (Zed's pattern). The host serves
//! components built against any version listed in [`SUPPORTED`]; each module converts its generated types to
//! and from the host's own (`crate::connector`), so nothing outside the runtime sees a contract version.

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;
pub mod v0_4_0;

/// Contract versions this host serves, oldest first.
pub const SUPPORTED: &[&str] = &[v0_1_0::VERSION, v0_2_0::VERSION, v0_3_0::VERSION, v0_4_0::VERSION];

/// The contract version the SDK and the bundled connectors build against.
pub const CURRENT: &str = v0_4_0::VERSION;

/// The interface every connector exports, without its version.
pub const CONNECTOR_INTERFACE: &str = "provisio:connector/connector";

/// The bindings of a loaded plugin, by the contract version it was built for.
#[derive(Clone)]
pub enum Bindings {
    /// Built against 0.1.0.
    V0_1_0(v0_1_0::PluginPre<super::state::CallState>),
    /// Built against 0.2.0.
    V0_2_0(v0_2_0::PluginPre<super::state::CallState>),
    /// Built against 0.3.0.
    V0_3_0(v0_3_0::PluginPre<super::state::CallState>),
    /// Built against 0.4.0.
    V0_4_0(v0_4_0::PluginPre<super::state::CallState>),
}

/// An instantiated plugin, by contract version, with what its calls pass for the system: before 0.4.0 the
/// config (the system's id and properties, which a kept instance shares with every call it serves: built
/// once, not at every call), since 0.4.0 the guest's `system` resource, made with that config once per
/// instance (`None` until a call for a system needs it: `describe` has none); lives in the store it was
/// instantiated in.
pub enum Instance {
    /// Built against 0.1.0.
    V0_1_0(v0_1_0::Plugin, v0_1_0::provisio::connector::types::Config),
    /// Built against 0.2.0.
    V0_2_0(v0_2_0::Plugin, v0_2_0::provisio::connector::types::Config),
    /// Built against 0.3.0.
    V0_3_0(v0_3_0::Plugin, v0_3_0::provisio::connector::types::Config),
    /// Built against 0.4.0.
    V0_4_0(v0_4_0::Plugin, Option<wasmtime::component::ResourceAny>),
}

/// What every contract version has in common, in terms of the generated modules `wit` (types) and
/// `wit_host` (host imports): the host imports (the version's own `send` and others are `$host_import`,
/// e.g. [`send_import!`]), entity kinds, operations, the call config and page requests. Expanded inside each
/// version's module.
macro_rules! common {
    ($($host_import:tt)*) => {
        impl wit::Host for CallState {}

        /// A guest's request in the host's terms.
        fn http_request(request: wit_host::HttpRequest) -> outbound::HttpRequest {
            outbound::HttpRequest {
                upstream: request.upstream,
                method: request.method,
                path: request.path,
                headers: request.headers,
                body: request.body,
            }
        }

        /// Why the host sent no request, in the guest's terms.
        fn http_error(e: outbound::HttpError) -> wit_host::HttpError {
            match e {
                outbound::HttpError::Denied(m) => wit_host::HttpError::Denied(m),
                outbound::HttpError::Timeout(m) => wit_host::HttpError::Timeout(m),
                outbound::HttpError::Unreachable(m) => wit_host::HttpError::Unreachable(m),
                outbound::HttpError::AuthFailed(m) => wit_host::HttpError::AuthFailed(m),
                outbound::HttpError::TooLarge(m) => wit_host::HttpError::TooLarge(m),
            }
        }

        impl wit_host::Host for CallState {
            $($host_import)*

            async fn log(&mut self, level: wit_host::LogLevel, message: String) {
                let level = match level {
                    wit_host::LogLevel::Trace => tracing::Level::TRACE,
                    wit_host::LogLevel::Debug => tracing::Level::DEBUG,
                    wit_host::LogLevel::Info => tracing::Level::INFO,
                    wit_host::LogLevel::Warn => tracing::Level::WARN,
                    wit_host::LogLevel::Error => tracing::Level::ERROR,
                };
                self.guest_log(level, &message);
            }
        }

        impl From<host_types::EntityKind> for wit::EntityKind {
            fn from(k: host_types::EntityKind) -> Self {
                match k {
                    host_types::EntityKind::User => wit::EntityKind::User,
                    host_types::EntityKind::Group => wit::EntityKind::Group,
                }
            }
        }

        impl From<wit::EntityKind> for host_types::EntityKind {
            fn from(k: wit::EntityKind) -> Self {
                match k {
                    wit::EntityKind::User => host_types::EntityKind::User,
                    wit::EntityKind::Group => host_types::EntityKind::Group,
                }
            }
        }

        impl From<wit::Operation> for host_types::Operation {
            fn from(o: wit::Operation) -> Self {
                use host_types::Operation as O;
                match o {
                    wit::Operation::TestConnection => O::TestConnection,
                    wit::Operation::Read => O::Read,
                    wit::Operation::Get => O::Get,
                    wit::Operation::Create => O::Create,
                    wit::Operation::Replace => O::Replace,
                    wit::Operation::Patch => O::Patch,
                    wit::Operation::Delete => O::Delete,
                }
            }
        }

        fn property(p: wit::PropertySpec) -> host_types::PropertySpec {
            host_types::PropertySpec {
                name: p.name,
                required: p.required,
                secret: p.secret,
                default_value: p.default_value,
                doc: p.doc,
            }
        }

        /// Builds the guest's view of a system's configuration.
        pub fn config(system_id: &str, properties: &[(String, String)]) -> wit::Config {
            wit::Config {
                system_id: system_id.to_string(),
                properties: properties.to_vec(),
            }
        }

        /// Converts a page request.
        pub fn page_request(r: &host_types::PageRequest) -> wit::PageRequest {
            wit::PageRequest {
                kind: r.kind.into(),
                cursor: r.cursor.clone(),
                page_size: r.page_size,
                filter: r.filter.clone(),
                delta_since: r.delta_since.clone(),
            }
        }
    };
}
pub(crate) use common;

/// The `send` import, in terms of a version's `wit_host`; `$config` is the parameter contracts before 0.4.0
/// declare first (`[_config: wit::Config,]`, ignored: the host always sends to the current call's system) or
/// nothing. Expanded inside [`common!`]'s host impl.
macro_rules! send_import {
    ([$($config:tt)*]) => {
        async fn send(
            &mut self,
            $($config)*
            request: wit_host::HttpRequest,
        ) -> Result<wit_host::HttpResponse, wit_host::HttpError> {
            self.send_http(http_request(request))
                .await
                .map(|r| wit_host::HttpResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                })
                .map_err(http_error)
        }
    };
}
pub(crate) use send_import;

/// The `send-list` import (since 0.3.0), `$config` as for [`send_import!`].
macro_rules! send_list_import {
    ([$($config:tt)*]) => {
        async fn send_list(
            &mut self,
            $($config)*
            request: wit_host::HttpRequest,
            member: String,
        ) -> Result<wit_host::ListedResponse, wit_host::HttpError> {
            let (r, items) = self
                .send_list(http_request(request), &member)
                .await
                .map_err(http_error)?;
            Ok(wit_host::ListedResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
                items,
            })
        }
    };
}
pub(crate) use send_list_import;

/// What 0.3.0 and later versions share: a page's texts, the elements the call's last `send-list` kept first.
/// Expanded inside each such version's module.
macro_rules! since_0_3_0 {
    () => {
        /// A page's texts: the elements the call's last `send-list` kept, as many as the page lists (at most
        /// `page_size`), then its own.
        pub fn page(p: wit::Page, page_size: u32, state: &mut CallState) -> Result<host_types::PageTexts, String> {
            let mut entities = state.take_listed(p.listed, page_size)?;
            if entities.is_empty() {
                entities = p.entities;
            } else {
                entities.extend(p.entities);
            }
            Ok(host_types::PageTexts {
                entities,
                next_cursor: p.next_cursor,
                total: p.total,
            })
        }
    };
}
pub(crate) use since_0_3_0;

/// The host's descriptor from any version's descriptor `d` (the fields 0.1.0 has, which every version keeps),
/// moved out of `d`. Expanded inside a version's module.
macro_rules! host_descriptor {
    ($d:ident) => {
        host_types::Descriptor {
            name: $d.name,
            version: $d.version,
            entity_kinds: $d.entity_kinds.into_iter().map(Into::into).collect(),
            operations: $d.operations.into_iter().map(Into::into).collect(),
            properties: $d.properties.into_iter().map(property).collect(),
            default_read_transformation: $d.default_read_transformation,
            default_write_transformation: $d.default_write_transformation,
        }
    };
}
pub(crate) use host_descriptor;

/// The host's connector error from any version's error `$e`: the cases 0.1.0 has, then the version's own
/// (`$case => $error`). Expanded inside a version's module.
macro_rules! host_connector_error {
    ($e:expr $(, $case:pat => $error:expr)* $(,)?) => {
        match $e {
            wit::ConnectorError::InvalidConfig(message) => host_types::ConnectorError::InvalidConfig { message },
            wit::ConnectorError::Unauthorized(message) => host_types::ConnectorError::Unauthorized { message },
            wit::ConnectorError::NotFound(message) => host_types::ConnectorError::NotFound { message },
            wit::ConnectorError::Conflict(message) => host_types::ConnectorError::Conflict { message },
            wit::ConnectorError::Throttled(t) => host_types::ConnectorError::Throttled {
                retry_after_ms: t.retry_after_ms,
                message: t.detail,
            },
            wit::ConnectorError::Transient(message) => host_types::ConnectorError::Transient { message },
            wit::ConnectorError::Rejected(r) => host_types::ConnectorError::Rejected {
                status: r.status,
                message: r.detail,
            },
            wit::ConnectorError::Unsupported(message) => host_types::ConnectorError::Unsupported { message },
            $($case => $error,)*
        }
    };
}
pub(crate) use host_connector_error;

/// What 0.2.0 and later versions share: the descriptor with its 0.2.0 extensions, and the connector errors with
/// `too-large`. Expanded inside each such version's module.
macro_rules! since_0_2_0 {
    () => {
        /// The 0.1.0 descriptor and what 0.2.0 adds to it.
        pub fn descriptor(d: wit::Descriptor) -> (host_types::Descriptor, host_types::DescriptorExtensions) {
            let extensions = host_types::DescriptorExtensions {
                default_proxy_read_transformation: d.default_proxy_read_transformation,
                default_proxy_write_transformation: d.default_proxy_write_transformation,
            };
            (super::host_descriptor!(d), extensions)
        }

        impl From<wit::ConnectorError> for host_types::ConnectorError {
            fn from(e: wit::ConnectorError) -> Self {
                super::host_connector_error!(e,
                    // The host's error kinds predate 0.2.0: a payload refused for its size is a rejection with
                    // the status that says so, which jobs (no retry), the proxy (4xx) and the API already handle.
                    wit::ConnectorError::TooLarge(message) => host_types::ConnectorError::Rejected { status: 413, message },
                )
            }
        }
    };
}
pub(crate) use since_0_2_0;
