//! Cloud Foundry UAA / SAP BTP XSUAA SCIM simulator.
//!
//! Reproduces the UAA SCIM API as `ScimUserEndpoints`/`ScimGroupEndpoints` implement it and as
//! `shared/reference/scim-conformance.md` ("Cloud Foundry UAA") lists its quirks:
//!
//! * `POST /oauth/token` (client credentials from a Basic header or `client_id`/`client_secret`
//!   form fields, optional `scope` subset) answers
//!   `{"access_token","token_type":"bearer","expires_in":43199,"scope","jti"}`; bad credentials
//!   → 401 `{"error":"unauthorized","error_description":"Bad credentials"}`.
//! * Every SCIM call needs a valid bearer token (401 `unauthorized` / `invalid_token`), the
//!   right scope (403 `insufficient_scope`); `X-Identity-Zone-Id` must name the simulator's zone.
//! * SCIM 1.0 wire format: `schemas:["urn:scim:schemas:core:1.0"]`, integer `meta.version`, no
//!   `meta.location`/`resourceType`, `ETag: "N"`, `application/json`, lower-case `resources`.
//!   `itemsPerPage` echoes the requested (capped) `count`, not the page size, as UAA's
//!   `SearchResults` does.
//! * Filters (`eq co sw pr gt ge lt le and or`, parentheses; no `ne ew not [..]`), default filter
//!   `id pr`, `sortBy` (default `created`), `sortOrder` (anything but `ascending` sorts
//!   descending, as in UAA), `startIndex`, `count` (default 100, capped at 500), `attributes`.
//!   A bad filter → 400 `{"error":"scim","error_description":"Invalid filter expression: [<filter>] [<sortBy>]"}`
//!   with the filter HTML-escaped.
//! * Users keep one e-mail (the primary one, else the first); `origin` defaults to `uaa` and
//!   cannot change; `userName` is unique case-insensitively per origin (409
//!   `scim_resource_already_exists` with `user_id`); `groups` is read-only and computed
//!   (`DIRECT`, and `INDIRECT` through nested groups).
//! * `PUT` and `PATCH` need `If-Match` (missing → 400 `Missing If-Match for PUT`, `*` accepted,
//!   stale → [`Options::stale_if_match_status`], 409 `scim_resource_conflict` by default as in UAA).
//!   `PATCH` takes a partial resource plus `meta.attributes` naming attributes to clear, and for
//!   groups `members[].operation:"delete"`. `DELETE` → 200 with the deleted resource; deleting a
//!   user or group removes its memberships.
//! * Members API: `GET /Groups/{id}/members[?returnEntities=true]` (bare array),
//!   `GET|DELETE /Groups/{id}/members/{memberId}`, `POST /Groups/{id}/members` (201, 409
//!   `member_already_exists`).
//! * [`Options::xsuaa_group_ids`] switches to the BTP flavour where a group (role collection)
//!   is addressed by its name.
//! * Optional rate limit on `/Users` and `/Groups` (BTP: 3 requests/s per subaccount,
//!   [`BTP_RATE_LIMIT_PER_SECOND`]): requests above it wait in a queue of
//!   [`Options::rate_limit_queue`], beyond that 429 with `Retry-After`.
//! * Optional latency of writes ([`Options::write_latency`]): a slow target, each write answered that
//!   much later, writes side by side.

use std::collections::{HashMap, HashSet, VecDeque};
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
use serde_json::{Map, Value, json};

use super::common::auth::{Issued, TokenError, Tokens, client_auth};
use super::common::filter::get_ci;
use super::common::filter::{self, AttrPath, Dialect, Eval, Filter, Op};
use super::common::http::{self as h, Params};
use super::common::paging;
use super::common::rate::{Limit, RateLimiter};
use super::common::seed;
use super::common::server::{self, Gate, Running};
use super::common::stats::Stats;
use super::common::store::Table;
use super::common::time::{format_millis, now_millis};

/// The SCIM 1.0 core schema UAA puts on every resource and list.
pub const SCHEMA: &str = "urn:scim:schemas:core:1.0";
/// The BTP Authorization and Trust Management API limit on `/Users` and `/Groups`.
pub const BTP_RATE_LIMIT_PER_SECOND: f64 = 3.0;
const CT: &str = "application/json;charset=UTF-8";

/// How to start a UAA simulator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Users to seed (userName `first.last<N>`, one primary e-mail, origin [`Options::origin`]).
    pub users: usize,
    /// Groups to seed (each seeded user is in one group, about a fifth in two).
    pub groups: usize,
    /// Requests per second on `/Users` and `/Groups` before 429; `None` = unlimited.
    pub rate_limit_per_second: Option<f64>,
    /// Requests above the rate that wait in a queue (BTP queues, then answers 429 "when the
    /// queue is too long"; its length is undocumented). 0 = refuse at once.
    pub rate_limit_queue: usize,
    /// The OAuth client id accepted at `/oauth/token`.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Scopes (authorities) granted to the client.
    pub scopes: Vec<String>,
    /// The identity zone (`zoneId` of resources, accepted `X-Identity-Zone-Id`).
    pub zone_id: String,
    /// Origin of seeded users and the default of created ones.
    pub origin: String,
    /// Token lifetime; `expires_in` is one second less, as UAA answers (43 200 s → 43199).
    pub token_validity: Duration,
    /// Status for a stale `If-Match` (UAA: 409; 412 and 422 are also seen behind BTP).
    pub stale_if_match_status: u16,
    /// XSUAA flavour: groups are role collections whose id *is* the name (`/Groups/<name>`),
    /// and a name cannot change. `false` (UAA) = UUID ids.
    pub xsuaa_group_ids: bool,
    /// Maximum `count` (UAA's `userMaxCount`, 500).
    pub max_count: usize,
    /// Seed of the generated data.
    pub seed: u64,
    /// How long every write (a user's or group's create, replace, patch or delete, a member added or
    /// removed) takes before it is answered, as a real system's database and replication take (tens of
    /// milliseconds behind BTP). Writes wait side by side, as on a real server, outside the simulator's
    /// lock; an unauthorized or rate-limited write is answered at once. Zero by default.
    pub write_latency: Duration,
    /// How long every read of users or groups (one by id or a page) takes before it is answered, as a
    /// backend across a network takes: what a proxy adds is then measured against a realistic call.
    /// Reads wait side by side, outside the simulator's lock. Zero by default.
    pub read_latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: 0,
            groups: 0,
            rate_limit_per_second: None,
            rate_limit_queue: 0,
            client_id: "sb-provisio!t1".into(),
            client_secret: "provisio-secret".into(),
            scopes: ["scim.read", "scim.write", "groups.update", "uaa.resource"]
                .map(String::from)
                .to_vec(),
            zone_id: "uaa".into(),
            origin: "uaa".into(),
            token_validity: Duration::from_secs(43_200),
            stale_if_match_status: 409,
            xsuaa_group_ids: false,
            max_count: 500,
            seed: 1,
            write_latency: Duration::ZERO,
            read_latency: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
struct User {
    id: String,
    external_id: Option<String>,
    user_name: String,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<(String, bool)>,
    phone_numbers: Vec<String>,
    active: bool,
    verified: bool,
    origin: String,
    zone_id: String,
    version: u64,
    created: i64,
    last_modified: i64,
    password_last_modified: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct Member {
    value: String,
    kind: String,
    origin: String,
}

impl Member {
    fn to_json(&self) -> Value {
        json!({"origin": self.origin, "type": self.kind, "value": self.value})
    }
}

#[derive(Clone, Debug)]
struct Group {
    id: String,
    display_name: String,
    description: Option<String>,
    zone_id: String,
    members: Vec<Member>,
    version: u64,
    created: i64,
    last_modified: i64,
}

#[derive(Debug, Default)]
struct Store {
    users: Table<User>,
    /// (lower-case userName, lower-case origin) → id
    user_names: HashMap<(String, String), String>,
    /// ASCII-lower-case userName → ids in every origin, for `userName eq` lookups.
    names_any_origin: HashMap<String, Vec<String>>,
    groups: Table<Group>,
    /// lower-case displayName → id
    group_names: HashMap<String, String>,
    /// user id → a partial change another client makes just before the next PUT or PATCH of that user
    /// arrives (see [`State::change_before_next_write`]).
    concurrent_changes: HashMap<String, Value>,
    /// Ids the next created users get instead of UUIDs (see [`State::use_next_user_id`]).
    next_user_ids: std::collections::VecDeque<String>,
}

struct Inner {
    options: Options,
    store: Mutex<Store>,
    tokens: Tokens,
    stats: Arc<Stats>,
    issuer: Mutex<String>,
    /// The client's credentials are revoked: the token endpoint refuses them (see
    /// [`State::set_credentials_revoked`]).
    revoked: std::sync::atomic::AtomicBool,
}

/// The simulator's shared state; cheap to clone. Its methods inspect and change the data
/// directly (no authentication, no rate limit), returning resources in UAA's JSON.
#[derive(Clone)]
pub struct State(Arc<Inner>);

/// An error answer: status and the UAA `{"error","error_description"}` body.
type Answer = Result<Response, Response>;

fn uaa_error(status: StatusCode, error: &str, description: &str) -> Response {
    h::json(status, CT, &json!({"error_description": description, "error": error}))
}

fn with_etag(resp: Response, version: u64) -> Response {
    h::with_header(resp, "etag", &format!("\"{version}\""))
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    get_ci(v, key).and_then(Value::as_str).map(str::to_string)
}

fn bool_field(v: &Value, key: &str) -> Option<bool> {
    match get_ci(v, key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// UAA keeps one e-mail: the primary one, else the first.
fn pick_email(v: &Value) -> Option<(String, bool)> {
    let emails = get_ci(v, "emails")?.as_array()?;
    let chosen = emails
        .iter()
        .find(|e| bool_field(e, "primary") == Some(true))
        .or_else(|| emails.first())?;
    let value = str_field(chosen, "value")?;
    Some((value, bool_field(chosen, "primary").unwrap_or(false)))
}

fn phone_numbers(v: &Value) -> Option<Vec<String>> {
    let arr = get_ci(v, "phoneNumbers")?.as_array()?;
    Some(arr.iter().filter_map(|p| str_field(p, "value")).collect())
}

impl User {
    fn to_json(&self, groups: Vec<Value>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        if let Some(e) = &self.external_id {
            m.insert("externalId".into(), json!(e));
        }
        m.insert(
            "meta".into(),
            json!({"version": self.version, "created": format_millis(self.created), "lastModified": format_millis(self.last_modified)}),
        );
        m.insert("userName".into(), json!(self.user_name));
        let mut name = Map::new();
        if let Some(f) = &self.family_name {
            name.insert("familyName".into(), json!(f));
        }
        if let Some(g) = &self.given_name {
            name.insert("givenName".into(), json!(g));
        }
        m.insert("name".into(), Value::Object(name));
        if let Some((value, primary)) = &self.email {
            m.insert("emails".into(), json!([{"value": value, "primary": primary}]));
        }
        m.insert("groups".into(), Value::Array(groups));
        m.insert("approvals".into(), json!([]));
        if !self.phone_numbers.is_empty() {
            let p: Vec<Value> = self.phone_numbers.iter().map(|v| json!({"value": v})).collect();
            m.insert("phoneNumbers".into(), Value::Array(p));
        }
        m.insert("active".into(), json!(self.active));
        m.insert("verified".into(), json!(self.verified));
        m.insert("origin".into(), json!(self.origin));
        m.insert("zoneId".into(), json!(self.zone_id));
        m.insert(
            "passwordLastModified".into(),
            json!(format_millis(self.password_last_modified)),
        );
        m.insert("schemas".into(), json!([SCHEMA]));
        Value::Object(m)
    }
}

impl Group {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert(
            "meta".into(),
            json!({"version": self.version, "created": format_millis(self.created), "lastModified": format_millis(self.last_modified)}),
        );
        m.insert("displayName".into(), json!(self.display_name));
        m.insert("zoneId".into(), json!(self.zone_id));
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert(
            "members".into(),
            Value::Array(self.members.iter().map(Member::to_json).collect()),
        );
        m.insert("schemas".into(), json!([SCHEMA]));
        Value::Object(m)
    }
}

impl Store {
    /// `groups` of a user: DIRECT memberships, and INDIRECT ones through nested groups.
    fn groups_of(&self, member_id: &str) -> Vec<Value> {
        self.groups_with(&self.membership_index(), member_id)
    }

    /// member id → groups it is a direct member of.
    fn membership_index(&self) -> HashMap<&str, Vec<&Group>> {
        let mut idx: HashMap<&str, Vec<&Group>> = HashMap::new();
        for g in self.groups.iter() {
            for m in &g.members {
                idx.entry(m.value.as_str()).or_default().push(g);
            }
        }
        idx
    }

    fn groups_with(&self, idx: &HashMap<&str, Vec<&Group>>, member_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut queue: VecDeque<(String, bool)> = VecDeque::new();
        queue.push_back((member_id.to_string(), true));
        while let Some((id, direct)) = queue.pop_front() {
            for g in idx.get(id.as_str()).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(g.id.clone()) {
                    out.push(json!({"value": g.id, "display": g.display_name, "type": if direct { "DIRECT" } else { "INDIRECT" }}));
                    queue.push_back((g.id.clone(), false));
                }
            }
        }
        out
    }

    fn user_json(&self, u: &User) -> Value {
        u.to_json(self.groups_of(&u.id))
    }

    fn index_name(&mut self, user_name: &str, id: &str) {
        self.names_any_origin
            .entry(user_name.to_ascii_lowercase())
            .or_default()
            .push(id.to_string());
    }

    fn unindex_name(&mut self, user_name: &str, id: &str) {
        let key = user_name.to_ascii_lowercase();
        if let Some(ids) = self.names_any_origin.get_mut(&key) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.names_any_origin.remove(&key);
            }
        }
    }

    /// The users whose userName equals `name` ignoring ASCII case, in creation order.
    fn users_named(&self, name: &str) -> Vec<&User> {
        let mut ids: Vec<(u64, &str)> = self
            .names_any_origin
            .get(&name.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|id| Some((self.users.order_of(id)?, id.as_str())))
            .collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|(_, id)| self.users.get(id)).collect()
    }

    fn member_exists(&self, m: &Member) -> bool {
        if m.kind == "GROUP" {
            self.groups.contains(&m.value)
        } else {
            self.users.contains(&m.value)
        }
    }

    fn remove_memberships(&mut self, member_id: &str) {
        for g in self.groups.iter_mut() {
            g.members.retain(|m| m.value != member_id);
        }
    }
}

