//! Standard provisioning end to end: a scim2-server source fanned out to a UAA simulator, an IAS v2
//! simulator and a second scim2-server; Read, unchanged re-runs, changes, Resync, delta reads, read
//! failures, delete thresholds, pre-existing target entities, simulation and single-entity provisioning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use provisio::connector::EntityKind;
use provisio::store::links::{LinkChange, LinkDigest, LinkScope};
use provisio_tests::sim::{ias, uaa};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Scim2Server, Service};

/// Fast retries: the tests' failures are injected, not slow.
const FAST_RETRY: [(&str, &str); 2] = [
    ("ips.failed.request.retry.attempts", "2"),
    ("ips.failed.request.retry.attempts.interval", "0.05"),
];

pub(crate) fn props(base: Value) -> Value {
    let mut p = base;
    for (k, v) in FAST_RETRY {
        p[k] = json!(v);
    }
    p["provisio.rate.limit"] = json!("10000");
    p
}

/// A source (or target) scim2-server holding users and groups.
struct ScimSource {
    server: Scim2Server,
    http: reqwest::Client,
}

impl ScimSource {
    async fn start() -> ScimSource {
        ScimSource {
            server: Scim2Server::start().await,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/{path}", self.server.base_url))
            .bearer_auth(&self.server.token)
            .header("Content-Type", "application/scim+json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("scim2-server request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn create_users(&self, range: std::ops::Range<usize>) -> Vec<String> {
        let mut ids = Vec::new();
        // scim2-server answers one connection at a time: parallel requests only queue.
        let chunks: Vec<Vec<usize>> = range.collect::<Vec<_>>().chunks(1).map(|c| c.to_vec()).collect();
        for chunk in chunks {
            let created = futures::future::join_all(
                chunk
                    .iter()
                    .map(|i| self.send(Method::POST, "Users", Some(user(*i, "")))),
            )
            .await;
            ids.extend(created.iter().map(|u| u["id"].as_str().expect("id").to_string()));
        }
        ids
    }

    async fn create_group(&self, name: &str, members: &[String]) -> String {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
        });
        self.send(Method::POST, "Groups", Some(body)).await["id"]
            .as_str()
            .expect("group id")
            .to_string()
    }

    async fn list(&self, endpoint: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut start = 1;
        loop {
            let page = self
                .send(Method::GET, &format!("{endpoint}?startIndex={start}&count=500"), None)
                .await;
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            if resources.is_empty() {
                return all;
            }
            start += resources.len();
            all.extend(resources);
        }
    }
}

fn user(i: usize, title: &str) -> Value {
    let mut u = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i:05}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "displayName": format!("Given{i} Family{i}"),
        "emails": [{"value": format!("user{i:05}@example.com"), "type": "work", "primary": true}],
        "active": true
    });
    if !title.is_empty() {
        u["title"] = json!(title);
    }
    u
}

/// Starts a job and waits for its end.
async fn run(service: &Service, source: &str, body: Value) -> Value {
    service.run_job(source, body, Duration::from_secs(600)).await
}

async fn wait(service: &Service, id: &str) -> Value {
    service.wait_job(id, Duration::from_secs(600)).await
}

/// The statistics row of a target and entity type.
fn stats(job: &Value, target: &str, kind: &str) -> BTreeMap<String, u64> {
    let row = job["statistics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["targetId"] == target && r["entityType"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no statistics for {target}/{kind} in {job}"));
    [
        "read",
        "created",
        "updated",
        "deleted",
        "skipped",
        "failed",
        "unchanged",
        "held",
    ]
    .iter()
    .map(|k| (k.to_string(), row[*k].as_u64().unwrap_or(0)))
    .collect()
}

fn counts(job: &Value, target: &str, kind: &str) -> (u64, u64, u64, u64) {
    let s = stats(job, target, kind);
    (s["created"], s["updated"], s["deleted"], s["failed"])
}

async fn links(service: &Service, source: &str, target: &str, kind: EntityKind) -> HashMap<String, String> {
    service
        .state
        .stores
        .links
        .all(&LinkScope {
            source: source.into(),
            target: target.into(),
            kind,
        })
        .await
        .expect("links")
        .into_iter()
        .filter_map(|(s, l)| l.target_entity.map(|t| (s.to_string(), t.to_string())))
        .collect()
}

/// Source group members (by userName) as the expected membership.
fn source_memberships(users: &[Value], groups: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let names: HashMap<&str, &str> = users
        .iter()
        .filter_map(|u| Some((u["id"].as_str()?, u["userName"].as_str()?)))
        .collect();
    groups
        .iter()
        .map(|g| {
            let members = g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| names.get(m["value"].as_str()?).map(|n| n.to_string()))
                .collect();
            (g["displayName"].as_str().unwrap_or("").to_string(), members)
        })
        .collect()
}

/// Memberships (by userName) as a simulator holds them.
fn sim_memberships(
    groups: Vec<Value>,
    users: Vec<Value>,
    member_ids: impl Fn(&str) -> Option<Vec<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let names: HashMap<String, String> = users
        .iter()
        .filter_map(|u| Some((u["id"].as_str()?.to_string(), u["userName"].as_str()?.to_string())))
        .collect();
    groups
        .iter()
        .map(|g| {
            let id = g["id"].as_str().unwrap_or("");
            let members = member_ids(id)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| names.get(m).cloned())
                .collect();
            (g["displayName"].as_str().unwrap_or("").to_string(), members)
        })
        .collect()
}

fn user_names(users: &[Value]) -> BTreeSet<String> {
    users
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect()
}

