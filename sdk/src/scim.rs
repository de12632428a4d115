//! SCIM 2.0 helpers: list responses and paging, filters, PatchOp documents.
//!
//! The SCIM itself — the filter grammar and evaluator, PatchOp, the schema rules, paging, the error body —
//! is the `provisio-scim` crate, which the host and the test simulators use too; it is re-exported here, so
//! that a connector applies a PatchOp exactly as the host's proxy and real-time endpoints do. Its errors
//! ([`ScimError`]) convert into [`Error::Rejected`] with `?`.
//!
//! Index paging (RFC 7644 §3.4.2.4): the cursor is the next `startIndex` as a decimal string.
//!
//! ```no_run
//! # use provisio_sdk::{Config, PageRequest, Page, Result, http::Request, scim};
//! # fn read(cfg: &Config, req: &PageRequest) -> Result<Page> {
//! let start = scim::start_index(req.cursor.as_deref())?;
//! let resp = Request::get("Users").query("startIndex", start).query("count", req.page_size).send(cfg)?;
//! let list = scim::ListResponse::from_response(&resp.error_for_status()?)?;
//! Ok(list.into_index_page(start, req.page_size))
//! # }
//! ```
//!
//! Cursor paging as SAP Identity Authentication does it: send `startId=initial` first, then the answer's
//! `nextId` until it is `end` ([`start_id`], [`ListResponse::into_cursor_page`]).
//!
//! PatchOp documents: build one to send, or parse one and apply it to a resource (for systems without PATCH).
//!
//! ```
//! use provisio_sdk::scim::PatchOp;
//! use serde_json::json;
//! let doc = PatchOp::new()
//!     .replace(Some("active"), json!(false))
//!     .add(Some("members"), json!([{"value": "u1"}]))
//!     .remove("members[value eq \"u2\"]")
//!     .to_json();
//! assert_eq!(doc["Operations"].as_array().map(Vec::len), Some(3));
//! ```

use serde_json::Value;

pub use provisio_scim::filter::values;
pub use provisio_scim::list::next_index;
pub use provisio_scim::{
    AttrPath, CompareOp, Definition, ERROR, Filter, FilterError, LIST_RESPONSE, PATCH_OP, PatchOp, PatchOperation,
    PatchPath, ResourceType, Rules, Schemaless, ScimError, and_filters, ensure_patch_schema, get_ci, modified_since,
    quote, start_id, start_index,
};

use crate::http::Response;
use crate::{Error, Page, Result};

/// A SCIM error as the SDK's [`Error::Rejected`]: its status (0 when it is not an HTTP answer's) and the
/// `scimType` before the detail (`noTarget: …`).
impl From<ScimError> for Error {
    fn from(e: ScimError) -> Self {
        Error::rejected(e.status, e.to_string())
    }
}

/// A SCIM list response, also in the SCIM 1.1/UAA shape (lowercase `resources`), as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// `Resources` (or `resources`); empty when absent.
    pub resources: Vec<Value>,
    /// `totalResults`, when given.
    pub total_results: Option<u64>,
    /// `itemsPerPage`, when given.
    pub items_per_page: Option<u64>,
    /// `startIndex`, when given.
    pub start_index: Option<u64>,
    /// `nextId` (cursor paging), when given.
    pub next_id: Option<String>,
}

impl ListResponse {
    /// Reads a list response from a 2xx answer; [`Error::Rejected`] with the answer's status when the body is
    /// not one.
    pub fn from_response(resp: &Response) -> Result<Self> {
        Self::from_owned_json(resp.json()?).map_err(|e| match e {
            Error::Rejected(r) => Error::rejected(resp.status, r.detail),
            other => other,
        })
    }

