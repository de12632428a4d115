//! The bundled connectors: each loads as a component, declares itself, and ships default
//! transformations that the transformation engine accepts; plugin calls show up in `/metrics`.

use reqwest::{Method, StatusCode};

use crate::support::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_connectors_load_and_their_defaults_validate() {
    let service = Service::start().await;
    let (status, connectors) = service.admin(Method::GET, "/api/v1/connectors", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = connectors
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let bundled =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../connectors/bundled.txt")).expect("list");
    for line in bundled
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            names.contains(&line),
            "bundled connector {line} is not loaded: {names:?}"
        );
    }
    for plugin in service.state.plugins.list() {
        let d = &plugin.descriptor;
        assert!(!d.properties.is_empty(), "{} declares no properties", d.name);
        for (kind, doc) in [
            ("read", &d.default_read_transformation),
            ("write", &d.default_write_transformation),
        ] {
            if let Some(doc) = doc {
                provisio_transform::Transformation::from_str(doc)
                    .unwrap_or_else(|e| panic!("{}: default {kind} transformation is invalid: {e}", d.name));
            }
        }
        assert!(
            d.default_read_transformation.is_some() || d.default_write_transformation.is_some(),
            "{} ships no default transformation",
            d.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_calls_are_counted_in_metrics() {
    let service = Service::start().await;
    let id = service
        .create_system(serde_json::json!({
            "name": "unreachable", "type": "scim", "role": "target",
            "properties": {"URL": format!("http://127.0.0.1:{}/v2", crate::support::free_port())}
        }))
        .await;
    let _ = service.test_connection(&id).await;
    let text = service.metrics().await;
    assert!(text.contains("provisio_plugin_calls_total{plugin=\"scim@"), "{text}");
    assert!(text.contains("provisio_http_requests_total"), "{text}");
}

/// A fresh `provisio serve` counts the bundled connectors' describe calls under their names and versions,
/// not under the digest they are known by before describe answers (`upload-<digest>@unknown`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_describe_calls_are_counted_under_name_and_version() {
    let dir = tempfile::tempdir().expect("data dir");
    let process = crate::provisioning::ServiceProcess::start(dir.path(), crate::support::free_port()).await;
    let text = reqwest::get(format!("{}/metrics", process.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let bundled =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../connectors/bundled.txt")).expect("list");
    for name in bundled
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let counted = text.lines().any(|l| {
            l.starts_with("provisio_plugin_calls_total{")
                && l.contains(&format!("plugin=\"{name}@"))
                && l.contains("outcome=\"ok\"")
                && !l.ends_with(" 0")
        });
        assert!(counted, "no describe call of {name} counted: {text}");
    }
    assert!(!text.contains("upload-"), "counted under a digest: {text}");
    assert!(!text.contains("@unknown"), "counted without a version: {text}");
}
