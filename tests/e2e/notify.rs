//! Notifications end to end (issue 19): a failing job's signed webhook (retried past a 500, one delivery
//! id on every attempt) and its mail through a local SMTP sink without STARTTLS; the "back to normal" pair
//! after the fix; a storm of failures collapsed into one mail, the next mail counting the suppressed ones;
//! the subscription API's rules and the delivery log.

use std::time::Duration;

use provisio::notify::NotifySettings;
use provisio::server::Settings;
use provisio_tests::sim::{ias, uaa};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::provisioning::props;
use crate::sinks::{SmtpSink, WebhookReceiver};
use crate::support::Service;

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// The collapsing window of the tests: long enough for a storm, short enough to wait out.
const WINDOW: Duration = Duration::from_secs(6);

const WAIT: Duration = Duration::from_secs(30);

fn settings(smtp: &SmtpSink) -> Settings {
    Settings {
        notifications: NotifySettings {
            // Plain smtp://: STARTTLS when offered — the sink does not offer it, so the mail goes in plain.
            smtp_url: Some(format!("smtp://127.0.0.1:{}", smtp.port)),
            smtp_from: Some("Provisio <provisio@test.example>".into()),
            retry_base: Duration::from_millis(100),
            collapse_window: WINDOW,
            poll: Duration::from_millis(100),
            ..NotifySettings::default()
        },
        ..Settings::default()
    }
}

async fn run_job(service: &Service, source: &str) -> Value {
    service
        .run_job(source, json!({"type": "read"}), Duration::from_secs(120))
        .await
}

/// The source's definition with this password.
fn source_body(sim: &ias::Simulator, password: &str) -> Value {
    json!({"name": "IAS", "type": "ias", "role": "source",
        "properties": props(json!({"URL": sim.base_url, "Authentication": "BasicAuthentication",
            "User": sim.options().client_id, "Password": password}))})
}

