//! The Identity Authentication connector, as a wasm component in the real runtime, against the IAS
//! simulator: both SCIM APIs (version 1 legacy ids, version 2 UUIDs), Test Connection, id and index paging
//! to the end, every user and group operation, member removals batched by 50, update instead of delete,
//! conflict resolution, and IAS throttling.

use provisio::connector::{ConnectorError, EntityKind, PageRequest};
use provisio::runtime::CallError;
use provisio_tests::sim::ias;
use serde_json::{Map, Value, json};

use crate::support::{Connector, Service};

const OK: &str = "Connection to the selected target system was established successfully.";

/// An IAS system for `sim`; `extra` properties are added. The host's own rate limit is raised so that the
/// tests do not crawl at IAS's 3 requests a second.
async fn ias_system(service: &Service, name: &str, sim: &ias::Simulator, secret: &str, extra: Value) -> String {
    let mut properties: Map<String, Value> = json!({
        "URL": sim.base_url,
        "Authentication": "BasicAuthentication",
        "User": sim.options().client_id,
        "Password": secret,
        "provisio.rate.limit": "1000",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if let Value::Object(extra) = extra {
        properties.extend(extra);
    }
    service
        .create_system(json!({"name": name, "type": "ias", "role": "target", "properties": properties}))
        .await
}

async fn connector(service: &Service, sim: &ias::Simulator, name: &str, extra: Value) -> Connector {
    let id = ias_system(service, name, sim, &sim.options().client_secret.clone(), extra).await;
    service.connector(&id).await
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:sap:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Dev"},
        "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"mailVerified": true},
        "urn:sap:cloud:scim:schemas:extension:custom:2.0:User": {"attributes": [{"name": "customAttribute1", "value": "x"}]}
    })
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Reads every page; returns the ids and the number of pages.
async fn read_all(c: &Connector, kind: EntityKind, page_size: u32) -> (Vec<String>, usize) {
    let mut request = PageRequest::first(kind, page_size);
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = c.runtime.read(&c.plugin, &c.target, &request).await.expect("read");
        pages += 1;
        assert!(page.entities.len() <= page_size as usize);
        ids.extend(page.entities.iter().map(id_of));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    (ids, pages)
}

fn expect_not_found<T: std::fmt::Debug>(r: Result<T, CallError>) {
    match r {
        Err(CallError::Connector(ConnectorError::NotFound { .. })) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_checks_the_credentials() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options::default()).await.expect("ias simulator");
    let secret = sim.options().client_secret.clone();
    for version in ["1", "2"] {
        let good = ias_system(
            &service,
            &format!("good v{version}"),
            &sim,
            &secret,
            json!({"ias.api.version": version}),
        )
        .await;
        assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));
    }
    // The client id and secret also work through the tenant's OAuth token endpoint.
    let oauth = ias_system(
        &service,
        "oauth",
        &sim,
        &secret,
        json!({"OAuth2TokenServiceURL": sim.oauth_token_url()}),
    )
    .await;
    assert_eq!(service.test_connection(&oauth).await, (true, OK.to_string()));
    let wrong = ias_system(&service, "wrong secret", &sim, "not-the-secret", json!({})).await;
    let (ok, message) = service.test_connection(&wrong).await;
    assert!(!ok);
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("client secret"), "{message}");
    let bad_version = ias_system(&service, "bad version", &sim, &secret, json!({"ias.api.version": "3"})).await;
    let (ok, message) = service.test_connection(&bad_version).await;
    assert!(!ok);
    assert!(message.contains("ias.api.version"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_transformations_are_sap_version_2_defaults() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options::default()).await.expect("ias simulator");
    let c = connector(&service, &sim, "ias", json!({})).await;
    let d = &c.plugin.descriptor;
    for text in [&d.default_read_transformation, &d.default_write_transformation] {
        let doc: Value = serde_json::from_str(text.as_deref().expect("a default transformation")).expect("JSON");
        provisio_transform::Transformation::parse(&doc).expect("loads");
    }
    let write = d.default_write_transformation.as_deref().unwrap_or_default();
    assert!(
        write.contains("($.emails EMPTY false) && ($.userName EMPTY false)"),
        "not the v2 target default"
    );
    let rate = d
        .properties
        .iter()
        .find(|p| p.name == "provisio.rate.limit")
        .expect("rate limit declared");
    assert_eq!(rate.default_value.as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_users_and_groups_every_operation() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options::default()).await.expect("ias simulator");
    let c = connector(&service, &sim, "ias v2", json!({})).await;
    let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);

    // Create: UUID ids, extension sections kept.
    let created = rt.create(p, t, EntityKind::User, &user("alice")).await.expect("create");
    let alice = id_of(&created);
    assert!(uuid::Uuid::parse_str(&alice).is_ok(), "v2 ids are UUIDs: {alice}");
    let stored = sim.user(&alice).expect("in the simulator");
    assert_eq!(
        stored["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Dev"
    );
    assert_eq!(
        stored["urn:sap:cloud:scim:schemas:extension:custom:2.0:User"]["attributes"][0]["value"],
        "x"
    );
    let bob = id_of(
        &rt.create(p, t, EntityKind::User, &user("bob"))
            .await
            .expect("create bob"),
    );

    // Read back, get.
    let (ids, _) = read_all(&c, EntityKind::User, 100).await;
    assert_eq!(ids.len(), 2);
    let got = rt.get(p, t, EntityKind::User, &alice).await.expect("get");
    assert_eq!(got["userName"], "alice");
    assert!(
        got["urn:ietf:params:scim:schemas:extension:sap:2.0:User"]["userId"]
            .as_str()
            .is_some_and(|s| s.starts_with('P'))
    );

    // Replace.
    let mut changed = user("alice");
    changed["name"]["familyName"] = json!("Replaced");
    let replaced = rt
        .replace(p, t, EntityKind::User, &alice, &changed)
        .await
        .expect("replace");
    assert_eq!(replaced["name"]["familyName"], "Replaced");
    assert_eq!(sim.user(&alice).expect("alice")["name"]["familyName"], "Replaced");

    // Patch (GET + PUT by default, PATCH with ias.support.patch.operation).
    let patch = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "Alice A."}]});
    rt.patch(p, t, EntityKind::User, &alice, &patch).await.expect("patch");
    assert_eq!(sim.user(&alice).expect("alice")["displayName"], "Alice A.");
    let native = connector(
        &service,
        &sim,
        "ias v2 patch",
        json!({"ias.support.patch.operation": "true"}),
    )
    .await;
    let before = sim.stats().log().iter().filter(|r| r.method == "PATCH").count();
    let patch = json!({"Operations": [{"op": "replace", "path": "name.givenName", "value": "Ali"}]});
    native
        .runtime
        .patch(&native.plugin, &native.target, EntityKind::User, &alice, &patch)
        .await
        .expect("native patch");
    assert_eq!(sim.user(&alice).expect("alice")["name"]["givenName"], "Ali");
    assert_eq!(
        sim.stats().log().iter().filter(|r| r.method == "PATCH").count(),
        before + 1
    );

    // Groups: create with a member, read, replace, patch members, delete.
    let group = json!({"displayName": "Readers", "members": [{"value": alice}],
        "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group": {"name": "readers", "description": "Readers"}});
    let g = rt.create(p, t, EntityKind::Group, &group).await.expect("create group");
    let gid = id_of(&g);
    assert!(uuid::Uuid::parse_str(&gid).is_ok());
    assert_eq!(sim.member_ids(&gid), Some(vec![alice.clone()]));
    let (groups, _) = read_all(&c, EntityKind::Group, 100).await;
    assert_eq!(groups, vec![gid.clone()]);
    let replaced = json!({"displayName": "Readers 2", "members": [{"value": alice}, {"value": bob}],
        "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group": {"description": "More readers"}});
    let r = rt
        .replace(p, t, EntityKind::Group, &gid, &replaced)
        .await
        .expect("replace group");
    assert_eq!(r["displayName"], "Readers 2");
    assert_eq!(sim.member_ids(&gid).map(|m| m.len()), Some(2));
    let remove = json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]});
    rt.patch(p, t, EntityKind::Group, &gid, &remove)
        .await
        .expect("patch group");
    assert_eq!(sim.member_ids(&gid), Some(vec![bob.clone()]));
    let got = rt.get(p, t, EntityKind::Group, &gid).await.expect("get group");
    assert_eq!(
        got["urn:sap:cloud:scim:schemas:extension:custom:2.0:Group"]["name"],
        "readers"
    );

    rt.delete(p, t, EntityKind::Group, &gid).await.expect("delete group");
    expect_not_found(rt.get(p, t, EntityKind::Group, &gid).await);
    rt.delete(p, t, EntityKind::User, &bob).await.expect("delete user");
    expect_not_found(rt.get(p, t, EntityKind::User, &bob).await);
    assert!(sim.user(&bob).is_none());
    // Deleting what is gone counts as done.
    rt.delete(p, t, EntityKind::User, &bob).await.expect("second delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_legacy_ids_every_operation() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options {
        users: 3,
        groups: 1,
        ..Default::default()
    })
    .await
    .expect("ias simulator");
    let c = connector(&service, &sim, "ias v1", json!({"ias.api.version": "1"})).await;
    let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);

    let (ids, _) = read_all(&c, EntityKind::User, 2).await;
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.starts_with('P') && id.len() == 7), "{ids:?}");
    let (groups, _) = read_all(&c, EntityKind::Group, 100).await;
    assert!(
        groups
            .iter()
            .all(|id| id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit())),
        "{groups:?}"
    );

    let mut carol = user("carol");
    carol["mailVerified"] = json!(true);
    let created = rt.create(p, t, EntityKind::User, &carol).await.expect("create");
    let carol_id = id_of(&created);
    assert!(carol_id.starts_with('P'), "{carol_id}");
    assert!(created["userUuid"].as_str().is_some());
    let mut changed = carol.clone();
    changed["name"]["familyName"] = json!("Replaced");
    rt.replace(p, t, EntityKind::User, &carol_id, &changed)
        .await
        .expect("replace");
    assert_eq!(sim.user(&carol_id).expect("carol")["name"]["familyName"], "Replaced");
    // Version 1 has no PATCH: the connector reads and writes back.
    let patch = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    rt.patch(p, t, EntityKind::User, &carol_id, &patch)
        .await
        .expect("patch");
    assert_eq!(sim.user(&carol_id).expect("carol")["active"], false);
    assert!(sim.stats().log().iter().all(|r| r.method != "PATCH"));

    let g = rt
        .create(
            p,
            t,
            EntityKind::Group,
            &json!({"displayName": "V1 Group", "members": [{"value": carol_id}]}),
        )
        .await
        .expect("create group");
    let gid = id_of(&g);
    assert_eq!(gid.len(), 24);
    let add = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": ids[0]}]}]});
    rt.patch(p, t, EntityKind::Group, &gid, &add)
        .await
        .expect("patch group");
    assert_eq!(sim.member_ids(&gid).map(|m| m.len()), Some(2));
    let read = rt.get(p, t, EntityKind::Group, &gid).await.expect("get group");
    assert!(
        read["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["value"] == json!(carol_id)))
    );
    rt.delete(p, t, EntityKind::Group, &gid).await.expect("delete group");
    rt.delete(p, t, EntityKind::User, &carol_id).await.expect("delete");
    expect_not_found(rt.get(p, t, EntityKind::User, &carol_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_id_paging_reads_every_page() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options {
        users: 250,
        groups: 3,
        ..Default::default()
    })
    .await
    .expect("ias simulator");
    let c = connector(&service, &sim, "ias", json!({})).await;
    sim.stats().reset();
    let (ids, pages) = read_all(&c, EntityKind::User, 100).await;
    assert_eq!(pages, 3);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 250);
    let log = sim.stats().log();
    assert!(
        log[0].query.as_deref().is_some_and(|q| q.contains("startId=initial")),
        "{log:?}"
    );
    assert!(
        log[1]
            .query
            .as_deref()
            .is_some_and(|q| q.contains("startId=") && !q.contains("initial"))
    );
    // Index paging, and the system filter AND-combined with the request's.
    let indexed = connector(&service, &sim, "ias index", json!({"ias.paging.mode": "index"})).await;
    let (ids, pages) = read_all(&indexed, EntityKind::User, 100).await;
    assert_eq!((ids.len(), pages), (250, 3));
    let first = sim.users()[0]["userName"].as_str().expect("userName").to_string();
    let filtered = connector(
        &service,
        &sim,
        "ias filtered",
        json!({"ias.user.filter": "active eq true"}),
    )
    .await;
    let mut request = PageRequest::first(EntityKind::User, 100);
    request.filter = Some(format!("userName eq \"{first}\""));
    let page = filtered
        .runtime
        .read(&filtered.plugin, &filtered.target, &request)
        .await
        .expect("filtered read");
    assert_eq!(page.entities.len(), 1);
    // Delta reads (version 2) filter by meta.lastModified.
    let mut delta = PageRequest::first(EntityKind::User, 100);
    delta.delta_since = Some("2000-01-01T00:00:00Z".into());
    let page = c.runtime.read(&c.plugin, &c.target, &delta).await.expect("delta read");
    assert_eq!((page.entities.len(), page.total), (100, Some(250)));
    delta.delta_since = Some("2999-01-01T00:00:00Z".into());
    let page = c.runtime.read(&c.plugin, &c.target, &delta).await.expect("delta read");
    assert!(page.entities.is_empty());
    // Version 1 pages by id too.
    let v1 = connector(&service, &sim, "ias v1", json!({"ias.api.version": "1"})).await;
    let (ids, pages) = read_all(&v1, EntityKind::User, 100).await;
    assert_eq!((ids.len(), pages), (250, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_more_than_fifty_members_takes_several_patches() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options {
        users: 120,
        ..Default::default()
    })
    .await
    .expect("ias simulator");
    let c = connector(&service, &sim, "ias", json!({})).await;
    let (rt, p, t) = (&c.runtime, &c.plugin, &c.target);
    let ids: Vec<String> = sim.users().iter().map(id_of).collect();
    let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    let g = rt
        .create(
            p,
            t,
            EntityKind::Group,
            &json!({"displayName": "Everyone", "members": members}),
        )
        .await
        .expect("create group");
    let gid = id_of(&g);
    assert_eq!(sim.member_ids(&gid).map(|m| m.len()), Some(120));

    // Remove 110 members in one patch: IAS takes at most 50 a request, so three PATCHes.
    sim.stats().reset();
    let gone: Vec<Value> = ids[..110].iter().map(|id| json!({"value": id})).collect();
    let remove = json!({"Operations": [{"op": "remove", "path": "members", "value": gone}]});
    rt.patch(p, t, EntityKind::Group, &gid, &remove).await.expect("patch");
    assert_eq!(sim.member_ids(&gid).map(|m| m.len()), Some(10));
    let patches: Vec<u16> = sim
        .stats()
        .log()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(patches, vec![200, 200, 200]);

    // A replace above ias.patch.group.members.above.threshold: batched PATCHes, no PUT.
    let small = connector(
        &service,
        &sim,
        "ias threshold",
        json!({"ias.patch.group.members.above.threshold": "40"}),
    )
    .await;
    sim.stats().reset();
    let wanted: Vec<Value> = ids[60..120].iter().map(|id| json!({"value": id})).collect();
    let replaced = small
        .runtime
        .replace(
            &small.plugin,
            &small.target,
            EntityKind::Group,
            &gid,
            &json!({"displayName": "Everyone", "members": wanted}),
        )
        .await
        .expect("replace");
    assert_eq!(replaced["members"].as_array().map(Vec::len), Some(60));
    let log = sim.stats().log();
    assert!(log.iter().all(|r| r.method != "PUT"));
    assert_eq!(log.iter().filter(|r| r.method == "PATCH").count(), 2, "{log:?}");

    // Removing all members of a group with more than 50 at once.
    let all = json!({"Operations": [{"op": "remove", "path": "members"}]});
    rt.patch(p, t, EntityKind::Group, &gid, &all).await.expect("remove all");
    assert_eq!(sim.member_ids(&gid).map(|m| m.len()), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_instead_of_delete_deactivates_users() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options::default()).await.expect("ias simulator");
    for version in ["2", "1"] {
        let c = connector(
            &service,
            &sim,
            &format!("ias v{version}"),
            json!({"ias.api.version": version, "ias.user.update.instead.delete": "true"}),
        )
        .await;
        let created = c
            .runtime
            .create(&c.plugin, &c.target, EntityKind::User, &user(&format!("dave{version}")))
            .await
            .expect("create");
        let id = id_of(&created);
        c.runtime
            .delete(&c.plugin, &c.target, EntityKind::User, &id)
            .await
            .expect("delete");
        let kept = sim.user(&id).expect("the user is kept");
        assert_eq!(kept["active"], false, "v{version}");
        // Groups are deleted all the same.
        let g = c
            .runtime
            .create(
                &c.plugin,
                &c.target,
                EntityKind::Group,
                &json!({"displayName": format!("G{version}")}),
            )
            .await
            .expect("group");
        c.runtime
            .delete(&c.plugin, &c.target, EntityKind::Group, &id_of(&g))
            .await
            .expect("delete group");
        assert!(sim.group(&id_of(&g)).is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_conflicts_overwrite_the_existing_entity() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options::default()).await.expect("ias simulator");
    let existing = sim.insert_user(user("erin")).expect("seed erin");
    let c = connector(&service, &sim, "ias", json!({})).await;
    let mut again = user("erin");
    again["name"]["familyName"] = json!("Overwritten");
    let resolved = c
        .runtime
        .create(&c.plugin, &c.target, EntityKind::User, &again)
        .await
        .expect("resolved");
    assert_eq!(id_of(&resolved), id_of(&existing));
    assert_eq!(
        sim.user(&id_of(&existing)).expect("erin")["name"]["familyName"],
        "Overwritten"
    );
    let group = sim.insert_group(json!({"displayName": "Ops"})).expect("seed group");
    let g = c
        .runtime
        .create(&c.plugin, &c.target, EntityKind::Group, &json!({"displayName": "Ops", "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group": {"description": "d"}}))
        .await
        .expect("group resolved");
    assert_eq!(id_of(&g), id_of(&group));

    let strict = connector(
        &service,
        &sim,
        "strict",
        json!({"ias.user.automatic.conflict.resolution": "false"}),
    )
    .await;
    match strict
        .runtime
        .create(&strict.plugin, &strict.target, EntityKind::User, &again)
        .await
    {
        Err(CallError::Connector(ConnectorError::Conflict { .. })) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_reports_retry_after() {
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options {
        users: 1,
        rate_limit_per_minute: Some(2),
        throttle_hard_limit_per_minute: Some(3),
        throttle_delay: std::time::Duration::from_millis(10),
        ..Default::default()
    })
    .await
    .expect("ias simulator");
    let c = connector(&service, &sim, "ias", json!({})).await;
    let id = id_of(&sim.users()[0]);
    let mut throttled = None;
    for _ in 0..6 {
        match c.runtime.get(&c.plugin, &c.target, EntityKind::User, &id).await {
            Ok(_) => {}
            Err(CallError::Connector(ConnectorError::Throttled { retry_after_ms, .. })) => {
                throttled = Some(retry_after_ms);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        throttled,
        Some(Some(60_000)),
        "IAS blocks for 60 s with Retry-After: 60"
    );
}

/// Identity Authentication users carry SAP's schema extensions; a strict SCIM server (scim2-server, which
/// declares only the Enterprise User extension) refuses a whole user for one it does not know. With the
/// connectors' default transformations every user lands, and each entity's log entry says what the target
/// left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_land_in_a_strict_scim_target_with_default_transformations() {
    use reqwest::Method;
    let service = Service::start().await;
    let sim = ias::spawn(ias::Options {
        users: 6,
        groups: 2,
        ..Default::default()
    })
    .await
    .expect("ias");
    let scim = crate::support::Scim2Server::start().await;
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": {"URL": sim.base_url, "Authentication": "BasicAuthentication",
                "User": sim.options().client_id, "Password": sim.options().client_secret,
                "provisio.rate.limit": "1000"}}))
        .await;
    let target = service
        .create_system(
            json!({"name": "strict SCIM", "type": "scim", "role": "target", "sources": [source],
            "properties": {"URL": scim.base_url, "Authentication": "BearerToken", "Password": scim.token}}),
        )
        .await;
    let job = service
        .run_job(&source, json!({"type": "read"}), std::time::Duration::from_secs(300))
        .await;
    let id = job["id"].as_str().expect("job id").to_string();
    let (_, log) = service
        .admin(Method::GET, &format!("/api/v1/jobs/{id}/entities"), None)
        .await;
    assert_eq!(job["status"], "Success", "{job}\n{log}");
    let row = |kind: &str| {
        job["statistics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["targetId"] == target.as_str() && r["entityType"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} statistics: {job}"))
    };
    assert_eq!(
        (row("user")["created"].as_u64(), row("user")["failed"].as_u64()),
        (Some(6), Some(0)),
        "{job}"
    );
    assert_eq!(
        (row("group")["created"].as_u64(), row("group")["failed"].as_u64()),
        (Some(2), Some(0)),
        "{job}"
    );

    // In the target, with what it keeps (the Enterprise extension) and without what it does not.
    let users: Value = service
        .http
        .get(format!("{}/Users", scim.base_url))
        .bearer_auth(&scim.token)
        .send()
        .await
        .expect("scim2-server")
        .json()
        .await
        .expect("json");
    assert_eq!(users["totalResults"], 6, "{users}");
    for u in users["Resources"].as_array().into_iter().flatten() {
        assert!(
            u.get("urn:sap:cloud:scim:schemas:extension:custom:2.0:User").is_none(),
            "{u}"
        );
    }
    assert!(
        users["Resources"][0]
            .get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
            .is_some(),
        "the declared extension is kept: {users}"
    );

    // Each written entity's log entry names what was left out.
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let created_users: Vec<&Value> = entries
        .iter()
        .filter(|e| e["entityType"] == "user" && e["operation"] == "create")
        .collect();
    assert_eq!(created_users.len(), 6, "{log}");
    for e in created_users {
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("left out by the target")
                && reason.contains("urn:sap:cloud:scim:schemas:extension:custom:2.0:User")
                && !reason.contains("enterprise"),
            "{e}"
        );
    }
    let group = entries
        .iter()
        .find(|e| e["entityType"] == "group" && e["operation"] == "create")
        .expect("a group entry");
    assert!(
        group["reason"]
            .as_str()
            .is_some_and(|r| r.contains("urn:sap:cloud:scim:schemas:extension:custom:2.0:Group")),
        "{group}"
    );
}

