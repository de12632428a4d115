//! The shapes of the admin API's answers, for the OpenAPI document (`/api/v1/openapi.json`).
//!
//! Most answers are built from the engine's and the store's types (which do not depend on utoipa), so their
//! schemas are written here beside the handlers; `openapi_tests` checks answers of a live router against
//! them, and Schemathesis checks every operation's answers against the document.

// These types are only described, never built: the handlers answer the real types.
#![allow(dead_code)]
// Each field is named as in the JSON; where a name does not say enough, its doc comment becomes the
// description in the document.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// Every error of the admin API: `{"error": "<HTTP reason>", "message": "<what is wrong and what to do>"}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// The HTTP reason phrase (`Bad Request`, `Not Found`, …).
    pub error: String,
    /// What is wrong and where, for the caller.
    pub message: String,
}

/// An error of `POST /oauth2/token` (RFC 6749 section 5.2).
#[derive(ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `unsupported_grant_type`, `invalid_client` or `temporarily_unavailable`.
    pub error: String,
    /// What is wrong.
    pub error_description: String,
}

/// A bearer token (RFC 6749 section 5.1).
#[derive(ToSchema)]
pub struct TokenAnswer {
    /// The token, for `Authorization: Bearer …`.
    pub access_token: String,
    /// `bearer`.
    pub token_type: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
}

/// The client-credentials form of `POST /oauth2/token` (the credentials may come as HTTP Basic instead).
#[derive(ToSchema)]
pub struct TokenForm {
    pub grant_type: GrantType,
    /// The technical user's (or admin's) name.
    pub client_id: Option<String>,
    /// Its password.
    pub client_secret: Option<String>,
}

/// A permission of a technical user.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
pub enum Permission {
    ManageSystems,
    RunJobs,
    ReadLogs,
    ProxyApi,
    RealtimeApi,
    ManagePlugins,
    ReadAudit,
}

/// An entity type.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EntityType {
    User,
    Group,
}

/// A job type.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobType {
    Read,
    Resync,
}

/// A decision on held deletes.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

/// What a login lock is on.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LockScope {
    Principal,
    Address,
}

/// The form of an export.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Csv,
}

/// A notification channel.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ChannelName {
    Webhook,
    Email,
}

/// A kind of notification event.
#[derive(ToSchema)]
pub enum EventKind {
    #[schema(rename = "job.failed")]
    JobFailed,
    #[schema(rename = "job.finished_with_errors")]
    JobFinishedWithErrors,
    #[schema(rename = "job.recovered")]
    JobRecovered,
    #[schema(rename = "deletes.held")]
    DeletesHeld,
    #[schema(rename = "target.quarantined")]
    TargetQuarantined,
    #[schema(rename = "plugin.trapping")]
    PluginTrapping,
    #[schema(rename = "realtime.backlog")]
    RealtimeBacklog,
}

/// The grant of `POST /oauth2/token`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
}

/// What a system is for.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    Source,
    Target,
    Proxy,
}

/// A principal (an admin or a technical user).
#[derive(ToSchema)]
pub struct Principal {
    pub id: String,
    pub name: String,
    /// `admin` or `technical`.
    pub kind: String,
    pub permissions: Vec<Permission>,
}

/// A technical user as created or changed.
#[derive(ToSchema)]
pub struct TechnicalUser {
    pub id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
}

/// A running login lock.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LoginLock {
    /// `principal` or `address`.
    pub scope: String,
    /// The principal's name (lower-cased) or the client address.
    pub subject: String,
    /// Seconds the lock lasts still.
    pub retry_after_seconds: u64,
}

/// A system as `POST`/`PUT /api/v1/systems[/{id}]` take it.
#[derive(ToSchema)]
pub struct SystemInput {
    /// Unique name.
    pub name: String,
    /// Connector type (`scim`, `xsuaa`, `ias`, `jam`, `ips-target`, or an uploaded one).
    #[schema(rename = "type")]
    pub connector: String,
    /// Pinned connector version; the active one when absent.
    pub version: Option<String>,
    pub role: Role,
    /// SAP's property names; scalar values are taken as text; a secret sent back as `********` keeps its value.
    #[schema(required = false)]
    pub properties: BTreeMap<String, Value>,
    /// For targets: ids of the sources it receives from.
    #[schema(required = false)]
    pub sources: Vec<String>,
    /// The transformation; the connector's default when absent. For proxies `{"read": …, "write": …}`.
    pub transformation: Option<Value>,
    /// Properties to turn from sealed secrets into plain values (their value given in clear).
    #[schema(required = false)]
    pub declassify: Vec<String>,
    /// The description of the transformation version this change makes, if it makes one.
    pub description: Option<String>,
    /// Whether it takes part in provisioning; unchanged when absent, new systems are enabled.
    pub enabled: Option<bool>,
    /// Read-only (from a `GET`), ignored.
    pub quarantine: Option<Value>,
    /// Read-only (from a `GET`), ignored.
    #[schema(rename = "lastConnectionTest")]
    pub last_connection_test: Option<Value>,
}

