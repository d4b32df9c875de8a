//! Revocation at the gateway (spec §12.5): the deny-list and CRLs refuse exactly the revoked
//! certificates, on new and on open connections, on every gateway within the propagation
//! bound.

use certgate::domain::Clock;
use serde_json::json;
use sha2::Digest;

use super::{caught_up, connect, eventually, good_leaf, identity, once, setup, DAY};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    a_deny_listed_leaf_is_refused_and_its_sibling_admitted,
    crl_revocations_are_enforced_also_when_stale,
    revocation_reaches_open_connections,
    refusal_codes_keep_their_order,
);

async fn a_deny_listed_leaf_is_refused_and_its_sibling_admitted(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let now = app.clock.now();
    let leaked = pki::leaf(&ca, "leaked", now - DAY, now + 30 * DAY);
    let sibling = good_leaf(&ca);
    caught_up(&app, &gw).await;
    let leaked_id = identity(&leaked, &[]);
    once(&gw, Some(&leaked_id), &[]).await.admitted();
    let entry = app
        .api
        .post(
            "/organization/revoked_certificates",
            json!({"certificate": leaked.cert.pem(), "reason": "laptop stolen"}),
        )
        .await
        .id();
    caught_up(&app, &gw).await;
    let r = once(&gw, Some(&leaked_id), &[]).await;
    r.refused(403, "client_certificate_revoked");
    // The check endpoint says the same, word for word.
    let checked = app
        .api
        .post(
            "/organization/certificates/check",
            json!({"certificate": leaked.cert.pem()}),
        )
        .await;
    let checked = checked.ok();
    assert_eq!(checked["admitted"], false);
    assert_eq!(checked["code"], "client_certificate_revoked");
    assert_eq!(checked["message"], r.body["error"]["message"]);
    once(&gw, Some(&sibling), &[]).await.admitted();
    // Another organization's deny-list does not apply to this one.
    let (other_org, them) = app.other_org().await;
    them.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    once(
        &gw,
        Some(&leaked_id),
        &[("openai-organization", other_org.as_str())],
    )
    .await
    .admitted();
    // Removing the entry lets it back in.
    app.api
        .delete(&format!("/organization/revoked_certificates/{entry}"))
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&leaked_id), &[]).await.admitted();
    // An intermediate on the deny-list takes down what it issued.
    let inter = pki::intermediate(&ca, "Issuing CA", now - DAY, now + 100 * DAY);
    let below = identity(&pki::leaf(&inter, "below", now - DAY, now + DAY), &[&inter]);
    once(&gw, Some(&below), &[]).await.admitted();
    let fp = hex::encode(sha2::Sha256::digest(inter.cert.der()));
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": fp}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&below), &[])
        .await
        .refused(403, "client_certificate_revoked");
    once(&gw, Some(&sibling), &[]).await.admitted();
}

async fn crl_revocations_are_enforced_also_when_stale(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let now = app.clock.now();
    let revoked = pki::leaf(&ca, "revoked", now - DAY, now + 30 * DAY);
    let fine = good_leaf(&ca);
    let inter = pki::intermediate(&ca, "Issuing CA", now - DAY, now + 100 * DAY);
    let below = identity(&pki::leaf(&inter, "below", now - DAY, now + DAY), &[&inter]);
    // The anchor's CRL lists the leaf it issued and the intermediate it issued.
    let crl = pki::crl(
        &ca,
        &[pki::serial_of(&revoked.cert), pki::serial_of(&inter.cert)],
        now - 60,
        now + 3600,
    );
    app.api
        .put_json(
            &format!("/organization/certificates/{ca_id}/crl"),
            json!({"crl": crl.pem().unwrap()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    let revoked_id = identity(&revoked, &[]);
    once(&gw, Some(&revoked_id), &[])
        .await
        .refused(403, "client_certificate_revoked");
    once(&gw, Some(&below), &[])
        .await
        .refused(403, "client_certificate_revoked");
    once(&gw, Some(&fine), &[]).await.admitted();
    // Past its nextUpdate the CRL stays enforced: never fail open.
    app.clock.set(now + 7200);
    once(&gw, Some(&revoked_id), &[])
        .await
        .refused(403, "client_certificate_revoked");
    once(&gw, Some(&fine), &[]).await.admitted();
    app.clock.set(now);
    // Deleting the CRL lifts it.
    app.api
        .delete(&format!("/organization/certificates/{ca_id}/crl"))
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&revoked_id), &[]).await.admitted();
}

async fn revocation_reaches_open_connections(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let now = app.clock.now();
    let leaf = pki::leaf(&ca, "kept-alive", now - DAY, now + 30 * DAY);
    caught_up(&app, &gw).await;
    let id = identity(&leaf, &[]);
    let mut h1 = connect(&gw, Some(&id), false).await;
    let mut h2 = connect(&gw, Some(&id), true).await;
    h1.get(&[]).await.admitted();
    h2.get(&[]).await.admitted();
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"certificate": leaf.cert.pem()}),
        )
        .await
        .ok();
    eventually!(
        "revocation on an open HTTP/1.1 connection",
        h1.get(&[]).await.status == 403
    );
    eventually!(
        "revocation on an open HTTP/2 connection",
        h2.get(&[]).await.status == 403
    );
    h1.get(&[]).await.refused(403, "client_certificate_revoked");
}

/// When several refusals apply, the code is the first failing check of the CA that got
/// furthest: a revoked leaf of a CA active only for another project is "not active for
/// project", not "revoked".
async fn refusal_codes_keep_their_order(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Project CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    app.api.toggle_project(&p1, "activate", &[&ca_id]).await;
    let now = app.clock.now();
    let leaf = pki::leaf(&ca, "both", now - DAY, now + 30 * DAY);
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"certificate": leaf.cert.pem()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    let id = identity(&leaf, &[]);
    once(&gw, Some(&id), &[("openai-project", p2.as_str())])
        .await
        .refused(403, "client_certificate_not_active_for_project");
    once(&gw, Some(&id), &[("openai-project", p1.as_str())])
        .await
        .refused(403, "client_certificate_revoked");
    // Expired beats revoked only when it comes first: an expired, revoked leaf is "expired".
    let old = pki::leaf(&ca, "old", now - 30 * DAY, now - DAY);
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"certificate": old.cert.pem()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(
        &gw,
        Some(&identity(&old, &[])),
        &[("openai-project", p1.as_str())],
    )
    .await
    .refused(403, "client_certificate_expired");
}
