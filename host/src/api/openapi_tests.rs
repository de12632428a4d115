//! The OpenAPI document against the router and the CLI: it is 3.1, it lists exactly the operations the router
//! serves (the list below is the API as it was before the document: no path or method may change), every
//! path the CLI calls is in it, every operation documents its errors, and axum's own refusals come in the
//! API's error shape.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::openapi::document;
use super::tests::{ADMIN, send, state};

/// Every operation of the service that the document covers, as `METHOD /path`.
const OPERATIONS: &[&str] = &[
    "POST /api/v1/technical-users",
    "GET /api/v1/technical-users",
    "DELETE /api/v1/technical-users/{id}",
    "PUT /api/v1/technical-users/{id}/password",
    "GET /api/v1/login-locks",
    "DELETE /api/v1/login-locks/{scope}/{subject}",
    "GET /api/v1/connectors",
    "GET /api/v1/plugins",
    "POST /api/v1/plugins",
    "POST /api/v1/plugins/{name}/rollback",
    "POST /api/v1/plugins/{name}/activate",
    "DELETE /api/v1/plugins/{name}/{version}",
    "POST /api/v1/systems",
    "GET /api/v1/systems",
    "GET /api/v1/systems/{id}",
    "PUT /api/v1/systems/{id}",
    "DELETE /api/v1/systems/{id}",
    "POST /api/v1/systems/{id}/test-connection",
    "POST /api/v1/systems/{id}/release",
    "POST /api/v1/systems/{id}/enable",
    "POST /api/v1/systems/{id}/disable",
    "POST /api/v1/systems/{id}/jobs",
    "GET /api/v1/systems/{id}/jobs",
    "GET /api/v1/systems/{id}/schedule",
    "PUT /api/v1/systems/{id}/schedule",
    "DELETE /api/v1/systems/{id}/schedule",
    "POST /api/v1/systems/{id}/provision-one",
    "POST /api/v1/systems/{id}/reset",
    "GET /api/v1/systems/{id}/export",
    "GET /api/v1/jobs/{id}",
    "POST /api/v1/jobs/{id}/stop",
    "GET /api/v1/jobs/{id}/entities",
    "GET /api/v1/jobs/{id}/held-deletes",
    "POST /api/v1/jobs/{id}/held-deletes/{decision}",
    "POST /api/v1/transformations/test",
    "GET /api/v1/systems/{id}/transformation/versions",
    "GET /api/v1/systems/{id}/transformation/versions/{n}",
    "POST /api/v1/systems/{id}/transformation/versions/{n}/rollback",
    "GET /api/v1/systems/{id}/transformation/diff",
    "GET /api/v1/audit",
    "GET /api/v1/audit/export",
    "POST /api/v1/notifications/subscriptions",
    "GET /api/v1/notifications/subscriptions",
    "GET /api/v1/notifications/subscriptions/{id}",
    "PUT /api/v1/notifications/subscriptions/{id}",
    "DELETE /api/v1/notifications/subscriptions/{id}",
    "POST /api/v1/notifications/subscriptions/{id}/test",
    "GET /api/v1/notifications/deliveries",
    "GET /api/v1/realtime/events",
    "GET /api/v1/realtime/events/{seq}",
    "POST /api/v1/realtime/events/{seq}/retry",
    "GET /api/v1/openapi.json",
    "POST /oauth2/token",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
];

fn doc() -> Value {
    serde_json::to_value(document()).expect("the document serializes")
}

/// The document's operations as `METHOD /path`.
fn documented(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    out
}

/// A path with every `{…}` segment as `{}`, and no query.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_document_is_openapi_3_1_and_lists_exactly_the_served_operations() {
    let doc = doc();
    let text = serde_json::to_string(&doc).expect("text");
    let parsed: Value = serde_json::from_str(&text).expect("the document parses");
    assert!(
        parsed["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        parsed["openapi"]
    );
    let expected: BTreeSet<String> = OPERATIONS.iter().map(|s| s.to_string()).collect();
    let documented = documented(&doc);
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not documented: {missing:?}; documented but not served: {extra:?}"
    );
    // Every `$ref` points at a component that exists.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r.clone());
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let state = state().await;
    for op in OPERATIONS {
        let (method, path) = op.split_once(' ').expect("METHOD /path");
        let uri = path.replace(['{', '}'], "");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, _, body) = send(&state, method.clone(), &uri, None, None, b"").await;
        // Unrouted, it would be the API's 404 "no such operation" or a 405; routed, it is anything else
        // (401 for the operations that need credentials).
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{op}: {body}");
        assert!(
            !body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no such operation")),
            "{op}: {body}"
        );
        if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{op} without credentials: {body}");
        }
    }
}

#[test]
fn every_path_the_cli_calls_is_documented() {
    let sources = [
        include_str!("../cli/mod.rs"),
        include_str!("../cli/admin.rs"),
        include_str!("../cli/client.rs"),
        include_str!("../cli/notify.rs"),
        include_str!("../cli/output.rs"),
        include_str!("../cli/config.rs"),
        include_str!("../cli/args.rs"),
        include_str!("../cli/scaffold.rs"),
    ];
    let doc = doc();
    let paths: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| shape(p))
        .collect();
    let mut called = BTreeSet::new();
    for source in sources {
        for piece in source.split('"').skip(1).step_by(2) {
            if piece.starts_with("/api/v1/") || piece == "/oauth2/token" {
                called.insert(shape(piece));
            }
        }
    }
    assert!(called.len() >= 15, "the CLI's paths were not found: {called:?}");
    let undocumented: Vec<_> = called.iter().filter(|p| !paths.contains(*p)).collect();
    assert!(
        undocumented.is_empty(),
        "the CLI calls paths the document lacks: {undocumented:?}"
    );
}

