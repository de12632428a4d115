//! SAP Cloud Identity Services – Identity Authentication (IAS) SCIM simulator.
//!
//! One tenant, seen through both APIs the IAS connector uses (`ias.api.version`):
//!
//! * **v2, Identity Directory** `/scim/Users|Groups`: UUID ids, SCIM 2.0 (`Resources`,
//!   `application/scim+json`, SCIM error bodies), user extension
//!   `urn:ietf:params:scim:schemas:extension:sap:2.0:User` (`userUuid`, `userId` = the legacy id,
//!   `mailVerified`, `status`, `emails[].verified`, `passwordDetails`), the enterprise and custom
//!   extensions kept as sent; groups carry `urn:sap:cloud:scim:schemas:extension:custom:2.0:Group`
//!   (`name`, `description`, `additionalId` = legacy id) and `…:sap:2.0:Group` (`type`,
//!   `supportedOperations`). A user's `groups` is read-only: membership changes go through
//!   `PATCH /scim/Groups/{id}` (RFC 7644 `members` add/remove, including
//!   `members[value eq "…"]`), at most [`Options::max_members_removed_per_patch`] removed per
//!   request (50: "IAS removes max 50 members per PATCH", ips-behaviour §2.4).
//! * `POST /scim/Bulk` (RFC 7644 §3.7, at most [`Options::max_bulk_operations`], `bulkId`
//!   references resolved).
//! * **v1, deprecated** `/service/scim/Users|Groups`: legacy ids (`P000123` for users, 24 hex
//!   digits for groups), flat `userUuid`/`mailVerified`/`passwordStatus`, writable user
//!   `groups`, filters limited to `eq` and `and`, no PATCH.
//! * Paging by index (`startIndex`/`count`, default and maximum 100) or by id (`startId=initial`,
//!   then the `nextId` of each answer until it is `end`).
//! * Basic authentication with the client id/secret (also a bearer token from
//!   `POST /oauth2/token`), 401 otherwise; 409 `uniqueness` on a duplicate `userName`, e-mail
//!   ([`Options::unique_emails`]) or group `displayName`/name; DELETE → 204.
//! * Throttling as documented (rate-limiting-and-throttling-e22ee47): up to N requests a minute
//!   served, up to [`Options::throttle_hard_limit_per_minute`] delayed by 1 s, beyond that 429
//!   with `Retry-After` for 60 s.
//! * Real-Time Provisioning ([`Options::realtime_targets`], [`State::add_realtime_target`]): every
//!   user create/update/delete received through either API (and group changes, for Identity
//!   Provisioning targets) is pushed asynchronously to the configured targets — an Identity
//!   Provisioning real-time API or SAP Jam — except to a target whose loop guard names the client
//!   that made the change. See the [`realtime`] module for the protocol and [`State::pushes`] for the
//!   outcomes.

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

use super::common::auth::{Tokens, client_auth};
use super::common::filter::{self, AttrPath, Dialect, Eval, Filter, Op, get_ci};
use super::common::http::{self as h, Params, scim_error};
use super::common::paging;
use super::common::patch::{self, Rules};
use super::common::rate::{Limit, RateLimiter};
use super::common::seed;
use super::common::server::{self, Gate, Running};
use super::common::stats::Stats;
use super::common::store::Table;
use super::common::time::{format_millis, now_millis};

pub mod realtime;

use realtime::{Change, Entity, Event, Realtime};
pub use realtime::{PushRecord, RealtimeAuth, RealtimeKind, RealtimeRetry, RealtimeTarget};

const CT: &str = "application/scim+json;charset=UTF-8";
/// SCIM 2.0 core user schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// SCIM 2.0 core group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The SAP user extension of the Identity Directory.
pub const SAP_USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:User";
/// The SAP group extension of the Identity Directory.
pub const SAP_GROUP_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:Group";
/// The custom group extension (`name`, `description`, `additionalId`/`groupId`).
pub const CUSTOM_GROUP_EXT: &str = "urn:sap:cloud:scim:schemas:extension:custom:2.0:Group";
/// The enterprise user extension.
pub const ENTERPRISE_EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The documented SCIM throttling threshold (requests per minute served without delay).
pub const DOCUMENTED_RATE_LIMIT_PER_MINUTE: u32 = 200;

/// How to start an IAS simulator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Users to seed (userName, given/family name, work e-mail primary, some with a home e-mail,
    /// enterprise extension with employeeNumber and department).
    pub users: usize,
    /// Groups to seed, with members.
    pub groups: usize,
    /// SCIM requests a minute served without delay; `None` = unlimited. IAS documents 200.
    pub rate_limit_per_minute: Option<u32>,
    /// Above this many a minute requests are refused with 429 for [`Options::throttle_block`]
    /// (IAS: 280); `None` = `rate_limit_per_minute * 1.4`.
    pub throttle_hard_limit_per_minute: Option<u32>,
    /// Delay of requests between the two limits (IAS: 1 s).
    pub throttle_delay: Duration,
    /// How long 429 lasts once the hard limit is passed (IAS: 60 s).
    pub throttle_block: Duration,
    /// Basic-auth user (client id of the technical user).
    pub client_id: String,
    /// Its password (client secret).
    pub client_secret: String,
    /// Maximum members a single v2 group PATCH may remove.
    pub max_members_removed_per_patch: usize,
    /// Maximum members a single v2 group PATCH may add (IPS batches at most 20 000 for IAS).
    pub max_members_added_per_patch: usize,
    /// Maximum operations of one `POST /scim/Bulk` (IPS `ias.bulk.operations.max.count`: max 100).
    pub max_bulk_operations: usize,
    /// Whether two users may not share an e-mail (IAS tenant default).
    pub unique_emails: bool,
    /// Seed of the generated data.
    pub seed: u64,
    /// Further technical users (client id, secret) the tenant accepts with Basic and at
    /// `/oauth2/token`, e.g. one for the Identity Provisioning tenant and one for an administrator,
    /// so that the loop guard of a real-time target can tell their changes apart.
    pub other_clients: Vec<(String, String)>,
    /// Real-Time Provisioning targets (indices 0, 1, … in [`State::pushes`]); empty by default.
    /// [`spawn`] refuses invalid ones ([`RealtimeTarget::validate`]).
    pub realtime_targets: Vec<RealtimeTarget>,
    /// How failed pushes are retried (not documented by SAP; modest by default).
    pub realtime_retry: RealtimeRetry,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: 0,
            groups: 0,
            rate_limit_per_minute: None,
            throttle_hard_limit_per_minute: None,
            throttle_delay: Duration::from_secs(1),
            throttle_block: Duration::from_secs(60),
            client_id: "T000001".into(),
            client_secret: "ias-secret".into(),
            max_members_removed_per_patch: 50,
            max_members_added_per_patch: 20_000,
            max_bulk_operations: 100,
            unique_emails: true,
            seed: 1,
            other_clients: Vec::new(),
            realtime_targets: Vec::new(),
            realtime_retry: RealtimeRetry::default(),
        }
    }
}

#[derive(Clone, Debug)]
struct User {
    uuid: String,
    legacy: String,
    /// Client-supplied attributes (core and extensions) without id/meta/groups/schemas.
    data: Map<String, Value>,
    version: u64,
    created: i64,
    last_modified: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct Member {
    uuid: String,
    kind: &'static str,
}

#[derive(Clone, Debug)]
struct Group {
    uuid: String,
    legacy: String,
    display_name: String,
    name: String,
    description: Option<String>,
    external_id: Option<String>,
    members: Vec<Member>,
    version: u64,
    created: i64,
    last_modified: i64,
}

type Memberships<'a> = HashMap<&'a str, Vec<&'a Group>>;

/// A user taken out of the tenant for a while ([`State::take_user`]).
#[derive(Debug)]
pub struct TakenUser(User);

#[derive(Debug, Default)]
struct Store {
    users: Table<User>,
    user_names: HashMap<String, String>,
    emails: HashMap<String, String>,
    user_legacy: HashMap<String, String>,
    groups: Table<Group>,
    group_names: HashMap<String, String>,
    group_custom_names: HashMap<String, String>,
    group_legacy: HashMap<String, String>,
    next_user: u64,
}

struct Inner {
    options: Options,
    store: Mutex<Store>,
    tokens: Tokens,
    stats: Arc<Stats>,
    base_url: Mutex<String>,
    /// Bearer token → the client it was issued to (the initiator of changes made with it).
    token_clients: Mutex<HashMap<String, String>>,
    realtime: Arc<Realtime>,
}

/// The simulator's shared state; cheap to clone. Accessors bypass authentication and limits
/// and return resources in the v2 (Identity Directory) representation.
#[derive(Clone)]
pub struct State(Arc<Inner>);

type Answer = Result<Response, Response>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    V1,
    V2,
}

fn err(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    scim_error(status, scim_type, detail, CT)
}

