//! Real-Time Provisioning: the IAS simulator pushes user (and group) changes to configured targets, as
//! the administration console's *Users & Authorizations → Real-Time Provisioning* does (SEED-0, SEED-1).
//!
//! A target is what the console's *Add* dialog takes: a *Display Name*, a *Type* with its *Version*, a
//! *SCIM URL* and an authentication mechanism ([`RealtimeTarget`]):
//!
//! * **Identity Provisioning** ([`RealtimeKind::IdentityProvisioning`]): the real-time API of one IPS source
//!   system. The *SCIM URL* is the user endpoint as the console takes it,
//!   `https://<host>/ipsproxy/api/v1/systems/<source-system-id>/entities/user`; groups go to the sibling
//!   `…/entities/group`. Version 1 sends users and groups as the IAS SCIM API v1 shows them (legacy ids such
//!   as `P000123`, `userUuid`/`mailVerified`/`passwordStatus` flat on the user), version 2 as the Identity
//!   Directory (SCIM 2.0, UUIDs, the SAP extension) — the version must equal `ias.api.version` of the
//!   receiving source system. This is the protocol Provisio's `ips-target` connector speaks:
//!
//!   | change in IAS | push |
//!   |---|---|
//!   | create | `POST {url}` with the entity as IAS stores it, including its `id` |
//!   | update (PUT or PATCH) | `PUT {url}/{id}` with the whole current entity |
//!   | delete | `DELETE {url}/{id}` |
//!
//!   `meta` is never sent. Group changes are pushed when [`RealtimeTarget::groups`] is set (the default of
//!   [`RealtimeTarget::identity_provisioning`]). Note that SAP documents IAS's own real-time provisioning
//!   for users only ("If you want to provision groups in real time, you need to use a REST client for
//!   initiating POST and DELETE requests to the Real-time provisioning API …/entities/group",
//!   CIS:configure-identity-authentication-for-real-time-provisioning-3349645): switch `groups` off for that
//!   behaviour. A user's deletion that drops it from groups, and membership changes made through a v1
//!   user's `groups`, push the user only.
//! * **SAP Jam** ([`RealtimeKind::Jam`]): Jam's SCIM API (`url` = its SCIM base, users at `{url}/Users`),
//!   users only. IAS maps its user id to the Jam `userName` (CIS:job-and-transformation-issues-dbe3c08,
//!   "Provisioned Users Are Duplicated in SAP Jam"): the simulator uses the user's IAS id as IAS shows it
//!   in the console and the v1 API (`P000123`). The body is SCIM 2.0 core (name, displayName, emails,
//!   phone numbers, addresses, title, locale, active …) plus the enterprise extension. Jam assigns its own
//!   ids: an update or delete finds the Jam user by the id Jam answered the create with, else by
//!   `filter=userName eq "P000123"`; an update of a user Jam does not know creates it. SAP recommends
//!   this direct route for up to 500 users (SEED-1); the simulator does not enforce a limit.
//!
//! Pushes are asynchronous: each target has one queue worked by one task, so the pushes to a target arrive
//! in the order the changes were stored (they are queued while the store is still locked). A change is
//! pushed to every target except the ones whose [`RealtimeTarget::initiator_client_id`] is the client that
//! made the change — SEED-0: "The user update to Identity Provisioning won't be triggered when the operation
//! on the user (create, update, delete) is initiated by Identity Provisioning". SAP also documents that
//! users written by a provisioning job are not forwarded to *any* real-time target (the caution in
//! configure-identity-authentication-for-real-time-provisioning-3349645): set the IPS technical user as the
//! initiator of every target to model that. Changes made through the simulator's accessors
//! (`insert_user`, `remove_user`, `insert_group`) have no initiator: they are pushed everywhere, like an
//! administrator's changes in the console. Seeded data is not pushed; [`super::State::provision_users`] is
//! the console's *Provision* button (every user to one target).
//!
//! **Retries.** IAS does not document what it does when a target fails. The simulator keeps it modest: a
//! push that could not connect or was answered 5xx or 429 is retried up to [`RealtimeRetry::attempts`] in
//! all, waiting [`RealtimeRetry::backoff`] and then twice as long each time (default 3 attempts: 200 ms,
//! 400 ms), and then recorded as failed; the queue moves on to the next push. Other answers (4xx) are not
//! retried; every outcome that is not 2xx counts as failed ([`super::State::failed_pushes`]). With OAuth,
//! a 401 fetches a new token once without counting as an attempt.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};

