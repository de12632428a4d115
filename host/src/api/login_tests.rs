//! Brute-force protection through the whole router: the growing delay, the lock per principal and per
//! address answered 429 with `Retry-After` (a correct password too), the token endpoint and the console's
//! login under the same rules, the end of a lock, and the counts in `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::login_guard::{LoginGuard, LoginPolicy};
use super::{AppState, router};
use crate::store::principals::{Permission, PrincipalKind};

pub(super) const ADMIN: (&str, &str) = ("admin", "admin-password-1");
pub(super) const CLIENT: (&str, &str) = ("scim-client", "client-password-1");

pub(super) async fn state(policy: LoginPolicy) -> AppState {
    let mut state = crate::test_state::state(&[
        (ADMIN.0, ADMIN.1, PrincipalKind::Admin, &Permission::ALL),
        (CLIENT.0, CLIENT.1, PrincipalKind::Technical, &[Permission::ProxyApi]),
    ])
    .await;
    state.logins = Arc::new(LoginGuard::new(policy));
    state
}

/// Fast and small, so that a test runs in a moment.
fn quick() -> LoginPolicy {
    LoginPolicy {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
        window: Duration::from_secs(900),
        principal_failures: 4,
        address_failures: 6,
        lock: Duration::from_secs(120),
        recheck: Duration::from_secs(1),
    }
}

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:40000").parse().expect("address")
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
    took: Duration,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(state: &AppState, mut request: Request<Body>, from: &str) -> Answer {
    request.extensions_mut().insert(ConnectInfo(addr(from)));
    let started = Instant::now();
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let took = started.elapsed();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        took,
    }
}

fn systems((user, password): (&str, &str)) -> Request<Body> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Request::builder()
        .uri("/api/v1/systems")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::empty())
        .expect("request")
}

fn token(id: &str, secret: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}"
        )))
        .expect("request")
}

/// A counter's value in `/metrics`, 0 when absent.
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn retry_after(a: &Answer) -> u64 {
    a.headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", a.headers))
}

