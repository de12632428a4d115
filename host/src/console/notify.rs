//! Notifications: the subscriptions (a source system or every system, the event kinds, a webhook or e-mail
//! channel), add one, remove one after a confirmation, send a test, and the delivery log filtered by
//! subscription.
//!
//! Every action goes through the admin API's own handlers in [`crate::api::notify`] (called as functions),
//! so the permission (admins only) and every rule on a subscription are the API's, checked once. The page
//! shows what the API answers, which never holds a webhook's secret.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    ConsoleError, ConsoleResult, Frame, Session, page_with_notice, redirect_with, render, render_with, take_notice,
    when,
};
use crate::api::AppState;
use crate::api::error::{ApiError, JsonBody, PathParams, QueryParams};
use crate::api::{notify as api, ops};
use crate::notify::EVENT_KINDS;
use crate::store::systems::Role;

/// Deliveries the log shows (the newest).
const LOG_LIMIT: i64 = 50;

/// A subscription as the API shows it (`api::notify::subscription_view`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct View {
    id: String,
    system_id: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
    channel: String,
    url: Option<String>,
    recipients: Option<Vec<String>>,
    #[serde(default)]
    backlog_minutes: u32,
    #[serde(default)]
    description: String,
    #[serde(default)]
    has_secret: bool,
    #[serde(default)]
    created_at: String,
}

/// An attempt as the API shows it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    number: i64,
    at: String,
    status: String,
    response_code: Option<i64>,
    error: Option<String>,
}

/// A delivery as the API shows it (`api::notify::delivery_view`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    id: String,
    subscription_id: String,
    channel: String,
    kind: String,
    status: String,
    #[serde(default)]
    summary: Value,
    created_at: String,
    next_attempt_at: Option<String>,
    #[serde(default)]
    attempts: Vec<AttemptView>,
}

/// A subscription as the page lists it.
pub struct SubscriptionRow {
    /// Id.
    pub id: String,
    /// The admin's note (may be empty).
    pub description: String,
    /// The system's name, or "every system".
    pub scope: String,
    /// The system's id, for a link (`None`: every system).
    pub system_id: Option<String>,
    /// The event kinds.
    pub kinds: Vec<String>,
    /// `webhook` or `email`.
    pub channel: String,
    /// The URL or the recipients.
    pub target: String,
    /// Whether a webhook secret is set (its value is never shown).
    pub has_secret: bool,
    /// `realtime.backlog`'s threshold, when it wants that kind.
    pub backlog_minutes: Option<u32>,
    /// When it was created.
    pub created_at: String,
}

/// A delivery as the log shows it.
pub struct DeliveryRow {
    /// Id (the idempotency key).
    pub id: String,
    /// The subscription, as the list names it.
    pub subscription: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The event kind (or `test`).
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// The notification's one-line summary.
    pub summary: String,
    /// When it was queued.
    pub created_at: String,
    /// The next attempt, while pending.
    pub next_attempt: String,
    /// Attempts so far.
    pub attempts: usize,
    /// The last attempt: its response code and error.
    pub last: String,
}

/// A subscription in the filter of the log.
pub struct Choice {
    /// Id.
    pub id: String,
    /// How it is named.
    pub label: String,
    /// Whether the log is filtered by it.
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console/notifications.html")]
struct ListPage {
    frame: Frame,
    subscriptions: Vec<SubscriptionRow>,
    choices: Vec<Choice>,
    filtered: bool,
    deliveries: Vec<DeliveryRow>,
    limit: i64,
}

/// The filter of the delivery log.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogFilter {
    subscription: String,
}

/// The API's JSON answer as `T`; a shape it does not have is a bug here, shown as a 500 page.
fn decode<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::internal(format!("unexpected notification answer: {e}")))
}

/// The names of the systems the subscriptions name, by id: those only, not every system (a store may hold
/// a thousand, and the list is rendered often).
async fn system_names(
    state: &AppState,
    session: &Session,
    views: &[View],
) -> Result<HashMap<String, String>, ApiError> {
    let mut names = HashMap::new();
    for id in views.iter().filter_map(|v| v.system_id.as_deref()) {
        if names.contains_key(id) {
            continue;
        }
        match ops::system(state, &session.caller(), id).await {
            Ok(s) => names.insert(s.id, s.spec.name),
            // Removed meanwhile: the page shows the id.
            Err(e) if e.status == StatusCode::NOT_FOUND => names.insert(id.to_string(), id.to_string()),
            Err(e) => return Err(e),
        };
    }
    Ok(names)
}

