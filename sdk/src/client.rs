//! A SCIM client for the common connector: the Test Connection probe (`GET Users?startIndex=1&count=1`),
//! index (or id) paging with the system's filters, reads by id, `PUT` with `If-Match` and one retry on a
//! stale version, read-modify-write patches, and the lookup that resolves a conflicting create.
//!
//! Systems differ in details; a [`Dialect`] holds the hooks (how `meta.version` becomes `If-Match`, what a
//! stale write answers, the media types), with [`Dialect::SCIM2`], [`Dialect::UAA`] and
//! [`Dialect::IAS`] ready-made. The bundled connectors (`scim`, `jam`, `ias`, `xsuaa`) use it.
//!
//! ```no_run
//! use provisio_sdk::client::{Dialect, Probe, ReadFilter, ScimClient};
//! use provisio_sdk::system::System;
//! use provisio_sdk::{Config, EntityKind, Page, PageRequest, Result};
//!
//! fn client(cfg: &Config) -> Result<ScimClient<'_>> {
//!     Ok(ScimClient::new(System::parse(cfg)?, Dialect::SCIM2).max_page(100))
//! }
//! fn test_connection(cfg: &Config) -> Result<String> {
//!     client(cfg)?.test_connection(&Probe::default())
//! }
//! fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
//!     client(cfg)?.read(req, &ReadFilter::default())
//! }
//! ```

use serde_json::Value;

use crate::http::{Request, Response, encode_segment};
use crate::scim::{self, ListResponse, PatchOp};
use crate::system::System;
use crate::{CONNECTION_OK, Config, EntityKind, Error, Page, PageRequest, Result, json, log, status};

/// How a system's SCIM differs from RFC 7644: the hooks of a [`ScimClient`].
#[derive(Clone, Copy)]
pub struct Dialect {
    /// The `Accept` header of every request.
    pub accept: &'static str,
    /// The `Content-Type` of request bodies (a connector may let a property override it:
    /// [`ScimClient::content_type`]).
    pub content_type: &'static str,
    /// The `If-Match` value for an entity's `meta.version`, or `None` when it has none.
    pub if_match: fn(&Value) -> Option<String>,
    /// Whether a failed write answer means "the version you sent is stale".
    pub is_stale: fn(&Response) -> bool,
}

impl std::fmt::Debug for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialect")
            .field("accept", &self.accept)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl Dialect {
    /// RFC 7644: `application/scim+json`, `meta.version` an ETag sent as it is (a number is quoted), a stale
    /// version answered with 412.
    pub const SCIM2: Dialect = Dialect {
        accept: "application/scim+json, application/json",
        content_type: "application/scim+json",
        if_match: etag,
        is_stale: status_412,
    };

    /// SAP Identity Authentication (both SCIM APIs): as [`SCIM2`](Self::SCIM2), but version 1's bare
    /// `meta.version` (`3`) is quoted for `If-Match` (`"3"`).
    pub const IAS: Dialect = Dialect {
        if_match: quoted_etag,
        ..Dialect::SCIM2
    };

    /// Cloud Foundry UAA (SAP XSUAA): plain JSON, an integer `meta.version` sent quoted, and a stale version
    /// answered with 409 `scim_resource_conflict` (412 and 422 behind SAP BTP).
    pub const UAA: Dialect = Dialect {
        accept: "application/json",
        content_type: "application/json",
        if_match: uaa_version,
        is_stale: uaa_stale,
    };
}

