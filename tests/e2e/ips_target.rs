//! The Identity Provisioning real-time target connector, as a wasm component in the real runtime, against a
//! recording stand-in for a real-time provisioning API (Provisio's own does not exist yet): the requests it
//! sends per operation and version, the credentials the host attaches (Basic and OAuth), Test Connection,
//! and throttling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use provisio::connector::{ConnectorError, EntityKind, PageRequest};
use provisio::runtime::CallError;
use provisio::store::systems::Role;
use serde_json::{Value, json};

use crate::support::{Connector, Service};

const OK: &str = "Connection to the selected target system was established successfully.";
const USER: (&str, &str) = ("rt-user", "rt-password");
const CLIENT: (&str, &str) = ("rt-client", "rt-client-secret");
const TOKEN: &str = "token-1";
const SOURCE: &str = "5f1c0a2e-src";
const SAP_USER_EXT: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:User";

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// (kind, id) of what was pushed and not deleted.
    known: Arc<Mutex<Vec<(String, String)>>>,
    throttle: Arc<AtomicBool>,
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
    fn last(&self) -> Seen {
        self.seen().last().cloned().expect("a request arrived")
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn scim_error(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.as_u16().to_string(), "detail": detail})))
        .into_response()
}

/// `/ipsproxy/api/v1/systems/{sid}/entities/{kind}[/{id}]`: Basic or bearer auth, then POST creates (201,
/// echoing the entity), PUT replaces (200, echo), PATCH answers 204, DELETE 204 (404 when unknown), GET 405
/// (the real-time API cannot be read).
async fn entities(
    State(rec): State<Recorder>,
    method: Method,
    Path(params): Path<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    rec.seen.lock().expect("lock").push(seen.clone());
    if seen.authorization != basic(USER.0, USER.1) && seen.authorization != format!("Bearer {TOKEN}") {
        return scim_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if rec.throttle.load(Ordering::SeqCst) {
        let mut r = scim_error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("7"));
        return r;
    }
    let kind = params.get("kind").cloned().unwrap_or_default();
    if params.get("sid").map(String::as_str) != Some(SOURCE) || !matches!(kind.as_str(), "user" | "group") {
        return scim_error(StatusCode::NOT_FOUND, "No such source system");
    }
    let mut known = rec.known.lock().expect("lock");
    match (method.as_str(), params.get("id")) {
        ("GET", None) => scim_error(StatusCode::METHOD_NOT_ALLOWED, "The real-time API cannot be read"),
        ("POST", None) => {
            let mut entity = seen.body.clone();
            if entity.get("id").and_then(Value::as_str).is_none() {
                entity["id"] = json!(format!("generated-{}", known.len() + 1));
            }
            known.push((kind, entity["id"].as_str().unwrap_or_default().to_string()));
            (StatusCode::CREATED, axum::Json(entity)).into_response()
        }
        (m, Some(id)) if known.contains(&(kind.clone(), id.clone())) => match m {
            "PUT" => (StatusCode::OK, axum::Json(seen.body.clone())).into_response(),
            "PATCH" => StatusCode::NO_CONTENT.into_response(),
            "DELETE" => {
                known.retain(|k| k != &(kind.clone(), id.clone()));
                StatusCode::NO_CONTENT.into_response()
            }
            _ => scim_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        },
        (_, Some(id)) => scim_error(StatusCode::NOT_FOUND, &format!("{kind} {id} is unknown")),
        _ => scim_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

/// `/oauth2/token`: client credentials in a Basic header.
async fn token(headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != basic(CLIENT.0, CLIENT.1) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "Bad client credentials"})),
        )
            .into_response();
    }
    axum::Json(json!({"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600})).into_response()
}

/// The stand-in, serving on a free port; returns its base URL.
async fn stand_in(rec: Recorder) -> String {
    let app = Router::new()
        .route("/ipsproxy/api/v1/systems/{sid}/entities/{kind}", any(entities))
        .route("/ipsproxy/api/v1/systems/{sid}/entities/{kind}/{id}", any(entities))
        .route("/oauth2/token", post(token))
        .with_state(rec);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn entities_url(base: &str) -> String {
    format!("{base}/ipsproxy/api/v1/systems/{SOURCE}/entities")
}

async fn system(service: &Service, name: &str, properties: Value) -> String {
    service
        .create_system(json!({"name": name, "type": "ips-target", "role": "target", "properties": properties}))
        .await
}

async fn basic_system(service: &Service, base: &str, version: &str) -> String {
    system(
        service,
        &format!("ips v{version}"),
        json!({"URL": entities_url(base), "Version": version, "Authentication": "BasicAuthentication",
               "User": USER.0, "Password": USER.1}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_checks_endpoint_and_credentials() {
    let service = Service::start().await;
    let rec = Recorder::default();
    let base = stand_in(rec.clone()).await;
    let good = basic_system(&service, &base, "2").await;
    assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));
    let probe = rec.last();
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        (
            "GET",
            format!("/ipsproxy/api/v1/systems/{SOURCE}/entities/user").as_str()
        )
    );
    assert_eq!(probe.authorization, basic(USER.0, USER.1));

    let wrong = system(
        &service,
        "wrong password",
        json!({"URL": entities_url(&base), "User": USER.0, "Password": "nope",
        "Authentication": "BasicAuthentication"}),
    )
    .await;
    let (ok, message) = service.test_connection(&wrong).await;
    assert!(!ok);
    assert!(
        message.contains("refused the credentials") && message.contains("Bad credentials"),
        "{message}"
    );

    let unknown_source = system(
        &service,
        "unknown source",
        json!({"URL": format!("{base}/ipsproxy/api/v1/systems/other/entities"),
        "User": USER.0, "Password": USER.1}),
    )
    .await;
    let (ok, message) = service.test_connection(&unknown_source).await;
    assert!(!ok && message.contains("source system id"), "{message}");

    // The SCIM URL as the IAS console shows it: refused with the URL to use.
    let scim_url = system(
        &service,
        "scim url",
        json!({"URL": format!("{}/user", entities_url(&base)),
        "User": USER.0, "Password": USER.1}),
    )
    .await;
    let (ok, message) = service.test_connection(&scim_url).await;
    assert!(!ok);
    assert!(
        message.contains(&format!("Set it to `{}`", entities_url(&base))),
        "{message}"
    );

    // Client certificates are not supported yet.
    let (status, answer) = service
        .admin(reqwest::Method::POST, "/api/v1/systems", Some(json!({"name": "cert", "type": "ips-target", "role": "target",
            "properties": {"URL": entities_url(&base), "Authentication": "ClientCertificateAuthentication", "User": "cn", "Password": "pw"}})))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("not supported"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_pushes_scim_2_users_and_groups() {
    let service = Service::start().await;
    let rec = Recorder::default();
    let base = stand_in(rec.clone()).await;
    let id = basic_system(&service, &base, "2").await;
    let Connector {
        plugin,
        target,
        runtime,
    } = service.connector(&id).await;
    let prefix = format!("/ipsproxy/api/v1/systems/{SOURCE}/entities");

    let user = json!({"id": "P000001", "userName": "jdoe", "emails": [{"value": "j@example.com", "primary": true}],
        "meta": {"created": "2026-01-01T00:00:00Z"}, SAP_USER_EXT: {"userUuid": "uu-1", "mailVerified": true}});
    let created = runtime
        .create(&plugin, &target, EntityKind::User, &user)
        .await
        .expect("create");
    assert_eq!(created["id"], "P000001");
    let post = rec.last();
    assert_eq!(
        (post.method.as_str(), post.path.clone()),
        ("POST", format!("{prefix}/user"))
    );
    assert_eq!(post.authorization, basic(USER.0, USER.1));
    assert!(
        post.content_type.starts_with("application/scim+json"),
        "{}",
        post.content_type
    );
    assert_eq!(
        post.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", SAP_USER_EXT])
    );
    assert_eq!(post.body[SAP_USER_EXT]["userUuid"], "uu-1");
    assert!(post.body.get("meta").is_none());

    let mut changed = user.clone();
    changed["userName"] = json!("john.doe");
    let replaced = runtime
        .replace(&plugin, &target, EntityKind::User, "P000001", &changed)
        .await
        .expect("replace");
    assert_eq!(replaced["userName"], "john.doe");
    let put = rec.last();
    assert_eq!(
        (put.method.as_str(), put.path.clone()),
        ("PUT", format!("{prefix}/user/P000001"))
    );
    assert_eq!(
        (put.body["id"].clone(), put.body["userName"].clone()),
        (json!("P000001"), json!("john.doe"))
    );

    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    let patched = runtime
        .patch(&plugin, &target, EntityKind::User, "P000001", &ops)
        .await
        .expect("patch");
    assert_eq!(patched, None);
    let patch = rec.last();
    assert_eq!(
        (patch.method.as_str(), patch.path.clone()),
        ("PATCH", format!("{prefix}/user/P000001"))
    );
    assert_eq!(
        patch.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"])
    );
    assert_eq!(patch.body["Operations"], ops["Operations"]);

    // Groups go to …/entities/group.
    let group = json!({"id": "G1", "displayName": "Readers", "members": [{"value": "P000001"}]});
    runtime
        .create(&plugin, &target, EntityKind::Group, &group)
        .await
        .expect("create group");
    let post = rec.last();
    assert_eq!(
        (post.method.as_str(), post.path.clone()),
        ("POST", format!("{prefix}/group"))
    );
    assert_eq!(
        post.body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    assert_eq!(post.body["members"], json!([{"value": "P000001"}]));
    runtime
        .replace(
            &plugin,
            &target,
            EntityKind::Group,
            "G1",
            &json!({"displayName": "Readers", "members": []}),
        )
        .await
        .expect("replace group");
    assert_eq!(rec.last().path, format!("{prefix}/group/G1"));
    runtime
        .delete(&plugin, &target, EntityKind::Group, "G1")
        .await
        .expect("delete group");
    assert_eq!(
        (rec.last().method.as_str(), rec.last().path),
        ("DELETE", format!("{prefix}/group/G1"))
    );

    // Delete; deleting what the API does not know (404) counts as done.
    runtime
        .delete(&plugin, &target, EntityKind::User, "P000001")
        .await
        .expect("delete");
    assert_eq!(
        (rec.last().method.as_str(), rec.last().path),
        ("DELETE", format!("{prefix}/user/P000001"))
    );
    runtime
        .delete(&plugin, &target, EntityKind::User, "P000001")
        .await
        .expect("second delete");
    match runtime
        .replace(&plugin, &target, EntityKind::User, "P000001", &changed)
        .await
    {
        Err(CallError::Connector(ConnectorError::NotFound { .. })) => {}
        other => panic!("expected not found, got {other:?}"),
    }

    // An entity without id gets the one the API assigned.
    let created = runtime
        .create(&plugin, &target, EntityKind::User, &json!({"userName": "no.id"}))
        .await
        .expect("create");
    assert!(
        created["id"].as_str().is_some_and(|id| id.starts_with("generated-")),
        "{created}"
    );

    // The real-time API cannot be read.
    for result in [
        runtime
            .read(&plugin, &target, &PageRequest::first(EntityKind::User, 10))
            .await
            .map(|_| ()),
        runtime
            .get(&plugin, &target, EntityKind::User, "P000001")
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(CallError::Connector(ConnectorError::Unsupported { message })) => {
                assert!(message.contains("only receives"), "{message}")
            }
            other => panic!("expected unsupported, got {other:?}"),
        }
    }
    let methods: Vec<String> = rec.seen().iter().map(|s| s.method.clone()).collect();
    assert!(
        !methods.contains(&"GET".to_string()),
        "read and get send nothing: {methods:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_pushes_users_as_ias_v1_sends_them() {
    let service = Service::start().await;
    let rec = Recorder::default();
    let base = stand_in(rec.clone()).await;
    let id = basic_system(&service, &base, "1").await;
    let Connector {
        plugin,
        target,
        runtime,
    } = service.connector(&id).await;

    let user = json!({"id": "P000002", "userName": "mmuster", "emails": [{"value": "m@example.com"}],
        SAP_USER_EXT: {"userUuid": "uu-2", "mailVerified": false, "status": "active", "userId": "P000002",
                       "passwordDetails": {"status": "enabled"}}});
    runtime
        .create(&plugin, &target, EntityKind::User, &user)
        .await
        .expect("create");
    let body = rec.last().body;
    assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    assert_eq!(
        (body["userUuid"].clone(), body["mailVerified"].clone()),
        (json!("uu-2"), json!(false))
    );
    assert_eq!(
        (body["passwordStatus"].clone(), body["active"].clone()),
        (json!("enabled"), json!(true))
    );
    assert!(body.get(SAP_USER_EXT).is_none());

    runtime
        .replace(&plugin, &target, EntityKind::User, "P000002", &user)
        .await
        .expect("replace");
    assert_eq!(rec.last().body["userUuid"], "uu-2");
    let ops = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
    match runtime.patch(&plugin, &target, EntityKind::User, "P000002", &ops).await {
        Err(CallError::Connector(ConnectorError::Unsupported { message })) => {
            assert!(message.contains("no PATCH"), "{message}")
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
    assert_eq!(rec.last().method, "PUT", "no PATCH was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_is_fetched_and_attached_by_the_host() {
    let service = Service::start().await;
    let rec = Recorder::default();
    let base = stand_in(rec.clone()).await;
    let props = |secret: &str| {
        json!({"URL": entities_url(&base), "Version": "2", "OAuth2TokenServiceURL": format!("{base}/oauth2/token"),
               "User": CLIENT.0, "Password": secret})
    };
    let good = system(&service, "oauth", props(CLIENT.1)).await;
    assert_eq!(service.test_connection(&good).await, (true, OK.to_string()));
    let Connector {
        plugin,
        target,
        runtime,
    } = service.connector(&good).await;
    runtime
        .create(
            &plugin,
            &target,
            EntityKind::User,
            &json!({"id": "P3", "userName": "o"}),
        )
        .await
        .expect("create");
    assert_eq!(rec.last().authorization, format!("Bearer {TOKEN}"));

    let wrong = system(&service, "oauth wrong", props("nope")).await;
    let (ok, message) = service.test_connection(&wrong).await;
    assert!(!ok);
    assert!(message.contains("token endpoint refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_with_the_retry_after_sent() {
    let service = Service::start().await;
    let rec = Recorder::default();
    let base = stand_in(rec.clone()).await;
    let id = basic_system(&service, &base, "2").await;
    let Connector {
        plugin,
        target,
        runtime,
    } = service.connector(&id).await;
    assert_eq!(target.endpoint.rate_per_second, Some(2.0));
    rec.throttle.store(true, Ordering::SeqCst);
    match runtime
        .create(
            &plugin,
            &target,
            EntityKind::User,
            &json!({"id": "P4", "userName": "t"}),
        )
        .await
    {
        Err(CallError::Connector(ConnectorError::Throttled { retry_after_ms, .. })) => {
            assert_eq!(retry_after_ms, Some(7_000))
        }
        other => panic!("expected throttled, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_write_transformation_is_valid() {
    let service = Service::start().await;
    let base = stand_in(Recorder::default()).await;
    let id = basic_system(&service, &base, "2").await;
    let c = service.connector(&id).await;
    let d = &c.plugin.descriptor;
    assert_eq!(d.name, "ips-target");
    assert!(d.default_read_transformation.is_none());
    let write: Value = serde_json::from_str(d.default_write_transformation.as_deref().expect("write")).expect("json");
    provisio::systems::validate_transformation(Role::Target, &write).expect("valid");
}
