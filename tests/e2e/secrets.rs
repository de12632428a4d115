//! Secrets stay sealed: a plugin upgrade that stops declaring a property secret does not unseal its value,
//! the mask is never stored as a value, only the admin declassifies, and a secret header is attached by the
//! host without the connector ever seeing it.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Service, hostile_version};

const OPAQUE: &str = "s3cret-opaque-value";
const API_KEY: &str = "k3y-only-the-host-knows";

/// An upstream that answers `key-ok` when the request carries the secret header, and never echoes it.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/api/Users",
        get(|headers: HeaderMap| async move {
            match headers.get_all("x-api-key").iter().collect::<Vec<_>>().as_slice() {
                [one] if *one == API_KEY => (StatusCode::OK, "key-ok"),
                [] => (StatusCode::UNAUTHORIZED, "no key"),
                _ => (StatusCode::UNAUTHORIZED, "wrong or repeated key"),
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/api")
}

async fn view(service: &Service, id: &str) -> Value {
    let (status, system) = service.admin(Method::GET, &format!("/api/v1/systems/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{system}");
    system
}

/// PUTs the system as `GET` answered it, with `changes` merged into its properties and `extra` at the top.
async fn resave(service: &Service, id: &str, changes: Value, extra: Value) -> (StatusCode, Value) {
    let mut body = view(service, id).await;
    let object = body.as_object_mut().expect("object");
    for key in ["id", "createdAt", "updatedAt", "transformationVersion"] {
        object.remove(key);
    }
    if object.get("transformation").is_some_and(Value::is_null) {
        object.remove("transformation");
    }
    for (k, v) in changes.as_object().expect("changes") {
        object["properties"][k] = v.clone();
    }
    for (k, v) in extra.as_object().expect("extra") {
        object.insert(k.clone(), v.clone());
    }
    service
        .admin(Method::PUT, &format!("/api/v1/systems/{id}"), Some(body))
        .await
}

/// Everything an admin or the connector could see of the system: its view, its export and what the
/// connector was handed (the hostile plugin's `show-properties` fails with its properties as the reason).
async fn everything_seen(service: &Service, id: &str) -> String {
    let system = view(service, id).await;
    let (_, export) = service
        .admin(Method::GET, &format!("/api/v1/systems/{id}/export?format=json"), None)
        .await;
    let (_, message) = service.test_connection(id).await;
    format!("{system} {export} {message}")
}

#[tokio::test]
async fn a_sealed_value_stays_sealed_across_a_declassifying_upgrade_until_the_admin_declassifies_it() {
    let service = Service::start().await;
    let url = upstream().await;
    let (status, v1) = service.upload_plugin(hostile_version("1.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    let id = service
        .create_system(json!({
            "name": "sealed", "type": "hostile", "role": "target",
            "properties": {
                "URL": url, "mode": "show-properties", "opaque": OPAQUE,
                "ips.http.header.X-Api-Key": API_KEY
            }
        }))
        .await;
    let system = view(&service, &id).await;
    assert_eq!(system["properties"]["opaque"], "********", "{system}");
    assert_eq!(
        system["properties"]["ips.http.header.X-Api-Key"], "********",
        "{system}"
    );
    // The host attached the secret header itself; the connector saw neither secret.
    let (_, message) = service.test_connection(&id).await;
    assert!(message.contains("200 key-ok"), "{message}");
    let seen = everything_seen(&service, &id).await;
    assert!(!seen.contains(OPAQUE) && !seen.contains(API_KEY), "{seen}");

    // 2.0.0 declares `opaque` plain; the system follows the latest version.
    let (status, v2) = service.upload_plugin(hostile_version("2.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(service.connector(&id).await.plugin.descriptor.version, "2.0.0");
    let seen = everything_seen(&service, &id).await;
    assert!(!seen.contains(OPAQUE), "upgrade unsealed the value: {seen}");
    assert!(seen.contains("\"opaque\":\"********\""), "{seen}");

    // Re-saving with the mask keeps the sealed value (it does not store the mask) ...
    let (status, saved) = resave(&service, &id, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    // The system's JSON as read carries `enabled`, which a PUT applies (and keeps when absent).
    assert_eq!(saved["enabled"], json!(true), "{saved}");
    let (status, saved) = resave(&service, &id, json!({}), json!({"enabled": false})).await;
    assert_eq!((status, &saved["enabled"]), (StatusCode::OK, &json!(false)), "{saved}");
    let (status, saved) = resave(&service, &id, json!({}), json!({"enabled": true})).await;
    assert_eq!((status, &saved["enabled"]), (StatusCode::OK, &json!(true)), "{saved}");
    let stored = service
        .state
        .stores
        .systems
        .get(&id)
        .await
        .expect("store")
        .expect("system");
    let opened = service.state.stores.open_secrets(&stored.spec.secrets).expect("opens");
    assert_eq!(opened.get("opaque").map(|s| s.expose()), Some(OPAQUE));
    assert!(
        !stored.spec.properties.contains_key("opaque"),
        "{:?}",
        stored.spec.properties
    );
    // ... and re-entering the value seals it again.
    let (status, saved) = resave(&service, &id, json!({"opaque": OPAQUE}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let seen = everything_seen(&service, &id).await;
    assert!(!seen.contains(OPAQUE), "re-entered value shown or handed over: {seen}");

    // The mask is never a value of a plain property.
    let (status, refused) = resave(&service, &id, json!({"mode": "********"}), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused["message"].as_str().unwrap_or("").contains("mask"), "{refused}");
    // Declassifying needs the value in clear, and only what the connector no longer declares secret.
    let (status, refused) = resave(&service, &id, json!({}), json!({"declassify": ["opaque"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, refused) = resave(
        &service,
        &id,
        json!({"ips.http.header.X-Api-Key": "plain"}),
        json!({"declassify": ["ips.http.header.X-Api-Key"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be declassified"),
        "{refused}"
    );

    // The admin's explicit word makes it plain.
    let (status, saved) = resave(
        &service,
        &id,
        json!({"opaque": "now-plain"}),
        json!({"declassify": ["opaque"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["properties"]["opaque"], "now-plain", "{saved}");
    let (_, message) = service.test_connection(&id).await;
    assert!(message.contains("opaque=now-plain"), "{message}");
    assert!(!message.contains(API_KEY), "{message}");
}

#[tokio::test]
async fn secret_looking_names_are_sealed_whatever_the_connector_declares() {
    let service = Service::start().await;
    let url = upstream().await;
    let (status, v1) = service.upload_plugin(hostile_version("1.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    let names = [
        "Passwd",
        "adminPassword",
        "X-Api-Key",
        "refreshToken",
        "accessTokens",
        "clientSecret",
        "signingKey",
    ];
    let mut properties = json!({"URL": url, "mode": "show-properties"});
    for (i, name) in names.iter().enumerate() {
        properties[*name] = json!(format!("hidden-{i}-value"));
    }
    let id = service
        .create_system(json!({"name": "names", "type": "hostile", "role": "target", "properties": properties}))
        .await;
    let seen = everything_seen(&service, &id).await;
    for (i, name) in names.iter().enumerate() {
        assert!(
            !seen.contains(&format!("hidden-{i}-value")),
            "{name} was not sealed: {seen}"
        );
    }
}
