//! Recording the audit log: who ([`Actor`]: the principal, its client's address and the channel), what (an
//! action on an object) and the before → after of the changed fields, through [`Audit::record`], which the
//! admin operations behind both the API and the console call once per change. Secrets and passwords are
//! recorded as [`SECRET_CHANGED`], never their values.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};

pub use crate::store::audit::{AuditEntry, AuditFilter, FieldChange, SECRET_CHANGED};
use crate::store::principals::{Principal, PrincipalKind};
use crate::store::systems::System;
use crate::store::{StoreError, Stores};

/// How a change reached the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The admin JSON API (and the CLI, which calls it).
    Api,
    /// The web console.
    Console,
}

impl Channel {
    /// `api` or `console`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Console => "console",
        }
    }
}

/// Who makes a change, and from where.
#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    /// The principal's name.
    pub name: String,
    /// Its id (empty for a name that was tried at a failed login).
    pub id: String,
    /// `admin`, `technical` or `unknown`.
    pub kind: &'static str,
    /// The client's address, when known.
    pub address: Option<IpAddr>,
    /// The channel.
    pub channel: Channel,
}

impl Actor {
    /// An authenticated principal.
    pub fn of(principal: &Principal, address: Option<IpAddr>, channel: Channel) -> Actor {
        Actor {
            name: principal.name.clone(),
            id: principal.id.clone(),
            kind: match principal.kind {
                PrincipalKind::Admin => "admin",
                PrincipalKind::Technical => "technical",
            },
            address,
            channel,
        }
    }

    /// Someone who tried to log in as `name` (at most 200 characters of it are kept).
    pub fn unauthenticated(name: &str, address: Option<IpAddr>, channel: Channel) -> Actor {
        Actor {
            name: name.chars().take(200).collect(),
            id: String::new(),
            kind: "unknown",
            address,
            channel,
        }
    }
}

/// The object a change is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// `system`, `transformation`, `principal`, `plugin`, `schedule`, `job`, `realtime-event`, …
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// Its name, if it has one.
    pub name: String,
}

impl Object {
    /// An object of `kind` with an id and a name.
    pub fn new(kind: &'static str, id: impl Into<String>, name: impl Into<String>) -> Object {
        Object {
            kind,
            id: id.into(),
            name: name.into(),
        }
    }
}

/// The audit log's recording side and its reading; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    stores: Stores,
}

impl Audit {
    /// Over the stores.
    pub fn new(stores: Stores) -> Audit {
        Audit { stores }
    }

    /// Records one change. A failure to record is logged and does not undo the change it describes.
    pub async fn record(&self, actor: &Actor, action: &str, object: Object, changes: Vec<FieldChange>) {
        let entry = AuditEntry {
            id: 0,
            at: crate::store::now(),
            principal: actor.name.clone(),
            principal_id: actor.id.clone(),
            principal_kind: actor.kind.to_string(),
            address: actor.address.map(|a| a.to_canonical().to_string()),
            channel: actor.channel.as_str().to_string(),
            action: action.to_string(),
            object_type: object.kind.to_string(),
            object_id: object.id,
            object_name: object.name,
            changes,
        };
        if let Err(e) = self.stores.audit.append(&entry).await {
            tracing::error!(error = %e, action, by = %actor.name, "cannot record an audit entry");
        }
    }

    /// Entries matching `filter`, newest first, numbered below `before` when given, at most `limit`.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.stores.audit.list(filter, before, limit).await
    }
}

/// One field set: `after` only (a creation).
pub fn set(field: &str, after: Value) -> FieldChange {
    FieldChange {
        field: field.to_string(),
        before: None,
        after: Some(after),
    }
}

/// One field changed from `before` to `after`.
pub fn changed(field: &str, before: Value, after: Value) -> FieldChange {
    FieldChange {
        field: field.to_string(),
        before: Some(before),
        after: Some(after),
    }
}

