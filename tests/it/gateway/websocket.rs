//! WebSocket upgrades through the gateway (decisions.md D39): relayed both ways after the same
//! decision as any request, and closed with 1008 once what admitted them is withdrawn.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certgate::domain::Clock;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{
    caught_up, gateway_with_limits, good_leaf, identity, tls_stream, Endpoint, Gw, Identity, DAY,
    PROPAGATION,
};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    messages_flow_both_ways_in_order,
    refusals_come_before_the_upgrade,
    withdrawn_trust_closes_open_upgrades,
    revocation_and_filters_close_open_upgrades,
);

pub(super) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket echo upstream that records the handshake headers it saw and the close codes it
/// received.
pub(super) struct EchoUpstream {
    addr: std::net::SocketAddr,
    headers: Arc<Mutex<Vec<axum::http::HeaderMap>>>,
    closes: Arc<Mutex<Vec<Option<u16>>>>,
}

async fn echo_upstream() -> EchoUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let headers: Arc<Mutex<Vec<axum::http::HeaderMap>>> = Arc::default();
    let closes: Arc<Mutex<Vec<Option<u16>>>> = Arc::default();
    let (h, c) = (headers.clone(), closes.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (h, c) = (h.clone(), c.clone());
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback type, not ours
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                mut res: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    h.lock().unwrap().push(req.headers().clone());
                    if let Some(p) = req.headers().get("sec-websocket-protocol") {
                        let first = p.to_str().unwrap().split(',').next().unwrap().trim().to_owned();
                        res.headers_mut().insert("sec-websocket-protocol", first.parse().unwrap());
                    }
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(frame) = &msg {
                        c.lock()
                            .unwrap()
                            .push(frame.as_ref().map(|f| u16::from(f.code)));
                        break;
                    }
                    let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                    if echo && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    EchoUpstream {
        addr,
        headers,
        closes,
    }
}

/// A gateway with the app's organization as default, in front of a WebSocket echo upstream.
pub(super) async fn setup_ws(app: &TestApp, idle: Duration) -> (Gw, EchoUpstream) {
    let up = echo_upstream().await;
    let org = app.org_id.clone();
    let gw = gateway_with_limits(
        app.store.clone(),
        &format!("http://{}", up.addr),
        |o| {
            o.default_organization = Some(org);
            o.upgrade_idle_timeout = idle;
        },
        certgate::runtime::ConnectionLimits::default(),
    )
    .await;
    (gw, up)
}

/// Opens a WebSocket through the gateway with `id` and extra `headers`.
pub(super) async fn open(
    gw: &Endpoint,
    id: Option<&Identity>,
    headers: &[(&str, &str)],
) -> Result<(Ws, axum::http::HeaderMap), WsError> {
    let tls = tls_stream(gw, id, false).await;
    let mut req = "wss://localhost/v1/realtime?model=gpt-realtime"
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, res) = tokio_tungstenite::client_async(req, tls).await?;
    Ok((ws, res.headers().clone()))
}

/// The next close frame's code (and reason) within `limit`, skipping other messages.
pub(super) async fn closed_with(ws: &mut Ws, limit: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Some((u16::from(frame.code), frame.reason.to_string()));
            }
            Ok(Some(Ok(Message::Close(None)))) => return Some((1005, String::new())),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                eprintln!("closed_with: error instead of a close frame: {e}");
                return None;
            }
            Ok(None) => {
                eprintln!("closed_with: the stream ended without a close frame");
                return None;
            }
            Err(_) => return None,
        }
    }
}

/// Sends a text and expects it back.
pub(super) async fn echoes(ws: &mut Ws, text: &str) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(30), ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text
    )
}

