//! Benchmark helper for `bench/hostile/crls.sh`: one tenant's CRLs against another tenant's
//! traffic and propagation (spec §13.5, issue 30 item 4).
//!
//! - `pki DIR`: the gateway's server certificate; the legitimate tenant's CA (`legit`) with a
//!   client, and a second CA (`toggled`) with a client, whose (de)activation is timed.
//! - `setup BASE KEY_L KEY_H DIR N`: through the Admin API at BASE (`http://…/v1`): uploads and
//!   activates `legit` and `toggled` with `KEY_L`; uploads N hostile CAs (made here) with `KEY_H`.
//!   Writes `setup.json`.
//! - `crls DIR ENTRIES`: the hostile CAs' CRLs of ENTRIES entries each, made once into
//!   `DIR/crls/` (two versions for the first 8 CAs, which differ only in their CRL number).
//! - `store BASE KEY_H DIR`: PUTs every hostile CA's CRL; prints how many were stored and
//!   refused (and why).
//! - `activate BASE KEY_H DIR`: activates every hostile CA for the organization.
//! - `churn BASE KEY_H DIR SECONDS`: for SECONDS, replaces the stored CRLs with their other
//!   version, back to back: every stored PUT is a version every gateway must read once.
//! - `parse DIR`: how long the upload's checks (`crl::parse_crl`) and the gateway's parse
//!   (`crl::revoked_serials`) take on the first CRL of `crls`, and what its serials hold.
//! - `measure ADDR BASE KEY_L DIR SECONDS ROUNDS`: one check request (serve's `TrustCache`), then
//!   for SECONDS the legitimate client's fresh handshake + request, sequentially, while ROUNDS
//!   deactivations and activations of `toggled` are timed from the API's answer to the first
//!   request through the gateway that sees them. One JSON line.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// CAs whose CRL has a second version for `churn`.
const CHURNED: usize = 8;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["pki", dir] => pki(Path::new(dir)),
        ["setup", base, key_l, key_h, dir, n] => {
            setup(base, key_l, key_h, Path::new(dir), n.parse()?).await
        }
        ["crls", dir, entries] => crls(Path::new(dir), entries.parse()?),
        ["parse", dir] => parse(Path::new(dir)),
        ["store", base, key_h, dir] => store(base, key_h, Path::new(dir)).await,
        ["activate", base, key_h, dir] => activate(base, key_h, Path::new(dir)).await,
        ["churn", base, key_h, dir, secs] => {
            churn(base, key_h, Path::new(dir), secs.parse()?).await
        }
        ["measure", addr, base, key_l, dir, secs, rounds] => {
            measure(
                addr.parse()?,
                base,
                key_l,
                Path::new(dir),
                secs.parse()?,
                rounds.parse()?,
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: crl_bench pki DIR | setup BASE KEY_L KEY_H DIR N | crls DIR ENTRIES | \
                 store BASE KEY_H DIR | activate BASE KEY_H DIR | churn BASE KEY_H DIR SECONDS | \
                 measure ADDR BASE KEY_L DIR SECONDS ROUNDS"
            );
            std::process::exit(2)
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn at(unix: i64) -> Result<time::OffsetDateTime, BoxError> {
    Ok(time::OffsetDateTime::from_unix_timestamp(unix)?)
}

fn ca_params(cn: &str) -> Result<CertificateParams, BoxError> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(now() - 86_400)?;
    p.not_after = at(now() + 365 * 86_400)?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn leaf_params(cn: &str, server: bool) -> Result<CertificateParams, BoxError> {
    let mut p = CertificateParams::new(vec![cn.to_owned()])?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A CA and a client of it, as `DIR/NAME-ca.pem`, `DIR/NAME.pem` and `DIR/NAME.key`.
fn ca_with_client(dir: &Path, name: &str) -> Result<(), BoxError> {
    let key = KeyPair::generate()?;
    let ca = ca_params(&format!("{name} CA"))?.self_signed(&key)?;
    let client_key = KeyPair::generate()?;
    let client =
        leaf_params(&format!("{name}-client"), false)?.signed_by(&client_key, &ca, &key)?;
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem())?;
    std::fs::write(dir.join(format!("{name}.pem")), client.pem())?;
    std::fs::write(dir.join(format!("{name}.key")), client_key.serialize_pem())?;
    Ok(())
}

fn pki(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let ca = ca_params("Bench server CA")?.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let server = leaf_params("localhost", true)?.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("server-ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), server.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    ca_with_client(dir, "legit")?;
    ca_with_client(dir, "toggled")
}

/// The Admin API, as one tenant.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(base: &str, key: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: String,
    ) -> Result<(u16, Value), BoxError> {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, BoxError> {
        match self
            .send(reqwest::Method::POST, path, body.to_string())
            .await?
        {
            (200, v) => Ok(v),
            (s, v) => Err(format!("POST {path}: {s} {v}").into()),
        }
    }

    async fn upload(&self, pem: &str) -> Result<String, BoxError> {
        let v = self
            .post("/organization/certificates", &json!({"certificate": pem}))
            .await?;
        Ok(v["id"].as_str().ok_or("no id")?.to_owned())
    }

    async fn toggle(&self, verb: &str, ids: &[String]) -> Result<(), BoxError> {
        for chunk in ids.chunks(10) {
            self.post(
                &format!("/organization/certificates/{verb}"),
                &json!({"certificate_ids": chunk}),
            )
            .await?;
        }
        Ok(())
    }

    /// PUTs a CRL (base64 DER, the body written by hand: 7 MiB of JSON).
    async fn put_crl(&self, id: &str, der: &[u8]) -> Result<(u16, Value), BoxError> {
        use base64::Engine as _;
        let body = format!(
            r#"{{"crl":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        self.send(
            reqwest::Method::PUT,
            &format!("/organization/certificates/{id}/crl"),
            body,
        )
        .await
    }
}

fn read_setup(dir: &Path) -> Result<Value, BoxError> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join("setup.json"),
    )?)?)
}

