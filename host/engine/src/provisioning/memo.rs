//! The transformation memo of a Read: a user whose native entity is byte for byte what a run transformed
//! before, through the same transformations and properties, into the content its target holds, is unchanged
//! without transforming it again (the transformations were 40 % of an unchanged Read's CPU).
//!
//! Each link keeps a *memo digest*: SHA-256 over the pair's key (see [`fingerprint`]) and the digest of the
//! native entity. It is stored when the link's content is what a later run would compute from that entity
//! (a write in its update form, or a run that found it unchanged), and trusted only while the link is
//! written, current (not stale) and settled (no create in flight).
//!
//! Only what is a function of the native entity alone is memoised: users (a group's members resolve through
//! other links), transformations without `resolveEntityIds`, `randomPassword`, `manipulateDate` or
//! `currentDate`, targets whose `skipOperations` lets updates through, and never for a Resync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::connector::EntityKind;
use crate::store::links::{LinkDigest, Links};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Functions and variables whose result is not a function of the entity: a transformation that uses one
/// is never memoised.
const NOT_PURE: [&str; 4] = ["resolveEntityIds", "randomPassword", "manipulateDate", "currentDate"];

/// What the user transformation's output depends on besides the entity: its part of the document (a
/// document's top-level keys are the entity types) and its system's properties (and this Provisio's
/// version, for the transformation language's own changes). `None` when it has no user part, or uses
/// something that is not a function of the entity.
pub fn fingerprint(role: &str, document: &Value, properties: &BTreeMap<String, String>) -> Option<Digest> {
    let text = document.get(EntityKind::User.as_str())?.to_string();
    if !pure_text(&text) {
        return None;
    }
    let mut hasher = Sha256::new();
    for part in [role, env!("CARGO_PKG_VERSION"), &text] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    for (name, value) in properties {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value.as_bytes());
    }
    Some(hasher.finalize().into())
}

/// Whether one entity type's part of a transformation document is a function of the entity alone (names
/// none of [`NOT_PURE`]); the proxy's read memo keys on that too.
pub fn pure(part: &Value) -> bool {
    pure_text(&part.to_string())
}

fn pure_text(text: &str) -> bool {
    !NOT_PURE.iter().any(|name| text.contains(name))
}

/// The key of a source/target pair: both sides' fingerprints, when both have one.
pub fn pair_key(source: Option<Digest>, target: Option<Digest>) -> Option<Digest> {
    let (source, target) = (source?, target?);
    let mut hasher = Sha256::new();
    hasher.update(source);
    hasher.update(target);
    Some(hasher.finalize().into())
}

/// The digest of a native entity: of its text as the connector returned it, so that an entity the memo
/// knows need not even be parsed. (A source that writes the same entity differently from one read to the
/// next only misses the memo: the entity is transformed and planned as without it.)
pub fn native_digest(text: &str) -> Digest {
    Sha256::digest(text.as_bytes()).into()
}

/// One target's memo for a run: the memo digests its links carry, and the source entity each belongs to
/// (the links map's own id, shared).
#[derive(Debug)]
pub struct Memo {
    key: Digest,
    known: HashMap<LinkDigest, Arc<str>>,
}

impl Memo {
    /// The memo of a pair (by its key) from the links a run starts with.
    pub fn new(key: Digest, links: &Links) -> Memo {
        // Sized up front: grown by doubling, its tables of 100,000 entries held 12 MiB at once (the
        // service's peak of an unchanged Read).
        let mut known = HashMap::with_capacity(links.len());
        known.extend(
            links
                .iter()
                .filter(|(_, l)| l.target_entity.is_some() && l.digest.is_some() && !l.creating)
                .filter_map(|(id, l)| Some((l.source_digest?, id.clone()))),
        );
        Memo { key, known }
    }

    /// The memo digest of a native entity (by its [`native_digest`]) for this pair.
    pub fn digest(&self, native: &Digest) -> LinkDigest {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(native);
        LinkDigest::from(hasher.finalize())
    }

