//! The connector against canned UAA exchanges, with the SDK's harness.

use provisio_sdk::http::HostError;
use provisio_sdk::testing::{Exchange, Harness};
use provisio_sdk::{Config, Connector, EntityKind, Error, Operation, PageRequest};
use serde_json::{Value, json};

use crate::{CONNECTION_OK, Xsuaa};

fn cfg() -> Config {
    Config::new("sys-1")
        .with("URL", "https://api.authentication.eu10.hana.ondemand.com")
        .with(
            "OAuth2TokenServiceURL",
            "https://sub.authentication.eu10.hana.ondemand.com/oauth/token",
        )
        .with("User", "sb-client!a1")
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

fn user(id: &str, origin: &str, version: u64) -> Value {
    json!({"id": id, "userName": "jdoe", "origin": origin, "emails": [{"value": "j@x", "primary": true}],
           "groups": [{"value": "g", "display": "G", "type": "DIRECT"}], "zoneId": "z",
           "meta": {"version": version, "created": "2026-01-01T00:00:00.000Z"}, "schemas": ["urn:scim:schemas:core:1.0"]})
}

fn group(id: &str, version: u64, members: Value) -> Value {
    json!({"id": id, "displayName": id, "zoneId": "z", "members": members,
           "meta": {"version": version}, "schemas": ["urn:scim:schemas:core:1.0"]})
}

fn list(resources: Vec<Value>, start: u64, per: u64, total: u64) -> Value {
    json!({"resources": resources, "startIndex": start, "itemsPerPage": per, "totalResults": total,
           "schemas": ["urn:scim:schemas:core:1.0"]})
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the connector returns JSON")
}

#[test]
fn describes_itself_with_sap_defaults() {
    let d = Xsuaa::describe();
    assert_eq!(d.name, "xsuaa");
    assert_eq!(d.entity_kinds, vec![EntityKind::User, EntityKind::Group]);
    assert_eq!(d.operations, Operation::ALL.to_vec());
    for p in [
        "URL",
        "OAuth2TokenServiceURL",
        "User",
        "Password",
        "xsuaa.origin",
        "xsuaa.origin.filter.enabled",
        "scim.support.patch.operation",
        "xsuaa.patch.response.with.resource",
        "xsuaa.group.prefix",
        "xsuaa.user.unique.attribute",
        "provisio.rate.limit",
    ] {
        assert!(d.properties.iter().any(|s| s.name == p), "{p} is described");
    }
    let rate = d.properties.iter().find(|p| p.name == "provisio.rate.limit");
    assert_eq!(rate.and_then(|p| p.default_value.as_deref()), Some("3"));
    assert!(d.properties.iter().any(|p| p.name == "Password" && p.secret));
    assert!(d.properties.iter().all(|p| !p.doc.is_empty() && !p.doc.contains('\n')));
    let write: Value =
        serde_json::from_str(&d.default_write_transformation.unwrap_or_default()).expect("write is JSON");
    assert_eq!(
        write["user"]["mappings"][0]["constant"], "xsuaa-dummy-value",
        "SAP's target write transformation"
    );
    let read: Value = serde_json::from_str(&d.default_read_transformation.unwrap_or_default()).expect("read is JSON");
    assert_eq!(read["user"]["mappings"][0]["targetVariable"], "entityIdSourceSystem");
}

#[test]
fn default_transformations_load() {
    for (name, text) in [
        ("read", crate::READ_TRANSFORMATION),
        ("write", crate::WRITE_TRANSFORMATION),
        ("proxy read", crate::PROXY_READ_TRANSFORMATION),
        ("proxy write", crate::PROXY_WRITE_TRANSFORMATION),
    ] {
        let doc: Value = serde_json::from_str(text).expect("JSON");
        if let Err(e) = provisio_transform::Transformation::parse(&doc) {
            panic!("the {name} transformation does not load: {e}");
        }
    }
}

#[test]
fn test_connection_checks_the_users_endpoint() {
    let mut h = Harness::new();
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(200, list(vec![], 1, 1, 0)));
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond(
        403,
        json!({"error": "insufficient_scope", "error_description": "Insufficient scope for this resource"}),
    ));
    h.expect(Exchange::get("Users?startIndex=1&count=1").fail(HostError::AuthFailed(
        "the token endpoint refused the client credentials (HTTP 401: Bad credentials)".into(),
    )));
    h.expect(Exchange::get("Users?startIndex=1&count=1").respond_text(404, "nope"));
    h.expect(Exchange::get("Users?startIndex=1&count=1").fail(HostError::Unreachable("connection refused".into())));
    let results: Vec<_> = h.run(|| (0..5).map(|_| Xsuaa::test_connection(&cfg())).collect());
    assert_eq!(results[0], Ok(CONNECTION_OK.to_string()));
    assert!(
        matches!(&results[1], Err(Error::Unauthorized(m)) if m.contains("HTTP 403") && m.contains("Insufficient scope"))
    );
    assert!(
        matches!(&results[2], Err(Error::Unauthorized(m)) if m.contains("Bad credentials") && m.contains("client secret"))
    );
    assert!(matches!(&results[3], Err(Error::InvalidConfig(m)) if m.contains("`URL`")));
    assert!(matches!(&results[4], Err(Error::Transient(_))));
}