fn hostile_ids(setup: &Value) -> Vec<String> {
    setup["hostile"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn setup(base: &str, key_l: &str, key_h: &str, dir: &Path, n: usize) -> Result<(), BoxError> {
    let legit = Api::new(base, key_l);
    let mut ids = Vec::new();
    for name in ["legit", "toggled"] {
        let pem = std::fs::read_to_string(dir.join(format!("{name}-ca.pem")))?;
        ids.push(legit.upload(&pem).await?);
    }
    legit.toggle("activate", &ids).await?;
    let hostile = Api::new(base, key_h);
    let hdir = dir.join("hostile");
    std::fs::create_dir_all(&hdir)?;
    let mut hostile_ids = Vec::new();
    for i in 0..n {
        let key = KeyPair::generate()?;
        let ca = ca_params(&format!("Hostile CA {i}"))?.self_signed(&key)?;
        std::fs::write(hdir.join(format!("ca-{i}.der")), ca.der())?;
        std::fs::write(hdir.join(format!("ca-{i}.key")), key.serialize_der())?;
        hostile_ids.push(hostile.upload(&ca.pem()).await?);
    }
    let info = json!({"legit": ids[0], "toggled": ids[1], "hostile": hostile_ids});
    std::fs::write(dir.join("setup.json"), info.to_string())?;
    println!("{info}");
    Ok(())
}

// ------------------------------------------------------------------ CRLs, written by hand

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn utc_time(unix: i64) -> Result<Vec<u8>, BoxError> {
    let t = at(unix)?;
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(tlv(0x17, text.as_bytes()))
}

/// A complete CRL of the CA in `DIR/hostile/ca-I.*`, revoking `entries` serials, signed with
/// the CA's key (ECDSA P-256 through rustls's ring signer), with cRLNumber `number`. Both
/// versions of a CA share `this_update`, so either may replace the other.
fn hostile_crl(
    dir: &Path,
    i: usize,
    entries: usize,
    number: u8,
    this_update: i64,
) -> Result<Vec<u8>, BoxError> {
    use x509_parser::prelude::FromDer;
    let hdir = dir.join("hostile");
    let ca_der = std::fs::read(hdir.join(format!("ca-{i}.der")))?;
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der)?;
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let revoked_at = utc_time(this_update - 3600)?;
    let mut list = Vec::with_capacity(entries * 28);
    for n in 0..entries as u64 {
        // Positive 8-byte serials no real client has (rcgen gives leaves 20 random bytes).
        let mut serial = vec![0x02, 0x08];
        serial.extend((n | (0x42 << 56)).to_be_bytes());
        let mut entry = serial;
        entry.extend_from_slice(&revoked_at);
        list.extend(tlv(0x30, &entry));
    }
    // cRLNumber (2.5.29.20).
    let crl_number = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x14]),
            tlv(0x04, &[0x02, 0x01, number]),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x01],
            alg.clone(),
            ca.subject().as_raw().to_vec(),
            utc_time(this_update)?,
            utc_time(this_update + 7 * 86_400)?,
            tlv(0x30, &list),
            tlv(0xa0, &tlv(0x30, &crl_number)),
        ]
        .concat(),
    );
    let key = PrivateKeyDer::Pkcs8(std::fs::read(hdir.join(format!("ca-{i}.key")))?.into());
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)?
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or("no signer")?;
    let mut bits = vec![0u8];
    bits.extend(signer.sign(&tbs)?);
    Ok(tlv(0x30, &[tbs, alg, tlv(0x03, &bits)].concat()))
}