fn bad(detail: &str) -> Response {
    err(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
}

fn not_found(kind: &str, id: &str) -> Response {
    err(StatusCode::NOT_FOUND, None, &format!("{kind} {id} not found"))
}

fn conflict(detail: &str) -> Response {
    err(StatusCode::CONFLICT, Some("uniqueness"), detail)
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    get_ci(v, key).and_then(Value::as_str).map(str::to_string)
}

fn primary_email(data: &Map<String, Value>) -> Option<String> {
    let emails = data
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("emails"))?
        .1
        .as_array()?;
    let chosen = emails
        .iter()
        .find(|e| get_ci(e, "primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| emails.first())?;
    str_field(chosen, "value")
}

fn user_name(data: &Map<String, Value>) -> Option<String> {
    data.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

fn active(data: &Map<String, Value>) -> bool {
    data.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("active"))
        .and_then(|(_, v)| v.as_bool())
        .unwrap_or(true)
}

fn legacy_group_id(n: u64) -> String {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0005_DEEC_E66D;
    format!("{:08x}{:016x}", 0x5f00_0000 + (n as u32), h)
}

impl Store {
    fn groups_of(&self, uuid: &str) -> Vec<&Group> {
        self.groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m.uuid == uuid))
            .collect()
    }

    /// member UUID → groups it is a direct member of (built once per list request).
    fn index(&self) -> Memberships<'_> {
        let mut idx: Memberships<'_> = HashMap::new();
        for g in self.groups.iter() {
            for m in &g.members {
                idx.entry(m.uuid.as_str()).or_default().push(g);
            }
        }
        idx
    }

    fn groups_in<'a>(&'a self, uuid: &str, idx: Option<&Memberships<'a>>) -> Vec<&'a Group> {
        match idx {
            Some(i) => i.get(uuid).cloned().unwrap_or_default(),
            None => self.groups_of(uuid),
        }
    }

    fn resolve_user(&self, id: &str) -> Option<String> {
        if self.users.contains(id) {
            Some(id.to_string())
        } else {
            self.user_legacy.get(id).cloned()
        }
    }

    fn resolve_group(&self, id: &str) -> Option<String> {
        if self.groups.contains(id) {
            Some(id.to_string())
        } else {
            self.group_legacy.get(id).cloned()
        }
    }

    fn user_v2(&self, u: &User, base: &str) -> Value {
        self.user_v2_in(u, base, None)
    }

    fn user_v2_in(&self, u: &User, base: &str, idx: Option<&Memberships<'_>>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(u.uuid));
        m.insert(
            "meta".into(),
            json!({"created": format_millis(u.created), "lastModified": format_millis(u.last_modified),
                   "location": format!("{base}/scim/Users/{}", u.uuid), "resourceType": "User",
                   "version": format!("W/\"{}\"", u.version)}),
        );
        let mut schemas = vec![json!(USER_SCHEMA), json!(SAP_USER_EXT)];
        for k in u.data.keys() {
            if k.to_ascii_lowercase().starts_with("urn:") && !k.eq_ignore_ascii_case(SAP_USER_EXT) {
                schemas.push(json!(k));
            }
        }
        m.insert("schemas".into(), Value::Array(schemas));
        let mut sap = Map::new();
        for (k, v) in &u.data {
            if k.eq_ignore_ascii_case(SAP_USER_EXT) {
                if let Value::Object(o) = v {
                    sap.extend(o.clone());
                }
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
        if !m.contains_key("userType") {
            m.insert("userType".into(), json!("public"));
        }
        m.insert("active".into(), json!(active(&u.data)));
        let groups: Vec<Value> = self
            .groups_in(&u.uuid, idx)
            .into_iter()
            .map(|g| json!({"value": g.uuid, "display": g.display_name, "$ref": format!("{base}/scim/Groups/{}", g.uuid), "type": "direct"}))
            .collect();
        if !groups.is_empty() {
            m.insert("groups".into(), Value::Array(groups));
        }
        let verified = sap.get("mailVerified").and_then(Value::as_bool).unwrap_or(false);
        let emails: Vec<Value> = u
            .data
            .get("emails")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| str_field(e, "value"))
                    .map(|v| json!({"value": v, "verified": verified}))
                    .collect()
            })
            .unwrap_or_default();
        sap.insert("userUuid".into(), json!(u.uuid));
        sap.insert("userId".into(), json!(u.legacy));
        sap.insert("mailVerified".into(), json!(verified));
        sap.insert(
            "status".into(),
            json!(if active(&u.data) { "active" } else { "inactive" }),
        );
        sap.entry("sourceSystem").or_insert(json!(0));
        sap.insert("emails".into(), Value::Array(emails));
        sap.entry("passwordDetails")
            .or_insert(json!({"status": "disabled", "failedLoginAttempts": 0}));
        m.insert(SAP_USER_EXT.into(), Value::Object(sap));
        Value::Object(m)
    }

    fn user_v1(&self, u: &User, base: &str) -> Value {
        self.user_v1_in(u, base, None)
    }

    fn user_v1_in(&self, u: &User, base: &str, idx: Option<&Memberships<'_>>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(u.legacy));
        m.insert(
            "meta".into(),
            json!({"created": format_millis(u.created), "lastModified": format_millis(u.last_modified),
                   "location": format!("{base}/service/scim/Users/{}", u.legacy), "version": u.version.to_string()}),
        );
        let mut schemas = vec![json!(USER_SCHEMA)];
        let mut verified = false;
        for (k, v) in &u.data {
            if k.eq_ignore_ascii_case(SAP_USER_EXT) {
                verified = get_ci(v, "mailVerified").and_then(Value::as_bool).unwrap_or(false);
                continue;
            }
            if k.to_ascii_lowercase().starts_with("urn:") {
                schemas.push(json!(k));
            }
            m.insert(k.clone(), v.clone());
        }
        m.insert("schemas".into(), Value::Array(schemas));
        m.insert("active".into(), json!(active(&u.data)));
        m.entry("userType").or_insert(json!("public"));
        m.insert("userUuid".into(), json!(u.uuid));
        m.insert("mailVerified".into(), json!(verified));
        m.insert("passwordStatus".into(), json!("disabled"));
        let groups: Vec<Value> = self
            .groups_in(&u.uuid, idx)
            .into_iter()
            .map(|g| json!({"value": g.name, "display": g.display_name}))
            .collect();
        if !groups.is_empty() {
            m.insert("groups".into(), Value::Array(groups));
        }
        Value::Object(m)
    }

    fn group_v2(&self, g: &Group, base: &str) -> Value {
        let members: Vec<Value> = g
            .members
            .iter()
            .map(|m| {
                let display = if m.kind == "Group" {
                    self.groups.get(&m.uuid).map(|x| x.display_name.clone())
                } else {
                    self.users.get(&m.uuid).and_then(|u| user_name(&u.data))
                };
                let path = if m.kind == "Group" { "Groups" } else { "Users" };
                let mut j = json!({"value": m.uuid, "type": m.kind, "$ref": format!("{base}/scim/{path}/{}", m.uuid)});
                if let (Some(d), Some(o)) = (display, j.as_object_mut()) {
                    o.insert("display".into(), json!(d));
                }
                j
            })
            .collect();
        let mut custom = json!({"name": g.name, "additionalId": g.legacy});
        if let (Some(d), Some(o)) = (&g.description, custom.as_object_mut()) {
            o.insert("description".into(), json!(d));
        }
        let mut v = json!({
            "id": g.uuid,
            "meta": {"created": format_millis(g.created), "lastModified": format_millis(g.last_modified),
                     "location": format!("{base}/scim/Groups/{}", g.uuid), "resourceType": "Group",
                     "version": format!("W/\"{}\"", g.version)},
            "schemas": [GROUP_SCHEMA, CUSTOM_GROUP_EXT, SAP_GROUP_EXT],
            "displayName": g.display_name,
            "members": members,
            CUSTOM_GROUP_EXT: custom,
            SAP_GROUP_EXT: {"type": "userGroup", "supportedOperations": "readWrite"},
        });
        if let (Some(e), Some(o)) = (&g.external_id, v.as_object_mut()) {
            o.insert("externalId".into(), json!(e));
        }
        if g.members.is_empty()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("members");
        }
        v
    }

    fn group_v1(&self, g: &Group, base: &str) -> Value {
        let members: Vec<Value> = g
            .members
            .iter()
            .filter_map(|m| {
                if m.kind == "Group" {
                    self.groups
                        .get(&m.uuid)
                        .map(|x| json!({"value": x.legacy, "type": "Group"}))
                } else {
                    self.users
                        .get(&m.uuid)
                        .map(|u| json!({"value": u.legacy, "type": "User"}))
                }
            })
            .collect();
        let mut custom = json!({"name": g.name, "groupId": g.uuid});
        if let (Some(d), Some(o)) = (&g.description, custom.as_object_mut()) {
            o.insert("description".into(), json!(d));
        }
        let mut v = json!({
            "id": g.legacy,
            "meta": {"created": format_millis(g.created), "lastModified": format_millis(g.last_modified),
                     "location": format!("{base}/service/scim/Groups/{}", g.legacy), "version": g.version.to_string()},
            "schemas": [GROUP_SCHEMA, CUSTOM_GROUP_EXT],
            "displayName": g.display_name,
            "members": members,
            CUSTOM_GROUP_EXT: custom,
        });
        if g.members.is_empty()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("members");
        }
        v
    }

    fn remove_memberships(&mut self, uuid: &str) {
        for g in self.groups.iter_mut() {
            g.members.retain(|m| m.uuid != uuid);
        }
    }

    /// Checks uniqueness of a user's userName and e-mail against everyone but `self_id`.
    fn check_user_unique(
        &self,
        data: &Map<String, Value>,
        self_id: Option<&str>,
        unique_emails: bool,
    ) -> Result<(), Response> {
        if let Some(n) = user_name(data)
            && let Some(other) = self.user_names.get(&n.to_lowercase())
            && Some(other.as_str()) != self_id
        {
            return Err(conflict(&format!("User with userName '{n}' already exists")));
        }
        if unique_emails
            && let Some(e) = primary_email(data)
            && let Some(other) = self.emails.get(&e.to_lowercase())
            && Some(other.as_str()) != self_id
        {
            return Err(conflict(&format!("User with email '{e}' already exists")));
        }
        Ok(())
    }

    fn index_user(&mut self, u: &User) {
        if let Some(n) = user_name(&u.data) {
            self.user_names.insert(n.to_lowercase(), u.uuid.clone());
        }
        if let Some(e) = primary_email(&u.data) {
            self.emails.insert(e.to_lowercase(), u.uuid.clone());
        }
    }

    fn unindex_user(&mut self, u: &User) {
        if let Some(n) = user_name(&u.data)
            && self.user_names.get(&n.to_lowercase()) == Some(&u.uuid)
        {
            self.user_names.remove(&n.to_lowercase());
        }
        if let Some(e) = primary_email(&u.data)
            && self.emails.get(&e.to_lowercase()) == Some(&u.uuid)
        {
            self.emails.remove(&e.to_lowercase());
        }
    }
}

/// A cleaned user body and, for v1, the group names it lists.
type UserBody = (Map<String, Value>, Option<Vec<String>>);

/// Validates and cleans a user body: drops read-only attributes, requires e-mails.
fn user_data(body: &Value, api: Api) -> Result<UserBody, Response> {
    let Value::Object(map) = body else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "The request body must be a JSON object",
        ));
    };
    let mut data = Map::new();
    let mut v1_groups = None;
    let mut v1_sap = Map::new();
    for (k, v) in map {
        let lower = k.to_ascii_lowercase();
        match lower.as_str() {
            "id" | "meta" | "schemas" => {}
            "groups" => {
                if api == Api::V1 {
                    let names = v
                        .as_array()
                        .map(|a| a.iter().filter_map(|g| str_field(g, "value")).collect())
                        .unwrap_or_default();
                    v1_groups = Some(names);
                }
            }
            "password" => {}
            "mailverified" if api == Api::V1 => {
                let b = v
                    .as_bool()
                    .or_else(|| v.as_str().map(|s| s.eq_ignore_ascii_case("true")))
                    .unwrap_or(false);
                v1_sap.insert("mailVerified".into(), json!(b));
            }
            "useruuid" | "passwordstatus" | "sendmail" | "sourcesystem" if api == Api::V1 => {}
            _ => {
                if lower == "active" && !v.is_boolean() {
                    return Err(bad("'active' must be a boolean"));
                }
                data.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(Value::Object(sap)) = data.get_mut(SAP_USER_EXT) {
        for ro in ["userUuid", "userId", "status", "emails", "passwordDetails"] {
            sap.remove(ro);
        }
    }
    if !v1_sap.is_empty() {
        data.insert(SAP_USER_EXT.into(), Value::Object(v1_sap));
    }
    match data.get("emails") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|e| str_field(e, "value").is_some()) => {}
        Some(_) => {
            return Err(bad("'emails' must be a non-empty array of objects with a 'value'"));
        }
        None => return Err(bad("The attribute 'emails' is required")),
    }
    if let Some(n) = data.get("userName")
        && (!n.is_string() || n.as_str().is_some_and(|s| s.trim().is_empty()))
    {
        return Err(bad("'userName' must be a non-empty string"));
    }
    Ok((data, v1_groups))
}

