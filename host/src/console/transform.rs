//! A system's transformation: the JSON editor (saved through the same validation as the API's `PUT`, the
//! error shown with the editor), reset to the connector's default, and a playground that runs the document
//! in the editor on a pasted entity and shows the output and the trace of every mapping.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{ConsoleError, ConsoleResult, Frame, Session, page_with_notice, redirect_with, render_with, take_notice};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::ops;
use crate::store::systems::{Role, System};
use crate::systems::SystemInput;
use crate::transform_test::TransformTest;

/// A trace step as the playground shows it.
pub struct TraceRow {
    /// Mapping index (1-based), or empty for the entity.
    pub mapping: String,
    /// What happened.
    pub action: String,
    /// Target path or variable.
    pub target: String,
    /// The value written, JSON.
    pub value: String,
    /// Why.
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/transform.html")]
struct TransformPage {
    frame: Frame,
    id: String,
    name: String,
    origin: String,
    document: String,
    error: Option<String>,
    entity: String,
    entity_type: String,
    operation: String,
    tried: bool,
    verdict: String,
    verdict_class: &'static str,
    output: String,
    trace: Vec<TraceRow>,
    /// Where a real entity can be read from: id, name (the system itself for a source, its sources for a
    /// target; none for a proxy).
    sources: Vec<(String, String)>,
    /// The source picked.
    sample_source: String,
    /// The id or name searched.
    sample_key: String,
    /// What the read found, for people.
    sample_note: String,
}

/// The connector's default document for the system's role (proxies: `{"read", "write"}`).
fn default_document(state: &AppState, system: &System) -> Option<Value> {
    let plugin = state.systems.plugin_for(system).ok()?;
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    match system.spec.role {
        Role::Source => parse(&plugin.descriptor.default_read_transformation),
        Role::Target => parse(&plugin.descriptor.default_write_transformation),
        Role::Proxy => {
            let mut doc = serde_json::Map::new();
            if let Some(r) = parse(&plugin.extensions.default_proxy_read_transformation) {
                doc.insert("read".into(), r);
            }
            if let Some(w) = parse(&plugin.extensions.default_proxy_write_transformation) {
                doc.insert("write".into(), w);
            }
            (!doc.is_empty()).then_some(Value::Object(doc))
        }
    }
}

fn page_for(state: &AppState, session: &Session, system: &System) -> TransformPage {
    let (origin, document) = match &system.spec.transformation {
        Some(doc) => (
            format!("Stored, version {}.", system.transformation_version.unwrap_or(1)),
            doc.clone(),
        ),
        None => (
            "The connector's default (not stored; saving stores it as the system's own).".into(),
            default_document(state, system).unwrap_or(Value::Null),
        ),
    };
    TransformPage {
        frame: Frame::new(session, "systems", None),
        id: system.id.clone(),
        name: system.spec.name.clone(),
        origin,
        document: if document.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&document).unwrap_or_default()
        },
        error: None,
        entity: String::from("{\n  \"userName\": \"jdoe\",\n  \"emails\": [{\"value\": \"jdoe@example.com\"}]\n}"),
        entity_type: "user".into(),
        operation: "create".into(),
        tried: false,
        verdict: String::new(),
        verdict_class: "going",
        output: String::new(),
        trace: Vec::new(),
        sources: Vec::new(),
        sample_source: String::new(),
        sample_key: String::new(),
        sample_note: String::new(),
    }
}

/// The systems a real entity can be picked from for the playground of `system`.
async fn sample_sources(state: &AppState, system: &System) -> Vec<(String, String)> {
    match system.spec.role {
        Role::Source => vec![(system.id.clone(), system.spec.name.clone())],
        Role::Target => {
            let mut out = Vec::new();
            for id in &system.spec.sources {
                if let Ok(s) = state.systems.get(id).await {
                    out.push((s.id, s.spec.name));
                }
            }
            out
        }
        Role::Proxy => Vec::new(),
    }
}

