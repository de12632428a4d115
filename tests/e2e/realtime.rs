//! Real-time provisioning end to end: pushes to `/ipsproxy/…/systems/{source}/entities/{user,group}` reach
//! every target of the source (UAA, SAP Jam, scim2-server) in order; bad pushes get SCIM errors and queue
//! nothing; a target that is down receives everything once it is back; the seed-000 chain Provisio A →
//! ips-target → Provisio B's real-time API → a target of B, with payload versions 1 and 2; a real-time PATCH
//! and a proxy PATCH of the same operations give the same user.

use std::time::{Duration, Instant};

use provisio_tests::sim::{ias, jam, uaa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Scim2Server, Service};

const PUSHER: (&str, &str) = ("ias-realtime", "realtime-password-1");

async fn technical_user(service: &Service, name: &str, password: &str, permissions: Value) {
    let (status, body) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": name, "password": password, "permissions": permissions})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn fast(mut props: Value) -> Value {
    props["provisio.rate.limit"] = json!("10000");
    props["ips.failed.request.retry.attempts.interval"] = json!("0.05");
    props
}

/// Pushes one request as the real-time pusher; answers status and body.
async fn push(
    service: &Service,
    method: Method,
    path: &str,
    body: Option<Value>,
    auth: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = service
        .http
        .request(method, format!("{}/ipsproxy/api/v1/{path}", service.url))
        .header("Content-Type", "application/scim+json");
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("push");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The user of a scim2-server with this `userName`, if any.
async fn scim_user(server: &Scim2Server, name: &str) -> Option<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/Users", server.base_url))
        .query(&[("filter", format!("userName eq \"{name}\""))])
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("scim2-server")
        .json()
        .await
        .expect("json");
    page["Resources"].as_array().and_then(|r| r.first()).cloned()
}

fn ias_user(id: &str, name: &str, given: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:sap:2.0:User"],
        "id": id,
        "userName": name,
        "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"userId": id, "userUuid": format!("uuid-{id}")},
        "name": {"givenName": given, "familyName": "Pushed"},
        "displayName": format!("{given} Pushed"),
        "emails": [{"value": format!("{name}@example.com"), "primary": true, "type": "work"}],
        "active": true
    })
}

