//! The connector against canned exchanges, with the SDK's harness.

use provisio_sdk::http::HostError;
use provisio_sdk::testing::{Exchange, Harness};
use provisio_sdk::{Config, Connector, EntityKind, Error, Operation, PageRequest};
use serde_json::{Value, json};

use crate::{CONNECTION_OK, Ias, READ_TRANSFORMATION, WRITE_TRANSFORMATION};

const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

fn cfg() -> Config {
    Config::new("ias-1")
        .with("URL", "https://tenant.accounts.example")
        .with("Authentication", "BasicAuthentication")
        .with("User", "T000001")
}

fn v1() -> Config {
    cfg().with("ias.api.version", "1")
}

fn page(kind: EntityKind, cursor: Option<&str>, size: u32) -> PageRequest {
    PageRequest {
        kind,
        cursor: cursor.map(str::to_string),
        page_size: size,
        filter: None,
        delta_since: None,
    }
}

fn id_list(ids: &[&str], next: &str, total: u64) -> Value {
    let resources: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "userName": format!("u{id}")}))
        .collect();
    json!({"schemas": [LIST], "totalResults": total, "itemsPerPage": ids.len(), "nextId": next, "Resources": resources})
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the connector returns JSON")
}

#[test]
fn describes_itself_with_sap_defaults() {
    let d = Ias::describe();
    assert_eq!(d.name, "ias");
    assert_eq!(d.entity_kinds, vec![EntityKind::User, EntityKind::Group]);
    assert_eq!(d.operations, Operation::ALL.to_vec());
    let prop = |n: &str| d.properties.iter().find(|p| p.name == n);
    for n in [
        "URL",
        "Authentication",
        "User",
        "Password",
        "OAuth2TokenServiceURL",
        "ias.api.version",
        "ias.user.filter",
        "ias.group.filter",
        "ias.support.patch.operation",
        "ias.user.unique.attribute",
        "ias.group.unique.attribute",
        "ias.user.automatic.conflict.resolution",
        "ias.user.update.instead.delete",
        "ias.patch.group.members.above.threshold",
        "provisio.rate.limit",
    ] {
        assert!(prop(n).is_some(), "{n} is not described");
    }
    assert!(prop("URL").is_some_and(|p| p.required));
    assert!(prop("Password").is_some_and(|p| p.secret));
    assert_eq!(
        prop("ias.api.version").and_then(|p| p.default_value.clone()).as_deref(),
        Some("2")
    );
    assert_eq!(
        prop("provisio.rate.limit")
            .and_then(|p| p.default_value.clone())
            .as_deref(),
        Some("3")
    );
    let read: Value = serde_json::from_str(READ_TRANSFORMATION).unwrap();
    let write: Value = serde_json::from_str(WRITE_TRANSFORMATION).unwrap();
    provisio_transform::Transformation::parse(&read).expect("read transformation loads");
    provisio_transform::Transformation::parse(&write).expect("write transformation loads");
    // They are SAP's published version 2 defaults, verbatim.
    let corpus: Value = serde_json::from_str(include_str!(
        "../../../host/transform/tests/fixtures/sap-published-transformations.json"
    ))
    .unwrap();
    assert_eq!(read, corpus["identity-authentication-e4e25f1-2"]);
    assert_eq!(write, corpus["identity-authentication-f217bd3-2"]);
}

