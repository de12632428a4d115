//! The notifications page through the whole router: it renders, a non-admin is refused as by the API, a
//! POST without the CSRF token is refused, a planted script in a subscription's description and URL is
//! escaped, the add form keeps the API's rules, add → test → remove round trip.

use axum::http::StatusCode;
use serde_json::Value;

use super::tests::{ADMIN, HOSTILE, READER, csrf_of, get, login, post_form, send, state, token};
use crate::api::AppState;

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// The subscriptions as the API lists them.
async fn subscriptions(state: &AppState) -> Vec<Value> {
    let all = state.stores.notifications.subscriptions().await.expect("list");
    all.iter().map(crate::api::notify::subscription_view).collect()
}

/// A local webhook receiver answering 204 to every POST; its URL.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}/hook")
}

/// A port nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn the_page_and_the_form_render_for_an_admin() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let page = send(&state, get("/console/notifications", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<h1>Notifications</h1>"), "{}", page.body);
    assert!(page.body.contains("No subscription yet"), "{}", page.body);
    assert!(page.body.contains("No deliveries"), "{}", page.body);
    assert!(
        page.body
            .contains("href=\"/console/notifications\" aria-current=\"page\""),
        "the nav marks the page: {}",
        page.body
    );
    let form = send(&state, get("/console/notifications/new", Some(&cookie))).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    for kind in crate::notify::EVENT_KINDS {
        assert!(
            form.body.contains(&format!("<label for=\"kind-{kind}\">")),
            "{kind}: {}",
            form.body
        );
    }
    // Every input has its label (axe), and the secret is a write-only password field.
    for id in [
        "n-system",
        "n-backlog",
        "n-description",
        "ch-webhook",
        "ch-email",
        "n-url",
        "n-secret",
        "n-recipients",
    ] {
        assert!(form.body.contains(&format!("<label for=\"{id}\">")), "{id}");
    }
    assert!(
        form.body
            .contains("type=\"password\" id=\"n-secret\" name=\"secret\" value=\"\""),
        "{}",
        form.body
    );
}

#[tokio::test]
async fn a_user_who_is_not_an_admin_is_told_as_the_api_tells() {
    let state = state().await;
    let cookie = login(&state, READER).await;
    let overview = send(&state, get("/console", Some(&cookie))).await;
    assert!(!overview.body.contains("/console/notifications"), "no nav entry");
    for uri in ["/console/notifications", "/console/notifications/new"] {
        let page = send(&state, get(uri, Some(&cookie))).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{uri}: {}", page.body);
        assert!(
            page.body.contains("notifications are managed by admins"),
            "{uri}: {}",
            page.body
        );
    }
    let csrf = csrf_of(&overview.body);
    let refused = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("kind", "job.failed"),
                ("channel", "webhook"),
                ("url", "https://hooks.example/x"),
                ("secret", SECRET),
            ],
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(subscriptions(&state).await.is_empty());
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let form = [
        ("kind", "job.failed"),
        ("channel", "webhook"),
        ("url", "https://hooks.example/x"),
        ("secret", SECRET),
    ];
    let refused = send(&state, post_form("/console/notifications", Some(&cookie), &form)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("security token"), "{}", refused.body);
    assert!(subscriptions(&state).await.is_empty());
    // Created with the token; its removal and test refused without it.
    let csrf = token(&state, &cookie).await;
    let mut with = vec![("_csrf", csrf.as_str())];
    with.extend(form);
    let done = send(&state, post_form("/console/notifications", Some(&cookie), &with)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let id = subscriptions(&state).await[0]["id"].as_str().expect("id").to_string();
    for action in ["delete", "test"] {
        let refused = send(
            &state,
            post_form(&format!("/console/notifications/{id}/{action}"), Some(&cookie), &[]),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(subscriptions(&state).await.len(), 1);
    let log = state.stores.notifications.deliveries(None, 10).await.expect("log");
    assert!(log.is_empty(), "no test was sent");
}

#[tokio::test]
async fn a_planted_script_in_a_description_and_a_url_is_escaped() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let csrf = token(&state, &cookie).await;
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/{HOSTILE}");
    let done = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("kind", "job.failed"),
                ("channel", "webhook"),
                ("url", &url),
                ("secret", SECRET),
                ("description", HOSTILE),
            ],
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let id = subscriptions(&state).await[0]["id"].as_str().expect("id").to_string();
    // A test to a closed port fails at once: the delivery log shows it, with the URL in its name.
    let tested = send(
        &state,
        post_form(
            &format!("/console/notifications/{id}/test"),
            Some(&cookie),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(tested.status, StatusCode::SEE_OTHER);
    let log = state.stores.notifications.deliveries(Some(&id), 10).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, "failed");
    let listed = send(&state, get("/console/notifications", Some(&cookie))).await;
    assert!(
        listed.body.contains(">failed</span>"),
        "the failed test in the log: {}",
        listed.body
    );
    for uri in [
        "/console/notifications".to_string(),
        format!("/console/notifications?subscription={id}"),
        format!("/console/notifications/{id}/delete"),
    ] {
        let page = send(&state, get(&uri, Some(&cookie))).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
        assert!(!page.body.contains(HOSTILE), "{uri}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{uri}: {}", page.body);
        assert!(
            page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{uri}: {}",
            page.body
        );
    }
    // The form, refilled after a refusal, escapes what was typed too.
    let refused = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("channel", "webhook"),
                ("url", &url),
                ("description", HOSTILE),
            ],
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(!refused.body.contains(HOSTILE), "{}", refused.body);
}

