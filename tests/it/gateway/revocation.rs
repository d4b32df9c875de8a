//! Revocation at the gateway (spec §12.5): the deny-list and CRLs refuse exactly the revoked
//! certificates, on new and on open connections, on every gateway within the propagation
//! bound.

use certgate::domain::Clock;
use serde_json::json;
use sha2::Digest;

use super::{caught_up, connect, eventually, good_leaf, identity, once, setup, Gw, DAY};
use crate::helpers::{backend_tests, serve_in_background, TestApp};
use crate::metrics::Scrape;
use crate::pki::{self, CrlShape};

backend_tests!(
    a_deny_listed_leaf_is_refused_and_its_sibling_admitted,
    crl_revocations_are_enforced_also_when_stale,
    revocation_reaches_open_connections,
    refusal_codes_keep_their_order,
    a_delta_or_future_crl_never_replaces_the_full_one,
    only_active_cas_crls_are_held_and_each_is_read_once,
    a_crl_stored_without_hash_or_size_is_enforced_and_read_once,
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

/// Issue 30: a newer delta CRL replaced the CA's full one and re-admitted a revoked client, and
/// a CRL dated 2096 made every real CRL "outdated". Both are refused; the full CRL stays in
/// force, and the next real one is stored.
async fn a_delta_or_future_crl_never_replaces_the_full_one(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let now = app.clock.now();
    let path = format!("/organization/certificates/{ca_id}/crl");
    let revoked = pki::leaf(&ca, "revoked", now - DAY, now + 30 * DAY);
    let full = pki::crl(&ca, &[pki::serial_of(&revoked.cert)], now - 60, now + DAY);
    app.api
        .put_json(&path, json!({"crl": full.pem().unwrap()}))
        .await
        .ok();
    caught_up(&app, &gw).await;
    let id = identity(&revoked, &[]);
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_revoked");
    // A newer delta CRL (deltaCRLIndicator: base CRL number 1) that does not list the leaf.
    let delta = pki::crl_der(
        &ca,
        &CrlShape {
            extensions: vec![pki::extension(&[2, 5, 29, 27], true, &[0x02, 0x01, 0x01])],
            ..CrlShape::revoking(&[], now, now + DAY)
        },
    );
    let delta = pem::encode(&pem::Pem::new("X509 CRL", delta));
    app.api
        .put_json(&path, json!({"crl": delta}))
        .await
        .err(400, Some("invalid_crl"), Some("crl"));
    let future = pki::crl(&ca, &[], 3_976_300_800, 3_976_300_800 + DAY);
    app.api
        .put_json(&path, json!({"crl": future.pem().unwrap()}))
        .await
        .err(400, Some("invalid_crl"), Some("crl"));
    caught_up(&app, &gw).await;
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_revoked");
    // The CA's next complete CRL is stored (not "outdated") and lifts the revocation.
    let next = pki::crl(&ca, &[], now, now + DAY);
    app.api
        .put_json(&path, json!({"crl": next.pem().unwrap()}))
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&id), &[]).await.admitted();
}

