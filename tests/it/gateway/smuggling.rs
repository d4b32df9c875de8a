//! Request smuggling through the WebSocket path (decisions.md D39): an upgrade request
//! with a body is refused 400, no body-framing header is forwarded on an upgrade, and every
//! upgrade opens its own upstream connection.
//!
//! The upstream here is nginx-style: it answers a request as soon as it has read the head,
//! then discards as many bytes as the request's `Content-Length` announced, and reads the next
//! request from the same connection. A gateway that forwards an upgrade's `Content-Length`
//! without its body, on a connection it later reuses, lets the upstream swallow the start of
//! the next request and parse whatever follows as a request of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{caught_up, gateway, good_leaf, tls_stream, Endpoint, Gw, Identity};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    an_upgrade_with_a_body_is_refused_and_nothing_is_smuggled,
    upgrades_never_share_an_upstream_connection,
);

/// One request head as the upstream parsed it, and the number (from 1) of the connection it
/// arrived on.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) connection: usize,
    pub(super) text: String,
}

impl Head {
    pub(super) fn request_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The value of header `name` (any case), if the head has it.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// The nginx-style upstream: every request is answered 404 (keep-alive), then its announced
/// body is discarded.
pub(super) struct RawUpstream {
    pub(super) addr: SocketAddr,
    pub(super) heads: Arc<Mutex<Vec<Head>>>,
    pub(super) connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    pub(super) fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }
}

pub(super) async fn raw_upstream() -> RawUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<Head>>> = Arc::default();
    let connections = Arc::new(AtomicUsize::new(0));
    let (h, c) = (heads.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let connection = c.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(serve_raw(tcp, connection, h.clone()));
        }
    });
    RawUpstream {
        addr,
        heads,
        connections,
    }
}

async fn serve_raw(
    mut tcp: tokio::net::TcpStream,
    connection: usize,
    heads: Arc<Mutex<Vec<Head>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // A head: everything up to the first blank line.
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            match tcp.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let head = Head {
            connection,
            text: String::from_utf8_lossy(&buf[..end]).into_owned(),
        };
        buf.drain(..end + 4);
        let announced: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        heads.lock().unwrap().push(head);
        // Answer first, as nginx does for a request it refuses...
        let answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        if tcp.write_all(answer).await.is_err() {
            return;
        }
        // ...then discard the body the head announced, wherever its bytes come from.
        while buf.len() < announced {
            match tcp.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..announced);
    }
}

/// Sends raw bytes on a new TLS connection to the gateway and reads one answer: its status
/// and its body.
pub(super) async fn raw_exchange(gw: &Endpoint, id: &Identity, request: &[u8]) -> (u16, String) {
    let mut tls = tls_stream(gw, Some(id), false).await;
    tls.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the gateway closed before answering");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the gateway closed in the middle of its answer");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A WebSocket upgrade request for `/v1/realtime`, with `extra` header lines (each ending in
/// CRLF), then `body`.
pub(super) fn upgrade_request(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "GET /v1/realtime HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n{body}"
    )
    .into_bytes()
}

async fn setup_raw(app: &TestApp) -> (Gw, RawUpstream, Identity) {
    let up = raw_upstream().await;
    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |o| {
        o.default_organization = Some(org);
    })
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(app, &gw).await;
    (gw, up, good_leaf(&ca))
}

#[track_caller]
fn assert_refused_400(status: u16, body: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    let body: serde_json::Value = serde_json::from_str(body).expect("an error body");
    let error = body["error"].as_object().expect("OpenAI's error object");
    assert_eq!(error.len(), 4, "{what}: four keys: {body}");
    assert_eq!(error["type"], "invalid_request_error", "{what}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("body")),
        "{what}: the message says why: {body}"
    );
}

/// The attack of issue 30: the attacker learns where its header value lands in the forwarded
/// head (a first request), announces a body ending exactly there on an upgrade, then sends the
/// request again, hoping the upstream reads its header value as a request line.
async fn an_upgrade_with_a_body_is_refused_and_nothing_is_smuggled(app: TestApp) {
    let (gw, up, id) = setup_raw(&app).await;
    let smuggled = "GET /../../etc/admin-only HTTP/1.1";
    let carrier = upgrade_request(&format!("X-Note: {smuggled}\r\n"), "");
    let (status, _) = raw_exchange(&gw, &id, &carrier).await;
    assert_eq!(status, 404, "the upstream's answer is passed back");
    let calibration = up.heads()[0].text.clone();
    let offset = calibration.find(smuggled).expect("the header is forwarded");

    let filler = "x".repeat(offset);
    let attack = upgrade_request(&format!("Content-Length: {offset}\r\n"), &filler);
    let (attack_status, attack_body) = raw_exchange(&gw, &id, &attack).await;
    let (status, _) = raw_exchange(&gw, &id, &carrier).await;
    assert_eq!(status, 404);

    let heads = up.heads();
    for head in &heads {
        assert!(
            !head.request_line().contains("admin-only"),
            "the upstream parsed a smuggled request: {heads:#?}"
        );
    }
    assert_refused_400(
        attack_status,
        &attack_body,
        "an upgrade with Content-Length",
    );
    assert_eq!(heads.len(), 2, "only the two carriers arrived: {heads:#?}");
    assert_eq!(heads[1].request_line(), "GET /v1/realtime HTTP/1.1");

    // Chunked bodies too, and any Transfer-Encoding at all.
    let chunked = upgrade_request("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n");
    let (status, body) = raw_exchange(&gw, &id, &chunked).await;
    assert_refused_400(status, &body, "an upgrade with Transfer-Encoding");
    assert_eq!(up.heads().len(), 2, "nothing refused reached the upstream");

    // An upgrade that says it has no body is forwarded, without the framing header.
    let empty = upgrade_request("Content-Length: 0\r\n", "");
    let (status, _) = raw_exchange(&gw, &id, &empty).await;
    assert_eq!(status, 404);
    let heads = up.heads();
    let last = heads.last().unwrap();
    assert_eq!(last.request_line(), "GET /v1/realtime HTTP/1.1");
    assert_eq!(last.header("upgrade"), Some("websocket"), "{last:?}");
    assert_eq!(last.header("content-length"), None, "{last:?}");
    assert_eq!(last.header("transfer-encoding"), None, "{last:?}");
}

/// Upgrades that the upstream answers without switching protocols leave their connection
/// open and reusable; the gateway still never sends a second request on one.
async fn upgrades_never_share_an_upstream_connection(app: TestApp) {
    let (gw, up, id) = setup_raw(&app).await;
    for _ in 0..3 {
        let (status, _) = raw_exchange(&gw, &id, &upgrade_request("", "")).await;
        assert_eq!(status, 404);
    }
    let heads = up.heads();
    assert_eq!(heads.len(), 3, "{heads:#?}");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        3,
        "one upstream connection per upgrade: {heads:#?}"
    );
    let mut used: Vec<usize> = heads.iter().map(|h| h.connection).collect();
    used.dedup();
    assert_eq!(used, [1, 2, 3]);
}
