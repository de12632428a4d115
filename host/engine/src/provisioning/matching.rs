//! Matching entities that already exist in a target, by the target's unique attributes
//! (`<prefix>.user.unique.attribute`, `<prefix>.group.unique.attribute`, SAP's names): after a create
//! conflicted, and before repeating a create whose outcome a crash or a timeout left unknown.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::connector::{Descriptor, EntityKind, PageRequest};
use crate::runtime::{CallError, CallTarget, LoadedPlugin, Runtime};

/// The unique attributes of a kind for a target: the system's property, else the connector's declared
/// default, else `userName` / `displayName`.
pub fn unique_attributes(descriptor: &Descriptor, props: &BTreeMap<String, String>, kind: EntityKind) -> Vec<String> {
    let suffix = match kind {
        EntityKind::User => ".user.unique.attribute",
        EntityKind::Group => ".group.unique.attribute",
    };
    let declared = descriptor.properties.iter().find(|p| p.name.ends_with(suffix));
    let value = declared
        .and_then(|p| props.get(&p.name).cloned().or_else(|| p.default_value.clone()))
        .or_else(|| props.iter().find(|(k, _)| k.ends_with(suffix)).map(|(_, v)| v.clone()))
        .unwrap_or_else(|| {
            match kind {
                EntityKind::User => "userName",
                EntityKind::Group => "displayName",
            }
            .to_string()
        });
    value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where the unique attributes of a kind come from, for messages: the property that holds or declares them
/// (`xsuaa.user.unique.attribute`), or the built-in default.
pub fn unique_attributes_source(descriptor: &Descriptor, props: &BTreeMap<String, String>, kind: EntityKind) -> String {
    let suffix = match kind {
        EntityKind::User => ".user.unique.attribute",
        EntityKind::Group => ".group.unique.attribute",
    };
    descriptor
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .chain(props.keys().map(String::as_str))
        .find(|name| name.ends_with(suffix))
        .map(|name| format!("`{name}`"))
        .unwrap_or_else(|| "the default; the connector declares no `<prefix>.user.unique.attribute`".into())
}

/// What the lookup of an existing entity did when it found none: the filter it sent, or why none could be
/// built (the entity lacks a unique attribute, or has no scalar value there).
pub fn explain_no_match(
    descriptor: &Descriptor,
    props: &BTreeMap<String, String>,
    kind: EntityKind,
    entity: &Value,
) -> String {
    let attributes = unique_attributes(descriptor, props, kind);
    let source = unique_attributes_source(descriptor, props, kind);
    let kind = kind.as_str();
    match filter_for(entity, &attributes) {
        Some(filter) => format!(
            "looking the existing {kind} up by its unique attributes ({source}) with a filtered read `{filter}` found no single {kind} (none, or more than one)"
        ),
        None => format!(
            "no existing {kind} could be looked up: the {kind} has no value for its unique attributes `{}` ({source}), so no filtered read was sent",
            attributes.join(",")
        ),
    }
}

/// Whether the admin turned conflict resolution off (`ias.user.automatic.conflict.resolution=false`).
pub fn conflict_resolution_enabled(props: &BTreeMap<String, String>, kind: EntityKind) -> bool {
    let suffix = match kind {
        EntityKind::User => ".user.automatic.conflict.resolution",
        EntityKind::Group => ".group.automatic.conflict.resolution",
    };
    !props
        .iter()
        .any(|(k, v)| k.ends_with(suffix) && v.trim().eq_ignore_ascii_case("false"))
}

/// The SCIM filter that finds `entity` by the attributes, or `None` when it lacks one of them.
pub fn filter_for(entity: &Value, attributes: &[String]) -> Option<String> {
    let mut clauses = Vec::new();
    for attr in attributes {
        let segments = parse_path(attr)?;
        let value = get(entity, &segments)?;
        let literal = match value {
            Value::String(s) => serde_json::to_string(s).ok()?,
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => return None,
        };
        clauses.push(format!("{} eq {literal}", filter_attribute(&segments)?));
    }
    (!clauses.is_empty()).then(|| clauses.join(" and "))
}

/// Looks the entity up in the target; `Some(id)` when exactly one entity matches.
pub async fn find_existing(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    target: &CallTarget,
    kind: EntityKind,
    filter: &str,
) -> Result<Option<(String, Value)>, CallError> {
    let request = PageRequest {
        filter: Some(filter.to_string()),
        ..PageRequest::first(kind, 2)
    };
    let page = runtime.read(plugin, target, &request).await?;
    match page.entities.as_slice() {
        [one] => Ok(entity_id(one).map(|id| (id, one.clone()))),
        _ => Ok(None),
    }
}

/// The id of a native entity (`id`, as text).
pub fn entity_id(entity: &Value) -> Option<String> {
    match entity.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `emails[0].value`, `$.userName`, `['urn:…:Group']['name']`.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut rest = path.trim().trim_start_matches('$').trim_start_matches('.');
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            out.push(Segment::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Segment::Index(r[..end].trim().parse().ok()?));
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            out.push(Segment::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    (!out.is_empty()).then_some(out)
}

fn get<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Segment::Key(k) => v.get(k),
        Segment::Index(i) => v.get(*i),
    })
}

