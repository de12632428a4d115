//! What every store backend must do, as async checks over [`Stores`]: each backend's tests call every
//! function here with a fresh, empty store of its own (`provisio-store-sqlite` does, in memory). The checks
//! go through the aggregate interfaces only, so that two backends that pass them behave alike for the
//! engine. They panic on the first difference.

use serde_json::json;

use std::time::Duration;

use super::audit::{AuditEntry, AuditFilter, FieldChange};
use super::jobs::{
    Claim, DeltaState, EntityLogEntry, HeldDelete, HeldKey, JobRecord, JobStatus, LEASE, RejectedDelete, ScheduleRecord,
};
use super::links::{Link, LinkChange, LinkDigest, LinkScope};
use super::plugins::PluginRecord;
use super::principals::{Permission, PrincipalKind};
use super::realtime::{Finished, NewEvent, PushedEntity};
use super::systems::{ConnectionTest, Role, SystemSpec, VersionNote};
use super::{StoreError, Stores};
use crate::connector::EntityKind;
use crate::secrets::SystemSecrets;

/// A distinct digest per tag.
fn tag(tag: u8) -> LinkDigest {
    LinkDigest::from([tag; 32])
}

/// Every check, one after another, each on a store from `fresh`.
pub async fn all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Stores>,
{
    systems(fresh().await).await;
    transformation_history(fresh().await).await;
    principals(fresh().await).await;
    plugins(fresh().await).await;
    jobs(fresh().await).await;
    claims(fresh().await).await;
    job_logs_and_held_deletes(fresh().await).await;
    links(fresh().await).await;
    links_across(fresh().await).await;
    events(fresh().await).await;
    event_claims(fresh().await).await;
    event_claimers(fresh().await).await;
    event_batches(fresh().await).await;
    tokens(fresh().await).await;
    password_change(fresh().await).await;
    limits(fresh().await).await;
    logins(fresh().await).await;
    passwords(fresh().await).await;
    health(fresh().await).await;
    parked_events(fresh().await).await;
    audit(fresh().await).await;
    retention(fresh().await).await;
    notifications(fresh().await).await;
    notification_deliveries(fresh().await).await;
    delivery_retention(fresh().await).await;
}

fn spec(name: &str, role: Role, sources: Vec<String>) -> SystemSpec {
    SystemSpec {
        name: name.into(),
        connector: "scim".into(),
        connector_version: None,
        role,
        properties: [("URL".to_string(), format!("http://{name}.example"))].into(),
        secrets: SystemSecrets::entered([("Password".to_string(), format!("{name}-s3cret"))]),
        sources,
        transformation: Some(json!({"user": {"mappings": []}})),
    }
}

/// A source and a target that receives from it; their ids.
async fn pair(stores: &Stores) -> (String, String) {
    let source = stores
        .systems
        .create(spec("Source", Role::Source, vec![]))
        .await
        .expect("source");
    let target = stores
        .systems
        .create(spec("Target", Role::Target, vec![source.id.clone()]))
        .await
        .expect("target");
    (source.id, target.id)
}

/// Systems: sealed secrets, unique names, transformation versions, the generation, sources, deletion.
pub async fn systems(stores: Stores) {
    let systems = &stores.systems;
    let generation = systems.generation();
    let source = systems
        .create(spec("Source", Role::Source, vec![]))
        .await
        .expect("create");
    assert!(systems.generation() > generation, "a create moves the generation");
    assert!(!format!("{source:?}").contains("Source-s3cret"), "read back sealed");
    let opened = stores.open_secrets(&source.spec.secrets).expect("open");
    assert_eq!(opened["Password"].expose(), "Source-s3cret");
    assert_eq!(source.transformation_version, Some(1));
    assert!(matches!(
        systems.create(spec("SOURCE", Role::Source, vec![])).await,
        Err(StoreError::Conflict(_))
    ));
    let target = systems
        .create(spec("Target", Role::Target, vec![source.id.clone()]))
        .await
        .expect("target");
    let targets = systems.targets_of(&source.id).await.expect("targets");
    assert_eq!(
        targets.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [target.id.as_str()]
    );

    // A replace that keeps the sealed secrets keeps their values; a new transformation is a new version.
    let mut changed = source.spec.clone();
    changed.transformation = Some(json!({"user": {"mappings": [{"constant": 1, "targetPath": "$.x"}]}}));
    changed.properties.insert("ips.trace".into(), "true".into());
    let generation = systems.generation();
    let replaced = systems.replace(&source.id, changed).await.expect("replace");
    assert!(systems.generation() > generation, "a replace moves the generation");
    assert_eq!(replaced.transformation_version, Some(2));
    assert_eq!(replaced.spec.properties["ips.trace"], "true");
    let opened = stores.open_secrets(&replaced.spec.secrets).expect("open");
    assert_eq!(opened["Password"].expose(), "Source-s3cret");
    let unchanged = systems.replace(&source.id, replaced.spec.clone()).await.expect("same");
    assert_eq!(
        unchanged.transformation_version,
        Some(2),
        "the same document is no new version"
    );
    let mut renamed = replaced.spec.clone();
    renamed.name = "target".into();
    assert!(matches!(
        systems.replace(&source.id, renamed).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        systems.replace("no-such-id", replaced.spec.clone()).await,
        Err(StoreError::NotFound(_))
    ));

    let listed = systems.list().await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.spec.name.as_str()).collect::<Vec<_>>(),
        ["Source", "Target"]
    );
    let got = systems.get(&target.id).await.expect("get").expect("present");
    assert_eq!(
        (got.spec.role, got.spec.sources.clone()),
        (Role::Target, vec![source.id.clone()])
    );

    // Enabled when created; disabled and enabled again, each a change the generation shows.
    assert!(source.enabled && target.enabled);
    let generation = systems.generation();
    let disabled = systems.set_enabled(&target.id, false).await.expect("disable");
    assert!(!disabled.enabled);
    assert!(systems.generation() > generation, "disabling moves the generation");
    assert!(!systems.get(&target.id).await.expect("get").expect("target").enabled);
    let replaced = systems
        .replace(&target.id, disabled.spec.clone())
        .await
        .expect("replace");
    assert!(!replaced.enabled, "a replace keeps the system disabled");
    assert!(systems.set_enabled(&target.id, true).await.expect("enable").enabled);
    assert!(matches!(
        systems.set_enabled("no-such-id", true).await,
        Err(StoreError::NotFound(_))
    ));

    // A source that a target receives from is not deleted, nor anything of it.
    match systems.delete(&source.id).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("Target"), "names the target: {m}"),
        other => panic!("deleting a source in use: {other:?}"),
    }
    assert!(
        systems.get(&source.id).await.expect("get").is_some(),
        "nothing half-deleted"
    );

    systems.delete(&target.id).await.expect("delete");
    assert!(systems.get(&target.id).await.expect("get").is_none());
    assert!(matches!(systems.delete(&target.id).await, Err(StoreError::NotFound(_))));
    // A target naming a source that is gone is refused in the store's transaction too.
    let mut orphan = spec("Orphan", Role::Target, vec!["no-such-source".into()]);
    assert!(matches!(
        systems.create(orphan.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    orphan.sources = vec![];
    systems
        .delete(&systems.create(orphan).await.expect("orphan").id)
        .await
        .expect("delete");

    // A source with a run under way is not deleted; once the run has ended it is, with its runs.
    stores
        .jobs
        .insert(&job("j-del", &source.id, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    match systems.delete(&source.id).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("j-del"), "names the run: {m}"),
        other => panic!("deleting a source with a run: {other:?}"),
    }
    stores
        .jobs
        .update(&claim("j-del"), JobStatus::Success, "full", &json!({}))
        .await
        .expect("end");
    systems.delete(&source.id).await.expect("delete the source");
    assert!(
        stores.jobs.get("j-del").await.expect("get").is_none(),
        "its runs go with it"
    );
}

/// Transformation history: every version with its author and description, newest first; a reset to the
/// connector's default is a version without a document; one version by number.
pub async fn transformation_history(stores: Stores) {
    let systems = &stores.systems;
    let note = |author: &str, description: Option<&str>| VersionNote {
        author: author.into(),
        description: description.map(str::to_string),
    };
    let created = systems
        .create_noted(spec("Source", Role::Source, vec![]), &note("admin", Some("first")))
        .await
        .expect("create");
    let mut changed = created.spec.clone();
    changed.transformation = Some(json!({"user": {"mappings": [{"constant": 1, "targetPath": "$.x"}]}}));
    let second = systems
        .replace_noted(&created.id, changed.clone(), &note("alice", None))
        .await
        .expect("replace");
    assert_eq!(second.transformation_version, Some(2));
    let mut reset = changed.clone();
    reset.transformation = None;
    let after_reset = systems
        .replace_noted(&created.id, reset, &note("bob", Some("back to the default")))
        .await
        .expect("reset");
    assert_eq!(
        after_reset.spec.transformation, None,
        "a reset leaves no document in force"
    );
    assert_eq!(after_reset.transformation_version, None);
    let versions = systems.transformation_versions(&created.id).await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.author.as_str(), v.description.as_deref(), v.reset))
            .collect::<Vec<_>>(),
        [
            ("bob", Some("back to the default"), true),
            ("alice", None, false),
            ("admin", Some("first"), false)
        ]
    );
    assert_eq!(versions[0].document, None);
    assert_eq!(versions[1].document, changed.transformation);
    assert!(!versions[2].created_at.is_empty());
    let one = systems
        .transformation_version(&created.id, 2)
        .await
        .expect("one")
        .expect("present");
    assert_eq!(one, versions[1]);
    assert!(
        systems
            .transformation_version(&created.id, 9)
            .await
            .expect("none")
            .is_none()
    );
    // After a reset, a saved document is a new version again.
    let again = systems
        .replace_noted(&created.id, changed, &note("carol", None))
        .await
        .expect("again");
    assert_eq!(again.transformation_version, Some(4));
    assert!(
        systems
            .transformation_versions("no-such-id")
            .await
            .expect("empty")
            .is_empty()
    );
    systems.delete(&created.id).await.expect("delete");
    assert!(
        systems
            .transformation_versions(&created.id)
            .await
            .expect("gone")
            .is_empty()
    );
}

