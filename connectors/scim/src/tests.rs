//! The connector against canned exchanges, with the SDK's harness.

use provisio_sdk::http::HostError;
use provisio_sdk::testing::{Exchange, Harness};
use provisio_sdk::{Config, Connector, EntityKind, Error, Operation, PageRequest};
use serde_json::{Value, json};

use crate::{CONNECTION_OK, Scim};

fn cfg() -> Config {
    Config::new("sys-1")
        .with("URL", "http://scim.example/v2")
        .with("Authentication", "BearerToken")
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

fn user(id: &str, version: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "userName": format!("user{id}"),
           "meta": {"resourceType": "User", "version": version}})
}

fn list(resources: Vec<Value>, start: u64, total: u64) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": total,
           "startIndex": start, "itemsPerPage": resources.len(), "Resources": resources})
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the connector returns JSON")
}

#[test]
fn describes_itself() {
    let d = Scim::describe();
    assert_eq!(d.name, "scim");
    assert_eq!(d.entity_kinds, vec![EntityKind::User, EntityKind::Group]);
    assert_eq!(d.operations, Operation::ALL.to_vec());
    let names: Vec<&str> = d.properties.iter().map(|p| p.name.as_str()).collect();
    for p in [
        "URL",
        "Authentication",
        "User",
        "Password",
        "OAuth2TokenServiceURL",
        "scim.user.filter",
        "scim.group.filter",
        "scim.support.patch.operation",
        "scim.user.unique.attribute",
        "scim.group.unique.attribute",
        "scim.content.type",
        "ips.http.header.<name>",
    ] {
        assert!(names.contains(&p), "{p} is described");
    }
    assert!(d.properties.iter().any(|p| p.name == "Password" && p.secret));
    assert!(d.properties.iter().any(|p| p.name == "URL" && p.required));
    assert!(d.properties.iter().all(|p| !p.doc.is_empty() && !p.doc.contains('\n')));
    for t in [d.default_read_transformation, d.default_write_transformation] {
        let t: Value = serde_json::from_str(&t.expect("a default transformation")).expect("valid JSON");
        assert!(t["user"]["mappings"].is_array() && t["group"]["mappings"].is_array());
        assert_eq!(t["user"]["scimEntityEndpoint"], "Users");
        assert_eq!(t["group"]["scimEntityEndpoint"], "Groups");
    }
    let read = crate::READ_TRANSFORMATION;
    let write = crate::WRITE_TRANSFORMATION;
    assert_eq!(read.matches("\"targetVariable\": \"entityIdSourceSystem\"").count(), 2);
    assert_eq!(write.matches("\"sourceVariable\": \"entityIdTargetSystem\"").count(), 2);
    for dropped in ["$.meta", "$.groups"] {
        assert!(
            write.contains(&format!("\"targetPath\": \"{dropped}\"")),
            "write drops {dropped}"
        );
    }
}

#[test]
fn test_connection_succeeds_with_the_sap_message() {
    let mut h = Harness::new();
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(200, list(vec![user("1", "W/\"1\"")], 1, 5)));
    assert_eq!(h.run(|| Scim::test_connection(&cfg())), Ok(CONNECTION_OK.to_string()));
}

#[test]
fn test_connection_reports_refused_credentials_and_unreachable_systems() {
    let mut h = Harness::new();
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(401, json!({"detail": "bad token"})));
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond_empty(403));
    h.expect(Exchange::get("Users?startIndex=1&count=1").fail(HostError::Unreachable("connection refused".into())));
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond_text(404, "<html>nope</html>"));
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond_text(200, "<html>hello</html>"));
    let results: Vec<_> = h.run(|| (0..5).map(|_| Scim::test_connection(&cfg())).collect());
    assert!(
        matches!(&results[0], Err(Error::Unauthorized(m)) if m.contains("refused the credentials") && m.contains("bad token"))
    );
    assert!(matches!(&results[1], Err(Error::Unauthorized(m)) if m.contains("HTTP 403")));
    assert!(matches!(&results[2], Err(Error::Transient(m)) if m.contains("could not be reached")));
    assert!(matches!(&results[3], Err(Error::InvalidConfig(m)) if m.contains("`URL`")));
    assert!(matches!(&results[4], Err(Error::InvalidConfig(m)) if m.contains("not as a SCIM service")));
}

