//! The schemas a proxy serves (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`) and the attribute
//! rules the filter, PATCH and projection code consult.
//!
//! The definitions are RFC 7643 §8.7.1's User, Group and Enterprise User schemas (`schemas.json`, as
//! scim2-server packages them, Apache-2.0). A proxy serves them **trimmed to what its transformations
//! carry**: an attribute appears when the read transformation writes it (a `$` → `$` mapping carries
//! everything), and is `readOnly` when the write transformation does not read it. So a client — and
//! scim2-tester, which tests every attribute a server advertises — sees what the backend really keeps.

use provisio_scim::AttrPath;
pub use provisio_scim::schema::{ENTERPRISE, GROUP, USER};
use provisio_scim::schema::{ResourceType, standard};
use serde_json::{Value, json};

use super::backend::Declared;
use crate::connector::EntityKind;

/// Largest page served.
pub const MAX_RESULTS: u64 = 1000;

/// The core schema URN of a kind.
pub fn core_urn(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::User => USER,
        EntityKind::Group => GROUP,
    }
}

/// The resource type name (`User`, `Group`) and endpoint (`Users`, `Groups`) of a kind.
pub fn type_name(kind: EntityKind) -> (&'static str, &'static str) {
    match kind {
        EntityKind::User => ("User", "Users"),
        EntityKind::Group => ("Group", "Groups"),
    }
}

/// Lower-case path segments a transformation mapping names (`$.name.givenName` → `name`, `givenname`;
/// `$['urn:…:User']['manager']` → the URN, `manager`); indexes and filters are dropped. `$` is empty.
pub fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = path.trim();
    let Some(mut rest) = rest.strip_prefix('$') else {
        return vec![rest.to_string()];
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            let end = r.find(['\'', '"']).unwrap_or(r.len());
            out.push(r[..end].to_string());
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            // An index, `*` or a filter: skip to the matching `]`.
            let mut depth = 1;
            let mut end = r.len();
            for (i, c) in r.char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(r[..end].to_string());
            rest = &r[end..];
        } else {
            break;
        }
    }
    out
}

/// The paths one side of a transformation touches for an entity type: `targetPath`s of read, `sourcePath`s
/// of write. `None` means everything (a `$` mapping). `mandatory` keeps only mappings without `optional`,
/// `defaultValue` or `condition` (a value the client must send).
fn touched(doc: &Value, kind: EntityKind, key: &str, mandatory: bool) -> Option<Vec<Vec<String>>> {
    let mappings = doc.get(kind.as_str())?.get("mappings")?.as_array()?;
    let mut paths = Vec::new();
    for m in mappings {
        if mandatory
            && (m.get("optional") == Some(&Value::Bool(true))
                || m.get("defaultValue").is_some()
                || m.get("condition").is_some()
                || m.get("scope").is_some())
        {
            continue;
        }
        if let Some(p) = m.get(key).and_then(Value::as_str) {
            let s = segments(p);
            if s.is_empty() {
                if mandatory {
                    continue;
                }
                return None;
            }
            paths.push(s);
        }
    }
    Some(paths)
}

fn covers(paths: &Option<Vec<Vec<String>>>, prefix: &[&str]) -> bool {
    let Some(paths) = paths else { return true };
    paths
        .iter()
        .any(|p| prefix.iter().zip(p.iter()).all(|(a, b)| a.eq_ignore_ascii_case(b)))
}

/// What a backend cannot keep (see `proxy::backend_limits`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Attributes the backend always holds (defaulted): served as required.
    pub always: &'static [&'static str],
    /// `attr.sub` paths the backend drops: not served.
    pub dropped: &'static [&'static str],
}

/// The schemas and resource types one proxy system serves.
#[derive(Clone, Debug)]
pub struct Served {
    /// Schema documents, trimmed (without `schemas`/`meta`, added when answering).
    pub schemas: Vec<Value>,
    /// Entity kinds served.
    pub kinds: Vec<EntityKind>,
    /// Extension schema URNs per kind.
    ext: Vec<(EntityKind, String)>,
}

impl Served {
    /// The schemas for the kinds a connector handles, trimmed by the proxy's read and write transformations.
    /// `always` names attributes the backend always holds (it defaults them), which therefore cannot be
    /// removed: they are served as required.
    pub fn new(kinds: &[EntityKind], read: &Value, write: &Value, limits: Limits) -> Served {
        Served::for_backend(kinds, read, write, limits, None)
    }