/// XSUAA's default write transformation takes only SAP-style groups; this one takes every group and
/// resolves its members (what an admin configures for a generic SCIM source).
fn xsuaa_transformation(default: &str) -> Value {
    let mut t: Value = serde_json::from_str(default).expect("xsuaa default");
    t["group"] = json!({
        "scimEntityEndpoint": "Groups",
        "mappings": [
            {"sourceVariable": "entityIdTargetSystem", "targetPath": "$.id", "optional": true},
            {"sourcePath": "$.displayName", "targetPath": "$.displayName"},
            {"constant": "sap.default", "targetPath": "$.members[*].origin", "optional": true},
            {"sourcePath": "$.members[*].value", "targetPath": "$.members[?(@.value)]",
             "preserveArrayWithSingleElement": true, "optional": true,
             "functions": [{"function": "resolveEntityIds", "entityType": "user"}]}
        ]
    });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_fans_out_converges_and_resyncs() {
    const USERS: usize = 2000;
    const GROUPS: usize = 100;
    let service = Service::start().await;
    let source_scim = ScimSource::start().await;
    let target_scim = ScimSource::start().await;
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let ias_sim = ias::spawn(ias::Options {
        unique_emails: false,
        ..Default::default()
    })
    .await
    .expect("ias");

    let clock = Instant::now();
    let ids = source_scim.create_users(0..USERS).await;
    eprintln!("seeding users: {:?}", clock.elapsed());
    for g in 0..GROUPS {
        let members: Vec<String> = (0..25).map(|k| ids[(g * 20 + k) % USERS].clone()).collect();
        source_scim.create_group(&format!("group{g:03}"), &members).await;
    }

    let source = service
        .create_system(json!({"name": "SCIM source", "type": "scim", "role": "source",
            "properties": props(json!({"URL": source_scim.server.base_url, "Authentication": "BearerToken",
                "Password": source_scim.server.token}))}))
        .await;
    let xsuaa_plugin = service.state.plugins.resolve("xsuaa", None).expect("xsuaa loaded");
    let uaa = service
        .create_system(json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "transformation": xsuaa_transformation(xsuaa_plugin.descriptor.default_write_transformation.as_deref().expect("default")),
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))}))
        .await;
    let ias = service
        .create_system(
            json!({"name": "IAS", "type": "ias", "role": "target", "sources": [source],
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}),
        )
        .await;
    let scim = service
        .create_system(
            json!({"name": "SCIM target", "type": "scim", "role": "target", "sources": [source],
            "properties": props(json!({"URL": target_scim.server.base_url, "Authentication": "BearerToken",
                "Password": target_scim.server.token}))}),
        )
        .await;
    let targets = [uaa.as_str(), ias.as_str(), scim.as_str()];

    // First Read: everything created everywhere, memberships resolved.
    let clock = Instant::now();
    let job = run(&service, &source, json!({"type": "read"})).await;
    eprintln!("first read: {:?}", clock.elapsed());
    assert_eq!(job["status"], "Success", "{job}");
    for t in targets {
        assert_eq!(counts(&job, t, "user"), (USERS as u64, 0, 0, 0), "{t}: {job}");
        assert_eq!(counts(&job, t, "group"), (GROUPS as u64, 0, 0, 0), "{t}: {job}");
    }
    // The run records the connector version, by its component's digest, each system ran on.
    let ran: BTreeMap<&str, (&str, &str)> = job["plugins"]
        .as_array()
        .expect("plugins in the summary")
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap_or_default();
            (field("systemId"), (field("role"), field("digest")))
        })
        .collect();
    assert_eq!(ran.len(), 4, "{job}");
    assert_eq!(ran[source.as_str()].0, "source");
    assert_eq!(ran[uaa.as_str()], ("target", xsuaa_plugin.digest.as_str()));
    assert_eq!(
        ran[scim.as_str()].1,
        ran[source.as_str()].1,
        "both SCIM systems run the same component"
    );
    let check_targets = |expected_users: &BTreeSet<String>, expected_groups: &BTreeMap<String, BTreeSet<String>>| {
        assert_eq!(&user_names(&uaa_sim.users()), expected_users, "UAA users");
        assert_eq!(&user_names(&ias_sim.users()), expected_users, "IAS users");
        assert_eq!(
            &sim_memberships(uaa_sim.groups(), uaa_sim.users(), |g| uaa_sim.member_ids(g)),
            expected_groups,
            "UAA memberships"
        );
        assert_eq!(
            &sim_memberships(ias_sim.groups(), ias_sim.users(), |g| ias_sim.member_ids(g)),
            expected_groups,
            "IAS memberships"
        );
    };
    let source_users = source_scim.list("Users").await;
    let source_groups = source_scim.list("Groups").await;
    let mut expected_users = user_names(&source_users);
    let mut expected_groups = source_memberships(&source_users, &source_groups);
    check_targets(&expected_users, &expected_groups);
    let scim_users = target_scim.list("Users").await;
    assert_eq!(user_names(&scim_users), expected_users, "SCIM target users");
    assert_eq!(
        source_memberships(&scim_users, &target_scim.list("Groups").await),
        expected_groups,
        "SCIM target memberships"
    );

    // Unchanged re-run: nothing written anywhere.
    let writes_before = (uaa_sim.stats().requests(), ias_sim.stats().requests());
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    for t in targets {
        assert_eq!(counts(&job, t, "user"), (0, 0, 0, 0), "{t}: {job}");
        assert_eq!(stats(&job, t, "user")["unchanged"], USERS as u64);
        assert_eq!(counts(&job, t, "group"), (0, 0, 0, 0), "{t}: {job}");
    }
    // UAA: token requests aside, no request reached it (reads of a target are not needed).
    assert_eq!(
        (uaa_sim.stats().requests(), ias_sim.stats().requests()),
        writes_before,
        "an unchanged run sends nothing to the targets"
    );

    // Change 20, delete 10, add 5.
    for (i, u) in source_users.iter().take(20).enumerate() {
        let mut changed = u.clone();
        changed["name"]["givenName"] = json!(format!("Changed{i}"));
        changed["displayName"] = json!(format!("Changed{i} Family"));
        let id = u["id"].as_str().expect("id");
        source_scim
            .send(Method::PUT, &format!("Users/{id}"), Some(changed))
            .await;
    }
    for u in source_users.iter().skip(100).take(10) {
        let id = u["id"].as_str().expect("id");
        let response = source_scim
            .http
            .delete(format!("{}/Users/{id}", source_scim.server.base_url))
            .bearer_auth(&source_scim.server.token)
            .send()
            .await
            .expect("delete");
        assert!(response.status().is_success());
    }
    source_scim.create_users(USERS..USERS + 5).await;
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    for t in targets {
        assert_eq!(counts(&job, t, "user"), (5, 20, 10, 0), "{t}: {job}");
    }
    let changed_users = source_users;
    let source_users = source_scim.list("Users").await;
    let source_groups = source_scim.list("Groups").await;
    expected_users = user_names(&source_users);
    expected_groups = source_memberships(&source_users, &source_groups);
    assert_eq!(expected_users.len(), USERS - 5);
    check_targets(&expected_users, &expected_groups);
    assert_eq!(user_names(&target_scim.list("Users").await), expected_users);
    let first_changed = changed_users[0]["userName"].as_str().expect("userName").to_string();
    let changed = uaa_sim.user_by_name(&first_changed).expect("changed user");
    assert_eq!(uaa_sim.user_count(), USERS - 5);
    assert_eq!(changed["name"]["givenName"], "Changed0", "{changed}");

    // The log tells what changed, without values.
    let (_, log) = service
        .admin(
            Method::GET,
            &format!("/api/v1/jobs/{}/entities?limit=10000", job["id"].as_str().expect("id")),
            None,
        )
        .await;
    let entries = log["entries"].as_array().expect("entries");
    let update = entries
        .iter()
        .find(|e| e["operation"] == "update" && e["targetId"] == scim.as_str() && e["entityType"] == "user")
        .expect("an update entry");
    let mut changed_attributes: Vec<&Value> = update["changes"].as_array().expect("changes").iter().collect();
    changed_attributes.sort_by_key(|c| c["attribute"].as_str().unwrap_or("").to_string());
    assert_eq!(
        changed_attributes,
        [
            &json!({"attribute": "displayName", "change": "changed"}),
            &json!({"attribute": "name.givenName", "change": "changed"})
        ],
        "{update}"
    );
    assert!(!log.to_string().contains("Changed0"), "values are redacted by default");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["operation"] == "delete" && e["outcome"] == "success")
            .count(),
        30
    );

    // Resync rewrites everything.
    let clock = Instant::now();
    let job = run(&service, &source, json!({"type": "resync"})).await;
    eprintln!("resync: {:?}", clock.elapsed());
    assert_eq!(job["status"], "Success", "{job}");
    for t in targets {
        let (created, updated, deleted, failed) = counts(&job, t, "user");
        assert_eq!(
            (created, updated, deleted, failed),
            (0, (USERS - 5) as u64, 0, 0),
            "{t}: {job}"
        );
    }
    check_targets(&expected_users, &expected_groups);
    // Links: one per source entity, per target.
    for t in targets {
        assert_eq!(links(&service, &source, t, EntityKind::User).await.len(), USERS - 5);
        assert_eq!(links(&service, &source, t, EntityKind::Group).await.len(), GROUPS);
    }
}