#[test]
fn invalid_configuration_is_reported_without_a_request() {
    let mut h = Harness::new();
    let no_url = Config::new("s");
    let bad_auth = cfg().with("Authentication", "Kerberos");
    let bad_url = cfg().with("URL", "ftp://x");
    let oauth = cfg()
        .with("Authentication", "Whatever")
        .with("OAuth2TokenServiceURL", "http://t/oauth/token");
    h.run(|| {
        assert!(matches!(Scim::test_connection(&no_url), Err(Error::InvalidConfig(m)) if m.contains("`URL`")));
        assert!(matches!(Scim::test_connection(&bad_auth), Err(Error::InvalidConfig(m)) if m.contains("Kerberos")));
        assert!(matches!(
            Scim::get(&bad_url, EntityKind::User, "1"),
            Err(Error::InvalidConfig(_))
        ));
    });
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(200, list(vec![], 1, 0)));
    assert_eq!(h.run(|| Scim::test_connection(&oauth)), Ok(CONNECTION_OK.to_string()));
}

#[test]
fn reads_users_across_pages() {
    let mut h = Harness::new();
    h.expect(
        Exchange::get("Users?startIndex=1&count=2").respond(200, list(vec![user("1", "v"), user("2", "v")], 1, 5)),
    )
    .expect(Exchange::get("Users?startIndex=3&count=2").respond(200, list(vec![user("3", "v"), user("4", "v")], 3, 5)))
    .expect(Exchange::get("Users?startIndex=5&count=2").respond(200, list(vec![user("5", "v")], 5, 5)));
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let p = h
            .run(|| Scim::read(&cfg(), &page(EntityKind::User, cursor.as_deref(), 2)))
            .expect("a page");
        assert_eq!(p.total, Some(5));
        ids.extend(
            p.entities
                .iter()
                .map(|e| parsed(e)["id"].as_str().unwrap_or_default().to_string()),
        );
        pages += 1;
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
}

#[test]
fn reads_groups_in_the_uaa_shape_and_stops_on_an_empty_page() {
    let mut h = Harness::new();
    h.expect(Exchange::get("Groups?startIndex=1&count=100").respond(
        200,
        json!({"resources": [{"id": "g1", "displayName": "G"}], "startIndex": 1, "itemsPerPage": 1, "totalResults": 1}),
    ));
    h.expect(Exchange::get("Groups?startIndex=7&count=100").respond(200, json!({"Resources": [], "totalResults": 9})));
    let first = h
        .run(|| Scim::read(&cfg(), &page(EntityKind::Group, None, 100)))
        .expect("a page");
    assert_eq!(first.entities.len(), 1);
    assert_eq!(first.next_cursor, None);
    let empty = h
        .run(|| Scim::read(&cfg(), &page(EntityKind::Group, Some("7"), 100)))
        .expect("a page");
    assert!(empty.entities.is_empty() && empty.next_cursor.is_none());
}

