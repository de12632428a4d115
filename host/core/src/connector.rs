//! The connector contract as the rest of the host sees it: plain Rust types, independent of the WIT
//! version a plugin was built against. Each binding module under `runtime::bindings` converts to and from
//! these (Zed's pattern), so that jobs, the proxy and the API never see generated types.

use serde::{Deserialize, Serialize};

/// The kind of entity an operation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// A user.
    User,
    /// A group.
    Group,
}

impl EntityKind {
    /// The name used in transformations, logs and URLs (`user`, `group`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Group => "group",
        }
    }
}

impl std::str::FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "user" | "users" => Ok(EntityKind::User),
            "group" | "groups" => Ok(EntityKind::Group),
            other => Err(format!("unknown entity type {other:?} (expected user or group)")),
        }
    }
}

/// An operation a connector may support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Check reachability and credentials.
    TestConnection,
    /// Read pages of entities.
    Read,
    /// Read one entity by id.
    Get,
    /// Create an entity.
    Create,
    /// Replace an entity.
    Replace,
    /// Apply a SCIM PatchOp.
    Patch,
    /// Delete an entity.
    Delete,
}

/// A property a connector understands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertySpec {
    /// The property name as admins write it (`URL`, `xsuaa.origin`, …).
    pub name: String,
    /// Whether a system of this type needs it.
    pub required: bool,
    /// Secret values are encrypted at rest, masked in answers and never given to the connector.
    pub secret: bool,
    /// The value used when the admin sets none.
    pub default_value: Option<String>,
    /// One line for admins.
    pub doc: String,
}

/// What a connector plugin declares about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The connector type (`scim`, `xsuaa`, …).
    pub name: String,
    /// The connector's version.
    pub version: String,
    /// Entity kinds it handles.
    pub entity_kinds: Vec<EntityKind>,
    /// Operations it supports.
    pub operations: Vec<Operation>,
    /// Properties it understands.
    pub properties: Vec<PropertySpec>,
    /// Default read transformation (JSON text).
    pub default_read_transformation: Option<String>,
    /// Default write transformation (JSON text).
    pub default_write_transformation: Option<String>,
}

/// What contract 0.2.0 adds to a connector's descriptor; empty for plugins built for 0.1.0. Kept beside
/// [`Descriptor`] (not in it), so that code written against the 0.1.0 shape keeps compiling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DescriptorExtensions {
    /// Default read transformation of proxy systems, when it differs from the source default.
    pub default_proxy_read_transformation: Option<String>,
    /// Default write transformation of proxy systems, when it differs from the target default.
    pub default_proxy_write_transformation: Option<String>,
}

impl Descriptor {
    /// Whether the property with this name is secret. Properties the connector does not declare are
    /// treated as secret when their name says so (`Password`, `…secret…`, `…token`), so that a typo in a
    /// connector's descriptor never leaks a credential.
    pub fn is_secret(&self, name: &str) -> bool {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.secret)
            .unwrap_or(false)
            || looks_secret(name)
    }
}

/// The host's own rule for secret property names, applied whatever a connector declares. Names are compared
/// on their letters and digits only, so `X-Api-Key`, `api_key` and `ApiKey` are one name.
pub fn looks_secret(name: &str) -> bool {
    let compact: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const CONTAINS: [&str; 5] = ["secret", "privatekey", "apikey", "credential", "passphrase"];
    const ENDS: [&str; 9] = [
        "password", "passwd", "pwd", "token", "tokens", "secret", "secrets", "key", "keys",
    ];
    CONTAINS.iter().any(|part| compact.contains(part)) || ENDS.iter().any(|end| compact.ends_with(end))
}

/// One `read` request.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    /// Users or groups.
    pub kind: EntityKind,
    /// Cursor from the previous page, `None` for the first.
    pub cursor: Option<String>,
    /// Wanted page size.
    pub page_size: u32,
    /// Extra SCIM filter.
    pub filter: Option<String>,
    /// Delta read: only entities changed after this instant (RFC 3339).
    pub delta_since: Option<String>,
}

impl PageRequest {
    /// The first page of a full read.
    pub fn first(kind: EntityKind, page_size: u32) -> Self {
        PageRequest {
            kind,
            cursor: None,
            page_size,
            filter: None,
            delta_since: None,
        }
    }
}

/// One page of native entities.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The entities, each in the remote system's JSON.
    pub entities: Vec<serde_json::Value>,
    /// Where the next page starts, `None` after the last.
    pub next_cursor: Option<String>,
    /// Total matching entities, when known.
    pub total: Option<u64>,
}

/// One page of native entities as the connector returned them: JSON texts, not parsed (for a caller that
/// recognises texts it has seen before, e.g. the proxy's read memo). Not checked to be JSON: the caller
/// parses what it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PageTexts {
    /// The entities, each the JSON text of one entity in the remote system's form.
    pub entities: Vec<String>,
    /// Where the next page starts, `None` after the last.
    pub next_cursor: Option<String>,
    /// Total matching entities, when known.
    pub total: Option<u64>,
}

impl ConnectorError {
    /// The message, whatever the kind, to mask what must not reach a caller.
    pub fn message_mut(&mut self) -> &mut String {
        match self {
            ConnectorError::InvalidConfig { message }
            | ConnectorError::Unauthorized { message }
            | ConnectorError::NotFound { message }
            | ConnectorError::Conflict { message }
            | ConnectorError::Throttled { message, .. }
            | ConnectorError::Transient { message }
            | ConnectorError::Rejected { message, .. }
            | ConnectorError::Unsupported { message } => message,
        }
    }
}

/// An error a connector reported: the remote system's answer, classified.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectorError {
    /// The system's configuration is incomplete or wrong.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// What is wrong, naming the property.
        message: String,
    },
    /// The remote system refused the credentials.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The remote system's words.
        message: String,
    },
    /// The entity does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// Uniqueness conflict or stale version.
    #[error("conflict: {message}")]
    Conflict {
        /// The remote system's words.
        message: String,
    },
    /// The remote system asked to slow down.
    #[error("throttled: {message}")]
    Throttled {
        /// `Retry-After`, in milliseconds, when given.
        retry_after_ms: Option<u64>,
        /// The remote system's words.
        message: String,
    },
    /// A failure that may pass (5xx, timeout, unreachable).
    #[error("transient failure: {message}")]
    Transient {
        /// What failed.
        message: String,
    },
    /// A permanent rejection (another 4xx).
    #[error("rejected with HTTP {status}: {message}")]
    Rejected {
        /// The remote HTTP status.
        status: u16,
        /// The remote system's words.
        message: String,
    },
    /// Not supported by the connector or its system.
    #[error("unsupported: {message}")]
    Unsupported {
        /// What is not supported.
        message: String,
    },
}