/// Principals: unique names whatever their case, password checks, the cache forgets deleted principals.
pub async fn principals(stores: Stores) {
    let principals = &stores.principals;
    assert!(!principals.has_admin().await.expect("has admin"));
    principals
        .create("admin", "pw-1", PrincipalKind::Admin, &[])
        .await
        .expect("admin");
    assert!(principals.has_admin().await.expect("has admin"));
    let pusher = principals
        .create(
            "ias-push",
            "pw-2",
            PrincipalKind::Technical,
            &[Permission::RealtimeApi, Permission::RealtimeApi],
        )
        .await
        .expect("technical");
    assert_eq!(pusher.permissions, [Permission::RealtimeApi], "deduplicated");
    assert!(matches!(
        principals.create("IAS-PUSH", "x", PrincipalKind::Technical, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let verified = principals
        .verify("ias-push", "pw-2")
        .await
        .expect("verify")
        .expect("valid");
    assert_eq!(verified.id, pusher.id);
    assert!(verified.may(Permission::RealtimeApi) && !verified.may(Permission::ManageSystems));
    assert_eq!(
        principals.recently_verified("ias-push", "pw-2").map(|p| p.id),
        Some(pusher.id.clone())
    );
    assert!(principals.verify("ias-push", "wrong").await.expect("verify").is_none());
    assert!(principals.verify("nobody", "pw-2").await.expect("verify").is_none());
    let admin = principals
        .verify("admin", "pw-1")
        .await
        .expect("verify")
        .expect("admin");
    assert!(Permission::ALL.iter().all(|p| admin.may(*p)));
    let found = principals.by_name("IAS-Push").await.expect("by name").expect("found");
    assert_eq!(
        (found.id.as_str(), found.name.as_str()),
        (pusher.id.as_str(), "ias-push")
    );
    assert!(principals.by_name("nobody").await.expect("by name").is_none());
    assert_eq!(principals.list().await.expect("list").len(), 2);
    // Another replica remembers the login; a deletion here ends it there within a recheck.
    let other = principals.beside();
    assert!(other.verify("ias-push", "pw-2").await.expect("verify").is_some());
    assert!(other.recently_verified("ias-push", "pw-2").is_some());
    principals.delete(&pusher.id).await.expect("delete");
    assert!(principals.recently_verified("ias-push", "pw-2").is_none());
    assert!(principals.verify("ias-push", "pw-2").await.expect("verify").is_none());
    assert!(matches!(
        principals.delete(&pusher.id).await,
        Err(StoreError::NotFound(_))
    ));
    tokio::time::sleep(super::principals::RECHECK_AFTER).await;
    assert!(
        other.recently_verified("ias-push", "pw-2").is_none(),
        "due for a recheck"
    );
    assert!(
        other.verify("ias-push", "pw-2").await.expect("verify").is_none(),
        "deleted on another replica"
    );
}

/// The plugin registry: the same component again is nothing, another with the same version a conflict
/// (unless bundled, which replaces it).
pub async fn plugins(stores: Stores) {
    let plugins = &stores.plugins;
    let record = |digest: &str, version: &str, bundled: bool| PluginRecord {
        digest: digest.into(),
        name: "scim".into(),
        version: version.into(),
        contract: "0.2.0".into(),
        size: 1000,
        bundled,
        added_at: String::new(),
    };
    plugins.record(&record("d1", "1.0.0", false)).await.expect("record");
    plugins.record(&record("d1", "1.0.0", false)).await.expect("again");
    assert!(matches!(
        plugins.record(&record("d2", "1.0.0", false)).await,
        Err(StoreError::Conflict(_))
    ));
    plugins.record(&record("d3", "2.0.0", true)).await.expect("bundled");
    plugins
        .record(&record("d4", "2.0.0", true))
        .await
        .expect("rebuilt bundled");
    let listed = plugins.list().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.digest.as_str(), p.version.as_str()))
            .collect::<Vec<_>>(),
        [("d1", "1.0.0"), ("d4", "2.0.0")]
    );
    assert!(!listed[0].added_at.is_empty(), "the store stamps when it was added");
    plugins.delete("scim", "1.0.0").await.expect("delete");
    assert_eq!(plugins.list().await.expect("list").len(), 1);

    // Component bytes by digest, and the selection.
    assert_eq!(plugins.component("d1").await.expect("component"), None);
    plugins.put_component("d1", &[0, 97, 115, 109, 255]).await.expect("put");
    plugins
        .put_component("d1", &[0, 97, 115, 109, 255])
        .await
        .expect("again");
    assert_eq!(
        plugins.component("d1").await.expect("component"),
        Some(vec![0, 97, 115, 109, 255])
    );
    assert!(plugins.selection().await.expect("selection").is_empty());
    let selected: std::collections::BTreeMap<String, String> = [
        ("scim".to_string(), "1.0.0".to_string()),
        ("jam".to_string(), "2.0.0".to_string()),
    ]
    .into();
    plugins.set_selection(&selected).await.expect("select");
    assert_eq!(plugins.selection().await.expect("selection"), selected);
    plugins.set_selection(&Default::default()).await.expect("clear");
    assert!(plugins.selection().await.expect("selection").is_empty());
}

fn job(id: &str, source: &str, status: JobStatus) -> JobRecord {
    JobRecord {
        id: id.into(),
        source_id: source.into(),
        job_type: "read".into(),
        read_mode: "full".into(),
        trigger: "manual".into(),
        started_by: "admin".into(),
        status,
        summary: json!({"statistics": []}),
        started_at: super::now(),
        ended_at: None,
        node: Some("node-a".into()),
        attempt: 1,
    }
}

fn claim(job: &str) -> Claim {
    Claim {
        job: job.into(),
        node: "node-a".into(),
        attempt: 1,
    }
}

