//! Record mode against a tiny HTTP server on 127.0.0.1, then replay of what it wrote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;

use serde_json::{Value, json};

use super::live::{AUTHENTICATION_VAR, PASSWORD_VAR, URL_VAR};
use super::*;
use crate::http::Request;
use crate::{Config, Error};

const TOKEN: &str = "tok-s3cret-123";

/// A request the server received.
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Answer = (u16, Vec<(&'static str, String)>, String);

/// Serves `count` requests, one per connection, each answered by `answer`; reports what it received.
fn serve(count: usize, answer: impl Fn(&Seen) -> Answer + Send + 'static) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else { continue };
            let mut reader = BufReader::new(clone);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((n, v)) = h.trim_end().split_once(':') {
                    headers.push((n.trim().to_string(), v.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let seen = Seen {
                method,
                target,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let (status, extra, text) = answer(&seen);
            let mut out = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                text.len()
            );
            for (n, v) in extra {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&text);
            // Recorded before answering: a test reads what was seen as soon as its request returns.
            let _ = tx.send(seen);
            let _ = stream.write_all(out.as_bytes());
        }
    });
    (url, rx)
}

fn temp_recording(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("provisio-sdk-{}-{name}.json", std::process::id()))
}

/// The variables of a record run against `url` with a bearer token.
fn record_vars(path: &Path, url: &str) -> impl Fn(&str) -> Option<String> {
    let (path, url) = (path.display().to_string(), url.to_string());
    move |name: &str| match name {
        RECORD_VAR => Some(path.clone()),
        URL_VAR => Some(url.clone()),
        AUTHENTICATION_VAR => Some("BearerToken".into()),
        PASSWORD_VAR => Some(TOKEN.into()),
        _ => None,
    }
}

fn no_vars(_: &str) -> Option<String> {
    None
}

/// A small connector session: a page, a create, a missing user, a delete, and a request the host refuses.
fn session(h: &mut Harness) -> Vec<Result<(u16, String), Error>> {
    let cfg = Config::new("t").with("URL", "http://example/v1");
    h.run(|| {
        let mut out = Vec::new();
        let mut keep = |r: crate::Result<crate::http::Response>| out.push(r.map(|r| (r.status, r.text())));
        keep(
            Request::get("users")
                .query("offset", 0)
                .query("limit", 2)
                .header("Accept", "application/json")
                .send(&cfg),
        );
        keep(Request::post("users").json(&json!({"userName": "a b"})).send(&cfg));
        keep(Request::get("users/404").send(&cfg));
        keep(Request::delete("users/9").send(&cfg));
        keep(Request::get("oauth/token").upstream("token").send(&cfg));
        out
    })
}

#[test]
fn a_recording_replays_to_the_same_results() {
    let (url, seen) = serve(4, |req| {
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return (401, vec![], String::new());
        }
        let json = ("content-type", "application/json".to_string());
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", "/v1/users?offset=0&limit=2") => (
                200,
                vec![json],
                json!({"users": [{"id": "1", "userName": "x"}], "total": 1}).to_string(),
            ),
            ("POST", "/v1/users") => {
                let mut user: Value = serde_json::from_str(&req.body).unwrap_or_default();
                user["id"] = json!("9");
                (201, vec![json, ("etag", "W/\"1\"".into())], user.to_string())
            }
            ("DELETE", "/v1/users/9") => (204, vec![], String::new()),
            _ => (404, vec![json], json!({"detail": "no such user"}).to_string()),
        }
    });
    let path = temp_recording("replays");
    let recorded = {
        let mut h = Harness::recorded_with(&path, &record_vars(&path, &url)).expect("record mode");
        assert!(h.is_recording());
        session(&mut h)
    };
    // The server saw the requests as the host would send them, credentials attached.
    let received: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(received.len(), 4);
    assert!(
        received
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-s3cret-123"))
    );
    assert_eq!(received[1].body, r#"{"userName":"a b"}"#);
    assert_eq!(recorded[0].as_ref().map(|r| r.0), Ok(200));
    assert_eq!(recorded[1].as_ref().map(|r| r.0), Ok(201));
    assert_eq!(recorded[2].as_ref().map(|r| r.0), Ok(404));
    assert_eq!(recorded[3].as_ref().map(|r| r.0), Ok(204));
    assert!(matches!(&recorded[4], Err(Error::InvalidConfig(m)) if m.contains("no token URL")));

    // Without the variable the same session replays the file and gets the same results.
    let mut h = Harness::recorded_with(&path, &no_vars).expect("replay");
    assert!(!h.is_recording());
    assert_eq!(h.pending(), 5);
    assert_eq!(session(&mut h), recorded);
    h.assert_done();
    // The answer's headers come back too.
    let exchanges = read_recording(&path).expect("readable");
    assert!(matches!(&exchanges[1].outcome, Ok(r) if r.headers.iter().any(|(n, v)| n == "etag" && v == "W/\"1\"")));
    // Not the framing: a JSON body is replayed compact, so its length would be wrong.
    let framing = |e: &Exchange| matches!(&e.outcome, Ok(r) if r.headers.iter().any(|(n, _)| n == "content-length"));
    assert!(!exchanges.iter().any(framing));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn credentials_and_secrets_are_redacted_from_the_recording() {
    let (url, _seen) = serve(1, |req| {
        let auth = req.header("authorization").unwrap_or("").to_string();
        (
            200,
            vec![
                ("content-type", "application/json".into()),
                ("x-echo", auth.clone()),
                ("set-cookie", "session=abcdef123".into()),
            ],
            json!({"seen": auth, "access_token": "fresh-token-999", "token_type": "bearer"}).to_string(),
        )
    });
    let path = temp_recording("redacts");
    let cfg = Config::new("t").with("URL", "http://example/v1");
    let call = |h: &mut Harness| {
        h.run(|| {
            Request::post("users")
                .header("Authorization", "Basic c29tZTpvbmU=")
                .header("X-Api-Key", "key-42-abc")
                .json(&json!({"userName": "a", "password": "Initial-Pw-1"}))
                .send(&cfg)
                .map(|r| r.status)
        })
    };
    {
        let mut h = Harness::recorded_with(&path, &record_vars(&path, &url)).expect("record mode");
        assert_eq!(call(&mut h), Ok(200));
        h.save().expect("saved");
    }
    let text = std::fs::read_to_string(&path).expect("written");
    for secret in [
        TOKEN,
        "c29tZTpvbmU=",
        "key-42-abc",
        "Initial-Pw-1",
        "fresh-token-999",
        "abcdef123",
    ] {
        assert!(!text.contains(secret), "{secret} is in the recording:\n{text}");
    }
    let doc: Value = serde_json::from_str(&text).expect("json");
    let exchange = &doc["exchanges"][0];
    assert_eq!(exchange["request"]["headers"]["Authorization"], REDACTED);
    assert_eq!(exchange["request"]["json"]["password"], REDACTED);
    assert_eq!(exchange["response"]["headers"]["x-echo"], format!("Bearer {REDACTED}"));
    assert_eq!(exchange["response"]["json"]["seen"], format!("Bearer {REDACTED}"));
    assert_eq!(exchange["response"]["json"]["token_type"], "bearer");
    // Redacted values still match what the connector sends on replay.
    let mut h = Harness::recorded_with(&path, &no_vars).expect("replay");
    assert_eq!(call(&mut h), Ok(200));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn record_mode_says_what_is_missing() {
    let path = temp_recording("setup");
    let var = |name: &str| (name == RECORD_VAR).then(|| path.display().to_string());
    let err = Harness::recorded_with(&path, &var).err().expect("no URL");
    assert!(matches!(err, RecordingError::Setup { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("PROVISIO_RECORD_URL must give the system's URL"),
        "{err}"
    );
    // Another recording named: this one replays (and is missing).
    let other = |name: &str| (name == RECORD_VAR).then(|| "elsewhere/other.json".to_string());
    let err = Harness::recorded_with(&path, &other).err().expect("missing");
    assert!(matches!(err, RecordingError::Missing { .. }), "{err}");
}

#[test]
fn an_unreachable_system_is_recorded_as_the_host_failure() {
    // A port nothing listens on: bound, then closed.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/v1", l.local_addr().expect("addr"))
    };
    let path = temp_recording("unreachable");
    let status = {
        let mut h = Harness::recorded_with(&path, &record_vars(&path, &url)).expect("record mode");
        h.run(|| Request::get("users").send(&Config::new("t")).map(|r| r.status))
    };
    assert!(
        matches!(&status, Err(Error::Transient(m)) if m.contains("could not be reached")),
        "{status:?}"
    );
    let mut h = Harness::recorded_with(&path, &no_vars).expect("replay");
    let replayed = h.run(|| Request::get("users").send(&Config::new("t")).map(|r| r.status));
    assert_eq!(replayed, status);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn client_credentials_fetch_a_token_once_and_keep_it_out_of_the_recording() {
    let (url, seen) = serve(3, |req| match req.target.as_str() {
        "/oauth/token" if req.header("authorization") == Some("Basic Y2xpZW50OmNsaWVudC1zZWNyZXQ=") => (
            200,
            vec![("content-type", "application/json".into())],
            json!({"access_token": "issued-token-77", "expires_in": 600}).to_string(),
        ),
        "/oauth/token" => (401, vec![], String::new()),
        _ if req.header("authorization") == Some("Bearer issued-token-77") => {
            (200, vec![], "token issued-token-77 accepted".into())
        }
        _ => (401, vec![], String::new()),
    });
    let base = url.trim_end_matches("/v1").to_string();
    let path = temp_recording("oauth");
    let vars = {
        let (path, url, token_url) = (path.display().to_string(), url.clone(), format!("{base}/oauth/token"));
        move |name: &str| match name {
            RECORD_VAR => Some(path.clone()),
            URL_VAR => Some(url.clone()),
            super::live::TOKEN_URL_VAR => Some(token_url.clone()),
            super::live::USER_VAR => Some("client".into()),
            PASSWORD_VAR => Some("client-secret".into()),
            _ => None,
        }
    };
    let statuses = {
        let mut h = Harness::recorded_with(&path, &vars).expect("record mode");
        h.run(|| {
            (0..2)
                .map(|_| Request::get("users").send(&Config::new("t")).map(|r| r.status))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(statuses, [Ok(200), Ok(200)]);
    let received: Vec<Seen> = seen.try_iter().collect();
    let targets: Vec<&str> = received.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/oauth/token", "/v1/users", "/v1/users"],
        "one token for both requests"
    );
    assert_eq!(received[0].body, "grant_type=client_credentials");
    let text = std::fs::read_to_string(&path).expect("written");
    assert!(
        !text.contains("issued-token-77") && !text.contains("client-secret"),
        "{text}"
    );
    assert!(text.contains("token <redacted> accepted"), "{text}");
    let _ = std::fs::remove_file(&path);
}
