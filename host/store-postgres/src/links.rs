//! Links on PostgreSQL: the same rows as on SQLite. A batch of changes is applied in one transaction, each
//! run of changes of one kind as one statement over arrays (a page of a job is a few statements, not one
//! round trip per entity).

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt as _;
use provisio_core::store::StoreError;
use provisio_core::store::jobs::Claim;
use provisio_core::store::links::{Link, LinkChange, LinkDigest, LinkScope, LinkStore, Links, TargetId};
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};

use crate::{Error, PostgresStore, now};

#[async_trait::async_trait]
impl LinkStore for PostgresStore {
    async fn all(&self, scope: &LinkScope) -> Result<Links, StoreError> {
        // Sized up front (a map grown by doubling holds its old and new tables at once), then filled row by
        // row as they arrive: all the rows of 100,000 links held at once came to more than the map itself.
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM links WHERE source_id = $1 AND target_id = $2 AND kind = $3")
                .bind(&scope.source)
                .bind(&scope.target)
                .bind(scope.kind.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from)?;
        let mut links = HashMap::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut rows = sqlx::query(
            "SELECT source_entity, target_entity, digest, existed_before, creating, source_digest FROM links
             WHERE source_id = $1 AND target_id = $2 AND kind = $3",
        )
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(scope.kind.as_str())
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await.map_err(Error::from)? {
            links.insert(
                Arc::from(r.try_get::<&str, _>(0).map_err(Error::from)?),
                link_at(&r, 1)?,
            );
        }
        Ok(links)
    }

    async fn get(&self, scope: &LinkScope, source_entity: &str) -> Result<Option<Link>, StoreError> {
        let row = sqlx::query(
            "SELECT target_entity, digest, existed_before, creating, source_digest FROM links
             WHERE source_id = $1 AND target_id = $2 AND kind = $3 AND source_entity = $4",
        )
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(scope.kind.as_str())
        .bind(source_entity)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.map(|r| link_at(&r, 0)).transpose()?)
    }

    async fn contents(
        &self,
        scope: &LinkScope,
        source_entities: Vec<String>,
    ) -> Result<HashMap<String, Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT source_entity, content FROM links
             WHERE source_id = $1 AND target_id = $2 AND kind = $3 AND source_entity = ANY($4) AND content IS NOT NULL",
        )
        .bind(&scope.source)
        .bind(&scope.target)
        .bind(scope.kind.as_str())
        .bind(&source_entities)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let mut contents = HashMap::with_capacity(rows.len());
        for r in rows {
            let text: String = r.try_get(1).map_err(Error::from)?;
            if let Ok(content) = serde_json::from_str(&text) {
                contents.insert(r.try_get(0).map_err(Error::from)?, content);
            }
        }
        Ok(contents)
    }

    async fn apply(
        &self,
        scope: &LinkScope,
        changes: Vec<LinkChange>,
        fence: Option<&Claim>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some(claim) = fence {
            crate::jobs::fence(&mut tx, claim).await?;
        }
        apply_changes(&mut tx, scope, &changes, &now()).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn apply_across(&self, changes: Vec<(LinkScope, LinkChange)>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let at = now();
        // Consecutive changes of one scope go together (one statement per run of a kind of change).
        let mut rest = changes.as_slice();
        while let Some((scope, _)) = rest.first() {
            let len = rest.iter().position(|(s, _)| s != scope).unwrap_or(rest.len());
            let (same, next) = rest.split_at(len);
            let run: Vec<LinkChange> = same.iter().map(|(_, c)| c.clone()).collect();
            apply_changes(&mut tx, scope, &run, &at).await?;
            rest = next;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn reset(&self, source: &str) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let n = sqlx::query("DELETE FROM links WHERE source_id = $1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?
            .rows_affected();
        sqlx::query("DELETE FROM source_state WHERE source_id = $1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(n as usize)
    }

    async fn written_since(&self, system: &str, kind: &str, entity: &str, since: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM links WHERE target_id = $1 AND kind = $2 AND target_entity = $3 AND updated_at >= $4 LIMIT 1",
        )
        .bind(system)
        .bind(kind)
        .bind(entity)
        .bind(since)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.is_some())
    }

    async fn creating_since(&self, system: &str, kind: &str, since: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM links WHERE target_id = $1 AND kind = $2 AND creating AND updated_at >= $3 LIMIT 1",
        )
        .bind(system)
        .bind(kind)
        .bind(since)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(row.is_some())
    }
}

/// The last change per source entity of a run, in first-seen order (one statement cannot change a row twice).
fn last_per_entity(run: &[LinkChange]) -> Vec<&LinkChange> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<&LinkChange> = Vec::with_capacity(run.len());
    for change in run {
        let entity = match change {
            LinkChange::Intent { source_entity }
            | LinkChange::Written { source_entity, .. }
            | LinkChange::Remembered { source_entity, .. }
            | LinkChange::Stale { source_entity }
            | LinkChange::Removed { source_entity } => source_entity.as_str(),
        };
        match index.get(entity) {
            Some(&i) => out[i] = change,
            None => {
                index.insert(entity, out.len());
                out.push(change);
            }
        }
    }
    out
}

/// Applies a scope's changes in order inside the caller's transaction, a run of one kind of change at a time.
async fn apply_changes(
    tx: &mut Transaction<'_, Postgres>,
    scope: &LinkScope,
    changes: &[LinkChange],
    at: &str,
) -> Result<(), Error> {
    let mut rest = changes;
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .position(|c| std::mem::discriminant(c) != std::mem::discriminant(first))
            .unwrap_or(rest.len());
        let (run, next) = rest.split_at(len);
        apply_run(tx, scope, run, at).await?;
        rest = next;
    }
    Ok(())
}

