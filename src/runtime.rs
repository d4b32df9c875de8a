//! What `serve` and `gateway` share as long-running network processes: the shutdown signal,
//! and the loop that serves HTTP connections within limits.
//!
//! Every connection is bounded (decisions.md D35):
//! - in number: at most `max_connections` open at once, each counted by a permit taken
//!   *before* it is accepted, so past the cap new connections wait in the kernel's listen
//!   backlog and the process never runs out of file descriptors (the soft `RLIMIT_NOFILE` is
//!   raised to the hard one at start, and the cap lowered to fit if it must be);
//! - in time: an HTTP/1 request head must arrive within `header_timeout` of its first byte; a
//!   connection with no request in flight is closed after `idle_timeout` (HTTP/2 gets a GOAWAY
//!   first);
//! - at shutdown: accepting stops, idle connections close at once, requests in flight get
//!   `shutdown_grace` to finish, then whatever is left is dropped. What the process does
//!   after the drain is bounded by the same grace ([`Shutdown::deadline`]), and `main` does
//!   not wait for blocking work still running, so SIGTERM ends the process within the grace
//!   (plus at most [`AFTER_DRAIN`] when requests used all of it).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// A future that resolves on SIGTERM or Ctrl-C. The signal handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives in between (say,
/// right after the "listening" line) is not lost. Call it before announcing readiness.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { () = wait(term) => {}, () = wait(interrupt) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; finishing open requests");
    }
}

/// The process's shutdown signal, shared: every clone learns that it came, and when, so the
/// steps after the drain (closing upgraded connections, flushing, closing the store) all fit
/// in the one grace counted from the signal.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<Option<Instant>>);

/// How long the steps after a drain that used the whole grace still get (flushing key uses,
/// closing the store): the process exits at most this long past the grace.
pub const AFTER_DRAIN: Duration = Duration::from_millis(300);

impl Shutdown {
    /// Listens for SIGTERM and Ctrl-C from now on (see [`shutdown_signal`]: call it before
    /// announcing readiness).
    pub fn on_signal() -> Shutdown {
        Shutdown::on(shutdown_signal())
    }

