//! List responses and paging (RFC 7644 §3.4.2, §3.4.2.4).
//!
//! A client reads a [`ListResponse`] (also in the SCIM 1.1/UAA spelling, lowercase `resources`, numbers as
//! strings) and pages on with [`ListResponse::next_index`]; a cursor is the next `startIndex` as a decimal
//! string ([`start_index`]), or SAP Identity Authentication's `startId`/`nextId` ([`start_id`]). A server
//! takes the page [`window`] of its results and answers [`ListResponse::to_json`].

use std::ops::Range;

use serde_json::{Value, json};

use crate::error::ScimError;

/// The schema URN of a list response.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A SCIM list response.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Reads a list response from JSON; an error (status 0) when it is not an object, or when `Resources` is
    /// present but not an array.
    pub fn from_json(v: &Value) -> Result<Self, ScimError> {
        Self::from_owned_json(v.clone())
    }

    /// [`from_json`](Self::from_json) without copying the resources (a page of them is most of the answer).
    pub fn from_owned_json(mut v: Value) -> Result<Self, ScimError> {
        let obj = v.as_object_mut().ok_or_else(|| {
            ScimError::new(
                0,
                None,
                "The system's answer is not a SCIM list response (not an object).",
            )
        })?;
        // SCIM attribute names are case-insensitive (RFC 7643 §2.1), as the host's list split reads them.
        let named = |name: &str| obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
        let taken = named("Resources").and_then(|k| obj.remove(&k));
        let field = |name: &str| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let resources = match taken {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(ScimError::new(
                    0,
                    None,
                    "The system's answer is not a SCIM list response (`Resources` is not an array).",
                ));
            }
        };
        let number = |name: &str| field(name).and_then(as_u64);
        Ok(ListResponse {
            resources,
            total_results: number("totalResults"),
            items_per_page: number("itemsPerPage"),
            start_index: number("startIndex"),
            next_id: field("nextId").and_then(|v| v.as_str()).map(str::to_string),
        })
    }

    /// A server's answer: `totalResults`, `startIndex`, `itemsPerPage` (the resources on this page) and
    /// `Resources`.
    pub fn page(resources: Vec<Value>, total: u64, start_index: u64) -> Self {
        ListResponse {
            items_per_page: Some(resources.len() as u64),
            resources,
            total_results: Some(total),
            start_index: Some(start_index),
            next_id: None,
        }
    }

    /// The list response as JSON, with its schema (a copy of every resource: see [`ListResponse::into_json`]).
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// The list response as JSON, with its schema, moving the resources in (a copy of a 100-user page's
    /// resources took longer than writing them out as text).
    pub fn into_json(self) -> Value {
        let mut out = json!({"schemas": [LIST_RESPONSE]});
        if let Some(t) = self.total_results {
            out["totalResults"] = json!(t);
        }
        if let Some(s) = self.start_index {
            out["startIndex"] = json!(s);
        }
        if let Some(n) = self.items_per_page {
            out["itemsPerPage"] = json!(n);
        }
        if let Some(id) = &self.next_id {
            out["nextId"] = json!(id);
        }
        out["Resources"] = Value::Array(self.resources);
        out
    }

    /// The compact JSON text of [`ListResponse::page`]`(resources, total, start_index)`, written from each
    /// resource's own compact JSON text: the text `into_json` then serialising gives, without owning or
    /// serialising the resources again (a server that keeps its resources written answers a page by copying).
    /// The buffer is sized up front (the resources are walked twice): grown by doubling, a 60 KB page
    /// took about nine reallocations, copying about as much again as the page.
    pub fn page_json<'a>(
        resources: impl ExactSizeIterator<Item = &'a str> + Clone,
        total: u64,
        start_index: u64,
    ) -> Vec<u8> {
        let head = format!(
            r#"{{"schemas":["{LIST_RESPONSE}"],"totalResults":{total},"startIndex":{start_index},"itemsPerPage":{},"Resources":["#,
            resources.len()
        );
        let body: usize = resources.clone().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(head.len() + body + 2);
        out.extend_from_slice(head.as_bytes());
        for (i, resource) in resources.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(resource.as_bytes());
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// The cursor of the page after this one under index paging, or `None` when this is the last page: the
    /// page is empty, or `start + itemsPerPage > totalResults`, or (without `totalResults`) the page holds
    /// fewer than `requested` entities.
    ///
    /// The step is `itemsPerPage` when the server gives one between the number of resources on the page and
    /// `requested` (servers that filter after paging, such as SAP's proxy API, report more items than they
    /// return), else the number of resources; and `requested` when the server returned more than asked (a
    /// client then keeps only `requested` of them).
    pub fn next_index(&self, start: u64, requested: u32) -> Option<String> {
        next_index(
            self.resources.len() as u64,
            self.items_per_page,
            self.total_results,
            start,
            requested,
        )
    }
}

