//! SAP Jam Collaboration (and SAP Build Work Zone, advanced edition) SCIM simulator.
//!
//! * OAuth client credentials at `POST /api/v1/auth/token` (the "SCIM API Client" key/secret,
//!   in a Basic header or as `client_id`/`client_secret` form fields; documented in
//!   CIS:sap-jam-collaboration-c5af5f0 and the Work Zone SCIM blog). Every SCIM call needs the
//!   bearer token (401 with a SCIM error otherwise).
//! * SCIM 2.0 users at `/api/v1/scim/Users`. **The resource base path is not documented in the
//!   sources we have** (ips-behaviour §3.2 marks it UNVERIFIED); `/api/v1/scim` sits next to the
//!   documented token endpoint `/api/v1/auth/token` and is the most likely, so the connector's
//!   `URL` is the host and the simulator serves there. Groups are served at
//!   `/api/v1/scim/Groups` (IPS ignores Jam groups by default).
//! * Create (201, `Location`, `ETag`), get, list (`startIndex`/`count`, default and maximum
//!   100, `filter` with `eq` on userName/emails/externalId/id joined by `and`/`or`), PUT (full
//!   replace), PATCH (RFC 7644 PatchOp), DELETE (204); `active=false` deactivates and the user
//!   stays readable. 409 `uniqueness` on a duplicate userName (case-insensitive).
//! * The documented limits, 200 requests a minute and 13 000 an hour (configurable, off by
//!   default): above them 429 with `Retry-After` (seconds until the window has room).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use provisio_scim::LIST_RESPONSE as LIST_SCHEMA;
use serde_json::{Map, Value, json};

use super::common::auth::{TokenError, Tokens, client_auth};
use super::common::filter::{self, Dialect, Eval, Op, get_ci};
use super::common::http::{self as h, Params, scim_error};
use super::common::paging;
use super::common::patch::{self, Rules};
use super::common::rate::{Limit, RateLimiter};
use super::common::seed;
use super::common::server::{self, Gate, Running};
use super::common::stats::Stats;
use super::common::store::Table;
use super::common::time::{format_millis, now_millis};

const CT: &str = "application/scim+json;charset=UTF-8";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Path prefix of the SCIM resources.
pub const SCIM_PREFIX: &str = "/api/v1/scim";
/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/api/v1/auth/token";
/// Documented limit: requests per minute.
pub const DOCUMENTED_LIMIT_PER_MINUTE: u32 = 200;
/// Documented limit: requests per hour.
pub const DOCUMENTED_LIMIT_PER_HOUR: u32 = 13_000;

/// How to start a Jam simulator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Users to seed.
    pub users: usize,
    /// Groups to seed, with members.
    pub groups: usize,
    /// SCIM requests a minute before 429; `None` = unlimited (Jam documents 200).
    pub rate_limit_per_minute: Option<u32>,
    /// SCIM requests an hour before 429; `None` = unlimited (Jam documents 13 000).
    pub rate_limit_per_hour: Option<u32>,
    /// The OAuth client key.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
    /// Token lifetime.
    pub token_validity: Duration,
    /// Seed of the generated data.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: 0,
            groups: 0,
            rate_limit_per_minute: None,
            rate_limit_per_hour: None,
            client_id: "jam-scim-client".into(),
            client_secret: "jam-secret".into(),
            token_validity: Duration::from_secs(3600),
            seed: 1,
        }
    }
}