async fn messages_flow_both_ways_in_order(app: TestApp) {
    let (gw, up) = setup_ws(&app, Duration::from_secs(60)).await;
    let ca = pki::ca("Org CA");
    let cert_id = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let (ws, headers) = open(
        &gw,
        Some(&id),
        &[("sec-websocket-protocol", "realtime, other")],
    )
    .await
    .expect("upgrade");
    assert_eq!(headers["sec-websocket-protocol"], "realtime");
    // 1,000 messages each way, in order: the client sends them all, then reads the echoes.
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            let msg = if i % 2 == 0 {
                Message::text(format!("message {i}"))
            } else {
                Message::binary(vec![u8::try_from(i % 256).unwrap(); 1000 + i])
            };
            tx.send(msg).await.unwrap();
        }
        tx
    });
    for i in 0..1000 {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("a message");
        if i % 2 == 0 {
            assert_eq!(got, Message::text(format!("message {i}")));
        } else {
            assert_eq!(got.into_data().len(), 1000 + i);
        }
    }
    let tx = sender.await.unwrap();
    let mut ws = tx.reunite(rx).unwrap();
    // The upstream saw the gateway's identity headers and the client's handshake headers.
    let seen = up.headers.lock().unwrap()[0].clone();
    assert_eq!(seen["x-certgate-organization"], app.org_id.as_str());
    assert_eq!(seen["x-certgate-certificate-id"], cert_id.as_str());
    assert_eq!(seen["x-client-cert-sha256"], id.leaf_sha256.as_str());
    assert_eq!(seen["sec-websocket-protocol"], "realtime, other");
    assert!(seen.get("sec-websocket-key").is_some());
    // A normal close from the client reaches the upstream.
    ws.close(None).await.unwrap();
    let start = Instant::now();
    while up.closes.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "upstream never saw the close"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = gw.gateway.upgrades();
    let start = Instant::now();
    while stats.open() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still counted open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.closed(certgate::gateway::upgrade::Closed::Client), 1);
}