/// [`ListResponse::next_index`] from the numbers alone: `got` resources on the page.
pub fn next_index(
    got: u64,
    items_per_page: Option<u64>,
    total: Option<u64>,
    start: u64,
    requested: u32,
) -> Option<String> {
    let requested = u64::from(requested.max(1));
    if got == 0 {
        return None;
    }
    let step = if got > requested {
        requested
    } else {
        items_per_page.filter(|n| (got..=requested).contains(n)).unwrap_or(got)
    };
    let next = start.saturating_add(step);
    match total {
        Some(total) if next > total => None,
        None if step < requested => None,
        _ => Some(next.to_string()),
    }
}

/// A count as a list response gives it: a number, or a number in a string.
pub fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The `startIndex` a cursor stands for under index paging: 1 for the first page (`None`), else the cursor as
/// a number ≥ 1; an error (status 0) for anything else.
pub fn start_index(cursor: Option<&str>) -> Result<u64, ScimError> {
    match cursor {
        None => Ok(1),
        Some(c) => c
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ScimError::new(0, None, format!("Invalid paging cursor `{c}`: expected a startIndex."))),
    }
}

/// The `startId` a cursor stands for under cursor paging: `initial` for the first page, else the cursor.
pub fn start_id(cursor: Option<&str>) -> &str {
    cursor.unwrap_or("initial")
}

/// Which positions of `total` results the page from the 1-based `start_index` with `count` entries covers
/// (a `startIndex` below 1 is 1, RFC 7644 §3.4.2.4).
pub fn window(total: usize, start_index: u64, count: u64) -> Range<usize> {
    let from = usize::try_from(start_index.saturating_sub(1))
        .unwrap_or(usize::MAX)
        .min(total);
    let to = from
        .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
        .min(total);
    from..to
}

/// A list answer split by [`split_member`]: the answer without the member's elements, and where each element
/// stands in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitList {
    /// The answer with the member's array emptied (`[]`): the other members in their order, their values as
    /// written and their names as JSON strings of the same text.
    pub rest: Vec<u8>,
    /// Each element of the array, as its byte range in the answer, in order.
    pub items: Vec<Range<usize>>,
}

/// The most elements [`split_member`] splits off; a longer array is left whole (a page is far shorter).
pub const MAX_SPLIT_ITEMS: usize = 65_536;

/// The most top-level members of an answer [`split_member`] splits.
pub const MAX_SPLIT_MEMBERS: usize = 1_024;

/// Splits the array of `text`'s top-level member `member` (matched ASCII case-insensitively, as SCIM names
/// are) off the rest, in one pass that validates the JSON as it goes. `None` unless `text` is one JSON object
/// with exactly one such member, at most [`MAX_SPLIT_MEMBERS`] members, and the member's value is an array of
/// at most [`MAX_SPLIT_ITEMS`] elements: the caller then handles the answer whole.
///
/// A plain answer (no exponents, escaped member names or lone surrogates: what SCIM servers write) is read by
/// the quick scan of [`crate::json`]; anything else by serde_json, with the same result. serde_json's walk was
/// 55 % of the instructions of a proxied 100-user page (docs/performance.md, "twenty-second session").
pub fn split_member(text: &str, member: &str) -> Option<SplitList> {
    split_plain(text, member).or_else(|| split_parsed(text, member))
}

