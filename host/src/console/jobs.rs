//! Jobs: start a Read, Resync or simulation on a source; a run's live progress (server-sent events) to its
//! end; stop; statistics per target and entity type; the per-entity log with filters; its download as CSV or
//! JSON.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{ConsoleResult, Frame, Session, outcome, page_with_notice, render, take_notice, when};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::ops;
use crate::store::jobs::{EntityLogEntry, JobRecord, JobStatus, ScheduleRecord};
use crate::store::principals::Permission;
use crate::store::systems::Role;

/// How often a live view reads the run again (a run stores its state about twice a second).
pub const POLL: Duration = Duration::from_millis(500);

/// A run as the console shows it: status, progress, rate and ETA, counts.
#[derive(Clone, Debug, Default)]
pub struct RunView {
    /// Id.
    pub id: String,
    /// The source's id.
    pub source_id: String,
    /// The source's name (as the run recorded it).
    pub source_name: String,
    /// `Read`, `Resync`, `Simulated read`, …
    pub kind: String,
    /// The status in SAP's words.
    pub status: String,
    /// `good`, `bad` or `going`, for the badge.
    pub status_class: &'static str,
    /// Whether it has ended.
    pub finished: bool,
    /// What it is doing (`users`, `groups`, `deleting users`, `done`).
    pub phase: String,
    /// Source entities read so far.
    pub read: u64,
    /// How many the source said it has, when it said so.
    pub total: Option<u64>,
    /// Percentage read, when the total is known.
    pub percent: Option<u64>,
    /// Entities a second since the start.
    pub rate: Option<String>,
    /// Time left at that rate.
    pub eta: Option<String>,
    /// Sums over targets.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Deleted.
    pub deleted: u64,
    /// Skipped.
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Held deletes.
    pub held: u64,
    /// Per target and entity type.
    pub statistics: Vec<StatRow>,
    /// What the run concluded (why deletes did or did not happen, …).
    pub outcome: Vec<String>,
    /// Who started it, and how.
    pub started_by: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub ended_at: String,
}