#[tokio::test]
async fn the_form_keeps_the_api_rules_and_asks_again() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let csrf = token(&state, &cookie).await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("channel", "webhook"), ("url", "https://h.example/")],
            "kinds must name at least one",
        ),
        (
            &[
                ("kind", "job.exploded"),
                ("channel", "webhook"),
                ("url", "https://h.example/"),
            ],
            "unknown event kind",
        ),
        (
            &[
                ("kind", "job.failed"),
                ("channel", "webhook"),
                ("url", "ftp://h.example/"),
            ],
            "is not an http(s) URL",
        ),
        (
            &[
                ("kind", "job.failed"),
                ("channel", "webhook"),
                ("url", "https://h.example/"),
                ("secret", "short"),
            ],
            "at least 16 characters",
        ),
        (
            &[
                ("kind", "job.failed"),
                ("channel", "email"),
                ("recipients", "not an address"),
            ],
            "is not a valid e-mail address",
        ),
        (
            &[
                ("kind", "realtime.backlog"),
                ("channel", "email"),
                ("recipients", "ops@example.com"),
                ("backlog_minutes", "0"),
            ],
            "backlogMinutes must be from 1 to 10080",
        ),
    ];
    for (fields, message) in cases {
        let mut form = vec![("_csrf", csrf.as_str()), ("description", "kept")];
        form.extend_from_slice(fields);
        let answer = send(&state, post_form("/console/notifications", Some(&cookie), &form)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{fields:?}: {}", answer.body);
        assert!(answer.body.contains(message), "{fields:?}: {}", answer.body);
        assert!(answer.body.contains("value=\"kept\""), "the form keeps what was typed");
        assert!(!answer.body.contains("value=\"short\""), "never the secret");
    }
    // An unknown system, too.
    let answer = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("system_id", "no-such-system"),
                ("kind", "job.failed"),
                ("channel", "email"),
                ("recipients", "ops@example.com"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body.contains("no system with id no-such-system"),
        "{}",
        answer.body
    );
    assert!(subscriptions(&state).await.is_empty());
}

