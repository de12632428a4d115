//! The Provisio connector SDK.
