//! Plugins: every loaded version with the systems on it and its call statistics; upload (validated before it
//! is stored, the reason shown when refused), activate, roll back, remove; per version the p50/p95 call time
//! and a small chart of call durations, drawn by the server as inline SVG (no script).

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
    /// The first systems on it (by name): id, name, pinned.
    pub systems: Vec<(String, String, bool)>,
    /// How many more systems run it than are shown (the systems list, filtered by connector, has them all).
    pub systems_more: usize,
    /// The systems list's filter for this version: the connector when it is active, else `name@version`.
    pub systems_filter: String,
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
    /// Median call time, ms (`–` before any call).
    pub p50_ms: String,
    /// 95th percentile call time, ms.
    pub p95_ms: String,
    /// The chart of call durations (empty before any call).
    pub chart: Vec<Bar>,
}

/// One bar of a version's chart of call durations, in SVG user units.
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height (at least 1 when the bucket has calls).
    pub h: u32,
    /// The bucket, for people: `≤ 5 ms`, `> 30000 ms`.
    pub label: String,
    /// Calls in it.
    pub count: u64,
}

/// Height of the chart's bars area.
pub const CHART_HEIGHT: u32 = 48;
/// Width of one bar with its gap.
pub const BAR_STEP: u32 = 14;

/// The bars of a histogram of call durations: one per bucket, scaled to the fullest.
pub fn chart(buckets: &[crate::runtime::DurationBucket]) -> Vec<Bar> {
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    if max == 0 {
        return Vec::new();
    }
    let mut lower = 0.0;
    buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let h = if b.count == 0 {
                0
            } else {
                ((b.count as f64 / max as f64) * CHART_HEIGHT as f64).round().max(1.0) as u32
            };
            let label = match b.le_ms {
                Some(upper) => format!("{lower}–{upper} ms"),
                None => format!("over {lower} ms"),
            };
            if let Some(upper) = b.le_ms {
                lower = upper;
            }
            Bar {
                x: i as u32 * BAR_STEP,
                y: CHART_HEIGHT - h,
                w: BAR_STEP - 3,
                h,
                label,
                count: b.count,
            }
        })
        .collect()
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
        None => "–".into(),
    }
}

#[derive(Template)]
#[template(path = "console/plugins.html")]
struct PluginsPage {
    frame: Frame,
    versions: Vec<VersionRow>,
    max_mib: usize,
    chart_height: u32,
    chart_width: u32,
}

/// Systems named per version; a connector that a thousand systems follow would otherwise make the page heavy.
const SYSTEMS_SHOWN: usize = 10;

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
                systems: {
                    let mut on = v.used_by.iter().collect::<Vec<_>>();
                    on.sort_by_cached_key(|s| s.name.to_lowercase());
                    on.iter()
                        .take(SYSTEMS_SHOWN)
                        .map(|s| (s.id.clone(), s.name.clone(), s.pinned))
                        .collect()
                },
                systems_more: v.used_by.len().saturating_sub(SYSTEMS_SHOWN),
                systems_filter: if v.active {
                    d.name.clone()
                } else {
                    format!("{}@{}", d.name, d.version)
                },
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
                p50_ms: ms(stats.p50_ms),
                p95_ms: ms(stats.p95_ms),
                chart: chart(&stats.duration_buckets),
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
        chart_height: CHART_HEIGHT,
        chart_width: (crate::runtime::stats_buckets() as u32) * BAR_STEP,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::DurationBucket;

    #[test]
    fn the_chart_scales_bars_to_the_fullest_bucket() {
        assert!(
            chart(&[DurationBucket {
                le_ms: Some(1.0),
                count: 0
            }])
            .is_empty()
        );
        let bars = chart(&[
            DurationBucket {
                le_ms: Some(1.0),
                count: 10,
            },
            DurationBucket {
                le_ms: Some(2.0),
                count: 1,
            },
            DurationBucket { le_ms: None, count: 0 },
        ]);
        assert_eq!(bars.iter().map(|b| b.h).collect::<Vec<_>>(), [CHART_HEIGHT, 5, 0]);
        assert_eq!(bars[1].y + bars[1].h, CHART_HEIGHT);
        assert_eq!(bars[2].label, "over 2 ms");
        assert_eq!(bars[0].label, "0–1 ms");
    }
}
