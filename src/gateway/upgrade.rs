//! Upgraded connections (HTTP/1.1 `Upgrade: websocket`, e.g. OpenAI's Realtime API), with
//! trust that ends when it is withdrawn (decisions.md D39).
//!
//! An upgrade request is decided like any request; once admitted it is forwarded to the
//! upstream over HTTP/1.1 (never HTTP/2: RFC 8441 is not offered) as a head alone, on an
//! upstream connection of its own (decisions.md D39: one that announces a body is refused 400, no
//! framing header is forwarded, and nothing of it can reach another request's connection).
//! When the upstream answers 101 both sides are relayed byte for byte, following frame
//! boundaries (`wsframe`) so the gateway can still close cleanly. The relay task
//! keeps what admitted the connection (the peer, its chain checks, the scope) and asks the
//! trust decision again whenever the trust generation moves and every second (certificates
//! expire without an event). Once the answer is no, the client gets a close frame 1008
//! "client certificate no longer trusted", the upstream a close frame 1001, and both TCP
//! connections end at most 5 s later whether or not the peers answer. With no frame either way
//! for the idle timeout, both sides get 1001. An upgraded connection keeps its connection
//! slot, so it counts toward `--max-connections`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handler::admit;
use super::listener::PeerIdentity;
use super::proxy::{self, GatewayState};
use super::wsframe::{close_frame, FrameTracker};
use crate::openai_error::INVALID_REQUEST;
use crate::runtime::ConnectionSlot;
use crate::trust::{Admission, Scope};

/// How long peers get to finish a close before their connections are dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often an open upgraded connection is judged again without a trust change (expiry).
const REJUDGE_EVERY: Duration = Duration::from_secs(1);
const WITHDRAWN_REASON: &str = "client certificate no longer trusted";

/// Whether `req` asks to become a WebSocket (HTTP/1.1 only).
pub fn is_websocket_upgrade(req: &Request) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.version() == axum::http::Version::HTTP_11
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// Why an upgraded connection ended (the `reason` label of
/// `certgate_gateway_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    TrustWithdrawn,
    Idle,
    Client,
    Upstream,
    /// The gateway is shutting down (1001 to both sides).
    Shutdown,
}

impl Closed {
    pub const ALL: [Closed; 5] = [
        Closed::TrustWithdrawn,
        Closed::Idle,
        Closed::Client,
        Closed::Upstream,
        Closed::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::TrustWithdrawn => "trust_withdrawn",
            Closed::Idle => "idle",
            Closed::Client => "client",
            Closed::Upstream => "upstream",
            Closed::Shutdown => "shutdown",
        }
    }
}

/// Counts of upgraded connections, for readiness and metrics, and the signal that closes them
/// all at shutdown.
pub struct UpgradeStats {
    open: AtomicI64,
    closed: [AtomicU64; 5],
    /// Set when the gateway shuts down: every relay closes with 1001.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for UpgradeStats {
    fn default() -> Self {
        UpgradeStats {
            open: AtomicI64::new(0),
            closed: Default::default(),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl UpgradeStats {
    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn closed(&self, why: Closed) -> u64 {
        self.closed[why as usize].load(Ordering::Relaxed)
    }

    /// Closes every upgraded connection (1001 to both sides) and waits, at most `grace`, for
    /// them to end.
    pub async fn close_all(&self, grace: Duration) {
        self.closing.send_replace(true);
        let deadline = Instant::now() + grace + CLOSE_GRACE;
        while self.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    fn ended(&self, why: Closed) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether an upgrade request announces a body: a `Content-Length` other than 0, or any
/// `Transfer-Encoding`. An upgrade has none (RFC 6455 §4.1); one that claims a body is refused
/// rather than forwarded, since the body could only be dropped or relayed as WebSocket bytes.
pub(super) fn announces_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0))
}

/// The refusal of an upgrade request that announces a body (decisions.md D39): 400, before
/// any trust work, so it is never counted as admitted and the upstream never sees it.
pub fn refuse_body(req: &Request) -> Option<Response> {
    announces_body(req.headers()).then(|| {
        proxy::refusal(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "A WebSocket upgrade request cannot have a body (a Content-Length other than 0, \
             or a Transfer-Encoding); send the upgrade without one.",
            None,
        )
    })
}

/// Forwards an admitted upgrade request (the handler has refused one announcing a body, see
/// [`refuse_body`]); on the upstream's 101, answers 101 and starts the relay. Any other answer
/// of the upstream is passed back as it is. The request is sent without framing headers, on a
/// connection of its own (see [`proxy::upstream_client`]).
pub async fn forward(
    shared: &Arc<GatewayState>,
    peer: &PeerIdentity,
    admission: Admission,
    mut req: Request,
) -> Response {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let slot = req.extensions().get::<ConnectionSlot>().cloned();
    let (parts, _) = req.into_parts();
    let Some(uri) = shared.upstream.uri_for(&parts.uri) else {
        return proxy::bad_path();
    };
    let headers = proxy::outgoing_headers(shared, peer, &admission, parts.headers, true);
    let mut out = axum::http::Request::new(Body::empty());
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    let mut res = match proxy::send_upstream(shared, &shared.upgrade_client, out).await {
        Ok(res) => res,
        Err(refusal) => return refusal,
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = res.into_parts();
        proxy::strip_hop_by_hop(&mut parts.headers);
        return Response::from_parts(parts, Body::new(body));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut res);
    let relay = Relay {
        shared: shared.clone(),
        peer: peer.clone(),
        organization: admission.organization,
        project: admission.project,
        slot,
    };
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                relay
                    .run(TokioIo::new(client), TokioIo::new(upstream))
                    .await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
    let (parts, _) = res.into_parts();
    let mut answer = Response::from_parts(parts, Body::empty());
    keep_only_upgrade_headers(answer.headers_mut());
    answer
}

/// The 101 answer carries the upstream's handshake headers (`Sec-WebSocket-Accept`,
/// `-Protocol`, `-Extensions`) and `Connection`/`Upgrade`, and no other hop-by-hop header.
fn keep_only_upgrade_headers(headers: &mut HeaderMap) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    proxy::strip_hop_by_hop(headers);
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        upgrade.unwrap_or(header::HeaderValue::from_static("websocket")),
    );
}