/// Runs: status changes, the end of a final status, interrupted runs, listing, pruning, delta state and
/// schedules.
pub async fn jobs(stores: Stores) {
    let (source, _) = pair(&stores).await;
    let jobs = &stores.jobs;
    jobs.insert(&job("j1", &source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    jobs.insert(&job("j2", &source, JobStatus::Queued), LEASE)
        .await
        .expect("insert");
    // One running run per source, whichever replica holds it: j2 waits for j1.
    assert!(jobs.busy(&source).await.expect("busy"));
    assert!(!jobs.start(&claim("j2")).await.expect("start"), "j1 holds the source");
    assert_eq!(
        jobs.get("j2").await.expect("get").expect("j2").status,
        JobStatus::Queued
    );
    assert!(
        jobs.start(&claim("j1")).await.expect("start"),
        "a running run starts again"
    );
    jobs.update(&claim("j1"), JobStatus::Success, "delta", &json!({"statistics": [1]}))
        .await
        .expect("update");
    assert!(!jobs.busy(&source).await.expect("busy"));
    assert!(jobs.start(&claim("j2")).await.expect("start"), "the source is free");
    assert_eq!(
        jobs.get("j2").await.expect("get").expect("j2").status,
        JobStatus::Running
    );
    assert!(jobs.busy(&source).await.expect("busy"));
    let j1 = jobs.get("j1").await.expect("get").expect("j1");
    assert_eq!((j1.status, j1.read_mode.as_str()), (JobStatus::Success, "delta"));
    assert_eq!(j1.summary, json!({"statistics": [1]}));
    assert!(j1.ended_at.is_some(), "a final status ends the run");
    assert_eq!((j1.node.as_deref(), j1.attempt), (Some("node-a"), 1));
    assert!(jobs.get("nothing").await.expect("get").is_none());

    assert_eq!(jobs.interrupt_unfinished().await.expect("interrupt"), ["j2"]);
    let j2 = jobs.get("j2").await.expect("get").expect("j2");
    assert_eq!(j2.status, JobStatus::FinishedWithError);
    assert_eq!(j2.summary["interrupted"], json!(true));
    assert!(j2.ended_at.is_some());
    assert!(jobs.interrupt_unfinished().await.expect("again").is_empty());

    let listed = jobs.list(Some(&source), 10).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(jobs.list(Some("other"), 10).await.expect("list").len(), 0);
    assert_eq!(jobs.list(None, 1).await.expect("list").len(), 1);
    let retention = &stores.retention;
    assert_eq!(
        retention
            .prune_job_logs("2000-01-01T00:00:00.000Z", 100)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        retention
            .prune_job_logs("9999-01-01T00:00:00.000Z", 100)
            .await
            .expect("prune"),
        2
    );
    assert!(jobs.get("j1").await.expect("get").is_none());

    assert_eq!(jobs.delta_state(&source).await.expect("delta"), DeltaState::default());
    let delta = DeltaState {
        user_watermark: Some("2025-01-01T00:00:00Z".into()),
        group_watermark: None,
        scheduled_deltas: 3,
    };
    jobs.set_delta_state(&source, &delta, None).await.expect("set delta");
    assert_eq!(jobs.delta_state(&source).await.expect("delta"), delta);

    let schedule = ScheduleRecord {
        source_id: source.clone(),
        job_type: "read".into(),
        every_seconds: Some(3600),
        cron: None,
        enabled: true,
    };
    jobs.set_schedule(&schedule).await.expect("schedule");
    let mut changed = schedule.clone();
    changed.every_seconds = Some(60);
    jobs.set_schedule(&changed).await.expect("replace schedule");
    assert_eq!(jobs.schedules().await.expect("schedules"), [changed]);
    // A slot fires once: the first claim wins, a second claim of the same period loses, the next period wins.
    let claim = |slot: &'static str, since: &'static str| jobs.claim_schedule_slot(&source, slot, since);
    assert!(
        claim("2030-01-01T00:01:00.000Z", "2030-01-01T00:00:30.000Z")
            .await
            .expect("claim")
    );
    assert!(
        !claim("2030-01-01T00:01:00.000Z", "2030-01-01T00:01:00.000Z")
            .await
            .expect("the same slot")
    );
    assert!(
        !claim("2030-01-01T00:01:20.000Z", "2030-01-01T00:00:50.000Z")
            .await
            .expect("the same period")
    );
    assert!(
        claim("2030-01-01T00:02:00.000Z", "2030-01-01T00:01:30.000Z")
            .await
            .expect("the next period")
    );
    assert!(
        !claim("2030-01-01T00:02:00.000Z", "2030-01-01T00:02:00.000Z")
            .await
            .expect("once")
    );
    assert!(
        !jobs
            .claim_schedule_slot("no-such-source", "2030-01-01T00:03:00.000Z", "2030-01-01T00:02:30.000Z")
            .await
            .expect("none")
    );
    assert!(jobs.delete_schedule(&source).await.expect("delete"));
    assert!(!jobs.delete_schedule(&source).await.expect("delete again"));
    assert!(jobs.schedules().await.expect("schedules").is_empty());
}

/// Claims: renewed by their node, taken over by another once expired (never by two), and the old holder's
/// writes fenced from then on — the run's status, its log, its links, held deletes and delta state.
pub async fn claims(stores: Stores) {
    let (source, target) = pair(&stores).await;
    // Each run of its own source: one running run per source.
    let other = |name: &'static str| {
        let systems = stores.systems.clone();
        async move {
            systems
                .create(spec(name, Role::Source, vec![]))
                .await
                .expect("source")
                .id
        }
    };
    let (live_source, done_source) = (other("Live").await, other("Done").await);
    let jobs = &stores.jobs;
    jobs.insert(&job("live", &live_source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    // A lease of zero has expired at once: as if its replica died.
    jobs.insert(&job("dead", &source, JobStatus::Running), Duration::ZERO)
        .await
        .expect("insert");
    jobs.insert(&job("done", &done_source, JobStatus::Running), Duration::ZERO)
        .await
        .expect("insert");
    jobs.update(&claim("done"), JobStatus::Success, "full", &json!({}))
        .await
        .expect("finish");
    assert_eq!(
        jobs.renew("node-a", &["live".into(), "done".into()], LEASE)
            .await
            .expect("renew"),
        1,
        "only unfinished runs are renewed"
    );
    assert_eq!(jobs.renew("node-b", &["live".into()], LEASE).await.expect("renew"), 0);

    // A lease of zero runs out with the clock's next tick.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(jobs.beat("node-a", LEASE).await.expect("beat"), 1);
    assert_eq!(jobs.beat("node-b", LEASE).await.expect("beat"), 2);
    assert_eq!(
        jobs.beat("node-a", LEASE).await.expect("beat"),
        2,
        "a replica counts once"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        jobs.beat("node-a", Duration::from_millis(10)).await.expect("beat"),
        1,
        "b's beat is old"
    );
    assert!(jobs.stops_requested(&["live".into()]).await.expect("asked").is_empty());
    assert!(jobs.request_stop("live").await.expect("ask"));
    assert!(
        !jobs.request_stop("done").await.expect("ask"),
        "a finished run has nothing to stop"
    );
    assert_eq!(
        jobs.stops_requested(&["live".into(), "done".into()])
            .await
            .expect("asked"),
        ["live"]
    );
    let taken = jobs.take_over("node-b", LEASE, 10).await.expect("take over");
    assert_eq!(taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["dead"]);
    assert_eq!((taken[0].node.as_deref(), taken[0].attempt), (Some("node-b"), 2));
    assert!(
        jobs.take_over("node-c", LEASE, 10).await.expect("again").is_empty(),
        "claimed once"
    );
    let new = taken[0].claim();
    let old = claim("dead");

    let fenced = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Fenced(_)));
    assert!(fenced(
        jobs.update(&old, JobStatus::Success, "full", &json!({"late": true}))
            .await
    ));
    assert!(matches!(jobs.start(&old).await, Err(StoreError::Fenced(_))));
    let entry = EntityLogEntry {
        entity_type: "user".into(),
        operation: "create".into(),
        outcome: "success".into(),
        ..Default::default()
    };
    assert!(fenced(
        jobs.append_log("dead", Some(&old), 1, vec![entry.clone()]).await
    ));
    let held = HeldDelete {
        target_id: target.clone(),
        entity_type: "user".into(),
        source_id: "u1".into(),
        target_entity_id: "T1".into(),
        decision: None,
    };
    assert!(fenced(jobs.hold_deletes(&old, vec![held.clone()]).await));
    let delta = DeltaState {
        user_watermark: Some("2025-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert!(fenced(jobs.set_delta_state(&source, &delta, Some(&old)).await));
    let scope = LinkScope {
        source: source.clone(),
        target: target.clone(),
        kind: EntityKind::User,
    };
    let intent = || {
        vec![LinkChange::Intent {
            source_entity: "u1".into(),
        }]
    };
    assert!(fenced(stores.links.apply(&scope, intent(), Some(&old)).await));
    assert!(
        stores.links.all(&scope).await.expect("links").is_empty(),
        "nothing of a fenced write"
    );
    assert_eq!(jobs.last_log_seq("dead").await.expect("seq"), 0);
    assert!(jobs.held_deletes("dead").await.expect("held").is_empty());
    assert_eq!(jobs.delta_state(&source).await.expect("delta"), DeltaState::default());
    let dead = jobs.get("dead").await.expect("get").expect("dead");
    assert_eq!(dead.status, JobStatus::Running, "the late write changed nothing");

    // The new holder writes.
    jobs.append_log("dead", Some(&new), 1, vec![entry])
        .await
        .expect("append");
    jobs.hold_deletes(&new, vec![held]).await.expect("hold");
    jobs.set_delta_state(&source, &delta, Some(&new)).await.expect("delta");
    stores.links.apply(&scope, intent(), Some(&new)).await.expect("links");
    jobs.update(&new, JobStatus::Success, "full", &json!({}))
        .await
        .expect("finish");
    assert_eq!(
        jobs.get("dead").await.expect("get").expect("dead").status,
        JobStatus::Success
    );

    // A replica shutting down hands its claims back: taken over at once, not after the lease.
    assert!(jobs.take_over("node-b", LEASE, 10).await.expect("none").is_empty());
    assert_eq!(
        jobs.release("node-b", &["live".into()]).await.expect("release"),
        0,
        "not b's"
    );
    assert_eq!(
        jobs.release("node-a", &["live".into(), "done".into()])
            .await
            .expect("release"),
        1
    );
    let taken = jobs.take_over("node-b", LEASE, 10).await.expect("take over");
    assert_eq!(taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["live"]);
    // It leaves the live replicas too.
    assert_eq!(jobs.beat("node-b", LEASE).await.expect("beat"), 2);
    jobs.leave("node-a").await.expect("leave");
    assert_eq!(jobs.beat("node-b", LEASE).await.expect("beat"), 1);
}

/// A run's entity log (numbered, paged, filtered) and its held deletes (decided once).
pub async fn job_logs_and_held_deletes(stores: Stores) {
    let (source, target) = pair(&stores).await;
    let jobs = &stores.jobs;
    jobs.insert(&job("j1", &source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    let entry = |outcome: &str| EntityLogEntry {
        target_id: Some(target.clone()),
        entity_type: "user".into(),
        source_id: Some("u1".into()),
        operation: "create".into(),
        outcome: outcome.into(),
        changes: Some(json!([{"path": "userName"}])),
        ..Default::default()
    };
    assert_eq!(jobs.last_log_seq("j1").await.expect("seq"), 0);
    jobs.append_log(
        "j1",
        Some(&claim("j1")),
        1,
        vec![entry("success"), entry("failed"), entry("success")],
    )
    .await
    .expect("append");
    jobs.append_log("j1", None, 4, vec![]).await.expect("nothing to append");
    assert_eq!(jobs.last_log_seq("j1").await.expect("seq"), 3);
    let all = jobs.log("j1", None, 0, 10).await.expect("all");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].changes, Some(json!([{"path": "userName"}])));
    assert!(!all[0].at.is_empty());
    assert_eq!(jobs.log("j1", None, 1, 1).await.expect("page")[0].seq, 2);
    let failed = jobs.log("j1", Some("failed"), 0, 10).await.expect("failed");
    assert_eq!(failed.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);

    let held = |id: &str| HeldDelete {
        target_id: target.clone(),
        entity_type: "user".into(),
        source_id: id.into(),
        target_entity_id: format!("T-{id}"),
        decision: None,
    };
    jobs.hold_deletes(&claim("j1"), vec![held("a"), held("b")])
        .await
        .expect("hold");
    assert_eq!(jobs.held_deletes("j1").await.expect("held").len(), 2);
    assert_eq!(
        jobs.decide_held_deletes("j1", "approved", None).await.expect("decide"),
        2
    );
    assert_eq!(
        jobs.decide_held_deletes("j1", "rejected", None).await.expect("again"),
        0
    );
    let decided = jobs.held_deletes("j1").await.expect("held");
    assert!(decided.iter().all(|h| h.decision.as_deref() == Some("approved")));

    // Deciding some: only those named, each once (j1 ends first: one running run per source).
    jobs.update(&claim("j1"), JobStatus::FinishedWithError, "full", &json!({}))
        .await
        .expect("end j1");
    jobs.insert(&job("j2", &source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    jobs.hold_deletes(&claim("j2"), vec![held("a"), held("b"), held("c")])
        .await
        .expect("hold");
    let key = |id: &str| HeldKey {
        target_id: target.clone(),
        entity_type: "user".into(),
        source_id: id.into(),
    };
    let some = [key("a"), key("c"), key("zz")];
    assert_eq!(
        jobs.decide_held_deletes("j2", "rejected", Some(&some))
            .await
            .expect("some"),
        2
    );
    assert_eq!(
        jobs.decide_held_deletes("j2", "approved", Some(&some))
            .await
            .expect("again"),
        0
    );
    let decided = jobs.held_deletes("j2").await.expect("held");
    let decision = |id: &str| {
        decided
            .iter()
            .find(|h| h.source_id == id)
            .and_then(|h| h.decision.clone())
    };
    assert_eq!(
        (decision("a"), decision("b"), decision("c")),
        (Some("rejected".into()), None, Some("rejected".into()))
    );
    assert_eq!(jobs.decide_held_deletes("j2", "approved", None).await.expect("rest"), 1);

    // Rejections: kept per target entity (a newer one replaces), listed per source, target and type,
    // lapsed one by one, and gone with the target system.
    let rejected = |id: &str, digest: &str| RejectedDelete {
        source_system: source.clone(),
        target_id: target.clone(),
        entity_type: "user".into(),
        source_id: id.into(),
        target_entity_id: format!("T-{id}"),
        digest: Some(digest.into()),
        rejected_by: "admin".into(),
        rejected_at: super::now(),
    };
    jobs.reject_deletes(vec![rejected("a", "d1"), rejected("c", "d1")])
        .await
        .expect("reject");
    jobs.reject_deletes(vec![rejected("a", "d2")]).await.expect("again");
    let mut listed = jobs.rejected_deletes(&source, &target, "user").await.expect("list");
    listed.sort_by(|x, y| x.source_id.cmp(&y.source_id));
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.source_id.as_str(), r.digest.as_deref()))
            .collect::<Vec<_>>(),
        [("a", Some("d2")), ("c", Some("d1"))]
    );
    assert_eq!(listed[0], rejected("a", "d2").with_time(&listed[0].rejected_at));
    assert!(
        jobs.rejected_deletes(&source, &target, "group")
            .await
            .expect("groups")
            .is_empty()
    );
    assert_eq!(
        jobs.lapse_rejected_deletes(&target, "user", vec!["T-a".into(), "T-x".into()])
            .await
            .expect("lapse"),
        1
    );
    assert_eq!(
        jobs.rejected_deletes(&source, &target, "user")
            .await
            .expect("list")
            .len(),
        1
    );
    stores.systems.delete(&target).await.expect("delete the target");
    assert!(
        jobs.rejected_deletes(&source, &target, "user")
            .await
            .expect("list")
            .is_empty()
    );
}

impl RejectedDelete {
    fn with_time(mut self, at: &str) -> Self {
        self.rejected_at = at.into();
        self
    }
}

/// A source and a target, and the scopes of their user and group links.
async fn link_scopes(stores: &Stores) -> (String, String, LinkScope, LinkScope) {
    let (source, target) = pair(stores).await;
    let users = LinkScope {
        source: source.clone(),
        target: target.clone(),
        kind: EntityKind::User,
    };
    let groups = LinkScope {
        kind: EntityKind::Group,
        ..users.clone()
    };
    (source, target, users, groups)
}

/// Links of several scopes in one commit: each applied to its own scope, in order; all or none.
pub async fn links_across(stores: Stores) {
    let (_, _, users, groups) = link_scopes(&stores).await;
    let links = &stores.links;
    let intent = |id: &str| LinkChange::Intent {
        source_entity: id.into(),
    };
    let written = LinkChange::Written {
        source_entity: "u2".into(),
        target_entity: "T-u2".into(),
        digest: tag(0xd2),
        content: json!({"userName": "u2"}),
        existed_before: false,
        source_digest: None,
    };
    links
        .apply_across(vec![
            (users.clone(), intent("u1")),
            (groups.clone(), intent("g1")),
            (users.clone(), intent("u2")),
            (users.clone(), written),
        ])
        .await
        .expect("applied");
    let (u, g) = (
        links.all(&users).await.expect("users"),
        links.all(&groups).await.expect("groups"),
    );
    assert_eq!((u.len(), g.len()), (2, 1), "each in its own scope: {u:?} {g:?}");
    assert!(u["u1"].creating && g["g1"].creating);
    assert!(
        !u["u2"].creating && u["u2"].target_entity == Some("T-u2".into()),
        "in order: the intent, then the write"
    );
    // A scope whose system does not exist fails the whole commit.
    let unknown = LinkScope {
        target: "no-such-system".into(),
        ..users.clone()
    };
    assert!(
        links
            .apply_across(vec![(users.clone(), intent("u3")), (unknown, intent("x"))])
            .await
            .is_err()
    );
    assert!(
        links.get(&users, "u3").await.expect("get").is_none(),
        "nothing of a failed commit is applied"
    );
    links.apply_across(Vec::new()).await.expect("nothing to apply");
}

/// Links: an intent, then the written entity with its content, stale, removed; reset; the loop guard;
/// deleting a system drops its links.
pub async fn links(stores: Stores) {
    let (source, target, scope, groups) = link_scopes(&stores).await;
    let links = &stores.links;
    links
        .apply(
            &scope,
            vec![LinkChange::Intent {
                source_entity: "a".into(),
            }],
            None,
        )
        .await
        .expect("intent");
    let all = links.all(&scope).await.expect("all");
    assert!(all["a"].creating && all["a"].target_entity.is_none());
    let long_ago = "2000-01-01T00:00:00.000Z";
    assert!(
        links.creating_since(&target, "user", long_ago).await.expect("creating"),
        "a create in flight"
    );
    assert!(
        !links
            .creating_since(&target, "group", long_ago)
            .await
            .expect("creating")
    );
    assert!(
        !links
            .creating_since(&target, "user", "9999-01-01T00:00:00.000Z")
            .await
            .expect("creating"),
        "an old intent is not"
    );
    assert!(links.all(&groups).await.expect("groups").is_empty(), "scoped by kind");

    let written = LinkChange::Written {
        source_entity: "a".into(),
        target_entity: "T-a".into(),
        digest: tag(0xd1),
        content: json!({"userName": "a"}),
        existed_before: true,
        source_digest: Some(tag(0x51)),
    };
    let since = super::now();
    links.apply(&scope, vec![written], None).await.expect("written");
    let link = links.get(&scope, "a").await.expect("get").expect("present");
    assert_eq!(link.target_entity, Some("T-a".into()));
    assert_eq!(link.digest, Some(tag(0xd1)));
    assert!(link.existed_before && !link.creating);
    assert_eq!(link.source_digest, Some(tag(0x51)), "the memo digest is kept");
    assert_eq!(
        links.all(&scope).await.expect("all")["a"],
        link,
        "all() reads what get() reads"
    );
    // Target ids come back byte for byte, whether a link keeps them as UUIDs or as text.
    let ids = [
        "0f3e2b6c-1d2a-4c5b-9e8f-7a6b5c4d3e2f",
        "0F3E2B6C-1D2A-4C5B-9E8F-7A6B5C4D3E2F",
        "T-ü",
    ];
    let other = LinkScope {
        kind: EntityKind::Group,
        ..scope.clone()
    };
    let changes = ids
        .iter()
        .enumerate()
        .map(|(i, id)| LinkChange::Written {
            source_entity: format!("id{i}"),
            target_entity: id.to_string(),
            digest: tag(0xd3),
            content: json!({}),
            existed_before: false,
            source_digest: None,
        })
        .collect();
    links.apply(&other, changes, None).await.expect("ids");
    let all = links.all(&other).await.expect("all");
    for (i, id) in ids.iter().enumerate() {
        let source = format!("id{i}");
        let read = all[source.as_str()].target_entity.as_ref().map(ToString::to_string);
        assert_eq!(read.as_deref(), Some(*id));
        let got = links.get(&other, &source).await.expect("get").expect("linked");
        assert_eq!(got.target_entity.map(|t| t.to_string()).as_deref(), Some(*id));
    }
    links
        .apply(
            &other,
            (0..ids.len())
                .map(|i| LinkChange::Removed {
                    source_entity: format!("id{i}"),
                })
                .collect(),
            None,
        )
        .await
        .expect("removed");
    // A run that found it unchanged remembers a new memo digest, without touching anything else (nor the
    // loop guard's clock: nothing was written to the target).
    // (The store's clock counts milliseconds: the write above is strictly before this.)
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before_memo = super::now();
    links
        .apply(
            &scope,
            vec![LinkChange::Remembered {
                source_entity: "a".into(),
                source_digest: tag(0x52),
            }],
            None,
        )
        .await
        .expect("remembered");
    let remembered = links.get(&scope, "a").await.expect("get").expect("present");
    assert_eq!(
        remembered,
        Link {
            source_digest: Some(tag(0x52)),
            ..link.clone()
        }
    );
    assert!(
        !links
            .written_since(&target, "user", "T-a", &before_memo)
            .await
            .expect("guard"),
        "remembering is not a write"
    );
    assert!(
        !links
            .creating_since(&target, "user", "2000-01-01T00:00:00.000Z")
            .await
            .expect("creating"),
        "written: no longer in flight"
    );
    let contents = links
        .contents(&scope, vec!["a".into(), "b".into()])
        .await
        .expect("contents");
    assert_eq!(contents.len(), 1, "only linked entities have content");
    assert_eq!(contents["a"], json!({"userName": "a"}));
    assert!(
        links
            .written_since(&target, "user", "T-a", &since)
            .await
            .expect("guard")
    );
    assert!(
        !links
            .written_since(&target, "group", "T-a", &since)
            .await
            .expect("guard")
    );
    assert!(
        !links
            .written_since(&target, "user", "T-a", "9999-01-01T00:00:00.000Z")
            .await
            .expect("guard")
    );

    links
        .apply(
            &scope,
            vec![LinkChange::Stale {
                source_entity: "a".into(),
            }],
            None,
        )
        .await
        .expect("stale");
    let stale = links.get(&scope, "a").await.expect("get").expect("present");
    assert_eq!(stale.target_entity, Some("T-a".into()), "still linked");
    assert_ne!(stale.digest, Some(tag(0xd1)), "but written again next time");

    // Applied in order, all together.
    let many: Vec<LinkChange> = (0..3)
        .flat_map(|i| {
            [
                LinkChange::Intent {
                    source_entity: format!("u{i}"),
                },
                LinkChange::Written {
                    source_entity: format!("u{i}"),
                    target_entity: format!("T-u{i}"),
                    digest: tag(i as u8),
                    content: json!({"i": i}),
                    existed_before: false,
                    source_digest: None,
                },
            ]
        })
        .collect();
    links.apply(&scope, many, None).await.expect("batch");
    assert_eq!(links.all(&scope).await.expect("all").len(), 4);
    links
        .apply(
            &scope,
            vec![LinkChange::Removed {
                source_entity: "a".into(),
            }],
            None,
        )
        .await
        .expect("removed");
    assert!(links.get(&scope, "a").await.expect("get").is_none());
    assert_eq!(links.reset(&source).await.expect("reset"), 3);
    assert!(links.all(&scope).await.expect("all").is_empty());

    links
        .apply(
            &scope,
            vec![LinkChange::Intent {
                source_entity: "b".into(),
            }],
            None,
        )
        .await
        .expect("intent");
    stores.systems.delete(&target).await.expect("delete the target");
    assert!(
        links.all(&scope).await.expect("all").is_empty(),
        "its links went with it"
    );
}

/// Claims on real-time events: one replica wins each, a live claim keeps the others off, an expired one does
/// not; only the holder finishes the event, which ends the claim; a re-driven event is free.
pub async fn event_claims(stores: Stores) {
    let (source, _) = pair(&stores).await;
    let events = &stores.events;
    let mut seqs = Vec::new();
    for i in 0..3 {
        let appended = events
            .append(NewEvent {
                source_id: source.clone(),
                kind: "user".into(),
                entity_id: format!("u{i}"),
                operation: "create".into(),
                body: Some(json!({"userName": format!("u{i}")})),
                received_by: "pusher".into(),
            })
            .await
            .expect("appended");
        seqs.push(appended.seq);
    }
    assert_eq!(events.claim("a", &seqs[..2], LEASE).await.expect("claim"), seqs[..2]);
    // What is being worked is left out of what the replicas scan for work, with the entity's next events.
    let next = events
        .append(NewEvent {
            source_id: source.clone(),
            kind: "user".into(),
            entity_id: "u0".into(),
            operation: "replace".into(),
            body: Some(json!({"userName": "u0"})),
            received_by: "pusher".into(),
        })
        .await
        .expect("appended");
    let free: Vec<i64> = events
        .pending(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(free, seqs[2..], "u0 and u1 are being worked");
    assert_eq!(
        events.claim("b", &seqs, LEASE).await.expect("claim"),
        seqs[2..],
        "a holds the first two"
    );
    assert_eq!(events.renew_claims("a", &seqs, LEASE).await.expect("renew"), 2);
    let fenced = events.finish(seqs[0], Some("b"), "done", &json!([]), None).await;
    assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
    events
        .finish(seqs[0], Some("a"), "done", &json!([]), None)
        .await
        .expect("the holder finishes");
    assert!(
        events.claim("b", &seqs[..1], LEASE).await.expect("claim").is_empty(),
        "done is not pending"
    );
    // An attempt to retry later ends the claim: the next attempt may go to any replica.
    events
        .finish(
            seqs[1],
            Some("a"),
            "pending",
            &json!([]),
            Some("2000-01-01T00:00:00.000Z"),
        )
        .await
        .expect("retry");
    assert_eq!(events.claim("b", &seqs[1..2], LEASE).await.expect("claim"), seqs[1..2]);
    // An expired claim (a dead replica's) is claimed again.
    assert_eq!(
        events.claim("c", &seqs[2..], LEASE).await.expect("claim"),
        Vec::<i64>::new()
    );
    events
        .finish(seqs[2], Some("b"), "parked", &json!([]), None)
        .await
        .expect("park");
    assert!(events.redrive(seqs[2]).await.expect("redrive"));
    assert_eq!(
        events.claim("c", &seqs[2..], Duration::ZERO).await.expect("claim"),
        seqs[2..]
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        events.claim("a", &seqs[2..], LEASE).await.expect("claim"),
        seqs[2..],
        "c's lease ran out"
    );
    // A replica shutting down hands its claims back: another claims them at once.
    assert_eq!(
        events.release_claims("c").await.expect("release"),
        0,
        "c's claim is gone"
    );
    assert_eq!(
        events.release_claims("b").await.expect("release"),
        1,
        "the retry b claimed"
    );
    assert_eq!(events.release_claims("a").await.expect("release"), 1);
    assert_eq!(events.claim("c", &seqs[1..], LEASE).await.expect("claim"), seqs[1..]);
    // u0's first event is done: its next one is free.
    assert_eq!(
        events
            .pending(10)
            .await
            .expect("pending")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [next.seq]
    );
}

fn event(source: &str, entity: &str, operation: &str) -> NewEvent {
    NewEvent {
        source_id: source.into(),
        kind: "user".into(),
        entity_id: entity.into(),
        operation: operation.into(),
        body: Some(json!({"userName": entity})),
        received_by: "pusher".into(),
    }
}

/// Replicas claiming the next events at once: each gets events of its own, together they fill both rooms,
/// and no two events of one entity are ever claimed at once, nor an entity's event before its earlier ones
/// are done.
pub async fn event_claimers(stores: Stores) {
    let (source, _) = pair(&stores).await;
    let events = &stores.events;
    let append = |entity: &str, operation: &str| events.append(event(&source, entity, operation));
    let u0 = append("u0", "create").await.expect("appended");
    let u0_next = append("u0", "replace").await.expect("appended");
    for i in 1..8 {
        append(&format!("u{i}"), "create").await.expect("appended");
    }
    // Two claimers at once, 3 slots each: 6 events, each an entity's first, none claimed twice.
    let (a, b) = futures::future::join(events.claim_next("a", 3, LEASE), events.claim_next("b", 3, LEASE)).await;
    let (a, b) = (a.expect("a claims"), b.expect("b claims"));
    assert_eq!((a.len(), b.len()), (3, 3), "both rooms filled: {a:?} {b:?}");
    assert!(a.iter().all(|e| e.body.is_some()), "claimed with their bodies");
    let mut entities: Vec<&str> = a.iter().chain(&b).map(|e| e.entity_id.as_str()).collect();
    entities.sort_unstable();
    entities.dedup();
    assert_eq!(entities.len(), 6, "six entities: {a:?} {b:?}");
    assert!(
        a.iter().chain(&b).all(|e| e.seq != u0_next.seq),
        "u0's second waits for its first"
    );
    assert!(
        a.iter().chain(&b).any(|e| e.seq == u0.seq),
        "the oldest free event is claimed"
    );
    // The rest: the two entities left, not u0's second while its first is held.
    let c = events.claim_next("c", 10, LEASE).await.expect("c claims");
    assert_eq!(
        c.iter().map(|e| e.entity_id.as_str()).collect::<Vec<_>>(),
        ["u6", "u7"],
        "{c:?}"
    );
    assert!(events.claim_next("c", 10, LEASE).await.expect("c claims").is_empty());
    // u0's first done: its second is free.
    let holder = if a.iter().any(|e| e.seq == u0.seq) { "a" } else { "b" };
    events
        .finish(u0.seq, Some(holder), "done", &json!([]), None)
        .await
        .expect("done");
    let next = events.claim_next("c", 10, LEASE).await.expect("c claims");
    assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), [u0_next.seq]);
    // A retry later holds the entity: neither it nor the entity's later events are claimed before its time.
    events
        .finish(
            u0_next.seq,
            Some("c"),
            "pending",
            &json!([]),
            Some("9999-01-01T00:00:00.000Z"),
        )
        .await
        .expect("retry later");
    append("u0", "delete").await.expect("appended");
    assert!(events.claim_next("a", 10, LEASE).await.expect("a claims").is_empty());
    // A dead claimer's events are claimed again once its lease ran out.
    let u8 = append("u8", "create").await.expect("appended");
    let dead = events.claim_next("dead", 10, Duration::ZERO).await.expect("claims");
    assert_eq!(dead.iter().map(|e| e.seq).collect::<Vec<_>>(), [u8.seq]);
    std::thread::sleep(Duration::from_millis(20));
    let again = events.claim_next("a", 10, LEASE).await.expect("a claims");
    assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), [u8.seq]);
    assert!(events.claim_next("b", 0, LEASE).await.expect("no room").is_empty());

    // Two claimers working off a queue of several events per entity, at once: at any moment at most one
    // event of an entity is held, and each entity's events are done in the order they arrived.
    let (source, _) = {
        let s = stores
            .systems
            .create(spec("Busy source", Role::Source, vec![]))
            .await
            .expect("source");
        (s.id, ())
    };
    let mut appended = 0;
    for round in 0..8 {
        for i in 0..6 {
            let op = if round == 0 { "create" } else { "replace" };
            events
                .append(event(&source, &format!("busy{i}"), op))
                .await
                .expect("appended");
            appended += 1;
        }
    }
    let held: std::sync::Mutex<std::collections::HashMap<String, i64>> = Default::default();
    let last_done: std::sync::Mutex<std::collections::HashMap<String, i64>> = Default::default();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let claimer = |node: &'static str| {
        let (held, last_done, done, source) = (&held, &last_done, &done, &source);
        async move {
            let mut idle = 0;
            while done.load(std::sync::atomic::Ordering::SeqCst) < appended && idle < 200 {
                let claimed = events.claim_next(node, 3, LEASE).await.expect("claims");
                let claimed: Vec<_> = claimed.into_iter().filter(|e| &e.source_id == source).collect();
                if claimed.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                idle = 0;
                for e in &claimed {
                    let mut held = held.lock().expect("held");
                    assert!(
                        held.insert(e.entity_id.clone(), e.seq).is_none(),
                        "{node} claimed {} of {} while another of its events is held",
                        e.seq,
                        e.entity_id
                    );
                    let last = last_done.lock().expect("done").get(&e.entity_id).copied().unwrap_or(0);
                    assert!(e.seq > last, "{} of {} claimed after {last}", e.seq, e.entity_id);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                for e in claimed {
                    // Let go here before the outcome is committed: a claim of the entity's next event can
                    // only come after that commit.
                    held.lock().expect("held").remove(&e.entity_id);
                    last_done.lock().expect("done").insert(e.entity_id.clone(), e.seq);
                    events
                        .finish(e.seq, Some(node), "done", &json!([]), None)
                        .await
                        .expect("the holder finishes");
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    futures::future::join(claimer("a"), claimer("b")).await;
    assert_eq!(done.into_inner(), appended, "every event worked once");
}

/// Ended attempts recorded together: each outcome with its pushed entity and link changes in one
/// transaction; an event whose claim another replica holds is returned and left as it is, its writes too.
pub async fn event_batches(stores: Stores) {
    let (source, target) = pair(&stores).await;
    let events = &stores.events;
    let mut seqs = Vec::new();
    for i in 0..4 {
        let appended = events
            .append(NewEvent {
                source_id: source.clone(),
                kind: "user".into(),
                entity_id: format!("u{i}"),
                operation: "create".into(),
                body: Some(json!({"userName": format!("u{i}")})),
                received_by: "pusher".into(),
            })
            .await
            .expect("appended");
        seqs.push(appended.seq);
    }
    assert!(events.finish_batch(vec![]).await.expect("empty").is_empty());
    assert_eq!(events.claim("a", &seqs[..3], LEASE).await.expect("claim"), seqs[..3]);
    assert_eq!(events.claim("b", &seqs[3..], LEASE).await.expect("claim"), seqs[3..]);
    let scope = LinkScope {
        source: source.clone(),
        target: target.clone(),
        kind: EntityKind::User,
    };
    stores
        .events
        .set_pushed_entity(&source, "user", "u2", Some(&json!({"userName": "old"})))
        .await
        .expect("pushed");
    let ended = |i: usize, state: &str, body: Option<serde_json::Value>, change: Option<LinkChange>| Finished {
        seq: seqs[i],
        fence: Some("a".into()),
        state: state.into(),
        results: json!([{"state": state, "n": i}]),
        next_attempt_at: (state == "pending").then(|| "2000-01-01T00:00:00.000Z".to_string()),
        pushed: Some(PushedEntity {
            source_id: source.clone(),
            kind: "user".into(),
            entity_id: format!("u{i}"),
            body,
        }),
        links: change.map(|c| (scope.clone(), c)).into_iter().collect(),
    };
    let written = |i: usize| LinkChange::Written {
        source_entity: format!("u{i}"),
        target_entity: format!("T-u{i}"),
        digest: tag(i as u8),
        content: json!({"userName": format!("u{i}")}),
        existed_before: false,
        source_digest: None,
    };
    let fenced = events
        .finish_batch(vec![
            ended(0, "done", Some(json!({"userName": "u0"})), Some(written(0))),
            ended(1, "pending", Some(json!({"userName": "u1"})), Some(written(1))),
            // u2 was deleted: its pushed entity is forgotten, its link removed.
            ended(
                2,
                "done",
                None,
                Some(LinkChange::Removed {
                    source_entity: "u2".into(),
                }),
            ),
            // b holds u3's claim: a's outcome and writes are not recorded.
            ended(3, "done", Some(json!({"userName": "u3"})), Some(written(3))),
        ])
        .await
        .expect("batch");
    assert_eq!(fenced, vec![seqs[3]]);
    let e0 = events.get(seqs[0]).await.expect("get").expect("present");
    assert_eq!((e0.state.as_str(), e0.attempts), ("done", 1));
    assert!(e0.finished_at.is_some());
    assert_eq!(e0.results, Some(json!([{"state": "done", "n": 0}])));
    let e1 = events.get(seqs[1]).await.expect("get").expect("present");
    assert_eq!(e1.state, "pending");
    assert_eq!(e1.next_attempt_at.as_deref(), Some("2000-01-01T00:00:00.000Z"));
    assert!(e1.finished_at.is_none());
    assert_eq!(events.get(seqs[2]).await.expect("get").expect("present").state, "done");
    let e3 = events.get(seqs[3]).await.expect("get").expect("present");
    assert_eq!((e3.state.as_str(), e3.attempts), ("pending", 0), "fenced out");
    assert_eq!(
        events.pushed_entity(&source, "user", "u0").await.expect("pushed"),
        Some(json!({"userName": "u0"}))
    );
    assert_eq!(events.pushed_entity(&source, "user", "u2").await.expect("pushed"), None);
    assert_eq!(events.pushed_entity(&source, "user", "u3").await.expect("pushed"), None);
    let links = stores.links.all(&scope).await.expect("links");
    assert_eq!(links["u0"].target_entity, Some("T-u0".into()));
    assert_eq!(links["u1"].digest, Some(tag(1)));
    assert!(!links.contains_key("u3"), "a fenced event's link is not written");
    // The claims of the recorded events ended: the retry may go to any replica.
    assert_eq!(events.claim("b", &seqs[1..2], LEASE).await.expect("claim"), seqs[1..2]);
    // Without a fence (a store of one node) the outcome is recorded whoever claimed.
    let fenced = events
        .finish_batch(vec![Finished {
            fence: None,
            ..ended(3, "failed", Some(json!({"userName": "u3"})), None)
        }])
        .await
        .expect("batch");
    assert!(fenced.is_empty());
    assert_eq!(
        events.get(seqs[3]).await.expect("get").expect("present").state,
        "failed"
    );
    // The pending one, retried and done by b.
    let fenced = events
        .finish_batch(vec![Finished {
            fence: Some("b".into()),
            ..ended(1, "done", Some(json!({"userName": "u1"})), None)
        }])
        .await
        .expect("batch");
    assert!(fenced.is_empty());
    let e1 = events.get(seqs[1]).await.expect("get").expect("present");
    assert_eq!((e1.state.as_str(), e1.attempts), ("done", 2));
    assert!(events.pending(10).await.expect("pending").is_empty());
}

/// Targets' shared limits: turns spaced by the rate after a burst, by one schedule whoever asks; a pause
/// holds every turn until it ends and is followed by no burst; pauses listed while they last.
pub async fn limits(stores: Stores) {
    let limits = &stores.limits;
    // Each turn with the instants around its call: the store's clock read it somewhere in between.
    let turns = |n: usize| async move {
        let mut waits = Vec::new();
        for _ in 0..n {
            let before = std::time::Instant::now();
            let wait = limits.reserve("uaa", 10.0, 3.0).await.expect("reserve");
            waits.push((before, wait, std::time::Instant::now()));
        }
        waits
    };
    let turns = turns(6).await;
    let waits: Vec<Duration> = turns.iter().map(|t| t.1).collect();
    assert!(waits[..3].iter().all(|w| w.is_zero()), "a burst of 3: {waits:?}");
    // Then one every 100 ms after the first: each turn's slot, measured from the first call, lies between
    // what the earliest and the latest reading of the clocks allow (so a slow machine cannot fail this),
    // give or take 40 ms.
    let (first_before, _, first_after) = turns[0];
    for (k, (before, wait, after)) in turns[3..].iter().enumerate() {
        let expected = 100.0 * (k + 1) as f64;
        let earliest = (before.duration_since(first_after) + *wait).as_secs_f64() * 1000.0;
        let latest = (after.duration_since(first_before) + *wait).as_secs_f64() * 1000.0;
        assert!(
            earliest - 40.0 <= expected && expected <= latest + 40.0,
            "turn {} is due {earliest:.0}–{latest:.0} ms after the first, not about {expected} ms: {waits:?}",
            k + 4
        );
    }
    assert!(
        limits.reserve("other", 10.0, 3.0).await.expect("reserve").is_zero(),
        "per target"
    );
    assert!(limits.pauses().await.expect("pauses").is_empty());

    limits.pause("ias", Duration::from_secs(2)).await.expect("pause");
    limits
        .pause("ias", Duration::from_millis(500))
        .await
        .expect("a shorter pause");
    let paused = limits.pauses().await.expect("pauses");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].0, "ias");
    assert!(
        paused[0].1 > Duration::from_millis(1500),
        "the longer pause holds: {paused:?}"
    );
    let first = limits.reserve("ias", 10.0, 3.0).await.expect("reserve");
    let second = limits.reserve("ias", 10.0, 3.0).await.expect("reserve");
    assert!(
        first > Duration::from_millis(1500) && first <= Duration::from_secs(2),
        "{first:?}"
    );
    assert!(
        second >= first + Duration::from_millis(60),
        "no burst after a pause: {first:?} then {second:?}"
    );
}

/// The real-time outbox: appended in order, worked off, parked and re-driven, listed, pruned; the last
/// pushed entity per id.
pub async fn events(stores: Stores) {
    let (source, _) = pair(&stores).await;
    let events = &stores.events;
    let event = |id: &str, operation: &str| NewEvent {
        source_id: source.clone(),
        kind: "user".into(),
        entity_id: id.into(),
        operation: operation.into(),
        body: Some(json!({"userName": id})),
        received_by: "pusher".into(),
    };
    let appended = futures::future::join_all((0..20).map(|i| events.append(event(&format!("u{i}"), "create")))).await;
    let mut seqs: Vec<i64> = appended.into_iter().map(|r| r.expect("appended").seq).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 20, "every event has its own number");
    let pending = events.pending(100).await.expect("pending");
    assert_eq!(
        pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs,
        "in order of arrival"
    );
    assert!(pending[0].body.is_none(), "listed without bodies");
    let first = events.get(seqs[0]).await.expect("get").expect("present");
    assert_eq!(first.body, Some(json!({"userName": first.entity_id})));
    assert_eq!((first.state.as_str(), first.attempts), ("pending", 0));
    assert_eq!(events.pending(5).await.expect("pending").len(), 5);

    let later = "2999-01-01T00:00:00.000Z";
    events
        .finish(seqs[1], None, "pending", &json!([]), Some(later))
        .await
        .expect("retry later");
    let retried = events.get(seqs[1]).await.expect("get").expect("present");
    assert_eq!((retried.attempts, retried.next_attempt_at.as_deref()), (1, Some(later)));
    assert!(retried.finished_at.is_none());

    events
        .finish(seqs[0], None, "parked", &json!([{"state": "Failed"}]), None)
        .await
        .expect("park");
    let parked = events.get(seqs[0]).await.expect("get").expect("present");
    assert_eq!(parked.state, "parked");
    assert_eq!(parked.results, Some(json!([{"state": "Failed"}])));
    assert!(parked.finished_at.is_some());
    assert_eq!(events.pending(100).await.expect("pending").len(), 19);
    assert!(events.redrive(seqs[0]).await.expect("redrive"));
    assert!(!events.redrive(seqs[0]).await.expect("not twice"));
    assert_eq!(events.get(seqs[0]).await.expect("get").expect("present").attempts, 0);
    for seq in &seqs[2..] {
        events.finish(*seq, None, "done", &json!([]), None).await.expect("done");
    }

    let newest = events.list(Some(&source), None, None, 10).await.expect("list");
    assert_eq!(newest.len(), 10);
    assert!(newest.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let older = events
        .list(Some(&source), None, Some(newest[9].seq), 100)
        .await
        .expect("older");
    assert_eq!(older.len(), 10);
    assert_eq!(
        events
            .list(None, Some("pending"), None, 100)
            .await
            .expect("pending")
            .len(),
        2
    );
    assert!(
        events
            .list(Some("other"), None, None, 100)
            .await
            .expect("other")
            .is_empty()
    );
    assert_eq!(
        stores
            .retention
            .prune_events("9999-01-01T00:00:00.000Z", 1000)
            .await
            .expect("prune"),
        18,
        "only ended events"
    );
    assert_eq!(events.list(None, None, None, 100).await.expect("left").len(), 2);

    let none = events.pushed_entity(&source, "user", "u1").await.expect("pushed");
    assert!(none.is_none());
    let body = json!({"userName": "u1", "active": true});
    events
        .set_pushed_entity(&source, "user", "u1", Some(&body))
        .await
        .expect("remember");
    assert_eq!(
        events.pushed_entity(&source, "user", "u1").await.expect("pushed"),
        Some(body)
    );
    assert!(
        events
            .pushed_entity(&source, "group", "u1")
            .await
            .expect("pushed")
            .is_none()
    );
    events
        .set_pushed_entity(&source, "user", "u1", None)
        .await
        .expect("forget");
    assert!(
        events
            .pushed_entity(&source, "user", "u1")
            .await
            .expect("pushed")
            .is_none()
    );
}

/// A password change: the new password works, the old one no more, and every token of that principal (and
/// only of it) ends; an unknown id is not found.
pub async fn password_change(stores: Stores) {
    let principals = &stores.principals;
    let user = principals
        .create(
            "client",
            "old-password",
            PrincipalKind::Technical,
            &[Permission::ProxyApi],
        )
        .await
        .expect("principal");
    let other = principals
        .create("other", "other-password", PrincipalKind::Technical, &[])
        .await
        .expect("principal");
    let lifetime = Duration::from_secs(600);
    let token = stores.tokens.issue(&user, lifetime).await.expect("issue");
    let kept = stores.tokens.issue(&other, lifetime).await.expect("issue");
    assert!(
        principals
            .verify("client", "old-password")
            .await
            .expect("verify")
            .is_some()
    );
    principals
        .set_password(&user.id, "new-password")
        .await
        .expect("set password");
    stores.tokens.forget(&user.id);
    assert!(
        principals
            .verify("client", "old-password")
            .await
            .expect("verify")
            .is_none()
    );
    assert_eq!(
        principals
            .verify("client", "new-password")
            .await
            .expect("verify")
            .map(|p| p.id),
        Some(user.id.clone())
    );
    assert!(
        stores.tokens.principal(&token).await.expect("token").is_none(),
        "its tokens end"
    );
    assert!(
        stores.tokens.principal(&kept).await.expect("token").is_some(),
        "others' stay"
    );
    assert!(matches!(
        principals.set_password("no-such-id", "whatever-1").await,
        Err(StoreError::NotFound(_))
    ));
}

/// Bearer tokens: issued for a principal, found by the token only while valid, gone with the principal or when
/// revoked.
pub async fn tokens(stores: Stores) {
    let principals = &stores.principals;
    let user = principals
        .create("client", "pw-1", PrincipalKind::Technical, &[Permission::ProxyApi])
        .await
        .expect("principal");
    let other = principals
        .create("other", "pw-2", PrincipalKind::Technical, &[])
        .await
        .expect("principal");
    let token = stores
        .tokens
        .issue(&user, std::time::Duration::from_secs(60))
        .await
        .expect("issue");
    let kept = stores
        .tokens
        .issue(&other, std::time::Duration::from_secs(60))
        .await
        .expect("issue");
    assert_ne!(token, kept);
    let found = stores.tokens.principal(&token).await.expect("lookup").expect("valid");
    assert_eq!(
        (found.id.as_str(), found.permissions.as_slice()),
        (user.id.as_str(), &[Permission::ProxyApi][..])
    );
    assert!(stores.tokens.principal("not-a-token").await.expect("lookup").is_none());

    // Expired ones are not found, and pruning removes them only.
    let short = stores
        .tokens
        .issue(&user, std::time::Duration::from_millis(1))
        .await
        .expect("issue");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        stores.tokens.principal(&short).await.expect("lookup").is_none(),
        "expired"
    );
    assert_eq!(
        stores.tokens.principal(&token).await.expect("lookup").map(|p| p.id),
        Some(user.id.clone())
    );

    // Deleting the principal ends its tokens, for every reader once it revalidates.
    principals.delete(&user.id).await.expect("delete");
    tokio::time::sleep(super::tokens::REVALIDATE_AFTER).await;
    assert!(
        stores.tokens.principal(&token).await.expect("lookup").is_none(),
        "gone with its principal"
    );
    assert!(
        stores.tokens.principal(&kept).await.expect("lookup").is_some(),
        "others stay"
    );

    // Revoking one token (a console logout) ends it at once, and only it; revoking an unknown one is no error.
    let second = stores
        .tokens
        .issue(&other, std::time::Duration::from_secs(60))
        .await
        .expect("issue");
    stores.tokens.revoke(&kept).await.expect("revoke");
    assert!(
        stores.tokens.principal(&kept).await.expect("lookup").is_none(),
        "revoked"
    );
    assert!(
        stores.tokens.principal(&second).await.expect("lookup").is_some(),
        "the other token stays"
    );
    stores
        .tokens
        .revoke("not-a-token")
        .await
        .expect("revoking an unknown token");
}

