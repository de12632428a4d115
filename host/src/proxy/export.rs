//! `GET /api/v1/systems/{id}/export?format=csv|json`.
//!
//! `json` exports any system in the shape `POST /api/v1/systems` takes, **without credentials**: secret
//! properties are left out entirely (not even masked), so the file can be shared and re-imported, after
//! which the admin enters the secrets again.
//!
//! `csv` exports a proxy system as the repository constants SAP Identity Management imports for a SCIM
//! repository (seed 004): one `NAME,VALUE` row per constant. The column layout of SAP's own export is not
//! documented; the constant names follow SAP IdM's SCIM connector. `AUTH_USER`/`AUTH_PASSWORD` stay empty
//! for the admin to fill in, and `SCIM_ASSIGNMENT_METHOD` is `PUT`, as SAP's proxy docs advise.

use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::{ApiError, PathParams};
use crate::store::principals::Permission;
use crate::store::systems::{Role, System};

/// The system as `POST /api/v1/systems` takes it, secrets left out.
pub fn system_json(system: &System) -> Value {
    let properties: Map<String, Value> = system
        .spec
        .properties
        .iter()
        .filter(|(k, _)| !crate::connector::looks_secret(k))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut out = json!({
        "name": system.spec.name,
        "type": system.spec.connector,
        "role": system.spec.role,
        "properties": properties,
    });
    if let Some(v) = &system.spec.connector_version {
        out["version"] = json!(v);
    }
    if !system.spec.sources.is_empty() {
        out["sources"] = json!(system.spec.sources);
    }
    if let Some(t) = &system.spec.transformation {
        out["transformation"] = t.clone();
    }
    out
}

/// One CSV field, quoted when it needs to be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The SAP IdM SCIM repository constants of a proxy system reached at `scim_url`.
pub fn idm_csv(system: &System, scim_url: &str, token_url: &str) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("REPOSITORY_NAME", system.spec.name.clone()),
        ("REPOSITORY_TYPE", "SCIM".into()),
        ("SCIM_URL", scim_url.to_string()),
        ("SCIM_VERSION", "2.0".into()),
        ("SCIM_USERS_ENDPOINT", "Users".into()),
        ("SCIM_GROUPS_ENDPOINT", "Groups".into()),
        ("SCIM_USER_SCHEMA", super::schema::USER.into()),
        ("SCIM_GROUP_SCHEMA", super::schema::GROUP.into()),
        ("SCIM_ENTERPRISE_USER_SCHEMA", super::schema::ENTERPRISE.into()),
        ("SCIM_CONTENT_TYPE", super::SCIM_JSON.into()),
        ("SCIM_PAGE_SIZE", "100".into()),
        ("SCIM_ASSIGNMENT_METHOD", "PUT".into()),
        ("AUTH_TYPE", "BASIC".into()),
        ("AUTH_TOKEN_URL", token_url.to_string()),
        ("AUTH_USER", String::new()),
        ("AUTH_PASSWORD", String::new()),
    ];
    let mut out = String::from("NAME,VALUE\r\n");
    for (k, v) in rows {
        out.push_str(&format!("{},{}\r\n", field(k), field(&v)));
    }
    out
}

/// The handler.
#[utoipa::path(get, path = "/systems/{id}/export", tag = "systems",
    params(("id" = String, Path, description = "The system's id"),
        ("format" = Option<crate::api::schemas::ExportFormat>, Query, description = "`json` (the default; the shape `POST /api/v1/systems` takes, \
            without secrets) or `csv` (a proxy as an SAP IdM SCIM repository)")),
    responses((status = 200, description = "The export, as a download", content(
        (crate::api::schemas::SystemInput = "application/json"), (String = "text/csv")))))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    _uri: OriginalUri,
    PathParams(id): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageSystems)?;
    let system = state.systems.get(&id).await?;
    let format = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_else(|| "json".into());
    let safe_name: String = system
        .spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (body, content_type, ext) = match format.as_str() {
        "json" => (
            serde_json::to_string_pretty(&system_json(&system)).map_err(ApiError::internal)?,
            "application/json",
            "json",
        ),
        "csv" => {
            if system.spec.role != Role::Proxy {
                return Err(ApiError::bad_request(
                    "only proxy systems export as an SAP Identity Management SCIM repository (CSV); use format=json",
                ));
            }
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
                .unwrap_or("localhost");
            let scheme = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
                Some("https") => "https",
                _ => "http",
            };
            let scim_url = format!("{scheme}://{host}/ipsproxy/api/v1/scim/{}", system.id);
            let token_url = format!("{scheme}://{host}/oauth2/token");
            (
                idm_csv(&system, &scim_url, &token_url),
                "text/csv; charset=utf-8",
                "csv",
            )
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "format must be csv or json, not {other:?}"
            )));
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe_name}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }
}