/// A reverse proxy in front of a source that can fail every page after the first (503), as a source
/// that breaks down in the middle of a read.
pub(crate) struct FlakyProxy {
    pub(crate) url: String,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// A list answer's second resource is replaced by a copy of its first: the source names an id twice.
    echo: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyProxy {
    pub(crate) async fn start(upstream: &str) -> FlakyProxy {
        use axum::body::Body;
        use axum::extract::Request;
        use axum::response::Response;
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = failing.clone();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let all_down = down.clone();
        let echo = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let echoing = echo.clone();
        let upstream = upstream.trim_end_matches('/').to_string();
        let base = reqwest::Url::parse(&upstream).expect("upstream url");
        let prefix = base.path().trim_end_matches('/').to_string();
        let origin = format!("{}://{}", base.scheme(), base.authority());
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (flag, client, origin) = (flag.clone(), client.clone(), origin.clone());
            let (all_down, echoing) = (all_down.clone(), echoing.clone());
            async move {
                if all_down.load(std::sync::atomic::Ordering::SeqCst) {
                    return Response::builder()
                        .status(503)
                        .body(Body::from("down"))
                        .expect("response");
                }
                let query = request.uri().query().unwrap_or("").to_string();
                let later_page = query.split('&').any(|p| {
                    p.strip_prefix("startId=").is_some_and(|v| v != "initial")
                        || p.strip_prefix("startIndex=").is_some_and(|v| v != "1")
                });
                if flag.load(std::sync::atomic::Ordering::SeqCst) && later_page {
                    return Response::builder()
                        .status(503)
                        .body(Body::from("unavailable"))
                        .expect("response");
                }
                let path_and_query = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut forward = client.request(request.method().clone(), format!("{origin}{path_and_query}"));
                for (name, value) in request.headers() {
                    if name != "host" {
                        forward = forward.header(name, value);
                    }
                }
                let body = axum::body::to_bytes(request.into_body(), 16 << 20)
                    .await
                    .unwrap_or_default();
                let answer = forward.body(body).send().await.expect("upstream");
                let mut response = Response::builder().status(answer.status().as_u16());
                for (name, value) in answer.headers() {
                    if name != "transfer-encoding" && name != "content-length" {
                        response = response.header(name, value);
                    }
                }
                let mut body = answer.bytes().await.unwrap_or_default();
                if echoing.load(std::sync::atomic::Ordering::SeqCst)
                    && let Ok(mut list) = serde_json::from_slice::<Value>(&body)
                    && let Some(resources) = list.get_mut("Resources").and_then(Value::as_array_mut)
                    && resources.len() > 1
                {
                    resources[1] = resources[0].clone();
                    body = serde_json::to_vec(&list).expect("a list").into();
                }
                response.body(Body::from(body)).expect("response")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FlakyProxy {
            url: format!("http://{addr}{prefix}"),
            failing,
            down,
            echo,
            task,
        }
    }

    fn fail_later_pages(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every list answer names its first resource twice (in place of its second).
    fn echo_first(&self, on: bool) {
        self.echo.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request answered 503: the system is down.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn ias_patch(sim: &ias::Simulator, id: &str, given_name: &str) {
    let response = reqwest::Client::new()
        .patch(format!("{}/scim/Users/{id}", sim.base_url))
        .basic_auth(&sim.options().client_id, Some(&sim.options().client_secret))
        .header("Content-Type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "name.givenName", "value": given_name}]})
            .to_string(),
        )
        .send()
        .await
        .expect("patch");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_safety_delta_reads_and_existing_entities() {
    let service = Service::start().await;
    let ias_sim = ias_with_users(30).await;
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let ias_users = ias_sim.users();
    // A user that is already in the target before Provisio ever ran.
    let existing_name = ias_users[0]["userName"].as_str().expect("userName").to_string();
    let existing = uaa_sim
        .insert_user(json!({"userName": existing_name, "origin": "sap.custom",
            "emails": [{"value": "old@example.com", "primary": true}], "name": {"givenName": "Old", "familyName": "Entry"}}))
        .expect("pre-existing user");
    let proxy = FlakyProxy::start(&ias_sim.base_url).await;
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": props(json!({"URL": proxy.url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret,
                "ips.delta.read": "enabled", "provisio.read.page.size": "10"}))}))
        .await;
    let target = service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "xsuaa.origin": "sap.custom", "ips.delete.threshold.users": "5"}))}),
        )
        .await;
    let t = target.as_str();

    // First run (delta enabled, so a full read): the existing user is matched, not duplicated.
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["readMode"], "full");
    assert_eq!(counts(&job, t, "user"), (29, 1, 0, 0), "{job}");
    assert_eq!(uaa_sim.user_count(), 30, "no duplicate of the existing user");
    let matched = uaa_sim.user(existing["id"].as_str().expect("id")).expect("still there");
    assert_ne!(
        matched["name"]["givenName"], "Old",
        "the existing user was updated: {matched}"
    );
    let scope = LinkScope {
        source: source.clone(),
        target: target.clone(),
        kind: EntityKind::User,
    };
    let stored = service.state.stores.links.all(&scope).await.expect("links");
    assert_eq!(stored.values().filter(|l| l.existed_before).count(), 1);

    // Delta read: changes arrive, deletes do not.
    let ids: Vec<String> = ias_users
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect();
    ias_patch(&ias_sim, &ids[1], "Delta1").await;
    ias_patch(&ias_sim, &ids[2], "Delta2").await;
    assert!(ias_sim.remove_user(&ids[3]));
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["readMode"], "delta", "{job}");
    assert_eq!(counts(&job, t, "user"), (0, 2, 0, 0), "{job}");
    assert_eq!(uaa_sim.user_count(), 30);
    assert!(job["outcome"].to_string().contains("Delta read"), "{job}");

    // A full read that fails in the middle deletes nothing.
    proxy.fail_later_pages(true);
    let job = run(&service, &source, json!({"type": "resync"})).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    assert_eq!(counts(&job, t, "user").2, 0, "{job}");
    assert!(job["outcome"].to_string().contains("nothing was deleted"), "{job}");
    assert_eq!(uaa_sim.user_count(), 30);
    proxy.fail_later_pages(false);

    // Seven more disappear (the existing user among them): above the threshold of 5, held.
    assert!(ias_sim.remove_user(&ids[0]));
    for id in &ids[4..10] {
        assert!(ias_sim.remove_user(id));
    }
    let job = run(&service, &source, json!({"type": "resync"})).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    let s = stats(&job, t, "user");
    assert_eq!((s["held"], s["deleted"], s["skipped"]), (7, 0, 1), "{job}");
    assert_eq!(job["heldDeletes"], 7);
    assert_eq!(uaa_sim.user_count(), 30);
    let job_id = job["id"].as_str().expect("id");
    let (_, held) = service
        .admin(Method::GET, &format!("/api/v1/jobs/{job_id}/held-deletes"), None)
        .await;
    assert_eq!(held.as_array().map(Vec::len), Some(7), "{held}");
    assert!(held.as_array().into_iter().flatten().all(|h| h["decision"].is_null()));

    // The admin approves: deleted now; the existing user stays.
    let (status, decided) = service
        .admin(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/held-deletes/approve"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{decided}");
    assert_eq!(decided["deleted"], 7, "{decided}");
    assert_eq!(uaa_sim.user_count(), 23);
    assert!(uaa_sim.user(existing["id"].as_str().expect("id")).is_some());
    let (status, _) = service
        .admin(
            Method::POST,
            &format!("/api/v1/jobs/{job_id}/held-deletes/approve"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT);
    let (_, job) = service
        .admin(Method::GET, &format!("/api/v1/jobs/{job_id}"), None)
        .await;
    assert_eq!(stats(&job, t, "user")["deleted"], 7, "{job}");

    // The next Read agrees: nothing left to do.
    let job = run(&service, &source, json!({"type": "resync"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(counts(&job, t, "user"), (0, 22, 0, 0), "{job}");
    assert_eq!(stats(&job, t, "user")["skipped"], 1, "the existing user is kept: {job}");
}

/// An IAS simulator holding `users` users and the rest of its defaults.
async fn ias_with_users(users: usize) -> ias::Simulator {
    ias::spawn(ias::Options {
        users,
        ..Default::default()
    })
    .await
    .expect("ias")
}

async fn ias_to_uaa(
    service: &Service,
    ias_sim: &ias::Simulator,
    uaa_sim: &uaa::Simulator,
    rate: &str,
) -> (String, String) {
    ias_at_to_uaa(service, &ias_sim.base_url, ias_sim, uaa_sim, rate).await
}

/// [`ias_to_uaa`] with the source reached at `url` (a proxy in front of the simulator).
async fn ias_at_to_uaa(
    service: &Service,
    url: &str,
    ias_sim: &ias::Simulator,
    uaa_sim: &uaa::Simulator,
    rate: &str,
) -> (String, String) {
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": props(json!({"URL": url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}))
        .await;
    let mut target_props = props(json!({"URL": uaa_sim.base_url,
        "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
        "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}));
    target_props["provisio.rate.limit"] = json!(rate);
    let target = service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": target_props}),
        )
        .await;
    (source, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_provision_one_stop_queue_and_schedule() {
    let service = Service::start().await;
    let ias_sim = ias::spawn(ias::Options {
        users: 20,
        groups: 2,
        ..Default::default()
    })
    .await
    .expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let (source, target) = ias_to_uaa(&service, &ias_sim, &uaa_sim, "10000").await;
    let t = target.as_str();

    // Simulation: the plan, with attribute names, and nothing written.
    let job = run(&service, &source, json!({"type": "read", "simulate": true})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["type"], "simulate-read");
    assert_eq!(counts(&job, t, "user"), (20, 0, 0, 0), "{job}");
    assert_eq!(uaa_sim.user_count(), 0, "a simulation writes nothing");
    assert!(
        service
            .state
            .stores
            .links
            .all(&LinkScope {
                source: source.clone(),
                target: target.clone(),
                kind: EntityKind::User
            })
            .await
            .expect("links")
            .is_empty()
    );
    let (_, log) = service
        .admin(
            Method::GET,
            &format!(
                "/api/v1/jobs/{}/entities?outcome=planned",
                job["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    let planned = log["entries"].as_array().expect("entries");
    assert!(planned.len() >= 20, "{log}");
    assert!(planned[0]["changes"].to_string().contains("userName"), "{log}");

    // Provision one user on demand: every step shown, the user linked.
    let one_id = ias_sim.users()[0]["id"].as_str().expect("id").to_string();
    let (status, one) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/provision-one"),
            Some(json!({"entityType": "user", "id": one_id})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{one}");
    let steps: Vec<&str> = one["targets"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(steps, ["transform", "match", "action"], "{one}");
    assert_eq!(one["targets"][0]["steps"][2]["outcome"], "success", "{one}");
    assert_eq!(uaa_sim.user_count(), 1);
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, t, "user"), (19, 0, 0, 0), "{job}");
    assert_eq!(stats(&job, t, "user")["unchanged"], 1, "{job}");

    // A manual run while one runs is queued behind it.
    let (_, first) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "resync"})),
        )
        .await;
    let (_, second) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    assert_eq!(second["status"], "Queued", "{second}");
    let first = wait(&service, first["id"].as_str().expect("id")).await;
    let second = wait(&service, second["id"].as_str().expect("id")).await;
    assert_eq!(
        (first["status"].as_str(), second["status"].as_str()),
        (Some("Success"), Some("Success"))
    );
    assert!(
        second["startedAt"].as_str() >= first["endedAt"].as_str(),
        "{first} {second}"
    );

    // Unknown source, target as source, bad type: clear errors.
    let (status, body) = service
        .admin(Method::POST, "/api/v1/systems/nope/jobs", Some(json!({"type": "read"})))
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    let (status, body) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{target}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "purge"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("purge")), "{body}");

    // A schedule starts runs by itself.
    let (status, body) = service
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{source}/schedule"),
            Some(json!({"everySeconds": 1})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let started = Instant::now();
    loop {
        let (_, jobs) = service
            .admin(Method::GET, &format!("/api/v1/systems/{source}/jobs"), None)
            .await;
        if jobs
            .as_array()
            .into_iter()
            .flatten()
            .any(|j| j["trigger"] == "schedule")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no scheduled run: {jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = service
        .admin(Method::DELETE, &format!("/api/v1/systems/{source}/schedule"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let (status, body) = service
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{source}/schedule"),
            Some(json!({"cron": "every minute"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_run_at_an_entity_boundary() {
    let service = Service::start().await;
    let ias_sim = ias_with_users(40).await;
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    // Five writes a second: the run takes eight seconds unless stopped.
    let (source, target) = ias_to_uaa(&service, &ias_sim, &uaa_sim, "5").await;
    let (_, job) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    let id = job["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = service
        .admin(Method::POST, &format!("/api/v1/jobs/{id}/stop"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let job = wait(&service, &id).await;
    assert_eq!(job["status"], "Manually Terminated", "{job}");
    let created = stats(&job, &target, "user")["created"];
    assert!(created > 0 && created < 40, "{job}");
    // Every created user is linked: nothing is lost at the stop.
    let linked = links(&service, &source, &target, EntityKind::User).await;
    assert_eq!(linked.len() as u64, created);
    assert_eq!(uaa_sim.user_count() as u64, created);
    let (status, _) = service
        .admin(Method::POST, &format!("/api/v1/jobs/{id}/stop"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT);
    // The next run completes the rest.
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(stats(&job, &target, "user")["created"], 40 - created, "{job}");
}

/// The `provisio` binary of this build (built by `cargo test --workspace` for the host's CLI tests).
fn provisio_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PROVISIO_BIN") {
        return path.into();
    }
    let target_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let binary = target_dir.join("debug").join("provisio");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "provisio", "--bin", "provisio"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the provisio binary failed");
    }
    binary
}

/// The service as a separate process, to be killed with SIGKILL.
pub(crate) struct ServiceProcess {
    pub(crate) url: String,
    child: std::process::Child,
}

impl ServiceProcess {
    pub(crate) async fn start(data_dir: &std::path::Path, port: u16) -> ServiceProcess {
        Self::start_on(data_dir, port, None).await
    }

    /// The service on `database` (PostgreSQL), or on SQLite in `data_dir` without one.
    pub(crate) async fn start_on(data_dir: &std::path::Path, port: u16, database: Option<&str>) -> ServiceProcess {
        Self::start_node(data_dir, port, database, None).await
    }

    /// As [`ServiceProcess::start_on`], named `node` in the claims it holds (`PROVISIO_NODE`).
    pub(crate) async fn start_node(
        data_dir: &std::path::Path,
        port: u16,
        database: Option<&str>,
        node: Option<&str>,
    ) -> ServiceProcess {
        Self::start_node_with(data_dir, port, database, node, &[]).await
    }

    /// As [`ServiceProcess::start_node`], with more environment variables.
    pub(crate) async fn start_node_with(
        data_dir: &std::path::Path,
        port: u16,
        database: Option<&str>,
        node: Option<&str>,
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        let mut command = std::process::Command::new(provisio_binary());
        command.envs(env.iter().copied());
        if let Some(node) = node {
            command.env("PROVISIO_NODE", node);
        }
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir);
        if let Some(url) = database {
            command.args(["--database-url", url]);
        }
        let child = command
            .env(
                "PROVISIO_BOOTSTRAP_ADMIN",
                format!("{}:{}", crate::support::ADMIN.0, crate::support::ADMIN.1),
            )
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start provisio");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while !matches!(reqwest::get(format!("{url}/healthz")).await, Ok(r) if r.status().is_success()) {
            assert!(started.elapsed() < Duration::from_secs(120), "provisio did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ServiceProcess { url, child }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .basic_auth(crate::support::ADMIN.0, Some(crate::support::ADMIN.1));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        response.json().await.unwrap_or(Value::Null)
    }

    /// Sends SIGTERM, as an orchestrator stopping the replica does, and waits up to `within` for it to exit;
    /// answers how long it took.
    pub(crate) async fn terminate(&mut self, within: Duration) -> Duration {
        let asked = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if self.child.try_wait().expect("wait").is_some() {
                return asked.elapsed();
            }
            assert!(asked.elapsed() < within, "still running {within:?} after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn kill(&mut self) {
        // SIGKILL: no shutdown hook, no flush.
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_read_converges_without_duplicates() {
    killed_read_converges(None).await;
}

// On PostgreSQL a killed replica's run is taken over rather than marked interrupted: see
// `replicas::a_killed_replicas_read_is_taken_over_without_a_second_create`.

async fn killed_read_converges(database: Option<&str>) {
    const USERS: usize = 5000;
    let uaa_sim = uaa::spawn(uaa::Options {
        users: USERS,
        ..Default::default()
    })
    .await
    .expect("uaa");
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let data = tempfile::tempdir().expect("data dir");
    let port = crate::support::free_port();
    let mut service = ServiceProcess::start_on(data.path(), port, database).await;
    let source = service
        .call(
            Method::POST,
            "/api/v1/systems",
            Some(json!({"name": "UAA", "type": "xsuaa", "role": "source",
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))})),
        )
        .await["id"]
        .as_str()
        .expect("source id")
        .to_string();
    let target = service
        .call(
            Method::POST,
            "/api/v1/systems",
            Some(json!({"name": "IAS", "type": "ias", "role": "target",
            "sources": [source],
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))})),
        )
        .await["id"]
        .as_str()
        .expect("target id")
        .to_string();
    let job = service
        .call(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    let killed_job = job["id"].as_str().expect("job id").to_string();
    let started = Instant::now();
    while ias_sim.user_count() < USERS / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run makes no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.kill();
    let written_before_kill = ias_sim.user_count();
    assert!(written_before_kill < USERS, "killed in the middle");

    let service = ServiceProcess::start_on(data.path(), port, database).await;
    let interrupted = service
        .call(Method::GET, &format!("/api/v1/jobs/{killed_job}"), None)
        .await;
    assert_eq!(interrupted["status"], "Finished with Error", "{interrupted}");
    assert_eq!(interrupted["interrupted"], true, "{interrupted}");

    let job = service
        .call(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    let id = job["id"].as_str().expect("job id").to_string();
    let job = loop {
        let job = service.call(Method::GET, &format!("/api/v1/jobs/{id}"), None).await;
        if matches!(
            job["status"].as_str(),
            Some("Success" | "Finished with Error" | "Manually Terminated")
        ) {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "Success", "{job}");
    let s = stats(&job, &target, "user");
    assert_eq!(s["failed"], 0, "{job}");
    // No duplicate, none missing.
    let users = ias_sim.users();
    assert_eq!(users.len(), USERS, "{job}");
    assert_eq!(user_names(&users).len(), USERS);
    assert_eq!(user_names(&users), user_names(&uaa_sim.users()));
    // What the killed run created without recording it is found again and linked as Provisio's own (not as
    // pre-existing, which would protect it from deletion).
    assert_eq!(s["updated"], 0, "{job}");
    let linked_by_killed_run = USERS as u64 - s["created"];
    let log = service
        .call(Method::GET, &format!("/api/v1/jobs/{id}/entities?limit=10000"), None)
        .await;
    let recovered = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("interrupted earlier run"))
        })
        .count() as u64;
    assert_eq!(recovered, written_before_kill as u64 - linked_by_killed_run, "{job}");
}

/// Held deletes decided one by one (API body), and a rejected delete is not proposed again by the next
/// Read — until the source has the entity again, after which its disappearance is a delete as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_deletes_are_not_proposed_again() {
    let service = Service::start().await;
    let ias_sim = ias_with_users(20).await;
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}))
        .await;
    let target = service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "xsuaa.origin": "sap.custom", "ips.delete.threshold.users": "3"}))}),
        )
        .await;
    let t = target.as_str();
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, t, "user"), (20, 0, 0, 0), "{job}");
    let ids: Vec<String> = ias_sim
        .users()
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect();

    // Five leave the source: above the threshold of 3, held.
    let mut taken: HashMap<String, ias::TakenUser> = HashMap::new();
    for id in &ids[..5] {
        taken.insert(id.clone(), ias_sim.take_user(id).expect("take"));
    }
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(stats(&job, t, "user")["held"], 5, "{job}");
    let job_id = job["id"].as_str().expect("id").to_string();
    let decide = |decision: &'static str, body: Option<Value>| {
        let service = &service;
        let path = format!("/api/v1/jobs/{job_id}/held-deletes/{decision}");
        async move { service.admin(Method::POST, &path, body).await }
    };
    let key = |id: &str| json!({"targetId": t, "entityType": "user", "sourceId": id});

    // Bad selections change nothing.
    let (status, e) = decide("reject", Some(json!({"entities": [key("not-held")]}))).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{e}");
    let (status, e) = decide("reject", Some(json!({"entitys": []}))).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{e}");

    // One approved (deleted now), two rejected by name, then the rest rejected without a body.
    let (status, d) = decide("approve", Some(json!({"entities": [key(&ids[0])]}))).await;
    assert_eq!(
        (status, d["deleted"].clone()),
        (reqwest::StatusCode::OK, json!(1)),
        "{d}"
    );
    assert_eq!(uaa_sim.user_count(), 19);
    let (status, d) = decide("reject", Some(json!({"entities": [key(&ids[1]), key(&ids[2])]}))).await;
    assert_eq!((status, d["count"].clone()), (reqwest::StatusCode::OK, json!(2)), "{d}");
    let (status, d) = decide("reject", Some(json!({"entities": [key(&ids[1])]}))).await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "decided already: {d}");
    let (status, d) = decide("reject", None).await;
    assert_eq!((status, d["count"].clone()), (reqwest::StatusCode::OK, json!(2)), "{d}");
    let (status, _) = decide("approve", None).await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "nothing left held");

    // The next Read neither holds nor deletes the four rejected ones.
    let job = run(&service, &source, json!({"type": "read"})).await;
    let s = stats(&job, t, "user");
    assert_eq!((s["held"], s["deleted"], s["skipped"]), (0, 0, 4), "{job}");
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(uaa_sim.user_count(), 19);
    let (_, log) = service
        .admin(
            Method::GET,
            &format!("/api/v1/jobs/{}/entities", job["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert!(log.to_string().contains("rejected this delete"), "{log}");

    // One comes back to the source: its rejection lapses; when it leaves again, it is deleted as any other.
    let back = ids[1].clone();
    ias_sim.put_back_user(taken.remove(&back).expect("taken"));
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(stats(&job, t, "user")["skipped"], 3, "{job}");
    taken.insert(back.clone(), ias_sim.take_user(&back).expect("take"));
    let job = run(&service, &source, json!({"type": "read"})).await;
    let s = stats(&job, t, "user");
    assert_eq!((s["held"], s["deleted"], s["skipped"]), (0, 1, 3), "{job}");
    assert_eq!(uaa_sim.user_count(), 18);
}

/// A disabled target is skipped by runs (and said so in the run), a disabled source runs nothing; enabled
/// again, both take part as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_systems_are_skipped() {
    let service = Service::start().await;
    let ias_sim = ias_with_users(5).await;
    let uaa_a = uaa::spawn(uaa::Options::default()).await.expect("uaa a");
    let uaa_b = uaa::spawn(uaa::Options::default()).await.expect("uaa b");
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}))
        .await;
    let target = |name: &str, sim: &uaa::Simulator| {
        json!({"name": name, "type": "xsuaa", "role": "target", "sources": [source],
            "properties": props(json!({"URL": sim.base_url,
                "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
                "User": sim.options().client_id, "Password": sim.options().client_secret,
                "xsuaa.origin": "sap.custom"}))})
    };
    let a = service.create_system(target("UAA A", &uaa_a)).await;
    let b = service.create_system(target("UAA B", &uaa_b)).await;
    let (status, body) = service
        .admin(Method::POST, &format!("/api/v1/systems/{b}/disable"), None)
        .await;
    assert_eq!(
        (status, body["enabled"].clone()),
        (reqwest::StatusCode::OK, json!(false)),
        "{body}"
    );

    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(counts(&job, &a, "user").0, 5, "{job}");
    assert_eq!((uaa_a.user_count(), uaa_b.user_count()), (5, 0));
    assert!(job["outcome"].to_string().contains("UAA B is disabled"), "{job}");
    assert_eq!(job["skippedTargets"][0]["targetId"], b.as_str(), "{job}");

    // Every target disabled: the run says so and writes nothing.
    service
        .admin(Method::POST, &format!("/api/v1/systems/{a}/disable"), None)
        .await;
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    assert!(job["outcome"].to_string().contains("disabled"), "{job}");

    // A disabled source starts no run.
    service
        .admin(Method::POST, &format!("/api/v1/systems/{source}/disable"), None)
        .await;
    let (status, body) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");

    // Enabled again: B catches up.
    for id in [&source, &a, &b] {
        let (status, _) = service
            .admin(Method::POST, &format!("/api/v1/systems/{id}/enable"), None)
            .await;
        assert_eq!(status, reqwest::StatusCode::OK);
    }
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!((uaa_a.user_count(), uaa_b.user_count()), (5, 5));
    assert_eq!(job["skippedTargets"], json!([]), "{job}");
}

