//! The gateway's connection timeouts (decisions.md D35), each from both sides (decisions.md D44) with the
//! other set far apart: a request head must arrive within the header timeout of its first
//! byte, however it trickles in; a connection with nothing in flight closes at the idle
//! timeout; HTTP/2 is told to go away at the idle timeout; TLS handshakes are bounded in time
//! and in number. (Connections proxied through the
//! same `runtime::serve` as `serve`'s; its own cases are in `limits.rs`.)

use std::time::{Duration, Instant};

use certgate::gateway::HandshakeLimits;
use certgate::runtime::ConnectionLimits;
use tokio::io::AsyncWriteExt;

use super::{
    caught_up, connect, gateway_with_handshakes, good_leaf, tls_stream, upstream, Gw, Identity,
    Upstream,
};
use crate::bounds::{assert_closed_on_time, assert_on_time, assert_open_until, LATE};
use crate::helpers::{Db, TestApp};
use crate::pki;

/// A short timeout and one far larger: whichever a test is about, the other cannot pass for it.
const SHORT: Duration = Duration::from_secs(1);
const FAR: Duration = Duration::from_secs(30);

/// A gateway with `limits` in front of an echo upstream, a CA active for the app's
/// organization (the gateway's default) and a client of it.
async fn gateway(limits: ConnectionLimits) -> (TestApp, Gw, Upstream, Identity) {
    gateway_handshaking(limits, HandshakeLimits::default()).await
}

/// [`gateway`] with `handshakes` too.
async fn gateway_handshaking(
    limits: ConnectionLimits,
    handshakes: HandshakeLimits,
) -> (TestApp, Gw, Upstream, Identity) {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let org = app.org_id.clone();
    let gw = gateway_with_handshakes(
        app.store.clone(),
        &format!("http://{}", up.addr),
        |o| o.default_organization = Some(org),
        limits,
        handshakes,
    )
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    (app, gw, up, id)
}

/// Half a request head is closed at the header timeout, from both sides, though the idle
/// timeout is far larger (before, the idle timeout closed it); a silent connection and one
/// between requests are idle, not stalled: they outlive the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_is_closed_at_the_header_timeout() {
    let (_app, gw, _up, id) = gateway(ConnectionLimits {
        header_timeout: SHORT,
        idle_timeout: FAR,
        ..ConnectionLimits::default()
    })
    .await;
    let mut silent = tls_stream(&gw, Some(&id), false).await;
    let mut between = connect(&gw, Some(&id), false).await;
    between.get(&[]).await.admitted();
    let since = Instant::now();

    let mut partial = tls_stream(&gw, Some(&id), false).await;
    let started = Instant::now();
    partial
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_closed_on_time("a half-sent head", &mut partial, started, SHORT).await;

    assert_open_until("a silent connection", &mut silent, since, SHORT * 2 + LATE).await;
    between.get(&[]).await.admitted();
}

/// The header deadline runs from the head's first byte, not its last: a client that keeps
/// the head coming, a byte every 300 ms, is closed at the header timeout all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_head_is_closed_at_the_header_timeout() {
    let (_app, gw, _up, id) = gateway(ConnectionLimits {
        header_timeout: SHORT,
        idle_timeout: FAR,
        ..ConnectionLimits::default()
    })
    .await;
    let conn = tls_stream(&gw, Some(&id), false).await;
    let (mut read, mut write) = tokio::io::split(conn);
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for byte in b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    assert_closed_on_time("a head sent a byte every 300 ms", &mut read, started, SHORT).await;
    drip.abort();
}

/// Connections with nothing in flight close at the idle timeout, from both sides, with the
/// header timeout far larger: one silent since its handshake, one since its last answer, and
/// an HTTP/2 one (GOAWAY, then the close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_at_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    let (_app, gw, _up, id) = gateway(ConnectionLimits {
        header_timeout: FAR,
        idle_timeout: idle,
        ..ConnectionLimits::default()
    })
    .await;
    // The idle time starts once the handshake is done (the server is done after the client).
    let mut silent = tls_stream(&gw, Some(&id), false).await;
    let started = Instant::now();
    assert_closed_on_time("a silent connection", &mut silent, started, idle).await;

    // The answer is read (and discarded) on the way to the close.
    let mut kept = tls_stream(&gw, Some(&id), false).await;
    let started = Instant::now();
    kept.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed_on_time("a connection after its answer", &mut kept, started, idle).await;

    // HTTP/2, through a real client (it answers the GOAWAY's PING, so the close is prompt):
    // the connection ends at the idle timeout after its one exchange.
    let io = hyper_util::rt::TokioIo::new(tls_stream(&gw, Some(&id), true).await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let started = Instant::now();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        started.elapsed()
    });
    let req = axum::http::Request::get("https://localhost/v1/models")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    drop(
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap(),
    );
    let took = tokio::time::timeout(idle + LATE + Duration::from_secs(5), ended)
        .await
        .expect("the HTTP/2 connection ends")
        .unwrap();
    assert_on_time("an idle HTTP/2 connection", took, idle);
}

/// A TLS handshake must finish within the handshake timeout: a client that connects and sends
/// nothing, or half a `ClientHello`, is dropped at it, from both sides, with the header and idle
/// timeouts far larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_end_at_the_handshake_timeout() {
    let (_app, gw, _up, _id) = gateway_handshaking(
        ConnectionLimits {
            header_timeout: FAR,
            idle_timeout: FAR,
            ..ConnectionLimits::default()
        },
        HandshakeLimits {
            timeout: SHORT,
            ..HandshakeLimits::default()
        },
    )
    .await;
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // A TLS record header announcing a 512-byte ClientHello, and 5 bytes of it.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .await
        .unwrap();
    tokio::join!(
        assert_closed_on_time("a silent handshake", &mut silent, started, SHORT),
        assert_closed_on_time("half a ClientHello", &mut half, started, SHORT),
    );
}

/// At most `max_in_flight` handshakes at once: while two stalled ones hold both places, a
/// third client cannot even complete its handshake; once one is gone, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_progress_are_capped() {
    let (_app, gw, _up, id) = gateway_handshaking(
        ConnectionLimits::default(),
        HandshakeLimits {
            max_in_flight: 2,
            timeout: FAR,
        },
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    // Both accepted and handshaking (with nothing to read) before the third comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = tokio::spawn({
        let ep = super::Endpoint {
            addr: gw.addr,
            server_ca: gw.server_ca.clone(),
        };
        async move {
            let _ = tls_stream(&ep, Some(&id), false).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third handshake waits while two are in progress"
    );
    drop(stalled.pop());
    tokio::time::timeout(FAR, third)
        .await
        .expect("the third handshake completes once a place is free")
        .unwrap();
}