use super::{ENTERPRISE_EXT, USER_SCHEMA};

/// The *Type* of a real-time target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealtimeKind {
    /// *Identity Provisioning*: the real-time API of an IPS source system. `version` is 1 (IAS SCIM API
    /// payloads) or 2 (Identity Directory SCIM 2.0 payloads), as `ias.api.version` of that source system.
    IdentityProvisioning {
        /// 1 or 2.
        version: u8,
    },
    /// *SAP Jam*: Jam's SCIM API, users only.
    Jam,
}

/// The *Authentication Mechanism* of a real-time target (client certificates are not simulated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealtimeAuth {
    /// *Basic*: user (client id of the technical user) and password (its secret).
    Basic {
        /// Basic-auth user.
        user: String,
        /// Its password.
        password: String,
    },
    /// A fixed bearer token.
    Bearer(String),
    /// *OAuth*: a client-credentials token from `token_url` (client id/secret in a Basic header), cached
    /// until shortly before it expires and fetched again after a 401.
    OAuth {
        /// The token endpoint (IPS/IAS: `https://<tenant>/oauth2/token`; Jam: `https://<host>/api/v1/auth/token`).
        token_url: String,
        /// OAuth client id.
        client_id: String,
        /// OAuth client secret.
        client_secret: String,
    },
}

/// One target of Real-Time Provisioning, as the console's *Add* dialog takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealtimeTarget {
    /// *Display Name*.
    pub display_name: String,
    /// *Type* (and *Version*).
    pub kind: RealtimeKind,
    /// *SCIM URL*. Identity Provisioning: the user endpoint,
    /// `…/ipsproxy/api/v1/systems/<source-system-id>/entities/user` (groups go to `…/entities/group`).
    /// Jam: its SCIM base URL (`https://<host>/api/v1/scim`; users at `{url}/Users`).
    pub url: String,
    /// How pushes authenticate.
    pub auth: RealtimeAuth,
    /// The loop guard: changes made by a request authenticated as this client (Basic user or OAuth client
    /// of the incoming SCIM request) are not pushed to this target. Set it to the technical user the IPS
    /// tenant writes into IAS with.
    pub initiator_client_id: Option<String>,
    /// Whether group creates/updates/deletes are pushed too (Identity Provisioning targets only; Jam
    /// targets receive users only).
    pub groups: bool,
}

impl RealtimeTarget {
    /// An *Identity Provisioning* target (`groups` on), display name "Identity Provisioning".
    pub fn identity_provisioning(version: u8, url: impl Into<String>, auth: RealtimeAuth) -> RealtimeTarget {
        RealtimeTarget {
            display_name: "Identity Provisioning".into(),
            kind: RealtimeKind::IdentityProvisioning { version },
            url: url.into(),
            auth,
            initiator_client_id: None,
            groups: true,
        }
    }

    /// An *SAP Jam* target (users only), display name "SAP Jam".
    pub fn jam(scim_url: impl Into<String>, auth: RealtimeAuth) -> RealtimeTarget {
        RealtimeTarget {
            display_name: "SAP Jam".into(),
            kind: RealtimeKind::Jam,
            url: scim_url.into(),
            auth,
            initiator_client_id: None,
            groups: false,
        }
    }

    /// This target with another display name.
    pub fn named(mut self, display_name: impl Into<String>) -> RealtimeTarget {
        self.display_name = display_name.into();
        self
    }

    /// This target with the loop guard set to `client_id`.
    pub fn with_initiator(mut self, client_id: impl Into<String>) -> RealtimeTarget {
        self.initiator_client_id = Some(client_id.into());
        self
    }

