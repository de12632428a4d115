//! Real-Time Provisioning against a recording receiver (an Identity Provisioning real-time API stand-in)
//! and against the Jam simulator.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use reqwest::Method as M;
use serde_json::{Value, json};

use super::super::{CUSTOM_GROUP_EXT, Options, SAP_GROUP_EXT, SAP_USER_EXT, Simulator, USER_SCHEMA, spawn};
use super::*;
use crate::sim::common::patch::PATCH_OP_SCHEMA;
use crate::sim::jam;

const ADMIN: (&str, &str) = ("T000001", "ias-secret");
const IPS_TECH: (&str, &str) = ("ips-tech", "ips-secret");
const WAIT: Duration = Duration::from_secs(10);

/// One request the receiver saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: Value,
}

/// A real-time API stand-in: records every request; POST answers 201 and PUT 200 with the body,
/// DELETE 204; the first `fail_first` requests are answered `fail_status` instead.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: Arc<AtomicUsize>,
    fail_status: Arc<AtomicU16>,
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn calls(&self) -> Vec<(String, String)> {
        self.seen().into_iter().map(|s| (s.method, s.path)).collect()
    }
    fn fail(&self, n: usize, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
        self.fail_first.store(n, Ordering::SeqCst);
    }
}

async fn record(
    AxState(r): AxState<Receiver>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: body.clone(),
    });
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let status = StatusCode::from_u16(r.fail_status.load(Ordering::SeqCst)).unwrap();
        return (status, axum::Json(json!({"detail": "scripted failure"}))).into_response();
    }
    match method.as_str() {
        "POST" => (StatusCode::CREATED, axum::Json(body)).into_response(),
        "PUT" => (StatusCode::OK, axum::Json(body)).into_response(),
        "DELETE" => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new().fallback(record).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, format!("http://{addr}"))
}

fn entities(system: &str) -> String {
    format!("/ipsproxy/api/v1/systems/{system}/entities")
}

fn ips_url(base: &str, system: &str) -> String {
    format!("{base}{}/user", entities(system))
}

fn basic_auth() -> RealtimeAuth {
    RealtimeAuth::Basic {
        user: "rt-user".into(),
        password: "rt-password".into(),
    }
}