    /// Reads a list response from JSON; [`Error::Rejected`] (status 0) when it is not an object, or when
    /// `Resources` is present but not an array.
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::from_owned_json(v.clone())
    }

    /// [`from_json`](Self::from_json) without copying the resources (a page of them is most of the answer).
    pub fn from_owned_json(v: Value) -> Result<Self> {
        let provisio_scim::ListResponse {
            resources,
            total_results,
            items_per_page,
            start_index,
            next_id,
        } = provisio_scim::ListResponse::from_owned_json(v)?;
        Ok(ListResponse {
            resources,
            total_results,
            items_per_page,
            start_index,
            next_id,
        })
    }

    /// The cursor of the page after this one under index paging, or `None` when this is the last page (see
    /// [`next_index`]).
    pub fn next_index(&self, start: u64, requested: u32) -> Option<String> {
        next_index(
            self.resources.len() as u64,
            self.items_per_page,
            self.total_results,
            start,
            requested,
        )
    }

    /// This list as a [`Page`] under index paging: at most `page_size` entities (a server that returns more is
    /// cut short, and the cursor continues after the last entity kept), the next cursor, and the total.
    pub fn into_index_page(mut self, start: u64, page_size: u32) -> Page {
        let next = self.next_index(start, page_size);
        self.resources.truncate(page_size.max(1) as usize);
        Page::from_values(self.resources, next, self.total_results)
    }

    /// This list as a [`Page`] under cursor paging: the next cursor is `nextId`, and there is none when it is
    /// absent, empty or `end`, or when the page is empty.
    pub fn into_cursor_page(self) -> Page {
        let next = next_cursor(self.next_id, !self.resources.is_empty());
        Page::from_values(self.resources, next, self.total_results)
    }
}

/// The next cursor under cursor paging: `nextId`, unless it is absent, empty or `end`, or the page is empty.
pub(crate) fn next_cursor(next_id: Option<String>, page_has_entities: bool) -> Option<String> {
    next_id.filter(|id| !id.is_empty() && id != "end" && page_has_entities)
}

/// A list answer as a [`Page`] under index paging: the same as
/// `ListResponse::from_response(resp)?.into_index_page(start, page_size)`, but each entity is handed on as
/// the slice of the answer it is, without building and re-serialising a JSON tree of the whole page (most of
/// a read's time in the plugin). Answers that are not plain list responses take the general path, which
/// also gives its error messages.
pub fn index_page(resp: &Response, start: u64, page_size: u32) -> Result<Page> {
    match raw_index_page(&resp.body, start, page_size) {
        Some(page) => Ok(page),
        None => Ok(ListResponse::from_response(resp)?.into_index_page(start, page_size)),
    }
}

/// A list answer whose `items` resources the host kept ([`Request::send_list`](crate::http::Request::send_list))
/// as a [`Page`] under index paging: the page [`index_page`] makes of the whole answer, its entities the first
/// kept ones ([`Page::listed`]); `resp` is the rest of the answer, for the counts.
pub fn listed_index_page(resp: &Response, items: u32, start: u64, page_size: u32) -> Result<Page> {
    let number = |v: Option<Value>| v.as_ref().and_then(provisio_scim::list::as_u64);
    let (total, per_page) = match std::str::from_utf8(&resp.body)
        .ok()
        .and_then(|text| serde_json::from_str::<RawList<'_>>(text).ok())
        .filter(|list| list.total_results.is_some())
    {
        Some(list) => (number(list.total_results), number(list.items_per_page)),
        None => {
            let list = ListResponse::from_response(resp)?;
            (list.total_results, list.items_per_page)
        }
    };
    Ok(Page {
        listed: items.min(page_size.max(1)),
        entities: Vec::new(),
        next_cursor: next_index(u64::from(items), per_page, total, start, page_size),
        total,
    })
}

/// The parts of a list response that index paging needs, read in one pass over the answer: each resource
/// as the slice of the answer it is, the rest skipped without building anything. Anything unusual (a
/// field twice, in both spellings, `Resources` not an array) fails, and the general path takes over; so does
/// an answer without `Resources` or `totalResults` in these spellings, since the general path reads member
/// names in any case (`RESOURCES`, RFC 7643 §2.1).
#[derive(serde::Deserialize)]
struct RawList<'a> {
    #[serde(borrow, default, rename = "Resources", alias = "resources")]
    resources: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(default, rename = "totalResults", alias = "totalresults")]
    total_results: Option<Value>,
    #[serde(default, rename = "itemsPerPage", alias = "itemsperpage")]
    items_per_page: Option<Value>,
}