/// How a subscription is named in the log and the confirmations: its description, else its channel's target.
fn label(v: &View) -> String {
    let target = target_of(v);
    if v.description.trim().is_empty() {
        format!("{} {target}", v.channel)
    } else {
        format!("{} ({} {target})", v.description, v.channel)
    }
}

fn target_of(v: &View) -> String {
    match (&v.url, &v.recipients) {
        (Some(url), _) => url.clone(),
        (None, Some(r)) => r.join(", "),
        (None, None) => String::new(),
    }
}

fn summary_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `GET /console/notifications?subscription=..`: the subscriptions and the delivery log (admins).
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(filter): Query<LogFilter>,
) -> ConsoleResult {
    let axum::Json(all) = api::list_subscriptions(State(state.clone()), session.caller()).await?;
    let views: Vec<View> = decode(all)?;
    let filter_id = Some(filter.subscription.trim().to_string()).filter(|s| !s.is_empty());
    let query = decode(json!({"subscription": filter_id, "limit": LOG_LIMIT}))?;
    let axum::Json(log) = api::list_deliveries(State(state.clone()), session.caller(), QueryParams(query)).await?;
    let log: Vec<DeliveryView> = decode(log)?;
    let names = system_names(&state, &session, &views).await?;
    let labels: HashMap<&str, String> = views.iter().map(|v| (v.id.as_str(), label(v))).collect();
    let deliveries = log
        .into_iter()
        .map(|d| {
            let last = d.attempts.last().map_or_else(String::new, |a| {
                let code = a.response_code.map(|c| format!("{c} ")).unwrap_or_default();
                let error = a.error.as_deref().unwrap_or("");
                format!("#{} {} {}: {code}{error}", a.number, when(&a.at), a.status)
            });
            DeliveryRow {
                subscription: labels
                    .get(d.subscription_id.as_str())
                    .cloned()
                    .unwrap_or_else(|| d.subscription_id.clone()),
                id: d.id,
                channel: d.channel,
                kind: d.kind,
                status: d.status,
                summary: summary_text(&d.summary),
                created_at: when(&d.created_at),
                next_attempt: d.next_attempt_at.as_deref().map(when).unwrap_or_default(),
                attempts: d.attempts.len(),
                last,
            }
        })
        .collect();
    let choices = views
        .iter()
        .map(|v| Choice {
            id: v.id.clone(),
            label: labels.get(v.id.as_str()).cloned().unwrap_or_default(),
            selected: filter_id.as_deref() == Some(v.id.as_str()),
        })
        .collect();
    let subscriptions = views
        .into_iter()
        .map(|v| SubscriptionRow {
            scope: match &v.system_id {
                Some(id) => names.get(id).cloned().unwrap_or_else(|| id.clone()),
                None => "every system".into(),
            },
            target: target_of(&v),
            backlog_minutes: v
                .kinds
                .iter()
                .any(|k| k == "realtime.backlog")
                .then_some(v.backlog_minutes),
            id: v.id,
            description: v.description,
            system_id: v.system_id,
            kinds: v.kinds,
            channel: v.channel,
            has_secret: v.has_secret,
            created_at: when(&v.created_at),
        })
        .collect();
    let page = ListPage {
        frame: Frame::new(&session, "notifications", take_notice(&headers)),
        subscriptions,
        choices,
        filtered: filter_id.is_some(),
        deliveries,
        limit: LOG_LIMIT,
    };
    Ok(page_with_notice(&headers, &session, render(&page)))
}

/// An event kind the form offers.
pub struct KindChoice {
    /// `job.failed`, …
    pub name: &'static str,
    /// What it tells.
    pub doc: &'static str,
    /// Whether the form has it ticked.
    pub checked: bool,
}

fn kind_doc(kind: &str) -> &'static str {
    match kind {
        "job.failed" => "a job failed",
        "job.finished_with_errors" => "a job finished with errors",
        "job.recovered" => "a source's job succeeded again after a failure (back to normal)",
        "deletes.held" => "a threshold held deletes back",
        "target.quarantined" => "a target was quarantined",
        "plugin.trapping" => "a plugin version traps repeatedly",
        "realtime.backlog" => "the oldest pending real-time event is older than the backlog minutes",
        _ => "",
    }
}

