//! The generic SCIM connector, as a wasm component in the real runtime, against scim2-server (a
//! third-party SCIM 2.0 server): Test Connection, paging to the end, and every write operation.

use provisio::connector::{ConnectorError, EntityKind, PageRequest};
use provisio::runtime::CallError;
use serde_json::{Value, json};

use crate::support::{Scim2Server, Service};

async fn scim_system(service: &Service, name: &str, url: &str, token: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "scim", "role": "target",
            "properties": {"URL": url, "Authentication": "BearerToken", "Password": token}
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_tells_what_is_wrong() {
    let service = Service::start().await;
    let server = Scim2Server::start().await;
    let good = scim_system(&service, "good", &server.base_url, &server.token).await;
    assert_eq!(
        service.test_connection(&good).await,
        (
            true,
            "Connection to the selected target system was established successfully.".to_string()
        )
    );
    let wrong_token = scim_system(&service, "wrong token", &server.base_url, "not-the-token").await;
    let (ok, message) = service.test_connection(&wrong_token).await;
    assert!(!ok);
    assert!(message.contains("refused the credentials"), "{message}");
    let port = crate::support::free_port();
    let unreachable = scim_system(&service, "unreachable", &format!("http://127.0.0.1:{port}/v2"), "x").await;
    let (ok, message) = service.test_connection(&unreachable).await;
    assert!(!ok);
    assert!(message.contains("could not be reached"), "{message}");
}

fn user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("user{i:04}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"value": format!("user{i:04}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_against_scim2_server() {
    let service = Service::start().await;
    let server = Scim2Server::start().await;
    let id = scim_system(&service, "scim2-server", &server.base_url, &server.token).await;
    let crate::support::Connector {
        plugin,
        target,
        runtime,
    } = service.connector(&id).await;

    // Create 600 users, so that pages of 250 make three pages.
    let mut ids = Vec::new();
    for i in 0..600 {
        let created = runtime
            .create(&plugin, &target, EntityKind::User, &user(i))
            .await
            .expect("create");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let mut request = PageRequest::first(EntityKind::User, 250);
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let page = runtime.read(&plugin, &target, &request).await.expect("read");
        pages += 1;
        assert!(page.entities.len() <= 250);
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
    assert_eq!(seen.len(), 600);
    assert_eq!(pages, 3);

    // Get, replace, patch, delete.
    let first = runtime
        .get(&plugin, &target, EntityKind::User, &ids[0])
        .await
        .expect("get");
    assert_eq!(first["userName"], "user0000");
    let mut changed = first.clone();
    changed["name"]["familyName"] = json!("Replaced");
    let replaced = runtime
        .replace(&plugin, &target, EntityKind::User, &ids[0], &changed)
        .await
        .expect("replace");
    assert_eq!(replaced["name"]["familyName"], "Replaced");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    runtime
        .patch(&plugin, &target, EntityKind::User, &ids[0], &patch)
        .await
        .expect("patch");
    let patched = runtime
        .get(&plugin, &target, EntityKind::User, &ids[0])
        .await
        .expect("get");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["name"]["familyName"], "Replaced");
    runtime
        .delete(&plugin, &target, EntityKind::User, &ids[0])
        .await
        .expect("delete");
    match runtime.get(&plugin, &target, EntityKind::User, &ids[0]).await {
        Err(CallError::Connector(ConnectorError::NotFound { .. })) => {}
        other => panic!("expected not found, got {other:?}"),
    }
    // Deleting what is gone is success (the entity is gone either way).
    runtime
        .delete(&plugin, &target, EntityKind::User, &ids[0])
        .await
        .expect("second delete");

    // Groups with members.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Readers",
        "members": [{"value": ids[1]}, {"value": ids[2]}]});
    let created = runtime
        .create(&plugin, &target, EntityKind::Group, &group)
        .await
        .expect("create group");
    let gid = created["id"].as_str().expect("group id");
    let read = runtime
        .get(&plugin, &target, EntityKind::Group, gid)
        .await
        .expect("get group");
    assert_eq!(read["members"].as_array().map(Vec::len), Some(2));
}
