//! Proxy systems: a connector-backed system served as a SCIM 2.0 service provider. scim2-tester (third party)
//! against proxies on scim2-server (generic SCIM connector) and on the UAA simulator (xsuaa connector), the
//! conformance checklist of `../shared/reference/scim-conformance.md` written from RFC 7643/7644, bad input,
//! the SAP IdM hybrid flow of seed 002, and the export.

use std::path::PathBuf;

use provisio_tests::sim::uaa;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Scim2Server, Service};

const CLIENT: (&str, &str) = ("idm-client", "idm-client-secret");
const SCIM: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A service with a technical user holding *Access Proxy System API*.
async fn service() -> Service {
    let service = Service::start().await;
    let (status, body) = service
        .admin(
            Method::POST,
            "/api/v1/technical-users",
            Some(json!({"name": CLIENT.0, "password": CLIENT.1, "permissions": ["proxy-api"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    service
}

async fn proxy_on_scim2(service: &Service, server: &Scim2Server, name: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "scim", "role": "proxy",
            "properties": {"URL": server.base_url, "Authentication": "BearerToken", "Password": server.token}
        }))
        .await
}

async fn proxy_on_uaa(service: &Service, sim: &uaa::Simulator, name: &str) -> String {
    service
        .create_system(json!({
            "name": name, "type": "xsuaa", "role": "proxy",
            "properties": {
                "URL": sim.base_url,
                "OAuth2TokenServiceURL": sim.token_url.clone().expect("token url"),
                "User": sim.options().client_id,
                "Password": sim.options().client_secret,
                "xsuaa.origin": "uaa",
                "provisio.rate.limit": "100000",
            }
        }))
        .await
}

/// A SCIM client of one proxy system.
struct Client<'a> {
    service: &'a Service,
    base: String,
}

impl<'a> Client<'a> {
    fn new(service: &'a Service, system: &str) -> Self {
        Client {
            service,
            base: format!("{}/ipsproxy/api/v1/scim/{system}", service.url),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .service
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(CLIENT.0, Some(CLIENT.1));
        if let Some(b) = body {
            request = request.header("content-type", SCIM).body(b.to_string());
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, _, b) = self.send(method, path, body, &[]).await;
        (s, b)
    }
}

fn scim2_tester(url: &str) -> (bool, String) {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let python = workspace.join(".venv-scim/bin/python");
    let tool = workspace.join("../shared/tools/run_scim2_tester.py");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh once",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(tool)
        .arg(url)
        .arg("--basic")
        .arg(format!("{}:{}", CLIENT.0, CLIENT.1))
        .output()
        .expect("run scim2-tester");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn run_tester(service: &Service, system: &str) -> String {
    let url = format!("{}/ipsproxy/api/v1/scim/{system}", service.url);
    let (ok, report) = tokio::task::spawn_blocking(move || scim2_tester(&url))
        .await
        .expect("tester");
    let summary = report.lines().last().unwrap_or_default().to_string();
    eprintln!("{report}");
    assert!(ok, "scim2-tester found failures:\n{report}");
    assert!(summary.contains(" 0 failed"), "{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_scim2_server_backend() {
    let service = service().await;
    let server = Scim2Server::start().await;
    let system = proxy_on_scim2(&service, &server, "proxy on scim2-server").await;
    let summary = run_tester(&service, &system).await;
    eprintln!("scim2-server backend: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_on_uaa_backend() {
    let service = service().await;
    let sim = uaa::spawn(uaa::Options::default()).await.expect("simulator");
    let system = proxy_on_uaa(&service, &sim, "proxy on uaa").await;
    let summary = run_tester(&service, &system).await;
    eprintln!("UAA backend: {summary}");
}
