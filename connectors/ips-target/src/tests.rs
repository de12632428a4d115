//! The connector against canned exchanges, with the SDK's harness.

use provisio_sdk::http::HostError;
use provisio_sdk::testing::{Exchange, Harness};
use provisio_sdk::{Config, Connector, EntityKind, Error, Operation, PageRequest};
use serde_json::{Value, json};

use crate::payload::{SAP_USER_EXT, USER_SCHEMA};
use crate::{CONNECTION_OK, IpsTarget};

const URL: &str = "https://ips.example/ipsproxy/api/v1/systems/src-1/entities";

fn cfg(version: &str) -> Config {
    Config::new("ips-1")
        .with("URL", URL)
        .with("Version", version)
        .with("Authentication", "BasicAuthentication")
        .with("User", "rt-user")
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the connector returns JSON")
}

#[test]
fn describes_itself() {
    let d = IpsTarget::describe();
    assert_eq!(d.name, "ips-target");
    assert_eq!(d.entity_kinds, vec![EntityKind::User, EntityKind::Group]);
    assert!(!d.operations.contains(&Operation::Read) && !d.operations.contains(&Operation::Get));
    assert!(d.operations.contains(&Operation::Patch));
    let prop = |n: &str| d.properties.iter().find(|p| p.name == n);
    assert!(prop("URL").is_some_and(|p| p.required));
    assert!(prop("Password").is_some_and(|p| p.secret));
    assert_eq!(prop("Version").and_then(|p| p.default_value.as_deref()), Some("2"));
    assert!(prop("OAuth2TokenServiceURL").is_some());
    assert!(prop("provisio.rate.limit").is_some_and(|p| p.default_value.is_some()));
    assert!(d.default_read_transformation.is_none());
    let write: Value = serde_json::from_str(d.default_write_transformation.as_deref().expect("write")).expect("json");
    provisio_transform::Transformation::parse(&write).expect("the default parses");
}

