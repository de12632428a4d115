//! The admin API's error paths, through the whole router with `tower::ServiceExt::oneshot`: every refusal
//! is a JSON answer `{"error", "message"}` with the right status, never a panic or a 500.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::{AppState, router};
use crate::store::principals::{Permission, PrincipalKind};

pub(crate) const ADMIN: (&str, &str) = ("admin", "admin-password-1");
const PROXY_CLIENT: (&str, &str) = ("proxy-client", "proxy-password-1");

pub(crate) async fn state() -> AppState {
    crate::test_state::state(&[
        (ADMIN.0, ADMIN.1, PrincipalKind::Admin, &Permission::ALL),
        (
            PROXY_CLIENT.0,
            PROXY_CLIENT.1,
            PrincipalKind::Technical,
            &[Permission::ProxyApi],
        ),
    ])
    .await
}

fn basic((user, password): (&str, &str)) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Sends one request through the router; answers the status, the headers and the body as JSON.
pub(crate) async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    auth: Option<(&str, &str)>,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(credentials) = auth {
        request = request.header(header::AUTHORIZATION, basic(credentials));
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::from(body.to_vec())).expect("request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, json)
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["error"].as_str(),
        expected.canonical_reason(),
        "an error answer names its status: {body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn callers_without_valid_credentials_are_challenged() {
    let state = state().await;
    let (status, headers, body) = send(&state, Method::GET, "/api/v1/systems", None, None, b"").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE), "{headers:?}");

    let wrong = (ADMIN.0, "not-the-password");
    let (status, _, body) = send(&state, Method::GET, "/api/v1/systems", Some(wrong), None, b"").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    let mut request = Request::builder().uri("/api/v1/systems");
    request = request.header(header::AUTHORIZATION, "Basic %%%not-base64");
    let response = router(state.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_proxy_client_cannot_use_the_admin_api() {
    let state = state().await;
    let new_user = br#"{"name":"escalated","password":"password-12345","permissions":["manage-systems"]}"#;
    for (method, uri, body) in [
        (Method::GET, "/api/v1/connectors", &b""[..]),
        (Method::GET, "/api/v1/plugins", b""),
        (Method::GET, "/api/v1/systems", b""),
        (Method::POST, "/api/v1/technical-users", new_user),
    ] {
        let (status, _, body) = send(
            &state,
            method.clone(),
            uri,
            Some(PROXY_CLIENT),
            Some("application/json"),
            body,
        )
        .await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("permission")),
            "{method} {uri}: {body}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_clear_400s() {
    let state = state().await;
    let cases: [(&str, &[u8]); 4] = [
        ("application/json", b"{not json"),
        ("application/json", b"[]"),
        (
            "application/json",
            br#"{"name":"x","type":"scim","role":"target","unknownField":1}"#,
        ),
        (
            "application/json",
            br#"{"name":"x","type":"no-such-connector","role":"target","properties":{}}"#,
        ),
    ];
    for (content_type, body) in cases {
        let (status, _, answer) = send(
            &state,
            Method::POST,
            "/api/v1/systems",
            Some(ADMIN),
            Some(content_type),
            body,
        )
        .await;
        assert!(
            status.is_client_error(),
            "{status} for {}: {answer}",
            String::from_utf8_lossy(body)
        );
        assert_error(status, &answer, status);
    }
    let (status, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/systems",
        Some(ADMIN),
        Some("text/plain"),
        b"{}",
    )
    .await;
    assert!(status.is_client_error(), "{status}: {answer}");
    assert_error(status, &answer, status);
}

#[tokio::test]
async fn unknown_ids_are_404s() {
    let state = state().await;
    for (method, uri) in [
        (Method::GET, "/api/v1/systems/no-such-system"),
        (Method::DELETE, "/api/v1/systems/no-such-system"),
        (Method::POST, "/api/v1/systems/no-such-system/test-connection"),
        (Method::GET, "/api/v1/jobs/no-such-job"),
        (Method::POST, "/api/v1/jobs/no-such-job/stop"),
        (Method::DELETE, "/api/v1/technical-users/no-such-user"),
    ] {
        let (status, _, body) = send(&state, method.clone(), uri, Some(ADMIN), None, b"").await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
        assert!(!body.to_string().contains("internal error"), "{method} {uri}: {body}");
    }
}

#[tokio::test]
async fn a_plugin_upload_that_is_no_component_is_refused() {
    let state = state().await;
    let (status, _, body) = send(
        &state,
        Method::POST,
        "/api/v1/plugins",
        Some(ADMIN),
        Some("application/wasm"),
        b"\x00\x01\x02 certainly not a component",
    )
    .await;
    assert!(
        matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY),
        "{status}: {body}"
    );
    assert_error(status, &body, status);
    assert!(state.plugins.list().is_empty(), "nothing was loaded");
}