#[test]
fn origin_filter_without_origin_is_invalid_config() {
    let mut h = Harness::new();
    let bad = cfg().with("xsuaa.origin.filter.enabled", "true");
    let null = bad.clone().with("xsuaa.origin", " ; null ");
    h.run(|| {
        for c in [&bad, &null] {
            assert!(matches!(Xsuaa::test_connection(c), Err(Error::InvalidConfig(m)) if m.contains("xsuaa.origin")));
            assert!(matches!(
                Xsuaa::read(c, &page(EntityKind::User, None, 10)),
                Err(Error::InvalidConfig(_))
            ));
        }
        assert!(matches!(
            Xsuaa::get(&Config::new("x"), EntityKind::User, "1"),
            Err(Error::InvalidConfig(m)) if m.contains("`URL`")
        ));
    });
}

#[test]
fn reads_users_of_the_configured_origins_across_pages() {
    let c = cfg()
        .with("xsuaa.origin", "idp1;idp2")
        .with("xsuaa.origin.filter.enabled", "true");
    let filter = "origin eq \"idp1\" or origin eq \"idp2\"";
    let mut h = Harness::new();
    // UAA's itemsPerPage echoes the requested count, not the page's size.
    h.expect(
        Exchange::get(format!(
            "Users?startIndex=1&count=2&filter={}",
            provisio_sdk::http::encode_component(filter)
        ))
        .respond(200, list(vec![user("1", "idp1", 0), user("2", "idp2", 0)], 1, 2, 3)),
    );
    h.expect(
        Exchange::get(format!(
            "Users?startIndex=3&count=2&filter={}",
            provisio_sdk::http::encode_component(filter)
        ))
        .respond(200, list(vec![user("3", "idp1", 0)], 3, 2, 3)),
    );
    let first = h
        .run(|| Xsuaa::read(&c, &page(EntityKind::User, None, 2)))
        .expect("page 1");
    assert_eq!(first.entities.len(), 2);
    assert_eq!(first.total, Some(3));
    let second = h
        .run(|| Xsuaa::read(&c, &page(EntityKind::User, first.next_cursor.as_deref(), 2)))
        .expect("page 2");
    assert_eq!(second.entities.len(), 1);
    assert_eq!(second.next_cursor, None);
    // Groups are not filtered by origin; the page size is capped at UAA's 500.
    h.expect(Exchange::get("Groups?startIndex=1&count=500").respond(200, list(vec![], 1, 500, 0)));
    let groups = h
        .run(|| Xsuaa::read(&c, &page(EntityKind::Group, None, 1000)))
        .expect("groups");
    assert!(groups.entities.is_empty() && groups.next_cursor.is_none());
}