async fn set_password(service: &Service, source: &str, sim: &ias::Simulator, password: &str) {
    let (status, body) = service
        .admin(
            Method::PUT,
            &format!("/api/v1/systems/{source}"),
            Some(source_body(sim, password)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn subscribe(service: &Service, body: Value) -> Value {
    let (status, created) = service
        .admin(Method::POST, "/api/v1/notifications/subscriptions", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_told_once_by_signed_webhook_and_mail_then_back_to_normal_and_a_storm_is_one_mail() {
    let smtp = SmtpSink::start().await;
    // The first request is answered 500: the delivery is tried again under the same id.
    let hooks = WebhookReceiver::start(SECRET, &[500]).await;
    let service = Service::start_with(settings(&smtp)).await;
    let ias_sim = ias::spawn(ias::Options {
        users: 3,
        ..Default::default()
    })
    .await
    .expect("ias");
    let uaa_sim = uaa::spawn(uaa::Options::default()).await.expect("uaa");
    // The source's password is wrong: its reads fail.
    let source = service.create_system(source_body(&ias_sim, "wrong-password")).await;
    let target = service
        .create_system(
            json!({"name": "UAA", "type": "xsuaa", "role": "target", "sources": [source],
            "properties": props(json!({"URL": uaa_sim.base_url,
                "OAuth2TokenServiceURL": uaa_sim.token_url.clone().expect("token url"),
                "User": uaa_sim.options().client_id, "Password": uaa_sim.options().client_secret,
                "xsuaa.origin": "sap.custom"}))}),
        )
        .await;
    let hook = subscribe(
        &service,
        json!({"systemId": source, "channel": "webhook", "url": hooks.url, "secret": SECRET,
            "kinds": ["job.failed", "job.finished_with_errors", "job.recovered", "deletes.held"]}),
    )
    .await;
    assert!(hook.get("secret").is_none(), "a given secret is never answered: {hook}");
    assert_eq!(hook["hasSecret"], true);
    let mail = subscribe(
        &service,
        json!({"channel": "email", "recipients": ["ops@example.com"],
            "kinds": ["job.failed", "job.recovered"]}),
    )
    .await;
    let (status, one) = service
        .admin(
            Method::GET,
            &format!(
                "/api/v1/notifications/subscriptions/{}",
                hook["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!one.to_string().contains(SECRET), "the secret is write-only: {one}");

    // 1. The run fails: one signed webhook (after a 500 and a retry) and one mail.
    let job = run_job(&service, &source).await;
    assert_eq!(job["status"], "Finished with Error", "{job}");
    let got = hooks.wait_delivered("job.failed", 1, WAIT).await;
    smtp.wait_mails("ops@example.com", "failed", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let failed: Vec<_> = hooks
        .received()
        .into_iter()
        .filter(|h| h.event == "job.failed")
        .collect();
    assert_eq!(failed.len(), 2, "a 500, then the retry: {failed:?}");
    assert!(failed.iter().all(|h| h.signed), "every request is signed: {failed:?}");
    assert_eq!(
        failed[0].delivery, failed[1].delivery,
        "one delivery id on every attempt"
    );
    assert_eq!(failed[0].delivery, failed[0].idempotency_key);
    assert_eq!(hooks.delivered("job.failed").len(), 1, "exactly one delivered");
    let body = &got[0].body;
    assert_eq!(body["kind"], "job.failed");
    assert_eq!(body["system"]["id"], source.as_str(), "{body}");
    assert_eq!(body["system"]["name"], "IAS");
    assert_eq!(body["details"]["jobId"], job["id"], "{body}");
    assert!(body["occurredAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert!(body["summary"].as_str().is_some_and(|s| s.contains("IAS")), "{body}");
    let mails = smtp.mails_to("ops@example.com", "failed");
    assert_eq!(mails.len(), 1, "exactly one mail");
    assert!(mails[0].data.contains("job.failed"), "{}", mails[0].data);
    assert!(mails[0].from.contains("provisio@test.example"), "{}", mails[0].from);

    // The delivery log shows both attempts of the webhook.
    let (status, log) = service
        .admin(
            Method::GET,
            &format!(
                "/api/v1/notifications/deliveries?subscription={}",
                hook["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entry = log
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["kind"] == "job.failed")
        .cloned()
        .unwrap_or_else(|| panic!("no job.failed delivery in {log}"));
    assert_eq!(entry["status"], "delivered", "{entry}");
    assert_eq!(entry["idempotencyKey"], failed[0].delivery.as_str());
    let codes: Vec<i64> = entry["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["responseCode"].as_i64())
        .collect();
    assert_eq!(codes, vec![500, 200], "{entry}");
    assert_eq!(entry["attempts"][0]["status"], "retry");

    // 2. Fixed: the next good run is "back to normal", by webhook and by mail.
    set_password(&service, &source, &ias_sim, &ias_sim.options().client_secret).await;
    let job = run_job(&service, &source).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(uaa_sim.user_count(), 3);
    let recovered = hooks.wait_delivered("job.recovered", 1, WAIT).await;
    assert!(recovered[0].signed);
    assert_eq!(recovered[0].body["details"]["jobId"], job["id"]);
    smtp.wait_mails("ops@example.com", "back to normal", 1, WAIT).await;
    // Another good run is nothing to tell.
    run_job(&service, &source).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hooks.delivered("job.recovered").len(), 1);
    assert_eq!(smtp.mails_to("ops@example.com", "back to normal").len(), 1);

    // 3. A storm: four failures in a row are four webhooks but one mail to a new subscriber.
    subscribe(
        &service,
        json!({"systemId": source, "channel": "email", "recipients": ["storm@example.com"],
            "kinds": ["job.failed"]}),
    )
    .await;
    set_password(&service, &source, &ias_sim, "wrong-again").await;
    let storm_started = std::time::Instant::now();
    for _ in 0..4 {
        let job = run_job(&service, &source).await;
        assert_eq!(job["status"], "Finished with Error", "{job}");
    }
    assert!(
        storm_started.elapsed() < WINDOW,
        "the storm took longer than the window; the test cannot tell"
    );
    hooks.wait_delivered("job.failed", 5, WAIT).await;
    smtp.wait_mails("storm@example.com", "failed", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        smtp.mails_to("storm@example.com", "failed").len(),
        1,
        "one mail for the storm"
    );
    // After the window (counted from the storm's mail) the next failure is mailed again, saying how many
    // were suppressed.
    tokio::time::sleep(WINDOW + Duration::from_millis(300)).await;
    run_job(&service, &source).await;
    let mails = smtp.wait_mails("storm@example.com", "failed", 2, WAIT).await;
    assert!(
        mails[1].data.contains("3 more occurrence(s)"),
        "the next mail counts the suppressed ones: {}",
        mails[1].data
    );
    let (_, metrics) = ((), service.metrics().await);
    assert!(
        metrics.contains("provisio_notification_attempts_total{channel=\"webhook\",outcome=\"retry\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("provisio_notifications_suppressed_total"), "{metrics}");
    let _ = (target, mail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_checked_tested_and_removed() {
    let smtp = SmtpSink::start().await;
    let hooks = WebhookReceiver::start("generated-secrets-are-not-known", &[]).await;
    let service = Service::start_with(settings(&smtp)).await;
    let bad = [
        json!({"channel": "webhook", "url": hooks.url, "kinds": []}),
        json!({"channel": "webhook", "url": hooks.url, "kinds": ["job.exploded"]}),
        json!({"channel": "webhook", "url": "ftp://x", "kinds": ["job.failed"]}),
        json!({"channel": "webhook", "url": hooks.url, "secret": "short", "kinds": ["job.failed"]}),
        json!({"channel": "email", "recipients": [], "kinds": ["job.failed"]}),
        json!({"channel": "email", "recipients": ["not an address"], "kinds": ["job.failed"]}),
        json!({"channel": "pager", "kinds": ["job.failed"]}),
        json!({"channel": "email", "recipients": ["a@example.com"], "kinds": ["job.failed"], "systemId": "nope"}),
        json!({"channel": "email", "recipients": ["a@example.com"], "kinds": ["realtime.backlog"], "backlogMinutes": 0}),
        json!({"kinds": ["job.failed"]}),
    ];
    for body in bad {
        let (status, answer) = service
            .admin(Method::POST, "/api/v1/notifications/subscriptions", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    }

    // A webhook without a secret gets one, answered once.
    let created = subscribe(
        &service,
        json!({"channel": "webhook", "url": hooks.url, "kinds": ["plugin.trapping"]}),
    )
    .await;
    let secret = created["secret"].as_str().expect("a generated secret").to_string();
    assert!(secret.len() >= 32);
    let id = created["id"].as_str().expect("id").to_string();
    let (_, listed) = service
        .admin(Method::GET, "/api/v1/notifications/subscriptions", None)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&secret), "{listed}");
    assert_eq!(listed[0]["systemId"], Value::Null);

    // A test send: one attempt, answered with its delivery.
    let (status, delivery) = service
        .admin(
            Method::POST,
            &format!("/api/v1/notifications/subscriptions/{id}/test"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{delivery}");
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["kind"], "test");
    let received = hooks.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].event, "test");
    assert!(
        !received[0].signed,
        "signed with the generated secret, not the receiver's"
    );

    // PUT replaces, keeping the secret; a new one is write-only too.
    let (status, replaced) = service
        .admin(
            Method::PUT,
            &format!("/api/v1/notifications/subscriptions/{id}"),
            Some(
                json!({"channel": "webhook", "url": hooks.url, "kinds": ["job.failed", "plugin.trapping"],
                "secret": "generated-secrets-are-not-known"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["kinds"], json!(["job.failed", "plugin.trapping"]));
    assert!(replaced.get("secret").is_none());
    service
        .admin(
            Method::POST,
            &format!("/api/v1/notifications/subscriptions/{id}/test"),
            None,
        )
        .await;
    assert!(hooks.received()[1].signed, "now signed with the receiver's secret");

    // A mail subscription's test through the sink; a receiver that refuses is a failed test.
    let mail = subscribe(
        &service,
        json!({"channel": "email", "recipients": ["Ops <ops@example.com>"], "kinds": ["deletes.held"]}),
    )
    .await;
    let (_, delivery) = service
        .admin(
            Method::POST,
            &format!(
                "/api/v1/notifications/subscriptions/{}/test",
                mail["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"][0]["responseCode"], 250, "{delivery}");
    assert_eq!(smtp.mails_to("ops@example.com", "Test notification").len(), 1);
    hooks.answer_next(&[410]);
    let (_, delivery) = service
        .admin(
            Method::POST,
            &format!("/api/v1/notifications/subscriptions/{id}/test"),
            None,
        )
        .await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["attempts"][0]["responseCode"], 410, "{delivery}");

    // Only admins.
    let (status, _) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": "reader",
            "password": "reader-password", "permissions": ["read-logs", "manage-systems"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let forbidden = service
        .http
        .get(format!("{}/api/v1/notifications/subscriptions", service.url))
        .basic_auth("reader", Some("reader-password"))
        .send()
        .await
        .expect("request");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);

    // Removed: gone, with its log.
    let (status, _) = service
        .admin(
            Method::DELETE,
            &format!("/api/v1/notifications/subscriptions/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .admin(Method::GET, &format!("/api/v1/notifications/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = service
        .admin(
            Method::GET,
            &format!("/api/v1/notifications/deliveries?subscription={id}"),
            None,
        )
        .await;
    assert_eq!(log, json!([]));
}