/// A system's audited fields, flat: `name`, `type`, `version`, `role`, `sources`, `enabled`, `transformation`,
/// `transformationVersion` and `properties.NAME` — secrets as [`SECRET_CHANGED`] (never their values).
pub fn system_fields(system: &System) -> BTreeMap<String, Value> {
    let spec = &system.spec;
    let mut fields = BTreeMap::from([
        ("name".to_string(), json!(spec.name)),
        ("type".to_string(), json!(spec.connector)),
        ("version".to_string(), json!(spec.connector_version)),
        ("role".to_string(), json!(spec.role)),
        ("sources".to_string(), json!(spec.sources)),
        ("enabled".to_string(), json!(system.enabled)),
        (
            "transformation".to_string(),
            spec.transformation.clone().unwrap_or(Value::Null),
        ),
        (
            "transformationVersion".to_string(),
            json!(system.transformation_version),
        ),
    ]);
    for (k, v) in &spec.properties {
        fields.insert(format!("properties.{k}"), json!(v));
    }
    for name in spec.secrets.names() {
        fields.insert(format!("properties.{name}"), json!(SECRET_CHANGED));
    }
    fields
}

/// The changes between a system's fields before and after (either may be absent: a creation, a deletion).
/// `secrets_entered` names the secret properties given a new value (they differ though both show
/// [`SECRET_CHANGED`]).
pub fn system_changes(before: Option<&System>, after: Option<&System>, secrets_entered: &[String]) -> Vec<FieldChange> {
    let before = before.map(system_fields).unwrap_or_default();
    let after = after.map(system_fields).unwrap_or_default();
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (before.get(k), after.get(k));
            let secret_entered = k
                .strip_prefix("properties.")
                .is_some_and(|name| secrets_entered.iter().any(|s| s == name));
            let secret_entered = secret_entered && a == Some(&json!(SECRET_CHANGED));
            (b != a || secret_entered).then(|| FieldChange {
                field: k.clone(),
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}

/// The changes between two JSON objects' top-level fields (either may be absent).
pub fn value_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let fields = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_else(|| empty.clone());
    let (before, after) = (fields(before), fields(after));
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            before: before.get(k).cloned(),
            after: after.get(k).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SystemSecrets;
    use crate::store::systems::{Role, SystemSpec};

    fn system(url: &str, password: Option<&str>) -> System {
        System {
            id: "s1".into(),
            spec: SystemSpec {
                name: "HR".into(),
                connector: "scim".into(),
                connector_version: None,
                role: Role::Source,
                properties: [("URL".to_string(), url.to_string())].into(),
                secrets: SystemSecrets::entered(password.map(|p| ("Password".to_string(), p.to_string()))),
                sources: vec![],
                transformation: None,
            },
            transformation_version: None,
            created_at: String::new(),
            updated_at: String::new(),
            enabled: true,
            health: Default::default(),
        }
    }

    #[test]
    fn changes_name_the_changed_fields_and_never_a_secret() {
        let before = system("http://a", Some("hunter2-secret"));
        let after = system("http://b", Some("other-secret"));
        let changes = system_changes(Some(&before), Some(&after), &["Password".to_string()]);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["properties.Password", "properties.URL"]);
        assert_eq!(changes[1].before, Some(json!("http://a")));
        assert_eq!(changes[1].after, Some(json!("http://b")));
        assert_eq!(changes[0].after, Some(json!(SECRET_CHANGED)));
        let text = serde_json::to_string(&changes).expect("json");
        assert!(!text.contains("hunter2") && !text.contains("other-secret"), "{text}");
        // The secret kept: not a change.
        assert!(system_changes(Some(&before), Some(&before), &[]).is_empty());
        // Created: every field, after only.
        let created = system_changes(None, Some(&before), &["Password".to_string()]);
        assert!(created.iter().all(|c| c.before.is_none() && c.after.is_some()));
        assert!(
            created
                .iter()
                .any(|c| c.field == "name" && c.after == Some(json!("HR")))
        );
    }
}
