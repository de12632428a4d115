//! The overview: running jobs with live progress, systems whose last run failed, held deletes waiting, the
//! real-time backlog, plugin health. Each part shows only what the caller may see, and says which permission
//! the others need.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};

use super::jobs::RunView;
use super::{ConsoleResult, Frame, Session, page_with_notice, render, take_notice};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::ops;
use crate::store::jobs::JobStatus;
use crate::store::principals::Permission;

/// Runs the overview looks at for failures and held deletes.
const RECENT_RUNS: i64 = 200;
/// Events counted per state for the backlog (more shows as "N+").
const BACKLOG_CAP: i64 = 1000;
/// How often the overview's running jobs are read again.
const POLL: Duration = Duration::from_secs(1);

/// A source whose last run did not succeed.
pub struct Trouble {
    /// The run.
    pub run: RunView,
}

/// A quarantined target as the overview and the system page show it.
pub struct QuarantinedView {
    /// The system's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Since when.
    pub since: String,
    /// The reason's code.
    pub reason: String,
    /// The reason in words.
    pub message: String,
    /// When the next probe is due.
    pub next_probe: String,
    /// Probes so far.
    pub probes: i64,
}

/// A run whose held deletes wait for a decision.
pub struct Waiting {
    /// The run.
    pub run: RunView,
    /// Undecided deletes.
    pub pending: usize,
}

/// A count that may be capped.
pub struct Count {
    /// The number.
    pub n: usize,
    /// Whether there may be more.
    pub more: bool,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.n, if self.more { "+" } else { "" })
    }
}

/// A connector as the overview shows it.
pub struct PluginHealth {
    /// `name@version`.
    pub label: String,
    /// Whether systems that follow the connector run it.
    pub active: bool,
    /// Systems on it.
    pub systems: usize,
    /// Calls.
    pub calls: u64,
    /// Calls the host failed (traps, limits, invalid results).
    pub failures: u64,
    /// Traps.
    pub traps: u64,
}

#[derive(Template)]
#[template(path = "console/overview_running.html")]
struct RunningFragment<'a> {
    running: &'a [RunView],
}

fn running_html(running: &[RunView]) -> String {
    RunningFragment { running }.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the running jobs");
        String::from("<p>The running jobs cannot be shown; see the service log.</p>")
    })
}

async fn running(state: &AppState, caller: &Caller) -> Result<Vec<RunView>, ApiError> {
    Ok(ops::jobs(state, caller, None, RECENT_RUNS)
        .await?
        .iter()
        .filter(|j| !j.status.is_final())
        .map(RunView::of)
        .collect())
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    frame: Frame,
    running: String,
    trouble: Vec<Trouble>,
    waiting: Vec<Waiting>,
    backlog: Option<(Count, Count, Count)>,
    plugins: Vec<PluginHealth>,
    system_count: Option<usize>,
    /// Systems whose last Test Connection failed (as the store keeps it): id, name, message, when.
    failing_checks: Vec<(String, String, String, String)>,
    /// Quarantined targets.
    quarantined: Vec<QuarantinedView>,
}

