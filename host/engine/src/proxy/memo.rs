//! The proxy's read memo: a backend entity whose JSON text is byte for byte one the read transformation
//! turned into a SCIM resource before (same kind, same base URL) is served from that resource, neither
//! parsed nor transformed again. Parsing and transforming were most of a proxied page's own time (a
//! 100-user page: 227 µs to parse, 391 µs to transform on two cores, against a backend answering in 553 µs).
//!
//! It lives in the system's [`View`](super::View), so any change of the system, its plugin, its
//! transformations or its served schemas starts afresh. Only a kind whose read transformation is a function
//! of the entity alone is memoised (see `provisioning::memo::pure`): one that draws a random password or
//! reads the clock is run every time. Entries are keyed by the whole text, compared byte for byte on a hit,
//! so no digest can mistake one entity for another; the least recently used go first past [`WEIGHT`].

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use quick_cache::Equivalent;
use serde_json::Value;

use crate::connector::EntityKind;

/// What one system's memo may hold, in estimated bytes: an entity's text, its resource's text and the parsed
/// resource (about twice its text). 16 MiB keep about 8,000 UAA users of 500 bytes.
pub const WEIGHT: u64 = 16 << 20;

/// A resource as served: the value (filters, sorting and projections work on it) and its compact JSON
/// text, written once, from which pages and GETs without a projection are answered.
#[derive(Debug, PartialEq)]
pub struct Written {
    /// The resource.
    pub value: Value,
    /// `value` as compact JSON.
    pub text: Box<str>,
    /// Its `meta.version` (the answer's `ETag`), read once: a GET answered from the text need not look
    /// into the value, which is cold by then.
    pub version: Option<Box<str>>,
}

impl Written {
    /// A resource with its text written now.
    pub fn new(value: Value) -> Written {
        let text = crate::json::text(&value).into_boxed_str();
        let version = value
            .get("meta")
            .and_then(|m| m.get("version"))
            .and_then(Value::as_str)
            .map(Box::from);
        Written { value, text, version }
    }
}

/// What a remembered text became: the resource, or `None` when the transformation skipped it.
pub type Remembered = Option<Arc<Written>>;

/// The memo of one proxy system's reads.
pub struct ReadMemo {
    /// The kinds memoised (those whose read transformation is a function of the entity alone).
    kinds: Vec<EntityKind>,
    cache: quick_cache::sync::Cache<Key, Remembered, Weight>,
}

impl ReadMemo {
    /// A memo for the kinds in `kinds` (the others are never remembered).
    pub fn new(kinds: Vec<EntityKind>) -> ReadMemo {
        ReadMemo {
            kinds,
            // Estimated items: 500-byte entities.
            cache: quick_cache::sync::Cache::with_weighter((WEIGHT / 1500) as usize, WEIGHT, Weight),
        }
    }

    /// Whether a kind is memoised at all.
    pub fn keeps(&self, kind: EntityKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// What the text of a native entity of `kind`, served under `base`, became before.
    pub fn get(&self, kind: EntityKind, base: &str, native: &str) -> Option<Remembered> {
        if !self.keeps(kind) {
            return None;
        }
        self.cache.get(&Query { kind, base, native })
    }

    /// Remembers what a native entity's text became.
    pub fn put(&self, kind: EntityKind, base: &Arc<str>, native: String, resource: Remembered) {
        if self.keeps(kind) {
            let key = Key {
                kind,
                base: base.clone(),
                native: native.into_boxed_str(),
            };
            self.cache.insert(key, resource);
        }
    }

    /// Entries held (for tests).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// An entry's key: hashed as [`Query`] is, so a lookup needs no copy of the text.
#[derive(PartialEq, Eq)]
struct Key {
    kind: EntityKind,
    base: Arc<str>,
    native: Box<str>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Query {
            kind: self.kind,
            base: &self.base,
            native: &self.native,
        }
        .hash(state)
    }
}

/// A lookup by borrowed text.
#[derive(Hash)]
struct Query<'a> {
    kind: EntityKind,
    base: &'a str,
    native: &'a str,
}

impl Equivalent<Key> for Query<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.kind == key.kind && self.native == &*key.native && self.base == &*key.base
    }
}

/// An entry weighs the entity's text, and its resource's text three times (the text and the parsed
/// resource), plus the base URL.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Remembered> for Weight {
    fn weight(&self, key: &Key, remembered: &Remembered) -> u64 {
        let resource = remembered.as_ref().map_or(0, |r| r.text.len());
        (key.native.len() + 3 * resource + key.base.len() + 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_text_is_remembered_per_kind_and_base_byte_for_byte() {
        let memo = ReadMemo::new(vec![EntityKind::User]);
        let base: Arc<str> = Arc::from("https://p/scim/s1");
        let text = r#"{"id":"1","userName":"ann"}"#;
        memo.put(
            EntityKind::User,
            &base,
            text.to_string(),
            Some(Arc::new(Written::new(json!({"id": "1"})))),
        );
        memo.put(EntityKind::User, &base, r#"{"id":"2"}"#.to_string(), None);
        let remembered = memo.get(EntityKind::User, "https://p/scim/s1", text).flatten();
        assert_eq!(remembered.as_ref().map(|r| &r.value), Some(&json!({"id": "1"})));
        assert_eq!(
            remembered.as_ref().map(|r| &*r.text),
            Some(r#"{"id":"1"}"#),
            "written once"
        );
        assert_eq!(remembered.as_ref().and_then(|r| r.version.as_deref()), None);
        let versioned = Written::new(json!({"id": "1", "meta": {"version": "W/\"3\""}}));
        assert_eq!(versioned.version.as_deref(), Some("W/\"3\""), "read once, as written");
        assert_eq!(
            memo.get(EntityKind::User, &base, r#"{"id":"2"}"#),
            Some(None),
            "skipped"
        );
        // One byte differs, another base, another kind: not the same entry.
        assert!(
            memo.get(EntityKind::User, &base, r#"{"id":"1","userName":"anne"}"#)
                .is_none()
        );
        assert!(
            memo.get(EntityKind::User, &base, r#"{"id":"1", "userName":"ann"}"#)
                .is_none()
        );
        assert!(memo.get(EntityKind::User, "https://q/scim/s1", text).is_none());
        memo.put(
            EntityKind::Group,
            &base,
            text.to_string(),
            Some(Arc::new(Written::new(json!({})))),
        );
        assert!(
            memo.get(EntityKind::Group, &base, text).is_none(),
            "groups are not kept here"
        );
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn the_memo_stays_within_its_weight() {
        let memo = ReadMemo::new(vec![EntityKind::User]);
        let base: Arc<str> = Arc::from("https://p");
        let filler = "x".repeat(1000);
        // 58 MiB of weight offered to a memo of 16.
        for i in 0..14_000 {
            memo.put(
                EntityKind::User,
                &base,
                format!(r#"{{"id":"{i}","f":"{filler}"}}"#),
                Some(Arc::new(Written::new(json!({"id": i, "f": filler})))),
            );
        }
        let held = memo.cache.weight();
        assert!(held <= WEIGHT, "{held} > {WEIGHT}");
        assert!(memo.len() < 14_000 && memo.len() > 1_000, "{}", memo.len());
    }
}
