//! Reads that do not end the way the connector contract says — a repeated cursor, pages that bring nothing
//! new, a source without end, throttling forever — end the run with a failed read that names the ceiling
//! and deletes nothing, and a stop takes effect at once whatever the run waits for. The source is the
//! hostile test plugin (`read-mode`), the target a UAA simulator.

use std::time::{Duration, Instant};

use provisio_tests::sim::uaa;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Service, hostile_plugin};

/// SCIM users as they come, keyed by their id.
fn read_transformation() -> Value {
    json!({"user": {"mappings": [
        {"sourcePath": "$", "targetPath": "$"},
        {"sourcePath": "$.id", "targetPath": "$.id", "targetVariable": "entityIdSourceSystem"}
    ]}})
}

fn source_spec(name: &str, read_mode: &str, extra: &[(&str, &str)]) -> Value {
    let mut properties = json!({
        "read-mode": read_mode,
        "ips.failed.request.retry.attempts": "2",
        "ips.failed.request.retry.attempts.interval": "0.05",
    });
    for (k, v) in extra {
        properties[*k] = json!(v);
    }
    json!({"name": name, "type": "hostile", "role": "source", "properties": properties,
        "transformation": read_transformation()})
}

struct Setup {
    service: Service,
}

/// A hostile source, and a UAA target of its own.
struct Pair {
    source: String,
    target: String,
    uaa: uaa::Simulator,
}

impl Setup {
    async fn start() -> Setup {
        let service = Service::start().await;
        let (status, loaded) = service.upload_plugin(hostile_plugin()).await;
        assert_eq!(status, 201, "{loaded}");
        Setup { service }
    }

    async fn source(&self, name: &str, read_mode: &str, extra: &[(&str, &str)]) -> Pair {
        let uaa = uaa::spawn(uaa::Options::default()).await.expect("uaa");
        let source = self.service.create_system(source_spec(name, read_mode, extra)).await;
        let target = self
            .service
            .create_system(
                json!({"name": format!("UAA of {name}"), "type": "xsuaa", "role": "target",
                "sources": [source],
                "properties": {"URL": uaa.base_url,
                    "OAuth2TokenServiceURL": uaa.token_url.clone().expect("token url"),
                    "User": uaa.options().client_id, "Password": uaa.options().client_secret,
                    "provisio.rate.limit": "10000",
                    "ips.failed.request.retry.attempts.interval": "0.05"}}),
            )
            .await;
        Pair { source, target, uaa }
    }