fn crl_path(dir: &Path, i: usize, version: u8) -> std::path::PathBuf {
    dir.join("crls").join(format!("ca-{i}-v{version}.der"))
}

fn crls(dir: &Path, entries: usize) -> Result<(), BoxError> {
    let n = hostile_ids(&read_setup(dir)?).len();
    std::fs::create_dir_all(dir.join("crls"))?;
    let started = Instant::now();
    let this_update = now() - 3600;
    let (mut made, mut bytes) = (0, 0);
    for i in 0..n {
        for version in 0..if i < CHURNED { 2 } else { 1 } {
            let path = crl_path(dir, i, version);
            if !path.exists() {
                let der = hostile_crl(dir, i, entries, version + 1, this_update)?;
                bytes += der.len();
                std::fs::write(path, der)?;
                made += 1;
            }
        }
    }
    println!(
        "{}",
        json!({"crls_made": made, "bytes": bytes, "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

fn parse(dir: &Path) -> Result<(), BoxError> {
    use base64::Engine as _;
    let der = std::fs::read(crl_path(dir, 0, 0))?;
    let text = base64::engine::general_purpose::STANDARD.encode(&der);
    let mb = der.len() as f64 / 1e6;
    let t = Instant::now();
    let parsed = certgate::crl::parse_crl(&text, now())?;
    let upload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let serials = certgate::crl::revoked_serials(&der)?;
    let gateway_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"crl_bytes": der.len(), "entries": parsed.revoked_count,
               "upload_check_ms": upload_s * 1000.0, "upload_check_mb_per_s": mb / upload_s,
               "gateway_parse_ms": gateway_s * 1000.0, "gateway_parse_mb_per_s": mb / gateway_s,
               "serial_set_bytes_per_entry": serials.heap_bytes() as f64 / serials.len() as f64})
    );
    Ok(())
}

async fn store(base: &str, key_h: &str, dir: &Path) -> Result<(), BoxError> {
    let api = Api::new(base, key_h);
    let ids = hostile_ids(&read_setup(dir)?);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let (mut stored_bytes, started) = (0, Instant::now());
    for (i, id) in ids.iter().enumerate() {
        let der = std::fs::read(crl_path(dir, i, 0))?;
        let (status, body) = api.put_crl(id, &der).await?;
        let outcome = if status == 200 {
            stored_bytes += der.len();
            "stored".to_owned()
        } else {
            format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?"))
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!(
        "{}",
        json!({"puts": ids.len(), "outcomes": outcomes, "stored_bytes": stored_bytes,
               "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

async fn activate(base: &str, key_h: &str, dir: &Path) -> Result<(), BoxError> {
    let ids = hostile_ids(&read_setup(dir)?);
    Api::new(base, key_h).toggle("activate", &ids).await?;
    println!("{}", json!({"activated": ids.len()}));
    Ok(())
}

async fn churn(base: &str, key_h: &str, dir: &Path, secs: f64) -> Result<(), BoxError> {
    let api = Api::new(base, key_h);
    let ids = hostile_ids(&read_setup(dir)?);
    let mut versions = Vec::new();
    for i in 0..CHURNED.min(ids.len()) {
        versions.push([
            std::fs::read(crl_path(dir, i, 0))?,
            std::fs::read(crl_path(dir, i, 1))?,
        ]);
    }
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let (mut round, mut stored_bytes) = (0usize, 0usize);
    while Instant::now() < until {
        round += 1;
        for (i, pair) in versions.iter().enumerate() {
            let der = &pair[round % 2];
            let (status, body) = api.put_crl(&ids[i], der).await?;
            let outcome = if status == 200 {
                stored_bytes += der.len();
                "stored".to_owned()
            } else {
                format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?"))
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    println!(
        "{}",
        json!({"churn_outcomes": outcomes, "new_versions_bytes": stored_bytes})
    );
    Ok(())
}

// ---------------------------------------------------------------- the other tenant's view

fn client_config(dir: &Path, who: &str) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("server-ca.pem"))? {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_file_iter(dir.join(format!("{who}.pem")))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{who}.key")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Sender, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn request(send: &mut Sender) -> Result<u16, BoxError> {
    send.ready().await?;
    let req = hyper::Request::builder()
        .uri("/v1/models")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())?;
    let res = send.send_request(req).await?;
    let status = res.status().as_u16();
    res.into_body().collect().await?;
    Ok(status)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}

/// Deactivates and activates `toggled` `rounds` times; each change is timed from the API's
/// answer to the first request (on an open connection when the upstream keeps it, polled
/// every 2 ms) that sees it.
async fn propagation(
    addr: SocketAddr,
    api: &Api,
    toggled: &str,
    dir: &Path,
    rounds: usize,
) -> Result<Vec<f64>, BoxError> {
    let config = client_config(dir, "toggled")?;
    let mut send = connect(addr, config.clone()).await?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        for (verb, want) in [("deactivate", 403u16), ("activate", 200u16)] {
            // A random pause, so the writes do not fall into step with the gateway's poll.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 250)).await;
            api.toggle(verb, &[toggled.to_owned()]).await?;
            let acked = Instant::now();
            loop {
                // An upstream that closes after each answer (HTTP/1.0) closes this too.
                let status = if let Ok(status) = request(&mut send).await {
                    status
                } else {
                    send = connect(addr, config.clone()).await?;
                    request(&mut send).await?
                };
                if status == want {
                    times.push(acked.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if acked.elapsed() > Duration::from_secs(30) {
                    return Err(format!("{verb} not seen within 30 s").into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

async fn measure(
    addr: SocketAddr,
    base: &str,
    key_l: &str,
    dir: &Path,
    secs: f64,
    rounds: usize,
) -> Result<(), BoxError> {
    let setup = read_setup(dir)?;
    let api = Api::new(base, key_l);
    let started = Instant::now();
    let pem = std::fs::read_to_string(dir.join("legit.pem"))?;
    let checked = api
        .post(
            "/organization/certificates/check",
            &json!({"certificate": pem}),
        )
        .await?;
    if checked["admitted"] != true {
        return Err(format!("check: {checked}").into());
    }
    let check_ms = started.elapsed().as_secs_f64() * 1000.0;
    let toggled = setup["toggled"].as_str().ok_or("no toggled id")?.to_owned();
    let prop = propagation(addr, &api, &toggled, dir, rounds);
    let legit = async {
        let config = client_config(dir, "legit")?;
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut latencies = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            let mut send = connect(addr, config.clone()).await?;
            let status = request(&mut send).await?;
            if status != 200 {
                return Err::<Vec<f64>, BoxError>(format!("legitimate client got {status}").into());
            }
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    };
    let (lat, prop) = tokio::join!(legit, prop);
    let (lat, prop) = (lat?, prop?);
    println!(
        "{}",
        json!({"check_ms": check_ms, "legit_requests": lat.len(),
               "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99),
               "max_ms": lat.last(), "propagation_changes": prop.len(),
               "propagation_p50_ms": percentile(&prop, 0.5),
               "propagation_p99_ms": percentile(&prop, 0.99),
               "propagation_max_ms": prop.last()})
    );
    Ok(())
}
