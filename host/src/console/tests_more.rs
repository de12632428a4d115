//! The console's transformation history, password change, system export/import, a proxy's endpoint, the
//! overview's failing checks and the plugins' percentiles, through the whole router (`oneshot`): permissions,
//! CSRF refusal and escaping of what came from systems and users.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};

use super::tests::{ADMIN, HOSTILE, READER, csrf_of, get, hostile_system, login, post_form, send, state, token};
use crate::api::AppState;
use crate::api::history_tests::state_with_scim;
use crate::store::systems::VersionNote;
use crate::systems::SystemInput;

const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

/// Two more versions of a system's transformation, described with a planted script.
async fn plant_versions(state: &AppState, id: &str) {
    let systems = &state.stores.systems;
    for (n, description) in [(1, HOSTILE), (2, "second")] {
        let mut spec = systems.get(id).await.expect("get").expect("present").spec;
        spec.transformation =
            Some(serde_json::json!({"user": {"mappings": [{"constant": n, "targetPath": format!("$.{HOSTILE}")}]}}));
        systems
            .replace_noted(
                id,
                spec,
                &VersionNote {
                    author: HOSTILE.into(),
                    description: Some(description.into()),
                },
            )
            .await
            .expect("version");
    }
}

#[tokio::test]
async fn history_pages_escape_what_they_show_and_need_manage_systems() {
    let state = state().await;
    let id = hostile_system(&state).await;
    plant_versions(&state, &id).await;
    let admin = login(&state, ADMIN).await;
    let pages = [
        format!("/console/systems/{id}/transformation/history"),
        format!("/console/systems/{id}/transformation/history/1"),
        format!("/console/systems/{id}/transformation/diff?from=1&to=2"),
        format!("/console/systems/{id}/transformation/diff"),
    ];
    for page in &pages {
        let answer = send(&state, get(page, Some(&admin))).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}: {}", answer.body);
        assert!(answer.body.contains(ESCAPED), "{page}: {}", answer.body);
        assert!(!answer.body.contains(HOSTILE), "{page} has the raw script");
    }
    let history = send(&state, get(&pages[0], Some(&admin))).await.body;
    assert!(history.contains("second") && history.contains("in force"), "{history}");
    let diff = send(&state, get(&pages[2], Some(&admin))).await.body;
    assert!(
        diff.contains("1 line added") && diff.contains("1 line removed"),
        "{diff}"
    );
    assert!(diff.contains("diff-insert") && diff.contains("diff-delete"), "{diff}");
    // The version page offers the rollback with its CSRF token; the newest one does not.
    let one = send(&state, get(&pages[1], Some(&admin))).await.body;
    assert!(
        one.contains(&format!("/console/systems/{id}/transformation/history/1/rollback")),
        "{one}"
    );
    let newest = send(
        &state,
        get(&format!("/console/systems/{id}/transformation/history/2"), Some(&admin)),
    )
    .await
    .body;
    assert!(!newest.contains("/rollback"), "{newest}");
    // Unknown versions and bad numbers are pages that say so.
    for (page, status) in [
        (
            format!("/console/systems/{id}/transformation/history/9"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/console/systems/{id}/transformation/history/x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/console/systems/{id}/transformation/diff?from=1&to=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/systems/nope/transformation/history".to_string(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(send(&state, get(&page, Some(&admin))).await.status, status, "{page}");
    }
    // A rollback without the CSRF token is refused; nothing changes.
    let rollback = format!("/console/systems/{id}/transformation/history/1/rollback");
    let refused = send(&state, post_form(&rollback, Some(&admin), &[])).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Without manage-systems: every page is refused, and so is the rollback.
    let reader = login(&state, READER).await;
    for page in &pages {
        assert_eq!(
            send(&state, get(page, Some(&reader))).await.status,
            StatusCode::FORBIDDEN,
            "{page}"
        );
    }
    let csrf = token(&state, &reader).await;
    let answer = send(&state, post_form(&rollback, Some(&reader), &[("_csrf", &csrf)])).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let versions = state
        .stores
        .systems
        .transformation_versions(&id)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2, "no version was added");
}

async fn scim_target(state: &AppState, name: &str) -> String {
    let input: SystemInput = serde_json::from_value(serde_json::json!({
        "name": name, "type": "scim", "role": "target",
        "properties": {"URL": "http://scim.example/scim", "Authentication": "BasicAuthentication", "User": "u", "Password": "s3cret-value-1"},
        "transformation": {"user": {"mappings": [{"sourcePath": "$.a", "targetPath": "$.userName"}]}}
    }))
    .expect("input");
    state.systems.create_by(input, "admin").await.expect("system").id
}

