//! The connector against canned exchanges, with the SDK's harness.

use provisio_sdk::http::HostError;
use provisio_sdk::testing::{Exchange, Harness};
use provisio_sdk::{Config, Connector, EntityKind, Error, Operation, PageRequest};
use serde_json::{Value, json};

use crate::{CONNECTION_OK, Jam};

fn cfg() -> Config {
    Config::new("jam-1")
        .with("URL", "https://jam4.sapjam.com")
        .with("OAuth2TokenServiceURL", "https://jam4.sapjam.com/api/v1/auth/token")
        .with("User", "client-key")
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

fn list(resources: Vec<Value>, start: u64, total: u64) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": total,
           "startIndex": start, "itemsPerPage": resources.len(), "Resources": resources})
}

fn user(id: &str) -> Value {
    json!({"id": id, "userName": format!("u{id}"), "emails": [{"value": format!("u{id}@x.example"), "primary": true}], "active": true})
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the connector returns JSON")
}

#[test]
fn describes_itself_with_sap_defaults() {
    let d = Jam::describe();
    assert_eq!(d.name, "jam");
    assert_eq!(d.entity_kinds, vec![EntityKind::User, EntityKind::Group]);
    assert_eq!(d.operations, Operation::ALL.to_vec());
    let prop = |n: &str| d.properties.iter().find(|p| p.name == n);
    assert!(prop("URL").is_some_and(|p| p.required));
    assert!(prop("Password").is_some_and(|p| p.secret && p.required));
    assert!(prop("OAuth2TokenServiceURL").is_some_and(|p| p.required));
    assert!(prop("jam.group.prefix").is_some());
    assert_eq!(
        prop("provisio.rate.limit").and_then(|p| p.default_value.as_deref()),
        Some("3")
    );
    assert!(d.properties.iter().all(|p| !p.doc.is_empty() && !p.doc.contains('\n')));
    let write: Value = serde_json::from_str(d.default_write_transformation.as_deref().expect("write")).expect("json");
    assert_eq!(write["group"]["ignore"], true, "groups ignored by default");
    assert!(
        write["user"]["mappings"]
            .as_array()
            .expect("mappings")
            .iter()
            .any(|m| m["scope"] == "deleteEntity" && m["targetPath"] == "$.active" && m["constant"] == false),
        "deleteEntity deactivates"
    );
    let read: Value = serde_json::from_str(d.default_read_transformation.as_deref().expect("read")).expect("json");
    assert_eq!(read["group"]["ignore"], true);
    for t in [&read, &write] {
        provisio_transform::Transformation::parse(t).expect("SAP's default parses");
    }
}

#[test]
fn test_connection_reads_one_user() {
    let mut h = Harness::new();
    h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond(200, list(vec![user("1")], 1, 5)));
    assert_eq!(h.run(|| Jam::test_connection(&cfg())), Ok(CONNECTION_OK.to_string()));
    // The SCIM base itself as URL works too.
    let scim_base = cfg().with("URL", "https://jam4.sapjam.com/api/v1/scim/");
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(200, list(vec![], 1, 0)));
    assert!(h.run(|| Jam::test_connection(&scim_base)).is_ok());
}

