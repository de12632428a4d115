//! End-to-end tests of the jam connector (placeholder until written).
