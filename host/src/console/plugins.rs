//! Plugins: every loaded version with the systems on it and its call statistics; upload (validated before it
//! is stored, the reason shown when refused), activate, roll back, remove.

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::{ConsoleResult, Frame, Session, outcome, page_with_notice, redirect_with, render, take_notice};
use crate::api::AppState;
use crate::api::ops;

/// A loaded version as the page shows it.
pub struct VersionRow {
    /// Connector name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Contract version.
    pub contract: String,
    /// Built into the binary.
    pub bundled: bool,
    /// What systems that follow the connector run.
    pub active: bool,
    /// Systems on it: name, pinned.
    pub systems: Vec<(String, String, bool)>,
    /// Size in KiB.
    pub size_kib: u64,
    /// Digest (short).
    pub digest: String,
    /// Calls.
    pub calls: u64,
    /// Connector errors (the remote system's answers).
    pub connector_errors: u64,
    /// Calls the host failed.
    pub failures: u64,
    /// Traps.
    pub traps: u64,
    /// Limit hits.
    pub limit_hits: u64,
    /// Mean time per call, ms.
    pub mean_ms: String,
    /// The last incident, if any.
    pub incident: String,
}

#[derive(Template)]
#[template(path = "console/plugins.html")]
struct PluginsPage {
    frame: Frame,
    versions: Vec<VersionRow>,
    max_mib: usize,
}

/// `GET /console/plugins`.
pub async fn list(State(state): State<AppState>, session: Session, headers: HeaderMap) -> ConsoleResult {
    let versions = ops::plugins(&state, &session.caller())
        .await?
        .into_iter()
        .map(|v| {
            let stats = v.plugin.stats.snapshot();
            let d = &v.plugin.descriptor;
            VersionRow {
                name: d.name.clone(),
                version: d.version.clone(),
                contract: v.plugin.contract.to_string(),
                bundled: v.bundled,
                active: v.active,
                systems: v
                    .used_by
                    .iter()
                    .map(|s| (s.id.clone(), s.name.clone(), s.pinned))
                    .collect(),
                size_kib: (v.plugin.size as u64).div_ceil(1024),
                digest: v.plugin.digest.chars().take(19).collect(),
                calls: stats.calls,
                connector_errors: stats.connector_errors,
                failures: stats.failures,
                traps: stats.traps,
                limit_hits: stats.limit_hits,
                mean_ms: if stats.calls > 0 {
                    format!("{:.1}", stats.time_ms / stats.calls as f64)
                } else {
                    "–".into()
                },
                incident: stats
                    .last_incident
                    .as_ref()
                    .and_then(|i| serde_json::to_value(i).ok())
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let page = PluginsPage {
        frame: Frame::new(&session, "plugins", take_notice(&headers)),
        versions,
        max_mib: crate::plugins::MAX_PLUGIN_BYTES / (1024 * 1024),
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `POST /console/plugins` (multipart, the component in `component`): validates and loads it.
pub async fn upload(State(state): State<AppState>, session: Session, mut form: Multipart) -> Response {
    let mut bytes = Vec::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("component") => match field.bytes().await {
                Ok(b) => bytes = b.to_vec(),
                Err(e) => {
                    return redirect_with(&session, "/console/plugins", false, &format!("The upload failed: {e}"));
                }
            },
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return redirect_with(&session, "/console/plugins", false, &format!("The upload failed: {e}")),
        }
    }
    if bytes.is_empty() {
        return redirect_with(
            &session,
            "/console/plugins",
            false,
            "Choose a component file (.wasm) to upload.",
        );
    }
    let result = ops::upload_plugin(&state, &session.caller(), bytes).await;
    outcome(&session, "/console/plugins", result, |added| {
        let label = format!("{}@{}", added.plugin.descriptor.name, added.plugin.descriptor.version);
        if added.unchanged {
            format!("{label} was loaded already; nothing changed.")
        } else if added.active {
            match added.replaced {
                Some(previous) => format!(
                    "Loaded {label}; systems that follow {} now run it instead of {previous}.",
                    added.plugin.descriptor.name
                ),
                None => format!("Loaded {label}."),
            }
        } else {
            format!(
                "Loaded {label}; systems that follow {} keep their version (activate it to switch).",
                added.plugin.descriptor.name
            )
        }
    })
}

/// `POST /console/plugins/{name}/activate` (`version` in the form).
pub async fn activate(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let version = form.get("version").cloned().unwrap_or_default();
    let result = ops::activate_plugin(&state, &session.caller(), &name, &version).await;
    outcome(&session, "/console/plugins", result, |s| switched(&s))
}

fn switched(s: &crate::plugins::Switched) -> String {
    format!("Systems that follow {} run {} instead of {}.", s.name, s.to, s.from)
}

/// `POST /console/plugins/{name}/rollback`.
pub async fn rollback(State(state): State<AppState>, session: Session, Path(name): Path<String>) -> Response {
    let result = ops::rollback_plugin(&state, &session.caller(), &name).await;
    outcome(&session, "/console/plugins", result, |s| switched(&s))
}

/// `POST /console/plugins/{name}/{version}/delete`.
pub async fn remove(
    State(state): State<AppState>,
    session: Session,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let result = ops::remove_plugin(&state, &session.caller(), &name, &version).await;
    outcome(&session, "/console/plugins", result, |()| {
        format!("Removed {name}@{version}.")
    })
}
