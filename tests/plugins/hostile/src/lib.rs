//! Hostile test plugin.