/// The CA certificate ids whose CRLs the gateway holds.
fn held(gw: &Gw) -> Vec<String> {
    let mut ids: Vec<String> = gw
        .trust
        .index()
        .crl_versions()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

/// Spec §13.5: the gateway holds the CRLs of CAs active somewhere and no others, reads each
/// version once (a reload after an unrelated change, or a full one, reads no CRL bytes), and a
/// CA that becomes active brings its CRL in the same reload, enforced from the first request.
/// The check endpoint agrees at every step.
async fn only_active_cas_crls_are_held_and_each_is_read_once(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    serve_in_background(
        listener,
        gw.gateway.metrics_router(),
        certgate::runtime::ConnectionLimits::default(),
    );
    let read_total = || async move {
        Scrape::of(metrics)
            .await
            .value("certgate_trust_crl_bytes_read_total", &[])
    };
    let now = app.clock.now();
    let active = pki::ca("Active CA");
    let active_id = app.api.upload_active(&active).await;
    let idle = pki::ca("Idle CA");
    let idle_id = app.api.upload(&idle.pem(), None).await.id();
    let revoked_a = pki::leaf(&active, "revoked-a", now - DAY, now + 30 * DAY);
    let revoked_i = pki::leaf(&idle, "revoked-i", now - DAY, now + 30 * DAY);
    let fine_i = good_leaf(&idle);
    let crl_a = pki::crl(
        &active,
        &[pki::serial_of(&revoked_a.cert)],
        now - 60,
        now + DAY,
    );
    let crl_i = pki::crl(
        &idle,
        &[pki::serial_of(&revoked_i.cert)],
        now - 60,
        now + DAY,
    );
    for (id, crl) in [(&active_id, &crl_a), (&idle_id, &crl_i)] {
        app.api
            .put_json(
                &format!("/organization/certificates/{id}/crl"),
                json!({"crl": crl.pem().unwrap()}),
            )
            .await
            .ok();
    }
    let (a_len, i_len) = (crl_a.der().len() as u64, crl_i.der().len() as u64);
    caught_up(&app, &gw).await;
    assert_eq!(held(&gw), vec![active_id.clone()]);
    assert_eq!(gw.trust.index().crl_bytes_read(), a_len);
    let check = |leaf: &pki::Leaf, project: Option<&str>| {
        let mut body = json!({"certificate": leaf.cert.pem()});
        if let Some(p) = project {
            body["project_id"] = json!(p);
        }
        let api = &app.api;
        async move {
            let r = api.post("/organization/certificates/check", body).await;
            r.ok()["code"].as_str().map(str::to_owned)
        }
    };
    let client_of_active = identity(&revoked_a, &[]);
    once(&gw, Some(&client_of_active), &[])
        .await
        .refused(403, "client_certificate_revoked");
    assert_eq!(
        check(&revoked_a, None).await.as_deref(),
        Some("client_certificate_revoked")
    );
    let client_of_idle = identity(&revoked_i, &[]);
    once(&gw, Some(&client_of_idle), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    assert_eq!(
        check(&revoked_i, None).await.as_deref(),
        Some("client_certificate_untrusted")
    );

    // Unrelated changes, then a full reload: not one CRL byte read again.
    let project = app.api.create_project("later").await;
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": "ab".repeat(32)}),
        )
        .await
        .ok();
    let (_, them) = app.other_org().await;
    them.upload_active(&pki::ca("Their CA")).await;
    caught_up(&app, &gw).await;
    gw.trust.refresh(&app.store, true).await.unwrap();
    assert_eq!(gw.trust.index().crl_bytes_read(), a_len);
    assert_eq!(read_total().await, i64::try_from(a_len).unwrap());

    // Activated for a project, the idle CA comes with its CRL: enforced at once.
    app.api
        .toggle_project(&project, "activate", &[&idle_id])
        .await;
    caught_up(&app, &gw).await;
    let scoped = [("openai-project", project.as_str())];
    once(&gw, Some(&client_of_idle), &scoped)
        .await
        .refused(403, "client_certificate_revoked");
    once(&gw, Some(&fine_i), &scoped).await.admitted();
    assert_eq!(
        check(&revoked_i, Some(&project)).await.as_deref(),
        Some("client_certificate_revoked")
    );
    assert_eq!(held(&gw), {
        let mut both = vec![active_id.clone(), idle_id.clone()];
        both.sort();
        both
    });
    assert_eq!(gw.trust.index().crl_bytes_read(), a_len + i_len);
    // Deactivated again, it is dropped.
    app.api
        .toggle_project(&project, "deactivate", &[&idle_id])
        .await;
    caught_up(&app, &gw).await;
    assert_eq!(held(&gw), vec![active_id.clone()]);
    // A new CRL of the active CA is read once, and replaces the old one.
    let crl_a2 = pki::crl(&active, &[], now, now + DAY);
    app.api
        .put_json(
            &format!("/organization/certificates/{active_id}/crl"),
            json!({"crl": crl_a2.pem().unwrap()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&client_of_active), &[]).await.admitted();
    assert_eq!(check(&revoked_a, None).await, None);
    let total = a_len + i_len + crl_a2.der().len() as u64;
    assert_eq!(gw.trust.index().crl_bytes_read(), total);
    assert_eq!(read_total().await, i64::try_from(total).unwrap());
}

/// A CRL stored before migration 0004, or by a replica of the previous version (no content
/// hash, no size): the gateway enforces it, names its version after `seq` so that it is not
/// read again, and a new upload replaces it.
async fn a_crl_stored_without_hash_or_size_is_enforced_and_read_once(app: TestApp) {
    use base64::Engine as _;
    use sqlx::Connection;
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let now = app.clock.now();
    let revoked = pki::leaf(&ca, "revoked", now - DAY, now + 30 * DAY);
    let legacy = pki::crl(&ca, &[pki::serial_of(&revoked.cert)], now - 60, now + DAY);
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO certificate_crls (certificate_id, org_id, der_base64, this_update, next_update, revoked_count, seq)
         VALUES ($1, $2, $3, $4, $5, 1, 4242)",
    )
    .bind(&ca_id)
    .bind(&app.org_id)
    .bind(base64::engine::general_purpose::STANDARD.encode(legacy.der()))
    .bind(now - 60)
    .bind(now + DAY)
    .execute(&mut conn)
    .await
    .unwrap();
    // As the previous version's store did: the generation moves, with no change record, which
    // gateways take for a gap and answer with a full read (decisions.md D50).
    sqlx::query("UPDATE trust_state SET generation = generation + 1 WHERE id = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    caught_up(&app, &gw).await;
    let id = identity(&revoked, &[]);
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_revoked");
    let versions: Vec<_> = gw.trust.index().crl_versions().into_iter().collect();
    assert_eq!(versions, vec![(ca_id.clone(), "seq:4242".to_owned())]);
    let read = gw.trust.index().crl_bytes_read();
    assert_eq!(read, legacy.der().len() as u64);
    app.api.create_project("again").await;
    caught_up(&app, &gw).await;
    assert_eq!(gw.trust.index().crl_bytes_read(), read);
    // Replacing it counts its size from the base64, and the new one is named by its hash.
    let next = pki::crl(&ca, &[], now, now + DAY);
    app.api
        .put_json(
            &format!("/organization/certificates/{ca_id}/crl"),
            json!({"crl": next.pem().unwrap()}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&id), &[]).await.admitted();
    let hash = hex::encode(sha2::Sha256::digest(next.der()));
    let versions: Vec<_> = gw.trust.index().crl_versions().into_iter().collect();
    assert_eq!(versions, vec![(ca_id, hash)]);
}