/// Gives every user link of a pair a digest no transformation yields, keeping everything else (its memo
/// digest too): a run that transforms an entity then sees it changed and updates it; one that trusts the
/// memo does not transform it. Answers how many links were touched.
async fn tamper_digests(service: &Service, source: &str, target: &str) -> usize {
    let stores = &service.state.stores;
    let scope = LinkScope {
        source: source.into(),
        target: target.into(),
        kind: EntityKind::User,
    };
    let all = stores.links.all(&scope).await.expect("links");
    let mut contents = stores
        .links
        .contents(&scope, all.keys().map(|id| id.to_string()).collect())
        .await
        .expect("contents");
    let changes: Vec<LinkChange> = all
        .into_iter()
        .map(|(id, link)| LinkChange::Written {
            content: contents.remove(&*id).expect("a written link has content"),
            source_entity: id.to_string(),
            target_entity: link.target_entity.expect("linked").to_string(),
            digest: LinkDigest::from([0x7a; 32]),
            existed_before: link.existed_before,
            source_digest: link.source_digest,
        })
        .collect();
    let n = changes.len();
    stores.links.apply(&scope, changes, None).await.expect("tamper");
    n
}

/// Users that were transformed into what their target holds are not transformed again while their native
/// entity, the transformations and the properties stay the same; any change of the target's transformation
/// document, and a transformation that is not a function of the entity, transform them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transformation_memo_skips_only_what_it_can_vouch_for() {
    const USERS: u64 = 30;
    let service = Service::start().await;
    let ias_sim = ias_with_users(USERS as usize).await;
    let default: Value = serde_json::from_str(
        service
            .state
            .plugins
            .resolve("xsuaa", None)
            .expect("xsuaa loaded")
            .descriptor
            .default_write_transformation
            .as_deref()
            .expect("a default"),
    )
    .expect("the default parses");
    // The default plus one ignored mapping that names `tag`: the same output, another document.
    let with_ignored = |tag: &str| {
        let mut t = default.clone();
        t["user"]["mappings"]
            .as_array_mut()
            .expect("user mappings")
            .push(json!({"sourceVariable": tag, "targetPath": "$.nickName", "ignore": true}));
        t
    };
    let source_body = |name: &str| {
        json!({"name": format!("IAS {name}"), "type": "ias", "role": "source",
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))})
    };
    let target_body = |name: &str, uaa_sim: &uaa::Simulator, transformation: Value, source_id: &str| {
        json!({"name": format!("UAA {name}"), "type": "xsuaa", "role": "target", "sources": [source_id],
            "transformation": transformation,
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))})
    };

    // A pure transformation: the memo serves the second Read.
    let uaa_a = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = service.create_system(source_body("A")).await;
    let target = service
        .create_system(target_body("A", &uaa_a, with_ignored("constant"), &source))
        .await;
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, &target, "user"), (USERS, 0, 0, 0), "{job}");
    let scope = LinkScope {
        source: source.clone(),
        target: target.clone(),
        kind: EntityKind::User,
    };
    let written = service.state.stores.links.all(&scope).await.expect("links");
    assert!(
        written.values().all(|l| l.source_digest.is_some()),
        "every written user carries its memo digest: {written:?}"
    );
    assert_eq!(tamper_digests(&service, &source, &target).await, USERS as usize);
    let puts = |sim: &uaa::Simulator| sim.stats().log().iter().filter(|r| r.method == "PUT").count();
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, &target, "user"), (0, 0, 0, 0), "{job}");
    assert_eq!(stats(&job, &target, "user")["unchanged"], USERS, "{job}");
    assert_eq!(puts(&uaa_a), 0, "nothing was sent");

    // Another document (the same output): transformed again, so the tampered digests show as changes.
    let (status, body) = service
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{target}"),
            Some(target_body("A", &uaa_a, with_ignored("anotherConstant"), &source)),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, &target, "user"), (0, USERS, 0, 0), "{job}");
    // Written again with the new document's memo digests: served by the memo once more, and a Resync
    // (which writes everything) does not consult it.
    assert_eq!(tamper_digests(&service, &source, &target).await, USERS as usize);
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(stats(&job, &target, "user")["unchanged"], USERS, "{job}");
    let job = run(&service, &source, json!({"type": "resync"})).await;
    assert_eq!(counts(&job, &target, "user"), (0, USERS, 0, 0), "{job}");

    // A transformation that names `currentDate` is never memoised, even where the mapping is ignored.
    let uaa_b = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = service.create_system(source_body("B")).await;
    let target = service
        .create_system(target_body("B", &uaa_b, with_ignored("currentDate"), &source))
        .await;
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(counts(&job, &target, "user"), (USERS, 0, 0, 0), "{job}");
    assert_eq!(tamper_digests(&service, &source, &target).await, USERS as usize);
    let job = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(
        counts(&job, &target, "user"),
        (0, USERS, 0, 0),
        "transformed, not recalled: {job}"
    );
}

