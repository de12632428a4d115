//! Technical users (and the admins, listed): create with permissions, change a password, delete.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::{ConsoleResult, Frame, Session, outcome, page_with_notice, permission_name, render, take_notice};
use crate::api::AppState;
use crate::api::ops;
use crate::store::principals::{Permission, PrincipalKind};

/// A user as the page lists it.
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `admin` or `technical`.
    pub kind: &'static str,
    /// Permissions, comma-separated (`all` for an admin).
    pub permissions: String,
    /// Whether it is the signed-in user.
    pub me: bool,
}

/// A permission the form offers.
pub struct Grant {
    /// `manage-systems`, …
    pub name: &'static str,
    /// What it allows.
    pub doc: &'static str,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    frame: Frame,
    users: Vec<UserRow>,
    grants: Vec<Grant>,
}

fn doc(p: Permission) -> &'static str {
    match p {
        Permission::ManageSystems => "create, change and delete systems and technical users",
        Permission::RunJobs => "start and stop jobs, decide held deletes, retry real-time events",
        Permission::ReadLogs => "read job and real-time logs",
        Permission::ProxyApi => "use the proxy systems' SCIM API",
        Permission::RealtimeApi => "push to the real-time provisioning API",
        Permission::ManagePlugins => "upload, activate, roll back and remove plugins",
        Permission::ReadAudit => "read and export the audit log",
    }
}

/// `GET /console/users`.
pub async fn list(State(state): State<AppState>, session: Session, headers: HeaderMap) -> ConsoleResult {
    let caller = session.caller();
    let users = ops::principals(&state, &caller)
        .await?
        .into_iter()
        .map(|p| UserRow {
            me: p.id == session.principal.id,
            kind: if p.kind == PrincipalKind::Admin {
                "admin"
            } else {
                "technical"
            },
            permissions: if p.kind == PrincipalKind::Admin {
                "all".into()
            } else {
                p.permissions
                    .iter()
                    .map(|p| permission_name(*p))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            id: p.id,
            name: p.name,
        })
        .collect();
    let grants = Permission::ALL
        .iter()
        .filter(|p| session.principal.may(**p))
        .map(|p| Grant {
            name: permission_name(*p),
            doc: doc(*p),
        })
        .collect();
    let page = UsersPage {
        frame: Frame::new(&session, "users", take_notice(&headers)),
        users,
        grants,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `POST /console/users`: `name`, `password`, and a `permission` field per permission granted.
pub async fn create(State(state): State<AppState>, session: Session, body: axum::body::Bytes) -> Response {
    let (mut name, mut password, mut permissions) = (String::new(), String::new(), Vec::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "name" => name = v.into_owned(),
            "password" => password = v.into_owned(),
            "permission" => {
                if let Some(p) = Permission::ALL.iter().find(|p| permission_name(**p) == v) {
                    permissions.push(*p);
                } else {
                    return super::redirect_with(
                        &session,
                        "/console/users",
                        false,
                        &format!("unknown permission {v:?}"),
                    );
                }
            }
            _ => {}
        }
    }
    let result = ops::create_technical_user(&state, &session.caller(), &name, &password, &permissions).await;
    outcome(&session, "/console/users", result, |p| {
        format!("Technical user {} created.", p.name)
    })
}

/// `POST /console/users/{id}/delete`.
pub async fn delete(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let result = ops::delete_technical_user(&state, &session.caller(), &id).await;
    outcome(&session, "/console/users", result, |()| {
        "User deleted; its tokens and sessions stopped working.".into()
    })
}

/// `POST /console/users/{id}/password`: `password` and its repetition `confirm`. The user's tokens and
/// sessions end (one's own too: then the login page follows).
pub async fn set_password(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (mut password, mut confirm) = (String::new(), String::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "password" => password = v.into_owned(),
            "confirm" => confirm = v.into_owned(),
            _ => {}
        }
    }
    if password != confirm {
        return super::redirect_with(
            &session,
            "/console/users",
            false,
            "The two passwords differ; the password is unchanged.",
        );
    }
    let result = ops::set_technical_user_password(&state, &session.caller(), &id, &password).await;
    let me = id == session.principal.id;
    outcome(
        &session,
        if me { "/console/login" } else { "/console/users" },
        result,
        |p| {
            if me {
                "Your password changed; sign in with the new one.".into()
            } else {
                format!(
                    "The password of {} changed; its tokens and sessions stopped working.",
                    p.name
                )
            }
        },
    )
}
