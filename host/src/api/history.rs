//! A system's transformation history: every saved version with its author, date and description (a reset to
//! the connector's default is a version too, without a document), one version, a rollback that makes a new
//! version equal to an old one, and a line diff of two versions' pretty-printed JSON.
//!
//! - `GET /api/v1/systems/{id}/transformation/versions`: newest first.
//! - `GET /api/v1/systems/{id}/transformation/versions/{n}`: one, with its document.
//! - `POST /api/v1/systems/{id}/transformation/versions/{n}/rollback`: body optional, `{"description": …}`.
//! - `GET /api/v1/systems/{id}/transformation/diff?from=N&to=M`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, PathParams, QueryParams, RawBody};
use super::ops;
use super::schemas;
use crate::store::systems::{System, TransformationVersion};
use crate::systems::{SystemInput, SystemView};

/// A version as the API lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    /// Number, from 1.
    pub number: i64,
    /// The principal who saved it (empty when unknown).
    pub author: String,
    /// When.
    pub created_at: String,
    /// The admin's description.
    pub description: Option<String>,
    /// A reset to the connector's default.
    pub reset: bool,
    /// The document (`null` for a reset); only in the answer for one version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformation: Option<Value>,
}

impl VersionView {
    /// The listed form (no document).
    pub fn listed(v: &TransformationVersion) -> Self {
        VersionView {
            number: v.version,
            author: v.author.clone(),
            created_at: v.created_at.clone(),
            description: v.description.clone(),
            reset: v.reset,
            transformation: None,
        }
    }

    /// The full form (the document, `null` for a reset).
    pub fn full(v: &TransformationVersion) -> Self {
        VersionView {
            transformation: Some(v.document.clone().unwrap_or(Value::Null)),
            ..Self::listed(v)
        }
    }
}

/// One line of a diff.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffLine {
    /// `equal`, `delete` (only in `from`) or `insert` (only in `to`).
    pub op: &'static str,
    /// Line number in `from` (from 1), if the line is there.
    pub old: Option<usize>,
    /// Line number in `to` (from 1), if the line is there.
    pub new: Option<usize>,
    /// The line, without its end.
    pub text: String,
}

/// A line diff of two versions' pretty-printed documents (a reset's text is empty).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionDiff {
    /// The older side's number.
    pub from: i64,
    /// The newer side's number.
    pub to: i64,
    /// Whether `from` is a reset to the connector's default.
    pub from_reset: bool,
    /// Whether `to` is a reset to the connector's default.
    pub to_reset: bool,
    /// Lines only in `to`.
    pub added: usize,
    /// Lines only in `from`.
    pub removed: usize,
    /// Every line of both, in order.
    pub lines: Vec<DiffLine>,
    /// The same as a unified diff (3 lines of context).
    pub unified: String,
}

/// A version's document as the diff compares it: pretty-printed JSON, empty for a reset.
pub fn diff_text(v: &TransformationVersion) -> String {
    match &v.document {
        Some(doc) => {
            let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
            text.push('\n');
            text
        }
        None => String::new(),
    }
}

/// The line diff between two versions.
pub fn diff(from: &TransformationVersion, to: &TransformationVersion) -> VersionDiff {
    let (old, new) = (diff_text(from), diff_text(to));
    let text_diff = TextDiff::from_lines(&old, &new);
    let mut lines = Vec::new();
    let (mut added, mut removed) = (0, 0);
    for change in text_diff.iter_all_changes() {
        let op = match change.tag() {
            ChangeTag::Equal => "equal",
            ChangeTag::Delete => {
                removed += 1;
                "delete"
            }
            ChangeTag::Insert => {
                added += 1;
                "insert"
            }
        };
        lines.push(DiffLine {
            op,
            old: change.old_index().map(|i| i + 1),
            new: change.new_index().map(|i| i + 1),
            text: change.value().trim_end_matches(['\n', '\r']).to_string(),
        });
    }
    let label = |v: &TransformationVersion| {
        if v.reset {
            format!("version {} (connector's default)", v.version)
        } else {
            format!("version {}", v.version)
        }
    };
    let unified = text_diff
        .unified_diff()
        .context_radius(3)
        .header(&label(from), &label(to))
        .to_string();
    VersionDiff {
        from: from.version,
        to: to.version,
        from_reset: from.reset,
        to_reset: to.reset,
        added,
        removed,
        lines,
        unified,
    }
}

/// A system's versions, newest first (`manage-systems`); 404 for an unknown system.
pub async fn versions(state: &AppState, caller: &Caller, id: &str) -> Result<Vec<TransformationVersion>, ApiError> {
    ops::system(state, caller, id).await?;
    Ok(state.stores.systems.transformation_versions(id).await?)
}

/// One version (`manage-systems`); 404 for an unknown system or version.
pub async fn version(state: &AppState, caller: &Caller, id: &str, n: i64) -> Result<TransformationVersion, ApiError> {
    ops::system(state, caller, id).await?;
    state
        .stores
        .systems
        .transformation_version(id, n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("the system has no transformation version {n}")))
}

/// The diff between versions `from` and `to` of a system (`manage-systems`).
pub async fn diff_versions(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: i64,
    to: i64,
) -> Result<VersionDiff, ApiError> {
    let old = version(state, caller, id, from).await?;
    let new = version(state, caller, id, to).await?;
    Ok(diff(&old, &new))
}

/// The system as it is, with another transformation (secrets kept by their mask, as a GET-then-PUT).
pub fn same_with(system: &System, transformation: Option<Value>, description: Option<String>) -> SystemInput {
    let view = SystemView::from(system);
    SystemInput {
        name: view.name,
        connector: view.connector,
        version: view.version,
        role: view.role,
        properties: view
            .properties
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        sources: view.sources,
        transformation,
        declassify: Vec::new(),
        read_only_quarantine: None,
        read_only_last_test: None,
        description,
        enabled: None,
    }
}

