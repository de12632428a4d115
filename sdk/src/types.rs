//! Helpers on the contract's types.

use crate::{Config, Descriptor, EntityKind, Error, Operation, Page, PropertySpec, Rejection, Throttle};

/// The property the host sets on job calls when it resolves create conflicts itself (value `host`).
pub const HOST_CONFLICT_RESOLUTION: &str = "provisio.conflict.resolution";

impl Config {
    /// A configuration for the system `system_id` without properties (mostly for tests); add them with
    /// [`with`](Config::with).
    pub fn new(system_id: impl Into<String>) -> Self {
        Config {
            system_id: system_id.into(),
            properties: Vec::new(),
        }
    }

    /// Adds (or overrides) a property.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.properties.retain(|(n, _)| *n != name);
        self.properties.push((name, value.into()));
        self
    }

    /// The value of the property `name` (exact, case-sensitive name, as SAP spells them), or `None` when it is
    /// absent or blank. Surrounding whitespace is trimmed.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of the property `name`, or `default` when it is absent or blank.
    pub fn property_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.property(name).unwrap_or(default)
    }

    /// The value of the required property `name`, or [`Error::InvalidConfig`] naming it.
    pub fn require(&self, name: &str) -> Result<&str, Error> {
        self.property(name)
            .ok_or_else(|| Error::invalid_config(format!("The property `{name}` is required but not set.")))
    }

    /// Whether the boolean property `name` is `true` (case-insensitive); `false` when absent or anything else.
    pub fn flag(&self, name: &str) -> bool {
        self.flag_or(name, false)
    }

    /// Whether the host resolves create conflicts itself (during jobs it looks the entity up by the system's
    /// unique attributes, so that it knows the entity existed before). A connector that resolves conflicts
    /// inside `create` returns the `conflict` error instead when this is set.
    pub fn host_resolves_conflicts(&self) -> bool {
        self.property(HOST_CONFLICT_RESOLUTION)
            .is_some_and(|v| v.eq_ignore_ascii_case("host"))
    }

    /// The boolean property `name`: `true`/`false` (case-insensitive), `default` when absent or blank, and
    /// `default` for any other value too.
    pub fn flag_or(&self, name: &str, default: bool) -> bool {
        match self.property(name) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        }
    }

    /// The properties whose names start with `prefix`, as (rest of the name, value) pairs, in the order given;
    /// e.g. `with_prefix("ips.http.header.")` yields the extra headers an admin configured. Blank values are
    /// skipped.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.properties.iter().filter_map(move |(n, v)| {
            let rest = n.strip_prefix(prefix)?;
            let v = v.trim();
            (!rest.is_empty() && !v.is_empty()).then_some((rest, v))
        })
    }
}

impl EntityKind {
    /// `user` or `group`, as the WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Group => "group",
        }
    }

    /// The SCIM resource endpoint of this kind: `Users` or `Groups`.
    pub fn scim_endpoint(self) -> &'static str {
        match self {
            EntityKind::User => "Users",
            EntityKind::Group => "Groups",
        }
    }
}

impl Operation {
    /// Every operation of the contract.
    pub const ALL: [Operation; 7] = [
        Operation::TestConnection,
        Operation::Read,
        Operation::Get,
        Operation::Create,
        Operation::Replace,
        Operation::Patch,
        Operation::Delete,
    ];
}

impl Descriptor {
    /// A descriptor with a name (the connector type admins name, e.g. `scim`) and a semantic version, and
    /// nothing else yet: add entity kinds, operations, properties and transformations with the builders.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Descriptor {
            name: name.into(),
            version: version.into(),
            entity_kinds: Vec::new(),
            operations: Vec::new(),
            properties: Vec::new(),
            default_read_transformation: None,
            default_write_transformation: None,
            default_proxy_read_transformation: None,
            default_proxy_write_transformation: None,
        }
    }

    /// Sets the supported entity kinds.
    pub fn entity_kinds(mut self, kinds: impl IntoIterator<Item = EntityKind>) -> Self {
        self.entity_kinds = kinds.into_iter().collect();
        self
    }

    /// Sets the supported operations ([`Operation::ALL`] for all of them).
    pub fn operations(mut self, operations: impl IntoIterator<Item = Operation>) -> Self {
        self.operations = operations.into_iter().collect();
        self
    }

    /// Adds a property the connector understands.
    pub fn property(mut self, spec: PropertySpec) -> Self {
        self.properties.push(spec);
        self
    }

    /// Sets the default read transformation (SAP Identity Provisioning JSON dialect).
    pub fn read_transformation(mut self, json: impl Into<String>) -> Self {
        self.default_read_transformation = Some(json.into());
        self
    }

    /// Sets the default write transformation (SAP Identity Provisioning JSON dialect).
    pub fn write_transformation(mut self, json: impl Into<String>) -> Self {
        self.default_write_transformation = Some(json.into());
        self
    }

    /// Sets the default read transformation of *proxy* systems, when it differs from the source default
    /// (contract 0.2.0).
    pub fn proxy_read_transformation(mut self, json: impl Into<String>) -> Self {
        self.default_proxy_read_transformation = Some(json.into());
        self
    }

    /// Sets the default write transformation of *proxy* systems, when it differs from the target default
    /// (contract 0.2.0).
    pub fn proxy_write_transformation(mut self, json: impl Into<String>) -> Self {
        self.default_proxy_write_transformation = Some(json.into());
        self
    }
}

