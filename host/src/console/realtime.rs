//! The real-time log: events by source, entity id and state; an event's attempts and per-target results;
//! retry of a parked or failed event.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{ConsoleResult, Frame, Session, outcome, page_with_notice, render, take_notice, when};
use crate::api::AppState;
use crate::api::ops;
use crate::store::principals::Permission;
use crate::store::realtime::EventRecord;

/// Events on one page.
const PAGE: i64 = 100;
/// Events read at a time while searching for an entity id.
const BATCH: i64 = 2000;
/// Events searched at most for an entity id.
const SEARCH_LIMIT: usize = 50_000;

/// An event as the pages show it.
pub struct EventRow {
    /// Sequence number.
    pub seq: i64,
    /// Source id.
    pub source_id: String,
    /// Source name, when the caller may see systems.
    pub source: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Entity id in the source.
    pub entity_id: String,
    /// `create`, `replace`, `patch`, `delete`.
    pub operation: String,
    /// `pending`, `done`, `failed`, `parked`.
    pub state: String,
    /// Badge class.
    pub state_class: &'static str,
    /// Attempts.
    pub attempts: i64,
    /// Received.
    pub received_at: String,
    /// Who pushed it.
    pub received_by: String,
    /// Next attempt, when waiting for one.
    pub next_attempt_at: String,
    /// End.
    pub finished_at: String,
    /// Per target: (target, target entity id, state, reason).
    pub results: Vec<(String, String, String, String)>,
}

fn row(e: EventRecord, names: &std::collections::HashMap<String, String>) -> EventRow {
    // Per target: `{"targetId", "targetName", "state", "reason", "targetEntityId"}`.
    let results = match &e.results {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|r| {
                let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let id = text("targetId");
                let name = text("targetName");
                (
                    if name.is_empty() {
                        names.get(&id).cloned().unwrap_or(id)
                    } else {
                        name
                    },
                    text("targetEntityId"),
                    text("state"),
                    text("reason"),
                )
            })
            .collect(),
        Some(other) if !other.is_null() => vec![(String::new(), String::new(), String::new(), other.to_string())],
        _ => Vec::new(),
    };
    EventRow {
        seq: e.seq,
        source: names.get(&e.source_id).cloned().unwrap_or_else(|| e.source_id.clone()),
        source_id: e.source_id,
        entity_type: e.entity_type,
        entity_id: e.entity_id,
        operation: e.operation,
        state_class: match e.state.as_str() {
            "done" => "good",
            "failed" | "parked" => "bad",
            _ => "going",
        },
        state: e.state,
        attempts: e.attempts,
        received_at: when(&e.received_at),
        received_by: e.received_by,
        next_attempt_at: e.next_attempt_at.as_deref().map(when).unwrap_or_default(),
        finished_at: e.finished_at.as_deref().map(when).unwrap_or_default(),
        results,
    }
}

/// System names by id, for a caller who may see systems.
async fn names(state: &AppState, session: &Session) -> std::collections::HashMap<String, String> {
    if !session.principal.may(Permission::ManageSystems) {
        return Default::default();
    }
    match ops::systems(state, &session.caller()).await {
        Ok(systems) => systems.into_iter().map(|s| (s.id, s.spec.name)).collect(),
        Err(_) => Default::default(),
    }
}

/// The log's filters.
#[derive(Debug, Default, Deserialize)]
pub struct EventFilter {
    /// Source id.
    #[serde(default)]
    pub source: Option<String>,
    /// State.
    #[serde(default)]
    pub state: Option<String>,
    /// Entity id (exact).
    #[serde(default)]
    pub entity: Option<String>,
    /// Events before this sequence number.
    #[serde(default)]
    pub before: Option<i64>,
}

#[derive(Template)]
#[template(path = "console/realtime.html")]
struct ListPage {
    frame: Frame,
    rows: Vec<EventRow>,
    source: String,
    state: String,
    entity: String,
    sources: Vec<(String, String)>,
    next: Option<String>,
}

/// `GET /console/realtime`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(f): Query<EventFilter>,
) -> ConsoleResult {
    let caller = session.caller();
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (source, event_state, entity) = (nonempty(f.source), nonempty(f.state), nonempty(f.entity));
    let mut found = Vec::new();
    let mut before = f.before;
    let mut more = false;
    let mut searched = 0usize;
    loop {
        let limit = if entity.is_some() { BATCH } else { PAGE };
        let batch = ops::events(
            &state,
            &caller,
            source.as_deref(),
            event_state.as_deref(),
            before,
            limit,
        )
        .await?;
        let full = batch.len() as i64 == limit;
        searched += batch.len();
        for e in batch {
            before = Some(e.seq);
            if entity.as_deref().is_none_or(|id| id == e.entity_id) {
                found.push(e);
                if found.len() as i64 >= PAGE {
                    more = true;
                    break;
                }
            }
        }
        if more || !full || entity.is_none() || searched >= SEARCH_LIMIT {
            more = more || (full && entity.is_none());
            break;
        }
    }
    let names = names(&state, &session).await;
    let next = (more && !found.is_empty()).then(|| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("source", &source), ("state", &event_state), ("entity", &entity)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        format!("/console/realtime?{}", q.finish())
    });
    let mut sources: Vec<(String, String)> = names.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    sources.sort_by(|a, b| a.1.cmp(&b.1));
    let page = ListPage {
        frame: Frame::new(&session, "realtime", take_notice(&headers)),
        rows: found.into_iter().map(|e| row(e, &names)).collect(),
        source: source.unwrap_or_default(),
        state: event_state.unwrap_or_default(),
        entity: entity.unwrap_or_default(),
        sources,
        next,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

#[derive(Template)]
#[template(path = "console/event.html")]
struct EventPage {
    frame: Frame,
    event: EventRow,
    retryable: bool,
}

/// `GET /console/realtime/{seq}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(seq): Path<i64>,
) -> ConsoleResult {
    let event = ops::event(&state, &session.caller(), seq).await?;
    let names = names(&state, &session).await;
    let event = row(event, &names);
    let page = EventPage {
        frame: Frame::new(&session, "realtime", take_notice(&headers)),
        retryable: matches!(event.state.as_str(), "failed" | "parked"),
        event,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `POST /console/realtime/{seq}/retry`.
pub async fn retry(State(state): State<AppState>, session: Session, Path(seq): Path<i64>) -> Response {
    let to = format!("/console/realtime/{seq}");
    outcome(
        &session,
        &to,
        ops::retry_event(&state, &session.caller(), seq).await,
        |()| "The event is queued again.".into(),
    )
}
