//! Quarantine end to end (issue 19): a UAA target whose credentials are revoked is quarantined by a run, the
//! next run skips it, a real-time push for it is parked, and once the credentials are back the probe (its
//! Test Connection) releases it: the parked event resumes and the next run provisions everything.

use std::time::{Duration, Instant};

use provisio::server::Settings;
use provisio_tests::sim::{ias, uaa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::provisioning::props;
use crate::support::Service;

const PUSHER: (&str, &str) = ("ias-pusher", "pusher-password-1");

async fn run(service: &Service, source: &str) -> Value {
    service
        .run_job(source, json!({"type": "read"}), Duration::from_secs(120))
        .await
}

async fn system(service: &Service, id: &str) -> Value {
    let (status, body) = service.admin(Method::GET, &format!("/api/v1/systems/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_quarantine_a_target_until_the_probe_finds_them_restored() {
    let service = Service::start_with(Settings {
        quarantine_probe: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let mut changes = service.state.quarantine.subscribe();
    let ias_sim = ias::spawn(ias::Options {
        users: 5,
        ..Default::default()
    })
    .await
    .expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    let source = service
        .create_system(json!({"name": "IAS", "type": "ias", "role": "source",
            "properties": props(json!({"URL": ias_sim.base_url, "Authentication": "BasicAuthentication",
                "User": ias_sim.options().client_id, "Password": ias_sim.options().client_secret}))}))
        .await;
    let target = service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "xsuaa.origin": "sap.custom"}))}),
        )
        .await;
    let fresh = system(&service, &target).await;
    assert_eq!(
        (&fresh["quarantine"], &fresh["lastConnectionTest"]),
        (&Value::Null, &Value::Null),
        "{fresh}"
    );
    let (status, body) = service
        .admin(Method::POST, &format!("/api/v1/systems/{target}/release"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to release: {body}");
    let (status, _) = service
        .admin(Method::POST, "/api/v1/systems/no-such-system/release", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The credentials are revoked: every write is refused, and the run quarantines the target.
    uaa_sim.state().set_credentials_revoked(true);
    let job = run(&service, &source).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    assert_eq!(job["quarantinedTargets"][0]["targetId"], target.as_str(), "{job}");
    assert_eq!(job["quarantinedTargets"][0]["reason"], "credentials", "{job}");
    assert!(job["outcome"].to_string().contains("UAA was quarantined"), "{job}");
    assert_eq!(uaa_sim.state().user_count(), 0);
    let quarantined = system(&service, &target).await;
    assert_eq!(quarantined["quarantine"]["reason"], "credentials", "{quarantined}");
    for field in ["since", "nextProbeAt", "message"] {
        assert!(quarantined["quarantine"][field].is_string(), "{field}: {quarantined}");
    }
    let (_, list) = service.admin(Method::GET, "/api/v1/systems", None).await;
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == target.as_str()))
        .cloned()
        .expect("listed");
    assert_eq!(listed["quarantine"]["reason"], "credentials", "{listed}");
    match changes.try_recv() {
        Ok(provisio::quarantine::QuarantineChange::Quarantined { system_id, reason, .. }) => {
            assert_eq!((system_id.as_str(), reason.as_str()), (target.as_str(), "credentials"));
        }
        other => panic!("no quarantine announced: {other:?}"),
    }
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("provisio_quarantine_total{reason=\"credentials\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("provisio_quarantined_targets"), "{metrics}");

    // The next run skips it, saying why; a real-time push for it is parked, not failed.
    let job = run(&service, &source).await;
    assert_eq!(job["skippedTargets"][0]["targetId"], target.as_str(), "{job}");
    assert_eq!(job["skippedTargets"][0]["reason"], "quarantined", "{job}");
    assert_eq!(job["skippedTargets"][0]["quarantine"]["reason"], "credentials", "{job}");
    assert!(job["outcome"].to_string().contains("UAA is quarantined"), "{job}");
    let (status, body) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": PUSHER.0, "password": PUSHER.1, "permissions": ["realtime-api"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let pushed = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:sap:2.0:User"],
        "id": "P900", "userName": "rt.parked",
        "urn:ietf:params:scim:schemas:extension:sap:2.0:User": {"userId": "P900", "userUuid": "uuid-P900"},
        "name": {"givenName": "Parked", "familyName": "Pushed"},
        "displayName": "Parked Pushed",
        "emails": [{"value": "rt.parked@example.com", "primary": true, "type": "work"}],
        "active": true
    });
    let response = service
        .http
        .post(format!(
            "{}/ipsproxy/api/v1/systems/{source}/entities/user",
            service.url
        ))
        .basic_auth(PUSHER.0, Some(PUSHER.1))
        .header("Content-Type", "application/scim+json")
        .body(pushed.to_string())
        .send()
        .await
        .expect("push");
    assert!(response.status().is_success(), "{}", response.status());
    let event_state = |service: &Service| {
        let events = service.state.stores.events.clone();
        let source = source.clone();
        async move {
            let log = events.list(Some(&source), None, None, 10).await.expect("log");
            log.first().map(|e| (e.state.clone(), e.results.clone()))
        }
    };
    let started = Instant::now();
    loop {
        if let Some((state, results)) = event_state(&service).await
            && state == "parked"
        {
            assert!(results.expect("results").to_string().contains("quarantined"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the event was not parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Probes fail while the credentials stay revoked; the last Test Connection says so.
    let started = Instant::now();
    loop {
        let body = system(&service, &target).await;
        // `probes` counts probes claimed, so it moves before the probe's Test Connection is recorded.
        if body["quarantine"]["probes"].as_i64().unwrap_or(0) >= 1 && body["lastConnectionTest"].is_object() {
            assert_eq!(body["lastConnectionTest"]["ok"], false, "{body}");
            assert!(body["lastConnectionTest"]["at"].is_string(), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no probe: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        system(&service, &target).await["quarantine"].is_object(),
        "still quarantined"
    );

    // The credentials are back: the probe releases the target by itself.
    uaa_sim.state().set_credentials_revoked(false);
    let started = Instant::now();
    loop {
        let body = system(&service, &target).await;
        if body["quarantine"].is_null() {
            assert_eq!(body["lastConnectionTest"]["ok"], true, "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "not released: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match changes.recv().await {
        Ok(provisio::quarantine::QuarantineChange::Released { system_id, by, .. }) => {
            assert_eq!((system_id.as_str(), by.as_str()), (target.as_str(), "probe"));
        }
        other => panic!("no release announced: {other:?}"),
    }
    // The parked event resumes and reaches the target.
    let started = Instant::now();
    while uaa_sim.state().user_by_name("rt.parked").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the parked event did not resume: {:?}",
            event_state(&service).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the next run provisions what was missed.
    let job = run(&service, &source).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["skippedTargets"], json!([]), "{job}");
    assert!(uaa_sim.state().user_count() >= 5, "the five users read are there");
}
