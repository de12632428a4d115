//! End-to-end tests of the ias connector (placeholder until written).