/// `meta.version` as it is (an ETag such as `W/"3"`); a number becomes `"3"`.
pub fn etag(entity: &Value) -> Option<String> {
    match json::get(entity, "meta.version")? {
        Value::String(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Value::Number(n) => Some(format!("\"{n}\"")),
        _ => None,
    }
}

/// `meta.version` as an ETag, quoting a bare version (`3` → `"3"`).
pub fn quoted_etag(entity: &Value) -> Option<String> {
    let v = match json::get(entity, "meta.version")? {
        Value::String(v) if !v.trim().is_empty() => v.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(if v.starts_with("W/") || v.starts_with('"') {
        v
    } else {
        format!("\"{v}\"")
    })
}

/// UAA's integer `meta.version` (a string holding one, or an ETag such as `W/"3"`, is accepted too).
pub fn uaa_version_number(entity: &Value) -> Option<u64> {
    match entity.get("meta")?.get("version")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().trim_start_matches("W/").trim_matches('"').parse().ok(),
        _ => None,
    }
}

fn uaa_version(entity: &Value) -> Option<String> {
    uaa_version_number(entity).map(|v| format!("\"{v}\""))
}

fn status_412(resp: &Response) -> bool {
    resp.status == 412
}

/// UAA's stale-version answers: 412 and 422, and 409 unless its error code says the resource (or member)
/// already exists.
fn uaa_stale(resp: &Response) -> bool {
    match resp.status {
        412 | 422 => true,
        409 => {
            let code = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
            !matches!(
                code.as_deref(),
                Some("scim_resource_already_exists" | "member_already_exists")
            )
        }
        _ => false,
    }
}

/// What the Test Connection probe says when something is wrong.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    /// A filter the probe sends (a system filter the admin configured), and the property it comes from.
    pub filter: Option<(&'a str, &'a str)>,
    /// What to check when the credentials are refused.
    pub credentials: &'a str,
    /// What to check when the answer is not a SCIM list or there is no `Users` endpoint.
    pub check: &'a str,
}

impl Default for Probe<'_> {
    fn default() -> Self {
        Probe {
            filter: None,
            credentials: "check Authentication, User and Password",
            check: "the property `URL`",
        }
    }
}

/// The filters a read combines with the request's own (and with `meta.lastModified gt …` for a delta read).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadFilter<'a> {
    /// The system's filter for this kind (e.g. `scim.user.filter`).
    pub system: Option<&'a str>,
    /// The property it comes from: a 400 to a read that only carries the system's filter is then
    /// [`Error::InvalidConfig`] naming it.
    pub property: Option<&'a str>,
}

/// How [`ScimClient::read`] pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paging {
    /// `startIndex` and `count` (RFC 7644); the cursor is the next `startIndex`.
    #[default]
    Index,
    /// `startId=initial`, then each answer's `nextId` until `end` (SAP Identity Authentication).
    Id,
}

/// A SCIM client for one call's system.
#[derive(Debug, Clone)]
pub struct ScimClient<'a> {
    /// The shared properties.
    pub system: System<'a>,
    dialect: Dialect,
    root: String,
    name: &'a str,
    content_type: &'a str,
    max_page: u32,
    paging: Paging,
    if_match_wildcard: bool,
}

impl<'a> ScimClient<'a> {
    /// A client for `system` speaking `dialect`, with `Users` and `Groups` right under `URL`.
    pub fn new(system: System<'a>, dialect: Dialect) -> Self {
        ScimClient {
            system,
            dialect,
            root: String::new(),
            name: "the system",
            content_type: dialect.content_type,
            max_page: u32::MAX,
            paging: Paging::Index,
            if_match_wildcard: false,
        }
    }

    /// The path of the SCIM root relative to `URL` (`api/v1/scim`), when `Users` is not right under it.
    pub fn root(mut self, root: &str) -> Self {
        let root = root.trim_matches('/');
        self.root = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        self
    }

    /// The system's name in messages (`SAP Jam`; default `the system`).
    pub fn named(mut self, name: &'a str) -> Self {
        self.name = name;
        self
    }

    /// The `Content-Type` of request bodies, instead of the dialect's.
    pub fn content_type(mut self, content_type: &'a str) -> Self {
        self.content_type = content_type;
        self
    }

    /// The system's largest page: reads ask for at most this many entities (the host asks for up to 500).
    pub fn max_page(mut self, max: u32) -> Self {
        self.max_page = max.max(1);
        self
    }

    /// How reads page (default [`Paging::Index`]).
    pub fn paging(mut self, paging: Paging) -> Self {
        self.paging = paging;
        self
    }

    /// Send `If-Match: *` on a `PUT` of an entity without `meta.version`.
    pub fn if_match_wildcard(mut self, on: bool) -> Self {
        self.if_match_wildcard = on;
        self
    }

