//! The CRL fetcher's lease rows (spec §13.4: one fetch per URL per interval across replicas),
//! read and written as the fetcher does, on both backends: the per-tick read names due URLs
//! only, a claimed URL is nobody else's, and only its holder can extend or end the lease; and
//! the fetcher itself keeps the lease it claimed, applying nothing once another replica took it.

use std::sync::{Arc, Mutex};

use certgate::domain::Clock;
use serde_json::json;

use crate::gateway::crl_fetch::{fetches, start_fetcher};
use crate::gateway::eventually;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    leases_are_held_by_one_replica_and_extended_only_by_it,
    a_fetcher_whose_lease_was_taken_while_fetching_applies_nothing,
);

/// How long a claim holds a URL with the default fetch time limit: the fetch's 10 s and 30 s
/// to apply it.
const LEASE_SECS: i64 = 40;

async fn leases_are_held_by_one_replica_and_extended_only_by_it(app: TestApp) {
    let url = "http://crl.example/ca.crl";
    let ca = pki::ca("Fetched CA");
    let ours = app
        .api
        .upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await;
    let (_, them) = app.other_org().await;
    them.upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await;
    let store = &app.store;
    // Two certificates name it: one URL, due at once.
    assert_eq!(store.due_crl_urls().await.unwrap(), vec![url.to_owned()]);
    let sources = store.crl_sources(url).await.unwrap();
    assert_eq!(sources.len(), 2);
    assert!(sources.iter().any(|s| s.certificate_id.as_str() == ours));
    assert!(sources.iter().all(|s| s.pem.contains("BEGIN CERTIFICATE")));

    let now = app.clock.now();
    assert_eq!(
        store.claim_crl_fetch(url, "a", now + 40).await.unwrap(),
        Some(0)
    );
    assert!(store.due_crl_urls().await.unwrap().is_empty(), "leased");
    assert_eq!(
        store.claim_crl_fetch(url, "b", now + 40).await.unwrap(),
        None
    );
    // Only the holder extends it; past the first lease's end it is still a's.
    assert!(!store.extend_crl_fetch(url, "b", now + 200).await.unwrap());
    assert!(store.extend_crl_fetch(url, "a", now + 100).await.unwrap());
    app.clock.advance(60);
    assert!(store.due_crl_urls().await.unwrap().is_empty(), "extended");
    assert_eq!(
        store
            .claim_crl_fetch(url, "b", app.clock.now() + 40)
            .await
            .unwrap(),
        None
    );
    // Ended by its holder with the next fetch an hour on: not due until then.
    store
        .finish_crl_fetch(url, "a", app.clock.now() + 3600, 0)
        .await
        .unwrap();
    assert!(!store
        .extend_crl_fetch(url, "a", app.clock.now() + 100)
        .await
        .unwrap());
    assert!(store.due_crl_urls().await.unwrap().is_empty());
    app.clock.advance(3600);
    assert_eq!(store.due_crl_urls().await.unwrap(), vec![url.to_owned()]);
}

/// The fetcher keeps its lease from the claim on, and gives way when it lost it: a fetch that
/// outlasts the lease (the test's clock passes its end while the body is sent) and whose URL
/// another replica claims meanwhile is applied to no certificate, and the other replica's lease
/// stands. A fetcher that did not keep its lease would store the CRL for both.
async fn a_fetcher_whose_lease_was_taken_while_fetching_applies_nothing(app: TestApp) {
    let ca = pki::ca("Fetched CA");
    let now = app.clock.now();
    let body = bytes::Bytes::from(pki::crl(&ca, &[], now - 60, now + 3600).der().to_vec());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
    let claims: Arc<Mutex<Vec<Option<i64>>>> = Arc::default();
    let (clock, store, taken, at) = (
        app.clock.clone(),
        app.store.clone(),
        claims.clone(),
        url.clone(),
    );
    let server = axum::Router::new().fallback(move || {
        let (clock, store, taken, at, body) = (
            clock.clone(),
            store.clone(),
            taken.clone(),
            at.clone(),
            body.clone(),
        );
        async move {
            clock.advance(LEASE_SECS + 1);
            let claim = store
                .claim_crl_fetch(&at, "other replica", clock.now() + LEASE_SECS)
                .await
                .unwrap();
            taken.lock().unwrap().push(claim);
            body
        }
    });
    tokio::spawn(async move { axum::serve(listener, server).await });
    let ours = app
        .api
        .upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await;
    let (_, them) = app.other_org().await;
    let theirs = them
        .upload_active_with(&ca.pem(), json!({"crl_url": url}))
        .await;

    let registry = start_fetcher(app.store.clone());
    eventually!("both certificates given up", {
        fetches(&registry, "lease_lost") == 2
    });
    assert_eq!(
        *claims.lock().unwrap(),
        vec![Some(0)],
        "fetched once, and claimed by the other replica while the body was sent"
    );
    for (id, api) in [(&ours, &app.api), (&theirs, &them)] {
        let got = api
            .get(&format!("/organization/certificates/{id}/crl"))
            .await;
        assert_eq!(got.status, 404, "nothing stored for {id}: {:?}", got.body);
    }
    assert_eq!(fetches(&registry, "stored"), 0);
    assert!(
        app.store
            .extend_crl_fetch(&url, "other replica", app.clock.now() + LEASE_SECS)
            .await
            .unwrap(),
        "the other replica's lease stands"
    );
}