/// Failed logins counted per key within a window, forgotten after it or on request; locks that hold for
/// their time, the longer one winning, and end by themselves.
pub async fn logins(stores: Stores) {
    let logins = &stores.logins;
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let window = Duration::from_secs(900);
    let both = keys(&["principal:alice", "address:10.0.0.1"]);
    assert_eq!(logins.record_failure(&both, window).await.expect("record"), vec![1, 1]);
    assert_eq!(logins.record_failure(&both, window).await.expect("record"), vec![2, 2]);
    let other = keys(&["principal:bob", "address:10.0.0.1"]);
    assert_eq!(
        logins.record_failure(&other, window).await.expect("record"),
        vec![1, 3],
        "counted per key"
    );
    // A correct password forgets the principal's failures, not the address's.
    logins.forget_failures("principal:alice").await.expect("forget");
    assert_eq!(logins.record_failure(&both, window).await.expect("record"), vec![1, 4]);
    // Failures older than the window no longer count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        logins
            .record_failure(&both, Duration::from_millis(200))
            .await
            .expect("record"),
        vec![1, 1]
    );

    assert_eq!(logins.locked(&both).await.expect("locked"), None);
    logins
        .lock("principal:alice", Duration::from_secs(2))
        .await
        .expect("lock");
    logins
        .lock("principal:alice", Duration::from_millis(100))
        .await
        .expect("a shorter lock");
    let left = logins.locked(&both).await.expect("locked").expect("alice is locked");
    assert!(
        left > Duration::from_millis(1500) && left <= Duration::from_secs(2),
        "the longer lock holds: {left:?}"
    );
    assert_eq!(
        logins.locked(&keys(&["principal:bob"])).await.expect("locked"),
        None,
        "per key"
    );
    logins
        .lock("address:10.0.0.2", Duration::from_millis(200))
        .await
        .expect("lock");
    let two = keys(&["principal:carol", "address:10.0.0.2"]);
    assert!(logins.locked(&two).await.expect("locked").is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        logins.locked(&two).await.expect("locked"),
        None,
        "a lock ends by itself"
    );
    assert_eq!(logins.locked(&[]).await.expect("no keys"), None);

    // An admin's unlock ends a running lock at once, with the key's failures; other locks stay.
    let dave = keys(&["principal:dave"]);
    logins.record_failure(&dave, window).await.expect("record");
    logins
        .lock("principal:dave", Duration::from_secs(60))
        .await
        .expect("lock");
    logins
        .lock("principal:erin", Duration::from_secs(30))
        .await
        .expect("lock");
    // Alice's 2-second lock from above may still run; the 200-ms lock of 10.0.0.2 has ended.
    logins.unlock("principal:alice").await.expect("unlock");
    let running = logins.locks().await.expect("locks");
    let names: Vec<&str> = running.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["principal:dave", "principal:erin"],
        "longest first, ended ones left out"
    );
    assert!(running[0].1 > Duration::from_secs(55) && running[0].1 <= Duration::from_secs(60));
    assert!(
        logins.unlock("principal:dave").await.expect("unlock"),
        "a lock was running"
    );
    assert_eq!(logins.locked(&dave).await.expect("locked"), None);
    assert_eq!(
        logins.record_failure(&dave, window).await.expect("record"),
        vec![1],
        "the failures before the unlock are forgotten"
    );
    assert!(
        !logins.unlock("principal:dave").await.expect("unlock"),
        "nothing left to end"
    );
    assert!(
        logins
            .locked(&keys(&["principal:erin"]))
            .await
            .expect("locked")
            .is_some()
    );
    assert!(logins.unlock("principal:erin").await.expect("unlock"));
    assert!(logins.locks().await.expect("locks").is_empty());
}

