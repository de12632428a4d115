//! End-to-end tests of the xsuaa connector (placeholder until written).
