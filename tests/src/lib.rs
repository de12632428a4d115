//! Simulators of remote systems.
