//! Lines in the host's log, tagged by the host with the system and the plugin.
//!
//! Never log secrets, and at [`info`] and above never log entity contents.
//!
//! ```no_run
//! provisio_sdk::log::info(format_args!("read {} users", 42));
//! ```

use std::fmt::Display;

pub use crate::bindings::provisio::connector::host::LogLevel as Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: impl Display) {
    write(level, &message.to_string());
}

/// Writes a `trace` line.
pub fn trace(message: impl Display) {
    log(Level::Trace, message);
}

/// Writes a `debug` line.
pub fn debug(message: impl Display) {
    log(Level::Debug, message);
}

/// Writes an `info` line.
pub fn info(message: impl Display) {
    log(Level::Info, message);
}

/// Writes a `warn` line.
pub fn warn(message: impl Display) {
    log(Level::Warn, message);
}

/// Writes an `error` line.
pub fn error(message: impl Display) {
    log(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    crate::bindings::provisio::connector::host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    crate::testing::record_log(level, message);
}