    /// A shutdown that begins when `signal` resolves.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            signal.await;
            tx.send_replace(Some(Instant::now()));
        });
        Shutdown(rx)
    }

    /// Resolves when the shutdown began, with its instant. Never, if it never does.
    pub async fn begun(mut self) -> Instant {
        let seen = self
            .0
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|at| *at);
        match seen {
            Some(at) => at,
            None => std::future::pending().await,
        }
    }

    /// Resolves when the shutdown began (for [`serve`]).
    pub async fn signalled(self) {
        self.begun().await;
    }

    /// Until when the steps after the drain may run: the grace counted from the signal, but
    /// at least [`AFTER_DRAIN`] from now.
    pub fn deadline(&self, grace: Duration) -> Instant {
        let floor = Instant::now() + AFTER_DRAIN;
        match *self.0.borrow() {
            Some(at) => (at + grace).max(floor),
            None => floor.max(Instant::now() + grace),
        }
    }
}

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest an HTTP/1 request head may take to arrive, from its first byte.
    pub header_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest requests in flight may run on after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// Raises the soft file-descriptor limit to the hard one and lowers `max_connections` to
    /// what fits under it, keeping `reserve` descriptors for everything else (database,
    /// upstream, files).
    #[must_use]
    pub fn fit_to_file_limit(mut self, reserve: usize) -> Self {
        let limit = rlimit::increase_nofile_limit(u64::MAX)
            .ok()
            .and_then(|n| usize::try_from(n).ok());
        if let Some(limit) = limit {
            let room = limit.saturating_sub(reserve).max(1);
            if room < self.max_connections {
                tracing::warn!(
                    requested = self.max_connections,
                    allowed = room,
                    file_limit = limit,
                    "--max-connections lowered to fit the open-file limit"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// The slots that count open connections. A permit is taken before `accept` and released
/// when the connection (and anything it was upgraded to) is gone.
#[derive(Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(max: usize) -> Self {
        ConnectionSlots(Arc::new(Semaphore::new(max.max(1))))
    }

    /// Waits for a free slot. `None` once the slots are closed (shutdown).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }

    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// The slot of the connection a request arrived on, in the request's extensions: whatever
/// outlives the connection's HTTP life (an upgraded stream) keeps it to stay counted.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<OwnedSemaphorePermit>);

/// One accepted connection and the slot that counts it.
pub struct Accepted<IO> {
    pub io: IO,
    pub remote: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

/// A source of accepted connections: plain TCP, or TLS after the handshake.
pub trait Incoming: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection; `None` when the source is finished.
    fn next(&mut self) -> impl Future<Output = Option<Accepted<Self::Io>>> + Send;
}

/// Plain TCP connections, each taking a slot before it is accepted.
pub struct TcpIncoming {
    listener: TcpListener,
    slots: ConnectionSlots,
}

impl TcpIncoming {
    pub fn new(listener: TcpListener, slots: ConnectionSlots) -> Self {
        TcpIncoming { listener, slots }
    }
}

impl Incoming for TcpIncoming {
    type Io = TcpStream;

    async fn next(&mut self) -> Option<Accepted<TcpStream>> {
        let slot = self.slots.acquire().await?;
        loop {
            match self.listener.accept().await {
                Ok((io, remote)) => {
                    let _ = io.set_nodelay(true);
                    return Some(Accepted { io, remote, slot });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Serves `router` on every connection `incoming` yields, within `limits`, until `shutdown`
/// resolves; then stops accepting and drains (see the module documentation). `per_connection`
/// may add extensions (such as the peer's identity) to each connection's requests.
pub async fn serve<I: Incoming>(
    mut incoming: I,
    router: Router,
    per_connection: impl Fn(&I::Io, SocketAddr) -> Option<axum::http::Extensions> + Send + 'static,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = incoming.next() => {
                let Some(accepted) = accepted else { break };
                let extensions = per_connection(&accepted.io, accepted.remote);
                tasks.spawn(serve_connection(accepted, router.clone(), extensions, limits, stop_rx.clone()));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(incoming);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown grace over; closing the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// What a connection is doing, shared by its I/O wrapper, its service and its watchdog.
///
/// The watchdog sleeps until the deadline it computed last; whatever moves that deadline
/// (the first byte of a request head, the end of a request) wakes it through `changed`, so a
/// head that starts while the watchdog waits for the idle deadline is held to the header
/// timeout from its first byte, however slowly its later bytes come.
struct Activity {
    started: Instant,
    /// Requests whose response has not been fully sent (or dropped).
    in_flight: AtomicUsize,
    /// Milliseconds since `started` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Milliseconds since `started` of the first byte of a request head not yet complete
    /// (`u64::MAX`: none).
    head_started_ms: AtomicU64,
    /// The connection speaks HTTP/2 (request-head timing does not apply).
    http2: AtomicBool,
    /// Whether any byte has arrived yet (the first ones tell HTTP/2 from HTTP/1).
    read_any: AtomicBool,
    /// Woken when the deadline may have moved (a permit is kept if nobody waits, so no wake-up
    /// is lost between computing a deadline and sleeping on it).
    changed: Notify,
}

/// Why a connection's deadline is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// No request in flight for the idle timeout.
    Idle,
    /// An HTTP/1 request head begun and not finished within the header timeout.
    Header,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(u64::MAX),
            http2: AtomicBool::new(false),
            read_any: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn bytes_read(&self, first_bytes: &[u8]) {
        if !self.read_any.swap(true, Ordering::Relaxed) && first_bytes.starts_with(b"PRI") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now_ms();
            let first = self
                .head_started_ms
                .compare_exchange(u64::MAX, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
            if first {
                // The header deadline is now due before the idle one the watchdog sleeps on.
                self.changed.notify_one();
            }
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(u64::MAX, Ordering::Release);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// Whether closing this connection now, with no request in flight, can lose nothing:
    /// HTTP/1 that never read a byte, or that holds only part of a request head. (hyper's
    /// graceful shutdown would wait for that first request or head to be finished.)
    fn owes_nothing(&self) -> bool {
        !self.http2.load(Ordering::Relaxed)
            && (!self.read_any.load(Ordering::Relaxed)
                || self.head_started_ms.load(Ordering::Acquire) != u64::MAX)
    }

    /// When the connection must be closed if nothing changes, and why; `None` while a request
    /// is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Due)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let idle = self
            .idle_since_ms
            .load(Ordering::Acquire)
            .saturating_add(ms(limits.idle_timeout));
        let head = self.head_started_ms.load(Ordering::Acquire);
        let header = if head != u64::MAX && !self.http2.load(Ordering::Relaxed) {
            head.saturating_add(ms(limits.header_timeout))
        } else {
            u64::MAX
        };
        let (due, why) = if header < idle {
            (header, Due::Header)
        } else {
            (idle, Due::Idle)
        };
        Some((self.started + Duration::from_millis(due), why))
    }
}

/// The connection's I/O, noting when bytes arrive.
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks its request finished when dropped: the response body was sent, or abandoned.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// How long a connection told to go away (GOAWAY, or keep-alive off) may take to finish.
const GOING_AWAY_CAP: Duration = Duration::from_secs(1);

async fn serve_connection<IO>(
    accepted: Accepted<IO>,
    router: Router,
    extensions: Option<axum::http::Extensions>,
    limits: ConnectionLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let slot = ConnectionSlot(Arc::new(accepted.slot));
    let io = Tracked {
        inner: accepted.io,
        activity: activity.clone(),
    };
    let service_activity = activity.clone();
    let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        service_activity.request_started();
        let in_flight = InFlight(service_activity.clone());
        if let Some(ext) = &extensions {
            req.extensions_mut().extend(ext.clone());
        }
        req.extensions_mut().insert(slot.clone());
        let router = router.clone();
        async move {
            let res = router.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(res.map(|body| {
                Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                    // Keeps the guard alive as long as the body is being sent.
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(io),
        hyper_util::service::TowerToHyperService::new(service),
    );
    tokio::pin!(conn);
    let mut going_away: Option<Instant> = None;
    loop {
        let deadline = match going_away {
            Some(at) => Some(at + GOING_AWAY_CAP),
            None => activity.deadline(&limits).map(|(at, _)| at),
        };
        let wake = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                // A request in flight: its end wakes `changed`.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(remote = %accepted.remote, error = %e, "connection ended with an error");
                }
                return;
            }
            // The deadline moved (a request head began, a request ended): compute it again.
            () = activity.changed.notified(), if going_away.is_none() => {}
            () = wake => {
                if going_away.is_some_and(|at| at.elapsed() >= GOING_AWAY_CAP) {
                    return;
                }
                if going_away.is_some() {
                    continue;
                }
                match activity.deadline(&limits) {
                    Some((at, Due::Header)) if at <= Instant::now() => {
                        // Nothing of the request was answered or is owed: close at once (a
                        // graceful shutdown would wait for the head to finish).
                        tracing::debug!(remote = %accepted.remote, "closing a connection whose request head did not arrive in time");
                        return;
                    }
                    Some((at, Due::Idle)) if at <= Instant::now() => {
                        tracing::debug!(remote = %accepted.remote, "closing an idle connection");
                        if activity.owes_nothing() {
                            return;
                        }
                        // HTTP/2 gets its GOAWAY; HTTP/1 between requests closes.
                        conn.as_mut().graceful_shutdown();
                        going_away = Some(Instant::now());
                    }
                    _ => {}
                }
            }
            changed = stop.changed(), if going_away.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    let idle = activity.in_flight.load(Ordering::Acquire) == 0;
                    if idle && activity.owes_nothing() {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    if idle {
                    } else {
                        // Requests in flight finish within the shutdown grace; the drain in
                        // `serve` drops whatever is left after it.
                        going_away = Some(Instant::now() + limits.shutdown_grace);
                    }
                }
            }
        }
    }
}
