//! Held deletes: the entities a deletion threshold held back in a run, reviewed, then approved (deleted now)
//! or rejected (kept, with their links).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::jobs::RunView;
use super::{ConsoleResult, Frame, Session, outcome, page_with_notice, render, take_notice};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::ops;
use crate::store::jobs::{HeldDelete, HeldKey};

/// Runs looked at for held deletes.
const RECENT_RUNS: i64 = 500;

/// A run with held deletes.
pub struct HeldRun {
    /// The run.
    pub run: RunView,
    /// Undecided.
    pub pending: usize,
    /// Approved.
    pub approved: usize,
    /// Rejected.
    pub rejected: usize,
}

#[derive(Template)]
#[template(path = "console/held_list.html")]
struct ListPage {
    frame: Frame,
    runs: Vec<HeldRun>,
}

fn tally(deletes: &[HeldDelete]) -> (usize, usize, usize) {
    let count = |d: Option<&str>| deletes.iter().filter(|h| h.decision.as_deref() == d).count();
    (count(None), count(Some("approved")), count(Some("rejected")))
}

/// `GET /console/held`: the recent runs that held deletes, undecided first.
pub async fn list(State(state): State<AppState>, session: Session, headers: HeaderMap) -> ConsoleResult {
    let caller = session.caller();
    let mut runs = Vec::new();
    for job in ops::jobs(&state, &caller, None, RECENT_RUNS).await? {
        if job.summary.get("heldDeletes").and_then(|v| v.as_u64()).unwrap_or(0) == 0 {
            continue;
        }
        let deletes = ops::held_deletes(&state, &caller, &job.id).await?;
        let (pending, approved, rejected) = tally(&deletes);
        runs.push(HeldRun {
            run: RunView::of(&job),
            pending,
            approved,
            rejected,
        });
    }
    runs.sort_by_key(|r| r.pending == 0);
    let page = ListPage {
        frame: Frame::new(&session, "held", take_notice(&headers)),
        runs,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// A held delete as the page shows it.
pub struct HeldRow {
    /// Target name.
    pub target: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Source entity id.
    pub source_id: String,
    /// Target entity id.
    pub target_entity_id: String,
    /// `approved`, `rejected` or `waiting`.
    pub decision: String,
    /// The checkbox value naming it (see [`selection_value`]).
    pub key: String,
}

/// The value of an entity's checkbox: `targetId:entityType:sourceId` (the source id last: it may hold `:`).
pub fn selection_value(h: &HeldDelete) -> String {
    format!("{}:{}:{}", h.target_id, h.entity_type, h.source_id)
}

/// The entities checked in a decision form (`entity` fields); `None` when the form decides them all.
fn selection(body: &[u8]) -> Result<Option<Vec<HeldKey>>, ApiError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let selected = fields.iter().any(|(k, v)| k == "scope" && v == "selected");
    let mut keys = Vec::new();
    for (_, value) in fields.iter().filter(|(k, _)| k == "entity") {
        let mut parts = value.splitn(3, ':');
        let (Some(target_id), Some(entity_type), Some(source_id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ApiError::bad_request(format!("{value:?} names no held delete")));
        };
        keys.push(HeldKey {
            target_id: target_id.into(),
            entity_type: entity_type.into(),
            source_id: source_id.into(),
        });
    }
    if selected && keys.is_empty() {
        return Err(ApiError::bad_request("Select at least one entity first."));
    }
    Ok(selected.then_some(keys))
}

#[derive(Template)]
#[template(path = "console/held.html")]
struct RunPage {
    frame: Frame,
    run: RunView,
    rows: Vec<HeldRow>,
    pending: usize,
}

/// `GET /console/jobs/{id}/held`: a run's held deletes, one by one, and the decision.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let caller = session.caller();
    let job = ops::job(&state, &caller, &id).await?;
    let run = RunView::of(&job);
    let deletes = ops::held_deletes(&state, &caller, &id).await?;
    let (pending, _, _) = tally(&deletes);
    let name = |target: &str| {
        run.statistics
            .iter()
            .find(|s| s.target_id == target && !s.target_name.is_empty())
            .map(|s| s.target_name.clone())
            .unwrap_or_else(|| target.to_string())
    };
    let rows = deletes
        .into_iter()
        .map(|d| HeldRow {
            key: selection_value(&d),
            target: name(&d.target_id),
            entity_type: d.entity_type,
            source_id: d.source_id,
            target_entity_id: d.target_entity_id,
            decision: d.decision.unwrap_or_else(|| "waiting".into()),
        })
        .collect();
    let page = RunPage {
        frame: Frame::new(&session, "held", take_notice(&headers)),
        run,
        rows,
        pending,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `POST /console/jobs/{id}/held/{approve|reject}`: every pending delete, or with `scope=selected` only the
/// checked `entity` fields.
pub async fn decide(
    State(state): State<AppState>,
    session: Session,
    Path((id, decision)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let to = format!("/console/jobs/{id}/held");
    let result = match selection(&body) {
        Ok(only) => ops::decide_deletes(&state, &session.caller(), &id, &decision, only.as_deref()).await,
        Err(e) => Err(e),
    };
    outcome(&session, &to, result, |v| {
        let verb = if decision == "approve" { "Approved" } else { "Rejected" };
        match v.as_object() {
            Some(o) if !o.is_empty() => format!(
                "{verb}: {}",
                o.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            ),
            _ => format!("{verb}."),
        }
    })
}
