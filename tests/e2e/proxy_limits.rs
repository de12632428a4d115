//! The proxy's per-client bound on requests in flight (`serve --proxy-max-in-flight`): a client whose
//! requests wait on a slow backend gets 429 for more, at once, instead of holding ever more plugin calls;
//! another client is served meanwhile, and the first is served again once its requests end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use provisio::server::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::Service;

/// A SCIM backend whose `/Users` answers after `delay` while `slow` is set.
async fn backend(slow: Arc<AtomicBool>, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/v2/Users",
        get(move || {
            let slow = slow.clone();
            async move {
                if slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(delay).await;
                }
                axum::Json(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []
                }))
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v2")
}

async fn technical_user(service: &Service, name: &str) {
    let (s, b) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": name, "password": format!("{name}-secret"), "permissions": ["proxy-api"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn list(service: &Service, system: &str, client: &str) -> (StatusCode, Option<String>, Value) {
    let response = service
        .http
        .get(format!("{}/ipsproxy/api/v1/scim/{system}/Users?count=1", service.url))
        .basic_auth(client, Some(format!("{client}-secret")))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_too_many_requests_in_flight_gets_429_at_once_and_others_are_served() {
    let service = Service::start_with(Settings {
        proxy_max_in_flight: Some(2),
        ..Default::default()
    })
    .await;
    technical_user(&service, "greedy").await;
    technical_user(&service, "neighbour").await;
    let slow = Arc::new(AtomicBool::new(false));
    let url = backend(slow.clone(), Duration::from_secs(4)).await;
    let system = service
        .create_system(json!({
            "name": "slow backend", "type": "scim", "role": "proxy",
            "properties": {"URL": url, "Authentication": "BearerToken", "Password": "token"}
        }))
        .await;
    // Warm: the view is loaded and the first list served quickly.
    let (s, _, b) = list(&service, &system, "greedy").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    slow.store(true, Ordering::SeqCst);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (http, base, system) = (service.http.clone(), service.url.clone(), system.clone());
            tokio::spawn(async move {
                http.get(format!("{base}/ipsproxy/api/v1/scim/{system}/Users?count=1"))
                    .basic_auth("greedy", Some("greedy-secret"))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Both are in flight (waiting on the backend) once the service counts them.
    let until = Instant::now() + Duration::from_secs(3);
    let greedy = greedy_id(&service).await;
    while service.state.proxy.in_flight.in_flight(&greedy) < 2 {
        assert!(Instant::now() < until, "the two slow requests never got in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let (s, retry, b) = list(&service, &system, "greedy").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["scimType"], "tooMany", "{b}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after waiting: {:?}",
        started.elapsed()
    );

    // The neighbour is not held back by the greedy client's bound.
    slow.store(false, Ordering::SeqCst);
    let (s, _, b) = list(&service, &system, "neighbour").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for request in waiting {
        assert_eq!(request.await.expect("task").expect("answer"), StatusCode::OK);
    }
    // Its requests ended: the greedy client is served again.
    let (s, _, b) = list(&service, &system, "greedy").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn greedy_id(service: &Service) -> String {
    service
        .state
        .stores
        .principals
        .list()
        .await
        .expect("principals")
        .into_iter()
        .find(|p| p.name == "greedy")
        .map(|p| p.id)
        .expect("greedy exists")
}
