//! A system's transformation history in the console: the versions with author, date and description, one
//! version's document, a diff between any two, and a rollback (a new version equal to an old one) after a
//! confirmation. The same operations as the API's ([`crate::api::history`]).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{ConsoleError, ConsoleResult, Frame, Session, page_with_notice, render, take_notice};
use crate::api::AppState;
use crate::api::history::{self, DiffLine, number};
use crate::api::ops;

/// A version as the history lists it.
pub struct VersionRow {
    /// Number.
    pub number: i64,
    /// Who saved it.
    pub author: String,
    /// When, for people.
    pub when: String,
    /// Description (empty when none).
    pub description: String,
    /// A reset to the connector's default.
    pub reset: bool,
    /// The version in force.
    pub current: bool,
}

#[derive(Template)]
#[template(path = "console/history.html")]
struct HistoryPage {
    frame: Frame,
    id: String,
    name: String,
    versions: Vec<VersionRow>,
    from: i64,
    to: i64,
}

#[derive(Template)]
#[template(path = "console/history_version.html")]
struct VersionPage {
    frame: Frame,
    id: String,
    name: String,
    version: VersionRow,
    document: String,
    newest: i64,
}

#[derive(Template)]
#[template(path = "console/history_diff.html")]
struct DiffPage {
    frame: Frame,
    id: String,
    name: String,
    versions: Vec<VersionRow>,
    from: i64,
    to: i64,
    added: usize,
    removed: usize,
    lines: Vec<DiffLine>,
}

/// The versions of a system, newest first, with the one in force marked.
async fn rows(state: &AppState, session: &Session, id: &str) -> Result<(String, Vec<VersionRow>), ConsoleError> {
    let caller = session.caller();
    let system = ops::system(state, &caller, id).await?;
    let versions = history::versions(state, &caller, id).await?;
    let newest = versions.first().map(|v| v.version);
    Ok((
        system.spec.name,
        versions
            .into_iter()
            .map(|v| VersionRow {
                current: Some(v.version) == newest,
                number: v.version,
                author: v.author,
                when: super::when(&v.created_at),
                description: v.description.unwrap_or_default(),
                reset: v.reset,
            })
            .collect(),
    ))
}

/// `GET /console/systems/{id}/transformation/history`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let (name, versions) = rows(&state, &session, &id).await?;
    let to = versions.first().map(|v| v.number).unwrap_or(0);
    let from = versions.get(1).map(|v| v.number).unwrap_or(to);
    let page = HistoryPage {
        // The notice of the rollback that led here.
        frame: Frame::new(&session, "systems", take_notice(&headers)),
        id,
        name,
        versions,
        from,
        to,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `GET /console/systems/{id}/transformation/history/{n}`: the document, and the rollback form.
pub async fn version(
    State(state): State<AppState>,
    session: Session,
    Path((id, n)): Path<(String, String)>,
) -> ConsoleResult {
    let n = number(&n)?;
    let v = history::version(&state, &session.caller(), &id, n).await?;
    let (name, versions) = rows(&state, &session, &id).await?;
    let newest = versions.first().map(|v| v.number).unwrap_or(n);
    let Some(row) = versions.into_iter().find(|r| r.number == n) else {
        return Err(ConsoleError(crate::api::error::ApiError::not_found(format!(
            "the system has no transformation version {n}"
        ))));
    };
    Ok(render(&VersionPage {
        frame: Frame::new(&session, "systems", None),
        id,
        name,
        version: row,
        document: history::diff_text(&v),
        newest,
    }))
}

/// The versions a diff compares; the two newest when absent.
#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /console/systems/{id}/transformation/diff?from=N&to=M`.
pub async fn diff(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ConsoleResult {
    let (name, versions) = rows(&state, &session, &id).await?;
    let newest = versions.first().map(|v| v.number).unwrap_or(1);
    let from = match q.from.as_deref() {
        Some(t) => number(t)?,
        None => versions.get(1).map(|v| v.number).unwrap_or(newest),
    };
    let to = match q.to.as_deref() {
        Some(t) => number(t)?,
        None => newest,
    };
    let d = history::diff_versions(&state, &session.caller(), &id, from, to).await?;
    Ok(render(&DiffPage {
        frame: Frame::new(&session, "systems", None),
        id,
        name,
        versions,
        from,
        to,
        added: d.added,
        removed: d.removed,
        lines: d.lines,
    }))
}

/// `POST /console/systems/{id}/transformation/history/{n}/rollback`.
pub async fn rollback(
    State(state): State<AppState>,
    session: Session,
    Path((id, n)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let to = format!("/console/systems/{id}/transformation/history");
    let n = match number(&n) {
        Ok(n) => n,
        Err(e) => return ConsoleError(e).into_response_page(),
    };
    let description = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "description")
        .map(|(_, v)| v.into_owned());
    let result = history::rollback(&state, &session.caller(), &id, n, description).await;
    super::outcome(&session, &to, result, |saved| match saved.transformation_version {
        Some(v) => format!("Rolled back to version {n}: saved as version {v}."),
        None => format!("Rolled back to version {n}: the connector's default applies."),
    })
}
