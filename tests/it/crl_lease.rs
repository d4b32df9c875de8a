//! The CRL fetcher's lease rows (spec §13.4: one fetch per URL per interval across replicas),
//! read and written as the fetcher does, on both backends: the per-tick read names due URLs
//! only, a claimed URL is nobody else's, and only its holder can extend or end the lease.

use certgate::domain::Clock;
use serde_json::json;

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(leases_are_held_by_one_replica_and_extended_only_by_it);

async fn leases_are_held_by_one_replica_and_extended_only_by_it(app: TestApp) {
    let url = "http://crl.example/ca.crl";
    let ca = pki::ca("Fetched CA");
    let ours = app
        .api
        .post(
            "/organization/certificates",
            json!({"certificate": ca.pem(), "crl_url": url}),
        )
        .await
        .id();
    let (_, them) = app.other_org().await;
    them.post(
        "/organization/certificates",
        json!({"certificate": ca.pem(), "crl_url": url}),
    )
    .await
    .id();
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