/// A system the form offers.
pub struct SystemChoice {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether the form has it selected.
    pub selected: bool,
}

/// What the add form was filled with (never the secret: a refused form asks for it again).
#[derive(Debug, Default)]
pub struct Filled {
    system_id: String,
    kinds: Vec<String>,
    channel: String,
    url: String,
    secret: String,
    recipients: String,
    backlog_minutes: String,
    description: String,
}

impl Filled {
    fn parse(body: &[u8]) -> Filled {
        let mut f = Filled::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = v.into_owned();
            match k.as_ref() {
                "system_id" => f.system_id = v,
                "kind" => f.kinds.push(v),
                "channel" => f.channel = v,
                "url" => f.url = v,
                "secret" => f.secret = v,
                "recipients" => f.recipients = v,
                "backlog_minutes" => f.backlog_minutes = v,
                "description" => f.description = v,
                _ => {}
            }
        }
        f
    }

    /// The API's JSON body of this form: only the chosen channel's fields (the form shows both); empty
    /// optional fields are left out so that the API's defaults apply. Every check is the API's.
    fn body(&self) -> Result<Value, ApiError> {
        let mut body = Map::new();
        let system = self.system_id.trim();
        if !system.is_empty() {
            body.insert("systemId".into(), json!(system));
        }
        body.insert("kinds".into(), json!(self.kinds));
        body.insert("channel".into(), json!(self.channel));
        match self.channel.as_str() {
            "webhook" => {
                if !self.url.trim().is_empty() {
                    body.insert("url".into(), json!(self.url.trim()));
                }
                if !self.secret.is_empty() {
                    body.insert("secret".into(), json!(self.secret));
                }
            }
            "email" => {
                // One address a line or separated by commas.
                let recipients: Vec<&str> = self
                    .recipients
                    .split(['\n', ','])
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .collect();
                body.insert("recipients".into(), json!(recipients));
            }
            _ => {}
        }
        let minutes = self.backlog_minutes.trim();
        if !minutes.is_empty() {
            let n: u32 = minutes
                .parse()
                .map_err(|_| ApiError::bad_request(format!("backlog minutes {minutes:?} is not a whole number")))?;
            body.insert("backlogMinutes".into(), json!(n));
        }
        if !self.description.trim().is_empty() {
            body.insert("description".into(), json!(self.description.trim()));
        }
        Ok(Value::Object(body))
    }
}

#[derive(Template)]
#[template(path = "console/notification_form.html")]
struct FormPage {
    frame: Frame,
    error: Option<String>,
    sources: Vec<SystemChoice>,
    targets: Vec<SystemChoice>,
    kinds: Vec<KindChoice>,
    filled: Filled,
    default_backlog: u32,
    min_secret: usize,
}

