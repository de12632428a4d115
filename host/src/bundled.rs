//! The connector components built into this binary by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
