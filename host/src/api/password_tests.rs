//! `PUT /api/v1/technical-users/{id}/password` through the whole router (`oneshot`).

use serde_json::{Value, json};

use super::history_tests::{call, plain_state};
use axum::http::{Method, StatusCode};

use crate::store::principals::{Permission, PrincipalKind};

const ADMIN: (&str, &str) = ("admin", "admin-password-1");
const OPERATOR: (&str, &str) = ("operator", "operator-password-1");
const READER: (&str, &str) = ("reader", "reader-password-1");

async fn id_of(state: &crate::api::AppState, name: &str) -> String {
    state
        .stores
        .principals
        .by_name(name)
        .await
        .expect("lookup")
        .expect("present")
        .id
}

#[tokio::test]
async fn a_password_change_works_and_ends_the_users_tokens() {
    let state = plain_state().await;
    let client = state
        .stores
        .principals
        .create(
            "client",
            "client-password-1",
            PrincipalKind::Technical,
            &[Permission::ReadLogs],
        )
        .await
        .expect("client");
    let token = state
        .stores
        .tokens
        .issue(&client, std::time::Duration::from_secs(600))
        .await
        .expect("token");
    let uri = format!("/api/v1/technical-users/{}/password", client.id);
    let (status, body) = call(
        &state,
        Method::PUT,
        &uri,
        ADMIN,
        Some(json!({"password": "brand-new-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["id"].as_str(), body["name"].as_str(), body["permissions"].clone()),
        (Some(client.id.as_str()), Some("client"), json!(["read-logs"]))
    );
    assert!(
        body.get("password").is_none() && !body.to_string().contains("brand-new"),
        "{body}"
    );
    assert!(
        state.stores.tokens.principal(&token).await.expect("token").is_none(),
        "the token ended"
    );
    let (status, _) = call(
        &state,
        Method::GET,
        "/api/v1/realtime/events",
        ("client", "client-password-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password no longer works");
    let (status, body) = call(
        &state,
        Method::GET,
        "/api/v1/realtime/events",
        ("client", "brand-new-password"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn password_refusals_are_json_errors() {
    let state = plain_state().await;
    let reader = id_of(&state, READER.0).await;
    let admin = id_of(&state, ADMIN.0).await;
    let uri = |id: &str| format!("/api/v1/technical-users/{id}/password");
    for (who, target, body, expected) in [
        (ADMIN, reader.clone(), json!({"password": ""}), StatusCode::BAD_REQUEST),
        (
            ADMIN,
            reader.clone(),
            json!({"password": "short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            ADMIN,
            reader.clone(),
            json!({"secret": "long-enough-1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            ADMIN,
            "no-such-user".to_string(),
            json!({"password": "long-enough-1"}),
            StatusCode::NOT_FOUND,
        ),
        // Without manage-systems.
        (
            READER,
            reader.clone(),
            json!({"password": "long-enough-1"}),
            StatusCode::FORBIDDEN,
        ),
        // A technical user may not change an admin's password, nor one of a user holding more than it does.
        (
            OPERATOR,
            admin.clone(),
            json!({"password": "long-enough-1"}),
            StatusCode::FORBIDDEN,
        ),
        (
            OPERATOR,
            reader.clone(),
            json!({"password": "long-enough-1"}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, answer): (StatusCode, Value) =
            call(&state, Method::PUT, &uri(&target), who, Some(body.clone())).await;
        assert_eq!(status, expected, "{} → {target} {body}: {answer}", who.0);
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }
    // Nothing changed: the reader's password still works.
    assert!(
        state
            .stores
            .principals
            .verify(READER.0, READER.1)
            .await
            .expect("verify")
            .is_some()
    );
}
