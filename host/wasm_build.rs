//! Build-script helper shared by `host/build.rs` (bundled connectors) and `tests/build.rs` (test
//! plugins): builds crates of this workspace to `wasm32-wasip2` components in a target directory of their
//! own, so the outer cargo's lock is never shared.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` for `wasm32-wasip2` with the workspace's `wasm` profile (release, with LTO; see the root
/// `Cargo.toml`) and returns the path of each `.wasm` file.
pub fn build_components(workspace: &Path, packages: &[String]) -> Vec<PathBuf> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; components go to <target>/wasm.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm"))
        .unwrap_or_else(|| workspace.join("target/wasm"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        command.args(["-p", package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("cannot run cargo to build the wasm components");
    if !status.success() {
        panic!(
            "building the wasm components failed ({status}). Is the target installed? Run: rustup target add wasm32-wasip2"
        );
    }
    packages
        .iter()
        .map(|p| {
            target_dir
                .join("wasm32-wasip2/wasm")
                .join(format!("{}.wasm", p.replace('-', "_")))
        })
        .collect()
}

/// Asks cargo to rerun the build script when anything under these paths changes.
pub fn rerun_if_changed(workspace: &Path, paths: &[&str]) {
    for p in paths {
        println!("cargo:rerun-if-changed={}", workspace.join(p).display());
    }
}