fn missing_user(id: &str) -> Response {
    uaa_error(
        StatusCode::NOT_FOUND,
        "scim_resource_not_found",
        &format!("User {id} does not exist"),
    )
}

fn missing_group(id: &str) -> Response {
    uaa_error(
        StatusCode::NOT_FOUND,
        "scim_resource_not_found",
        &format!("Group {id} does not exist"),
    )
}

fn bad_json(msg: String) -> Response {
    uaa_error(StatusCode::BAD_REQUEST, "scim", &msg)
}

fn invalid(msg: &str) -> Response {
    uaa_error(StatusCode::BAD_REQUEST, "invalid_scim_resource", msg)
}

fn parse_members(v: &Value) -> Result<Vec<(Member, bool)>, Response> {
    let Some(arr) = get_ci(v, "members") else {
        return Ok(Vec::new());
    };
    let Some(arr) = arr.as_array() else {
        return Err(bad_json("JSON parse error: 'members' must be an array".into()));
    };
    arr.iter()
        .map(|m| {
            let value = str_field(m, "value").ok_or_else(|| invalid("Group member must have a value"))?;
            let kind = str_field(m, "type")
                .unwrap_or_else(|| "USER".into())
                .to_ascii_uppercase();
            if kind != "USER" && kind != "GROUP" {
                return Err(bad_json(format!("JSON parse error: invalid member type '{kind}'")));
            }
            let origin = str_field(m, "origin").unwrap_or_else(|| "uaa".into());
            let delete = str_field(m, "operation").is_some_and(|o| o.eq_ignore_ascii_case("delete"));
            Ok((Member { value, kind, origin }, delete))
        })
        .collect()
}

/// Which scope family an endpoint needs.
#[derive(Clone, Copy)]
enum Need {
    Read,
    Write,
    Members,
}

const READ_SCOPES: &[&str] = &[
    "scim.read",
    "scim.write",
    "uaa.admin",
    "xs_user.read",
    "xs_authorization.read",
];
const WRITE_SCOPES: &[&str] = &["scim.write", "uaa.admin", "xs_user.write", "xs_authorization.write"];
const MEMBER_SCOPES: &[&str] = &["scim.write", "groups.update", "uaa.admin", "xs_authorization.write"];

impl State {
    /// Builds the state and seeds it.
    pub fn new(options: Options) -> State {
        let st = State(Arc::new(Inner {
            store: Mutex::new(Store::default()),
            tokens: Tokens::new(),
            stats: Arc::new(Stats::default()),
            issuer: Mutex::new("http://localhost:8080/uaa/oauth/token".into()),
            revoked: std::sync::atomic::AtomicBool::new(false),
            options,
        }));
        st.seed();
        st
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.0.store.lock().unwrap_or_else(|p| p.into_inner())
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
        let o = &self.0.options;
        let mut rng = seed::Rng::new(o.seed);
        let mut ids = Vec::with_capacity(o.users);
        for i in 0..o.users {
            let p = seed::person(&mut rng, i);
            let primary = p.emails.iter().find(|e| e.1).map(|e| e.0.clone());
            let user = json!({
                "userName": p.user_name, "externalId": p.employee_number,
                "name": {"givenName": p.given, "familyName": p.family},
                "emails": [{"value": primary, "primary": true}],
                "origin": o.origin, "verified": true, "active": true,
            });
            if let Ok(u) = self.insert_user(user) {
                ids.push(str_field(&u, "id").unwrap_or_default());
            }
        }
        let membership = seed::memberships(&mut rng, o.users, o.groups);
        for (j, members) in membership.into_iter().enumerate() {
            let members: Vec<Value> = members
                .into_iter()
                .filter_map(|u| ids.get(u))
                .map(|id| json!({"value": id, "type": "USER", "origin": o.origin}))
                .collect();
            let _ = self.insert_group(json!({
                "displayName": seed::group_name(j),
                "description": format!("Seeded group {}", j + 1),
                "members": members,
            }));
        }
    }

    // ----- direct accessors -------------------------------------------------------------------

    /// All users (creation order) as UAA returns them.
    pub fn users(&self) -> Vec<Value> {
        let s = self.store();
        s.users.iter().map(|u| s.user_json(u)).collect()
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.store().users.len()
    }

    /// Each user's `userName` and the instant it was created (milliseconds since the epoch, the clock its
    /// `meta.created` shows), in creation order.
    pub fn creations(&self) -> Vec<(String, i64)> {
        self.store()
            .users
            .iter()
            .map(|u| (u.user_name.clone(), u.created))
            .collect()
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<Value> {
        let s = self.store();
        s.users.get(id).map(|u| s.user_json(u))
    }

    /// A user by userName (case-insensitive), in any origin.
    pub fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let s = self.store();
        s.users_named(user_name).first().map(|u| s.user_json(u))
    }

    /// Creates a user as `POST /Users` would (same validation); returns it or the error text.
    pub fn insert_user(&self, body: Value) -> Result<Value, String> {
        let mut s = self.store();
        create_user(&mut s, &self.0.options, &body).map_err(|(_, e)| e)
    }

    /// Makes another client's write land between a reader's GET and its next write: when the next `PUT`
    /// or `PATCH` of user `id` arrives, `change` (a partial update, as a PATCH body) is stored first and
    /// the user's version goes up, so that the arriving write's `If-Match` is stale.
    pub fn change_before_next_write(&self, id: &str, change: Value) {
        self.store().concurrent_changes.insert(id.to_string(), change);
    }

    /// The next user created (by `POST /Users` or [`State::insert_user`]) gets `id` instead of a UUID, so
    /// that tests can hand clients ids with characters that mean something in a URL (`victim?x=1`, `../x`).
    pub fn use_next_user_id(&self, id: &str) {
        self.store().next_user_ids.push_back(id.to_string());
    }

    /// Deletes a user and its memberships; whether it existed.
    pub fn remove_user(&self, id: &str) -> bool {
        let mut s = self.store();
        delete_user(&mut s, id).is_some()
    }

    /// All groups (creation order).
    pub fn groups(&self) -> Vec<Value> {
        self.store().groups.iter().map(Group::to_json).collect()
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.store().groups.len()
    }

    /// A group by id.
    pub fn group(&self, id: &str) -> Option<Value> {
        self.store().groups.get(id).map(Group::to_json)
    }

    /// A group by displayName (case-insensitive).
    pub fn group_by_name(&self, display_name: &str) -> Option<Value> {
        let s = self.store();
        let id = s.group_names.get(&display_name.to_lowercase())?;
        s.groups.get(id).map(Group::to_json)
    }

    /// Creates a group as `POST /Groups` would.
    pub fn insert_group(&self, body: Value) -> Result<Value, String> {
        let mut s = self.store();
        create_group(&mut s, &self.0.options, &body).map_err(|(_, e)| e)
    }

    /// Member ids of a group.
    pub fn member_ids(&self, group_id: &str) -> Option<Vec<String>> {
        let s = self.store();
        s.groups
            .get(group_id)
            .map(|g| g.members.iter().map(|m| m.value.clone()).collect())
    }

    /// Invalidates every issued token (clients must fetch a new one).
    pub fn revoke_tokens(&self) {
        self.0.tokens.revoke_all();
    }

    /// Revokes the client's credentials (every issued token ends and the token endpoint answers 401 Bad
    /// credentials), or, with `false`, restores them.
    pub fn set_credentials_revoked(&self, revoked: bool) {
        self.0.revoked.store(revoked, std::sync::atomic::Ordering::SeqCst);
        if revoked {
            self.0.tokens.revoke_all();
        }
    }

    // ----- request plumbing -------------------------------------------------------------------