/// A new password replaces the old one at once (the verification cache too), and ends the principal's
/// tokens only; an unknown id is not found.
pub async fn passwords(stores: Stores) {
    let principals = &stores.principals;
    let user = principals
        .create(
            "rotating",
            "old-password-1",
            PrincipalKind::Technical,
            &[Permission::ProxyApi],
        )
        .await
        .expect("principal");
    let other = principals
        .create("steady", "steady-password-1", PrincipalKind::Technical, &[])
        .await
        .expect("principal");
    assert!(
        principals
            .verify("rotating", "old-password-1")
            .await
            .expect("verify")
            .is_some()
    );
    let token = stores
        .tokens
        .issue(&user, Duration::from_secs(60))
        .await
        .expect("issue");
    let kept = stores
        .tokens
        .issue(&other, Duration::from_secs(60))
        .await
        .expect("issue");
    assert!(stores.tokens.principal(&token).await.expect("lookup").is_some());

    principals.set_password(&user.id, "new-password-2").await.expect("set");
    stores.tokens.revoke_all(&user.id).await.expect("revoke");
    assert!(principals.recently_verified("rotating", "old-password-1").is_none());
    assert!(
        principals
            .verify("rotating", "old-password-1")
            .await
            .expect("verify")
            .is_none()
    );
    let verified = principals.verify("rotating", "new-password-2").await.expect("verify");
    assert_eq!(verified.map(|p| p.id), Some(user.id.clone()));
    assert!(
        stores.tokens.principal(&token).await.expect("lookup").is_none(),
        "ended"
    );
    assert!(
        stores.tokens.principal(&kept).await.expect("lookup").is_some(),
        "only its own"
    );
    assert!(matches!(
        principals.set_password("no-such-id", "whatever-1").await,
        Err(StoreError::NotFound(_))
    ));
    stores.tokens.revoke_all("no-such-id").await.expect("nothing to end");
}

