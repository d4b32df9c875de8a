//! The gateway's bounds from both sides (decisions.md D44): the client's chain (at most 4
//! certificates besides the leaf, decisions.md D34), and upgraded connections whose peers never
//! answer (decisions.md D39): closed when trust is withdrawn within the propagation bound, and
//! both TCP connections ended 5 s after the close frames, not before and at most 1 s later;
//! with no frames either way, closed at the idle timeout.
//!
//! The peers here are written by hand on raw sockets, so that nothing answers a close frame
//! (a WebSocket library would).

use std::time::{Duration, Instant};

use certgate::domain::Clock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::{
    caught_up, gateway_with_limits, identity, once, setup, tls_stream, Gw, Identity, DAY,
    PROPAGATION,
};
use crate::bounds::{assert_on_time, LATE};
use crate::helpers::{backend_tests, Db, TestApp};
use crate::pki;

backend_tests!(chains_of_up_to_4_certificates_besides_the_leaf);

/// A leaf sent with 4 intermediates (a genuine path to an active root) is admitted; with 5,
/// refused as too long before any chain work.
async fn chains_of_up_to_4_certificates_besides_the_leaf(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    let root = pki::ca("Root CA");
    app.api.upload_active(&root).await;
    caught_up(&app, &gw).await;
    let mut path = vec![pki::intermediate(
        &root,
        "Issuing CA 1",
        now - DAY,
        now + 100 * DAY,
    )];
    for i in 2..=5 {
        let above = path.last().unwrap();
        let next = pki::intermediate(
            above,
            &format!("Issuing CA {i}"),
            now - DAY,
            now + 100 * DAY,
        );
        path.push(next);
    }
    // Leaf first, then its issuer, and so on up to the root's child.
    let sent = |n: usize| -> Identity {
        let issuer = &path[n - 1];
        let leaf = pki::leaf(issuer, "c", now - DAY, now + 30 * DAY);
        let chain: Vec<&pki::Ca> = path[..n].iter().rev().collect();
        identity(&leaf, &chain)
    };
    once(&gw, Some(&sent(4)), &[]).await.admitted();
    let refused = once(&gw, Some(&sent(5)), &[]).await;
    refused.refused(403, "client_certificate_untrusted");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("too long"), "{message}");
}

const CLOSE_ALLOWANCE: Duration = Duration::from_secs(5);

/// An upgraded connection through the gateway whose client (this one) and upstream never
/// answer anything; returns the gateway, the raw client stream, and the upstream's
/// receiver of what it saw (when the close frame came, when its connection ended).
async fn deaf_upgrade(
    app: &TestApp,
    idle: Duration,
) -> (
    Gw,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio::sync::oneshot::Receiver<(Instant, Instant)>,
    String,
) {
    let (upstream, seen) = deaf_upstream().await;
    let org = app.org_id.clone();
    let gw = gateway_with_limits(
        app.store.clone(),
        &format!("http://{upstream}"),
        |o| {
            o.default_organization = Some(org);
            o.upgrade_idle_timeout = idle;
        },
        certgate::runtime::ConnectionLimits::default(),
    )
    .await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    caught_up(app, &gw).await;
    let id = super::good_leaf(&ca);
    let mut client = tls_stream(&gw, Some(&id), false).await;
    client
        .write_all(
            b"GET /v1/realtime HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (gw, client, seen, ca_id)
}

/// A WebSocket upstream on a raw socket: it completes one handshake, then reads without ever
/// writing, and reports when the first frame (the gateway's close) came and when the
/// connection ended.
async fn deaf_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<(Instant, Instant)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a WebSocket key");
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        let (frame, _) = first_frame_then_end(&mut tcp).await;
        let _ = tx.send(frame);
    });
    (addr, rx)
}

/// Reads an HTTP head (up to the blank line), byte by byte so nothing after it is consumed.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "the head ends early"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads until the peer ends the connection; returns when the first bytes came and when the
/// end came (both `Instant`s), and the first bytes.
async fn first_frame_then_end<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> ((Instant, Instant), Vec<u8>) {
    let mut first: Option<(Instant, Vec<u8>)> = None;
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let now = Instant::now();
        if n == 0 {
            let (at, bytes) = first.unwrap_or((now, Vec::new()));
            return ((at, now), bytes);
        }
        first.get_or_insert_with(|| (now, buf[..n].to_vec()));
    }
}

/// The close code of an unmasked server frame.
fn close_code(frame: &[u8]) -> u16 {
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    u16::from_be_bytes([frame[2], frame[3]])
}

/// Trust withdrawn from an upgraded connection whose peers never answer: the client gets 1008
/// within the propagation bound and the upstream 1001, and both connections end 5 s after the
/// close frames (the close allowance), not before and at most 1 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deaf_peers_lose_withdrawn_upgrades_after_the_close_allowance() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let (_gw, mut client, upstream, ca_id) = deaf_upgrade(&app, Duration::from_secs(60)).await;
    let withdrawn = Instant::now();
    app.api.toggle_org("deactivate", &[&ca_id]).await;
    let ((frame_at, ended_at), frame) = tokio::time::timeout(
        PROPAGATION + CLOSE_ALLOWANCE + LATE + Duration::from_secs(5),
        first_frame_then_end(&mut client),
    )
    .await
    .expect("the client's connection ends");
    assert_eq!(close_code(&frame), 1008);
    assert!(
        frame_at - withdrawn <= PROPAGATION,
        "closed {:?} after the withdrawal",
        frame_at - withdrawn
    );
    assert_on_time(
        "the client's connection",
        ended_at - frame_at,
        CLOSE_ALLOWANCE,
    );
    let (up_frame_at, up_ended_at) = tokio::time::timeout(Duration::from_secs(30), upstream)
        .await
        .expect("the upstream's connection ends")
        .unwrap();
    assert!(up_frame_at - withdrawn <= PROPAGATION);
    assert_on_time(
        "the upstream's connection",
        up_ended_at - up_frame_at,
        CLOSE_ALLOWANCE,
    );
}

/// No frame either way: closed (1001) at the idle timeout, not before and at most 1 s late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upgrades_close_at_the_idle_timeout() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let idle = Duration::from_secs(2);
    let (_gw, mut client, _upstream, _) = deaf_upgrade(&app, idle).await;
    let upgraded = Instant::now();
    let ((frame_at, _), frame) = tokio::time::timeout(
        idle + CLOSE_ALLOWANCE + LATE + Duration::from_secs(5),
        first_frame_then_end(&mut client),
    )
    .await
    .expect("the connection ends");
    assert_eq!(close_code(&frame), 1001);
    assert_on_time("the idle close", frame_at - upgraded, idle);
}
