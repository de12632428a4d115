//! Systems as admins manage them: validation of a definition against its connector, secrets split off by
//! what the connector declares, transformations validated before anything is stored, and Test Connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::connector::Descriptor;
use crate::outbound::{Credentials, SystemEndpoint};
use crate::plugins::Plugins;
use crate::runtime::{CallError, CallTarget, LoadedPlugin};
use crate::secrets::{Secret, SystemSecrets};
use crate::store::systems::{Role, System, SystemSpec, VersionNote};
use crate::store::{StoreError, Stores};

/// What replaces a secret in every answer.
pub const MASK: &str = "********";

/// The property that caps requests per second towards a system.
pub const RATE_LIMIT_PROPERTY: &str = "provisio.rate.limit";

/// The Test Connection success message SAP admins know.
pub const CONNECTION_OK: &str = "Connection to the selected target system was established successfully.";

/// Errors of system management, each with a message for the admin.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The definition is invalid.
    #[error("{0}")]
    Invalid(String),
    /// No such system.
    #[error("{0}")]
    NotFound(String),
    /// A name is taken.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("{0}")]
    Internal(String),
    /// The database does not answer (for now: try again).
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for SystemError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => SystemError::Conflict(m),
            StoreError::NotFound(m) => SystemError::NotFound(m),
            e @ StoreError::Backend(_) => SystemError::Unavailable(e.to_string()),
            other => SystemError::Internal(other.to_string()),
        }
    }
}

/// A system definition as the admin API receives it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInput {
    /// Unique name.
    pub name: String,
    /// Connector type (`scim`, `xsuaa`, …).
    #[serde(rename = "type")]
    pub connector: String,
    /// Pinned connector version; latest when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// `source`, `target` or `proxy`.
    pub role: Role,
    /// Properties; scalar values are taken as text.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// For targets: ids of the sources it receives from.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The transformation; the connector's default when absent. For proxies `{"read": …, "write": …}`.
    #[serde(default)]
    pub transformation: Option<Value>,
    /// Properties the admin explicitly turns from sealed secrets into plain values (their value must be
    /// entered in clear). Without it a sealed value stays sealed, whatever the connector declares now.
    #[serde(default)]
    pub declassify: Vec<String>,
    /// Why the transformation changes: the description of the new transformation version, if it makes one.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the system takes part in provisioning (as in its JSON, so that a GET can be PUT back); left
    /// as it is when absent, new systems are enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Read-only state a system's JSON shows (its quarantine, its last Test Connection): accepted so that a
    /// GET can be PUT back, and ignored.
    #[serde(default, rename = "quarantine")]
    pub read_only_quarantine: Option<Value>,
    /// See [`SystemInput::read_only_quarantine`].
    #[serde(default, rename = "lastConnectionTest")]
    pub read_only_last_test: Option<Value>,
}

/// A system as the admin API answers it: secrets masked.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Connector type.
    #[serde(rename = "type")]
    pub connector: String,
    /// Pinned version, if any.
    pub version: Option<String>,
    /// Role.
    pub role: Role,
    /// Properties, secrets masked.
    pub properties: BTreeMap<String, String>,
    /// Sources (targets only).
    pub sources: Vec<String>,
    /// The stored transformation, `null` when the connector default applies.
    pub transformation: Option<Value>,
    /// Its version number.
    pub transformation_version: Option<i64>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// Whether it takes part in provisioning.
    pub enabled: bool,
    /// Its quarantine (`{"since", "reason", "message", "nextProbeAt", "probes"}`), `null` when it has none.
    pub quarantine: Option<crate::store::systems::Quarantine>,
    /// Its last Test Connection (`{"ok", "message", "at"}`), `null` when it was never tested.
    pub last_connection_test: Option<crate::store::systems::ConnectionTest>,
}

