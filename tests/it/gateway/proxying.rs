//! What the gateway forwards once it admits: headers rewritten, everything else as sent,
//! streamed, over HTTP/1.1 and HTTP/2, and how upstream failures are answered.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::{caught_up, connect, gateway, good_leaf, once, setup, upstream, Conn};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;
use crate::process::ReservedPort;

/// How long a streamed event may take to arrive. The upstream sends it at once, and a
/// buffering proxy would never deliver it, so any bound tells the two apart; this one is
/// generous for a loaded machine.
const STREAM_WAIT: Duration = Duration::from_secs(30);

backend_tests!(
    admits_and_rewrites_headers,
    forwards_method_path_query_and_body,
    forward_scope_headers_flag,
    streams_without_buffering,
    http2_clients,
    upstream_failures,
);

async fn admits_and_rewrites_headers(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let cert_id = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let project = app.api.create_project("p").await;
    caught_up(&app, &gw).await;
    let sent = [
        ("authorization", "Bearer sk-test-123"),
        ("openai-organization", app.org_id.as_str()),
        ("openai-project", project.as_str()),
        ("x-certgate-organization", "org-forged"),
        ("x-certgate-project", "proj_forged"),
        ("x-certgate-certificate-id", "cert_forged"),
        ("x-certgate-anything", "forged"),
        ("x-client-cert-sha256", "00"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "dropped"),
        ("keep-alive", "timeout=5"),
        ("x-custom", "kept"),
    ];
    let gone = [
        "openai-organization",
        "openai-project",
        "x-certgate-anything",
        "x-hop",
        "keep-alive",
        "connection",
    ];
    // Control: sent straight to the upstream, the headers the gateway must drop do arrive,
    // so their absence below is the gateway's doing and not the client's.
    let mut direct = reqwest::Client::new().get(format!("http://{}/v1/models", up.addr));
    for (name, value) in sent {
        direct = direct.header(name, value);
    }
    let direct: Value = direct
        .send()
        .await
        .expect("straight to the upstream")
        .json()
        .await
        .expect("echo");
    for name in gone {
        assert!(
            direct["headers"].get(name).is_some(),
            "the client sends {name}: {direct}"
        );
    }
    let reply = once(&gw, Some(&id), &sent).await;
    let h = reply.admitted();
    let one = |name: &str| -> Vec<&str> {
        h.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(one("host"), [up.addr.to_string()]);
    assert_eq!(one("authorization"), ["Bearer sk-test-123"]);
    assert_eq!(one("x-certgate-organization"), [app.org_id.as_str()]);
    assert_eq!(one("x-certgate-project"), [project.as_str()]);
    assert_eq!(one("x-certgate-certificate-id"), [cert_id.as_str()]);
    assert_eq!(one("x-client-cert-sha256"), [id.leaf_sha256.as_str()]);
    assert_eq!(one("x-custom"), ["kept"]);
    for gone in gone {
        assert!(
            !h.contains_key(gone),
            "{gone} must not reach the upstream: {h:?}"
        );
    }
    // Without a project header there is no project header upstream either.
    let reply = once(&gw, Some(&id), &[]).await;
    let h = reply.admitted();
    assert!(!h.contains_key("x-certgate-project"));
    assert_eq!(h["x-certgate-organization"][0], app.org_id.as_str());
}

async fn forwards_method_path_query_and_body(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut conn = connect(&gw, Some(&id), false).await;
    let body = r#"{"model":"gpt-4o","input":"hi"}"#;
    let r = conn
        .call(
            "POST",
            "/v1/responses?stream=false&x=%20y",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    r.admitted();
    assert_eq!(r.body["method"], "POST");
    assert_eq!(r.body["path"], "/v1/responses");
    assert_eq!(r.body["query"], "stream=false&x=%20y");
    assert_eq!(r.body["body"], body);
    // Several requests on one connection.
    let r = conn.call("DELETE", "/v1/files/file_1", &[], "").await;
    r.admitted();
    assert_eq!(r.body["method"], "DELETE");
    assert_eq!(r.body["path"], "/v1/files/file_1");
}

async fn forward_scope_headers_flag(app: TestApp) {
    let up = upstream().await;
    let gw = gateway(
        app.store.clone(),
        &format!("http://{}/prefix/", up.addr),
        |o| o.forward_scope_headers = true,
    )
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let project = app.api.create_project("p").await;
    caught_up(&app, &gw).await;
    let r = once(
        &gw,
        Some(&good_leaf(&ca)),
        &[
            ("openai-organization", app.org_id.as_str()),
            ("openai-project", project.as_str()),
        ],
    )
    .await;
    let h = r.admitted();
    assert_eq!(h["openai-organization"][0], app.org_id.as_str());
    assert_eq!(h["openai-project"][0], project.as_str());
    // The upstream URL's path is a prefix.
    assert_eq!(r.body["path"], "/prefix/v1/models");
}

async fn streams_without_buffering(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    for h2 in [false, true] {
        up.last_sent.store(false, Ordering::SeqCst);
        let mut conn = connect(&gw, Some(&id), h2).await;
        let req = conn
            .request("GET", "/v1/stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = conn.send(req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body();
        // The upstream holds its last event until told; a buffering proxy would never
        // deliver the first one, and this times out.
        let first = tokio::time::timeout(STREAM_WAIT, body.frame())
            .await
            .expect("first event arrives while the upstream is still sending")
            .unwrap()
            .unwrap();
        assert_eq!(
            first.data_ref().map(|b| &b[..]),
            Some(&b"data: first\n\n"[..])
        );
        assert!(!up.last_sent.load(Ordering::SeqCst));
        up.release.notify_one();
        let rest = tokio::time::timeout(STREAM_WAIT, body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&rest[..], b"data: last\n\n", "h2={h2}");
    }
}

async fn http2_clients(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let cert_id = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut conn = connect(&gw, Some(&id), true).await;
    let r = conn
        .call(
            "POST",
            "/v1/chat/completions?a=b",
            &[("authorization", "Bearer k")],
            "{}",
        )
        .await;
    let h = r.admitted();
    assert_eq!(h["host"][0], up.addr.to_string());
    assert_eq!(h["x-certgate-certificate-id"][0], cert_id.as_str());
    assert_eq!(h["authorization"][0], "Bearer k");
    assert_eq!(r.body["query"], "a=b");
    assert_eq!(r.body["body"], "{}");
    // Concurrent streams on the one connection.
    let Conn::H2(sender) = &conn else {
        unreachable!()
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut s = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::builder()
                .uri(format!("https://localhost/v1/n/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = s.send_request(req).await.unwrap();
            let status = res.status();
            let body: Value =
                serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            (status, body["path"].as_str().unwrap().to_owned())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, path) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(path, format!("/v1/n/{i}"));
    }
    let untrusted = good_leaf(&pki::ca("Stranger"));
    connect(&gw, Some(&untrusted), true)
        .await
        .get(&[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn upstream_failures(app: TestApp) {
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    // Nothing listens there, and nothing else can start to while the port is held.
    let dead = ReservedPort::new();
    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}", dead.addr()), |o| {
        o.default_organization = Some(org);
    })
    .await;
    once(&gw, Some(&id), &[])
        .await
        .refused(502, "upstream_unavailable");
    // Untrusted clients never reach a failing upstream: the refusal comes first.
    once(&gw, None, &[])
        .await
        .refused(403, "client_certificate_required");
    // Too slow: `/never` never answers, so a 504 can only be the gateway's own timeout. The
    // outer bound turns a gateway that waits forever into a failure instead of a hang.
    let up = upstream().await;
    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |o| {
        o.upstream_timeout = Duration::from_millis(300);
        o.default_organization = Some(org);
    })
    .await;
    let mut conn = connect(&gw, Some(&id), false).await;
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        conn.call("GET", "/v1/never", &[], ""),
    )
    .await
    .expect("the gateway gives up on a silent upstream");
    r.refused(504, "upstream_timeout");
    // Nor a silent one.
    connect(&gw, None, false)
        .await
        .call("GET", "/v1/never", &[], "")
        .await
        .refused(403, "client_certificate_required");
}