impl Options {
    /// These options with Jam's documented limits (200/min, 13 000/h) switched on.
    pub fn with_documented_limits(mut self) -> Options {
        self.rate_limit_per_minute = Some(DOCUMENTED_LIMIT_PER_MINUTE);
        self.rate_limit_per_hour = Some(DOCUMENTED_LIMIT_PER_HOUR);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    fn unique_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
}

#[derive(Clone, Debug)]
struct Resource {
    id: String,
    data: Map<String, Value>,
    version: u64,
    created: i64,
    last_modified: i64,
}

#[derive(Debug, Default)]
struct Store {
    users: Table<Resource>,
    groups: Table<Resource>,
    /// (kind, lower-case unique attribute) → id
    names: HashMap<(u8, String), String>,
}

impl Store {
    fn table(&self, k: Kind) -> &Table<Resource> {
        match k {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }
    fn table_mut(&mut self, k: Kind) -> &mut Table<Resource> {
        match k {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }
}

struct Inner {
    options: Options,
    store: Mutex<Store>,
    tokens: Tokens,
    stats: Arc<Stats>,
    base_url: Mutex<String>,
}

/// The simulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct State(Arc<Inner>);

type Answer = Result<Response, Response>;

fn err(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    scim_error(status, scim_type, detail, CT)
}

fn bad(detail: &str) -> Response {
    err(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
}

fn not_found(k: Kind, id: &str) -> Response {
    err(StatusCode::NOT_FOUND, None, &format!("{} {id} not found", k.name()))
}

fn unique_value(k: Kind, data: &Map<String, Value>) -> Option<String> {
    data.iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(k.unique_attr()))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_lowercase)
}

fn render(k: Kind, r: &Resource, base: &str) -> Value {
    let mut m = Map::new();
    let mut schemas = vec![json!(k.schema())];
    for key in r.data.keys() {
        if key.to_ascii_lowercase().starts_with("urn:") {
            schemas.push(json!(key));
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert("id".into(), json!(r.id));
    for (key, v) in &r.data {
        m.insert(key.clone(), v.clone());
    }
    if k == Kind::User && !m.contains_key("active") {
        m.insert("active".into(), json!(true));
    }
    m.insert(
        "meta".into(),
        json!({"resourceType": k.name(), "created": format_millis(r.created), "lastModified": format_millis(r.last_modified),
               "location": format!("{base}{SCIM_PREFIX}/{}/{}", k.path(), r.id), "version": format!("W/\"{}\"", r.version)}),
    );
    Value::Object(m)
}

/// Validates a body: object, required attributes, member references; strips read-only ones.
fn clean(s: &Store, k: Kind, body: &Value) -> Result<Map<String, Value>, Response> {
    let Value::Object(map) = body else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "The request body must be a JSON object",
        ));
    };
    let mut data: Map<String, Value> = map
        .iter()
        .filter(|(key, _)| {
            !["id", "meta", "schemas", "groups", "password"].contains(&key.to_ascii_lowercase().as_str())
        })
        .map(|(key, v)| (key.clone(), v.clone()))
        .collect();
    if unique_value(k, &data).is_none_or(|v| v.trim().is_empty()) {
        return Err(bad(&format!("The attribute '{}' is required", k.unique_attr())));
    }
    match k {
        Kind::User => {
            let emails_ok = get_ci(body, "emails")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty() && a.iter().all(|e| get_ci(e, "value").is_some_and(Value::is_string)));
            if !emails_ok {
                return Err(bad("The attribute 'emails' is required"));
            }
            if let Some(a) = data.get("active")
                && !a.is_boolean()
            {
                return Err(bad("'active' must be a boolean"));
            }
        }
        Kind::Group => {
            if let Some(members) = data.get_mut("members") {
                let Some(arr) = members.as_array_mut() else {
                    return Err(bad("'members' must be an array"));
                };
                let mut seen = Vec::new();
                let mut out = Vec::new();
                for m in arr.iter() {
                    let Some(v) = get_ci(m, "value").and_then(Value::as_str) else {
                        return Err(bad("A member needs a 'value'"));
                    };
                    let kind = if s.users.contains(v) {
                        "User"
                    } else if s.groups.contains(v) {
                        "Group"
                    } else {
                        return Err(bad(&format!("Member '{v}' does not exist")));
                    };
                    if !seen.contains(&v.to_string()) {
                        seen.push(v.to_string());
                        out.push(json!({"value": v, "type": kind}));
                    }
                }
                *arr = out;
            }
        }
    }
    Ok(data)
}

