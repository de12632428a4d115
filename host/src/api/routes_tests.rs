//! The router's answers where no operation takes a request: under the proxy's two prefixes SCIM's own 404 and
//! 405 error bodies, elsewhere the API's; and the route template each request is counted under in `/metrics`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt as _;

use super::router;

const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

async fn answer(method: Method, path: &str) -> (StatusCode, String) {
    let state = crate::test_state::state(&[]).await;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let response = router(state).oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether `body` is an RFC 7644 error body with this status.
fn scim_error(body: &str, status: StatusCode) -> bool {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["schemas"][0] == SCIM_ERROR && v["status"] == status.as_str()
}

#[tokio::test]
async fn under_the_proxy_prefixes_every_path_and_method_no_operation_takes_is_a_scim_error() {
    for prefix in ["/ipsproxy/api/v1/scim", "/ipsproxy/service/api/v1/scim"] {
        for (method, rest, status) in [
            // No endpoint: the prefix itself, a system alone, too many segments, a trailing slash.
            (Method::GET, "", StatusCode::NOT_FOUND),
            (Method::GET, "/", StatusCode::NOT_FOUND),
            (Method::POST, "/", StatusCode::NOT_FOUND),
            (Method::GET, "/s", StatusCode::NOT_FOUND),
            (Method::GET, "/s/", StatusCode::NOT_FOUND),
            (Method::GET, "/s/Users/", StatusCode::NOT_FOUND),
            (Method::GET, "/s/Users/a/", StatusCode::NOT_FOUND),
            (Method::DELETE, "/s/Users/a/b", StatusCode::NOT_FOUND),
            // An endpoint, not this method.
            (Method::DELETE, "/s/Schemas", StatusCode::METHOD_NOT_ALLOWED),
            (Method::PUT, "/s/Users", StatusCode::METHOD_NOT_ALLOWED),
            (Method::POST, "/s/Users/a", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "/s/.search", StatusCode::METHOD_NOT_ALLOWED),
            (Method::OPTIONS, "/s/Users/a", StatusCode::METHOD_NOT_ALLOWED),
            // An endpoint: authentication first.
            (Method::GET, "/s/Users", StatusCode::UNAUTHORIZED),
            (Method::GET, "/s/Users/a", StatusCode::UNAUTHORIZED),
            (Method::POST, "/s/Groups/.search", StatusCode::UNAUTHORIZED),
            (Method::GET, "/s/ServiceProviderConfig", StatusCode::UNAUTHORIZED),
        ] {
            let (got, body) = answer(method.clone(), &format!("{prefix}{rest}")).await;
            assert_eq!(got, status, "{method} {prefix}{rest}: {body}");
            assert!(scim_error(&body, status), "{method} {prefix}{rest}: {body}");
        }
    }
    // Beside the prefixes: not the proxy's, axum's empty 404.
    for path in [
        "/ipsproxy/api/v1/scimx/s/Users",
        "/ipsproxy/api/v1/sci",
        "/ipsproxy/api/v1",
        "/nowhere",
    ] {
        assert_eq!(
            answer(Method::GET, path).await,
            (StatusCode::NOT_FOUND, String::new()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_proxy_request_is_counted_under_its_route_template() {
    answer(Method::GET, "/ipsproxy/service/api/v1/scim/s/Users/a-user-id").await;
    let metrics = crate::metrics::render();
    let series = r#"route="/ipsproxy/service/api/v1/scim/{system}/{resource}/{id}",status="401""#;
    assert!(metrics.contains(series), "{metrics}");
    assert!(!metrics.contains("a-user-id"), "never by raw path");
}