/// One upgraded connection: what admitted it, to ask again.
struct Relay {
    shared: Arc<GatewayState>,
    peer: PeerIdentity,
    organization: String,
    project: Option<String>,
    /// Keeps the connection counted toward `--max-connections` while it lives.
    slot: Option<ConnectionSlot>,
}

/// What the watchdog asks the pumps to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    Close {
        to_client: u16,
        to_upstream: u16,
        withdrawn: bool,
    },
}

impl Relay {
    async fn run<C, U>(self, client: C, upstream: U)
    where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stats = &self.shared.upgrades;
        stats.opened();
        let started = Instant::now();
        let activity = Arc::new(AtomicU64::new(0));
        let first_close = Arc::new(std::sync::OnceLock::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(Stop::Run);
        let (client_read, client_write) = tokio::io::split(client);
        let (upstream_read, upstream_write) = tokio::io::split(upstream);
        let down = pump(
            upstream_read,
            client_write,
            Direction::ToClient,
            stop_rx.clone(),
            activity.clone(),
            started,
            first_close.clone(),
        );
        let up = pump(
            client_read,
            upstream_write,
            Direction::ToUpstream,
            stop_rx,
            activity.clone(),
            started,
            first_close.clone(),
        );
        tokio::pin!(down, up);
        let mut first_eof: Option<Closed> = None;
        let mut down_done = false;
        let mut up_done = false;
        let mut ending: Option<(Closed, Instant)> = None;
        let mut changes = self.shared.trust.changes();
        let mut closing = stats.closing.subscribe();
        let mut tick = tokio::time::interval(REJUDGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_timeout = self.shared.upgrade_idle_timeout;
        while !(down_done && up_done) {
            let deadline = ending.map(|(_, at)| at + CLOSE_GRACE);
            let give_up = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut down, if !down_done => {
                    down_done = true;
                    first_eof.get_or_insert(Closed::Upstream);
                }
                () = &mut up, if !up_done => {
                    up_done = true;
                    first_eof.get_or_insert(Closed::Client);
                }
                () = give_up => break,
                moved = changes.changed(), if ending.is_none() => {
                    if moved.is_err() {
                        // The gateway is going away: let the shutdown grace handle it.
                        continue;
                    }
                    if !self.still_admitted().await {
                        let _ = stop_tx.send(Stop::Close { to_client: 1008, to_upstream: 1001, withdrawn: true });
                        ending = Some((Closed::TrustWithdrawn, Instant::now()));
                    }
                }
                _ = closing.changed(), if ending.is_none() => {
                    let _ = stop_tx.send(Stop::Close { to_client: 1001, to_upstream: 1001, withdrawn: false });
                    ending = Some((Closed::Shutdown, Instant::now()));
                }
                _ = tick.tick(), if ending.is_none() => {
                    if !self.still_admitted().await {
                        let _ = stop_tx.send(Stop::Close { to_client: 1008, to_upstream: 1001, withdrawn: true });
                        ending = Some((Closed::TrustWithdrawn, Instant::now()));
                    } else if idle_for(&activity, started) >= idle_timeout {
                        let _ = stop_tx.send(Stop::Close { to_client: 1001, to_upstream: 1001, withdrawn: false });
                        ending = Some((Closed::Idle, Instant::now()));
                    }
                }
            }
            if ending.is_none() && (down_done || up_done) {
                // One peer is gone; the other gets the close grace to finish.
                ending = Some((first_eof.unwrap_or(Closed::Client), Instant::now()));
            }
        }
        // Who ended it: the gateway (withdrawn trust, idleness), else whoever sent the first
        // close frame, else whoever dropped the connection first.
        let why = match ending {
            Some((Closed::TrustWithdrawn, _)) => Closed::TrustWithdrawn,
            Some((Closed::Idle, _)) => Closed::Idle,
            Some((Closed::Shutdown, _)) => Closed::Shutdown,
            _ => match first_close.get() {
                Some(Direction::ToUpstream) => Closed::Client,
                Some(Direction::ToClient) => Closed::Upstream,
                None => first_eof.unwrap_or(Closed::Client),
            },
        };
        stats.ended(why);
        tracing::debug!(remote = %self.peer.remote(), reason = why.label(), "upgraded connection closed");
        drop(self.slot);
    }

