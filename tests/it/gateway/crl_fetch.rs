//! CRLs fetched from a CA's `crl_url` (spec §13.4, decisions.md D59), with a CA run by
//! `openssl ca` publishing its CRLs (`-gencrl`) on a test HTTP server: a serial revoked at the
//! CA is refused within one refresh (open WebSockets closed), a bad or backwards CRL is refused
//! with the previous one kept, a failing fetch keeps the last CRL and backs off, replicas share
//! one fetch per URL per interval through the lease row, and the fetch limit (decisions.md D70)
//! holds from both sides: exactly the limit is stored and enforced, a byte more changes nothing.
//!
//! The fetchers here run in-process on the test's manual clock, so "one refresh" is the clock
//! reaching the stored CRL's nextUpdate, not a wait.

use std::sync::Arc;
use std::time::Duration;

use certgate::domain::Clock;
use certgate::fetch::{CrlFetchMetrics, CrlFetcher, CrlTiming, FetchPolicy, MAX_BODY_BYTES};
use certgate::store::{Store, StoreOptions};
use serde_json::{json, Value};

use super::websocket::{closed_with, echoes, open, setup_ws};
use super::{caught_up, eventually, once, PROPAGATION};
use crate::helpers::{backend_tests, TestApp};
use crate::openssl_ca::{CrlServer, OpenSslCa, Publish};

backend_tests!(
    a_serial_revoked_at_the_ca_is_refused_within_one_refresh,
    a_bad_or_backwards_crl_is_refused_and_the_previous_kept,
    a_failing_fetch_keeps_the_last_crl_and_backs_off,
    replicas_share_one_fetch_per_url_per_interval,
    a_raised_fetch_limit_holds_from_both_sides,
);

const HOUR: i64 = 3600;
/// Long enough for several rounds of a fetcher (it looks every second at most).
const SEVERAL_TICKS: Duration = Duration::from_millis(2500);

/// A fetcher like `serve`'s (default timing: 5 minutes to 1 hour), allowed to reach the test
/// server on loopback; its metrics registry is returned for scrapes.
pub(crate) fn start_fetcher(
    store: Store,
) -> Arc<std::sync::Mutex<prometheus_client::registry::Registry>> {
    start_fetcher_reading(store, MAX_BODY_BYTES)
}

/// [`start_fetcher`] reading at most `max` bytes of a body (`serve --fetch-max-bytes`).
fn start_fetcher_reading(
    store: Store,
    max: usize,
) -> Arc<std::sync::Mutex<prometheus_client::registry::Registry>> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("certgate");
    let metrics = CrlFetchMetrics::register(&mut registry);
    let policy =
        FetchPolicy::new(true, certgate::fetch::client::CRL_FETCH_TIMEOUT).with_max_body_bytes(max);
    tokio::spawn(CrlFetcher::new(store, policy, CrlTiming::default(), metrics).run());
    Arc::new(std::sync::Mutex::new(registry))
}

pub(crate) fn fetches(
    registry: &std::sync::Mutex<prometheus_client::registry::Registry>,
    outcome: &str,
) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
    let prefix = format!("certgate_crl_fetches_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

/// `openssl` dates what it issues by the wall clock: the test's clock moves ten minutes ahead
/// first, so that what a test issues is already valid by it.
fn clock_ahead(app: &TestApp) {
    app.clock.advance(600);
}

/// Uploads `ca` with `crl_url` and activates it for the organization.
async fn upload_fetched(app: &TestApp, ca: &OpenSslCa, url: &str) -> String {
    app.api
        .upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await
}

pub(crate) async fn stored_crl(app: &TestApp, id: &str) -> Option<Value> {
    let got = app
        .api
        .get(&format!("/organization/certificates/{id}/crl"))
        .await;
    (got.status == 200).then(|| got.body.clone())
}

/// The `certificate.crl_fetched` payloads for `id`, oldest first.
async fn fetch_events(app: &TestApp, id: &str) -> Vec<Value> {
    let events = app
        .api
        .get(&format!(
            "/organization/audit_logs?event_types[]=certificate.crl_fetched&resource_ids[]={id}&limit=100"
        ))
        .await;
    let mut events: Vec<Value> = events.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["actor"].is_null(), "certgate itself fetches: {e}");
            e["certificate.crl_fetched"].clone()
        })
        .collect();
    events.reverse();
    events
}

