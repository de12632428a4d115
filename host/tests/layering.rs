//! The layering the crate edges promise: `provisio` (HTTP) → `provisio-engine` → `provisio-core`, with the
//! store backend (`provisio-store-sqlite` → `provisio-core`) chosen by the service's composition root only,
//! and each layer's heavy dependencies stay where they belong. Read from `cargo metadata`, so a dependency added in
//! the wrong crate fails here.

use std::process::Command;

use serde_json::Value;

/// A workspace package's entry in the metadata.
fn package<'a>(metadata: &'a Value, name: &str) -> &'a Value {
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name}"))
}

/// The normal (non-dev) dependencies of a workspace package, by name.
fn dependencies(metadata: &Value, name: &str) -> Vec<String> {
    package(metadata, name)["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["kind"].is_null())
        .filter_map(|d| d["name"].as_str().map(String::from))
        .collect()
}

/// The features a workspace package asks of one of its dependencies.
fn features(metadata: &Value, name: &str, dependency: &str) -> Vec<String> {
    package(metadata, name)["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["name"] == dependency)
        .flat_map(|d| d["features"].as_array().into_iter().flatten())
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");

    let service = dependencies(&metadata, "provisio");
    let engine = dependencies(&metadata, "provisio-engine");
    let core = dependencies(&metadata, "provisio-core");
    let sqlite = dependencies(&metadata, "provisio-store-sqlite");
    let postgres = dependencies(&metadata, "provisio-store-postgres");

    assert!(service.contains(&"provisio-engine".to_string()), "{service:?}");
    for low in [
        "wasmtime",
        "wasmtime-wasi",
        "rusqlite",
        "sqlx",
        "provisio-core",
        "provisio-sdk",
    ] {
        assert!(
            !service.iter().any(|d| d == low),
            "the HTTP crate depends on {low}: {service:?}"
        );
    }
    assert!(engine.contains(&"provisio-core".to_string()), "{engine:?}");
    // The engine talks to the store's interfaces, never to a backend or SQL.
    for high in [
        "axum",
        "provisio",
        "hyper",
        "tower",
        "wasmtime",
        "rusqlite",
        "sqlx",
        "provisio-store-sqlite",
        "provisio-store-postgres",
    ] {
        assert!(
            !engine.iter().any(|d| d == high),
            "the engine depends on {high}: {engine:?}"
        );
    }
    for high in ["axum", "provisio", "provisio-engine", "tower", "rusqlite", "sqlx"] {
        assert!(!core.iter().any(|d| d == high), "the core depends on {high}: {core:?}");
    }
    // The outbound capability sends on hyper's client (as reqwest does); serving HTTP stays in `provisio`.
    for client in ["hyper", "hyper-util"] {
        let asked = features(&metadata, "provisio-core", client);
        assert!(
            !asked.iter().any(|f| f.starts_with("server")),
            "the core serves HTTP through {client}: {asked:?}"
        );
    }
    // A backend stands on the core's interfaces and nothing above them.
    for (name, backend) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        assert!(backend.contains(&"provisio-core".to_string()), "{backend:?}");
        for high in ["axum", "provisio", "provisio-engine", "wasmtime"] {
            assert!(
                !backend.iter().any(|d| d == high),
                "the {name} store depends on {high}: {backend:?}"
            );
        }
    }
}
