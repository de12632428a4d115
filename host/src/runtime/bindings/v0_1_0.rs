//! Bindings for contract `provisio:connector@0.1.0` (frozen: `wit/since_v0.1.0`), and conversions between
//! its generated types and the host's own (`crate::connector`).

use wasmtime::component::HasSelf;

use crate::connector as host_types;
use crate::outbound;
use crate::runtime::state::CallState;

wasmtime::component::bindgen!({
    path: "../wit/since_v0.1.0",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

use self::provisio::connector::host as wit_host;
use self::provisio::connector::types as wit;
pub use exports::provisio::connector::connector as guest;

/// The semantic version of this contract.
pub const VERSION: &str = "0.1.0";

/// Adds this version's host imports to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

impl wit::Host for CallState {}

impl wit_host::Host for CallState {
    async fn send(
        &mut self,
        _config: wit::Config,
        request: wit_host::HttpRequest,
    ) -> Result<wit_host::HttpResponse, wit_host::HttpError> {
        let request = outbound::HttpRequest {
            upstream: request.upstream,
            method: request.method,
            path: request.path,
            headers: request.headers,
            body: request.body,
        };
        self.send_http(request)
            .await
            .map(|r| wit_host::HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| match e {
                outbound::HttpError::Denied(m) => wit_host::HttpError::Denied(m),
                outbound::HttpError::Timeout(m) => wit_host::HttpError::Timeout(m),
                outbound::HttpError::Unreachable(m) => wit_host::HttpError::Unreachable(m),
                outbound::HttpError::AuthFailed(m) => wit_host::HttpError::AuthFailed(m),
                outbound::HttpError::TooLarge(m) => wit_host::HttpError::TooLarge(m),
            })
    }

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

impl From<wit::Descriptor> for host_types::Descriptor {
    fn from(d: wit::Descriptor) -> Self {
        host_types::Descriptor {
            name: d.name,
            version: d.version,
            entity_kinds: d.entity_kinds.into_iter().map(Into::into).collect(),
            operations: d.operations.into_iter().map(Into::into).collect(),
            properties: d
                .properties
                .into_iter()
                .map(|p| host_types::PropertySpec {
                    name: p.name,
                    required: p.required,
                    secret: p.secret,
                    default_value: p.default_value,
                    doc: p.doc,
                })
                .collect(),
            default_read_transformation: d.default_read_transformation,
            default_write_transformation: d.default_write_transformation,
        }
    }
}

impl From<wit::ConnectorError> for host_types::ConnectorError {
    fn from(e: wit::ConnectorError) -> Self {
        use host_types::ConnectorError as E;
        match e {
            wit::ConnectorError::InvalidConfig(message) => E::InvalidConfig { message },
            wit::ConnectorError::Unauthorized(message) => E::Unauthorized { message },
            wit::ConnectorError::NotFound(message) => E::NotFound { message },
            wit::ConnectorError::Conflict(message) => E::Conflict { message },
            wit::ConnectorError::Throttled(t) => E::Throttled {
                retry_after_ms: t.retry_after_ms,
                message: t.detail,
            },
            wit::ConnectorError::Transient(message) => E::Transient { message },
            wit::ConnectorError::Rejected(r) => E::Rejected {
                status: r.status,
                message: r.detail,
            },
            wit::ConnectorError::Unsupported(message) => E::Unsupported { message },
        }
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

pub use wit::Page as WitPage;