async fn refusals_come_before_the_upgrade(app: TestApp) {
    let (gw, up) = setup_ws(&app, Duration::from_secs(60)).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let stranger = pki::ca("Stranger");
    caught_up(&app, &gw).await;
    for (id, code) in [
        (None, "client_certificate_required"),
        (Some(good_leaf(&stranger)), "client_certificate_untrusted"),
    ] {
        match open(&gw, id.as_ref(), &[]).await {
            Err(WsError::Http(res)) => {
                assert_eq!(res.status(), 403);
                let body: serde_json::Value =
                    serde_json::from_slice(res.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], code);
            }
            other => panic!(
                "expected a 403 before the upgrade, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    match open(
        &gw,
        Some(&good_leaf(&ca)),
        &[("openai-project", "proj_nope")],
    )
    .await
    {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    assert!(
        up.headers.lock().unwrap().is_empty(),
        "nothing refused reached the upstream"
    );
}

/// Deactivation, a project's activation ending, deletion and expiry each close the upgraded
/// connections they admitted (1008 to the client, 1001 to the upstream), and leave a sibling
/// admitted by another CA open.
async fn withdrawn_trust_closes_open_upgrades(app: TestApp) {
    let (gw, up) = setup_ws(&app, Duration::from_secs(60)).await;
    let org_ca = pki::ca("Org CA");
    let org_id = app.api.upload_active(&org_ca).await;
    let sibling_ca = pki::ca("Sibling CA");
    app.api.upload_active(&sibling_ca).await;
    let project_ca = pki::ca("Project CA");
    let project_ca_id = app.api.upload(&project_ca.pem(), None).await.id();
    let project = app.api.create_project("realtime").await;
    app.api
        .toggle_project(&project, "activate", &[&project_ca_id])
        .await;
    let now = app.clock.now();
    let short_ca = pki::ca_valid("Short CA", now - DAY, now + 2 * DAY);
    app.api.upload_active(&short_ca).await;
    caught_up(&app, &gw).await;

    let (mut sibling, _) = open(&gw, Some(&good_leaf(&sibling_ca)), &[])
        .await
        .expect("sibling");
    let (mut by_org, _) = open(&gw, Some(&good_leaf(&org_ca)), &[])
        .await
        .expect("org");
    let hdr = [("openai-project", project.as_str())];
    let (mut by_project, _) = open(&gw, Some(&good_leaf(&project_ca)), &hdr)
        .await
        .expect("project");
    let leaf = pki::leaf(&short_ca, "short", now - DAY, now + 30 * DAY);
    let (mut by_short, _) = open(&gw, Some(&identity(&leaf, &[])), &[])
        .await
        .expect("short");
    for ws in [&mut sibling, &mut by_org, &mut by_project, &mut by_short] {
        assert!(echoes(ws, "hello").await);
    }

    // Deactivation (then deletion, which is allowed once it is inactive everywhere).
    let started = Instant::now();
    app.api.toggle_org("deactivate", &[&org_id]).await;
    let (code, reason) = closed_with(&mut by_org, PROPAGATION).await.expect("closed");
    assert_eq!(code, u16::from(CloseCode::Policy));
    assert_eq!(reason, "client certificate no longer trusted");
    assert!(started.elapsed() <= PROPAGATION, "{:?}", started.elapsed());
    app.api
        .delete(&format!("/organization/certificates/{org_id}"))
        .await
        .ok();

    // The project's activation ends.
    app.api
        .toggle_project(&project, "deactivate", &[&project_ca_id])
        .await;
    let (code, _) = closed_with(&mut by_project, PROPAGATION)
        .await
        .expect("closed");
    assert_eq!(code, 1008);

    // The anchor expires: no event, the gateway notices by itself.
    app.clock.set(now + 2 * DAY + 1);
    let (code, _) = closed_with(&mut by_short, PROPAGATION)
        .await
        .expect("closed");
    assert_eq!(code, 1008);
    app.clock.set(now);

    // The upstream got 1001 for each closed connection; the sibling is untouched.
    let start = Instant::now();
    while up.closes.lock().unwrap().len() < 3 {
        assert!(
            start.elapsed() < PROPAGATION,
            "{:?}",
            up.closes.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up.closes.lock().unwrap().iter().all(|c| *c == Some(1001)));
    assert!(
        echoes(&mut sibling, "still here").await,
        "the sibling stays open"
    );
    let stats = gw.gateway.upgrades();
    let start = Instant::now();
    while stats.closed(certgate::gateway::upgrade::Closed::TrustWithdrawn) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "closures not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.open(), 1);

    // The same counts, as a scrape shows them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    crate::helpers::serve_in_background(
        listener,
        gw.gateway.metrics_router(),
        certgate::runtime::ConnectionLimits::default(),
    );
    let scrape = crate::metrics::Scrape::of(metrics_addr).await;
    assert_eq!(
        scrape.value("certgate_gateway_upgraded_connections", &[]),
        1
    );
    let closed = "certgate_gateway_connections_closed_total";
    assert_eq!(scrape.value(closed, &[("reason", "trust_withdrawn")]), 3);
    assert_eq!(scrape.value(closed, &[("reason", "idle")]), 0);
}

/// A deny-listed leaf, a leaf its CA's CRL lists, and a leaf a new client filter rejects each
/// lose their open upgrades; a sibling of the same CA keeps its own.
async fn revocation_and_filters_close_open_upgrades(app: TestApp) {
    let (gw, _up) = setup_ws(&app, Duration::from_secs(60)).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let now = app.clock.now();
    let denied = pki::leaf(&ca, "denied", now - DAY, now + 30 * DAY);
    let listed = pki::leaf(&ca, "listed", now - DAY, now + 30 * DAY);
    let filtered = pki::leaf(&ca, "filtered", now - DAY, now + 30 * DAY);
    let sibling = pki::leaf(&ca, "sibling", now - DAY, now + 30 * DAY);
    let mut open_as = Vec::new();
    for leaf in [&denied, &listed, &filtered, &sibling] {
        let (mut ws, _) = open(&gw, Some(&identity(leaf, &[])), &[])
            .await
            .expect("open");
        assert!(echoes(&mut ws, "hi").await);
        open_as.push(ws);
    }
    let mut sibling_ws = open_as.pop().unwrap();
    let mut filtered_ws = open_as.pop().unwrap();
    let mut listed_ws = open_as.pop().unwrap();
    let mut denied_ws = open_as.pop().unwrap();

    app.api
        .post(
            "/organization/revoked_certificates",
            serde_json::json!({"certificate": denied.cert.pem()}),
        )
        .await
        .ok();
    let (code, _) = closed_with(&mut denied_ws, PROPAGATION)
        .await
        .expect("closed");
    assert_eq!(code, 1008);

    let crl = pki::crl(&ca, &[pki::serial_of(&listed.cert)], now - 60, now + DAY);
    app.api
        .put_json(
            &format!("/organization/certificates/{ca_id}/crl"),
            serde_json::json!({"crl": crl.pem().unwrap()}),
        )
        .await
        .ok();
    let (code, _) = closed_with(&mut listed_ws, PROPAGATION)
        .await
        .expect("closed");
    assert_eq!(code, 1008);

    app.api
        .post(
            &format!("/organization/certificates/{ca_id}"),
            serde_json::json!({"client_filter": r#"cert.subject_cn != "filtered""#}),
        )
        .await
        .ok();
    let (code, _) = closed_with(&mut filtered_ws, PROPAGATION)
        .await
        .expect("closed");
    assert_eq!(code, 1008);

    assert!(
        echoes(&mut sibling_ws, "still here").await,
        "the sibling stays open"
    );
}

/// An upgraded connection with no frame either way for the idle timeout is closed with 1001
/// to both sides; upgraded connections hold their connection slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upgrades_close_and_upgrades_count_as_connections() {
    let app = TestApp::spawn(crate::helpers::Db::Sqlite)
        .await
        .expect("SQLite");
    let up = echo_upstream().await;
    let org = app.org_id.clone();
    let gw = gateway_with_limits(
        app.store.clone(),
        &format!("http://{}", up.addr),
        |o| {
            o.default_organization = Some(org);
            o.upgrade_idle_timeout = Duration::from_secs(2);
        },
        certgate::runtime::ConnectionLimits {
            max_connections: 2,
            ..certgate::runtime::ConnectionLimits::default()
        },
    )
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let (mut first, _) = open(&gw, Some(&id), &[]).await.expect("first");
    let (mut second, _) = open(&gw, Some(&id), &[]).await.expect("second");
    let second_opened = Instant::now();
    // Two upgraded connections hold both slots: a third cannot even finish its handshake.
    let third = tokio::time::timeout(
        Duration::from_millis(700),
        tls_stream(&gw, Some(&id), false),
    )
    .await;
    assert!(
        third.is_err(),
        "a third connection waits while two upgrades are open"
    );
    // Activity keeps one alive past the idle timeout; the other goes idle.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(echoes(&mut first, "ping").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, _) = closed_with(&mut second, Duration::from_secs(30))
        .await
        .expect("idle close");
    assert_eq!(code, 1001);
    crate::bounds::assert_on_time(
        "the idle upgrade's close",
        second_opened.elapsed(),
        Duration::from_secs(2),
    );
    assert!(echoes(&mut first, "still active").await);
    // Its slot is free again.
    tokio::time::timeout(Duration::from_secs(30), tls_stream(&gw, Some(&id), false))
        .await
        .expect("a slot is free once the idle upgrade closed");
    let start = Instant::now();
    while gw
        .gateway
        .upgrades()
        .closed(certgate::gateway::upgrade::Closed::Idle)
        < 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "idle closure not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM: the gateway closes open upgraded connections with 1001 ("going away") and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_upgrades_with_going_away() {
    let app = TestApp::spawn(crate::helpers::Db::Sqlite)
        .await
        .expect("SQLite");
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut gateway, ep) =
        super::binary::start(&app, &format!("http://{}", up.addr), dir.path(), &[]).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    let mut ws = loop {
        // The binary polls the trust generation; wait until it admits the client.
        if let Ok((ws, _)) = open(&ep, Some(&id), &[]).await {
            break ws;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(echoes(&mut ws, "hello").await);
    let closed = tokio::spawn(async move { closed_with(&mut ws, Duration::from_secs(30)).await });
    let took = gateway.terminate_and_wait();
    assert_eq!(closed.await.unwrap().map(|c| c.0), Some(1001));
    // Nothing in flight and peers that answer: well within the grace (10 s by default).
    assert!(
        took <= Duration::from_secs(10) + crate::bounds::LATE,
        "{took:?}"
    );
    // The upstream reads its close frame on its own task: give it a moment.
    let start = Instant::now();
    while up.closes.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.closes.lock().unwrap().as_slice(), [Some(1001)]);
}
