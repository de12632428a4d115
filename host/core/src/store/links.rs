//! The link store: per (source, target, entity kind), which target entity a source entity was written to,
//! a digest of what was written last (so an unchanged entity is not written again), the content itself
//! (for the old → new diff of the next change), and whether the target entity existed before Provisio
//! matched it (such entities are not deleted unless the admin allows it).
//!
//! A create is recorded as an intent (`creating`) before it is sent: after a crash, an intent without a
//! target id tells the next run to look the entity up in the target before creating it again.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Store, StoreError, now};
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

/// One link as jobs keep it in memory (without the content).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Link {
    /// The target entity's id; `None` while only a create intent is recorded.
    pub target_entity: Option<String>,
    /// Digest of the content last written.
    pub digest: Option<String>,
    /// The target entity existed before Provisio matched it.
    pub existed_before: bool,
    /// A create was sent and its outcome is not recorded (a crash in between).
    pub creating: bool,
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
        digest: String,
        /// What was written.
        content: Value,
        /// Matched rather than created.
        existed_before: bool,
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

impl Store {
    /// Every link of a scope, keyed by source entity id.
    pub fn links(&self, scope: &LinkScope) -> Result<HashMap<String, Link>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT source_entity, target_entity, digest, existed_before, creating FROM links
             WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3",
        )?;
        let rows = stmt.query_map(params![scope.source, scope.target, scope.kind.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Link {
                    target_entity: r.get(1)?,
                    digest: r.get(2)?,
                    existed_before: r.get(3)?,
                    creating: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One link, or `None`.
    pub fn link(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Link>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT target_entity, digest, existed_before, creating FROM links
                 WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
                params![scope.source, scope.target, scope.kind.as_str(), source_entity],
                |r| {
                    Ok(Link {
                        target_entity: r.get(0)?,
                        digest: r.get(1)?,
                        existed_before: r.get(2)?,
                        creating: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// The content last written for a source entity (for the old → new diff).
    pub fn link_content(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.conn();
        let text: Option<Option<String>> = conn
            .query_row(
                "SELECT content FROM links WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
                params![scope.source, scope.target, scope.kind.as_str(), source_entity],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.flatten().and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Applies a batch of changes in one transaction.
    pub fn apply_links(&self, scope: &LinkScope, changes: &[LinkChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let at = now();
        {
            let mut intent = tx.prepare_cached(
                "INSERT INTO links (source_id, target_id, kind, source_entity, creating, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)
                 ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET creating = 1, updated_at = ?5",
            )?;
            let mut written = tx.prepare_cached(
                "INSERT INTO links (source_id, target_id, kind, source_entity, target_entity, digest, content,
                                    existed_before, creating, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)
                 ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET
                     target_entity = ?5, digest = ?6, content = ?7, existed_before = ?8, creating = 0, updated_at = ?9",
            )?;
            let mut stale = tx.prepare_cached(
                "UPDATE links SET digest = NULL, updated_at = ?5
                 WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
            )?;
            let mut removed = tx.prepare_cached(
                "DELETE FROM links WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
            )?;
            let (s, t, k) = (&scope.source, &scope.target, scope.kind.as_str());
            for change in changes {
                match change {
                    LinkChange::Intent { source_entity } => {
                        intent.execute(params![s, t, k, source_entity, at])?;
                    }
                    LinkChange::Written {
                        source_entity,
                        target_entity,
                        digest,
                        content,
                        existed_before,
                    } => {
                        written.execute(params![
                            s,
                            t,
                            k,
                            source_entity,
                            target_entity,
                            digest,
                            content.to_string(),
                            existed_before,
                            at
                        ])?;
                    }
                    LinkChange::Stale { source_entity } => {
                        stale.execute(params![s, t, k, source_entity, at])?;
                    }
                    LinkChange::Removed { source_entity } => {
                        removed.execute(params![s, t, k, source_entity])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets every link of a source (SAP's *Reset system*): afterwards everything in its targets looks
    /// like it existed before.
    pub fn reset_links(&self, source: &str) -> Result<usize, StoreError> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM links WHERE source_id = ?1", params![source])?;
        conn.execute("DELETE FROM source_state WHERE source_id = ?1", params![source])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> (Store, LinkScope) {
        let store = crate::store::test_store();
        let conn = store.conn();
        for id in ["s", "t"] {
            conn.execute(
                "INSERT INTO systems (id, name, connector, role, properties, secrets, sources, created_at, updated_at)
                 VALUES (?1, ?1, 'scim', 'source', '{}', x'', '[]', '', '')",
                params![id],
            )
            .expect("system");
        }
        drop(conn);
        let scope = LinkScope {
            source: "s".into(),
            target: "t".into(),
            kind: EntityKind::User,
        };
        (store, scope)
    }

    #[test]
    fn intents_become_links_and_links_go() {
        let (store, scope) = scope();
        store
            .apply_links(
                &scope,
                &[LinkChange::Intent {
                    source_entity: "a".into(),
                }],
            )
            .expect("intent");
        let links = store.links(&scope).expect("links");
        assert!(links["a"].creating && links["a"].target_entity.is_none());

        let written = LinkChange::Written {
            source_entity: "a".into(),
            target_entity: "T-a".into(),
            digest: "d1".into(),
            content: json!({"userName": "a"}),
            existed_before: true,
        };
        store.apply_links(&scope, &[written]).expect("written");
        let link = store.link(&scope, "a").expect("read").expect("present");
        assert_eq!(link.target_entity.as_deref(), Some("T-a"));
        assert!(link.existed_before && !link.creating);
        assert_eq!(
            store.link_content(&scope, "a").expect("content"),
            Some(json!({"userName": "a"}))
        );

        store
            .apply_links(
                &scope,
                &[LinkChange::Removed {
                    source_entity: "a".into(),
                }],
            )
            .expect("removed");
        assert!(store.links(&scope).expect("links").is_empty());
    }

    #[test]
    fn deleting_a_system_drops_its_links() {
        let (store, scope) = scope();
        store
            .apply_links(
                &scope,
                &[LinkChange::Intent {
                    source_entity: "a".into(),
                }],
            )
            .expect("intent");
        store
            .conn()
            .execute("DELETE FROM systems WHERE id = 't'", [])
            .expect("delete");
        assert!(store.links(&scope).expect("links").is_empty());
    }
}