/// `GET /console/systems/{id}/transformation`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let system = ops::system(&state, &session.caller(), &id).await?;
    let mut page = page_for(&state, &session, &system);
    // The notice of the save, rollback or reset that led here.
    page.frame.notice = take_notice(&headers);
    page.sources = sample_sources(&state, &system).await;
    page.sample_source = page.sources.first().map(|s| s.0.clone()).unwrap_or_default();
    Ok(page_with_notice(&headers, &session, render_with(StatusCode::OK, &page)))
}

fn same_with(system: &System, transformation: Option<Value>, description: Option<String>) -> SystemInput {
    crate::api::history::same_with(system, transformation, description)
}

fn fields(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A JSON text, or where it is not JSON.
fn json(label: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "The {label} is not JSON: {e} (line {}, column {}).",
            e.line(),
            e.column()
        )
    })
}

/// `POST /console/systems/{id}/transformation`: saves the editor's document (validated as by the API).
pub async fn save(State(state): State<AppState>, session: Session, Path(id): Path<String>, body: Bytes) -> Response {
    let caller = session.caller();
    let system = match ops::system(&state, &caller, &id).await {
        Ok(s) => s,
        Err(e) => return ConsoleError(e).into_response_page(),
    };
    let f = fields(&body);
    let text = f.get("transformation").cloned().unwrap_or_default();
    let result = match json("transformation", &text) {
        Ok(doc) => {
            let description = f.get("description").cloned();
            ops::replace_system(&state, &caller, &id, same_with(&system, Some(doc), description)).await
        }
        Err(m) => Err(ApiError::bad_request(m)),
    };
    match result {
        Ok(saved) => redirect_with(
            &session,
            &format!("/console/systems/{id}/transformation"),
            true,
            &format!(
                "Transformation saved as version {}.",
                saved.transformation_version.unwrap_or(1)
            ),
        ),
        Err(e) => {
            let mut page = page_for(&state, &session, &system);
            page.document = text;
            let status = e.status;
            page.error = Some(e.message);
            render_with(status, &page)
        }
    }
}

/// `POST /console/systems/{id}/transformation/reset`: back to the connector's default.
pub async fn reset(State(state): State<AppState>, session: Session, Path(id): Path<String>, body: Bytes) -> Response {
    let caller = session.caller();
    let to = format!("/console/systems/{id}/transformation");
    let description = fields(&body).get("description").cloned();
    let result = match ops::system(&state, &caller, &id).await {
        Ok(system) if system.spec.transformation.is_none() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "The connector's default transformation applies already.",
        )),
        Ok(system) => ops::replace_system(&state, &caller, &id, same_with(&system, None, description)).await,
        Err(e) => Err(e),
    };
    super::outcome(&session, &to, result, |_| {
        "The connector's default transformation applies again.".into()
    })
}

/// `POST /console/systems/{id}/transformation/try`: runs the editor's document on the pasted entity.
pub async fn try_it(State(state): State<AppState>, session: Session, Path(id): Path<String>, body: Bytes) -> Response {
    playground(state, session, id, body, false).await
}

/// `POST /console/systems/{id}/transformation/sample`: reads a real entity from the source picked (by id or
/// name, live through its connector), puts it in the entity field and runs the editor's document on it — for
/// a target, on the entity as the source's read transformation hands it over.
pub async fn sample(State(state): State<AppState>, session: Session, Path(id): Path<String>, body: Bytes) -> Response {
    playground(state, session, id, body, true).await
}

