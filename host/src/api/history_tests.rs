//! The transformation history through the whole router (`oneshot`), with the bundled SCIM connector loaded so
//! that saves and rollbacks are validated as in the service.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{AppState, router};
use crate::store::principals::{Permission, PrincipalKind};

const ADMIN: (&str, &str) = ("admin", "admin-password-1");
const OPERATOR: (&str, &str) = ("operator", "operator-password-1");
const READER: (&str, &str) = ("reader", "reader-password-1");

/// A service without connectors: an admin, a technical user with `manage-systems` and one with `read-logs`
/// only.
pub(crate) async fn plain_state() -> AppState {
    crate::test_state::state(PRINCIPALS).await
}

/// A service with the bundled SCIM connector, and the principals of [`plain_state`].
pub(crate) async fn state_with_scim() -> AppState {
    crate::test_state::state_with_scim(PRINCIPALS).await
}

const PRINCIPALS: &[crate::test_state::TestPrincipal<'static>] = &[
    (ADMIN.0, ADMIN.1, PrincipalKind::Admin, &Permission::ALL),
    (
        OPERATOR.0,
        OPERATOR.1,
        PrincipalKind::Technical,
        &[Permission::ManageSystems],
    ),
    (READER.0, READER.1, PrincipalKind::Technical, &[Permission::ReadLogs]),
];

pub(crate) async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    who: (&str, &str),
    body: Option<Value>,
) -> (StatusCode, Value) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", who.0, who.1));
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Basic {auth}"));
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    let response = router(state.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

fn doc(source: &str) -> Value {
    json!({"user": {"mappings": [{"sourcePath": source, "targetPath": "$.userName"}]}})
}

fn system(transformation: Option<Value>, description: Option<&str>) -> Value {
    let mut s =
        json!({"name": "Target", "type": "scim", "role": "target", "properties": {"URL": "http://scim.example/scim"}});
    if let Some(t) = transformation {
        s["transformation"] = t;
    }
    if let Some(d) = description {
        s["description"] = json!(d);
    }
    s
}

#[tokio::test]
async fn versions_have_authors_descriptions_a_diff_and_a_rollback() {
    let state = state_with_scim().await;
    let (status, created) = call(
        &state,
        Method::POST,
        "/api/v1/systems",
        ADMIN,
        Some(system(Some(doc("$.a")), Some("first"))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let base = format!("/api/v1/systems/{id}/transformation");
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}"),
        OPERATOR,
        Some(system(Some(doc("$.b")), Some("use b"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A reset (no transformation) is a version too, without a document.
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}"),
        ADMIN,
        Some(system(None, None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, versions) = call(&state, Method::GET, &format!("{base}/versions"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    let listed: Vec<(i64, &str, Option<&str>, bool)> = versions
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| {
            assert!(v["createdAt"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
            assert!(v.get("transformation").is_none(), "the list leaves documents out: {v}");
            (
                v["number"].as_i64().expect("number"),
                v["author"].as_str().expect("author"),
                v["description"].as_str(),
                v["reset"].as_bool().expect("reset"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (3, "admin", None, true),
            (2, "operator", Some("use b"), false),
            (1, "admin", Some("first"), false)
        ]
    );
    let (status, one) = call(&state, Method::GET, &format!("{base}/versions/2"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["transformation"], doc("$.b"));
    let (_, reset) = call(&state, Method::GET, &format!("{base}/versions/3"), ADMIN, None).await;
    assert_eq!(
        (reset["reset"].clone(), reset["transformation"].clone()),
        (json!(true), Value::Null)
    );

    let (status, diff) = call(&state, Method::GET, &format!("{base}/diff?from=1&to=2"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!((diff["added"].as_u64(), diff["removed"].as_u64()), (Some(1), Some(1)));
    let removed: Vec<&str> = diff["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["op"] == "delete")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(removed.len(), 1);
    assert!(removed[0].contains("$.a"), "{diff}");
    assert!(diff["unified"].as_str().expect("unified").contains("+++ version 2"));

    // Rollback to version 1: a new version equal to it, by the caller, described.
    let (status, rolled) = call(
        &state,
        Method::POST,
        &format!("{base}/versions/1/rollback"),
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["transformation"], doc("$.a"));
    let (_, latest) = call(&state, Method::GET, &format!("{base}/versions/4"), ADMIN, None).await;
    assert_eq!(
        (
            latest["author"].as_str(),
            latest["description"].as_str(),
            latest["transformation"].clone()
        ),
        (Some("operator"), Some("Rollback to version 1"), doc("$.a"))
    );
    // Rolling back to what is in force already is a conflict; a described rollback to the reset works.
    let (status, body) = call(
        &state,
        Method::POST,
        &format!("{base}/versions/4/rollback"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = call(
        &state,
        Method::POST,
        &format!("{base}/versions/3/rollback"),
        ADMIN,
        Some(json!({"description": "default again"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, latest) = call(&state, Method::GET, &format!("{base}/versions/5"), ADMIN, None).await;
    assert_eq!(
        (latest["reset"].as_bool(), latest["description"].as_str()),
        (Some(true), Some("default again"))
    );
}

#[tokio::test]
async fn history_refusals_are_json_errors() {
    let state = state_with_scim().await;
    let (_, created) = call(
        &state,
        Method::POST,
        "/api/v1/systems",
        ADMIN,
        Some(system(Some(doc("$.a")), None)),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    let base = format!("/api/v1/systems/{id}/transformation");
    for (method, uri, body, expected) in [
        (
            Method::GET,
            "/api/v1/systems/nope/transformation/versions".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, format!("{base}/versions/9"), None, StatusCode::NOT_FOUND),
        (Method::GET, format!("{base}/versions/x"), None, StatusCode::BAD_REQUEST),
        (Method::GET, format!("{base}/versions/0"), None, StatusCode::BAD_REQUEST),
        (
            Method::POST,
            format!("{base}/versions/9/rollback"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            format!("{base}/versions/1/rollback"),
            Some(json!({"what": 1})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("{base}/diff?from=1"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("{base}/diff?from=1&to=7"),
            None,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, body) = call(&state, method.clone(), &uri, ADMIN, body).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{uri}: {body}");
    }
    // A long description is refused before anything is stored.
    let long = "x".repeat(crate::systems::MAX_DESCRIPTION + 1);
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/api/v1/systems/{id}"),
        ADMIN,
        Some(system(Some(doc("$.z")), Some(&long))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Without manage-systems: 403 on every history call.
    for (method, uri) in [
        (Method::GET, format!("{base}/versions")),
        (Method::GET, format!("{base}/versions/1")),
        (Method::POST, format!("{base}/versions/1/rollback")),
        (Method::GET, format!("{base}/diff?from=1&to=1")),
    ] {
        let (status, body) = call(&state, method, &uri, READER, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
    }
}
