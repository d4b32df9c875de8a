//! `bench/crl_fetch/run.sh` (issue 29): a CA's large CRL fetched from its `crl_url`, verified,
//! stored, and in force at the gateway.
//!
//! - `fetch-pki DIR`: the gateway's server certificate, a CA (`ca.pem`, `ca.key`) and a client
//!   of it (`client.pem`, `client.key`) whose serial is [`CLIENT_SERIAL`].
//! - `fetch-crl DIR ENTRIES OUT`: the CA's CRL of ENTRIES entries (12-byte serials, as many CAs
//!   give; the client's last) as DER in OUT. Prints its size.
//! - `fetch-measure ADDR BASE KEY DIR CRL SERVE_PID GATEWAY_PID`: uploads and activates the CA
//!   through the Admin API at BASE, waits until the gateway at ADDR admits the client, serves
//!   CRL over HTTP on loopback, sets it as the CA's `crl_url`, and times from the fetch's
//!   request reaching that server to the CRL stored at serve (its summary answered) and to
//!   the client refused by the gateway (fresh connections every 10 ms); reads both processes'
//!   memory (/proc) before and after. Prints one JSON line.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::http1::{connect, request};
use super::pki::{crl, now, Ca, CrlSpec};
use super::proc::memory_kib;
use super::{Api, BoxError};

/// The benchmark client's serial (12 bytes, unlike every generated entry's leading 0x42).
pub(crate) const CLIENT_SERIAL: [u8; 12] = [
    0x17, 0x29, 0x50, 0x00, 0x0c, 0x11, 0xe7, 0x70, 0x5e, 0x41, 0xa1, 0x99,
];
/// Length of the generated entries' serials.
const SERIAL_LEN: usize = 12;
/// How long a stage may take before the run is given up.
const GIVE_UP: Duration = Duration::from_secs(120);

pub(crate) fn pki(dir: &Path) -> Result<(), BoxError> {
    super::pki::write_server(dir)?;
    let ca = Ca::new("Fetched CA")?;
    ca.write(dir, "ca")?;
    ca.write_client(dir, "client", Some(&CLIENT_SERIAL))
}

pub(crate) fn make_crl(dir: &Path, entries: usize, out: &Path) -> Result<(), BoxError> {
    let ca = Ca::read(dir, "ca")?;
    let started = Instant::now();
    let this_update = now() - 600;
    let spec = CrlSpec {
        entries: entries.saturating_sub(1),
        serial_len: SERIAL_LEN,
        extra: &[CLIENT_SERIAL.to_vec()],
        number: 1,
        this_update,
        next_update: this_update + 7 * 86_400,
    };
    let der = crl(ca.cert.der(), &ca.key.serialize_der(), &spec)?;
    std::fs::write(out, &der)?;
    println!(
        "{}",
        json!({"entries": entries, "crl_bytes": der.len(),
               "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// Serves `body` at every path on a free loopback port; the instant of the first request.
async fn crl_server(
    body: bytes::Bytes,
) -> Result<(SocketAddr, Arc<Mutex<Option<Instant>>>), BoxError> {
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = first.clone();
    let app = axum::Router::new().fallback(move || {
        let (body, seen) = (body.clone(), seen.clone());
        async move {
            if let Ok(mut at) = seen.lock() {
                at.get_or_insert_with(Instant::now);
            }
            body
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, first))
}

/// Polls `f` every `every` until it gives `Some`, at most [`GIVE_UP`].
async fn until<T, F, Fut>(what: &str, every: Duration, mut f: F) -> Result<T, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BoxError>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if started.elapsed() > GIVE_UP {
            return Err(format!("{what}: not within {GIVE_UP:?}").into());
        }
        tokio::time::sleep(every).await;
    }
}

pub(crate) struct Measure<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) base: &'a str,
    pub(crate) key: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) crl: &'a Path,
    pub(crate) serve_pid: &'a str,
    pub(crate) gateway_pid: &'a str,
}

/// A fresh connection to the gateway at `addr` as the client, one request; its status.
async fn client_status(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<u16, BoxError> {
    let mut send = connect(addr, config).await?;
    request(&mut send).await
}

pub(crate) async fn measure(m: Measure<'_>) -> Result<(), BoxError> {
    let api = Api::new(m.base, m.key);
    let (addr, config) = (m.addr, super::tls::client_files(m.dir, "client", false)?);
    let ca_pem = std::fs::read_to_string(m.dir.join("ca.pem"))?;
    let id = api.upload(&ca_pem).await?;
    api.toggle("activate", std::slice::from_ref(&id)).await?;
    until("the client admitted", Duration::from_millis(20), || {
        let config = config.clone();
        async move { Ok((client_status(addr, config).await? == 200).then_some(())) }
    })
    .await?;
    let body = bytes::Bytes::from(std::fs::read(m.crl)?);
    let crl_bytes = body.len();
    let (crl_addr, requested) = crl_server(body).await?;
    // Settled: what each process holds before the CRL.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (serve_before, _) = memory_kib(m.serve_pid)?;
    let (gateway_before, _) = memory_kib(m.gateway_pid)?;

    let set = Instant::now();
    api.post(
        &format!("/organization/certificates/{id}"),
        &json!({"crl_url": format!("http://{crl_addr}/ca.crl")}),
    )
    .await?;
    let crl_path = format!("/organization/certificates/{id}/crl");
    let stored = tokio::spawn({
        let api = Api::new(m.base, m.key);
        async move {
            let (api, crl_path) = (&api, &crl_path);
            until(
                "the CRL stored at serve",
                Duration::from_millis(10),
                move || async move {
                    let (code, _) = api
                        .send(reqwest::Method::GET, crl_path, String::new())
                        .await?;
                    Ok((code == 200).then(Instant::now))
                },
            )
            .await
        }
    });
    let enforced = until("the client refused", Duration::from_millis(10), || {
        let config = config.clone();
        async move {
            Ok(match client_status(addr, config).await? {
                200 => None,
                403 => Some(Instant::now()),
                other => return Err(format!("the gateway answered {other}").into()),
            })
        }
    })
    .await?;
    let stored = stored.await??;
    let requested = requested
        .lock()
        .map_err(|_| "poisoned")?
        .ok_or("the CRL was never requested")?;
    // Whatever follows the enforcement (the fetch's audit event) done, then the peaks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (serve_after, serve_peak) = memory_kib(m.serve_pid)?;
    let (gateway_after, gateway_peak) = memory_kib(m.gateway_pid)?;
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({
            "crl_bytes": crl_bytes,
            "set_to_request_ms": ms(set, requested),
            "request_to_stored_ms": ms(requested, stored),
            "request_to_enforced_ms": ms(requested, enforced),
            "stored_to_enforced_ms": ms(stored, enforced),
            "serve_rss_before_mib": serve_before / 1024,
            "serve_rss_after_mib": serve_after / 1024,
            "serve_peak_mib": serve_peak / 1024,
            "gateway_rss_before_mib": gateway_before / 1024,
            "gateway_rss_after_mib": gateway_after / 1024,
            "gateway_peak_mib": gateway_peak / 1024,
        })
    );
    Ok(())
}
