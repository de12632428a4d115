//! The audit log: who changed what, when and from where, with the before → after of each field; filtered
//! by principal, action, object and time, paged newest first, and downloaded as CSV (admins, and technical
//! users with `read-audit`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{ConsoleResult, Frame, Session, page_with_notice, render, take_notice, when};
use crate::api::AppState;
use crate::api::audit::{self as api_audit, AuditQuery};
use crate::audit::AuditEntry;

/// Entries on one page.
const PAGE: i64 = 100;

/// The filter form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filter {
    principal: String,
    action: String,
    object_type: String,
    object_id: String,
    from: String,
    to: String,
    cursor: String,
}

/// A day (`2026-01-31`) is its midnight in UTC; anything else is taken as RFC 3339.
fn instant(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() {
        None
    } else if v.len() == 10 && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
        Some(format!("{v}T00:00:00Z"))
    } else {
        Some(v.to_string())
    }
}

impl Filter {
    fn query(&self) -> AuditQuery {
        let some = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        AuditQuery {
            principal: some(&self.principal),
            action: some(&self.action),
            object_type: some(&self.object_type),
            object_id: some(&self.object_id),
            from: instant(&self.from),
            to: instant(&self.to),
            cursor: some(&self.cursor),
            ..Default::default()
        }
    }

    /// The filter as a query string (without the cursor).
    fn encoded(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("principal", &self.principal),
            ("action", &self.action),
            ("object_type", &self.object_type),
            ("object_id", &self.object_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        q.finish()
    }
}

/// One changed field as the page shows it.
pub struct ChangeRow {
    /// The field.
    pub field: String,
    /// Before (empty: it did not exist).
    pub before: String,
    /// After (empty: it went).
    pub after: String,
}

/// An entry as the page shows it.
pub struct EntryRow {
    /// When.
    pub at: String,
    /// Who.
    pub principal: String,
    /// `admin`, `technical`, `unknown`.
    pub kind: String,
    /// From where: the channel and the address.
    pub origin: String,
    /// The action.
    pub action: String,
    /// The object: type, name and id.
    pub object: String,
    /// The changed fields.
    pub changes: Vec<ChangeRow>,
}

fn shown(v: Option<&serde_json::Value>) -> String {
    let text = match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // A transformation can be long: the page shows its start (the export has it all).
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

fn row(e: AuditEntry) -> EntryRow {
    let object = match (e.object_name.is_empty(), e.object_id.is_empty()) {
        (true, true) => e.object_type.clone(),
        (true, false) => format!("{} {}", e.object_type, e.object_id),
        (false, true) => format!("{} {}", e.object_type, e.object_name),
        (false, false) => format!("{} {} ({})", e.object_type, e.object_name, e.object_id),
    };
    EntryRow {
        at: when(&e.at),
        principal: e.principal,
        kind: e.principal_kind,
        origin: match &e.address {
            Some(a) => format!("{} {a}", e.channel),
            None => e.channel.clone(),
        },
        action: e.action,
        object,
        changes: e
            .changes
            .iter()
            .map(|c| ChangeRow {
                field: c.field.clone(),
                before: shown(c.before.as_ref()),
                after: shown(c.after.as_ref()),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    frame: Frame,
    rows: Vec<EntryRow>,
    filter: Filter,
    next: Option<String>,
    export: String,
}

/// `GET /console/audit`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> ConsoleResult {
    let caller = session.caller();
    let q = filter.query();
    let (entries, next) = api_audit::page(&state, &caller, &q.filter()?, q.cursor()?, PAGE).await?;
    let encoded = filter.encoded();
    let next = next.map(|n| {
        if encoded.is_empty() {
            format!("/console/audit?cursor={n}")
        } else {
            format!("/console/audit?{encoded}&cursor={n}")
        }
    });
    let export = if encoded.is_empty() {
        "/console/audit/export.csv".to_string()
    } else {
        format!("/console/audit/export.csv?{encoded}")
    };
    let page = AuditPage {
        frame: Frame::new(&session, "audit", take_notice(&headers)),
        rows: entries.into_iter().map(row).collect(),
        filter,
        next,
        export,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// `GET /console/audit/export.csv`: every matching entry, as the API's CSV export.
pub async fn export(State(state): State<AppState>, session: Session, Query(filter): Query<Filter>) -> ConsoleResult {
    let caller = session.caller();
    let entries = api_audit::everything(&state, &caller, &filter.query().filter()?).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"audit.csv\""),
            ),
        ],
        api_audit::to_csv(&entries),
    )
        .into_response())
}
