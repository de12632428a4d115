//! Writing one entity to one target, decided once: plan ([`TargetContext::plan`]), durable intent
//! ([`intent`]), execute ([`TargetContext::execute`]), then [`settle`]: what the write came to and the link
//! change that records it. Provisioning jobs (a page at a time), provision-one (step by step) and real-time
//! events are its three callers; each says the outcome in its own words (counts and log lines, steps,
//! SAP's real-time states), and each stores the link change or fails the entity — none drops it.
//!
//! [`TargetContext::plan`]: super::target::TargetContext::plan
//! [`TargetContext::execute`]: super::target::TargetContext::execute

use std::sync::Arc;

use serde_json::Value;

use super::target::{DeleteOutcome, Plan, Planned, Written, digest};
use crate::store::links::{Link, LinkChange, LinkDigest, Links};

/// How writing one entity to a target ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The target holds this content already (Read only).
    Unchanged,
    /// The transformation or `skipOperations` skipped it.
    Skipped(String),
    /// The transformation failed.
    Invalid(String),
    /// Created.
    Created {
        /// Its target id.
        target_id: String,
        /// Found by a lookup after an earlier create whose outcome was unknown.
        recovered: bool,
    },
    /// An entity with the same unique attributes existed in the target; it was updated and linked.
    Matched {
        /// Its target id.
        target_id: String,
    },
    /// Updated.
    Updated {
        /// Its target id.
        target_id: String,
    },
    /// The write failed (after the target's retries).
    Failed {
        /// Why.
        reason: String,
        /// Whether a later attempt may succeed (transient failure, throttling).
        retryable: bool,
    },
    /// Not sent: the run was stopped first.
    NotSent,
}

impl Outcome {
    /// The target entity written, when one was.
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Outcome::Created { target_id, .. } | Outcome::Matched { target_id } | Outcome::Updated { target_id } => {
                Some(target_id)
            }
            _ => None,
        }
    }
}

/// What one write came to.
#[derive(Clone, Debug)]
pub struct Settled {
    /// The outcome.
    pub outcome: Outcome,
    /// The link change that records it; `None` leaves the link as it is.
    pub link: Option<LinkChange>,
    /// What the target left out of the written entity, for its log entry.
    pub left_out: Option<String>,
}

/// The intent to record, durably, before the plan is executed: a create whose outcome is lost (a crash, a
/// dead replica) is then looked up in the target by the next attempt instead of being sent twice.
pub fn intent(planned: &Planned) -> Option<LinkChange> {
    matches!(planned.plan, Plan::Create { .. }).then(|| LinkChange::Intent {
        source_entity: planned.source_id.clone(),
    })
}

