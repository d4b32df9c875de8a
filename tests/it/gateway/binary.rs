//! `certgate gateway` as operators run it.

use super::{eventually, good_leaf, once, upstream, Endpoint};
use crate::client::Api;
use crate::helpers::{Db, TestApp};
use crate::pki;
use crate::process::Process;

/// `certgate gateway` as operators run it: flags and environment, health endpoint, TLS from
/// PEM files, and the same decisions.
/// Starts `certgate gateway` on `app`'s database in front of `upstream_url`, with the app's
/// organization as its default, from PEM files in `dir`; returns the process and where it
/// listens.
pub(super) async fn start(
    app: &TestApp,
    upstream_url: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Process, Endpoint) {
    let server_ca = pki::ca("Binary server CA");
    let server = pki::server_leaf(&server_ca);
    let cert_path = dir.join("gateway.pem");
    let key_path = dir.join("gateway.key");
    std::fs::write(&cert_path, server.cert.pem()).expect("write cert");
    std::fs::write(&key_path, server.key.serialize_pem()).expect("write key");
    let mut all_env = vec![
        ("CERTGATE_TLS_KEY", key_path.to_str().expect("UTF-8 path")),
        ("CERTGATE_DATABASE_URL", app.db.url.as_str()),
        ("CERTGATE_UPSTREAM_TIMEOUT", "5s"),
        ("CERTGATE_GATEWAY_ORGANIZATION", app.org_id.as_str()),
    ];
    all_env.extend_from_slice(env);
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
            upstream_url,
        ],
        &all_env,
    );
    let addr = gateway.listening("certgate gateway listening").await;
    let ep = Endpoint {
        addr,
        server_ca: server_ca.cert.der().clone(),
    };
    (gateway, ep)
}

/// `certgate gateway` as operators run it: flags and environment, health endpoint, TLS from
/// PEM files, and the same decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_reports_readiness() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut gateway, gw) = start(&app, &format!("http://{}", up.addr), dir.path(), &[]).await;
    // Written before the "listening" line, so already there.
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

/// `--metrics-listen` (here through its variable) serves the gateway's metrics and health on
/// plain HTTP; the TLS port has no `/metrics` of its own (it is proxied like any path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_metrics_when_asked() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (gateway, gw) = start(
        &app,
        &format!("http://{}", up.addr),
        dir.path(),
        &[("CERTGATE_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let metrics = gateway
        .logged_address("certgate metrics listening")
        .expect("the metrics listener's line comes first");
    once(&gw, None, &[])
        .await
        .refused(403, "client_certificate_required");
    let scrape = crate::metrics::Scrape::of(metrics).await;
    assert_eq!(
        scrape.value(
            "certgate_gateway_decisions_total",
            &[("outcome", "client_certificate_required")]
        ),
        1
    );
    assert_eq!(scrape.value("certgate_database_up", &[]), 1);
    let ready = Api::new(metrics, None).probe("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// Unauthenticated clients do not control log volume: refusals are logged at debug level, and
/// at info at most one summary line per 10 s, from both sides: none in a burst of 120
/// refusals, then, as refusals go on, the first one 10 s after the gateway started (not before,
/// at most 1 s later) counting them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_flood_the_log() {
    const SUMMARY: &str = "requests refused since the last summary";
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spawned = std::time::Instant::now();
    let (gateway, gw) = start(&app, &format!("http://{}", up.addr), dir.path(), &[]).await;
    let listening = std::time::Instant::now();
    let before = gateway.stderr().lines().count();
    let stranger = good_leaf(&pki::ca("Stranger CA"));
    for _ in 0..60 {
        once(&gw, Some(&stranger), &[])
            .await
            .refused(403, "client_certificate_untrusted");
        once(&gw, None, &[])
            .await
            .refused(403, "client_certificate_required");
    }
    let log = gateway.stderr();
    let new_lines = log.lines().count() - before;
    assert!(
        new_lines <= 2,
        "120 refusals wrote {new_lines} log lines at info:\n{log}"
    );
    assert!(
        listening.elapsed() >= EVERY || !log.contains(SUMMARY),
        "a summary before 10 s:\n{log}"
    );
    // Refusals go on, one every 100 ms, until the summary shows.
    let mut refused = 120;
    let seen = loop {
        if gateway.stderr().contains(SUMMARY) {
            break std::time::Instant::now();
        }
        assert!(
            listening.elapsed() < EVERY + crate::bounds::LATE + std::time::Duration::from_secs(5),
            "no summary line:\n{}",
            gateway.stderr()
        );
        once(&gw, None, &[])
            .await
            .refused(403, "client_certificate_required");
        refused += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        seen - spawned + crate::bounds::EARLY >= EVERY,
        "{:?}",
        seen - spawned
    );
    assert!(
        seen - listening <= EVERY + crate::bounds::LATE,
        "{:?}",
        seen - listening
    );
    let log = gateway.stderr();
    let summaries: Vec<&str> = log.lines().filter(|l| l.contains(SUMMARY)).collect();
    assert_eq!(summaries.len(), 1, "{log}");
    // It counts every refusal up to its own (the one that wrote it included).
    let counted: u64 = summaries[0]
        .split_whitespace()
        .find_map(|f| f.strip_prefix("refused="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refused= count: {}", summaries[0]));
    assert!(
        (120..=refused).contains(&counted),
        "{counted} of {refused}: {}",
        summaries[0]
    );
}