    /// [`Served::new`] over a backend that declared its schema extensions: of a kind it has a resource type
    /// for, exactly the extensions it declares are served (the Enterprise User extension only when it lists
    /// it; an extension the host has no definition of, with the backend's definition).
    pub fn for_backend(
        kinds: &[EntityKind],
        read: &Value,
        write: &Value,
        limits: Limits,
        backend: Option<&Declared>,
    ) -> Served {
        let always = limits.always;
        let mut schemas = Vec::new();
        let mut served_kinds = Vec::new();
        let mut ext = Vec::new();
        for &kind in kinds {
            if read.get(kind.as_str()).is_none() {
                continue;
            }
            served_kinds.push(kind);
            let readable = touched(read, kind, "targetPath", false);
            let writable = touched(write, kind, "sourcePath", false);
            let mut required = touched(write, kind, "sourcePath", true).unwrap_or_default();
            required.extend(always.iter().map(|a| vec![a.to_string()]));
            let extensions: Vec<String> = match backend.and_then(|b| b.extensions(kind)) {
                // Extension objects are keyed by URN (RFC 7643 §3.3); other declared ids are not served.
                Some(declared) => declared
                    .iter()
                    .filter(|u| u.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")))
                    .cloned()
                    .collect(),
                None if kind == EntityKind::User => vec![ENTERPRISE.to_string()],
                None => Vec::new(),
            };
            let core = core_urn(kind);
            for urn in std::iter::once(core.to_string()).chain(extensions.iter().cloned()) {
                let is_core = urn == core;
                let definition = standard()
                    .iter()
                    .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&urn)))
                    .or_else(|| backend.and_then(|b| b.schema(&urn)).filter(|_| !is_core));
                let Some(schema) = definition else {
                    continue;
                };
                // Extension attributes sit under the URN key; core ones at the top.
                let base: Vec<String> = if is_core {
                    vec![]
                } else {
                    vec![urn.to_ascii_lowercase()]
                };
                let mut trimmed = trim(&clean_definition(schema), &base, &readable, &writable, &required);
                drop_paths(&mut trimmed, limits.dropped);
                let empty = trimmed["attributes"].as_array().is_none_or(Vec::is_empty);
                if !is_core && empty {
                    continue;
                }
                if !is_core {
                    ext.push((kind, urn.clone()));
                } else {
                    declare_external_id(&mut trimmed, &readable, &writable);
                    // What the read transformation adds beyond the standard (`origin`, `zoneId`, SAP
                    // extensions) is declared too, so strict clients accept the resources.
                    synthesize(
                        &mut trimmed,
                        kind,
                        &readable,
                        &writable,
                        &mut schemas,
                        &mut ext,
                        always,
                        &extensions,
                    );
                }
                schemas.push(trimmed);
            }
        }
        Served {
            schemas,
            kinds: served_kinds,
            ext,
        }
    }

    /// A served schema by URN (any case).
    pub fn schema(&self, urn: &str) -> Option<&Value> {
        self.schemas
            .iter()
            .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
    }

    /// The extensions served for a kind.
    pub fn extensions(&self, kind: EntityKind) -> Vec<&str> {
        self.ext
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, u)| u.as_str())
            .collect()
    }

    /// The definition of a top-level attribute (and of its sub-attribute, when the path names one).
    pub fn definition(&self, kind: EntityKind, path: &AttrPath) -> Option<(&Value, Option<&Value>)> {
        self.resource_type(kind).attribute_definition(path)
    }

    /// The rules a kind's filters and PATCH follow: the served schemas, closed to attributes they do not
    /// define (a PATCH may still change one the resource carries).
    pub fn resource_type(&self, kind: EntityKind) -> ResourceType<'_> {
        ResourceType {
            core: core_urn(kind),
            extensions: self.extensions(kind),
            schemas: self.schemas.iter().collect(),
            open: false,
        }
    }

    /// The static URN a (client-written) URN names, if the kind serves it.
    pub fn known_urn(&self, kind: EntityKind, urn: &str) -> Option<&str> {
        std::iter::once(core_urn(kind))
            .chain(self.extensions(kind))
            .find(|u| u.eq_ignore_ascii_case(urn))
    }

    /// `/Schemas` entries with `schemas` and `meta`.
    pub fn schema_resources(&self, base: &str) -> Vec<Value> {
        self.schemas
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let id = s["id"].as_str().unwrap_or_default().to_string();
                if let Some(o) = s.as_object_mut() {
                    o.insert(
                        "schemas".into(),
                        json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"]),
                    );
                    o.insert(
                        "meta".into(),
                        json!({"resourceType": "Schema", "location": super::discovery_url(base, "Schemas", &id)}),
                    );
                }
                s
            })
            .collect()
    }

    /// `/ResourceTypes` entries.
    pub fn resource_types(&self, base: &str) -> Vec<Value> {
        self.kinds
            .iter()
            .map(|&kind| {
                let (name, endpoint) = type_name(kind);
                let extensions: Vec<Value> = self
                    .extensions(kind)
                    .iter()
                    .map(|u| {
                        let fixed = self
                            .schema(u)
                            .and_then(|s| s["attributes"].as_array())
                            .is_some_and(|a| a.iter().all(|a| a["mutability"] == "readOnly"));
                        json!({"schema": u, "required": fixed})
                    })
                    .collect();
                let mut rt = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                    "id": name,
                    "name": name,
                    "endpoint": format!("/{endpoint}"),
                    "description": name,
                    "schema": core_urn(kind),
                    "meta": {"resourceType": "ResourceType", "location": super::discovery_url(base, "ResourceTypes", name)},
                });
                if !extensions.is_empty() {
                    rt["schemaExtensions"] = Value::Array(extensions);
                }
                rt
            })
            .collect()
    }
}