#[test]
fn test_connection_explains_failures() {
    let mut h = Harness::new();
    h.expect(
        Exchange::get("api/v1/scim/Users?startIndex=1&count=1").fail(HostError::AuthFailed(
            "the token endpoint refused the client credentials (HTTP 401: Bad client credentials)".into(),
        )),
    );
    match h.run(|| Jam::test_connection(&cfg())) {
        Err(Error::Unauthorized(m)) => assert!(m.contains("refused the client credentials"), "{m}"),
        other => panic!("{other:?}"),
    }
    h.expect(
        Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond(401, json!({"detail": "Invalid access token"})),
    );
    match h.run(|| Jam::test_connection(&cfg())) {
        Err(Error::Unauthorized(m)) => assert!(m.contains("Invalid access token"), "{m}"),
        other => panic!("{other:?}"),
    }
    h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond(404, json!({})));
    assert!(matches!(
        h.run(|| Jam::test_connection(&cfg())),
        Err(Error::InvalidConfig(m)) if m.contains("URL")
    ));
    h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond_text(200, "<html>"));
    assert!(matches!(
        h.run(|| Jam::test_connection(&cfg())),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn invalid_configuration_is_named() {
    let no_token = Config::new("j")
        .with("URL", "https://jam4.sapjam.com")
        .with("User", "k");
    assert!(
        matches!(Jam::test_connection(&no_token), Err(Error::InvalidConfig(m)) if m.contains("OAuth2TokenServiceURL"))
    );
    let bad_url = cfg().with("URL", "jam4.sapjam.com");
    assert!(matches!(Jam::test_connection(&bad_url), Err(Error::InvalidConfig(m)) if m.contains("URL")));
    let no_user = Config::new("j")
        .with("URL", "https://jam4.sapjam.com")
        .with("OAuth2TokenServiceURL", "https://jam4.sapjam.com/api/v1/auth/token");
    assert!(matches!(Jam::test_connection(&no_user), Err(Error::InvalidConfig(m)) if m.contains("User")));
}

#[test]
fn reads_pages_to_the_end_capped_at_100() {
    let mut h = Harness::new();
    let first: Vec<Value> = (1..=100).map(|i| user(&i.to_string())).collect();
    h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=100").respond(200, list(first, 1, 150)));
    let p = h
        .run(|| Jam::read(&cfg(), &page(EntityKind::User, None, 500)))
        .expect("page");
    assert_eq!(
        (p.entities.len(), p.next_cursor.as_deref(), p.total),
        (100, Some("101"), Some(150))
    );
    let rest: Vec<Value> = (101..=150).map(|i| user(&i.to_string())).collect();
    h.expect(Exchange::get("api/v1/scim/Users?startIndex=101&count=100").respond(200, list(rest, 101, 150)));
    let p = h
        .run(|| Jam::read(&cfg(), &page(EntityKind::User, Some("101"), 500)))
        .expect("page");
    assert_eq!((p.entities.len(), p.next_cursor), (50, None));
    // Groups, with the caller's filter.
    let mut req = page(EntityKind::Group, None, 10);
    req.filter = Some("displayName eq \"Team\"".into());
    h.expect(
        Exchange::get("api/v1/scim/Groups?startIndex=1&count=10&filter=displayName%20eq%20%22Team%22")
            .respond(200, list(vec![json!({"id": "g1", "displayName": "Team"})], 1, 1)),
    );
    let p = h.run(|| Jam::read(&cfg(), &req)).expect("page");
    assert_eq!((p.entities.len(), p.next_cursor), (1, None));
    // No delta read.
    let mut delta = page(EntityKind::User, None, 10);
    delta.delta_since = Some("2026-01-01T00:00:00Z".into());
    assert!(matches!(Jam::read(&cfg(), &delta), Err(Error::Unsupported(_))));
}

#[test]
fn throttling_carries_retry_after() {
    let mut h = Harness::new();
    h.expect(
        Exchange::get("api/v1/scim/Users?startIndex=1&count=10")
            .respond(429, json!({"detail": "Rate limit exceeded"}))
            .with_header("Retry-After", "42"),
    );
    match h.run(|| Jam::read(&cfg(), &page(EntityKind::User, None, 10))) {
        Err(Error::Throttled(t)) => assert_eq!(t.retry_after_ms, Some(42_000)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn writes_users() {
    let mut h = Harness::new();
    let body = json!({"userName": "jdoe", "emails": [{"value": "j@x.example", "primary": true}]});
    let mut stored = body.clone();
    stored["id"] = json!("u-1");
    h.expect(
        Exchange::post("api/v1/scim/Users")
            .body_json(body.clone())
            .header("Content-Type", "application/scim+json")
            .respond(201, stored.clone()),
    );
    let created = h.run(|| Jam::create(&cfg(), EntityKind::User, &body.to_string()));
    assert_eq!(parsed(&created.expect("created"))["id"], "u-1");

    let mut off = stored.clone();
    off["active"] = json!(false);
    h.expect(
        Exchange::put("api/v1/scim/Users/u-1")
            .body_json(off.clone())
            .respond(200, off.clone()),
    );
    let replaced = h.run(|| Jam::replace(&cfg(), EntityKind::User, "u-1", &off.to_string()));
    assert_eq!(parsed(&replaced.expect("replaced"))["active"], false);

    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": true}]});
    let mut sent = ops.clone();
    sent["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
    h.expect(
        Exchange::patch("api/v1/scim/Users/u-1")
            .body_json(sent)
            .respond(200, stored.clone()),
    );
    let patched = h.run(|| Jam::patch(&cfg(), EntityKind::User, "u-1", &ops.to_string()));
    assert!(patched.expect("patched").is_some());
    assert!(matches!(
        Jam::patch(&cfg(), EntityKind::User, "u-1", "{\"Operations\": []}"),
        Err(Error::Rejected(_))
    ));

    h.expect(Exchange::delete("api/v1/scim/Users/u-1").respond_empty(204));
    assert_eq!(h.run(|| Jam::delete(&cfg(), EntityKind::User, "u-1")), Ok(()));
    h.expect(Exchange::delete("api/v1/scim/Users/u-1").respond(404, json!({"detail": "User u-1 not found"})));
    assert!(matches!(
        h.run(|| Jam::delete(&cfg(), EntityKind::User, "u-1")),
        Err(Error::NotFound(_))
    ));
    h.expect(Exchange::get("api/v1/scim/Users/a%2Fb").respond(404, json!({})));
    assert!(matches!(
        h.run(|| Jam::get(&cfg(), EntityKind::User, "a/b")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn create_conflict_overwrites_the_existing_user() {
    let mut h = Harness::new();
    let body = json!({"userName": "jdoe", "emails": [{"value": "j@x.example"}]});
    h.expect(Exchange::post("api/v1/scim/Users").respond(409, json!({"scimType": "uniqueness", "detail": "exists"})));
    h.expect(
        Exchange::get("api/v1/scim/Users?filter=userName%20eq%20%22jdoe%22")
            .respond(200, list(vec![user("old")], 1, 1)),
    );
    let mut stored = body.clone();
    stored["id"] = json!("old");
    h.expect(
        Exchange::put("api/v1/scim/Users/old")
            .body_json(body.clone())
            .respond(200, stored),
    );
    let out = h
        .run(|| Jam::create(&cfg(), EntityKind::User, &body.to_string()))
        .expect("overwritten");
    assert_eq!(parsed(&out)["id"], "old");
    // No match: the conflict stays.
    h.expect(Exchange::post("api/v1/scim/Users").respond(409, json!({"detail": "exists"})));
    h.expect(Exchange::get("api/v1/scim/Users?filter=userName%20eq%20%22jdoe%22").respond(200, list(vec![], 1, 0)));
    assert!(matches!(
        h.run(|| Jam::create(&cfg(), EntityKind::User, &body.to_string())),
        Err(Error::Conflict(_))
    ));
}