#[tokio::test]
async fn the_default_delay_grows_from_100_ms() {
    let state = state(LoginPolicy::default()).await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let a = send(&state, systems((ADMIN.0, "wrong")), "10.9.0.1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        took.push(a.took);
    }
    for (i, at_least) in [100, 200, 400].into_iter().enumerate() {
        assert!(
            took[i] >= Duration::from_millis(at_least),
            "failure {} answered after {:?}, sooner than {at_least} ms: {took:?}",
            i + 1,
            took[i]
        );
    }
    // The right password still signs in (no lock yet).
    let a = send(&state, systems(ADMIN), "10.9.0.1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn a_principal_is_locked_after_its_failures_and_a_correct_password_gets_the_same_429() {
    let state = state(quick()).await;
    let before = crate::metrics::render();
    for n in 1..=3 {
        let a = send(&state, systems((ADMIN.0, "wrong")), "10.1.0.1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "failure {n}: {}", a.body);
    }
    // The 4th failure locks, and is answered as locked.
    let a = send(&state, systems((ADMIN.0, "wrong")), "10.1.0.2").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!((100..=120).contains(&retry_after(&a)), "{:?}", a.headers);
    assert_eq!(a.json()["message"], "too many failed logins: try again in 2 minutes");
    let wrong = send(&state, systems((ADMIN.0, "still wrong")), "10.1.0.3").await;
    let right = send(&state, systems(ADMIN), "10.1.0.3").await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "{}", right.body);
    assert_eq!(wrong.status, right.status);
    assert_eq!(wrong.body, right.body, "a lock reveals nothing about the password");
    assert!(right.headers.contains_key(header::RETRY_AFTER));
    // Per principal: another user from the same addresses signs in.
    let other = send(&state, systems(CLIENT), "10.1.0.3").await;
    assert_eq!(
        other.status,
        StatusCode::FORBIDDEN,
        "authenticated (and refused by permission): {}",
        other.body
    );
    // The names are case-insensitive, as the logins are.
    let upper = send(&state, systems(("ADMIN", ADMIN.1)), "10.1.0.4").await;
    assert_eq!(upper.status, StatusCode::TOO_MANY_REQUESTS);

    let after = crate::metrics::render();
    assert!(
        counter(&after, "provisio_login_locks_total{scope=\"principal\"}")
            > counter(&before, "provisio_login_locks_total{scope=\"principal\"}"),
        "{after}"
    );
    assert!(
        counter(&after, "provisio_login_failures_total{outcome=\"invalid\"}")
            >= counter(&before, "provisio_login_failures_total{outcome=\"invalid\"}") + 4.0
    );
    assert!(
        counter(&after, "provisio_login_failures_total{outcome=\"locked\"}")
            >= counter(&before, "provisio_login_failures_total{outcome=\"locked\"}") + 3.0
    );
    // `/metrics` serves them.
    let metrics = send(
        &state,
        Request::builder().uri("/metrics").body(Body::empty()).expect("request"),
        "10.1.0.9",
    )
    .await;
    assert!(metrics.body.contains("provisio_login_locks_total{scope=\"principal\"}"));
    assert!(
        metrics
            .body
            .contains("provisio_login_failures_total{outcome=\"locked\"}")
    );
}

#[tokio::test]
async fn an_address_trying_many_names_is_locked_for_all_of_them() {
    let state = state(quick()).await;
    let before = crate::metrics::render();
    for n in 0..5 {
        let a = send(&state, systems((&format!("guess-{n}"), "wrong")), "192.0.2.7").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = send(&state, systems(("guess-5", "wrong")), "192.0.2.7").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // Locked for every name from there, the right admin password too; not from elsewhere.
    let a = send(&state, systems(ADMIN), "192.0.2.7").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let a = send(&state, systems(ADMIN), "192.0.2.8").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let after = crate::metrics::render();
    assert!(
        counter(&after, "provisio_login_locks_total{scope=\"address\"}")
            > counter(&before, "provisio_login_locks_total{scope=\"address\"}")
    );
}

#[tokio::test]
async fn a_correct_password_forgets_the_principal_failures() {
    let state = state(quick()).await;
    for _ in 0..3 {
        assert_eq!(
            send(&state, systems((ADMIN.0, "wrong")), "10.2.0.1").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(send(&state, systems(ADMIN), "10.2.0.2").await.status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(
            send(&state, systems((ADMIN.0, "wrong")), "10.2.0.3").await.status,
            StatusCode::UNAUTHORIZED,
            "counted again from zero"
        );
    }
}

#[tokio::test]
async fn a_lock_holds_at_once_for_a_name_and_an_address_just_seen_unlocked() {
    // This replica trusts what it saw unlocked for an hour: only the lock itself can end that trust.
    let state = state(LoginPolicy {
        recheck: Duration::from_secs(3600),
        ..quick()
    })
    .await;
    assert_eq!(send(&state, systems(ADMIN), "10.4.0.1").await.status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(
            send(&state, systems((ADMIN.0, "wrong")), "10.4.0.1").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The 4th failure locks the name (the address has two to go), whatever case it is typed in.
    for (name, password) in [(ADMIN.0, "wrong"), ADMIN, ("ADMIN", ADMIN.1)] {
        let a = send(&state, systems((name, password)), "10.4.0.1").await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{name}: {}", a.body);
    }
}

#[tokio::test]
async fn a_lock_ends_by_itself() {
    let state = state(LoginPolicy {
        lock: Duration::from_millis(400),
        recheck: Duration::ZERO,
        ..quick()
    })
    .await;
    for _ in 0..4 {
        send(&state, systems((ADMIN.0, "wrong")), "10.3.0.1").await;
    }
    let a = send(&state, systems(ADMIN), "10.3.0.1").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&a), 1, "rounded up to a second");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = send(&state, systems(ADMIN), "10.3.0.1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn the_token_endpoint_counts_and_locks_alike() {
    let state = state(quick()).await;
    for _ in 0..3 {
        let a = send(&state, token(CLIENT.0, "wrong"), "10.4.0.1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.json()["error"], "invalid_client");
    }
    let a = send(&state, token(CLIENT.0, "wrong"), "10.4.0.1").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(retry_after(&a) > 60);
    let a = send(&state, token(CLIENT.0, CLIENT.1), "10.4.0.2").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.json()["access_token"].is_null());
    // The same principal is locked on Basic too, on the proxy's SCIM surface as well (an RFC 7644 body).
    let a = send(&state, systems(CLIENT), "10.4.0.3").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1));
    let scim = Request::builder()
        .uri("/ipsproxy/api/v1/scim/any-system/Users")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::empty())
        .expect("request");
    let a = send(&state, scim, "10.4.0.4").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.json()["status"], "429", "{}", a.body);
    assert!(retry_after(&a) > 60);
}

#[tokio::test]
async fn the_console_login_shows_a_429_page_during_a_lock() {
    let state = state(quick()).await;
    let page = send(
        &state,
        Request::builder()
            .uri("/console/login")
            .body(Body::empty())
            .expect("request"),
        "10.5.0.1",
    )
    .await;
    let cookie = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("provisio_login="))
        .and_then(|c| c.split(';').next())
        .expect("login cookie")
        .to_string();
    let field = "name=\"_csrf\" value=\"";
    let at = page.body.find(field).expect("a CSRF field") + field.len();
    let csrf = page.body[at..].split('"').next().expect("csrf").to_string();
    let login = |password: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/console/login")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                serde_urlencoded::to_string([("name", ADMIN.0), ("password", password), ("_csrf", &csrf)])
                    .expect("form"),
            ))
            .expect("request")
    };
    for _ in 0..3 {
        let a = send(&state, login("wrong"), "10.5.0.1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains("Invalid user name or password."));
    }
    for password in ["wrong", ADMIN.1] {
        let a = send(&state, login(password), "10.5.0.1").await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert!(
            a.body
                .contains("Too many failed login attempts. Try again in 2 minutes."),
            "{}",
            a.body
        );
        assert!(!a.body.contains("Invalid user name or password."));
        assert!(a.headers.contains_key(header::RETRY_AFTER));
        assert!(
            !a.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|c| c.to_str().unwrap_or("").starts_with("provisio_session=")),
            "no session during a lock"
        );
    }
}