impl From<&System> for SystemView {
    fn from(s: &System) -> Self {
        let mut properties = s.spec.properties.clone();
        for name in s.spec.secrets.names() {
            properties.insert(name.to_string(), MASK.to_string());
        }
        SystemView {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            connector: s.spec.connector.clone(),
            version: s.spec.connector_version.clone(),
            role: s.spec.role,
            properties,
            sources: s.spec.sources.clone(),
            transformation: s.spec.transformation.clone(),
            transformation_version: s.transformation_version,
            created_at: s.created_at.clone(),
            updated_at: s.updated_at.clone(),
            enabled: s.enabled,
            quarantine: s.health.quarantine.clone(),
            last_connection_test: s.health.last_test.clone(),
        }
    }
}

/// The outcome of Test Connection.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConnectionCheck {
    /// Whether the system answered and accepted the credentials.
    pub ok: bool,
    /// What happened, for the admin.
    pub message: String,
}

/// System management over the store and the plugin registry.
#[derive(Clone)]
pub struct Systems {
    store: Stores,
    plugins: Arc<Plugins>,
}

impl Systems {
    /// Wires the pieces.
    pub fn new(store: Stores, plugins: Arc<Plugins>) -> Self {
        Systems { store, plugins }
    }

    /// Validates and stores a new system.
    pub async fn create(&self, input: SystemInput) -> Result<System, SystemError> {
        self.create_by(input, "").await
    }

    /// [`create`](Self::create) by `author`, recorded with the first transformation version.
    pub async fn create_by(&self, input: SystemInput, author: &str) -> Result<System, SystemError> {
        let note = version_note(&input, author)?;
        // The version checked in `validate` cannot be removed before the system is stored.
        let _pinning = self.plugins.pinning().await;
        let enabled = input.enabled;
        let spec = self.validate(input, None).await?;
        let created = self.store.systems.create_noted(spec, &note).await?;
        self.apply_enabled(created, enabled).await
    }

    /// Validates and replaces a system. Secrets sent back masked keep their stored value.
    pub async fn replace(&self, id: &str, input: SystemInput) -> Result<System, SystemError> {
        self.replace_by(id, input, "").await
    }

    /// [`replace`](Self::replace) by `author`, recorded with a new transformation version (with the input's
    /// description) when the transformation changes.
    pub async fn replace_by(&self, id: &str, input: SystemInput, author: &str) -> Result<System, SystemError> {
        let note = version_note(&input, author)?;
        let current = self.get(id).await?;
        // As in `create`: the version checked cannot be removed before the system is stored.
        let _pinning = self.plugins.pinning().await;
        let enabled = input.enabled;
        let spec = self.validate(input, Some(&current)).await?;
        let replaced = self.store.systems.replace_noted(id, spec, &note).await?;
        self.apply_enabled(replaced, enabled).await
    }

    /// Sets the state an input asked for, when it differs from the stored one.
    async fn apply_enabled(&self, system: System, enabled: Option<bool>) -> Result<System, SystemError> {
        match enabled {
            Some(enabled) if enabled != system.enabled => self.set_enabled(&system.id, enabled).await,
            _ => Ok(system),
        }
    }

    /// One system.
    pub async fn get(&self, id: &str) -> Result<System, SystemError> {
        self.store
            .systems
            .get(id)
            .await?
            .ok_or_else(|| SystemError::NotFound(format!("no system with id {id}")))
    }

    /// All systems.
    pub async fn list(&self) -> Result<Vec<System>, SystemError> {
        Ok(self.store.systems.list().await?)
    }

    /// Deletes a system in one store transaction; refused (409) while targets still receive from it or a
    /// run of it is under way — the store checks that in the same transaction.
    pub async fn delete(&self, id: &str) -> Result<(), SystemError> {
        Ok(self.store.systems.delete(id).await?)
    }

    /// Enables or disables a system (`POST /api/v1/systems/{id}/enable|disable`).
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<System, SystemError> {
        Ok(self.store.systems.set_enabled(id, enabled).await?)
    }

    /// The plugin a system runs on.
    pub fn plugin_for(&self, system: &System) -> Result<Arc<LoadedPlugin>, SystemError> {
        self.plugins
            .resolve(&system.spec.connector, system.spec.connector_version.as_deref())
            .ok_or_else(|| match &system.spec.connector_version {
                Some(v) => SystemError::Invalid(format!("connector {}@{v} is not loaded", system.spec.connector)),
                None => SystemError::Invalid(format!("connector {:?} is not loaded", system.spec.connector)),
            })
    }