/// A system's health: the last Test Connection, quarantine with its probes claimed once, release answered
/// once, consecutive failed runs, and all of it gone with the system.
pub async fn health(stores: Stores) {
    let (source, target) = pair(&stores).await;
    let systems = &stores.systems;
    let fresh = systems.get(&target).await.expect("get").expect("target");
    assert_eq!(fresh.health, Default::default(), "a new system is healthy and untested");

    let test = ConnectionTest {
        ok: false,
        message: "refused".into(),
        at: "2026-01-01T00:00:00.000Z".into(),
    };
    systems.record_connection_test(&target, &test).await.expect("record");
    assert_eq!(
        systems.get(&target).await.expect("get").expect("t").health.last_test,
        Some(test)
    );
    let ok = ConnectionTest {
        ok: true,
        message: "fine".into(),
        at: "2026-01-01T00:01:00.000Z".into(),
    };
    systems.record_connection_test(&target, &ok).await.expect("record");
    let listed = systems.list().await.expect("list");
    let listed = listed.iter().find(|s| s.id == target).expect("listed");
    assert_eq!(
        listed.health.last_test,
        Some(ok.clone()),
        "the last test wins, in lists too"
    );
    systems
        .record_connection_test("no-such-system", &ok)
        .await
        .expect("a test of a system deleted meanwhile is dropped");

    assert_eq!(systems.count_run(&target, true).await.expect("count"), 1);
    assert_eq!(systems.count_run(&target, true).await.expect("count"), 2);
    assert_eq!(
        systems.get(&target).await.expect("get").expect("t").health.failed_runs,
        2
    );
    assert_eq!(
        systems.count_run(&target, false).await.expect("count"),
        0,
        "a good run resets"
    );
    assert_eq!(systems.count_run(&source, true).await.expect("count"), 1, "per system");
    assert!(matches!(
        systems.count_run("no-such-system", true).await,
        Err(StoreError::NotFound(_))
    ));

    assert!(systems.quarantined().await.expect("none").is_empty());
    let generation = systems.generation();
    let due = "2026-01-01T00:00:00.000Z";
    assert!(
        systems
            .quarantine(&target, "credentials", "the token endpoint refused", due)
            .await
            .expect("quarantine")
    );
    assert_ne!(systems.generation(), generation, "a quarantine moves the generation");
    assert!(
        !systems
            .quarantine(&target, "failure-rate", "again", due)
            .await
            .expect("twice"),
        "a quarantined system is not quarantined again"
    );
    assert!(matches!(
        systems.quarantine("no-such-system", "credentials", "x", due).await,
        Err(StoreError::NotFound(_))
    ));
    let q = systems
        .get(&target)
        .await
        .expect("get")
        .expect("t")
        .health
        .quarantine
        .expect("quarantined");
    assert_eq!(
        (
            q.reason.as_str(),
            q.message.as_str(),
            q.next_probe_at.as_str(),
            q.probes
        ),
        ("credentials", "the token endpoint refused", due, 0),
        "the first quarantine stays"
    );
    assert!(q.since.ends_with('Z'));
    let listed = systems.quarantined().await.expect("quarantined");
    assert_eq!(listed, vec![(target.clone(), q.clone())]);

    // A probe not yet due is not claimed; a due one by one caller only.
    let next = "2026-01-01T00:01:00.000Z";
    assert!(
        !systems
            .claim_probe(&target, "2025-12-31T23:59:59.000Z", next)
            .await
            .expect("early")
    );
    let now = "2026-01-01T00:00:30.000Z";
    let claims = futures::future::join_all((0..4).map(|_| systems.claim_probe(&target, now, next))).await;
    assert_eq!(claims.iter().filter(|c| matches!(c, Ok(true))).count(), 1, "{claims:?}");
    assert!(!systems.claim_probe(&source, now, next).await.expect("not quarantined"));
    let q = systems
        .get(&target)
        .await
        .expect("get")
        .expect("t")
        .health
        .quarantine
        .expect("still");
    assert_eq!((q.next_probe_at.as_str(), q.probes), (next, 1));

    // Released once; the failed runs start again.
    let generation = systems.generation();
    let releases = futures::future::join_all((0..3).map(|_| systems.release(&target))).await;
    let released: Vec<_> = releases.into_iter().filter_map(|r| r.expect("release")).collect();
    assert_eq!(released.len(), 1, "one release ends it");
    assert_eq!(released[0].reason, "credentials");
    assert_ne!(systems.generation(), generation, "a release moves the generation");
    let health = systems.get(&target).await.expect("get").expect("t").health;
    assert_eq!((health.quarantine, health.failed_runs), (None, 0));
    assert_eq!(health.last_test, Some(ok), "the last test stays");
    assert!(systems.release(&target).await.expect("again").is_none());
    assert!(systems.release("no-such-system").await.expect("unknown").is_none());
    assert!(systems.quarantined().await.expect("none").is_empty());

    // Quarantined again later: a new quarantine, probes from 0.
    assert!(
        systems
            .quarantine(&target, "failed-runs", "3 runs", next)
            .await
            .expect("again")
    );
    let q = systems
        .get(&target)
        .await
        .expect("get")
        .expect("t")
        .health
        .quarantine
        .expect("q");
    assert_eq!((q.reason.as_str(), q.probes), ("failed-runs", 0));
    // Gone with the system.
    systems.delete(&target).await.expect("delete");
    assert!(systems.quarantined().await.expect("none").is_empty());
}