    /// [`Options::write_latency`]: the time a write takes before the simulator does it.
    async fn write_pause(&self) {
        pause(self.0.options.write_latency).await;
    }

    /// [`Options::read_latency`]: the time a read takes before the simulator answers it.
    async fn read_pause(&self) {
        pause(self.0.options.read_latency).await;
    }

    fn authorize(&self, headers: &HeaderMap, need: Need) -> Result<Issued, Response> {
        if let Some(zone) = h::header_str(headers, "x-identity-zone-id")
            && zone != self.0.options.zone_id
        {
            return Err(uaa_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                &format!("Identity zone {zone} is not accessible with this token"),
            ));
        }
        let Some(token) = h::bearer_token(headers) else {
            let desc = "Full authentication is required to access this resource";
            let resp = uaa_error(StatusCode::UNAUTHORIZED, "unauthorized", desc);
            return Err(h::with_header(
                resp,
                "www-authenticate",
                &format!("Bearer realm=\"UAA\", error=\"unauthorized\", error_description=\"{desc}\""),
            ));
        };
        let issued = self.0.tokens.check(&token).map_err(|e| {
            let desc = match e {
                TokenError::Unknown => "Invalid access token value.",
                TokenError::Expired => "The token expired, was revoked, or the token ID is incorrect.",
            };
            let resp = uaa_error(StatusCode::UNAUTHORIZED, "invalid_token", desc);
            h::with_header(
                resp,
                "www-authenticate",
                &format!("Bearer realm=\"UAA\", error=\"invalid_token\", error_description=\"{desc}\""),
            )
        })?;
        let allowed = match need {
            Need::Read => READ_SCOPES,
            Need::Write => WRITE_SCOPES,
            Need::Members => MEMBER_SCOPES,
        };
        if !issued.scopes.iter().any(|s| allowed.contains(&s.as_str())) {
            return Err(h::json(
                StatusCode::FORBIDDEN,
                CT,
                &json!({"error": "insufficient_scope", "error_description": "Insufficient scope for this resource", "scope": allowed.join(" ")}),
            ));
        }
        Ok(issued)
    }

    /// Resolves an `If-Match` header to the version it names (UAA's `getVersion`).
    fn expected_version(&self, headers: &HeaderMap, current: u64, method: &str) -> Result<u64, Response> {
        let Some(raw) = headers.get("if-match") else {
            return Err(uaa_error(
                StatusCode::BAD_REQUEST,
                "scim",
                &format!("Missing If-Match for {method}"),
            ));
        };
        let raw = String::from_utf8_lossy(raw.as_bytes()).to_string();
        let value = raw.trim().trim_matches('"');
        if value == "*" {
            return Ok(current);
        }
        value.parse::<u64>().map_err(|_| {
            uaa_error(
                StatusCode::BAD_REQUEST,
                "scim",
                &format!("Invalid version match header (should be a version number): {raw}"),
            )
        })
    }

    fn stale(&self, what: &str, id: &str, current: u64, given: u64) -> Response {
        let status = StatusCode::from_u16(self.0.options.stale_if_match_status).unwrap_or(StatusCode::CONFLICT);
        uaa_error(
            status,
            "scim_resource_conflict",
            &format!("Attempt to update a {what} ({id}) with wrong version: expected={current} but found={given}"),
        )
    }
}

// ----- domain operations (shared by handlers and accessors) -----------------------------------

type OpError = (Response, String);

fn op_err(resp: Response, msg: impl Into<String>) -> OpError {
    (resp, msg.into())
}

fn create_user(s: &mut Store, o: &Options, body: &Value) -> Result<Value, OpError> {
    if !body.is_object() {
        return Err(op_err(
            bad_json("JSON parse error: expected an object".into()),
            "not an object",
        ));
    }
    let user_name = str_field(body, "userName").unwrap_or_default();
    if user_name.trim().is_empty() {
        let m = "A username must be provided.";
        return Err(op_err(invalid(m), m));
    }
    let Some(email) = pick_email(body) else {
        let m = "An email must be provided.";
        return Err(op_err(invalid(m), m));
    };
    let origin = str_field(body, "origin")
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| o.origin.clone());
    let key = (user_name.to_lowercase(), origin.to_lowercase());
    if let Some(existing) = s.user_names.get(&key) {
        let msg = format!("Username already in use: {user_name}");
        let (active, verified) = s
            .users
            .get(existing)
            .map(|u| (u.active, u.verified))
            .unwrap_or((true, true));
        let resp = h::json(
            StatusCode::CONFLICT,
            CT,
            &json!({"error_description": msg, "error": "scim_resource_already_exists", "user_id": existing, "verified": verified, "active": active}),
        );
        return Err(op_err(resp, msg));
    }
    let now = now_millis();
    let name = get_ci(body, "name");
    let user = User {
        id: s
            .next_user_ids
            .pop_front()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        external_id: str_field(body, "externalId"),
        user_name,
        given_name: name.and_then(|n| str_field(n, "givenName")),
        family_name: name.and_then(|n| str_field(n, "familyName")),
        email: Some(email),
        phone_numbers: phone_numbers(body).unwrap_or_default(),
        active: bool_field(body, "active").unwrap_or(true),
        verified: bool_field(body, "verified").unwrap_or(true),
        origin,
        zone_id: o.zone_id.clone(),
        version: 0,
        created: now,
        last_modified: now,
        password_last_modified: now,
    };
    s.user_names.insert(key, user.id.clone());
    s.index_name(&user.user_name, &user.id);
    // A new id is in no group yet: no need to look its memberships up.
    let out = user.to_json(Vec::new());
    s.users.insert(user.id.clone(), user);
    Ok(out)
}

fn delete_user(s: &mut Store, id: &str) -> Option<Value> {
    let json = s.users.get(id).map(|u| s.user_json(u))?;
    let user = s.users.remove(id)?;
    s.user_names
        .remove(&(user.user_name.to_lowercase(), user.origin.to_lowercase()));
    s.unindex_name(&user.user_name, id);
    s.remove_memberships(id);
    Some(json)
}

/// Applies a full (PUT) or partial (PATCH) user body to `user`.
fn merge_user(s: &Store, user: &mut User, body: &Value, partial: bool) -> Result<(), Response> {
    if !body.is_object() {
        return Err(bad_json("JSON parse error: expected an object".into()));
    }
    if partial {
        let clear: Vec<String> = get_ci(body, "meta")
            .and_then(|m| get_ci(m, "attributes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for attr in clear {
            match attr.to_ascii_uppercase().as_str() {
                "USERNAME" => return Err(invalid("Cannot delete username")),
                "EMAILS" => user.email = None,
                "NAME" => {
                    user.given_name = None;
                    user.family_name = None;
                }
                "NAME.GIVENNAME" => user.given_name = None,
                "NAME.FAMILYNAME" => user.family_name = None,
                "PHONENUMBERS" => user.phone_numbers.clear(),
                "EXTERNALID" => user.external_id = None,
                "GROUPS" | "APPROVALS" | "DISPLAYNAME" | "NICKNAME" | "TITLE" | "LOCALE" | "TIMEZONE"
                | "PROFILEURL" | "PREFERREDLANGUAGE" | "USERTYPE" => {}
                _ => {
                    return Err(invalid(&format!(
                        "Attribute {attr} cannot be removed using \"Meta.attributes\""
                    )));
                }
            }
        }
    }
    if let Some(origin) = str_field(body, "origin").filter(|o| !o.is_empty())
        && !origin.eq_ignore_ascii_case(&user.origin)
    {
        return Err(invalid("Cannot change user's origin in update operation."));
    }
    match str_field(body, "userName") {
        Some(n) if !n.trim().is_empty() => user.user_name = n,
        _ if !partial => return Err(invalid("A username must be provided.")),
        _ => {}
    }
    let name = get_ci(body, "name");
    if !partial || name.is_some() {
        let given = name.and_then(|n| str_field(n, "givenName"));
        let family = name.and_then(|n| str_field(n, "familyName"));
        if !partial || given.is_some() {
            user.given_name = given;
        }
        if !partial || family.is_some() {
            user.family_name = family;
        }
    }
    match pick_email(body) {
        Some(e) => user.email = Some(e),
        None if !partial => return Err(invalid("An email must be provided.")),
        None => {}
    }
    if let Some(p) = phone_numbers(body) {
        user.phone_numbers = p;
    } else if !partial {
        user.phone_numbers.clear();
    }
    if let Some(e) = str_field(body, "externalId") {
        user.external_id = Some(e);
    } else if !partial {
        user.external_id = None;
    }
    if let Some(a) = bool_field(body, "active") {
        user.active = a;
    }
    if let Some(v) = bool_field(body, "verified") {
        user.verified = v;
    }
    let key = (user.user_name.to_lowercase(), user.origin.to_lowercase());
    if let Some(other) = s.user_names.get(&key)
        && *other != user.id
    {
        return Err(h::json(
            StatusCode::CONFLICT,
            CT,
            &json!({"error_description": format!("Username already in use: {}", user.user_name), "error": "scim_resource_already_exists", "user_id": other}),
        ));
    }
    Ok(())
}

fn create_group(s: &mut Store, o: &Options, body: &Value) -> Result<Value, OpError> {
    if !body.is_object() {
        return Err(op_err(
            bad_json("JSON parse error: expected an object".into()),
            "not an object",
        ));
    }
    let display_name = str_field(body, "displayName").unwrap_or_default();
    if display_name.trim().is_empty() {
        let m = "A group must have a displayName.";
        return Err(op_err(invalid(m), m));
    }
    if s.group_names.contains_key(&display_name.to_lowercase()) {
        let m = format!("A group with displayName: {display_name} already exists.");
        return Err(op_err(
            uaa_error(StatusCode::CONFLICT, "scim_resource_already_exists", &m),
            m,
        ));
    }
    let members = parse_members(body).map_err(|r| op_err(r, "invalid members"))?;
    let mut list: Vec<Member> = Vec::new();
    for (m, _) in members {
        if !s.member_exists(&m) {
            let msg = format!(
                "{} {} does not exist",
                if m.kind == "GROUP" { "Group" } else { "User" },
                m.value
            );
            return Err(op_err(
                uaa_error(StatusCode::NOT_FOUND, "scim_resource_not_found", &msg),
                msg,
            ));
        }
        if !list.iter().any(|x| x.value == m.value) {
            list.push(m);
        }
    }
    let now = now_millis();
    let g = Group {
        id: if o.xsuaa_group_ids {
            display_name.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        },
        display_name,
        description: str_field(body, "description"),
        zone_id: o.zone_id.clone(),
        members: list,
        version: 0,
        created: now,
        last_modified: now,
    };
    s.group_names.insert(g.display_name.to_lowercase(), g.id.clone());
    let out = g.to_json();
    s.groups.insert(g.id.clone(), g);
    Ok(out)
}

// ----- list support ---------------------------------------------------------------------------

const UAA_DIALECT: Dialect = Dialect {
    ops: &[Op::Eq, Op::Co, Op::Sw, Op::Gt, Op::Ge, Op::Lt, Op::Le],
    present: true,
    and: true,
    or: true,
    not: false,
    parens: true,
    value_paths: false,
};

/// Maps UAA attribute names (as its query converter knows them) onto JSON paths; `None` = unknown.
fn user_attr(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "id" => "id",
        "username" => "userName",
        "email" | "emails" | "emails.value" => "emails.value",
        "givenname" | "name.givenname" => "name.givenName",
        "familyname" | "name.familyname" => "name.familyName",
        "active" => "active",
        "verified" => "verified",
        "origin" => "origin",
        "externalid" => "externalId",
        "zoneid" | "identity_zone_id" => "zoneId",
        "phonenumbers" | "phonenumbers.value" | "phonenumber" => "phoneNumbers.value",
        "created" | "meta.created" => "meta.created",
        "lastmodified" | "meta.lastmodified" => "meta.lastModified",
        "version" | "meta.version" => "meta.version",
        "passwordlastmodified" => "passwordLastModified",
        _ => return None,
    })
}