impl State {
    /// Builds the state, seeds it (seeded data is not pushed) and registers the real-time targets of
    /// the options. Panics on an invalid target ([`spawn`] reports it as an error instead).
    pub fn new(options: Options) -> State {
        let st = State(Arc::new(Inner {
            store: Mutex::new(Store::default()),
            tokens: Tokens::new(),
            stats: Arc::new(Stats::default()),
            base_url: Mutex::new("http://localhost".into()),
            token_clients: Mutex::new(HashMap::new()),
            realtime: Realtime::new(options.realtime_retry),
            options,
        }));
        st.seed();
        for t in st.0.options.realtime_targets.clone() {
            if let Err(e) = st.0.realtime.add(t) {
                panic!("{e}");
            }
        }
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
            let body = json!({
                "userName": p.user_name,
                "name": {"givenName": p.given, "familyName": p.family},
                "displayName": format!("{} {}", p.given, p.family),
                "emails": emails,
                "active": true,
                "userType": "employee",
                ENTERPRISE_EXT: {"employeeNumber": p.employee_number, "department": p.department},
                SAP_USER_EXT: {"mailVerified": true},
            });
            if let Ok(u) = self.insert_user(body) {
                ids.push(str_field(&u, "id").unwrap_or_default());
            }
        }
        for (j, members) in seed::memberships(&mut rng, o.users, o.groups).into_iter().enumerate() {
            let members: Vec<Value> = members
                .into_iter()
                .filter_map(|u| ids.get(u))
                .map(|id| json!({"value": id}))
                .collect();
            let _ = self.insert_group(json!({"displayName": seed::group_name(j), "members": members,
                CUSTOM_GROUP_EXT: {"description": format!("Seeded group {}", j + 1)}}));
        }
    }

    /// All users (creation order), v2 representation.
    pub fn users(&self) -> Vec<Value> {
        let s = self.store();
        let base = self.base();
        let idx = s.index();
        s.users.iter().map(|u| s.user_v2_in(u, &base, Some(&idx))).collect()
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.store().users.len()
    }

    /// A user by UUID or legacy id (v2 representation).
    pub fn user(&self, id: &str) -> Option<Value> {
        let s = self.store();
        let uuid = s.resolve_user(id)?;
        s.users.get(&uuid).map(|u| s.user_v2(u, &self.base()))
    }

    /// A user by userName (case-insensitive).
    pub fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let s = self.store();
        let uuid = s.user_names.get(&user_name.to_lowercase())?;
        s.users.get(uuid).map(|u| s.user_v2(u, &self.base()))
    }

    /// Creates a user as `POST /scim/Users` would, and pushes it to every real-time target (as an
    /// administrator's change: no loop guard applies).
    pub fn insert_user(&self, body: Value) -> Result<Value, String> {
        let mut s = self.store();
        let (uuid, v) =
            create_user(&mut s, &self.0.options, &body, Api::V2, &self.base()).map_err(|r| h::error_text(&r))?;
        self.push_user(&s, &uuid, Change::Create, None);
        Ok(v)
    }

    /// Deletes a user (UUID or legacy id) and its memberships, and pushes the deletion to every
    /// real-time target.
    pub fn remove_user(&self, id: &str) -> bool {
        let mut s = self.store();
        let Some(uuid) = s.resolve_user(id) else {
            return false;
        };
        match delete_user(&mut s, &uuid) {
            Some(u) => {
                self.push_deleted(Entity::User, &u.uuid, &u.legacy, None);
                true
            }
            None => false,
        }
    }

    /// Takes a user out of the tenant without a push (reads no longer list it), to be put back under the
    /// same id by [`State::put_back_user`]: a user that leaves the source for a while.
    pub fn take_user(&self, id: &str) -> Option<TakenUser> {
        let mut s = self.store();
        let uuid = s.resolve_user(id)?;
        delete_user(&mut s, &uuid).map(TakenUser)
    }

    /// Puts a user taken by [`State::take_user`] back, with its id.
    pub fn put_back_user(&self, taken: TakenUser) {
        let mut s = self.store();
        let mut u = taken.0;
        u.last_modified = now_millis();
        s.index_user(&u);
        s.user_legacy.insert(u.legacy.clone(), u.uuid.clone());
        s.users.insert(u.uuid.clone(), u);
    }

    /// All groups (v2 representation).
    pub fn groups(&self) -> Vec<Value> {
        let s = self.store();
        let base = self.base();
        s.groups.iter().map(|g| s.group_v2(g, &base)).collect()
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.store().groups.len()
    }

    /// A group by UUID or legacy id.
    pub fn group(&self, id: &str) -> Option<Value> {
        let s = self.store();
        let uuid = s.resolve_group(id)?;
        s.groups.get(&uuid).map(|g| s.group_v2(g, &self.base()))
    }

    /// A group by displayName (case-insensitive).
    pub fn group_by_name(&self, display_name: &str) -> Option<Value> {
        let s = self.store();
        let uuid = s.group_names.get(&display_name.to_lowercase())?;
        s.groups.get(uuid).map(|g| s.group_v2(g, &self.base()))
    }

    /// Creates a group as `POST /scim/Groups` would, and pushes it to the real-time targets that take
    /// groups.
    pub fn insert_group(&self, body: Value) -> Result<Value, String> {
        let mut s = self.store();
        let (uuid, v) = create_group(&mut s, &body, Api::V2, &self.base()).map_err(|r| h::error_text(&r))?;
        self.push_group(&s, &uuid, Change::Create, None);
        Ok(v)
    }

    /// Member UUIDs of a group.
    pub fn member_ids(&self, group_id: &str) -> Option<Vec<String>> {
        let s = self.store();
        let uuid = s.resolve_group(group_id)?;
        s.groups
            .get(&uuid)
            .map(|g| g.members.iter().map(|m| m.uuid.clone()).collect())
    }

    // ----- Real-Time Provisioning ---------------------------------------------------------------

    /// Adds a real-time target (the console's *Add*); answers its index in [`State::pushes`].
    /// Changes stored from now on are pushed to it.
    pub fn add_realtime_target(&self, target: RealtimeTarget) -> Result<usize, String> {
        self.0.realtime.add(target)
    }

    /// Removes a real-time target (the console's *Delete*): nothing more is queued for it; what is
    /// queued already is still pushed. Indices of the other targets do not change.
    pub fn remove_realtime_target(&self, index: usize) -> bool {
        self.0.realtime.remove(index)
    }

    /// The configured real-time targets with their indices.
    pub fn realtime_targets(&self) -> Vec<(usize, RealtimeTarget)> {
        self.0.realtime.targets()
    }

    /// The console's *Provision* button: queues a create (POST) of every user, in creation order,
    /// for the target `index` (no loop guard applies). Answers how many were queued.
    pub fn provision_users(&self, index: usize) -> Result<usize, String> {
        if !self.0.realtime.has_target(index) {
            return Err(format!("There is no real-time target {index}"));
        }
        let s = self.store();
        let base = self.base();
        let mut n = 0;
        for u in s.users.iter() {
            let ev = Event {
                entity: Entity::User,
                change: Change::Create,
                uuid: u.uuid.clone(),
                legacy: u.legacy.clone(),
                v1: Some(s.user_v1(u, &base)),
                v2: Some(s.user_v2(u, &base)),
                initiator: None,
            };
            self.0.realtime.publish(&ev, Some(index));
            n += 1;
        }
        Ok(n)
    }

    /// The outcome of every push made so far, in the order they finished (per target: in the order
    /// the changes were stored).
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.0.realtime.pushes()
    }

    /// Pushes that finished without a 2xx answer (after their retries).
    pub fn failed_pushes(&self) -> u64 {
        self.0.realtime.failed()
    }

    /// Pushes queued or in flight.
    pub fn pending_pushes(&self) -> usize {
        self.0.realtime.pending()
    }

    /// Forgets the recorded pushes and the failure count.
    pub fn clear_pushes(&self) {
        self.0.realtime.clear()
    }

    /// Waits until no push is queued or in flight; `false` if that did not happen within `timeout`.
    pub async fn realtime_idle(&self, timeout: Duration) -> bool {
        self.0.realtime.idle(timeout).await
    }

    /// Queues the push of a stored user's create or update (under the store lock, so that pushes
    /// keep the order of the changes).
    fn push_user(&self, s: &Store, uuid: &str, change: Change, who: Option<&str>) {
        if !self.0.realtime.has_targets() {
            return;
        }
        let Some(u) = s.users.get(uuid) else { return };
        let base = self.base();
        let ev = Event {
            entity: Entity::User,
            change,
            uuid: u.uuid.clone(),
            legacy: u.legacy.clone(),
            v1: Some(s.user_v1(u, &base)),
            v2: Some(s.user_v2(u, &base)),
            initiator: who.map(str::to_string),
        };
        self.0.realtime.publish(&ev, None);
    }

    /// Queues the push of a stored group's create or update.
    fn push_group(&self, s: &Store, uuid: &str, change: Change, who: Option<&str>) {
        if !self.0.realtime.has_targets() {
            return;
        }
        let Some(g) = s.groups.get(uuid) else { return };
        let base = self.base();
        let ev = Event {
            entity: Entity::Group,
            change,
            uuid: g.uuid.clone(),
            legacy: g.legacy.clone(),
            v1: Some(s.group_v1(g, &base)),
            v2: Some(s.group_v2(g, &base)),
            initiator: who.map(str::to_string),
        };
        self.0.realtime.publish(&ev, None);
    }

    /// Queues the push of a deletion.
    fn push_deleted(&self, entity: Entity, uuid: &str, legacy: &str, who: Option<&str>) {
        if !self.0.realtime.has_targets() {
            return;
        }
        let ev = Event {
            entity,
            change: Change::Delete,
            uuid: uuid.to_string(),
            legacy: legacy.to_string(),
            v1: None,
            v2: None,
            initiator: who.map(str::to_string),
        };
        self.0.realtime.publish(&ev, None);
    }

    /// Whether `id`/`secret` are the credentials of an accepted technical user.
    fn client_ok(&self, id: &str, secret: &str) -> bool {
        let o = &self.0.options;
        (id == o.client_id && secret == o.client_secret) || o.other_clients.iter().any(|(i, s)| i == id && s == secret)
    }

    /// Authenticates a request; answers the client id it was made by.
    fn authorize(&self, headers: &HeaderMap) -> Result<String, Response> {
        if let Some((id, secret)) = h::basic_credentials(headers) {
            if self.client_ok(&id, &secret) {
                return Ok(id);
            }
        } else if let Some(token) = h::bearer_token(headers)
            && self.0.tokens.check(&token).is_ok()
        {
            let clients = self.0.token_clients.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(clients
                .get(&token)
                .cloned()
                .unwrap_or_else(|| self.0.options.client_id.clone()));
        }
        let resp = err(
            StatusCode::UNAUTHORIZED,
            None,
            "Authentication failed: invalid credentials",
        );
        Err(h::with_header(
            resp,
            "www-authenticate",
            "Basic realm=\"SAP Cloud Identity\"",
        ))
    }
}

