//! The link store: per (source, target, entity kind), which target entity a source entity was written to,
//! a digest of what was written last (so an unchanged entity is not written again), the content itself
//! (for the old → new diff of the next change), and whether the target entity existed before Provisio
//! matched it (such entities are not deleted unless the admin allows it).
//!
//! A create is recorded as an intent (`creating`) before it is sent: after a crash, an intent without a
//! target id tells the next run to look the entity up in the target before creating it again.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::StoreError;
use super::jobs::Claim;
use crate::connector::EntityKind;

/// Which link set: the pair of systems and the entity kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkScope {
    /// The source system.
    pub source: String,
    /// The target system.
    pub target: String,
    /// Users or groups.
    pub kind: EntityKind,
}

/// A link's digest as links carry it: the first 128 bits of a SHA-256 digest, 16 bytes inline. Its 64-character
/// hex text took a 64-byte allocation plus a 24-byte `String` (two per link, a third of a 100,000-user run's
/// links map), the full 32 bytes another 16 bytes per digest in every link and memo entry. 128 bits keep
/// chance collisions out of reach (about 2^64 entities before one is likely); the digest only tells "unchanged"
/// apart from "write it again", and its input is what the admin's own systems hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkDigest([u8; 16]);

impl LinkDigest {
    /// From its stored hex text: 32 hex digits, or the 64 of a full SHA-256 digest that stores kept before
    /// (its first half is the same link digest, so links stored before stay current). `None` for anything
    /// else (such a link is treated as having no digest: written again, not remembered).
    pub fn from_hex(text: &str) -> Option<LinkDigest> {
        match text.len() {
            32 => {
                let mut bytes = [0; 16];
                hex::decode_to_slice(text, &mut bytes).ok()?;
                Some(LinkDigest(bytes))
            }
            64 => {
                let mut full = [0; 32];
                hex::decode_to_slice(text, &mut full).ok()?;
                Some(LinkDigest::from(full))
            }
            _ => None,
        }
    }

    /// The stored form: 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for LinkDigest {
    /// A full SHA-256 digest, truncated to its first 128 bits.
    fn from(bytes: [u8; 32]) -> Self {
        let mut half = [0; 16];
        half.copy_from_slice(&bytes[..16]);
        LinkDigest(half)
    }
}

impl From<sha2::digest::Output<sha2::Sha256>> for LinkDigest {
    fn from(output: sha2::digest::Output<sha2::Sha256>) -> Self {
        let full: [u8; 32] = output.into();
        LinkDigest::from(full)
    }
}

impl std::fmt::Debug for LinkDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A target entity's id as a link keeps it in memory. Most targets name their entities by UUIDs: one in its
/// usual form (lowercase, hyphenated) is kept as its 16 bytes inline, where its text took a 40-byte allocation
/// beside the link (4 MiB of a 100,000-user run's links map); any other id is kept as its text, byte for byte.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum TargetId {
    /// A UUID whose text was its lowercase hyphenated form, which [`Display`](std::fmt::Display) gives back.
    Uuid(uuid::Uuid),
    /// Any other id. Never a lowercase hyphenated UUID, so each id has one form and equality is the text's.
    Text(Box<str>),
}

impl TargetId {
    /// Whether this is the id whose text is `text`.
    pub fn is(&self, text: &str) -> bool {
        match self {
            TargetId::Uuid(uuid) => uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()) == text,
            TargetId::Text(own) => **own == *text,
        }
    }
}

impl From<&str> for TargetId {
    fn from(text: &str) -> Self {
        // Only the form that prints back as the same text: a parse also takes uppercase, braces and URNs.
        let canonical = text.len() == uuid::fmt::Hyphenated::LENGTH && !text.bytes().any(|b| b.is_ascii_uppercase());
        match uuid::Uuid::try_parse(text) {
            Ok(uuid) if canonical => TargetId::Uuid(uuid),
            _ => TargetId::Text(text.into()),
        }
    }
}