fn group_attr(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "id" => "id",
        "displayname" => "displayName",
        "description" => "description",
        "zoneid" | "identity_zone_id" => "zoneId",
        "created" | "meta.created" => "meta.created",
        "lastmodified" | "meta.lastmodified" => "meta.lastModified",
        "version" | "meta.version" => "meta.version",
        _ => return None,
    })
}

fn map_path(path: &AttrPath, map: fn(&str) -> Option<&'static str>) -> Option<AttrPath> {
    if let Some(s) = &path.urn
        && !s.eq_ignore_ascii_case(SCHEMA)
        && !s.to_ascii_lowercase().contains(":core:")
    {
        return None;
    }
    let mapped = map(&path.dotted_lower())?;
    AttrPath::parse(mapped).ok()
}

fn rewrite(f: Filter, map: fn(&str) -> Option<&'static str>) -> Option<Filter> {
    Some(match f {
        Filter::And(a, b) => Filter::And(Box::new(rewrite(*a, map)?), Box::new(rewrite(*b, map)?)),
        Filter::Or(a, b) => Filter::Or(Box::new(rewrite(*a, map)?), Box::new(rewrite(*b, map)?)),
        Filter::Not(a) => Filter::Not(Box::new(rewrite(*a, map)?)),
        Filter::Present(p) => Filter::Present(map_path(&p, map)?),
        Filter::Compare(p, op, v) => Filter::Compare(map_path(&p, map)?, op, v),
        Filter::ValuePath(p, inner) => Filter::ValuePath(map_path(&p, map)?, inner),
    })
}

struct ListQuery {
    filter: Filter,
    sort_path: AttrPath,
    ascending: bool,
    start_index: usize,
    count: usize,
    attributes: Option<Vec<String>>,
}

fn list_query(params: &Params, o: &Options, map: fn(&str) -> Option<&'static str>) -> Result<ListQuery, Response> {
    let filter_text = params
        .get("filter")
        .filter(|f| !f.trim().is_empty())
        .unwrap_or("id pr")
        .to_string();
    let sort_by = params
        .get("sortBy")
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("created")
        .to_string();
    let invalid_filter = || {
        let mut msg = format!("Invalid filter expression: [{filter_text}]");
        if !sort_by.is_empty() {
            msg.push_str(&format!(" [{sort_by}]"));
        }
        uaa_error(StatusCode::BAD_REQUEST, "scim", &h::html_escape(&msg))
    };
    let filter = filter::parse(&filter_text, &UAA_DIALECT)
        .ok()
        .and_then(|f| rewrite(f, map))
        .ok_or_else(invalid_filter)?;
    let sort_path = AttrPath::parse(&sort_by)
        .ok()
        .and_then(|p| map_path(&p, map))
        .ok_or_else(invalid_filter)?;
    let ascending = params.get("sortOrder").unwrap_or("ascending") == "ascending";
    let start = params
        .int("startIndex")
        .map_err(|e| uaa_error(StatusCode::BAD_REQUEST, "scim", &e))?;
    let count = params
        .int("count")
        .map_err(|e| uaa_error(StatusCode::BAD_REQUEST, "scim", &e))?;
    let attributes = params.get("attributes").filter(|a| !a.trim().is_empty()).map(|a| {
        a.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    });
    Ok(ListQuery {
        filter,
        sort_path,
        ascending,
        start_index: paging::start_index(start),
        count: paging::count(count, 100, o.max_count),
        attributes,
    })
}

fn sort_key(v: &Value, path: &AttrPath) -> Option<Value> {
    filter::resolve(v, path).first().map(|x| match x {
        Value::String(s) => Value::String(s.to_lowercase()),
        other => (*other).clone(),
    })
}

fn cmp_json(a: &Option<Value>, b: &Option<Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.as_str().unwrap_or_default().cmp(y.as_str().unwrap_or_default()),
    }
}

/// UAA's `attributes=` projection: keys are the requested names, values read by JSON path.
fn project(resource: &Value, attributes: &[String]) -> Value {
    let mut m = Map::new();
    for a in attributes {
        let mapped = match a.as_str() {
            "givenName" => "name.givenName".to_string(),
            "familyName" => "name.familyName".to_string(),
            other => other.to_string(),
        };
        let value = AttrPath::parse(&mapped)
            .ok()
            .map(|p| {
                let through_array = p.sub.is_some() && filter::get_ci(resource, &p.name).is_some_and(Value::is_array);
                let found: Vec<Value> = filter::resolve(resource, &p).into_iter().cloned().collect();
                if through_array {
                    Value::Array(found)
                } else if p.sub.is_none() {
                    filter::get_ci(resource, &p.name).cloned().unwrap_or(Value::Null)
                } else {
                    found.into_iter().next().unwrap_or(Value::Null)
                }
            })
            .unwrap_or(Value::Null);
        m.insert(a.clone(), value);
    }
    Value::Object(m)
}

fn list_response(all: Vec<Value>, q: &ListQuery, finish: impl Fn(Value) -> Value) -> Response {
    let eval = Eval::default();
    let mut hits: Vec<(Option<Value>, Value)> = all
        .into_iter()
        .filter(|v| q.filter.matches(v, &eval))
        .map(|v| (sort_key(&v, &q.sort_path), v))
        .collect();
    hits.sort_by(|a, b| {
        let o = cmp_json(&a.0, &b.0);
        if q.ascending { o } else { o.reverse() }
    });
    let total = hits.len();
    let range = paging::window(total, q.start_index, q.count);
    let page: Vec<Value> = hits
        .into_iter()
        .skip(range.start)
        .take(range.len())
        .map(|(_, v)| finish(v))
        .collect();
    page_response(page, total, q)
}

/// Whether a list request asks for the default filter and order (creation order), so that only
/// the requested page needs rendering.
fn is_default_listing(params: &Params) -> bool {
    let f = params.get("filter").map(str::trim).unwrap_or("");
    let sort = params.get("sortBy").map(str::trim).unwrap_or("");
    (f.is_empty() || f == "id pr")
        && (sort.is_empty() || sort == "created")
        && params.get("sortOrder").is_none_or(|o| o == "ascending")
}

fn page_response(page: Vec<Value>, total: usize, q: &ListQuery) -> Response {
    let resources: Vec<Value> = page
        .into_iter()
        .map(|v| match &q.attributes {
            Some(attrs) => project(&v, attrs),
            None => v,
        })
        .collect();
    h::json(
        StatusCode::OK,
        CT,
        &json!({
            "resources": resources,
            "startIndex": q.start_index,
            "itemsPerPage": q.count,
            "totalResults": total,
            "schemas": [SCHEMA],
        }),
    )
}

// ----- handlers -------------------------------------------------------------------------------

type S = AxState<State>;

async fn token(AxState(st): S, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Answer {
    let mut form = Params::parse(Some(&String::from_utf8_lossy(&body)));
    form.0.extend(Params::parse(q.as_deref()).0);
    let o = &st.0.options;
    let Some(client) = client_auth(&headers, &form) else {
        return Err(uaa_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Full authentication is required to access this resource",
        ));
    };
    if client.client_id != o.client_id
        || client.client_secret != o.client_secret
        || st.0.revoked.load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(uaa_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials"));
    }
    match form.get("grant_type") {
        None | Some("") => {
            return Err(uaa_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant type",
            ));
        }
        Some("client_credentials") => {}
        Some(other) => {
            return Err(uaa_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            ));
        }
    }
    let scopes: Vec<String> = match form.get("scope").map(str::trim).filter(|s| !s.is_empty()) {
        None => o.scopes.clone(),
        Some(req) => {
            let wanted: Vec<String> = req
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = wanted.iter().find(|w| !o.scopes.contains(w)) {
                return Err(h::json(
                    StatusCode::BAD_REQUEST,
                    CT,
                    &json!({"error": "invalid_scope", "error_description": format!("Invalid scope: {bad}. Did you know that you can get default scopes by simply sending no value?"), "scope": o.scopes.join(" ")}),
                ));
            }
            wanted
        }
    };
    let issuer = st.0.issuer.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (token, jti) =
        st.0.tokens
            .issue(&client.client_id, &scopes, o.token_validity, &issuer, &o.zone_id);
    let resp = h::json(
        StatusCode::OK,
        CT,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": o.token_validity.as_secs().saturating_sub(1).max(1),
            "scope": scopes.join(" "),
            "jti": jti,
        }),
    );
    let resp = h::with_header(resp, "cache-control", "no-store");
    Ok(h::with_header(resp, "pragma", "no-cache"))
}

/// Waits `latency` (nothing when it is zero), outside the simulator's lock, so requests wait side by side, and
/// to within the OS's timer slack, as a backend across a network takes it. Tokio's timers fire on millisecond
/// ticks, so a 5 ms sleep alone ends 5–6 ms later by where in the tick the request came: whatever a proxy adds
/// would move the simulator's own wait. The last stretch is slept on a blocking thread.
async fn pause(latency: Duration) {
    if latency.is_zero() {
        return;
    }
    let deadline = std::time::Instant::now() + latency;
    if let Some(coarse) = latency.checked_sub(Duration::from_millis(2)) {
        tokio::time::sleep(coarse).await;
    }
    let rest = deadline.saturating_duration_since(std::time::Instant::now());
    if !rest.is_zero() {
        // Only the thread's own end can fail it (a panic in `sleep`): the wait is over either way.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

async fn list_users(AxState(st): S, headers: HeaderMap, RawQuery(q): RawQuery) -> Answer {
    st.authorize(&headers, Need::Read)?;
    st.read_pause().await;
    let params = Params::parse(q.as_deref());
    let query = list_query(&params, &st.0.options, user_attr)?;
    let s = st.store();
    let idx = s.membership_index();
    if is_default_listing(&params) {
        let range = paging::window(s.users.len(), query.start_index, query.count);
        let page = s
            .users
            .iter_from(range.start)
            .take(range.len())
            .map(|u| u.to_json(s.groups_with(&idx, &u.id)))
            .collect();
        return Ok(page_response(page, s.users.len(), &query));
    }
    // Filter and sort without the (costly) computed groups; fill them in on the page only.
    // `userName eq "x"` lookups (conflict resolution) only render the users of that name.
    let all: Vec<Value> = match query.filter.required_eq("userName") {
        Some(wanted) => s
            .users_named(wanted)
            .into_iter()
            .map(|u| u.to_json(Vec::new()))
            .collect(),
        None => s.users.iter().map(|u| u.to_json(Vec::new())).collect(),
    };
    Ok(list_response(all, &query, |mut v| {
        let id = str_field(&v, "id").unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("groups".into(), Value::Array(s.groups_with(&idx, &id)));
        }
        v
    }))
}

async fn create_user_h(AxState(st): S, headers: HeaderMap, body: Bytes) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let body = h::parse_json(&body).map_err(bad_json)?;
    let mut s = st.store();
    let user = create_user(&mut s, &st.0.options, &body).map_err(|(r, _)| r)?;
    Ok(with_etag(h::json(StatusCode::CREATED, CT, &user), 0))
}