fn create_user(s: &mut Store, o: &Options, body: &Value, api: Api, base: &str) -> Result<(String, Value), Response> {
    let (data, v1_groups) = user_data(body, api)?;
    s.check_user_unique(&data, None, o.unique_emails)?;
    let group_ids = match &v1_groups {
        Some(names) => Some(resolve_v1_groups(s, names)?),
        None => None,
    };
    s.next_user += 1;
    let now = now_millis();
    let u = User {
        uuid: uuid::Uuid::new_v4().to_string(),
        legacy: format!("P{:06}", s.next_user),
        data,
        version: 1,
        created: now,
        last_modified: now,
    };
    s.index_user(&u);
    s.user_legacy.insert(u.legacy.clone(), u.uuid.clone());
    let uuid = u.uuid.clone();
    s.users.insert(uuid.clone(), u);
    if let Some(gids) = group_ids {
        set_user_groups(s, &uuid, &gids);
    }
    let u = s.users.get(&uuid).ok_or_else(|| not_found("User", &uuid))?;
    let v = match api {
        Api::V1 => s.user_v1(u, base),
        Api::V2 => s.user_v2(u, base),
    };
    Ok((uuid, v))
}

fn resolve_v1_groups(s: &Store, names: &[String]) -> Result<Vec<String>, Response> {
    names
        .iter()
        .map(|n| {
            s.resolve_group(n)
                .or_else(|| s.group_custom_names.get(&n.to_lowercase()).cloned())
                .or_else(|| s.group_names.get(&n.to_lowercase()).cloned())
                .ok_or_else(|| bad(&format!("Group '{n}' does not exist")))
        })
        .collect()
}

/// v1: the user's `groups` replaces its memberships.
fn set_user_groups(s: &mut Store, uuid: &str, group_ids: &[String]) {
    for g in s.groups.iter_mut() {
        let wanted = group_ids.contains(&g.uuid);
        let has = g.members.iter().any(|m| m.uuid == uuid);
        if wanted && !has {
            g.members.push(Member {
                uuid: uuid.to_string(),
                kind: "User",
            });
        } else if !wanted && has {
            g.members.retain(|m| m.uuid != uuid);
        }
    }
}

/// Deletes a user and its memberships; answers the deleted user.
fn delete_user(s: &mut Store, uuid: &str) -> Option<User> {
    let u = s.users.remove(uuid)?;
    s.unindex_user(&u);
    s.user_legacy.remove(&u.legacy);
    s.remove_memberships(uuid);
    Some(u)
}

fn parse_members(s: &Store, v: Option<&Value>) -> Result<Vec<Member>, Response> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Some(arr) = v.as_array() else {
        return Err(bad("'members' must be an array"));
    };
    let mut out: Vec<Member> = Vec::new();
    for m in arr {
        let value = str_field(m, "value").ok_or_else(|| bad("A member needs a 'value'"))?;
        let kind_hint = str_field(m, "type").map(|t| t.to_ascii_lowercase());
        let member = match kind_hint.as_deref() {
            Some("group") => s.resolve_group(&value).map(|uuid| Member { uuid, kind: "Group" }),
            _ => s
                .resolve_user(&value)
                .map(|uuid| Member { uuid, kind: "User" })
                .or_else(|| s.resolve_group(&value).map(|uuid| Member { uuid, kind: "Group" })),
        }
        .ok_or_else(|| bad(&format!("Member '{value}' does not exist")))?;
        if !out.contains(&member) {
            out.push(member);
        }
    }
    Ok(out)
}

struct GroupFields {
    display_name: String,
    name: Option<String>,
    description: Option<String>,
    external_id: Option<String>,
}

fn group_fields(body: &Value) -> Result<GroupFields, Response> {
    if !body.is_object() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "The request body must be a JSON object",
        ));
    }
    let display_name = str_field(body, "displayName")
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| bad("The attribute 'displayName' is required"))?;
    let custom = get_ci(body, CUSTOM_GROUP_EXT);
    Ok(GroupFields {
        display_name,
        name: custom.and_then(|c| str_field(c, "name")),
        description: custom.and_then(|c| str_field(c, "description")),
        external_id: str_field(body, "externalId"),
    })
}

fn check_group_unique(s: &Store, display: &str, name: &str, self_id: Option<&str>) -> Result<(), Response> {
    for (map, what, value) in [
        (&s.group_names, "displayName", display),
        (&s.group_custom_names, "name", name),
    ] {
        if let Some(other) = map.get(&value.to_lowercase())
            && Some(other.as_str()) != self_id
        {
            return Err(conflict(&format!("Group with {what} '{value}' already exists")));
        }
    }
    Ok(())
}

fn create_group(s: &mut Store, body: &Value, api: Api, base: &str) -> Result<(String, Value), Response> {
    let f = group_fields(body)?;
    let name = f.name.clone().unwrap_or_else(|| f.display_name.clone());
    check_group_unique(s, &f.display_name, &name, None)?;
    let members = parse_members(s, get_ci(body, "members"))?;
    let now = now_millis();
    let n = s.groups.len() as u64 + now as u64 % 100_000;
    let mut legacy = legacy_group_id(n);
    while s.group_legacy.contains_key(&legacy) {
        legacy = legacy_group_id(n.wrapping_add(legacy.len() as u64 + s.group_legacy.len() as u64 + 1));
    }
    let g = Group {
        uuid: uuid::Uuid::new_v4().to_string(),
        legacy,
        display_name: f.display_name,
        name,
        description: f.description,
        external_id: f.external_id,
        members,
        version: 1,
        created: now,
        last_modified: now,
    };
    s.group_names.insert(g.display_name.to_lowercase(), g.uuid.clone());
    s.group_custom_names.insert(g.name.to_lowercase(), g.uuid.clone());
    s.group_legacy.insert(g.legacy.clone(), g.uuid.clone());
    let out = match api {
        Api::V1 => s.group_v1(&g, base),
        Api::V2 => s.group_v2(&g, base),
    };
    let uuid = g.uuid.clone();
    s.groups.insert(uuid.clone(), g);
    Ok((uuid, out))
}

fn replace_group(
    s: &mut Store,
    uuid: &str,
    body: &Value,
    patched_members: Option<Vec<Member>>,
) -> Result<(), Response> {
    let f = group_fields(body)?;
    let current = s.groups.get(uuid).cloned().ok_or_else(|| not_found("Group", uuid))?;
    let name = f.name.clone().unwrap_or_else(|| current.name.clone());
    check_group_unique(s, &f.display_name, &name, Some(uuid))?;
    let members = match patched_members {
        Some(m) => m,
        None => parse_members(s, get_ci(body, "members"))?,
    };
    s.group_names.remove(&current.display_name.to_lowercase());
    s.group_custom_names.remove(&current.name.to_lowercase());
    s.group_names.insert(f.display_name.to_lowercase(), uuid.to_string());
    s.group_custom_names.insert(name.to_lowercase(), uuid.to_string());
    if let Some(g) = s.groups.get_mut(uuid) {
        g.display_name = f.display_name;
        g.name = name;
        g.description = f.description;
        g.external_id = f.external_id;
        g.members = members;
        g.version += 1;
        g.last_modified = now_millis();
    }
    Ok(())
}

// ----- listing --------------------------------------------------------------------------------

const V1_DIALECT: Dialect = Dialect {
    ops: &[Op::Eq],
    present: false,
    and: true,
    or: false,
    not: false,
    parens: false,
    value_paths: false,
};

const V2_DIALECT: Dialect = Dialect {
    ops: &[Op::Eq, Op::Ne, Op::Co, Op::Sw, Op::Ew, Op::Gt, Op::Ge, Op::Lt, Op::Le],
    present: true,
    and: true,
    or: true,
    not: false,
    parens: true,
    value_paths: true,
};

const V1_USER_ATTRS: &[&str] = &[
    "id",
    "useruuid",
    "emails",
    "emails.value",
    "username",
    "name.familyname",
    "addresses.country",
    "groups",
    "groups.value",
    "active",
    "meta.lastmodified",
];
const V1_GROUP_ATTRS: &[&str] = &["id", "displayname", "members", "members.value", "meta.lastmodified"];

fn check_attrs(f: &Filter, allowed: &[&str]) -> Result<(), String> {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_attrs(a, allowed)?;
            check_attrs(b, allowed)
        }
        Filter::Not(a) => check_attrs(a, allowed),
        Filter::Present(p) | Filter::Compare(p, _, _) | Filter::ValuePath(p, _) => {
            let n = p.dotted_lower();
            if allowed.contains(&n.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "Filtering by '{}' is not supported",
                    AttrPath { urn: None, ..p.clone() }
                ))
            }
        }
    }
}

/// Lists resources: `ids` in creation order, `render` builds one resource's JSON. Without a
/// filter only the page is rendered, so paging through large data sets stays cheap.
fn list(
    ids: Vec<String>,
    render: impl Fn(&str) -> Option<Value>,
    prefilter: impl Fn(&Filter, &str) -> bool,
    params: &Params,
    api: Api,
    attrs_v1: &[&str],
) -> Answer {
    let filter = match params.get("filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(text) => {
            let dialect = if api == Api::V1 { &V1_DIALECT } else { &V2_DIALECT };
            let f = filter::parse(text, dialect)
                .and_then(|f| {
                    if api == Api::V1 {
                        check_attrs(&f, attrs_v1).map(|_| f)
                    } else {
                        Ok(f)
                    }
                })
                .map_err(|e| {
                    err(
                        StatusCode::BAD_REQUEST,
                        Some("invalidFilter"),
                        &format!("Invalid filter '{text}': {e}"),
                    )
                })?;
            Some(f)
        }
    };
    let count_raw = params
        .int("count")
        .map_err(|e| err(StatusCode::BAD_REQUEST, Some("invalidValue"), &e))?;
    let start_raw = params
        .int("startIndex")
        .map_err(|e| err(StatusCode::BAD_REQUEST, Some("invalidValue"), &e))?;
    let count = paging::count(count_raw, 100, 100);
    let eval = Eval { case_exact: &["id"] };
    let mut rendered: HashMap<String, Value> = HashMap::new();
    let mut hits: Vec<String> = match &filter {
        None => ids,
        Some(f) => ids
            .into_iter()
            .filter(|id| prefilter(f, id))
            .filter(|id| match render(id) {
                Some(v) if f.matches(&v, &eval) => {
                    rendered.insert(id.clone(), v);
                    true
                }
                _ => false,
            })
            .collect(),
    };
    let total = hits.len();
    let attributes = params.get("attributes");
    let excluded = params.get("excludedAttributes");
    let mut page = |ids: &[String]| -> Vec<Value> {
        ids.iter()
            .filter_map(|id| rendered.remove(id).or_else(|| render(id)))
            .map(|v| h::project_scim(v, attributes, excluded))
            .collect()
    };
    let mut body = Map::new();
    body.insert("schemas".into(), json!([LIST_SCHEMA]));
    body.insert("totalResults".into(), json!(total));
    if let Some(start_id) = params.get("startId") {
        // Id-based paging: stable id order, resume at the first id >= startId.
        hits.sort();
        let from = if start_id == "initial" {
            0
        } else {
            hits.partition_point(|id| id.as_str() < start_id)
        };
        let to = (from + count).min(hits.len());
        let next = hits.get(to).cloned().unwrap_or_else(|| "end".into());
        let resources = page(&hits[from..to]);
        body.insert("itemsPerPage".into(), json!(resources.len()));
        body.insert("startId".into(), json!(start_id));
        body.insert("nextId".into(), json!(next));
        body.insert("Resources".into(), Value::Array(resources));
    } else {
        let start = paging::start_index(start_raw);
        let range = paging::window(total, start, count);
        let resources = page(&hits[range]);
        body.insert("itemsPerPage".into(), json!(resources.len()));
        body.insert("startIndex".into(), json!(start));
        body.insert("Resources".into(), Value::Array(resources));
    }
    Ok(h::json(StatusCode::OK, CT, &Value::Object(body)))
}