/// Makes a new version equal to version `n` (`manage-systems`), validated as any save; 409 when version `n`
/// is what applies already. The description defaults to "Rollback to version n".
pub async fn rollback(
    state: &AppState,
    caller: &Caller,
    id: &str,
    n: i64,
    description: Option<String>,
) -> Result<System, ApiError> {
    let system = ops::system(state, caller, id).await?;
    let old = version(state, caller, id, n).await?;
    if old.document == system.spec.transformation {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("version {n} is the transformation in force already"),
        ));
    }
    let description = description
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| format!("Rollback to version {n}"));
    let input = same_with(&system, old.document, Some(description));
    let saved = ops::replace_system_as(state, caller, id, input, Some("transformation.rollback")).await?;
    tracing::info!(system = %id, version = n, by = %caller.0.name, "transformation rolled back");
    Ok(saved)
}

/// `GET /api/v1/systems/{id}/transformation/versions`.
#[utoipa::path(get, path = "/systems/{id}/transformation/versions", tag = "transformations", params(("id" = String, Path, description = "The system's id")),
    responses((status = 200, description = "The versions, without their documents", body = Vec<schemas::TransformationVersion>)))]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    Ok(Json(
        versions(&state, &caller, &id)
            .await?
            .iter()
            .map(VersionView::listed)
            .collect(),
    ))
}

/// `GET /api/v1/systems/{id}/transformation/versions/{n}`.
#[utoipa::path(get, path = "/systems/{id}/transformation/versions/{n}", tag = "transformations", params(("id" = String, Path, description = "The system's id"), ("n" = i64, Path, minimum = 1, description = "The version number (1, 2, …)")),
    responses((status = 200, description = "The version with its document", body = schemas::TransformationVersion)))]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, n)): PathParams<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    let n = number(&n)?;
    Ok(Json(VersionView::full(&version(&state, &caller, &id, n).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    description: Option<String>,
}

/// `POST /api/v1/systems/{id}/transformation/versions/{n}/rollback`: 200 with the system.
#[utoipa::path(post, path = "/systems/{id}/transformation/versions/{n}/rollback", tag = "transformations",
    params(("id" = String, Path, description = "The system's id"), ("n" = i64, Path, minimum = 1, description = "The version number (1, 2, …)")),
    request_body(description = "A description of the new version; the body may be empty", content = Option<schemas::RollbackInput>),
    responses((status = 200, description = "The system with the new version (equal to n)", body = schemas::System), (status = 409, description = "That version is the transformation in force already", body = schemas::ErrorBody)))]
pub async fn post_rollback(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, n)): PathParams<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<SystemView>, ApiError> {
    let n = number(&n)?;
    // An empty body, or `null`, asks for the default description.
    let body: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body must be {{\"description\": \"…\"}}: {e}")))?
    };
    let saved = rollback(&state, &caller, &id, n, body.description).await?;
    Ok(Json(SystemView::from(&saved)))
}

/// The versions a diff compares (`?from=N&to=M`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version (required).
    #[param(value_type = i64, required = true, minimum = 1)]
    from: Option<String>,
    /// The newer version (required).
    #[param(value_type = i64, required = true, minimum = 1)]
    to: Option<String>,
}

/// `GET /api/v1/systems/{id}/transformation/diff?from=N&to=M`.
#[utoipa::path(get, path = "/systems/{id}/transformation/diff", tag = "transformations", params(("id" = String, Path, description = "The system's id"), DiffQuery),
    responses((status = 200, description = "A line diff", body = schemas::VersionDiff)))]
pub async fn get_diff(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<DiffQuery>,
) -> Result<Json<VersionDiff>, ApiError> {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::bad_request("give the versions to compare: ?from=N&to=M"));
    };
    let (from, to) = (number(from)?, number(to)?);
    Ok(Json(diff_versions(&state, &caller, &id, from, to).await?))
}

/// A version number from the path or the query.
pub fn number(text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::bad_request(format!("{text:?} is not a version number (1, 2, …)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(n: i64, doc: Option<Value>) -> TransformationVersion {
        TransformationVersion {
            version: n,
            author: "admin".into(),
            created_at: "2026-12-04T12:00:00Z".into(),
            description: None,
            reset: doc.is_none(),
            document: doc,
        }
    }

    #[test]
    fn diff_marks_changed_lines() {
        let a = v(
            1,
            Some(json!({"user": {"mappings": [{"sourcePath": "$.a", "targetPath": "$.x"}]}})),
        );
        let b = v(
            2,
            Some(json!({"user": {"mappings": [{"sourcePath": "$.b", "targetPath": "$.x"}]}})),
        );
        let d = diff(&a, &b);
        assert_eq!((d.added, d.removed), (1, 1));
        let deleted: Vec<_> = d.lines.iter().filter(|l| l.op == "delete").collect();
        assert!(deleted[0].text.contains("\"$.a\""), "{:?}", d.lines);
        assert!(deleted[0].old.is_some() && deleted[0].new.is_none());
        assert!(d.unified.contains("-        \"sourcePath\": \"$.a\","), "{}", d.unified);
        assert!(d.unified.starts_with("--- version 1\n+++ version 2\n"), "{}", d.unified);
        // A reset has no text: everything is removed.
        let r = diff(&b, &v(3, None));
        assert!(r.to_reset && r.added == 0 && r.removed == r.lines.len());
        assert!(r.unified.contains("connector's default"));
    }

    #[test]
    fn version_numbers() {
        assert_eq!(number(" 3").unwrap(), 3);
        assert!(number("0").is_err());
        assert!(number("x").is_err());
    }
}
