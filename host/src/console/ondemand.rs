//! Provision on demand: one source entity through every step — read, transform, match, write — with the
//! result of each, as a simulation or for real (the admin API's `provision-one`).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{ConsoleResult, Frame, Session, render, render_with};
use crate::api::AppState;
use crate::api::ops;
use crate::store::principals::Permission;

/// One step as the page shows it.
pub struct StepRow {
    /// `read`, `transform`, `match`, `action`, …
    pub step: String,
    /// `success`, `failed`, `skipped`, …
    pub outcome: String,
    /// Badge class.
    pub class: &'static str,
    /// The detail, pretty JSON.
    pub detail: String,
}

/// A target's steps.
pub struct TargetSteps {
    /// Target name.
    pub name: String,
    /// Its steps.
    pub steps: Vec<StepRow>,
}

fn steps(v: Option<&Value>) -> Vec<StepRow> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    let outcome = s.get("outcome").and_then(Value::as_str).unwrap_or("").to_string();
                    StepRow {
                        step: s.get("step").and_then(Value::as_str).unwrap_or("").to_string(),
                        class: match outcome.as_str() {
                            "success" | "planned" => "good",
                            "failed" => "bad",
                            _ => "going",
                        },
                        outcome,
                        detail: s
                            .get("detail")
                            .filter(|d| !d.is_null())
                            .map(|d| match d {
                                Value::String(t) => t.clone(),
                                other => serde_json::to_string_pretty(other).unwrap_or_default(),
                            })
                            .unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "console/ondemand.html")]
struct OnDemandPage {
    frame: Frame,
    source_id: String,
    source_name: String,
    entity_type: String,
    entity_id: String,
    simulate: bool,
    error: Option<String>,
    done: bool,
    source_steps: Vec<StepRow>,
    targets: Vec<TargetSteps>,
}

async fn source_name(state: &AppState, session: &Session, id: &str) -> String {
    if session.principal.may(Permission::ManageSystems)
        && let Ok(s) = ops::system(state, &session.caller(), id).await
    {
        return s.spec.name;
    }
    id.to_string()
}

/// `GET /console/systems/{id}/provision-one`: the form.
pub async fn form(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    session.caller().require(Permission::RunJobs)?;
    Ok(render(&OnDemandPage {
        frame: Frame::new(&session, "jobs", None),
        source_name: source_name(&state, &session, &id).await,
        source_id: id,
        entity_type: "user".into(),
        entity_id: String::new(),
        simulate: true,
        error: None,
        done: false,
        source_steps: Vec::new(),
        targets: Vec::new(),
    }))
}

/// The form: entity type, id, and whether it is a simulation.
#[derive(Deserialize)]
pub struct OnDemandForm {
    /// `user` or `group`.
    #[serde(default)]
    entity_type: String,
    /// The id in the source.
    #[serde(default)]
    id: String,
    /// Present when checked.
    #[serde(default)]
    simulate: Option<String>,
}

/// `POST /console/systems/{id}/provision-one`: runs it and shows every step.
pub async fn run(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<OnDemandForm>,
) -> Response {
    let simulate = form.simulate.is_some();
    let result = ops::provision_one(&state, &session.caller(), &id, &form.entity_type, &form.id, simulate).await;
    let mut page = OnDemandPage {
        frame: Frame::new(&session, "jobs", None),
        source_name: source_name(&state, &session, &id).await,
        source_id: id,
        entity_type: form.entity_type,
        entity_id: form.id,
        simulate,
        error: None,
        done: false,
        source_steps: Vec::new(),
        targets: Vec::new(),
    };
    match result {
        Ok(v) => {
            page.done = true;
            page.source_steps = steps(v.get("steps"));
            page.targets = v
                .get("targets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|t| TargetSteps {
                            name: t
                                .get("targetName")
                                .and_then(Value::as_str)
                                .or_else(|| t.get("targetId").and_then(Value::as_str))
                                .unwrap_or("")
                                .to_string(),
                            steps: steps(t.get("steps")),
                        })
                        .collect()
                })
                .unwrap_or_default();
            render(&page)
        }
        Err(e) => {
            let status = e.status;
            page.error = Some(e.message);
            render_with(status, &page)
        }
    }
}