impl From<String> for TargetId {
    fn from(text: String) -> Self {
        match TargetId::from(text.as_str()) {
            TargetId::Text(_) => TargetId::Text(text.into_boxed_str()),
            uuid => uuid,
        }
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetId::Uuid(uuid) => std::fmt::Display::fmt(&uuid.hyphenated(), f),
            TargetId::Text(text) => f.write_str(text),
        }
    }
}

impl std::fmt::Debug for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl From<&TargetId> for String {
    fn from(id: &TargetId) -> Self {
        id.to_string()
    }
}

/// Every link of a scope as a run keeps it in memory, by source entity id. The ids are shared: the run's
/// transformation memo and its set of ids read hold the same allocation as the key, not copies of it (two
/// `String`s per entity, ≈ 14 MiB at 100,000 users). Looked up by `&str`.
pub type Links = HashMap<Arc<str>, Link>;

/// One link as jobs keep it in memory (without the content).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Link {
    /// The target entity's id; `None` while only a create intent is recorded.
    pub target_entity: Option<TargetId>,
    /// Digest of the content last written.
    pub digest: Option<LinkDigest>,
    /// The target entity existed before Provisio matched it.
    pub existed_before: bool,
    /// A create was sent and its outcome is not recorded (a crash in between).
    pub creating: bool,
    /// Digest of the native entity last found to transform into `digest`'s content, keyed by the
    /// transformations and properties it went through (see `provisioning::memo`): a run that reads the same
    /// native entity again skips both transformations. `None`: not known (or not to be trusted).
    pub source_digest: Option<LinkDigest>,
}

/// A change to the link set, applied in batches.
#[derive(Clone, Debug)]
pub enum LinkChange {
    /// A create is about to be sent.
    Intent {
        /// The source entity.
        source_entity: String,
    },
    /// The entity was written (created, matched or updated).
    Written {
        /// The source entity.
        source_entity: String,
        /// Its target id.
        target_entity: String,
        /// Digest of `content`.
        digest: LinkDigest,
        /// What was written.
        content: Value,
        /// Matched rather than created.
        existed_before: bool,
        /// The native entity's memo digest, when `content` is what a later run would compute from it.
        source_digest: Option<LinkDigest>,
    },
    /// A run found the entity unchanged by transforming it: the native entity's memo digest, so that the next
    /// run need not transform it again.
    Remembered {
        /// The source entity.
        source_entity: String,
        /// The memo digest.
        source_digest: LinkDigest,
    },
    /// The target entity was changed outside the normal write (deactivated instead of deleted): the next
    /// write must not be skipped as unchanged.
    Stale {
        /// The source entity.
        source_entity: String,
    },
    /// The entity is gone from the target (deleted), or the create never happened.
    Removed {
        /// The source entity.
        source_entity: String,
    },
}