async fn a_serial_revoked_at_the_ca_is_refused_within_one_refresh(app: TestApp) {
    clock_ahead(&app);
    let (gw, _up) = setup_ws(&app, Duration::from_secs(60)).await;
    let ca = OpenSslCa::new("Fetched CA");
    let now = app.clock.now();
    let server = CrlServer::start(Publish::Body(ca.gencrl(now - 60, now + HOUR).into())).await;
    let url = server.url("/fetched.crl");
    let id = upload_fetched(&app, &ca, &url).await;
    let registry = start_fetcher(app.store.clone());
    // Fetched at start.
    eventually!("the first CRL", stored_crl(&app, &id).await.is_some());
    let first = stored_crl(&app, &id).await.unwrap();
    assert_eq!(first["revoked_count"], 0);
    assert_eq!(first["next_update"], now + HOUR);

    let leaf = ca.issue_client("client");
    let sibling = ca.issue_client("sibling");
    caught_up(&app, &gw).await;
    let (mut ws, _) = open(&gw, Some(&leaf.identity()), &[]).await.expect("open");
    assert!(echoes(&mut ws, "hi").await);

    // Revoked at the CA, which publishes its next CRL. certgate fetches it when the stored
    // one's nextUpdate comes, not before.
    ca.revoke(&leaf);
    server.publish(Publish::Body(ca.gencrl(now, now + 2 * HOUR).into()));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(
        server.count(),
        1,
        "nothing fetched before the refresh is due"
    );
    app.clock.advance(HOUR);
    eventually!("the second fetch", server.count() == 2);
    eventually!(
        "the new CRL stored",
        stored_crl(&app, &id).await.unwrap()["revoked_count"] == 1
    );
    // The open WebSocket is closed, new requests refused; the sibling still admitted.
    let (code, _) = closed_with(&mut ws, PROPAGATION).await.expect("closed");
    assert_eq!(code, 1008);
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaf.identity()), &[])
        .await
        .refused(403, "client_certificate_revoked");
    let (mut sibling_ws, _) = open(&gw, Some(&sibling.identity()), &[])
        .await
        .expect("the sibling is admitted");
    assert!(echoes(&mut sibling_ws, "still here").await);
    let checked = app
        .api
        .post(
            "/organization/certificates/check",
            json!({"certificate": leaf.pem}),
        )
        .await;
    assert_eq!(checked.ok()["code"], "client_certificate_revoked");

    // Each fetch is in the audit log, with the CRL number openssl gave it, and counted.
    let events = fetch_events(&app, &id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["ok"], true);
    assert_eq!(events[0]["crl_number"], "1");
    assert_eq!(events[0]["url"], url.as_str());
    assert_eq!(events[1]["ok"], true);
    assert_eq!(events[1]["crl_number"], "2");
    assert_eq!(events[1]["revoked_count"], 1);
    assert_eq!(fetches(&registry, "stored"), 2);
    // Stored exactly as a PUT one: the usual event too.
    let updated = app
        .api
        .get(&format!(
            "/organization/audit_logs?event_types[]=certificate.crl_updated&resource_ids[]={id}"
        ))
        .await;
    assert_eq!(updated.ok()["data"].as_array().unwrap().len(), 2);
}

