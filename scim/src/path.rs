//! Attribute paths (RFC 7644 §3.10, `[urn:…:]name[.sub]`) and PATCH paths (§3.5.2, `attrPath` or
//! `valuePath[.subAttr]`).

use crate::filter::{Filter, FilterError};

/// An attribute path: `[urn:…:]name[.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// The schema URN prefix, when given.
    pub urn: Option<String>,
    /// The attribute name.
    pub name: String,
    /// The sub-attribute, when given.
    pub sub: Option<String>,
    /// SAP's `emails[0].value` form: one element of a multi-valued attribute by position.
    pub index: Option<usize>,
}

impl AttrPath {
    /// Parses `[urn:…:]name[.sub]`.
    pub fn parse(text: &str) -> Result<AttrPath, FilterError> {
        let text = text.trim();
        let bad = || FilterError(format!("`{text}` is not an attribute path"));
        let (urn, rest) = if is_urn(text) {
            // The attribute follows the last ':'; a bare URN (no attribute) is not a path.
            let i = text.rfind(':').ok_or_else(bad)?;
            (Some(text[..i].to_string()), &text[i + 1..])
        } else {
            (None, text)
        };
        let mut parts = rest.split('.');
        let name = parts.next().filter(|n| valid_name(n)).ok_or_else(bad)?;
        let sub = match parts.next() {
            Some(s) if valid_name(s) => Some(s.to_string()),
            Some(_) => return Err(bad()),
            None => None,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(AttrPath {
            urn,
            name: name.to_string(),
            sub,
            index: None,
        })
    }

    /// The attribute without its schema, lower-cased and dotted (`name.givenname`).
    pub fn dotted_lower(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{}", self.name, s).to_ascii_lowercase(),
            None => self.name.to_ascii_lowercase(),
        }
    }
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// Whether `s` starts with `urn:` (any case) and has more after it.
pub fn is_urn(s: &str) -> bool {
    s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// RFC 7643 ATTRNAME (`$ref` included): ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA.
pub(crate) fn valid_name(s: &str) -> bool {
    let s = s.strip_prefix('$').unwrap_or(s);
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A PATCH path: `attrPath` or `valuePath[.subAttr]` (RFC 7644 §3.5.2).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with `sub` when the path is `attr.sub` without a filter).
    pub attr: AttrPath,
    /// The value filter, when given.
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub_after_filter: Option<String>,
}

impl PatchPath {
    /// Parses a PATCH path. A bare schema URN (an extension as a whole) is not a path: the caller handles
    /// it before calling this.
    pub fn parse(text: &str) -> Result<PatchPath, FilterError> {
        let text = text.trim();
        let Some(open) = text.find('[') else {
            return Ok(PatchPath {
                attr: AttrPath::parse(text)?,
                filter: None,
                sub_after_filter: None,
            });
        };
        let close = text
            .rfind(']')
            .filter(|c| *c > open)
            .ok_or_else(|| FilterError(format!("`{text}`: missing `]`")))?;
        let attr = AttrPath::parse(&text[..open])?;
        if attr.sub.is_some() {
            return Err(FilterError(format!("`{text}`: a value filter follows an attribute")));
        }
        let filter = Filter::parse(&text[open + 1..close])?;
        let after = &text[close + 1..];
        let sub_after_filter = if after.is_empty() {
            None
        } else {
            let sub = after
                .strip_prefix('.')
                .filter(|s| valid_name(s))
                .ok_or_else(|| FilterError(format!("`{text}`: `{after}` is not a sub-attribute")))?;
            Some(sub.to_string())
        };
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub_after_filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_paths() {
        let p = AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap();
        assert_eq!(
            p.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!((p.name.as_str(), p.sub.as_deref()), ("manager", Some("value")));
        assert_eq!(p.dotted_lower(), "manager.value");
        assert_eq!(AttrPath::parse("name.givenName").unwrap().to_string(), "name.givenName");
        for bad in ["", "a.b.c", "1abc", "a..b", "urn:", "é"] {
            assert!(AttrPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_paths() {
        let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub_after_filter.as_deref(), Some("value"));
        let p = PatchPath::parse("name.givenName").unwrap();
        assert_eq!(p.attr.sub.as_deref(), Some("givenName"));
        let p = PatchPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap();
        assert_eq!(p.attr.name, "manager");
        assert!(PatchPath::parse(r#"members[value eq "x"].a.b"#).is_err());
        assert!(PatchPath::parse("").is_err());
    }
}