/// A target held out of provisioning.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Quarantine {
    pub since: String,
    /// `credentials`, `not-found`, `failed-runs` or `failure-rate`.
    pub reason: String,
    pub message: String,
    pub next_probe_at: String,
    pub probes: i64,
}

/// The outcome of a Test Connection.
#[derive(ToSchema)]
pub struct ConnectionTest {
    pub ok: bool,
    pub message: String,
    pub at: String,
}

/// A system as the API answers it, secrets masked as `********`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct System {
    pub id: String,
    pub name: String,
    #[schema(rename = "type")]
    pub connector: String,
    pub version: Option<String>,
    pub role: Role,
    pub properties: BTreeMap<String, String>,
    pub sources: Vec<String>,
    /// `null` when the connector's default applies.
    pub transformation: Option<Value>,
    pub transformation_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub enabled: bool,
    pub quarantine: Option<Quarantine>,
    pub last_connection_test: Option<ConnectionTest>,
    /// On create, update, enable and disable: `System <name> configuration updated.`
    #[schema(required = false)]
    pub message: String,
    /// On release: the quarantine that ended, `null` when there was none.
    #[schema(required = false)]
    pub released: Option<Quarantine>,
}

/// The outcome of Test Connection.
#[derive(ToSchema)]
pub struct ConnectionCheck {
    pub ok: bool,
    pub message: String,
}

/// A property a connector declares.
#[derive(ToSchema)]
pub struct PropertySpec {
    pub name: String,
    pub required: bool,
    pub secret: bool,
    pub default: Option<String>,
    pub doc: Option<String>,
}

/// A system on a plugin version.
#[derive(ToSchema)]
pub struct SystemRef {
    pub id: String,
    pub name: String,
    /// Whether it pins the version (else it follows the active one).
    pub pinned: bool,
}

/// Calls of a duration bucket.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DurationBucket {
    /// Upper bound in ms; `null` for the last, unbounded bucket.
    pub le_ms: Option<f64>,
    pub count: u64,
}

/// A plugin version's call statistics.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PluginStats {
    pub calls: u64,
    pub connector_errors: u64,
    pub failures: u64,
    pub traps: u64,
    pub limit_hits: u64,
    pub denied_requests: u64,
    pub throttled_calls: u64,
    pub background_calls: u64,
    pub time_ms: f64,
    /// The most recent trap, limit hit or refused request.
    pub last_incident: Option<Value>,
    pub duration_buckets: Vec<DurationBucket>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// A loaded connector plugin version.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Plugin {
    pub name: String,
    pub version: String,
    /// SHA-256 of the component.
    pub digest: String,
    /// The WIT contract it was built against (`0.1.0`, `0.2.0`, `0.3.0`, `0.4.0`).
    pub contract: String,
    pub size: u64,
    pub entity_kinds: Vec<String>,
    pub operations: Vec<String>,
    pub properties: Vec<PropertySpec>,
    pub has_default_read_transformation: bool,
    pub has_default_write_transformation: bool,
    pub has_default_proxy_read_transformation: bool,
    pub has_default_proxy_write_transformation: bool,
    /// Embedded in the binary (listings only).
    #[schema(required = false)]
    pub bundled: bool,
    /// What unpinned systems run.
    #[schema(required = false)]
    pub active: bool,
    /// Systems on it (listings only).
    #[schema(required = false)]
    pub used_by: Vec<SystemRef>,
    /// Call statistics (listings only).
    #[schema(required = false)]
    pub stats: PluginStats,
    /// On upload: the version unpinned systems ran before, if this one replaced it.
    #[schema(required = false)]
    pub replaced: Option<String>,
}

/// What a rollback or an activation changed.
#[derive(ToSchema)]
pub struct Switched {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// A run of a source (statistics, outcome and progress spread in as the run reports them).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub source_id: String,
    /// `read` or `resync`.
    #[schema(rename = "type")]
    pub job_type: String,
    /// `full` or `delta`.
    pub read_mode: String,
    /// `manual`, `schedule`, …
    pub trigger: String,
    pub started_by: String,
    /// `Queued`, `Running`, `Success`, `Warning`, `Error`, `Stopped`, …
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The replica that runs it.
    pub node: Option<String>,
    pub attempt: i64,
}