fn raw_index_page(body: &[u8], start: u64, page_size: u32) -> Option<Page> {
    let text = std::str::from_utf8(body).ok()?;
    let list: RawList<'_> = serde_json::from_str(text).ok()?;
    list.total_results.as_ref()?;
    let resources = list.resources?;
    let number = |v: Option<Value>| v.as_ref().and_then(provisio_scim::list::as_u64);
    let total = number(list.total_results);
    let next = next_index(
        resources.len() as u64,
        number(list.items_per_page),
        total,
        start,
        page_size,
    );
    let entities = resources
        .iter()
        .take(page_size.max(1) as usize)
        .map(|raw| raw.get().to_string())
        .collect();
    Some(Page {
        listed: 0,
        entities,
        next_cursor: next,
        total,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn users(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": i.to_string()})).collect()
    }

    #[test]
    fn index_paging() {
        let list = |n, total: Option<u64>, per| ListResponse {
            resources: users(n),
            total_results: total,
            items_per_page: per,
            start_index: None,
            next_id: None,
        };
        assert_eq!(list(2, Some(5), Some(2)).next_index(1, 2), Some("3".into()));
        assert_eq!(list(2, Some(5), Some(2)).next_index(3, 2), Some("5".into()));
        assert_eq!(list(1, Some(5), Some(1)).next_index(5, 2), None);
        assert_eq!(list(2, Some(4), Some(2)).next_index(3, 2), None);
        assert_eq!(list(0, Some(9), Some(0)).next_index(3, 2), None);
        assert_eq!(list(2, None, None).next_index(1, 2), Some("3".into()));
        assert_eq!(list(1, None, None).next_index(1, 2), None);
        // itemsPerPage above the resources returned (filtered after paging) is the step.
        assert_eq!(list(2, Some(10), Some(3)).next_index(1, 3), Some("4".into()));
        // itemsPerPage that undercounts the resources is ignored.
        assert_eq!(list(3, Some(10), Some(1)).next_index(1, 3), Some("4".into()));
        // A server that ignores `count` is cut short, and the next page starts after what was kept.
        let page = list(5, Some(10), Some(5)).into_index_page(1, 2);
        assert_eq!(page.entities.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("3"));
        assert_eq!(page.total, Some(10));
        assert_eq!(start_index(None), Ok(1));
        assert_eq!(start_index(Some("41")), Ok(41));
        assert!(start_index(Some("0")).is_err());
        assert!(start_index(Some("x")).is_err());
    }

    /// A 200 answer with this body.
    fn response(body: &[u8]) -> Response {
        Response {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        }
    }

    /// Entity texts, parsed.
    fn parsed(texts: &[String]) -> Vec<Value> {
        texts
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).expect("an entity"))
            .collect()
    }

    #[test]
    fn index_page_hands_on_the_answer_slices_like_the_general_path() {
        let general =
            |r: &Response, start, size| ListResponse::from_response(r).map(|l| l.into_index_page(start, size));
        for (body, start, size) in [
            (
                r#"{"schemas":["x"],"totalResults":5,"itemsPerPage":2,"startIndex":1,"Resources":[{"id":"a","n":{"b":[1,2]}}, {"id":"b"}]}"#,
                1,
                2,
            ),
            // SCIM 1.1 / UAA: lowercase, numbers as strings, a server that ignores `count`.
            (
                r#"{"totalresults":"4","resources":[{"id":"1"},{"id":"2"},{"id":"3"}]}"#,
                1,
                2,
            ),
            (r#"{"totalResults":0,"Resources":null}"#, 1, 10),
            // Both spellings, or a field twice: the general path decides.
            (
                r#"{"totalResults":2,"Resources":[{"id":"a"}],"resources":[{"id":"b"}]}"#,
                1,
                10,
            ),
            (r#"{"totalResults":2,"totalResults":3,"Resources":[{"id":"a"}]}"#, 1, 10),
            // Fields index paging does not need are skipped, whatever they hold.
            (
                r#"{"meta":{"x":[1,{"y":"]"}]},"startIndex":1,"itemsPerPage":1,"totalResults":9,"Resources":[{"id":"a"}]}"#,
                1,
                1,
            ),
            (r#"{"totalResults":0}"#, 1, 10),
            // Member names in any case (RFC 7643 §2.1).
            (
                r#"{"TOTALRESULTS":5,"ItemsPerPage":2,"RESOURCES":[{"id":"a"},{"id":"b"}]}"#,
                1,
                2,
            ),
        ] {
            let r = response(body.as_bytes());
            let fast = index_page(&r, start, size).expect("a page");
            let slow = general(&r, start, size).expect("a page");
            assert_eq!(parsed(&fast.entities), parsed(&slow.entities), "{body}");
            assert_eq!((fast.next_cursor, fast.total), (slow.next_cursor, slow.total), "{body}");
        }
        // Not a list answer: the general path's error.
        for body in [r#"[1,2]"#, r#"{"Resources":{"id":"a"}}"#, "not json"] {
            let r = response(body.as_bytes());
            assert_eq!(index_page(&r, 1, 2).is_err(), general(&r, 1, 2).is_err(), "{body}");
            assert!(index_page(&r, 1, 2).is_err(), "{body}");
        }
    }

    /// The page a 0.3.0 host's split gives (`send_list`: the host keeps the resources, the plugin reads the
    /// rest and lists them) is the page the plugin made of the whole answer before.
    #[test]
    fn a_page_of_the_resources_the_host_kept_is_the_page_of_the_whole_answer() {
        for (body, start, size) in [
            (
                r#"{"schemas":["x"],"totalResults":5,"itemsPerPage":2,"startIndex":1,"Resources":[{"id":"a","n":{"b":[1,2]}}, {"id":"b"}]}"#,
                1,
                2,
            ),
            (
                r#"{"totalresults":"4","resources":[{"id":"1"},{"id":"2"},{"id":"3"}]}"#,
                1,
                2,
            ),
            (
                r#"{"totalResults":9,"itemsPerPage":"3","resources":[{"id":"1"},{"id":"2"}]}"#,
                4,
                3,
            ),
            (
                r#"{"totalResults":3,"Resources":[{"id":"1"},{"id":"2"},{"id":"3"}]}"#,
                1,
                10,
            ),
            (r#"{"totalResults":2,"totalResults":3,"Resources":[{"id":"a"}]}"#, 1, 10),
            (r#"{"totalResults":0,"Resources":[]}"#, 1, 10),
            (r#"{"Resources":[{"id":"a"}]}"#, 7, 1),
            // Member names in any case (RFC 7643 §2.1): the host keeps `RESOURCES`, the rest has `TOTALRESULTS`.
            (
                r#"{"TOTALRESULTS":5,"ITEMSPERPAGE":2,"RESOURCES":[{"id":"a"},{"id":"b"}]}"#,
                1,
                2,
            ),
        ] {
            let whole = index_page(&response(body.as_bytes()), start, size).expect("a page");
            let split = provisio_scim::list::split_member(body, "Resources").expect("the host keeps them");
            let items = split.items.len() as u32;
            let listed = listed_index_page(&response(&split.rest), items, start, size).expect("a page");
            let kept: Vec<String> = split.items[..listed.listed as usize]
                .iter()
                .map(|r| body[r.clone()].to_string())
                .collect();
            assert!(listed.entities.is_empty());
            assert_eq!(parsed(&kept), parsed(&whole.entities), "{body}");
            assert_eq!(
                (listed.next_cursor, listed.total),
                (whole.next_cursor, whole.total),
                "{body}"
            );
        }
    }

    #[test]
    fn parses_list_responses_in_both_spellings() {
        let l = ListResponse::from_json(&json!({"resources": [{"id": "a"}], "totalResults": 1, "itemsPerPage": "1"}))
            .unwrap();
        assert_eq!(l.resources.len(), 1);
        assert_eq!(l.items_per_page, Some(1));
        let l = ListResponse::from_json(&json!({"Resources": [{"id": "a"}], "nextId": "end"})).unwrap();
        assert_eq!(l.into_cursor_page().next_cursor, None);
        let l = ListResponse::from_json(&json!({"Resources": [{"id": "a"}], "nextId": "abc"})).unwrap();
        assert_eq!(l.into_cursor_page().next_cursor.as_deref(), Some("abc"));
        assert!(ListResponse::from_json(&json!({"Resources": 1})).is_err());
        assert!(ListResponse::from_json(&json!([])).is_err());
        assert_eq!(start_id(None), "initial");
    }

    #[test]
    fn filters() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(and_filters([None, Some(" ")]), None);
        assert_eq!(and_filters([Some("a eq 1"), None]).as_deref(), Some("a eq 1"));
        assert_eq!(
            and_filters([Some("a eq 1"), Some("b pr")]).as_deref(),
            Some("(a eq 1) and (b pr)")
        );
        assert_eq!(
            modified_since("2026-01-01T00:00:00Z"),
            r#"meta.lastModified gt "2026-01-01T00:00:00Z""#
        );
    }

    fn apply(resource: Value, ops: Value) -> Result<Value> {
        let mut r = resource;
        PatchOp::parse(&json!({"Operations": ops}))?.apply(&mut r)?;
        Ok(r)
    }

    #[test]
    fn applies_patch_operations() {
        let user = json!({"userName": "a", "name": {"givenName": "A"}, "emails": [{"value": "a@x", "type": "work"}]});
        let r = apply(
            user.clone(),
            json!([
                {"op": "Replace", "path": "name.givenName", "value": "B"},
                {"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home"}]},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x"},
                {"op": "add", "value": {"active": false, "name.familyName": "F"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            r,
            json!({"userName": "a", "name": {"givenName": "B", "familyName": "F"},
            "emails": [{"value": "w@x", "type": "work"}, {"value": "b@x", "type": "home"}], "active": false})
        );
        let r = apply(
            user.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
        )
        .unwrap();
        // RFC 7644 §3.5.2.2: with no other values left, the attribute is unassigned.
        assert_eq!(r.get("emails"), None);
        assert!(
            matches!(apply(user.clone(), json!([{"op": "remove"}])), Err(Error::Rejected(r)) if r.detail.starts_with("noTarget"))
        );
        assert!(apply(user.clone(), json!([{"op": "move", "path": "x"}])).is_err());
        assert!(apply(user.clone(), json!([])).is_err());
        // Non-ASCII paths never panic.
        for p in ["urné:x", "uré", "ü[value eq \"x\"]", "emails[", "a.b]"] {
            let _ = apply(user.clone(), json!([{"op": "replace", "path": p, "value": 1}]));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_paths_and_filters() {
        const ALPHABET: &[&str] = &[
            "urn:", ":", ".", "[", "]", "\"", "\\", " ", "eq", "and", "or", "pr", "value", "é", "ü", "x", "0", "'", "$",
        ];
        let resource = json!({"schemas": ["urn:a:b"], "urn:a:b": {"x": 1}, "value": [{"value": "x"}], "x": "é"});
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5000 {
            let mut path = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                path.push_str(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            for op in ["add", "replace", "remove"] {
                let _ = apply(
                    resource.clone(),
                    json!([{"op": op, "path": path, "value": [{"value": "x"}]}]),
                );
            }
            let _ = crate::json::get(&resource, &path);
        }
    }

    #[test]
    fn applies_group_member_patches() {
        let group = json!({"displayName": "g", "members": [{"value": "u1"}, {"value": "u2"}]});
        let r = apply(
            group.clone(),
            json!([{"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u2"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "u2"}, {"value": "u3"}]));
        let r = apply(
            group.clone(),
            json!([{"op": "remove", "path": "members", "value": [{"value": "u2"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "u1"}]));
        let r = apply(group, json!([{"op": "remove", "path": "members"}])).unwrap();
        assert_eq!(r.get("members"), None);
    }

    #[test]
    fn applies_urn_paths() {
        const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let user = json!({"schemas": [ENT], "userName": "a"});
        let r = apply(
            user,
            json!([
                {"op": "add", "path": format!("{ENT}:manager.value"), "value": "m1"},
                {"op": "replace", "path": format!("{ENT}:employeeNumber"), "value": "7"},
            ]),
        )
        .unwrap();
        assert_eq!(r[ENT], json!({"manager": {"value": "m1"}, "employeeNumber": "7"}));
    }

    #[test]
    fn builds_patch_documents() {
        let doc = PatchOp::new()
            .replace(Some("active"), json!(false))
            .remove("members")
            .to_json();
        assert_eq!(
            doc,
            json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": false}, {"op": "remove", "path": "members"}]})
        );
        let mut d = json!({"Operations": []});
        ensure_patch_schema(&mut d);
        assert_eq!(d["schemas"], json!([PATCH_OP]));
    }
}
