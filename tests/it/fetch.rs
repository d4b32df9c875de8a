//! The guarded HTTP client for tenant-chosen URLs (spec §13.4, decisions.md D60), against a
//! real HTTP server on loopback: private targets refused unless allowed, redirects not followed,
//! bodies cut at 8 MiB, one 10 s limit (tested from both sides), and `serve` with and without
//! `--fetch-allow-private`, never echoing a fetched body in its events or logs.

use std::time::{Duration, Instant};

use certgate::fetch::client::{fetch, Request, CRL_FETCH_TIMEOUT};
use certgate::fetch::{FetchError, FetchPolicy, MAX_BODY_BYTES};
use serde_json::json;

use crate::bounds::assert_on_time;
use crate::helpers::{db_tests, TestDb};
use crate::openssl_ca::{CrlServer, OpenSslCa, Publish};
use crate::process::Process;

db_tests!(serve_refuses_private_targets_unless_allowed_and_never_echoes_a_body);

async fn get(url: &str, allow_private: bool) -> Result<bytes::Bytes, FetchError> {
    let url = url::Url::parse(url).unwrap();
    let policy = FetchPolicy::new(allow_private, CRL_FETCH_TIMEOUT);
    fetch(
        Request {
            url: &url,
            accept: "*/*",
            body: None,
        },
        &policy,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let server = CrlServer::start(Publish::Body("crl".into())).await;
    let port = server.addr.port();
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{port}/x.crl");
        assert_eq!(
            get(&url, false).await,
            Err(FetchError::PrivateAddress),
            "{url}"
        );
    }
    assert_eq!(server.count(), 0, "refused before connecting");
    assert_eq!(get(&server.url("/x.crl"), true).await.unwrap(), "crl");
    assert_eq!(server.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let target = CrlServer::start(Publish::Body("elsewhere".into())).await;
    let server = CrlServer::start(Publish::Redirect(target.url("/inside"))).await;
    let got = get(&server.url("/x.crl"), true).await;
    assert_eq!(got, Err(FetchError::Redirect(302)));
    assert_eq!(target.count(), 0, "the redirect's target is never asked");
    assert!(got.unwrap_err().to_string().contains("not followed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_cut_at_8_mib() {
    // An endless body: refused as too large as soon as the limit is passed, not at the timeout.
    let server = CrlServer::start(Publish::Endless).await;
    let started = Instant::now();
    assert_eq!(
        get(&server.url("/x.crl"), true).await,
        Err(FetchError::TooLarge)
    );
    assert!(started.elapsed() < CRL_FETCH_TIMEOUT);
    // Exactly the limit passes; one byte more does not.
    server.publish(Publish::Body(vec![b'A'; MAX_BODY_BYTES].into()));
    assert_eq!(
        get(&server.url("/x.crl"), true).await.unwrap().len(),
        MAX_BODY_BYTES
    );
    server.publish(Publish::Body(vec![b'A'; MAX_BODY_BYTES + 1].into()));
    assert_eq!(
        get(&server.url("/x.crl"), true).await,
        Err(FetchError::TooLarge)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_given_up_on_at_10_s() {
    let server = CrlServer::start(Publish::Silence).await;
    let started = Instant::now();
    assert_eq!(
        get(&server.url("/x.crl"), true).await,
        Err(FetchError::Timeout(10))
    );
    assert_on_time("fetch time limit", started.elapsed(), CRL_FETCH_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_carry_the_body() {
    let marker = "SECRET-BODY-MARKER-c41d";
    let server = CrlServer::start(Publish::Status(500, marker)).await;
    let got = get(&server.url("/x.crl"), true).await.unwrap_err();
    assert_eq!(got, FetchError::Status(500));
    assert!(!got.to_string().contains(marker));
    assert!(!format!("{got:?}").contains(marker));
}

async fn serve_refuses_private_targets_unless_allowed_and_never_echoes_a_body(db: TestDb) {
    let marker = "SECRET-BODY-MARKER-90be";
    let ca = OpenSslCa::new("Fetched CA");
    let server = CrlServer::start(Publish::Body(
        format!("-----BEGIN {marker}-----\nAAAA\n-----END {marker}-----\n").into(),
    ))
    .await;
    let url = server.url("/ca.crl");

    // Without the flag: the loopback target is refused, and the refusal is an event.
    let mut serve = Process::serve(&db.url, &[]).await;
    let key = serve.process.bootstrap_key().expect("bootstrap key");
    let api = serve.api(&key);
    let id = api
        .post(
            "/organization/certificates",
            json!({"certificate": ca.pem(), "crl_url": url}),
        )
        .await
        .id();
    let events_path = format!(
        "/organization/audit_logs?event_types[]=certificate.crl_fetched&resource_ids[]={id}"
    );
    let mut events = serde_json::Value::Null;
    for _ in 0..200 {
        events = api.get(&events_path).await.ok().clone();
        if !events["data"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = &events["data"][0]["certificate.crl_fetched"];
    assert_eq!(event["ok"], false, "{events}");
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .contains("--fetch-allow-private"),
        "{event}"
    );
    assert_eq!(server.count(), 0, "never connected");
    serve.process.terminate_and_wait();

    // With it (and the lease row due again: a new URL): fetched, refused as not a CRL, and the
    // body is nowhere, not in the event, not in the logs.
    let mut serve = Process::serve(&db.url, &["--fetch-allow-private"]).await;
    let api = serve.api(&key);
    let other = server.url("/again.crl");
    api.post(
        &format!("/organization/certificates/{id}"),
        json!({"crl_url": other}),
    )
    .await
    .ok();
    for _ in 0..200 {
        if server.count() > 0
            && api.get(&events_path).await.ok()["data"]
                .as_array()
                .unwrap()
                .len()
                == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = api.get(&events_path).await.ok().clone();
    let event = &events["data"][0]["certificate.crl_fetched"];
    assert_eq!(event["ok"], false, "{events}");
    assert_eq!(event["url"], other.as_str());
    assert!(
        event["reason"].as_str().unwrap().starts_with("invalid_crl"),
        "{event}"
    );
    assert!(!events.to_string().contains(marker));
    serve.process.terminate_and_wait();
    assert!(
        !serve.process.output().contains(marker),
        "{}",
        serve.process.output()
    );
}
