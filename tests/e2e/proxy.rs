//! Proxy systems: a connector-backed system served as a SCIM 2.0 service provider. scim2-tester (third party)
//! against proxies on scim2-server (generic SCIM connector) and on the UAA simulator (xsuaa connector), the
//! conformance checklist of `../shared/reference/scim-conformance.md` written from RFC 7643/7644, bad input,
//! the SAP IdM hybrid flow of seed 002, and the export.

use std::path::PathBuf;

use provisio_tests::sim::uaa;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Scim2Server, Service};
use provisio::server::Settings;

const CLIENT: (&str, &str) = ("idm-client", "idm-client-secret");
const SCIM: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A service with a technical user holding *Access Proxy System API*.
async fn service() -> Service {
    let service = Service::start().await;
    let (status, body) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": CLIENT.0, "password": CLIENT.1, "permissions": ["proxy-api"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    service
}

async fn proxy_on_scim2(service: &Service, server: &Scim2Server, name: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "scim", "role": "proxy",
            "properties": {"URL": server.base_url, "Authentication": "BearerToken", "Password": server.token}
        }))
        .await
}

async fn proxy_on_uaa(service: &Service, sim: &uaa::Simulator, name: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "xsuaa", "role": "proxy",
            "properties": {
                "URL": sim.base_url,
                "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
                "User": sim.options().client_id,
                "Password": sim.options().client_secret,
                "xsuaa.origin": "uaa",
                "provisio.rate.limit": "100000",
            }
        }))
        .await
}

/// A SCIM client of one proxy system.
struct Client<'a> {
    service: &'a Service,
    base: String,
}

impl<'a> Client<'a> {
    fn new(service: &'a Service, system: &str) -> Self {
        Client {
            service,
            base: format!("{}/ipsproxy/api/v1/scim/{system}", service.url),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .service
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(CLIENT.0, Some(CLIENT.1));
        if let Some(b) = body {
            request = request.header("content-type", SCIM).body(b.to_string());
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, _, b) = self.send(method, path, body, &[]).await;
        (s, b)
    }
}

fn scim2_tester(url: &str) -> (bool, String) {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let python = workspace.join(".venv-scim/bin/python");
    let tool = workspace.join("../shared/tools/run_scim2_tester.py");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh once",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(tool)
        .arg(url)
        .arg("--basic")
        .arg(format!("{}:{}", CLIENT.0, CLIENT.1))
        .output()
        .expect("run scim2-tester");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs scim2-tester; every failure line must contain both words of one `known` pair (gaps recorded in
/// docs/proxy.md).
async fn run_tester(service: &Service, system: &str, known: &[(&str, &str)]) -> String {
    let url = format!("{}/ipsproxy/api/v1/scim/{system}", service.url);
    let (ok, report) = tokio::task::spawn_blocking(move || scim2_tester(&url))
        .await
        .expect("tester");
    let summary = report.lines().last().unwrap_or_default().to_string();
    eprintln!("{report}");
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| ["ERROR ", "DEVIATION ", "CRITICAL "].iter().any(|p| l.starts_with(p)))
        .filter(|l| !known.iter().any(|(a, b)| l.contains(a) && l.contains(b)))
        .collect();
    assert!(unexpected.is_empty(), "scim2-tester found failures:\n{report}");
    if known.is_empty() {
        assert!(ok && summary.contains(" 0 failed"), "{summary}");
    }
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_scim2_server_backend() {
    let service = service().await;
    let server = Scim2Server::start().await;
    let system = proxy_on_scim2(&service, &server, "proxy on scim2-server").await;
    let summary = run_tester(&service, &system, &[]).await;
    eprintln!("scim2-server backend: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_uaa_backend() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "proxy on uaa").await;
    // UAA groups have no externalId: the served Group schema says so (readOnly, returned never), so the
    // tester does not expect one, and nothing fails.
    let summary = run_tester(&service, &system, &[]).await;
    eprintln!("UAA backend: {summary}");
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true},
                   {"value": format!("{name}@home.example"), "type": "home"}],
        "active": true
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, scim_type: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    assert_eq!(body["status"], expected.as_u16().to_string(), "{body}");
    if let Some(t) = scim_type {
        assert_eq!(body["scimType"], t, "{body}");
    }
}

/// The checklist of scim-conformance.md beyond scim2-tester, against a proxy on scim2-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_checklist_on_scim2_server_backend() {
    let service = service().await;
    let server = Scim2Server::start().await;
    let system = proxy_on_scim2(&service, &server, "checklist").await;
    let c = Client::new(&service, &system);

    // Discovery tells the truth.
    let (s, h, spc) = c.send(Method::GET, "/ServiceProviderConfig", None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap_or("").starts_with(SCIM));
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["filter"]["maxResults"], 1000);
    let (_, types) = c.call(Method::GET, "/ResourceTypes", None).await;
    assert_eq!(types["totalResults"], 2);
    let (_, schemas) = c.call(Method::GET, "/Schemas", None).await;
    assert_eq!(schemas["totalResults"], 3);

