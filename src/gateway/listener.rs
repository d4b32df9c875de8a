//! TLS connections for [`crate::runtime::serve`], with handshakes run off the accept path, and
//! the per-connection [`PeerIdentity`] handlers receive as `ConnectInfo`.
//!
//! A background task takes a connection slot, accepts a TCP connection and spawns one task per
//! handshake; finished handshakes are handed over through a channel, so a slow or silent client
//! never stalls the accept loop. Handshakes are bounded in number (a semaphore: past the limit,
//! new connections wait in the kernel's listen backlog) and in time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::runtime::{Accepted, ConnectionSlots, Incoming};
use crate::trust::{ChainChecks, PeerChain};

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
    incoming: mpsc::Receiver<Accepted<TlsStream<TcpStream>>>,
}

impl TlsListener {
    /// Starts accepting on `tcp`. Handshakes finished but not yet served wait in a bounded
    /// queue; the accept task stops when the listener is dropped.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        slots: ConnectionSlots,
        limits: HandshakeLimits,
    ) -> TlsListener {
        let (tx, rx) = mpsc::channel(256);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1)));
        tokio::spawn(async move {
            loop {
                // A connection slot and a handshake slot first: while they are all taken,
                // connections stay queued in the kernel rather than in memory here.
                let (slot, permit) = tokio::select! {
                    slots = async { (slots.acquire().await, handshakes.clone().acquire_owned().await.ok()) } => match slots {
                        (Some(slot), Some(permit)) => (slot, permit),
                        _ => return,
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
                        Ok(Ok(io)) => {
                            let _ = tx.send(Accepted { io, remote, slot }).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { incoming: rx }
    }
}

impl Incoming for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn next(&mut self) -> Option<Accepted<Self::Io>> {
        self.incoming.recv().await
    }
}

/// Who is on the other end of one TLS connection: the chain it presented (parsed once), and
/// what checking that chain against anchors has found so far (reused by every later request
/// on the connection, whatever its headers, and across trust generations).
#[derive(Clone)]
pub struct PeerIdentity(Arc<PeerInner>);

struct PeerInner {
    remote: SocketAddr,
    chain: Option<Arc<PeerChain>>,
    /// Locked across a request's chain work, so concurrent requests of one connection (HTTP/2)
    /// wait for one another instead of repeating it.
    checks: tokio::sync::Mutex<ChainChecks>,
}

impl PeerIdentity {
    pub fn new(remote: SocketAddr, chain: Option<PeerChain>) -> Self {
        PeerIdentity(Arc::new(PeerInner {
            remote,
            chain: chain.map(Arc::new),
            checks: tokio::sync::Mutex::new(ChainChecks::default()),
        }))
    }

    /// The identity of a TLS connection, from the certificates the client sent.
    pub fn of(io: &TlsStream<TcpStream>, remote: SocketAddr) -> Self {
        let (_, conn) = io.get_ref();
        let chain = conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .and_then(PeerChain::new);
        PeerIdentity::new(remote, chain)
    }

    pub fn remote(&self) -> SocketAddr {
        self.0.remote
    }

    pub fn chain(&self) -> Option<&Arc<PeerChain>> {
        self.0.chain.as_ref()
    }

    pub fn checks(&self) -> &tokio::sync::Mutex<ChainChecks> {
        &self.0.checks
    }
}