    /// Checks what the console checks: a version of 1 or 2, http(s) URLs, and for Identity Provisioning a
    /// SCIM URL ending in `/entities/user`.
    pub fn validate(&self) -> Result<(), String> {
        let http = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !http(&self.url) {
            return Err(format!(
                "Real-time target `{}`: the SCIM URL must be an http(s) URL, not `{}`",
                self.display_name, self.url
            ));
        }
        if let RealtimeAuth::OAuth { token_url, .. } = &self.auth
            && !http(token_url)
        {
            return Err(format!(
                "Real-time target `{}`: the OAuth URL must be an http(s) URL, not `{token_url}`",
                self.display_name
            ));
        }
        if let RealtimeKind::IdentityProvisioning { version } = self.kind {
            if !matches!(version, 1 | 2) {
                return Err(format!(
                    "Real-time target `{}`: the version is 1 or 2 (ias.api.version of the receiving source system), not {version}",
                    self.display_name
                ));
            }
            if !self.url.trim_end_matches('/').ends_with("/entities/user") {
                return Err(format!(
                    "Real-time target `{}`: the SCIM URL of Identity Provisioning is https://<host>/ipsproxy/api/v1/systems/<source-system-id>/entities/user, not `{}`",
                    self.display_name, self.url
                ));
            }
        }
        Ok(())
    }

    /// Where users go: the SCIM URL (Identity Provisioning) or `{url}/Users` (Jam).
    pub fn user_url(&self) -> String {
        let url = self.url.trim_end_matches('/');
        match self.kind {
            RealtimeKind::IdentityProvisioning { .. } => url.to_string(),
            RealtimeKind::Jam => format!("{url}/Users"),
        }
    }

    /// Where groups go (Identity Provisioning: the SCIM URL with `/user` replaced by `/group`).
    pub fn group_url(&self) -> String {
        let url = self.url.trim_end_matches('/');
        match self.kind {
            RealtimeKind::IdentityProvisioning { .. } => match url.strip_suffix("/user") {
                Some(base) => format!("{base}/group"),
                None => format!("{url}/group"),
            },
            RealtimeKind::Jam => format!("{url}/Groups"),
        }
    }
}

/// `KIND,VERSION,URL,USER,PASSWORD[,TOKEN_URL[,INITIATOR]]` (the `provisio-sim ias --realtime-target`
/// option): KIND is `ips` (or `identity-provisioning`) or `jam`; VERSION 1 or 2 (ignored for Jam, may be
/// empty); USER/PASSWORD are Basic credentials, or the OAuth client when TOKEN_URL is given. A Jam target
/// without TOKEN_URL whose URL ends with `/api/v1/scim` gets OAuth at the sibling `/api/v1/auth/token`.
/// INITIATOR sets [`RealtimeTarget::initiator_client_id`].
impl FromStr for RealtimeTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let f: Vec<&str> = s.split(',').map(str::trim).collect();
        if !(5..=7).contains(&f.len()) {
            return Err(format!(
                "expected KIND,VERSION,URL,USER,PASSWORD[,TOKEN_URL[,INITIATOR]], got `{s}`"
            ));
        }
        let (user, password) = (f[3].to_string(), f[4].to_string());
        let mut token_url = f.get(5).filter(|t| !t.is_empty()).map(|t| t.to_string());
        let mut target = match f[0].to_ascii_lowercase().as_str() {
            "ips" | "identity-provisioning" | "identityprovisioning" => {
                let version = f[1]
                    .parse::<u8>()
                    .map_err(|_| format!("VERSION is 1 or 2, not `{}`", f[1]))?;
                RealtimeTarget::identity_provisioning(version, f[2], RealtimeAuth::Bearer(String::new()))
            }
            "jam" => {
                if token_url.is_none() {
                    let url = f[2].trim_end_matches('/');
                    token_url = url
                        .strip_suffix(crate::sim::jam::SCIM_PREFIX)
                        .map(|host| format!("{host}{}", crate::sim::jam::TOKEN_PATH));
                }
                RealtimeTarget::jam(f[2], RealtimeAuth::Bearer(String::new()))
            }
            other => return Err(format!("KIND is `ips` or `jam`, not `{other}`")),
        };
        target.auth = match token_url {
            Some(token_url) => RealtimeAuth::OAuth {
                token_url,
                client_id: user,
                client_secret: password,
            },
            None => RealtimeAuth::Basic { user, password },
        };
        target.initiator_client_id = f.get(6).filter(|i| !i.is_empty()).map(|i| i.to_string());
        target.validate()?;
        Ok(target)
    }
}