#[tokio::test]
async fn add_test_and_remove_round_trip() {
    let state = state().await;
    let source = state
        .stores
        .systems
        .create(crate::store::systems::SystemSpec {
            name: "HR source".into(),
            connector: "scim".into(),
            connector_version: None,
            role: crate::store::systems::Role::Source,
            properties: Default::default(),
            secrets: Default::default(),
            sources: vec![],
            transformation: None,
        })
        .await
        .expect("source");
    let cookie = login(&state, ADMIN).await;
    let csrf = token(&state, &cookie).await;
    let form = send(&state, get("/console/notifications/new", Some(&cookie))).await;
    assert!(
        form.body
            .contains(&format!("<option value=\"{}\">HR source</option>", source.id))
    );
    // A webhook for one source with its secret: back to the list with a notice.
    let url = receiver().await;
    let done = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("system_id", &source.id),
                ("kind", "job.failed"),
                ("kind", "job.recovered"),
                ("channel", "webhook"),
                ("url", &url),
                ("secret", SECRET),
                // Ignored: not the chosen channel's field.
                ("recipients", "ops@example.com"),
                ("description", "On call"),
            ],
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/console/notifications");
    let listed = subscriptions(&state).await;
    assert_eq!(listed.len(), 1);
    let webhook = &listed[0];
    assert_eq!(webhook["systemId"], source.id.as_str());
    assert_eq!(webhook["kinds"], serde_json::json!(["job.failed", "job.recovered"]));
    assert_eq!(webhook["url"], url.as_str());
    assert_eq!(webhook["hasSecret"], true);
    let id = webhook["id"].as_str().expect("id").to_string();
    let secret = state
        .stores
        .notifications
        .subscription_secret(&id)
        .await
        .expect("secret");
    assert_eq!(secret.as_deref(), Some(SECRET));
    let page = send(&state, get("/console/notifications", Some(&cookie))).await;
    for shown in ["On call", "HR source", "job.recovered", url.as_str(), "(signed)"] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(!page.body.contains(SECRET), "the secret is never shown");
    // An e-mail subscription for every system, two recipients.
    let done = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("kind", "realtime.backlog"),
                ("channel", "email"),
                ("recipients", "ops@example.com\r\nOn Call <oncall@example.com>"),
                ("backlog_minutes", "30"),
                ("url", "https://ignored.example/"),
            ],
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let listed = subscriptions(&state).await;
    assert_eq!(listed.len(), 2);
    let mail = &listed[1];
    assert_eq!(mail["systemId"], Value::Null);
    assert_eq!(
        mail["recipients"],
        serde_json::json!(["ops@example.com", "On Call <oncall@example.com>"])
    );
    assert_eq!(mail["backlogMinutes"], 30);
    let page = send(&state, get("/console/notifications", Some(&cookie))).await;
    assert!(page.body.contains("every system"), "{}", page.body);
    assert!(page.body.contains("backlog over 30 min"), "{}", page.body);
    // A test to the receiver: delivered, and the log of that subscription shows it.
    let tested = send(
        &state,
        post_form(
            &format!("/console/notifications/{id}/test"),
            Some(&cookie),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(tested.status, StatusCode::SEE_OTHER);
    assert_eq!(tested.location(), format!("/console/notifications?subscription={id}"));
    let notice = tested.cookie(super::session::FLASH_COOKIE).expect("a notice");
    let log = send(
        &state,
        get(
            tested.location(),
            Some(&format!("{cookie}; {}={notice}", super::session::FLASH_COOKIE)),
        ),
    )
    .await;
    assert!(
        log.body.contains("Test notification delivered (answer 204)."),
        "{}",
        log.body
    );
    assert!(log.body.contains("<code>test</code>"), "{}", log.body);
    assert!(log.body.contains("delivered"), "{}", log.body);
    assert!(log.body.contains(": 204"), "the last attempt's code: {}", log.body);
    let deliveries = state.stores.notifications.deliveries(Some(&id), 10).await.expect("log");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, "delivered");
    // The e-mail subscription's log is empty: the filter works.
    let mail_id = mail["id"].as_str().expect("id");
    let other = send(
        &state,
        get(&format!("/console/notifications?subscription={mail_id}"), Some(&cookie)),
    )
    .await;
    assert!(
        other.body.contains("No deliveries for this subscription"),
        "{}",
        other.body
    );
    // Remove: a confirmation first, then gone with its deliveries.
    let confirm = send(
        &state,
        get(&format!("/console/notifications/{id}/delete"), Some(&cookie)),
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Remove the subscription On call"),
        "{}",
        confirm.body
    );
    let removed = send(
        &state,
        post_form(
            &format!("/console/notifications/{id}/delete"),
            Some(&cookie),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert_eq!(removed.location(), "/console/notifications");
    let listed = subscriptions(&state).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["channel"], "email");
    assert!(
        state
            .stores
            .notifications
            .deliveries(Some(&id), 10)
            .await
            .expect("log")
            .is_empty()
    );
    // Removing it again, or testing it: a notice, not an error page.
    let again = send(
        &state,
        post_form(
            &format!("/console/notifications/{id}/delete"),
            Some(&cookie),
            &[("_csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let missing = send(
        &state,
        get(&format!("/console/notifications/{id}/delete"), Some(&cookie)),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_webhook_without_a_secret_shows_the_generated_one_once() {
    let state = state().await;
    let cookie = login(&state, ADMIN).await;
    let csrf = token(&state, &cookie).await;
    let created = send(
        &state,
        post_form(
            "/console/notifications",
            Some(&cookie),
            &[
                ("_csrf", &csrf),
                ("kind", "target.quarantined"),
                ("channel", "webhook"),
                ("url", "https://hooks.example/provisio"),
            ],
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let id = subscriptions(&state).await[0]["id"].as_str().expect("id").to_string();
    let secret = state
        .stores
        .notifications
        .subscription_secret(&id)
        .await
        .expect("secret")
        .expect("generated");
    assert!(
        created
            .body
            .contains(&format!("<code id=\"webhook-secret\">{secret}</code>")),
        "{}",
        created.body
    );
    let page = send(&state, get("/console/notifications", Some(&cookie))).await;
    assert!(!page.body.contains(&secret), "shown once only");
}
