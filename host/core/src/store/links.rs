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

/// A SHA-256 digest as links carry it in memory: 32 bytes, where its 64-character hex text (the form the
/// stores keep) took a heap allocation of 64 bytes plus a 24-byte `String` — two per link, a third of a
/// 100,000-user run's links map.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkDigest([u8; 32]);

impl LinkDigest {
    /// From its stored hex text; `None` when the text is not 64 hex digits (such a link is treated as having
    /// no digest: written again, not remembered).
    pub fn from_hex(text: &str) -> Option<LinkDigest> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(LinkDigest(bytes))
    }

    /// The stored form: lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<[u8; 32]> for LinkDigest {
    fn from(bytes: [u8; 32]) -> Self {
        LinkDigest(bytes)
    }
}

impl From<sha2::digest::Output<sha2::Sha256>> for LinkDigest {
    fn from(output: sha2::digest::Output<sha2::Sha256>) -> Self {
        LinkDigest(output.into())
    }
}

impl std::fmt::Debug for LinkDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
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
    pub target_entity: Option<String>,
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
        let text = "00ff".repeat(16);
        let digest = LinkDigest::from_hex(&text).expect("64 hex digits");
        assert_eq!(digest.to_hex(), text);
        let bytes: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0x00 } else { 0xff });
        assert_eq!(digest, LinkDigest::from(bytes));
        assert_eq!(format!("{digest:?}"), text);
        for bad in ["", "d1", &"0".repeat(63), &"0".repeat(66), &"g".repeat(64), "tampered"] {
            assert_eq!(LinkDigest::from_hex(bad), None, "{bad:?}");
        }
    }
}