/// [`split_member`] by the quick scan: `None` also where the scan does not follow the text, and serde_json
/// decides.
fn split_plain(text: &str, member: &str) -> Option<SplitList> {
    use crate::json::{colon, plain_value, string, whitespace};
    let text = text.as_bytes();
    let mut i = whitespace(text, 0);
    if text.get(i) != Some(&b'{') {
        return None;
    }
    i = whitespace(text, i + 1);
    let (mut rest, mut items, mut members, mut listed) = (Vec::with_capacity(256), Vec::new(), 0, false);
    rest.push(b'{');
    loop {
        let name_end = string(text, i)?;
        let name = &text[i + 1..name_end - 1];
        // An escaped name is compared as it decodes, and written back as serde_json writes it: serde_json's.
        if name.contains(&b'\\') || members == MAX_SPLIT_MEMBERS {
            return None;
        }
        if members > 0 {
            rest.push(b',');
        }
        members += 1;
        // Neither quote, backslash nor control character in it: serde_json would write these same bytes.
        rest.extend_from_slice(&text[i..name_end]);
        rest.push(b':');
        i = colon(text, name_end)?;
        if name.eq_ignore_ascii_case(member.as_bytes()) {
            if listed || text.get(i) != Some(&b'[') {
                return None;
            }
            listed = true;
            rest.extend_from_slice(b"[]");
            i = whitespace(text, i + 1);
            if text.get(i) == Some(&b']') {
                i += 1;
            } else {
                loop {
                    let end = plain_value(text, i)?;
                    if items.len() == MAX_SPLIT_ITEMS {
                        return None;
                    }
                    items.push(i..end);
                    i = whitespace(text, end);
                    match text.get(i) {
                        Some(b',') => i = whitespace(text, i + 1),
                        Some(b']') => {
                            i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
        } else {
            let end = plain_value(text, i)?;
            rest.extend_from_slice(&text[i..end]);
            i = end;
        }
        i = whitespace(text, i);
        match text.get(i) {
            Some(b',') => i = whitespace(text, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    rest.push(b'}');
    (listed && whitespace(text, i + 1) == text.len()).then_some(SplitList { rest, items })
}

/// [`split_member`] by serde_json's parse.
fn split_parsed(text: &str, member: &str) -> Option<SplitList> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;
    use std::borrow::Cow;

    /// A member name, borrowed from the answer unless it holds escapes.
    struct Name<'a>(Cow<'a, str>);
    impl<'de> serde::Deserialize<'de> for Name<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Name<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// The listed array: each element's range recorded as it is read, nothing else kept.
    struct Elements<'s> {
        base: usize,
        items: &'s mut Vec<Range<usize>>,
    }
    impl<'de> DeserializeSeed<'de> for Elements<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if self.items.len() == MAX_SPLIT_ITEMS {
                    return Err(A::Error::custom("too many elements"));
                }
                let start = raw.get().as_ptr() as usize - self.base;
                self.items.push(start..start + raw.get().len());
            }
            Ok(())
        }
    }

    /// The top-level object: its members, `None` for the listed one, whose elements go to `items`.
    struct Members<'s> {
        member: &'s str,
        base: usize,
        items: &'s mut Vec<Range<usize>>,
    }
    impl<'de> DeserializeSeed<'de> for Members<'_> {
        type Value = Vec<(Name<'de>, Option<&'de RawValue>)>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Members<'_> {
        type Value = Vec<(Name<'de>, Option<&'de RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            let mut listed = false;
            while let Some(name) = map.next_key::<Name<'de>>()? {
                if members.len() == MAX_SPLIT_MEMBERS {
                    return Err(A::Error::custom("too many members"));
                }
                let value = if name.0.eq_ignore_ascii_case(self.member) {
                    if listed {
                        return Err(A::Error::custom("the listed member twice"));
                    }
                    listed = true;
                    map.next_value_seed(Elements {
                        base: self.base,
                        items: &mut *self.items,
                    })?;
                    None
                } else {
                    Some(map.next_value()?)
                };
                members.push((name, value));
            }
            if !listed {
                return Err(A::Error::custom("no listed member"));
            }
            Ok(members)
        }
    }

    let mut items = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let members = Members {
        member,
        base: text.as_ptr() as usize,
        items: &mut items,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let mut rest = Vec::with_capacity(256);
    rest.push(b'{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            rest.push(b',');
        }
        serde_json::to_writer(&mut rest, name.0.as_ref()).ok()?;
        rest.push(b':');
        match value {
            None => rest.extend_from_slice(b"[]"),
            Some(raw) => rest.extend_from_slice(raw.get().as_bytes()),
        }
    }
    rest.push(b'}');
    Some(SplitList { rest, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`split_member`] answers, checked against a full parse: the rest is the answer with the member's
    /// array emptied, and the items are its elements, as written.
    fn split_as_parsed(text: &str, member: &str) -> Option<(Value, Vec<String>)> {
        let split = split_member(text, member)?;
        let rest: Value = serde_json::from_slice(&split.rest).expect("the rest is JSON");
        let items: Vec<String> = split.items.iter().map(|r| text[r.clone()].to_string()).collect();
        let mut whole: Value = serde_json::from_str(text).expect("the answer is JSON");
        let name = whole
            .as_object()
            .and_then(|o| o.keys().find(|k| k.eq_ignore_ascii_case(member)).cloned())
            .expect("the member");
        let elements = std::mem::replace(&mut whole[&name], json!([]));
        assert_eq!(rest, whole, "the rest of {text}");
        let parsed: Vec<Value> = items
            .iter()
            .map(|i| serde_json::from_str(i).expect("an item is JSON"))
            .collect();
        assert_eq!(Value::Array(parsed), elements, "the items of {text}");
        Some((rest, items))
    }

    #[test]
    fn member_names_are_read_whatever_their_case() {
        let list = ListResponse::from_owned_json(json!({
            "RESOURCES": [{"id": "1"}, {"id": "2"}],
            "TotalResults": 7,
            "ITEMSPERPAGE": 2,
            "startindex": 3,
            "NextID": "abc"
        }))
        .expect("a list");
        assert_eq!(list.resources, vec![json!({"id": "1"}), json!({"id": "2"})]);
        assert_eq!(
            (
                list.total_results,
                list.items_per_page,
                list.start_index,
                list.next_id.as_deref()
            ),
            (Some(7), Some(2), Some(3), Some("abc"))
        );
    }

    #[test]
    fn a_list_answer_is_split_into_its_elements_and_the_rest() {
        let text = r#" {"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults" : 3,
            "Resources": [ {"id":"1","name":{"givenName":"A]"}} , {"id":"2","emails":[{"value":"b@x"}]},
            {"id":"3","x":"\"]}\u005d"} ], "startIndex":1, "itemsPerPage":3 } "#;
        let (rest, items) = split_as_parsed(text, "Resources").expect("split");
        assert_eq!(items[0], r#"{"id":"1","name":{"givenName":"A]"}}"#);
        assert_eq!(items[2], r#"{"id":"3","x":"\"]}\u005d"}"#);
        assert_eq!(rest["totalResults"], 3);
        // SCIM names are case-insensitive; UAA writes `resources`; an escaped name is its text.
        assert!(split_as_parsed(r#"{"resources":[1,2],"totalResults":2}"#, "Resources").is_some());
        assert!(split_as_parsed(r#"{"Res\u006furces":[{"a":1}]}"#, "Resources").is_some());
        assert_eq!(
            split_as_parsed(r#"{"Resources":[]}"#, "Resources")
                .expect("empty")
                .1
                .len(),
            0
        );
    }

    #[test]
    fn anything_but_one_object_with_one_array_member_is_left_whole() {
        for text in [
            r#"[{"Resources":[1]}]"#,
            r#"{"totalResults":0}"#,
            r#"{"Resources":{"id":"1"}}"#,
            r#"{"Resources":null}"#,
            r#"{"Resources":[1],"resources":[2]}"#,
            r#"{"Resources":[1]} {"#,
            r#"{"Resources":[1,]}"#,
            r#"{"Resources":[{"id":"1}]}"#,
            r#"{"Resources":[1],"x":"\q"}"#,
            r#"{"Resources":[1]"#,
            "",
        ] {
            assert_eq!(split_member(text, "Resources"), None, "{text}");
        }
    }

    #[test]
    fn arrays_and_objects_past_the_caps_are_left_whole() {
        let elements = |n: usize| vec!["0"; n].join(",");
        let at_cap = format!(r#"{{"Resources":[{}]}}"#, elements(MAX_SPLIT_ITEMS));
        assert_eq!(
            split_member(&at_cap, "Resources").map(|s| s.items.len()),
            Some(MAX_SPLIT_ITEMS)
        );
        let over = format!(r#"{{"Resources":[{}]}}"#, elements(MAX_SPLIT_ITEMS + 1));
        assert_eq!(split_member(&over, "Resources"), None);
        let members = |n: usize| (0..n).map(|i| format!(r#""m{i}":0"#)).collect::<Vec<_>>().join(",");
        let at_cap = format!(r#"{{{},"Resources":[]}}"#, members(MAX_SPLIT_MEMBERS - 1));
        assert!(split_member(&at_cap, "Resources").is_some());
        let over = format!(r#"{{{},"Resources":[]}}"#, members(MAX_SPLIT_MEMBERS));
        assert_eq!(split_member(&over, "Resources"), None);
    }

    /// A small generator without a dependency: a linear congruential sequence, `next(n)` in `0..n`.
    fn sequence(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        }
    }

    /// `n` random list answers, each with how many elements its `Resources` holds.
    fn random_answers(n: usize) -> Vec<(String, usize)> {
        let mut next = sequence(0x5eed);
        let atoms = [
            r#""a""#,
            r#""]}""#,
            r#""\"\\""#,
            r#""\u00e9\ud83d\ude00""#,
            "1",
            "-2.5e3",
            "0.25",
            "true",
            "null",
            "{}",
            "[]",
            r#"[{"x":[1,"é"]}]"#,
        ];
        (0..n)
            .map(|_| {
                let element = |next: &mut dyn FnMut(u64) -> u64| {
                    let fields: Vec<String> = (0..next(4))
                        .map(|f| format!(r#""f{f}" : {}"#, atoms[next(atoms.len() as u64) as usize]))
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                };
                let elements: Vec<String> = (0..next(6)).map(|_| element(&mut next)).collect();
                let mut members = vec![format!(r#""Resources" :[ {} ]"#, elements.join(" , "))];
                for m in 0..next(4) {
                    let at = next(members.len() as u64 + 1) as usize;
                    members.insert(at, format!(r#""m{m}":{}"#, atoms[next(atoms.len() as u64) as usize]));
                }
                (format!("{{{}}}", members.join(",")), elements.len())
            })
            .collect()
    }

    #[test]
    fn random_list_answers_split_as_a_full_parse_reads_them() {
        for (text, elements) in random_answers(500) {
            let (_, items) = split_as_parsed(&text, "Resources").unwrap_or_else(|| panic!("not split: {text}"));
            assert_eq!(items.len(), elements, "{text}");
        }
    }

    #[test]
    fn the_quick_split_answers_as_the_parse_does_or_leaves_the_answer_to_it() {
        // Random answers and mutations of them: bytes dropped, doubled, replaced by JSON's punctuation, cut.
        const PIECES: [&str; 14] = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "-", "0", " ", "\u{1}", "\\u", "1e5",
        ];
        let mut next = sequence(0xc0ffee);
        let mut plain = 0;
        for (text, _) in random_answers(200) {
            // Without an exponent, the quick split takes it (the `\u` escapes here are paired surrogates).
            if !text.contains("e3") {
                plain += 1;
                assert!(split_plain(&text, "Resources").is_some(), "{text}");
            }
            let chars: Vec<char> = text.chars().collect();
            let mutated = (0..40).map(|_| {
                let mut out = chars.clone();
                let at = next(out.len() as u64 + 1) as usize;
                match next(4) {
                    0 if at < out.len() => drop(out.remove(at)),
                    1 => out
                        .splice(at..at, PIECES[next(PIECES.len() as u64) as usize].chars())
                        .for_each(drop),
                    2 if at < out.len() => out.insert(at, out[at]),
                    _ => out.truncate(at),
                }
                out.into_iter().collect::<String>()
            });
            for text in std::iter::once(text.clone()).chain(mutated) {
                if let Some(split) = split_plain(&text, "Resources") {
                    assert_eq!(Some(split), split_parsed(&text, "Resources"), "{text}");
                }
            }
        }
        assert!(plain > 20, "too few plain answers ({plain})");
        assert!(split_plain(r#" {"resources":[{"id":"1"}] , "totalResults":"1"} "#, "Resources").is_some());
    }

    #[test]
    fn a_page_written_from_resource_texts_is_the_page_as_json() {
        let resources = vec![
            json!({"id": "1", "userName": "ann", "name": {"givenName": "Ann \"A\" ü"}, "emails": []}),
            json!({"id": "2", "meta": {"resourceType": "User"}, "n": 1.5, "z": null}),
        ];
        for (page, total, start) in [(resources.clone(), 7, 3), (vec![], 0, 1)] {
            let expected =
                serde_json::to_string(&ListResponse::page(page.clone(), total, start).into_json()).expect("text");
            let texts: Vec<String> = page.iter().map(Value::to_string).collect();
            let written = ListResponse::page_json(texts.iter().map(String::as_str), total, start);
            assert_eq!(String::from_utf8(written).expect("utf-8"), expected);
        }
    }

    fn users(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": i.to_string()})).collect()
    }

    #[test]
    fn index_paging() {
        // (resources on the page, itemsPerPage, totalResults, startIndex, count) → the next startIndex.
        type Case = (u64, Option<u64>, Option<u64>, u64, u32, Option<&'static str>);
        let cases: [Case; 6] = [
            (2, Some(2), Some(5), 1, 2, Some("3")),
            (1, Some(1), Some(5), 5, 2, None),
            (0, Some(0), Some(9), 3, 2, None),
            (1, None, None, 1, 2, None),
            // Filtered after paging: itemsPerPage is the step; a server that ignores `count`: `count` is.
            (2, Some(3), Some(10), 1, 3, Some("4")),
            (5, Some(5), Some(10), 1, 2, Some("3")),
        ];
        for (got, per, total, start, count, next) in cases {
            assert_eq!(
                next_index(got, per, total, start, count).as_deref(),
                next,
                "{got} {per:?} {total:?}"
            );
        }
        assert_eq!(start_index(None), Ok(1));
        assert!(start_index(Some("0")).is_err());
        assert_eq!(start_id(Some("abc")), "abc");
    }

    #[test]
    fn both_spellings() {
        let l = ListResponse::from_json(&json!({"resources": [{"id": "a"}], "totalResults": 1, "itemsPerPage": "1"}))
            .unwrap();
        assert_eq!((l.resources.len(), l.items_per_page), (1, Some(1)));
        let l = ListResponse::from_json(&json!({"Resources": [{"id": "a"}], "nextId": "abc"})).unwrap();
        assert_eq!(l.next_id.as_deref(), Some("abc"));
        assert!(ListResponse::from_json(&json!({"Resources": 1})).is_err());
        assert!(ListResponse::from_json(&json!([])).is_err());
    }

    #[test]
    fn server_side() {
        assert_eq!(window(10, 1, 3), 0..3);
        assert_eq!(window(10, 9, 3), 8..10);
        assert_eq!(window(10, 11, 3), 10..10);
        assert_eq!(window(10, 1, 0), 0..0);
        assert_eq!(window(10, 0, 2), 0..2);
        let body = ListResponse::page(users(2), 7, 3).to_json();
        assert_eq!(
            body,
            json!({"schemas": [LIST_RESPONSE], "totalResults": 7, "startIndex": 3, "itemsPerPage": 2,
                   "Resources": [{"id": "0"}, {"id": "1"}]})
        );
        assert_eq!(
            ListResponse::from_json(&body).unwrap().next_index(3, 2),
            Some("5".into())
        );
    }
}