#[test]
fn test_connection_checks_credentials() {
    let mut h = Harness::new();
    h.expect(Exchange::get("scim/Users?startIndex=1&count=1").respond(200, id_list(&[], "end", 0)));
    assert_eq!(h.run(|| Ias::test_connection(&cfg())), Ok(CONNECTION_OK.to_string()));
    h.expect(Exchange::get("service/scim/Users?startIndex=1&count=1").respond(
        401,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "401", "detail": "Authentication failed"}),
    ));
    match h.run(|| Ias::test_connection(&v1())) {
        Err(Error::Unauthorized(m)) => assert!(
            m.contains("client secret") && m.contains("Authentication failed"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    h.expect(Exchange::get("scim/Users?startIndex=1&count=1").respond_text(404, "Not Found"));
    assert!(
        matches!(h.run(|| Ias::test_connection(&cfg())), Err(Error::InvalidConfig(m)) if m.contains("ias.api.version"))
    );
    h.expect(Exchange::get("scim/Users?startIndex=1&count=1").fail(HostError::Unreachable("refused".into())));
    assert!(matches!(
        h.run(|| Ias::test_connection(&cfg())),
        Err(Error::Transient(_))
    ));
}

#[test]
fn reads_by_id_until_end_with_filters() {
    let cfg = cfg().with("ias.user.filter", "active eq true");
    let mut req = page(EntityKind::User, None, 500);
    req.filter = Some("userName sw \"u\"".into());
    let mut h = Harness::new();
    h.expect(
        Exchange::get("scim/Users?filter=(active eq true) and (userName sw \"u\")&startId=initial&count=100")
            .respond(200, id_list(&["a", "b"], "c", 3)),
    );
    let p = h.run(|| Ias::read(&cfg, &req)).unwrap();
    assert_eq!(p.entities.len(), 2);
    assert_eq!(p.next_cursor.as_deref(), Some("c"));
    assert_eq!(p.total, Some(3));
    req.cursor = p.next_cursor;
    h.expect(
        Exchange::get("scim/Users?filter=(active eq true) and (userName sw \"u\")&startId=c&count=100")
            .respond(200, id_list(&["c"], "end", 3)),
    );
    let p = h.run(|| Ias::read(&cfg, &req)).unwrap();
    assert_eq!(p.next_cursor, None);
    // A nextId that does not move is an error, not an endless read.
    h.expect(
        Exchange::get("scim/Users?filter=(active eq true) and (userName sw \"u\")&startId=c&count=100")
            .respond(200, id_list(&["c"], "c", 3)),
    );
    assert!(h.run(|| Ias::read(&cfg, &req)).is_err());
}

#[test]
fn reads_by_index_and_cuts_oversized_id_pages() {
    let cfg_index = v1().with("ias.paging.mode", "index");
    let mut h = Harness::new();
    h.expect(Exchange::get("service/scim/Groups?startIndex=1&count=2").respond(
        200,
        json!({"schemas": [LIST], "totalResults": 3, "itemsPerPage": 2, "startIndex": 1,
               "Resources": [{"id": "g1"}, {"id": "g2"}]}),
    ));
    let p = h
        .run(|| Ias::read(&cfg_index, &page(EntityKind::Group, None, 2)))
        .unwrap();
    assert_eq!(p.next_cursor.as_deref(), Some("3"));
    // A server that ignores count: the page is cut, the next starts at the first id left out.
    h.expect(Exchange::get("scim/Users?startId=initial&count=2").respond(200, id_list(&["a", "b", "c"], "d", 4)));
    let p = h.run(|| Ias::read(&cfg(), &page(EntityKind::User, None, 2))).unwrap();
    assert_eq!(p.entities.len(), 2);
    assert_eq!(p.next_cursor.as_deref(), Some("c"));
}

#[test]
fn delta_reads_only_in_version_2() {
    let mut req = page(EntityKind::User, None, 10);
    req.delta_since = Some("2026-01-01T00:00:00Z".into());
    let mut h = Harness::new();
    assert!(matches!(h.run(|| Ias::read(&v1(), &req)), Err(Error::Unsupported(_))));
    h.expect(
        Exchange::get("scim/Users?filter=meta.lastModified gt \"2026-01-01T00:00:00Z\"&startId=initial&count=10")
            .respond(200, id_list(&[], "end", 0)),
    );
    assert!(h.run(|| Ias::read(&cfg(), &req)).is_ok());
}

#[test]
fn maps_throttling_and_missing_entities() {
    let mut h = Harness::new();
    h.expect(
        Exchange::get("scim/Users/u1")
            .respond_empty(429)
            .with_header("Retry-After", "60"),
    );
    match h.run(|| Ias::get(&cfg(), EntityKind::User, "u1")) {
        Err(Error::Throttled(t)) => assert_eq!(t.retry_after_ms, Some(60_000)),
        other => panic!("{other:?}"),
    }
    h.expect(Exchange::get("service/scim/Users/P000001").respond(404, json!({"detail": "User P000001 not found"})));
    assert!(matches!(
        h.run(|| Ias::get(&v1(), EntityKind::User, "P000001")),
        Err(Error::NotFound(_))
    ));
    h.expect(Exchange::delete("scim/Groups/g%2F1").respond_empty(404));
    assert!(matches!(
        h.run(|| Ias::delete(&cfg(), EntityKind::Group, "g/1")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn create_conflict_overwrites_the_existing_user() {
    let entity = json!({"userName": "jdoe", "emails": [{"value": "j@x"}]});
    let mut h = Harness::new();
    h.expect(Exchange::post("scim/Users").respond(409, json!({"scimType": "uniqueness", "detail": "exists"})));
    h.expect(Exchange::get("scim/Users?filter=userName eq \"jdoe\"").respond(
        200,
        json!({"Resources": [{"id": "u-9", "userName": "jdoe", "meta": {"version": "W/\"4\""}}], "totalResults": 1}),
    ));
    h.expect(
        Exchange::put("scim/Users/u-9")
            .header("If-Match", "W/\"4\"")
            .respond(200, json!({"id": "u-9", "userName": "jdoe"})),
    );
    let out = h
        .run(|| Ias::create(&cfg(), EntityKind::User, &entity.to_string()))
        .unwrap();
    assert_eq!(parsed(&out)["id"], "u-9");
    let put = h.requests()[2].json().unwrap();
    assert_eq!(put["id"], "u-9");
    assert_eq!(put["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    // Switched off: the conflict stays.
    let off = cfg().with("ias.user.automatic.conflict.resolution", "false");
    h.expect(Exchange::post("scim/Users").respond(409, json!({"detail": "exists"})));
    assert!(matches!(
        h.run(|| Ias::create(&off, EntityKind::User, &entity.to_string())),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn create_conflict_finds_groups_by_custom_name() {
    let entity = json!({"displayName": "Admins", "members": [{"value": "u1"}]});
    let mut h = Harness::new();
    h.expect(Exchange::post("scim/Groups").respond(409, json!({"detail": "exists"})));
    h.expect(
        Exchange::get("scim/Groups?filter=urn:sap:cloud:scim:schemas:extension:custom:2.0:Group:name eq \"Admins\"")
            .respond(200, json!({"Resources": [{"id": "g-1"}]})),
    );
    h.expect(Exchange::put("scim/Groups/g-1").respond(200, json!({"id": "g-1", "displayName": "Admins"})));
    let out = h
        .run(|| Ias::create(&cfg(), EntityKind::Group, &entity.to_string()))
        .unwrap();
    assert_eq!(parsed(&out)["id"], "g-1");
}

#[test]
fn large_groups_are_written_in_batches() {
    let cfg = cfg().with("ias.patch.group.members.above.threshold", "2");
    let members: Vec<Value> = (0..5).map(|i| json!({"value": format!("u{i}")})).collect();
    let entity = json!({"displayName": "Big", "members": members});
    let mut h = Harness::new();
    h.expect(Exchange::post("scim/Groups").respond(201, json!({"id": "g-1"})));
    h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1"})));
    h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1", "members": members})));
    let out = h
        .run(|| Ias::create(&cfg, EntityKind::Group, &entity.to_string()))
        .unwrap();
    assert_eq!(parsed(&out)["members"].as_array().map(Vec::len), Some(5));
    let sent = h.requests();
    assert_eq!(sent[0].json().unwrap()["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        sent[1].json().unwrap()["Operations"][0]["value"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        sent[2].json().unwrap()["Operations"][0]["value"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Replace above the threshold: attributes and the membership difference by PATCH, no PUT.
    let wanted = json!({"displayName": "Bigger", "members": [{"value": "u0"}, {"value": "u5"}, {"value": "u6"}, {"value": "u7"}]});
    h.expect(Exchange::get("scim/Groups/g-1").respond(200, json!({"id": "g-1", "members": members})));
    h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1"})));
    h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1", "displayName": "Bigger"})));
    let out = h
        .run(|| Ias::replace(&cfg, EntityKind::Group, "g-1", &wanted.to_string()))
        .unwrap();
    assert_eq!(parsed(&out)["displayName"], "Bigger");
    let sent = h.requests();
    let first = sent[4].json().unwrap();
    assert_eq!(
        first["Operations"][0],
        json!({"op": "replace", "value": {"displayName": "Bigger"}})
    );
    // 4 removals and 2 additions (threshold 2) in the first request, the third addition in the second.
    assert_eq!(first["Operations"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        sent[5].json().unwrap()["Operations"],
        json!([{"op": "add", "path": "members", "value": [{"value": "u7"}]}])
    );
}

#[test]
fn group_patch_splits_removals_by_fifty() {
    let gone: Vec<Value> = (0..120).map(|i| json!({"value": format!("u{i}")})).collect();
    let doc = json!({"Operations": [{"op": "remove", "path": "members", "value": gone}]});
    let mut h = Harness::new();
    for _ in 0..3 {
        h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1"})));
    }
    let out = h
        .run(|| Ias::patch(&cfg(), EntityKind::Group, "g-1", &doc.to_string()))
        .unwrap();
    assert!(out.is_some());
    let counts: Vec<usize> = h
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["Operations"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, vec![50, 50, 20]);
    assert_eq!(
        h.requests()[0].json().unwrap()["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"])
    );
}

#[test]
fn user_patch_follows_support_patch_and_version() {
    let doc = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    let mut h = Harness::new();
    // Default (false): GET, apply, PUT with the version.
    h.expect(Exchange::get("scim/Users/u1").respond(
        200,
        json!({"id": "u1", "userName": "a", "active": true, "meta": {"version": "W/\"2\""}}),
    ));
    h.expect(
        Exchange::put("scim/Users/u1")
            .header("If-Match", "W/\"2\"")
            .body_json(json!({"id": "u1", "userName": "a", "active": false}))
            .respond(200, json!({"id": "u1", "active": false})),
    );
    assert!(
        h.run(|| Ias::patch(&cfg(), EntityKind::User, "u1", &doc.to_string()))
            .unwrap()
            .is_some()
    );
    let native = cfg().with("ias.support.patch.operation", "true");
    h.expect(Exchange::patch("scim/Users/u1").respond(200, json!({"id": "u1", "active": false})));
    assert!(
        h.run(|| Ias::patch(&native, EntityKind::User, "u1", &doc.to_string()))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        h.requests()[2].json().unwrap()["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"])
    );
    // Version 1 never sends PATCH, whatever the property says.
    let v1_native = v1().with("scim.support.patch.operation", "true");
    h.expect(Exchange::get("service/scim/Groups/abc").respond(
        200,
        json!({"id": "abc", "displayName": "g", "members": [{"value": "P1"}], "meta": {"version": "3"}}),
    ));
    h.expect(
        Exchange::put("service/scim/Groups/abc")
            .header("If-Match", "\"3\"")
            .respond(200, json!({"id": "abc"})),
    );
    let add = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "P2"}]}]});
    assert!(
        h.run(|| Ias::patch(&v1_native, EntityKind::Group, "abc", &add.to_string()))
            .is_ok()
    );
    assert_eq!(
        h.requests()[4].json().unwrap()["members"],
        json!([{"value": "P1"}, {"value": "P2"}])
    );
}

#[test]
fn delete_can_deactivate_instead() {
    let cfg2 = cfg().with("ias.user.update.instead.delete", "true");
    let mut h = Harness::new();
    h.expect(
        Exchange::patch("scim/Users/u1")
            .body_json(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}))
            .respond(200, json!({"id": "u1", "active": false})),
    );
    assert_eq!(h.run(|| Ias::delete(&cfg2, EntityKind::User, "u1")), Ok(()));
    // Groups are still deleted.
    h.expect(Exchange::delete("scim/Groups/g1").respond_empty(204));
    assert_eq!(h.run(|| Ias::delete(&cfg2, EntityKind::Group, "g1")), Ok(()));
    // Version 1: GET and PUT active=false.
    let v1d = v1().with("ias.user.update.instead.delete", "true");
    h.expect(Exchange::get("service/scim/Users/P1").respond(200, json!({"id": "P1", "userName": "a", "active": true})));
    h.expect(
        Exchange::put("service/scim/Users/P1")
            .body_json(json!({"id": "P1", "userName": "a", "active": false}))
            .respond(200, json!({"id": "P1", "active": false})),
    );
    assert_eq!(h.run(|| Ias::delete(&v1d, EntityKind::User, "P1")), Ok(()));
    h.expect(Exchange::delete("scim/Users/u1").respond_empty(204));
    assert_eq!(h.run(|| Ias::delete(&cfg(), EntityKind::User, "u1")), Ok(()));
}

#[test]
fn replace_keeps_unknown_extensions() {
    let entity = json!({"id": "u1", "userName": "a", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "urn:example:ext:1.0:User": {"x": 1}});
    let mut h = Harness::new();
    h.expect(Exchange::put("scim/Users/u1").respond(200, json!({"id": "u1"})));
    h.run(|| Ias::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()))
        .unwrap();
    let sent = h.requests()[0].json().unwrap();
    assert_eq!(sent["urn:example:ext:1.0:User"], json!({"x": 1}));
    assert_eq!(
        sent["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", "urn:example:ext:1.0:User"])
    );
    assert_eq!(h.requests()[0].header("Content-Type"), Some("application/scim+json"));
}

#[test]
fn a_failed_batch_is_reported_and_logged() {
    let gone: Vec<Value> = (0..60).map(|i| json!({"value": format!("u{i}")})).collect();
    let doc = json!({"Operations": [{"op": "remove", "path": "members", "value": gone}]});
    let mut h = Harness::new();
    h.expect(Exchange::patch("scim/Groups/g-1").respond(200, json!({"id": "g-1"})));
    h.expect(Exchange::patch("scim/Groups/g-1").respond(503, json!({"detail": "busy"})));
    let out = h.run(|| Ias::patch(&cfg(), EntityKind::Group, "g-1", &doc.to_string()));
    assert!(matches!(out, Err(Error::Transient(m)) if m.contains("busy")));
    assert!(h.logs().iter().any(|(_, m)| m.contains("PATCH 2 of 2 failed")));
}