fn check_unique(s: &Store, k: Kind, data: &Map<String, Value>, self_id: Option<&str>) -> Result<(), Response> {
    if let Some(v) = unique_value(k, data)
        && let Some(other) = s.names.get(&(k as u8, v.clone()))
        && Some(other.as_str()) != self_id
    {
        return Err(err(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            &format!("{} with {} '{v}' already exists", k.name(), k.unique_attr()),
        ));
    }
    Ok(())
}

fn create(s: &mut Store, k: Kind, body: &Value, base: &str) -> Result<Value, Response> {
    let data = clean(s, k, body)?;
    check_unique(s, k, &data, None)?;
    let now = now_millis();
    let r = Resource {
        id: uuid::Uuid::new_v4().to_string(),
        data,
        version: 1,
        created: now,
        last_modified: now,
    };
    if let Some(v) = unique_value(k, &r.data) {
        s.names.insert((k as u8, v), r.id.clone());
    }
    let out = render(k, &r, base);
    s.table_mut(k).insert(r.id.clone(), r);
    Ok(out)
}

fn replace(s: &mut Store, k: Kind, id: &str, data: Map<String, Value>) -> Result<Value, Response> {
    check_unique(s, k, &data, Some(id))?;
    let current = s.table(k).get(id).cloned().ok_or_else(|| not_found(k, id))?;
    if let Some(v) = unique_value(k, &current.data) {
        s.names.remove(&(k as u8, v));
    }
    if let Some(v) = unique_value(k, &data) {
        s.names.insert((k as u8, v), id.to_string());
    }
    let r = s.table_mut(k).get_mut(id).ok_or_else(|| not_found(k, id))?;
    r.data = data;
    r.version += 1;
    r.last_modified = now_millis();
    Ok(render(k, &r.clone(), ""))
}

fn remove(s: &mut Store, k: Kind, id: &str) -> bool {
    let Some(r) = s.table_mut(k).remove(id) else {
        return false;
    };
    if let Some(v) = unique_value(k, &r.data) {
        s.names.remove(&(k as u8, v));
    }
    for g in s.groups.iter_mut() {
        if let Some(Value::Array(members)) = g.data.get_mut("members") {
            members.retain(|m| get_ci(m, "value").and_then(Value::as_str) != Some(id));
        }
    }
    true
}

