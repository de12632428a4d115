//! The service terminating TLS itself: HTTPS with the server certificate, optional client certificates
//! verified against the client CA, the subject CN naming the technical user, and Basic still working.

use std::path::{Path, PathBuf};

use provisio::server::{Settings, TlsSettings};
use provisio::store::principals::{Permission, PrincipalKind};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;

const ADMIN: (&str, &str) = ("admin", "admin-pw");
const PUSHER: (&str, &str) = ("ias-pusher", "pusher-pw");

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A leaf signed by `ca`: PEM certificate and PEM key.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A client trusting `server_ca`, with an optional identity (certificate and key PEM).
fn client(server_ca: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.as_bytes()).expect("CA"));
    if let Some((cert, key)) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(format!("{key}{cert}").as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

async fn detail(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn client_certificates_name_technical_users_and_basic_still_works() {
    let data = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        artifact_cache: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifact-cache")),
        ..Default::default()
    };
    let state = provisio::server::boot(&data.path().join("data"), settings)
        .await
        .expect("boot");
    state
        .stores
        .principals
        .create(ADMIN.0, ADMIN.1, PrincipalKind::Admin, &[])
        .await
        .expect("admin");
    state
        .stores
        .principals
        .create(PUSHER.0, PUSHER.1, PrincipalKind::Technical, &[Permission::RealtimeApi])
        .await
        .expect("technical user");

    // The PKI: one CA for the server and the clients, and a stranger's CA.
    let ours = ca("Provisio test CA");
    let theirs = ca("Someone else's CA");
    let server = leaf(
        &ours,
        "provisio",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    // Names are case-insensitive: the CN need not match the user's spelling.
    let pusher = leaf(&ours, "IAS-Pusher", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = leaf(&ours, "stranger", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let admin_cn = leaf(&ours, ADMIN.0, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let too_long = leaf(&ours, &"x".repeat(65), &[], ExtendedKeyUsagePurpose::ClientAuth);
    let foreign = leaf(&theirs, PUSHER.0, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let tls = TlsSettings {
        cert: write(data.path(), "server.pem", &server.0),
        key: write(data.path(), "server.key", &server.1),
        client_ca: Some(write(data.path(), "client-ca.pem", &ours.pem())),
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        provisio::server::serve_tls(listener, state, &tls, async {
            let _ = stopped.await;
        })
        .await
    });

    let ca_pem = ours.pem();
    // The real-time probe: 404 for a system that does not exist means authenticated and permitted.
    let probe = format!("{base}/ipsproxy/api/v1/systems/no-such-source/entities/user");
    let users = format!("{base}/api/v1/technical-users");

    // A client certificate whose CN names the technical user.
    let with_cert = client(&ca_pem, Some(&pusher));
    let (status, body) = detail(with_cert.get(&probe).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "authenticated by certificate: {body}");
    let (status, body) = detail(with_cert.get(&users).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("ias-pusher lacks"), "the CN named ias-pusher: {body}");

    // The Authorization header wins over the certificate: an admin's Basic, and wrong Basic.
    let (status, body) = detail(
        with_cert
            .get(&users)
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = detail(
        with_cert
            .get(&probe)
            .basic_auth(PUSHER.0, Some("wrong"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a wrong header is not saved by the certificate"
    );

    // No certificate and no credentials.
    let anonymous = client(&ca_pem, None);
    let (status, body) = detail(anonymous.get(&probe).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("client certificate"), "{body}");

    // Basic and bearer tokens over TLS, without a certificate.
    let (status, body) = detail(
        anonymous
            .get(&probe)
            .basic_auth(PUSHER.0, Some(PUSHER.1))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Basic over TLS: {body}");
    let token: serde_json::Value = anonymous
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", PUSHER.0),
            ("client_secret", PUSHER.1),
        ])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("token JSON");
    let bearer = token["access_token"].as_str().expect("token");
    let (status, body) = detail(anonymous.get(&probe).bearer_auth(bearer).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bearer over TLS: {body}");

    // Verified certificates that name no technical user.
    for (identity, expected) in [
        (&stranger, "not the name of a technical user"),
        (&admin_cn, "not the name of a technical user"),
        (&too_long, "1 to 64 characters"),
    ] {
        let (status, body) = detail(client(&ca_pem, Some(identity)).get(&probe).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains(expected), "{expected}: {body}");
    }

    // A certificate from another CA: the handshake fails (TLS 1.3 may report it on the first request).
    match client(&ca_pem, Some(&foreign)).get(&probe).send().await {
        Err(_) => {}
        Ok(response) => assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a foreign certificate"),
    }

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", base.trim_start_matches("https://")))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));

    let _ = stop.send(());
    let result = tokio::time::timeout(std::time::Duration::from_secs(15), served)
        .await
        .expect("stops")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn unusable_tls_material_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = ca("Provisio test CA");
    let (cert, _) = leaf(&ours, "provisio", &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let other_key = KeyPair::generate().expect("key").serialize_pem();
    let tls = TlsSettings {
        cert: write(dir.path(), "server.pem", &cert),
        key: write(dir.path(), "other.key", &other_key),
        client_ca: None,
    };
    let e = provisio::tls::server_config(&tls)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("do not fit"), "{e}");
    let tls = TlsSettings {
        key: write(dir.path(), "empty.key", ""),
        ..tls
    };
    let e = provisio::tls::server_config(&tls)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("empty.key"), "{e}");
    let tls = TlsSettings {
        cert: write(dir.path(), "not-pem.pem", "hello"),
        ..tls
    };
    let e = provisio::tls::server_config(&tls)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("no PEM certificate"), "{e}");
}