async fn playground(state: AppState, session: Session, id: String, body: Bytes, read_live: bool) -> Response {
    let caller = session.caller();
    let system = match ops::system(&state, &caller, &id).await {
        Ok(s) => s,
        Err(e) => return ConsoleError(e).into_response_page(),
    };
    let f = fields(&body);
    let mut page = page_for(&state, &session, &system);
    page.sources = sample_sources(&state, &system).await;
    page.document = f.get("transformation").cloned().unwrap_or_default();
    page.entity = f.get("entity").cloned().unwrap_or_default();
    page.entity_type = f.get("entity_type").cloned().unwrap_or_else(|| "user".into());
    page.operation = f.get("operation").cloned().unwrap_or_else(|| "create".into());
    page.sample_source = f
        .get("sample_source")
        .cloned()
        .or_else(|| page.sources.first().map(|s| s.0.clone()))
        .unwrap_or_default();
    page.sample_key = f.get("sample_key").cloned().unwrap_or_default();
    if read_live {
        let read = ops::sample_entity(
            &state,
            &caller,
            &system.id,
            &page.sample_source,
            &page.entity_type,
            &page.sample_key,
        )
        .await;
        let sample = match read {
            Ok(s) => s,
            Err(e) => {
                let status = e.status;
                page.error = Some(e.message);
                return render_with(status, &page);
            }
        };
        let source_name = page
            .sources
            .iter()
            .find(|s| s.0 == page.sample_source)
            .map(|s| s.1.clone())
            .unwrap_or_default();
        let shown = if system.spec.role == Role::Source {
            page.sample_note = format!("Read from {source_name} (found by {}).", sample.found_by);
            sample.native
        } else {
            match sample.intermediate {
                Ok(entity) => {
                    page.sample_note = format!(
                        "Read from {source_name} (found by {}) and passed through its read transformation.",
                        sample.found_by
                    );
                    entity
                }
                Err(reason) => {
                    page.entity = serde_json::to_string_pretty(&sample.native).unwrap_or_default();
                    page.error = Some(format!(
                        "The entity was read, but the source's own transformation does not hand it to targets: {reason}"
                    ));
                    return render_with(StatusCode::OK, &page);
                }
            }
        };
        page.entity = serde_json::to_string_pretty(&shown).unwrap_or_default();
    }
    let mut doc = match json("transformation", &page.document) {
        Ok(d) => d,
        Err(m) => {
            page.error = Some(m);
            return render_with(StatusCode::BAD_REQUEST, &page);
        }
    };
    // A proxy's document holds both directions; the playground runs the write one (else the read one).
    if system.spec.role == Role::Proxy
        && let Some(part) = doc.get("write").or_else(|| doc.get("read")).cloned()
    {
        doc = part;
    }
    let entity = match json("entity", &page.entity) {
        Ok(e) => e,
        Err(m) => {
            page.error = Some(m);
            return render_with(StatusCode::BAD_REQUEST, &page);
        }
    };
    let run = TransformTest {
        transformation: doc,
        entity,
        entity_type: page.entity_type.clone(),
        properties: system.spec.properties.clone(),
        operation: Some(page.operation.clone()),
        trace: true,
    };
    match ops::test_transformation(&caller, &run) {
        Ok(outcome) => {
            use provisio_transform::Outcome;
            page.tried = true;
            (page.verdict, page.verdict_class) = match &outcome {
                Outcome::Transformed { .. } => ("Transformed.".to_string(), "good"),
                Outcome::Skipped { reason, .. } => (format!("Skipped: {reason}"), "going"),
                Outcome::Failed {
                    reason,
                    mapping_index,
                    path,
                    ..
                } => (
                    format!(
                        "Failed{}{}: {reason}",
                        mapping_index
                            .map(|i| format!(" at mapping {}", i + 1))
                            .unwrap_or_default(),
                        path.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                    ),
                    "bad",
                ),
            };
            page.output = outcome
                .output()
                .and_then(|o| serde_json::to_string_pretty(o).ok())
                .unwrap_or_default();
            page.trace = outcome
                .trace()
                .iter()
                .map(|t| {
                    let v = serde_json::to_value(t).unwrap_or(Value::Null);
                    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    TraceRow {
                        mapping: t.mapping.map(|m| (m + 1).to_string()).unwrap_or_default(),
                        action: text("action"),
                        target: t
                            .target_path
                            .clone()
                            .or_else(|| t.target_variable.clone())
                            .unwrap_or_default(),
                        value: t.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                        detail: t.detail.clone().unwrap_or_default(),
                    }
                })
                .collect();
            render_with(StatusCode::OK, &page)
        }
        Err(e) => {
            let status = e.status;
            page.error = Some(e.message);
            render_with(status, &page)
        }
    }
}