/// A schema with only the readable attributes; unwritable ones become `readOnly`.
fn trim(
    schema: &Value,
    base: &[String],
    readable: &Option<Vec<Vec<String>>>,
    writable: &Option<Vec<Vec<String>>>,
    required: &[Vec<String>],
) -> Value {
    let mut out = schema.clone();
    let prefix = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_ascii_lowercase()))
            .collect()
    };
    let check = |paths: &Option<Vec<Vec<String>>>, extra: &[&str]| {
        let p = prefix(extra);
        covers(paths, &p.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let attrs: Vec<Value> = schema["attributes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|attr| {
            let name = attr["name"].as_str()?;
            if !check(readable, &[name]) {
                return None;
            }
            let mut attr = attr.clone();
            if !check(writable, &[name]) {
                set_read_only(&mut attr);
            } else if required.iter().any(|r| {
                r.len() == base.len() + 1
                    && covers(
                        &Some(vec![r.clone()]),
                        &prefix(&[name]).iter().map(String::as_str).collect::<Vec<_>>(),
                    )
            }) {
                // The write transformation fails without it: say so, so clients send it (with a value).
                attr["required"] = json!(true);
                if let Some(subs) = attr.get_mut("subAttributes").and_then(Value::as_array_mut) {
                    for sub in subs.iter_mut().filter(|s| s["name"] == "value") {
                        sub["required"] = json!(true);
                    }
                }
            }
            if let Some(subs) = attr.get("subAttributes").and_then(Value::as_array).cloned() {
                let kept: Vec<Value> = subs
                    .into_iter()
                    .filter_map(|sub| {
                        let s = sub["name"].as_str()?.to_string();
                        if !check(readable, &[name, &s]) {
                            return None;
                        }
                        let mut sub = sub.clone();
                        if !check(writable, &[name, &s]) {
                            set_read_only(&mut sub);
                        }
                        Some(sub)
                    })
                    .collect();
                attr["subAttributes"] = Value::Array(kept);
            }
            Some(attr)
        })
        .collect();
    out["attributes"] = Value::Array(attrs);
    out
}