/// `emails[0].value` → `emails.value`; `['urn:…:Group']['name']` → `urn:…:Group:name`.
fn filter_attribute(path: &[Segment]) -> Option<String> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    let (first, rest) = keys.split_first()?;
    if rest.is_empty() {
        return Some(first.to_string());
    }
    let sep = if first.to_ascii_lowercase().starts_with("urn:") {
        ":"
    } else {
        "."
    };
    Some(format!("{first}{sep}{}", rest.join(".")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_filters_from_unique_attributes() {
        let user = json!({"userName": "a\"b", "origin": "sap.default", "emails": [{"value": "a@x"}]});
        let attrs = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            filter_for(&user, &attrs("userName,origin")).as_deref(),
            Some(r#"userName eq "a\"b" and origin eq "sap.default""#)
        );
        assert_eq!(
            filter_for(&user, &attrs("emails[0].value")).as_deref(),
            Some(r#"emails.value eq "a@x""#)
        );
        assert_eq!(filter_for(&user, &attrs("externalId")), None);
        let group = json!({"urn:sap:cloud:scim:schemas:extension:custom:2.0:Group": {"name": "g1"}});
        assert_eq!(
            filter_for(
                &group,
                &attrs("['urn:sap:cloud:scim:schemas:extension:custom:2.0:Group']['name']")
            )
            .as_deref(),
            Some(r#"urn:sap:cloud:scim:schemas:extension:custom:2.0:Group:name eq "g1""#)
        );
    }

    #[test]
    fn unique_attributes_come_from_the_system_or_the_connector() {
        let descriptor = Descriptor {
            name: "x".into(),
            version: "1".into(),
            entity_kinds: vec![],
            operations: vec![],
            properties: vec![crate::connector::PropertySpec {
                name: "x.user.unique.attribute".into(),
                required: false,
                secret: false,
                default_value: Some("userName,origin".into()),
                doc: String::new(),
            }],
            default_read_transformation: None,
            default_write_transformation: None,
        };
        let mut props = BTreeMap::new();
        assert_eq!(
            unique_attributes(&descriptor, &props, EntityKind::User),
            ["userName", "origin"]
        );
        assert_eq!(
            unique_attributes(&descriptor, &props, EntityKind::Group),
            ["displayName"]
        );
        props.insert("x.user.unique.attribute".into(), "emails[0].value".into());
        assert_eq!(
            unique_attributes(&descriptor, &props, EntityKind::User),
            ["emails[0].value"]
        );
        let explained = explain_no_match(
            &descriptor,
            &props,
            EntityKind::User,
            &serde_json::json!({"userName": "a"}),
        );
        assert!(
            explained.contains("no value for its unique attributes `emails[0].value` (`x.user.unique.attribute`)")
                && explained.contains("no filtered read was sent"),
            "{explained}"
        );
        let explained = explain_no_match(
            &descriptor,
            &props,
            EntityKind::User,
            &serde_json::json!({"emails": [{"value": "a@x"}]}),
        );
        assert!(
            explained.contains(r#"filtered read `emails.value eq "a@x"`"#),
            "{explained}"
        );
        assert!(conflict_resolution_enabled(&props, EntityKind::User));
        props.insert("ias.user.automatic.conflict.resolution".into(), "false".into());
        assert!(!conflict_resolution_enabled(&props, EntityKind::User));
    }
}
