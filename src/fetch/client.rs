//! The one HTTP client certgate uses for URLs tenants chose (decisions.md D60): a CRL's
//! `crl_url`, a client certificate's OCSP responder.
//!
//! Tenants choose these URLs, so a fetch must not become a way into the operator's network
//! (spec §13.4): the host is resolved here and every address it resolves to is checked
//! (loopback, private, link-local, shared and reserved ranges are refused unless the operator
//! allows them), the connection goes to an address that passed (a second resolution cannot
//! swap it), redirects are never followed, at most [`FetchPolicy::max_body_bytes`] are read
//! ([`MAX_BODY_BYTES`] unless the operator sets `--fetch-max-bytes`, decisions.md D70) and the
//! whole exchange has one time limit. A [`FetchError`] is certgate's own words with numbers at most:
//! nothing of what the server sent is ever in an error, an event or a log line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Most bytes of a body read by default (spec §13.4); a longer one is cut there and refused.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The least an operator may set the limit to (`--fetch-max-bytes`): below it a CRL of a few
/// thousand entries could not be fetched, which only a mistake would want.
pub const MIN_BODY_BYTES_SETTING: usize = 64 * 1024;
/// The most an operator may set the limit to: an organization's stored CRLs are at most this
/// many bytes (spec §13.5), so a longer body could never be stored (decisions.md D70).
pub const MAX_BODY_BYTES_SETTING: usize = 32 * 1024 * 1024;
/// The time limit of a CRL fetch: resolution, connection, TLS, request and body together.
pub const CRL_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the operator allows: private targets (`--fetch-allow-private`), the time limit, the
/// most bytes of a body read (`--fetch-max-bytes`).
#[derive(Clone)]
pub struct FetchPolicy {
    pub allow_private: bool,
    pub timeout: Duration,
    /// [`MAX_BODY_BYTES`] unless [`FetchPolicy::with_max_body_bytes`] says otherwise.
    pub max_body_bytes: usize,
    tls: Arc<rustls::ClientConfig>,
    /// Names answered here instead of by the system resolver (see [`FetchPolicy::resolving`]).
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl std::fmt::Debug for FetchPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchPolicy")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl FetchPolicy {
    /// https servers are verified against the public roots (webpki-roots).
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let tls = match tls {
            Ok(config) => config,
            // ring supports the default versions; this cannot be reached.
            Err(_) => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        FetchPolicy {
            allow_private,
            timeout,
            max_body_bytes: MAX_BODY_BYTES,
            tls: Arc::new(tls),
            hosts: Arc::default(),
        }
    }

    /// The same policy reading at most `max` bytes of a body. The CLI keeps `max` within
    /// [`MIN_BODY_BYTES_SETTING`]..=[`MAX_BODY_BYTES_SETTING`]; this takes any value.
    #[must_use]
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The same policy resolving `name` to `ips`, in that order, without asking the system
    /// resolver: how a test gives one name several addresses (no resolver on the machine can
    /// be told to). The addresses are still checked as resolved ones are.
    #[doc(hidden)]
    #[must_use]
    pub fn resolving(mut self, name: &str, ips: Vec<IpAddr>) -> Self {
        Arc::make_mut(&mut self.hosts).insert(name.to_ascii_lowercase(), ips);
        self
    }
}

/// Why a fetch gave nothing. `Display` is the reason events and logs show: fixed words and
/// numbers, never the server's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the URL cannot be fetched (only absolute http and https URLs with a host)")]
    BadUrl,
    #[error("the host name did not resolve")]
    Resolve,
    #[error("the host resolves only to loopback, private, link-local or reserved addresses, which are refused (the operator may allow them with --fetch-allow-private)")]
    PrivateAddress,
    #[error("could not connect to the server")]
    Connect,
    #[error("the TLS handshake with the server failed")]
    Tls,
    #[error("no complete answer within {0} s")]
    Timeout(u64),
    #[error("the server answered a redirect ({0}), which is not followed; give the final URL")]
    Redirect(u16),
    #[error("the server answered HTTP status {0}")]
    Status(u16),
    /// The limit in force (bytes) is said, so that an operator reading the event knows which
    /// `--fetch-max-bytes` would let it in.
    #[error("the body is larger than {0} bytes (the fetch limit, --fetch-max-bytes); reading stopped there")]
    TooLarge(usize),
    #[error("the HTTP exchange with the server failed")]
    Http,
}

/// Whether `ip` is an address anyone on the internet could reach: not loopback, private
/// (RFC 1918, unique local), link-local, shared (RFC 6598), multicast, documentation or
/// otherwise reserved. IPv4 in IPv6 (mapped, compatible, NAT64) is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // ::/96 (compatible, deprecated) and 64:ff9b::/96 (NAT64) carry an IPv4 address.
            if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let v4 = Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    (s[6] & 0xff) as u8,
                    (s[7] >> 8) as u8,
                    (s[7] & 0xff) as u8,
                );
                return !v6.is_loopback() && !v6.is_unspecified() && is_public_v4(v4);
            }
            // 2002::/16 (6to4) routes to the IPv4 address in its next 32 bits.
            if s[0] == 0x2002 {
                let v4 = Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    (s[1] & 0xff) as u8,
                    (s[2] >> 8) as u8,
                    (s[2] & 0xff) as u8,
                );
                return is_public_v4(v4);
            }
            // 64:ff9b:1::/48: translation for local use (RFC 8215), never the public internet.
            if s[..3] == [0x64, 0xff9b, 1] {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x0200)) // IETF protocol assignments (Teredo, ORCHID…)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// The addresses `url`'s host resolves to that `policy` lets certgate connect to.
