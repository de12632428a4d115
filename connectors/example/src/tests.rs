//! The template's own tests: the SDK's harness answers its requests with canned or recorded exchanges.

use super::*;
use provisio_sdk::testing::{Exchange, Harness};
use serde_json::json;

#[test]
fn reads_pages_and_writes() {
    let cfg = Config::new("t").with("URL", "http://example/v1");
    let req = PageRequest {
        kind: EntityKind::User,
        cursor: None,
        page_size: 2,
        filter: None,
        delta_since: None,
    };
    let mut h = Harness::new();
    h.expect(
        Exchange::get("users?offset=0&limit=2").respond(200, json!({"users": [{"id": "1"}, {"id": "2"}], "total": 3})),
    );
    let page = h.run(|| Example::read(&cfg, &req)).expect("page");
    assert_eq!((page.entities.len(), page.next_cursor.as_deref()), (2, Some("2")));
    h.expect(
        Exchange::post("users")
            .body_json(json!({"userName": "a"}))
            .respond(201, json!({"id": "9", "userName": "a"})),
    );
    assert!(
        h.run(|| Example::create(&cfg, EntityKind::User, r#"{"userName":"a"}"#))
            .expect("created")
            .contains("\"9\"")
    );
    h.expect(Exchange::delete("users/9").respond(404, json!({"message": "gone"})));
    assert!(matches!(
        h.run(|| Example::delete(&cfg, EntityKind::User, "9")),
        Err(Error::NotFound(_))
    ));
}

/// Replays `recordings/users.json`, which the same test wrote while it ran against a user API:
///
/// ```sh
/// PROVISIO_RECORD=recordings/users.json PROVISIO_RECORD_URL=https://api.example.com/v1 \
///   PROVISIO_RECORD_AUTHENTICATION=BearerToken PROVISIO_RECORD_PASSWORD=<token> \
///   cargo test -p provisio-connector-example recorded
/// ```
///
/// Run it that way against your own system to record your exchanges (see the SDK's README). The
/// assertions hold for any system that keeps what it is sent, so they hold while recording too.
#[test]
fn works_against_the_recorded_api() {
    let cfg = Config::new("t").with("URL", "http://example/v1");
    let mut h = Harness::recorded("recordings/users.json").unwrap();
    assert_eq!(
        h.run(|| Example::test_connection(&cfg)).as_deref(),
        Ok(provisio_sdk::CONNECTION_OK)
    );
    let req = PageRequest {
        kind: EntityKind::User,
        cursor: None,
        page_size: 2,
        filter: None,
        delta_since: None,
    };
    let page = h.run(|| Example::read(&cfg, &req)).expect("first page");
    assert!(page.entities.len() <= 2);

    let created = h
        .run(|| {
            Example::create(
                &cfg,
                EntityKind::User,
                r#"{"userName":"jdoe","email":"jdoe@example.com"}"#,
            )
        })
        .expect("created");
    let created: Value = serde_json::from_str(&created).expect("JSON");
    let id = created["id"].as_str().expect("an id").to_string();
    let user = r#"{"userName":"jdoe","email":"john.doe@example.com"}"#;
    let replaced = h
        .run(|| Example::replace(&cfg, EntityKind::User, &id, user))
        .expect("replaced");
    assert!(replaced.contains("john.doe@example.com"), "{replaced}");
    h.run(|| Example::delete(&cfg, EntityKind::User, &id)).expect("deleted");
    assert!(matches!(
        h.run(|| Example::get(&cfg, EntityKind::User, &id)),
        Err(Error::NotFound(_))
    ));
}

/// The host's lookup after a create conflicted: `userName eq "…"`, a page of 2; and a page size over what
/// the API serves is clamped.
#[test]
fn finds_a_user_by_user_name_and_clamps_the_page_size() {
    let cfg = Config::new("t").with("URL", "http://example/v1");
    let lookup = PageRequest {
        kind: EntityKind::User,
        cursor: None,
        page_size: 2,
        filter: Some(r#"userName eq "j\"doe""#.into()),
        delta_since: None,
    };
    let mut h = Harness::new();
    h.expect(Exchange::get(r#"users?offset=0&limit=2&userName=j"doe"#).respond(
        200,
        json!({"users": [{"id": "7", "userName": "j\"doe"}, {"id": "8", "userName": "other"}]}),
    ));
    let page = h.run(|| Example::read(&cfg, &lookup)).expect("page");
    assert_eq!((page.entities.len(), page.next_cursor), (1, None));
    assert!(page.entities[0].contains("\"7\""));
    let refused = PageRequest {
        filter: Some(r#"emails.value eq "a@x""#.into()),
        ..lookup
    };
    assert!(matches!(
        h.run(|| Example::read(&cfg, &refused)),
        Err(Error::Unsupported(_))
    ));
    let big = PageRequest {
        filter: None,
        page_size: 500,
        ..refused
    };
    h.expect(Exchange::get("users?offset=0&limit=100").respond(200, json!({"users": [], "total": 0})));
    h.run(|| Example::read(&cfg, &big)).expect("page");
}
