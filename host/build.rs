//! Builds every connector under `connectors/` to a wasm component and embeds them in the binary, so that
//! `target/release/provisio` is a working service on its own.

#[path = "wasm_build.rs"]
mod wasm_build;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("host/ is inside the workspace").to_path_buf();
    wasm_build::rerun_if_changed(&workspace, &["wit", "sdk", "scim", "connectors"]);
    println!("cargo:rerun-if-changed=wasm_build.rs");

    // `connectors/bundled.txt` names the bundled connectors, one per line; `connectors/<name>/` is the
    // package `provisio-connector-<name>`. A connector in the making stays out of the binary until listed.
    let list =
        std::fs::read_to_string(workspace.join("connectors/bundled.txt")).expect("connectors/bundled.txt exists");
    let names: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let packages: Vec<String> = names.iter().map(|n| format!("provisio-connector-{n}")).collect();
    let files = wasm_build::build_components(&workspace, &packages);

    let mut code = String::from(
        "/// The connectors built into this binary: (connector directory name, component bytes).\npub const BUNDLED: &[(&str, &[u8])] = &[\n",
    );
    for (name, file) in names.iter().zip(&files) {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled.rs");
    std::fs::write(out, code).expect("cannot write bundled.rs");
}