    /// Whether `plugin` is still the one `system` resolves to (an upgrade, a rollback or a pin swaps it), so
    /// that views cached with it are still good.
    pub fn runs_on(&self, system: &System, plugin: &Arc<LoadedPlugin>) -> bool {
        self.plugin_for(system)
            .is_ok_and(|current| Arc::ptr_eq(&current, plugin))
    }

    /// What a plugin call for this system needs: the properties the guest may see, and the endpoint.
    pub fn call_target(&self, system: &System, descriptor: &Descriptor) -> Result<CallTarget, SystemError> {
        // The one place a system's secrets are opened: to reach the system.
        let secrets = self.store.open_secrets(&system.spec.secrets)?;
        let mut all = system.spec.properties.clone();
        all.extend(secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_string())));
        let url = |name: &str| -> Result<Option<Url>, SystemError> {
            let Some(text) = all.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            let url = Url::parse(text).map_err(|e| SystemError::Invalid(format!("{name} is not a valid URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(SystemError::Invalid(format!("{name} must be an http or https URL")));
            }
            // Credentials belong in User and Password, where they are sealed and masked.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(SystemError::Invalid(format!(
                    "{name} must not carry credentials; put them in User and Password"
                )));
            }
            Ok(Some(url))
        };
        let rate = all
            .get(RATE_LIMIT_PROPERTY)
            .cloned()
            .or_else(|| {
                descriptor
                    .properties
                    .iter()
                    .find(|p| p.name == RATE_LIMIT_PROPERTY)
                    .and_then(|p| p.default_value.clone())
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| *r > 0.0);
        let endpoint = SystemEndpoint {
            system_id: system.id.clone(),
            api: url("URL")?,
            token: url("OAuth2TokenServiceURL")?,
            credentials: Credentials::from_properties(&all).map_err(SystemError::Invalid)?,
            rate_per_second: rate,
            headers: secret_headers(&secrets)?,
        };
        let properties = system
            .spec
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(CallTarget { properties, endpoint })
    }

    /// Test Connection: reachability and credentials, as the connector checks them. The outcome is kept in
    /// the store (the system's `health.last_test`), for every replica and past a restart.
    pub async fn test_connection(&self, id: &str) -> Result<ConnectionCheck, SystemError> {
        let check = self.check_connection(id).await?;
        let test = crate::quarantine::connection_test(check.ok, &check.message);
        if let Err(e) = self.store.systems.record_connection_test(id, &test).await {
            tracing::warn!(system = %id, error = %e, "cannot keep the outcome of a Test Connection");
        }
        Ok(check)
    }

    /// Test Connection without keeping its outcome.
    async fn check_connection(&self, id: &str) -> Result<ConnectionCheck, SystemError> {
        let system = self.get(id).await?;
        let plugin = match self.plugin_for(&system) {
            Ok(p) => p,
            Err(e) => {
                return Ok(ConnectionCheck {
                    ok: false,
                    message: e.to_string(),
                });
            }
        };
        let target = match self.call_target(&system, &plugin.descriptor) {
            Ok(t) => t,
            Err(e) => {
                return Ok(ConnectionCheck {
                    ok: false,
                    message: e.to_string(),
                });
            }
        };
        Ok(match self.plugins.runtime().test_connection(&plugin, &target).await {
            Ok(_) => ConnectionCheck {
                ok: true,
                message: CONNECTION_OK.to_string(),
            },
            Err(CallError::Connector(e)) => ConnectionCheck {
                ok: false,
                message: describe_failure(&e),
            },
            Err(e) => ConnectionCheck {
                ok: false,
                message: e.to_string(),
            },
        })
    }

    async fn validate(&self, input: SystemInput, current: Option<&System>) -> Result<SystemSpec, SystemError> {
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(SystemError::Invalid("name must be 1 to 200 characters".into()));
        }
        let plugin = self
            .plugins
            .resolve(&input.connector, input.version.as_deref())
            .ok_or_else(|| {
                let loaded: Vec<String> = self.plugins.list().iter().map(|p| p.label()).collect();
                SystemError::Invalid(format!(
                    "type {:?}{} is not a loaded connector (loaded: {})",
                    input.connector,
                    input
                        .version
                        .as_deref()
                        .map(|v| format!(" version {v}"))
                        .unwrap_or_default(),
                    loaded.join(", ")
                ))
            })?;
        let descriptor = &plugin.descriptor;
        let mut properties = BTreeMap::new();
        let mut secrets = SystemSecrets::edit_of(current.map(|c| &c.spec.secrets));
        let moved = endpoint_changed(current, &input);
        for (key, value) in input.properties {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                _ => {
                    return Err(SystemError::Invalid(format!(
                        "property {key} must be a string, number or boolean"
                    )));
                }
            };
            if key.trim().is_empty() {
                return Err(SystemError::Invalid("property names must not be empty".into()));
            }
            // Once sealed, a value stays sealed: a plugin upgrade, or a connector that describes itself
            // differently after a restart, must not turn a secret into a plain property.
            let sealed_before = current.is_some_and(|c| c.spec.secrets.contains(&key));
            let declassified = input.declassify.contains(&key);
            if descriptor.is_secret(&key) || (sealed_before && !declassified) {
                if sealed_before && !descriptor.is_secret(&key) {
                    tracing::warn!(
                        system = %name,
                        property = %key,
                        "the connector no longer declares this property secret; its value stays sealed (send it in \"declassify\" to make it plain)"
                    );
                }
                // A masked value sent back means "unchanged" — but only while the secret keeps going where
                // it went: a changed endpoint or connector could carry it to another host.
                if text != MASK {
                    secrets.enter(key, Secret::new(text));
                } else if moved {
                    return Err(SystemError::Invalid(format!(
                        "{key} must be entered again: the system's URL, token URL or type changed"
                    )));
                } else if !secrets.keep(&key) {
                    return Err(SystemError::Invalid(format!(
                        "property {key} is masked, but no value is stored for it"
                    )));
                }
            } else if text == MASK {
                // The mask is never a value: storing it would lose the secret it stood for.
                return Err(SystemError::Invalid(if declassified {
                    format!("{key} is declassified: enter its value in clear, not the mask {MASK}")
                } else {
                    format!("property {key} is not secret; {MASK} is the mask of a secret, not a value")
                }));
            } else {
                properties.insert(key, text);
            }
        }
        if let Some(key) = input
            .declassify
            .iter()
            .find(|k| descriptor.is_secret(k) || !properties.contains_key(*k))
        {
            return Err(SystemError::Invalid(if descriptor.is_secret(key) {
                format!(
                    "{key} cannot be declassified: the connector (or the host's rule for secret names) declares it secret"
                )
            } else {
                format!("{key} is in \"declassify\" but has no value among the properties")
            }));
        }
        if properties
            .get("ProxyType")
            .is_some_and(|v| v.eq_ignore_ascii_case("OnPremise"))
        {
            return Err(SystemError::Invalid(
                "ProxyType OnPremise needs SAP Cloud Connector, which Provisio cannot reach; use ProxyType Internet with a URL Provisio can reach directly".into(),
            ));
        }
        let missing: Vec<&str> = descriptor
            .properties
            .iter()
            .filter(|p| p.required && p.default_value.is_none())
            .filter(|p| !properties.contains_key(&p.name) && !secrets.contains(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(SystemError::Invalid(format!(
                "missing required properties: {}",
                missing.join(", ")
            )));
        }
        let probe = System {
            id: current.map(|c| c.id.clone()).unwrap_or_default(),
            spec: SystemSpec {
                name: name.clone(),
                connector: input.connector.clone(),
                connector_version: input.version.clone(),
                role: input.role,
                properties: properties.clone(),
                secrets: secrets.clone(),
                sources: vec![],
                transformation: None,
            },
            transformation_version: None,
            created_at: String::new(),
            updated_at: String::new(),
            enabled: true,
            health: Default::default(),
        };
        // URLs and credentials are checked now, not at the first job.
        self.call_target(&probe, descriptor)?;
        if !input.sources.is_empty() && input.role != Role::Target {
            return Err(SystemError::Invalid("only target systems have sources".into()));
        }
        for source in &input.sources {
            match self.store.systems.get(source).await? {
                Some(s) if s.spec.role == Role::Source => {}
                Some(s) => {
                    return Err(SystemError::Invalid(format!(
                        "{} is a {:?} system, not a source",
                        s.spec.name, s.spec.role
                    )));
                }
                None => {
                    return Err(SystemError::Invalid(format!("source system {source} does not exist")));
                }
            }
        }
        if let Some(doc) = &input.transformation {
            validate_transformation(input.role, doc)?;
        }
        Ok(SystemSpec {
            name,
            connector: input.connector,
            connector_version: input.version,
            role: input.role,
            properties,
            secrets,
            sources: input.sources,
            transformation: input.transformation,
        })
    }
}