impl PropertySpec {
    /// An optional, non-secret property without default, with a one-line doc for admins.
    pub fn new(name: impl Into<String>, doc: impl Into<String>) -> Self {
        PropertySpec {
            name: name.into(),
            required: false,
            secret: false,
            default_value: None,
            doc: doc.into(),
        }
    }

    /// Marks the property as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the property as secret: encrypted at rest, never returned, never passed to the connector.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Sets the value used when the admin sets none.
    pub fn default_value(mut self, value: impl Into<String>) -> Self {
        self.default_value = Some(value.into());
        self
    }
}

impl Page {
    /// A page from JSON entities.
    pub fn from_values(
        entities: impl IntoIterator<Item = serde_json::Value>,
        next_cursor: Option<String>,
        total: Option<u64>,
    ) -> Self {
        Page {
            listed: 0,
            entities: entities.into_iter().map(|e| crate::json::text(&e)).collect(),
            next_cursor,
            total,
        }
    }
}

impl Error {
    /// [`Error::InvalidConfig`]: a property is missing or wrong; the text names it.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }

    /// [`Error::Unauthorized`]: the credentials were refused.
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Error::Unauthorized(msg.into())
    }

    /// [`Error::NotFound`]: the entity does not exist.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    /// [`Error::Conflict`]: a uniqueness conflict or a stale version.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    /// [`Error::Throttled`]: the system asked to slow down, optionally saying for how long.
    pub fn throttled(retry_after_ms: Option<u64>, detail: impl Into<String>) -> Self {
        Error::Throttled(Throttle {
            retry_after_ms,
            detail: detail.into(),
        })
    }

    /// [`Error::Transient`]: a failure that may pass (5xx, timeout, unreachable).
    pub fn transient(msg: impl Into<String>) -> Self {
        Error::Transient(msg.into())
    }

    /// [`Error::Rejected`]: the system rejected the request for good, with its HTTP status. Status 0 means the
    /// request was rejected before any HTTP status was known (e.g. the connector's input was not valid JSON).
    pub fn rejected(status: u16, detail: impl Into<String>) -> Self {
        Error::Rejected(Rejection {
            status,
            detail: detail.into(),
        })
    }

    /// [`Error::TooLarge`]: the payload is too large for the system (HTTP 413) or the host's size caps.
    pub fn too_large(msg: impl Into<String>) -> Self {
        Error::TooLarge(msg.into())
    }

    /// [`Error::Unsupported`] for an operation or option, e.g. `unsupported("delta read")`.
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Error::Unsupported(format!("This connector does not support {what}."))
    }

    /// The human-readable text the variant carries.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidConfig(m)
            | Error::Unauthorized(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Transient(m)
            | Error::Unsupported(m)
            | Error::TooLarge(m) => m,
            Error::Throttled(t) => &t.detail,
            Error::Rejected(r) => &r.detail,
        }
    }

    /// The variant's name as the WIT spells it (`not-found`, `transient`, …), for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) => "invalid-config",
            Error::Unauthorized(_) => "unauthorized",
            Error::NotFound(_) => "not-found",
            Error::Conflict(_) => "conflict",
            Error::Throttled(_) => "throttled",
            Error::Transient(_) => "transient",
            Error::Rejected(_) => "rejected",
            Error::Unsupported(_) => "unsupported",
            Error::TooLarge(_) => "too-large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_helpers() {
        let cfg = Config::new("s1")
            .with("URL", " http://x/v2 ")
            .with("blank", "  ")
            .with("scim.support.patch.operation", "TRUE")
            .with("ips.http.header.X-A", "1")
            .with("ips.http.header.X-B", "2");
        assert_eq!(cfg.property("URL"), Some("http://x/v2"));
        assert_eq!(cfg.property("url"), None);
        assert_eq!(cfg.property("blank"), None);
        assert_eq!(cfg.property_or("blank", "d"), "d");
        assert!(cfg.flag("scim.support.patch.operation"));
        assert!(!cfg.flag("missing"));
        assert!(cfg.flag_or("missing", true));
        let headers: Vec<_> = cfg.with_prefix("ips.http.header.").collect();
        assert_eq!(headers, vec![("X-A", "1"), ("X-B", "2")]);
        assert!(matches!(cfg.require("nope"), Err(Error::InvalidConfig(m)) if m.contains("`nope`")));
    }

    #[test]
    fn descriptor_builder() {
        let d = Descriptor::new("x", "1.0.0")
            .entity_kinds([EntityKind::User])
            .operations(Operation::ALL)
            .property(PropertySpec::new("Password", "secret").secret().required());
        assert_eq!(d.operations.len(), 7);
        assert!(d.properties[0].secret && d.properties[0].required);
    }
}