async fn get_user(AxState(st): S, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    st.authorize(&headers, Need::Read)?;
    st.read_pause().await;
    let s = st.store();
    let u = s.users.get(&id).ok_or_else(|| missing_user(&id))?;
    Ok(with_etag(h::json(StatusCode::OK, CT, &s.user_json(u)), u.version))
}

async fn update_user(st: State, headers: HeaderMap, id: String, body: Bytes, partial: bool) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let mut s = st.store();
    if let Some(change) = s.concurrent_changes.remove(&id)
        && let Some(mut other) = s.users.get(&id).cloned()
    {
        merge_user(&s, &mut other, &change, true)?;
        other.version += 1;
        other.last_modified = now_millis();
        if let Some(slot) = s.users.get_mut(&id) {
            *slot = other;
        }
    }
    let current = s.users.get(&id).cloned().ok_or_else(|| missing_user(&id))?;
    let expected = st.expected_version(&headers, current.version, "PUT")?;
    let body = h::parse_json(&body).map_err(bad_json)?;
    let mut updated = current.clone();
    merge_user(&s, &mut updated, &body, partial)?;
    if expected != current.version {
        return Err(st.stale("user", &id, current.version, expected));
    }
    updated.version += 1;
    updated.last_modified = now_millis();
    s.user_names
        .remove(&(current.user_name.to_lowercase(), current.origin.to_lowercase()));
    s.user_names.insert(
        (updated.user_name.to_lowercase(), updated.origin.to_lowercase()),
        id.clone(),
    );
    if updated.user_name != current.user_name {
        s.unindex_name(&current.user_name, &id);
        s.index_name(&updated.user_name, &id);
    }
    let json = s.user_json(&updated);
    let version = updated.version;
    if let Some(slot) = s.users.get_mut(&id) {
        *slot = updated;
    }
    Ok(with_etag(h::json(StatusCode::OK, CT, &json), version))
}

async fn put_user(AxState(st): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Answer {
    update_user(st, headers, id, body, false).await
}

async fn patch_user(AxState(st): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Answer {
    update_user(st, headers, id, body, true).await
}

async fn delete_user_h(AxState(st): S, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let mut s = st.store();
    let current = s.users.get(&id).map(|u| u.version).ok_or_else(|| missing_user(&id))?;
    if headers.contains_key("if-match") {
        let expected = st.expected_version(&headers, current, "DELETE")?;
        if expected != current {
            return Err(st.stale("user", &id, current, expected));
        }
    }
    let json = delete_user(&mut s, &id).ok_or_else(|| missing_user(&id))?;
    Ok(h::json(StatusCode::OK, CT, &json))
}

async fn list_groups(AxState(st): S, headers: HeaderMap, RawQuery(q): RawQuery) -> Answer {
    st.authorize(&headers, Need::Read)?;
    st.read_pause().await;
    let params = Params::parse(q.as_deref());
    let query = list_query(&params, &st.0.options, group_attr)?;
    Ok(list_response(st.groups(), &query, |v| v))
}

async fn create_group_h(AxState(st): S, headers: HeaderMap, body: Bytes) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let body = h::parse_json(&body).map_err(bad_json)?;
    let mut s = st.store();
    let g = create_group(&mut s, &st.0.options, &body).map_err(|(r, _)| r)?;
    Ok(with_etag(h::json(StatusCode::CREATED, CT, &g), 0))
}

async fn get_group(AxState(st): S, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    st.authorize(&headers, Need::Read)?;
    st.read_pause().await;
    let s = st.store();
    let g = s.groups.get(&id).ok_or_else(|| missing_group(&id))?;
    Ok(with_etag(h::json(StatusCode::OK, CT, &g.to_json()), g.version))
}

async fn update_group(st: State, headers: HeaderMap, id: String, body: Bytes, partial: bool) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let mut s = st.store();
    let current = s.groups.get(&id).cloned().ok_or_else(|| missing_group(&id))?;
    let expected = st.expected_version(&headers, current.version, if partial { "PATCH" } else { "PUT" })?;
    let body = h::parse_json(&body).map_err(bad_json)?;
    if !body.is_object() {
        return Err(bad_json("JSON parse error: expected an object".into()));
    }
    let mut g = current.clone();
    if partial {
        let clear: Vec<String> = get_ci(&body, "meta")
            .and_then(|m| get_ci(m, "attributes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for attr in clear {
            match attr.to_ascii_lowercase().as_str() {
                "description" => g.description = None,
                "members" => g.members.clear(),
                "displayname" => return Err(invalid("Cannot delete displayName")),
                _ => {
                    return Err(invalid(&format!(
                        "Attribute {attr} cannot be removed using \"Meta.attributes\""
                    )));
                }
            }
        }
    }
    match str_field(&body, "displayName") {
        Some(n) if !n.trim().is_empty() => {
            if st.0.options.xsuaa_group_ids && n != g.display_name {
                return Err(invalid("The name of a role collection cannot be changed"));
            }
            g.display_name = n
        }
        _ if !partial => return Err(invalid("A group must have a displayName.")),
        _ => {}
    }
    if let Some(d) = str_field(&body, "description") {
        g.description = Some(d);
    } else if !partial {
        g.description = None;
    }
    let members = parse_members(&body)?;
    if !partial && get_ci(&body, "members").is_some() {
        g.members.clear();
    }
    for (m, delete) in members {
        if delete {
            g.members.retain(|x| x.value != m.value);
            continue;
        }
        if !s.member_exists(&m) {
            return Err(uaa_error(
                StatusCode::NOT_FOUND,
                "scim_resource_not_found",
                &format!(
                    "{} {} does not exist",
                    if m.kind == "GROUP" { "Group" } else { "User" },
                    m.value
                ),
            ));
        }
        if !g.members.iter().any(|x| x.value == m.value) {
            g.members.push(m);
        }
    }
    if let Some(other) = s.group_names.get(&g.display_name.to_lowercase())
        && *other != id
    {
        return Err(uaa_error(
            StatusCode::CONFLICT,
            "scim_resource_already_exists",
            &format!("A group with displayName: {} already exists.", g.display_name),
        ));
    }
    if expected != current.version {
        return Err(st.stale("group", &id, current.version, expected));
    }
    g.version += 1;
    g.last_modified = now_millis();
    s.group_names.remove(&current.display_name.to_lowercase());
    s.group_names.insert(g.display_name.to_lowercase(), id.clone());
    let json = g.to_json();
    let version = g.version;
    if let Some(slot) = s.groups.get_mut(&id) {
        *slot = g;
    }
    Ok(with_etag(h::json(StatusCode::OK, CT, &json), version))
}

async fn put_group(AxState(st): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Answer {
    update_group(st, headers, id, body, false).await
}

async fn patch_group(AxState(st): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Answer {
    update_group(st, headers, id, body, true).await
}

async fn delete_group(AxState(st): S, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    st.authorize(&headers, Need::Write)?;
    st.write_pause().await;
    let mut s = st.store();
    let current = s.groups.get(&id).map(|g| g.version).ok_or_else(|| missing_group(&id))?;
    if headers.contains_key("if-match") {
        let expected = st.expected_version(&headers, current, "DELETE")?;
        if expected != current {
            return Err(st.stale("group", &id, current, expected));
        }
    }
    let g = s.groups.remove(&id).ok_or_else(|| missing_group(&id))?;
    s.group_names.remove(&g.display_name.to_lowercase());
    s.remove_memberships(&id);
    Ok(h::json(StatusCode::OK, CT, &g.to_json()))
}

fn member_not_found(gid: &str, mid: &str) -> Response {
    uaa_error(
        StatusCode::NOT_FOUND,
        "member_not_found",
        &format!("Member {mid} does not exist in group {gid}"),
    )
}

async fn list_members(AxState(st): S, headers: HeaderMap, Path(gid): Path<String>, RawQuery(q): RawQuery) -> Answer {
    st.authorize(&headers, Need::Read)?;
    let params = Params::parse(q.as_deref());
    let entities = params
        .get("returnEntities")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let s = st.store();
    let g = s.groups.get(&gid).ok_or_else(|| missing_group(&gid))?;
    let out: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let mut j = m.to_json();
            if entities {
                let entity = if m.kind == "GROUP" {
                    s.groups.get(&m.value).map(Group::to_json)
                } else {
                    s.users.get(&m.value).map(|u| s.user_json(u))
                };
                if let (Some(obj), Some(e)) = (j.as_object_mut(), entity) {
                    obj.insert("entity".into(), e);
                }
            }
            j
        })
        .collect();
    Ok(h::json(StatusCode::OK, CT, &Value::Array(out)))
}

async fn get_member(AxState(st): S, headers: HeaderMap, Path((gid, mid)): Path<(String, String)>) -> Answer {
    st.authorize(&headers, Need::Read)?;
    let s = st.store();
    let g = s.groups.get(&gid).ok_or_else(|| missing_group(&gid))?;
    let m = g
        .members
        .iter()
        .find(|m| m.value == mid)
        .ok_or_else(|| member_not_found(&gid, &mid))?;
    Ok(h::json(StatusCode::OK, CT, &m.to_json()))
}

async fn add_member(AxState(st): S, headers: HeaderMap, Path(gid): Path<String>, body: Bytes) -> Answer {
    st.authorize(&headers, Need::Members)?;
    st.write_pause().await;
    let body = h::parse_json(&body).map_err(bad_json)?;
    let wrapped = json!({"members": [body]});
    let (member, _) = parse_members(&wrapped)?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("Group member must have a value"))?;
    let mut s = st.store();
    if !s.groups.contains(&gid) {
        return Err(missing_group(&gid));
    }
    if !s.member_exists(&member) {
        return Err(uaa_error(
            StatusCode::NOT_FOUND,
            "scim_resource_not_found",
            &format!(
                "{} {} does not exist",
                if member.kind == "GROUP" { "Group" } else { "User" },
                member.value
            ),
        ));
    }
    let g = s.groups.get_mut(&gid).ok_or_else(|| missing_group(&gid))?;
    if g.members.iter().any(|m| m.value == member.value) {
        return Err(uaa_error(
            StatusCode::CONFLICT,
            "member_already_exists",
            &format!("Member {} already exists in group {gid}", member.value),
        ));
    }
    g.members.push(member.clone());
    Ok(h::json(StatusCode::CREATED, CT, &member.to_json()))
}

