//! Several replicas on one PostgreSQL: what one writes, the others see at once; a bearer token from one works
//! on the others and after a restart of all of them, and stops working everywhere within a second of its
//! technical user's deletion.

use std::time::{Duration, Instant};

use provisio::server::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN, Service, fresh_postgres};

fn on(database: &str) -> Settings {
    Settings {
        database_url: Some(database.to_string()),
        ..Default::default()
    }
}

async fn token(service: &Service, user: &str, password: &str) -> String {
    let answer: Value = service
        .http
        .post(format!("{}/oauth2/token", service.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", user),
            ("client_secret", password),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    answer["access_token"].as_str().expect("access token").to_string()
}

async fn systems_with(service: &Service, token: &str) -> (StatusCode, Value) {
    let response = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_systems_and_tokens_and_a_deletion_ends_a_token_everywhere() {
    let database = fresh_postgres().await;
    let a = Service::start_with(on(&database)).await;
    let b = Service::start_beside(&a, on(&database)).await;

    let (status, body) = a
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": "automation", "password": "automation-password-1", "permissions": ["manage-systems"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let automation = body["id"].as_str().expect("id").to_string();
    let id = a
        .create_system(json!({"name": "Made on A", "type": "scim", "role": "target",
            "properties": {"URL": "http://127.0.0.1:9/scim", "Authentication": "BearerToken", "Password": "t0ken"}}))
        .await;

    // Issued on A, used on B; B reads what A wrote.
    let issued = token(&a, "automation", "automation-password-1").await;
    let (status, listed) = systems_with(&b, &issued).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(
        listed.as_array().into_iter().flatten().any(|s| s["id"] == id.as_str()),
        "{listed}"
    );

    // Every replica restarted: the token still works.
    let a = Service::start_beside(&a, on(&database)).await;
    drop(b);
    let b = Service::start_beside(&a, on(&database)).await;
    assert_eq!(systems_with(&b, &issued).await.0, StatusCode::OK);
    assert_eq!(systems_with(&a, &issued).await.0, StatusCode::OK);

    // Deleted on A: within a second the token fails on B too.
    let (status, _) = a
        .admin(Method::DELETE, &format!("/api/v1/technical-users/{automation}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deleted = Instant::now();
    while systems_with(&b, &issued).await.0 == StatusCode::OK {
        assert!(
            deleted.elapsed() < Duration::from_millis(1500),
            "B still takes the token of a deleted user"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        deleted.elapsed() <= Duration::from_millis(1100),
        "{:?}",
        deleted.elapsed()
    );
    assert_eq!(systems_with(&a, &issued).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = b.admin(Method::GET, "/api/v1/systems", None).await;
    assert_eq!(status, StatusCode::OK, "{} still works", ADMIN.0);
}

/// A schedule every 2 s on three replicas for about 10 s: one run per period across them, never two close
/// together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_period_across_replicas() {
    let database = fresh_postgres().await;
    let a = Service::start_with(on(&database)).await;
    let b = Service::start_beside(&a, on(&database)).await;
    let c = Service::start_beside(&a, on(&database)).await;
    // A source without targets: each run ends at once with an error that says so, which is enough to count.
    let source = a
        .create_system(json!({"name": "Scheduled", "type": "scim", "role": "source",
            "properties": {"URL": "http://127.0.0.1:9/scim", "Authentication": "BearerToken", "Password": "t0ken"}}))
        .await;
    let (status, body) = b
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{source}/schedule"),
            Some(json!({"everySeconds": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (status, _) = c
        .admin(Method::DELETE, &format!("/api/v1/systems/{source}/schedule"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, jobs) = a
        .admin(Method::GET, &format!("/api/v1/systems/{source}/jobs?limit=100"), None)
        .await;
    let mut started: Vec<chrono::DateTime<chrono::Utc>> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["trigger"] == "schedule")
        .map(|j| {
            chrono::DateTime::parse_from_rfc3339(j["startedAt"].as_str().expect("startedAt"))
                .expect("time")
                .with_timezone(&chrono::Utc)
        })
        .collect();
    started.sort();
    // The first slot is one period after the schedule was seen, the last may fall after the deletion.
    assert!((4..=6).contains(&started.len()), "{} runs: {started:?}", started.len());
    // Claimed slots are at least 1.8 s apart; a run starts at the scheduler's next tick (1 s) after its slot.
    for pair in started.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(750),
            "two runs {gap} apart: {started:?}"
        );
    }
}
