//! Client filters at the gateway (spec §12.6): a CA admits only the clients its filter
//! accepts; the check endpoint says the same; changes reach open connections.

use rcgen::SanType;
use serde_json::json;

use super::{caught_up, connect, eventually, good_leaf, identity, once, setup};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    filters_on_spiffe_ids_cn_and_dns_names,
    a_filter_that_errors_refuses,
    filter_changes_reach_open_connections,
);

fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().unwrap())
}

fn dns(d: &str) -> SanType {
    SanType::DnsName(d.try_into().unwrap())
}

async fn filters_on_spiffe_ids_cn_and_dns_names(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Mesh CA");
    let ca_id = app
        .api
        .post(
            "/organization/certificates",
            json!({
                "certificate": ca.pem(),
                "client_filter": r#"cert.san_uri.exists(u, u.startsWith("spiffe://prod.example.com/"))"#,
            }),
        )
        .await
        .id();
    app.api.toggle_org("activate", &[&ca_id]).await;
    caught_up(&app, &gw).await;
    let prod = pki::leaf_with_sans(
        &ca,
        "billing",
        vec![uri("spiffe://prod.example.com/ns/a/sa/billing")],
    );
    let dev = pki::leaf_with_sans(
        &ca,
        "billing",
        vec![uri("spiffe://dev.example.com/ns/a/sa/billing")],
    );
    let r = once(&gw, Some(&identity(&prod, &[])), &[]).await;
    assert_eq!(r.admitted()["x-certgate-certificate-id"][0], ca_id.as_str());
    let refused = once(&gw, Some(&identity(&dev, &[])), &[]).await;
    refused.refused(403, "client_certificate_filtered");
    // The check endpoint agrees, word for word.
    let checked = app
        .api
        .post(
            "/organization/certificates/check",
            json!({"certificate": dev.cert.pem()}),
        )
        .await;
    assert_eq!(checked.ok()["code"], "client_certificate_filtered");
    assert_eq!(checked.ok()["message"], refused.body["error"]["message"]);

    // The common name, then DNS names.
    let path = format!("/organization/certificates/{ca_id}");
    app.api
        .post(
            &path,
            json!({"client_filter": r#"cert.subject_cn.startsWith("svc-")"#}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    let svc = pki::leaf_with_sans(&ca, "svc-api", vec![dns("api.internal.test")]);
    let person = pki::leaf_with_sans(&ca, "alice", vec![dns("alice.laptops.test")]);
    once(&gw, Some(&identity(&svc, &[])), &[]).await.admitted();
    once(&gw, Some(&identity(&person, &[])), &[])
        .await
        .refused(403, "client_certificate_filtered");
    app.api
        .post(&path, json!({"client_filter": r#"cert.san_dns.all(d, d.endsWith(".internal.test")) && size(cert.san_dns) > 0"#}))
        .await
        .ok();
    caught_up(&app, &gw).await;
    once(&gw, Some(&identity(&svc, &[])), &[]).await.admitted();
    once(&gw, Some(&identity(&person, &[])), &[])
        .await
        .refused(403, "client_certificate_filtered");
    // Another active CA without a filter still admits its own clients.
    let other = pki::ca("Other CA");
    app.api.upload_active(&other).await;
    caught_up(&app, &gw).await;
    once(&gw, Some(&good_leaf(&other)), &[]).await.admitted();
}

async fn a_filter_that_errors_refuses(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    // Valid on the sample (it has a DNS name), an error on a leaf without one: never open.
    app.api
        .post(
            &format!("/organization/certificates/{ca_id}"),
            json!({"client_filter": r#"cert.san_dns[0].endsWith(".test")"#}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    let bare = pki::leaf_with_sans(&ca, "bare", vec![]);
    once(&gw, Some(&identity(&bare, &[])), &[])
        .await
        .refused(403, "client_certificate_filtered");
    let named = pki::leaf_with_sans(&ca, "named", vec![dns("named.clients.test")]);
    once(&gw, Some(&identity(&named, &[])), &[])
        .await
        .admitted();
}

async fn filter_changes_reach_open_connections(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let leaf = pki::leaf_with_sans(&ca, "svc-a", vec![dns("a.clients.test")]);
    let id = identity(&leaf, &[]);
    let mut h1 = connect(&gw, Some(&id), false).await;
    let mut h2 = connect(&gw, Some(&id), true).await;
    h1.get(&[]).await.admitted();
    h2.get(&[]).await.admitted();
    let path = format!("/organization/certificates/{ca_id}");
    app.api
        .post(
            &path,
            json!({"client_filter": r#"cert.subject_cn == "svc-b""#}),
        )
        .await
        .ok();
    eventually!(
        "a new filter on an open HTTP/1.1 connection",
        h1.get(&[]).await.status == 403
    );
    eventually!(
        "a new filter on an open HTTP/2 connection",
        h2.get(&[]).await.status == 403
    );
    h1.get(&[])
        .await
        .refused(403, "client_certificate_filtered");
    app.api
        .post(&path, json!({"client_filter": null}))
        .await
        .ok();
    eventually!("the cleared filter", h1.get(&[]).await.status == 200);
}
