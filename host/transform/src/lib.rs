//! The SAP Identity Provisioning transformation language.
