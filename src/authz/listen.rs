//! The authz listeners' addresses: `HOST:PORT`, or `unix:/path` for a Unix socket created
//! with mode 0660 (the proxy's group may connect, nobody else), and the connections they
//! accept for [`crate::runtime::serve`].

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::runtime::{Accepted, ConnectionSlots, Incoming};

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!(
                    "'{raw}': a Unix socket address is unix: and an absolute path"
                ));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        raw.parse().map(ListenAddr::Tcp).map_err(|_| {
            format!("'{raw}' is neither HOST:PORT (e.g. 127.0.0.1:9191) nor unix:/path")
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound listener.
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    /// Binds `addr`. A Unix socket's stale file is replaced (only if it is a socket), and the
    /// new one is made mode 0660.
    pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Bound> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Bound::Tcp(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding {a}"))?,
            )),
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(path).with_context(|| {
                            format!("removing the stale socket {}", path.display())
                        })?;
                    }
                }
                let listener = UnixListener::bind(path)
                    .with_context(|| format!("binding unix:{}", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                    .with_context(|| format!("setting mode 0660 on {}", path.display()))?;
                Ok(Bound::Unix(listener))
            }
        }
    }

    /// What was bound (a TCP port 0 resolved).
    pub fn local(&self) -> anyhow::Result<ListenAddr> {
        Ok(match self {
            Bound::Tcp(l) => ListenAddr::Tcp(l.local_addr()?),
            Bound::Unix(l) => ListenAddr::Unix(
                l.local_addr()?
                    .as_pathname()
                    .map(PathBuf::from)
                    .unwrap_or_default(),
            ),
        })
    }

    pub fn incoming(self, slots: ConnectionSlots) -> AnyIncoming {
        AnyIncoming { bound: self, slots }
    }
}

/// Connections of either kind, each taking a slot before it is accepted.
pub struct AnyIncoming {
    bound: Bound,
    slots: ConnectionSlots,
}

/// A Unix connection has no socket address; its requests are logged with this one.
const UNIX_PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl Incoming for AnyIncoming {
    type Io = Stream;

    async fn next(&mut self) -> Option<Accepted<Stream>> {
        let slot = self.slots.acquire().await?;
        loop {
            let accepted = match &self.bound {
                Bound::Tcp(l) => l.accept().await.map(|(io, remote)| {
                    let _ = io.set_nodelay(true);
                    (Stream::Tcp(io), remote)
                }),
                Bound::Unix(l) => l
                    .accept()
                    .await
                    .map(|(io, _)| (Stream::Unix(io), UNIX_PEER)),
            };
            match accepted {
                Ok((io, remote)) => return Some(Accepted { io, remote, slot }),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A TCP or Unix connection.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
