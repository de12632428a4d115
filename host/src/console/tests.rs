//! The console through the whole router with `tower::ServiceExt::oneshot`: login and sessions, CSRF refusal,
//! permissions as the API has them, the security headers, and escaping of what came from systems and users.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use sha2::Digest as _;
use tower::ServiceExt as _;

use crate::api::{AppState, router};
use crate::store::jobs::{EntityLogEntry, JobRecord, JobStatus};
use crate::store::principals::{Permission, PrincipalKind};
use crate::store::systems::{Role, SystemSpec};

pub(super) const ADMIN: (&str, &str) = ("admin", "admin-password-1");
pub(super) const READER: (&str, &str) = ("reader", "reader-password-1");
pub(super) const HOSTILE: &str = "<script>alert(1)</script>";

pub(super) async fn state() -> AppState {
    crate::test_state::state(&[
        (ADMIN.0, ADMIN.1, PrincipalKind::Admin, &Permission::ALL),
        (READER.0, READER.1, PrincipalKind::Technical, &[Permission::ReadLogs]),
    ])
    .await
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: String,
}

impl Answer {
    pub(super) fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect()
    }

    /// The value of a cookie the answer sets.
    pub(super) fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }
}

pub(super) async fn send(state: &AppState, request: Request<Body>) -> Answer {
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20).await.expect("body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(super) fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::builder().method(Method::GET).uri(uri);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).expect("request")
}

pub(super) fn post_form(uri: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let mut r = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(body)).expect("request")
}

/// The value of the first hidden `_csrf` field of a page.
pub(super) fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"_csrf\" value=\"").expect("a CSRF field") + "name=\"_csrf\" value=\"".len();
    page[at..].split('"').next().expect("its value").to_string()
}