#[test]
fn validates_the_url_and_version() {
    let user_url = cfg("2").with("URL", format!("{URL}/user"));
    match IpsTarget::test_connection(&user_url) {
        Err(Error::InvalidConfig(m)) => {
            assert!(m.contains(&format!("Set it to `{URL}`")), "{m}")
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "ftp://x/systems/a/entities",
        "https://ips.example/ipsproxy/api/v1/scim/a/Users",
        "https://x/systems/a/entities?x=1",
    ] {
        assert!(
            matches!(IpsTarget::test_connection(&cfg("2").with("URL", bad)), Err(Error::InvalidConfig(m)) if m.contains("URL")),
            "{bad}"
        );
    }
    assert!(matches!(
        IpsTarget::test_connection(&cfg("3")),
        Err(Error::InvalidConfig(m)) if m.contains("Version")
    ));
    let cert = cfg("2").with("Authentication", "ClientCertificateAuthentication");
    assert!(matches!(
        IpsTarget::create(&cert, EntityKind::User, "{}"),
        Err(Error::InvalidConfig(m)) if m.contains("not supported yet")
    ));
    // A trailing slash and the /ipsproxy/service form are fine.
    let mut h = Harness::new();
    h.expect(Exchange::get("user").respond_empty(405));
    let service = cfg("1").with("URL", "https://t.example/ipsproxy/service/api/v1/systems/x/entities/");
    assert_eq!(
        h.run(|| IpsTarget::test_connection(&service)),
        Ok(CONNECTION_OK.to_string())
    );
}

#[test]
fn test_connection_sends_a_harmless_get() {
    let mut h = Harness::new();
    h.expect(Exchange::get("user").respond_empty(405));
    assert_eq!(
        h.run(|| IpsTarget::test_connection(&cfg("2"))),
        Ok(CONNECTION_OK.to_string())
    );
    h.expect(Exchange::get("user").respond(401, json!({"detail": "Bad credentials"})));
    match h.run(|| IpsTarget::test_connection(&cfg("2"))) {
        Err(Error::Unauthorized(m)) => assert!(
            m.contains("refused the credentials") && m.contains("Bad credentials"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    h.expect(Exchange::get("user").respond_empty(404));
    assert!(
        matches!(h.run(|| IpsTarget::test_connection(&cfg("2"))), Err(Error::InvalidConfig(m)) if m.contains("source system id"))
    );
    h.expect(Exchange::get("user").fail(HostError::AuthFailed(
        "the token endpoint refused the client credentials (HTTP 401: no)".into(),
    )));
    assert!(matches!(
        h.run(|| IpsTarget::test_connection(&cfg("2"))),
        Err(Error::Unauthorized(_))
    ));
    h.expect(Exchange::get("user").fail(HostError::Unreachable("connection refused".into())));
    assert!(matches!(
        h.run(|| IpsTarget::test_connection(&cfg("2"))),
        Err(Error::Transient(_))
    ));
}

#[test]
fn reading_is_unsupported() {
    let req = PageRequest {
        kind: EntityKind::User,
        cursor: None,
        page_size: 10,
        filter: None,
        delta_since: None,
    };
    assert!(matches!(IpsTarget::read(&cfg("2"), &req), Err(Error::Unsupported(m)) if m.contains("only receives")));
    assert!(matches!(
        IpsTarget::get(&cfg("2"), EntityKind::Group, "g"),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn pushes_users_in_version_2() {
    let mut h = Harness::new();
    let user = json!({"id": "P1", "userName": "jdoe", "meta": {"created": "x"},
        SAP_USER_EXT: {"userUuid": "uu-1", "mailVerified": true}});
    let sent = json!({"id": "P1", "userName": "jdoe", SAP_USER_EXT: {"userUuid": "uu-1", "mailVerified": true},
        "schemas": [USER_SCHEMA, SAP_USER_EXT]});
    h.expect(
        Exchange::post("user")
            .body_json(sent.clone())
            .header("Content-Type", "application/scim+json")
            .respond_empty(201),
    );
    let created = h
        .run(|| IpsTarget::create(&cfg("2"), EntityKind::User, &user.to_string()))
        .expect("created");
    assert_eq!(parsed(&created), sent, "an empty answer returns what was sent");

    h.expect(
        Exchange::put("user/P1")
            .body_json(sent.clone())
            .respond(200, sent.clone()),
    );
    let replaced = h.run(|| IpsTarget::replace(&cfg("2"), EntityKind::User, "P1", &user.to_string()));
    assert_eq!(parsed(&replaced.expect("replaced"))["id"], "P1");

    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    h.expect(Exchange::patch("user/P1").respond_empty(204));
    assert_eq!(
        h.run(|| IpsTarget::patch(&cfg("2"), EntityKind::User, "P1", &ops.to_string())),
        Ok(None)
    );
    assert_eq!(
        h.requests().last().and_then(|r| r.json()).map(|b| b["schemas"].clone()),
        Some(json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]))
    );

    h.expect(Exchange::delete("user/P1").respond_empty(204));
    assert_eq!(h.run(|| IpsTarget::delete(&cfg("2"), EntityKind::User, "P1")), Ok(()));
    h.expect(Exchange::delete("user/P1").respond_empty(404));
    assert!(matches!(
        h.run(|| IpsTarget::delete(&cfg("2"), EntityKind::User, "P1")),
        Err(Error::NotFound(_))
    ));
    h.expect(
        Exchange::put("group/a%2Fb")
            .respond(429, json!({}))
            .with_header("Retry-After", "9"),
    );
    match h.run(|| IpsTarget::replace(&cfg("2"), EntityKind::Group, "a/b", "{\"displayName\": \"x\"}")) {
        Err(Error::Throttled(t)) => assert_eq!(t.retry_after_ms, Some(9000)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_1_flattens_and_has_no_patch() {
    let mut h = Harness::new();
    let user = json!({"userName": "jdoe", SAP_USER_EXT: {"userUuid": "uu-1"}});
    h.expect(
        Exchange::post("user")
            .body_json(json!({"userName": "jdoe", "userUuid": "uu-1", "schemas": [USER_SCHEMA]}))
            .respond(201, json!({"id": "P9", "userName": "jdoe"})),
    );
    let created = h.run(|| IpsTarget::create(&cfg("1"), EntityKind::User, &user.to_string()));
    assert_eq!(parsed(&created.expect("created"))["id"], "P9");
    assert!(matches!(
        IpsTarget::patch(&cfg("1"), EntityKind::User, "P9", "{\"Operations\": []}"),
        Err(Error::Unsupported(m)) if m.contains("no PATCH")
    ));
    // Without an id anywhere, the host could never address the entity again.
    h.expect(Exchange::post("group").respond_empty(204));
    assert!(matches!(
        h.run(|| IpsTarget::create(&cfg("1"), EntityKind::Group, "{\"displayName\": \"T\"}")),
        Err(Error::Rejected(r)) if r.detail.contains("$.id")
    ));
    h.expect(Exchange::post("group").respond(409, json!({"detail": "exists"})));
    assert!(matches!(
        h.run(|| IpsTarget::create(&cfg("1"), EntityKind::Group, "{\"id\": \"g\", \"displayName\": \"T\"}")),
        Err(Error::Conflict(_))
    ));
}
