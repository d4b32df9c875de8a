//! A TLS listener for `axum::serve`, with handshakes run off the accept path, and the
//! per-connection [`PeerIdentity`] that handlers receive as `ConnectInfo`.
//!
//! A background task accepts TCP connections and spawns one task per handshake; finished
//! handshakes are handed to [`TlsListener::accept`] through a channel, so a slow or silent
//! client never stalls the accept loop. Handshakes are bounded in number (a semaphore: past
//! the limit, new connections wait in the kernel's listen backlog) and in time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::trust::{Admission, PeerChain, Rejection};

/// Bounds on TLS handshakes in progress.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Most handshakes in progress at once.
    pub max_in_flight: usize,
    /// Longest a client may take to complete its handshake.
    pub timeout: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_in_flight: 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`. Handshakes finished but not yet served wait in a bounded
    /// queue; the accept task stops when the listener is dropped.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        limits: HandshakeLimits,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1)));
        tokio::spawn(async move {
            loop {
                // A free handshake slot first: while all are taken, connections stay queued in
                // the kernel rather than in memory here.
                let permit = tokio::select! {
                    permit = handshakes.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                };
                let accepted = tokio::select! {
                    accepted = tcp.accept() => accepted,
                    () = tx.closed() => return,
                };
                let (socket, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(limits.timeout, acceptor.accept(socket)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, remote)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            incoming: rx,
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(pair) => pair,
            // The accept task only ends once this receiver is gone, so this cannot happen
            // while `self` exists; wait forever rather than panic.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Who is on the other end of one TLS connection: the chain it presented (parsed once), and
/// the last verdict, reused by later requests with the same scope, trust generation and second.
#[derive(Clone)]
pub struct PeerIdentity(Arc<PeerInner>);

struct PeerInner {
    remote: SocketAddr,
    chain: Option<PeerChain>,
    cache: Mutex<Option<CachedVerdict>>,
}

/// (generation, organization header, project header, now) → verdict.
struct CachedVerdict {
    key: (i64, Option<String>, Option<String>, i64),
    verdict: Result<Admission, Rejection>,
}

impl PeerIdentity {
    pub fn new(remote: SocketAddr, chain: Option<PeerChain>) -> Self {
        PeerIdentity(Arc::new(PeerInner {
            remote,
            chain,
            cache: Mutex::new(None),
        }))
    }

    pub fn remote(&self) -> SocketAddr {
        self.0.remote
    }

    pub fn chain(&self) -> Option<&PeerChain> {
        self.0.chain.as_ref()
    }

    /// The verdict for `key` if this connection already decided it.
    pub fn cached(
        &self,
        key: &(i64, Option<String>, Option<String>, i64),
    ) -> Option<Result<Admission, Rejection>> {
        let cache = self.0.cache.lock().ok()?;
        cache
            .as_ref()
            .filter(|c| &c.key == key)
            .map(|c| c.verdict.clone())
    }

    pub fn remember(
        &self,
        key: (i64, Option<String>, Option<String>, i64),
        verdict: Result<Admission, Rejection>,
    ) {
        if let Ok(mut cache) = self.0.cache.lock() {
            *cache = Some(CachedVerdict { key, verdict });
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerIdentity {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        let chain = conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .and_then(PeerChain::new);
        PeerIdentity::new(*stream.remote_addr(), chain)
    }
}
