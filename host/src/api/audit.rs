//! The audit log over HTTP: `GET /api/v1/audit` (filters and paging, newest first) and
//! `GET /api/v1/audit/export?format=csv|json` (every matching entry; CSV in the columns of SAP's change log,
//! one row per changed field, plus the value before and Provisio's own columns). Admins, and technical users
//! with `read-audit`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::schemas;
use crate::audit::{AuditEntry, AuditFilter};
use crate::store::principals::Permission;

/// Entries of one page by default.
pub const DEFAULT_LIMIT: i64 = 100;
/// Most entries of one page.
pub const MAX_LIMIT: i64 = 1000;
/// Most entries one export holds.
pub const MAX_EXPORT: usize = 1_000_000;

/// The query of a listing or an export.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// The principal's name.
    pub principal: Option<String>,
    /// The action (`system.update`, …).
    pub action: Option<String>,
    /// The object type.
    pub object_type: Option<String>,
    /// The object id.
    pub object_id: Option<String>,
    /// At or after (RFC 3339).
    pub from: Option<String>,
    /// Before (RFC 3339).
    pub to: Option<String>,
    /// Entries per page (1 to 1000, 100 by default).
    pub limit: Option<String>,
    /// Where the page starts: the `nextCursor` of the page before.
    pub cursor: Option<String>,
    /// `csv` or `json` (export only).
    pub format: Option<String>,
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let t = chrono::DateTime::parse_from_rfc3339(v)
        .map_err(|e| ApiError::bad_request(format!("{name}: {v:?} is not an RFC 3339 instant ({e})")))?;
    Ok(Some(crate::store::timestamp(t.with_timezone(&chrono::Utc))))
}

fn text(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl AuditQuery {
    /// The filter it asks for; a bad instant is a 400.
    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        Ok(AuditFilter {
            principal: text(self.principal.as_ref()),
            action: text(self.action.as_ref()),
            object_type: text(self.object_type.as_ref()),
            object_id: text(self.object_id.as_ref()),
            from: instant("from", self.from.as_deref())?,
            to: instant("to", self.to.as_deref())?,
        })
    }

    /// The page size asked for (1 to 1000); a bad number is a 400.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match text(self.limit.as_ref()) {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "limit: {v:?} must be a number from 1 to {MAX_LIMIT}"
                ))),
            },
        }
    }

    /// The cursor: entries numbered below it; a bad one is a 400.
    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        match text(self.cursor.as_ref()) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "cursor: {v:?} is not a cursor of this listing (use nextCursor)"
                ))),
            },
        }
    }
}

/// Fails with 403 unless the caller may read the audit log (admins, `read-audit`).
pub fn require_audit(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::ReadAudit)
}

/// One page of entries and the cursor of the next (`None` on the last page).
pub async fn page(
    state: &AppState,
    caller: &Caller,
    filter: &AuditFilter,
    cursor: Option<i64>,
    limit: i64,
) -> Result<(Vec<AuditEntry>, Option<i64>), ApiError> {
    require_audit(caller)?;
    let limit = limit.clamp(1, MAX_LIMIT);
    // One more than asked tells whether there is a next page.
    let mut entries = state.audit.list(filter, cursor, limit + 1).await?;
    let next = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok((entries, next))
}

/// Every entry matching `filter`, newest first (at most [`MAX_EXPORT`]).
pub async fn everything(state: &AppState, caller: &Caller, filter: &AuditFilter) -> Result<Vec<AuditEntry>, ApiError> {
    require_audit(caller)?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (entries, next) = page(state, caller, filter, cursor, MAX_LIMIT).await?;
        all.extend(entries);
        match next {
            Some(n) if all.len() < MAX_EXPORT => cursor = Some(n),
            _ => break,
        }
    }
    all.truncate(MAX_EXPORT);
    Ok(all)
}

fn query(q: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `GET /api/v1/audit`: `{"entries": [...], "nextCursor": "…"|null}`, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit",
    params(("principal" = Option<String>, Query, description = "The principal's name (exact, case-insensitive)"),
        ("action" = Option<String>, Query, description = "The action (`system.create`, `login.failed`, …)"),
        ("objectType" = Option<String>, Query, description = "The kind of object (`system`, `principal`, …)"),
        ("objectId" = Option<String>, Query, description = "The object's id"),
        ("from" = Option<String>, Query, description = "At or after this RFC 3339 instant (empty: no bound)"),
        ("to" = Option<String>, Query, description = "Before this RFC 3339 instant (empty: no bound)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Entries per page (100 when absent)"),
        ("cursor" = Option<i64>, Query, minimum = 1, description = "The `nextCursor` of the page before")),
    responses((status = 200, description = "A page of the audit log, newest first", body = schemas::AuditPage)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    if q.format.is_some() {
        return Err(ApiError::bad_request("format: only for /api/v1/audit/export"));
    }
    // The API's numbers are numbers: an empty one is refused, as the OpenAPI document says (the console's
    // filter form, which sends its empty fields, takes them as absent).
    for (name, value) in [("limit", &q.limit), ("cursor", &q.cursor)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::bad_request(format!(
                "{name}: empty; leave it out or give a number"
            )));
        }
    }
    let (entries, next) = page(&state, &caller, &q.filter()?, q.cursor()?, q.limit()?).await?;
    Ok(Json(json!({
        "entries": entries,
        "nextCursor": next.map(|n| n.to_string()),
    })))
}