/// Parked events are put back in the queue together, and retention leaves them alone.
pub async fn parked_events(stores: Stores) {
    let (source, _) = pair(&stores).await;
    let events = &stores.events;
    let mut seqs = Vec::new();
    for i in 0..4 {
        let e = events
            .append(NewEvent {
                source_id: source.clone(),
                kind: "user".into(),
                entity_id: format!("u{i}"),
                operation: "create".into(),
                body: Some(json!({"userName": i})),
                received_by: "pusher".into(),
            })
            .await
            .expect("append");
        seqs.push(e.seq);
    }
    for seq in &seqs[..3] {
        events
            .finish(
                *seq,
                None,
                "parked",
                &json!([{"state": "Parked", "quarantined": true}]),
                None,
            )
            .await
            .expect("park");
    }
    events
        .finish(seqs[3], None, "done", &json!([]), None)
        .await
        .expect("done");
    assert_eq!(
        stores
            .retention
            .prune_events("9999-01-01T00:00:00.000Z", 1000)
            .await
            .expect("prune"),
        1,
        "only the done event goes"
    );
    assert_eq!(events.redrive_many(&[]).await.expect("nothing"), 0);
    assert_eq!(
        events
            .redrive_many(&[seqs[0], seqs[1], seqs[3]])
            .await
            .expect("redrive"),
        2,
        "the parked ones named (the pruned one is gone)"
    );
    let pending: Vec<i64> = events
        .pending(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(pending, vec![seqs[0], seqs[1]]);
    let back = events.get(seqs[0]).await.expect("get").expect("present");
    assert_eq!(
        (back.state.as_str(), back.attempts, back.finished_at),
        ("pending", 0, None)
    );
    assert_eq!(
        events.get(seqs[2]).await.expect("get").expect("present").state,
        "parked"
    );
}

fn audit_entry(at: &str, principal: &str, action: &str, object_type: &str, object_id: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at: at.into(),
        principal: principal.into(),
        principal_id: format!("id-{principal}"),
        principal_kind: "admin".into(),
        address: Some("192.0.2.7".into()),
        channel: "api".into(),
        action: action.into(),
        object_type: object_type.into(),
        object_id: object_id.into(),
        object_name: format!("name of {object_id}"),
        changes: vec![FieldChange {
            field: "enabled".into(),
            before: Some(json!(true)),
            after: Some(json!(false)),
        }],
    }
}

/// The audit log: appended in order, listed newest first, filtered by each field and by time, paged.
pub async fn audit(stores: Stores) {
    let audit = &stores.audit;
    assert!(
        audit
            .list(&AuditFilter::default(), None, 10)
            .await
            .expect("empty")
            .is_empty()
    );
    let entries = [
        audit_entry("2026-01-01T00:00:00.000Z", "alice", "system.create", "system", "s1"),
        audit_entry("2026-01-02T00:00:00.000Z", "Bob", "system.update", "system", "s1"),
        audit_entry(
            "2026-01-03T00:00:00.000Z",
            "alice",
            "plugin.upload",
            "plugin",
            "scim@1.0.0",
        ),
        audit_entry("2026-01-04T00:00:00.000Z", "alice", "system.delete", "system", "s2"),
    ];
    let mut ids = Vec::new();
    for e in &entries {
        ids.push(audit.append(e).await.expect("append"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "numbers ascend: {ids:?}");
    let all = audit.list(&AuditFilter::default(), None, 10).await.expect("all");
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, ids[3], "newest first");
    let mut expected = entries[3].clone();
    expected.id = ids[3];
    assert_eq!(all[0], expected, "every field round-trips");
    let shared = &stores;
    let by = |f: AuditFilter| async move {
        shared
            .audit
            .list(&f, None, 10)
            .await
            .expect("list")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let principal = AuditFilter {
        principal: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(by(principal).await, [ids[1]], "the principal, case-insensitively");
    let action = AuditFilter {
        action: Some("system.create".into()),
        ..Default::default()
    };
    assert_eq!(by(action).await, [ids[0]]);
    let object = AuditFilter {
        object_type: Some("system".into()),
        object_id: Some("s1".into()),
        ..Default::default()
    };
    assert_eq!(by(object).await, [ids[1], ids[0]]);
    let window = AuditFilter {
        from: Some("2026-01-02T00:00:00.000Z".into()),
        to: Some("2026-01-04T00:00:00.000Z".into()),
        ..Default::default()
    };
    assert_eq!(by(window).await, [ids[2], ids[1]], "from inclusive, to exclusive");
    let page = audit.list(&AuditFilter::default(), None, 2).await.expect("page");
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[3], ids[2]]);
    let next = audit
        .list(&AuditFilter::default(), Some(page[1].id), 2)
        .await
        .expect("next");
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1], ids[0]]);
}

