//! What filters and PATCH consult about a resource's schema, and the rules of a resource without one.
//!
//! A server that serves schemas (the proxy) answers from its schema documents
//! ([`ResourceType`](crate::schema::ResourceType)); a connector patching a native resource, or a simulator,
//! has none and uses [`Schemaless`]: the resource's shape decides (an attribute that holds an array is
//! multi-valued), every attribute may be added, and no string comparison respects case unless listed.

use serde_json::Value;

use crate::filter::get_ci;
use crate::path::{AttrPath, is_urn};

/// What an attribute's schema says that PATCH acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// The attribute is multi-valued.
    pub multi_valued: bool,
    /// The attribute (or the sub-attribute the path names) is `readOnly`.
    pub read_only: bool,
}

/// The schema rules of one resource type, as filters and PATCH consult them.
pub trait Rules {
    /// The value of the top-level attribute `path` names in `resource` (resolving a URN prefix), if present.
    fn attribute<'a>(&self, resource: &'a Value, path: &AttrPath) -> Option<&'a Value>;
    /// Whether string comparisons on `path` respect case.
    fn case_exact(&self, path: &AttrPath) -> bool;
    /// Whether `path` holds a dateTime (compared as instants when both sides read as one).
    fn is_datetime(&self, path: &AttrPath) -> bool;
    /// Whether a boolean or number compares equal to its text (`active eq "true"`), as lenient servers do.
    fn lenient_types(&self) -> bool {
        false
    }
    /// The schema URN `urn` names, in its canonical spelling, when the resource type has that schema (its
    /// core schema or an extension); `resource` shows the extensions it carries.
    fn schema_urn(&self, resource: &Value, urn: &str) -> Option<String>;
    /// Whether `urn` (as [`schema_urn`](Self::schema_urn) gives it) is the core schema, whose attributes sit
    /// at the top level of the resource.
    fn is_core(&self, urn: &str) -> bool;
    /// The definition of the attribute (and sub-attribute) `path` names; `None` when the schema has none.
    fn definition(&self, path: &AttrPath) -> Option<Definition>;
    /// Whether PATCH may add attributes and extensions the schema does not define. When not, only attributes
    /// the resource already carries may change.
    fn open(&self) -> bool;
    /// Whether two elements of the multi-valued attribute `path` are the same element when their `value`
    /// is the same (group `members`): adding one again replaces it.
    fn same_by_value(&self, path: &AttrPath) -> bool;
}

/// The rules of a resource without a schema (a native resource, a simulated system's store).
#[derive(Debug, Clone, Copy, Default)]
pub struct Schemaless<'a> {
    /// The resource's core schema URN, when known: paths qualified with it address top-level attributes
    /// (as do RFC 7643's User and Group, and, in filters, URNs with `:core:` in them).
    pub core_schema: Option<&'a str>,
    /// Lower-case top-level attributes no PATCH may change, beyond `id`, `meta` and `schemas`.
    pub read_only: &'a [&'a str],
    /// Lower-case dotted attributes (`id`, `name.givenname`) whose string comparisons respect case.
    pub case_exact: &'a [&'a str],
    /// See [`Rules::lenient_types`].
    pub lenient_types: bool,
}

impl Schemaless<'_> {
    /// Whether `urn` is the core schema by name: the one given, or RFC 7643's User or Group.
    fn names_core(&self, urn: &str) -> bool {
        self.core_schema.is_some_and(|c| c.eq_ignore_ascii_case(urn))
            || urn.eq_ignore_ascii_case(crate::schema::USER)
            || urn.eq_ignore_ascii_case(crate::schema::GROUP)
    }
}

impl Rules for Schemaless<'_> {
    fn attribute<'a>(&self, resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
        let container = match &path.urn {
            Some(urn) => match get_ci(resource, urn) {
                Some(ext) => ext,
                None if self.is_core(urn) => resource,
                None => return None,
            },
            None => resource,
        };
        get_ci(container, &path.name)
    }

    fn case_exact(&self, path: &AttrPath) -> bool {
        !self.case_exact.is_empty() && self.case_exact.contains(&path.dotted_lower().as_str())
    }

    /// Without a schema, strings that both read as dateTimes compare as instants.
    fn is_datetime(&self, _: &AttrPath) -> bool {
        true
    }

    fn lenient_types(&self) -> bool {
        self.lenient_types
    }

    fn schema_urn(&self, resource: &Value, urn: &str) -> Option<String> {
        let carried = resource
            .as_object()
            .and_then(|o| o.keys().find(|k| is_urn(k) && k.eq_ignore_ascii_case(urn)).cloned());
        let listed = || {
            resource
                .get("schemas")?
                .as_array()?
                .iter()
                .find_map(|s| s.as_str().filter(|s| s.eq_ignore_ascii_case(urn)).map(str::to_string))
        };
        carried
            .or_else(listed)
            .or_else(|| self.names_core(urn).then(|| urn.to_string()))
    }

    fn is_core(&self, urn: &str) -> bool {
        self.names_core(urn) || urn.to_ascii_lowercase().contains(":core:")
    }

    fn definition(&self, path: &AttrPath) -> Option<Definition> {
        let top = path.urn.as_deref().is_none_or(|u| self.is_core(u));
        let lower = path.name.to_ascii_lowercase();
        (top && self.read_only.contains(&lower.as_str())).then_some(Definition {
            multi_valued: false,
            read_only: true,
        })
    }

    fn open(&self) -> bool {
        true
    }

    fn same_by_value(&self, path: &AttrPath) -> bool {
        path.name.eq_ignore_ascii_case("members")
    }
}