#[test]
fn every_operation_documents_its_errors_in_the_error_shape() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            let errors: Vec<_> = responses
                .keys()
                .filter(|s| s.starts_with('4') || s.starts_with('5'))
                .collect();
            if path == "/healthz" || path == "/metrics" || path == "/api/v1/openapi.json" {
                continue;
            }
            assert!(!errors.is_empty(), "{method} {path} documents no error");
            if path.starts_with("/api/v1/") {
                for status in ["400", "401", "403", "404", "429", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
                if op.get("requestBody").is_some() {
                    assert!(responses.contains_key("415"), "{method} {path} lacks 415");
                }
            }
        }
    }
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error", "message"]), "{error}");
}

#[tokio::test]
async fn the_document_is_served_without_credentials() {
    let state = state().await;
    let (status, headers, body) = send(&state, Method::GET, "/api/v1/openapi.json", None, None, b"").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(body["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{body}");
    assert!(body["paths"]["/api/v1/systems/{id}"]["put"].is_object());
    assert!(body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn axum_refusals_come_in_the_error_shape() {
    let state = state().await;
    // (method, uri, content type, body, the status expected)
    type Case<'a> = (Method, &'a str, Option<&'a str>, &'a [u8], StatusCode);
    let cases: &[Case] = &[
        // A query parameter of the wrong type.
        (
            Method::GET,
            "/api/v1/realtime/events?limit=many",
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/notifications/deliveries?limit=x",
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/jobs/j/entities?after=x",
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        // A path segment of the wrong type.
        (
            Method::GET,
            "/api/v1/realtime/events/seven",
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        // A path that names no operation, and a method a path does not take.
        (Method::GET, "/api/v1/nothing-here", None, b"", StatusCode::NOT_FOUND),
        (
            Method::PATCH,
            "/api/v1/systems",
            None,
            b"",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // A body of another content type.
        (
            Method::POST,
            "/api/v1/systems",
            Some("text/plain"),
            b"{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/api/v1/systems",
            Some("application/json"),
            b"{",
            StatusCode::BAD_REQUEST,
        ),
        // An array where the document says object: serde would read a struct from its fields in order (found
        // by Schemathesis: `[]` started a job). Refused before the system is even looked up.
        (
            Method::POST,
            "/api/v1/systems/no-such-system/jobs",
            Some("application/json"),
            b" []",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/v1/systems/no-such-system/jobs",
            Some("application/problem+json; charset=utf-8"),
            b"[\"resync\", true]",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/v1/systems/no-such-system/jobs",
            Some("application/json"),
            b"\"read\"",
            StatusCode::BAD_REQUEST,
        ),
        // An object is read as before: this one names no system.
        (
            Method::POST,
            "/api/v1/systems/no-such-system/jobs",
            Some("application/json"),
            b"\r\n {\"type\": \"read\"}",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, uri, content_type, body, expected) in cases {
        let (status, headers, answer) = send(&state, method.clone(), uri, Some(ADMIN), *content_type, body).await;
        assert_eq!(status, *expected, "{method} {uri}: {answer}");
        assert_eq!(headers["content-type"], "application/json", "{method} {uri}");
        assert!(
            answer["error"].is_string() && answer["message"].is_string(),
            "{method} {uri}: {answer}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key("allow"), "{method} {uri}: no Allow header");
        }
    }
    let (_, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/systems/no-such-system/jobs",
        Some(ADMIN),
        Some("application/json"),
        b"[]",
    )
    .await;
    assert_eq!(answer["message"], "invalid JSON body: expected a JSON object");
}

/// What Schemathesis found, kept: the document's `minLength` counts characters and so does the service; a
/// transformation test's entity is an object; `null` is an empty selection where an empty body is one.
#[tokio::test]
async fn the_service_refuses_what_the_document_refuses() {
    let state = state().await;
    let json = Some("application/json");
    // Eight bytes, four characters.
    let body = serde_json::json!({"name": "short-pw", "password": "éééé"}).to_string();
    let (status, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/technical-users",
        Some(ADMIN),
        json,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| m.contains("8 characters")),
        "{answer}"
    );
    let body = serde_json::json!({"name": "long-pw", "password": "éééééééé"}).to_string();
    let (status, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/technical-users",
        Some(ADMIN),
        json,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let body = serde_json::json!({"transformation": {}, "entity": [1, 2]}).to_string();
    let (status, _, answer) = send(
        &state,
        Method::POST,
        "/api/v1/transformations/test",
        Some(ADMIN),
        json,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("entity must be a JSON object")),
        "{answer}"
    );

    // `null` passes the body check and reaches the run, which does not exist.
    let uri = "/api/v1/jobs/no-such-run/held-deletes/approve";
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), json, b"null").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _, answer) = send(&state, Method::POST, uri, Some(ADMIN), json, b"[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}