/// A source that names a user twice on a page. The memo knows both occurrences, but a run plans an id it
/// meets again against what it wrote for it first, so both are transformed after all: from the text the read
/// left unparsed for the memo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_named_twice_is_transformed_although_the_memo_knows_it() {
    let service = Service::start().await;
    let ias_sim = ias_with_users(30).await;
    let proxy = FlakyProxy::start(&ias_sim.base_url).await;
    proxy.echo_first(true);
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let (source, target) = ias_at_to_uaa(&service, &proxy.url, &ias_sim, &uaa_sim, "10000").await;
    let first = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(first["status"], "Success", "{first}");
    let (created, _, _, failed) = counts(&first, &target, "user");
    assert_eq!((created, failed), (uaa_sim.user_count() as u64, 0), "{first}");
    assert!(created > 0, "{first}");
    let writes = |sim: &uaa::Simulator| sim.stats().log().iter().filter(|r| r.method != "GET").count();
    let before = writes(&uaa_sim);
    let again = run(&service, &source, json!({"type": "read"})).await;
    assert_eq!(again["status"], "Success", "{again}");
    assert_eq!(counts(&again, &target, "user"), (0, 0, 0, 0), "{again}");
    assert_eq!(
        stats(&again, &target, "user")["unchanged"],
        30,
        "every entity the source names unchanged, the one named twice too: {again}"
    );
    assert_eq!(writes(&uaa_sim), before, "nothing was sent");
}