// ----- handlers -------------------------------------------------------------------------------

type S = AxState<State>;

fn body_json(body: &Bytes) -> Result<Value, Response> {
    h::parse_json(body).map_err(|e| err(StatusCode::BAD_REQUEST, Some("invalidSyntax"), &e))
}

async fn token(AxState(st): S, headers: HeaderMap, body: Bytes) -> Answer {
    let form = Params::parse(Some(&String::from_utf8_lossy(&body)));
    let client = client_auth(&headers, &form).filter(|c| st.client_ok(&c.client_id, &c.client_secret));
    let Some(client) = client else {
        return Err(h::json(
            StatusCode::UNAUTHORIZED,
            "application/json",
            &json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        ));
    };
    if form.get("grant_type") != Some("client_credentials") {
        return Err(h::json(
            StatusCode::BAD_REQUEST,
            "application/json",
            &json!({"error": "unsupported_grant_type"}),
        ));
    }
    let validity = Duration::from_secs(3600);
    let (token, _) = st.0.tokens.issue(&client.client_id, &[], validity, &st.base(), "ias");
    st.0.token_clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone(), client.client_id.clone());
    Ok(h::json(
        StatusCode::OK,
        "application/json",
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": validity.as_secs()}),
    ))
}

async fn list_users(st: State, headers: HeaderMap, q: Option<String>, api: Api) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let base = st.base();
    let s = st.store();
    let idx = s.index();
    let ids: Vec<String> = s
        .users
        .iter()
        .map(|u| match api {
            Api::V1 => u.legacy.clone(),
            Api::V2 => u.uuid.clone(),
        })
        .collect();
    let render = |id: &str| {
        let uuid = match api {
            Api::V1 => s.user_legacy.get(id)?.as_str(),
            Api::V2 => id,
        };
        let u = s.users.get(uuid)?;
        Some(match api {
            Api::V1 => s.user_v1_in(u, &base, Some(&idx)),
            Api::V2 => s.user_v2_in(u, &base, Some(&idx)),
        })
    };
    // `userName eq "x"` lookups only render the users of that name.
    let prefilter = |f: &Filter, id: &str| {
        let Some(wanted) = f.required_eq("userName") else {
            return true;
        };
        let uuid = match api {
            Api::V1 => s.user_legacy.get(id).map(String::as_str),
            Api::V2 => Some(id),
        };
        uuid.and_then(|u| s.users.get(u))
            .and_then(|u| user_name(&u.data))
            .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
    };
    list(ids, render, prefilter, &params, api, V1_USER_ATTRS)
}

async fn list_groups(st: State, headers: HeaderMap, q: Option<String>, api: Api) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let base = st.base();
    let s = st.store();
    let ids: Vec<String> = s
        .groups
        .iter()
        .map(|g| match api {
            Api::V1 => g.legacy.clone(),
            Api::V2 => g.uuid.clone(),
        })
        .collect();
    let render = |id: &str| {
        let uuid = match api {
            Api::V1 => s.group_legacy.get(id)?.as_str(),
            Api::V2 => id,
        };
        let g = s.groups.get(uuid)?;
        Some(match api {
            Api::V1 => s.group_v1(g, &base),
            Api::V2 => s.group_v2(g, &base),
        })
    };
    list(ids, render, |_, _| true, &params, api, V1_GROUP_ATTRS)
}

fn created(v: Value) -> Response {
    let loc = v
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    h::with_header(h::json(StatusCode::CREATED, CT, &v), "location", &loc)
}

async fn post_user(st: State, headers: HeaderMap, body: Bytes, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let mut s = st.store();
    let (uuid, v) = create_user(&mut s, &st.0.options, &body, api, &st.base())?;
    st.push_user(&s, &uuid, Change::Create, Some(&who));
    Ok(created(v))
}

async fn get_user(st: State, headers: HeaderMap, id: String, q: Option<String>, api: Api) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let s = st.store();
    let uuid = resolve_for(&s, &id, api, true).ok_or_else(|| not_found("User", &id))?;
    let u = s.users.get(&uuid).ok_or_else(|| not_found("User", &id))?;
    let v = match api {
        Api::V1 => s.user_v1(u, &st.base()),
        Api::V2 => s.user_v2(u, &st.base()),
    };
    let v = h::project_scim(v, params.get("attributes"), params.get("excludedAttributes"));
    Ok(h::with_header(
        h::json(StatusCode::OK, CT, &v),
        "etag",
        &format!("W/\"{}\"", u.version),
    ))
}

/// v1 addresses resources by legacy id, v2 by UUID.
fn resolve_for(s: &Store, id: &str, api: Api, user: bool) -> Option<String> {
    match (api, user) {
        (Api::V2, true) => s.users.contains(id).then(|| id.to_string()),
        (Api::V2, false) => s.groups.contains(id).then(|| id.to_string()),
        (Api::V1, true) => s.user_legacy.get(id).cloned(),
        (Api::V1, false) => s.group_legacy.get(id).cloned(),
    }
}

fn check_if_match(headers: &HeaderMap, version: u64) -> Result<(), Response> {
    match h::header_str(headers, "if-match").map(str::trim) {
        None | Some("*") => Ok(()),
        Some(v) if v.trim_start_matches("W/").trim_matches('"') == version.to_string() => Ok(()),
        Some(_) => Err(err(
            StatusCode::PRECONDITION_FAILED,
            None,
            "The resource was modified (If-Match does not match)",
        )),
    }
}

async fn put_user(st: State, headers: HeaderMap, id: String, body: Bytes, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, api, true).ok_or_else(|| not_found("User", &id))?;
    let current = s.users.get(&uuid).cloned().ok_or_else(|| not_found("User", &id))?;
    check_if_match(&headers, current.version)?;
    let (mut data, v1_groups) = user_data(&body, api)?;
    // The SAP extension's writable attributes survive a PUT that omits them.
    if !data.contains_key(SAP_USER_EXT)
        && let Some(sap) = current.data.get(SAP_USER_EXT)
    {
        data.insert(SAP_USER_EXT.into(), sap.clone());
    }
    s.check_user_unique(&data, Some(&uuid), st.0.options.unique_emails)?;
    let group_ids = match &v1_groups {
        Some(names) => Some(resolve_v1_groups(&s, names)?),
        None => None,
    };
    commit_user(&mut s, current, data);
    if let Some(g) = group_ids {
        set_user_groups(&mut s, &uuid, &g);
    }
    st.push_user(&s, &uuid, Change::Replace, Some(&who));
    let u = s.users.get(&uuid).ok_or_else(|| not_found("User", &id))?;
    let v = match api {
        Api::V1 => s.user_v1(u, &st.base()),
        Api::V2 => s.user_v2(u, &st.base()),
    };
    Ok(h::json(StatusCode::OK, CT, &v))
}

fn commit_user(s: &mut Store, current: User, data: Map<String, Value>) {
    s.unindex_user(&current);
    let mut u = current;
    u.data = data;
    u.version += 1;
    u.last_modified = now_millis();
    s.index_user(&u);
    let uuid = u.uuid.clone();
    if let Some(slot) = s.users.get_mut(&uuid) {
        *slot = u;
    }
}

async fn patch_user(st: State, headers: HeaderMap, id: String, body: Bytes) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let ops = patch::parse_request(&body).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, Api::V2, true).ok_or_else(|| not_found("User", &id))?;
    let current = s.users.get(&uuid).cloned().ok_or_else(|| not_found("User", &id))?;
    check_if_match(&headers, current.version)?;
    let mut doc = Value::Object(current.data.clone());
    let rules = Rules {
        core_schema: USER_SCHEMA,
        read_only: &["id", "meta", "groups"],
    };
    patch::apply(&mut doc, &ops, &rules).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let (data, _) = user_data(&doc, Api::V2)?;
    s.check_user_unique(&data, Some(&uuid), st.0.options.unique_emails)?;
    commit_user(&mut s, current, data);
    st.push_user(&s, &uuid, Change::Replace, Some(&who));
    let u = s.users.get(&uuid).ok_or_else(|| not_found("User", &id))?;
    Ok(h::json(StatusCode::OK, CT, &s.user_v2(u, &st.base())))
}

async fn delete_user_h(st: State, headers: HeaderMap, id: String, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, api, true).ok_or_else(|| not_found("User", &id))?;
    if let Some(u) = delete_user(&mut s, &uuid) {
        st.push_deleted(Entity::User, &u.uuid, &u.legacy, Some(&who));
    }
    Ok(h::empty(StatusCode::NO_CONTENT))
}

async fn post_group(st: State, headers: HeaderMap, body: Bytes, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let mut s = st.store();
    let (uuid, v) = create_group(&mut s, &body, api, &st.base())?;
    st.push_group(&s, &uuid, Change::Create, Some(&who));
    Ok(created(v))
}

async fn get_group(st: State, headers: HeaderMap, id: String, q: Option<String>, api: Api) -> Answer {
    st.authorize(&headers)?;
    let params = Params::parse(q.as_deref());
    let s = st.store();
    let uuid = resolve_for(&s, &id, api, false).ok_or_else(|| not_found("Group", &id))?;
    let g = s.groups.get(&uuid).ok_or_else(|| not_found("Group", &id))?;
    let v = match api {
        Api::V1 => s.group_v1(g, &st.base()),
        Api::V2 => s.group_v2(g, &st.base()),
    };
    let v = h::project_scim(v, params.get("attributes"), params.get("excludedAttributes"));
    Ok(h::with_header(
        h::json(StatusCode::OK, CT, &v),
        "etag",
        &format!("W/\"{}\"", g.version),
    ))
}