    /// The call's configuration.
    pub fn cfg(&self) -> &'a Config {
        self.system.cfg
    }

    /// The dialect.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The system's name in messages, starting with a capital (`The system`).
    fn subject(&self) -> String {
        capitalize(self.name)
    }

    /// `Users` or `Groups` under the SCIM root.
    pub fn collection(&self, kind: EntityKind) -> String {
        format!("{}{}", self.root, kind.scim_endpoint())
    }

    /// `Users/{id}` or `Groups/{id}` under the SCIM root, the id percent-encoded.
    pub fn entity_path(&self, kind: EntityKind, id: &str) -> String {
        format!("{}/{}", self.collection(kind), encode_segment(id))
    }

    /// A request with the dialect's `Accept` and the configured `ips.http.header.*` headers.
    pub fn request(&self, method: &str, path: impl Into<String>) -> Request {
        self.system.request(method, path).header("Accept", self.dialect.accept)
    }

    /// A request with a JSON body in the configured content type.
    pub fn request_with(&self, method: &str, path: impl Into<String>, body: &Value) -> Request {
        self.request(method, path)
            .header("Content-Type", self.content_type)
            .json(body)
    }

    /// Sends a request to the system.
    pub fn send(&self, request: Request) -> Result<Response> {
        request.send(self.system.cfg)
    }

    /// Test Connection: `GET Users?startIndex=1&count=1` (with the probe's filter) must answer a SCIM list.
    /// Refused credentials are [`Error::Unauthorized`], a wrong URL [`Error::InvalidConfig`], each saying
    /// what to check.
    pub fn test_connection(&self, probe: &Probe) -> Result<String> {
        let path = self.collection(EntityKind::User);
        let resp = self
            .request("GET", &path)
            .query("startIndex", 1)
            .query("count", 1)
            .query_opt("filter", probe.filter.map(|(f, _)| f))
            .send(self.cfg())
            .map_err(|e| match e {
                Error::Unauthorized(m) => Error::unauthorized(format!("{m}. {}.", capitalize(probe.credentials))),
                other => other,
            })?;
        let name = self.subject();
        match resp.status {
            200..=299 => match resp.json().and_then(|v| ListResponse::from_json(&v)) {
                Ok(_) => Ok(CONNECTION_OK.to_string()),
                Err(_) => Err(Error::invalid_config(format!(
                    "{name} answered `GET {path}`, but not as a SCIM service (no SCIM list response); check {}.",
                    probe.check
                ))),
            },
            401 | 403 => Err(Error::unauthorized(format!(
                "{name} refused the credentials (HTTP {} to `GET {path}`); {}. {}",
                resp.status,
                probe.credentials,
                status::detail(&resp.body)
            ))),
            404 => Err(Error::invalid_config(format!(
                "{name} has no SCIM `Users` endpoint under this URL (HTTP 404 to `GET {path}`); check {}.",
                probe.check
            ))),
            400 if probe.filter.is_some() => Err(Error::invalid_config(format!(
                "{name} refused the filter built from `{}`: {}",
                probe.filter.map_or("", |(_, p)| p),
                status::detail(&resp.body)
            ))),
            _ => Err(status::error_for(&resp)),
        }
    }

    /// Reads one page of `req.kind`: at most [`max_page`](Self::max_page) entities, the filters
    /// AND-combined (the system's, the request's, and `meta.lastModified gt …` for a delta read).
    ///
    /// A 400 to a delta read is [`Error::Unsupported`] (the host then reads everything); a 400 to a read
    /// that carries only the system's filter is [`Error::InvalidConfig`] naming its property.
    pub fn read(&self, req: &PageRequest, filter: &ReadFilter) -> Result<Page> {
        let count = req.page_size.clamp(1, self.max_page);
        let delta = req.delta_since.as_deref().map(scim::modified_since);
        let combined = scim::and_filters([filter.system, req.filter.as_deref(), delta.as_deref()]);
        let mut request = self
            .request("GET", self.collection(req.kind))
            .query_opt("filter", combined.as_deref());
        let mut start = 1;
        match self.paging {
            Paging::Index => {
                start = scim::start_index(req.cursor.as_deref())?;
                request = request.query("startIndex", start);
            }
            Paging::Id => request = request.query("startId", scim::start_id(req.cursor.as_deref())),
        }
        let request = request.query("count", count);
        // The host keeps the page's resources (contract 0.3.0): they go from the answer to the page without
        // crossing into the plugin. Cursor paging reads `nextId` from the rest of the answer; only a server
        // that answered more than asked needs a resource's id (the first one past the page), so then the
        // request is sent again for the whole answer.
        let again = (self.paging == Paging::Id).then(|| request.clone());
        // A 400 to a read with filters says which filter the system refused.
        let refused = |resp: Response| -> Result<Response> {
            if resp.status == 400 && combined.is_some() {
                let detail = status::detail(&resp.body);
                if delta.is_some() {
                    return Err(Error::Unsupported(format!(
                        "The system refused the delta-read filter `meta.lastModified gt …`: {detail}"
                    )));
                }
                if req.filter.is_none()
                    && let Some(property) = filter.property
                {
                    return Err(Error::invalid_config(format!(
                        "The system refused the filter in the property `{property}`: {detail}"
                    )));
                }
            }
            resp.error_for_status()
        };
        let (resp, listed) = request.send_list(self.cfg(), "Resources")?;
        let resp = refused(resp)?;
        match self.paging {
            Paging::Index => match listed {
                Some(items) => scim::listed_index_page(&resp, items, start, count),
                None => scim::index_page(&resp, start, count),
            },
            Paging::Id => {
                let cursor = req.cursor.as_deref();
                if let Some(items) = listed
                    && let Some(page) = listed_id_page(&resp, items, cursor, count)?
                {
                    return Ok(page);
                }
                let resp = match (listed, again) {
                    (Some(_), Some(again)) => refused(again.send(self.cfg())?)?,
                    _ => resp,
                };
                id_page(ListResponse::from_response(&resp)?, cursor, count as usize)
            }
        }
    }

    /// The answer if it is 2xx; a 404 is [`Error::NotFound`] naming the entity.
    pub fn ok_or_not_found(&self, resp: Response, kind: EntityKind, id: &str) -> Result<Response> {
        match resp.status {
            404 => Err(Error::not_found(format!(
                "The {} `{id}` does not exist in {}: {}",
                kind.as_str(),
                self.name,
                status::detail(&resp.body)
            ))),
            _ => resp.error_for_status(),
        }
    }

    /// The entity a 2xx answer carries; [`Error::Rejected`] when the body is empty (`what`: `created`, …).
    pub fn entity_of(&self, resp: &Response, what: &str) -> Result<Value> {
        if resp.is_empty() {
            return Err(Error::rejected(
                resp.status,
                format!("{} answered without the {what} entity.", self.subject()),
            ));
        }
        resp.json()
    }

    /// Reads one entity; [`Error::NotFound`] when it does not exist.
    pub fn fetch(&self, kind: EntityKind, id: &str) -> Result<Value> {
        let resp = self.request("GET", self.entity_path(kind, id)).send(self.cfg())?;
        self.ok_or_not_found(resp, kind, id)?.json()
    }

    /// [`Client::fetch`], the entity left as the system's JSON text (checked to be an object, not parsed):
    /// what a connector's `get` answers.
    pub fn fetch_text(&self, kind: EntityKind, id: &str) -> Result<String> {
        let resp = self.request("GET", self.entity_path(kind, id)).send(self.cfg())?;
        self.ok_or_not_found(resp, kind, id)?.json_object_text()
    }

    /// The `If-Match` value of an entity's `meta.version`, in the dialect's form.
    pub fn version_of(&self, entity: &Value) -> Option<String> {
        (self.dialect.if_match)(entity)
    }

    /// Sends `PUT` with `If-Match: version` (or `*` when configured and there is no version); the answer as
    /// it is.
    pub fn send_put(&self, kind: EntityKind, id: &str, entity: &Value, version: Option<&str>) -> Result<Response> {
        let mut req = self.request_with("PUT", self.entity_path(kind, id), entity);
        match version {
            Some(v) => req = req.header("If-Match", v),
            None if self.if_match_wildcard => req = req.header("If-Match", "*"),
            None => {}
        }
        req.send(self.cfg())
    }

    /// The entity a `PUT` answered with, or the error its status means.
    pub fn finish_put(&self, resp: Response, kind: EntityKind, id: &str) -> Result<Value> {
        let resp = self.ok_or_not_found(resp, kind, id)?;
        self.entity_of(&resp, "replaced")
    }

    /// `PUT` with `version` as `If-Match`. When the version is stale and `retry_stale`, re-reads the entity
    /// and retries once with its current version; else a stale version is the [`Error::Conflict`] its status
    /// means. Use `retry_stale: false` when the version is the caller's precondition (it read that version
    /// and built the entity from it), so that a concurrent change is never overwritten.
    pub fn put(
        &self,
        kind: EntityKind,
        id: &str,
        entity: &Value,
        version: Option<String>,
        retry_stale: bool,
    ) -> Result<Value> {
        let resp = self.send_put(kind, id, entity, version.as_deref())?;
        if retry_stale && version.is_some() && (self.dialect.is_stale)(&resp) {
            log::info(format_args!(
                "{} {id} changed meanwhile (HTTP {}); re-reading and retrying once",
                kind.as_str(),
                resp.status
            ));
            let current = self.version_of(&self.fetch(kind, id)?);
            let mut entity = entity.clone();
            if let (Some(v), Some(meta)) = (&current, entity.get_mut("meta").and_then(Value::as_object_mut)) {
                meta.insert("version".into(), Value::String(v.clone()));
            }
            return self.finish_put(self.send_put(kind, id, &entity, current.as_deref())?, kind, id);
        }
        self.finish_put(resp, kind, id)
    }

    /// Applies a patch where the system has no `PATCH`: reads the entity, applies the operations, writes it
    /// back with `PUT` and its version, and starts over once when the version went stale.
    pub fn patch_by_put(&self, kind: EntityKind, id: &str, ops: &PatchOp) -> Result<Value> {
        let mut attempt = 0;
        loop {
            let current = self.fetch(kind, id)?;
            let version = self.version_of(&current);
            let mut patched = current;
            ops.apply(&mut patched)?;
            if let Some(obj) = patched.as_object_mut() {
                obj.shift_remove("meta");
            }
            match self.send_put(kind, id, &patched, version.as_deref())? {
                resp if attempt == 0 && (self.dialect.is_stale)(&resp) => attempt += 1,
                resp => return self.finish_put(resp, kind, id),
            }
        }
    }

    /// After a create conflicted: the one entity `filter` matches (`userName eq "jdoe"`), with its id; `None`
    /// (logged) when none or several match, or the match has no id.
    pub fn find_one(&self, kind: EntityKind, filter: &str) -> Result<Option<(String, Value)>> {
        let resp = self
            .request("GET", self.collection(kind))
            .query("filter", filter)
            .send(self.cfg())?
            .error_for_status()?;
        let mut found = ListResponse::from_response(&resp)?.resources;
        if found.len() != 1 {
            log::info(format_args!(
                "create conflicted and `{filter}` matches {} {}s; keeping the conflict",
                found.len(),
                kind.as_str()
            ));
            return Ok(None);
        }
        let existing = found.remove(0);
        Ok(existing
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .map(|id| (id, existing)))
    }
}