/// Pruning in batches: at most a batch per call, only what is past the cut-off, runs after their logs;
/// one replica leads at a time on a shared store.
pub async fn retention(stores: Stores) {
    let (source, target) = pair(&stores).await;
    let (jobs, retention) = (&stores.jobs, &stores.retention);
    let entry = || EntityLogEntry {
        target_id: Some(target.clone()),
        entity_type: "user".into(),
        source_id: Some("u1".into()),
        operation: "create".into(),
        outcome: "success".into(),
        ..Default::default()
    };
    jobs.insert(&job("old", &source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    jobs.append_log("old", Some(&claim("old")), 1, (0..7).map(|_| entry()).collect())
        .await
        .expect("append");
    jobs.update(&claim("old"), JobStatus::Success, "full", &json!({}))
        .await
        .expect("end");
    jobs.insert(&job("going", &source, JobStatus::Running), LEASE)
        .await
        .expect("insert");
    jobs.append_log("going", Some(&claim("going")), 1, (0..3).map(|_| entry()).collect())
        .await
        .expect("append");
    let past = "2000-01-01T00:00:00.000Z";
    let future = "9999-01-01T00:00:00.000Z";
    assert_eq!(
        retention.prune_job_logs(past, 5).await.expect("prune"),
        0,
        "nothing ended before 2000"
    );
    assert_eq!(
        retention.prune_job_logs(future, 5).await.expect("prune"),
        5,
        "one batch"
    );
    assert!(
        jobs.get("old").await.expect("get").is_some(),
        "the run stays while it has logs"
    );
    assert_eq!(
        retention.prune_job_logs(future, 5).await.expect("prune"),
        3,
        "the last two log rows, then the run"
    );
    assert!(jobs.get("old").await.expect("get").is_none());
    assert_eq!(retention.prune_job_logs(future, 5).await.expect("prune"), 0);
    assert_eq!(
        jobs.log("going", None, 0, 10).await.expect("log").len(),
        3,
        "a run going on keeps its log"
    );

    let events = &stores.events;
    let mut seqs = Vec::new();
    for i in 0..4 {
        let appended = events
            .append(NewEvent {
                source_id: source.clone(),
                kind: "user".into(),
                entity_id: format!("u{i}"),
                operation: "create".into(),
                body: None,
                received_by: "pusher".into(),
            })
            .await
            .expect("append");
        seqs.push(appended.seq);
    }
    for seq in &seqs[..3] {
        events.finish(*seq, None, "done", &json!([]), None).await.expect("done");
    }
    assert_eq!(retention.prune_events(past, 10).await.expect("prune"), 0);
    assert_eq!(retention.prune_events(future, 2).await.expect("prune"), 2);
    assert_eq!(retention.prune_events(future, 2).await.expect("prune"), 1);
    assert_eq!(retention.prune_events(future, 2).await.expect("prune"), 0);
    assert!(
        events.get(seqs[3]).await.expect("get").is_some(),
        "a pending event stays"
    );

    for at in [
        "2020-01-01T00:00:00.000Z",
        "2021-01-01T00:00:00.000Z",
        "2030-01-01T00:00:00.000Z",
    ] {
        stores
            .audit
            .append(&audit_entry(at, "alice", "system.update", "system", "s1"))
            .await
            .expect("append");
    }
    let cut = "2025-01-01T00:00:00.000Z";
    assert_eq!(retention.prune_audit(cut, 1).await.expect("prune"), 1);
    assert_eq!(retention.prune_audit(cut, 1).await.expect("prune"), 1);
    assert_eq!(retention.prune_audit(cut, 1).await.expect("prune"), 0);
    let left = stores
        .audit
        .list(&AuditFilter::default(), None, 10)
        .await
        .expect("left");
    assert_eq!(
        left.iter().map(|e| e.at.as_str()).collect::<Vec<_>>(),
        ["2030-01-01T00:00:00.000Z"]
    );

    let lease = retention
        .lead_pruning()
        .await
        .expect("lead")
        .expect("nobody else leads");
    if stores.is_shared() {
        assert!(
            retention.lead_pruning().await.expect("lead").is_none(),
            "one replica prunes at a time"
        );
    }
    drop(lease);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(lease) = retention.lead_pruning().await.expect("lead") {
            drop(lease);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lease was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscriptions: created with a sealed secret that only [`NotificationStore::subscription_secret`] opens,
/// replaced (keeping the secret unless a new one is given), per system or for all, removed with the system
/// they name; storms collapse within a window.
///
/// [`NotificationStore::subscription_secret`]: super::NotificationStore::subscription_secret
pub async fn notifications(stores: Stores) {
    use super::notifications::{Channel, SubscriptionSpec};
    let (source, target) = pair(&stores).await;
    let n = &stores.notifications;
    let hook = SubscriptionSpec {
        system_id: Some(source.clone()),
        kinds: vec!["job.failed".into(), "job.recovered".into()],
        channel: Channel::Webhook {
            url: "https://hooks.example/in".into(),
        },
        backlog_minutes: 15,
        description: "ops".into(),
    };
    let created = n.create_subscription(&hook, Some("s3cret")).await.expect("create");
    assert_eq!(created.spec, hook);
    assert!(created.has_secret);
    let mail = SubscriptionSpec {
        system_id: None,
        kinds: vec!["realtime.backlog".into()],
        channel: Channel::Email {
            recipients: vec!["ops@example.com".into(), "oncall@example.com".into()],
        },
        backlog_minutes: 5,
        description: String::new(),
    };
    let all = n.create_subscription(&mail, None).await.expect("create mail");
    assert!(!all.has_secret);
    assert_eq!(n.subscription_secret(&all.id).await.expect("no secret"), None);
    assert_eq!(
        n.subscription_secret(&created.id).await.expect("secret").as_deref(),
        Some("s3cret")
    );
    let listed = n.subscriptions().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        n.subscription(&all.id).await.expect("get").map(|s| s.spec),
        Some(mail.clone())
    );
    assert!(n.subscription("nope").await.expect("get").is_none());
    // An unknown system is refused as not found.
    let mut stray = hook.clone();
    stray.system_id = Some("no-such-system".into());
    assert!(matches!(
        n.create_subscription(&stray, None).await,
        Err(StoreError::NotFound(_))
    ));

    // Replaced without a secret: the secret stays; with one: it changes.
    let mut changed = hook.clone();
    changed.kinds = vec!["deletes.held".into()];
    let updated = n
        .update_subscription(&created.id, &changed, None)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.spec.kinds, vec!["deletes.held".to_string()]);
    assert!(updated.has_secret);
    assert_eq!(
        n.subscription_secret(&created.id).await.expect("secret").as_deref(),
        Some("s3cret")
    );
    n.update_subscription(&created.id, &changed, Some("other"))
        .await
        .expect("update")
        .expect("found");
    assert_eq!(
        n.subscription_secret(&created.id).await.expect("secret").as_deref(),
        Some("other")
    );
    assert!(
        n.update_subscription("nope", &changed, None)
            .await
            .expect("update")
            .is_none()
    );

    // Storms collapse: one goes, the rest within the window are counted, and the next one after the window
    // carries the count.
    let window = Duration::from_millis(400);
    assert_eq!(n.collapse("k", window).await.expect("first"), Some(0));
    assert_eq!(n.collapse("k", window).await.expect("second"), None);
    assert_eq!(n.collapse("k", window).await.expect("third"), None);
    assert_eq!(n.collapse("other", window).await.expect("other key"), Some(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(n.collapse("k", window).await.expect("after the window"), Some(2));
    assert_eq!(n.collapse("k", window).await.expect("again"), None);

    // Removing the system removes its subscriptions; removing a subscription answers whether there was one.
    stores.systems.delete(&target).await.expect("delete target");
    stores.systems.delete(&source).await.expect("delete source");
    assert!(n.subscription(&created.id).await.expect("get").is_none());
    assert!(n.delete_subscription(&all.id).await.expect("delete"));
    assert!(!n.delete_subscription(&all.id).await.expect("delete again"));
}

/// The delivery outbox: claimed by one node at a time, attempts recorded only by the claim's holder, retried
/// when due, ended as delivered or failed, listed newest first with their attempts; the oldest pending
/// real-time event per source.
pub async fn notification_deliveries(stores: Stores) {
    use super::notifications::{AfterAttempt, Attempt, Channel, NewDelivery, SubscriptionSpec};
    let (source, _) = pair(&stores).await;
    let n = &stores.notifications;
    let spec = SubscriptionSpec {
        system_id: None,
        kinds: vec!["job.failed".into()],
        channel: Channel::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
        },
        backlog_minutes: 15,
        description: String::new(),
    };
    let sub = n.create_subscription(&spec, Some("k")).await.expect("create");
    let other = n.create_subscription(&spec, None).await.expect("create other");
    let new = |id: &str, sub: &str| NewDelivery {
        id: id.into(),
        subscription_id: sub.into(),
        channel: "webhook".into(),
        kind: "job.failed".into(),
        payload: json!({"id": id, "kind": "job.failed"}),
    };
    n.enqueue(vec![new("d1", &sub.id), new("d2", &sub.id), new("d3", &other.id)])
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(30);
    let only = n.claim_deliveries("a", lease, 10, Some("d2")).await.expect("claim one");
    assert_eq!(only.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d2"]);
    let rest = n.claim_deliveries("b", lease, 10, None).await.expect("claim the rest");
    let mut ids: Vec<&str> = rest.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["d1", "d3"], "d2 is a's");
    assert_eq!(rest[0].payload["kind"], "job.failed");
    assert!(
        n.claim_deliveries("c", lease, 10, None)
            .await
            .expect("nothing")
            .is_empty()
    );

    let attempt = |number: i64, status: &str, code: Option<i64>| Attempt {
        number,
        at: super::now(),
        status: status.into(),
        response_code: code,
        error: code.filter(|c| *c >= 500).map(|c| format!("HTTP {c}")),
    };
    // Only the holder records.
    assert!(matches!(
        n.record_attempt("d2", "b", &attempt(1, "delivered", Some(200)), &AfterAttempt::Delivered)
            .await,
        Err(StoreError::Fenced(_))
    ));
    n.record_attempt(
        "d2",
        "a",
        &attempt(1, "retry", Some(500)),
        &AfterAttempt::RetryAt(super::now()),
    )
    .await
    .expect("retry");
    n.record_attempt("d1", "b", &attempt(1, "delivered", Some(204)), &AfterAttempt::Delivered)
        .await
        .expect("delivered");
    n.record_attempt("d3", "b", &attempt(1, "failed", Some(410)), &AfterAttempt::Failed)
        .await
        .expect("failed");
    // The retry is due again, with its first attempt.
    let again = n.claim_deliveries("b", lease, 10, None).await.expect("claim the retry");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, "d2");
    assert_eq!(again[0].attempts.len(), 1);
    assert_eq!(again[0].attempts[0].response_code, Some(500));
    n.record_attempt("d2", "b", &attempt(2, "delivered", Some(200)), &AfterAttempt::Delivered)
        .await
        .expect("delivered at last");
    // A retry later than now is not due.
    n.enqueue(vec![new("d4", &sub.id)]).await.expect("enqueue");
    n.claim_deliveries("a", lease, 10, Some("d4")).await.expect("claim");
    let later = super::timestamp(chrono::Utc::now() + chrono::Duration::seconds(60));
    n.record_attempt("d4", "a", &attempt(1, "retry", None), &AfterAttempt::RetryAt(later))
        .await
        .expect("retry later");
    assert!(
        n.claim_deliveries("a", lease, 10, None)
            .await
            .expect("none due")
            .is_empty()
    );

    let log = n.deliveries(Some(&sub.id), 10).await.expect("log");
    let mut by_id: Vec<(String, String, usize)> = log
        .iter()
        .map(|d| (d.id.clone(), d.status.clone(), d.attempts.len()))
        .collect();
    by_id.sort();
    assert_eq!(
        by_id,
        vec![
            ("d1".to_string(), "delivered".to_string(), 1),
            ("d2".to_string(), "delivered".to_string(), 2),
            ("d4".to_string(), "pending".to_string(), 1),
        ]
    );
    let d2 = n.delivery("d2").await.expect("get").expect("found");
    assert_eq!(
        d2.attempts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(),
        ["retry", "delivered"]
    );
    assert!(d2.finished_at.is_some());
    assert_eq!(
        n.delivery("d3").await.expect("get").map(|d| d.status),
        Some("failed".to_string())
    );
    assert_eq!(n.deliveries(None, 10).await.expect("all").len(), 4);
    assert_eq!(n.deliveries(None, 2).await.expect("limited").len(), 2);

    // A subscription's deliveries go with it.
    assert!(n.delete_subscription(&other.id).await.expect("delete"));
    assert!(n.delivery("d3").await.expect("get").is_none());

    // A delivery queued under a claim is its holder's from the start: no worker takes it, the holder records.
    let claimed = n
        .enqueue_claimed(new("d5", &sub.id), "a", lease)
        .await
        .expect("enqueue claimed");
    assert_eq!((claimed.id.as_str(), claimed.status.as_str()), ("d5", "pending"));
    assert!(claimed.attempts.is_empty());
    assert_eq!(n.delivery("d5").await.expect("get"), Some(claimed));
    assert!(
        n.claim_deliveries("b", lease, 10, None)
            .await
            .expect("none free")
            .is_empty(),
        "d5 is a's"
    );
    assert!(matches!(
        n.record_attempt("d5", "b", &attempt(1, "delivered", Some(200)), &AfterAttempt::Delivered)
            .await,
        Err(StoreError::Fenced(_))
    ));
    n.record_attempt("d5", "a", &attempt(1, "delivered", Some(200)), &AfterAttempt::Delivered)
        .await
        .expect("the holder records");

    // The oldest pending real-time event per source.
    assert!(n.oldest_pending_events().await.expect("none").is_empty());
    let push = |id: &str| NewEvent {
        source_id: source.clone(),
        kind: "user".into(),
        entity_id: id.into(),
        operation: "create".into(),
        body: Some(json!({"id": id})),
        received_by: "pusher".into(),
    };
    let first = stores.events.append(push("u1")).await.expect("append");
    stores.events.append(push("u2")).await.expect("append");
    let oldest = n.oldest_pending_events().await.expect("oldest");
    assert_eq!(oldest, vec![(source.clone(), first.received_at.clone())]);
}

/// Finished deliveries (delivered or failed) are pruned in batches with their attempts once past the
/// cut-off; pending ones stay, with or without attempts, whatever their age.
pub async fn delivery_retention(stores: Stores) {
    use super::notifications::{AfterAttempt, Attempt, Channel, NewDelivery, SubscriptionSpec};
    let n = &stores.notifications;
    let spec = SubscriptionSpec {
        system_id: None,
        kinds: vec!["job.failed".into()],
        channel: Channel::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
        },
        backlog_minutes: 15,
        description: String::new(),
    };
    let sub = n.create_subscription(&spec, None).await.expect("create");
    let new = |id: &str| NewDelivery {
        id: id.into(),
        subscription_id: sub.id.clone(),
        channel: "webhook".into(),
        kind: "job.failed".into(),
        payload: json!({"id": id}),
    };
    n.enqueue(["delivered", "failed", "retrying", "waiting"].map(new).to_vec())
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(30);
    assert_eq!(n.claim_deliveries("a", lease, 10, None).await.expect("claim").len(), 4);
    let attempt = |status: &str| Attempt {
        number: 1,
        at: super::now(),
        status: status.into(),
        response_code: Some(500),
        error: None,
    };
    n.record_attempt("delivered", "a", &attempt("delivered"), &AfterAttempt::Delivered)
        .await
        .expect("delivered");
    n.record_attempt("failed", "a", &attempt("failed"), &AfterAttempt::Failed)
        .await
        .expect("failed");
    let later = super::timestamp(chrono::Utc::now() + chrono::Duration::hours(1));
    n.record_attempt("retrying", "a", &attempt("retry"), &AfterAttempt::RetryAt(later))
        .await
        .expect("retry");

    let retention = &stores.retention;
    let past = "2000-01-01T00:00:00.000Z";
    let future = "9999-01-01T00:00:00.000Z";
    assert_eq!(
        retention.prune_deliveries(past, 10).await.expect("prune"),
        0,
        "nothing finished before 2000"
    );
    assert_eq!(
        retention.prune_deliveries(future, 1).await.expect("prune"),
        1,
        "one batch"
    );
    assert_eq!(retention.prune_deliveries(future, 1).await.expect("prune"), 1);
    assert_eq!(
        retention.prune_deliveries(future, 10).await.expect("prune"),
        0,
        "pending deliveries are never pruned"
    );
    assert!(n.delivery("delivered").await.expect("get").is_none());
    assert!(n.delivery("failed").await.expect("get").is_none());
    let retrying = n.delivery("retrying").await.expect("get").expect("a retry stays");
    assert_eq!((retrying.status.as_str(), retrying.attempts.len()), ("pending", 1));
    assert!(
        n.delivery("waiting").await.expect("get").is_some(),
        "a delivery not tried yet stays"
    );
    assert_eq!(n.deliveries(None, 10).await.expect("log").len(), 2);
}
