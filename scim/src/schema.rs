//! Schema documents (RFC 7643 §7) and the [`Rules`] of a resource type that has them.
//!
//! The standard definitions are RFC 7643 §8.7.1's User, Group and Enterprise User schemas (`schemas.json`,
//! as scim2-server packages them, Apache-2.0). A server that trims them (the proxy serves only what its
//! transformations carry) builds a [`ResourceType`] over its own documents.

use std::sync::OnceLock;

use serde_json::Value;

use crate::filter::get_ci;
use crate::path::AttrPath;
use crate::rules::{Definition, Rules};

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The Enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// RFC 7643's User, Group and Enterprise User schema documents.
pub fn standard() -> &'static [Value] {
    static ALL: OnceLock<Vec<Value>> = OnceLock::new();
    ALL.get_or_init(|| serde_json::from_str(include_str!("schemas.json")).unwrap_or_default())
}

/// A standard schema document by URN (any case).
pub fn standard_schema(urn: &str) -> Option<&'static Value> {
    standard()
        .iter()
        .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
}

/// The attribute of a schema document named `name` (any case).
pub fn attribute_named<'s>(schema: &'s Value, name: &str) -> Option<&'s Value> {
    named(schema.get("attributes")?, name)
}

fn named<'s>(list: &'s Value, name: &str) -> Option<&'s Value> {
    list.as_array()?
        .iter()
        .find(|a| a["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

/// A resource type: its core schema, its extensions and their documents.
#[derive(Debug, Clone)]
pub struct ResourceType<'a> {
    /// The core schema URN.
    pub core: &'a str,
    /// The extension schema URNs.
    pub extensions: Vec<&'a str>,
    /// The schema documents (core and extensions; others are ignored).
    pub schemas: Vec<&'a Value>,
    /// See [`Rules::open`]: whether attributes the documents do not define may be added.
    pub open: bool,
}

impl ResourceType<'static> {
    /// RFC 7643's User with the Enterprise User extension, open to attributes beyond the standard (a
    /// pushed SCIM resource carries vendor extensions).
    pub fn standard_user() -> Self {
        Self::standard(USER, vec![ENTERPRISE])
    }

    /// RFC 7643's Group, open to attributes beyond the standard.
    pub fn standard_group() -> Self {
        Self::standard(GROUP, vec![])
    }

    fn standard(core: &'static str, extensions: Vec<&'static str>) -> Self {
        ResourceType {
            core,
            extensions,
            schemas: standard().iter().collect(),
            open: true,
        }
    }
}

impl<'a> ResourceType<'a> {
    /// A schema document by URN (any case).
    pub fn schema(&self, urn: &str) -> Option<&'a Value> {
        self.schemas
            .iter()
            .copied()
            .find(|s| s["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(urn)))
    }

    /// The URN of the core schema or an extension that `urn` names (any case).
    pub fn known_urn(&self, urn: &str) -> Option<&'a str> {
        std::iter::once(self.core)
            .chain(self.extensions.iter().copied())
            .find(|u| u.eq_ignore_ascii_case(urn))
    }

    /// The definition of a top-level attribute (and of its sub-attribute, when the path names one); an
    /// attribute named without a URN is looked up in the core schema, then in the extensions.
    pub fn attribute_definition(&self, path: &AttrPath) -> Option<(&'a Value, Option<&'a Value>)> {
        let find = |urn: &str| attribute_named(self.schema(urn)?, &path.name);
        let attr = match &path.urn {
            Some(urn) => find(self.known_urn(urn)?)?,
            None => find(self.core).or_else(|| self.extensions.iter().find_map(|u| find(u)))?,
        };
        let sub = match &path.sub {
            Some(s) => Some(named(attr.get("subAttributes")?, s)?),
            None => None,
        };
        Some((attr, sub))
    }

    /// The object holding `path`'s attribute: the resource, or the extension object its URN names.
    pub fn container<'v>(&self, resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
        match &path.urn {
            Some(urn) if !urn.eq_ignore_ascii_case(self.core) => get_ci(resource, urn),
            _ => Some(resource),
        }
    }

    fn is_meta_time(path: &AttrPath) -> bool {
        path.name.eq_ignore_ascii_case("meta")
            && path
                .sub
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("lastModified") || s.eq_ignore_ascii_case("created"))
    }
}

impl Rules for ResourceType<'_> {
    fn attribute<'v>(&self, resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
        let container = self.container(resource, path)?;
        get_ci(container, &path.name).or_else(|| {
            // An extension attribute named without its URN.
            if path.urn.is_some() {
                return None;
            }
            self.extensions
                .iter()
                .find_map(|u| get_ci(get_ci(resource, u)?, &path.name))
        })
    }

    fn case_exact(&self, path: &AttrPath) -> bool {
        if path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("externalId") {
            return true;
        }
        if path.name.eq_ignore_ascii_case("meta") {
            return !Self::is_meta_time(path);
        }
        match self.attribute_definition(path) {
            Some((_, Some(sub))) => sub["caseExact"] == true,
            Some((attr, None)) => attr["caseExact"] == true,
            None => false,
        }
    }

    fn is_datetime(&self, path: &AttrPath) -> bool {
        Self::is_meta_time(path)
            || match self.attribute_definition(path) {
                Some((_, Some(sub))) => sub["type"] == "dateTime",
                Some((attr, None)) => attr["type"] == "dateTime",
                None => false,
            }
    }

    fn schema_urn(&self, resource: &Value, urn: &str) -> Option<String> {
        if let Some(known) = self.known_urn(urn) {
            return Some(known.to_string());
        }
        if !self.open {
            return None;
        }
        // An open type also has the extensions a resource carries.
        resource
            .as_object()?
            .keys()
            .find(|k| crate::path::is_urn(k) && k.eq_ignore_ascii_case(urn))
            .cloned()
    }

    fn is_core(&self, urn: &str) -> bool {
        urn.eq_ignore_ascii_case(self.core)
    }

    fn definition(&self, path: &AttrPath) -> Option<Definition> {
        let (attr, sub) = self.attribute_definition(path)?;
        let read_only = match sub {
            Some(s) => s["mutability"] == "readOnly",
            None => attr["mutability"] == "readOnly",
        };
        Some(Definition {
            multi_valued: attr["multiValued"] == true,
            read_only,
        })
    }

    fn open(&self) -> bool {
        self.open
    }

    fn same_by_value(&self, path: &AttrPath) -> bool {
        self.core.eq_ignore_ascii_case(GROUP) && path.name.eq_ignore_ascii_case("members")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_definitions() {
        assert_eq!(standard().len(), 3);
        let user = ResourceType::standard_user();
        let def = |p: &str| user.definition(&AttrPath::parse(p).unwrap());
        assert_eq!(
            def("emails"),
            Some(Definition {
                multi_valued: true,
                read_only: false
            })
        );
        assert_eq!(def("groups").map(|d| d.read_only), Some(true));
        assert_eq!(def("name.givenName").map(|d| d.multi_valued), Some(false));
        assert_eq!(def("employeeNumber").map(|d| d.read_only), Some(false));
        assert_eq!(
            def(&format!("{ENTERPRISE}:manager.value")).map(|d| d.read_only),
            Some(false)
        );
        assert_eq!(def("name.bogus"), None);
        assert!(user.case_exact(&AttrPath::parse("id").unwrap()));
        assert!(!user.case_exact(&AttrPath::parse("userName").unwrap()));
        assert!(user.is_datetime(&AttrPath::parse("meta.lastModified").unwrap()));
        assert!(ResourceType::standard_group().same_by_value(&AttrPath::parse("members").unwrap()));
    }
}
