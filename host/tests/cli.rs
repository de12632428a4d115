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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `provisio serve` with these arguments and environment and waits until `port` answers.
fn serve_on(args: &[&str], env: &[(&str, &str)], port: u16) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provisio"));
    command
        .arg("serve")
        .args(args)
        .env("PROVISIO_BOOTSTRAP_ADMIN", "admin:cli-test-password")
        .env_remove("PROVISIO_LISTEN")
        .env_remove("PROVISIO_DATA_DIR")
        .env_remove("PROVISIO_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start provisio serve");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            use std::io::Read as _;
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut stderr));
            panic!("provisio serve ended ({status}) without listening on {port}: {stderr}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "provisio serve did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

#[test]
fn serve_takes_its_settings_from_the_config_file_under_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let (from_file, from_env, from_flag) = (free_port(), free_port(), free_port());
    let config = dir.path().join("provisio.toml");
    std::fs::write(
        &config,
        format!(
            "# where it listens and keeps its data\nlisten = \"127.0.0.1:{from_file}\"\ndata-dir = {:?}\nlog-format = \"json\"\njob-retention-days = 7\n",
            data.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let config = config.to_str().expect("utf-8").to_string();

    // The file's address and data directory.
    let mut child = serve_on(&["--config", &config], &[], from_file);
    let _ = child.kill();
    let _ = child.wait();
    assert!(data.exists(), "the file's data-dir is used");

    // PROVISIO_CONFIG names the file too; the environment beats the file.
    let listen_env = format!("127.0.0.1:{from_env}");
    let mut child = serve_on(
        &[],
        &[("PROVISIO_CONFIG", &config), ("PROVISIO_LISTEN", &listen_env)],
        from_env,
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", from_file)).is_err());
    let _ = child.kill();
    let _ = child.wait();

    // A flag beats both.
    let listen_flag = format!("127.0.0.1:{from_flag}");
    let mut child = serve_on(
        &["--config", &config, "--listen", &listen_flag],
        &[("PROVISIO_LISTEN", &listen_env)],
        from_flag,
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_config_file_stops_the_start_and_config_check_names_key_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "listen = \"127.0.0.1:8080\"\nproxy-rate-limit = 5\n").expect("write");
    let out = provisio(&["config", "check", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let bad = dir.path().join("bad.toml");
    let bad_path = bad.to_str().expect("utf-8").to_string();
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:8080\"\nlisten-port = 80\nshutdown-grace = \"soon\"\n",
    )
    .expect("write");
    let out = provisio(&["config", "check", &bad_path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{bad_path}:2: listen-port: unknown key")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{bad_path}:3: shutdown-grace: \"soon\"")),
        "{stderr}"
    );

    // `serve` refuses to start on it, with the same messages, before touching anything.
    let data = dir.path().join("never");
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args([
            "serve",
            "--config",
            &bad_path,
            "--data-dir",
            data.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{bad_path}:2: listen-port: unknown key")),
        "{stderr}"
    );
    assert!(!data.exists());
    let out = provisio(&[
        "config",
        "check",
        &dir.path().join("missing.toml").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

/// Runs an admin command against `served` with `stdin` written to it.
fn admin_with_stdin(served: &Served, user: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .env("PROVISIO_URL", &served.url)
        .env("PROVISIO_USER", user)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run provisio");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn json_out(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn users_systems_and_realtime_from_the_command_line_with_json_and_exit_codes() {
    let served = serve();
    const ADMIN: &str = "admin:cli-test-password";
    let admin = |args: &[&str]| admin_with_stdin(&served, ADMIN, args, None);

    // Users: the password from stdin, never argv; a terminal is needed to be asked.
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &["user", "add", "ci-bot", "--permission", "proxy-api", "--password-stdin"],
        Some("bot-password-1\n"),
    );
    let created = json_out(&out);
    assert_eq!(created["name"], "ci-bot");
    let listed = json_out(&admin(&["user", "list", "--output", "json"]));
    assert!(
        listed.as_array().expect("array").iter().any(|u| u["name"] == "ci-bot"),
        "{listed}"
    );
    let text = admin(&["user", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("ci-bot"));
    let out = admin(&["user", "passwd", "ci-bot"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no terminal, no --password-stdin: a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &["user", "passwd", "CI-BOT", "--password-stdin"],
        Some("bot-password-2\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The new password authenticates (403: no permission to list systems), the old one does not (401).
    let out = admin_with_stdin(&served, "ci-bot:bot-password-2", &["system", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
    let out = admin_with_stdin(&served, "ci-bot:bot-password-1", &["system", "list"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &["user", "passwd", "ci-bot", "--password-stdin"],
        Some("short\n"),
    );
    assert_eq!(out.status.code(), Some(1), "the service refuses a weak password");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 400"));
    assert!(admin(&["user", "remove", "ci-bot"]).status.success());
    let listed = json_out(&admin(&["user", "list", "--output", "json"]));
    assert!(!listed.to_string().contains("ci-bot"));
    assert_eq!(admin(&["user", "remove", "ci-bot"]).status.code(), Some(1));

    // Systems: add, get by name, update, export, remove, import back.
    let url = format!("URL=http://127.0.0.1:{}/scim", free_port());
    let source = [
        "system",
        "add",
        "--name",
        "HR Source",
        "--type",
        "scim",
        "--role",
        "source",
        "-p",
        &url,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=src-secret-value",
    ];
    json_out(&admin(&source));
    let target = [
        "system",
        "add",
        "--name",
        "Cloud Target",
        "--type",
        "scim",
        "--role",
        "target",
        "-p",
        &url,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=tgt-secret-value",
        "--source",
        "hr source",
    ];
    let out = admin(&target);
    // `system add --source` takes ids; by name the service refuses it, and says so with exit code 1.
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
        let src = json_out(&admin(&["system", "get", "hr source"]));
        let id = src["id"].as_str().expect("id").to_string();
        let mut by_id = target.to_vec();
        let last = by_id.len() - 1;
        by_id[last] = &id;
        json_out(&admin(&by_id));
    }
    let got = json_out(&admin(&["system", "get", "cloud target"]));
    assert_eq!(got["properties"]["Password"], "********");
    let updated = json_out(&admin(&[
        "system",
        "update",
        "Cloud Target",
        "-p",
        "Description=updated by the CLI",
    ]));
    assert_eq!(updated["properties"]["Description"], "updated by the CLI");
    assert_eq!(updated["properties"]["Password"], "********", "the secret stays");
    let listed = json_out(&admin(&["system", "list", "--output", "json"]));
    assert_eq!(listed.as_array().expect("array").len(), 2);
    let exported = json_out(&admin(&["system", "export"]));
    assert!(!exported.to_string().contains("secret-value"), "{exported}");
    assert_eq!(exported["systems"][0]["name"], "HR Source", "sources first");
    assert_eq!(exported["systems"][1]["sources"][0], "HR Source", "sources by name");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("systems.json");
    std::fs::write(&file, exported.to_string()).expect("write");
    let file = file.to_str().expect("utf-8");
    // Importing onto itself updates both (masked secrets keep their values).
    let out = admin(&["system", "import", file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("updated ").count(), 2);
    assert!(admin(&["system", "remove", "cloud target"]).status.success());
    assert_eq!(admin(&["system", "get", "cloud target"]).status.code(), Some(1));
    // A new system from a document needs its secret: the mask is refused with exit code 1.
    let out = admin(&["system", "import", file]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Cloud Target"));
    let with_secret = exported.to_string().replace("\"********\"", "\"a-new-secret\"");
    std::fs::write(dir.path().join("systems.json"), with_secret).expect("write");
    let out = admin(&["system", "import", file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created "));
    let out = admin(&[
        "system",
        "import",
        &dir.path().join("missing.json").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "an unreadable file is a usage error");

    // Real-time: an empty log as JSON; an event that is not parked or failed is not re-driven (409).
    let events = json_out(&admin(&["realtime", "events", "--output", "json"]));
    assert_eq!(events, serde_json::json!([]));
    let out = admin(&["realtime", "retry", "99999"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 409") && stderr.contains("not parked or failed"),
        "{stderr}"
    );
    json_out(&admin(&["plugin", "list", "--output", "json"]));

    // Usage errors: exit code 2.
    assert_eq!(admin(&["user", "add"]).status.code(), Some(2));
    assert_eq!(admin(&["system", "list", "--output", "yaml"]).status.code(), Some(2));
}

#[test]
fn login_thresholds_from_the_options_and_an_admin_unlock_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    // The child is stopped and the data directory removed when `served` is dropped.
    let served = Served {
        child: serve_on(
            &[
                "--listen",
                &listen,
                "--data-dir",
                data.to_str().expect("utf-8"),
                "--login-max-failures",
                "2",
                "--login-lock-minutes",
                "3",
            ],
            &[],
            port,
        ),
        url: format!("http://{listen}"),
        data,
    };
    const ADMIN: &str = "admin:cli-test-password";
    let admin = |args: &[&str]| admin_with_stdin(&served, ADMIN, args, None);
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &[
            "user",
            "add",
            "guessed",
            "--permission",
            "read-logs",
            "--password-stdin",
        ],
        Some("guessed-password-1\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Two failures lock the user (the option, not the default of 10); the right password is refused then.
    for _ in 0..2 {
        let out = admin_with_stdin(&served, "guessed:wrong-password", &["realtime", "events"], None);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = admin_with_stdin(&served, "guessed:guessed-password-1", &["realtime", "events"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too many failed logins"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let locks = json_out(&admin(&["user", "locks", "--output", "json"]));
    let lock = locks
        .as_array()
        .and_then(|l| l.iter().find(|l| l["subject"] == "guessed"))
        .unwrap_or_else(|| panic!("the lock is listed: {locks}"));
    assert_eq!(lock["scope"], "principal");
    let left = lock["retryAfterSeconds"].as_u64().expect("seconds");
    assert!((150..=180).contains(&left), "--login-lock-minutes 3: {left}");

    let out = admin(&["user", "unlock", "guessed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = admin_with_stdin(&served, "guessed:guessed-password-1", &["realtime", "events"], None);
    assert!(
        out.status.success(),
        "signed in again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not locked any more: exit code 1 and a message.
    let out = admin(&["user", "unlock", "guessed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not locked"));
}

#[test]
fn audit_export_as_csv_and_json_to_stdout_or_a_file() {
    let served = serve();
    const ADMIN: &str = "admin:cli-test-password";
    let admin = |args: &[&str]| admin_with_stdin(&served, ADMIN, args, None);
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &[
            "user",
            "add",
            "auditor",
            "--permission",
            "read-audit",
            "--password-stdin",
        ],
        Some("auditor-pa55word-1\n"),
    );
    json_out(&out);

    let out = admin(&["audit", "export"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.starts_with("\"Date\",\"Administrator's ID\",\"Administrator's Name\""),
        "{csv}"
    );
    assert!(csv.contains("\"principal.create\""), "{csv}");
    assert!(!csv.contains("auditor-pa55word-1"), "no password in the export");

    // JSON into a file, by the technical user with read-audit; a span in the future holds nothing.
    let file = served.data.with_extension("audit.json");
    let out = admin_with_stdin(
        &served,
        "auditor:auditor-pa55word-1",
        &[
            "audit",
            "export",
            "--format",
            "json",
            "--output",
            file.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the file")).expect("JSON");
    let _ = std::fs::remove_file(&file);
    assert_eq!(exported[0]["action"], "principal.create");
    assert_eq!(exported[0]["objectName"], "auditor");
    let future = json_out(&admin(&[
        "audit",
        "export",
        "--format",
        "json",
        "--from",
        "2999-01-01T00:00:00Z",
    ]));
    assert_eq!(future, serde_json::json!([]));

    // A bad instant is the service's 400 (exit code 1); a user without the permission gets 403.
    let out = admin(&["audit", "export", "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &["user", "add", "bot", "--permission", "proxy-api", "--password-stdin"],
        Some("bot-password-1\n"),
    );
    json_out(&out);
    let out = admin_with_stdin(&served, "bot:bot-password-1", &["audit", "export"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 403"));
}

#[test]
fn notify_add_list_test_deliveries_and_remove_with_json_and_exit_codes() {
    let served = serve();
    const ADMIN: &str = "admin:cli-test-password";
    let admin = |args: &[&str]| admin_with_stdin(&served, ADMIN, args, None);

    // An unknown kind is the service's 400: exit code 1, the reason on stderr.
    let out = admin(&[
        "notify",
        "add",
        "--kind",
        "job.exploded",
        "--recipient",
        "ops@example.com",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("job.exploded"));
    // Neither a URL nor a recipient: a usage error.
    let out = admin(&["notify", "add", "--kind", "job.failed"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // A webhook with its secret from stdin (never argv), to a port nothing listens on.
    let closed = free_port();
    let out = admin_with_stdin(
        &served,
        ADMIN,
        &[
            "notify",
            "add",
            "--kind",
            "job.failed",
            "--kind",
            "job.recovered",
            "--url",
            &format!("http://127.0.0.1:{closed}/hook"),
            "--secret-stdin",
            "--output",
            "json",
        ],
        Some("a-secret-of-at-least-16\n"),
    );
    let hook = json_out(&out);
    assert_eq!(hook["hasSecret"], true);
    assert!(hook.get("secret").is_none(), "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_string();
    // Mail without an SMTP server configured.
    let mail = json_out(&admin(&[
        "notify",
        "add",
        "--kind",
        "realtime.backlog",
        "--backlog-minutes",
        "30",
        "--recipient",
        "ops@example.com",
        "--output",
        "json",
    ]));
    assert_eq!(mail["backlogMinutes"], 30);
    let listed = json_out(&admin(&["notify", "list", "--output", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(!listed.to_string().contains("a-secret-of-at-least-16"));
    let text = String::from_utf8_lossy(&admin(&["notify", "list"]).stdout).to_string();
    assert!(text.contains("ops@example.com") && text.contains(&hook_id), "{text}");

    // Tests that cannot be delivered: exit code 1, and the delivery log says why.
    let out = admin(&["notify", "test", &hook_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not delivered"));
    let out = admin(&["notify", "test", mail["id"].as_str().expect("id"), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let delivery: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(delivery["status"], "failed");
    assert!(
        delivery["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no SMTP server")),
        "{delivery}"
    );
    let log = json_out(&admin(&[
        "notify",
        "deliveries",
        "--subscription",
        &hook_id,
        "--output",
        "json",
    ]));
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log[0]["kind"], "test");
    assert_eq!(log[0]["status"], "failed");
    assert!(
        log[0]["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach"))
    );
    let text = String::from_utf8_lossy(&admin(&["notify", "deliveries"]).stdout).to_string();
    assert!(text.contains("failed") && text.contains("test"), "{text}");

    // Removed; removing again is the service's 404: exit code 1.
    assert!(admin(&["notify", "remove", &hook_id]).status.success());
    assert_eq!(admin(&["notify", "remove", &hook_id]).status.code(), Some(1));
    assert_eq!(
        json_out(&admin(&["notify", "list", "--output", "json"]))
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// A SCIM service on a free port that lists one user under `Users` and no groups (enough to be a run's
/// source), answering each request on a thread of its own until the process ends; its base URL.
fn one_user_scim_source() -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/scim", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                // The headers, up to the blank line (the GETs have no body).
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" || line == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("");
                let first_page = !path.contains("startIndex=") || path.contains("startIndex=1&");
                let resources = if path.contains("/Users") && first_page {
                    serde_json::json!([{
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "id": "u1", "userName": "jdoe", "active": true,
                        "name": {"givenName": "Jane", "familyName": "Doe"},
                        "emails": [{"value": "jdoe@example.com", "primary": true}],
                        "meta": {"resourceType": "User", "lastModified": "2026-01-01T00:00:00Z", "version": "W/\"1\""}
                    }])
                } else {
                    serde_json::json!([])
                };
                let (status, body) = if path.contains("/Users") || path.contains("/Groups") {
                    let n = resources.as_array().map_or(0, Vec::len);
                    let body = serde_json::json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": n, "startIndex": 1, "itemsPerPage": n, "Resources": resources,
                    });
                    ("200 OK", body.to_string())
                } else {
                    ("404 Not Found", r#"{"detail":"not here"}"#.to_string())
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

#[test]
fn system_release_ends_a_quarantine_with_json_and_exit_codes() {
    let served = serve();
    const ADMIN: &str = "admin:cli-test-password";
    let admin = |args: &[&str]| admin_with_stdin(&served, ADMIN, args, None);
    let source_url = format!("URL={}", one_user_scim_source());
    json_out(&admin(&[
        "system",
        "add",
        "--name",
        "Release Source",
        "--type",
        "scim",
        "--role",
        "source",
        "-p",
        &source_url,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=src-token",
    ]));
    let source = json_out(&admin(&["system", "get", "release source"]));
    let source_id = source["id"].as_str().expect("id").to_string();
    // A target nothing listens on, quarantined after one run whose writes all fail.
    let unreachable = format!("URL=http://127.0.0.1:{}/scim", free_port());
    let target = json_out(&admin(&[
        "system",
        "add",
        "--name",
        "Release Target",
        "--type",
        "scim",
        "--role",
        "target",
        "-p",
        &unreachable,
        "-p",
        "Authentication=BearerToken",
        "-p",
        "Password=tgt-token",
        "-p",
        "provisio.quarantine.failed.runs=1",
        // No retries: the run fails at once instead of after the default 30 s backoffs.
        "-p",
        "ips.failed.request.retry.attempts=0",
        "--source",
        &source_id,
    ]));
    let target_id = target["id"].as_str().expect("id").to_string();

    // Not quarantined yet: the service's 409, exit code 1.
    let out = admin(&["system", "release", &target_id]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 409") && stderr.contains("not quarantined"),
        "{stderr}"
    );

    let out = admin(&["job", "run", "Release Source", "--follow"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let quarantined = json_out(&admin(&["system", "get", &target_id]));
    assert_eq!(
        quarantined["quarantine"]["reason"], "failed-runs",
        "{quarantined}\nthe run: {stdout}"
    );

    // Released by name, as JSON: the system as it is now, with the quarantine that ended.
    let released = json_out(&admin(&["system", "release", "release target", "--output", "json"]));
    assert_eq!(released["id"], target_id.as_str());
    assert_eq!(released["quarantine"], serde_json::Value::Null, "{released}");
    assert_eq!(released["released"]["reason"], "failed-runs", "{released}");
    assert_eq!(
        released["message"],
        "System Release Target was released from quarantine."
    );
    let after = json_out(&admin(&["system", "get", &target_id]));
    assert_eq!(after["quarantine"], serde_json::Value::Null, "{after}");

    // Again: nothing to release. Text output of a release says so on stdout.
    let out = admin(&["system", "release", &target_id, "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    admin(&["job", "run", "Release Source", "--follow"]);
    let out = admin(&["system", "release", &target_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("was released from quarantine") && text.contains("reason: failed-runs"),
        "{text}"
    );

    // An unknown system (exit code 1); no system at all is a usage error (2); refused credentials (1).
    let out = admin(&["system", "release", "no-such-system"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-system"));
    assert_eq!(admin(&["system", "release"]).status.code(), Some(2));
    let out = admin(&["system", "release", &target_id, "--user", "admin:wrong-password"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
}
