//! A third party's first steps, outside this repository: `provisio plugin new`, a build in a folder of its
//! own against the SDK by path, the upload, Test Connection and reads (paged, and the `userName eq` lookup
//! the host sends after a conflict). And the friction points of the first upload: a file that is not
//! WebAssembly, missing or refused credentials, an unreachable service.

use std::path::{Path, PathBuf};
use std::process::Command;

use provisio::connector::{EntityKind, PageRequest};
use reqwest::StatusCode;
use serde_json::json;

use crate::plugins::{provisio_binary, rest_api};
use crate::support::Service;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, as an author runs it. The target directory is
/// shared between runs (under this workspace's target/) so that only the connector itself recompiles.
fn build_component(dir: &Path) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--offline"])
        .env("CARGO_TARGET_DIR", &target);
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let output = command.output().expect("run cargo");
    assert!(
        output.status.success(),
        "the scaffolded connector does not build outside the workspace:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.join("wasm32-wasip2/release/provisio_connector_my_api.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_connector_builds_outside_the_workspace_and_loads() {
    let binary = provisio_binary();
    let outside = tempfile::tempdir().expect("temp dir");
    let dir = outside.path().join("my-api");
    let sdk = workspace().join("sdk");
    let output = Command::new(&binary)
        .args(["plugin", "new", "my-api", "--dir"])
        .arg(&dir)
        .arg("--sdk-path")
        .arg(&sdk)
        .output()
        .expect("run provisio");
    let out = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("cargo build --release --target wasm32-wasip2"), "{out}");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("[workspace]") && !manifest.contains(".workspace"),
        "{manifest}"
    );
    // The same dependency versions as this workspace, so that the build needs no network.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
    let wasm = build_component(&dir);

    let service = Service::start().await;
    let (status, loaded) = service
        .upload_plugin(std::fs::read(&wasm).expect("the component"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{loaded}");
    assert_eq!(
        (loaded["name"].as_str(), loaded["version"].as_str()),
        (Some("my-api"), Some("0.1.0"))
    );

    let (url, _) = rest_api("my-token", 150).await;
    let id = service
        .create_system(json!({
            "name": "My API", "type": "my-api", "role": "source",
            "properties": {"URL": url, "Authentication": "BearerToken", "Password": "my-token"}
        }))
        .await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(ok, "{message}");

    // The host asks for 500; the template asks its API for at most 100.
    let c = service.connector(&id).await;
    let page = c
        .runtime
        .read(&c.plugin, &c.target, &PageRequest::first(EntityKind::User, 500))
        .await
        .expect("read");
    assert_eq!((page.entities.len(), page.next_cursor.as_deref()), (100, Some("100")));
    // The lookup after a conflict: a filtered read in the API's own field names, a page of 2.
    let lookup = PageRequest {
        filter: Some(r#"userName eq "user142""#.into()),
        ..PageRequest::first(EntityKind::User, 2)
    };
    let found = c.runtime.read(&c.plugin, &c.target, &lookup).await.expect("lookup");
    assert_eq!(found.entities.len(), 1);
    assert_eq!(found.entities[0]["userName"], "user142");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_upload_frictions_answer_one_clear_line() {
    let service = Service::start().await;
    // Random bytes: one line, not the parser's dump of the bytes it found.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, body) = service.upload_plugin(junk).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("not a valid WebAssembly component: the file is not WebAssembly"),
        "{message}"
    );
    assert!(!message.contains('\n') && message.len() < 300, "{message}");

    // The CLI names the variables to set.
    let binary = provisio_binary();
    let run = |url: &str, user: Option<&str>| {
        let mut command = Command::new(&binary);
        command
            .args(["plugin", "list"])
            .env("PROVISIO_URL", url)
            .env_remove("PROVISIO_USER");
        if let Some(user) = user {
            command.env("PROVISIO_USER", user);
        }
        let output = command.output().expect("run provisio");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&service.url, None);
    assert!(
        !ok && err.contains("HTTP 401") && err.contains("set PROVISIO_USER=user:password"),
        "{err}"
    );
    let (ok, err) = run(&service.url, Some("admin:wrong-password"));
    assert!(!ok && err.contains("the credentials in PROVISIO_USER"), "{err}");
    let (ok, err) = run(&service.url, Some("no-colon"));
    assert!(
        !ok && err.contains("PROVISIO_USER (or --user) must be user:password"),
        "{err}"
    );
    let port = crate::support::free_port();
    let (ok, err) = run(&format!("http://127.0.0.1:{port}"), Some("a:b"));
    assert!(!ok && err.contains("PROVISIO_URL"), "{err}");
}