async fn remove_member(AxState(st): S, headers: HeaderMap, Path((gid, mid)): Path<(String, String)>) -> Answer {
    st.authorize(&headers, Need::Members)?;
    st.write_pause().await;
    let mut s = st.store();
    let g = s.groups.get_mut(&gid).ok_or_else(|| missing_group(&gid))?;
    let pos = g
        .members
        .iter()
        .position(|m| m.value == mid)
        .ok_or_else(|| member_not_found(&gid, &mid))?;
    let m = g.members.remove(pos);
    Ok(h::json(StatusCode::OK, CT, &m.to_json()))
}

async fn not_found() -> Response {
    uaa_error(StatusCode::NOT_FOUND, "not_found", "Not Found")
}

fn limited(path: &str) -> bool {
    path.starts_with("/Users") || path.starts_with("/Groups")
}

fn too_many(retry_after: u64) -> Response {
    let resp = uaa_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Rate limit exceeded: 3 requests per second per subaccount",
    );
    h::with_header(resp, "retry-after", &retry_after.to_string())
}

/// The UAA router over `state` (token endpoint, `/Users`, `/Groups`, members API), with request
/// statistics and the configured rate limit.
pub fn router(state: State) -> Router {
    let gate = Arc::new(Gate {
        stats: state.0.stats.clone(),
        limiter: state.0.options.rate_limit_per_second.map(|r| {
            RateLimiter::new(Limit::PerSecond {
                per_second: r,
                queue: state.0.options.rate_limit_queue,
            })
        }),
        limited,
        reject: too_many,
    });
    Router::new()
        .route("/oauth/token", post(token))
        .route("/Users", get(list_users).post(create_user_h))
        .route(
            "/Users/{id}",
            get(get_user).put(put_user).patch(patch_user).delete(delete_user_h),
        )
        .route("/Groups", get(list_groups).post(create_group_h))
        .route(
            "/Groups/{id}",
            get(get_group).put(put_group).patch(patch_group).delete(delete_group),
        )
        .route("/Groups/{id}/members", get(list_members).post(add_member))
        .route("/Groups/{id}/members/{member}", get(get_member).delete(remove_member))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(gate, server::gate))
        .with_state(state)
}

/// A running UAA simulator. Dereferences to its [`State`]; stops when dropped.
pub struct Simulator {
    /// The API base URL (connector property `URL`), e.g. `http://127.0.0.1:41234`.
    pub base_url: String,
    /// The token endpoint (`OAuth2TokenServiceURL`): `{base_url}/oauth/token`.
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

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}