#[test]
fn creates_one_user_per_origin_without_read_only_attributes() {
    let c = cfg().with("xsuaa.origin", "idp1;idp2");
    // What SAP's write transformation makes: the dummy id and the origin list from %xsuaa.origin%.
    let entity = json!({"id": "xsuaa-dummy-value", "userName": "jdoe", "emails": [{"value": "j@x", "primary": true}],
                        "origin": "idp1;idp2", "schemas": ["urn:scim:schemas:core:1.0"]});
    let sent = |o: &str| {
        json!({"userName": "jdoe", "emails": [{"value": "j@x", "primary": true}], "origin": o,
               "schemas": ["urn:scim:schemas:core:1.0"]})
    };
    let mut h = Harness::new();
    h.expect(
        Exchange::post("Users")
            .body_json(sent("idp1"))
            .respond(201, user("u1", "idp1", 0)),
    );
    h.expect(
        Exchange::post("Users")
            .body_json(sent("idp2"))
            .respond(201, user("u2", "idp2", 0)),
    );
    let created = h
        .run(|| Xsuaa::create(&c, EntityKind::User, &entity.to_string()))
        .expect("created");
    assert_eq!(parsed(&created)["id"], "u1");

    // No origin configured: `null` from the placeholder is dropped and the server's default applies.
    let plain = json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "origin": "null"});
    h.expect(
        Exchange::post("Users")
            .body_json(
                json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "schemas": ["urn:scim:schemas:core:1.0"]}),
            )
            .respond(201, user("u3", "uaa", 0)),
    );
    h.run(|| Xsuaa::create(&cfg(), EntityKind::User, &plain.to_string()))
        .expect("created");
}

#[test]
fn create_conflict_overwrites_the_existing_user_of_that_origin() {
    let c = cfg().with("xsuaa.origin", "sap.custom");
    let entity = json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "origin": "sap.custom"});
    let mut h = Harness::new();
    h.expect(Exchange::post("Users").respond(
        409,
        json!({"error": "scim_resource_already_exists", "error_description": "Username already in use: jdoe", "user_id": "u9"}),
    ));
    h.expect(
        Exchange::get(format!(
            "Users?startIndex=1&count=100&filter={}",
            provisio_sdk::http::encode_component("userName eq \"jdoe\" and origin eq \"sap.custom\"")
        ))
        .respond(200, list(vec![user("u9", "sap.custom", 4)], 1, 100, 1)),
    );
    h.expect(
        Exchange::put("Users/u9")
            .header("If-Match", "\"4\"")
            .respond(200, user("u9", "sap.custom", 5)),
    );
    let out = h
        .run(|| Xsuaa::create(&c, EntityKind::User, &entity.to_string()))
        .expect("resolved");
    assert_eq!(parsed(&out)["meta"]["version"], 5);

    // Two matches: the conflict stays.
    h.expect(Exchange::post("Users").respond(409, json!({"error": "scim_resource_already_exists"})));
    h.expect(
        Exchange::get(format!(
            "Users?startIndex=1&count=100&filter={}",
            provisio_sdk::http::encode_component("userName eq \"jdoe\" and origin eq \"sap.custom\"")
        ))
        .respond(
            200,
            list(vec![user("a", "sap.custom", 0), user("b", "sap.custom", 0)], 1, 100, 2),
        ),
    );
    assert!(matches!(
        h.run(|| Xsuaa::create(&c, EntityKind::User, &entity.to_string())),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn replace_rereads_and_retries_once_on_a_stale_version() {
    let entity = json!({"id": "u1", "userName": "jdoe", "emails": [{"value": "new@x"}], "origin": "null"});
    let sent = json!({"userName": "jdoe", "emails": [{"value": "new@x"}], "origin": "idp1",
                      "schemas": ["urn:scim:schemas:core:1.0"]});
    for stale in [409, 412, 422] {
        let mut h = Harness::new();
        h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 1)));
        h.expect(
            Exchange::put("Users/u1")
                .header("If-Match", "\"1\"")
                .body_json(sent.clone())
                .respond(
                    stale,
                    json!({"error": "scim_resource_conflict", "error_description": "wrong version"}),
                ),
        );
        h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 2)));
        h.expect(
            Exchange::put("Users/u1")
                .header("If-Match", "\"2\"")
                .body_json(sent.clone())
                .respond(200, user("u1", "idp1", 3)),
        );
        let out = h
            .run(|| Xsuaa::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()))
            .expect("replaced");
        assert_eq!(parsed(&out)["meta"]["version"], 3);
    }
    // Stale twice: a conflict. A uniqueness conflict is not retried.
    let mut h = Harness::new();
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 1)));
    h.expect(Exchange::put("Users/u1").respond(409, json!({"error": "scim_resource_conflict"})));
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 2)));
    h.expect(Exchange::put("Users/u1").respond(409, json!({"error": "scim_resource_conflict"})));
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 1)));
    h.expect(Exchange::put("Users/u1").respond(409, json!({"error": "scim_resource_already_exists"})));
    h.run(|| {
        for _ in 0..2 {
            assert!(matches!(
                Xsuaa::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()),
                Err(Error::Conflict(_))
            ));
        }
    });
}