/// The prefix of properties that add a header to every request (SAP's `ips.http.header.<Name>`).
pub const HEADER_PREFIX: &str = "ips.http.header.";

/// Sealed `ips.http.header.*` properties as headers the host attaches itself: a connector passes on only
/// the plain ones it is given.
fn secret_headers(
    secrets: &BTreeMap<String, Secret>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, SystemError> {
    secrets
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix(HEADER_PREFIX)?, value.expose())))
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| {
            let header = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| SystemError::Invalid(format!("{HEADER_PREFIX}{name}: {name:?} is not a header name")))?;
            let mut value = http::HeaderValue::from_str(value.trim()).map_err(|_| {
                SystemError::Invalid(format!("{HEADER_PREFIX}{name}: the value is not a valid header value"))
            })?;
            value.set_sensitive(true);
            Ok((header, value))
        })
        .collect()
}

/// Longest description of a transformation version.
pub const MAX_DESCRIPTION: usize = 1000;

/// The note of the transformation version an input may make: its author and trimmed description.
fn version_note(input: &SystemInput, author: &str) -> Result<VersionNote, SystemError> {
    let description = input
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(SystemError::Invalid(format!(
            "the description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(VersionNote {
        author: author.to_string(),
        description,
    })
}

/// Whether a replacement sends the system's secrets somewhere else than before.
fn endpoint_changed(current: Option<&System>, input: &SystemInput) -> bool {
    let Some(current) = current else { return false };
    let text = |v: Option<&Value>| v.and_then(|v| v.as_str()).map(str::trim).unwrap_or("").to_string();
    ["URL", "OAuth2TokenServiceURL"].iter().any(|name| {
        current.spec.properties.get(*name).map(|v| v.trim()).unwrap_or("") != text(input.properties.get(*name))
    }) || current.spec.connector != input.connector
}

/// Validates a transformation document for a role; proxies carry `{"read": …, "write": …}`.
pub fn validate_transformation(role: Role, doc: &Value) -> Result<(), SystemError> {
    let check = |label: &str, doc: &Value| {
        provisio_transform::Transformation::parse(doc)
            .map(|_| ())
            .map_err(|e| SystemError::Invalid(format!("{label}transformation is invalid: {e}")))
    };
    match role {
        Role::Proxy => {
            let Some(object) = doc.as_object() else {
                return Err(SystemError::Invalid(
                    "a proxy transformation is an object with \"read\" and/or \"write\"".into(),
                ));
            };
            for (key, part) in object {
                match key.as_str() {
                    "read" | "write" => check(&format!("{key} "), part)?,
                    other => {
                        return Err(SystemError::Invalid(format!(
                            "unknown key {other:?} in a proxy transformation (use read, write)"
                        )));
                    }
                }
            }
            Ok(())
        }
        _ => check("", doc),
    }
}

/// A connector error in the words an admin needs.
pub fn describe_failure(e: &crate::connector::ConnectorError) -> String {
    use crate::connector::ConnectorError as E;
    match e {
        // Connectors written with the SDK already say so; do not say it twice.
        E::Unauthorized { message } if message.starts_with("The system refused") => message.clone(),
        E::Unauthorized { message } => format!("The system refused the credentials: {message}"),
        E::Transient { message } => format!("The system could not be reached: {message}"),
        E::InvalidConfig { message } => format!("The configuration is invalid: {message}"),
        other => other.to_string(),
    }
}