    // 401 with a SCIM body, and 403 without the permission.
    let r = service
        .http
        .get(format!("{}/Users", c.base))
        .send()
        .await
        .expect("request");
    let status = r.status();
    assert_error(status, &r.json().await.expect("json"), StatusCode::UNAUTHORIZED, None);
    let r = service
        .http
        .get(format!("{}/Users", c.base))
        .basic_auth(CLIENT.0, Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = service
        .http
        .get(format!("{}/Users", c.base))
        .basic_auth(crate::support::ADMIN.0, Some(crate::support::ADMIN.1))
        .send()
        .await
        .expect("request");
    assert!(matches!(r.status(), StatusCode::OK | StatusCode::FORBIDDEN));

    // Create: 201, Location = meta.location, ETag = meta.version, client id ignored; application/json works.
    let mut body = user("bjensen");
    body["id"] = json!("client-chosen");
    let r = service
        .http
        .post(format!("{}/Users", c.base))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().expect("location").to_string();
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    let created: Value = r.json().await.expect("json");
    let uid = created["id"].as_str().expect("id").to_string();
    assert_ne!(uid, "client-chosen");
    assert_eq!(created["meta"]["location"], location);
    assert_eq!(created["meta"]["version"], etag);
    assert!(location.starts_with(&c.base));
    // 409 uniqueness on a case-insensitive duplicate; 400 invalidValue without userName.
    let (s, b) = c.call(Method::POST, "/Users", Some(user("BJensen"))).await;
    assert_error(s, &b, StatusCode::CONFLICT, Some("uniqueness"));
    let (s, b) = c
        .call(
            Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "name": {"givenName": "x"}})),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let (s, b) = c.call(Method::GET, "/Users/does-not-exist", None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, None);

    let mut others = Vec::new();
    for i in 0..7 {
        let (s, b) = c.call(Method::POST, "/Users", Some(user(&format!("user{i}")))).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        others.push(b["id"].as_str().expect("id").to_string());
    }
    let (s, g) = c.call(Method::POST, "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Tour Guides", "members": [{"value": uid, "type": "User"}, {"value": others[0]}]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().expect("gid").to_string();
    let (s, b) = c
        .call(Method::POST, "/Groups", Some(json!({"displayName": "tour guides"})))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, Some("uniqueness"));
    let (_, g1) = c
        .call(Method::GET, &format!("/Groups/{gid}?excludedAttributes=members"), None)
        .await;
    assert!(
        g1.get("members").is_none() && g1["displayName"] == "Tour Guides",
        "{g1}"
    );

    // Filters.
    let q = |f: &str| format!("/Users?filter={}", urlencode(f));
    for (filter, expected) in [
        (r#"userName eq "BJENSEN""#, 1),
        (r#"USERNAME Eq "bjensen""#, 1),
        (r#"userName ne "bjensen""#, 7),
        (r#"userName co "user""#, 7),
        (r#"userName sw "user1""#, 1),
        (r#"userName ew "6""#, 1),
        ("userName pr", 8),
        ("nickName pr", 0),
        (r#"emails[type eq "work" and value ew "@example.com"]"#, 8),
        (r#"emails.type eq "home" and not (userName eq "bjensen")"#, 7),
        (r#"(userName eq "user1" or userName eq "user2") and active eq true"#, 2),
        (r#"emails[0].value eq "bjensen@example.com""#, 1),
        (r#"meta.lastModified gt "2000-01-01T00:00:00Z""#, 8),
        (r#"meta.lastModified lt "2000-01-01T00:00:00Z""#, 0),
        (r#"userName gt "user4""#, 2),
        (r#"userName ge "user4""#, 3),
        (r#"userName le "user0""#, 2),
        (&format!(r#"id eq "{uid}""#), 1),
    ] {
        let (s, b) = c.call(Method::GET, &q(filter), None).await;
        assert_eq!(s, StatusCode::OK, "{filter}: {b}");
        assert_eq!(b["totalResults"], expected, "{filter}: {b}");
    }
    let (_, b) = c
        .call(
            Method::GET,
            &format!("/Groups?filter={}", urlencode(&format!(r#"members.value eq "{uid}""#))),
            None,
        )
        .await;
    assert_eq!(ids(&b), vec![gid.clone()]);
    for bad in [
        r#"userName eq"#,
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"emails[type eq "a""#,
    ] {
        let (s, b) = c.call(Method::GET, &q(bad), None).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidFilter"));
    }

    // Paging and sorting.
    let page = |start: i64, count: i64| format!("/Users?sortBy=userName&startIndex={start}&count={count}");
    let (_, b) = c.call(Method::GET, &page(1, 3), None).await;
    assert_eq!(
        (
            b["totalResults"].as_u64(),
            b["itemsPerPage"].as_u64(),
            b["startIndex"].as_u64()
        ),
        (Some(8), Some(3), Some(1))
    );
    assert_eq!(b["Resources"][0]["userName"], "bjensen");
    let (_, b) = c.call(Method::GET, &page(0, 3), None).await;
    assert_eq!(b["startIndex"], 1);
    let (_, b) = c.call(Method::GET, &page(1, 0), None).await;
    assert_eq!(
        (b["totalResults"].as_u64(), b["Resources"].as_array().map(Vec::len)),
        (Some(8), Some(0))
    );
    let (_, b) = c.call(Method::GET, &page(1, -5), None).await;
    assert_eq!(b["itemsPerPage"], 0);
    let (_, b) = c.call(Method::GET, &page(20, 5), None).await;
    assert_eq!(
        (b["totalResults"].as_u64(), b["itemsPerPage"].as_u64()),
        (Some(8), Some(0))
    );
    let (_, b) = c.call(Method::GET, "/Users?count=5000", None).await;
    assert_eq!(b["itemsPerPage"], 8);
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let (_, b) = c.call(Method::GET, &page(start, 3), None).await;
        seen.extend(ids(&b));
        start += b["itemsPerPage"].as_i64().unwrap_or(0);
        if start > b["totalResults"].as_i64().unwrap_or(0) {
            break;
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (8, 8));
    let (_, b) = c
        .call(Method::GET, "/Users?sortBy=userName&sortOrder=descending&count=1", None)
        .await;
    assert_eq!(b["Resources"][0]["userName"], "user6");

    // .search
    let (s, b) = c.call(Method::POST, "/Users/.search", Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"user\"", "startIndex": 2, "count": 2, "sortBy": "userName"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["totalResults"].as_u64(), b["Resources"][0]["userName"].as_str()),
        (Some(7), Some("user1"))
    );
    let (_, b) = c
        .call(
            Method::POST,
            "/.search",
            Some(json!({"filter": "displayName pr or userName eq \"bjensen\""})),
        )
        .await;
    assert_eq!(b["totalResults"], 2, "{b}");

    // PUT: full replace, readOnly ignored, stale If-Match 412, * accepted.
    let mut replacement = user("bjensen");
    replacement["nickName"] = json!("Babs");
    replacement["groups"] = json!([{"value": "nope"}]);
    replacement["meta"] = json!({"version": "W/\"bogus\""});
    let (s, _, b) = c
        .send(
            Method::PUT,
            &format!("/Users/{uid}"),
            Some(replacement.clone()),
            &[("if-match", "W/\"stale\"")],
        )
        .await;
    assert_error(s, &b, StatusCode::PRECONDITION_FAILED, None);
    let (s, _, b) = c
        .send(
            Method::PUT,
            &format!("/Users/{uid}"),
            Some(replacement.clone()),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["nickName"], "Babs");
    let (s, h, b) = c.send(Method::GET, &format!("/Users/{uid}"), None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let tag = h["etag"].to_str().expect("etag").to_string();
    // If-None-Match: a current copy (its tag, `*`, or in a list, compared weakly) is answered 304 with
    // the ETag and no body; a stale one gets the resource.
    let weak = format!("W/\"{}\"", tag.trim_start_matches("W/").trim_matches('"'));
    for current in [tag.as_str(), "*", &format!("W/\"stale\", {weak}")] {
        let (s, h, b) = c
            .send(
                Method::GET,
                &format!("/Users/{uid}"),
                None,
                &[("if-none-match", current)],
            )
            .await;
        assert_eq!(s, StatusCode::NOT_MODIFIED, "{current}: {b}");
        assert_eq!(h["etag"].to_str().ok(), Some(tag.as_str()), "{current}");
        assert_eq!(b, Value::Null, "{current}");
    }
    let (s, _, fresh) = c
        .send(
            Method::GET,
            &format!("/Users/{uid}"),
            None,
            &[("if-none-match", "W/\"stale\"")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fresh, b);
    // The list over two field lines.
    let (s, _, _) = c
        .send(
            Method::GET,
            &format!("/Users/{uid}"),
            None,
            &[("if-none-match", "W/\"stale\""), ("if-none-match", &weak)],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    let (s, _, _) = c
        .send(
            Method::PUT,
            &format!("/Users/{uid}"),
            Some(b.clone()),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // PATCH.
    let uri = format!("/Users/{uid}");
    let (s, b) = c
        .call(
            Method::PATCH,
            &uri,
            Some(patch(json!([
                {"op": "Replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
                {"op": "add", "value": {"name.familyName": "Jensen", "title": "Tour Guide"}},
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "replace", "path": "active", "value": false}
            ]))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["name"]["givenName"].as_str(),
            b["name"]["familyName"].as_str(),
            b["title"].as_str()
        ),
        (Some("Barbara"), Some("Jensen"), Some("Tour Guide"))
    );
    assert_eq!(
        b["emails"],
        json!([{"value": "babs@example.com", "type": "work", "primary": true}])
    );
    let (_, b) = c.call(Method::GET, &uri, None).await;
    assert_eq!(b["active"], false);
    for (body, scim_type) in [
        (patch(json!([{"op": "remove"}])), "noTarget"),
        (
            patch(json!([{"op": "replace", "path": "id", "value": "x"}])),
            "mutability",
        ),
        (
            patch(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
            "mutability",
        ),
        (
            json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
            "invalidSyntax",
        ),
        (patch(json!([])), "invalidSyntax"),
        (
            patch(
                json!([{"op": "add", "path": "title", "value": "atomic?"}, {"op": "replace", "path": "emails[type eq \"none\"].value", "value": "x"}]),
            ),
            "noTarget",
        ),
    ] {
        let (s, b) = c.call(Method::PATCH, &uri, Some(body)).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, Some(scim_type));
    }
    let (_, b) = c.call(Method::GET, &uri, None).await;
    assert_eq!(b["title"], "Tour Guide", "a failed PATCH changed nothing");

    // Groups: members add/remove via PATCH, value filter, remove all; deleting a user removes memberships.
    let guri = format!("/Groups/{gid}");
    let (s, b) = c.call(Method::PATCH, &guri, Some(patch(json!([{"op": "add", "path": "members", "value": others[1..4].iter().map(|v| json!({"value": v})).collect::<Vec<_>>()}])))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["members"].as_array().map(Vec::len), Some(5));
    let (_, b) = c
        .call(
            Method::PATCH,
            &guri,
            Some(patch(
                json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", others[1])}]),
            )),
        )
        .await;
    assert_eq!(b["members"].as_array().map(Vec::len), Some(4));
    let (s, _) = c.call(Method::DELETE, &format!("/Users/{}", others[2]), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, b) = c.call(Method::GET, &guri, None).await;
    assert!(!b["members"].to_string().contains(&others[2]), "{b}");
    let (_, b) = c
        .call(
            Method::PATCH,
            &guri,
            Some(patch(json!([{"op": "remove", "path": "members"}]))),
        )
        .await;
    assert!(
        b.get("members").is_none_or(|m| m.as_array().is_some_and(Vec::is_empty)),
        "{b}"
    );

    // DELETE: 204, then 404.
    let (s, _) = c.call(Method::DELETE, &uri, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c.call(Method::DELETE, &uri, None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, None);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Bad input answers the right SCIM error, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_scim_errors() {
    let service = service().await;
    let server = Scim2Server::start().await;
    let system = proxy_on_scim2(&service, &server, "bad input").await;
    let c = Client::new(&service, &system);
    let raw = |method: Method, path: &str, ct: &str, body: Vec<u8>| {
        service
            .http
            .request(method, format!("{}{path}", c.base))
            .basic_auth(CLIENT.0, Some(CLIENT.1))
            .header("content-type", ct.to_string())
            .body(body)
            .send()
    };
    let check = |r: reqwest::Response, status: StatusCode, scim_type: Option<&'static str>| async move {
        let s = r.status();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_error(s, &b, status, scim_type);
    };
    check(
        raw(Method::POST, "/Users", SCIM, b"{not json".to_vec())
            .await
            .expect("r"),
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
    )
    .await;
    check(
        raw(Method::POST, "/Users", SCIM, b"[1,2]".to_vec()).await.expect("r"),
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
    )
    .await;
    check(
        raw(Method::POST, "/Users", "text/plain", b"{}".to_vec())
            .await
            .expect("r"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        None,
    )
    .await;
    // The server answers before reading the whole body and closes that connection: use a client of its own.
    let oversized = reqwest::Client::new()
        .post(format!("{}/Users", c.base))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .header("content-type", SCIM)
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .expect("r");
    check(oversized, StatusCode::PAYLOAD_TOO_LARGE, None).await;
    let (s, b) = c.call(Method::GET, "/Users?filter=userName%20eq", None).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidFilter"));
    let (s, b) = c.call(Method::GET, "/Users?attributes=noSuchAttribute", None).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let (s, b) = c.call(Method::GET, "/Users?count=lots", None).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let (s, b) = c.call(Method::GET, "/Widgets", None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, None);
    let (s, b) = c.call(Method::DELETE, "/Schemas", None).await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, None);
    let (s, b) = c
        .call(
            Method::PATCH,
            "/Users/x",
            Some(json!({"schemas": [PATCH_OP], "Operations": "nope"})),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    // A system that is not a proxy is not served.
    let target = service.create_system(json!({"name": "t", "type": "scim", "role": "target", "properties": {"URL": server.base_url, "Authentication": "BearerToken", "Password": server.token}})).await;
    let (s, b) = Client::new(&service, &target).call(Method::GET, "/Users", None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, None);
    // A backend that is down: 503 with Retry-After.
    let port = crate::support::free_port();
    let down = service.create_system(json!({"name": "down", "type": "scim", "role": "proxy", "properties": {"URL": format!("http://127.0.0.1:{port}/v2"), "Authentication": "BearerToken", "Password": "x"}})).await;
    let (s, h, b) = Client::new(&service, &down)
        .send(Method::GET, "/Users", None, &[])
        .await;
    assert_error(s, &b, StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(h.contains_key("retry-after"));
    // Fuzzed filters never answer 500.
    let alphabet: Vec<char> = "()[]\" .:aeqnotrsw1-é\\".chars().collect();
    let mut state: u64 = 7;
    for _ in 0..150 {
        let mut f = String::new();
        for _ in 0..(state % 30) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f.push(alphabet[(state as usize) % alphabet.len()]);
        }
        state = state.wrapping_add(1);
        let (s, _) = c
            .call(Method::GET, &format!("/Users?filter={}", urlencode(&f)), None)
            .await;
        assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "{f:?} → {s}");
    }
}

/// Seed 002: an identity manager loads everything through the proxy, then writes back; the UAA backend
/// shows each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_flow_with_uaa_backend() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 230,
        groups: 4,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "hybrid").await;
    let c = Client::new(&service, &system);

    // Initial load: page to the end, SAP's documented loop.
    let mut loaded = Vec::new();
    let mut start = 1;
    loop {
        let (s, page) = c
            .call(Method::GET, &format!("/Users?startIndex={start}&count=100"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        loaded.extend(ids(&page));
        start += page["itemsPerPage"].as_i64().unwrap_or(0);
        if start > page["totalResults"].as_i64().unwrap_or(0) {
            break;
        }
    }
    assert_eq!(loaded.len(), sim.user_count());
    let (_, groups) = c.call(Method::GET, "/Groups", None).await;
    assert_eq!(groups["totalResults"].as_u64(), Some(sim.group_count() as u64));
    let gid = ids(&groups)[0].clone();

    // Create.
    let (s, created) = c.call(Method::POST, "/Users", Some(json!({"userName": "new.hire", "name": {"givenName": "New", "familyName": "Hire"}, "emails": [{"value": "new.hire@example.com", "primary": true}]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let uid = created["id"].as_str().expect("id").to_string();
    assert_eq!(sim.user(&uid).expect("in UAA")["userName"], "new.hire");
    // PUT.
    let mut full = created.clone();
    full["name"]["familyName"] = json!("Hired");
    let (s, b) = c.call(Method::PUT, &format!("/Users/{uid}"), Some(full)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(sim.user(&uid).expect("in UAA")["name"]["familyName"], "Hired");
    // PATCH.
    let (s, b) = c
        .call(
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["active"], false);
    assert_eq!(sim.user(&uid).expect("in UAA")["active"], false);
    // Group membership in and out.
    let (s, b) = c
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(
                json!([{"op": "add", "path": "members", "value": [{"value": uid, "type": "User"}]}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(sim.member_ids(&gid).expect("group").contains(&uid));
    let (s, b) = c
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(
                json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!sim.member_ids(&gid).expect("group").contains(&uid));
    // Delete.
    let (s, _) = c.call(Method::DELETE, &format!("/Users/{uid}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(sim.user(&uid).is_none());
    let (s, _) = c.call(Method::GET, &format!("/Users/{uid}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Another client changes a user in UAA between the proxy's read and its write. A PATCH (read-modify-
/// replace for UAA users) is written over the version it read, so the change made meanwhile survives: the
/// proxy reads again and re-applies the operations. With the client's If-Match, and for a PUT, it is a 412.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_between_read_and_write_is_never_lost() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 2,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "concurrent").await;
    let c = Client::new(&service, &system);
    let uid = sim.users()[0]["id"].as_str().expect("id").to_string();
    let given = |ops: &str| patch(json!([{"op": "replace", "path": "name.givenName", "value": ops}]));

    // PATCH without If-Match: both changes are kept.
    sim.state()
        .change_before_next_write(&uid, json!({"externalId": "changed-meanwhile"}));
    let (s, b) = c
        .call(Method::PATCH, &format!("/Users/{uid}"), Some(given("Patched")))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let stored = sim.user(&uid).expect("in UAA");
    assert_eq!(stored["name"]["givenName"], "Patched", "{stored}");
    assert_eq!(
        stored["externalId"], "changed-meanwhile",
        "the concurrent change was overwritten: {stored}"
    );
    assert_eq!(b["externalId"], "changed-meanwhile", "{b}");

    // PATCH with the client's If-Match: the version it names is gone by the time of the write.
    let (_, headers, _) = c.send(Method::GET, &format!("/Users/{uid}"), None, &[]).await;
    let etag = headers["etag"].to_str().expect("etag").to_string();
    sim.state()
        .change_before_next_write(&uid, json!({"externalId": "changed-again"}));
    let (s, _, b) = c
        .send(
            Method::PATCH,
            &format!("/Users/{uid}"),
            Some(given("Lost")),
            &[("if-match", &etag)],
        )
        .await;
    assert_error(s, &b, StatusCode::PRECONDITION_FAILED, None);
    let stored = sim.user(&uid).expect("in UAA");
    assert_eq!(stored["externalId"], "changed-again", "{stored}");
    assert_eq!(stored["name"]["givenName"], "Patched", "{stored}");

    // PUT with If-Match alike.
    let (_, headers, current) = c.send(Method::GET, &format!("/Users/{uid}"), None, &[]).await;
    let etag = headers["etag"].to_str().expect("etag").to_string();
    let mut full = current.clone();
    full["name"]["givenName"] = json!("Replaced");
    sim.state()
        .change_before_next_write(&uid, json!({"externalId": "changed-a-third-time"}));
    let (s, _, b) = c
        .send(
            Method::PUT,
            &format!("/Users/{uid}"),
            Some(full),
            &[("if-match", &etag)],
        )
        .await;
    assert_error(s, &b, StatusCode::PRECONDITION_FAILED, None);
    let stored = sim.user(&uid).expect("in UAA");
    assert_eq!(stored["externalId"], "changed-a-third-time", "{stored}");
    assert_eq!(stored["name"]["givenName"], "Patched", "{stored}");
}

/// Export: SAP IdM CSV for a proxy, JSON without secrets that imports back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_csv_and_json() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "export me").await;
    let r = service
        .http
        .get(format!("{}/api/v1/systems/{system}/export?format=csv", service.url))
        .basic_auth(crate::support::ADMIN.0, Some(crate::support::ADMIN.1))
        .send()
        .await
        .expect("csv");
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.expect("text");
    assert!(
        csv.contains(&format!("SCIM_URL,{}/ipsproxy/api/v1/scim/{system}", service.url)),
        "{csv}"
    );
    assert!(
        csv.contains("SCIM_ASSIGNMENT_METHOD,PUT\r\n")
            && csv.contains("AUTH_USER,\r\n")
            && csv.contains("AUTH_PASSWORD,\r\n"),
        "{csv}"
    );
    assert!(!csv.contains(&sim.options().client_secret));
    let (s, exported) = service
        .admin(
            Method::GET,
            &format!("/api/v1/systems/{system}/export?format=json"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !exported.to_string().contains(&sim.options().client_secret),
        "{exported}"
    );
    assert!(exported["properties"].get("Password").is_none());
    let mut again = exported.clone();
    again["name"] = json!("imported");
    again["properties"]["Password"] = json!(sim.options().client_secret);
    let (s, b) = service.admin(Method::POST, "/api/v1/systems", Some(again)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = service
        .admin(
            Method::GET,
            &format!("/api/v1/systems/{system}/export?format=xml"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// UAA groups keep no `externalId`: the Group schema of a UAA-backed proxy declares it `readOnly` and
/// `returned: never`, a PATCH of it is refused with `mutability`, and users (which keep one) still serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uaa_group_schema_is_honest_about_external_id() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "honest uaa").await;
    let c = Client::new(&service, &system);
    let attribute = |schema: &Value, name: &str| {
        schema["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
    };
    let (s, group_schema) = c
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{group_schema}");
    let external = attribute(&group_schema, "externalId").expect("Group declares externalId");
    assert_eq!(external["mutability"], "readOnly", "{external}");
    assert_eq!(external["returned"], "never", "{external}");
    // Users keep an externalId in UAA: the common attribute is not redeclared (readWrite as RFC 7643 §3.1).
    let (_, user_schema) = c
        .call(Method::GET, "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None)
        .await;
    assert!(attribute(&user_schema, "externalId").is_none(), "{user_schema}");
    let (s, u) = c
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "ext.user", "externalId": "E-1", "emails": [{"value": "ext.user@example.com"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert_eq!(u["externalId"], "E-1");

    let (s, g) = c
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "ext-group", "externalId": "G-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert!(g.get("externalId").is_none(), "{g}");
    let gid = g["id"].as_str().expect("id").to_string();
    let (s, b) = c
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(json!([{"op": "replace", "path": "externalId", "value": "G-2"}]))),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, Some("mutability"));

    // A scim2-server backend keeps externalId on groups: not redeclared there.
    let server = Scim2Server::start().await;
    let other = proxy_on_scim2(&service, &server, "scim2 externalId").await;
    let (_, group_schema) = Client::new(&service, &other)
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
            None,
        )
        .await;
    assert!(attribute(&group_schema, "externalId").is_none(), "{group_schema}");
}

/// `eq` filters on `userName`, `emails.value`, `externalId` (users) and `displayName` (groups) reach the
/// backend as native filters — the UAA simulator's request log shows them, and no unfiltered read — while the
/// host still evaluates the whole filter; a filter the backend cannot take falls back to a full read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eq_filters_are_pushed_down_to_the_backend() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 40,
        groups: 3,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "pushdown").await;
    let c = Client::new(&service, &system);
    let (s, created) = c
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "Push.Down", "externalId": "PD-7", "active": true,
                "emails": [{"value": "push.down@example.com", "primary": true}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let group = sim.groups()[0].clone();
    let group_name = group["displayName"].as_str().expect("group name").to_string();

    let list_reads = |query_part: &str| {
        sim.stats()
            .log()
            .into_iter()
            .filter(|r| r.method == "GET" && (r.path == "/Users" || r.path == "/Groups"))
            .map(|r| (r.path, r.query.unwrap_or_default()))
            .filter(|(_, q)| q.contains(query_part))
            .count()
    };
    let unfiltered_reads = || {
        sim.stats()
            .log()
            .into_iter()
            .filter(|r| r.method == "GET" && (r.path == "/Users" || r.path == "/Groups"))
            .filter(|r| !r.query.clone().unwrap_or_default().contains("filter="))
            .count()
    };
    let cases: Vec<(&str, String, &str, Vec<String>)> = vec![
        // (endpoint, SCIM filter, what the native filter carries, expected ids)
        (
            "/Users",
            r#"userName eq "push.down""#.into(),
            "userName",
            vec![id.clone()],
        ),
        (
            "/Users",
            r#"USERNAME EQ "PUSH.DOWN""#.into(),
            "userName",
            vec![id.clone()],
        ),
        (
            "/Users",
            r#"emails.value eq "push.down@example.com""#.into(),
            "emails.value",
            vec![id.clone()],
        ),
        (
            "/Users",
            r#"emails[0].value eq "push.down@example.com""#.into(),
            "emails.value",
            vec![id.clone()],
        ),
        (
            "/Users",
            r#"externalId eq "PD-7""#.into(),
            "externalId",
            vec![id.clone()],
        ),
        // externalId is case-exact: the backend may answer more, the host keeps none.
        ("/Users", r#"externalId eq "pd-7""#.into(), "externalId", vec![]),
        // One side of an `and` goes down; the host checks the other.
        (
            "/Users",
            r#"userName eq "push.down" and active eq false"#.into(),
            "userName",
            vec![],
        ),
        (
            "/Users",
            r#"active eq true and userName eq "push.down""#.into(),
            "userName",
            vec![id.clone()],
        ),
        ("/Users", r#"userName eq "nobody.here""#.into(), "userName", vec![]),
        // `id eq` (any case) is one get: no list read at all, checked below.
        (
            "/Users",
            format!("ID eq {} and userName eq \"push.down\"", json!(id)),
            "",
            vec![id.clone()],
        ),
        (
            "/Groups",
            format!("displayName eq {}", json!(group_name)),
            "displayName",
            vec![group["id"].as_str().expect("gid").to_string()],
        ),
    ];
    for (endpoint, filter, native, expected) in cases {
        sim.stats().reset();
        let (s, page) = c
            .call(Method::GET, &format!("{endpoint}?filter={}", urlencode(&filter)), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{filter}: {page}");
        assert_eq!(ids(&page), expected, "{filter}: {page}");
        assert_eq!(page["totalResults"], json!(expected.len()), "{filter}");
        if native.is_empty() {
            assert_eq!(list_reads(""), 0, "{filter}: {:?}", sim.stats().log());
        } else {
            assert!(
                list_reads(&format!("filter={native}")) >= 1,
                "{filter}: the backend got no native filter: {:?}",
                sim.stats().log()
            );
        }
        assert_eq!(
            unfiltered_reads(),
            0,
            "{filter}: a full read happened: {:?}",
            sim.stats().log()
        );
    }

    // Not pushable (`co`, `or`): a full read, the same answers.
    sim.stats().reset();
    let (s, page) = c
        .call(
            Method::GET,
            &format!("/Users?filter={}", urlencode(r#"userName co "push.d""#)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), vec![id.clone()]);
    assert!(unfiltered_reads() >= 1, "{:?}", sim.stats().log());

    // The uniqueness check before a create asks the backend by name too.
    sim.stats().reset();
    let (s, b) = c
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "PUSH.down", "emails": [{"value": "x@example.com"}]})),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, Some("uniqueness"));
    assert!(list_reads("filter=userName") >= 1, "{:?}", sim.stats().log());
    assert_eq!(unfiltered_reads(), 0, "{:?}", sim.stats().log());
}

/// A list without filter or sort asks the backend for just its page (the UAA simulator sees
/// `startIndex`/`count` of the client's page, not a read of everything), with the backend's exact total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfiltered_pages_are_read_page_by_page() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 250,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "pages").await;
    let c = Client::new(&service, &system);
    let all: Vec<String> = sim
        .users()
        .iter()
        .filter_map(|u| u["id"].as_str().map(String::from))
        .collect();
    let mut seen = Vec::new();
    for start in [1, 101, 201] {
        sim.stats().reset();
        let (s, page) = c
            .call(Method::GET, &format!("/Users?startIndex={start}&count=100"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["totalResults"], 250);
        assert_eq!(page["startIndex"], start);
        let got = ids(&page);
        assert_eq!(page["itemsPerPage"], json!(got.len()));
        seen.extend(got);
        let reads: Vec<String> = sim
            .stats()
            .log()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == "/Users")
            .map(|r| r.query.unwrap_or_default())
            .collect();
        assert_eq!(reads.len(), 1, "{reads:?}");
        assert!(
            reads[0].contains(&format!("startIndex={start}")) && reads[0].contains("count=100"),
            "{reads:?}"
        );
    }
    assert_eq!(seen, all, "every user once, in the backend's order");
    // Past the end: empty, with the total.
    let (_, page) = c.call(Method::GET, "/Users?startIndex=400&count=100", None).await;
    assert_eq!(page["totalResults"], 250);
    assert_eq!(page["itemsPerPage"], 0);
}

/// The read memo (`proxy::memo`): a page read again is the same page; an entity the backend changed is
/// served changed at once; an entity is served under the base URL the client used, whichever it used before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_reads_follow_the_backend_and_the_base_url() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 5,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "memo").await;
    let c = Client::new(&service, &system);
    let (s, first) = c.call(Method::GET, "/Users?startIndex=1&count=5", None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, again) = c.call(Method::GET, "/Users?startIndex=1&count=5", None).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(first, again, "the same backend, the same page");
    let (_, whole) = c.call(Method::GET, "/Users?sortBy=userName", None).await;
    assert_eq!(whole["totalResults"], 5, "{whole}");

    // Changed in the backend (through the proxy's write path): the next read serves the change.
    let id = first["Resources"][2]["id"].as_str().expect("id").to_string();
    // One resource by id goes through the same memo: the page's resource, twice.
    for _ in 0..2 {
        let (s, one) = c.call(Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(s, StatusCode::OK, "{one}");
        assert_eq!(one, first["Resources"][2], "by id as in the page");
    }
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Remembered-Not"}]});
    let (s, b) = c.call(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, after) = c.call(Method::GET, "/Users?startIndex=1&count=5", None).await;
    assert_eq!(after["Resources"][2]["id"], json!(id));
    assert_eq!(after["Resources"][2]["name"]["givenName"], "Remembered-Not", "{after}");
    assert_eq!(after["Resources"][0], first["Resources"][0], "the others as they were");
    let (_, one) = c.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(one, after["Resources"][2], "by id, the change too");
    let (_, sorted) = c.call(Method::GET, "/Users?sortBy=userName", None).await;
    let changed = sorted["Resources"]
        .as_array()
        .and_then(|r| r.iter().find(|u| u["id"] == json!(id)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        changed["name"]["givenName"], "Remembered-Not",
        "a full read too: {sorted}"
    );

    // The same entities under the other base path: their locations name the path the client used.
    let other = format!("{}/ipsproxy/service/api/v1/scim/{system}", service.url);
    let page = get_as_client(&service, &format!("{other}/Users?startIndex=1&count=5")).await;
    for (resource, before) in page["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(after["Resources"].as_array().into_iter().flatten())
    {
        let location = resource["meta"]["location"].as_str().unwrap_or_default();
        assert!(location.starts_with(&other), "{location} under {other}");
        assert_eq!(resource["id"], before["id"]);
    }
    let one = get_as_client(&service, &format!("{other}/Users/{id}")).await;
    assert_eq!(
        one["meta"]["location"],
        json!(format!("{other}/Users/{id}")),
        "by id under the other base path: {one}"
    );
}

/// A GET as the proxy's client, at a URL of any base path.
async fn get_as_client(service: &Service, url: &str) -> Value {
    service
        .http
        .get(url)
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// The resolved system is cached between requests and dropped when the system changes or goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_changes_reach_the_proxy_at_once() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options {
        users: 3,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "cached").await;
    let c = Client::new(&service, &system);
    let (s, page) = c.call(Method::GET, "/Users", None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    // A wrong password: the next request uses it (the backend refuses the proxy's credentials: 502).
    let (s, current) = service
        .admin(Method::GET, &format!("/api/v1/systems/{system}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{current}");
    let mut changed = json!({"name": "cached", "type": "xsuaa", "role": "proxy", "properties": {
        "URL": sim.base_url, "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
        "User": sim.options().client_id, "Password": "wrong-secret", "provisio.rate.limit": "100000"}});
    let (s, b) = service
        .admin(Method::PUT, &format!("/api/v1/systems/{system}"), Some(changed.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = c.call(Method::GET, "/Users", None).await;
    assert_error(s, &b, StatusCode::BAD_GATEWAY, None);
    changed["properties"]["Password"] = json!(sim.options().client_secret);
    let (s, b) = service
        .admin(Method::PUT, &format!("/api/v1/systems/{system}"), Some(changed))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = c.call(Method::GET, "/Users", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Deleted: 404 at once.
    let (s, b) = service
        .admin(Method::DELETE, &format!("/api/v1/systems/{system}"), None)
        .await;
    assert!(s.is_success(), "{b}");
    let (s, b) = c.call(Method::GET, "/Users", None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, None);
}

/// `Settings::proxy_rate_limit` (`serve --proxy-rate-limit`): each technical user gets its own allowance;
/// over it, 429 with `Retry-After` and a SCIM error body; after the wait, served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_rate_limit_answers_429() {
    let service = Service::start_with(Settings {
        proxy_rate_limit: Some(2.0),
        ..Default::default()
    })
    .await;
    for (name, password) in [CLIENT, ("second-client", "second-client-secret")] {
        let (s, b) = service
            .admin(
                Method::POST,
                "/api/v1/technical-users",
                Some(json!({"name": name, "password": password, "permissions": ["proxy-api"]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let sim = uaa::spawn(uaa::Options {
        users: 2,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "limited").await;
    let c = Client::new(&service, &system);
    // A burst of 2 passes; the third is refused.
    for _ in 0..2 {
        let (s, b) = c.call(Method::GET, "/Users?count=1", None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, headers, b) = c.send(Method::GET, "/Users?count=1", None, &[]).await;
    assert_error(s, &b, StatusCode::TOO_MANY_REQUESTS, Some("tooMany"));
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some(SCIM));
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    // Another technical user is not held back by the first one's burst.
    let other = service
        .http
        .get(format!("{}/ipsproxy/api/v1/scim/{system}/Users?count=1", service.url))
        .basic_auth("second-client", Some("second-client-secret"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), StatusCode::OK);
    // After Retry-After, the first client is served again.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (s, b) = c.call(Method::GET, "/Users?count=1", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// Backend ids are percent-encoded into `Location`, `meta.location` and members' `$ref`: an id `victim?x=1`
/// does not send the client to `victim` with a query, and `../x` does not climb out of the proxy's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_ids_are_encoded_in_locations() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "odd ids").await;
    let c = Client::new(&service, &system);
    let (_, victim) = c.call(Method::POST, "/Users", Some(user("victim"))).await;
    let victim_id = victim["id"].as_str().expect("id").to_string();

    // Created through the proxy: the Location header is the encoded URL.
    sim.state().use_next_user_id("victim?x=1");
    let (status, headers, created) = c.send(Method::POST, "/Users", Some(user("odd.query")), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id"], "victim?x=1");
    let location = headers["location"].to_str().expect("location").to_string();
    assert_eq!(location, format!("{}/Users/victim%3Fx%3D1", c.base));
    assert_eq!(created["meta"]["location"], location.as_str());
    // Following it reads that user, not `victim`.
    let (status, got) = c.call(Method::GET, "/Users/victim%3Fx%3D1", None).await;
    assert_eq!(
        (status, got["id"].as_str()),
        (StatusCode::OK, Some("victim?x=1")),
        "{got}"
    );
    assert_ne!(got["id"], victim_id.as_str());

    // A backend id with a path separator and dot segment stays one segment.
    sim.state().use_next_user_id("../x");
    sim.state()
        .insert_user(json!({"userName": "odd.climb", "emails": [{"value": "climb@example.com"}]}))
        .expect("inserted");
    let (status, list) = c
        .call(Method::GET, "/Users?filter=userName%20sw%20%22odd.%22", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let locations: Vec<&str> = list["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["meta"]["location"].as_str())
        .collect();
    assert_eq!(
        locations,
        vec![
            format!("{}/Users/victim%3Fx%3D1", c.base),
            format!("{}/Users/..%2Fx", c.base)
        ],
        "{list}"
    );

    // Members' $ref too.
    let (status, group) = c
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "odd members",
                "members": [{"value": "victim?x=1"}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(
        group["members"][0]["$ref"],
        format!("{}/Users/victim%3Fx%3D1", c.base).as_str(),
        "{group}"
    );
}

/// scim2-server serving users without the Enterprise User extension (its resource types say so).
async fn scim2_without_enterprise() -> (Scim2Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let types = dir.path().join("resource-types.json");
    std::fs::write(
        &types,
        json!([
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
             "endpoint": "/Users", "description": "User Account", "schema": "urn:ietf:params:scim:schemas:core:2.0:User"},
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "Group", "name": "Group",
             "endpoint": "/Groups", "description": "Group", "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"}
        ])
        .to_string(),
    )
    .expect("write");
    let server = Scim2Server::start_with(&["--resource-type", types.to_str().expect("utf-8 path")]).await;
    (server, dir)
}

/// A proxy over a SCIM backend serves the schema extensions the backend declares, and a write of one it
/// does not keep is refused (not answered 201 with the value gone); schema URIs it does not serve that carry
/// nothing (Entra's Create Group) are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_backend_without_the_enterprise_extension() {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let service = service().await;
    let (server, _dir) = scim2_without_enterprise().await;
    let system = proxy_on_scim2(&service, &server, "no enterprise").await;
    let c = Client::new(&service, &system);

    // Not advertised.
    let (status, schemas) = c.call(Method::GET, "/Schemas", None).await;
    assert_eq!(status, StatusCode::OK, "{schemas}");
    let served: Vec<&str> = schemas["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        served.contains(&"urn:ietf:params:scim:schemas:core:2.0:User") && !served.contains(&ENTERPRISE),
        "{schemas}"
    );
    let (status, _) = c.call(Method::GET, &format!("/Schemas/{ENTERPRISE}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, types) = c.call(Method::GET, "/ResourceTypes/User", None).await;
    assert!(!types.to_string().contains(ENTERPRISE), "{types}");

    // A write of it is refused, naming the extension; nothing is created.
    let mut with_number = user("numbered");
    with_number["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    with_number[ENTERPRISE] = json!({"employeeNumber": "701"});
    let (status, body) = c.call(Method::POST, "/Users", Some(with_number)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains(ENTERPRISE)),
        "{body}"
    );
    let (_, list) = c.call(Method::GET, "/Users", None).await;
    assert_eq!(list["totalResults"], 0, "{list}");

    // Naming it with nothing under it is no loss: created.
    let mut named = user("named");
    named["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    let (status, created) = c.call(Method::POST, "/Users", Some(named)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    let id = created["id"].as_str().expect("id").to_string();

    // PATCH: a path into it, or a value carrying it, is refused too; the user is unchanged.
    for ops in [
        json!([{"op": "add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "702"}]),
        json!([{"op": "add", "value": {ENTERPRISE: {"employeeNumber": "702"}}}]),
    ] {
        let (status, body) = c.call(Method::PATCH, &format!("/Users/{id}"), Some(patch(ops))).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, Some("invalidValue"));
    }
    let mut replaced = user("named");
    replaced[ENTERPRISE] = json!({"department": "R&D"});
    let (status, body) = c.call(Method::PUT, &format!("/Users/{id}"), Some(replaced)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let (_, now) = c.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert!(now.get(ENTERPRISE).is_none(), "{now}");

    // Entra's Create Group names a schema of Microsoft's: dropped, and the group is created.
    let (status, group) = c
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                    "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group"],
                "displayName": "Entra group", "externalId": "e-1", "members": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:Group"]));

    // A backend that declares the extension (scim2-server's default) still gets it served and kept.
    let full = Scim2Server::start().await;
    let system = proxy_on_scim2(&service, &full, "with enterprise").await;
    let c = Client::new(&service, &system);
    let (_, types) = c.call(Method::GET, "/ResourceTypes/User", None).await;
    assert!(types.to_string().contains(ENTERPRISE), "{types}");
    let mut with_number = user("numbered");
    with_number[ENTERPRISE] = json!({"employeeNumber": "701"});
    let (status, created) = c.call(Method::POST, "/Users", Some(with_number)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created[ENTERPRISE]["employeeNumber"], "701", "{created}");
}