/// Settles an executed plan: its outcome and the link change to store. `prior` is the link the plan was
/// made from; `written` what [`execute`](super::target::TargetContext::execute) answered (`None`: not
/// executed); `source_digest` the native entity's memo digest (see `provisioning::memo`), kept with the link
/// only when its content is the update form a later run computes; `update_form` computes, for a target id,
/// the content later runs compare with (the update transformation's output), when the planned entity is not
/// already that form.
pub fn settle(
    planned: &Planned,
    prior: Option<&Link>,
    written: Option<Written>,
    source_digest: Option<LinkDigest>,
    update_form: impl FnOnce(&str) -> Option<Value>,
) -> Settled {
    let source_entity = planned.source_id.clone();
    let settled = |outcome, link| Settled {
        outcome,
        link,
        left_out: None,
    };
    let (entity, planned_for) = match &planned.plan {
        Plan::Unchanged => return settled(Outcome::Unchanged, None),
        Plan::Skip(reason) => return settled(Outcome::Skipped(reason.clone()), None),
        Plan::Fail(reason) => return settled(Outcome::Invalid(reason.clone()), None),
        Plan::Create { entity, .. } => (entity, None),
        // An update planned from the link is already in its update form (with its digest); one a caller
        // made from a create (a match found by lookup) carries no digest.
        Plan::Update { entity, target_id, .. } => (entity, planned.digest.as_ref().map(|d| (target_id, d))),
    };
    let linked = prior.is_some_and(|l| l.target_entity.is_some());
    let Some(written) = written else {
        // A create intent recorded for this attempt goes; one left by an earlier attempt stays (that
        // create's outcome is still unknown).
        let link = (matches!(planned.plan, Plan::Create { .. }) && prior.is_none())
            .then_some(LinkChange::Removed { source_entity });
        return settled(Outcome::NotSent, link);
    };
    let left_out = written.left_out_note();
    let (outcome, target_id, existed_before) = match written {
        Written::Failed {
            reason,
            drop_intent,
            retryable,
            ..
        } => {
            let link = (drop_intent && !linked).then_some(LinkChange::Removed { source_entity });
            return settled(Outcome::Failed { reason, retryable }, link);
        }
        Written::Created {
            target_id,
            existed_before: true,
            ..
        } => (
            Outcome::Matched {
                target_id: target_id.clone(),
            },
            target_id,
            true,
        ),
        Written::Created {
            target_id, recovered, ..
        } => (
            Outcome::Created {
                target_id: target_id.clone(),
                recovered,
            },
            target_id,
            false,
        ),
        Written::Updated {
            target_id,
            existed_before,
            ..
        } => (
            Outcome::Updated {
                target_id: target_id.clone(),
            },
            target_id,
            existed_before,
        ),
    };
    let (content, digest, source_digest) = match planned_for {
        Some((planned_id, planned_digest)) if *planned_id == target_id => {
            (entity.clone(), *planned_digest, source_digest)
        }
        _ => match update_form(&target_id) {
            Some(form) => {
                let digest = digest(&form);
                (form, digest, source_digest)
            }
            // Linked with the planned form, which no later run computes: nothing for the memo to vouch for.
            None => (entity.clone(), digest(entity), None),
        },
    };
    Settled {
        outcome,
        link: Some(LinkChange::Written {
            source_entity,
            target_entity: target_id,
            digest,
            content,
            existed_before,
            source_digest,
        }),
        left_out,
    }
}

/// The link change a delete makes: the link goes with the entity; a deactivated entity's link is marked
/// stale, so that its next write is not skipped as unchanged.
pub fn settle_delete(source_entity: &str, outcome: &DeleteOutcome) -> Option<LinkChange> {
    let source_entity = source_entity.to_string();
    match outcome {
        DeleteOutcome::Deleted(_) => Some(LinkChange::Removed { source_entity }),
        DeleteOutcome::Deactivated(_) => Some(LinkChange::Stale { source_entity }),
        DeleteOutcome::Skipped(_) | DeleteOutcome::Failed(_) => None,
    }
}

/// A source entity's link in a run's in-memory links, added empty if it has none. The id the map holds
/// already stays: the run's memo and its ids read share it.
pub fn link_mut<'a>(links: &'a mut Links, source_entity: &str) -> &'a mut Link {
    if !links.contains_key(source_entity) {
        links.insert(Arc::from(source_entity), Link::default());
    }
    links
        .get_mut(source_entity)
        .unwrap_or_else(|| unreachable!("inserted just above"))
}

