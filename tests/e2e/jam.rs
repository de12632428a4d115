//! The SAP Jam connector, as a wasm component in the real runtime, against the Jam simulator: OAuth client
//! credentials fetched by the host, Test Connection, paging to the end, every user and group operation,
//! deactivation versus deletion, and Jam's rate limit.

use provisio::connector::{ConnectorError, EntityKind, PageRequest};
use provisio::runtime::CallError;
use provisio::store::systems::Role;
use provisio_tests::sim::jam;
use serde_json::{Value, json};

use crate::support::{Connector, Service};

const OK: &str = "Connection to the selected target system was established successfully.";

async fn jam_system(service: &Service, name: &str, sim: &jam::Simulator, secret: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "jam", "role": "target",
            "properties": {
                "URL": sim.base_url,
                "Authentication": "BasicAuthentication",
                "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
                "User": sim.options().client_id,
                "Password": secret,
            }
        }))
        .await
}

async fn connector(service: &Service, sim: &jam::Simulator) -> Connector {
    let id = jam_system(service, "jam", sim, &sim.options().client_secret.clone()).await;
    service.connector(&id).await
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        "active": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_checks_the_oauth_client() {
    let service = Service::start().await;
    let sim = jam::spawn(jam::Options::default()).await.expect("jam simulator");
    let good = jam_system(&service, "good", &sim, &sim.options().client_secret.clone()).await;
    assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));

    let wrong = jam_system(&service, "wrong secret", &sim, "not-the-secret").await;
    let (ok, message) = service.test_connection(&wrong).await;
    assert!(!ok);
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("token endpoint"), "{message}");

    // Revoked tokens are fetched anew by the host; a reachable host without Jam is a configuration error.
    sim.revoke_tokens();
    assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));
    let elsewhere = service
        .create_system(json!({"name": "not jam", "type": "jam", "role": "target", "properties": {
            "URL": format!("{}/nothing-here", sim.base_url), "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
            "User": sim.options().client_id, "Password": sim.options().client_secret}}))
        .await;
    let (ok, message) = service.test_connection(&elsewhere).await;
    assert!(!ok && message.contains("URL"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_rate_limit_and_sap_default_transformations() {
    let service = Service::start().await;
    let sim = jam::spawn(jam::Options::default()).await.expect("jam simulator");
    let c = connector(&service, &sim).await;
    // 3 requests a second (180 a minute) keeps the host under Jam's 200 a minute.
    assert_eq!(c.target.endpoint.rate_per_second, Some(3.0));
    let d = &c.plugin.descriptor;
    let write: Value = serde_json::from_str(d.default_write_transformation.as_deref().expect("write")).expect("json");
    let read: Value = serde_json::from_str(d.default_read_transformation.as_deref().expect("read")).expect("json");
    provisio::systems::validate_transformation(Role::Target, &write).expect("write transformation");
    provisio::systems::validate_transformation(Role::Source, &read).expect("read transformation");
    assert_eq!(write["group"]["ignore"], true);
    assert!(d.properties.iter().any(|p| p.name == "Password" && p.secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_operation_and_paging() {
    let service = Service::start().await;
    let sim = jam::spawn(jam::Options {
        users: 230,
        ..jam::Options::default()
    })
    .await
    .expect("jam simulator");
    let Connector {
        plugin,
        target,
        runtime,
    } = connector(&service, &sim).await;

    // Pages of (at most) 100, Jam's maximum, to the end.
    let mut request = PageRequest::first(EntityKind::User, 250);
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let page = runtime.read(&plugin, &target, &request).await.expect("read");
        pages += 1;
        assert!(page.entities.len() <= 100);
        assert_eq!(page.total, Some(230));
        for e in &page.entities {
            assert!(
                seen.insert(e["id"].as_str().expect("id").to_string()),
                "an entity came twice"
            );
        }
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!((seen.len(), pages), (230, 3));

    // Filtered read.
    let mut filtered = PageRequest::first(EntityKind::User, 10);
    let name = sim.users()[7]["userName"].as_str().expect("userName").to_string();
    filtered.filter = Some(format!("userName eq \"{name}\""));
    let page = runtime.read(&plugin, &target, &filtered).await.expect("filtered read");
    assert_eq!(page.entities.len(), 1);
    assert_eq!(page.entities[0]["userName"], name.as_str());

    // Create, read back.
    let created = runtime
        .create(&plugin, &target, EntityKind::User, &user("new.user"))
        .await
        .expect("create");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(sim.user_count(), 231);
    let read = runtime.get(&plugin, &target, EntityKind::User, &id).await.expect("get");
    assert_eq!(read["userName"], "new.user");

    // Deactivation (what SAP's default write transformation makes of a deletion) is a replace.
    let mut off = user("new.user");
    off["active"] = json!(false);
    off["name"]["familyName"] = json!("Replaced");
    let replaced = runtime
        .replace(&plugin, &target, EntityKind::User, &id, &off)
        .await
        .expect("replace");
    assert_eq!(replaced["active"], false);
    let stored = sim.user(&id).expect("a deactivated user stays in Jam");
    assert_eq!(
        (stored["active"].clone(), stored["name"]["familyName"].clone()),
        (json!(false), json!("Replaced"))
    );

    // Patch.
    let patch = json!({"Operations": [{"op": "replace", "path": "active", "value": true},
                                      {"op": "replace", "path": "displayName", "value": "Patched"}]});
    let patched = runtime
        .patch(&plugin, &target, EntityKind::User, &id, &patch)
        .await
        .expect("patch");
    assert_eq!(patched.expect("Jam answers with the user")["displayName"], "Patched");
    assert_eq!(sim.user(&id).expect("user")["active"], true);

    // A second create of the same userName overwrites the existing user (SAP's conflict resolution).
    let again = runtime
        .create(&plugin, &target, EntityKind::User, &user("NEW.user"))
        .await
        .expect("create again");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(sim.user_count(), 231);

    // Delete really deletes; deleting again is success; get then says not found.
    runtime
        .delete(&plugin, &target, EntityKind::User, &id)
        .await
        .expect("delete");
    assert!(sim.user(&id).is_none());
    runtime
        .delete(&plugin, &target, EntityKind::User, &id)
        .await
        .expect("second delete");
    match runtime.get(&plugin, &target, EntityKind::User, &id).await {
        Err(CallError::Connector(ConnectorError::NotFound { .. })) => {}
        other => panic!("expected not found, got {other:?}"),
    }
    // Jam refuses a user without e-mail for good.
    match runtime
        .create(&plugin, &target, EntityKind::User, &json!({"userName": "no.mail"}))
        .await
    {
        Err(CallError::Connector(ConnectorError::Rejected { status: 400, message })) => {
            assert!(message.contains("emails"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_operation() {
    let service = Service::start().await;
    let sim = jam::spawn(jam::Options {
        users: 3,
        groups: 2,
        ..jam::Options::default()
    })
    .await
    .expect("jam simulator");
    let Connector {
        plugin,
        target,
        runtime,
    } = connector(&service, &sim).await;
    let ids: Vec<String> = sim
        .users()
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect();

    let page = runtime
        .read(&plugin, &target, &PageRequest::first(EntityKind::Group, 100))
        .await
        .expect("read groups");
    assert_eq!((page.entities.len(), page.next_cursor), (2, None));

    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Readers",
        "members": [{"value": ids[0]}]});
    let created = runtime
        .create(&plugin, &target, EntityKind::Group, &group)
        .await
        .expect("create group");
    let gid = created["id"].as_str().expect("group id").to_string();
    let read = runtime
        .get(&plugin, &target, EntityKind::Group, &gid)
        .await
        .expect("get group");
    assert_eq!(read["members"].as_array().map(Vec::len), Some(1));

    let replaced = runtime
        .replace(
            &plugin,
            &target,
            EntityKind::Group,
            &gid,
            &json!({"displayName": "Readers", "members": [{"value": ids[0]}, {"value": ids[1]}]}),
        )
        .await
        .expect("replace group");
    assert_eq!(replaced["members"].as_array().map(Vec::len), Some(2));

    let patch = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": ids[2]}]},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]});
    runtime
        .patch(&plugin, &target, EntityKind::Group, &gid, &patch)
        .await
        .expect("patch group");
    let read = runtime
        .get(&plugin, &target, EntityKind::Group, &gid)
        .await
        .expect("get group");
    let members: Vec<&str> = read["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(members, vec![ids[1].as_str(), ids[2].as_str()]);

    runtime
        .delete(&plugin, &target, EntityKind::Group, &gid)
        .await
        .expect("delete group");
    assert_eq!(sim.group_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_throttles_with_retry_after() {
    let service = Service::start().await;
    let sim = jam::spawn(jam::Options {
        users: 5,
        rate_limit_per_minute: Some(2),
        ..jam::Options::default()
    })
    .await
    .expect("jam simulator");
    let Connector {
        plugin,
        target,
        runtime,
    } = connector(&service, &sim).await;
    let request = PageRequest::first(EntityKind::User, 10);
    for _ in 0..2 {
        runtime
            .read(&plugin, &target, &request)
            .await
            .expect("within the limit");
    }
    match runtime.read(&plugin, &target, &request).await {
        Err(CallError::Connector(ConnectorError::Throttled {
            retry_after_ms,
            message,
        })) => {
            let ms = retry_after_ms.expect("Jam says when to retry");
            assert!((1_000..=60_000).contains(&ms), "{ms}");
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected throttled, got {other:?}"),
    }
    assert_eq!(sim.stats().throttled(), 1);
}