impl State {
    /// Builds the state and seeds it.
    pub fn new(options: Options) -> State {
        let st = State(Arc::new(Inner {
            store: Mutex::new(Store::default()),
            tokens: Tokens::new(),
            stats: Arc::new(Stats::default()),
            base_url: Mutex::new(String::new()),
            options,
        }));
        st.seed();
        st
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn base(&self) -> String {
        self.0.base_url.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        &self.0.options
    }

    /// Request counters and log.
    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    fn seed(&self) {
        let o = self.0.options.clone();
        let mut rng = seed::Rng::new(o.seed);
        let mut ids = Vec::new();
        for i in 0..o.users {
            let p = seed::person(&mut rng, i);
            let emails: Vec<Value> = p
                .emails
                .iter()
                .map(|(v, primary, t)| json!({"value": v, "primary": primary, "type": t}))
                .collect();
            let body = json!({"userName": p.user_name, "name": {"givenName": p.given, "familyName": p.family},
                "displayName": format!("{} {}", p.given, p.family), "emails": emails, "active": true,
                ENTERPRISE_EXT: {"employeeNumber": p.employee_number, "department": p.department}});
            if let Ok(u) = self.insert_user(body) {
                ids.push(u["id"].as_str().unwrap_or_default().to_string());
            }
        }
        for (j, members) in seed::memberships(&mut rng, o.users, o.groups).into_iter().enumerate() {
            let members: Vec<Value> = members
                .into_iter()
                .filter_map(|u| ids.get(u))
                .map(|id| json!({"value": id}))
                .collect();
            let mut s = self.store();
            let _ = create(
                &mut s,
                Kind::Group,
                &json!({"displayName": seed::group_name(j), "members": members}),
                "",
            );
        }
    }

    /// All users in creation order.
    pub fn users(&self) -> Vec<Value> {
        let s = self.store();
        let base = self.base();
        s.users.iter().map(|r| render(Kind::User, r, &base)).collect()
    }

    /// Number of users (active or not).
    pub fn user_count(&self) -> usize {
        self.store().users.len()
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<Value> {
        self.store().users.get(id).map(|r| render(Kind::User, r, &self.base()))
    }

    /// A user by userName (case-insensitive).
    pub fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let s = self.store();
        let id = s.names.get(&(Kind::User as u8, user_name.to_lowercase()))?;
        s.users.get(id).map(|r| render(Kind::User, r, &self.base()))
    }

    /// Creates a user as `POST /api/v1/scim/Users` would.
    pub fn insert_user(&self, body: Value) -> Result<Value, String> {
        let mut s = self.store();
        create(&mut s, Kind::User, &body, &self.base()).map_err(|r| h::error_text(&r))
    }

    /// Deletes a user (and its group memberships).
    pub fn remove_user(&self, id: &str) -> bool {
        remove(&mut self.store(), Kind::User, id)
    }

    /// All groups.
    pub fn groups(&self) -> Vec<Value> {
        let s = self.store();
        let base = self.base();
        s.groups.iter().map(|r| render(Kind::Group, r, &base)).collect()
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.store().groups.len()
    }

    /// Invalidates every issued token.
    pub fn revoke_tokens(&self) {
        self.0.tokens.revoke_all();
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let detail = match h::bearer_token(headers).map(|t| self.0.tokens.check(&t)) {
            Some(Ok(_)) => return Ok(()),
            None => "Authentication required: send an OAuth bearer token",
            Some(Err(TokenError::Expired)) => "The access token expired",
            Some(Err(TokenError::Unknown)) => "Invalid access token",
        };
        let resp = err(StatusCode::UNAUTHORIZED, None, detail);
        Err(h::with_header(
            resp,
            "www-authenticate",
            "Bearer realm=\"SAP Jam\", error=\"invalid_token\"",
        ))
    }
}

// ----- handlers -------------------------------------------------------------------------------

type S = AxState<State>;

async fn token(AxState(st): S, headers: HeaderMap, body: Bytes) -> Answer {
    let form = Params::parse(Some(&String::from_utf8_lossy(&body)));
    let o = &st.0.options;
    let ok =
        client_auth(&headers, &form).is_some_and(|c| c.client_id == o.client_id && c.client_secret == o.client_secret);
    if !ok {
        return Err(h::json(
            StatusCode::UNAUTHORIZED,
            "application/json",
            &json!({"error": "invalid_client", "error_description": "Bad client credentials"}),
        ));
    }
    if form.get("grant_type") != Some("client_credentials") {
        return Err(h::json(
            StatusCode::BAD_REQUEST,
            "application/json",
            &json!({"error": "unsupported_grant_type", "error_description": "Only client_credentials is supported"}),
        ));
    }
    let (token, _) =
        st.0.tokens
            .issue(&o.client_id, &[], o.token_validity, &st.base(), "jam");
    Ok(h::json(
        StatusCode::OK,
        "application/json",
        &json!({"access_token": token, "token_type": "bearer", "expires_in": o.token_validity.as_secs()}),
    ))
}

const JAM_DIALECT: Dialect = Dialect {
    ops: &[Op::Eq],
    present: false,
    and: true,
    or: true,
    not: false,
    parens: false,
    value_paths: false,
};
const FILTERABLE: &[&str] = &[
    "username",
    "emails",
    "emails.value",
    "externalid",
    "id",
    "displayname",
    "active",
];

fn filter_attrs_ok(f: &filter::Filter) -> bool {
    use filter::Filter as F;
    match f {
        F::And(a, b) | F::Or(a, b) => filter_attrs_ok(a) && filter_attrs_ok(b),
        F::Compare(p, _, _) => FILTERABLE.contains(&p.dotted_lower().as_str()),
        _ => false,
    }
}

async fn list(st: State, k: Kind, headers: HeaderMap, q: Option<String>) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let f = match params.get("filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(text) => Some(
            filter::parse(text, &JAM_DIALECT)
                .ok()
                .filter(filter_attrs_ok)
                .ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        Some("invalidFilter"),
                        &format!("Unsupported filter '{text}'"),
                    )
                })?,
        ),
    };
    let start = paging::start_index(params.int("startIndex").map_err(|e| bad(&e))?);
    let count = paging::count(params.int("count").map_err(|e| bad(&e))?, 100, 100);
    let base = st.base();
    let s = st.store();
    let eval = Eval { case_exact: &["id"] };
    let (page, total): (Vec<Value>, usize) = match &f {
        // Without a filter only the page is rendered.
        None => {
            let total = s.table(k).len();
            let range = paging::window(total, start, count);
            let page = s
                .table(k)
                .iter_from(range.start)
                .take(range.len())
                .map(|r| render(k, r, &base))
                .collect();
            (page, total)
        }
        Some(f) => {
            let hits: Vec<Value> = s
                .table(k)
                .iter()
                .map(|r| render(k, r, &base))
                .filter(|v| f.matches(v, &eval))
                .collect();
            let total = hits.len();
            let range = paging::window(total, start, count);
            (hits.into_iter().skip(range.start).take(range.len()).collect(), total)
        }
    };
    Ok(h::json(
        StatusCode::OK,
        CT,
        &json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start, "itemsPerPage": page.len(), "Resources": page}),
    ))
}

