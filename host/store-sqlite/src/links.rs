//! Links on SQLite: one row per (source, target, kind, source entity) with the target id, the digest and the
//! content last written, and whether the target entity existed before Provisio matched it.

use std::collections::HashMap;
use std::sync::Arc;

use provisio_core::store::StoreError;
use provisio_core::store::jobs::Claim;
use provisio_core::store::links::{Link, LinkChange, LinkDigest, LinkScope, LinkStore, Links, TargetId};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use crate::{Error, SqliteStore, now};

#[async_trait::async_trait]
impl LinkStore for SqliteStore {
    async fn all(&self, scope: &LinkScope) -> Result<Links, StoreError> {
        let scope = scope.clone();
        self.blocking(move |s| s.links(&scope)).await
    }

    async fn get(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Link>, StoreError> {
        let (scope, entity) = (scope.clone(), source_entity.to_owned());
        self.blocking(move |s| s.link(&scope, &entity)).await
    }

    async fn contents(
        &self,
        scope: &LinkScope,
        source_entities: Vec<String>,
    ) -> Result<HashMap<String, Value>, StoreError> {
        let scope = scope.clone();
        self.blocking(move |s| s.link_contents(&scope, &source_entities)).await
    }

    async fn apply(
        &self,
        scope: &LinkScope,
        changes: Vec<LinkChange>,
        fence: Option<&Claim>,
    ) -> Result<(), StoreError> {
        let (scope, fence) = (scope.clone(), fence.cloned());
        self.blocking(move |s| s.apply_links(&scope, &changes, fence.as_ref()))
            .await
    }

    async fn apply_across(&self, changes: Vec<(LinkScope, LinkChange)>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| {
            let mut conn = s.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let at = now();
            for (scope, change) in &changes {
                write_links(&tx, scope, std::slice::from_ref(change), &at)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn reset(&self, source: &str) -> Result<usize, StoreError> {
        let source = source.to_owned();
        self.blocking(move |s| s.reset_links(&source)).await
    }

    async fn written_since(&self, system: &str, kind: &str, entity: &str, since: &str) -> Result<bool, StoreError> {
        let (system, kind, entity, since) = (system.to_owned(), kind.to_owned(), entity.to_owned(), since.to_owned());
        self.blocking(move |s| s.written_by_provisio_since(&system, &kind, &entity, &since))
            .await
    }

    async fn creating_since(&self, system: &str, kind: &str, since: &str) -> Result<bool, StoreError> {
        let (system, kind, since) = (system.to_owned(), kind.to_owned(), since.to_owned());
        self.blocking(move |s| {
            Ok(s.conn()
                .prepare_cached(
                    "SELECT 1 FROM links WHERE target_id = ?1 AND kind = ?2 AND creating = 1 AND updated_at >= ?3 LIMIT 1",
                )?
                .query_row(params![system, kind, since], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }
}

impl SqliteStore {
    /// Every link of a scope, keyed by source entity id.
    fn links(&self, scope: &LinkScope) -> Result<Links, Error> {
        let conn = self.conn();
        let key = params![scope.source, scope.target, scope.kind.as_str()];
        // Sized up front: a map grown by doubling holds its old and new tables at once (7 + 14 MiB at
        // 100,000 links).
        let count: i64 = conn
            .prepare_cached("SELECT count(*) FROM links WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3")?
            .query_row(key, |r| r.get(0))?;
        // Rows in rowid order: the key index lists a scope's links by entity id, which is random, and a row
        // holds its content (about 1 KB), so reading rows in the index's order fetched a table page per link
        // (0.4 s for 100,000 links through the page cache). The rowids are collected from the index and
        // sorted first; the table is then read front to back, each page once.
        let mut stmt = conn.prepare_cached(
            "SELECT source_entity, target_entity, digest, existed_before, creating, source_digest FROM links
             WHERE rowid IN (SELECT rowid FROM links WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3)",
        )?;
        let mut links = HashMap::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut rows = stmt.query(key)?;
        while let Some(r) = rows.next()? {
            links.insert(r.get::<_, Arc<str>>(0)?, link_at(r, 1)?);
        }
        Ok(links)
    }

    /// One link, or `None`.
    fn link(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Link>, Error> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT target_entity, digest, existed_before, creating, source_digest FROM links
                 WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
            )?
            .query_row(
                params![scope.source, scope.target, scope.kind.as_str(), source_entity],
                |r| link_at(r, 0),
            )
            .optional()?)
    }

    /// The content last written for a source entity (for the old → new diff).
    fn link_contents(&self, scope: &LinkScope, source_entities: &[String]) -> Result<HashMap<String, Value>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT content FROM links WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
        )?;
        let mut contents = HashMap::with_capacity(source_entities.len());
        for entity in source_entities {
            let text: Option<Option<String>> = stmt
                .query_row(params![scope.source, scope.target, scope.kind.as_str(), entity], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(content) = text.flatten().and_then(|t| serde_json::from_str(&t).ok()) {
                contents.insert(entity.clone(), content);
            }
        }
        Ok(contents)
    }

    /// Applies a batch of changes in one transaction.
    fn apply_links(&self, scope: &LinkScope, changes: &[LinkChange], fence: Option<&Claim>) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        // Immediate: the fence reads before it writes, and a deferred transaction that another connection wrote
        // under meanwhile fails at once with "database is locked" instead of waiting for the lock.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(claim) = fence {
            crate::jobs::fence(&tx, claim)?;
        }
        write_links(&tx, scope, changes, &now())?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets every link of a source (SAP's *Reset system*): afterwards everything in its targets looks
    /// like it existed before.
    fn reset_links(&self, source: &str) -> Result<usize, Error> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM links WHERE source_id = ?1", params![source])?;
        conn.execute("DELETE FROM source_state WHERE source_id = ?1", params![source])?;
        Ok(n)
    }

    /// Whether Provisio itself wrote this entity into `system` since `since` (the loop guard: a system that
    /// is a target and also pushes changes must not echo Provisio's own writes back).
    fn written_by_provisio_since(&self, system: &str, kind: &str, entity: &str, since: &str) -> Result<bool, Error> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT 1 FROM links WHERE target_id = ?1 AND kind = ?2 AND target_entity = ?3 AND updated_at >= ?4 LIMIT 1",
            )?
            .query_row(params![system, kind, entity, since], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

/// Applies link changes inside the caller's transaction (a batch of a job, or the outcomes of real-time
/// events committed together).
pub(crate) fn write_links(
    tx: &rusqlite::Connection,
    scope: &LinkScope,
    changes: &[LinkChange],
    at: &str,
) -> Result<(), Error> {
    {
        let mut intent = tx.prepare_cached(
            "INSERT INTO links (source_id, target_id, kind, source_entity, creating, updated_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5)
             ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET creating = 1, updated_at = ?5",
        )?;
        let mut written = tx.prepare_cached(
            "INSERT INTO links (source_id, target_id, kind, source_entity, target_entity, digest, content,
                                existed_before, creating, updated_at, source_digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10)
             ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET
                 target_entity = ?5, digest = ?6, content = ?7, existed_before = ?8, creating = 0, updated_at = ?9,
                 source_digest = ?10",
        )?;
        // Not a write to the target: `updated_at` (the loop guard's clock) stays.
        let mut remembered = tx.prepare_cached(
            "UPDATE links SET source_digest = ?5
             WHERE source_id = ?1 AND target_id = ?2 AND kind = ?3 AND source_entity = ?4",
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
                    source_digest,
                } => {
                    written.execute(params![
                        s,
                        t,
                        k,
                        source_entity,
                        target_entity,
                        digest.to_hex(),
                        content.to_string(),
                        existed_before,
                        at,
                        source_digest.map(|d| d.to_hex())
                    ])?;
                }
                LinkChange::Remembered {
                    source_entity,
                    source_digest,
                } => {
                    remembered.execute(params![s, t, k, source_entity, source_digest.to_hex()])?;
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
    Ok(())
}

/// The link in a row's columns from `first` on: target entity, digest, existed before, creating, memo digest.
fn link_at(r: &Row, first: usize) -> rusqlite::Result<Link> {
    let digest = |i: usize| -> rusqlite::Result<Option<LinkDigest>> {
        Ok(r.get_ref(first + i)?.as_str_or_null()?.and_then(LinkDigest::from_hex))
    };
    Ok(Link {
        target_entity: r.get_ref(first)?.as_str_or_null()?.map(TargetId::from),
        digest: digest(1)?,
        existed_before: r.get(first + 2)?,
        creating: r.get(first + 3)?,
        source_digest: digest(4)?,
    })
}
