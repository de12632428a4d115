//! Generic SCIM 2.0 connector.
