//! Systems by role: list with search, a system's page (properties with secrets masked, sources and the
//! targets a source feeds), add and edit with the connector's declared properties as a form (their docs and
//! defaults; secrets write-only), Test Connection, delete with confirmation, export as JSON (no secrets) and
//! import, a proxy's SCIM endpoint to copy and its SAP IdM CSV.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{
    ConsoleResult, Frame, Session, outcome, page_with_notice, redirect_with, render, render_with, take_notice, when,
};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::ops;
use crate::store::systems::{Role, System};
use crate::systems::{MASK, SystemInput, SystemView};

/// A system in the list.
pub struct SystemRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `source`, `target`, `proxy`.
    pub role: &'static str,
    /// Connector, with the pinned version if any.
    pub connector: String,
    /// For a target, its sources; for a source, the targets it feeds (names).
    pub linked: Vec<String>,
    /// Last change.
    pub updated_at: String,
}

#[derive(Template)]
#[template(path = "console/systems.html")]
struct ListPage {
    frame: Frame,
    rows: Vec<SystemRow>,
    role: String,
    q: String,
    connector: String,
    /// Systems in the store.
    total: usize,
    /// Systems the filters match (all pages).
    matching: usize,
    /// The 1-based positions of the first and last row shown.
    first: usize,
    last: usize,
    /// Links to the neighbouring pages, when there are any.
    previous: Option<String>,
    next: Option<String>,
}

/// Systems shown on one page of the list: a thousand systems fit in ten pages that each stay light.
pub const SYSTEMS_PAGE: usize = 100;

/// The list's filters.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// `source`, `target`, `proxy`.
    #[serde(default)]
    pub role: Option<String>,
    /// Text in the name, connector or id.
    #[serde(default)]
    pub q: Option<String>,
    /// Systems on this connector (`scim`) or on this pinned version of it (`scim@1.2.0`).
    #[serde(default)]
    pub connector: Option<String>,
    /// The page, from 1 (anything else shows the first).
    #[serde(default)]
    pub page: Option<String>,
}

impl ListQuery {
    /// The filters and `page` as a query string, for the links to the other pages.
    fn link(&self, page: usize) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("role", &self.role), ("q", &self.q), ("connector", &self.connector)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(key, value);
            }
        }
        query.append_pair("page", &page.to_string());
        format!("/console/systems?{}", query.finish())
    }
}

fn connector_label(s: &System) -> String {
    match &s.spec.connector_version {
        Some(v) => format!("{}@{v}", s.spec.connector),
        None => s.spec.connector.clone(),
    }
}

/// The names of the systems `ids`, in order (ids of deleted systems as they are).
fn names_of(all: &[System], ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|s| &s.id == id)
                .map(|s| s.spec.name.clone())
                .unwrap_or_else(|| id.clone())
        })
        .collect()
}

/// The targets that receive from a source.
fn fed_by(all: &[System], source: &str) -> Vec<(String, String)> {
    all.iter()
        .filter(|s| s.spec.role == Role::Target && s.spec.sources.iter().any(|x| x == source))
        .map(|s| (s.id.clone(), s.spec.name.clone()))
        .collect()
}