/// The `… eq …` clause that finds an entity by one unique attribute (`emails[0].value` → `emails.value eq
/// "a@x"`); `None` when the value is not a string, number or boolean, or the path does not parse.
pub fn eq_clause(path: &str, value: &Value) -> Option<String> {
    let literal = match value {
        Value::String(v) => scim::quote(v),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        _ => return None,
    };
    Some(format!("{} eq {literal}", filter_attribute(path)?))
}

/// The SCIM filter attribute of a unique-attribute path: `emails[0].value` → `emails.value`,
/// `['urn:…:Group']['name']` → `urn:…:Group:name`.
pub fn filter_attribute(path: &str) -> Option<String> {
    let keys: Vec<String> = json::parse_path(path)?
        .into_iter()
        .filter_map(|seg| match seg {
            json::Segment::Key(k) => Some(k),
            json::Segment::Index(_) => None,
        })
        .collect();
    let (first, rest) = keys.split_first()?;
    if rest.is_empty() {
        return Some(first.clone());
    }
    let sep = if first.to_ascii_lowercase().starts_with("urn:") {
        ":"
    } else {
        "."
    };
    Some(format!("{first}{sep}{}", rest.join(".")))
}

/// A page under id paging: the next cursor is `nextId`. A server that returned more than asked is cut
/// short, and the next page starts at the first entity dropped (ids are served in order); a `nextId` that
/// does not move is refused rather than read forever.
fn id_page(mut list: ListResponse, cursor: Option<&str>, count: usize) -> Result<Page> {
    if list.resources.len() > count {
        let next = list.resources[count]
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string);
        list.resources.truncate(count);
        list.next_id = next.or(Some("end".into()));
    }
    advancing(list.into_cursor_page(), cursor)
}

