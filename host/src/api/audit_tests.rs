//! The audit log through the whole router (`oneshot`): one entry per change with the right before → after,
//! filters and paging, the exports, the permission, and no secret anywhere.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::history_tests::{call, state_with_scim};

const ADMIN: (&str, &str) = ("admin", "admin-password-1");
const OPERATOR: (&str, &str) = ("operator", "operator-password-1");
const READER: (&str, &str) = ("reader", "reader-password-1");

const FIRST_SECRET: &str = "first-s3cret-value";
const SECOND_SECRET: &str = "second-s3cret-value";
const USER_PASSWORD: &str = "tech-user-pa55word";
const NEW_PASSWORD: &str = "tech-user-new-pa55word";

async fn entries(state: &super::AppState, query: &str) -> Vec<Value> {
    let (status, body) = call(state, Method::GET, &format!("/api/v1/audit{query}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn change<'a>(entry: &'a Value, field: &str) -> &'a Value {
    entry["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["field"] == field))
        .unwrap_or(&Value::Null)
}

async fn raw(state: &super::AppState, uri: &str) -> (StatusCode, String) {
    let (status, body) = call(state, Method::GET, uri, ADMIN, None).await;
    let text = match body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (status, text)
}

#[tokio::test]
async fn every_kind_of_change_is_audited_once_with_before_and_after_and_never_a_secret() {
    let state = state_with_scim().await;
    let system = json!({"name": "Target", "type": "scim", "role": "target",
        "properties": {"URL": "http://scim.example/scim", "Password": FIRST_SECRET},
        "transformation": {"user": {"mappings": [{"sourcePath": "$.id", "targetPath": "$.userName"}]}}});
    let (status, created) = call(&state, Method::POST, "/api/v1/systems", OPERATOR, Some(system)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    // An update of a plain property and the secret.
    let mut update = created.clone();
    for key in ["id", "createdAt", "updatedAt", "transformationVersion", "message"] {
        update.as_object_mut().expect("object").remove(key);
    }
    update["properties"]["URL"] = json!("http://scim2.example/scim");
    update["properties"]["Password"] = json!(SECOND_SECRET);
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}"),
        ADMIN,
        Some(update.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The secret sent back masked: kept, not a change of it.
    update["properties"]["Password"] = json!("********");
    update["transformation"] =
        json!({"user": {"mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"}]}});
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}"),
        ADMIN,
        Some(update),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{id}/disable"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{id}/transformation/versions/1/rollback"),
        ADMIN,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let user = json!({"name": "pusher", "password": USER_PASSWORD, "permissions": ["realtime-api"]});
    let (status, tech) = call(&state, Method::POST, "/api/v1/technical-users", ADMIN, Some(user)).await;
    assert_eq!(status, StatusCode::CREATED, "{tech}");
    let tech_id = tech["id"].as_str().expect("id").to_string();
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/technical-users/{tech_id}/password"),
        ADMIN,
        Some(json!({"password": NEW_PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &state,
        Method::DELETE,
        &format!("/api/v1/technical-users/{tech_id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &state,
        Method::GET,
        "/api/v1/systems",
        ("admin", "wrong-password"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, Method::DELETE, &format!("/api/v1/systems/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Reading changes nothing: not audited.
    let (status, _) = call(&state, Method::GET, "/api/v1/systems", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);

    let all = entries(&state, "?limit=1000").await;
    let actions: Vec<&str> = all.iter().rev().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "system.create",
            "system.update",
            "transformation.save",
            "system.disable",
            "transformation.rollback",
            "principal.create",
            "principal.password",
            "principal.delete",
            "login.failed",
            "system.delete",
        ],
        "one entry per change, in order"
    );
    let find = |action: &str| {
        all.iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or(Value::Null)
    };

    let created = find("system.create");
    assert_eq!(
        (created["principal"].as_str(), created["principalKind"].as_str()),
        (Some("operator"), Some("technical"))
    );
    assert_eq!(created["channel"], "api");
    assert_eq!(
        (created["objectType"].as_str(), created["objectId"].as_str()),
        (Some("system"), Some(id.as_str()))
    );
    assert_eq!(created["objectName"], "Target");
    assert_eq!(change(&created, "properties.URL")["after"], "http://scim.example/scim");
    assert_eq!(change(&created, "properties.Password")["after"], "(changed)");

    let updated = find("system.update");
    assert_eq!(change(&updated, "properties.URL")["before"], "http://scim.example/scim");
    assert_eq!(change(&updated, "properties.URL")["after"], "http://scim2.example/scim");
    assert_eq!(
        change(&updated, "properties.Password")["after"],
        "(changed)",
        "{updated}"
    );
    assert!(
        change(&updated, "name").is_null(),
        "unchanged fields are not listed: {updated}"
    );

    let saved = find("transformation.save");
    assert_eq!(saved["objectType"], "transformation");
    assert!(
        change(&saved, "properties.Password").is_null(),
        "a masked secret is kept: {saved}"
    );
    assert!(change(&saved, "transformation")["after"]["user"].is_object(), "{saved}");

    let disabled = find("system.disable");
    assert_eq!(
        (
            change(&disabled, "enabled")["before"].as_bool(),
            change(&disabled, "enabled")["after"].as_bool()
        ),
        (Some(true), Some(false))
    );

    let password = find("principal.password");
    assert_eq!(
        (password["objectId"].as_str(), password["objectName"].as_str()),
        (Some(tech_id.as_str()), Some("pusher"))
    );
    assert_eq!(change(&password, "password")["after"], "(changed)");

    let failed = find("login.failed");
    assert_eq!(
        (failed["principal"].as_str(), failed["principalKind"].as_str()),
        (Some("admin"), Some("unknown"))
    );

    // Filters and paging.
    let mine = entries(&state, "?principal=OPERATOR").await;
    assert_eq!(mine.len(), 1, "the principal, case-insensitively");
    let of_system = entries(&state, &format!("?objectType=system&objectId={id}")).await;
    assert_eq!(of_system.len(), 4, "create, update, disable, delete");
    let by_action = entries(&state, "?action=principal.create").await;
    assert_eq!(by_action.len(), 1);
    assert!(entries(&state, "?from=2999-01-01T00:00:00Z").await.is_empty());
    assert_eq!(entries(&state, "?to=2999-01-01T00:00:00%2B02:00").await.len(), 10);
    let (status, first) = call(&state, Method::GET, "/api/v1/audit?limit=4", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let cursor = first["nextCursor"].as_str().expect("a next page").to_string();
    let (_, second) = call(
        &state,
        Method::GET,
        &format!("/api/v1/audit?limit=4&cursor={cursor}"),
        ADMIN,
        None,
    )
    .await;
    let (_, third) = call(
        &state,
        Method::GET,
        &format!(
            "/api/v1/audit?limit=4&cursor={}",
            second["nextCursor"].as_str().expect("next")
        ),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(third["entries"].as_array().map(Vec::len), Some(2));
    assert!(third["nextCursor"].is_null(), "the last page: {third}");
    let paged: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p["entries"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(paged, all, "the pages are the whole log, once");

    // The exports.
    let (status, csv) = raw(&state, "/api/v1/audit/export?format=csv").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.starts_with("\"Date\",\"Administrator's ID\",\"Administrator's Name\",\"Resource Type\",\"Resource ID\",\"Resource Name\",\"Action\",\"Attribute\",\"Value\""), "{csv}");
    assert!(
        csv.contains("\"properties.URL\",\"http://scim2.example/scim\",\"http://scim.example/scim\",\"system.update\""),
        "{csv}"
    );
    let (status, exported) = raw(&state, "/api/v1/audit/export?format=json").await;
    assert_eq!(status, StatusCode::OK);
    let exported: Value = serde_json::from_str(&exported).expect("JSON");
    assert_eq!(exported.as_array().map(Vec::len), Some(10));
    let listed = serde_json::to_string(&all).expect("json");
    for secret in [
        FIRST_SECRET,
        SECOND_SECRET,
        USER_PASSWORD,
        NEW_PASSWORD,
        "wrong-password",
    ] {
        for (what, text) in [("CSV", &csv), ("JSON", &exported.to_string()), ("listing", &listed)] {
            assert!(!text.contains(secret), "the {what} export shows {secret}");
        }
    }
}

#[tokio::test]
async fn only_admins_and_read_audit_may_read_it_and_bad_queries_are_400() {
    let state = state_with_scim().await;
    for who in [OPERATOR, READER] {
        let (status, body) = call(&state, Method::GET, "/api/v1/audit", who, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = call(&state, Method::GET, "/api/v1/audit/export", who, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let auditor = json!({"name": "auditor", "password": "auditor-pa55word", "permissions": ["read-audit"]});
    let (status, body) = call(&state, Method::POST, "/api/v1/technical-users", ADMIN, Some(auditor)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        &state,
        Method::GET,
        "/api/v1/audit",
        ("auditor", "auditor-pa55word"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entries"][0]["action"], "principal.create");
    for query in [
        "/api/v1/audit?from=yesterday",
        "/api/v1/audit?to=2026-13-01T00:00:00Z",
        "/api/v1/audit?limit=0",
        "/api/v1/audit?limit=abc",
        "/api/v1/audit?cursor=-4",
        "/api/v1/audit?nonsense=1",
        "/api/v1/audit/export?format=xml",
        "/api/v1/audit/export?limit=5",
    ] {
        let (status, body) = call(&state, Method::GET, query, ADMIN, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn schedules_resets_and_job_starts_are_audited() {
    let state = state_with_scim().await;
    let source = json!({"name": "HR", "type": "scim", "role": "source",
        "properties": {"URL": "http://127.0.0.1:9/scim"}});
    let (status, created) = call(&state, Method::POST, "/api/v1/systems", ADMIN, Some(source)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let schedule = json!({"jobType": "read", "everySeconds": 3600, "enabled": true});
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}/schedule"),
        ADMIN,
        Some(schedule),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(
        &state,
        Method::DELETE,
        &format!("/api/v1/systems/{id}/schedule"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{id}/reset"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, job) = call(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{id}/jobs"),
        ADMIN,
        Some(json!({})),
    )
    .await;
    assert!(status.is_success(), "{status}: {job}");

    let all = entries(&state, "").await;
    let actions: Vec<&str> = all.iter().rev().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "system.create",
            "schedule.set",
            "schedule.delete",
            "system.reset",
            "job.start"
        ]
    );
    let set = &all[3];
    assert_eq!(
        (set["objectType"].as_str(), set["objectId"].as_str()),
        (Some("schedule"), Some(id.as_str()))
    );
    assert_eq!(change(set, "everySeconds")["after"], 3600);
    let deleted = &all[2];
    assert_eq!(change(deleted, "everySeconds")["before"], 3600);
    assert!(change(deleted, "everySeconds")["after"].is_null());
    assert_eq!(change(&all[1], "linksRemoved")["after"], 0);
    let started = &all[0];
    assert_eq!(
        (
            started["objectType"].as_str(),
            started["objectId"].clone(),
            started["objectName"].as_str()
        ),
        (Some("job"), job["id"].clone(), Some(id.as_str()))
    );
}