fn with_etag(v: Value, status: StatusCode) -> Response {
    let etag = v
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let loc = v
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resp = h::with_header(h::json(status, CT, &v), "etag", &etag);
    if status == StatusCode::CREATED {
        h::with_header(resp, "location", &loc)
    } else {
        resp
    }
}

fn body_json(body: &Bytes) -> Result<Value, Response> {
    h::parse_json(body).map_err(|e| err(StatusCode::BAD_REQUEST, Some("invalidSyntax"), &e))
}

fn check_if_match(headers: &HeaderMap, version: u64) -> Result<(), Response> {
    match h::header_str(headers, "if-match").map(str::trim) {
        None | Some("*") => Ok(()),
        Some(v) if v.trim_start_matches("W/").trim_matches('"') == version.to_string() => Ok(()),
        Some(_) => Err(err(
            StatusCode::PRECONDITION_FAILED,
            None,
            "If-Match does not match the current version",
        )),
    }
}

async fn post_h(st: State, k: Kind, headers: HeaderMap, body: Bytes) -> Answer {
    st.authorize(&headers)?;
    let body = body_json(&body)?;
    let v = create(&mut st.store(), k, &body, &st.base())?;
    Ok(with_etag(v, StatusCode::CREATED))
}

async fn get_h(st: State, k: Kind, headers: HeaderMap, id: String, q: Option<String>) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let s = st.store();
    let r = s.table(k).get(&id).ok_or_else(|| not_found(k, &id))?;
    let v = render(k, r, &st.base());
    let etag = format!("W/\"{}\"", r.version);
    let v = h::project_scim(v, params.get("attributes"), params.get("excludedAttributes"));
    Ok(h::with_header(h::json(StatusCode::OK, CT, &v), "etag", &etag))
}

async fn put_h(st: State, k: Kind, headers: HeaderMap, id: String, body: Bytes) -> Answer {
    st.authorize(&headers)?;
    let body = body_json(&body)?;
    let mut s = st.store();
    let version = s
        .table(k)
        .get(&id)
        .map(|r| r.version)
        .ok_or_else(|| not_found(k, &id))?;
    check_if_match(&headers, version)?;
    let data = clean(&s, k, &body)?;
    replace(&mut s, k, &id, data)?;
    let r = s.table(k).get(&id).ok_or_else(|| not_found(k, &id))?;
    Ok(with_etag(render(k, r, &st.base()), StatusCode::OK))
}