async fn until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Waits until the source's real-time log, as stored, satisfies `check`.
async fn until_logged(
    service: &Service,
    source: &str,
    what: &str,
    check: impl Fn(&[provisio::store::realtime::EventRecord]) -> bool,
) {
    let started = Instant::now();
    loop {
        let log = service.state.stores.events.list(Some(source), None, None, 5000).await;
        if log.is_ok_and(|log| check(&log)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn events(service: &Service, source: &str) -> Vec<Value> {
    let (_, log) = service
        .admin(
            Method::GET,
            &format!("/api/v1/realtime/events?source={source}&limit=5000"),
            None,
        )
        .await;
    log.as_array().cloned().unwrap_or_default()
}

async fn ias_source(service: &Service, ias_sim: &ias::Simulator, version: &str) -> String {
    service
        .create_system(
            json!({"name": format!("IAS v{version}"), "type": "ias", "role": "source",
            "properties": fast(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret,
                "ias.api.version": version}))}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_changes_reach_every_target_at_once() {
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let jam_sim = jam::spawn(jam::Options::default()).await.expect("jam");
    let scim = Scim2Server::start().await;
    let source = ias_source(&service, &ias_sim, "2").await;
    service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": fast(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))}),
        )
        .await;
    service
        .create_system(
            json!({"name": "Jam", "type": "jam", "role": "target", "sources": [source],
            "properties": fast(json!({"URL": jam_sim.base_url, "Authentication": "BasicAuthentication",
                "OAuth2TokenServiceURL": jam_sim.token_url.clone().expect("token url"),
                "User": jam_sim.options().client_id, "Password": jam_sim.options().client_secret}))}),
        )
        .await;
    // scim2-server knows only the standard schemas: the SAP extensions an IAS user carries are dropped.
    let scim_plugin = service.state.plugins.resolve("scim", None).expect("scim connector");
    let mut write: Value = serde_json::from_str(
        scim_plugin
            .descriptor
            .default_write_transformation
            .as_deref()
            .expect("default"),
    )
    .expect("json");
    if let Some(mappings) = write["user"]["mappings"].as_array_mut() {
        for ext in [
            "urn:sap:cloud:scim:schemas:extension:custom:2.0:User",
            "urn:ietf:params:scim:schemas:extension:sap:2.0:User",
        ] {
            mappings.push(json!({"type": "remove", "targetPath": format!("$['{ext}']")}));
        }
        mappings.push(json!({"constant": ["urn:ietf:params:scim:schemas:core:2.0:User"], "targetPath": "$.schemas"}));
    }
    service
        .create_system(json!({"name": "SCIM", "type": "scim", "role": "target", "sources": [source],
            "transformation": write,
            "properties": fast(json!({"URL": scim.base_url, "Authentication": "BearerToken", "Password": scim.token}))}))
        .await;
    let path = format!("systems/{source}/entities/user");
    let scim_has = |name: &'static str| scim_user(&scim, name);

    // Create: acknowledged, then in every target within a second.
    let (status, body) = push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("P100", "rt.ann", "Ann")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], "P100");
    let took = until("the user in UAA and Jam", || {
        uaa_sim.user_by_name("rt.ann").is_some() && jam_sim.user_by_name("rt.ann").is_some()
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let started = Instant::now();
    while scim_has("rt.ann").await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not in scim2-server: {:?}",
            events(&service, &source).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Update, deactivate (PATCH), delete: each arrives, in order.
    let (status, _) = push(
        &service,
        Method::PUT,
        &format!("{path}/P100"),
        Some(ias_user("P100", "rt.ann", "Anna")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    until("the update in UAA", || {
        uaa_sim
            .user_by_name("rt.ann")
            .is_some_and(|u| u["name"]["givenName"] == "Anna")
    })
    .await;
    let (status, _) = push(
        &service,
        Method::PATCH,
        &format!("{path}/P100"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    until("the deactivation in UAA", || {
        uaa_sim.user_by_name("rt.ann").is_some_and(|u| u["active"] == false)
    })
    .await;
    let (status, _) = push(&service, Method::DELETE, &format!("{path}/P100"), None, Some(PUSHER)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Jam's default write transformation deactivates instead of deleting (its deleteEntity mappings).
    until("the delete everywhere", || {
        uaa_sim.user_by_name("rt.ann").is_none() && jam_sim.user_by_name("rt.ann").is_some_and(|u| u["active"] == false)
    })
    .await;
    let started = Instant::now();
    while scim_has("rt.ann").await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(5), "still in scim2-server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The real-time log: per event and target, the state (each recorded just after its last write).
    until_logged(&service, &source, "every event done", |log| {
        log.iter().all(|e| e.state == "done")
    })
    .await;
    let log = events(&service, &source).await;
    let states = |op: &str| -> Vec<String> {
        log.iter()
            .filter(|e| e["operation"] == op)
            .flat_map(|e| e["results"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["state"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(states("create"), ["Created", "Created", "Created"], "{log:?}");
    assert_eq!(states("replace"), ["Updated", "Updated", "Updated"], "{log:?}");
    let mut deleted = states("delete");
    deleted.sort();
    assert_eq!(deleted, ["Deleted", "Deleted", "Updated"], "Jam deactivates: {log:?}");
    assert!(log.iter().all(|e| e["state"] == "done"), "{log:?}");

    // The same create again changes nothing twice.
    push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("P200", "rt.bob", "Bob")),
        Some(PUSHER),
    )
    .await;
    push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("P200", "rt.bob", "Bob")),
        Some(PUSHER),
    )
    .await;
    let started = Instant::now();
    loop {
        let log = events(&service, &source).await;
        let bob: Vec<&Value> = log.iter().filter(|e| e["entityId"] == "P200").collect();
        if bob.len() == 2 && bob.iter().all(|e| e["state"] == "done") {
            let second = bob
                .iter()
                .min_by_key(|e| std::cmp::Reverse(e["seq"].as_i64()))
                .expect("second");
            let states: Vec<&str> = second["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter_map(|r| r["state"].as_str())
                .collect();
            assert_eq!(states, ["Already Provisioned"; 3], "{second}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(uaa_sim.users().iter().filter(|u| u["userName"] == "rt.bob").count(), 1);
}

/// A push that must be refused: method, path, body, credentials, expected status and `scimType`.
type BadPush<'a> = (
    Method,
    String,
    Option<Value>,
    Option<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_scim_errors_and_queue_nothing() {
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    technical_user(&service, "reader", "reader-password-1", json!(["read-logs"])).await;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let source = ias_source(&service, &ias_sim, "2").await;
    let disabled = service
        .create_system(json!({"name": "IAS off", "type": "ias", "role": "source",
            "properties": {"URL": ias_sim.base_url, "User": "x", "Password": "y", "ips.realtime.enabled": "false"}}))
        .await;
    let path = format!("systems/{source}/entities/user");
    let user = ias_user("P1", "x.y", "X");
    let cases: Vec<BadPush> = vec![
        (
            Method::POST,
            path.clone(),
            Some(user.clone()),
            None,
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            Method::POST,
            path.clone(),
            Some(user.clone()),
            Some(("reader", "reader-password-1")),
            StatusCode::FORBIDDEN,
            "",
        ),
        (
            Method::POST,
            path.clone(),
            Some(user.clone()),
            Some((PUSHER.0, "wrong-password")),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})),
            Some(PUSHER),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            Method::POST,
            path.clone(),
            Some(json!({"schemas": ["urn:example:unknown"], "userName": "a"})),
            Some(PUSHER),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            Method::POST,
            "systems/no-such-source/entities/user".into(),
            Some(user.clone()),
            Some(PUSHER),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::POST,
            format!("systems/{disabled}/entities/user"),
            Some(user.clone()),
            Some(PUSHER),
            StatusCode::FORBIDDEN,
            "",
        ),
        (
            Method::POST,
            format!("systems/{source}/entities/robot"),
            Some(user.clone()),
            Some(PUSHER),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            Method::PUT,
            format!("{path}/P2"),
            Some(ias_user("P1", "x.y", "X")),
            Some(PUSHER),
            StatusCode::BAD_REQUEST,
            "mutability",
        ),
        (
            Method::PATCH,
            format!("{path}/P1"),
            Some(json!({"Operations": "nope"})),
            Some(PUSHER),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
    ];
    for (method, path, body, auth, status, scim_type) in cases {
        let (got, answer) = push(&service, method.clone(), &path, body, auth).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(
            answer["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{answer}"
        );
        assert_eq!(answer["status"], status.as_u16().to_string(), "{answer}");
        if !scim_type.is_empty() {
            assert_eq!(answer["scimType"], scim_type, "{answer}");
        }
    }
    // Malformed JSON.
    let response = service
        .http
        .post(format!("{}/ipsproxy/api/v1/{path}", service.url))
        .basic_auth(PUSHER.0, Some(PUSHER.1))
        .body("{\"schemas\": [")
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("scim error");
    assert_eq!(answer["scimType"], "invalidSyntax");
    assert!(events(&service, &source).await.is_empty(), "nothing was queued");
    assert!(events(&service, &disabled).await.is_empty());
    // The `/service` form and the probe a pushing system's Test Connection makes.
    let response = service
        .http
        .get(format!("{}/ipsproxy/service/api/v1/{path}", service.url))
        .basic_auth(PUSHER.0, Some(PUSHER.1))
        .send()
        .await
        .expect("probe");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_000_chain_in_both_payload_versions() {
    // Provisio B: receives pushes for its IAS source and writes them to UAA.
    let b = Service::start().await;
    technical_user(&b, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_b = ias::spawn(ias::Options::default()).await.expect("ias for B");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    // Provisio A: reads an IAS tenant with a job and pushes to B through the ips-target connector.
    let a = Service::start().await;
    let ias_a = ias::spawn(ias::Options {
        users: 5,
        ..Default::default()
    })
    .await
    .expect("ias for A");
    for version in ["2", "1"] {
        let b_source = ias_source(&b, &ias_b, version).await;
        b.create_system(
            json!({"name": format!("UAA v{version}"), "type": "xsuaa", "role": "target", "sources": [b_source],
            "properties": fast(json!({"URL": uaa_sim.base_url, "xsuaa.origin": format!("origin{version}"),
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))}),
        )
        .await;
        let a_source = a
            .create_system(
                json!({"name": format!("IAS A v{version}"), "type": "ias", "role": "source",
                "properties": fast(json!({"URL": ias_a.base_url, "Authentication": "BasicAuthentication",
                    "User": ias_a.options().client_id, "Password": ias_a.options().client_secret}))}),
            )
            .await;
        let ips_target = a
            .create_system(
                json!({"name": format!("Provisio B v{version}"), "type": "ips-target", "role": "target",
                "sources": [a_source],
                "properties": fast(json!({"URL": format!("{}/ipsproxy/api/v1/systems/{b_source}/entities", b.url),
                    "Authentication": "BasicAuthentication", "User": PUSHER.0, "Password": PUSHER.1,
                    "Version": version}))}),
            )
            .await;
        assert!(a.test_connection(&ips_target).await.0, "A reaches B's real-time API");
        let (status, job) = a
            .admin(
                Method::POST,
                &format!("/api/v1/systems/{a_source}/jobs"),
                Some(json!({"type": "read"})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let origin = format!("origin{version}");
        until(&format!("5 users of version {version} in UAA"), || {
            uaa_sim
                .users()
                .iter()
                .filter(|u| u["origin"] == origin.as_str())
                .count()
                == 5
        })
        .await;
        let log = events(&b, &b_source).await;
        assert_eq!(log.len(), 5, "{log:?}");
    }
}

async fn ias_call(sim: &ias::Simulator, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}/scim/{path}", sim.base_url))
        .basic_auth(&sim.options().client_id, Some(&sim.options().client_secret))
        .header("Content-Type", "application/scim+json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("ias");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_authentication_pushes_and_provisio_does_not_echo() {
    let service = Service::start().await;
    let (ias_sim, uaa_sim, source) = pushed_from_ias_to_uaa(&service).await;
    // IAS's Real-Time Provisioning target: Provisio, as the IAS console takes the SCIM URL.
    ias_sim
        .add_realtime_target(ias::RealtimeTarget::identity_provisioning(
            2,
            format!("{}/ipsproxy/service/api/v1/systems/{source}/entities/user", service.url),
            ias::RealtimeAuth::Basic {
                user: PUSHER.0.into(),
                password: PUSHER.1.into(),
            },
        ))
        .expect("target");

    // A user created, changed, deactivated and deleted in IAS follows in UAA within a second each.
    let created = ias_call(
        &ias_sim,
        Method::POST,
        "Users",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "live.user",
            "name": {"givenName": "Live", "familyName": "User"},
            "emails": [{"value": "live.user@example.com", "primary": true}]}),
        ),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    let took = until("the pushed create in UAA", || {
        uaa_sim.user_by_name("live.user").is_some()
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    ias_call(
        &ias_sim,
        Method::PATCH,
        &format!("Users/{id}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.givenName", "value": "Changed"}]})),
    )
    .await;
    let took = until("the pushed change in UAA", || {
        uaa_sim
            .user_by_name("live.user")
            .is_some_and(|u| u["name"]["givenName"] == "Changed")
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    ias_call(
        &ias_sim,
        Method::PATCH,
        &format!("Users/{id}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}]})),
    )
    .await;
    until("the deactivation in UAA", || {
        uaa_sim.user_by_name("live.user").is_some_and(|u| u["active"] == false)
    })
    .await;
    ias_call(&ias_sim, Method::DELETE, &format!("Users/{id}"), None).await;
    let took = until("the pushed delete in UAA", || {
        uaa_sim.user_by_name("live.user").is_none()
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(ias_sim.realtime_idle(Duration::from_secs(5)).await);
    assert_eq!(ias_sim.failed_pushes(), 0);

    // Provisio writes into the same IAS tenant (a job from scim2-server): IAS pushes those users back, and
    // Provisio does not echo them on into UAA.
    let scim = Scim2Server::start().await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/Users", scim.base_url))
        .bearer_auth(&scim.token)
        .header("Content-Type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "from.scim",
            "name": {"givenName": "From", "familyName": "Scim"}, "emails": [{"value": "from.scim@example.com", "primary": true}]})
            .to_string(),
        )
        .send()
        .await
        .expect("scim2-server");
    assert!(response.status().is_success());
    let scim_source = service
        .create_system(json!({"name": "HR", "type": "scim", "role": "source",
            "properties": fast(json!({"URL": scim.base_url, "Authentication": "BearerToken", "Password": scim.token}))}))
        .await;
    service
        .create_system(
            json!({"name": "IAS as target", "type": "ias", "role": "target", "sources": [scim_source],
            "properties": fast(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}),
        )
        .await;
    let (_, job) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{scim_source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    assert!(job["id"].is_string(), "{job}");
    until("the job's user in IAS", || ias_sim.user_by_name("from.scim").is_some()).await;
    assert!(ias_sim.realtime_idle(Duration::from_secs(5)).await);
    let started = Instant::now();
    loop {
        let log = events(&service, &source).await;
        if let Some(echo) = log
            .iter()
            .find(|e| e["operation"] == "create" && e["state"] == "done" && e["seq"].as_i64() > Some(4))
        {
            if echo["results"][0]["state"] != "Skipped" {
                let (_, run) = service
                    .admin(
                        Method::GET,
                        &format!("/api/v1/jobs/{}", job["id"].as_str().unwrap_or_default()),
                        None,
                    )
                    .await;
                panic!("the echo was provisioned: {echo}\nthe job that wrote the user: {run}");
            }
            assert!(
                echo["results"][0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("echo")),
                "{echo}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(uaa_sim.user_by_name("from.scim").is_none(), "not echoed on into UAA");
}

fn uaa_target(uaa_sim: &uaa::Simulator, url: &str, source: &str) -> Value {
    json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
        "properties": fast(json!({"URL": url,
            "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
            "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_gets_everything_in_order_when_it_is_back() {
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let proxy = crate::provisioning::FlakyProxy::start(&uaa_sim.base_url).await;
    let source = ias_source(&service, &ias_sim, "2").await;
    service.create_system(uaa_target(&uaa_sim, &proxy.url, &source)).await;
    proxy.set_down(true);
    let path = format!("systems/{source}/entities/user");
    for i in 0..10 {
        let id = format!("D{i}");
        let name = format!("down.{i}");
        let (status, _) = push(
            &service,
            Method::POST,
            &path,
            Some(ias_user(&id, &name, "First")),
            Some(PUSHER),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = push(
            &service,
            Method::PUT,
            &format!("{path}/{id}"),
            Some(ias_user(&id, &name, "Second")),
            Some(PUSHER),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(uaa_sim.user_count(), 0, "the target is down");
    let log = events(&service, &source).await;
    assert!(
        log.iter()
            .any(|e| e["state"] == "pending" && e["attempts"].as_i64() >= Some(1)),
        "{log:?}"
    );
    proxy.set_down(false);
    until("all users, with their last change, in UAA", || {
        (0..10).all(|i| {
            uaa_sim
                .user_by_name(&format!("down.{i}"))
                .is_some_and(|u| u["name"]["givenName"] == "Second")
        })
    })
    .await;
    // An event's outcome is recorded just after its write lands in UAA.
    until_logged(&service, &source, "every event's outcome recorded", |log| {
        log.iter().all(|e| e.state != "pending")
    })
    .await;
    let log = events(&service, &source).await;
    assert!(log.iter().all(|e| e["state"] == "done"), "{log:?}");
}

/// A link the store cannot record fails the event, which is retried; it is never dropped. With the link
/// store refusing to record a target entity, the user is created in UAA but its event stays pending and says
/// why; once links can be stored again, the retry finds the user by the create intent's lookup and links it,
/// and UAA holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_the_store_cannot_record_fails_the_event_until_it_can() {
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = ias_source(&service, &ias_sim, "2").await;
    service
        .create_system(uaa_target(&uaa_sim, &uaa_sim.base_url, &source))
        .await;
    // A second connection to the service's database: links that name a target entity are refused.
    let db = rusqlite::Connection::open(service.data_dir().join("provisio.db")).expect("database");
    db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    db.execute_batch(
        "CREATE TRIGGER refuse_link_insert BEFORE INSERT ON links WHEN NEW.target_entity IS NOT NULL
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
         CREATE TRIGGER refuse_link_update BEFORE UPDATE ON links WHEN NEW.target_entity IS NOT NULL
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .expect("triggers");

    let path = format!("systems/{source}/entities/user");
    let (status, body) = push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("L1", "linked.later", "First")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    until("the user in UAA", || uaa_sim.user_by_name("linked.later").is_some()).await;
    let started = Instant::now();
    let failed = loop {
        let log = events(&service, &source).await;
        if let Some(e) = log
            .iter()
            .find(|e| e.to_string().contains("its link could not be stored"))
        {
            break e.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no event says why: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(failed["state"], "done", "{failed}");

    db.execute_batch("DROP TRIGGER refuse_link_insert; DROP TRIGGER refuse_link_update;")
        .expect("drop triggers");
    until_logged(&service, &source, "the event done", |log| {
        !log.is_empty() && log.iter().all(|e| e.state == "done")
    })
    .await;
    assert_eq!(uaa_sim.user_count(), 1, "created once, then found and linked");
    let log = events(&service, &source).await;
    assert!(log.iter().all(|e| e["state"] == "done"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_kill() {
    const EVENTS: usize = 1000;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let proxy = crate::provisioning::FlakyProxy::start(&uaa_sim.base_url).await;
    let data = tempfile::tempdir().expect("data dir");
    let port = crate::support::free_port();
    let mut service = crate::provisioning::ServiceProcess::start(data.path(), port).await;
    service
        .call(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": PUSHER.0, "password": PUSHER.1, "permissions": ["realtime-api"]})),
        )
        .await;
    let source = service
        .call(
            Method::POST,
            "/api/v1/systems",
            Some(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": fast(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))})),
        )
        .await["id"]
        .as_str()
        .expect("source id")
        .to_string();
    let target = service
        .call(
            Method::POST,
            "/api/v1/systems",
            Some(uaa_target(&uaa_sim, &proxy.url, &source)),
        )
        .await;
    assert!(target["id"].is_string(), "{target}");
    // The target is down: acknowledged events wait in the outbox when the service is killed.
    proxy.set_down(true);
    let client = reqwest::Client::new();
    let url = format!("{}/ipsproxy/api/v1/systems/{source}/entities/user", service.url);
    let mut acknowledged = 0;
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|i| {
            client
                .post(&url)
                .basic_auth(PUSHER.0, Some(PUSHER.1))
                .header("Content-Type", "application/scim+json")
                .body(ias_user(&format!("K{i}"), &format!("kill.{i}"), "Kill").to_string())
                .send()
        }))
        .await;
        acknowledged += answers
            .into_iter()
            .filter(|a| a.as_ref().is_ok_and(|r| r.status() == StatusCode::CREATED))
            .count();
    }
    assert_eq!(acknowledged, EVENTS);
    service.kill();
    proxy.set_down(false);
    let service = crate::provisioning::ServiceProcess::start(data.path(), port).await;
    let started = Instant::now();
    while uaa_sim.user_count() < EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} arrived",
            uaa_sim.user_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly once: every event done, each user once.
    let started = Instant::now();
    loop {
        let log = service
            .call(
                Method::GET,
                &format!("/api/v1/realtime/events?source={source}&limit=5000"),
                None,
            )
            .await;
        let log = log.as_array().cloned().unwrap_or_default();
        assert_eq!(log.len(), EVENTS);
        if log.iter().all(|e| e["state"] == "done") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not all done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: std::collections::BTreeSet<String> = uaa_sim
        .users()
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), EVENTS);
    assert_eq!(uaa_sim.user_count(), EVENTS);
}

/// Seed 001 at ten times the scale SAP supports for IAS's direct push: 5,000 users pushed in real time from
/// IAS through Provisio to SAP Jam, within Jam's rate limit, none lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_pushed_users_reach_jam_within_its_rate_limit() {
    const USERS: usize = 5000;
    const JAM_PER_MINUTE: u32 = 9000;
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options {
        users: USERS,
        ..Default::default()
    })
    .await
    .expect("ias");
    let jam_sim = jam::spawn(jam::Options {
        rate_limit_per_minute: Some(JAM_PER_MINUTE),
        ..Default::default()
    })
    .await
    .expect("jam");
    let source = ias_source(&service, &ias_sim, "2").await;
    let mut jam_props = fast(json!({"URL": jam_sim.base_url, "Authentication": "BasicAuthentication",
        "OAuth2TokenServiceURL": jam_sim.token_url.clone().expect("token url"),
        "User": jam_sim.options().client_id, "Password": jam_sim.options().client_secret}));
    // Provisio paces itself below the limit the simulator enforces.
    jam_props["provisio.rate.limit"] = json!(format!("{}", JAM_PER_MINUTE / 60 - 10));
    service
        .create_system(
            json!({"name": "Jam", "type": "jam", "role": "target", "sources": [source], "properties": jam_props}),
        )
        .await;
    let target = ias_sim
        .add_realtime_target(ias::RealtimeTarget::identity_provisioning(
            2,
            format!("{}/ipsproxy/api/v1/systems/{source}/entities/user", service.url),
            ias::RealtimeAuth::Basic {
                user: PUSHER.0.into(),
                password: PUSHER.1.into(),
            },
        ))
        .expect("target");
    // IAS's *Provision* of every existing user, then real-time for the rest of their lives.
    assert_eq!(ias_sim.provision_users(target), Ok(USERS));
    let started = Instant::now();
    while jam_sim.user_count() < USERS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{} of {USERS} in Jam",
            jam_sim.user_count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ias_sim.realtime_idle(Duration::from_secs(30)).await);
    assert_eq!(ias_sim.failed_pushes(), 0);
    let names: std::collections::BTreeSet<String> = jam_sim
        .users()
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), USERS, "no duplicate");
    assert_eq!(jam_sim.user_count(), USERS);
    assert_eq!(jam_sim.stats().throttled(), 0, "within Jam's rate limit");
    let log = events(&service, &source).await;
    assert_eq!(log.len(), USERS);
    assert!(log.iter().all(|e| e["state"] == "done"), "every event done");
}

/// Seed 001's order: *Provision* (a Read job) loads what exists, then real-time pushes update the same users
/// through the same links — nothing created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_read_then_real_time_updates_the_same_users() {
    let service = Service::start().await;
    technical_user(&service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options {
        users: 10,
        ..Default::default()
    })
    .await
    .expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = ias_source(&service, &ias_sim, "2").await;
    service
        .create_system(uaa_target(&uaa_sim, &uaa_sim.base_url, &source))
        .await;
    let (_, job) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    let id = job["id"].as_str().expect("job id").to_string();
    until("the initial load", || uaa_sim.user_count() == 10).await;
    let started = Instant::now();
    loop {
        let (_, job) = service.admin(Method::GET, &format!("/api/v1/jobs/{id}"), None).await;
        if job["status"] == "Success" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ias_sim
        .add_realtime_target(ias::RealtimeTarget::identity_provisioning(
            2,
            format!("{}/ipsproxy/api/v1/systems/{source}/entities/user", service.url),
            ias::RealtimeAuth::Basic {
                user: PUSHER.0.into(),
                password: PUSHER.1.into(),
            },
        ))
        .expect("target");
    let user = ias_sim.users()[0].clone();
    let uid = user["id"].as_str().expect("id").to_string();
    let name = user["userName"].as_str().expect("userName").to_string();
    ias_call(
        &ias_sim,
        Method::PATCH,
        &format!("Users/{uid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.familyName", "value": "Realtime"}]})),
    )
    .await;
    until("the pushed change", || {
        uaa_sim
            .user_by_name(&name)
            .is_some_and(|u| u["name"]["familyName"] == "Realtime")
    })
    .await;
    assert_eq!(uaa_sim.user_count(), 10, "updated, not created again");
    // The outcome is recorded just after the target's write.
    until_logged(&service, &source, "the event done", |log| {
        log.first().is_some_and(|e| e.state == "done")
    })
    .await;
    let log = events(&service, &source).await;
    assert_eq!(log[0]["results"][0]["state"], "Updated", "{log:?}");
    // The event's log names the connector version that wrote it, by its component's digest.
    let xsuaa = service.state.plugins.resolve("xsuaa", None).expect("xsuaa");
    assert_eq!(log[0]["results"][0]["pluginDigest"], xsuaa.digest.as_str(), "{log:?}");
    assert_eq!(log[0]["results"][0]["plugin"], xsuaa.label(), "{log:?}");
}

/// A real-time PATCH and a proxy PATCH of the same operations on the same user give the same user: one
/// pushed to a source and provisioned to a SCIM target (scim2-server A), one written through a proxy on
/// another SCIM server (scim2-server B). Both paths apply the operations with the same engine
/// (`provisio_scim`); before, real-time used the SDK's (which, for one, left two primary emails here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_patch_and_a_proxy_patch_give_the_same_user() {
    const BOTH: (&str, &str) = ("both-paths", "both-paths-password-1");
    let service = Service::start().await;
    technical_user(&service, BOTH.0, BOTH.1, json!(["realtime-api", "proxy-api"])).await;
    let (target_server, proxy_server) = (Scim2Server::start().await, Scim2Server::start().await);
    let source = service
        .create_system(json!({"name": "pushing SCIM", "type": "scim", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/unused", "Authentication": "BearerToken", "Password": "x"}}))
        .await;
    service
        .create_system(
            json!({"name": "SCIM A", "type": "scim", "role": "target", "sources": [source],
            "properties": fast(json!({"URL": target_server.base_url, "Authentication": "BearerToken",
                "Password": target_server.token}))}),
        )
        .await;
    let proxy = service
        .create_system(json!({"name": "SCIM B", "type": "scim", "role": "proxy",
            "properties": {"URL": proxy_server.base_url, "Authentication": "BearerToken", "Password": proxy_server.token}}))
        .await;
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "same.patch",
        "name": {"givenName": "Barbara", "familyName": "Jensen"}, "title": "Guide", "active": true,
        "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@y.org", "type": "home"}]});
    let ops = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "name.givenName", "value": "Babs"},
        {"op": "add", "path": "emails", "value": {"value": "c@z.net", "type": "other", "primary": true}},
        {"op": "remove", "path": "emails[type eq \"home\"]"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.com"},
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555 0100", "type": "work"}]},
        {"op": "replace", "value": {"title": "Boss", "nickName": "B"}}]});
    // Real time: the user pushed, then the PATCH pushed; both reach scim2-server A.
    let path = format!("systems/{source}/entities/user");
    let mut pushed = user.clone();
    pushed["id"] = json!("R1");
    let (status, body) = push(&service, Method::POST, &path, Some(pushed), Some(BOTH)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = push(
        &service,
        Method::PATCH,
        &format!("{path}/R1"),
        Some(ops.clone()),
        Some(BOTH),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let started = Instant::now();
    let realtime = loop {
        match scim_user(&target_server, "same.patch").await {
            Some(u) if u["title"] == "Boss" => break u,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not patched in scim2-server A: {:?}",
            events(&service, &source).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The proxy: the same user created, then the same PATCH, in scim2-server B.
    let proxy_call = |method: Method, path: String, body: Value| {
        let request = service
            .http
            .request(method, format!("{}/ipsproxy/api/v1/scim/{proxy}{path}", service.url))
            .basic_auth(BOTH.0, Some(BOTH.1))
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("proxy");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, created) = proxy_call(Method::POST, "/Users".into(), user.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let (status, body) = proxy_call(Method::PATCH, format!("/Users/{id}"), ops).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let proxied = scim_user(&proxy_server, "same.patch").await.expect("in scim2-server B");

    let attributes = [
        "userName",
        "name",
        "title",
        "nickName",
        "active",
        "emails",
        "phoneNumbers",
    ];
    let view = |u: &Value| -> Vec<Value> { attributes.iter().map(|a| u[*a].clone()).collect() };
    assert_eq!(
        view(&realtime),
        view(&proxied),
        "real time: {realtime}\nproxy: {proxied}"
    );
    // One primary email, the one added.
    let primaries: Vec<&Value> = realtime["emails"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["primary"] == true).collect())
        .unwrap_or_default();
    assert_eq!(primaries.len(), 1, "{realtime}");
    assert_eq!(primaries[0]["value"], "c@z.net");
}

/// On PostgreSQL: ready, a push acknowledged once stored and provisioned, a PATCH on top of it; a restart on
/// the same database with the same key finds everything; another key is refused before anything is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_pushes_are_provisioned_and_a_restart_finds_everything() {
    let database = crate::support::fresh_postgres().await;
    let settings = || provisio::server::Settings {
        database_url: Some(database.clone()),
        ..Default::default()
    };
    let service = Service::start_with(settings()).await;
    let ready = service
        .http
        .get(format!("{}/readyz", service.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let (_ias_sim, uaa_sim, source) = pushed_from_ias_to_uaa(&service).await;
    let path = format!("systems/{source}/entities/user");
    let (status, body) = push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("P1", "pg.ann", "Ann")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    until("the user in UAA", || uaa_sim.user_by_name("pg.ann").is_some()).await;
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Anna"}]});
    let (status, body) = push(
        &service,
        Method::PATCH,
        &format!("{path}/P1"),
        Some(patch),
        Some(PUSHER),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    until("the PATCH in UAA", || {
        uaa_sim
            .user_by_name("pg.ann")
            .is_some_and(|u| u["name"]["givenName"] == "Anna")
    })
    .await;
    until_logged(&service, &source, "both events done", |log| {
        log.len() == 2 && log.iter().all(|e| e.state == "done")
    })
    .await;
    let master_key = std::fs::read_to_string(service.data_dir().join("master.key")).expect("master key");
    drop(service);

    // Another process on the same database, with the first one's key: everything is there.
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("master.key"), &master_key).expect("copy the key");
    let again = provisio::server::boot(data.path(), settings())
        .await
        .expect("boot again");
    let systems = again.systems.list().await.expect("systems");
    assert_eq!(systems.len(), 2);
    let target = systems.iter().find(|s| s.spec.name == "UAA").expect("target");
    let secrets = again
        .stores
        .open_secrets(&target.spec.secrets)
        .expect("the same key opens the secrets");
    assert_eq!(secrets["Password"].expose(), uaa_sim.options().client_secret);
    let log = again
        .stores
        .events
        .list(Some(&source), None, None, 10)
        .await
        .expect("events");
    assert_eq!(log.len(), 2);
    assert!(
        again
            .stores
            .principals
            .by_name(PUSHER.0)
            .await
            .expect("by name")
            .is_some()
    );

    // A process with another key is refused, and says why.
    let other = tempfile::tempdir().expect("data dir");
    let refused = provisio::server::boot(other.path(), settings()).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("master key differs"), "{message}");
}

/// PostgreSQL goes away for 10 s under a running replica (the connection is cut, new ones refused): `/readyz`
/// answers 503 and so does every push (none is acknowledged, none is stored); when the database is back the
/// replica serves again by itself, and what is pushed then is provisioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_lost_database_refuses_pushes_and_work_resumes_when_it_is_back() {
    let database = crate::support::fresh_postgres().await;
    let mut url = reqwest::Url::parse(&database).expect("database url");
    let server = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port")
    );
    let link = crate::support::CuttableLink::to(server).await;
    url.set_port(Some(link.port)).expect("port");
    let service = Service::start_with(provisio::server::Settings {
        database_url: Some(url.to_string()),
        ..Default::default()
    })
    .await;
    let (_ias_sim, uaa_sim, source) = pushed_from_ias_to_uaa(&service).await;
    let path = format!("systems/{source}/entities/user");
    let (status, body) = push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("O1", "before.outage", "Ann")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    until("the first user in UAA", || {
        uaa_sim.user_by_name("before.outage").is_some()
    })
    .await;
    let readyz = || async {
        service
            .http
            .get(format!("{}/readyz", service.url))
            .send()
            .await
            .expect("readyz")
            .status()
    };
    assert_eq!(readyz().await, StatusCode::OK);

    link.cut();
    let cut = Instant::now();
    while readyz().await != StatusCode::SERVICE_UNAVAILABLE {
        assert!(cut.elapsed() < Duration::from_secs(10), "/readyz still answers 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut refused = 0;
    while cut.elapsed() < Duration::from_secs(10) {
        let name = format!("during.outage{refused}");
        let (status, body) = push(
            &service,
            Method::POST,
            &path,
            Some(ias_user(&format!("D{refused}"), &name, "Dee")),
            Some(PUSHER),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a push while the database is away: {body}"
        );
        assert_eq!(body["status"], "503", "an RFC 7644 error body: {body}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(refused >= 5);

    link.restore();
    let restored = Instant::now();
    while readyz().await != StatusCode::OK {
        assert!(restored.elapsed() < Duration::from_secs(20), "/readyz does not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = push(
        &service,
        Method::POST,
        &path,
        Some(ias_user("O2", "after.outage", "Bo")),
        Some(PUSHER),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    until("the user pushed after the outage in UAA", || {
        uaa_sim.user_by_name("after.outage").is_some()
    })
    .await;
    eprintln!(
        "{refused} pushes refused in the outage; ready again {:?} after it",
        restored.elapsed()
    );
    // Nothing of the refused pushes was stored or provisioned.
    until_logged(&service, &source, "two events done", |log| {
        log.len() == 2 && log.iter().all(|e| e.state == "done")
    })
    .await;
    assert!((0..refused).all(|i| uaa_sim.user_by_name(&format!("during.outage{i}")).is_none()));
    // Jobs work again too.
    let (status, job) = service
        .admin(
            Method::POST,
            &format!("/api/v1/systems/{source}/jobs"),
            Some(json!({"type": "read"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
}

/// The pusher, an IAS source (SCIM 2.0 pushes) and a UAA target it feeds; the simulators and the source's id.
async fn pushed_from_ias_to_uaa(service: &Service) -> (ias::Simulator, uaa::Simulator, String) {
    technical_user(service, PUSHER.0, PUSHER.1, json!(["realtime-api"])).await;
    let ias_sim = ias::spawn(ias::Options::default()).await.expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = ias_source(service, &ias_sim, "2").await;
    service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": fast(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret}))}),
        )
        .await;
    (ias_sim, uaa_sim, source)
}
