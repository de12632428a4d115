//! Builds the test plugins under `plugins/` to wasm components for the end-to-end tests.

#[path = "../host/wasm_build.rs"]
mod wasm_build;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("tests/ is inside the workspace").to_path_buf();
    wasm_build::rerun_if_changed(&workspace, &["wit", "sdk", "tests/plugins", "connectors/example"]);
    // The hostile plugin (built from the 0.1.0 WIT), a plugin that imports sockets, the template
    // connector the SDK guide starts from, a plugin whose describe() declares too much, one built from the
    // 0.2.0 WIT, one that uses (and misuses) the entities the host keeps from a list answer (0.3.0), and one
    // that counts the `system` resources it makes and can trap or loop in their constructor (0.4.0).
    let packages = [
        "provisio-plugin-hostile",
        "provisio-plugin-socket",
        "provisio-connector-example",
        "provisio-plugin-bloated",
        "provisio-plugin-contract-0-2",
        "provisio-plugin-lister",
        "provisio-plugin-contract-0-4",
    ];
    let files = wasm_build::build_components(&workspace, &packages.map(String::from));
    println!("cargo:rustc-env=PROVISIO_HOSTILE_WASM={}", files[0].display());
    println!("cargo:rustc-env=PROVISIO_SOCKET_WASM={}", files[1].display());
    println!("cargo:rustc-env=PROVISIO_EXAMPLE_WASM={}", files[2].display());
    println!("cargo:rustc-env=PROVISIO_BLOATED_WASM={}", files[3].display());
    println!("cargo:rustc-env=PROVISIO_CONTRACT_0_2_WASM={}", files[4].display());
    println!("cargo:rustc-env=PROVISIO_LISTER_WASM={}", files[5].display());
    println!("cargo:rustc-env=PROVISIO_CONTRACT_0_4_WASM={}", files[6].display());
}