/// `GET /api/v1/audit/export?format=csv|json`: every matching entry as a download.
#[utoipa::path(get, path = "/audit/export", tag = "audit",
    params(("principal" = Option<String>, Query, description = "The principal's name (exact, case-insensitive)"),
        ("action" = Option<String>, Query, description = "The action (`system.create`, `login.failed`, …)"),
        ("objectType" = Option<String>, Query, description = "The kind of object (`system`, `principal`, …)"),
        ("objectId" = Option<String>, Query, description = "The object's id"),
        ("from" = Option<String>, Query, description = "At or after this RFC 3339 instant (empty: no bound)"),
        ("to" = Option<String>, Query, description = "Before this RFC 3339 instant (empty: no bound)"),
        ("format" = Option<schemas::ExportFormat>, Query, description = "`csv` (SAP's change-log columns; the default) or `json`")),
    responses((status = 200, description = "Every matching entry, as a download", content(
        (String = "text/csv"), (Vec<schemas::AuditEntry> = "application/json")))))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let csv = match q.format.as_deref().map(str::trim) {
        None | Some("") | Some("csv") => true,
        Some("json") => false,
        Some(other) => return Err(ApiError::bad_request(format!("format: {other:?} must be csv or json"))),
    };
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::bad_request(
            "an export holds every matching entry: no limit or cursor",
        ));
    }
    let entries = everything(&state, &caller, &q.filter()?).await?;
    let (body, kind, name) = if csv {
        (to_csv(&entries), "text/csv; charset=utf-8", "audit.csv")
    } else {
        (
            serde_json::to_string_pretty(&entries).map_err(ApiError::internal)?,
            "application/json",
            "audit.json",
        )
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response())
}

/// The CSV columns: SAP's change log's, then the value before the change and Provisio's own.
pub const CSV_COLUMNS: [&str; 14] = [
    "Date",
    "Administrator's ID",
    "Administrator's Name",
    "Resource Type",
    "Resource ID",
    "Resource Name",
    "Action",
    "Attribute",
    "Value",
    "Old Value",
    "Provisio Action",
    "Principal Kind",
    "Channel",
    "Client Address",
];

/// SAP's action (`CREATE`, `UPDATE`, `DELETE`) of one of ours; what is none of these keeps its verb
/// (`START`, `STOP`, `FAILED`, …).
pub fn sap_action(action: &str) -> String {
    let verb = action.rsplit('.').next().unwrap_or(action);
    match verb {
        "create" | "upload" => "CREATE".into(),
        "delete" | "remove" => "DELETE".into(),
        "update" | "save" | "rollback" | "reset" | "enable" | "disable" | "activate" | "password" | "set" => {
            "UPDATE".into()
        }
        other => other.to_ascii_uppercase(),
    }
}

/// A value as a CSV cell shows it: text as it is, anything else as JSON, nothing as empty.
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A CSV cell: quoted, and a leading `=`, `+`, `-` or `@` neutralised so a spreadsheet does not run it.
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// SAP's date form (`16-05-2014 10:21:21`), in UTC.
fn sap_date(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&chrono::Utc).format("%d-%m-%Y %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// Entries as CSV: one row per changed field (one row without an attribute when nothing changed).
pub fn to_csv(entries: &[AuditEntry]) -> String {
    let mut out = CSV_COLUMNS.map(cell).join(",");
    out.push_str("\r\n");
    for e in entries {
        let row = |attribute: &str, value: String, old: String| {
            [
                sap_date(&e.at),
                e.principal_id.clone(),
                e.principal.clone(),
                e.object_type.clone(),
                e.object_id.clone(),
                e.object_name.clone(),
                sap_action(&e.action),
                attribute.to_string(),
                value,
                old,
                e.action.clone(),
                e.principal_kind.clone(),
                e.channel.clone(),
                e.address.clone().unwrap_or_default(),
            ]
            .iter()
            .map(|v| cell(v))
            .collect::<Vec<_>>()
            .join(",")
        };
        if e.changes.is_empty() {
            out.push_str(&row("", String::new(), String::new()));
            out.push_str("\r\n");
        }
        for c in &e.changes {
            out.push_str(&row(&c.field, shown(c.after.as_ref()), shown(c.before.as_ref())));
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FieldChange;

    #[test]
    fn csv_has_sap_columns_a_row_per_field_and_neutralised_formulas() {
        let entry = AuditEntry {
            id: 1,
            at: "2014-05-16T10:21:21.000Z".into(),
            principal: "Donna Moore".into(),
            principal_id: "P123456".into(),
            principal_kind: "admin".into(),
            address: Some("192.0.2.1".into()),
            channel: "console".into(),
            action: "system.update".into(),
            object_type: "system".into(),
            object_id: "s1".into(),
            object_name: "=HYPERLINK(\"x\")".into(),
            changes: vec![
                FieldChange {
                    field: "enabled".into(),
                    before: Some(json!(true)),
                    after: Some(json!(false)),
                },
                FieldChange {
                    field: "properties.URL".into(),
                    before: Some(json!("http://a")),
                    after: Some(json!("http://b")),
                },
            ],
        };
        let csv = to_csv(&[entry]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("\"Date\",\"Administrator's ID\",\"Administrator's Name\",\"Resource Type\",\"Resource ID\",\"Resource Name\",\"Action\",\"Attribute\",\"Value\",\"Old Value\""));
        assert!(lines[1].starts_with("\"16-05-2014 10:21:21\",\"P123456\",\"Donna Moore\",\"system\",\"s1\",\"'=HYPERLINK(\"\"x\"\")\",\"UPDATE\",\"enabled\",\"false\",\"true\""), "{}", lines[1]);
        assert!(lines[2].contains(
            "\"properties.URL\",\"http://b\",\"http://a\",\"system.update\",\"admin\",\"console\",\"192.0.2.1\""
        ));
        assert_eq!(sap_action("plugin.upload"), "CREATE");
        assert_eq!(sap_action("principal.delete"), "DELETE");
        assert_eq!(sap_action("job.start"), "START");
    }
}