/// Adds to a core schema the attributes the read transformation writes outside every standard schema,
/// and an extension schema for each unknown URN it writes under.
#[allow(clippy::too_many_arguments)]
fn synthesize(
    core: &mut Value,
    kind: EntityKind,
    readable: &Option<Vec<Vec<String>>>,
    writable: &Option<Vec<Vec<String>>>,
    schemas: &mut Vec<Value>,
    ext: &mut Vec<(EntityKind, String)>,
    always: &[&str],
    served_extensions: &[String],
) {
    let Some(paths) = readable else { return };
    let standard_names: Vec<String> = standard()
        .iter()
        .flat_map(|s| s["attributes"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["name"].as_str().map(str::to_ascii_lowercase))
        .chain(["id", "externalid", "meta", "schemas"].map(String::from))
        .collect();
    let known_urn = |u: &str| {
        [USER, GROUP, ENTERPRISE].iter().any(|k| k.eq_ignore_ascii_case(u))
            || served_extensions.iter().any(|k| k.eq_ignore_ascii_case(u))
    };
    let attribute = |name: &str, writable: bool| {
        let boolean = ["verified", "active"].iter().any(|b| b.eq_ignore_ascii_case(name));
        json!({
            "name": name, "type": if boolean { "boolean" } else { "string" }, "multiValued": false,
            "description": "Carried by this proxy system's read transformation.", "required": false,
            "caseExact": false, "mutability": if writable { "readWrite" } else { "readOnly" },
            "returned": "default", "uniqueness": "none"
        })
    };
    let mut extensions: Vec<(String, Vec<Value>)> = Vec::new();
    for p in paths {
        let Some(first) = p.first() else { continue };
        if first.to_ascii_lowercase().starts_with("urn:") {
            if known_urn(first) {
                continue;
            }
            let Some(name) = p.get(1) else { continue };
            let w = covers(writable, &[first.as_str(), name.as_str()]);
            match extensions.iter_mut().find(|(u, _)| u == first) {
                Some((_, attrs)) if !attrs.iter().any(|a| a["name"] == name.as_str()) => attrs.push(attribute(name, w)),
                Some(_) => {}
                None => extensions.push((first.clone(), vec![attribute(name, w)])),
            }
        } else if !standard_names.contains(&first.to_ascii_lowercase()) {
            let w = covers(writable, &[first.as_str()]);
            if let Some(attrs) = core["attributes"].as_array_mut()
                && !attrs
                    .iter()
                    .any(|a| a["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(first)))
            {
                let mut a = attribute(first, w);
                if w && always.iter().any(|x| x.eq_ignore_ascii_case(first)) {
                    a["required"] = json!(true);
                }
                attrs.push(a);
            }
        }
    }
    for (urn, attributes) in extensions {
        // An extension the client cannot write at all (SAP's group `type: authorization`, a constant) is not
        // client data; it is not served (`to_scim` drops undeclared extension objects).
        if attributes.iter().all(|a| a["mutability"] == "readOnly") {
            continue;
        }
        schemas.push(json!({"id": urn, "name": urn.rsplit(':').next().unwrap_or("Extension"),
            "description": "Extension carried by this proxy system's read transformation.", "attributes": attributes}));
        ext.push((kind, urn));
    }
}

/// `externalId` is common to every resource (RFC 7643 §3.1) and no standard schema lists it, so clients assume
/// it is `readWrite`. When the proxy's transformations do not carry it both ways (UAA groups have none), the
/// core schema declares it with what holds here: `readOnly`, and `returned: never` when it is not read either.
fn declare_external_id(core: &mut Value, readable: &Option<Vec<Vec<String>>>, writable: &Option<Vec<Vec<String>>>) {
    let (read, write) = (covers(readable, &["externalId"]), covers(writable, &["externalId"]));
    if read && write {
        return;
    }
    let description = if read {
        "Set by the backend; this proxy system cannot write it."
    } else {
        "This proxy system's backend does not keep it: it is never returned and cannot be set."
    };
    if let Some(attrs) = core["attributes"].as_array_mut() {
        attrs.push(json!({
            "name": "externalId", "type": "string", "multiValued": false, "description": description,
            "required": false, "caseExact": true, "mutability": "readOnly",
            "returned": if read { "default" } else { "never" }, "uniqueness": "none"
        }));
    }
}

/// A schema definition as served: `id`, `name`, `description` and `attributes` only (a backend's own
/// `schemas` and `meta` are replaced when answering).
fn clean_definition(schema: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["id", "name", "description", "attributes"] {
        if let Some(v) = schema.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if !out.get("attributes").is_some_and(Value::is_array) {
        out.insert("attributes".into(), json!([]));
    }
    Value::Object(out)
}

/// Removes `attr.sub` sub-attributes from a schema.
fn drop_paths(schema: &mut Value, dropped: &[&str]) {
    let Some(attrs) = schema.get_mut("attributes").and_then(Value::as_array_mut) else {
        return;
    };
    for attr in attrs {
        let name = attr["name"].as_str().unwrap_or_default().to_string();
        if let Some(subs) = attr.get_mut("subAttributes").and_then(Value::as_array_mut) {
            subs.retain(|s| {
                let path = format!("{name}.{}", s["name"].as_str().unwrap_or_default());
                !dropped.iter().any(|d| d.eq_ignore_ascii_case(&path))
            });
        }
    }
}

fn set_read_only(attr: &mut Value) {
    if attr["mutability"] != "readOnly" {
        attr["mutability"] = json!("readOnly");
        attr["required"] = json!(false);
    }
    if let Some(subs) = attr.get_mut("subAttributes").and_then(Value::as_array_mut) {
        for s in subs {
            s["mutability"] = json!("readOnly");
            s["required"] = json!(false);
        }
    }
}

/// `/ServiceProviderConfig`: what this server really does.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/provisio/provisio/blob/main/docs/proxy.md",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [
            {"type": "httpbasic", "name": "HTTP Basic", "description": "A technical user's name and password", "primary": true},
            {"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "A token from POST /oauth2/token (client credentials)"}
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_paths() {
        assert_eq!(segments("$.name.givenName"), vec!["name", "givenName"]);
        assert!(segments("$").is_empty());
        assert_eq!(
            segments("$['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User']['manager']"),
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "manager"]
        );
        assert_eq!(segments("$.emails[?(@.primary== true)].value"), vec!["emails", "value"]);
        assert_eq!(segments("$.members[*].type"), vec!["members", "type"]);
    }

    #[test]
    fn pass_through_serves_everything() {
        let read = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                          "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        let served = Served::new(&[EntityKind::User, EntityKind::Group], &read, &read, Limits::default());
        assert_eq!(served.schemas.len(), 3);
        assert_eq!(served.kinds.len(), 2);
        let user = served.schema(USER).expect("user");
        assert_eq!(user["attributes"].as_array().map(Vec::len), Some(21));
    }

    #[test]
    fn a_backend_declares_its_extensions() {
        let pass = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                          "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        let kinds = [EntityKind::User, EntityKind::Group];
        let none = Declared {
            extensions: vec![(EntityKind::User, vec![]), (EntityKind::Group, vec![])],
            schemas: vec![],
        };
        let served = Served::for_backend(&kinds, &pass, &pass, Limits::default(), Some(&none));
        assert!(served.schema(ENTERPRISE).is_none() && served.extensions(EntityKind::User).is_empty());
        assert_eq!(served.schemas.len(), 2);
        assert!(
            !served
                .resource_types("b")
                .iter()
                .any(|t| t.get("schemaExtensions").is_some())
        );
        // A custom extension is served with the backend's definition; one it cannot define is not.
        let custom = "urn:example:params:scim:schemas:extension:custom:2.0:User";
        let declared = Declared {
            extensions: vec![(
                EntityKind::User,
                vec![custom.into(), "urn:undefined:x".into(), "http://not.a.urn/x".into()],
            )],
            schemas: vec![
                json!({"id": custom, "name": "Custom", "meta": {"location": "elsewhere"}, "attributes": [
                {"name": "costCenter", "type": "string", "multiValued": false, "required": false,
                 "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"}]}),
            ],
        };
        let served = Served::for_backend(&kinds, &pass, &pass, Limits::default(), Some(&declared));
        assert_eq!(served.extensions(EntityKind::User), vec![custom]);
        let schema = served.schema(custom).expect("served");
        assert!(schema.get("meta").is_none());
        assert_eq!(schema["attributes"][0]["name"], "costCenter");
        // Groups: the backend said nothing of them, so the standard holds (no extension for groups).
        assert!(served.extensions(EntityKind::Group).is_empty());
        let resources = served.schema_resources("http://h/s");
        let location = resources
            .iter()
            .find(|s| s["id"] == custom)
            .map(|s| s["meta"]["location"].clone());
        assert_eq!(location, Some(json!(format!("http://h/s/Schemas/{custom}"))));
    }

    #[test]
    fn trimmed_to_the_transformations() {
        let read = json!({"user": {"mappings": [
            {"sourcePath": "$.userName", "targetPath": "$.userName"},
            {"sourcePath": "$.name.givenName", "targetPath": "$.name.givenName"},
            {"sourcePath": "$.groups", "targetPath": "$.groups"},
            {"sourcePath": "$.origin", "targetPath": "$.origin"}
        ]}});
        let write = json!({"user": {"mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"}]}});
        let served = Served::new(&[EntityKind::User, EntityKind::Group], &read, &write, Limits::default());
        assert_eq!(served.kinds, vec![EntityKind::User]);
        let user = served.schema(USER).expect("user");
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        // externalId is not carried: declared read-only and never returned.
        assert_eq!(names, vec!["userName", "name", "groups", "externalId", "origin"]);
        assert_eq!(user["attributes"][3]["mutability"], "readOnly");
        assert_eq!(user["attributes"][3]["returned"], "never");
        assert_eq!(user["attributes"][1]["mutability"], "readOnly");
        assert_eq!(user["attributes"][1]["subAttributes"].as_array().map(Vec::len), Some(1));
        assert!(served.schema(ENTERPRISE).is_none());
    }

    #[test]
    fn external_id_declared_only_when_not_carried_both_ways() {
        let external = |read: Value, write: Value| {
            let served = Served::new(&[EntityKind::Group], &read, &write, Limits::default());
            served.schema(GROUP).and_then(|g| {
                g["attributes"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["name"] == "externalId").cloned())
            })
        };
        let both = json!({"group": {"mappings": [{"sourcePath": "$.externalId", "targetPath": "$.externalId"},
            {"sourcePath": "$.displayName", "targetPath": "$.displayName"}]}});
        assert_eq!(external(both.clone(), both.clone()), None);
        let pass = json!({"group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        assert_eq!(external(pass.clone(), pass), None);
        let only_name =
            json!({"group": {"mappings": [{"sourcePath": "$.displayName", "targetPath": "$.displayName"}]}});
        let read_only = external(both, only_name.clone()).expect("declared");
        assert_eq!(
            (read_only["mutability"].as_str(), read_only["returned"].as_str()),
            (Some("readOnly"), Some("default"))
        );
        let absent = external(only_name.clone(), only_name).expect("declared");
        assert_eq!(
            (absent["mutability"].as_str(), absent["returned"].as_str()),
            (Some("readOnly"), Some("never"))
        );
    }
}

/// PATCH under the schemas a proxy serves (the engine is `provisio_scim::patch`, where its errors are tested).
#[cfg(test)]
mod patch_tests {
    use provisio_scim::{PATCH_OP, PatchOp, ScimError};
    use serde_json::{Value, json};

    use super::*;

    fn served() -> Served {
        let all = json!({"user": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]},
                         "group": {"mappings": [{"sourcePath": "$", "targetPath": "$"}]}});
        Served::new(&[EntityKind::User, EntityKind::Group], &all, &all, Limits::default())
    }

    fn doc(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    fn run(resource: Value, kind: EntityKind, ops: Value) -> Result<Value, ScimError> {
        let mut r = resource;
        PatchOp::parse_request(&doc(ops))?.apply_with(&mut r, &served().resource_type(kind))?;
        Ok(r)
    }

    fn user() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
               "name": {"givenName": "Barbara", "familyName": "Jensen"},
               "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.org", "type": "home"}]})
    }

    #[test]
    fn add_replace_remove() {
        let u = run(user(), EntityKind::User, json!([
            {"op": "Replace", "path": "name.givenName", "value": "Babs"},
            {"op": "add", "path": "nickName", "value": "B"},
            {"op": "ADD", "path": "emails", "value": [{"value": "c@z.net", "type": "other", "primary": true}]},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.com"},
            {"op": "replace", "value": {"name.familyName": "J", "active": false,
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}}},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m1"}
        ])).expect("applied");
        assert_eq!(u["name"], json!({"givenName": "Babs", "familyName": "J"}));
        assert_eq!(u["nickName"], "B");
        assert_eq!(u["active"], false);
        let emails = u["emails"].as_array().expect("emails");
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0], json!({"value": "w@x.com", "type": "work", "primary": false}));
        assert_eq!(emails[1]["primary"], true);
        let ext = &u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(ext, &json!({"employeeNumber": "7", "manager": {"value": "m1"}}));
        assert!(u["schemas"].as_array().unwrap().contains(&json!(ENTERPRISE)));
        let u = run(
            u,
            EntityKind::User,
            json!([{"op": "remove", "path": "name"}, {"op": "remove", "path": "emails"}]),
        )
        .expect("removed");
        assert!(u.get("name").is_none() && u.get("emails").is_none());
    }

    #[test]
    fn members() {
        let g = json!({"id": "g", "displayName": "G", "members": [{"value": "a"}, {"value": "b"}]});
        let g = run(
            g,
            EntityKind::Group,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "c", "display": "C"}, {"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"b\"]"},
                {"op": "remove", "path": "members[value eq \"zz\"]"}
            ]),
        )
        .expect("applied");
        assert_eq!(g["members"], json!([{"value": "a"}, {"value": "c", "display": "C"}]));
        let g = run(
            g,
            EntityKind::Group,
            json!([{"op": "remove", "path": "members", "value": [{"value": "a"}]}]),
        )
        .expect("entra form");
        assert_eq!(g["members"], json!([{"value": "c", "display": "C"}]));
        let g = run(
            g,
            EntityKind::Group,
            json!([{"op": "replace", "path": "members", "value": []}]),
        )
        .expect("all removed");
        assert!(g.get("members").is_none());
    }
}