    /// The source entity whose link says this memo digest's entity is unchanged, if one does.
    pub fn unchanged(&self, digest: &LinkDigest) -> Option<&Arc<str>> {
        self.known.get(digest)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::links::Link;

    #[test]
    fn a_fingerprint_follows_the_document_the_properties_and_the_role() {
        let doc = json!({"user": {"mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"}]}});
        let url = |u: &str| BTreeMap::from([("URL".to_string(), u.to_string())]);
        let p = url("https://a");
        let f = fingerprint("write", &doc, &p).expect("pure");
        assert_eq!(Some(f), fingerprint("write", &doc.clone(), &p.clone()));
        assert_ne!(Some(f), fingerprint("read", &doc, &p));
        assert_ne!(Some(f), fingerprint("write", &doc, &url("https://b")));
        let ignored = json!({"user": {"mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"},
            {"constant": "x", "targetPath": "$.title", "ignore": true}]}});
        assert_ne!(
            Some(f),
            fingerprint("write", &ignored, &p),
            "any change of the text counts"
        );
    }

    #[test]
    fn transformations_that_are_not_functions_of_the_entity_have_none() {
        assert!(pure(
            &json!({"mappings": [{"sourcePath": "$.userName", "targetPath": "$.userName"}]})
        ));
        for used in NOT_PURE {
            let doc = json!({"user": {"mappings": [{"sourceVariable": used, "targetPath": "$.x"}]}});
            assert_eq!(fingerprint("write", &doc, &BTreeMap::new()), None, "{used}");
            assert!(!pure(&doc["user"]), "{used}");
        }
        // Groups resolve their members; that does not concern users. A document without users has none.
        let groups_resolve = json!({"user": {"mappings": []},
            "group": {"mappings": [{"sourcePath": "$.members", "targetPath": "$.members",
                "functions": [{"function": "resolveEntityIds", "entityType": "user"}]}]}});
        assert!(fingerprint("write", &groups_resolve, &BTreeMap::new()).is_some());
        assert_eq!(
            fingerprint("write", &json!({"group": {"mappings": []}}), &BTreeMap::new()),
            None
        );
        assert_eq!(pair_key(None, Some([1; 32])), None);
        assert_eq!(pair_key(Some([1; 32]), None), None);
        assert_ne!(
            pair_key(Some([1; 32]), Some([2; 32])),
            pair_key(Some([2; 32]), Some([1; 32]))
        );
    }

    #[test]
    fn only_written_current_settled_links_are_trusted() {
        let key = [7; 32];
        let memo_of = |native: &Value| {
            let m = Memo {
                key,
                known: HashMap::new(),
            };
            m.digest(&native_digest(&native.to_string()))
        };
        let (a, b, c, d) = (
            json!({"id": "a"}),
            json!({"id": "b"}),
            json!({"id": "c"}),
            json!({"id": "d"}),
        );
        let link = |native: &Value, digest: Option<LinkDigest>, creating: bool| Link {
            target_entity: Some("t".into()),
            digest,
            existed_before: false,
            creating,
            source_digest: Some(memo_of(native)),
        };
        let written = Some(LinkDigest::from([0xd; 32]));
        let links: Links = [
            ("a".into(), link(&a, written, false)),
            ("b".into(), link(&b, None, false)),
            ("c".into(), link(&c, written, true)),
            (
                "d".into(),
                Link {
                    // What the stores read from a memo digest that is not 32 (or 64) hex digits.
                    source_digest: None,
                    ..link(&d, written, false)
                },
            ),
        ]
        .into();
        let memo = Memo::new(key, &links);
        let found = |native: &Value| {
            memo.unchanged(&memo.digest(&native_digest(&native.to_string())))
                .map(|id| id.to_string())
        };
        assert_eq!(found(&a).as_deref(), Some("a"));
        let (key_a, _) = links.get_key_value("a").expect("a");
        let recalled = memo.unchanged(&memo.digest(&native_digest(&a.to_string()))).expect("a");
        assert!(
            Arc::ptr_eq(key_a, recalled),
            "the memo shares the links map's id, not a copy"
        );
        assert_eq!(found(&b), None, "stale");
        assert_eq!(found(&c), None, "a create in flight");
        assert_eq!(found(&d), None, "unreadable");
        assert_eq!(found(&json!({"id": "a", "title": "new"})), None, "changed");
        let other = Memo::new([8; 32], &links);
        assert_eq!(
            other.unchanged(&other.digest(&native_digest(&a.to_string()))),
            None,
            "another pair's key"
        );
    }
}