#[test]
fn a_version_the_entity_carries_is_a_precondition_never_retried() {
    // The caller read version 7 and built the write from it: a concurrent change must not be overwritten.
    let entity = json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "origin": "idp1", "meta": {"version": 7}});
    for stale in [409, 412, 422] {
        let mut h = Harness::new();
        h.expect(Exchange::put("Users/u1").header("If-Match", "\"7\"").respond(
            stale,
            json!({"error": "scim_resource_conflict", "error_description": "wrong version"}),
        ));
        let out = h.run(|| Xsuaa::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()));
        assert!(matches!(out, Err(Error::Conflict(_))), "{stale}: {out:?}");
        assert_eq!(h.requests().len(), 1, "no re-read, no second PUT");
    }
    // Without a concrete origin the user is read first, but the If-Match is still the caller's version.
    let entity = json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "meta": {"version": 7}});
    let mut h = Harness::new();
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 8)));
    h.expect(
        Exchange::put("Users/u1")
            .header("If-Match", "\"7\"")
            .respond(409, json!({"error": "scim_resource_conflict"})),
    );
    let out = h.run(|| Xsuaa::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()));
    assert!(matches!(out, Err(Error::Conflict(_))), "{out:?}");
    // Groups alike.
    let g = json!({"id": "Admins", "displayName": "Admins", "meta": {"version": 2}, "members": []});
    let mut h = Harness::new();
    h.expect(
        Exchange::put("Groups/Admins")
            .header("If-Match", "\"2\"")
            .respond(409, json!({"error": "scim_resource_conflict"})),
    );
    let out = h.run(|| Xsuaa::replace(&cfg(), EntityKind::Group, "Admins", &g.to_string()));
    assert!(matches!(out, Err(Error::Conflict(_))), "{out:?}");
    assert_eq!(h.requests().len(), 1);
}

#[test]
fn replace_uses_the_version_the_entity_carries() {
    let entity = json!({"userName": "jdoe", "emails": [{"value": "j@x"}], "origin": "idp1", "meta": {"version": 7}});
    let mut h = Harness::new();
    h.expect(
        Exchange::put("Users/u1")
            .header("If-Match", "\"7\"")
            .respond(200, user("u1", "idp1", 8)),
    );
    h.run(|| Xsuaa::replace(&cfg(), EntityKind::User, "u1", &entity.to_string()))
        .expect("replaced");
    // Groups too; members get UAA's shape.
    let g = json!({"id": "Admins", "displayName": "Admins", "meta": {"version": "W/\"2\""},
                   "members": [{"value": "u1", "display": "jdoe"}]});
    h.expect(
        Exchange::put("Groups/Admins")
            .header("If-Match", "\"2\"")
            .body_json(
                json!({"displayName": "Admins", "members": [{"value": "u1", "type": "USER"}],
                              "schemas": ["urn:scim:schemas:core:1.0"]}),
            )
            .respond(200, group("Admins", 3, json!([]))),
    );
    h.run(|| Xsuaa::replace(&cfg(), EntityKind::Group, "Admins", &g.to_string()))
        .expect("replaced");
}

#[test]
fn patches_a_user_by_read_modify_put() {
    let ops = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let mut expected = user("u1", "uaa", 3);
    expected["active"] = json!(false);
    let sent = json!({"userName": "jdoe", "origin": "uaa", "emails": [{"value": "j@x", "primary": true}],
                      "schemas": ["urn:scim:schemas:core:1.0"], "active": false});
    let mut h = Harness::new();
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "uaa", 3)));
    h.expect(
        Exchange::put("Users/u1")
            .header("If-Match", "\"3\"")
            .body_json(sent)
            .respond(200, expected),
    );
    let out = h
        .run(|| Xsuaa::patch(&cfg(), EntityKind::User, "u1", &ops.to_string()))
        .expect("patched")
        .expect("answered with the user");
    assert_eq!(parsed(&out)["active"], false);
    h.expect(Exchange::get("Users/nope").respond(404, json!({"error": "scim_resource_not_found"})));
    assert!(matches!(
        h.run(|| Xsuaa::patch(&cfg(), EntityKind::User, "nope", &ops.to_string())),
        Err(Error::NotFound(_))
    ));
}

fn member_ops() -> Value {
    json!({"Operations": [
        {"op": "add", "path": "members", "value": [{"value": "u1"}]},
        {"op": "remove", "path": "members[value eq \"u2\"]"}
    ]})
}