    /// The same decision as for a new request, from what this connection already checked.
    async fn still_admitted(&self) -> bool {
        let scope = Scope {
            organization: &self.organization,
            project: self.project.as_deref(),
        };
        admit(&self.shared, &self.peer, scope).await.is_ok()
    }
}

fn idle_for(activity: &AtomicU64, started: Instant) -> Duration {
    let last = Duration::from_millis(activity.load(Ordering::Relaxed));
    started.elapsed().saturating_sub(last)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToClient,
    ToUpstream,
}

/// Writes the close frame `wanted` asks for in `direction`: masked towards the upstream (a
/// client's frames must be), with the withdrawal reason towards the client.
async fn write_close<W: AsyncWrite + Unpin>(to: &mut W, direction: Direction, wanted: Stop) {
    let Stop::Close {
        to_client,
        to_upstream,
        withdrawn,
    } = wanted
    else {
        return;
    };
    let (code, masked) = match direction {
        Direction::ToClient => (to_client, false),
        Direction::ToUpstream => (to_upstream, true),
    };
    let reason = if withdrawn && direction == Direction::ToClient {
        WITHDRAWN_REASON
    } else {
        ""
    };
    let _ = to.write_all(&close_frame(code, reason, masked)).await;
    let _ = to.flush().await;
}

/// Copies one direction, byte for byte, noting activity, frame boundaries and who sent the
/// first close frame (`first_close`). Asked to stop, it finishes the frame in flight, writes
/// its close frame (masked towards the upstream, as a client's frames must be), then reads and
/// discards until the peer answers with its own close frame or goes away.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    mut stop: tokio::sync::watch::Receiver<Stop>,
    activity: Arc<AtomicU64>,
    started: Instant,
    first_close: Arc<std::sync::OnceLock<Direction>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameTracker::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let wanted = *stop.borrow();
        if wanted != Stop::Run && frames.at_boundary() {
            write_close(&mut to, direction, wanted).await;
            // Discard what the peer still sends until its close frame (the closing
            // handshake is then complete) or its end; the caller drops us at the deadline.
            let mut answer = FrameTracker::default();
            while !answer.saw_close() {
                match from.read(&mut buf).await {
                    Ok(n) if n > 0 => answer.feed(&buf[..n]),
                    _ => break,
                }
            }
            let _ = to.shutdown().await;
            return;
        }
        let limit = match (wanted, frames.left_in_frame()) {
            // Stopping: read no further than the end of the frame in flight.
            (Stop::Close { .. }, Some(left)) => {
                usize::try_from(left).unwrap_or(usize::MAX).min(buf.len())
            }
            _ => buf.len(),
        };
        let read = tokio::select! {
            read = from.read(&mut buf[..limit]) => read,
            _ = stop.changed(), if wanted == Stop::Run => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                // The source is gone. If a close was asked for meanwhile (the two can race:
                // the other side may answer our close before this side noticed the request),
                // this side's peer still gets its close frame.
                let wanted = *stop.borrow();
                if wanted != Stop::Run && frames.at_boundary() {
                    write_close(&mut to, direction, wanted).await;
                }
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        activity.store(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        frames.feed(&buf[..n]);
        if frames.saw_close() {
            let _ = first_close.set(direction);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
