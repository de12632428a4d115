//! End-to-end tests of the ips_target connector (placeholder until written).