/// Under id paging the page's resources stay in the host and the cursor is the rest of the answer's `nextId`;
/// a server that answers more than asked is read again whole, and the next page starts at the first resource
/// past this one (ids are served in order).
#[tokio::test]
async fn an_id_page_longer_than_asked_is_cut_short_at_the_first_resource_past_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/scim/Users",
        axum::routing::get(move |query: axum::extract::RawQuery| {
            counter.fetch_add(1, Ordering::SeqCst);
            let query = query.0.unwrap_or_default();
            // Asked for 2 from the start: 3 answered. From u3 on: as asked, and the end.
            let (ids, next) = if query.contains("startId=initial") {
                (vec!["u1", "u2", "u3"], "u4")
            } else {
                (vec!["u3", "u4"], "end")
            };
            let resources: Vec<Value> = ids.iter().map(|id| json!({"id": id, "userName": id})).collect();
            async move {
                axum::Json(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "totalResults": 4, "Resources": resources, "nextId": next}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let service = Service::start().await;
    let id = service
        .create_system(
            json!({"name": "ias over-answering", "type": "ias", "role": "source", "properties": {
            "URL": url, "User": "u", "Password": "p", "provisio.rate.limit": "1000"}}),
        )
        .await;
    let c = service.connector(&id).await;
    let (ids, pages) = read_all(&c, EntityKind::User, 2).await;
    assert_eq!(
        (ids, pages),
        (vec!["u1".into(), "u2".into(), "u3".into(), "u4".into()], 2)
    );
    // The first page twice (its resources kept, then the whole answer for the id past the page), the
    // second once.
    assert_eq!(asked.load(Ordering::SeqCst), 3);
}
