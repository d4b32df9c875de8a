//! The benchmarks' HTTP/1.1 client of the gateway: a fresh TLS connection, one request on it,
//! and the percentile of the latencies measured. Included with `#[path = "common/http1.rs"]
//! mod http1;` (an example is its own crate); each example uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A fresh TLS connection to the gateway at `addr` and HTTP/1.1 over it.
pub(crate) async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Sender, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// `GET /v1/models` on `send`; the answer's status, its body read whole.
pub(crate) async fn request(send: &mut Sender) -> Result<u16, BoxError> {
    request_as(send, None).await
}

/// [`request`] naming organization `org` (`OpenAI-Organization`) when given.
pub(crate) async fn request_as(send: &mut Sender, org: Option<&str>) -> Result<u16, BoxError> {
    send.ready().await?;
    let mut req = hyper::Request::builder()
        .uri("/v1/models")
        .header("host", "localhost");
    if let Some(org) = org {
        req = req.header("openai-organization", org);
    }
    let res = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
    let status = res.status().as_u16();
    res.into_body().collect().await?;
    Ok(status)
}

/// A whole connection's life: a fresh TLS connection to `addr`, one request asking to close,
/// and the connection's end awaited; the answer's status.
pub(crate) async fn once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<u16, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/v1/models")
        .header("host", "localhost")
        .header("connection", "close")
        .body(Empty::<Bytes>::new())?;
    let res = send.send_request(req).await?;
    let status = res.status().as_u16();
    res.into_body().collect().await?;
    drop(send);
    let _ = driver.await;
    Ok(status)
}

/// COUNT whole connections ([`once`]) to `addr` from CONCURRENCY tasks, connection `k` presenting
/// `identities[k % len]`; throughput, latency percentiles (milliseconds, each connection from its
/// TCP connect to its end) and the count of each status, as a JSON object.
pub(crate) async fn load(
    addr: SocketAddr,
    identities: Vec<Arc<rustls::ClientConfig>>,
    count: usize,
    concurrency: usize,
) -> Result<serde_json::Value, BoxError> {
    let identities = Arc::new(identities);
    if identities.is_empty() {
        return Err("no client identity".into());
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (identities, next) = (identities.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= count {
                    break out;
                }
                let config = identities[k % identities.len()].clone();
                let t = std::time::Instant::now();
                let status = once(addr, config).await.map_err(|e| e.to_string());
                out.push((t.elapsed().as_secs_f64() * 1000.0, status));
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for w in workers {
        for (ms, status) in w.await? {
            latencies.push(ms);
            let key = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("error: {e}"),
            };
            *statuses.entry(key).or_default() += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "connections": latencies.len(),
        "seconds": secs,
        "connections_per_second": latencies.len() as f64 / secs,
        "p50_ms": percentile(&latencies, 0.5),
        "p90_ms": percentile(&latencies, 0.9),
        "p99_ms": percentile(&latencies, 0.99),
        "statuses": statuses,
    }))
}

/// The `p` percentile (0 to 1, nearest rank) of `sorted`; NaN when it is empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}