async fn put_group(st: State, headers: HeaderMap, id: String, body: Bytes, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, api, false).ok_or_else(|| not_found("Group", &id))?;
    let version = s.groups.get(&uuid).map(|g| g.version).unwrap_or_default();
    check_if_match(&headers, version)?;
    replace_group(&mut s, &uuid, &body, None)?;
    st.push_group(&s, &uuid, Change::Replace, Some(&who));
    let g = s.groups.get(&uuid).ok_or_else(|| not_found("Group", &id))?;
    let v = match api {
        Api::V1 => s.group_v1(g, &st.base()),
        Api::V2 => s.group_v2(g, &st.base()),
    };
    Ok(h::json(StatusCode::OK, CT, &v))
}

async fn patch_group(st: State, headers: HeaderMap, id: String, body: Bytes) -> Answer {
    let who = st.authorize(&headers)?;
    let body = body_json(&body)?;
    let ops = patch::parse_request(&body).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, Api::V2, false).ok_or_else(|| not_found("Group", &id))?;
    let current = s.groups.get(&uuid).cloned().ok_or_else(|| not_found("Group", &id))?;
    check_if_match(&headers, current.version)?;
    let base = st.base();
    // Patch a plain view of the group (members as values only), then re-validate.
    let mut doc = s.group_v2(&current, &base);
    if let Some(o) = doc.as_object_mut() {
        let members: Vec<Value> = current
            .members
            .iter()
            .map(|m| json!({"value": m.uuid, "type": m.kind}))
            .collect();
        o.insert("members".into(), Value::Array(members));
    }
    let rules = Rules {
        core_schema: GROUP_SCHEMA,
        read_only: &["id", "meta"],
    };
    patch::apply(&mut doc, &ops, &rules).map_err(|e| err(StatusCode::BAD_REQUEST, Some(e.scim_type), &e.detail))?;
    let members = parse_members(&s, get_ci(&doc, "members"))?;
    let removed = current.members.iter().filter(|m| !members.contains(m)).count();
    let added = members.iter().filter(|m| !current.members.contains(m)).count();
    let o = &st.0.options;
    if removed > o.max_members_removed_per_patch {
        return Err(bad(&format!(
            "A PATCH request may remove at most {} members; this one removes {removed}",
            o.max_members_removed_per_patch
        )));
    }
    if added > o.max_members_added_per_patch {
        return Err(bad(&format!(
            "A PATCH request may add at most {} members; this one adds {added}",
            o.max_members_added_per_patch
        )));
    }
    replace_group(&mut s, &uuid, &doc, Some(members))?;
    st.push_group(&s, &uuid, Change::Replace, Some(&who));
    let g = s.groups.get(&uuid).ok_or_else(|| not_found("Group", &id))?;
    Ok(h::json(StatusCode::OK, CT, &s.group_v2(g, &base)))
}