#[tokio::test]
async fn a_rollback_and_a_described_save_in_the_console_make_versions() {
    let state = state_with_scim().await;
    let id = scim_target(&state, "Target").await;
    let admin = login(&state, ADMIN).await;
    let csrf = token(&state, &admin).await;
    let doc = r#"{"user": {"mappings": [{"sourcePath": "$.b", "targetPath": "$.userName"}]}}"#;
    let saved = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/transformation"),
            Some(&admin),
            &[("_csrf", &csrf), ("transformation", doc), ("description", "use b")],
        ),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let rolled = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/transformation/history/1/rollback"),
            Some(&admin),
            &[("_csrf", &csrf), ("description", "")],
        ),
    )
    .await;
    assert_eq!(rolled.status, StatusCode::SEE_OTHER, "{}", rolled.body);
    assert_eq!(
        rolled.location(),
        format!("/console/systems/{id}/transformation/history")
    );
    let reset = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/transformation/reset"),
            Some(&admin),
            &[("_csrf", &csrf), ("description", "Reset to the connector's default")],
        ),
    )
    .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER);
    let versions = state
        .stores
        .systems
        .transformation_versions(&id)
        .await
        .expect("versions");
    let seen: Vec<_> = versions
        .iter()
        .map(|v| (v.version, v.author.as_str(), v.description.as_deref(), v.reset))
        .collect();
    assert_eq!(
        seen,
        [
            (4, "admin", Some("Reset to the connector's default"), true),
            (3, "admin", Some("Rollback to version 1"), false),
            (2, "admin", Some("use b"), false),
            (1, "admin", None, false)
        ]
    );
}