#[test]
fn patches_group_members_with_uaa_patch() {
    let c = cfg()
        .with("scim.support.patch.operation", "true")
        .with("xsuaa.origin", "sap.custom");
    let mut h = Harness::new();
    h.expect(
        Exchange::patch("Groups/Admins")
            .header("If-Match", "*")
            .body_json(json!({"schemas": ["urn:scim:schemas:core:1.0"], "members": [
                {"value": "u1", "type": "USER", "origin": "sap.custom"},
                {"value": "u2", "operation": "delete"}]}))
            .respond(
                200,
                group(
                    "Admins",
                    2,
                    json!([{"value": "u1", "type": "USER", "origin": "sap.custom"}]),
                ),
            ),
    );
    let out = h
        .run(|| Xsuaa::patch(&c, EntityKind::Group, "Admins", &member_ops().to_string()))
        .expect("patched");
    assert!(out.is_some());
    // Removing all members and renaming the description: meta.attributes.
    let ops = json!({"Operations": [{"op": "remove", "path": "members"}, {"op": "remove", "path": "description"}]});
    h.expect(
        Exchange::patch("Groups/Admins")
            .body_json(json!({"schemas": ["urn:scim:schemas:core:1.0"],
                              "meta": {"attributes": ["description", "members"]}}))
            .respond(200, group("Admins", 3, json!([]))),
    );
    h.run(|| Xsuaa::patch(&c, EntityKind::Group, "Admins", &ops.to_string()))
        .expect("patched");
}

#[test]
fn patches_group_members_with_the_members_api() {
    let mut h = Harness::new();
    h.expect(
        Exchange::delete("Groups/Admins/members/u2")
            .respond(404, json!({"error": "member_not_found", "error_description": "gone"})),
    );
    h.expect(
        Exchange::post("Groups/Admins/members")
            .body_json(json!({"value": "u1", "type": "USER"}))
            .respond(409, json!({"error": "member_already_exists"})),
    );
    let out = h
        .run(|| Xsuaa::patch(&cfg(), EntityKind::Group, "Admins", &member_ops().to_string()))
        .expect("idempotent");
    assert_eq!(out, None);
    // With xsuaa.patch.response.with.resource the group is read back.
    let c = cfg().with("xsuaa.patch.response.with.resource", "true");
    h.expect(Exchange::delete("Groups/Admins/members/u2").respond(200, json!({"value": "u2"})));
    h.expect(Exchange::post("Groups/Admins/members").respond(201, json!({"value": "u1"})));
    h.expect(Exchange::get("Groups/Admins").respond(200, group("Admins", 1, json!([{"value": "u1"}]))));
    let out = h
        .run(|| Xsuaa::patch(&c, EntityKind::Group, "Admins", &member_ops().to_string()))
        .expect("patched");
    assert!(out.is_some());
    // A missing group is not found.
    h.expect(Exchange::delete("Groups/Nope/members/u2").respond(404, json!({"error": "scim_resource_not_found"})));
    assert!(matches!(
        h.run(|| Xsuaa::patch(&cfg(), EntityKind::Group, "Nope", &member_ops().to_string())),
        Err(Error::NotFound(_))
    ));
    // Replacing all members: read the list, remove the others, add the new.
    let ops =
        json!({"Operations": [{"op": "replace", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]}]});
    h.expect(Exchange::get("Groups/Admins/members").respond(
        200,
        json!([{"value": "u1", "type": "USER"}, {"value": "u2", "type": "USER"}]),
    ));
    h.expect(Exchange::delete("Groups/Admins/members/u2").respond(200, json!({"value": "u2"})));
    h.expect(
        Exchange::post("Groups/Admins/members")
            .body_json(json!({"value": "u3", "type": "USER"}))
            .respond(201, json!({})),
    );
    h.expect(
        Exchange::post("Groups/Admins/members")
            .body_json(json!({"value": "u1", "type": "USER"}))
            .respond(409, json!({"error": "member_already_exists"})),
    );
    h.run(|| Xsuaa::patch(&cfg(), EntityKind::Group, "Admins", &ops.to_string()))
        .expect("patched");
}