/// Logs in through the form; answers the `Cookie` header of the session.
pub(super) async fn login(state: &AppState, (user, password): (&str, &str)) -> String {
    let page = send(state, get("/console/login", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    let login_cookie = page.cookie("provisio_login").expect("the login form's cookie");
    let csrf = csrf_of(&page.body);
    let answer = send(
        state,
        post_form(
            "/console/login",
            Some(&format!("provisio_login={login_cookie}")),
            &[
                ("name", user),
                ("password", password),
                ("_csrf", &csrf),
                ("next", "/console"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let session = answer.cookie("provisio_session").expect("a session cookie");
    format!("provisio_session={session}")
}

/// A page's CSRF token, for a session.
pub(super) async fn token(state: &AppState, cookie: &str) -> String {
    let page = send(state, get("/console", Some(cookie))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    csrf_of(&page.body)
}

#[tokio::test]
async fn root_leads_to_the_console_and_the_console_to_the_login() {
    let state = state().await;
    let root = send(&state, get("/", None)).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location(), "/console");
    let console = send(&state, get("/console/jobs?source=x", None)).await;
    assert_eq!(console.status, StatusCode::SEE_OTHER);
    assert_eq!(console.location(), "/console/login?next=%2Fconsole%2Fjobs%3Fsource%3Dx");
    let page = send(&state, get("/console/login", None)).await;
    let csp = page
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok());
    assert_eq!(csp, Some(super::CONTENT_SECURITY_POLICY));
    assert!(csp.is_some_and(|c| c.contains("default-src 'self'") && !c.contains("unsafe")));
    assert!(page.body.contains("<label for=\"password\">"), "{}", page.body);
    assert!(!page.body.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_cookie_and_logout_ends_it() {
    let state = state().await;
    let page = send(&state, get("/console/login", None)).await;
    let login_cookie = page.cookie("provisio_login").expect("login cookie");
    let csrf = csrf_of(&page.body);
    let answer = send(
        &state,
        post_form(
            "/console/login",
            Some(&format!("provisio_login={login_cookie}")),
            &[
                ("name", ADMIN.0),
                ("password", ADMIN.1),
                ("_csrf", &csrf),
                ("next", "https://evil.example/"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/console", "no open redirect");
    let set = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("provisio_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=1800"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = set.split(';').next().expect("pair").to_string();
    let overview = send(&state, get("/console", Some(&cookie))).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Overview"));
    let csrf = csrf_of(&overview.body);
    let out = send(&state, post_form("/console/logout", Some(&cookie), &[("_csrf", &csrf)])).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The token is revoked in the store: the old cookie no longer opens the console.
    tokio::time::sleep(crate::store::tokens::REVALIDATE_AFTER).await;
    let after = send(&state, get("/console", Some(&cookie))).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location().starts_with("/console/login"));
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_tls() {
    let state = state().await;
    let page = send(&state, get("/console/login", None)).await;
    let login_cookie = page.cookie("provisio_login").expect("login cookie");
    let csrf = csrf_of(&page.body);
    let mut request = post_form(
        "/console/login",
        Some(&format!("provisio_login={login_cookie}")),
        &[("name", ADMIN.0), ("password", ADMIN.1), ("_csrf", &csrf)],
    );
    request.extensions_mut().insert(crate::tls::ServedOverTls);
    let answer = send(&state, request).await;
    let set = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("provisio_session="))
        .expect("session cookie");
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn a_wrong_password_or_a_login_without_its_token_is_refused() {
    let state = state().await;
    let page = send(&state, get("/console/login", None)).await;
    let login_cookie = format!("provisio_login={}", page.cookie("provisio_login").expect("cookie"));
    let csrf = csrf_of(&page.body);
    let wrong = send(
        &state,
        post_form(
            "/console/login",
            Some(&login_cookie),
            &[("name", ADMIN.0), ("password", "nope"), ("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Invalid user name or password."));
    assert!(wrong.cookie("provisio_session").is_none());
    let forged = send(
        &state,
        post_form(
            "/console/login",
            None,
            &[("name", ADMIN.0), ("password", ADMIN.1), ("_csrf", "forged")],
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie("provisio_session").is_none());
}

#[tokio::test]
async fn state_changing_requests_without_the_csrf_token_are_refused() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let form = [
        ("name", "robot"),
        ("password", "robot-password-1"),
        ("permission", "read-logs"),
    ];
    let refused = send(&state, post_form("/console/users", Some(&cookie), &form)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("security token"), "{}", refused.body);
    let zeros = "0".repeat(64);
    let wrong = [("_csrf", zeros.as_str()), form[0], form[1], form[2]];
    let refused = send(&state, post_form("/console/users", Some(&cookie), &wrong)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        state
            .stores
            .principals
            .by_name("robot")
            .await
            .expect("lookup")
            .is_none()
    );
    // From another site, even with the token.
    let csrf = token(&state, &cookie).await;
    let mut cross = post_form(
        "/console/users",
        Some(&cookie),
        &[("_csrf", &csrf), form[0], form[1], form[2]],
    );
    cross
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().expect("origin"));
    cross
        .headers_mut()
        .insert(header::HOST, "provisio.example".parse().expect("host"));
    assert_eq!(send(&state, cross).await.status, StatusCode::FORBIDDEN);
    assert!(
        state
            .stores
            .principals
            .by_name("robot")
            .await
            .expect("lookup")
            .is_none()
    );
    // With it: created, and the notice says so on the next page.
    let done = send(
        &state,
        post_form(
            "/console/users",
            Some(&cookie),
            &[("_csrf", &csrf), form[0], form[1], form[2]],
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let robot = state
        .stores
        .principals
        .by_name("robot")
        .await
        .expect("lookup")
        .expect("created");
    assert_eq!(robot.permissions, vec![Permission::ReadLogs]);
    let flash = done.cookie("provisio_flash").expect("a notice");
    let next = send(
        &state,
        get("/console/users", Some(&format!("{cookie}; provisio_flash={flash}"))),
    )
    .await;
    assert!(next.body.contains("Technical user robot created."), "{}", next.body);
    // The htmx header carries the token as well.
    let mut by_header = post_form(
        "/console/users",
        Some(&cookie),
        &[("name", "robot2"), ("password", "robot-password-2")],
    );
    by_header
        .headers_mut()
        .insert("x-csrf-token", csrf.parse().expect("token"));
    assert_eq!(send(&state, by_header).await.status, StatusCode::SEE_OTHER);
    assert!(
        state
            .stores
            .principals
            .by_name("robot2")
            .await
            .expect("lookup")
            .is_some()
    );
}

#[tokio::test]
async fn a_user_with_read_logs_only_sees_logs_and_is_told_what_is_missing() {
    let state = state().await;
    let cookie = login(&state, READER).await;
    let overview = send(&state, get("/console", Some(&cookie))).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview.body.contains("Systems need the permission manage-systems."),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("Plugins need the permission manage-plugins."));
    assert!(
        !overview.body.contains("href=\"/console/systems\""),
        "no link to a page it cannot open"
    );
    assert!(overview.body.contains("href=\"/console/realtime\""));
    let jobs = send(&state, get("/console/jobs", Some(&cookie))).await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert!(
        jobs.body.contains("Starting runs needs the permission run-jobs"),
        "{}",
        jobs.body
    );
    for page in [
        "/console/systems",
        "/console/users",
        "/console/plugins",
        "/console/systems/new",
    ] {
        let answer = send(&state, get(page, Some(&cookie))).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{page}");
        assert!(answer.body.contains("lacks the permission"), "{page}: {}", answer.body);
    }
    // Actions are refused by the same rule as in the API, even with a valid token.
    let csrf = token(&state, &cookie).await;
    let start = send(
        &state,
        post_form(
            "/console/jobs",
            Some(&cookie),
            &[("_csrf", &csrf), ("source", "x"), ("type", "read")],
        ),
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let flash = start.cookie("provisio_flash").expect("a notice");
    let next = send(
        &state,
        get("/console/jobs", Some(&format!("{cookie}; provisio_flash={flash}"))),
    )
    .await;
    assert!(
        next.body.contains("reader lacks the permission run-jobs"),
        "{}",
        next.body
    );
    let create = send(
        &state,
        post_form(
            "/console/users",
            Some(&cookie),
            &[("_csrf", &csrf), ("name", "x"), ("password", "xxxxxxxxxx")],
        ),
    )
    .await;
    assert_eq!(create.status, StatusCode::SEE_OTHER);
    assert!(state.stores.principals.by_name("x").await.expect("lookup").is_none());
}

pub(super) async fn hostile_system(state: &AppState) -> String {
    let spec = SystemSpec {
        name: HOSTILE.into(),
        connector: "scim".into(),
        connector_version: None,
        role: Role::Source,
        properties: [("URL".to_string(), format!("https://x.example/{HOSTILE}"))].into(),
        secrets: Default::default(),
        sources: Vec::new(),
        transformation: None,
    };
    state.stores.systems.create(spec).await.expect("system").id
}

#[tokio::test]
async fn a_hostile_system_name_is_escaped_everywhere() {
    let state = state().await;
    let id = hostile_system(&state).await;
    let cookie = login(&state, ADMIN).await;
    for page in [
        "/console/systems".to_string(),
        format!("/console/systems/{id}"),
        format!("/console/systems/{id}/delete"),
        format!("/console/systems/{id}/edit"),
        format!("/console/systems?q={}", "%3Cscript"),
    ] {
        let answer = send(&state, get(&page, Some(&cookie))).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}: {}", answer.body);
        assert!(
            answer.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{page}: {}",
            answer.body
        );
        assert!(!answer.body.contains(HOSTILE), "{page} has the raw name");
    }
}

#[tokio::test]
async fn a_hostile_log_reason_and_entity_id_are_escaped() {
    let state = state().await;
    let source = hostile_system(&state).await;
    let job = JobRecord {
        id: "job-1".into(),
        source_id: source,
        job_type: "read".into(),
        read_mode: "full".into(),
        trigger: "manual".into(),
        started_by: HOSTILE.into(),
        status: JobStatus::Running,
        summary: serde_json::json!({"sourceName": HOSTILE, "statistics": [], "progress": {"phase": HOSTILE}}),
        started_at: crate::store::now(),
        ended_at: None,
        node: Some(crate::provisioning::this_node()),
        attempt: 1,
    };
    state
        .stores
        .jobs
        .insert(&job, std::time::Duration::from_secs(60))
        .await
        .expect("job");
    let entry = EntityLogEntry {
        target_id: Some("t1".into()),
        entity_type: "user".into(),
        source_id: Some(HOSTILE.into()),
        operation: "create".into(),
        outcome: "failed".into(),
        reason: Some(format!("the target said {HOSTILE}")),
        changes: Some(serde_json::json!({"displayName": HOSTILE})),
        ..EntityLogEntry::default()
    };
    state
        .stores
        .jobs
        .append_log("job-1", None, 1, vec![entry])
        .await
        .expect("log");
    let cookie = login(&state, READER).await;
    for page in [
        "/console/jobs/job-1",
        "/console/jobs/job-1/log",
        "/console/jobs",
        "/console",
    ] {
        let answer = send(&state, get(page, Some(&cookie))).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}: {}", answer.body);
        assert!(
            !answer.body.contains(HOSTILE),
            "{page} has the raw text: {}",
            answer.body
        );
    }
    let log = send(
        &state,
        get("/console/jobs/job-1/log?outcome=failed&q=target%20said", Some(&cookie)),
    )
    .await;
    assert!(log.body.contains("the target said &#60;script&#62;"), "{}", log.body);
    let csv = send(&state, get("/console/jobs/job-1/log.csv", Some(&cookie))).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers.get(header::CONTENT_DISPOSITION).is_some());
    assert!(csv.body.lines().count() == 2, "{}", csv.body);
    let json = send(
        &state,
        get("/console/jobs/job-1/log.json?operation=delete", Some(&cookie)),
    )
    .await;
    assert_eq!(json.body.trim(), "[]");
}

#[tokio::test]
async fn the_vendored_assets_are_served_with_their_types() {
    let state = state().await;
    for (name, kind) in [
        ("htmx-2.0.11.min.js", "text/javascript; charset=utf-8"),
        ("htmx-ext-sse-2.2.4.min.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let answer = send(&state, get(&format!("/console/assets/{name}"), None)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some(kind)
        );
    }
    assert_eq!(
        send(&state, get("/console/assets/../../Cargo.toml", None)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn vendored_assets_match_their_recorded_digests() {
    let readme = include_str!("../../static/console/vendor/README.md");
    for (file, bytes) in [
        ("htmx-2.0.11.min.js", super::HTMX_JS.as_bytes()),
        ("htmx-ext-sse-2.2.4.min.js", super::HTMX_SSE_JS.as_bytes()),
    ] {
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        let line = readme
            .lines()
            .find(|l| l.contains(file))
            .expect("the file is in the README");
        assert!(line.contains(&digest), "{file}: {digest} is not the recorded digest");
    }
}

#[tokio::test]
async fn a_hostile_real_time_event_is_escaped_and_retry_needs_run_jobs() {
    let state = state().await;
    let source = hostile_system(&state).await;
    let event = state
        .stores
        .events
        .append(crate::store::realtime::NewEvent {
            source_id: source,
            kind: "user".into(),
            entity_id: HOSTILE.into(),
            operation: "create".into(),
            body: Some(serde_json::json!({"userName": HOSTILE})),
            received_by: HOSTILE.into(),
        })
        .await
        .expect("event");
    let cookie = login(&state, READER).await;
    for page in [
        "/console/realtime".to_string(),
        format!("/console/realtime/{}", event.seq),
        format!("/console/realtime?entity={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    ] {
        let answer = send(&state, get(&page, Some(&cookie))).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}: {}", answer.body);
        assert!(answer.body.contains("&#60;script&#62;"), "{page}: {}", answer.body);
        assert!(!answer.body.contains(HOSTILE), "{page} has the raw text");
    }
    let csrf = token(&state, &cookie).await;
    let retry = send(
        &state,
        post_form(
            &format!("/console/realtime/{}/retry", event.seq),
            Some(&cookie),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(retry.status, StatusCode::SEE_OTHER);
    let flash = retry.cookie("provisio_flash").expect("a notice");
    let next = send(
        &state,
        get(
            &format!("/console/realtime/{}", event.seq),
            Some(&format!("{cookie}; provisio_flash={flash}")),
        ),
    )
    .await;
    assert!(next.body.contains("lacks the permission run-jobs"), "{}", next.body);
    assert!(next.body.contains("Retrying needs the permission run-jobs") || !next.body.contains("Retry</button>"));
}

#[tokio::test]
async fn schedules_and_provision_on_demand_keep_the_api_rules() {
    let state = state().await;
    let source = hostile_system(&state).await;
    let admin = login(&state, ADMIN).await;
    let csrf = token(&state, &admin).await;
    let saved = send(
        &state,
        post_form(
            "/console/jobs/schedule",
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("source", &source),
                ("type", "read"),
                ("every_seconds", "3600"),
                ("enabled", "1"),
            ],
        ),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let stored = state.stores.jobs.schedules().await.expect("schedules");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].every_seconds, Some(3600));
    let page = send(&state, get(&format!("/console/jobs?source={source}"), Some(&admin))).await;
    assert!(page.body.contains("every 3600 s"), "{}", page.body);
    assert!(page.body.contains("Next: "), "the next fire times: {}", page.body);
    // Refused as by the API: both fields, or neither.
    let bad = send(
        &state,
        post_form(
            "/console/jobs/schedule",
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("source", &source),
                ("every_seconds", "60"),
                ("cron", "* * * * *"),
            ],
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::SEE_OTHER);
    assert_eq!(
        state.stores.jobs.schedules().await.expect("schedules")[0].every_seconds,
        Some(3600)
    );
    let reader = login(&state, READER).await;
    let form = send(
        &state,
        get(&format!("/console/systems/{source}/provision-one"), Some(&reader)),
    )
    .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert!(form.body.contains("lacks the permission run-jobs"));
}

#[tokio::test]
async fn the_playground_traces_a_transformation_and_the_editor_refuses_an_invalid_one() {
    let state = state().await;
    let id = hostile_system(&state).await;
    let admin = login(&state, ADMIN).await;
    let page = send(
        &state,
        get(&format!("/console/systems/{id}/transformation"), Some(&admin)),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let doc = r#"{"user": {"mappings": [{"sourcePath": "$.userName", "targetPath": "$.login"}]}}"#;
    let entity = format!(r#"{{"userName": "{HOSTILE}"}}"#);
    let tried = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/transformation/try"),
            Some(&admin),
            &[
                ("_csrf", &csrf),
                ("transformation", doc),
                ("entity", &entity),
                ("entity_type", "user"),
                ("operation", "create"),
            ],
        ),
    )
    .await;
    assert_eq!(tried.status, StatusCode::OK, "{}", tried.body);
    assert!(tried.body.contains("Transformed."), "{}", tried.body);
    assert!(
        tried.body.contains("$.login"),
        "the trace names the mapping: {}",
        tried.body
    );
    assert!(!tried.body.contains(HOSTILE), "the entity's value is escaped");
    let broken = send(
        &state,
        post_form(
            &format!("/console/systems/{id}/transformation/try"),
            Some(&admin),
            &[("_csrf", &csrf), ("transformation", "{\"user\": "), ("entity", "{}")],
        ),
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert!(broken.body.contains("is not JSON"), "{}", broken.body);
    // The reader may not.
    let reader = login(&state, READER).await;
    let refused = send(
        &state,
        get(&format!("/console/systems/{id}/transformation"), Some(&reader)),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn held_deletes_are_decided_by_checkbox_or_all_at_once() {
    let state = state().await;
    let target = crate::api::tests::run_with_held_deletes(&state, "job-h").await;
    let cookie = login(&state, ADMIN).await;
    let page = send(&state, get("/console/jobs/job-h/held", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.body.matches("type=\"checkbox\" name=\"entity\"").count(),
        3,
        "{}",
        page.body
    );
    assert!(page.body.contains("Reject selected") && page.body.contains("Approve selected"));
    assert!(page.body.contains("Reject: keep them"), "the all-buttons stay");
    let csrf = csrf_of(&page.body);
    let key = |id: &str| format!("{target}:user:{id}");
    let decisions = || async {
        let held = state.stores.jobs.held_deletes("job-h").await.expect("held");
        held.into_iter()
            .map(|h| h.decision.unwrap_or_else(|| "waiting".into()))
            .collect::<Vec<_>>()
    };

    // Without the form's token: refused, nothing decided.
    let answer = send(
        &state,
        post_form(
            "/console/jobs/job-h/held/reject",
            Some(&cookie),
            &[("scope", "selected"), ("entity", &key("u1"))],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // "Reject selected" with nothing checked: a notice, nothing decided.
    let answer = send(
        &state,
        post_form(
            "/console/jobs/job-h/held/reject",
            Some(&cookie),
            &[("_csrf", &csrf), ("scope", "selected")],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(decisions().await, ["waiting", "waiting", "waiting"]);

    // Two checked: those two.
    let answer = send(
        &state,
        post_form(
            "/console/jobs/job-h/held/reject",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("scope", "selected"),
                ("entity", &key("u1")),
                ("entity", &key("u3")),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), "/console/jobs/job-h/held");
    assert_eq!(decisions().await, ["rejected", "waiting", "rejected"]);
    let page = send(&state, get("/console/jobs/job-h/held", Some(&cookie))).await;
    assert_eq!(
        page.body.matches("type=\"checkbox\" name=\"entity\"").count(),
        1,
        "only the waiting one"
    );

    // The all-button decides the rest.
    let answer = send(
        &state,
        post_form("/console/jobs/job-h/held/reject", Some(&cookie), &[("_csrf", &csrf)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(decisions().await, ["rejected", "rejected", "rejected"]);
}