fn admin_request(method: Method, uri: &str) -> Request<Body> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn an_admin_sees_the_locks_and_ends_one_at_once() {
    let state = state(quick()).await;
    // The technical user is locked after 4 failures; the address that tried is not (6 would lock it).
    for _ in 0..4 {
        send(&state, systems((CLIENT.0, "wrong")), "10.4.0.1").await;
    }
    let locked = send(&state, systems(CLIENT), "10.4.0.2").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);

    let list = send(&state, admin_request(Method::GET, "/api/v1/login-locks"), "10.4.0.9").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let locks = list.json();
    let locks = locks.as_array().expect("a list");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["scope"], "principal");
    assert_eq!(locks[0]["subject"], CLIENT.0);
    let left = locks[0]["retryAfterSeconds"].as_u64().expect("seconds");
    assert!((100..=120).contains(&left), "{left}");

    // Only admins: the technical user (once it may sign in) is refused.
    let end = send(
        &state,
        admin_request(Method::DELETE, "/api/v1/login-locks/principal/scim-client"),
        "10.4.0.9",
    )
    .await;
    assert_eq!(end.status, StatusCode::NO_CONTENT, "{}", end.body);
    let back = send(&state, systems(CLIENT), "10.4.0.2").await;
    assert_eq!(
        back.status,
        StatusCode::FORBIDDEN,
        "signed in again (refused by permission only): {}",
        back.body
    );
    let mut by_client = admin_request(Method::GET, "/api/v1/login-locks");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1));
    by_client
        .headers_mut()
        .insert(header::AUTHORIZATION, format!("Basic {basic}").parse().expect("header"));
    assert_eq!(send(&state, by_client, "10.4.0.2").await.status, StatusCode::FORBIDDEN);
    // The failures went with the lock: one more failure is the first again, not a new lock.
    let again = send(&state, systems((CLIENT.0, "wrong")), "10.4.0.3").await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);

    // Nothing left to end; a scope that is none.
    let twice = send(
        &state,
        admin_request(Method::DELETE, "/api/v1/login-locks/principal/scim-client"),
        "10.4.0.9",
    )
    .await;
    assert_eq!(twice.status, StatusCode::NOT_FOUND, "{}", twice.body);
    let bad = send(
        &state,
        admin_request(Method::DELETE, "/api/v1/login-locks/address/not-an-ip"),
        "10.4.0.9",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

#[tokio::test]
async fn an_admin_ends_an_address_lock() {
    let state = state(quick()).await;
    for n in 0..6 {
        send(&state, systems((&format!("nobody-{n}"), "wrong")), "10.5.0.1").await;
    }
    let locked = send(&state, systems(CLIENT), "10.5.0.1").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);
    let end = send(
        &state,
        admin_request(Method::DELETE, "/api/v1/login-locks/address/10.5.0.1"),
        "10.5.0.9",
    )
    .await;
    assert_eq!(end.status, StatusCode::NO_CONTENT, "{}", end.body);
    let back = send(&state, systems(CLIENT), "10.5.0.1").await;
    assert_eq!(back.status, StatusCode::FORBIDDEN, "{}", back.body);
}
