//! Plugins for third parties: several versions of a connector, pinning, upgrades that swap atomically under
//! load, rollback, refused removal of a version in use, the plugins folder, contract versions side by side,
//! and the SDK guide's commands run against the real binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Service, hostile_plugin, hostile_version};

pub fn example_plugin() -> Vec<u8> {
    std::fs::read(env!("PROVISIO_EXAMPLE_WASM")).expect("example connector built by build.rs")
}

/// A local upstream for the hostile plugin: `Users` answers at once, `slow-ok` after a while.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/api/Users", get(|| async { "users" })).route(
        "/api/slow-ok",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "slow"
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/api")
}

async fn system(service: &Service, name: &str, url: &str, mode: &str, version: Option<&str>) -> String {
    service
        .create_system(json!({
            "name": name, "type": "hostile", "version": version, "role": "target",
            "properties": { "URL": url, "mode": mode }
        }))
        .await
}

async fn version_of(service: &Service, id: &str) -> String {
    service.connector(id).await.plugin.descriptor.version.clone()
}

async fn plugins(service: &Service) -> Vec<Value> {
    let (status, list) = service.admin(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().expect("array").clone()
}

async fn entry(service: &Service, name: &str, version: &str) -> Option<Value> {
    plugins(service)
        .await
        .into_iter()
        .find(|p| p["name"] == name && p["version"] == version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_pin_upgrade_rollback_and_removal() {
    let service = Service::start().await;
    let url = upstream().await;
    let (status, v1) = service.upload_plugin(hostile_version("1.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(
        (v1["active"].clone(), v1["contract"].clone()),
        (json!(true), json!("0.1.0"))
    );
    let follower = system(&service, "follows latest", &url, "version", None).await;
    let pinned = system(&service, "pinned to 1.0.0", &url, "version", Some("1.0.0")).await;
    // A pin names a loaded version.
    let (status, body) = service
        .admin(
            Method::POST,
            "/api/v1/systems",
            Some(
                json!({"name": "bad pin", "type": "hostile", "version": "9.9.9", "role": "target",
                "properties": {"URL": url}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The same component again changes nothing; the same version with other contents is a conflict.
    let (status, again) = service.upload_plugin(hostile_version("1.0.0")).await;
    assert_eq!(status, StatusCode::OK, "{again}");

    // Upgrade: a higher version is what unpinned systems run from their next call.
    let (status, v2) = service.upload_plugin(hostile_version("2.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["active"], true);
    assert_eq!(v2["replaced"], "hostile@1.0.0");
    assert_eq!(version_of(&service, &follower).await, "2.0.0");
    assert_eq!(version_of(&service, &pinned).await, "1.0.0");
    let c = service.connector(&follower).await;
    assert_eq!(
        c.runtime
            .test_connection(&c.plugin, &c.target)
            .await
            .expect("v2 answers"),
        "2.0.0"
    );

    // A lower version never takes unpinned systems back: it is there to be pinned.
    let (status, low) = service.upload_plugin(hostile_version("0.5.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{low}");
    assert_eq!(low["active"], false);
    assert_eq!(version_of(&service, &follower).await, "2.0.0");

    // Rollback: one call, to the version below the active one.
    let (status, switched) = service
        .admin(Method::POST, "/api/v1/plugins/hostile/rollback", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched, json!({"name": "hostile", "from": "2.0.0", "to": "1.0.0"}));
    assert_eq!(version_of(&service, &follower).await, "1.0.0");
    let listed = entry(&service, "hostile", "1.0.0").await.expect("listed");
    assert_eq!(listed["active"], true);
    let users: Vec<&str> = listed["usedBy"]
        .as_array()
        .expect("usedBy")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(users, ["follows latest", "pinned to 1.0.0"]);
    assert!(listed["stats"]["calls"].as_u64().is_some(), "{listed}");

    // Removing a version in use is refused, naming the systems; an unused one goes.
    let (status, refused) = service
        .admin(Method::DELETE, "/api/v1/plugins/hostile/1.0.0", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["message"].as_str().unwrap_or("");
    assert!(
        message.contains("follows latest") && message.contains("pinned to 1.0.0"),
        "{message}"
    );
    let (status, _) = service
        .admin(Method::DELETE, "/api/v1/plugins/hostile/2.0.0", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(entry(&service, "hostile", "2.0.0").await.is_none());
    let (status, _) = service
        .admin(Method::DELETE, "/api/v1/plugins/hostile/2.0.0", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bundled connectors stay.
    let scim = service.state.plugins.resolve("scim", None).expect("scim");
    let (status, body) = service
        .admin(
            Method::DELETE,
            &format!("/api/v1/plugins/scim/{}", scim.descriptor.version),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Activate any loaded version; a later upgrade moves unpinned systems on again.
    let (status, switched) = service
        .admin(
            Method::POST,
            "/api/v1/plugins/hostile/activate",
            Some(json!({"version": "0.5.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(version_of(&service, &follower).await, "0.5.0");
    let (status, _) = service
        .admin(Method::POST, "/api/v1/plugins/hostile/rollback", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing below 0.5.0");

    // The selection survives a restart: a second service on the same data directory loads the uploaded
    // versions and follows the selected one.
    let again = provisio::server::boot(&service.data_dir(), provisio::server::Settings::default())
        .await
        .expect("boot again");
    let resolved = again.plugins.resolve("hostile", None).expect("hostile loaded");
    assert_eq!(resolved.descriptor.version, "0.5.0");
    assert!(again.plugins.resolve("hostile", Some("1.0.0")).is_some());

    let (status, v3) = service.upload_plugin(hostile_version("3.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v3}");
    assert_eq!(v3["active"], true, "an upgrade clears the selection");
    assert_eq!(version_of(&service, &follower).await, "3.0.0");
    assert_eq!(version_of(&service, &pinned).await, "1.0.0");

    // What plugins declare, which systems run on them and their statistics are for those who manage
    // plugins or systems; a proxy-only technical user gets 403 with the API's JSON error.
    for (name, permissions) in [("idm", json!(["proxy-api"])), ("ops", json!(["manage-systems"]))] {
        let (status, _) = service
            .admin(
                Method::POST,
                "/api/v1/technical-users",
                Some(json!({"name": name, "password": "idm-password-1", "permissions": permissions})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let connectors_as = |name: &'static str| {
        service
            .http
            .get(format!("{}/api/v1/connectors", service.url))
            .basic_auth(name, Some("idm-password-1"))
            .send()
    };
    let as_idm = connectors_as("idm").await.expect("connectors");
    assert_eq!(as_idm.status(), StatusCode::FORBIDDEN);
    let error: Value = as_idm.json().await.expect("json");
    assert_eq!(error["error"], "Forbidden", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("manage-plugins or manage-systems"),
        "{error}"
    );
    let as_ops: Value = connectors_as("ops")
        .await
        .expect("connectors")
        .json()
        .await
        .expect("json");
    let hostile = as_ops
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "hostile"))
        .expect("listed");
    assert!(
        hostile.get("usedBy").is_some() && hostile.get("stats").is_some(),
        "{hostile}"
    );
    let status = service
        .http
        .get(format!("{}/api/v1/plugins", service.url))
        .basic_auth("idm", Some("idm-password-1"))
        .send()
        .await
        .expect("plugins")
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_fails_nothing_and_calls_in_flight_finish_on_their_version() {
    let service = Arc::new(Service::start().await);
    let url = upstream().await;
    let (status, _) = service.upload_plugin(hostile_version("1.0.0")).await;
    assert_eq!(status, StatusCode::CREATED);
    let fast = system(&service, "fast", &url, "version", None).await;
    let slow = system(&service, "slow", &url, "slow-version", None).await;

    // A slow call starts on 1.0.0 ...
    let in_flight = {
        let service = service.clone();
        let slow = slow.clone();
        tokio::spawn(async move { service.test_connection(&slow).await })
    };
    // ... while load runs on the fast system.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (service, fast, stop, failures, calls) = (
            service.clone(),
            fast.clone(),
            stop.clone(),
            failures.clone(),
            calls.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (ok, message) = service.test_connection(&fast).await;
                calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed during the upgrade: {message}");
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = service.upload_plugin(hostile_version("2.0.0")).await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = service
        .admin(Method::POST, "/api/v1/plugins/hostile/rollback", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = service
        .admin(
            Method::POST,
            "/api/v1/plugins/hostile/activate",
            Some(json!({"version": "2.0.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, message) = in_flight.await.expect("in flight");
    assert!(ok, "the call in flight finished: {message}");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the upgrade"
    );
    assert!(calls.load(Ordering::Relaxed) > 20, "load ran: {calls:?}");

    // Both versions served the fast system; the slow call was made and counted on 1.0.0 (it started
    // there), though 2.0.0 was active long before it finished.
    let v1 = entry(&service, "hostile", "1.0.0").await.expect("1.0.0");
    let v2 = entry(&service, "hostile", "2.0.0").await.expect("2.0.0");
    assert!(v1["stats"]["calls"].as_u64().unwrap_or(0) > 1, "{v1}");
    assert!(v2["stats"]["calls"].as_u64().unwrap_or(0) > 1, "{v2}");
    assert_eq!(v1["stats"]["failures"], 0);
    assert_eq!(v2["stats"]["failures"], 0);
    assert!(
        v1["stats"]["timeMs"].as_f64().unwrap_or(0.0) >= 1500.0,
        "the slow call is on 1.0.0: {v1}"
    );
    let c = service.connector(&slow).await;
    assert_eq!(c.plugin.descriptor.version, "2.0.0");
}

/// Removing a version while systems are created and updated to pin it: whichever comes first wins, and no
/// system ever ends up pinning a version that is gone (each round starts all three at once, with the
/// removal shifted by a varying delay so that every interleaving comes up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_racing_systems_that_pin_the_version_never_strands_one() {
    use provisio::plugins::PluginError;
    use provisio::systems::SystemInput;
    use std::sync::Barrier;

    const ROUNDS: u64 = 150;
    let service = Service::start().await;
    let (plugins, systems, store) = (
        service.state.plugins.clone(),
        service.state.systems.clone(),
        service.state.stores.clone(),
    );
    // 2.0.0 is what unpinned systems follow; 1.0.1 is only ever pinned.
    let (status, body) = service.upload_plugin(hostile_version("2.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let pinned_version = hostile_version("1.0.1");
    let input = |name: &str, version: Option<&str>| -> SystemInput {
        serde_json::from_value(json!({
            "name": name, "type": "hostile", "version": version, "role": "target",
            "properties": {"URL": "http://127.0.0.1:9/api"}
        }))
        .expect("system input")
    };
    let bystander = systems.create(input("bystander", None)).await.expect("bystander").id;
    let (mut removed, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        if plugins.resolve("hostile", Some("1.0.1")).is_none() {
            plugins
                .add(&store, pinned_version.clone(), false)
                .await
                .expect("1.0.1 loads again");
        }
        let start = Arc::new(Barrier::new(3));
        let create = {
            let (systems, start, input) = (
                systems.clone(),
                start.clone(),
                input(&format!("racer {round}"), Some("1.0.1")),
            );
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                start.wait();
                handle.block_on(systems.create(input)).ok().map(|s| s.id)
            })
        };
        let update = {
            let (systems, start, input, id) = (
                systems.clone(),
                start.clone(),
                input("bystander", Some("1.0.1")),
                bystander.clone(),
            );
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                start.wait();
                handle.block_on(systems.replace(&id, input)).is_ok()
            })
        };
        let remove = {
            let (plugins, store, start) = (plugins.clone(), store.clone(), start.clone());
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                start.wait();
                let until = Instant::now() + Duration::from_micros((round * 37) % 1500);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                handle.block_on(plugins.remove(&store, "hostile", "1.0.1"))
            })
        };
        let created = create.await.expect("create");
        let updated = update.await.expect("update");
        match remove.await.expect("remove") {
            Ok(()) => removed += 1,
            Err(PluginError::InUse { .. }) => refused += 1,
            Err(e) => panic!("round {round}: unexpected removal error: {e}"),
        }
        let loaded = plugins.resolve("hostile", Some("1.0.1")).is_some();
        let stranded: Vec<String> = store
            .systems
            .list()
            .await
            .expect("systems")
            .into_iter()
            .filter(|s| s.spec.connector_version.as_deref() == Some("1.0.1") && !loaded)
            .map(|s| s.spec.name)
            .collect();
        assert!(
            stranded.is_empty(),
            "round {round}: {stranded:?} pin hostile@1.0.1, which was removed (created: {}, updated: {updated})",
            created.is_some()
        );
        if let Some(id) = created {
            systems.delete(&id).await.expect("delete racer");
        }
        if updated {
            systems
                .replace(&bystander, input("bystander", None))
                .await
                .expect("unpin bystander");
        }
    }
    eprintln!("{ROUNDS} rounds: the removal won {removed}, the pins won {refused}");
    assert!(
        removed > 0 && refused > 0,
        "both outcomes came up: {removed} removed, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_folder_loads_good_components_and_sets_bad_ones_aside() {
    let service = Service::start().await;
    let plugins_dir = service.data_dir().join("plugins");
    let inbox = plugins_dir.join("inbox");
    assert!(inbox.is_dir(), "boot creates plugins/inbox");
    let watcher = tokio::spawn(
        service
            .state
            .plugins
            .clone()
            .watch_inbox(service.state.stores.clone(), Duration::from_millis(100)),
    );
    // Dropped the way the guide says: written under another name, then renamed.
    std::fs::write(inbox.join("example.part"), example_plugin()).expect("write");
    std::fs::rename(inbox.join("example.part"), inbox.join("example.wasm")).expect("rename");
    std::fs::write(inbox.join("broken.wasm"), b"definitely not wasm").expect("write");
    std::fs::write(
        inbox.join("socket.wasm"),
        std::fs::read(env!("PROVISIO_SOCKET_WASM")).expect("socket plugin"),
    )
    .expect("write");
    std::fs::write(inbox.join("README.txt"), b"ignored: not a .wasm").expect("write");

    let started = Instant::now();
    loop {
        let loaded = service.state.plugins.resolve("example", None).is_some();
        let rejected = plugins_dir.join("rejected/socket.wasm.reason.txt").exists()
            && plugins_dir.join("rejected/broken.wasm.reason.txt").exists();
        if loaded && rejected && !inbox.join("example.wasm").exists() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the inbox was not processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    let example = service.state.plugins.resolve("example", None).expect("example");
    assert_eq!(example.contract, "0.4.0");
    assert!(
        plugins_dir.join(format!("{}.wasm", example.digest)).exists(),
        "stored by digest"
    );
    let reason = std::fs::read_to_string(plugins_dir.join("rejected/broken.wasm.reason.txt")).expect("reason");
    assert!(reason.contains("not a valid WebAssembly component"), "{reason}");
    let reason = std::fs::read_to_string(plugins_dir.join("rejected/socket.wasm.reason.txt")).expect("reason");
    assert!(reason.contains("wasi:sockets"), "{reason}");
    assert!(plugins_dir.join("rejected/broken.wasm").exists());
    assert!(inbox.join("README.txt").exists(), "other files are left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_for_contracts_0_1_0_and_0_2_0_work_beside_0_4_0() {
    let service = Service::start().await;
    let url = upstream().await;
    // The hostile plugin is built from wit/since_v0.1.0 without the SDK, another from wit/since_v0.2.0; the
    // example and the bundled connectors from the SDK, on 0.4.0. (0.3.0: the lister, below.)
    let (status, legacy) = service.upload_plugin(hostile_plugin()).await;
    assert_eq!(status, StatusCode::CREATED, "{legacy}");
    assert_eq!(legacy["contract"], "0.1.0");
    let (status, current) = service.upload_plugin(example_plugin()).await;
    assert_eq!(status, StatusCode::CREATED, "{current}");
    assert_eq!(current["contract"], "0.4.0");
    let (status, two) = service.upload_plugin(contract_0_2_plugin()).await;
    assert_eq!(status, StatusCode::CREATED, "{two}");
    assert_eq!(two["contract"], "0.2.0");
    for p in service.state.plugins.list() {
        if !["hostile", "contract-two"].contains(&p.descriptor.name.as_str()) {
            assert_eq!(p.contract, "0.4.0", "{} is built on the SDK's contract", p.label());
        }
    }
    // The 0.2.0 component: test-connection and read through the host's `send`.
    let id = service
        .create_system(json!({"name": "two", "type": "contract-two", "role": "source", "properties": {"URL": url}}))
        .await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(ok, "{message}");
    let page = first_page(&service, &id).await.expect("read");
    assert_eq!(
        page.entities,
        vec![json!({"id": "1", "status": 200, "answer": "users"})]
    );
    // 0.2.0 additions reach the host: xsuaa declares its proxy defaults.
    let xsuaa = service.state.plugins.resolve("xsuaa", None).expect("xsuaa");
    assert!(xsuaa.extensions.default_proxy_read_transformation.is_some());
    assert!(xsuaa.extensions.default_proxy_write_transformation.is_some());
    assert_ne!(
        xsuaa.default_transformation(true, "write"),
        xsuaa.default_transformation(false, "write")
    );
    // The 0.1.0 component does what it did: describe, test-connection through the host's HTTP import, read.
    let id = system(&service, "legacy", &url, "ok", None).await;
    let (ok, message) = service.test_connection(&id).await;
    assert!(ok, "{message}");
    let page = first_page(&service, &id).await.expect("read");
    assert_eq!(page.entities, vec![json!({"id": "1"})]);
    let legacy = service.connector(&id).await;
    assert!(legacy.plugin.extensions == provisio::connector::DescriptorExtensions::default());
}

/// The first page of users (up to 10) a system's connector reads.
async fn first_page(service: &Service, id: &str) -> Result<provisio::connector::Page, provisio::runtime::CallError> {
    use provisio::connector::{EntityKind, PageRequest};
    let c = service.connector(id).await;
    c.runtime
        .read(&c.plugin, &c.target, &PageRequest::first(EntityKind::User, 10))
        .await
}

/// The 0.2.0 test component (raw wit-bindgen, no SDK).
fn contract_0_2_plugin() -> Vec<u8> {
    std::fs::read(env!("PROVISIO_CONTRACT_0_2_WASM")).expect("0.2.0 plugin built by build.rs")
}

/// A 0.4.0 component's `system` resource is made once per instance, with the system's config, and serves
/// every call of the instance; other properties make another instance (and resource); a constructor that
/// traps or never returns fails the call like any operation would, and the next call starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_4_0_system_is_made_once_per_instance_and_serves_its_calls() {
    let mut settings = provisio::server::Settings::default();
    settings.call_limits.timeout = Duration::from_secs(2);
    let service = Service::start_with(settings).await;
    let url = upstream().await;
    let (status, four) = service
        .upload_plugin(std::fs::read(env!("PROVISIO_CONTRACT_0_4_WASM")).expect("0.4.0 plugin built by build.rs"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{four}");
    assert_eq!(four["contract"], "0.4.0");
    let body = |flavour: &str, constructor: &str| {
        json!({"name": "four", "type": "contract-four", "role": "target",
            "properties": {"URL": url, "flavour": flavour, "constructor": constructor}})
    };
    let id = service.create_system(body("plain", "keep")).await;
    // What the plugin answers a test-connection (the API answers SAP's words instead) or a `get` with.
    let call = |get: bool| {
        let (service, id) = (&service, id.clone());
        async move {
            let c = service.connector(&id).await;
            let answer = if get {
                let entity = c
                    .runtime
                    .get(&c.plugin, &c.target, provisio::connector::EntityKind::User, "1")
                    .await;
                entity.map(|e| e.to_string())
            } else {
                c.runtime.test_connection(&c.plugin, &c.target).await
            };
            answer.map(|text| serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{text}: {e}")))
        }
    };
    for calls in 1..=4 {
        let r = call(calls == 4).await.expect("a call");
        assert_eq!(
            (r["made"].as_u64(), r["calls"].as_u64()),
            (Some(1), Some(calls)),
            "one resource serves the kept instance's calls (test-connection, then get): {r}"
        );
        assert_eq!(
            (r["system"].as_str(), r["flavour"].as_str(), r["status"].as_u64()),
            (Some(id.as_str()), Some("plain"), Some(200))
        );
    }
    let put = |flavour: &'static str, constructor: &'static str| {
        let (service, id, body) = (&service, id.clone(), body(flavour, constructor));
        async move {
            let (status, changed) = service
                .admin(Method::PUT, &format!("/api/v1/systems/{id}"), Some(body))
                .await;
            assert_eq!(status, StatusCode::OK, "{changed}");
        }
    };

    // Other properties: another instance, whose resource has the new config.
    put("spicy", "keep").await;
    let r = call(false).await.expect("a call");
    assert_eq!(
        (r["made"].as_u64(), r["calls"].as_u64(), r["flavour"].as_str()),
        (Some(1), Some(1), Some("spicy")),
        "{r}"
    );

    // A constructor that traps or loops: the call fails (a trap, the time limit), the service goes on.
    for (constructor, words) in [("trap", "trapped"), ("loop", "time limit")] {
        put("plain", constructor).await;
        let error = call(false).await.expect_err("the constructor fails the call");
        assert!(error.to_string().contains(words), "{constructor}: {error}");
    }
    // Back to the first properties: their instance was kept idle, and its resource serves its fifth call.
    put("plain", "keep").await;
    let r = call(false).await.expect("a call");
    assert_eq!((r["made"].as_u64(), r["calls"].as_u64()), (Some(1), Some(5)), "{r}");
    put("mild", "keep").await;
    let r = call(false).await.expect("a call");
    assert_eq!(
        (r["made"].as_u64(), r["calls"].as_u64()),
        (Some(1), Some(1)),
        "a fresh instance: {r}"
    );
}

/// A list answer's entities the host kept (`send-list`, contract 0.3.0) reach the page the plugin lists them
/// on, as the answer spelled them and with the credentials they echo masked; the rest of the answer reaches the
/// plugin without them; a page that lists more than the host kept is the plugin's invalid result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_lists_the_entities_the_host_kept_from_a_list_answer() {
    use provisio::runtime::CallError;
    let service = Service::start().await;
    let (status, lister) = service
        .upload_plugin(std::fs::read(env!("PROVISIO_LISTER_WASM")).expect("lister plugin built by build.rs"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lister}");
    assert_eq!(lister["contract"], "0.3.0");
    // A SCIM list whose second user echoes the Authorization header, and an empty list.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route(
            "/api/Users",
            get(|headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let body = format!(
                    r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":3,
                    "resources" : [ {{"id":"1","userName":"ann","name":{{"givenName":"A\u00e9]"}}}},
                    {{"id":"2","userName":"echo","note":"{auth}"}}, {{"id":"3","emails":[]}} ],"startIndex":1}}"#
                );
                ([("content-type", "application/scim+json")], body)
            }),
        )
        .route("/api/Empty", get(|| async { r#"{"totalResults":0,"Resources":[]}"# }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/api");
    let read = |mode: &'static str| {
        let (service, url) = (&service, url.clone());
        async move {
            let id = service
                .create_system(
                    json!({"name": format!("lister {mode}"), "type": "lister", "role": "source",
                    "properties": {"URL": url, "read-mode": mode, "User": "me", "Password": "kept-secret-42"}}),
                )
                .await;
            first_page(service, &id).await
        }
    };

    let page = read("listed").await.expect("listed");
    let ids: Vec<&str> = page.entities.iter().map(|e| e["id"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "own"],
        "the kept entities first, then the plugin's own"
    );
    assert_eq!(page.entities[0]["name"]["givenName"], "Aé]");
    let echoed = page.entities[1]["note"].as_str().expect("the echo");
    assert!(!echoed.is_empty(), "the upstream saw credentials");
    let basic = "bWU6a2VwdC1zZWNyZXQtNDI="; // base64 of me:kept-secret-42
    assert!(
        !echoed.contains(basic) && !page.entities[1].to_string().contains(basic),
        "{echoed}"
    );

    let page = read("rest").await.expect("rest");
    let rest = &page.entities[0];
    assert_eq!(rest["resources"], json!([]), "{rest}");
    assert_eq!(rest["totalResults"], 3);
    assert_eq!(rest["startIndex"], 1);
    assert_eq!(rest["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse");

    let page = read("whole").await.expect("whole");
    assert_eq!(page.entities[0]["kept"], false, "no member `members`: nothing kept");
    assert!(
        page.entities[0]["bytes"].as_u64().unwrap_or(0) > 200,
        "{}",
        page.entities[0]
    );

    for (mode, kept) in [("overdraw", 3), ("unsent", 0), ("replaced", 0)] {
        match read(mode).await {
            Err(CallError::InvalidResult { message, .. }) => {
                assert!(message.contains(&format!("send-list kept {kept}")), "{mode}: {message}")
            }
            other => panic!("{mode}: {other:?}"),
        }
    }
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length); at least one must occur.
fn patched(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(found > 0, "{:?} does not occur", String::from_utf8_lossy(from));
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_or_invalid_components_are_refused_with_a_useful_message() {
    let service = Service::start().await;
    // The hostile plugin relabelled as built for a contract this host does not serve.
    let future = patched(hostile_plugin(), b"@0.1.0", b"@0.9.0");
    let (status, body) = service.upload_plugin(future).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["message"],
        "the component was built for connector contract 0.9.0; this host supports 0.1.0, 0.2.0, 0.3.0, 0.4.0"
    );
    // A default transformation that does not parse is refused at upload, not at the first job.
    let broken = patched(example_plugin(), b"\"scimEntityEndpoint\"", b"\"scimEntityEndpoin\t\"");
    let (status, body) = service.upload_plugin(broken).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("the connector's default read transformation is invalid"),
        "{message}"
    );
    // A version that is not a semantic version.
    let (status, body) = service.upload_plugin(hostile_version("1.0.x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a semantic version"),
        "{body}"
    );
    // The same version with other contents.
    let (status, _) = service.upload_plugin(example_plugin()).await;
    assert_eq!(status, StatusCode::CREATED);
    let other = patched(
        example_plugin(),
        b"BearerToken or BasicAuthentication",
        b"BasicAuthentication or BearerToken",
    );
    let (status, body) = service.upload_plugin(other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("give the new build a new version"),
        "{body}"
    );
    assert!(service.healthy().await);
}

// ---------------------------------------------------------------------------------------------------
// The SDK guide (sdk/README.md), command by command, against the real `provisio` binary.

/// A simple REST user API, the kind the template connector speaks: a bearer token, offset paging.
#[derive(Default)]
pub(crate) struct Users {
    users: std::sync::Mutex<Vec<Value>>,
    next: AtomicU64,
}

pub(crate) async fn rest_api(token: &'static str, seed: usize) -> (String, Arc<Users>) {
    let state = Arc::new(Users::default());
    for i in 0..seed {
        state.users.lock().expect("lock").push(json!({
            "id": format!("u{i}"), "userName": format!("user{i}"), "email": format!("user{i}@example.com"),
            "firstName": "Test", "lastName": format!("User {i}"), "active": true
        }));
    }
    let authorized = move |headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&*format!("Bearer {token}"))
    };
    #[derive(serde::Deserialize)]
    struct Paging {
        offset: Option<usize>,
        limit: Option<usize>,
        #[serde(rename = "userName")]
        user_name: Option<String>,
    }
    let app = Router::new()
        .route(
            "/v1/users",
            get(
                move |State(s): State<Arc<Users>>, headers: HeaderMap, Query(p): Query<Paging>| async move {
                    if !authorized(&headers) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "bad token"})));
                    }
                    let users = s.users.lock().expect("lock");
                    let offset = p.offset.unwrap_or(0);
                    let page: Vec<Value> = users
                        .iter()
                        .filter(|u| p.user_name.as_deref().is_none_or(|n| u["userName"] == n))
                        .skip(offset)
                        .take(p.limit.unwrap_or(50))
                        .cloned()
                        .collect();
                    (StatusCode::OK, axum::Json(json!({"users": page, "total": users.len()})))
                },
            )
            .post(
                move |State(s): State<Arc<Users>>, headers: HeaderMap, axum::Json(mut user): axum::Json<Value>| async move {
                    if !authorized(&headers) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "bad token"})));
                    }
                    let id = format!("n{}", s.next.fetch_add(1, Ordering::Relaxed));
                    user["id"] = json!(id);
                    s.users.lock().expect("lock").push(user.clone());
                    (StatusCode::CREATED, axum::Json(user))
                },
            ),
        )
        .route(
            "/v1/users/{id}",
            get(|State(s): State<Arc<Users>>, Path(id): Path<String>| async move {
                let users = s.users.lock().expect("lock");
                match users.iter().find(|u| u["id"] == id.as_str()) {
                    Some(u) => (StatusCode::OK, axum::Json(u.clone())),
                    None => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "no such user"}))),
                }
            })
            .put(
                |State(s): State<Arc<Users>>, Path(id): Path<String>, axum::Json(mut user): axum::Json<Value>| async move {
                    let mut users = s.users.lock().expect("lock");
                    user["id"] = json!(id);
                    match users.iter_mut().find(|u| u["id"] == id.as_str()) {
                        Some(u) => {
                            *u = user.clone();
                            (StatusCode::OK, axum::Json(user))
                        }
                        None => (StatusCode::NOT_FOUND, axum::Json(json!({"message": "no such user"}))),
                    }
                },
            )
            .delete(|State(s): State<Arc<Users>>, Path(id): Path<String>| async move {
                s.users.lock().expect("lock").retain(|u| u["id"] != id.as_str());
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), state)
}

/// The `provisio` binary of this workspace, rebuilt if the sources changed (a no-op when it is fresh).
pub(crate) fn provisio_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PROVISIO_BIN") {
        return path.into();
    }
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "provisio", "--bin", "provisio"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the provisio binary failed");
    target.join("debug").join("provisio")
}

/// Runs `provisio ARGS` as the guide shows it; answers the exit status and stdout + stderr.
pub(crate) fn cli(binary: &std::path::Path, url: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(binary)
        .args(args)
        .env("PROVISIO_URL", url)
        .env(
            "PROVISIO_USER",
            format!("{}:{}", crate::support::ADMIN.0, crate::support::ADMIN.1),
        )
        .output()
        .expect("run provisio");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_guide_works_command_by_command() {
    // 1. Build: `cargo build --release --target wasm32-wasip2 -p provisio-connector-example` (tests/build.rs
    //    runs exactly that, into target/wasm).
    let wasm = std::path::PathBuf::from(env!("PROVISIO_EXAMPLE_WASM"));
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../connectors/example/src/lib.rs"))
        .expect("template source");
    assert!(source.lines().count() < 150, "the template stays well under 150 lines");
    let binary = provisio_binary();

    // 2. Check it offline.
    let (ok, out) = cli(
        &binary,
        "http://127.0.0.1:1",
        &["plugin", "check", wasm.to_str().expect("path")],
    );
    assert!(ok, "{out}");
    for expected in [
        "name:         example",
        "contract:     provisio:connector@0.4.0",
        "capabilities: test-connection, read, get, create, replace, delete",
        "read valid, write valid",
        "URL",
        "OK: example@1.0.0 is a valid Provisio connector",
    ] {
        assert!(out.contains(expected), "plugin check should print {expected:?}:\n{out}");
    }
    let junk = std::env::temp_dir().join(format!("not-a-plugin-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"junk").expect("write");
    let (ok, out) = cli(
        &binary,
        "http://127.0.0.1:1",
        &["plugin", "check", junk.to_str().expect("path")],
    );
    assert!(!ok && out.contains("not a valid WebAssembly component"), "{out}");
    let _ = std::fs::remove_file(&junk);

    // 3. Run Provisio and upload it.
    let data = tempfile::tempdir().expect("temp dir");
    let port = crate::support::free_port();
    let service = crate::provisioning::ServiceProcess::start(data.path(), port).await;
    let (ok, out) = cli(&binary, &service.url, &["plugin", "add", wasm.to_str().expect("path")]);
    assert!(ok && out.contains("loaded example@1.0.0"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["plugin", "list"]);
    assert!(ok && out.contains("example") && out.contains("1.0.0"), "{out}");

    // 4. Use it: a source and a target system of the new type, Test Connection, and a Read job.
    let (source_url, _) = rest_api("source-token", 25).await;
    let (target_url, target) = rest_api("target-token", 0).await;
    let (ok, out) = cli(
        &binary,
        &service.url,
        &[
            "system",
            "add",
            "--name",
            "HR users",
            "--type",
            "example",
            "--role",
            "source",
            "-p",
            &format!("URL={source_url}"),
            "-p",
            "Authentication=BearerToken",
            "-p",
            "Password=source-token",
        ],
    );
    assert!(ok, "{out}");
    let created: Value = serde_json::from_str(&out).expect("system JSON");
    let source_id = created["id"].as_str().expect("id").to_string();
    let (ok, out) = cli(
        &binary,
        &service.url,
        &[
            "system",
            "add",
            "--name",
            "App users",
            "--type",
            "example",
            "--role",
            "target",
            "-p",
            &format!("URL={target_url}"),
            "-p",
            "Authentication=BearerToken",
            "-p",
            "Password=target-token",
            "--source",
            &source_id,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&binary, &service.url, &["system", "test", &source_id]);
    assert!(ok && out.contains("established successfully"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["job", "run", "HR users", "--follow"]);
    assert!(ok, "{out}");
    let copied = target.users.lock().expect("lock").clone();
    assert_eq!(copied.len(), 25, "{out}");
    let user = copied.iter().find(|u| u["userName"] == "user7").expect("user7 copied");
    assert_eq!(user["email"], "user7@example.com");
    assert_eq!(user["lastName"], "User 7");

    // 5. Ship a new version, roll it back, remove what is unused; a version in use stays.
    let dir = tempfile::tempdir().expect("temp dir");
    let v101 = dir.path().join("example-1.0.1.wasm");
    std::fs::write(&v101, patched(example_plugin(), b"1.0.0", b"1.0.1")).expect("write");
    let (ok, out) = cli(&binary, &service.url, &["plugin", "add", v101.to_str().expect("path")]);
    assert!(ok && out.contains("now run it instead of example@1.0.0"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["plugin", "rollback", "example"]);
    assert!(ok && out.contains("run 1.0.0 instead of 1.0.1"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["plugin", "remove", "example", "1.0.0"]);
    assert!(
        !ok && out.contains("in use by") && out.contains("HR users") && out.contains("App users"),
        "{out}"
    );
    let (ok, out) = cli(&binary, &service.url, &["plugin", "activate", "example", "1.0.1"]);
    assert!(ok && out.contains("run 1.0.1 instead of 1.0.0"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["plugin", "remove", "example", "1.0.0"]);
    assert!(ok && out.contains("removed example@1.0.0"), "{out}");
    let (ok, out) = cli(&binary, &service.url, &["system", "test", &source_id]);
    assert!(ok, "the systems run 1.0.1 now: {out}");

    // 6. Or drop the component into the plugins folder of the running service.
    let inbox = data.path().join("plugins/inbox");
    std::fs::write(inbox.join("hostile.part"), hostile_plugin()).expect("write");
    std::fs::rename(inbox.join("hostile.part"), inbox.join("hostile.wasm")).expect("rename");
    let started = Instant::now();
    loop {
        let (ok, out) = cli(&binary, &service.url, &["plugin", "list"]);
        if ok && out.contains("hostile") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not load the inbox: {out}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!inbox.join("hostile.wasm").exists());
}