/// `GET /console`.
pub async fn page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> ConsoleResult {
    let caller = session.caller();
    let p = &session.principal;
    let (mut running_runs, mut trouble, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
    if p.may(Permission::ReadLogs) || p.may(Permission::RunJobs) {
        let runs = ops::jobs(&state, &caller, None, RECENT_RUNS).await?;
        let mut seen = HashSet::new();
        for job in &runs {
            if !job.status.is_final() {
                running_runs.push(RunView::of(job));
                continue;
            }
            // The newest ended run of each source says whether it is in trouble.
            if seen.insert(job.source_id.clone())
                && matches!(job.status, JobStatus::FinishedWithError | JobStatus::ManuallyTerminated)
            {
                trouble.push(Trouble { run: RunView::of(job) });
            }
            let held = job.summary.get("heldDeletes").and_then(|v| v.as_u64()).unwrap_or(0);
            if held > 0 && waiting.len() < 20 {
                let pending = ops::held_deletes(&state, &caller, &job.id)
                    .await?
                    .iter()
                    .filter(|d| d.decision.is_none())
                    .count();
                if pending > 0 {
                    waiting.push(Waiting {
                        run: RunView::of(job),
                        pending,
                    });
                }
            }
        }
    }
    let backlog = if p.may(Permission::ReadLogs) {
        let mut counts = Vec::new();
        for s in ["pending", "failed", "parked"] {
            let n = ops::events(&state, &caller, None, Some(s), None, BACKLOG_CAP)
                .await?
                .len();
            counts.push(Count {
                n,
                more: n as i64 >= BACKLOG_CAP,
            });
        }
        let mut c = counts.into_iter();
        match (c.next(), c.next(), c.next()) {
            (Some(a), Some(b), Some(d)) => Some((a, b, d)),
            _ => None,
        }
    } else {
        None
    };
    let plugins = if p.may(Permission::ManagePlugins) {
        ops::plugins(&state, &caller)
            .await?
            .iter()
            .map(|v| {
                let stats = v.plugin.stats.snapshot();
                PluginHealth {
                    label: format!("{}@{}", v.plugin.descriptor.name, v.plugin.descriptor.version),
                    active: v.active,
                    systems: v.used_by.len(),
                    calls: stats.calls,
                    failures: stats.failures,
                    traps: stats.traps,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let (system_count, failing_checks, quarantined) = if p.may(Permission::ManageSystems) {
        let systems = ops::systems(&state, &caller).await?;
        let failing = systems
            .iter()
            .filter_map(|s| {
                s.health
                    .last_test
                    .as_ref()
                    .filter(|c| !c.ok)
                    .map(|c| (s.id.clone(), s.spec.name.clone(), c.message.clone(), super::when(&c.at)))
            })
            .collect();
        let quarantined = systems
            .iter()
            .filter_map(|s| {
                let q = s.health.quarantine.as_ref()?;
                Some(QuarantinedView {
                    id: s.id.clone(),
                    name: s.spec.name.clone(),
                    since: super::when(&q.since),
                    reason: q.reason.clone(),
                    message: q.message.clone(),
                    next_probe: super::when(&q.next_probe_at),
                    probes: q.probes,
                })
            })
            .collect();
        (Some(systems.len()), failing, quarantined)
    } else {
        (None, Vec::new(), Vec::new())
    };
    let page = OverviewPage {
        frame: Frame::new(&session, "overview", take_notice(&headers)),
        running: running_html(&running_runs),
        trouble,
        waiting,
        backlog,
        plugins,
        system_count,
        failing_checks,
        quarantined,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `GET /console/overview/events`: the running jobs, as server-sent events (`running`, HTML) whenever they
/// change, while the page is open.
pub async fn events(State(state): State<AppState>, session: Session) -> ConsoleResult {
    let caller = session.caller();
    ops::require_logs(&caller)?;
    let stream = futures_util::stream::unfold(None::<String>, move |last| {
        let (state, caller) = (state.clone(), Caller(caller.0.clone(), caller.1));
        async move {
            let mut last = last;
            loop {
                if last.is_some() {
                    tokio::time::sleep(POLL).await;
                }
                let html = match running(&state, &caller).await {
                    Ok(runs) => running_html(&runs),
                    // Forbidden now (the permission was taken away) or the store fails: the stream ends.
                    Err(_) => return None,
                };
                if last.as_deref() != Some(html.as_str()) {
                    return Some((
                        Ok::<Event, Infallible>(Event::default().event("running").data(html.clone())),
                        Some(html),
                    ));
                }
                last = Some(html);
            }
        }
    });
    // A stream ends after a while; the page's EventSource reconnects, and the session is checked again.
    let stream = futures_util::StreamExt::take_until(stream, tokio::time::sleep(super::MAX_STREAM));
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
