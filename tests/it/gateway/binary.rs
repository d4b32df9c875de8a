//! `certgate gateway` as operators run it.

use super::{eventually, good_leaf, once, upstream, Endpoint};
use crate::client::Api;
use crate::helpers::{Db, TestApp};
use crate::pki;
use crate::process::Process;

/// `certgate gateway` as operators run it: flags and environment, health endpoint, TLS from
/// PEM files, and the same decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_reports_readiness() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = pki::ca("Binary server CA");
    let server = pki::server_leaf(&server_ca);
    let cert_path = dir.path().join("gateway.pem");
    let key_path = dir.path().join("gateway.key");
    std::fs::write(&cert_path, server.cert.pem()).expect("write cert");
    std::fs::write(&key_path, server.key.serialize_pem()).expect("write key");
    let upstream_url = format!("http://{}", up.addr);
    let mut gateway = Process::spawn(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().expect("UTF-8 path"),
            "--upstream",
            &upstream_url,
        ],
        &[
            ("CERTGATE_TLS_KEY", key_path.to_str().expect("UTF-8 path")),
            ("CERTGATE_DATABASE_URL", &app.db.url),
            ("CERTGATE_UPSTREAM_TIMEOUT", "5s"),
            ("CERTGATE_GATEWAY_ORGANIZATION", &app.org_id),
        ],
    );
    let listen = gateway.listening("certgate gateway listening").await;
    // Written before the line above, so already there.
    let health = gateway
        .logged_address("gateway health endpoint listening")
        .expect("the health listener's line comes first");
    let health = Api::new(health, None);
    eventually!(
        "/readyz on the health listener",
        health.probe("/readyz").await.status == 200
    );
    let ready = health.probe("/readyz").await;
    assert_eq!(ready.body["status"], "ready", "{}", ready.body);
    assert_eq!(ready.body["anchors"], 0, "{}", ready.body);

    let ca = pki::ca("Org CA");
    let cert_id = app.api.upload(&ca.pem(), None).await.id();
    let gw = Endpoint {
        addr: listen,
        server_ca: server_ca.cert.der().clone(),
    };
    let id = good_leaf(&ca);
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    app.api.toggle_org("activate", &[&cert_id]).await;
    eventually!(
        "the binary sees the activation",
        once(&gw, Some(&id), &[]).await.status == 200
    );
    let r = once(&gw, Some(&id), &[]).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        cert_id.as_str()
    );
    let ready = health.probe("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["anchors"], 1);
    let alive = health.probe("/healthz").await;
    assert_eq!(alive.status, 200, "{}", alive.body);
    gateway.terminate_and_wait();
}
