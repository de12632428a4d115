//! The RFC 7644 §3.12 error: an HTTP status, a `scimType` where Table 9 has one, and a detail.

use serde_json::{Value, json};

/// The SCIM error message schema.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error: what a server answers, and what the filter and PATCH code refuse with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}", scim_type.map(|t| format!("{t}: ")).unwrap_or_default())]
pub struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// RFC 7644 Table 9 `scimType` (`invalidFilter`, `invalidPath`, `noTarget`, `mutability`, …).
    pub scim_type: Option<&'static str>,
    /// What went wrong, for the client.
    pub detail: String,
}

impl ScimError {
    /// An error with a status, an optional `scimType` and a detail.
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    /// The error body: `schemas`, `status` (a string, as RFC 7644 §3.12 shows it), `scimType`, `detail`.
    pub fn to_json(&self) -> Value {
        body(self.status, self.scim_type, &self.detail)
    }
}

/// An RFC 7644 §3.12 error body.
pub fn body(status: u16, scim_type: Option<&str>, detail: &str) -> Value {
    let mut body = json!({
        "schemas": [ERROR],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body() {
        let e = ScimError::bad("noTarget", "emails[type eq \"x\"] matches no value");
        assert_eq!(e.to_string(), "noTarget: emails[type eq \"x\"] matches no value");
        assert_eq!(
            e.to_json(),
            json!({"schemas": [ERROR], "status": "400", "scimType": "noTarget",
                   "detail": "emails[type eq \"x\"] matches no value"})
        );
        let e = ScimError::new(404, None, "gone");
        assert_eq!(e.to_string(), "gone");
        assert!(e.to_json().get("scimType").is_none());
    }
}
