//! The XSUAA connector, as a wasm component in the real runtime, against the UAA simulator: Test Connection,
//! paging, every write operation on users and groups, UAA's stale versions, origins, both group member modes,
//! wrong credentials and the BTP rate limit.

use provisio::connector::{ConnectorError, EntityKind, PageRequest};
use provisio::runtime::CallError;
use provisio::store::systems::Role;
use provisio::systems::validate_transformation;
use provisio_tests::sim::uaa;
use serde_json::{Value, json};

use crate::support::{Connector, Service};

const OK: &str = "Connection to the selected target system was established successfully.";

/// An xsuaa system on the simulator; `extra` adds properties. The host's rate limit is raised (the BTP
/// default of 3/s would make the tests slow) unless `extra` sets it.
async fn system(service: &Service, sim: &uaa::Simulator, name: &str, extra: Value) -> String {
    let mut properties = json!({
        "URL": sim.base_url,
        "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
        "User": sim.options().client_id,
        "Password": sim.options().client_secret,
        "provisio.rate.limit": "1000",
    });
    if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    service
        .create_system(json!({"name": name, "type": "xsuaa", "role": "target", "properties": properties}))
        .await
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:scim:schemas:core:1.0"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        "active": true,
    })
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

async fn read_all(c: &Connector, kind: EntityKind, page_size: u32) -> (Vec<Value>, usize) {
    let mut request = PageRequest::first(kind, page_size);
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = c.runtime.read(&c.plugin, &c.target, &request).await.expect("read");
        pages += 1;
        assert!(page.entities.len() <= page_size as usize);
        all.extend(page.entities);
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    (all, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_and_wrong_credentials() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let good = system(&service, &sim, "good", json!({})).await;
    assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));
    let wrong = system(&service, &sim, "wrong secret", json!({"Password": "not-the-secret"})).await;
    let (ok, message) = service.test_connection(&wrong).await;
    assert!(!ok);
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("Bad credentials"), "{message}");
    // Reads with the wrong secret are unauthorized too.
    let c = service.connector(&wrong).await;
    match c
        .runtime
        .read(&c.plugin, &c.target, &PageRequest::first(EntityKind::User, 10))
        .await
    {
        Err(CallError::Connector(ConnectorError::Unauthorized { .. })) => {}
        other => panic!("expected unauthorized, got {other:?}"),
    }
    // The origin filter without an origin is a configuration error.
    let filter = system(&service, &sim, "filter", json!({"xsuaa.origin.filter.enabled": "true"})).await;
    let (ok, message) = service.test_connection(&filter).await;
    assert!(!ok);
    assert!(message.contains("xsuaa.origin"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_transformations_load() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let id = system(&service, &sim, "t", json!({})).await;
    let c = service.connector(&id).await;
    let d = &c.plugin.descriptor;
    for (role, text) in [
        (Role::Source, &d.default_read_transformation),
        (Role::Target, &d.default_write_transformation),
    ] {
        let doc: Value = serde_json::from_str(text.as_deref().expect("a default")).expect("JSON");
        validate_transformation(role, &doc).expect("SAP's transformation loads");
    }
    let rate = d
        .properties
        .iter()
        .find(|p| p.name == "provisio.rate.limit")
        .expect("declared");
    assert_eq!(rate.default_value.as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_every_operation_and_paging() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options {
        users: 23,
        groups: 2,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let id = system(&service, &sim, "users", json!({})).await;
    let c = service.connector(&id).await;
    let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);

    // Paging to the end: 23 seeded users in pages of 10.
    let (all, pages) = read_all(&c, EntityKind::User, 10).await;
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 23);
    let ids: std::collections::BTreeSet<&str> = all.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids.len(), 23, "no user twice");

    // Create (SAP's write transformation leaves a dummy id; it is dropped), read back.
    let mut entity = user("jdoe");
    entity["id"] = json!("xsuaa-dummy-value");
    let created = rt.create(p, t, EntityKind::User, &entity).await.expect("create");
    let uid = id_of(&created);
    assert_ne!(uid, "xsuaa-dummy-value");
    let got = rt.get(p, t, EntityKind::User, &uid).await.expect("get");
    assert_eq!(got["userName"], "jdoe");
    assert_eq!(got["origin"], "uaa", "the server's default origin");

    // Replace.
    let mut changed = user("jdoe");
    changed["name"]["familyName"] = json!("Replaced");
    let replaced = rt
        .replace(p, t, EntityKind::User, &uid, &changed)
        .await
        .expect("replace");
    assert_eq!(replaced["name"]["familyName"], "Replaced");
    assert_eq!(sim.user(&uid).expect("stored")["name"]["familyName"], "Replaced");

    // Patch (RFC 7644 PatchOp → read, apply, PUT with If-Match).
    let ops = patch(json!([{"op": "replace", "path": "active", "value": false},
                           {"op": "replace", "path": "name.givenName", "value": "Patched"}]));
    rt.patch(p, t, EntityKind::User, &uid, &ops).await.expect("patch");
    let stored = sim.user(&uid).expect("stored");
    assert_eq!(stored["active"], false);
    assert_eq!(stored["name"]["givenName"], "Patched");
    assert_eq!(stored["name"]["familyName"], "Replaced");

    // A second create of the same userName resolves the conflict by updating the existing user.
    let mut again = user("jdoe");
    again["name"]["familyName"] = json!("Again");
    let resolved = rt
        .create(p, t, EntityKind::User, &again)
        .await
        .expect("conflict resolved");
    assert_eq!(id_of(&resolved), uid);
    assert_eq!(sim.user(&uid).expect("stored")["name"]["familyName"], "Again");

    // Delete; a second delete counts as done; get says not found.
    rt.delete(p, t, EntityKind::User, &uid).await.expect("delete");
    assert!(sim.user(&uid).is_none());
    rt.delete(p, t, EntityKind::User, &uid).await.expect("second delete");
    match rt.get(p, t, EntityKind::User, &uid).await {
        Err(CallError::Connector(ConnectorError::NotFound { .. })) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_version_is_a_precondition_and_a_read_one_is_retried() {
    for status in [409, 412] {
        let service = Service::start().await;
        let sim = uaa::spawn(uaa::Options {
            stale_if_match_status: status,
            ..Default::default()
        })
        .await
        .expect("simulator");
        let id = system(&service, &sim, "stale", json!({})).await;
        let c = service.connector(&id).await;
        let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);
        let created = rt.create(p, t, EntityKind::User, &user("stale")).await.expect("create");
        let uid = id_of(&created);
        let puts = || -> Vec<u16> {
            sim.stats()
                .log()
                .iter()
                .filter(|r| r.method == "PUT" && r.path == format!("/Users/{uid}"))
                .map(|r| r.status)
                .collect()
        };
        // Someone else changes the user after we read it: version 0 → 1.
        let read = rt.get(p, t, EntityKind::User, &uid).await.expect("get");
        assert_eq!(read["meta"]["version"], 0);
        let mut theirs = user("stale");
        theirs["name"]["givenName"] = json!("Theirs");
        rt.replace(p, t, EntityKind::User, &uid, &theirs)
            .await
            .expect("their change");
        // Our replace carries the version we read (0): a precondition, so a conflict, and theirs stays.
        let mut ours = read.clone();
        ours["name"]["familyName"] = json!("Ours");
        sim.stats().reset();
        let refused = rt.replace(p, t, EntityKind::User, &uid, &ours).await;
        assert!(
            matches!(refused, Err(CallError::Connector(ConnectorError::Conflict { .. }))),
            "{refused:?}"
        );
        assert_eq!(puts(), vec![status], "one stale PUT, no retry");
        assert_eq!(sim.user(&uid).expect("user")["name"]["givenName"], "Theirs");
        // Without a version the connector reads the current one; when that goes stale before its PUT,
        // it reads again and retries once.
        let mut unversioned = user("stale");
        unversioned["name"]["familyName"] = json!("Ours");
        sim.state()
            .change_before_next_write(&uid, json!({"externalId": "meanwhile"}));
        sim.stats().reset();
        let written = rt
            .replace(p, t, EntityKind::User, &uid, &unversioned)
            .await
            .expect("re-read and retried");
        assert_eq!(written["name"]["familyName"], "Ours");
        assert_eq!(written["meta"]["version"], 3);
        assert_eq!(puts(), vec![status, 200], "a stale PUT, then one retry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_come_from_xsuaa_origin() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options {
        users: 5,
        ..Default::default()
    })
    .await
    .expect("simulator");

    // One origin: created users carry it, also when SAP's transformation left `null` for an unset placeholder.
    let one = system(&service, &sim, "one origin", json!({"xsuaa.origin": "sap.custom"})).await;
    let c = service.connector(&one).await;
    let mut entity = user("alice");
    entity["origin"] = json!("null");
    rt_create(&c, &entity).await;
    assert_eq!(sim.user_by_name("alice").expect("created")["origin"], "sap.custom");

    // Several origins: one user per origin; the origin filter reads only those; delete removes every twin.
    let two = system(
        &service,
        &sim,
        "two origins",
        json!({"xsuaa.origin": "idp1;idp2", "xsuaa.origin.filter.enabled": "true", "xsuaa.user.unique.attribute": "userName,origin"}),
    )
    .await;
    let c = service.connector(&two).await;
    let mut entity = user("bob");
    entity["origin"] = json!("idp1;idp2");
    let created = rt_create(&c, &entity).await;
    let origins: Vec<String> = sim
        .users()
        .iter()
        .filter(|u| u["userName"] == "bob")
        .map(|u| u["origin"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(origins, ["idp1", "idp2"]);
    let (read, _) = read_all(&c, EntityKind::User, 100).await;
    assert_eq!(read.len(), 2, "only the idp1 and idp2 users: {read:?}");
    // Replace reaches both twins.
    let mut changed = user("bob");
    changed["name"]["familyName"] = json!("Both");
    c.runtime
        .replace(&c.plugin, &c.target, EntityKind::User, &id_of(&created), &changed)
        .await
        .expect("replace");
    assert!(
        sim.users()
            .iter()
            .filter(|u| u["userName"] == "bob")
            .all(|u| u["name"]["familyName"] == "Both")
    );
    c.runtime
        .delete(&c.plugin, &c.target, EntityKind::User, &id_of(&created))
        .await
        .expect("delete");
    assert!(sim.user_by_name("bob").is_none(), "every twin is gone");
    assert_eq!(sim.user_count(), 6, "the seeded users and alice stay");
}

async fn rt_create(c: &Connector, entity: &Value) -> Value {
    c.runtime
        .create(&c.plugin, &c.target, EntityKind::User, entity)
        .await
        .expect("create")
}

/// Creates two users and a group with the first; runs the member operations; checks the simulator.
async fn group_lifecycle(service: &Service, sim: &uaa::Simulator, name: &str, extra: Value) {
    let id = system(service, sim, name, extra).await;
    let c = service.connector(&id).await;
    let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);
    let u1 = id_of(
        &rt.create(p, t, EntityKind::User, &user(&format!("{name}-1")))
            .await
            .expect("u1"),
    );
    let u2 = id_of(
        &rt.create(p, t, EntityKind::User, &user(&format!("{name}-2")))
            .await
            .expect("u2"),
    );
    let u3 = id_of(
        &rt.create(p, t, EntityKind::User, &user(&format!("{name}-3")))
            .await
            .expect("u3"),
    );

    let group = json!({"schemas": ["urn:scim:schemas:core:1.0"], "id": name, "displayName": name,
                       "description": "Role collection", "members": [{"value": u1, "type": "USER"}]});
    let created = rt.create(p, t, EntityKind::Group, &group).await.expect("create group");
    let gid = id_of(&created);
    let got = rt.get(p, t, EntityKind::Group, &gid).await.expect("get group");
    assert_eq!(got["displayName"], name);
    assert_eq!(sim.member_ids(&gid), Some(vec![u1.clone()]));

    // Patch: add u2, remove u1.
    let ops = patch(json!([{"op": "add", "path": "members", "value": [{"value": u2}]},
                           {"op": "remove", "path": format!("members[value eq \"{u1}\"]")}]));
    rt.patch(p, t, EntityKind::Group, &gid, &ops)
        .await
        .expect("patch members");
    assert_eq!(sim.member_ids(&gid), Some(vec![u2.clone()]));
    // Patch again (idempotent) plus a description change.
    let ops = patch(
        json!([{"op": "add", "path": "members", "value": [{"value": u2}, {"value": u3}]},
                           {"op": "replace", "path": "description", "value": "Changed"}]),
    );
    rt.patch(p, t, EntityKind::Group, &gid, &ops)
        .await
        .expect("patch again");
    assert_eq!(sim.member_ids(&gid), Some(vec![u2.clone(), u3.clone()]));
    assert_eq!(sim.group(&gid).expect("group")["description"], "Changed");

    // Replace (members replaced as a whole, If-Match with the version).
    let replaced = json!({"schemas": ["urn:scim:schemas:core:1.0"], "displayName": name,
                          "members": [{"value": u1}]});
    let out = rt
        .replace(p, t, EntityKind::Group, &gid, &replaced)
        .await
        .expect("replace group");
    assert_eq!(out["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(sim.member_ids(&gid), Some(vec![u1.clone()]));

    // Remove every member.
    rt.patch(
        p,
        t,
        EntityKind::Group,
        &gid,
        &patch(json!([{"op": "remove", "path": "members"}])),
    )
    .await
    .expect("clear members");
    assert_eq!(sim.member_ids(&gid), Some(vec![]));

    rt.delete(p, t, EntityKind::Group, &gid).await.expect("delete group");
    assert!(sim.group(&gid).is_none());
    rt.delete(p, t, EntityKind::Group, &gid).await.expect("second delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_with_uaa_patch_and_with_the_members_api() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options {
        groups: 12,
        users: 3,
        ..Default::default()
    })
    .await
    .expect("simulator");
    sim.stats().reset();
    group_lifecycle(
        &service,
        &sim,
        "PatchMode",
        json!({"scim.support.patch.operation": "true"}),
    )
    .await;
    let log = sim.stats().log();
    assert!(
        log.iter()
            .any(|r| r.method == "PATCH" && r.path.starts_with("/Groups/"))
    );
    assert!(!log.iter().any(|r| r.path.contains("/members")));

    sim.stats().reset();
    group_lifecycle(
        &service,
        &sim,
        "MembersApi",
        json!({"scim.support.patch.operation": "false"}),
    )
    .await;
    let log = sim.stats().log();
    assert!(log.iter().any(|r| r.method == "POST" && r.path.ends_with("/members")));
    assert!(log.iter().any(|r| r.method == "DELETE" && r.path.contains("/members/")));
    assert!(!log.iter().any(|r| r.method == "PATCH"));

    // Groups page to the end too.
    let id = system(&service, &sim, "paging", json!({})).await;
    let (groups, pages) = read_all(&service.connector(&id).await, EntityKind::Group, 5).await;
    assert_eq!(groups.len(), 12);
    assert_eq!(pages, 3);

    // BTP flavour: a role collection's id is its name.
    let btp = uaa::spawn(uaa::Options {
        xsuaa_group_ids: true,
        ..Default::default()
    })
    .await
    .expect("simulator");
    group_lifecycle(
        &service,
        &btp,
        "Role Collection",
        json!({"scim.support.patch.operation": "false",
        "xsuaa.patch.response.with.resource": "true"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_means_throttled_with_retry_after() {
    let service = Service::start().await;
    let sim = uaa::spawn(uaa::Options {
        users: 1,
        rate_limit_per_second: Some(1.0),
        ..Default::default()
    })
    .await
    .expect("simulator");
    let id = system(&service, &sim, "limited", json!({})).await;
    let c = service.connector(&id).await;
    let mut throttled = None;
    for _ in 0..10 {
        match c
            .runtime
            .read(&c.plugin, &c.target, &PageRequest::first(EntityKind::User, 1))
            .await
        {
            Ok(_) => continue,
            Err(CallError::Connector(ConnectorError::Throttled { retry_after_ms, .. })) => {
                throttled = Some(retry_after_ms);
                break;
            }
            Err(other) => panic!("expected throttled, got {other:?}"),
        }
    }
    let retry_after_ms = throttled.expect("the simulator throttled");
    assert_eq!(retry_after_ms, Some(1000), "the Retry-After the simulator sent, in ms");
    assert!(sim.stats().throttled() >= 1);

    // The declared default (3/s) keeps a burst under BTP's limit: the host spaces the requests.
    let sim = uaa::spawn(uaa::Options {
        users: 1,
        rate_limit_per_second: Some(3.0),
        rate_limit_queue: 2,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let id = system(&service, &sim, "paced", json!({"provisio.rate.limit": null})).await;
    let c = service.connector(&id).await;
    for _ in 0..7 {
        c.runtime
            .read(&c.plugin, &c.target, &PageRequest::first(EntityKind::User, 1))
            .await
            .expect("paced read");
    }
    assert_eq!(sim.stats().throttled(), 0);
}