async fn delete_group(st: State, headers: HeaderMap, id: String, api: Api) -> Answer {
    let who = st.authorize(&headers)?;
    let mut s = st.store();
    let uuid = resolve_for(&s, &id, api, false).ok_or_else(|| not_found("Group", &id))?;
    if let Some(g) = s.groups.remove(&uuid) {
        s.group_names.remove(&g.display_name.to_lowercase());
        s.group_custom_names.remove(&g.name.to_lowercase());
        s.group_legacy.remove(&g.legacy);
        st.push_deleted(Entity::Group, &g.uuid, &g.legacy, Some(&who));
    }
    s.remove_memberships(&uuid);
    Ok(h::empty(StatusCode::NO_CONTENT))
}

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// `POST /scim/Bulk` (RFC 7644 §3.7): operations run in order through the same code as the
/// single calls; `bulkId:<id>` references to earlier creations are resolved; at most
/// [`Options::max_bulk_operations`] operations (413 above); `failOnErrors` stops early.
async fn bulk(AxState(st): S, headers: HeaderMap, body: Bytes) -> Answer {
    st.authorize(&headers)?;
    let body = body_json(&body)?;
    let schemas_ok = get_ci(&body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(BULK_REQUEST)));
    let ops = get_ci(&body, "Operations").and_then(Value::as_array).cloned();
    let (true, Some(ops)) = (schemas_ok, ops) else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            &format!("A bulk request needs the schema {BULK_REQUEST} and an 'Operations' array"),
        ));
    };
    let max = st.0.options.max_bulk_operations;
    if ops.len() > max {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            &format!("A bulk request may carry at most {max} operations"),
        ));
    }
    let fail_on_errors = get_ci(&body, "failOnErrors").and_then(Value::as_u64);
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut errors = 0u64;
    let mut results = Vec::new();
    for op in ops {
        let method = str_field(&op, "method").unwrap_or_default().to_ascii_uppercase();
        let path = str_field(&op, "path").unwrap_or_default();
        let bulk_id = str_field(&op, "bulkId");
        // Resolve bulkId references in the data.
        let mut data = get_ci(&op, "data").cloned().unwrap_or(Value::Null).to_string();
        for (bid, id) in &ids {
            data = data.replace(&format!("\"bulkId:{bid}\""), &format!("\"{id}\""));
        }
        let data = Bytes::from(data);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let resp = match (method.as_str(), segments.as_slice()) {
            ("POST", ["Users"]) => post_user(st.clone(), headers.clone(), data, Api::V2).await,
            ("POST", ["Groups"]) => post_group(st.clone(), headers.clone(), data, Api::V2).await,
            ("PUT", ["Users", id]) => put_user(st.clone(), headers.clone(), id.to_string(), data, Api::V2).await,
            ("PUT", ["Groups", id]) => put_group(st.clone(), headers.clone(), id.to_string(), data, Api::V2).await,
            ("PATCH", ["Users", id]) => patch_user(st.clone(), headers.clone(), id.to_string(), data).await,
            ("PATCH", ["Groups", id]) => patch_group(st.clone(), headers.clone(), id.to_string(), data).await,
            ("DELETE", ["Users", id]) => delete_user_h(st.clone(), headers.clone(), id.to_string(), Api::V2).await,
            ("DELETE", ["Groups", id]) => delete_group(st.clone(), headers.clone(), id.to_string(), Api::V2).await,
            _ => Err(err(
                StatusCode::BAD_REQUEST,
                Some("invalidSyntax"),
                &format!("Unsupported bulk operation {method} {path}"),
            )),
        };
        let resp = resp.unwrap_or_else(|e| e);
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut result = Map::new();
        result.insert("method".into(), json!(method));
        if let Some(b) = &bulk_id {
            result.insert("bulkId".into(), json!(b));
        }
        if status.is_success() {
            if let Some(loc) = answer.get("meta").and_then(|m| m.get("location")) {
                result.insert("location".into(), loc.clone());
            }
            if let Some(v) = answer.get("meta").and_then(|m| m.get("version")) {
                result.insert("version".into(), v.clone());
            }
            if let (Some(b), Some(id)) = (&bulk_id, answer.get("id").and_then(Value::as_str)) {
                ids.insert(b.clone(), id.to_string());
            }
        } else {
            errors += 1;
            result.insert("response".into(), answer);
        }
        result.insert("status".into(), json!(status.as_u16().to_string()));
        results.push(Value::Object(result));
        if fail_on_errors.is_some_and(|n| errors >= n) {
            break;
        }
    }
    Ok(h::json(
        StatusCode::OK,
        CT,
        &json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

async fn v1_patch() -> Response {
    err(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "PATCH is not supported by this API version; use PUT",
    )
}

async fn fallback() -> Response {
    err(StatusCode::NOT_FOUND, None, "Resource not found")
}

fn limited(path: &str) -> bool {
    path.starts_with("/scim") || path.starts_with("/service/scim")
}

fn too_many(retry_after: u64) -> Response {
    let resp = err(StatusCode::TOO_MANY_REQUESTS, None, "Too Many Requests");
    h::with_header(resp, "retry-after", &retry_after.to_string())
}

/// The IAS router over `state`: v2 under `/scim`, v1 under `/service/scim`, `POST /oauth2/token`.
pub fn router(state: State) -> Router {
    let o = &state.0.options;
    let limiter = o.rate_limit_per_minute.map(|soft| {
        let hard = o
            .throttle_hard_limit_per_minute
            .unwrap_or(soft.saturating_add(soft / 5 * 2))
            .max(soft);
        RateLimiter::new(Limit::Throttle {
            soft,
            hard,
            delay: o.throttle_delay,
            block: o.throttle_block,
        })
    });
    let gate = Arc::new(Gate {
        stats: state.0.stats.clone(),
        limiter,
        limited,
        reject: too_many,
    });
    macro_rules! v {
        ($api:expr) => {{
            let api = $api;
            Router::new()
                .route(
                    "/Users",
                    get(move |AxState(st): S, hd: HeaderMap, RawQuery(q): RawQuery| list_users(st, hd, q, api))
                        .post(move |AxState(st): S, hd: HeaderMap, b: Bytes| post_user(st, hd, b, api)),
                )
                .route(
                    "/Users/{id}",
                    get(
                        move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, RawQuery(q): RawQuery| {
                            get_user(st, hd, id, q, api)
                        },
                    )
                    .put(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| {
                        put_user(st, hd, id, b, api)
                    })
                    .delete(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>| {
                        delete_user_h(st, hd, id, api)
                    }),
                )
                .route(
                    "/Groups",
                    get(move |AxState(st): S, hd: HeaderMap, RawQuery(q): RawQuery| list_groups(st, hd, q, api))
                        .post(move |AxState(st): S, hd: HeaderMap, b: Bytes| post_group(st, hd, b, api)),
                )
                .route(
                    "/Groups/{id}",
                    get(
                        move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, RawQuery(q): RawQuery| {
                            get_group(st, hd, id, q, api)
                        },
                    )
                    .put(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| {
                        put_group(st, hd, id, b, api)
                    })
                    .delete(move |AxState(st): S, hd: HeaderMap, Path(id): Path<String>| delete_group(st, hd, id, api)),
                )
        }};
    }
    let v2 = v!(Api::V2)
        .route(
            "/Users/{id}",
            axum::routing::patch(|AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| {
                patch_user(st, hd, id, b)
            }),
        )
        .route(
            "/Groups/{id}",
            axum::routing::patch(|AxState(st): S, hd: HeaderMap, Path(id): Path<String>, b: Bytes| {
                patch_group(st, hd, id, b)
            }),
        )
        .route("/Bulk", post(bulk));
    let v1 = v!(Api::V1)
        .route("/Users/{id}", axum::routing::patch(v1_patch))
        .route("/Groups/{id}", axum::routing::patch(v1_patch));
    Router::new()
        .nest("/scim", v2)
        .nest("/service/scim", v1)
        .route("/oauth2/token", post(token))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(gate, server::gate))
        .with_state(state)
}

/// A running IAS simulator. Dereferences to its [`State`]; stops when dropped.
pub struct Simulator {
    /// The tenant URL (connector property `URL`): v2 lives under `{base_url}/scim`, v1 under
    /// `{base_url}/service/scim`.
    pub base_url: String,
    /// `None`: the connector authenticates with Basic (client id/secret). An OAuth token
    /// endpoint exists anyway at [`Simulator::oauth_token_url`].
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

    /// `{base_url}/oauth2/token` (client credentials), for bearer-token clients.
    pub fn oauth_token_url(&self) -> String {
        format!("{}/oauth2/token", self.base_url)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}

/// Starts an IAS simulator on `127.0.0.1:0`.
pub async fn spawn(options: Options) -> std::io::Result<Simulator> {
    spawn_on(options, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts an IAS simulator on `listen`.
pub async fn spawn_on(options: Options, listen: SocketAddr) -> std::io::Result<Simulator> {
    for t in &options.realtime_targets {
        t.validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    }
    let state = State::new(options);
    state.0.realtime.start();
    let running = server::serve(router(state.clone()), listen).await?;
    let base_url = format!("http://{}", running.addr);
    *state.0.base_url.lock().unwrap_or_else(|p| p.into_inner()) = base_url.clone();
    Ok(Simulator {
        base_url,
        token_url: None,
        addr: running.addr,
        state,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Client, Method as M};
    use std::collections::HashSet;

    struct T {
        sim: Simulator,
        c: Client,
    }

    impl T {
        async fn new(o: Options) -> T {
            T {
                sim: spawn(o).await.unwrap(),
                c: Client::new(),
            }
        }

        async fn call(&self, m: M, path: &str, body: Option<Value>) -> (u16, Value) {
            let o = self.sim.options();
            let mut rb = self
                .c
                .request(m, format!("{}{path}", self.sim.base_url))
                .basic_auth(&o.client_id, Some(&o.client_secret));
            if let Some(b) = body {
                rb = rb.header("content-type", "application/scim+json").body(b.to_string());
            }
            let r = rb.send().await.unwrap();
            let st = r.status().as_u16();
            let text = r.text().await.unwrap();
            (st, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    }

    fn enc(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[tokio::test]
    async fn authentication() {
        let t = T::new(Options::default()).await;
        let url = format!("{}/scim/Users", t.sim.base_url);
        let r = t.c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            (b["status"].as_str(), b["schemas"][0].as_str()),
            (Some("401"), Some(h::SCIM_ERROR_SCHEMA))
        );
        let r = t.c.get(&url).basic_auth("T000001", Some("wrong")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r =
            t.c.get(&url)
                .basic_auth("T000001", Some("ias-secret"))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], CT);
        // OAuth client credentials also work.
        let r =
            t.c.post(t.sim.oauth_token_url())
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "T000001"),
                    ("client_secret", "ias-secret"),
                ])
                .send()
                .await
                .unwrap();
        let tok = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = t.c.get(&url).bearer_auth(tok).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(t.sim.token_url, None);
    }

    #[tokio::test]
    async fn v2_index_and_id_paging() {
        let t = T::new(Options {
            users: 230,
            groups: 4,
            ..Options::default()
        })
        .await;
        let mut seen = HashSet::new();
        let mut start = 1;
        loop {
            let (st, b) = t
                .call(M::GET, &format!("/scim/Users?startIndex={start}&count=500"), None)
                .await;
            assert_eq!(st, 200);
            assert_eq!(b["schemas"], json!([LIST_SCHEMA]));
            assert_eq!(b["totalResults"], 230);
            let page = b["Resources"].as_array().unwrap();
            assert!(page.len() <= 100, "count capped at 100");
            assert_eq!(b["itemsPerPage"], page.len());
            for u in page {
                assert!(seen.insert(u["id"].as_str().unwrap().to_string()));
            }
            if page.len() < 100 {
                break;
            }
            start += page.len();
        }
        assert_eq!(seen.len(), 230);
        let (_, b) = t.call(M::GET, "/scim/Users?count=0", None).await;
        assert_eq!(
            (b["totalResults"].as_u64(), b["Resources"].as_array().map(Vec::len)),
            (Some(230), Some(0))
        );
        // Id-based.
        let mut seen = HashSet::new();
        let mut start_id = "initial".to_string();
        let mut pages = 0;
        while start_id != "end" {
            let (st, b) = t
                .call(M::GET, &format!("/scim/Users?startId={start_id}&count=100"), None)
                .await;
            assert_eq!(st, 200);
            for u in b["Resources"].as_array().unwrap() {
                assert!(seen.insert(u["id"].as_str().unwrap().to_string()));
            }
            start_id = b["nextId"].as_str().unwrap().to_string();
            pages += 1;
        }
        assert_eq!((seen.len(), pages), (230, 3));
        // Groups page the same way.
        let (_, b) = t.call(M::GET, "/scim/Groups?startId=initial&count=3", None).await;
        assert_eq!(b["Resources"].as_array().unwrap().len(), 3);
        assert_ne!(b["nextId"], "end");
    }

    #[tokio::test]
    async fn v2_users_and_filters() {
        let t = T::new(Options {
            users: 20,
            ..Options::default()
        })
        .await;
        let body = json!({"schemas": [USER_SCHEMA, ENTERPRISE_EXT], "userName": "jdoe", "id": "ignored",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@example.net", "primary": true}],
            ENTERPRISE_EXT: {"employeeNumber": "42"}, "groups": [{"value": "nope"}]});
        let (st, u) = t.call(M::POST, "/scim/Users", Some(body.clone())).await;
        assert_eq!(st, 201);
        let id = u["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(u[SAP_USER_EXT]["userUuid"], id);
        assert!(u[SAP_USER_EXT]["userId"].as_str().unwrap().starts_with('P'));
        assert_eq!(u[SAP_USER_EXT]["mailVerified"], false);
        assert_eq!(u[ENTERPRISE_EXT]["employeeNumber"], "42");
        assert!(u.get("groups").is_none());
        assert_eq!(u["meta"]["resourceType"], "User");
        // Uniqueness: userName (case-insensitive) and e-mail.
        let (st, e) = t
            .call(
                M::POST,
                "/scim/Users",
                Some(json!({"userName": "JDOE", "emails": [{"value": "x@y.z"}]})),
            )
            .await;
        assert_eq!(
            (st, e["scimType"].as_str(), e["status"].as_str()),
            (409, Some("uniqueness"), Some("409"))
        );
        let (st, _) = t
            .call(
                M::POST,
                "/scim/Users",
                Some(json!({"userName": "other", "emails": [{"value": "JANE@example.net"}]})),
            )
            .await;
        assert_eq!(st, 409);
        let (st, e) = t
            .call(M::POST, "/scim/Users", Some(json!({"userName": "nomail"})))
            .await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidValue")));
        let r =
            t.c.post(format!("{}/scim/Users", t.sim.base_url))
                .basic_auth("T000001", Some("ias-secret"))
                .body("{oops")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "invalidSyntax");
        // Filters.
        for (f, n) in [
            ("userName eq \"JDoe\"", 1),
            ("emails.value eq \"jane@example.net\"", 1),
            ("userName eq \"jdoe\" or userName eq \"nobody\"", 1),
            (
                "(userName eq \"jdoe\" or userName eq \"x\") and name.familyName eq \"Doe\"",
                1,
            ),
            ("meta.lastModified gt \"2000-01-01T00:00:00Z\"", 21),
            ("meta.lastModified gt \"2999-01-01T00:00:00Z\"", 0),
        ] {
            let (st, b) = t.call(M::GET, &format!("/scim/Users?filter={}", enc(f)), None).await;
            assert_eq!((st, b["totalResults"].as_u64()), (200, Some(n)), "{f}");
        }
        let (st, e) = t
            .call(M::GET, &format!("/scim/Users?filter={}", enc("userName eq")), None)
            .await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidFilter")));
        // attributes.
        let (_, b) = t
            .call(M::GET, &format!("/scim/Users/{id}?attributes=userName"), None)
            .await;
        assert_eq!(
            b.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
            vec!["id", "schemas", "userName"]
        );
        // PATCH: RFC 7644; groups is read-only; active=false deactivates.
        let patch = |ops: Value| json!({"schemas": [patch::PATCH_OP_SCHEMA], "Operations": ops});
        let (st, p) = t.call(M::PATCH, &format!("/scim/Users/{id}"), Some(patch(json!([{"op": "replace", "path": "active", "value": false}, {"op": "Add", "value": {"name.givenName": "J."}}])))).await;
        assert_eq!(st, 200);
        assert_eq!(
            (
                p["active"].as_bool(),
                p[SAP_USER_EXT]["status"].as_str(),
                p["name"]["givenName"].as_str()
            ),
            (Some(false), Some("inactive"), Some("J."))
        );
        let (st, e) = t
            .call(
                M::PATCH,
                &format!("/scim/Users/{id}"),
                Some(patch(
                    json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
                )),
            )
            .await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("mutability")));
        // PUT replaces; DELETE answers 204; then 404.
        let (st, p) = t
            .call(
                M::PUT,
                &format!("/scim/Users/{id}"),
                Some(json!({"userName": "jdoe2", "emails": [{"value": "jane@example.net"}]})),
            )
            .await;
        assert_eq!(
            (st, p["userName"].as_str(), p.get("name").is_none()),
            (200, Some("jdoe2"), true)
        );
        let (st, _) = t.call(M::DELETE, &format!("/scim/Users/{id}"), None).await;
        assert_eq!(st, 204);
        let (st, e) = t.call(M::GET, &format!("/scim/Users/{id}"), None).await;
        assert_eq!((st, e["status"].as_str()), (404, Some("404")));
    }

    #[tokio::test]
    async fn v2_group_membership_via_patch() {
        let t = T::new(Options {
            users: 60,
            ..Options::default()
        })
        .await;
        let ids: Vec<String> = t
            .sim
            .users()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        let members: Vec<Value> = ids.iter().map(|i| json!({"value": i})).collect();
        let (st, g) = t
            .call(
                M::POST,
                "/scim/Groups",
                Some(json!({"displayName": "Everyone", "members": members})),
            )
            .await;
        assert_eq!(st, 201);
        let gid = g["id"].as_str().unwrap().to_string();
        assert_eq!(g[CUSTOM_GROUP_EXT]["name"], "Everyone");
        assert_eq!(g["members"].as_array().unwrap().len(), 60);
        let (st, e) = t
            .call(M::POST, "/scim/Groups", Some(json!({"displayName": "everyone"})))
            .await;
        assert_eq!((st, e["scimType"].as_str()), (409, Some("uniqueness")));
        let (st, _) = t
            .call(
                M::POST,
                "/scim/Groups",
                Some(json!({"displayName": "Bad", "members": [{"value": "nope"}]})),
            )
            .await;
        assert_eq!(st, 400);
        // The user's groups reflect membership.
        assert_eq!(t.sim.user(&ids[0]).unwrap()["groups"][0]["value"], gid);
        let patch = |ops: Value| json!({"schemas": [patch::PATCH_OP_SCHEMA], "Operations": ops});
        // Removing all 60 in one PATCH exceeds the 50-member batch.
        let (st, e) = t
            .call(
                M::PATCH,
                &format!("/scim/Groups/{gid}"),
                Some(patch(json!([{"op": "remove", "path": "members"}]))),
            )
            .await;
        assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidValue")));
        assert_eq!(t.sim.member_ids(&gid).unwrap().len(), 60);
        let (st, g2) = t
            .call(
                M::PATCH,
                &format!("/scim/Groups/{gid}"),
                Some(patch(json!([
                    {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])},
                    {"op": "remove", "path": "members", "value": [{"value": ids[1]}, {"value": ids[2]}]},
                ]))),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(g2["members"].as_array().unwrap().len(), 57);
        assert!(t.sim.user(&ids[0]).unwrap().get("groups").is_none());
        let (st, _) = t
            .call(
                M::PATCH,
                &format!("/scim/Groups/{gid}"),
                Some(patch(
                    json!([{"op": "add", "path": "members", "value": [{"value": ids[0]}]}]),
                )),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(t.sim.member_ids(&gid).unwrap().len(), 58);
        let (st, _) = t
            .call(
                M::PATCH,
                &format!("/scim/Groups/{gid}"),
                Some(patch(
                    json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]),
                )),
            )
            .await;
        assert_eq!(st, 400);
        // excludedAttributes=members; deleting a user drops the membership; DELETE group 204.
        let (_, b) = t
            .call(M::GET, &format!("/scim/Groups/{gid}?excludedAttributes=members"), None)
            .await;
        assert!(b.get("members").is_none());
        t.call(M::DELETE, &format!("/scim/Users/{}", ids[5]), None).await;
        assert_eq!(t.sim.member_ids(&gid).unwrap().len(), 57);
        let (_, b) = t
            .call(
                M::GET,
                &format!("/scim/Groups?filter={}", enc("displayName eq \"everyone\"")),
                None,
            )
            .await;
        assert_eq!(b["totalResults"], 1);
        let (st, _) = t.call(M::DELETE, &format!("/scim/Groups/{gid}"), None).await;
        assert_eq!(st, 204);
        assert_eq!(t.sim.group_count(), 0);
    }

    #[tokio::test]
    async fn v1_legacy_api() {
        let t = T::new(Options {
            users: 5,
            groups: 2,
            ..Options::default()
        })
        .await;
        let (st, b) = t
            .call(M::GET, "/service/scim/Users?startId=initial&count=2", None)
            .await;
        assert_eq!(st, 200);
        assert_eq!(b["Resources"][0]["id"], "P000001");
        assert_eq!(b["nextId"], "P000003");
        assert!(b["Resources"][0]["userUuid"].is_string());
        let (_, b) = t
            .call(M::GET, "/service/scim/Users?startId=P000005&count=2", None)
            .await;
        assert_eq!(
            (b["Resources"].as_array().unwrap().len(), b["nextId"].as_str()),
            (1, Some("end"))
        );
        // Filters: eq and `and` only.
        let name = t.sim.users()[1]["userName"].as_str().unwrap().to_string();
        let (_, b) = t
            .call(
                M::GET,
                &format!("/service/scim/Users?filter={}", enc(&format!("userName eq \"{name}\""))),
                None,
            )
            .await;
        assert_eq!(b["totalResults"], 1);
        let (st, _) = t
            .call(
                M::GET,
                &format!(
                    "/service/scim/Users?filter={}",
                    enc("userName eq \"a\" or userName eq \"b\"")
                ),
                None,
            )
            .await;
        assert_eq!(st, 400);
        let (st, _) = t
            .call(
                M::GET,
                &format!("/service/scim/Users?filter={}", enc("displayName eq \"a\"")),
                None,
            )
            .await;
        assert_eq!(st, 400);
        // Create with writable groups; PATCH is not offered.
        let gname = t.sim.groups()[0]["displayName"].as_str().unwrap().to_string();
        let (st, u) = t
            .call(
                M::POST,
                "/service/scim/Users",
                Some(json!({"userName": "legacy", "emails": [{"value": "l@x.y"}], "groups": [{"value": gname}]})),
            )
            .await;
        assert_eq!(st, 201);
        let lid = u["id"].as_str().unwrap().to_string();
        assert_eq!(lid, "P000006");
        assert_eq!(u["groups"][0]["value"], gname);
        let (st, g) = t
            .call(
                M::GET,
                &format!(
                    "/service/scim/Groups?filter={}",
                    enc(&format!("displayName eq \"{gname}\""))
                ),
                None,
            )
            .await;
        assert_eq!(st, 200);
        let legacy_gid = g["Resources"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(legacy_gid.len(), 24);
        assert!(
            g["Resources"][0]["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["value"] == lid.as_str())
        );
        let (st, _) = t
            .call(M::PATCH, &format!("/service/scim/Users/{lid}"), Some(json!({})))
            .await;
        assert_eq!(st, 405);
        let (st, u) = t
            .call(
                M::PUT,
                &format!("/service/scim/Users/{lid}"),
                Some(json!({"userName": "legacy", "emails": [{"value": "l@x.y"}], "groups": []})),
            )
            .await;
        assert_eq!((st, u.get("groups").is_none()), (200, true));
        // v2 ids are not v1 ids.
        let uuid = u["userUuid"].as_str().unwrap().to_string();
        let (st, _) = t.call(M::GET, &format!("/service/scim/Users/{uuid}"), None).await;
        assert_eq!(st, 404);
        let (st, _) = t.call(M::DELETE, &format!("/service/scim/Users/{lid}"), None).await;
        assert_eq!(st, 204);
        assert!(t.sim.user(&uuid).is_none());
    }

    #[tokio::test]
    async fn throttling_delays_then_refuses() {
        let t = T::new(Options {
            rate_limit_per_minute: Some(2),
            throttle_hard_limit_per_minute: Some(3),
            throttle_delay: Duration::from_millis(50),
            ..Options::default()
        })
        .await;
        let mut statuses = Vec::new();
        let mut retry = None;
        for _ in 0..5 {
            let r =
                t.c.get(format!("{}/scim/Users", t.sim.base_url))
                    .basic_auth("T000001", Some("ias-secret"))
                    .send()
                    .await
                    .unwrap();
            statuses.push(r.status().as_u16());
            if r.status() == 429 {
                retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                assert_eq!(r.json::<Value>().await.unwrap()["status"], "429");
            }
        }
        assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
        assert_eq!(retry.as_deref(), Some("60"));
        assert_eq!((t.sim.stats().delayed(), t.sim.stats().throttled()), (1, 2));
    }

    #[tokio::test]
    async fn accessors_put_and_if_match() {
        let t = T::new(Options {
            users: 3,
            groups: 1,
            ..Options::default()
        })
        .await;
        let err = t.sim.insert_user(json!({"userName": "x"})).unwrap_err();
        assert!(err.starts_with("400 invalidValue"), "{err}");
        let u = t
            .sim
            .insert_user(json!({"userName": "Zed", "emails": [{"value": "z@z.z"}]}))
            .unwrap();
        assert_eq!(t.sim.user_by_name("zed").unwrap()["id"], u["id"]);
        let legacy = u[SAP_USER_EXT]["userId"].as_str().unwrap();
        assert_eq!(t.sim.user(legacy).unwrap()["id"], u["id"]);
        let dup = t
            .sim
            .insert_user(json!({"userName": "zed", "emails": [{"value": "q@z.z"}]}))
            .unwrap_err();
        assert!(dup.starts_with("409 uniqueness"), "{dup}");
        // v2 group PUT replaces members; a stale If-Match answers 412.
        let g = t.sim.groups()[0].clone();
        let gid = g["id"].as_str().unwrap().to_string();
        let uid = u["id"].as_str().unwrap();
        let r =
            t.c.put(format!("{}/scim/Groups/{gid}", t.sim.base_url))
                .basic_auth("T000001", Some("ias-secret"))
                .header("If-Match", "W/\"9\"")
                .json(&json!({"displayName": g["displayName"], "members": [{"value": uid}]}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 412);
        let (st, g2) = t
            .call(
                M::PUT,
                &format!("/scim/Groups/{gid}"),
                Some(json!({"displayName": g["displayName"], "members": [{"value": uid}]})),
            )
            .await;
        assert_eq!((st, g2["members"].as_array().map(Vec::len)), (200, Some(1)));
        assert_eq!(t.sim.member_ids(&gid).unwrap(), vec![uid.to_string()]);
        // List with attributes.
        let (_, b) = t.call(M::GET, "/scim/Users?attributes=userName&count=2", None).await;
        assert!(
            b["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.get("emails").is_none() && r.get("userName").is_some())
        );
        // v1 id of a group is the 24-hex legacy id, v2 exposes it as additionalId.
        let legacy_gid = g2[CUSTOM_GROUP_EXT]["additionalId"].as_str().unwrap().to_string();
        let (st, g1) = t
            .call(M::GET, &format!("/service/scim/Groups/{legacy_gid}"), None)
            .await;
        assert_eq!(
            (st, g1[CUSTOM_GROUP_EXT]["groupId"].as_str()),
            (200, Some(gid.as_str()))
        );
        assert_eq!(g1["members"][0]["value"], legacy);
    }

    #[tokio::test]
    async fn bulk_with_bulk_id_references() {
        let t = T::new(Options {
            max_bulk_operations: 3,
            ..Options::default()
        })
        .await;
        let req = json!({"schemas": [BULK_REQUEST], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "bulk.one", "emails": [{"value": "b1@x.y"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"displayName": "Bulk", "members": [{"value": "bulkId:u1"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "bulk.one", "emails": [{"value": "b2@x.y"}]}},
        ]});
        let (st, b) = t.call(M::POST, "/scim/Bulk", Some(req)).await;
        assert_eq!(st, 200);
        let ops = b["Operations"].as_array().unwrap();
        assert_eq!(
            ops.iter().map(|o| o["status"].as_str().unwrap()).collect::<Vec<_>>(),
            vec!["201", "201", "409"]
        );
        assert_eq!(ops[2]["response"]["scimType"], "uniqueness");
        let uid = t.sim.user_by_name("bulk.one").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let gid = t.sim.group_by_name("Bulk").unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(t.sim.member_ids(&gid).unwrap(), vec![uid]);
        let too_many = json!({"schemas": [BULK_REQUEST], "Operations": [
            {"method": "DELETE", "path": "/Users/a"}, {"method": "DELETE", "path": "/Users/b"},
            {"method": "DELETE", "path": "/Users/c"}, {"method": "DELETE", "path": "/Users/d"}]});
        let (st, _) = t.call(M::POST, "/scim/Bulk", Some(too_many)).await;
        assert_eq!(st, 413);
        let (st, _) = t.call(M::POST, "/scim/Bulk", Some(json!({"Operations": []}))).await;
        assert_eq!(st, 400);
    }
}
