//! Who the gateway admits: client certificates against the active CAs, their validity, the
//! anchors' validity, and the organization and project a request names.

use certgate::domain::Clock;
use rustls_pki_types::PrivateKeyDer;

use super::{caught_up, connect, good_leaf, identity, once, setup, Identity, DAY};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    no_certificate_is_refused,
    untrusted_and_foreign_cas_are_refused,
    leaf_validity_is_enforced,
    anchor_validity_is_enforced_at_its_boundaries,
    project_scope,
    organization_comes_from_the_header_or_the_default,
    intermediates_sent_by_the_client,
    leaf_must_allow_client_auth,
);

async fn no_certificate_is_refused(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let r = once(&gw, None, &[]).await;
    r.refused(403, "client_certificate_required");
    assert_eq!(r.headers["x-should-retry"], "false");
    let r = once(&gw, None, &[("openai-organization", app.org_id.as_str())]).await;
    r.refused(403, "client_certificate_required");
    // Over HTTP/2 too.
    let r = connect(&gw, None, true).await.get(&[]).await;
    r.refused(403, "client_certificate_required");
}

async fn untrusted_and_foreign_cas_are_refused(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ours = pki::ca("Our CA");
    app.api.upload_active(&ours).await;
    // Never uploaded.
    let stranger = pki::ca("Stranger CA");
    // Uploaded but not active.
    let inactive = pki::ca("Inactive CA");
    app.api.upload(&inactive.pem(), None).await.ok();
    // Same subject as ours, different key: found by name, refused by signature.
    let impostor = pki::ca("Our CA");
    // Active, but for another organization.
    let (other_org, other) = app.other_org().await;
    let theirs = pki::ca("Their CA");
    let theirs_id = other.upload_active(&theirs).await;
    caught_up(&app, &gw).await;

    let ours_hdr = [("openai-organization", app.org_id.as_str())];
    // Control: our CA admits, so the refusals below are about the other CAs alone.
    once(&gw, Some(&good_leaf(&ours)), &ours_hdr)
        .await
        .admitted();
    for ca in [&stranger, &inactive, &impostor] {
        once(&gw, Some(&good_leaf(ca)), &[])
            .await
            .refused(403, "client_certificate_untrusted");
        once(&gw, Some(&good_leaf(ca)), &ours_hdr)
            .await
            .refused(403, "client_certificate_untrusted");
    }
    // Their CA never admits into our organization...
    once(&gw, Some(&good_leaf(&theirs)), &ours_hdr)
        .await
        .refused(403, "client_certificate_untrusted");
    // ... and ours never into theirs.
    once(
        &gw,
        Some(&good_leaf(&ours)),
        &[("openai-organization", other_org.as_str())],
    )
    .await
    .refused(403, "client_certificate_untrusted");
    // Their CA admits into their organization when the request names it, and never into the
    // gateway's default organization (ours) when it does not: the organization is never
    // inferred from the certificate.
    once(&gw, Some(&good_leaf(&theirs)), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    let r = once(
        &gw,
        Some(&good_leaf(&theirs)),
        &[("openai-organization", other_org.as_str())],
    )
    .await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        theirs_id.as_str()
    );
    // A self-signed client certificate is refused, not an error.
    let selfsigned = pki::ca("Self");
    let me = Identity {
        chain: vec![selfsigned.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(selfsigned.key.serialize_der().into()),
        leaf_sha256: String::new(),
    };
    once(&gw, Some(&me), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn leaf_validity_is_enforced(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let now = app.clock.now();
    let expired = identity(&pki::leaf(&ca, "old", now - 30 * DAY, now - DAY), &[]);
    let future = identity(&pki::leaf(&ca, "new", now + DAY, now + 30 * DAY), &[]);
    once(&gw, Some(&expired), &[])
        .await
        .refused(403, "client_certificate_expired");
    once(&gw, Some(&future), &[])
        .await
        .refused(403, "client_certificate_expired");
    // An expired leaf from an untrusted CA is "untrusted": "expired" is only said of genuine chains.
    let stranger = pki::ca("Stranger");
    let stale = identity(&pki::leaf(&stranger, "old", now - 30 * DAY, now - DAY), &[]);
    once(&gw, Some(&stale), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    // Time is the store's clock: move it into the future leaf's window and it is admitted.
    app.clock.set(now + 2 * DAY);
    once(&gw, Some(&future), &[]).await.admitted();
}

async fn anchor_validity_is_enforced_at_its_boundaries(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    // Valid from now for two days; the leaf outlives it.
    let ca = pki::ca_valid("Short CA", now, now + 2 * DAY);
    app.api.upload_active(&ca).await;
    // Staged for a rotation: not valid for another hour.
    let staged = pki::ca_valid("Staged CA", now + 3600, now + 365 * DAY);
    app.api.upload_active(&staged).await;
    caught_up(&app, &gw).await;
    let leaf = identity(&pki::leaf(&ca, "c", now - DAY, now + 30 * DAY), &[]);
    let staged_leaf = identity(&pki::leaf(&staged, "s", now - DAY, now + 30 * DAY), &[]);

    once(&gw, Some(&leaf), &[]).await.admitted();
    once(&gw, Some(&staged_leaf), &[])
        .await
        .refused(403, "client_certificate_expired");
    // notBefore is the first valid second.
    app.clock.set(now + 3599);
    once(&gw, Some(&staged_leaf), &[])
        .await
        .refused(403, "client_certificate_expired");
    app.clock.set(now + 3600);
    once(&gw, Some(&staged_leaf), &[]).await.admitted();

    // notAfter is the last valid second; one second later the anchor drops out, with no
    // database event. On an open connection too.
    let mut conn = connect(&gw, Some(&leaf), false).await;
    app.clock.set(now + 2 * DAY);
    conn.get(&[]).await.admitted();
    app.clock.set(now + 2 * DAY + 1);
    conn.get(&[])
        .await
        .refused(403, "client_certificate_expired");
    once(&gw, Some(&leaf), &[])
        .await
        .refused(403, "client_certificate_expired");
}

async fn project_scope(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    let project_ca = pki::ca("Project CA");
    let pid = app.api.upload(&project_ca.pem(), None).await.id();
    app.api.toggle_project(&p1, "activate", &[&pid]).await;
    let org_wide = pki::ca("Org CA");
    let oid = app.api.upload_active(&org_wide).await;
    caught_up(&app, &gw).await;
    let pleaf = good_leaf(&project_ca);
    let oleaf = good_leaf(&org_wide);
    let org = app.org_id.as_str();

    // Project-level CA: only with OpenAI-Project naming its project.
    let r = once(
        &gw,
        Some(&pleaf),
        &[
            ("openai-organization", org),
            ("openai-project", p1.as_str()),
        ],
    )
    .await;
    assert_eq!(r.admitted()["x-certgate-certificate-id"][0], pid.as_str());
    let r = once(&gw, Some(&pleaf), &[("openai-project", p1.as_str())]).await;
    assert_eq!(r.admitted()["x-certgate-project"][0], p1.as_str());
    once(&gw, Some(&pleaf), &[("openai-organization", org)])
        .await
        .refused(403, "client_certificate_not_active_for_project");
    once(&gw, Some(&pleaf), &[])
        .await
        .refused(403, "client_certificate_not_active_for_project");
    once(&gw, Some(&pleaf), &[("openai-project", p2.as_str())])
        .await
        .refused(403, "client_certificate_not_active_for_project");

    // Organization-level CA: every project, and no project.
    for hdrs in [
        vec![("openai-project", p1.as_str())],
        vec![("openai-project", p2.as_str())],
        vec![("openai-organization", org)],
        vec![],
    ] {
        let r = once(&gw, Some(&oleaf), &hdrs).await;
        assert_eq!(r.admitted()["x-certgate-certificate-id"][0], oid.as_str());
    }
}

async fn organization_comes_from_the_header_or_the_default(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ours = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    once(
        &gw,
        Some(&id),
        &[("openai-organization", "org-doesnotexist")],
    )
    .await
    .refused(400, "unknown_organization");
    // No header: the gateway's default organization.
    let r = once(&gw, Some(&id), &[]).await;
    assert_eq!(
        r.admitted()["x-certgate-organization"][0],
        app.org_id.as_str()
    );

    // Another tenant uploads and activates a copy of our (public) CA: our header-less clients
    // still get in, into our organization; theirs need their header.
    let (other, other_api) = app.other_org().await;
    let their_id = other_api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let r = once(&gw, Some(&id), &[]).await;
    assert_eq!(r.admitted()["x-certgate-certificate-id"][0], ours.as_str());
    assert_eq!(
        r.admitted()["x-certgate-organization"][0],
        app.org_id.as_str()
    );
    let r = once(&gw, Some(&id), &[("openai-organization", other.as_str())]).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        their_id.as_str()
    );
    // When we deactivate our CA, our clients are out, not silently let in as the other
    // tenant's.
    app.api.toggle_org("deactivate", &[&ours]).await;
    caught_up(&app, &gw).await;
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_untrusted");

    // A gateway without a default organization refuses header-less requests.
    let strict = super::gateway(app.store.clone(), &format!("http://{}", up.addr), |_| {}).await;
    caught_up(&app, &strict).await;
    once(&strict, Some(&id), &[])
        .await
        .refused(400, "organization_required");
    let r = once(
        &strict,
        Some(&id),
        &[("openai-organization", other.as_str())],
    )
    .await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        their_id.as_str()
    );
}

async fn intermediates_sent_by_the_client(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    let root = pki::ca("Root CA");
    app.api.upload_active(&root).await;
    caught_up(&app, &gw).await;
    let inter = pki::intermediate(&root, "Issuing CA", now - DAY, now + 100 * DAY);
    let leaf = pki::leaf(&inter, "c", now - DAY, now + 30 * DAY);
    once(&gw, Some(&identity(&leaf, &[&inter])), &[])
        .await
        .admitted();
    // Without the intermediate the chain cannot be built.
    once(&gw, Some(&identity(&leaf, &[])), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn leaf_must_allow_client_auth(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    // Control: the CA is active, so the refusal below is about the leaf's usage alone.
    once(&gw, Some(&good_leaf(&ca)), &[]).await.admitted();
    let server_only = identity(
        &pki::server_only_leaf(&ca, "srv", now - DAY, now + DAY),
        &[],
    );
    once(&gw, Some(&server_only), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}