#[test]
fn untranslatable_group_patch_falls_back_to_put() {
    let ops = json!({"Operations": [{"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"}]});
    let mut h = Harness::new();
    h.expect(Exchange::get("Groups/g").respond(
        200,
        group(
            "g",
            5,
            json!([{"value": "u1", "type": "USER", "origin": "uaa"}, {"value": "u3", "type": "USER", "origin": "uaa"}]),
        ),
    ));
    h.expect(
        Exchange::put("Groups/g")
            .header("If-Match", "\"5\"")
            .body_json(
                json!({"displayName": "g", "members": [{"value": "u3", "type": "USER", "origin": "uaa"}],
                              "schemas": ["urn:scim:schemas:core:1.0"]}),
            )
            .respond(200, group("g", 6, json!([]))),
    );
    h.run(|| Xsuaa::patch(&cfg(), EntityKind::Group, "g", &ops.to_string()))
        .expect("patched");
}

#[test]
fn deletes_and_maps_errors() {
    let mut h = Harness::new();
    h.expect(Exchange::delete("Users/u1").respond(200, user("u1", "uaa", 0)));
    h.expect(Exchange::delete("Users/u1").respond(404, json!({"error": "scim_resource_not_found"})));
    h.expect(Exchange::delete("Groups/Role%20Collection").respond(200, group("x", 0, json!([]))));
    h.expect(
        Exchange::delete("Users/u2")
            .respond(429, json!({"error": "too_many_requests"}))
            .with_header("Retry-After", "2"),
    );
    h.run(|| {
        assert_eq!(Xsuaa::delete(&cfg(), EntityKind::User, "u1"), Ok(()));
        assert!(matches!(
            Xsuaa::delete(&cfg(), EntityKind::User, "u1"),
            Err(Error::NotFound(_))
        ));
        assert_eq!(Xsuaa::delete(&cfg(), EntityKind::Group, "Role Collection"), Ok(()));
        assert!(matches!(
            Xsuaa::delete(&cfg(), EntityKind::User, "u2"),
            Err(Error::Throttled(t)) if t.retry_after_ms == Some(2000)
        ));
    });
    // Several origins: the twins go too.
    let c = cfg().with("xsuaa.origin", "idp1;idp2");
    h.expect(Exchange::get("Users/u1").respond(200, user("u1", "idp1", 0)));
    h.expect(Exchange::delete("Users/u1").respond(200, user("u1", "idp1", 0)));
    h.expect(
        Exchange::get(format!(
            "Users?startIndex=1&count=100&filter={}",
            provisio_sdk::http::encode_component("userName eq \"jdoe\" and origin eq \"idp2\"")
        ))
        .respond(200, list(vec![user("u2", "idp2", 0)], 1, 100, 1)),
    );
    h.expect(Exchange::delete("Users/u2").respond(200, user("u2", "idp2", 0)));
    h.run(|| Xsuaa::delete(&c, EntityKind::User, "u1")).expect("deleted");
}

#[test]
fn creates_groups_and_resolves_name_conflicts() {
    let entity = json!({"id": "Admins", "displayName": "Admins", "members": [{"value": "u1"}],
                        "schemas": ["urn:scim:schemas:core:1.0"]});
    let mut h = Harness::new();
    h.expect(
        Exchange::post("Groups")
            .body_json(
                json!({"displayName": "Admins", "members": [{"value": "u1", "type": "USER"}],
                              "schemas": ["urn:scim:schemas:core:1.0"]}),
            )
            .respond(409, json!({"error": "scim_resource_already_exists"})),
    );
    h.expect(
        Exchange::get(format!(
            "Groups?startIndex=1&count=100&filter={}",
            provisio_sdk::http::encode_component("displayName eq \"Admins\"")
        ))
        .respond(200, list(vec![group("Admins", 1, json!([]))], 1, 100, 1)),
    );
    h.expect(
        Exchange::put("Groups/Admins")
            .header("If-Match", "\"1\"")
            .respond(200, group("Admins", 2, json!([{"value": "u1"}]))),
    );
    let out = h
        .run(|| Xsuaa::create(&cfg(), EntityKind::Group, &entity.to_string()))
        .expect("created");
    assert_eq!(parsed(&out)["meta"]["version"], 2);
    h.run(|| {
        assert!(matches!(
            Xsuaa::create(&cfg(), EntityKind::Group, "[1]"),
            Err(Error::Rejected(_))
        ));
        assert!(matches!(
            Xsuaa::patch(&cfg(), EntityKind::Group, "g", "{}"),
            Err(Error::Rejected(_))
        ));
    });
}
