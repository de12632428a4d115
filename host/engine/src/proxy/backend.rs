//! What a SCIM backend declares about itself (`GET ResourceTypes`, `GET Schemas`, RFC 7644 §4), so that a
//! proxy over it serves only the schema extensions the backend keeps.
//!
//! Asked only of systems on the `scim` connector: its `URL` is, by that connector's contract, the base of a
//! SCIM 2.0 service, so `ResourceTypes` and `Schemas` below it are the backend's own discovery. The connector
//! contract (WIT) has no discovery call, so the host asks through the same outbound capability the
//! connector's calls use — the system's endpoint, credentials and path confinement, and the connector's
//! `ips.http.header.*` headers — never anything a guest chose.

use serde_json::Value;

use crate::connector::EntityKind;
use crate::outbound::{HttpRequest, Outbound, SystemEndpoint};

use super::schema::core_urn;

/// The one connector whose backends are asked (see the module documentation).
pub const SCIM_CONNECTOR: &str = "scim";
/// The prefix of the scim connector's extra-header properties.
const HEADER_PREFIX: &str = "ips.http.header.";

/// What the backend declares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Declared {
    /// Per kind the backend has a resource type for, the extension URNs it lists in `schemaExtensions`.
    pub extensions: Vec<(EntityKind, Vec<String>)>,
    /// Its schema definitions (`GET Schemas`), to serve extensions the host has no definition of.
    pub schemas: Vec<Value>,
}

impl Declared {
    /// The extensions declared for a kind; `None` when the backend has no resource type for it (then the
    /// host's defaults hold).
    pub fn extensions(&self, kind: EntityKind) -> Option<&[String]> {
        self.extensions
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, e)| e.as_slice())
    }

    /// The backend's definition of a schema.
    pub fn schema(&self, urn: &str) -> Option<&Value> {
        self.schemas
            .iter()
            .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
    }
}

/// How asking went.
#[derive(Debug)]
pub enum Discovery {
    /// The backend declared its resource types.
    Declared(Declared),
    /// It answered, but declares nothing (no discovery endpoints, refused, not SCIM): the host's defaults.
    Silent,
    /// No answer (unreachable, timed out): ask again on a later request.
    Unreachable(String),
}

/// Asks the backend of `endpoint` for its resource types and schemas.
pub async fn discover(outbound: &Outbound, endpoint: &SystemEndpoint, properties: &[(String, String)]) -> Discovery {
    let types = match get(outbound, endpoint, properties, "ResourceTypes").await {
        Ok(Some(v)) => resources(v),
        Ok(None) => return Discovery::Silent,
        Err(e) => return Discovery::Unreachable(e),
    };
    let mut extensions = Vec::new();
    for kind in [EntityKind::User, EntityKind::Group] {
        let endpoint_name = super::schema::type_name(kind).1;
        let Some(t) = types.iter().find(|t| {
            let path = t["endpoint"].as_str().unwrap_or_default().trim_matches('/');
            path.eq_ignore_ascii_case(endpoint_name)
                || t["schema"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(core_urn(kind)))
        }) else {
            continue;
        };
        let declared: Vec<String> = t["schemaExtensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["schema"].as_str().map(str::to_string))
            .collect();
        extensions.push((kind, declared));
    }
    if extensions.is_empty() {
        return Discovery::Silent;
    }
    // The definitions matter only for extensions the host has none of; a backend without them still
    // declares which extensions it keeps.
    let schemas = match get(outbound, endpoint, properties, "Schemas").await {
        Ok(Some(v)) => resources(v),
        _ => Vec::new(),
    };
    Discovery::Declared(Declared { extensions, schemas })
}

/// A discovery document: `Ok(None)` when the backend answered without one (non-2xx, not JSON).
async fn get(
    outbound: &Outbound,
    endpoint: &SystemEndpoint,
    properties: &[(String, String)],
    path: &str,
) -> Result<Option<Value>, String> {
    let mut headers = vec![(
        "Accept".to_string(),
        "application/scim+json, application/json".to_string(),
    )];
    headers.extend(
        properties
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(HEADER_PREFIX).map(|name| (name.to_string(), v.clone()))),
    );
    let request = HttpRequest {
        upstream: "api".into(),
        method: "GET".into(),
        path: path.into(),
        headers,
        body: None,
    };
    let response = outbound.send(endpoint, request).await.map_err(|e| e.to_string())?;
    // Overloaded or failing now: it may answer later.
    if response.status == 429 || response.status >= 500 {
        return Err(format!("GET {path} answered HTTP {}", response.status));
    }
    if !(200..300).contains(&response.status) {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&response.body).ok())
}

/// The resources of a list response, or a bare array (as some servers answer).
fn resources(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("Resources").or_else(|| o.remove("resources")) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resource_types_come_as_a_list_response_or_a_bare_array() {
        let rt = json!({"id": "User", "endpoint": "/Users"});
        assert_eq!(
            resources(json!({"Resources": [rt.clone()], "totalResults": 1})),
            vec![rt.clone()]
        );
        assert_eq!(resources(json!({"resources": [rt.clone()]})), vec![rt.clone()]);
        assert_eq!(resources(json!([rt.clone()])), vec![rt]);
        assert!(resources(json!({"detail": "not found"})).is_empty());
        assert!(resources(json!("text")).is_empty());
    }

    #[test]
    fn declared_extensions_and_definitions() {
        let d = Declared {
            extensions: vec![(EntityKind::User, vec!["urn:x:User".into()])],
            schemas: vec![json!({"id": "URN:X:User", "attributes": []})],
        };
        assert_eq!(d.extensions(EntityKind::User), Some(&["urn:x:User".to_string()][..]));
        assert_eq!(d.extensions(EntityKind::Group), None);
        assert!(d.schema("urn:x:user").is_some() && d.schema("urn:y").is_none());
    }
}