async fn a_bad_or_backwards_crl_is_refused_and_the_previous_kept(app: TestApp) {
    clock_ahead(&app);
    let (gw, _up) = super::setup(&app).await;
    let ca = OpenSslCa::new("Fetched CA");
    let leaf = ca.issue_client("client");
    let now = app.clock.now();
    let older = ca.gencrl(now - 120, now + HOUR);
    ca.revoke(&leaf);
    let current = ca.gencrl(now - 60, now + HOUR);
    let server = CrlServer::start(Publish::Body(current.into())).await;
    let id = upload_fetched(&app, &ca, &server.url("/ca.crl")).await;
    let registry = start_fetcher(app.store.clone());
    eventually!("the first CRL", stored_crl(&app, &id).await.is_some());
    let kept = stored_crl(&app, &id).await.unwrap();
    assert_eq!(kept["revoked_count"], 1);

    let stranger = OpenSslCa::new("Fetched CA");
    let marker = "SECRET-BODY-MARKER-7f3a";
    let bodies: [(Vec<u8>, &str); 4] = [
        (
            format!("<html>{marker}</html>").into_bytes(),
            "invalid_crl: not a CRL",
        ),
        (
            format!("-----BEGIN {marker}-----\nAAAA\n-----END {marker}-----\n").into_bytes(),
            "invalid_crl: not a CRL",
        ),
        // Same issuer name, another key: the signature does not verify.
        (
            stranger.gencrl(now, now + HOUR),
            "invalid_crl: it was not issued or not signed",
        ),
        // An older CRL of the CA itself: going backwards.
        (older, "crl_outdated"),
    ];
    for (n, (body, reason)) in bodies.into_iter().enumerate() {
        server.publish(Publish::Body(body.into()));
        app.clock.advance(HOUR);
        eventually!(format!("fetch {}", n + 2), server.count() == n + 2);
        eventually!("its event", fetch_events(&app, &id).await.len() == n + 2);
        let event = fetch_events(&app, &id).await.pop().unwrap();
        assert_eq!(event["ok"], false, "{event}");
        let said = event["reason"].as_str().unwrap();
        assert!(said.starts_with(reason), "{said}");
        // The previous CRL stays, and stays enforced.
        assert_eq!(stored_crl(&app, &id).await.unwrap(), kept);
        caught_up(&app, &gw).await;
        once(&gw, Some(&leaf.identity()), &[])
            .await
            .refused(403, "client_certificate_revoked");
    }
    assert_eq!(fetches(&registry, "refused"), 4);
    // Nothing of a fetched body reaches the audit log.
    let all = app.api.get("/organization/audit_logs?limit=100").await;
    assert!(!all.ok().to_string().contains(marker));
}

async fn a_failing_fetch_keeps_the_last_crl_and_backs_off(app: TestApp) {
    clock_ahead(&app);
    let (gw, _up) = super::setup(&app).await;
    let ca = OpenSslCa::new("Fetched CA");
    let leaf = ca.issue_client("client");
    ca.revoke(&leaf);
    let now = app.clock.now();
    // A CRL whose nextUpdate passes during the outage: stale, and still enforced.
    let server = CrlServer::start(Publish::Body(ca.gencrl(now - 60, now + 600).into())).await;
    let id = upload_fetched(&app, &ca, &server.url("/ca.crl")).await;
    let registry = start_fetcher(app.store.clone());
    eventually!("the first CRL", stored_crl(&app, &id).await.is_some());
    let kept = stored_crl(&app, &id).await.unwrap();

    server.publish(Publish::Status(503, "down for maintenance"));
    // The next fetch at nextUpdate (600 s); then 5, 10, 20 minutes after each failure.
    let mut fetched = 1;
    for wait in [600, 300, 600, 1200] {
        app.clock.advance(wait - 1);
        tokio::time::sleep(SEVERAL_TICKS).await;
        assert_eq!(server.count(), fetched, "not before {wait} s");
        app.clock.advance(1);
        fetched += 1;
        eventually!(
            format!("the fetch after {wait} s"),
            server.count() == fetched
        );
        eventually!("its event", fetch_events(&app, &id).await.len() == fetched);
    }
    let events = fetch_events(&app, &id).await;
    for event in &events[1..] {
        assert_eq!(event["ok"], false);
        assert_eq!(
            event["reason"],
            "fetch_failed: the server answered HTTP status 503."
        );
    }
    assert_eq!(fetches(&registry, "failed"), 4);
    assert_eq!(stored_crl(&app, &id).await.unwrap(), kept);
    let got = app
        .api
        .get(&format!(
            "/organization/certificates/{id}?include[]=details"
        ))
        .await;
    assert_eq!(got.ok()["certificate_details"]["crl"]["stale"], true);
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaf.identity()), &[])
        .await
        .refused(403, "client_certificate_revoked");
    // Back up: the next fetch succeeds and the backoff ends.
    server.publish(Publish::Body(
        ca.gencrl(app.clock.now() - 10, app.clock.now() + HOUR)
            .into(),
    ));
    app.clock.advance(2400);
    eventually!("the fetch after recovery", server.count() == fetched + 1);
    eventually!(
        "the new CRL",
        stored_crl(&app, &id).await.unwrap()["this_update"] != kept["this_update"]
    );
}