/// Applies changes that are all of one kind.
pub(crate) async fn apply_run(
    tx: &mut Transaction<'_, Postgres>,
    scope: &LinkScope,
    run: &[LinkChange],
    at: &str,
) -> Result<(), Error> {
    let run = last_per_entity(run);
    let (s, t, k) = (&scope.source, &scope.target, scope.kind.as_str());
    match run.first() {
        None => {}
        Some(LinkChange::Intent { .. }) => {
            let entities: Vec<&str> = run.iter().filter_map(|c| entity_of(c)).collect();
            sqlx::query(
                "INSERT INTO links (source_id, target_id, kind, source_entity, creating, updated_at)
                 SELECT $1, $2, $3, e, TRUE, $5 FROM UNNEST($4::text[]) AS e
                 ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET creating = TRUE, updated_at = $5",
            )
            .bind(s)
            .bind(t)
            .bind(k)
            .bind(&entities)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Some(LinkChange::Written { .. }) => {
            let (mut entities, mut targets, mut digests, mut contents, mut existed, mut memos) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for change in &run {
                if let LinkChange::Written {
                    source_entity,
                    target_entity,
                    digest,
                    content,
                    existed_before,
                    source_digest,
                } = change
                {
                    entities.push(source_entity.as_str());
                    targets.push(target_entity.as_str());
                    digests.push(digest.to_hex());
                    contents.push(content.to_string());
                    existed.push(*existed_before);
                    memos.push(source_digest.map(|d| d.to_hex()));
                }
            }
            sqlx::query(
                "INSERT INTO links (source_id, target_id, kind, source_entity, target_entity, digest, content,
                                    existed_before, creating, updated_at, source_digest)
                 SELECT $1, $2, $3, w.se, w.te, w.d, w.c, w.eb, FALSE, $9, w.sd
                 FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], $10::text[])
                     AS w(se, te, d, c, eb, sd)
                 ON CONFLICT (source_id, target_id, kind, source_entity) DO UPDATE SET
                     target_entity = EXCLUDED.target_entity, digest = EXCLUDED.digest, content = EXCLUDED.content,
                     existed_before = EXCLUDED.existed_before, creating = FALSE, updated_at = $9,
                     source_digest = EXCLUDED.source_digest",
            )
            .bind(s)
            .bind(t)
            .bind(k)
            .bind(&entities)
            .bind(&targets)
            .bind(&digests)
            .bind(&contents)
            .bind(&existed)
            .bind(at)
            .bind(&memos)
            .execute(&mut **tx)
            .await?;
        }
        Some(LinkChange::Remembered { .. }) => {
            let (mut entities, mut memos) = (Vec::new(), Vec::new());
            for change in &run {
                if let LinkChange::Remembered {
                    source_entity,
                    source_digest,
                } = change
                {
                    entities.push(source_entity.as_str());
                    memos.push(source_digest.to_hex());
                }
            }
            // Not a write to the target: `updated_at` (the loop guard's clock) stays.
            sqlx::query(
                "UPDATE links SET source_digest = r.sd
                 FROM UNNEST($4::text[], $5::text[]) AS r(se, sd)
                 WHERE source_id = $1 AND target_id = $2 AND kind = $3 AND source_entity = r.se",
            )
            .bind(s)
            .bind(t)
            .bind(k)
            .bind(&entities)
            .bind(&memos)
            .execute(&mut **tx)
            .await?;
        }
        Some(LinkChange::Stale { .. }) => {
            let entities: Vec<&str> = run.iter().filter_map(|c| entity_of(c)).collect();
            sqlx::query(
                "UPDATE links SET digest = NULL, updated_at = $5
                 WHERE source_id = $1 AND target_id = $2 AND kind = $3 AND source_entity = ANY($4)",
            )
            .bind(s)
            .bind(t)
            .bind(k)
            .bind(&entities)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Some(LinkChange::Removed { .. }) => {
            let entities: Vec<&str> = run.iter().filter_map(|c| entity_of(c)).collect();
            sqlx::query(
                "DELETE FROM links WHERE source_id = $1 AND target_id = $2 AND kind = $3 AND source_entity = ANY($4)",
            )
            .bind(s)
            .bind(t)
            .bind(k)
            .bind(&entities)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

fn entity_of(change: &LinkChange) -> Option<&str> {
    match change {
        LinkChange::Intent { source_entity }
        | LinkChange::Stale { source_entity }
        | LinkChange::Removed { source_entity } => Some(source_entity),
        LinkChange::Written { .. } | LinkChange::Remembered { .. } => None,
    }
}

/// The link in a row's columns from `first` on: target entity, digest, existed before, creating, memo digest.
fn link_at(r: &sqlx::postgres::PgRow, first: usize) -> Result<Link, Error> {
    let digest = |i: usize| -> Result<Option<LinkDigest>, Error> {
        Ok(r.try_get::<Option<&str>, _>(first + i)?.and_then(LinkDigest::from_hex))
    };
    Ok(Link {
        target_entity: r.try_get::<Option<&str>, _>(first)?.map(TargetId::from),
        digest: digest(1)?,
        existed_before: r.try_get(first + 2)?,
        creating: r.try_get(first + 3)?,
        source_digest: digest(4)?,
    })
}