async fn patch_h(st: State, k: Kind, headers: HeaderMap, id: String, body: Bytes) -> Answer {
    st.authorize(&headers)?;
    let body = body_json(&body)?;
    let ops = patch::parse_request(&body).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let mut s = st.store();
    let current = s.table(k).get(&id).cloned().ok_or_else(|| not_found(k, &id))?;
    check_if_match(&headers, current.version)?;
    let mut doc = Value::Object(current.data.clone());
    let rules = Rules {
        core_schema: k.schema(),
        read_only: &["id", "meta", "groups"],
    };
    patch::apply(&mut doc, &ops, &rules).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let data = clean(&s, k, &doc)?;
    replace(&mut s, k, &id, data)?;
    let r = s.table(k).get(&id).ok_or_else(|| not_found(k, &id))?;
    Ok(with_etag(render(k, r, &st.base()), StatusCode::OK))
}

async fn delete_h(st: State, k: Kind, headers: HeaderMap, id: String) -> Answer {
    st.authorize(&headers)?;
    if remove(&mut st.store(), k, &id) {
        Ok(h::empty(StatusCode::NO_CONTENT))
    } else {
        Err(not_found(k, &id))
    }
}

async fn fallback() -> Response {
    err(StatusCode::NOT_FOUND, None, "Not found")
}

fn limited(path: &str) -> bool {
    path.starts_with(SCIM_PREFIX)
}

fn too_many(retry_after: u64) -> Response {
    let resp = err(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "Rate limit exceeded (200 requests per minute, 13000 per hour)",
    );
    h::with_header(resp, "retry-after", &retry_after.to_string())
}

/// The Jam router over `state`.
pub fn router(state: State) -> Router {
    let o = &state.0.options;
    let mut windows = Vec::new();
    if let Some(m) = o.rate_limit_per_minute {
        windows.push((m, Duration::from_secs(60)));
    }
    if let Some(hr) = o.rate_limit_per_hour {
        windows.push((hr, Duration::from_secs(3600)));
    }
    let limiter = (!windows.is_empty()).then(|| RateLimiter::new(Limit::Windows(windows)));
    let gate = Arc::new(Gate {
        stats: state.0.stats.clone(),
        limiter,
        limited,
        reject: too_many,
    });
    let mut scim = Router::new();
    for k in [Kind::User, Kind::Group] {
        scim = scim
            .route(
                &format!("/{}", k.path()),
                get(move |AxState(st): S, hd: HeaderMap, RawQuery(q): RawQuery| list(st, k, hd, q))
                    .post(move |AxState(st): S, hd: HeaderMap, b: Bytes| post_h(st, k, hd, b)),
            )
            .route(
                &format!("/{}/{{id}}", k.path()),
                get(
                    move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, RawQuery(q): RawQuery| {
                        get_h(st, k, hd, id, q)
                    },
                )
                .put(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| put_h(st, k, hd, id, b))
                .patch(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| patch_h(st, k, hd, id, b))
                .delete(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>| delete_h(st, k, hd, id)),
            );
    }
    Router::new()
        .nest(SCIM_PREFIX, scim)
        .route(TOKEN_PATH, post(token))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(gate, server::gate))
        .with_state(state)
}

/// A running Jam simulator. Dereferences to its [`State`]; stops when dropped.
pub struct Simulator {
    /// The Jam host URL (connector property `URL`); SCIM lives under `{base_url}/api/v1/scim`.
    pub base_url: String,
    /// `{base_url}/api/v1/auth/token` (`OAuth2TokenServiceURL`).
    pub token_url: Option<String>,
    /// The bound address.
    pub addr: SocketAddr,
    state: State,
    running: Running,
}