/// Applies a link change to a run's in-memory copy of the links, as the store applies it.
pub fn apply_in_memory(links: &mut Links, change: &LinkChange) {
    match change {
        LinkChange::Intent { source_entity } => link_mut(links, source_entity).creating = true,
        LinkChange::Written {
            source_entity,
            target_entity,
            digest,
            existed_before,
            source_digest,
            ..
        } => {
            *link_mut(links, source_entity) = Link {
                target_entity: Some(target_entity.as_str().into()),
                digest: Some(*digest),
                existed_before: *existed_before,
                creating: false,
                source_digest: *source_digest,
            };
        }
        LinkChange::Remembered {
            source_entity,
            source_digest,
        } => {
            if let Some(link) = links.get_mut(source_entity.as_str()) {
                link.source_digest = Some(*source_digest);
            }
        }
        LinkChange::Stale { source_entity } => {
            if let Some(link) = links.get_mut(source_entity.as_str()) {
                link.digest = None;
            }
        }
        LinkChange::Removed { source_entity } => {
            links.remove(source_entity.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::store::links::TargetId;

    fn planned(plan: Plan) -> Planned {
        let digest = match &plan {
            Plan::Create { entity, .. } | Plan::Update { entity, .. } => Some(digest(entity)),
            _ => None,
        };
        Planned {
            source_id: "s1".into(),
            plan,
            digest,
        }
    }

    fn create() -> Planned {
        planned(Plan::Create {
            entity: json!({"userName": "ann", "form": "create"}),
            variables: BTreeMap::new(),
            lookup_first: false,
        })
    }

    fn update(target_id: &str) -> Planned {
        planned(Plan::Update {
            target_id: target_id.into(),
            entity: json!({"userName": "ann", "form": "update"}),
            variables: BTreeMap::new(),
            existed_before: false,
        })
    }

    fn linked(target: Option<&str>) -> Link {
        Link {
            target_entity: target.map(TargetId::from),
            digest: None,
            existed_before: false,
            creating: target.is_none(),
            source_digest: None,
        }
    }

    fn update_form(id: &str) -> Option<Value> {
        Some(json!({"userName": "ann", "form": "update", "id": id}))
    }

    fn no_form(_: &str) -> Option<Value> {
        panic!("the planned entity is the update form already")
    }

    #[test]
    fn a_create_is_linked_in_its_update_form() {
        let written = Written::Created {
            target_id: "t1".into(),
            existed_before: false,
            recovered: false,
            left_out: vec!["urn:x".into()],
        };
        let s = settle(&create(), None, Some(written), None, update_form);
        assert_eq!(
            s.outcome,
            Outcome::Created {
                target_id: "t1".into(),
                recovered: false
            }
        );
        assert_eq!(s.left_out.as_deref(), Some("left out by the target: urn:x"));
        let Some(LinkChange::Written {
            content,
            digest: d,
            target_entity,
            existed_before,
            ..
        }) = s.link
        else {
            panic!("{:?}", s.link)
        };
        assert_eq!((target_entity.as_str(), existed_before), ("t1", false));
        assert_eq!(content, json!({"userName": "ann", "form": "update", "id": "t1"}));
        assert_eq!(d, digest(&content));
    }

    #[test]
    fn a_match_and_an_update_keep_what_existed_before() {
        let matched = Written::Created {
            target_id: "t9".into(),
            existed_before: true,
            recovered: false,
            left_out: vec![],
        };
        let s = settle(&create(), None, Some(matched), None, update_form);
        assert_eq!(s.outcome, Outcome::Matched { target_id: "t9".into() });
        assert!(matches!(
            s.link,
            Some(LinkChange::Written {
                existed_before: true,
                ..
            })
        ));

        let plan = update("t1");
        let updated = Written::Updated {
            target_id: "t1".into(),
            existed_before: true,
            left_out: vec![],
        };
        let s = settle(&plan, Some(&linked(Some("t1"))), Some(updated), None, no_form);
        assert_eq!(s.outcome, Outcome::Updated { target_id: "t1".into() });
        let Some(LinkChange::Written {
            content,
            digest: d,
            existed_before: true,
            ..
        }) = s.link
        else {
            panic!("{:?}", s.link)
        };
        assert_eq!(Some(d), plan.digest);
        assert_eq!(content["form"], "update");
    }

    #[test]
    fn an_update_that_recreated_the_entity_is_linked_to_the_new_one() {
        let written = Written::Created {
            target_id: "t2".into(),
            existed_before: false,
            recovered: false,
            left_out: vec![],
        };
        let s = settle(
            &update("t1"),
            Some(&linked(Some("t1"))),
            Some(written),
            None,
            update_form,
        );
        assert_eq!(s.outcome.target_id(), Some("t2"));
        assert!(matches!(s.link, Some(LinkChange::Written { ref content, .. }) if content["id"] == "t2"));
    }

    #[test]
    fn unchanged_skipped_and_invalid_change_no_link() {
        for (plan, outcome) in [
            (Plan::Unchanged, Outcome::Unchanged),
            (
                Plan::Skip("skipOperations".into()),
                Outcome::Skipped("skipOperations".into()),
            ),
            (Plan::Fail("bad mapping".into()), Outcome::Invalid("bad mapping".into())),
        ] {
            let s = settle(&planned(plan), None, None, None, no_form);
            assert_eq!(s.outcome, outcome);
            assert!(s.link.is_none());
        }
    }

    #[test]
    fn the_memo_digest_stays_only_with_content_in_its_update_form() {
        let memo_of = |s: &Settled| match &s.link {
            Some(LinkChange::Written { source_digest, .. }) => *source_digest,
            other => panic!("{other:?}"),
        };
        let created = || Written::Created {
            target_id: "t1".into(),
            existed_before: false,
            recovered: false,
            left_out: vec![],
        };
        let m = || Some(LinkDigest::from([0x31; 32]));
        assert_eq!(
            memo_of(&settle(&create(), None, Some(created()), m(), update_form)),
            m()
        );
        // The update transformation gave nothing: linked with the create form, which no later run computes.
        assert_eq!(memo_of(&settle(&create(), None, Some(created()), m(), |_| None)), None);
        let updated = Written::Updated {
            target_id: "t1".into(),
            existed_before: false,
            left_out: vec![],
        };
        let planned = update("t1");
        let s = settle(&planned, Some(&linked(Some("t1"))), Some(updated), m(), no_form);
        assert_eq!(memo_of(&s), m(), "an update is planned in its update form");
    }

    #[test]
    fn a_failed_create_drops_only_its_own_intent() {
        let failed = |drop_intent| Written::Failed {
            reason: "409".into(),
            drop_intent,
            retryable: false,
            cause: crate::provisioning::target::FailureCause::Entity,
        };
        let s = settle(&create(), None, Some(failed(true)), None, no_form);
        assert!(matches!(s.outcome, Outcome::Failed { retryable: false, .. }));
        assert!(matches!(s.link, Some(LinkChange::Removed { .. })));
        // The outcome of the create is unknown: the intent stays.
        assert!(
            settle(&create(), None, Some(failed(false)), None, no_form)
                .link
                .is_none()
        );
        // A linked entity keeps its link whatever an update's failure says.
        assert!(
            settle(
                &update("t1"),
                Some(&linked(Some("t1"))),
                Some(failed(true)),
                None,
                no_form
            )
            .link
            .is_none()
        );
    }

    #[test]
    fn a_create_not_sent_drops_its_intent_but_not_an_earlier_one() {
        let s = settle(&create(), None, None, None, no_form);
        assert_eq!(s.outcome, Outcome::NotSent);
        assert!(matches!(s.link, Some(LinkChange::Removed { .. })));
        assert!(
            settle(&create(), Some(&linked(None)), None, None, no_form)
                .link
                .is_none()
        );
        assert!(
            settle(&update("t1"), Some(&linked(Some("t1"))), None, None, no_form)
                .link
                .is_none()
        );
    }

    #[test]
    fn deletes_remove_or_mark_the_link_stale_and_held_ones_keep_it() {
        assert!(matches!(
            settle_delete("s1", &DeleteOutcome::Deleted(vec![])),
            Some(LinkChange::Removed { .. })
        ));
        assert!(matches!(
            settle_delete("s1", &DeleteOutcome::Deactivated(vec![])),
            Some(LinkChange::Stale { .. })
        ));
        assert!(settle_delete("s1", &DeleteOutcome::Skipped("held".into())).is_none());
        assert!(settle_delete("s1", &DeleteOutcome::Failed("500".into())).is_none());
    }

    #[test]
    fn in_memory_links_follow_the_changes() {
        let mut links = Links::new();
        apply_in_memory(
            &mut links,
            &LinkChange::Intent {
                source_entity: "s1".into(),
            },
        );
        assert!(links["s1"].creating);
        let key = |links: &Links| links.keys().next().cloned().expect("a key");
        let id = key(&links);
        let change = settle(
            &create(),
            links.get("s1"),
            Some(Written::Created {
                target_id: "t1".into(),
                existed_before: false,
                recovered: true,
                left_out: vec![],
            }),
            None,
            update_form,
        )
        .link
        .expect("a link");
        apply_in_memory(&mut links, &change);
        assert_eq!(links["s1"].target_entity, Some("t1".into()));
        assert!(!links["s1"].creating && links["s1"].digest.is_some());
        assert!(
            Arc::ptr_eq(&id, &key(&links)),
            "the map keeps the id it holds (the run's memo and ids read share it)"
        );
        apply_in_memory(
            &mut links,
            &LinkChange::Stale {
                source_entity: "s1".into(),
            },
        );
        assert!(links["s1"].digest.is_none());
        apply_in_memory(
            &mut links,
            &LinkChange::Removed {
                source_entity: "s1".into(),
            },
        );
        assert!(links.is_empty());
    }
}
