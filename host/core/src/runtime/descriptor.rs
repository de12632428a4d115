//! What `describe()` may declare: the caps on a descriptor the host keeps and serves, and the check that
//! every default transformation loads.

use super::*;

/// Caps on what `describe()` may declare: the host keeps the descriptor while the plugin is loaded and
/// serves it in the API, so a connector cannot make either hold megabytes.
pub mod describe_limits {
    /// Properties a connector may declare.
    pub const MAX_PROPERTIES: usize = 256;
    /// Length of a property's name.
    pub const MAX_PROPERTY_NAME_BYTES: usize = 256;
    /// Length of a property's doc, and of its default value.
    pub const MAX_PROPERTY_TEXT_BYTES: usize = 4 << 10;
    /// Entity kinds, and operations, a connector may list (each is one of a handful).
    pub const MAX_LISTED: usize = 16;
    /// All default transformations (read, write, proxy read, proxy write) together.
    pub const MAX_TRANSFORMATION_BYTES: usize = 1 << 20;
}

pub(super) fn validate_descriptor(d: &Descriptor, x: &DescriptorExtensions) -> Result<(), String> {
    use describe_limits::*;
    if d.properties.len() > MAX_PROPERTIES {
        return Err(format!(
            "{} properties declared, over the limit of {MAX_PROPERTIES}",
            d.properties.len()
        ));
    }
    for p in &d.properties {
        let shown: String = p.name.chars().take(64).collect();
        if p.name.len() > MAX_PROPERTY_NAME_BYTES {
            return Err(format!(
                "property {shown:?}… has a name of {} bytes, over the limit of {MAX_PROPERTY_NAME_BYTES}",
                p.name.len()
            ));
        }
        let longest = p.doc.len().max(p.default_value.as_deref().map_or(0, str::len));
        if longest > MAX_PROPERTY_TEXT_BYTES {
            return Err(format!(
                "property {shown:?} has a doc or default value of {longest} bytes, over the limit of {MAX_PROPERTY_TEXT_BYTES}"
            ));
        }
    }
    if d.entity_kinds.len() > MAX_LISTED || d.operations.len() > MAX_LISTED {
        return Err(format!(
            "{} entity kinds and {} operations declared, over the limit of {MAX_LISTED} each",
            d.entity_kinds.len(),
            d.operations.len()
        ));
    }
    let transformations = [
        &d.default_read_transformation,
        &d.default_write_transformation,
        &x.default_proxy_read_transformation,
        &x.default_proxy_write_transformation,
    ]
    .iter()
    .map(|t| t.as_deref().map_or(0, str::len))
    .sum::<usize>();
    if transformations > MAX_TRANSFORMATION_BYTES {
        return Err(format!(
            "default transformations of {transformations} bytes together, over the limit of {MAX_TRANSFORMATION_BYTES} bytes"
        ));
    }
    let valid_name = !d.name.is_empty()
        && d.name.len() <= 64
        && d.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "connector name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'",
            d.name
        ));
    }
    if d.version.is_empty()
        || d.version.len() > 64
        || !d
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
    {
        return Err(format!("connector version {:?} is not a version", d.version));
    }
    if let Err(e) = semver::Version::parse(&d.version) {
        return Err(format!(
            "connector version {:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0): {e}",
            d.version
        ));
    }
    Ok(())
}

/// Parses every default transformation a connector declares: a connector whose defaults do not load is
/// refused at upload, not at its first job.
pub(super) fn validate_default_transformations(d: &Descriptor, x: &DescriptorExtensions) -> Result<(), LoadError> {
    let all = [
        ("read", &d.default_read_transformation),
        ("write", &d.default_write_transformation),
        ("proxy read", &x.default_proxy_read_transformation),
        ("proxy write", &x.default_proxy_write_transformation),
    ];
    for (which, text) in all {
        let Some(text) = text else { continue };
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::Transformation {
            which,
            message: format!("not JSON: {e}"),
        })?;
        provisio_transform::Transformation::parse(&doc).map_err(|e| LoadError::Transformation {
            which,
            message: e.to_string(),
        })?;
    }
    Ok(())
}
