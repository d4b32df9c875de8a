//! SIGTERM on the `gateway` binary, from both sides (decisions.md D35, D44): requests in
//! flight get the shutdown grace and no more; upgraded connections are told to go away at the
//! signal and get what is left of the same grace, not a second one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{connect, good_leaf, tls_stream, upstream, Endpoint, Identity};
use crate::bounds::assert_on_time;
use crate::helpers::{Db, TestApp};
use crate::pki;
use crate::process::Process;

/// The gateway binary with `grace`, its other timeouts far apart from it, in front of
/// `upstream`, and a client its organization admits.
async fn gateway(
    app: &TestApp,
    upstream: &str,
    grace: &str,
    dir: &std::path::Path,
) -> (Process, Endpoint, Identity) {
    let env = [
        ("CERTGATE_SHUTDOWN_GRACE", grace),
        ("CERTGATE_UPSTREAM_TIMEOUT", "60s"),
        ("CERTGATE_HEADER_TIMEOUT", "60s"),
        ("CERTGATE_IDLE_TIMEOUT", "60s"),
    ];
    let (process, ep) = super::binary::start(app, upstream, dir, &env).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    // The binary polls the trust generation: wait until it admits the client (past its
    // refusal, whatever the upstream makes of a plain request).
    let started = std::time::Instant::now();
    while matches!(
        connect(&ep, Some(&id), false).await.get(&[]).await.status,
        403 | 503
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never admitted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (process, ep, id)
}

/// SIGTERM, then waits for the exit (off the async workers); how long it took.
async fn terminate(mut process: Process) -> Duration {
    tokio::task::spawn_blocking(move || process.terminate_and_wait())
        .await
        .unwrap()
}

/// A streamed answer still coming when SIGTERM arrives is delivered whole, and the gateway
/// exits once it ended: not before, and not waiting out the rest of the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_within_the_grace() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ep, id) = gateway(&app, &format!("http://{}", up.addr), "20s", dir.path()).await;
    let mut conn = connect(&ep, Some(&id), false).await;
    let req = conn
        .request("GET", "/v1/stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = conn.send(req).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(
        first.data_ref().map(|b| &b[..]),
        Some(&b"data: first\n\n"[..])
    );
    let exit = tokio::spawn(terminate(gateway));
    let release = Duration::from_secs(2);
    tokio::time::sleep(release).await;
    up.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");
    let took = exit.await.unwrap();
    assert_on_time("the gateway's exit once the stream ended", took, release);
}

/// A request the upstream never answers: the gateway exits at the grace, not before and not
/// later than 1 s after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_past_the_grace_is_dropped_at_the_grace() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ep, id) = gateway(&app, &format!("http://{}", up.addr), "2s", dir.path()).await;
    let mut conn = connect(&ep, Some(&id), false).await;
    let never = tokio::spawn(async move { conn.call("GET", "/v1/never", &[], "").await });
    // Long enough for the request to reach the upstream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = terminate(gateway).await;
    assert_on_time(
        "the gateway's exit with a request in flight",
        took,
        Duration::from_secs(2),
    );
    assert!(never.await.is_err(), "dropped at the grace, unanswered");
}

/// An upgraded connection whose peers never answer the close frames (the client reads
/// nothing, the upstream reads nothing): the gateway tells both to go away at the signal and
/// exits at the grace. (Before, it waited for the HTTP drain, then a grace of its own plus
/// the 5 s close allowance for upgrades.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deaf_upgraded_connections_end_at_the_grace() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let (upstream, held) = deaf_websocket_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ep, id) = gateway(&app, &format!("http://{upstream}"), "2s", dir.path()).await;
    let req = "wss://localhost/v1/realtime".into_client_request().unwrap();
    let (client, res) =
        tokio_tungstenite::client_async(req, tls_stream(&ep, Some(&id), false).await)
            .await
            .expect("upgraded");
    assert_eq!(res.status(), 101);
    while held.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = terminate(gateway).await;
    assert_on_time(
        "the gateway's exit with deaf upgrades",
        took,
        Duration::from_secs(2),
    );
    drop(client);
}

/// A WebSocket upstream that accepts upgrades and then neither reads nor writes: it holds
/// each connection until the test ends.
async fn deaf_websocket_upstream() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                keep.lock().unwrap().push(ws);
            }
        }
    });
    (addr, held)
}