async fn replicas_share_one_fetch_per_url_per_interval(app: TestApp) {
    clock_ahead(&app);
    let ca = OpenSslCa::new("Fetched CA");
    let now = app.clock.now();
    let server = CrlServer::start(Publish::Body(ca.gencrl(now - 60, now + HOUR).into())).await;
    let url = server.url("/shared.crl");
    let id = upload_fetched(&app, &ca, &url).await;
    // Another organization names the same URL for the same CA: still one fetch per interval.
    let (_, them) = app.other_org().await;
    let theirs = them
        .upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await;
    // Two replicas: two stores on the one database, each with its fetcher.
    let mut options = StoreOptions::new(&app.db.url);
    options.timeout = Duration::from_secs(60);
    let second = Store::open(&options, app.clock.clone()).await.unwrap();
    start_fetcher(app.store.clone());
    start_fetcher(second);
    eventually!("the first fetch", server.count() == 1);
    eventually!("stored for both", {
        stored_crl(&app, &id).await.is_some()
            && them
                .get(&format!("/organization/certificates/{theirs}/crl"))
                .await
                .status
                == 200
    });
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(
        server.count(),
        1,
        "one fetch for both replicas and both CAs"
    );
    for interval in 2..=3 {
        app.clock.advance(HOUR);
        eventually!("the next interval's fetch", server.count() == interval);
        tokio::time::sleep(SEVERAL_TICKS).await;
        assert_eq!(server.count(), interval, "one fetch per interval");
    }
}

/// `der` (a CRL) as PEM, padded with trailing line breaks to exactly `len` bytes: the same CRL
/// to certgate (surrounding white space is ignored), at the length the test needs.
fn pem_of_length(der: &[u8], len: usize) -> bytes::Bytes {
    let mut text = pem::encode(&pem::Pem::new("X509 CRL", der.to_vec())).into_bytes();
    assert!(text.len() <= len, "the CRL alone is {} bytes", text.len());
    text.resize(len, b'\n');
    text.into()
}

/// A limit raised past 8 MiB (as for a CA with a 500,000-entry CRL): a CRL of exactly the
/// limit is stored and in force at the gateway; its successor, revoking the client, one byte
/// over the limit is refused as too large, nothing stored and the client still admitted; the
/// same successor within the limit revokes it.
async fn a_raised_fetch_limit_holds_from_both_sides(app: TestApp) {
    let limit = MAX_BODY_BYTES + 1024 * 1024;
    clock_ahead(&app);
    let (gw, _up) = super::setup(&app).await;
    let ca = OpenSslCa::new("Fetched CA");
    let leaf = ca.issue_client("client");
    let now = app.clock.now();
    let first = pem_of_length(&ca.gencrl(now - 120, now + HOUR), limit);
    ca.revoke(&leaf);
    let successor = ca.gencrl(now - 60, now + 2 * HOUR);
    let server = CrlServer::start(Publish::Body(first)).await;
    let id = upload_fetched(&app, &ca, &server.url("/ca.crl")).await;
    let registry = start_fetcher_reading(app.store.clone(), limit);
    eventually!(
        "the CRL of exactly the limit",
        stored_crl(&app, &id).await.is_some()
    );
    let kept = stored_crl(&app, &id).await.unwrap();
    assert_eq!(kept["revoked_count"], 0);
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaf.identity()), &[]).await.admitted();

    server.publish(Publish::Body(pem_of_length(&successor, limit + 1)));
    app.clock.advance(HOUR);
    eventually!("the second fetch", server.count() == 2);
    eventually!("its event", fetch_events(&app, &id).await.len() == 2);
    let event = fetch_events(&app, &id).await.pop().unwrap();
    assert_eq!(event["ok"], false, "{event}");
    assert_eq!(
        event["reason"],
        format!(
            "fetch_failed: the body is larger than {limit} bytes (the fetch limit, \
             --fetch-max-bytes); reading stopped there."
        )
    );
    assert_eq!(fetches(&registry, "failed"), 1);
    assert_eq!(stored_crl(&app, &id).await.unwrap(), kept, "nothing stored");
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaf.identity()), &[]).await.admitted();

    // The same CRL within the limit: it was refused for its size alone. The next try comes
    // after the first backoff (5 minutes).
    server.publish(Publish::Body(pem_of_length(&successor, limit)));
    app.clock.advance(300);
    eventually!("the third fetch", server.count() == 3);
    eventually!(
        "the successor stored",
        stored_crl(&app, &id).await.unwrap()["revoked_count"] == 1
    );
    assert_eq!(fetches(&registry, "stored"), 2);
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaf.identity()), &[])
        .await
        .refused(403, "client_certificate_revoked");
}