async fn call(sim: &Simulator, who: (&str, &str), m: M, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .request(m, format!("{}{path}", sim.base_url))
        .basic_auth(who.0, Some(who.1));
    if let Some(b) = body {
        rb = rb.header("content-type", "application/scim+json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
}

fn user(name: &str) -> Value {
    json!({"userName": name, "name": {"givenName": "Jane", "familyName": "Doe"},
           "emails": [{"value": format!("{name}@example.net"), "primary": true}]})
}

fn pair(m: &str, p: String) -> (String, String) {
    (m.to_string(), p)
}

#[tokio::test]
async fn version_2_pushes_users_and_groups_in_order() {
    let (rec, base) = receiver().await;
    let sim = spawn(Options {
        realtime_targets: vec![RealtimeTarget::identity_provisioning(
            2,
            ips_url(&base, "src-2"),
            basic_auth(),
        )],
        ..Options::default()
    })
    .await
    .unwrap();
    let (st, u) = call(&sim, ADMIN, M::POST, "/scim/Users", Some(user("jdoe"))).await;
    assert_eq!(st, 201);
    let uid = u["id"].as_str().unwrap().to_string();
    let (st, _) = call(
        &sim,
        ADMIN,
        M::PATCH,
        &format!("/scim/Users/{uid}"),
        Some(patch(
            json!([{"op": "replace", "path": "name.givenName", "value": "Janet"}]),
        )),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &sim,
        ADMIN,
        M::PUT,
        &format!("/scim/Users/{uid}"),
        Some(json!({"userName": "jdoe", "displayName": "J. D.", "emails": [{"value": "jdoe@example.net"}]})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, g) = call(
        &sim,
        ADMIN,
        M::POST,
        "/scim/Groups",
        Some(json!({"displayName": "Team", "members": [{"value": uid}]})),
    )
    .await;
    assert_eq!(st, 201);
    let gid = g["id"].as_str().unwrap().to_string();
    let (st, _) = call(
        &sim,
        ADMIN,
        M::PATCH,
        &format!("/scim/Groups/{gid}"),
        Some(patch(
            json!([{"op": "replace", "path": "displayName", "value": "Team 2"}]),
        )),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        call(&sim, ADMIN, M::DELETE, &format!("/scim/Groups/{gid}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&sim, ADMIN, M::DELETE, &format!("/scim/Users/{uid}"), None)
            .await
            .0,
        204
    );
    assert!(sim.realtime_idle(WAIT).await);

    let e = entities("src-2");
    assert_eq!(
        rec.calls(),
        vec![
            pair("POST", format!("{e}/user")),
            pair("PUT", format!("{e}/user/{uid}")),
            pair("PUT", format!("{e}/user/{uid}")),
            pair("POST", format!("{e}/group")),
            pair("PUT", format!("{e}/group/{gid}")),
            pair("DELETE", format!("{e}/group/{gid}")),
            pair("DELETE", format!("{e}/user/{uid}")),
        ]
    );
    let seen = rec.seen();
    let created = &seen[0].body;
    assert_eq!(created["id"], uid.as_str());
    assert!(created.get("meta").is_none());
    assert_eq!(created["userName"], "jdoe");
    assert_eq!(created["name"]["givenName"], "Jane");
    assert_eq!(created["schemas"], json!([USER_SCHEMA, SAP_USER_EXT]));
    assert_eq!(created[SAP_USER_EXT]["userId"], "P000001");
    assert_eq!(created[SAP_USER_EXT]["userUuid"], uid.as_str());
    assert_eq!(seen[0].content_type, "application/scim+json");
    assert!(seen[0].authorization.starts_with("Basic "));
    // The PATCH is pushed as a PUT of the whole user; the PUT replaced it.
    assert_eq!(seen[1].body["name"]["givenName"], "Janet");
    assert_eq!(seen[1].body["emails"][0]["value"], "jdoe@example.net");
    assert_eq!(seen[2].body["displayName"], "J. D.");
    assert!(seen[2].body.get("name").is_none());
    assert_eq!(seen[3].body["id"], gid.as_str());
    assert_eq!(seen[3].body["members"][0]["value"], uid.as_str());
    assert!(seen[3].body.get("meta").is_none() && seen[3].body.get(SAP_GROUP_EXT).is_some());
    assert_eq!(seen[4].body["displayName"], "Team 2");
    assert_eq!((seen[5].body.clone(), seen[6].body.clone()), (Value::Null, Value::Null));

    let pushes = sim.pushes();
    assert_eq!(pushes.len(), 7);
    assert!(
        pushes
            .iter()
            .all(|p| p.ok() && p.target == 0 && p.attempts == 1 && p.error.is_none())
    );
    assert_eq!(
        pushes.iter().map(|p| (p.entity, p.method.as_str())).collect::<Vec<_>>(),
        vec![
            ("user", "POST"),
            ("user", "PUT"),
            ("user", "PUT"),
            ("group", "POST"),
            ("group", "PUT"),
            ("group", "DELETE"),
            ("user", "DELETE")
        ]
    );
    assert_eq!(pushes[1].path, format!("{e}/user/{uid}"));
    assert_eq!(pushes[1].status, Some(200));
    assert_eq!((sim.failed_pushes(), sim.pending_pushes()), (0, 0));
}

#[tokio::test]
async fn version_1_pushes_the_legacy_form() {
    let (rec, base) = receiver().await;
    let sim = spawn(Options {
        groups: 1,
        realtime_targets: vec![RealtimeTarget::identity_provisioning(
            1,
            ips_url(&base, "src-1"),
            basic_auth(),
        )],
        ..Options::default()
    })
    .await
    .unwrap();
    let gname = sim.groups()[0]["displayName"].as_str().unwrap().to_string();
    let mut body = user("legacy");
    body["groups"] = json!([{"value": gname}]);
    let (st, u) = call(&sim, ADMIN, M::POST, "/service/scim/Users", Some(body)).await;
    assert_eq!(st, 201);
    assert_eq!(u["id"], "P000001");
    let uuid = u["userUuid"].as_str().unwrap().to_string();
    let mut replaced = user("legacy");
    replaced["displayName"] = json!("Legacy");
    let (st, _) = call(&sim, ADMIN, M::PUT, "/service/scim/Users/P000001", Some(replaced)).await;
    assert_eq!(st, 200);
    let (st, g) = call(
        &sim,
        ADMIN,
        M::POST,
        "/service/scim/Groups",
        Some(json!({"displayName": "Legacy team", "members": [{"value": "P000001"}]})),
    )
    .await;
    assert_eq!(st, 201);
    let legacy_gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(legacy_gid.len(), 24);
    // A change through the v2 API reaches a version-1 target in the v1 form too.
    assert_eq!(
        call(&sim, ADMIN, M::DELETE, &format!("/scim/Users/{uuid}"), None)
            .await
            .0,
        204
    );
    assert!(sim.realtime_idle(WAIT).await);

    let e = entities("src-1");
    assert_eq!(
        rec.calls(),
        vec![
            pair("POST", format!("{e}/user")),
            pair("PUT", format!("{e}/user/P000001")),
            pair("POST", format!("{e}/group")),
            pair("DELETE", format!("{e}/user/P000001")),
        ]
    );
    let seen = rec.seen();
    let created = &seen[0].body;
    assert_eq!(created["id"], "P000001");
    assert_eq!(created["userUuid"], uuid.as_str());
    assert_eq!(created["mailVerified"], false);
    assert_eq!(created["passwordStatus"], "disabled");
    assert!(created.get(SAP_USER_EXT).is_none() && created.get("meta").is_none());
    assert_eq!(created["schemas"], json!([USER_SCHEMA]));
    assert_eq!(created["groups"][0]["value"], gname.as_str());
    assert_eq!(seen[1].body["displayName"], "Legacy");
    // A v1 PUT without `groups` keeps the memberships; the pushed user still lists them.
    assert_eq!(seen[1].body["groups"][0]["value"], gname.as_str());
    let group = &seen[2].body;
    assert_eq!(group["id"], legacy_gid.as_str());
    assert_eq!(group["members"][0]["value"], "P000001");
    assert!(group.get(SAP_GROUP_EXT).is_none());
    assert!(group[CUSTOM_GROUP_EXT]["groupId"].is_string());
    assert_eq!(
        sim.pushes().iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        vec!["P000001", "P000001", legacy_gid.as_str(), "P000001"]
    );
}

#[tokio::test]
async fn loop_guard_skips_changes_initiated_by_the_targets_client() {
    let (rec, base) = receiver().await;
    let sim = spawn(Options {
        other_clients: vec![(IPS_TECH.0.into(), IPS_TECH.1.into())],
        realtime_targets: vec![
            RealtimeTarget::identity_provisioning(2, ips_url(&base, "guarded"), basic_auth())
                .with_initiator(IPS_TECH.0),
            RealtimeTarget::identity_provisioning(2, ips_url(&base, "open"), basic_auth()),
        ],
        ..Options::default()
    })
    .await
    .unwrap();
    // An administrator creates A; the IPS technical user creates B (Basic) and updates A (OAuth);
    // an accessor (console change) creates C.
    let (_, a) = call(&sim, ADMIN, M::POST, "/scim/Users", Some(user("a"))).await;
    let a = a["id"].as_str().unwrap().to_string();
    let (st, b) = call(&sim, IPS_TECH, M::POST, "/scim/Users", Some(user("b"))).await;
    assert_eq!(st, 201);
    let b = b["id"].as_str().unwrap().to_string();
    let c = reqwest::Client::new();
    let token: Value = c
        .post(sim.oauth_token_url())
        .basic_auth(IPS_TECH.0, Some(IPS_TECH.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .patch(format!("{}/scim/Users/{a}", sim.base_url))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&patch(json!([{"op": "replace", "path": "displayName", "value": "A"}])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cu = sim.insert_user(user("c")).unwrap();
    let cu = cu["id"].as_str().unwrap().to_string();
    // Wrong credentials change nothing and push nothing.
    assert_eq!(
        call(&sim, ("ips-tech", "nope"), M::POST, "/scim/Users", Some(user("d")))
            .await
            .0,
        401
    );
    assert!(sim.realtime_idle(WAIT).await);

    let of = |system: &str| -> Vec<(String, String)> {
        let prefix = entities(system);
        rec.calls()
            .into_iter()
            .filter(|(_, p)| p.starts_with(&prefix))
            .collect()
    };
    let (g, o) = (entities("guarded"), entities("open"));
    assert_eq!(
        of("guarded"),
        vec![pair("POST", format!("{g}/user")), pair("POST", format!("{g}/user"))]
    );
    assert_eq!(
        of("open"),
        vec![
            pair("POST", format!("{o}/user")),
            pair("POST", format!("{o}/user")),
            pair("PUT", format!("{o}/user/{a}")),
            pair("POST", format!("{o}/user")),
        ]
    );
    let guarded: Vec<String> = sim
        .pushes()
        .into_iter()
        .filter(|p| p.target == 0)
        .map(|p| p.id)
        .collect();
    assert_eq!(guarded, vec![a.clone(), cu.clone()]);
    let open: Vec<String> = sim
        .pushes()
        .into_iter()
        .filter(|p| p.target == 1)
        .map(|p| p.id)
        .collect();
    assert_eq!(open, vec![a.clone(), b, a, cu]);
}

#[tokio::test]
async fn failed_pushes_are_retried_then_recorded() {
    let (rec, base) = receiver().await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let sim = spawn(Options {
        realtime_retry: RealtimeRetry {
            attempts: 3,
            backoff: Duration::from_millis(5),
        },
        realtime_targets: vec![
            RealtimeTarget::identity_provisioning(2, ips_url(&base, "flaky"), basic_auth()),
            RealtimeTarget::identity_provisioning(2, ips_url(&closed, "gone"), basic_auth()).named("Gone"),
        ],
        ..Options::default()
    })
    .await
    .unwrap();
    rec.fail(2, 503);
    sim.insert_user(user("first")).unwrap();
    assert!(sim.realtime_idle(WAIT).await);
    let pushes = sim.pushes();
    let flaky = pushes.iter().find(|p| p.target == 0).unwrap();
    assert_eq!((flaky.status, flaky.attempts, flaky.ok()), (Some(201), 3, true));
    assert_eq!(rec.calls().len(), 3);
    let gone = pushes.iter().find(|p| p.target == 1).unwrap();
    assert_eq!((gone.status, gone.attempts, gone.ok()), (None, 3, false));
    assert!(gone.error.is_some());
    assert_eq!(sim.failed_pushes(), 1);

    // A 4xx is not retried; the queue goes on with the next change.
    assert!(sim.remove_realtime_target(1));
    rec.fail(1, 400);
    sim.insert_user(user("second")).unwrap();
    sim.insert_user(user("third")).unwrap();
    assert!(sim.realtime_idle(WAIT).await);
    let last: Vec<(Option<u16>, u32)> = sim.pushes()[2..].iter().map(|p| (p.status, p.attempts)).collect();
    assert_eq!(last, vec![(Some(400), 1), (Some(201), 1)]);
    assert_eq!(sim.failed_pushes(), 2);
    sim.clear_pushes();
    assert_eq!((sim.pushes().len(), sim.failed_pushes()), (0, 0));
}

#[tokio::test]
async fn pushes_of_each_user_keep_their_order() {
    let (rec, base) = receiver().await;
    let sim = spawn(Options {
        realtime_targets: vec![RealtimeTarget::identity_provisioning(
            2,
            ips_url(&base, "s"),
            basic_auth(),
        )],
        ..Options::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for n in ["x", "y"] {
        let (_, u) = call(&sim, ADMIN, M::POST, "/scim/Users", Some(user(n))).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (url, id) = (sim.base_url.clone(), id.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                for i in 0..15 {
                    let r = c
                        .patch(format!("{url}/scim/Users/{id}"))
                        .basic_auth(ADMIN.0, Some(ADMIN.1))
                        .json(&patch(
                            json!([{"op": "replace", "path": "displayName", "value": format!("v{i}")}]),
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(sim.realtime_idle(WAIT).await);
    for id in &ids {
        let names: Vec<String> = rec
            .seen()
            .into_iter()
            .filter(|s| s.method == "PUT" && s.path.ends_with(id.as_str()))
            .map(|s| s.body["displayName"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, (0..15).map(|i| format!("v{i}")).collect::<Vec<_>>());
    }
    assert_eq!(sim.pushes().len(), 32);
}

#[tokio::test]
async fn jam_receives_users_by_ias_id() {
    let jam = jam::spawn(jam::Options::default()).await.unwrap();
    let jo = jam.options().clone();
    let oauth = RealtimeAuth::OAuth {
        token_url: jam.token_url.clone().unwrap(),
        client_id: jo.client_id.clone(),
        client_secret: jo.client_secret.clone(),
    };
    let sim = spawn(Options {
        users: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let t = sim
        .add_realtime_target(RealtimeTarget::jam(jam.scim_url(), oauth).named("Jam"))
        .unwrap();
    let targets = sim.realtime_targets();
    assert_eq!(
        (targets.len(), targets[0].0, targets[0].1.display_name.as_str()),
        (1, t, "Jam")
    );

    // A new user: created in Jam with the IAS id as userName.
    let (_, u) = call(&sim, ADMIN, M::POST, "/scim/Users", Some(user("jdoe"))).await;
    let uid = u["id"].as_str().unwrap().to_string();
    // Groups are not pushed to Jam.
    call(
        &sim,
        ADMIN,
        M::POST,
        "/scim/Groups",
        Some(json!({"displayName": "G", "members": [{"value": uid}]})),
    )
    .await;
    assert!(sim.realtime_idle(WAIT).await);
    let ju = jam.user_by_name("P000002").expect("pushed to Jam");
    let jid = ju["id"].as_str().unwrap().to_string();
    assert_eq!(ju["emails"][0]["value"], "jdoe@example.net");
    assert_eq!(ju["name"]["givenName"], "Jane");
    assert_eq!(ju["active"], true);
    assert!(ju.get(SAP_USER_EXT).is_none());

    // An update: the same Jam user, replaced (after the Jam token was revoked: a new one is fetched).
    jam.revoke_tokens();
    call(
        &sim,
        ADMIN,
        M::PATCH,
        &format!("/scim/Users/{uid}"),
        Some(patch(
            json!([{"op": "replace", "path": "name.givenName", "value": "Janet"}]),
        )),
    )
    .await;
    // The seeded user, unknown to Jam, is created there by its update.
    let seeded = sim.users()[0]["id"].as_str().unwrap().to_string();
    call(
        &sim,
        ADMIN,
        M::PATCH,
        &format!("/scim/Users/{seeded}"),
        Some(patch(json!([{"op": "replace", "path": "title", "value": "Boss"}]))),
    )
    .await;
    assert!(sim.realtime_idle(WAIT).await);
    let ju = jam.user_by_name("P000002").unwrap();
    assert_eq!(
        (ju["id"].as_str(), ju["name"]["givenName"].as_str()),
        (Some(jid.as_str()), Some("Janet"))
    );
    assert_eq!(jam.user_by_name("P000001").unwrap()["title"], "Boss");
    assert_eq!(jam.user_count(), 2);

    // A delete removes it from Jam.
    call(&sim, ADMIN, M::DELETE, &format!("/scim/Users/{uid}"), None).await;
    assert!(sim.realtime_idle(WAIT).await);
    assert!(jam.user_by_name("P000002").is_none());
    let users = format!("{}/Users", jam::SCIM_PREFIX);
    assert_eq!(
        sim.pushes()
            .iter()
            .map(|p| (p.method.as_str(), p.path.clone(), p.status))
            .collect::<Vec<_>>(),
        vec![
            ("POST", users.clone(), Some(201)),
            ("PUT", format!("{users}/{jid}"), Some(200)),
            ("POST", users.clone(), Some(201)),
            ("DELETE", format!("{users}/{jid}"), Some(204)),
        ]
    );
    assert!(sim.pushes().iter().all(|p| p.entity == "user"));
    assert_eq!(sim.pushes()[0].id, "P000002");
    assert_eq!(sim.pushes()[0].body.as_ref().unwrap()["schemas"], json!([USER_SCHEMA]));
    assert_eq!(sim.failed_pushes(), 0);
}

#[tokio::test]
async fn targets_at_runtime_and_the_provision_button() {
    let (rec, base) = receiver().await;
    let sim = spawn(Options {
        users: 3,
        groups: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    // Seeded data is not pushed anywhere.
    let t = sim
        .add_realtime_target(RealtimeTarget::identity_provisioning(
            2,
            ips_url(&base, "late"),
            basic_auth(),
        ))
        .unwrap();
    assert_eq!(t, 0);
    assert!(sim.realtime_idle(WAIT).await);
    assert!(rec.calls().is_empty());
    assert_eq!(sim.provision_users(t), Ok(3));
    assert!(sim.realtime_idle(WAIT).await);
    let posted: Vec<String> = rec
        .seen()
        .iter()
        .map(|s| s.body["id"].as_str().unwrap().to_string())
        .collect();
    let ids: Vec<String> = sim
        .users()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(posted, ids);
    assert!(sim.remove_realtime_target(t));
    assert!(!sim.remove_realtime_target(t));
    assert!(sim.provision_users(t).is_err());
    sim.insert_user(user("after")).unwrap();
    assert!(sim.realtime_idle(WAIT).await);
    assert_eq!(rec.calls().len(), 3);
    // A second target gets the next index.
    let t2 = sim
        .add_realtime_target(RealtimeTarget::identity_provisioning(
            1,
            ips_url(&base, "two"),
            basic_auth(),
        ))
        .unwrap();
    assert_eq!(t2, 1);

    // What the console refuses.
    let bad_url = RealtimeTarget::identity_provisioning(2, format!("{base}{}", entities("x")), basic_auth());
    assert!(
        sim.add_realtime_target(bad_url.clone())
            .unwrap_err()
            .contains("entities/user")
    );
    let bad_version = RealtimeTarget::identity_provisioning(3, ips_url(&base, "x"), basic_auth());
    assert!(sim.add_realtime_target(bad_version).unwrap_err().contains("version"));
    let err = spawn(Options {
        realtime_targets: vec![bad_url],
        ..Options::default()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn targets_parse_from_the_command_line_form() {
    let t: RealtimeTarget = "ips,1,https://ips.example/ipsproxy/api/v1/systems/s1/entities/user,rt,pw"
        .parse()
        .unwrap();
    assert_eq!(t.kind, RealtimeKind::IdentityProvisioning { version: 1 });
    assert_eq!(
        t.auth,
        RealtimeAuth::Basic {
            user: "rt".into(),
            password: "pw".into()
        }
    );
    assert_eq!(
        t.group_url(),
        "https://ips.example/ipsproxy/api/v1/systems/s1/entities/group"
    );
    assert!(t.groups && t.initiator_client_id.is_none());
    let t: RealtimeTarget = "ips,2,http://h/ipsproxy/api/v1/systems/s/entities/user,c,s,http://h/oauth2/token,ips-tech"
        .parse()
        .unwrap();
    assert!(matches!(t.auth, RealtimeAuth::OAuth { ref token_url, .. } if token_url == "http://h/oauth2/token"));
    assert_eq!(t.initiator_client_id.as_deref(), Some("ips-tech"));
    let t: RealtimeTarget = "jam,,http://jam.example/api/v1/scim,key,secret".parse().unwrap();
    assert_eq!(t.kind, RealtimeKind::Jam);
    assert_eq!(t.user_url(), "http://jam.example/api/v1/scim/Users");
    assert!(
        matches!(t.auth, RealtimeAuth::OAuth { ref token_url, .. } if token_url == "http://jam.example/api/v1/auth/token")
    );
    for bad in [
        "ips,3,http://h/ipsproxy/api/v1/systems/s/entities/user,u,p",
        "ips,2,http://h/ipsproxy/api/v1/systems/s/entities,u,p",
        "ldap,2,http://h/x,u,p",
        "ips,2,http://h/x",
    ] {
        assert!(bad.parse::<RealtimeTarget>().is_err(), "{bad}");
    }
}