async fn form_page(state: &AppState, session: &Session, filled: Filled, error: Option<String>) -> ConsoleResult {
    // The list answers 403 to a caller who may not manage notifications: the form says so, too.
    let _ = api::list_subscriptions(State(state.clone()), session.caller()).await?;
    let systems = ops::systems(state, &session.caller()).await?;
    let choice = |s: &crate::store::systems::System| SystemChoice {
        id: s.id.clone(),
        name: s.spec.name.clone(),
        selected: s.id == filled.system_id,
    };
    let sources = systems
        .iter()
        .filter(|s| s.spec.role == Role::Source)
        .map(choice)
        .collect();
    let targets = systems
        .iter()
        .filter(|s| s.spec.role == Role::Target)
        .map(choice)
        .collect();
    let kinds = EVENT_KINDS
        .iter()
        .map(|k| KindChoice {
            name: k,
            doc: kind_doc(k),
            checked: filled.kinds.iter().any(|f| f == k),
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = FormPage {
        frame: Frame::new(session, "notifications", None),
        error,
        sources,
        targets,
        kinds,
        filled: Filled {
            secret: String::new(),
            ..filled
        },
        default_backlog: api::DEFAULT_BACKLOG_MINUTES,
        min_secret: api::MIN_SECRET_LEN,
    };
    Ok(render_with(status, &page))
}

/// `GET /console/notifications/new`: the add form.
pub async fn new_form(State(state): State<AppState>, session: Session) -> ConsoleResult {
    let filled = Filled {
        channel: "webhook".into(),
        ..Filled::default()
    };
    form_page(&state, &session, filled, None).await
}

#[derive(Template)]
#[template(path = "console/notification_created.html")]
struct CreatedPage {
    frame: Frame,
    label: String,
    secret: Option<String>,
}

/// `POST /console/notifications`: adds a subscription through the API's create. A refused form comes back
/// with the API's message; a webhook created without a secret shows its generated secret once, on the answer
/// itself (never in a cookie or a redirect).
pub async fn create(State(state): State<AppState>, session: Session, body: axum::body::Bytes) -> Response {
    let filled = Filled::parse(&body);
    let created = async {
        // The form's fields are all text or lists of text: only a bug here makes a body the API cannot read.
        let body = serde_json::from_value(filled.body()?)
            .map_err(|e| ApiError::bad_request(format!("the form cannot be read: {e}")))?;
        let answer = api::create_subscription(State(state.clone()), session.caller(), JsonBody(body)).await?;
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .map_err(|e| ApiError::internal(format!("cannot read the created subscription: {e}")))?;
        let view: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("unexpected notification answer: {e}")))?;
        let secret = view.get("secret").and_then(Value::as_str).map(String::from);
        Ok::<_, ApiError>((decode::<View>(view)?, secret))
    }
    .await;
    match created {
        Ok((view, None)) => redirect_with(
            &session,
            "/console/notifications",
            true,
            &format!("Subscription {} added.", label(&view)),
        ),
        Ok((view, Some(secret))) => render(&CreatedPage {
            frame: Frame::new(&session, "notifications", None),
            label: label(&view),
            secret: Some(secret),
        }),
        // Refused input comes back in the form; a refused caller or a failing store as a page.
        Err(e) if e.status == StatusCode::BAD_REQUEST => form_page(&state, &session, filled, Some(e.message))
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => ConsoleError(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/notification_delete.html")]
struct DeletePage {
    frame: Frame,
    id: String,
    label: String,
}

/// `GET /console/notifications/{id}/delete`: the confirmation.
pub async fn confirm_delete(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ConsoleResult {
    let axum::Json(view) = api::get_subscription(State(state), session.caller(), PathParams(id)).await?;
    let view: View = decode(view)?;
    Ok(render(&DeletePage {
        frame: Frame::new(&session, "notifications", None),
        label: label(&view),
        id: view.id,
    }))
}

/// `POST /console/notifications/{id}/delete`: removes it and its deliveries.
pub async fn delete(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    match api::delete_subscription(State(state), session.caller(), PathParams(id)).await {
        Ok(_) => redirect_with(
            &session,
            "/console/notifications",
            true,
            "Subscription removed, with its delivery log.",
        ),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            redirect_with(&session, "/console/notifications", false, &e.message)
        }
        Err(e) => ConsoleError(e).into_response(),
    }
}

/// `POST /console/notifications/{id}/test`: sends a test notification now (one attempt) and shows its outcome
/// above the subscription's delivery log.
pub async fn test(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    let back = format!(
        "/console/notifications?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("subscription", &id)
            .finish()
    );
    let delivery = match api::test_subscription(State(state), session.caller(), PathParams(id)).await {
        Ok(axum::Json(d)) => decode::<DeliveryView>(d),
        Err(e) => Err(e),
    };
    match delivery {
        Ok(d) => {
            let attempt = d.attempts.last();
            let code = attempt
                .and_then(|a| a.response_code)
                .map(|c| format!(" (answer {c})"))
                .unwrap_or_default();
            if d.status == "delivered" {
                redirect_with(&session, &back, true, &format!("Test notification delivered{code}."))
            } else {
                let error = attempt.and_then(|a| a.error.clone()).unwrap_or_default();
                redirect_with(
                    &session,
                    &back,
                    false,
                    &format!("Test notification {}{code}: {error}", d.status),
                )
            }
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            redirect_with(&session, "/console/notifications", false, &e.message)
        }
        Err(e) => ConsoleError(e).into_response(),
    }
}
