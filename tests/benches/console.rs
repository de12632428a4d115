//! Console figures (issue 18): with 1,000 systems and 100,000 per-entity log entries in the store, the
//! server's render time of every console page (p95 of `BENCH_REQUESTS` requests per page, default 50, after a
//! warm-up; measured around the router's handling, the body included) and each page's weight with the
//! assets it loads (style sheet and scripts). Targets: p95 < 50 ms, page + assets < 150 KB.
//!
//! Long lists are paged by the console (the per-entity log 50 entries a page, the systems list 100 systems a
//! page; the plugins page names ten systems per version).
//!
//! Run: `cargo bench -p provisio-tests --bench console`. Prints a table and PASS/FAIL per page, exits 0.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, header};
use provisio::server::Settings;
use provisio::store::jobs::{EntityLogEntry, JobRecord, JobStatus};
use provisio::store::notifications::{Channel, NewDelivery, SubscriptionSpec};
use provisio::store::systems::{Role, SystemSpec, VersionNote};
use tower::ServiceExt as _;

mod common;
use common::{ADMIN, ADMIN_PRINCIPAL, boot, env_or, percentile};

const SYSTEMS: usize = 1000;
const LOG_ENTRIES: usize = 100_000;
const P95_TARGET_MS: f64 = 50.0;
const WEIGHT_TARGET: usize = 150 * 1024;

struct Answer {
    status: u16,
    cookies: Vec<String>,
    body: String,
}

async fn send(router: &axum::Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next().map(String::from))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    Answer {
        status,
        cookies,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request")
}

fn csrf_of(page: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let at = page.find(marker).expect("a CSRF field") + marker.len();
    page[at..].split('"').next().expect("its value").to_string()
}

async fn login(router: &axum::Router) -> String {
    let page = send(router, get("/console/login", "")).await;
    let login_cookie = page.cookies.first().cloned().expect("login cookie");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("name", ADMIN.0),
            ("password", ADMIN.1),
            ("_csrf", &csrf_of(&page.body)),
            ("next", "/console"),
        ])
        .finish();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/console/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, login_cookie)
        .body(Body::from(body))
        .expect("request");
    let answer = send(router, request).await;
    assert_eq!(answer.status, 303, "login: {}", answer.body);
    answer
        .cookies
        .into_iter()
        .find(|c| c.starts_with("provisio_session="))
        .expect("session cookie")
}

fn spec(n: usize, role: Role, sources: Vec<String>) -> SystemSpec {
    SystemSpec {
        name: format!("{} {n:04}", role.as_str()),
        connector: "scim".into(),
        connector_version: None,
        role,
        properties: [("URL".to_string(), format!("https://system-{n}.example/scim"))].into(),
        secrets: Default::default(),
        sources,
        transformation: Some(serde_json::json!({"user": {"mappings": [
            {"sourcePath": "$.userName", "targetPath": "$.userName"},
            {"sourcePath": "$.emails", "targetPath": "$.emails"},
            {"constant": n, "targetPath": "$.costCenter"}
        ]}})),
    }
}