#[test]
fn combines_filters_and_delta_reads() {
    let cfg = cfg().with("scim.user.filter", "active eq true");
    let mut req = page(EntityKind::User, None, 10);
    req.filter = Some(r#"userName eq "a b""#.into());
    req.delta_since = Some("2026-11-01T00:00:00Z".into());
    let mut h = Harness::new();
    h.expect(Exchange::get(
        r#"Users?startIndex=1&count=10&filter=(active eq true) and (userName eq "a b") and (meta.lastModified gt "2026-11-01T00:00:00Z")"#,
    )
    .respond(200, list(vec![], 1, 0)));
    h.run(|| Scim::read(&cfg, &req)).expect("a page");
    let sent = &h.requests()[0].path;
    assert!(
        sent.contains("filter=%28active%20eq%20true%29%20and%20%28userName%20eq%20%22a%20b%22%29"),
        "{sent}"
    );
}

#[test]
fn a_refused_delta_filter_is_unsupported_and_a_refused_system_filter_is_invalid_config() {
    let mut delta = page(EntityKind::User, None, 10);
    delta.delta_since = Some("2026-11-01T00:00:00Z".into());
    let mut h = Harness::new();
    h.expect(
        Exchange::get(r#"Users?startIndex=1&count=10&filter=meta.lastModified gt "2026-11-01T00:00:00Z""#)
            .respond(400, json!({"scimType": "invalidFilter", "detail": "no"})),
    );
    assert!(matches!(
        h.run(|| Scim::read(&cfg(), &delta)),
        Err(Error::Unsupported(_))
    ));
    let filtered = cfg().with("scim.group.filter", "bogus");
    h.expect(Exchange::get("Groups?startIndex=1&count=10&filter=bogus").respond(400, json!({"detail": "bad filter"})));
    let r = h.run(|| Scim::read(&filtered, &page(EntityKind::Group, None, 10)));
    assert!(matches!(r, Err(Error::InvalidConfig(m)) if m.contains("scim.group.filter") && m.contains("bad filter")));
}

#[test]
fn maps_failure_statuses() {
    let mut h = Harness::new();
    let path = "Users?startIndex=1&count=10";
    h.expect(Exchange::get(path).respond(401, json!({"detail": "no"})))
        .expect(Exchange::get(path).respond(409, json!({"scimType": "uniqueness", "detail": "dup"})))
        .expect(Exchange::get(path).respond_empty(429).with_header("Retry-After", "3"))
        .expect(Exchange::get(path).respond_text(500, "boom"))
        .expect(Exchange::get(path).respond(400, json!({"detail": "nope"})))
        .expect(Exchange::get(path).fail(HostError::Timeout("after 30 s".into())));
    let r: Vec<_> = h.run(|| {
        (0..6)
            .map(|_| Scim::read(&cfg(), &page(EntityKind::User, None, 10)))
            .collect()
    });
    assert!(matches!(&r[0], Err(Error::Unauthorized(_))));
    assert!(matches!(&r[1], Err(Error::Conflict(m)) if m.contains("dup")));
    assert!(matches!(&r[2], Err(Error::Throttled(t)) if t.retry_after_ms == Some(3000)));
    assert!(matches!(&r[3], Err(Error::Transient(m)) if m.contains("500") && m.contains("boom")));
    assert!(matches!(&r[4], Err(Error::Rejected(x)) if x.status == 400 && x.detail == "nope"));
    assert!(matches!(&r[5], Err(Error::Transient(m)) if m.contains("in time")));
}

#[test]
fn gets_one_entity_and_reports_not_found() {
    let mut h = Harness::new();
    h.expect(Exchange::get("Users/a%2Fb").respond(200, user("a/b", "v")));
    h.expect(Exchange::get("Groups/g9").respond(404, json!({"detail": "Resource g9 not found"})));
    let u = h.run(|| Scim::get(&cfg(), EntityKind::User, "a/b")).expect("the user");
    assert_eq!(parsed(&u)["id"], "a/b");
    let e = h.run(|| Scim::get(&cfg(), EntityKind::Group, "g9"));
    assert!(matches!(e, Err(Error::NotFound(m)) if m.contains("group `g9`")));
}

#[test]
fn creates_with_the_configured_headers() {
    let cfg = cfg()
        .with("ips.http.header.X-Tenant", "t1")
        .with("scim.content.type", "application/json");
    let body = json!({"userName": "jdoe"});
    let mut h = Harness::new();
    h.expect(
        Exchange::post("Users")
            .body_json(body.clone())
            .header("X-Tenant", "t1")
            .header("Content-Type", "application/json")
            .respond(201, user("42", "W/\"1\"")),
    );
    let created = h
        .run(|| Scim::create(&cfg, EntityKind::User, &body.to_string()))
        .expect("created");
    assert_eq!(parsed(&created)["id"], "42");
    assert_eq!(
        h.requests()[0].header("accept"),
        Some("application/scim+json, application/json")
    );
    let default_ct = crate::tests::cfg();
    h.expect(
        Exchange::post("Groups")
            .header("Content-Type", "application/scim+json")
            .respond(201, json!({"id": "g"})),
    );
    h.run(|| Scim::create(&default_ct, EntityKind::Group, r#"{"displayName":"G"}"#))
        .expect("created");
    assert!(matches!(
        h.run(|| Scim::create(&default_ct, EntityKind::User, "not json")),
        Err(Error::Rejected(_))
    ));
}

#[test]
fn a_conflicting_create_updates_the_single_match() {
    let body = json!({"userName": "jdoe", "emails": [{"value": "j@x"}]});
    let existing = json!({"id": "7", "userName": "jdoe", "meta": {"version": "W/\"4\""}});
    let cfg = cfg().with("scim.user.unique.attribute", "userName,emails[0].value");
    let mut h = Harness::new();
    h.expect(Exchange::post("Users").respond(409, json!({"scimType": "uniqueness", "detail": "exists"})))
        .expect(
            Exchange::get(r#"Users?filter=userName eq "jdoe" and emails.value eq "j@x""#)
                .respond(200, list(vec![existing], 1, 1)),
        )
        .expect(
            Exchange::put("Users/7")
                .header("If-Match", "W/\"4\"")
                .body_json(body.clone())
                .respond(200, user("7", "W/\"5\"")),
        );
    let r = h
        .run(|| Scim::create(&cfg, EntityKind::User, &body.to_string()))
        .expect("updated instead");
    assert_eq!(parsed(&r)["id"], "7");
    // No match (or several): the conflict stands.
    h.expect(Exchange::post("Groups").respond(409, json!({"detail": "exists"})))
        .expect(Exchange::get(r#"Groups?filter=displayName eq "G""#).respond(200, list(vec![], 1, 0)));
    let r = h.run(|| Scim::create(&crate::tests::cfg(), EntityKind::Group, r#"{"displayName":"G"}"#));
    assert!(matches!(r, Err(Error::Conflict(m)) if m.contains("exists")));
}

#[test]
fn replaces_with_if_match_and_a_stale_version_is_a_conflict() {
    // The version the entity carries is the caller's precondition: sent as If-Match, and a stale one is a
    // conflict at once (a re-read and retry would overwrite the change made meanwhile).
    let entity = user("5", "W/\"1\"");
    let mut h = Harness::new();
    h.expect(
        Exchange::put("Users/5")
            .header("If-Match", "W/\"1\"")
            .respond(412, json!({"detail": "stale"})),
    );
    let r = h.run(|| Scim::replace(&cfg(), EntityKind::User, "5", &entity.to_string()));
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert_eq!(h.requests().len(), 1);
    h.expect(
        Exchange::put("Users/5")
            .header("If-Match", "W/\"2\"")
            .respond(200, user("5", "W/\"3\"")),
    );
    let r = h
        .run(|| Scim::replace(&cfg(), EntityKind::User, "5", &user("5", "W/\"2\"").to_string()))
        .expect("replaced");
    assert_eq!(parsed(&r)["meta"]["version"], "W/\"3\"");
    // Without a version: no If-Match (or `*` when configured); a stale answer then is a conflict.
    h.expect(Exchange::put("Groups/g").respond(412, json!({"detail": "stale"})));
    let r = h.run(|| Scim::replace(&cfg(), EntityKind::Group, "g", r#"{"displayName":"G"}"#));
    assert!(matches!(r, Err(Error::Conflict(_))));
    assert_eq!(h.requests()[2].header("If-Match"), None);
    let wildcard = cfg().with("scim.include.if.match.wildcard.header", "true");
    h.expect(
        Exchange::put("Groups/g")
            .header("If-Match", "*")
            .respond(200, json!({"id": "g"})),
    );
    h.run(|| Scim::replace(&wildcard, EntityKind::Group, "g", r#"{"displayName":"G"}"#))
        .expect("replaced");
    h.expect(Exchange::put("Users/404").respond(404, json!({"detail": "gone"})));
    assert!(matches!(
        h.run(|| Scim::replace(&cfg(), EntityKind::User, "404", "{}")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn patches_with_patch_when_supported() {
    let cfg = cfg().with("scim.support.patch.operation", "true");
    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    let mut sent = ops.clone();
    sent["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
    let mut h = Harness::new();
    h.expect(Exchange::patch("Users/1").body_json(sent.clone()).respond_empty(204))
        .expect(Exchange::patch("Users/1").body_json(sent).respond(200, user("1", "v2")))
        .expect(Exchange::patch("Users/2").respond(404, json!({"detail": "no"})));
    assert_eq!(
        h.run(|| Scim::patch(&cfg, EntityKind::User, "1", &ops.to_string())),
        Ok(None)
    );
    let r = h
        .run(|| Scim::patch(&cfg, EntityKind::User, "1", &ops.to_string()))
        .expect("patched");
    assert_eq!(parsed(&r.expect("the entity"))["id"], "1");
    assert!(matches!(
        h.run(|| Scim::patch(&cfg, EntityKind::User, "2", &ops.to_string())),
        Err(Error::NotFound(_))
    ));
    assert!(
        matches!(h.run(|| Scim::patch(&cfg, EntityKind::User, "1", r#"{"Operations":[]}"#)), Err(Error::Rejected(r)) if r.status == 400)
    );
}

#[test]
fn patches_with_get_and_put_when_patch_is_off() {
    let group = json!({"id": "g1", "displayName": "G", "members": [{"value": "u1"}, {"value": "u2"}], "meta": {"version": "W/\"7\""}});
    let ops = json!({"Operations": [
        {"op": "remove", "path": "members[value eq \"u1\"]"},
        {"op": "add", "path": "members", "value": [{"value": "u3"}]}]});
    let expected = json!({"id": "g1", "displayName": "G", "members": [{"value": "u2"}, {"value": "u3"}]});
    let mut h = Harness::new();
    h.expect(Exchange::get("Groups/g1").respond(200, group.clone()))
        .expect(
            Exchange::put("Groups/g1")
                .header("If-Match", "W/\"7\"")
                .body_json(expected.clone())
                .respond(412, json!({})),
        )
        .expect(Exchange::get("Groups/g1").respond(200, group))
        .expect(
            Exchange::put("Groups/g1")
                .body_json(expected.clone())
                .respond(200, expected.clone()),
        );
    let r = h
        .run(|| Scim::patch(&cfg(), EntityKind::Group, "g1", &ops.to_string()))
        .expect("patched");
    assert_eq!(parsed(&r.expect("the entity")), expected);
    h.expect(Exchange::get("Groups/g2").respond(404, json!({})));
    assert!(matches!(
        h.run(|| Scim::patch(&cfg(), EntityKind::Group, "g2", &ops.to_string())),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn falls_back_to_get_and_put_when_patch_is_refused() {
    let cfg = cfg().with("scim.support.patch.operation", "true");
    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    let mut h = Harness::new();
    h.expect(Exchange::patch("Users/1").respond(405, json!({"detail": "Method Not Allowed"})))
        .expect(Exchange::get("Users/1").respond(200, json!({"id": "1", "active": true})))
        .expect(
            Exchange::put("Users/1")
                .body_json(json!({"id": "1", "active": false}))
                .respond(200, json!({"id": "1", "active": false})),
        );
    let r = h
        .run(|| Scim::patch(&cfg, EntityKind::User, "1", &ops.to_string()))
        .expect("patched");
    assert_eq!(parsed(&r.expect("the entity"))["active"], false);
    assert!(h.logs().iter().any(|(_, line)| line.contains("refused PATCH")));
}

#[test]
fn deletes_and_reports_not_found() {
    let mut h = Harness::new();
    h.expect(Exchange::delete("Users/1").respond_empty(204))
        .expect(Exchange::delete("Groups/2").respond(200, json!({"id": "2"})))
        .expect(Exchange::delete("Users/1").respond(404, json!({"detail": "Resource 1 not found"})));
    assert_eq!(h.run(|| Scim::delete(&cfg(), EntityKind::User, "1")), Ok(()));
    assert_eq!(h.run(|| Scim::delete(&cfg(), EntityKind::Group, "2")), Ok(()));
    assert!(
        matches!(h.run(|| Scim::delete(&cfg(), EntityKind::User, "1")), Err(Error::NotFound(m)) if m.contains("user `1`"))
    );
}

fn resource_types(user_extensions: Value) -> Value {
    list(
        vec![
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
                   "endpoint": "/Users", "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
                   "schemaExtensions": user_extensions}),
            json!({"id": "Group", "name": "Group", "endpoint": "/Groups",
                   "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"}),
        ],
        1,
        2,
    )
}

#[test]
fn writes_carry_only_the_extensions_the_system_declares() {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const SAP: &str = "urn:sap:cloud:scim:schemas:extension:custom:2.0:User";
    let entity = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE, SAP],
        "userName": "jdoe", ENTERPRISE: {"employeeNumber": "7"}, SAP: {"attributes": [{"name": "a", "value": "1"}]}});
    let sent = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "jdoe", ENTERPRISE: {"employeeNumber": "7"}});
    let mut h = Harness::new();
    h.expect(
        Exchange::get("ResourceTypes").respond(200, resource_types(json!([{"schema": ENTERPRISE, "required": false}]))),
    )
    .expect(
        Exchange::post("Users")
            .body_json(sent.clone())
            .respond(201, user("1", "W/\"1\"")),
    );
    h.run(|| Scim::create(&cfg(), EntityKind::User, &entity.to_string()))
        .expect("created");
    assert!(h.logs().iter().any(|(_, l)| l.contains(SAP) && l.contains("left out")));
    // Learnt once: the next write goes straight out; a group names no extension and needs no discovery.
    h.expect(
        Exchange::put("Users/1")
            .body_json(sent.clone())
            .respond(200, user("1", "W/\"2\"")),
    );
    h.run(|| Scim::replace(&cfg(), EntityKind::User, "1", &entity.to_string()))
        .expect("replaced");
    let group = json!({"displayName": "G", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group"]});
    h.expect(
        Exchange::post("Groups")
            .body_json(json!({"displayName": "G", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}))
            .respond(201, json!({"id": "g"})),
    );
    h.run(|| Scim::create(&cfg(), EntityKind::Group, &group.to_string()))
        .expect("created");
    // A patch of an undeclared extension only: nothing is sent, the entity is read back.
    let cfg = cfg().with("scim.support.patch.operation", "true");
    let ops = json!({"Operations": [{"op": "replace", "path": format!("{SAP}:attributes"), "value": []}]});
    h.expect(Exchange::get("Users/1").respond(200, user("1", "W/\"2\"")));
    let r = h
        .run(|| Scim::patch(&cfg, EntityKind::User, "1", &ops.to_string()))
        .expect("patched");
    assert_eq!(parsed(&r.expect("entity"))["id"], "1");
    h.assert_done();
}

#[test]
fn a_system_without_discovery_gets_every_extension() {
    const SAP: &str = "urn:sap:cloud:scim:schemas:extension:custom:2.0:User";
    let entity = json!({"userName": "jdoe", SAP: {"attributes": []}});
    let mut h = Harness::new();
    h.expect(Exchange::get("ResourceTypes").respond(404, json!({"detail": "no such endpoint"})))
        .expect(
            Exchange::post("Users")
                .body_json(entity.clone())
                .respond(201, user("1", "W/\"1\"")),
        )
        .expect(
            Exchange::post("Users")
                .body_json(entity.clone())
                .respond(201, user("2", "W/\"1\"")),
        );
    for _ in 0..2 {
        h.run(|| Scim::create(&cfg(), EntityKind::User, &entity.to_string()))
            .expect("created");
    }
    h.assert_done();
}