/// The links aggregate.
#[async_trait::async_trait]
pub trait LinkStore: Send + Sync {
    /// Every link of a scope, by source entity (without the content).
    async fn all(&self, scope: &LinkScope) -> Result<Links, StoreError>;
    /// One source entity's link.
    async fn get(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Link>, StoreError>;
    /// What was last written for each of these source entities that has a link with content (the old side
    /// of the next change's diff).
    async fn contents(
        &self,
        scope: &LinkScope,
        source_entities: Vec<String>,
    ) -> Result<HashMap<String, Value>, StoreError>;
    /// Applies changes in order, all or none; when a job run writes them, fenced by its claim (in the same
    /// transaction: none is applied once another replica has taken the run over).
    async fn apply(&self, scope: &LinkScope, changes: Vec<LinkChange>, fence: Option<&Claim>)
    -> Result<(), StoreError>;
    /// Applies changes of several scopes in order, all or none, unfenced: the create intents of real-time
    /// events gathered into one commit.
    async fn apply_across(&self, changes: Vec<(LinkScope, LinkChange)>) -> Result<(), StoreError>;
    /// Forgets every link of a source (a full resync writes everything again); how many.
    async fn reset(&self, source: &str) -> Result<usize, StoreError>;
    /// Whether Provisio itself wrote this entity into `system` at or after `since` (the loop guard: a system
    /// that is a target and also pushes changes must not echo Provisio's own writes back).
    async fn written_since(&self, system: &str, kind: &str, entity: &str, since: &str) -> Result<bool, StoreError>;
    /// Whether Provisio has a create into `system` in flight: an intent recorded at or after `since` whose
    /// outcome is not recorded yet (a push from that system may be the echo of it, not yet linked).
    async fn creating_since(&self, system: &str, kind: &str, since: &str) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_digest_round_trips_its_hex_text_and_refuses_anything_else() {
        let text = "00ff".repeat(8);
        let digest = LinkDigest::from_hex(&text).expect("32 hex digits");
        assert_eq!(digest.to_hex(), text);
        let bytes: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0x00 } else { 0xff });
        assert_eq!(
            digest,
            LinkDigest::from(bytes),
            "the first 128 bits of a SHA-256 digest"
        );
        assert_eq!(format!("{digest:?}"), text);
        // A full digest as stores kept it before reads as its first half: links stored then stay current.
        let full = format!("{text}{}", "ab".repeat(16));
        assert_eq!(LinkDigest::from_hex(&full), Some(digest));
        let with_bad_tail = format!("{text}{}", "zz".repeat(16));
        for bad in [
            "",
            "d1",
            &"0".repeat(31),
            &"0".repeat(33),
            &"0".repeat(63),
            &"0".repeat(66),
            &"g".repeat(32),
        ] {
            assert_eq!(LinkDigest::from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(LinkDigest::from_hex(&with_bad_tail), None, "tampered");
        assert_eq!(LinkDigest::from_hex("tampered"), None);
    }

    #[test]
    fn a_target_id_keeps_its_text_byte_for_byte() {
        let uuid = "0f3e2b6c-1d2a-4c5b-9e8f-7a6b5c4d3e2f";
        let id = TargetId::from(uuid);
        assert!(matches!(id, TargetId::Uuid(_)), "kept as 16 bytes");
        assert_eq!(id.to_string(), uuid);
        assert!(id.is(uuid) && !id.is("0f3e2b6c-1d2a-4c5b-9e8f-7a6b5c4d3e2e"));
        assert_eq!(id, TargetId::from(uuid.to_string()));
        // Other spellings of a UUID, and anything else, stay text: they print as they came.
        for text in [
            "0F3E2B6C-1D2A-4C5B-9E8F-7A6B5C4D3E2F",
            "0f3e2b6c1d2a4c5b9e8f7a6b5c4d3e2f",
            "{0f3e2b6c-1d2a-4c5b-9e8f-7a6b5c4d3e2f}",
            "urn:uuid:0f3e2b6c-1d2a-4c5b-9e8f-7a6b5c4d3e2f",
            "T-u1",
            "",
            "ümlaut",
        ] {
            let id = TargetId::from(text);
            assert!(matches!(id, TargetId::Text(_)), "{text}");
            assert_eq!(id.to_string(), text);
            assert!(id.is(text));
            assert_eq!(id, TargetId::from(text.to_string()));
        }
        assert_ne!(TargetId::from(uuid), TargetId::from(uuid.to_uppercase().as_str()));
        assert_eq!(format!("{:?}", TargetId::from(uuid)), format!("{uuid:?}"));
    }

    #[test]
    fn a_link_stays_small() {
        // 100,000 links are a run's largest item: keep a link at 64 bytes (with its key, 80 per entry).
        assert_eq!(std::mem::size_of::<Option<TargetId>>(), 24);
        assert_eq!(std::mem::size_of::<Link>(), 64);
    }
}