/// The assets a page loads: the `href`/`src` of its style sheets and scripts under `/console/assets/`.
fn assets_of(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["href=\"/console/assets/", "src=\"/console/assets/"] {
        let mut rest = page;
        while let Some(at) = rest.find(marker) {
            let start = at + marker.len() - "/console/assets/".len();
            let tail = &rest[start..];
            let end = tail.find('"').unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    out.sort();
    out.dedup();
    out
}

fn main() {
    let requests = env_or("BENCH_REQUESTS", 50) as usize;
    let rt = provisio::memory::runtime().worker_threads(2).build().expect("runtime");
    let data = tempfile::tempdir().expect("data dir");
    rt.block_on(async move {
        let state = boot(data.path(), Settings::default(), &[ADMIN_PRINCIPAL]).await;
        let seeded = Instant::now();
        let systems = &state.stores.systems;
        let mut sources = Vec::new();
        for n in 0..SYSTEMS / 2 {
            sources.push(systems.create(spec(n, Role::Source, vec![])).await.expect("source").id);
        }
        for n in 0..SYSTEMS / 2 {
            let feeds = vec![
                sources[n % sources.len()].clone(),
                sources[(n * 7 + 3) % sources.len()].clone(),
            ];
            systems.create(spec(n, Role::Target, feeds)).await.expect("target");
        }
        let source = sources[0].clone();
        // A transformation history of 20 versions on the first source.
        for v in 0..20 {
            let mut s = systems.get(&source).await.expect("get").expect("present").spec;
            s.transformation = Some(serde_json::json!({"user": {"mappings": [
                {"sourcePath": "$.userName", "targetPath": "$.userName"},
                {"constant": v, "targetPath": "$.version"}
            ]}}));
            let note = VersionNote {
                author: ADMIN.0.into(),
                description: Some(format!("change {v}")),
            };
            systems.replace_noted(&source, s, &note).await.expect("version");
        }
        // 100,000 log entries: 10 runs of 10,000.
        let mut last_job = String::new();
        for j in 0..10 {
            let job = JobRecord {
                id: format!("job-{j}"),
                source_id: source.clone(),
                job_type: "read".into(),
                read_mode: "full".into(),
                trigger: "manual".into(),
                started_by: ADMIN.0.into(),
                status: JobStatus::Success,
                summary: serde_json::json!({"sourceName": "source 0000", "statistics": []}),
                started_at: provisio::store::now(),
                ended_at: Some(provisio::store::now()),
                node: None,
                attempt: 1,
            };
            state
                .stores
                .jobs
                .insert(&job, Duration::from_secs(60))
                .await
                .expect("job");
            let per_job = LOG_ENTRIES / 10;
            for batch in 0..per_job / 1000 {
                let entries: Vec<EntityLogEntry> = (0..1000)
                    .map(|i| {
                        let n = batch * 1000 + i;
                        EntityLogEntry {
                            target_id: Some(format!("target-{}", n % 7)),
                            entity_type: "user".into(),
                            source_id: Some(format!("user-{n}")),
                            operation: if n % 10 == 0 { "update" } else { "create" }.into(),
                            outcome: if n % 50 == 0 { "failed" } else { "success" }.into(),
                            reason: (n % 50 == 0).then(|| "the target answered 409".to_string()),
                            changes: Some(serde_json::json!({"displayName": format!("User {n}")})),
                            ..EntityLogEntry::default()
                        }
                    })
                    .collect();
                state
                    .stores
                    .jobs
                    .append_log(&job.id, None, (batch * 1000 + 1) as i64, entries)
                    .await
                    .expect("log");
            }
            last_job = job.id.clone();
        }
        // 20 notification subscriptions (half per source, half for everything) and 1,000 deliveries.
        let mut subscriptions = Vec::new();
        for (n, source) in sources.iter().enumerate().take(20) {
            let spec = SubscriptionSpec {
                system_id: (n % 2 == 0).then(|| source.clone()),
                kinds: vec!["job.failed".into(), "job.recovered".into()],
                channel: Channel::Webhook {
                    url: format!("https://hooks-{n}.example/provisio"),
                },
                backlog_minutes: 15,
                description: format!("subscription {n}"),
            };
            let created = state
                .stores
                .notifications
                .create_subscription(&spec, Some("a-webhook-secret-of-32-characters"))
                .await
                .expect("subscription");
            subscriptions.push(created.id);
        }
        let deliveries = (0..1000)
            .map(|i| NewDelivery {
                id: format!("delivery-{i}"),
                subscription_id: subscriptions[i % subscriptions.len()].clone(),
                channel: "webhook".into(),
                kind: "job.failed".into(),
                payload: serde_json::json!({"kind": "job.failed", "summary": format!("Job {i} failed")}),
            })
            .collect();
        state
            .stores
            .notifications
            .enqueue(deliveries)
            .await
            .expect("deliveries");
        println!(
            "seeded {SYSTEMS} systems and {LOG_ENTRIES} log entries in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        let router = provisio::api::router(state.clone());
        let cookie = login(&router).await;
        let pages = [
            "/console".to_string(),
            "/console/systems".to_string(),
            "/console/systems?page=10".to_string(),
            "/console/systems?connector=scim&page=5".to_string(),
            "/console/systems?role=target&q=target%2004".to_string(),
            format!("/console/systems/{source}"),
            format!("/console/systems/{source}/edit"),
            format!("/console/systems/{source}/transformation"),
            format!("/console/systems/{source}/transformation/history"),
            format!("/console/systems/{source}/transformation/diff?from=1&to=21"),
            "/console/jobs".to_string(),
            format!("/console/jobs/{last_job}"),
            format!("/console/jobs/{last_job}/log"),
            format!("/console/jobs/{last_job}/log?outcome=failed&q=409"),
            "/console/held".to_string(),
            "/console/realtime".to_string(),
            "/console/plugins".to_string(),
            "/console/users".to_string(),
            "/console/audit".to_string(),
            "/console/notifications".to_string(),
            format!("/console/notifications?subscription={}", subscriptions[0]),
            "/console/notifications/new".to_string(),
        ];
        let mut asset_sizes = std::collections::BTreeMap::new();
        println!(
            "{:<62} {:>8} {:>8} {:>10} {:>10}  verdict",
            "page", "p50 ms", "p95 ms", "page KB", "+assets KB"
        );
        let mut failed = 0;
        for page in &pages {
            let first = send(&router, get(page, &cookie)).await;
            assert_eq!(first.status, 200, "{page}: {}", first.body);
            for _ in 0..3 {
                send(&router, get(page, &cookie)).await;
            }
            let mut times = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                let answer = send(&router, get(page, &cookie)).await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(answer.status, 200);
            }
            times.sort_by(f64::total_cmp);
            let (p50, p95) = (
                percentile(&times, 0.5).unwrap_or(0.0),
                percentile(&times, 0.95).unwrap_or(0.0),
            );
            let mut weight = first.body.len();
            for asset in assets_of(&first.body) {
                if !asset_sizes.contains_key(&asset) {
                    let a = send(&router, get(&asset, "")).await;
                    asset_sizes.insert(asset.clone(), a.body.len());
                }
                weight += asset_sizes[&asset];
            }
            let ok = p95 < P95_TARGET_MS && weight < WEIGHT_TARGET;
            if !ok {
                failed += 1;
            }
            println!(
                "{:<62} {p50:>8.2} {p95:>8.2} {:>10.1} {:>10.1}  {}",
                page.chars().take(62).collect::<String>(),
                first.body.len() as f64 / 1024.0,
                weight as f64 / 1024.0,
                if ok { "PASS" } else { "FAIL" }
            );
        }
        for (asset, size) in &asset_sizes {
            println!("asset {asset}: {:.1} KB", *size as f64 / 1024.0);
        }
        println!(
            "{} of {} pages within p95 < {P95_TARGET_MS} ms and page + assets < {} KB",
            pages.len() - failed,
            pages.len(),
            WEIGHT_TARGET / 1024
        );
    });
}