/// A source and target (straight into the store: no connector is loaded here) and an ended run of the
/// source that held three user deletes; answers the target's id.
pub(crate) async fn run_with_held_deletes(state: &AppState, job_id: &str) -> String {
    use crate::store::jobs::{Claim, HeldDelete, JobRecord, JobStatus};
    use crate::store::systems::{Role, SystemSpec};
    let spec = |name: &str, role: Role, sources: Vec<String>| SystemSpec {
        name: name.into(),
        connector: "scim".into(),
        connector_version: None,
        role,
        properties: [("URL".to_string(), format!("https://{name}.example"))].into(),
        secrets: Default::default(),
        sources,
        transformation: None,
    };
    let systems = &state.stores.systems;
    let source = systems.create(spec("Src", Role::Source, vec![])).await.expect("source");
    let target = systems
        .create(spec("Tgt", Role::Target, vec![source.id.clone()]))
        .await
        .expect("target");
    let node = crate::provisioning::this_node();
    let job = JobRecord {
        id: job_id.into(),
        source_id: source.id.clone(),
        job_type: "read".into(),
        read_mode: "full".into(),
        trigger: "manual".into(),
        started_by: "admin".into(),
        status: JobStatus::Running,
        summary: serde_json::json!({"statistics": [], "heldDeletes": 3}),
        started_at: crate::store::now(),
        ended_at: None,
        node: Some(node.clone()),
        attempt: 1,
    };
    let jobs = &state.stores.jobs;
    jobs.insert(&job, std::time::Duration::from_secs(60))
        .await
        .expect("job");
    let claim = Claim {
        job: job_id.into(),
        node,
        attempt: 1,
    };
    let held = ["u1", "u2", "u3"]
        .iter()
        .map(|id| HeldDelete {
            target_id: target.id.clone(),
            entity_type: "user".into(),
            source_id: (*id).into(),
            target_entity_id: format!("T-{id}"),
            decision: None,
        })
        .collect();
    jobs.hold_deletes(&claim, held).await.expect("hold");
    jobs.update(&claim, JobStatus::FinishedWithError, "full", &job.summary)
        .await
        .expect("end");
    target.id
}

#[tokio::test]
async fn held_deletes_are_decided_all_or_by_entity() {
    let state = state().await;
    let target = run_with_held_deletes(&state, "job-h").await;
    let uri = "/api/v1/jobs/job-h/held-deletes/reject";
    let entity = |id: &str| format!(r#"{{"targetId":"{target}","entityType":"user","sourceId":"{id}"}}"#);
    let json = Some("application/json");
    // Malformed bodies, unknown fields and entities the run did not hold: 400, nothing decided.
    for body in [
        "{not json".to_string(),
        r#"{"entities":"u1"}"#.to_string(),
        r#"{"entities":[],"extra":1}"#.to_string(),
        r#"{"entities":[]}"#.to_string(),
        format!(r#"{{"entities":[{}]}}"#, entity("nobody")),
        format!(r#"{{"entities":[{{"targetId":"{target}","entityType":"user"}}]}}"#),
    ] {
        let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), json, body.as_bytes()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    let (status, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/jobs/job-h/held-deletes/maybe",
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND);
    let decisions = || async {
        let (_, _, held) = send(
            &state,
            Method::GET,
            "/api/v1/jobs/job-h/held-deletes",
            Some(ADMIN),
            None,
            b"",
        )
        .await;
        held.as_array()
            .into_iter()
            .flatten()
            .map(|h| h["decision"].as_str().unwrap_or("waiting").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(decisions().await, ["waiting", "waiting", "waiting"]);

    // One by name: only it.
    let body = format!(r#"{{"entities":[{}]}}"#, entity("u2"));
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), json, body.as_bytes()).await;
    assert_eq!(
        (status, answer["count"].clone()),
        (StatusCode::OK, serde_json::json!(1)),
        "{answer}"
    );
    assert_eq!(decisions().await, ["waiting", "rejected", "waiting"]);
    // Decided already: 409.
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), json, body.as_bytes()).await;
    assert_error(status, &answer, StatusCode::CONFLICT);
    // Without a body (or an empty one): the rest.
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), None, b"").await;
    assert_eq!(
        (status, answer["count"].clone()),
        (StatusCode::OK, serde_json::json!(2)),
        "{answer}"
    );
    assert_eq!(decisions().await, ["rejected", "rejected", "rejected"]);
    // None held any more: 409.
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), None, b"").await;
    assert_error(status, &answer, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_source_in_use_is_not_deleted() {
    let state = state().await;
    let target = run_with_held_deletes(&state, "job-d").await;
    let target = state.stores.systems.get(&target).await.expect("get").expect("target");
    let source = target.spec.sources[0].clone();
    let (status, _, body) = send(
        &state,
        Method::DELETE,
        &format!("/api/v1/systems/{source}"),
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("Tgt")), "{body}");
    assert!(state.stores.systems.get(&source).await.expect("get").is_some());
    assert!(
        state.stores.jobs.get("job-d").await.expect("get").is_some(),
        "nothing half-deleted"
    );
}