async fn addresses(url: &url::Url, policy: &FetchPolicy) -> Result<Vec<SocketAddr>, FetchError> {
    let port = url.port_or_known_default().ok_or(FetchError::BadUrl)?;
    let all: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => match policy.hosts.get(name) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            None => tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| FetchError::Resolve)?
                .collect(),
        },
        None => return Err(FetchError::BadUrl),
    };
    if all.is_empty() {
        return Err(FetchError::Resolve);
    }
    let allowed: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| policy.allow_private || is_public(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(FetchError::PrivateAddress);
    }
    Ok(allowed)
}

/// A request: `GET` when `body` is `None`, else `POST` with that body and content type.
pub struct Request<'a> {
    pub url: &'a url::Url,
    pub accept: &'static str,
    pub body: Option<(&'static str, Bytes)>,
}

/// Sends `request` and reads its answer's body (2xx only), within `policy`'s time limit.
pub async fn fetch(request: Request<'_>, policy: &FetchPolicy) -> Result<Bytes, FetchError> {
    let limit = policy.timeout;
    match tokio::time::timeout(limit, exchange(request, policy)).await {
        Ok(answer) => answer,
        Err(_) => Err(FetchError::Timeout(limit.as_secs().max(1))),
    }
}

async fn exchange(request: Request<'_>, policy: &FetchPolicy) -> Result<Bytes, FetchError> {
    let url = request.url;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl);
    }
    let host = url.host_str().ok_or(FetchError::BadUrl)?.to_owned();
    let mut tcp = None;
    // Each address gets a share of the time limit, so one that never answers does not use it
    // all and leave the others untried.
    let attempt = (policy.timeout / 3).max(std::time::Duration::from_millis(100));
    for addr in addresses(url, policy).await? {
        if let Ok(Ok(stream)) = tokio::time::timeout(attempt, TcpStream::connect(addr)).await {
            tcp = Some(stream);
            break;
        }
    }
    let tcp = tcp.ok_or(FetchError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if url.scheme() == "https" {
        let name = rustls_pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|_| FetchError::BadUrl)?;
        let tls = tokio_rustls::TlsConnector::from(policy.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|_| FetchError::Tls)?;
        http1(tls, request, policy.max_body_bytes).await
    } else {
        http1(tcp, request, policy.max_body_bytes).await
    }
}

async fn http1<S>(stream: S, request: Request<'_>, max: usize) -> Result<Bytes, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| FetchError::Http)?;
    // Ends with the exchange: the task holds the connection only while this fetch runs.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = send(&mut sender, request, max).await;
    driver.abort();
    answer
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<'_>,
    max: usize,
) -> Result<Bytes, FetchError> {
    let url = request.url;
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let (method, body, content_type) = match request.body {
        Some((content_type, body)) => (hyper::Method::POST, body, Some(content_type)),
        None => (hyper::Method::GET, Bytes::new(), None),
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("certgate/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT, request.accept)
        .header(header::CONNECTION, "close");
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    let req = builder
        .body(Full::new(body))
        .map_err(|_| FetchError::BadUrl)?;
    sender.ready().await.map_err(|_| FetchError::Http)?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|_| FetchError::Http)?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect(status.as_u16()));
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let announced = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body announced longer is refused unread; one without a length (or lying about it) is
    // cut as it passes the limit: no more than `max` bytes are ever held.
    if announced.is_some_and(|n| n > max as u64) {
        return Err(FetchError::TooLarge(max));
    }
    match Limited::new(response.into_body(), max).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(FetchError::TooLarge(max)),
        Err(_) => Err(FetchError::Http),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "2002:7f00:1::",      // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",  // 6to4 of 169.254.169.254
            "64:ff9b:1::a00:1",   // local-use NAT64
            "64:ff9b:1::808:808", // local-use NAT64, whatever it embeds
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private} must be refused");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",  // 6to4 of 8.8.8.8
            "64:ff9b::808:808", // well-known NAT64 of 8.8.8.8
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public(ip), "{public} must pass");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_private_hosts_are_refused_before_connecting() {
        let policy = FetchPolicy::new(false, Duration::from_secs(2));
        for url in [
            "http://127.0.0.1:9/x.crl",
            "http://[::1]:9/x.crl",
            "http://localhost:9/x.crl",
        ] {
            let url = url::Url::parse(url).unwrap();
            let got = fetch(
                Request {
                    url: &url,
                    accept: "*/*",
                    body: None,
                },
                &policy,
            )
            .await;
            assert_eq!(got, Err(FetchError::PrivateAddress), "{url}");
        }
    }
}
