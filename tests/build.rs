//! Builds the test plugins under `plugins/` to wasm components for the end-to-end tests.

#[path = "../host/wasm_build.rs"]
mod wasm_build;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("tests/ is inside the workspace").to_path_buf();
    wasm_build::rerun_if_changed(&workspace, &["wit", "sdk", "tests/plugins"]);
    let files = wasm_build::build_components(&workspace, &["provisio-plugin-hostile".to_string()]);
    println!("cargo:rustc-env=PROVISIO_HOSTILE_WASM={}", files[0].display());
}