/// One target and entity type of a run.
#[derive(Clone, Debug, Default)]
pub struct StatRow {
    /// Target id.
    pub target_id: String,
    /// Target name.
    pub target_name: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Counts.
    pub read: u64,
    /// Created.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Deleted.
    pub deleted: u64,
    /// Skipped.
    pub skipped: u64,
    /// Unchanged.
    pub unchanged: u64,
    /// Failed.
    pub failed: u64,
    /// Held.
    pub held: u64,
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn seconds(d: f64) -> String {
    let s = d.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The badge class of a status.
pub fn status_class(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Success => "good",
        JobStatus::FinishedWithError | JobStatus::ManuallyTerminated | JobStatus::RunningWithError => "bad",
        JobStatus::Queued | JobStatus::Running => "going",
    }
}

impl RunView {
    /// The view of a stored run.
    pub fn of(job: &JobRecord) -> RunView {
        let summary = &job.summary;
        let progress = summary.get("progress").cloned().unwrap_or(Value::Null);
        let statistics: Vec<StatRow> = summary
            .get("statistics")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| StatRow {
                        target_id: r.get("targetId").and_then(Value::as_str).unwrap_or("").into(),
                        target_name: r.get("targetName").and_then(Value::as_str).unwrap_or("").into(),
                        entity_type: r.get("entityType").and_then(Value::as_str).unwrap_or("").into(),
                        read: n(r, "read"),
                        created: n(r, "created"),
                        updated: n(r, "updated"),
                        deleted: n(r, "deleted"),
                        skipped: n(r, "skipped"),
                        unchanged: n(r, "unchanged"),
                        failed: n(r, "failed"),
                        held: n(r, "held"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let source_read: u64 = summary
            .get("source")
            .and_then(Value::as_object)
            .map(|o| o.values().map(|c| n(c, "read")).sum())
            .unwrap_or(0);
        let read = source_read.max(n(&progress, "read"));
        let total = progress.get("total").and_then(Value::as_u64).filter(|t| *t > 0);
        let finished = job.status.is_final();
        let percent = if finished && job.status == JobStatus::Success {
            Some(100)
        } else {
            total.map(|t| (read.min(t) * 100) / t)
        };
        let elapsed = chrono::DateTime::parse_from_rfc3339(&job.started_at)
            .ok()
            .map(|start| {
                let end = job
                    .ended_at
                    .as_deref()
                    .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                    .map(|e| e.with_timezone(&chrono::Utc))
                    .unwrap_or_else(chrono::Utc::now);
                (end - start.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0
            })
            .filter(|s| *s > 0.5);
        let per_second = elapsed.filter(|_| read > 0).map(|s| read as f64 / s);
        let eta = match (per_second, total, finished) {
            (Some(r), Some(t), false) if r > 0.0 && t > read => Some(seconds((t - read) as f64 / r)),
            _ => None,
        };
        let kind = match (job.job_type.as_str(), summary.get("simulate").and_then(Value::as_bool)) {
            (t, Some(true)) => format!("Simulated {t}"),
            ("read", _) => "Read".into(),
            ("resync", _) => "Resync".into(),
            (t, _) => t.to_string(),
        };
        let sum = |f: fn(&StatRow) -> u64| statistics.iter().map(f).sum::<u64>();
        RunView {
            id: job.id.clone(),
            source_id: job.source_id.clone(),
            source_name: summary
                .get("sourceName")
                .and_then(Value::as_str)
                .unwrap_or(&job.source_id)
                .to_string(),
            kind,
            status: job.status.as_str().to_string(),
            status_class: status_class(job.status),
            finished,
            phase: progress
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or(if finished { "done" } else { "starting" })
                .to_string(),
            read,
            total,
            percent,
            rate: per_second.map(|r| format!("{r:.1}/s")),
            eta,
            created: sum(|r| r.created),
            updated: sum(|r| r.updated),
            deleted: sum(|r| r.deleted),
            skipped: sum(|r| r.skipped),
            failed: sum(|r| r.failed),
            held: n(summary, "heldDeletes"),
            outcome: summary
                .get("outcome")
                .and_then(Value::as_array)
                .map(|o| o.iter().filter_map(|l| l.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            started_by: format!("{} ({})", job.started_by, job.trigger),
            started_at: when(&job.started_at),
            ended_at: job.ended_at.as_deref().map(when).unwrap_or_default(),
            statistics,
        }
    }
}

#[derive(Template)]
#[template(path = "console/run_progress.html")]
struct ProgressFragment<'a> {
    run: &'a RunView,
    /// The CSRF token for the stop button, when the caller may stop runs.
    csrf: Option<&'a str>,
}

/// The live part of a run's page, as HTML (the page's first render and every server-sent event).
pub fn progress_html(run: &RunView, csrf: Option<&str>) -> String {
    ProgressFragment { run, csrf }.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render a run's progress");
        String::from("<p>The progress cannot be shown; see the service log.</p>")
    })
}

/// A source the caller may start runs on.
pub struct SourceOption {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    frame: Frame,
    runs: Vec<RunView>,
    sources: Vec<SourceOption>,
    source_filter: String,
    can_list_sources: bool,
    /// The filtered source's schedule: how it fires, and its next times.
    schedule: Option<ScheduleView>,
}

/// A source's schedule as the jobs page shows it.
pub struct ScheduleView {
    /// `read` or `resync`.
    pub job_type: String,
    /// Seconds between runs, when it fires by interval.
    pub every_seconds: String,
    /// The cron expression, when it fires by one.
    pub cron: String,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Whether one is stored.
    pub stored: bool,
    /// The next fire times (UTC).
    pub next: Vec<String>,
}

/// The runs list's filter.
#[derive(Deserialize)]
pub struct ListQuery {
    /// Runs of this source only.
    #[serde(default)]
    source: Option<String>,
}

/// The sources, for a caller who may see systems; empty otherwise (the start form then takes an id).
pub async fn sources(state: &AppState, session: &Session) -> Result<Vec<SourceOption>, ApiError> {
    if !session.principal.may(Permission::ManageSystems) {
        return Ok(Vec::new());
    }
    Ok(ops::systems(state, &session.caller())
        .await?
        .into_iter()
        .filter(|s| s.spec.role == Role::Source)
        .map(|s| SourceOption {
            id: s.id,
            name: s.spec.name,
        })
        .collect())
}

/// `GET /console/jobs`: the newest runs, and the form to start one.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ConsoleResult {
    let source = q.source.filter(|s| !s.is_empty());
    let runs = ops::jobs(&state, &session.caller(), source.as_deref(), 100).await?;
    let schedule = match &source {
        Some(source) => {
            let record = ops::schedule(&state, &session.caller(), source).await?;
            Some(match record {
                Some(r) => ScheduleView {
                    next: ops::next_runs(&r, chrono::Utc::now(), 3)
                        .iter()
                        .map(|t| when(t))
                        .collect(),
                    job_type: r.job_type,
                    every_seconds: r.every_seconds.map(|s| s.to_string()).unwrap_or_default(),
                    cron: r.cron.unwrap_or_default(),
                    enabled: r.enabled,
                    stored: true,
                },
                None => ScheduleView {
                    job_type: "read".into(),
                    every_seconds: String::new(),
                    cron: String::new(),
                    enabled: true,
                    stored: false,
                    next: Vec::new(),
                },
            })
        }
        None => None,
    };
    let page = JobsPage {
        frame: Frame::new(&session, "jobs", take_notice(&headers)),
        runs: runs.iter().map(RunView::of).collect(),
        sources: sources(&state, &session).await?,
        source_filter: source.unwrap_or_default(),
        can_list_sources: session.principal.may(Permission::ManageSystems),
        schedule,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// The start form: a source and `read`, `resync` or `simulate`.
#[derive(Deserialize)]
pub struct StartForm {
    /// The source's id.
    source: String,
    /// The kind of run.
    #[serde(rename = "type", default)]
    kind: String,
}

/// `POST /console/jobs`: starts a run (`read`, `resync` or `simulate`) and shows it.
pub async fn start(State(state): State<AppState>, session: Session, Form(form): Form<StartForm>) -> Response {
    match ops::start_job(&state, &session.caller(), form.source.trim(), &form.kind, false).await {
        Ok(job) => super::redirect_with(
            &session,
            &format!("/console/jobs/{}", job.id),
            true,
            &format!("{} started.", RunView::of(&job).kind),
        ),
        Err(e) => super::redirect_with(&session, "/console/jobs", false, &e.message),
    }
}

#[derive(Template)]
#[template(path = "console/job.html")]
struct JobPage {
    frame: Frame,
    run: RunView,
    progress: String,
    live: bool,
}

/// `GET /console/jobs/{id}`: a run, live while it goes.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let job = ops::job(&state, &session.caller(), &id).await?;
    let run = RunView::of(&job);
    let page = JobPage {
        frame: Frame::new(&session, "jobs", take_notice(&headers)),
        progress: progress_html(&run, stop_token(&session)),
        live: !run.finished,
        run,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `GET /console/jobs/{id}/events`: the run's progress as server-sent events (`progress`, HTML for the
/// page), read from the store (so from any replica) until the run ends; then `done`.
pub async fn events(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    let caller = session.caller();
    let csrf = stop_token(&session).map(String::from);
    // Refused (403, 404) before the stream starts.
    ops::job(&state, &caller, &id).await?;
    let stream = futures_util::stream::unfold(Step::First, move |step| {
        let (state, id, caller, csrf) = (state.clone(), id.clone(), caller.0.clone(), csrf.clone());
        async move {
            let mut last = match step {
                Step::End => return None,
                Step::Finish => {
                    return Some((
                        Ok::<Event, Infallible>(Event::default().event("done").data("done")),
                        Step::End,
                    ));
                }
                Step::First => None,
                Step::Watch(last) => Some(last),
            };
            loop {
                if last.is_some() {
                    tokio::time::sleep(POLL).await;
                }
                let job = match ops::job(
                    &state,
                    &crate::api::auth::Caller(caller.clone(), crate::api::auth::Origin::console(None)),
                    &id,
                )
                .await
                {
                    Ok(job) => job,
                    Err(e) => return Some((Ok(Event::default().event("done").data(e.message)), Step::End)),
                };
                let run = RunView::of(&job);
                let html = progress_html(&run, csrf.as_deref());
                if run.finished {
                    // The final state, then `done` (the page closes the stream on it).
                    return Some((Ok(Event::default().event("progress").data(html)), Step::Finish));
                }
                if last.as_deref() != Some(html.as_str()) {
                    return Some((
                        Ok(Event::default().event("progress").data(html.clone())),
                        Step::Watch(html),
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

/// The schedule form.
#[derive(Deserialize)]
pub struct ScheduleForm {
    /// The source's id.
    source: String,
    /// `read` or `resync`.
    #[serde(rename = "type", default)]
    kind: String,
    /// Seconds between runs (or empty).
    #[serde(default)]
    every_seconds: String,
    /// A cron expression (or empty).
    #[serde(default)]
    cron: String,
    /// Present when checked.
    #[serde(default)]
    enabled: Option<String>,
}

/// `POST /console/jobs/schedule`: sets a source's schedule (interval or cron).
pub async fn set_schedule(State(state): State<AppState>, session: Session, Form(form): Form<ScheduleForm>) -> Response {
    let to = format!(
        "/console/jobs?source={}",
        percent_encoding::utf8_percent_encode(&form.source, percent_encoding::NON_ALPHANUMERIC)
    );
    let every = form.every_seconds.trim();
    let every_seconds = if every.is_empty() {
        None
    } else {
        match every.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return super::redirect_with(&session, &to, false, "The interval must be a whole number of seconds.");
            }
        }
    };
    let record = ScheduleRecord {
        source_id: form.source.clone(),
        job_type: if form.kind.is_empty() { "read".into() } else { form.kind },
        every_seconds,
        cron: Some(form.cron.trim().to_string()).filter(|c| !c.is_empty()),
        enabled: form.enabled.is_some(),
    };
    let result = ops::set_schedule(&state, &session.caller(), &form.source, record).await;
    outcome(&session, &to, result, |(_, next)| match next {
        Some(next) => format!("Schedule saved; next run {}.", when(&next)),
        None => "Schedule saved; it is off.".into(),
    })
}

/// `POST /console/jobs/schedule/delete` (`source` in the form).
pub async fn delete_schedule(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let source = form.get("source").cloned().unwrap_or_default();
    let to = format!(
        "/console/jobs?source={}",
        percent_encoding::utf8_percent_encode(&source, percent_encoding::NON_ALPHANUMERIC)
    );
    let result = ops::delete_schedule(&state, &session.caller(), &source).await;
    outcome(&session, &to, result, |()| "Schedule removed.".into())
}

/// The CSRF token a run's stop button carries, when the caller may stop runs.
fn stop_token(session: &Session) -> Option<&str> {
    session
        .principal
        .may(Permission::RunJobs)
        .then_some(session.csrf.as_str())
}

/// Where a progress stream is.
enum Step {
    /// Nothing sent yet.
    First,
    /// The last progress sent.
    Watch(String),
    /// The final progress was sent; `done` follows.
    Finish,
    /// Over.
    End,
}

/// `POST /console/jobs/{id}/stop`.
pub async fn stop(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let to = format!("/console/jobs/{id}");
    outcome(
        &session,
        &to,
        ops::stop_job(&state, &session.caller(), &id).await,
        |_| "Stop requested: the run ends at the next entity boundary.".into(),
    )
}

/// The per-entity log's filters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogFilter {
    /// `success`, `failed`, `skipped`, `held`, `planned`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// `read`, `create`, `update`, `delete`, `match`, `assign`.
    #[serde(default)]
    pub operation: Option<String>,
    /// A target id (`source` for the source side).
    #[serde(default)]
    pub target: Option<String>,
    /// Text to find in the entity ids and the reason.
    #[serde(default)]
    pub q: Option<String>,
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: Option<i64>,
}

impl LogFilter {
    fn clean(mut self) -> LogFilter {
        for f in [&mut self.outcome, &mut self.operation, &mut self.target, &mut self.q] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }

    fn matches(&self, e: &EntityLogEntry) -> bool {
        if self.operation.as_deref().is_some_and(|o| o != e.operation) {
            return false;
        }
        match self.target.as_deref() {
            Some("source") if e.target_id.is_some() => return false,
            Some(t) if t != "source" && e.target_id.as_deref() != Some(t) => return false,
            _ => {}
        }
        if let Some(q) = self.q.as_deref() {
            let q = q.to_lowercase();
            let hit = [&e.source_id, &e.target_entity_id, &e.reason]
                .iter()
                .any(|f| f.as_deref().is_some_and(|v| v.to_lowercase().contains(&q)));
            if !hit {
                return false;
            }
        }
        true
    }

    /// The filter as a query string (for links to the next page and the downloads).
    pub fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("outcome", &self.outcome),
            ("operation", &self.operation),
            ("target", &self.target),
            ("q", &self.q),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// Entries shown on one page of the log.
const LOG_PAGE: usize = 200;
/// Entries read from the store at a time while filtering.
const LOG_BATCH: i64 = 5000;

/// Reads the log from `after` on and keeps the entries the filter matches, at most `max`; returns them and
/// whether more may follow.
async fn filtered_log(
    state: &AppState,
    session: &Session,
    id: &str,
    filter: &LogFilter,
    max: usize,
) -> Result<(Vec<EntityLogEntry>, bool), ApiError> {
    let mut after = filter.after.unwrap_or(0);
    let mut found = Vec::new();
    loop {
        let batch = ops::job_log(
            state,
            &session.caller(),
            id,
            filter.outcome.as_deref(),
            after,
            LOG_BATCH,
        )
        .await?;
        let full = batch.len() as i64 == LOG_BATCH;
        for e in batch {
            after = e.seq;
            if filter.matches(&e) {
                found.push(e);
                if found.len() >= max {
                    return Ok((found, true));
                }
            }
        }
        if !full {
            return Ok((found, false));
        }
    }
}

/// A log entry as the page shows it.
pub struct LogRow {
    /// Sequence number.
    pub seq: i64,
    /// When.
    pub at: String,
    /// Target name (or `source`).
    pub target: String,
    /// `user` or `group`.
    pub entity_type: String,
    /// Source entity id.
    pub source_id: String,
    /// Target entity id.
    pub target_entity_id: String,
    /// Operation.
    pub operation: String,
    /// Outcome.
    pub outcome: String,
    /// Badge class.
    pub outcome_class: &'static str,
    /// Reason.
    pub reason: String,
    /// Attribute changes, pretty JSON.
    pub changes: String,
}

#[derive(Template)]
#[template(path = "console/job_log.html")]
struct LogPage {
    frame: Frame,
    run: RunView,
    rows: Vec<LogRow>,
    filter: LogFilter,
    targets: Vec<(String, String)>,
    next: Option<String>,
    query: String,
}

/// `GET /console/jobs/{id}/log`: the per-entity log, filtered.
pub async fn log(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(filter): Query<LogFilter>,
) -> ConsoleResult {
    let filter = filter.clean();
    let job = ops::job(&state, &session.caller(), &id).await?;
    let run = RunView::of(&job);
    let names: HashMap<String, String> = run
        .statistics
        .iter()
        .map(|s| (s.target_id.clone(), s.target_name.clone()))
        .collect();
    let (entries, more) = filtered_log(&state, &session, &id, &filter, LOG_PAGE).await?;
    let next = (more && !entries.is_empty()).then(|| {
        let last = entries.last().map(|e| e.seq).unwrap_or(0);
        let q = filter.query();
        format!(
            "/console/jobs/{id}/log?{}{}after={last}",
            q,
            if q.is_empty() { "" } else { "&" }
        )
    });
    let rows = entries
        .into_iter()
        .map(|e| LogRow {
            seq: e.seq,
            at: when(&e.at),
            target: match &e.target_id {
                Some(t) => names
                    .get(t)
                    .cloned()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| t.clone()),
                None => "source".into(),
            },
            entity_type: e.entity_type,
            source_id: e.source_id.unwrap_or_default(),
            target_entity_id: e.target_entity_id.unwrap_or_default(),
            outcome_class: match e.outcome.as_str() {
                "success" => "good",
                "failed" => "bad",
                _ => "going",
            },
            operation: e.operation,
            outcome: e.outcome,
            reason: e.reason.unwrap_or_default(),
            changes: e
                .changes
                .filter(|c| !c.is_null())
                .and_then(|c| serde_json::to_string_pretty(&c).ok())
                .unwrap_or_default(),
        })
        .collect();
    let mut targets: Vec<(String, String)> = names.into_iter().collect();
    targets.sort();
    targets.dedup();
    let page = LogPage {
        frame: Frame::new(&session, "jobs", take_notice(&headers)),
        query: filter.query(),
        run,
        rows,
        filter,
        targets,
        next,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// Most entries one download holds.
const MAX_DOWNLOAD: usize = 1_000_000;

/// A CSV cell: quoted, and a leading `=`, `+`, `-` or `@` neutralised so a spreadsheet does not run it.
fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    format!("\"{}\"", v.replace('"', "\"\""))
}

fn attachment(name: String, kind: &'static str, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn file_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

/// `GET /console/jobs/{id}/log.csv`: the (filtered) log as CSV.
pub async fn download_csv(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(filter): Query<LogFilter>,
) -> ConsoleResult {
    let filter = LogFilter {
        after: None,
        ..filter.clean()
    };
    let (entries, _) = filtered_log(&state, &session, &id, &filter, MAX_DOWNLOAD).await?;
    let mut out =
        String::from("seq,at,targetId,entityType,sourceId,targetEntityId,operation,outcome,reason,changes\r\n");
    for e in entries {
        let changes = e.changes.map(|c| c.to_string()).unwrap_or_default();
        let cells = [
            e.seq.to_string(),
            e.at,
            e.target_id.unwrap_or_default(),
            e.entity_type,
            e.source_id.unwrap_or_default(),
            e.target_entity_id.unwrap_or_default(),
            e.operation,
            e.outcome,
            e.reason.unwrap_or_default(),
            changes,
        ];
        out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    Ok(attachment(
        format!("job-{}-log.csv", file_id(&id)),
        "text/csv; charset=utf-8",
        out,
    ))
}

/// `GET /console/jobs/{id}/log.json`: the (filtered) log as a JSON array.
pub async fn download_json(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(filter): Query<LogFilter>,
) -> ConsoleResult {
    let filter = LogFilter {
        after: None,
        ..filter.clean()
    };
    let (entries, _) = filtered_log(&state, &session, &id, &filter, MAX_DOWNLOAD).await?;
    let body = serde_json::to_string_pretty(&entries).map_err(ApiError::internal)?;
    Ok(attachment(
        format!("job-{}-log.json", file_id(&id)),
        "application/json",
        body,
    ))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_cell("plain"), "\"plain\"");
    }
}
