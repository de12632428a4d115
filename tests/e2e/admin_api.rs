//! The admin API: authentication, permissions, clear errors, and secrets that never come back out — not
//! in answers, not in logs, not in the database file.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{self, Service};

const PLANTED: &str = "planted-secret-8f3a61c2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_permissions() {
    let service = Service::start().await;
    let anonymous = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = anonymous.json().await.expect("json error body");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("authentication required")
    );

    let wrong = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let (status, created) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": "pusher", "password": "pusher-password", "permissions": ["realtime-api"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let limited = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .basic_auth("pusher", Some("pusher-password"))
        .send()
        .await
        .expect("request");
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);

    // OAuth2 client credentials: the technical user's name and password as client id and secret.
    let token: serde_json::Value = service
        .http
        .post(format!("{}/oauth2/token", service.url))
        .basic_auth("admin", Some(support::ADMIN.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("access_token");
    let listed = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .bearer_auth(access)
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), StatusCode::OK);
    let refused = service
        .http
        .post(format!("{}/oauth2/token", service.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "admin"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let forged = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .bearer_auth("forged")
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let service = Service::start().await;
    let raw = service
        .http
        .post(format!("{}/api/v1/systems", service.url))
        .basic_auth(support::ADMIN.0, Some(support::ADMIN.1))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = raw.json().await.expect("json");
    assert!(
        body["message"].as_str().unwrap_or("").contains("invalid JSON"),
        "{body}"
    );

    let cases = [
        (
            json!({"name": "x", "type": "nope", "role": "target"}),
            "not a loaded connector",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "properties": {"URL": "http://h", "ProxyType": "OnPremise"}}),
            "OnPremise",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "properties": {"URL": "not a url"}}),
            "URL is not a valid URL",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "properties": {"URL": "http://h", "Authentication": "Kerberos"}}),
            "Kerberos",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "properties": {"URL": "http://h"}, "sources": ["missing"]}),
            "does not exist",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "properties": {"URL": "http://h"}, "transformation": {"user": {"mappings": [{"sourcePath": "$.a", "targetPath": "$.b", "bogusKey": 1}]}}}),
            "bogusKey",
        ),
        (
            json!({"name": "x", "type": "scim", "role": "target", "surprise": true}),
            "surprise",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = service.admin(Method::POST, "/api/v1/systems", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        let message = answer["message"].as_str().unwrap_or("");
        assert!(
            message.contains(expected),
            "{body}: {message:?} should mention {expected:?}"
        );
    }
    let (status, _) = service.admin(Method::GET, "/api/v1/systems/does-not-exist", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_come_back_out() {
    support::capture_logs();
    let service = Service::start().await;
    let id = service
        .create_system(json!({
            "name": "Secret keeper", "type": "scim", "role": "target",
            "properties": {"URL": "http://127.0.0.1:1/v2", "Authentication": "BearerToken", "Password": PLANTED}
        }))
        .await;
    let (_, one) = service.admin(Method::GET, &format!("/api/v1/systems/{id}"), None).await;
    let (_, all) = service.admin(Method::GET, "/api/v1/systems", None).await;
    assert_eq!(one["properties"]["Password"], "********");
    for answer in [&one, &all] {
        assert!(!answer.to_string().contains(PLANTED), "{answer}");
    }
    // Sending the mask back keeps the stored secret.
    let mut replacement = one.clone();
    let keep = json!({"name": "Secret keeper", "type": "scim", "role": "target", "properties": replacement["properties"].take()});
    let (status, replaced) = service
        .admin(Method::PUT, &format!("/api/v1/systems/{id}"), Some(keep))
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["message"], "System Secret keeper configuration updated.");
    let stored = service.state.systems.get(&id).await.expect("system");
    let opened = service.state.stores.open_secrets(&stored.spec.secrets).expect("opens");
    assert_eq!(opened["Password"].expose(), PLANTED);
    // A failing Test Connection does not echo the secret either.
    let (ok, message) = service.test_connection(&id).await;
    assert!(!ok && !message.contains(PLANTED), "{message}");

    for file in ["provisio.db", "provisio.db-wal"] {
        let path = service.data_dir().join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(PLANTED.len()).any(|w| w == PLANTED.as_bytes()),
                "{file} holds the secret in clear"
            );
        }
    }
    let logs = support::logs();
    assert!(!logs.is_empty(), "logs are captured");
    assert!(!logs.contains(PLANTED), "a log line holds the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_secret_cannot_be_sent_to_a_new_url() {
    let service = Service::start().await;
    let id = service
        .create_system(json!({
            "name": "Keeper", "type": "scim", "role": "target",
            "properties": {"URL": "http://127.0.0.1:1/v2", "Authentication": "BearerToken", "Password": PLANTED}
        }))
        .await;
    let moved = json!({"name": "Keeper", "type": "scim", "role": "target",
        "properties": {"URL": "http://127.0.0.1:2/elsewhere", "Authentication": "BearerToken", "Password": "********"}});
    let (status, answer) = service
        .admin(Method::PUT, &format!("/api/v1/systems/{id}"), Some(moved))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("must be entered again"),
        "{answer}"
    );
    let with_credentials = json!({"name": "In URL", "type": "scim", "role": "target",
        "properties": {"URL": "http://user:pw@127.0.0.1:1/v2"}});
    let (status, answer) = service
        .admin(Method::POST, "/api/v1/systems", Some(with_credentials))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("must not carry credentials"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_escalation_and_deleted_users_lose_their_tokens() {
    let service = Service::start().await;
    let (status, _) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": "operator", "password": "operator-password", "permissions": ["manage-systems"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let as_operator = |method: Method, path: &str| {
        service
            .http
            .request(method, format!("{}{path}", service.url))
            .basic_auth("operator", Some("operator-password"))
    };
    let escalate = as_operator(Method::POST, "/api/v1/technical-users")
        .json(&json!({"name": "sneaky", "password": "sneaky-password", "permissions": ["manage-plugins"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(escalate.status(), StatusCode::FORBIDDEN);
    let admin_id = service
        .state
        .stores
        .principals
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|p| p.name == "admin")
        .expect("admin")
        .id;
    let remove_admin = as_operator(Method::DELETE, &format!("/api/v1/technical-users/{admin_id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(remove_admin.status(), StatusCode::FORBIDDEN);

    let token: serde_json::Value = service
        .http
        .post(format!("{}/oauth2/token", service.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "operator"),
            ("client_secret", "operator-password"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let access = token["access_token"].as_str().expect("access token").to_string();
    let operator_id = service
        .state
        .stores
        .principals
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|p| p.name == "operator")
        .expect("op")
        .id;
    let (status, _) = service
        .admin(Method::DELETE, &format!("/api/v1/technical-users/{operator_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after = service
        .http
        .get(format!("{}/api/v1/systems", service.url))
        .bearer_auth(&access)
        .send()
        .await
        .expect("request");
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "a deleted user's token is revoked"
    );
}
