//! `PUT /api/v1/technical-users/{id}/password`: a user's new password (`{"password": "…"}`). The old password
//! stops working at once, and so do the user's bearer tokens and console sessions.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, JsonBody};
use crate::store::principals::{Permission, PrincipalKind};

/// The shortest password accepted (as at creation).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The body of a password change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    password: String,
}

/// Sets a user's password: `manage-systems`; an admin's only by an admin. 200 with the user, 400 for an empty
/// or short password, 404 for an unknown id.
pub async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<PasswordInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ManageSystems)?;
    if input.password.trim().is_empty() {
        return Err(ApiError::bad_request("password must not be empty"));
    }
    if input.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let user = state
        .stores
        .principals
        .list()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    if user.kind == PrincipalKind::Admin && caller.0.kind != PrincipalKind::Admin {
        return Err(ApiError::forbidden("only an admin can set an admin's password"));
    }
    state.stores.principals.set_password(&user.id, &input.password).await?;
    state.stores.tokens.revoke_all(&user.id).await?;
    // Audit hook: a password change (who, whose, when; never the value) once the audit log exists.
    tracing::info!(user = %user.name, by = %caller.0.name, "password changed; the user's tokens were revoked");
    Ok(Json(json!(user)))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use base64::Engine as _;
    use tower::ServiceExt as _;

    use super::super::login_guard::LoginPolicy;
    use super::super::login_tests::{ADMIN, CLIENT, state};
    use super::super::router;
    use super::*;

    fn basic((user, password): (&str, &str)) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    async fn call(state: &AppState, method: Method, uri: &str, auth: String, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = router(state.clone()).oneshot(request).await.expect("answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_new_password_replaces_the_old_and_ends_the_tokens() {
        let state = state(LoginPolicy::default()).await;
        let client = state
            .stores
            .principals
            .by_name(CLIENT.0)
            .await
            .expect("store")
            .expect("client");
        let token = state
            .stores
            .tokens
            .issue(&client, std::time::Duration::from_secs(60))
            .await
            .expect("token");
        let uri = format!("/api/v1/technical-users/{}/password", client.id);
        let (status, body) = call(
            &state,
            Method::PUT,
            &uri,
            basic(ADMIN),
            r#"{"password": "a-new-password-9"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], client.id.as_str());
        assert_eq!(body["name"], CLIENT.0);
        assert!(body.get("password").is_none() && !body.to_string().contains("a-new-password-9"));
        // The token, and the old password, no longer work; the new one does (the client has no admin
        // permission: 403 is a successful login).
        let (status, _) = call(&state, Method::GET, "/api/v1/systems", format!("Bearer {token}"), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&state, Method::GET, "/api/v1/systems", basic(CLIENT), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(
            &state,
            Method::GET,
            "/api/v1/systems",
            basic((CLIENT.0, "a-new-password-9")),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn weak_passwords_unknown_ids_and_callers_without_permission_are_refused() {
        let state = state(LoginPolicy::default()).await;
        let client = state
            .stores
            .principals
            .by_name(CLIENT.0)
            .await
            .expect("store")
            .expect("client");
        let uri = format!("/api/v1/technical-users/{}/password", client.id);
        for (body, expected) in [
            (r#"{"password": ""}"#, "must not be empty"),
            (r#"{"password": "   "}"#, "must not be empty"),
            (r#"{"password": "short"}"#, "at least 8"),
        ] {
            let (status, answer) = call(&state, Method::PUT, &uri, basic(ADMIN), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            assert!(answer["message"].as_str().unwrap_or("").contains(expected), "{answer}");
        }
        let (status, answer) = call(&state, Method::PUT, &uri, basic(ADMIN), r#"{"pass": "x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let (status, answer) = call(
            &state,
            Method::PUT,
            "/api/v1/technical-users/no-such-id/password",
            basic(ADMIN),
            r#"{"password": "long-enough-1"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert_eq!(answer["error"], "Not Found");
        // A technical user without manage-systems cannot set passwords, not even its own.
        let (status, _) = call(
            &state,
            Method::PUT,
            &uri,
            basic(CLIENT),
            r#"{"password": "long-enough-1"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
