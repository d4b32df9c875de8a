//! Headers in which other proxies pass a client certificate to their upstream never reach
//! ours from a client (decisions.md D32; issue 30 item 9): upstreams
//! and the proxies in front of them trust these conventions, so a client must not be able to
//! pose as a verified certificate through them. Removed in any case and with `_` for `-`, like
//! the gateway's own headers, on plain requests (HTTP/1.1 and HTTP/2) and on upgrades.

use serde_json::Value;

use super::smuggling::{raw_exchange, raw_upstream, upgrade_request};
use super::{caught_up, connect, gateway, good_leaf, setup};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    client_certificate_headers_never_reach_the_upstream,
    client_certificate_headers_never_reach_the_upstream_on_upgrades,
);

/// What a client might forge: decisions.md D32's five names in several spellings, then the same
/// conventions' other fields (nginx's `X-SSL-Client-*`, Traefik's `-Info`, ingress-nginx's
/// `ssl-client-*`) and RFC 9440's `Client-Cert` / `Client-Cert-Chain`.
const FORGED: [(&str, &str); 16] = [
    (
        "X-Forwarded-Client-Cert",
        "By=spiffe://a;Hash=00;Subject=\"CN=admin\"",
    ),
    ("x_forwarded_client_cert", "Hash=00"),
    ("X-SSL-Client-Cert", "-----BEGIN%20CERTIFICATE-----"),
    ("X-SSL-CLIENT-VERIFY", "SUCCESS"),
    ("x_ssl_client_verify", "SUCCESS"),
    ("X-Client-Cert", "forged"),
    ("X_Client_Cert", "forged"),
    ("X-Forwarded-Tls-Client-Cert", "forged"),
    ("x_forwarded_tls_client_cert", "forged"),
    ("X-SSL-Client-DN", "CN=admin"),
    ("X-SSL-Client-S-DN", "CN=admin"),
    ("X-Forwarded-Tls-Client-Cert-Info", "Subject=%22CN=admin%22"),
    ("ssl-client-verify", "SUCCESS"),
    ("ssl_client_subject_dn", "CN=admin"),
    ("Client-Cert", ":MIIB:"),
    ("Client-Cert-Chain", ":MIIB:"),
];

async fn client_certificate_headers_never_reach_the_upstream(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut sent: Vec<(&str, &str)> = FORGED.to_vec();
    sent.push(("x-custom", "kept"));
    // Control: sent straight to the upstream, they arrive (so their absence is the gateway's
    // doing).
    let mut direct = reqwest::Client::new().get(format!("http://{}/v1/models", up.addr));
    for (name, value) in &sent {
        direct = direct.header(*name, *value);
    }
    let direct: Value = direct.send().await.unwrap().json().await.unwrap();
    for (name, _) in FORGED {
        assert!(
            direct["headers"].get(name.to_ascii_lowercase()).is_some(),
            "{name}: {direct}"
        );
    }
    for h2 in [false, true] {
        let reply = connect(&gw, Some(&id), h2).await.get(&sent).await;
        let h = reply.admitted();
        for (name, _) in FORGED {
            assert!(
                !h.contains_key(&name.to_ascii_lowercase()),
                "{name} reached the upstream (h2: {h2}): {h:?}"
            );
        }
        assert_eq!(h["x-custom"][0], "kept");
        // The gateway's own statement of the certificate is there, and only its own.
        assert_eq!(h["x-client-cert-sha256"][0], id.leaf_sha256.as_str());
        assert_eq!(h["x-client-cert-sha256"].as_array().map(Vec::len), Some(1));
    }
}

async fn client_certificate_headers_never_reach_the_upstream_on_upgrades(app: TestApp) {
    let up = raw_upstream().await;
    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |o| {
        o.default_organization = Some(org);
    })
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let extra: Vec<String> = FORGED
        .iter()
        .chain([("X-Custom", "kept")].iter())
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let extra = extra.concat();
    let (status, _) = raw_exchange(&gw, &id, &upgrade_request(&extra, "")).await;
    assert_eq!(status, 404, "the upstream's answer to the upgrade");
    let heads = up.heads();
    let [head] = heads.as_slice() else {
        panic!("one upgrade request: {heads:#?}")
    };
    assert_eq!(head.header("upgrade"), Some("websocket"), "{head:?}");
    for (name, _) in FORGED {
        assert_eq!(
            head.header(name),
            None,
            "{name} reached the upstream: {head:?}"
        );
    }
    assert_eq!(head.header("x-custom"), Some("kept"));
    assert_eq!(
        head.header("x-client-cert-sha256"),
        Some(id.leaf_sha256.as_str())
    );
}