impl Deref for Simulator {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl Simulator {
    /// The shared state (also reachable through `Deref`).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// `{base_url}/api/v1/scim`, where `Users` and `Groups` live.
    pub fn scim_url(&self) -> String {
        format!("{}{SCIM_PREFIX}", self.base_url)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}

/// Starts a Jam simulator on `127.0.0.1:0`.
pub async fn spawn(options: Options) -> std::io::Result<Simulator> {
    spawn_on(options, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a Jam simulator on `listen`.
pub async fn spawn_on(options: Options, listen: SocketAddr) -> std::io::Result<Simulator> {
    let state = State::new(options);
    let running = server::serve(router(state.clone()), listen).await?;
    let base_url = format!("http://{}", running.addr);
    *state.0.base_url.lock().unwrap_or_else(|p| p.into_inner()) = base_url.clone();
    Ok(Simulator {
        token_url: Some(format!("{base_url}{TOKEN_PATH}")),
        base_url,
        addr: running.addr,
        state,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Client, Method as M};

    async fn setup(o: Options) -> (Simulator, Client, String) {
        let sim = spawn(o).await.unwrap();
        let c = Client::new();
        let r = c
            .post(sim.token_url.clone().unwrap())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "jam-scim-client"),
                ("client_secret", "jam-secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tok = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        (sim, c, tok)
    }

    async fn call(c: &Client, sim: &Simulator, tok: &str, m: M, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = c.request(m, format!("{}{path}", sim.scim_url())).bearer_auth(tok);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let st = r.status().as_u16();
        (
            st,
            serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn token_and_auth() {
        let (sim, c, tok) = setup(Options::default()).await;
        let r = c
            .post(sim.token_url.clone().unwrap())
            .basic_auth("jam-scim-client", Some("bad"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c.get(format!("{}/Users", sim.scim_url())).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "401");
        let (st, _) = call(&c, &sim, "nope", M::GET, "/Users", None).await;
        assert_eq!(st, 401);
        let (st, _) = call(&c, &sim, &tok, M::GET, "/Users", None).await;
        assert_eq!(st, 200);
        sim.revoke_tokens();
        let (st, _) = call(&c, &sim, &tok, M::GET, "/Users", None).await;
        assert_eq!(st, 401);
    }

    #[tokio::test]
    async fn users_crud_paging_filter_deactivate() {
        let (sim, c, tok) = setup(Options {
            users: 150,
            groups: 3,
            ..Options::default()
        })
        .await;
        let (_, b) = call(&c, &sim, &tok, M::GET, "/Users?startIndex=101&count=100", None).await;
        assert_eq!(
            (
                b["totalResults"].as_u64(),
                b["itemsPerPage"].as_u64(),
                b["startIndex"].as_u64()
            ),
            (Some(150), Some(50), Some(101))
        );
        let name = sim.users()[3]["userName"].as_str().unwrap().to_uppercase();
        let f: String = form_urlencoded::byte_serialize(format!("userName eq \"{name}\"").as_bytes()).collect();
        let (_, b) = call(&c, &sim, &tok, M::GET, &format!("/Users?filter={f}"), None).await;
        assert_eq!(b["totalResults"], 1);
        let f: String = form_urlencoded::byte_serialize(b"userName co \"a\"").collect();
        let (st, e) = call(&c, &sim, &tok, M::GET, &format!("/Users?filter={f}"), None).await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidFilter")));
        // Create, duplicate, PATCH active=false, PUT, DELETE.
        let (st, u) = call(&c, &sim, &tok, M::POST, "/Users", Some(json!({"userName": "new.user", "emails": [{"value": "n@x.y", "primary": true}], "name": {"familyName": "N"}}))).await;
        assert_eq!(st, 201);
        let id = u["id"].as_str().unwrap().to_string();
        assert!(
            u["meta"]["location"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/api/v1/scim/Users/{id}"))
        );
        let (st, e) = call(
            &c,
            &sim,
            &tok,
            M::POST,
            "/Users",
            Some(json!({"userName": "NEW.user", "emails": [{"value": "n@x.y"}]})),
        )
        .await;
        assert_eq!((st, e["scimType"].as_str()), (409, Some("uniqueness")));
        let (st, _) = call(
            &c,
            &sim,
            &tok,
            M::POST,
            "/Users",
            Some(json!({"emails": [{"value": "n@x.y"}]})),
        )
        .await;
        assert_eq!(st, 400);
        let patch = json!({"schemas": [patch::PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]});
        let (st, p) = call(&c, &sim, &tok, M::PATCH, &format!("/Users/{id}"), Some(patch)).await;
        assert_eq!((st, p["active"].as_bool()), (200, Some(false)));
        assert_eq!(sim.user(&id).unwrap()["active"], false);
        let (st, e) = call(
            &c,
            &sim,
            &tok,
            M::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": []})),
        )
        .await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidSyntax")));
        let (st, p) = call(
            &c,
            &sim,
            &tok,
            M::PUT,
            &format!("/Users/{id}"),
            Some(json!({"userName": "new.user", "emails": [{"value": "n2@x.y"}]})),
        )
        .await;
        assert_eq!(
            (st, p["emails"][0]["value"].as_str(), p["meta"]["version"].as_str()),
            (200, Some("n2@x.y"), Some("W/\"3\""))
        );
        let r = c
            .put(format!("{}/Users/{id}", sim.scim_url()))
            .bearer_auth(&tok)
            .header("If-Match", "W/\"1\"")
            .json(&json!({"userName": "new.user", "emails": [{"value": "n2@x.y"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let r = c
            .post(format!("{}/Users", sim.scim_url()))
            .bearer_auth(&tok)
            .body("[1,")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let (st, _) = call(&c, &sim, &tok, M::DELETE, &format!("/Users/{id}"), None).await;
        assert_eq!(st, 204);
        let (st, _) = call(&c, &sim, &tok, M::DELETE, &format!("/Users/{id}"), None).await;
        assert_eq!(st, 404);
        assert_eq!(sim.user_count(), 150);
        assert_eq!(sim.group_count(), 3);
    }

    #[tokio::test]
    async fn documented_limits_answer_429() {
        let (sim, c, tok) = setup(Options {
            rate_limit_per_minute: Some(3),
            ..Options::default()
        })
        .await;
        let mut last = None;
        for i in 0..4 {
            let r = c
                .get(format!("{}/Users", sim.scim_url()))
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
            if i < 3 {
                assert_eq!(r.status(), 200);
            } else {
                assert_eq!(r.status(), 429);
                last = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
            }
        }
        assert!(last.is_some_and(|s| (59..=60).contains(&s)));
        assert_eq!(sim.stats().throttled(), 1);
        let o = Options::default().with_documented_limits();
        assert_eq!(
            (o.rate_limit_per_minute, o.rate_limit_per_hour),
            (Some(200), Some(13_000))
        );
    }

    #[tokio::test]
    async fn groups_and_memberships() {
        let (sim, c, tok) = setup(Options {
            users: 4,
            ..Options::default()
        })
        .await;
        let ids: Vec<String> = sim
            .users()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        let (st, g) = call(
            &c,
            &sim,
            &tok,
            M::POST,
            "/Groups",
            Some(json!({"displayName": "Team", "members": [{"value": ids[0]}]})),
        )
        .await;
        assert_eq!(st, 201);
        let gid = g["id"].as_str().unwrap().to_string();
        let ops = json!({"schemas": [patch::PATCH_OP_SCHEMA], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": ids[1]}, {"value": ids[2]}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]});
        let (st, g) = call(&c, &sim, &tok, M::PATCH, &format!("/Groups/{gid}"), Some(ops)).await;
        assert_eq!((st, g["members"].as_array().map(Vec::len)), (200, Some(2)));
        let (st, _) = call(&c, &sim, &tok, M::POST, "/Groups", Some(json!({"displayName": "team"}))).await;
        assert_eq!(st, 409);
        assert!(sim.remove_user(&ids[1]));
        assert_eq!(sim.groups()[0]["members"], json!([{"value": ids[2], "type": "User"}]));
        let err = sim.insert_user(json!({"userName": "x"})).unwrap_err();
        assert!(err.contains("emails"), "{err}");
    }
}