/// The page, unless its next cursor is the one it was read from: such a read is refused rather than read
/// forever.
fn advancing(page: Page, cursor: Option<&str>) -> Result<Page> {
    if let (Some(next), Some(current)) = (&page.next_cursor, cursor)
        && next == current
    {
        return Err(Error::rejected(
            200,
            format!("The system answered startId={current} with the same nextId; paging does not advance."),
        ));
    }
    Ok(page)
}

/// A page under id paging whose `items` resources the host kept: the first of them listed, the next cursor
/// the rest of the answer's `nextId`. `None` when the server answered more than `count` (the next page starts
/// at the first resource past this one, whose id only the whole answer has).
fn listed_id_page(rest: &Response, items: u32, cursor: Option<&str>, count: u32) -> Result<Option<Page>> {
    if items > count {
        return Ok(None);
    }
    let list = ListResponse::from_response(rest)?;
    let page = Page {
        listed: items,
        entities: Vec::new(),
        next_cursor: scim::next_cursor(list.next_id, items > 0),
        total: list.total_results,
    };
    advancing(page, cursor).map(Some)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Exchange, Harness};

    fn cfg() -> Config {
        Config::new("t")
            .with("URL", "https://h.example.com")
            .with("ips.http.header.X-T", "1")
    }

    #[test]
    fn probes_reads_and_writes_with_one_retry() {
        let cfg = cfg();
        let client = ScimClient::new(System::parse(&cfg).expect("valid"), Dialect::SCIM2)
            .root("/api/v1/scim/")
            .named("SAP Jam")
            .max_page(100);
        let mut h = Harness::new();
        h.expect(
            Exchange::get("api/v1/scim/Users?startIndex=1&count=1")
                .header("X-T", "1")
                .respond(200, json!({"Resources": [], "totalResults": 0})),
        );
        h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond(401, json!({"detail": "nope"})));
        h.expect(Exchange::get("api/v1/scim/Users?startIndex=1&count=1").respond_text(404, "no"));
        assert_eq!(
            h.run(|| client.test_connection(&Probe::default())).as_deref(),
            Ok(CONNECTION_OK)
        );
        assert!(matches!(h.run(|| client.test_connection(&Probe::default())),
            Err(Error::Unauthorized(m)) if m.starts_with("SAP Jam refused the credentials (HTTP 401") && m.contains("nope")));
        assert!(matches!(h.run(|| client.test_connection(&Probe::default())),
            Err(Error::InvalidConfig(m)) if m.contains("`URL`")));

        let req = PageRequest {
            kind: EntityKind::Group,
            cursor: Some("3".into()),
            page_size: 500,
            filter: None,
            delta_since: None,
        };
        h.expect(
            Exchange::get("api/v1/scim/Groups?filter=a%20eq%20%221%22&startIndex=3&count=100")
                .respond(400, json!({"detail": "bad filter"})),
        );
        let filter = ReadFilter {
            system: Some(r#"a eq "1""#),
            property: Some("x.group.filter"),
        };
        assert!(matches!(h.run(|| client.read(&req, &filter)),
            Err(Error::InvalidConfig(m)) if m.contains("`x.group.filter`")));

        // A stale version: re-read and retried once.
        let user = json!({"userName": "a", "meta": {"version": "W/\"1\""}});
        h.expect(
            Exchange::put("api/v1/scim/Users/a%2Fb")
                .header("If-Match", "W/\"1\"")
                .respond_empty(412),
        );
        h.expect(
            Exchange::get("api/v1/scim/Users/a%2Fb").respond(200, json!({"id": "a/b", "meta": {"version": "W/\"2\""}})),
        );
        h.expect(
            Exchange::put("api/v1/scim/Users/a%2Fb")
                .header("If-Match", "W/\"2\"")
                .respond(200, json!({"id": "a/b"})),
        );
        let version = client.version_of(&user);
        assert_eq!(
            h.run(|| client.put(EntityKind::User, "a/b", &user, version, true)),
            Ok(json!({"id": "a/b"}))
        );
        // As a precondition: the conflict is the answer.
        h.expect(Exchange::put("api/v1/scim/Users/1").respond_empty(412));
        assert!(matches!(
            h.run(|| client.put(EntityKind::User, "1", &user, Some("W/\"1\"".into()), false)),
            Err(Error::Conflict(_))
        ));
        h.expect(Exchange::get("api/v1/scim/Users/9").respond(404, json!({"detail": "gone"})));
        assert!(matches!(h.run(|| client.fetch(EntityKind::User, "9")),
            Err(Error::NotFound(m)) if m.contains("does not exist in SAP Jam")));
    }

    #[test]
    fn dialect_hooks() {
        let v = |v: Value| json!({"meta": {"version": v}});
        assert_eq!(etag(&v(json!("W/\"3\""))).as_deref(), Some("W/\"3\""));
        assert_eq!(etag(&v(json!("3"))).as_deref(), Some("3"));
        assert_eq!(quoted_etag(&v(json!("3"))).as_deref(), Some("\"3\""));
        assert_eq!(quoted_etag(&v(json!(3))).as_deref(), Some("\"3\""));
        assert_eq!((Dialect::UAA.if_match)(&v(json!(7))).as_deref(), Some("\"7\""));
        let answer = |status: u16, error: &str| Response {
            status,
            headers: vec![],
            body: json!({ "error": error }).to_string().into_bytes(),
        };
        assert!((Dialect::UAA.is_stale)(&answer(409, "scim_resource_conflict")));
        assert!(!(Dialect::UAA.is_stale)(&answer(409, "scim_resource_already_exists")));
        assert!(!(Dialect::SCIM2.is_stale)(&answer(409, "x")));
        assert_eq!(
            eq_clause("emails[0].value", &json!("a@x")).as_deref(),
            Some(r#"emails.value eq "a@x""#)
        );
        assert_eq!(eq_clause("x", &json!({})), None);
    }
    fn rest(body: Value) -> Response {
        Response {
            status: 200,
            headers: vec![],
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn an_id_page_the_host_kept_takes_its_cursor_from_the_rest_of_the_answer() {
        let kept = |body, items, cursor, count| listed_id_page(&rest(body), items, cursor, count);
        // The resources stay in the host; `nextId` and the total come from the rest.
        let page = kept(json!({"Resources": [], "nextId": "u3", "totalResults": 7}), 2, None, 2)
            .expect("a page")
            .expect("listed");
        assert_eq!(
            (
                page.listed,
                page.entities.len(),
                page.next_cursor.as_deref(),
                page.total
            ),
            (2, 0, Some("u3"), Some(7))
        );
        // `end`, an empty id or an empty page end the read, as under the whole answer.
        for (body, items) in [
            (json!({"Resources": [], "nextId": "end"}), 1),
            (json!({"Resources": [], "nextId": ""}), 1),
            (json!({"Resources": [], "nextId": "u9"}), 0),
            (json!({"Resources": []}), 1),
        ] {
            let page = kept(body.clone(), items, Some("u1"), 10)
                .expect("a page")
                .expect("listed");
            assert_eq!(page.next_cursor, None, "{body}");
        }
        // A `nextId` that does not move is refused rather than read forever.
        assert!(matches!(
            kept(json!({"Resources": [], "nextId": "u1"}), 1, Some("u1"), 10),
            Err(Error::Rejected(r)) if r.detail.contains("does not advance")
        ));
        // More than asked: the next page starts at a resource only the whole answer has.
        assert!(
            kept(json!({"Resources": [], "nextId": "u9"}), 3, None, 2)
                .expect("no error")
                .is_none()
        );
        // The rest must still be a list response.
        assert!(kept(json!(["not", "a", "list"]), 1, None, 2).is_err());
    }
}