/// Starts a UAA simulator on `127.0.0.1:0`.
pub async fn spawn(options: Options) -> std::io::Result<Simulator> {
    spawn_on(options, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a UAA simulator on `listen`.
pub async fn spawn_on(options: Options, listen: SocketAddr) -> std::io::Result<Simulator> {
    let state = State::new(options);
    let running = server::serve(router(state.clone()), listen).await?;
    let base_url = format!("http://{}", running.addr);
    *state.0.issuer.lock().unwrap_or_else(|p| p.into_inner()) = format!("{base_url}/oauth/token");
    Ok(Simulator {
        token_url: Some(format!("{base_url}/oauth/token")),
        base_url,
        addr: running.addr,
        state,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Client;

    async fn setup(options: Options) -> (Simulator, Client, String) {
        let sim = spawn(options).await.expect("spawn");
        let client = Client::new();
        let o = sim.options().clone();
        let resp = client
            .post(sim.token_url.clone().unwrap())
            .basic_auth(&o.client_id, Some(&o.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        (sim, client, token)
    }

    async fn call(
        c: &Client,
        m: reqwest::Method,
        url: String,
        token: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        let mut rb = c.request(m, url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        if let Some(v) = if_match {
            rb = rb.header("If-Match", v);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    use reqwest::Method as M;

    #[tokio::test]
    async fn token_endpoint() {
        let sim = spawn(Options::default()).await.unwrap();
        let c = Client::new();
        let url = sim.token_url.clone().unwrap();
        // Credentials as form fields, scope subset.
        let r = c
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sb-provisio!t1"),
                ("client_secret", "provisio-secret"),
                ("scope", "scim.read"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["token_type"], "bearer");
        assert_eq!(b["expires_in"], 43199);
        assert_eq!(b["scope"], "scim.read");
        assert!(b["jti"].is_string());
        assert_eq!(b["access_token"].as_str().unwrap().split('.').count(), 3);
        // Bad credentials.
        let r = c
            .post(&url)
            .basic_auth("sb-provisio!t1", Some("nope"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            b,
            json!({"error_description": "Bad credentials", "error": "unauthorized"})
        );
        // Unknown scope, missing and unsupported grant types.
        let r = c
            .post(&url)
            .basic_auth("sb-provisio!t1", Some("provisio-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "uaa.admin")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
        let r = c
            .post(&url)
            .basic_auth("sb-provisio!t1", Some("provisio-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .post(&url)
            .basic_auth("sb-provisio!t1", Some("provisio-secret"))
            .form(&[("grant_type", "password")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    }

    #[tokio::test]
    async fn scim_calls_need_a_valid_token_and_scope() {
        let (sim, c, token) = setup(Options::default()).await;
        let r = c.get(format!("{}/Users", sim.base_url)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"UAA\"")
        );
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
        let (st, _, b) = call(&c, M::GET, format!("{}/Users", sim.base_url), "garbage", None, None).await;
        assert_eq!((st, b["error"].as_str()), (401, Some("invalid_token")));
        let (st, _, _) = call(&c, M::GET, format!("{}/Users", sim.base_url), &token, None, None).await;
        assert_eq!(st, 200);
        // A token with only uaa.resource may not read users.
        let r = c
            .post(sim.token_url.clone().unwrap())
            .basic_auth("sb-provisio!t1", Some("provisio-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "uaa.resource")])
            .send()
            .await
            .unwrap();
        let weak = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, b) = call(&c, M::GET, format!("{}/Users", sim.base_url), &weak, None, None).await;
        assert_eq!((st, b["error"].as_str()), (403, Some("insufficient_scope")));
        // Revoked tokens stop working; zone header must match.
        let r = c
            .get(format!("{}/Users", sim.base_url))
            .bearer_auth(&token)
            .header("X-Identity-Zone-Id", "uaa")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .get(format!("{}/Users", sim.base_url))
            .bearer_auth(&token)
            .header("X-Identity-Zone-Id", "other")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        sim.revoke_tokens();
        let (st, _, _) = call(&c, M::GET, format!("{}/Users", sim.base_url), &token, None, None).await;
        assert_eq!(st, 401);
        assert!(sim.stats().requests() >= 8);
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let (sim, c, token) = setup(Options {
            token_validity: Duration::from_millis(300),
            ..Options::default()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (st, _, b) = call(&c, M::GET, format!("{}/Users", sim.base_url), &token, None, None).await;
        assert_eq!((st, b["error"].as_str()), (401, Some("invalid_token")));
    }

    #[tokio::test]
    async fn list_paging_sorting_filtering() {
        let (sim, c, token) = setup(Options {
            users: 250,
            groups: 5,
            ..Options::default()
        })
        .await;
        assert_eq!(sim.user_count(), 250);
        let mut seen = HashSet::new();
        let mut start = 1;
        loop {
            let (st, _, b) = call(
                &c,
                M::GET,
                format!("{}/Users?startIndex={start}&count=100", sim.base_url),
                &token,
                None,
                None,
            )
            .await;
            assert_eq!(st, 200);
            assert_eq!(b["schemas"], json!([SCHEMA]));
            assert_eq!(b["totalResults"], 250);
            assert_eq!(b["itemsPerPage"], 100, "UAA echoes the requested count");
            assert!(b.get("Resources").is_none());
            let page = b["resources"].as_array().unwrap();
            for u in page {
                assert!(seen.insert(u["id"].as_str().unwrap().to_string()));
                assert_eq!(u["emails"].as_array().unwrap().len(), 1);
                assert!(u["meta"]["version"].is_u64());
                assert!(!u["groups"].as_array().unwrap().is_empty());
            }
            if page.len() < 100 {
                break;
            }
            start += 100;
        }
        assert_eq!(seen.len(), 250);
        // Default count 100, cap 500.
        let (_, _, b) = call(&c, M::GET, format!("{}/Users", sim.base_url), &token, None, None).await;
        assert_eq!(b["resources"].as_array().unwrap().len(), 100);
        let (_, _, b) = call(
            &c,
            M::GET,
            format!("{}/Users?count=5000", sim.base_url),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(
            (b["itemsPerPage"].as_u64(), b["resources"].as_array().unwrap().len()),
            (Some(500), 250)
        );
        // Filter: userName case-insensitive.
        let name = sim.users()[7]["userName"].as_str().unwrap().to_uppercase();
        let url = format!(
            "{}/Users?filter={}",
            sim.base_url,
            urlenc(&format!("userName eq \"{name}\" and origin eq \"uaa\""))
        );
        let (_, _, b) = call(&c, M::GET, url, &token, None, None).await;
        assert_eq!(b["totalResults"], 1);
        // Sorting.
        let (_, _, b) = call(
            &c,
            M::GET,
            format!(
                "{}/Users?sortBy=userName&sortOrder=descending&count=3&attributes=userName,id",
                sim.base_url
            ),
            &token,
            None,
            None,
        )
        .await;
        let names: Vec<String> = b["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_lowercase())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.reverse();
        assert_eq!(names, sorted);
        assert_eq!(b["resources"][0].as_object().unwrap().len(), 2, "attributes projects");
        // Bad and unsupported filters.
        for f in [
            "userName eq",
            "userName ne \"x\"",
            "nosuch eq \"x\"",
            "userName eq \"a\" \"b\"",
        ] {
            let (st, _, b) = call(
                &c,
                M::GET,
                format!("{}/Users?filter={}", sim.base_url, urlenc(f)),
                &token,
                None,
                None,
            )
            .await;
            assert_eq!((st, b["error"].as_str()), (400, Some("scim")), "{f}");
            assert!(
                b["error_description"]
                    .as_str()
                    .unwrap()
                    .starts_with("Invalid filter expression: [")
            );
        }
        let (_, _, b) = call(
            &c,
            M::GET,
            format!("{}/Users?filter={}", sim.base_url, urlenc("userName eq \"x")),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(
            b["error_description"],
            "Invalid filter expression: [userName eq &quot;x] [created]"
        );
        let (st, _, _) = call(
            &c,
            M::GET,
            format!("{}/Users?count=abc", sim.base_url),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(st, 400);
        // Filter on groups.
        let (_, _, b) = call(
            &c,
            M::GET,
            format!("{}/Groups?filter={}", sim.base_url, urlenc("displayName sw \"sales\"")),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(b["totalResults"], 1);
    }

    fn urlenc(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[tokio::test]
    async fn user_name_lookups_follow_renames_deletes_and_origins() {
        let (sim, c, token) = setup(Options {
            users: 30,
            ..Options::default()
        })
        .await;
        let lookup = |name: &str| {
            let url = format!(
                "{}/Users?filter={}",
                sim.base_url,
                urlenc(&format!("userName eq \"{name}\""))
            );
            let (c, token) = (c.clone(), token.clone());
            async move {
                let (st, _, b) = call(&c, M::GET, url, &token, None, None).await;
                assert_eq!(st, 200, "{b}");
                b["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| {
                        (
                            u["id"].as_str().unwrap().to_string(),
                            u["origin"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        // The same name in two origins: both, in creation order; any ASCII case.
        let a = sim
            .insert_user(json!({"userName": "Twin", "emails": [{"value": "t1@example.com"}], "origin": "idp1"}))
            .unwrap();
        let b = sim
            .insert_user(json!({"userName": "twin", "emails": [{"value": "t2@example.com"}], "origin": "idp2"}))
            .unwrap();
        let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
        let both = vec![(a.to_string(), "idp1".to_string()), (b.to_string(), "idp2".to_string())];
        assert_eq!(lookup("TWIN").await, both);
        assert_eq!(sim.user_by_name("tWiN").unwrap()["id"], a);
        // A rename moves the user from one name to the other.
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{}/Users/{a}", sim.base_url),
            &token,
            Some(json!({"userName": "renamed", "emails": [{"value": "t1@example.com"}], "origin": "idp1"})),
            Some("*"),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(lookup("twin").await, vec![both[1].clone()]);
        assert_eq!(lookup("Renamed").await, vec![both[0].clone()]);
        assert_eq!(sim.user_by_name("twin").unwrap()["id"], b);
        // A delete removes it from the lookups; paging still sees every other user once.
        assert!(sim.remove_user(b));
        assert!(lookup("twin").await.is_empty());
        assert!(sim.user_by_name("twin").is_none());
        let first = sim.users()[0]["id"].as_str().unwrap().to_string();
        assert!(sim.remove_user(&first));
        let mut ids = Vec::new();
        for start in [1, 8, 15, 22, 29] {
            let (_, _, page) = call(
                &c,
                M::GET,
                format!("{}/Users?startIndex={start}&count=7", sim.base_url),
                &token,
                None,
                None,
            )
            .await;
            assert_eq!(page["totalResults"], 30);
            ids.extend(
                page["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["id"].as_str().unwrap().to_string()),
            );
        }
        let all: Vec<String> = sim
            .users()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, all);
    }

    #[tokio::test]
    async fn user_lifecycle_and_if_match() {
        let (sim, c, token) = setup(Options::default()).await;
        let base = sim.base_url.clone();
        let body = json!({"userName": "Jane.Doe", "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "home@x.org"}, {"value": "jane@x.com", "primary": true}], "id": "ignored", "groups": [{"value": "x"}]});
        let (st, hd, u) = call(&c, M::POST, format!("{base}/Users"), &token, Some(body.clone()), None).await;
        assert_eq!(st, 201);
        assert_eq!(hd["etag"], "\"0\"");
        assert_eq!(hd["content-type"], "application/json;charset=UTF-8");
        assert_ne!(u["id"], "ignored");
        assert_eq!(u["emails"], json!([{"value": "jane@x.com", "primary": true}]));
        assert_eq!((u["origin"].as_str(), u["zoneId"].as_str()), (Some("uaa"), Some("uaa")));
        assert_eq!(u["meta"]["version"], 0);
        assert_eq!(u["groups"], json!([]));
        assert!(u["meta"].get("location").is_none());
        let id = u["id"].as_str().unwrap().to_string();
        // Duplicate (case-insensitive) in the same origin; fine in another origin.
        let (st, _, e) = call(
            &c,
            M::POST,
            format!("{base}/Users"),
            &token,
            Some(json!({"userName": "jane.doe", "emails": [{"value": "a@b"}]})),
            None,
        )
        .await;
        assert_eq!(
            (st, e["error"].as_str(), e["user_id"].as_str()),
            (409, Some("scim_resource_already_exists"), Some(id.as_str()))
        );
        let (st, _, other) = call(
            &c,
            M::POST,
            format!("{base}/Users"),
            &token,
            Some(json!({"userName": "jane.doe", "origin": "sap.custom", "emails": [{"value": "a@b"}]})),
            None,
        )
        .await;
        assert_eq!(st, 201);
        let (st, _, e) = call(
            &c,
            M::POST,
            format!("{base}/Users"),
            &token,
            Some(json!({"userName": "nomail"})),
            None,
        )
        .await;
        assert_eq!((st, e["error"].as_str()), (400, Some("invalid_scim_resource")));
        // Malformed JSON.
        let r = c
            .post(format!("{base}/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "scim");
        // PUT without, with stale, with current and with `*` If-Match.
        let mut put = u.clone();
        put["name"]["givenName"] = json!("Janet");
        let (st, _, e) = call(
            &c,
            M::PUT,
            format!("{base}/Users/{id}"),
            &token,
            Some(put.clone()),
            None,
        )
        .await;
        assert_eq!(
            (st, e["error_description"].as_str()),
            (400, Some("Missing If-Match for PUT"))
        );
        let (st, hd, u1) = call(
            &c,
            M::PUT,
            format!("{base}/Users/{id}"),
            &token,
            Some(put.clone()),
            Some("\"0\""),
        )
        .await;
        assert_eq!((st, hd["etag"].to_str().unwrap()), (200, "\"1\""));
        assert_eq!(u1["name"]["givenName"], "Janet");
        let (st, _, e) = call(
            &c,
            M::PUT,
            format!("{base}/Users/{id}"),
            &token,
            Some(put.clone()),
            Some("\"0\""),
        )
        .await;
        assert_eq!((st, e["error"].as_str()), (409, Some("scim_resource_conflict")));
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{base}/Users/{id}"),
            &token,
            Some(put.clone()),
            Some("*"),
        )
        .await;
        assert_eq!(st, 200);
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{base}/Users/{id}"),
            &token,
            Some(put.clone()),
            Some("W/\"2\""),
        )
        .await;
        assert_eq!(st, 400);
        // Origin is immutable; renaming onto a taken userName conflicts.
        let mut moved = put.clone();
        moved["origin"] = json!("ldap");
        let (st, _, _) = call(&c, M::PUT, format!("{base}/Users/{id}"), &token, Some(moved), Some("*")).await;
        assert_eq!(st, 400);
        // PATCH: partial object plus meta.attributes to clear.
        let (st, hd, p) = call(
            &c,
            M::PATCH,
            format!("{base}/Users/{id}"),
            &token,
            Some(json!({"active": false, "meta": {"attributes": ["name.givenName"]}})),
            Some("\"2\""),
        )
        .await;
        assert_eq!((st, hd["etag"].to_str().unwrap()), (200, "\"3\""));
        assert_eq!(p["active"], false);
        assert!(p["name"].get("givenName").is_none());
        assert_eq!(p["name"]["familyName"], "Doe");
        assert_eq!(p["userName"], "Jane.Doe");
        let (st, _, _) = call(
            &c,
            M::PATCH,
            format!("{base}/Users/{id}"),
            &token,
            Some(json!({"active": true})),
            None,
        )
        .await;
        assert_eq!(st, 400);
        // DELETE answers 200 with the user; then 404.
        let (st, _, d) = call(&c, M::DELETE, format!("{base}/Users/{id}"), &token, None, None).await;
        assert_eq!((st, d["id"].as_str()), (200, Some(id.as_str())));
        let (st, _, e) = call(&c, M::GET, format!("{base}/Users/{id}"), &token, None, None).await;
        assert_eq!((st, e["error"].as_str()), (404, Some("scim_resource_not_found")));
        assert!(sim.user(other["id"].as_str().unwrap()).is_some());
    }

    #[tokio::test]
    async fn stale_status_is_configurable() {
        let (sim, c, token) = setup(Options {
            users: 1,
            stale_if_match_status: 412,
            ..Options::default()
        })
        .await;
        let u = sim.users()[0].clone();
        let id = u["id"].as_str().unwrap();
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{}/Users/{id}", sim.base_url),
            &token,
            Some(u.clone()),
            Some("\"7\""),
        )
        .await;
        assert_eq!(st, 412);
    }

    #[tokio::test]
    async fn groups_members_api_and_nesting() {
        let (sim, c, token) = setup(Options {
            users: 3,
            ..Options::default()
        })
        .await;
        let base = sim.base_url.clone();
        let users: Vec<String> = sim
            .users()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        let (st, hd, g) = call(&c, M::POST, format!("{base}/Groups"), &token,
            Some(json!({"displayName": "Admins", "description": "d", "members": [{"value": users[0], "type": "USER", "origin": "uaa"}]})), None).await;
        assert_eq!((st, hd["etag"].to_str().unwrap()), (201, "\"0\""));
        assert_eq!(g["schemas"], json!([SCHEMA]));
        let gid = g["id"].as_str().unwrap().to_string();
        let (st, _, e) = call(
            &c,
            M::POST,
            format!("{base}/Groups"),
            &token,
            Some(json!({"displayName": "admins"})),
            None,
        )
        .await;
        assert_eq!((st, e["error"].as_str()), (409, Some("scim_resource_already_exists")));
        // Members API.
        let (st, _, m) = call(
            &c,
            M::POST,
            format!("{base}/Groups/{gid}/members"),
            &token,
            Some(json!({"origin": "uaa", "type": "USER", "value": users[1]})),
            None,
        )
        .await;
        assert_eq!((st, m["value"].as_str()), (201, Some(users[1].as_str())));
        let (st, _, e) = call(
            &c,
            M::POST,
            format!("{base}/Groups/{gid}/members"),
            &token,
            Some(json!({"origin": "uaa", "type": "USER", "value": users[1]})),
            None,
        )
        .await;
        assert_eq!((st, e["error"].as_str()), (409, Some("member_already_exists")));
        let (st, _, _) = call(
            &c,
            M::POST,
            format!("{base}/Groups/{gid}/members"),
            &token,
            Some(json!({"type": "USER", "value": "nobody"})),
            None,
        )
        .await;
        assert_eq!(st, 404);
        let (st, _, list) = call(&c, M::GET, format!("{base}/Groups/{gid}/members"), &token, None, None).await;
        assert_eq!(st, 200);
        assert_eq!(list.as_array().unwrap().len(), 2, "bare array");
        let (_, _, list) = call(
            &c,
            M::GET,
            format!("{base}/Groups/{gid}/members?returnEntities=true"),
            &token,
            None,
            None,
        )
        .await;
        assert!(list[0]["entity"]["userName"].is_string());
        let (st, _, m) = call(
            &c,
            M::DELETE,
            format!("{base}/Groups/{gid}/members/{}", users[1]),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!((st, m["value"].as_str()), (200, Some(users[1].as_str())));
        let (st, _, e) = call(
            &c,
            M::GET,
            format!("{base}/Groups/{gid}/members/{}", users[1]),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!((st, e["error"].as_str()), (404, Some("member_not_found")));
        // Nested group: users[0] is INDIRECT member of Outer.
        let (_, _, outer) = call(
            &c,
            M::POST,
            format!("{base}/Groups"),
            &token,
            Some(json!({"displayName": "Outer", "members": [{"value": gid, "type": "GROUP"}]})),
            None,
        )
        .await;
        let u0 = sim.user(&users[0]).unwrap();
        let kinds: HashSet<(String, String)> = u0["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["display"].as_str().unwrap().to_string(),
                    g["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(kinds.contains(&("Admins".into(), "DIRECT".into())));
        assert!(kinds.contains(&("Outer".into(), "INDIRECT".into())));
        // PATCH group: add one, delete one, clear description.
        let (st, hd, p) = call(
            &c,
            M::PATCH,
            format!("{base}/Groups/{gid}"),
            &token,
            Some(json!({
            "members": [{"value": users[2], "type": "USER"}, {"value": users[0], "operation": "delete"}],
            "meta": {"attributes": ["description"]}})),
            Some("\"0\""),
        )
        .await;
        assert_eq!((st, hd["etag"].to_str().unwrap()), (200, "\"1\""));
        assert_eq!(
            p["members"],
            json!([{"origin": "uaa", "type": "USER", "value": users[2]}])
        );
        assert!(p.get("description").is_none());
        // PUT replaces members; needs If-Match.
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{base}/Groups/{gid}"),
            &token,
            Some(json!({"displayName": "Admins"})),
            None,
        )
        .await;
        assert_eq!(st, 400);
        let (st, _, p) = call(
            &c,
            M::PUT,
            format!("{base}/Groups/{gid}"),
            &token,
            Some(json!({"displayName": "Admins2", "members": []})),
            Some("1"),
        )
        .await;
        assert_eq!((st, p["members"].as_array().map(Vec::len)), (200, Some(0)));
        // Deleting a user removes its memberships; deleting a group answers 200 with it.
        call(
            &c,
            M::POST,
            format!("{base}/Groups/{gid}/members"),
            &token,
            Some(json!({"value": users[2]})),
            None,
        )
        .await;
        call(&c, M::DELETE, format!("{base}/Users/{}", users[2]), &token, None, None).await;
        assert_eq!(sim.member_ids(&gid).unwrap(), Vec::<String>::new());
        let (st, _, d) = call(&c, M::DELETE, format!("{base}/Groups/{gid}"), &token, None, None).await;
        assert_eq!((st, d["displayName"].as_str()), (200, Some("Admins2")));
        assert_eq!(sim.group(outer["id"].as_str().unwrap()).unwrap()["members"], json!([]));
    }

    #[tokio::test]
    async fn rate_limit_answers_429_with_retry_after() {
        let (sim, c, token) = setup(Options {
            rate_limit_per_second: Some(BTP_RATE_LIMIT_PER_SECOND),
            ..Options::default()
        })
        .await;
        let mut statuses = Vec::new();
        let mut retry = None;
        for _ in 0..5 {
            let r = c
                .get(format!("{}/Users", sim.base_url))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            if r.status() == 429 {
                retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            }
        }
        assert_eq!(&statuses[..3], &[200, 200, 200]);
        assert!(statuses[3..].contains(&429));
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(sim.stats().throttled() >= 1);
        // The token endpoint is not limited.
        let r = c
            .post(sim.token_url.clone().unwrap())
            .basic_auth("sb-provisio!t1", Some("provisio-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = c
            .get(format!("{}/Users", sim.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn writes_take_the_write_latency_side_by_side() {
        const WRITES: u32 = 8;
        let latency = Duration::from_millis(150);
        let (sim, c, t) = setup(Options {
            write_latency: latency,
            ..Default::default()
        })
        .await;
        let users = format!("{}/Users", sim.base_url);
        let started = std::time::Instant::now();
        let creates = (0..WRITES).map(|i| {
            let body = json!({"userName": format!("slow{i}"), "emails": [{"value": format!("slow{i}@example.com")}]});
            call(&c, M::POST, users.clone(), &t, Some(body), None)
        });
        for (status, _, _) in futures::future::join_all(creates).await {
            assert_eq!(status, 201);
        }
        let took = started.elapsed();
        assert!(took >= latency, "{took:?}");
        // One after another they would take WRITES × the latency.
        assert!(took < WRITES * latency, "the writes waited one after another: {took:?}");
        assert_eq!(sim.user_count(), WRITES as usize);
    }

    #[tokio::test]
    async fn a_pause_ends_at_its_latency_not_at_the_next_timer_tick() {
        // Tokio's timers alone end a 5 ms sleep 5–6 ms later, by the phase of the millisecond tick the sleep
        // starts in; a backend's latency is what it says. Both are started at every phase of the tick (a
        // thread sleep first: a tokio one would end on a tick), and compared in the same run.
        let latency = Duration::from_millis(5);
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (mut paused, mut slept) = (Vec::new(), Vec::new());
        for i in 0..40u64 {
            std::thread::sleep(Duration::from_micros(i * 97 % 1000));
            let started = std::time::Instant::now();
            pause(latency).await;
            paused.push(started.elapsed());
            std::thread::sleep(Duration::from_micros(i * 89 % 1000));
            let started = std::time::Instant::now();
            tokio::time::sleep(latency).await;
            slept.push(started.elapsed());
        }
        assert!(paused.iter().all(|&p| p >= latency), "a pause ended early: {paused:?}");
        let (paused, slept) = (median(paused), median(slept));
        assert!(
            paused + Duration::from_micros(250) < slept,
            "the pause waited for a timer tick as tokio's sleep does: median {paused:?} against {slept:?}"
        );
    }

    #[tokio::test]
    async fn reads_take_the_read_latency_and_writes_do_not() {
        let latency = Duration::from_millis(40);
        let (sim, c, t) = setup(Options {
            users: 1,
            read_latency: latency,
            ..Default::default()
        })
        .await;
        let id = sim.users()[0]["id"].as_str().expect("id").to_string();
        for url in [
            format!("{}/Users/{id}", sim.base_url),
            format!("{}/Users", sim.base_url),
        ] {
            let started = std::time::Instant::now();
            let (status, _, _) = call(&c, M::GET, url.clone(), &t, None, None).await;
            assert_eq!(status, 200, "{url}");
            assert!(started.elapsed() >= latency, "{url} answered before the read latency");
        }
        let started = std::time::Instant::now();
        let body = json!({"userName": "fast", "emails": [{"value": "fast@example.com"}]});
        let (status, _, _) = call(&c, M::POST, format!("{}/Users", sim.base_url), &t, Some(body), None).await;
        assert_eq!(status, 201);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn router_serves_without_spawn() {
        use tower::ServiceExt;
        let state = State::new(Options {
            users: 2,
            ..Options::default()
        });
        let resp = router(state.clone())
            .oneshot(
                axum::http::Request::get("/Users")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(state.stats().requests(), 1);
        assert!(
            state
                .insert_user(json!({"userName": "x", "emails": [{"value": "x@y"}]}))
                .is_ok()
        );
        assert!(
            state
                .insert_user(json!({"userName": "X", "emails": [{"value": "x@y"}]}))
                .is_err()
        );
        assert!(state.user_by_name("x").is_some());
        assert_eq!(state.user_count(), 3);
    }

    #[tokio::test]
    async fn projection_paging_edges_and_members_errors() {
        let (sim, c, token) = setup(Options {
            users: 5,
            groups: 1,
            ..Options::default()
        })
        .await;
        let base = sim.base_url.clone();
        let (_, _, b) = call(
            &c,
            M::GET,
            format!("{base}/Users?attributes=userName,emails.value,givenName&count=1"),
            &token,
            None,
            None,
        )
        .await;
        let r = &b["resources"][0];
        assert!(r["userName"].is_string());
        assert!(r["emails.value"].as_array().is_some_and(|a| a.len() == 1), "{r}");
        assert!(r["givenName"].is_string());
        let (_, _, b) = call(&c, M::GET, format!("{base}/Users?count=0"), &token, None, None).await;
        assert_eq!(
            (b["resources"].as_array().map(Vec::len), b["totalResults"].as_u64()),
            (Some(0), Some(5))
        );
        let (_, _, b) = call(&c, M::GET, format!("{base}/Users?startIndex=99"), &token, None, None).await;
        assert_eq!(
            (b["resources"].as_array().map(Vec::len), b["startIndex"].as_u64()),
            (Some(0), Some(99))
        );
        let (_, _, b) = call(
            &c,
            M::GET,
            format!("{base}/Users?startIndex=0&sortOrder=whatever&sortBy=userName"),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!(b["startIndex"], 1);
        let names: Vec<&str> = b["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap())
            .collect();
        assert!(
            names.windows(2).all(|w| w[0].to_lowercase() >= w[1].to_lowercase()),
            "anything but 'ascending' sorts descending"
        );
        let (st, _, e) = call(&c, M::GET, format!("{base}/Groups/nope/members"), &token, None, None).await;
        assert_eq!((st, e["error"].as_str()), (404, Some("scim_resource_not_found")));
        let gid = sim.groups()[0]["id"].as_str().unwrap().to_string();
        let r = c
            .post(format!("{base}/Groups/{gid}/members"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "scim");
        // meta.attributes clears all members.
        let (st, _, g) = call(
            &c,
            M::PATCH,
            format!("{base}/Groups/{gid}"),
            &token,
            Some(json!({"meta": {"attributes": ["members"]}})),
            Some("*"),
        )
        .await;
        assert_eq!((st, g["members"].as_array().map(Vec::len)), (200, Some(0)));
        assert!(sim.users().iter().all(|u| u["groups"] == json!([])));
        assert!(
            sim.insert_user(json!({"userName": "no-mail"}))
                .unwrap_err()
                .contains("email")
        );
    }

    #[tokio::test]
    async fn dropping_the_simulator_stops_it() {
        let sim = spawn(Options::default()).await.unwrap();
        let url = format!("{}/Users", sim.base_url);
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 401);
        sim.shutdown().await;
        assert!(reqwest::get(&url).await.is_err());
        let sim = spawn(Options::default()).await.unwrap();
        let url = format!("{}/Users", sim.base_url);
        drop(sim);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(reqwest::get(&url).await.is_err());
    }

    #[tokio::test]
    async fn xsuaa_role_collections_are_addressed_by_name() {
        let (sim, c, token) = setup(Options {
            users: 1,
            xsuaa_group_ids: true,
            ..Options::default()
        })
        .await;
        let base = sim.base_url.clone();
        let (st, _, g) = call(
            &c,
            M::POST,
            format!("{base}/Groups"),
            &token,
            Some(json!({"displayName": "Subaccount Viewer"})),
            None,
        )
        .await;
        assert_eq!((st, g["id"].as_str()), (201, Some("Subaccount Viewer")));
        let (st, _, g) = call(
            &c,
            M::GET,
            format!("{base}/Groups/Subaccount%20Viewer"),
            &token,
            None,
            None,
        )
        .await;
        assert_eq!((st, g["displayName"].as_str()), (200, Some("Subaccount Viewer")));
        let uid = sim.users()[0]["id"].as_str().unwrap().to_string();
        let (st, _, _) = call(
            &c,
            M::POST,
            format!("{base}/Groups/Subaccount%20Viewer/members"),
            &token,
            Some(json!({"value": uid, "origin": "uaa", "type": "USER"})),
            None,
        )
        .await;
        assert_eq!(st, 201);
        let (st, _, _) = call(
            &c,
            M::PUT,
            format!("{base}/Groups/Subaccount%20Viewer"),
            &token,
            Some(json!({"displayName": "Renamed"})),
            Some("*"),
        )
        .await;
        assert_eq!(st, 400);
    }
}