#[tokio::test]
async fn a_password_changes_in_the_console_and_ends_the_users_sessions() {
    let state = state().await;
    let admin = login(&state, ADMIN).await;
    let reader_session = login(&state, READER).await;
    let reader = state
        .stores
        .principals
        .by_name(READER.0)
        .await
        .expect("lookup")
        .expect("reader");
    let page = send(&state, get("/console/users", Some(&admin))).await;
    assert!(
        page.body.contains(&format!("/console/users/{}/password", reader.id)),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let uri = format!("/console/users/{}/password", reader.id);
    // Without the token: refused.
    let refused = send(
        &state,
        post_form(
            &uri,
            Some(&admin),
            &[("password", "new-password-1"), ("confirm", "new-password-1")],
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Two different passwords: nothing changes.
    let differ = send(
        &state,
        post_form(
            &uri,
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("password", "new-password-1"),
                ("confirm", "new-password-2"),
            ],
        ),
    )
    .await;
    assert_eq!(differ.status, StatusCode::SEE_OTHER);
    assert!(
        state
            .stores
            .principals
            .verify(READER.0, READER.1)
            .await
            .expect("verify")
            .is_some()
    );
    // Too short: refused by the API's rule.
    let short = send(
        &state,
        post_form(
            &uri,
            Some(&admin),
            &[("_csrf", &csrf), ("password", "short"), ("confirm", "short")],
        ),
    )
    .await;
    assert_eq!(short.status, StatusCode::SEE_OTHER);
    assert!(
        state
            .stores
            .principals
            .verify(READER.0, READER.1)
            .await
            .expect("verify")
            .is_some()
    );
    assert_eq!(
        send(&state, get("/console/realtime", Some(&reader_session)))
            .await
            .status,
        StatusCode::OK
    );
    let changed = send(
        &state,
        post_form(
            &uri,
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("password", "new-password-1"),
                ("confirm", "new-password-1"),
            ],
        ),
    )
    .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    assert_eq!(changed.location(), "/console/users");
    assert!(
        state
            .stores
            .principals
            .verify(READER.0, "new-password-1")
            .await
            .expect("verify")
            .is_some()
    );
    let ended = send(&state, get("/console/realtime", Some(&reader_session))).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER, "the reader's session ended");
    assert!(ended.location().starts_with("/console/login"));
    // The reader (read-logs only) may not change passwords at all.
    let reader_session = login(&state, (READER.0, "new-password-1")).await;
    let csrf = token(&state, &reader_session).await;
    let admin_id = state
        .stores
        .principals
        .by_name(ADMIN.0)
        .await
        .expect("lookup")
        .expect("admin")
        .id;
    let answer = send(
        &state,
        post_form(
            &format!("/console/users/{admin_id}/password"),
            Some(&reader_session),
            &[
                ("_csrf", &csrf),
                ("password", "taken-over-1"),
                ("confirm", "taken-over-1"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        state
            .stores
            .principals
            .verify(ADMIN.0, "taken-over-1")
            .await
            .expect("verify")
            .is_none()
    );
}

/// A multipart form with text fields, the CSRF token in the query as the console's upload forms send it.
fn multipart(uri: &str, cookie: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let boundary = "provisio-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .expect("request")
}

#[tokio::test]
async fn a_system_exports_without_secrets_and_imports_with_validation() {
    let state = state_with_scim().await;
    let id = scim_target(&state, "Target").await;
    let admin = login(&state, ADMIN).await;
    let exported = send(&state, get(&format!("/console/systems/{id}/export.json"), Some(&admin))).await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.body);
    assert!(!exported.body.contains("s3cret-value-1"), "{}", exported.body);
    assert!(
        !exported.body.contains("\"Password\""),
        "secrets are left out, not masked: {}",
        exported.body
    );
    assert!(
        exported.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii")
            .contains("attachment")
    );
    let mut doc: serde_json::Value = serde_json::from_str(&exported.body).expect("JSON");
    let csrf = token(&state, &admin).await;
    let import = format!("/console/systems/import?_csrf={csrf}");
    // The same name again: refused, the reason shown with the text.
    let again = send(&state, multipart(&import, &admin, &[("json", &exported.body)])).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("already exists"), "{}", again.body);
    // Not a system: the parse error, escaped.
    let hostile = format!("{{\"name\": \"{HOSTILE}\", \"oops\": 1}}");
    let bad = send(&state, multipart(&import, &admin, &[("json", &hostile)])).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("is not a system") && !bad.body.contains(HOSTILE),
        "{}",
        bad.body
    );
    // Renamed and with its secret: imported.
    doc["name"] = "Target copy".into();
    doc["properties"]["Password"] = "another-secret-1".into();
    let imported = send(&state, multipart(&import, &admin, &[("file", &doc.to_string())])).await;
    assert_eq!(imported.status, StatusCode::SEE_OTHER, "{}", imported.body);
    let copy = state
        .stores
        .systems
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|s| s.spec.name == "Target copy")
        .expect("imported");
    assert_eq!(
        copy.spec.transformation,
        state
            .stores
            .systems
            .get(&id)
            .await
            .expect("get")
            .expect("x")
            .spec
            .transformation
    );
    // Without the token, or without manage-systems: refused.
    let no_token = send(&state, multipart("/console/systems/import", &admin, &[("json", "{}")])).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let reader = login(&state, READER).await;
    assert_eq!(
        send(
            &state,
            get(&format!("/console/systems/{id}/export.json"), Some(&reader))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&state, get("/console/systems/import", Some(&reader))).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_proxy_shows_its_scim_endpoint_to_copy_and_its_idm_csv() {
    let state = state().await;
    let spec = crate::store::systems::SystemSpec {
        name: format!("{HOSTILE} proxy"),
        connector: "scim".into(),
        connector_version: None,
        role: crate::store::systems::Role::Proxy,
        properties: Default::default(),
        secrets: Default::default(),
        sources: Vec::new(),
        transformation: None,
    };
    let id = state.stores.systems.create(spec).await.expect("proxy").id;
    let admin = login(&state, ADMIN).await;
    let mut request = get(&format!("/console/systems/{id}"), Some(&admin));
    request
        .headers_mut()
        .insert(header::HOST, "idm.example:8080".parse().expect("host"));
    let page = send(&state, request).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(&format!(
            "<code id=\"scim-url\">http://idm.example:8080/ipsproxy/api/v1/scim/{id}</code>"
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-copy=\"scim-url\""), "{}", page.body);
    assert!(page.body.contains("/console/assets/console.js"));
    assert!(!page.body.contains(HOSTILE));
    let csv = send(&state, get(&format!("/console/systems/{id}/idm.csv"), Some(&admin))).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert!(
        csv.body.contains(&format!("/ipsproxy/api/v1/scim/{id}")),
        "{}",
        csv.body
    );
    let script = send(&state, get("/console/assets/console.js", None)).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    // A source's page is no proxy: no CSV.
    let source = hostile_system(&state).await;
    assert_eq!(
        send(&state, get(&format!("/console/systems/{source}/idm.csv"), Some(&admin)))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_overview_lists_systems_whose_last_test_connection_failed() {
    let state = state().await;
    let id = hostile_system(&state).await;
    // Kept in the store: every replica (and a restart) sees it.
    state
        .stores
        .systems
        .record_connection_test(
            &id,
            &crate::store::systems::ConnectionTest {
                ok: false,
                message: format!("refused: {HOSTILE}"),
                at: crate::store::now(),
            },
        )
        .await
        .expect("record");
    let admin = login(&state, ADMIN).await;
    let page = send(&state, get("/console", Some(&admin))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Test Connection failing"), "{}", page.body);
    assert!(page.body.contains(&format!("refused: {ESCAPED}")), "{}", page.body);
    assert!(!page.body.contains(HOSTILE));
    let system = send(&state, get(&format!("/console/systems/{id}"), Some(&admin))).await;
    assert!(
        system.body.contains("Last Test Connection") && system.body.contains(&format!("refused: {ESCAPED}")),
        "{}",
        system.body
    );
    // The reader does not see systems.
    let reader = login(&state, READER).await;
    let page = send(&state, get("/console", Some(&reader))).await;
    assert!(!page.body.contains("Test Connection failing"));
}

#[tokio::test]
async fn the_overview_and_the_system_page_show_a_quarantine_which_an_admin_releases() {
    let state = state().await;
    let id = hostile_system(&state).await;
    let system = state.systems.get(&id).await.expect("system");
    assert!(
        state
            .quarantine
            .quarantine(
                &system,
                crate::quarantine::Reason::Credentials,
                &format!("refused: {HOSTILE}")
            )
            .await
            .expect("quarantine")
    );
    let admin = login(&state, ADMIN).await;
    let page = send(&state, get("/console", Some(&admin))).await;
    assert!(
        page.body.contains("Quarantined") && page.body.contains("credentials"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(HOSTILE));
    let page = send(&state, get(&format!("/console/systems/{id}"), Some(&admin))).await;
    assert!(
        page.body.contains(&format!("/console/systems/{id}/release")),
        "{}",
        page.body
    );
    // Without the CSRF token the release is refused, and the quarantine stays.
    let refused = send(
        &state,
        post_form(&format!("/console/systems/{id}/release"), Some(&admin), &[]),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        state
            .systems
            .get(&id)
            .await
            .expect("system")
            .health
            .quarantine
            .is_some()
    );
    let csrf = token(&state, &admin).await;
    let released = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/release"),
            Some(&admin),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    assert!(
        state
            .systems
            .get(&id)
            .await
            .expect("system")
            .health
            .quarantine
            .is_none()
    );
    let page = send(&state, get("/console", Some(&admin))).await;
    assert!(page.body.contains("No target is quarantined"), "{}", page.body);
}

#[tokio::test]
async fn the_plugins_page_shows_percentiles_per_version() {
    let state = state_with_scim().await;
    let admin = login(&state, ADMIN).await;
    let page = send(&state, get("/console/plugins", Some(&admin))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("p50 ms") && page.body.contains("p95 ms"),
        "{}",
        page.body
    );
}

/// The systems list shows a hundred systems a page, with links to the neighbouring pages that keep the
/// filters; the plugins page names ten systems per version and links to the rest (1,000 systems kept both
/// pages over their weight).
#[tokio::test]
async fn the_systems_list_is_paged_and_the_plugins_page_links_to_the_systems_on_a_version() {
    let state = state_with_scim().await;
    for n in 0..205 {
        scim_target(&state, &format!("Target {n:03}")).await;
    }
    let admin = login(&state, ADMIN).await;
    let first = send(&state, get("/console/systems", Some(&admin))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("1–100 of 205 systems."), "{}", first.body);
    assert!(first.body.contains("Target 099") && !first.body.contains("Target 100"));
    assert!(
        first.body.contains("href=\"/console/systems?page=2\" rel=\"next\""),
        "{}",
        first.body
    );
    assert!(!first.body.contains("rel=\"prev\""));
    let last = send(&state, get("/console/systems?page=3", Some(&admin))).await.body;
    assert!(
        last.contains("201–205 of 205 systems.") && last.contains("Target 204"),
        "{last}"
    );
    assert!(last.contains("href=\"/console/systems?page=2\" rel=\"prev\"") && !last.contains("rel=\"next\""));
    // Past the end shows the last page; a page that is no number, the first.
    let beyond = send(&state, get("/console/systems?page=99", Some(&admin))).await.body;
    assert!(beyond.contains("201–205 of 205"), "{beyond}");
    let junk = send(&state, get("/console/systems?page=x%3Cb%3E", Some(&admin))).await;
    assert_eq!(junk.status, StatusCode::OK);
    assert!(junk.body.contains("1–100 of 205"), "{}", junk.body);
    // A search is paged too, and the links keep it.
    let search = send(&state, get("/console/systems?q=target%201", Some(&admin)))
        .await
        .body;
    assert!(search.contains("1–100 of 100 matching (205 systems)."), "{search}");
    assert!(
        !search.contains("rel=\"next\"") && !search.contains("Target 099"),
        "{search}"
    );
    let search = send(&state, get("/console/systems?role=target&q=target", Some(&admin)))
        .await
        .body;
    assert!(search.contains("1–100 of 205 systems."), "{search}");
    assert!(
        search.contains("href=\"/console/systems?role=target&#38;q=target&#38;page=2\""),
        "{search}"
    );
    // By connector: every system here is on scim, none on another.
    let on_scim = send(&state, get("/console/systems?connector=scim", Some(&admin)))
        .await
        .body;
    assert!(
        on_scim.contains("1–100 of 205 systems.") && on_scim.contains("On the connector"),
        "{on_scim}"
    );
    let none = send(&state, get("/console/systems?connector=xsuaa", Some(&admin)))
        .await
        .body;
    assert!(none.contains("None of 0 matching (205 systems)."), "{none}");
    // The plugins page names the first ten and links to the others.
    let plugins = send(&state, get("/console/plugins", Some(&admin))).await.body;
    assert!(
        plugins.contains("Target 009") && !plugins.contains("Target 010"),
        "{plugins}"
    );
    assert!(plugins.contains("and 195 more"), "{plugins}");
    assert!(
        plugins.contains("href=\"/console/systems?connector=scim\""),
        "{plugins}"
    );
}

/// A change made in the console is audited once, with the console as its channel and without the password;
/// the Audit log page lists it for admins (with the nav link), filters, downloads as CSV, and is refused to
/// others. A failed console login is audited too.
#[tokio::test]
async fn console_changes_are_audited_and_the_audit_page_shows_them_to_admins_only() {
    let state = state().await;
    let admin = login(&state, ADMIN).await;
    let csrf = token(&state, &admin).await;
    let done = send(
        &state,
        post_form(
            "/console/users",
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("name", "robot"),
                ("password", "robot-secret-pa55"),
                ("permission", "read-logs"),
            ],
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let entries = state.audit.list(&Default::default(), None, 10).await.expect("audit");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(
        (entry.action.as_str(), entry.channel.as_str(), entry.principal.as_str()),
        ("principal.create", "console", "admin")
    );
    assert_eq!(entry.object_name, "robot");

    let page = send(&state, get("/console/audit", Some(&admin))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("href=\"/console/audit\""), "the nav links it");
    assert!(page.body.contains("principal.create") && page.body.contains("robot"));
    assert!(!page.body.contains("robot-secret-pa55"));
    let filtered = send(
        &state,
        get("/console/audit?action=system.create&from=2026-01-01", Some(&admin)),
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(filtered.body.contains("No entries match."), "{}", filtered.body);
    let bad = send(&state, get("/console/audit?from=not-a-day", Some(&admin))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let csv = send(&state, get("/console/audit/export.csv", Some(&admin))).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("\"Date\",\"Administrator's ID\""), "{}", csv.body);
    assert!(csv.body.contains("\"principal.create\"") && !csv.body.contains("robot-secret-pa55"));

    let reader = login(&state, READER).await;
    let page = send(&state, get("/console", Some(&reader))).await;
    assert!(
        !page.body.contains("href=\"/console/audit\""),
        "no link for those who may not read it"
    );
    let refused = send(&state, get("/console/audit", Some(&reader))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // A failed console login.
    let page = send(&state, get("/console/login", None)).await;
    let login_cookie = page.cookie("provisio_login").expect("cookie");
    let failed = send(
        &state,
        post_form(
            "/console/login",
            Some(&format!("provisio_login={login_cookie}")),
            &[
                ("name", "admin"),
                ("password", "guessed-wrong"),
                ("_csrf", &csrf_of(&page.body)),
            ],
        ),
    )
    .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let newest = state.audit.list(&Default::default(), None, 1).await.expect("audit");
    assert_eq!(
        (
            newest[0].action.as_str(),
            newest[0].channel.as_str(),
            newest[0].principal_kind.as_str()
        ),
        ("login.failed", "console", "unknown")
    );
}