#[tokio::test]
async fn systems_are_enabled_and_disabled() {
    let state = state().await;
    let target = run_with_held_deletes(&state, "job-e").await;
    let source = state
        .stores
        .systems
        .get(&target)
        .await
        .expect("get")
        .expect("target")
        .spec
        .sources[0]
        .clone();
    let (status, _, body) = send(
        &state,
        Method::GET,
        &format!("/api/v1/systems/{source}"),
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_eq!(
        (status, body["enabled"].clone()),
        (StatusCode::OK, serde_json::json!(true)),
        "{body}"
    );

    let (status, _, body) = send(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{source}/disable"),
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_eq!(
        (status, body["enabled"].clone()),
        (StatusCode::OK, serde_json::json!(false)),
        "{body}"
    );
    let (_, _, listed) = send(&state, Method::GET, "/api/v1/systems", Some(ADMIN), None, b"").await;
    let row = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == source.as_str())
        .cloned();
    assert_eq!(row.map(|r| r["enabled"].clone()), Some(serde_json::json!(false)));

    // A disabled source runs no job: 409 naming it.
    let (status, _, body) = send(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{source}/jobs"),
        Some(ADMIN),
        Some("application/json"),
        br#"{"type":"read"}"#,
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("disabled")),
        "{body}"
    );

    // Nor takes pushes: 409 with an RFC 7644 error body.
    state
        .stores
        .principals
        .create(
            "pusher",
            "pusher-password-1",
            PrincipalKind::Technical,
            &[Permission::RealtimeApi],
        )
        .await
        .expect("pusher");
    let (status, _, body) = send(
        &state,
        Method::POST,
        &format!("/ipsproxy/api/v1/systems/{source}/entities/user"),
        Some(("pusher", "pusher-password-1")),
        Some("application/scim+json"),
        br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u1","userName":"u1"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["status"] == "409" || body["status"] == 409, "{body}");
    assert!(
        body["schemas"]
            .to_string()
            .contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{body}"
    );

    let (status, _, body) = send(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{source}/enable"),
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_eq!(
        (status, body["enabled"].clone()),
        (StatusCode::OK, serde_json::json!(true)),
        "{body}"
    );
    let (status, _, body) = send(
        &state,
        Method::POST,
        "/api/v1/systems/nope/disable",
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, _, body) = send(
        &state,
        Method::POST,
        &format!("/api/v1/systems/{source}/disable"),
        Some(PROXY_CLIENT),
        None,
        b"",
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_quarantined_target_shows_its_quarantine_and_an_admin_releases_it() {
    let state = state().await;
    let target = run_with_held_deletes(&state, "job-q").await;
    let get = |id: String| {
        let state = state.clone();
        async move {
            send(
                &state,
                Method::GET,
                &format!("/api/v1/systems/{id}"),
                Some(ADMIN),
                None,
                b"",
            )
            .await
        }
    };
    let (status, _, body) = get(target.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&body["quarantine"], &body["lastConnectionTest"]),
        (&Value::Null, &Value::Null),
        "{body}"
    );
    let release = format!("/api/v1/systems/{target}/release");
    let (status, _, body) = send(&state, Method::POST, &release, Some(ADMIN), None, b"").await;
    assert_error(status, &body, StatusCode::CONFLICT);

    let system = state.systems.get(&target).await.expect("target");
    assert!(
        state
            .quarantine
            .quarantine(&system, crate::quarantine::Reason::NotFound, "the URL answered 404")
            .await
            .expect("quarantine")
    );
    let (_, _, body) = get(target.clone()).await;
    assert_eq!(body["quarantine"]["reason"], "not-found", "{body}");
    assert_eq!(body["quarantine"]["message"], "the URL answered 404", "{body}");
    assert_eq!(body["quarantine"]["probes"], 0, "{body}");
    assert!(body["quarantine"]["since"].is_string() && body["quarantine"]["nextProbeAt"].is_string());
    // The JSON as read can be PUT back: the read-only state is ignored.
    let mut back = body.clone();
    if let Some(o) = back.as_object_mut() {
        for key in ["id", "createdAt", "updatedAt", "transformationVersion"] {
            o.remove(key);
        }
        if o.get("transformation").is_some_and(Value::is_null) {
            o.remove("transformation");
        }
    }
    let (status, _, put) = send(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{target}"),
        Some(ADMIN),
        Some("application/json"),
        back.to_string().as_bytes(),
    )
    .await;
    // The connector is not loaded in this state: the PUT is refused for that, not for the fields.
    assert!(!put.to_string().contains("unknown field"), "{put}");
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{put}");

    let (status, _, body) = send(&state, Method::POST, &release, Some(PROXY_CLIENT), None, b"").await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, _, body) = send(&state, Method::POST, &release, Some(ADMIN), None, b"").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quarantine"], Value::Null, "{body}");
    assert_eq!(body["released"]["reason"], "not-found", "{body}");
    let (status, _, body) = send(&state, Method::POST, &release, Some(ADMIN), None, b"").await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, _, body) = send(
        &state,
        Method::POST,
        "/api/v1/systems/nope/release",
        Some(ADMIN),
        None,
        b"",
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let metrics = crate::metrics::render();
    assert!(
        metrics.contains("provisio_quarantine_total{reason=\"not-found\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("provisio_quarantined_targets"), "{metrics}");
}
