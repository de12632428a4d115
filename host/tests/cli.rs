//! `provisio transform test`, as an admin runs it: the output on stdout, or the skip/failure reason on
//! stderr with a non-zero exit code, and the trace on request.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transform/tests/fixtures")
}

fn provisio(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .output()
        .expect("run provisio")
}

fn write(dir: &std::path::Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).expect("write");
    path.display().to_string()
}

#[test]
fn transforms_a_user_with_properties_and_operation() {
    let t = fixtures().join("xsuaa-proxy-write.json");
    let e = fixtures().join("scim-user.json");
    let out = provisio(&[
        "transform",
        "test",
        "--transformation",
        t.to_str().unwrap(),
        "--entity",
        e.to_str().unwrap(),
        "--property",
        "xsuaa.origin=sap.custom",
        "--operation",
        "create",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(output["origin"], "sap.custom");
    assert_eq!(output["schemas"][0], "urn:scim:schemas:core:1.0");
    // Without --operation the update path runs: the createEntity-scoped dummy id is not written.
    let out = provisio(&[
        "transform",
        "test",
        "--transformation",
        t.to_str().unwrap(),
        "--entity",
        e.to_str().unwrap(),
    ]);
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_ne!(output["id"], "xsuaa-dummy-value");
}

#[test]
fn skips_and_failures_go_to_stderr_with_a_nonzero_exit() {
    let dir = std::env::temp_dir().join(format!("provisio-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let entity = write(&dir, "e.json", r#"{"userName": "jdoe"}"#);
    let skip = write(
        &dir,
        "skip.json",
        r#"{"user": {"condition": "$.emails EMPTY false", "mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"}]}}"#,
    );
    let out = provisio(&["transform", "test", "--transformation", &skip, "--entity", &entity]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("The condition: ($.emails EMPTY false) is not fulfilled."),
        "{stderr}"
    );

    let fail = write(
        &dir,
        "fail.json",
        r#"{"user": {"mappings": [{"sourcePath": "$.name.familyName", "targetPath": "$.sn"}]}}"#,
    );
    let out = provisio(&[
        "transform",
        "test",
        "--transformation",
        &fail,
        "--entity",
        &entity,
        "--trace",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed:") && stderr.contains("mapping 0"), "{stderr}");

    let invalid = write(
        &dir,
        "invalid.json",
        r#"{"user": {"mappings": [{"sourcePath": "$.a", "targetPath": "$.b", "functions": [{"function": "noSuchFunction"}]}]}}"#,
    );
    let out = provisio(&["transform", "test", "--transformation", &invalid, "--entity", &entity]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("noSuchFunction") && stderr.contains("user.mappings[0]"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