/// `GET /console/systems`: the systems the filters match, sorted by name, a page at a time (the linked
/// systems' names are looked up only for the rows shown).
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(f): Query<ListQuery>,
) -> ConsoleResult {
    let all = ops::systems(&state, &session.caller()).await?;
    let role = f.role.clone().unwrap_or_default();
    let q = f.q.clone().unwrap_or_default().trim().to_string();
    let connector = f.connector.clone().unwrap_or_default().trim().to_string();
    let needle = q.to_lowercase();
    let mut matching: Vec<&System> = all
        .iter()
        .filter(|s| role.is_empty() || s.spec.role.as_str() == role)
        .filter(|s| connector.is_empty() || s.spec.connector == connector || connector_label(s) == connector)
        .filter(|s| {
            needle.is_empty()
                || s.spec.name.to_lowercase().contains(&needle)
                || connector_label(s).to_lowercase().contains(&needle)
                || s.id.contains(&needle)
        })
        .collect();
    matching.sort_by_cached_key(|s| s.spec.name.to_lowercase());
    let pages = matching.len().div_ceil(SYSTEMS_PAGE).max(1);
    let page = f
        .page
        .as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let start = (page - 1) * SYSTEMS_PAGE;
    let shown = &matching[start.min(matching.len())..(start + SYSTEMS_PAGE).min(matching.len())];
    let names: HashMap<&str, &str> = all.iter().map(|s| (s.id.as_str(), s.spec.name.as_str())).collect();
    let rows = shown
        .iter()
        .map(|s| SystemRow {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            role: s.spec.role.as_str(),
            connector: connector_label(s),
            linked: match s.spec.role {
                Role::Target => s
                    .spec
                    .sources
                    .iter()
                    .map(|id| names.get(id.as_str()).map_or_else(|| id.clone(), |n| n.to_string()))
                    .collect(),
                Role::Source => fed_by(&all, &s.id).into_iter().map(|(_, n)| n).collect(),
                Role::Proxy => Vec::new(),
            },
            updated_at: when(&s.updated_at),
        })
        .collect::<Vec<_>>();
    let page = ListPage {
        frame: Frame::new(&session, "systems", take_notice(&headers)),
        total: all.len(),
        matching: matching.len(),
        first: if rows.is_empty() { 0 } else { start + 1 },
        last: start + rows.len(),
        previous: (page > 1).then(|| f.link(page - 1)),
        next: (page < pages).then(|| f.link(page + 1)),
        rows,
        role,
        q,
        connector,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

#[derive(Template)]
#[template(path = "console/system.html")]
struct SystemPage {
    frame: Frame,
    view: SystemView,
    role: &'static str,
    connector: String,
    secret_names: BTreeSet<String>,
    sources: Vec<(String, String)>,
    feeds: Vec<(String, String)>,
    transformation: String,
    created: String,
    changed: String,
    /// For a proxy: its SCIM endpoint as this request reached the service.
    scim_url: String,
    /// Its quarantine, if any.
    quarantine: Option<super::overview::QuarantinedView>,
    /// Its last Test Connection: ok, message, when.
    last_test: Option<(bool, String, String)>,
}

/// The service's own address as the browser reached it (`Host`, the scheme of the session's connection).
fn own_base(session: &Session, headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    format!("{}://{host}", if session.secure { "https" } else { "http" })
}

/// `GET /console/systems/{id}`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let caller = session.caller();
    let all = ops::systems(&state, &caller).await?;
    let system = ops::system(&state, &caller, &id).await?;
    let view = SystemView::from(&system);
    let page = SystemPage {
        quarantine: system
            .health
            .quarantine
            .as_ref()
            .map(|q| super::overview::QuarantinedView {
                id: system.id.clone(),
                name: system.spec.name.clone(),
                since: when(&q.since),
                reason: q.reason.clone(),
                message: q.message.clone(),
                next_probe: when(&q.next_probe_at),
                probes: q.probes,
            }),
        last_test: system
            .health
            .last_test
            .as_ref()
            .map(|t| (t.ok, t.message.clone(), when(&t.at))),
        frame: Frame::new(&session, "systems", take_notice(&headers)),
        role: system.spec.role.as_str(),
        connector: connector_label(&system),
        secret_names: system.spec.secrets.names().map(String::from).collect(),
        sources: system
            .spec
            .sources
            .iter()
            .zip(names_of(&all, &system.spec.sources))
            .map(|(i, n)| (i.clone(), n))
            .collect(),
        feeds: fed_by(&all, &system.id),
        created: when(&system.created_at),
        changed: when(&system.updated_at),
        scim_url: if system.spec.role == Role::Proxy {
            format!("{}/ipsproxy/api/v1/scim/{}", own_base(&session, &headers), system.id)
        } else {
            String::new()
        },
        transformation: view
            .transformation
            .as_ref()
            .and_then(|t| serde_json::to_string_pretty(t).ok())
            .unwrap_or_default(),
        view,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// A property field of the form.
pub struct PropField {
    /// Name.
    pub name: String,
    /// The connector's one line about it.
    pub doc: String,
    /// Whether a system needs it.
    pub required: bool,
    /// Write-only.
    pub secret: bool,
    /// The default.
    pub default: String,
    /// The value shown (never a secret's).
    pub value: String,
    /// For a secret: whether a value is stored (left empty, it stays).
    pub stored: bool,
    /// The field's id in the page.
    pub field_id: String,
}

/// A source a target can receive from.
pub struct SourceChoice {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Chosen.
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "console/system_form.html")]
struct FormPage {
    frame: Frame,
    /// The system edited; `None` for a new one.
    editing: Option<String>,
    name: String,
    role: String,
    connector: String,
    version: String,
    connectors: Vec<String>,
    versions: Vec<String>,
    props: Vec<PropField>,
    extra: String,
    sources: Vec<SourceChoice>,
    error: Option<String>,
}

/// What the form was filled with.
#[derive(Default)]
struct Filled {
    name: String,
    role: String,
    connector: String,
    version: String,
    props: BTreeMap<String, String>,
    extra: String,
    sources: Vec<String>,
}

impl Filled {
    fn parse(body: &[u8]) -> Filled {
        let mut f = Filled::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = v.into_owned();
            match k.as_ref() {
                "name" => f.name = v,
                "role" => f.role = v,
                "connector" => f.connector = v,
                "version" => f.version = v,
                "extra" => f.extra = v,
                "sources" => f.sources.push(v),
                k => {
                    if let Some(p) = k.strip_prefix("p.") {
                        f.props.insert(p.to_string(), v);
                    }
                }
            }
        }
        f
    }
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    match role {
        "source" => Ok(Role::Source),
        "target" => Ok(Role::Target),
        "proxy" => Ok(Role::Proxy),
        _ => Err(ApiError::bad_request("choose the role: source, target or proxy")),
    }
}

/// Builds the form for `filled` (over `existing` when editing), with an error to show.
async fn form(
    state: &AppState,
    session: &Session,
    existing: Option<&System>,
    filled: Filled,
    error: Option<String>,
) -> Result<FormPage, ApiError> {
    let caller = session.caller();
    let all = ops::systems(state, &caller).await?;
    let loaded = state.plugins.list();
    let mut connectors: Vec<String> = loaded.iter().map(|p| p.descriptor.name.clone()).collect();
    connectors.sort();
    connectors.dedup();
    let mut versions: Vec<String> = loaded
        .iter()
        .filter(|p| p.descriptor.name == filled.connector)
        .map(|p| p.descriptor.version.clone())
        .collect();
    versions.sort_by(|a, b| crate::plugins::compare_versions(a, b));
    let pinned = (!filled.version.is_empty()).then_some(filled.version.as_str());
    let plugin = (!filled.connector.is_empty())
        .then(|| state.plugins.resolve(&filled.connector, pinned))
        .flatten();
    let stored_secrets: BTreeSet<String> = existing
        .map(|s| s.spec.secrets.names().map(String::from).collect())
        .unwrap_or_default();
    let mut declared = BTreeSet::new();
    let props: Vec<PropField> = plugin
        .iter()
        .flat_map(|p| p.descriptor.properties.iter().map(move |d| (p.clone(), d)))
        .enumerate()
        .map(|(i, (p, d))| {
            declared.insert(d.name.clone());
            let secret = p.descriptor.is_secret(&d.name) || stored_secrets.contains(&d.name);
            PropField {
                name: d.name.clone(),
                doc: d.doc.clone(),
                required: d.required,
                secret,
                default: d.default_value.clone().unwrap_or_default(),
                value: if secret {
                    String::new()
                } else {
                    filled.props.get(&d.name).cloned().unwrap_or_default()
                },
                stored: stored_secrets.contains(&d.name),
                field_id: format!("prop-{i}"),
            }
        })
        .collect();
    // Properties the connector does not declare go in the free-form field; stored secrets as the mask.
    let mut extra = filled.extra.clone();
    if extra.is_empty()
        && let Some(system) = existing
    {
        let view = SystemView::from(system);
        extra = view
            .properties
            .iter()
            .filter(|(k, _)| !declared.contains(*k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let sources = all
        .iter()
        .filter(|s| s.spec.role == Role::Source && existing.is_none_or(|e| e.id != s.id))
        .map(|s| SourceChoice {
            checked: filled.sources.contains(&s.id),
            id: s.id.clone(),
            name: s.spec.name.clone(),
        })
        .collect();
    Ok(FormPage {
        frame: Frame::new(session, "systems", None),
        editing: existing.map(|s| s.id.clone()),
        name: filled.name,
        role: filled.role,
        connector: filled.connector,
        version: filled.version,
        connectors,
        versions,
        props,
        extra,
        sources,
        error,
    })
}

/// The query of the add form: the role and connector chosen so far.
#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    /// Role.
    #[serde(default)]
    pub role: Option<String>,
    /// Connector.
    #[serde(default)]
    pub connector: Option<String>,
    /// Pinned version.
    #[serde(default)]
    pub version: Option<String>,
    /// Name typed so far.
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /console/systems/new`: choose role and connector; then the connector's properties.
pub async fn new_form(State(state): State<AppState>, session: Session, Query(q): Query<NewQuery>) -> ConsoleResult {
    ops::require_manage(&session.caller())?;
    let filled = Filled {
        name: q.name.unwrap_or_default(),
        role: q.role.unwrap_or_else(|| "source".into()),
        connector: q.connector.unwrap_or_default(),
        version: q.version.unwrap_or_default(),
        ..Filled::default()
    };
    Ok(render(&form(&state, &session, None, filled, None).await?))
}

/// `GET /console/systems/{id}/edit`.
pub async fn edit_form(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    let system = ops::system(&state, &session.caller(), &id).await?;
    let filled = Filled {
        name: system.spec.name.clone(),
        role: system.spec.role.as_str().into(),
        connector: system.spec.connector.clone(),
        version: system.spec.connector_version.clone().unwrap_or_default(),
        props: system.spec.properties.clone(),
        extra: String::new(),
        sources: system.spec.sources.clone(),
    };
    Ok(render(&form(&state, &session, Some(&system), filled, None).await?))
}

/// The definition the form describes. A secret left empty keeps its stored value (sent as the mask, as the
/// API takes it); other empty fields are left out (the connector's default applies).
fn input(filled: &Filled, existing: Option<&System>) -> Result<SystemInput, ApiError> {
    let role = parse_role(&filled.role)?;
    let mut properties = BTreeMap::new();
    for (k, v) in &filled.props {
        let stored = existing.is_some_and(|s| s.spec.secrets.contains(k));
        if v.is_empty() {
            if stored {
                properties.insert(k.clone(), Value::String(MASK.into()));
            }
            continue;
        }
        properties.insert(k.clone(), Value::String(v.clone()));
    }
    for (n, line) in filled.extra.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("line {} of the further properties must read name=value", n + 1))
        })?;
        let k = k.trim();
        if properties.contains_key(k) {
            return Err(ApiError::bad_request(format!(
                "the property {k} is given twice (in its field and among the further properties)"
            )));
        }
        properties.insert(k.to_string(), Value::String(v.trim().to_string()));
    }
    Ok(SystemInput {
        name: filled.name.trim().to_string(),
        connector: filled.connector.clone(),
        version: (!filled.version.is_empty()).then(|| filled.version.clone()),
        role,
        properties,
        sources: if role == Role::Target {
            filled.sources.clone()
        } else {
            Vec::new()
        },
        transformation: existing.and_then(|s| s.spec.transformation.clone()),
        declassify: Vec::new(),
        read_only_quarantine: None,
        read_only_last_test: None,
        description: None,
        enabled: None,
    })
}

async fn refill(
    state: &AppState,
    session: &Session,
    existing: Option<&System>,
    filled: Filled,
    e: ApiError,
) -> Response {
    let status = e.status;
    match form(state, session, existing, filled, Some(e.message)).await {
        Ok(page) => render_with(status, &page),
        Err(e) => super::ConsoleError(e).into_response_page(),
    }
}

/// `POST /console/systems`: creates the system from the form.
pub async fn create(State(state): State<AppState>, session: Session, body: Bytes) -> Response {
    let filled = Filled::parse(&body);
    let result = match input(&filled, None) {
        Ok(input) => ops::create_system(&state, &session.caller(), input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(system) => redirect_with(
            &session,
            &format!("/console/systems/{}", system.id),
            true,
            &format!("System {} created.", system.spec.name),
        ),
        Err(e) => refill(&state, &session, None, filled, e).await,
    }
}

/// `POST /console/systems/{id}`: saves the edit form.
pub async fn update(State(state): State<AppState>, session: Session, Path(id): Path<String>, body: Bytes) -> Response {
    let caller = session.caller();
    let existing = match ops::system(&state, &caller, &id).await {
        Ok(s) => s,
        Err(e) => return super::ConsoleError(e).into_response_page(),
    };
    let filled = Filled::parse(&body);
    let result = match input(&filled, Some(&existing)) {
        Ok(input) => ops::replace_system(&state, &caller, &id, input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(system) => redirect_with(
            &session,
            &format!("/console/systems/{}", system.id),
            true,
            &format!("System {} configuration updated.", system.spec.name),
        ),
        Err(e) => refill(&state, &session, Some(&existing), filled, e).await,
    }
}

/// `POST /console/systems/{id}/test`: Test Connection, its message shown on the system's page.
pub async fn test(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let to = format!("/console/systems/{id}");
    match ops::test_connection(&state, &session.caller(), &id).await {
        Ok(check) => redirect_with(&session, &to, check.ok, &check.message),
        Err(e) => redirect_with(&session, &to, false, &e.message),
    }
}

/// `POST /console/systems/{id}/release`: ends the target's quarantine.
pub async fn release(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let to = format!("/console/systems/{id}");
    let result = ops::release_system(&state, &session.caller(), &id).await;
    outcome(&session, &to, result, |(s, _)| {
        format!(
            "{} is released from quarantine: runs write to it again and its parked real-time events resume.",
            s.spec.name
        )
    })
}

/// `POST /console/systems/{id}/enable|disable`.
pub async fn set_enabled(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let to = format!("/console/systems/{id}");
    let result = match action.as_str() {
        "enable" | "disable" => ops::set_system_enabled(&state, &session.caller(), &id, action == "enable").await,
        other => Err(crate::api::error::ApiError::not_found(format!(
            "unknown action {other:?}; use enable or disable"
        ))),
    };
    outcome(&session, &to, result, |s| {
        if s.enabled {
            format!("{} is enabled.", s.spec.name)
        } else {
            format!(
                "{} is disabled: runs, schedules and real-time events skip it.",
                s.spec.name
            )
        }
    })
}

#[derive(Template)]
#[template(path = "console/system_delete.html")]
struct DeletePage {
    frame: Frame,
    id: String,
    name: String,
    feeds: Vec<(String, String)>,
}

/// `GET /console/systems/{id}/delete`: asks for confirmation.
pub async fn confirm_delete(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    let caller = session.caller();
    let system = ops::system(&state, &caller, &id).await?;
    let all = ops::systems(&state, &caller).await?;
    Ok(render(&DeletePage {
        frame: Frame::new(&session, "systems", None),
        feeds: fed_by(&all, &id),
        id: system.id,
        name: system.spec.name,
    }))
}

/// `POST /console/systems/{id}/delete`.
pub async fn delete(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let result = ops::delete_system(&state, &session.caller(), &id).await;
    match result {
        Ok(()) => redirect_with(&session, "/console/systems", true, "System deleted."),
        Err(e) => outcome::<()>(&session, &format!("/console/systems/{id}"), Err(e), |_| String::new()),
    }
}

/// A system as an importable JSON document: the admin API's export (`GET /api/v1/systems/{id}/export`),
/// which `POST /api/v1/systems` takes as it is, without any secret — the system's secret properties (and any
/// whose name looks secret) are left out, not masked.
pub fn export_document(system: &System) -> Value {
    let mut doc = crate::proxy::export::system_json(system);
    if let Some(props) = doc.get_mut("properties").and_then(Value::as_object_mut) {
        for name in system.spec.secrets.names() {
            props.remove(name);
        }
    }
    doc
}

/// `GET /console/systems/{id}/idm.csv`: a proxy as an SAP Identity Management SCIM repository (the admin
/// API's CSV export, with the address the browser reached).
pub async fn idm_csv(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ConsoleResult {
    let system = ops::system(&state, &session.caller(), &id).await?;
    if system.spec.role != Role::Proxy {
        return Err(ApiError::bad_request("only proxy systems export as an SAP Identity Management repository").into());
    }
    let base = own_base(&session, &headers);
    let csv = crate::proxy::export::idm_csv(
        &system,
        &format!("{base}/ipsproxy/api/v1/scim/{}", system.id),
        &format!("{base}/oauth2/token"),
    );
    let mut response = axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv,
    ));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.csv\"",
        file_name(&system.spec.name)
    )) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `GET /console/systems/{id}/export.json`: the system as a JSON file (no secrets).
pub async fn export(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    let system = ops::system(&state, &session.caller(), &id).await?;
    let body = serde_json::to_string_pretty(&export_document(&system)).unwrap_or_default();
    let disposition = format!("attachment; filename=\"system-{}.json\"", file_name(&system.spec.name));
    let mut response = axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    ));
    if let Ok(v) = axum::http::HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "console/system_import.html")]
struct ImportPage {
    frame: Frame,
    text: String,
    error: Option<String>,
}

/// `GET /console/systems/import`.
pub async fn import_form(State(state): State<AppState>, session: Session) -> ConsoleResult {
    ops::systems(&state, &session.caller()).await?;
    Ok(render(&ImportPage {
        frame: Frame::new(&session, "systems", None),
        text: String::new(),
        error: None,
    }))
}

/// Largest system document imported.
const MAX_IMPORT_BYTES: usize = 1 << 20;

/// `POST /console/systems/import` (multipart: a `file`, or the `json` text): creates the system through the
/// API's validation; the page shows the reason when it is refused.
pub async fn import(State(state): State<AppState>, session: Session, mut form: axum::extract::Multipart) -> Response {
    let caller = session.caller();
    let (mut file, mut text) = (Vec::new(), String::new());
    let mut refused = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                match field.bytes().await {
                    Ok(bytes) if bytes.len() > MAX_IMPORT_BYTES => {
                        refused = Some(format!("The document is larger than {} KiB.", MAX_IMPORT_BYTES / 1024));
                    }
                    Ok(bytes) if name == "file" => file = bytes.to_vec(),
                    Ok(bytes) if name == "json" => text = String::from_utf8_lossy(&bytes).into_owned(),
                    Ok(_) => {}
                    Err(e) => refused = Some(format!("The form could not be read: {e}")),
                }
            }
            Ok(None) => break,
            Err(e) => {
                refused = Some(format!("The form could not be read: {e}"));
                break;
            }
        }
    }
    if !file.is_empty() {
        match String::from_utf8(file) {
            Ok(t) => text = t,
            Err(_) => refused = Some("The file is not UTF-8 text.".into()),
        }
    }
    let result = match refused {
        Some(m) => Err(ApiError::bad_request(m)),
        None if text.trim().is_empty() => Err(ApiError::bad_request(
            "Choose a file or paste a system's JSON document.",
        )),
        None => match serde_json::from_str::<SystemInput>(&text) {
            Ok(input) => ops::create_system(&state, &caller, input).await,
            Err(e) => Err(ApiError::bad_request(format!(
                "The document is not a system: {e} (line {}, column {}).",
                e.line(),
                e.column()
            ))),
        },
    };
    match result {
        Ok(system) => redirect_with(
            &session,
            &format!("/console/systems/{}", system.id),
            true,
            &format!("System {} imported.", system.spec.name),
        ),
        Err(e) => {
            let status = e.status;
            render_with(
                status,
                &ImportPage {
                    frame: Frame::new(&session, "systems", None),
                    text,
                    error: Some(e.message),
                },
            )
        }
    }
}
