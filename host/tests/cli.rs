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

/// A `provisio serve` child process on a free port, stopped on drop.
struct Served {
    child: std::process::Child,
    url: String,
    data: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn serve() -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let data = std::env::temp_dir().join(format!("provisio-cli-serve-{}-{port}", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ])
        .env("PROVISIO_BOOTSTRAP_ADMIN", "admin:cli-test-password")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start provisio serve");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "provisio serve did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
        data,
    }
}

#[test]
fn system_add_list_and_test_against_a_running_service() {
    let served = serve();
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(args)
            .env("PROVISIO_URL", &served.url)
            .env("PROVISIO_USER", "admin:cli-test-password")
            .output()
            .expect("run provisio")
    };
    let unreachable = format!(
        "URL=http://127.0.0.1:{}/v2",
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    );
    let out = admin(&[
        "system",
        "add",
        "--name",
        "CLI target",
        "--type",
        "scim",
        "--role",
        "target",
        "-p",
        &unreachable,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=cli-secret-value",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(created["message"], "System CLI target configuration updated.");
    assert_eq!(created["properties"]["Password"], "********");
    let id = created["id"].as_str().expect("id").to_string();

    let out = admin(&["system", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(&id) && listed.contains("CLI target"), "{listed}");
    assert!(!listed.contains("cli-secret-value"));

    let out = admin(&["system", "test", &id]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be reached"), "{stderr}");

    // `job run` on a source (given by name, in another case) with no targets: the run ends with an error,
    // and the report, the status and the log are there to read.
    let out = admin(&[
        "system",
        "add",
        "--name",
        "CLI Source",
        "--type",
        "scim",
        "--role",
        "source",
        "-p",
        &unreachable,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=cli-secret-value",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = admin(&["job", "run", "cli source", "--follow"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no target systems"), "{stdout}");
    assert!(stdout.contains("status: Finished with Error"), "{stdout}");
    let job_id = stdout.split_whitespace().next().expect("job id").to_string();
    let out = admin(&["job", "status", &job_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.starts_with("target") && status.contains("status: Finished with Error"),
        "{status}"
    );
    let out = admin(&["job", "log", &job_id, "--outcome", "failed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = admin(&["job", "stop", &job_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    let out = admin(&["job", "run", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jobs run on source systems"));

    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["system", "list"])
        .env("PROVISIO_URL", &served.url)
        .env("PROVISIO_USER", "admin:wrong")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