    async fn start_job(&self, source: &str) -> String {
        let (status, job) = self
            .service
            .admin(
                Method::POST,
                &format!("/api/v1/systems/{source}/jobs"),
                Some(json!({"type": "read"})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{job}");
        job["id"].as_str().expect("job id").to_string()
    }

    async fn job(&self, id: &str) -> Value {
        self.service
            .admin(Method::GET, &format!("/api/v1/jobs/{id}"), None)
            .await
            .1
    }

    /// Waits (at most `limit`) for a run to end.
    async fn ended(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(id).await;
            if matches!(
                job["status"].as_str(),
                Some("Success" | "Finished with Error" | "Manually Terminated")
            ) {
                return job;
            }
            assert!(
                started.elapsed() < limit,
                "job {id} did not end within {limit:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run(&self, source: &str) -> Value {
        let id = self.start_job(source).await;
        self.ended(&id, Duration::from_secs(120)).await
    }
}

fn outcome(job: &Value) -> String {
    job["outcome"].to_string()
}

fn target_stats(job: &Value, target: &str) -> Value {
    job["statistics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["targetId"] == target && r["entityType"] == "user")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_the_read_and_deletes_nothing() {
    let setup = Setup::start().await;
    let Pair { source, target, uaa } = setup.source("cursor", "pages", &[]).await;
    let job = setup.run(&source).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(uaa.user_count(), 6, "three pages of two users");

    // Now the second page names itself as the next page: users 5 and 6 are never read.
    let (status, body) = setup
        .service
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{source}"),
            Some(source_spec("cursor", "repeat-cursor", &[])),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let job = setup.run(&source).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    let said = outcome(&job);
    assert!(said.contains(r#"the cursor \"1\" twice"#), "{said}");
    assert!(said.contains("nothing was deleted"), "{said}");
    assert_eq!(target_stats(&job, &target)["deleted"], 0, "{job}");
    assert_eq!(uaa.user_count(), 6, "the users the read did not reach are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_make_no_progress_or_pass_a_ceiling_fail() {
    let setup = Setup::start().await;
    // (read mode, properties, the words the outcome must contain, users written)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u64);
    let cases: [Case; 4] = [
        ("empty-pages", &[], "provisio.job.maxPagesWithoutProgress = 100", 0),
        (
            "same-users",
            &[("provisio.job.maxPagesWithoutProgress", "5")],
            "provisio.job.maxPagesWithoutProgress = 5",
            2,
        ),
        (
            "ever-new-ids",
            &[("provisio.job.maxPages", "10")],
            "the ceiling provisio.job.maxPages allows",
            20,
        ),
        (
            "ever-new-ids",
            &[("provisio.job.maxEntities", "7")],
            "provisio.job.maxEntities = 7",
            8,
        ),
    ];
    for (i, (mode, extra, words, written)) in cases.into_iter().enumerate() {
        let Pair { source, target, uaa } = setup.source(&format!("runaway {i}"), mode, extra).await;
        let started = Instant::now();
        let job = setup.run(&source).await;
        assert_eq!(job["status"], "Finished with Error", "{mode}: {job}");
        let said = outcome(&job);
        assert!(said.contains(words), "{mode}: {said}");
        assert!(said.contains("nothing was deleted"), "{mode}: {said}");
        let stats = target_stats(&job, &target);
        assert_eq!(stats["created"].as_u64().unwrap_or(0), written, "{mode}: {job}");
        assert_eq!(uaa.user_count() as u64, written, "{mode}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{mode}: {:?}",
            started.elapsed()
        );
        // The failed read is in the job log, with the reason.
        let (_, log) = setup
            .service
            .admin(
                Method::GET,
                &format!(
                    "/api/v1/jobs/{}/entities?outcome=failed",
                    job["id"].as_str().expect("id")
                ),
                None,
            )
            .await;
        assert!(
            log["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["operation"] == "read" && e["reason"].as_str().is_some_and(|r| r.contains(words))),
            "{mode}: {log}"
        );
    }
    // A bad ceiling is refused with the property's name.
    let bad = setup
        .source("bad ceiling", "pages", &[("provisio.job.maxPages", "0")])
        .await;
    let job = setup.run(&bad.source).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    assert!(
        outcome(&job).contains("provisio.job.maxPages must be at least 1"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cuts_a_throttled_read_short() {
    let setup = Setup::start().await;
    let Pair { source, target, .. } = setup.source("throttled", "throttle-forever", &[]).await;
    let id = setup.start_job(&source).await;
    // Let the read be throttled and the run settle into its wait for "Retry-After: forever".
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = setup.job(&id).await;
    assert_eq!(job["status"], "Running", "{job}");
    let asked = Instant::now();
    let (status, body) = setup
        .service
        .admin(Method::POST, &format!("/api/v1/jobs/{id}/stop"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let job = setup.ended(&id, Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert_eq!(job["status"], "Manually Terminated", "{job}");
    // The wait races the stop: it ends at once (the margin is for a loaded machine).
    assert!(took < Duration::from_secs(2), "the stop took {took:?}");
    let said = outcome(&job);
    assert!(!said.contains("failed"), "a stop is no read failure: {said}");
    assert_eq!(target_stats(&job, &target)["deleted"].as_u64().unwrap_or(0), 0);
    // The source is free again at once.
    let next = setup.start_job(&source).await;
    assert_eq!(setup.job(&next).await["status"], "Running");
    let (status, _) = setup
        .service
        .admin(Method::POST, &format!("/api/v1/jobs/{next}/stop"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    setup.ended(&next, Duration::from_secs(30)).await;
}