/// How failed pushes are retried (see the module documentation; IAS's behaviour is not documented).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealtimeRetry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for RealtimeRetry {
    fn default() -> Self {
        RealtimeRetry {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The outcome of one push.
#[derive(Clone, Debug, PartialEq)]
pub struct PushRecord {
    /// The target's index ([`super::State::add_realtime_target`]; targets of `Options` are 0, 1, …).
    pub target: usize,
    /// `"user"` or `"group"`.
    pub entity: &'static str,
    /// The entity's id as the target knows it: Identity Provisioning version 1 the legacy id (`P000123`,
    /// 24 hex digits for groups), version 2 the UUID; Jam the Jam `userName` (the legacy id).
    pub id: String,
    /// `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path of the request's URL.
    pub path: String,
    /// The final answer's status; `None` when no answer came (connection refused, timeout, no token).
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed (transport error, or the answer's body), `None` on success.
    pub error: Option<String>,
    /// The body sent, if any.
    pub body: Option<Value>,
}

impl PushRecord {
    /// Whether the target answered 2xx.
    pub fn ok(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

// ----- internals used by the simulator ------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entity {
    User,
    Group,
}

impl Entity {
    fn name(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Group => "group",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Create,
    Replace,
    Delete,
}

/// One stored change, in every form a target may need.
pub(super) struct Event {
    pub entity: Entity,
    pub change: Change,
    pub uuid: String,
    pub legacy: String,
    /// The entity in the v1 and v2 representation (`None` for a delete).
    pub v1: Option<Value>,
    pub v2: Option<Value>,
    /// The client that made the change; `None` for accessor calls.
    pub initiator: Option<String>,
}

struct Job {
    entity: Entity,
    change: Change,
    /// The id in the target's terms.
    id: String,
    /// The IAS UUID (Jam: the key of the id map).
    key: String,
    body: Option<Value>,
}

struct Slot {
    target: Arc<RealtimeTarget>,
    tx: mpsc::UnboundedSender<Job>,
    /// Until a worker task takes it (a task needs a Tokio runtime).
    rx: Option<mpsc::UnboundedReceiver<Job>>,
}

#[derive(Default)]
struct Hub {
    slots: Vec<Option<Slot>>,
    log: Vec<PushRecord>,
    failed: u64,
}

/// The targets, their queues and the push log of one simulator.
pub(super) struct Realtime {
    hub: Mutex<Hub>,
    pending: AtomicUsize,
    settled: Notify,
    retry: RealtimeRetry,
    me: Weak<Realtime>,
}

fn without_meta(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            m.shift_remove("meta");
            Value::Object(m)
        }
        other => other,
    }
}

/// Core SCIM user attributes a Jam push carries (besides `userName` and the enterprise extension).
const JAM_ATTRIBUTES: &[&str] = &[
    "name",
    "displayName",
    "nickName",
    "title",
    "emails",
    "phoneNumbers",
    "addresses",
    "photos",
    "locale",
    "preferredLanguage",
    "timezone",
    "active",
];

/// The Jam form of a user: `userName` = the IAS user id, core attributes, the enterprise extension.
fn jam_user(v2: &Value, user_name: &str) -> Value {
    let mut m = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    m.insert("userName".into(), json!(user_name));
    if let Some(o) = v2.as_object() {
        for (k, v) in o {
            if JAM_ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                m.insert(k.clone(), v.clone());
            } else if k.eq_ignore_ascii_case(ENTERPRISE_EXT) {
                schemas.push(json!(ENTERPRISE_EXT));
                m.insert(ENTERPRISE_EXT.into(), v.clone());
            }
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    Value::Object(m)
}

/// The job for `target`, or `None` when the change is not pushed there.
fn job_for(target: &RealtimeTarget, ev: &Event, guard: bool) -> Option<Job> {
    if guard && ev.initiator.is_some() && ev.initiator.as_deref() == target.initiator_client_id.as_deref() {
        return None;
    }
    match target.kind {
        RealtimeKind::IdentityProvisioning { version } => {
            if ev.entity == Entity::Group && !target.groups {
                return None;
            }
            let (id, body) = if version == 1 {
                (ev.legacy.clone(), ev.v1.clone())
            } else {
                (ev.uuid.clone(), ev.v2.clone())
            };
            Some(Job {
                entity: ev.entity,
                change: ev.change,
                id,
                key: ev.uuid.clone(),
                body: body.map(without_meta),
            })
        }
        RealtimeKind::Jam => {
            if ev.entity == Entity::Group {
                return None;
            }
            Some(Job {
                entity: ev.entity,
                change: ev.change,
                id: ev.legacy.clone(),
                key: ev.uuid.clone(),
                body: ev.v2.as_ref().map(|v| jam_user(v, &ev.legacy)),
            })
        }
    }
}

impl Realtime {
    pub(super) fn new(retry: RealtimeRetry) -> Arc<Realtime> {
        Arc::new_cyclic(|me| Realtime {
            hub: Mutex::new(Hub::default()),
            pending: AtomicUsize::new(0),
            settled: Notify::new(),
            retry: RealtimeRetry {
                attempts: retry.attempts.max(1),
                backoff: retry.backoff,
            },
            me: me.clone(),
        })
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn add(&self, target: RealtimeTarget) -> Result<usize, String> {
        target.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.hub();
        hub.slots.push(Some(Slot {
            target: Arc::new(target),
            tx,
            rx: Some(rx),
        }));
        let index = hub.slots.len() - 1;
        self.start_workers(&mut hub);
        Ok(index)
    }

    pub(super) fn remove(&self, index: usize) -> bool {
        let slot = self.hub().slots.get_mut(index).and_then(Option::take);
        let Some(slot) = slot else { return false };
        // A running worker drains its queue and stops; an unstarted queue is dropped.
        if let Some(mut rx) = slot.rx {
            let mut dropped = 0;
            while rx.try_recv().is_ok() {
                dropped += 1;
            }
            if dropped > 0 {
                self.pending.fetch_sub(dropped, Ordering::SeqCst);
                self.settled.notify_waiters();
            }
        }
        true
    }

    pub(super) fn targets(&self) -> Vec<(usize, RealtimeTarget)> {
        self.hub()
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, (*s.target).clone())))
            .collect()
    }

    pub(super) fn has_targets(&self) -> bool {
        self.hub().slots.iter().any(Option::is_some)
    }

    pub(super) fn has_target(&self, index: usize) -> bool {
        self.hub().slots.get(index).is_some_and(Option::is_some)
    }

    /// Queues `ev` for every target (`only`: for that one target, without the loop guard).
    pub(super) fn publish(&self, ev: &Event, only: Option<usize>) {
        let mut hub = self.hub();
        for (i, slot) in hub.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            if only.is_some_and(|o| o != i) {
                continue;
            }
            if let Some(job) = job_for(&slot.target, ev, only.is_none()) {
                self.pending.fetch_add(1, Ordering::SeqCst);
                if slot.tx.send(job).is_err() {
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        self.start_workers(&mut hub);
    }

    /// Starts the worker of every queue that has none yet, if there is a Tokio runtime to run it.
    fn start_workers(&self, hub: &mut Hub) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (index, slot) in hub.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if let Some(rx) = slot.rx.take() {
                let worker = Worker::new(slot.target.clone(), self.retry);
                rt.spawn(worker.run(self.me.clone(), index, rx));
            }
        }
    }

    pub(super) fn start(&self) {
        self.start_workers(&mut self.hub());
    }

    fn finish(&self, rec: PushRecord) {
        {
            let mut hub = self.hub();
            if !rec.ok() {
                hub.failed += 1;
            }
            hub.log.push(rec);
        }
        self.pending.fetch_sub(1, Ordering::SeqCst);
        self.settled.notify_waiters();
    }

    pub(super) fn pushes(&self) -> Vec<PushRecord> {
        self.hub().log.clone()
    }

    pub(super) fn failed(&self) -> u64 {
        self.hub().failed
    }

    pub(super) fn clear(&self) {
        let mut hub = self.hub();
        hub.log.clear();
        hub.failed = 0;
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    pub(super) async fn idle(&self, timeout: Duration) -> bool {
        self.start();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}

// ----- the worker of one target --------------------------------------------------------------------

const SCIM_JSON: &str = "application/scim+json";
const ACCEPT: &str = "application/scim+json, application/json";

/// What one request came to.
struct Outcome {
    status: Option<u16>,
    attempts: u32,
    error: Option<String>,
    answer: Option<Value>,
}

struct Worker {
    target: Arc<RealtimeTarget>,
    retry: RealtimeRetry,
    client: reqwest::Client,
    token: Option<(String, Instant)>,
    /// Jam: IAS UUID → Jam id.
    jam_ids: HashMap<String, String>,
}

/// Percent-encodes an id for a path segment.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| url.to_string())
}

fn short(text: &str) -> String {
    text.chars().take(500).collect()
}

impl Worker {
    fn new(target: Arc<RealtimeTarget>, retry: RealtimeRetry) -> Worker {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Worker {
            target,
            retry,
            client,
            token: None,
            jam_ids: HashMap::new(),
        }
    }

    async fn run(mut self, hub: Weak<Realtime>, index: usize, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            let rec = self.push(index, job).await;
            let Some(rt) = hub.upgrade() else { break };
            rt.finish(rec);
        }
    }

    async fn push(&mut self, index: usize, job: Job) -> PushRecord {
        let (method, url, out) = match self.target.kind {
            RealtimeKind::IdentityProvisioning { .. } => self.push_ips(&job).await,
            RealtimeKind::Jam => self.push_jam(&job).await,
        };
        PushRecord {
            target: index,
            entity: job.entity.name(),
            id: job.id,
            method: method.to_string(),
            path: path_of(&url),
            status: out.status,
            attempts: out.attempts,
            error: out.error,
            body: job.body,
        }
    }

    async fn push_ips(&mut self, job: &Job) -> (Method, String, Outcome) {
        let base = match job.entity {
            Entity::User => self.target.user_url(),
            Entity::Group => self.target.group_url(),
        };
        let (method, url) = match job.change {
            Change::Create => (Method::POST, base),
            Change::Replace => (Method::PUT, format!("{base}/{}", segment(&job.id))),
            Change::Delete => (Method::DELETE, format!("{base}/{}", segment(&job.id))),
        };
        let out = self.send(method.clone(), &url, job.body.as_ref()).await;
        (method, url, out)
    }

    async fn push_jam(&mut self, job: &Job) -> (Method, String, Outcome) {
        let users = self.target.user_url();
        let jam_id = match job.change {
            Change::Create => None,
            Change::Replace | Change::Delete => self.jam_id(&job.key, &job.id).await,
        };
        match (job.change, jam_id) {
            (Change::Delete, None) => {
                let out = Outcome {
                    status: Some(404),
                    attempts: 1,
                    error: Some(format!("SAP Jam has no user with userName `{}`", job.id)),
                    answer: None,
                };
                (Method::DELETE, users, out)
            }
            (Change::Delete, Some(jid)) => {
                let url = format!("{users}/{}", segment(&jid));
                let out = self.send(Method::DELETE, &url, None).await;
                if matches!(out.status, Some(200..=299 | 404)) {
                    self.jam_ids.remove(&job.key);
                }
                (Method::DELETE, url, out)
            }
            (Change::Replace, Some(jid)) => {
                let url = format!("{users}/{}", segment(&jid));
                let out = self.send(Method::PUT, &url, job.body.as_ref()).await;
                (Method::PUT, url, out)
            }
            // A create, or an update of a user Jam does not know.
            _ => {
                let out = self.send(Method::POST, &users, job.body.as_ref()).await;
                if matches!(out.status, Some(200..=299))
                    && let Some(id) = out.answer.as_ref().and_then(|a| a.get("id")).and_then(Value::as_str)
                {
                    self.jam_ids.insert(job.key.clone(), id.to_string());
                }
                (Method::POST, users, out)
            }
        }
    }

    /// The Jam id of a user: remembered from its create, else looked up by `userName`.
    async fn jam_id(&mut self, key: &str, user_name: &str) -> Option<String> {
        if let Some(id) = self.jam_ids.get(key) {
            return Some(id.clone());
        }
        let filter = format!("userName eq \"{user_name}\"");
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", &filter)
            .finish();
        let url = format!("{}?{query}", self.target.user_url());
        let out = self.send(Method::GET, &url, None).await;
        let id = out
            .answer
            .as_ref()
            .and_then(|a| a.get("Resources"))
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)?;
        self.jam_ids.insert(key.to_string(), id.clone());
        Some(id)
    }

    async fn authorization(&mut self, refresh: bool) -> Result<String, String> {
        match &self.target.auth {
            RealtimeAuth::Basic { user, password } => Ok(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            RealtimeAuth::Bearer(token) => Ok(format!("Bearer {token}")),
            RealtimeAuth::OAuth {
                token_url,
                client_id,
                client_secret,
            } => {
                if !refresh
                    && let Some((token, until)) = &self.token
                    && Instant::now() < *until
                {
                    return Ok(format!("Bearer {token}"));
                }
                let resp = self
                    .client
                    .post(token_url)
                    .basic_auth(client_id, Some(client_secret))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .map_err(|e| format!("token request to {token_url} failed: {e}"))?;
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let token = v
                    .get("access_token")
                    .and_then(Value::as_str)
                    .filter(|_| (200..300).contains(&status))
                    .ok_or_else(|| format!("token request to {token_url} answered {status}: {}", short(&text)))?
                    .to_string();
                let secs = v.get("expires_in").and_then(Value::as_u64).unwrap_or(300);
                let until = Instant::now() + Duration::from_secs(secs.saturating_sub(30).max(1));
                self.token = Some((token.clone(), until));
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// One request with retries (transport errors, 5xx, 429) and one token refresh on 401 (OAuth).
    async fn send(&mut self, method: Method, url: &str, body: Option<&Value>) -> Outcome {
        let oauth = matches!(self.target.auth, RealtimeAuth::OAuth { .. });
        let mut attempts = 0;
        let mut refresh = false;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let result = match self.authorization(refresh).await {
                Err(e) => Err(e),
                Ok(auth) => {
                    let mut rb = self
                        .client
                        .request(method.clone(), url)
                        .header("authorization", auth)
                        .header("accept", ACCEPT);
                    if let Some(b) = body {
                        rb = rb.header("content-type", SCIM_JSON).body(b.to_string());
                    }
                    match rb.send().await {
                        Err(e) => Err(e.to_string()),
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let text = resp.text().await.unwrap_or_default();
                            Ok((status, text))
                        }
                    }
                }
            };
            refresh = false;
            let retryable = match &result {
                Ok((401, _)) if oauth && !refreshed => {
                    refresh = true;
                    refreshed = true;
                    attempts -= 1;
                    continue;
                }
                Ok((status, _)) => *status >= 500 || *status == 429,
                Err(_) => true,
            };
            if retryable && attempts < self.retry.attempts {
                let factor = 1u32 << (attempts - 1).min(16);
                tokio::time::sleep(self.retry.backoff.saturating_mul(factor)).await;
                continue;
            }
            return match result {
                Ok((status, text)) => Outcome {
                    status: Some(status),
                    attempts,
                    error: (!(200..300).contains(&status)).then(|| short(&text)),
                    answer: serde_json::from_str(&text).ok(),
                },
                Err(e) => Outcome {
                    status: None,
                    attempts,
                    error: Some(e),
                    answer: None,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests;