/// One line of a job's per-entity log.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LogEntry {
    pub seq: i64,
    pub at: String,
    pub target_id: Option<String>,
    pub entity_type: String,
    pub source_id: Option<String>,
    pub target_entity_id: Option<String>,
    /// `read`, `create`, `update`, `delete`, `match`, `assign`.
    pub operation: String,
    /// `success`, `failed`, `skipped`, `held` or `planned`.
    pub outcome: String,
    pub reason: Option<String>,
    pub changes: Option<Value>,
}

/// A page of a job's per-entity log.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Give it as `after` for the next page; `null` on the last.
    pub next_after: Option<i64>,
}

/// A delete held back by a threshold.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HeldDelete {
    pub target_id: String,
    pub entity_type: String,
    pub source_id: String,
    pub target_entity_id: String,
    /// `approved`, `rejected`, or `null` while pending.
    pub decision: Option<String>,
}

/// One held delete, as a decision names it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct HeldKey {
    pub target_id: String,
    pub entity_type: String,
    pub source_id: String,
}

/// Which held deletes a decision is about; an empty body means all of them.
#[derive(ToSchema)]
pub struct HeldSelection {
    pub entities: Vec<HeldKey>,
}

/// A source's schedule: `everySeconds` or `cron`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Schedule {
    #[schema(required = false)]
    pub source_id: String,
    #[schema(required = false)]
    pub job_type: JobType,
    pub every_seconds: Option<i64>,
    /// A cron expression (UTC).
    pub cron: Option<String>,
    #[schema(required = false)]
    pub enabled: bool,
}

/// A schedule as set, and when it fires next.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ScheduleSet {
    pub schedule: Schedule,
    pub next_run: Option<String>,
}

/// `{"linksRemoved": n}`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ResetAnswer {
    pub links_removed: u64,
}

/// A real-time event as logged.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Event {
    pub seq: i64,
    pub source_id: String,
    pub entity_type: String,
    pub entity_id: String,
    /// `create`, `replace`, `patch`, `delete`.
    pub operation: String,
    pub received_at: String,
    pub received_by: String,
    /// `pending`, `done`, `failed` or `parked`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    /// Per target: operation, state, reason.
    pub results: Option<Value>,
    pub finished_at: Option<String>,
}

/// A changed field of an audited object (secrets as `"(changed)"`).
#[derive(ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One entry of the audit log.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub principal: String,
    pub principal_id: String,
    /// `admin`, `technical` or `unknown` (a failed login).
    pub principal_kind: String,
    pub address: Option<String>,
    /// `api` or `console`.
    pub channel: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub object_name: String,
    pub changes: Vec<FieldChange>,
}

/// A page of the audit log.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Give it as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A notification subscription (its secret is never answered, except a generated one once, on create).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    /// The source system it is about; `null` for every system.
    pub system_id: Option<String>,
    pub kinds: Vec<String>,
    /// `webhook` or `email`.
    pub channel: String,
    pub backlog_minutes: u32,
    pub description: String,
    pub has_secret: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Webhooks.
    #[schema(required = false)]
    pub url: String,
    /// E-mail.
    #[schema(required = false)]
    pub recipients: Vec<String>,
    /// The generated secret, on create only.
    #[schema(required = false)]
    pub secret: String,
}

/// A notification delivery.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub idempotency_key: String,
    pub subscription_id: String,
    pub channel: String,
    pub kind: String,
    /// `pending`, `delivered`, `failed`, `suppressed`, …
    pub status: String,
    pub summary: Option<Value>,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub finished_at: Option<String>,
    /// Each attempt: when, and what came back.
    pub attempts: Vec<Value>,
    pub notification: Value,
}

/// A transformation version.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TransformationVersion {
    pub number: i64,
    pub author: String,
    pub created_at: String,
    pub description: Option<String>,
    /// A reset to the connector's default (no document).
    pub reset: bool,
    /// The document (single version only; `null` for a reset).
    #[schema(required = false)]
    pub transformation: Option<Value>,
}

/// A line of a diff.
#[derive(ToSchema)]
pub struct DiffLine {
    /// `equal`, `delete` or `insert`.
    pub op: String,
    pub old: Option<u64>,
    pub new: Option<u64>,
    pub text: String,
}

/// A line diff between two transformation versions.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct VersionDiff {
    pub from: i64,
    pub to: i64,
    pub from_reset: bool,
    pub to_reset: bool,
    pub added: u64,
    pub removed: u64,
    pub lines: Vec<DiffLine>,
    pub unified: String,
}

/// A description for a rollback's version; the body may be empty.
#[derive(ToSchema)]
pub struct RollbackInput {
    pub description: Option<String>,
}

/// A connector component's bytes (`.wasm`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WasmComponent(Vec<u8>);
