//! Benchmark helper for `bench/gateway/run.sh`. Three subcommands:
//!
//! - `setup DIR DATABASE_URL CAS ORGS`: makes a test PKI with rcgen (server certificate,
//!   the client's CA and leaf, and `CAS - 1` more CAs), creates `ORGS` organizations in the
//!   database and uploads and activates `CAS` CAs spread over them (the client's CA in the
//!   first). Writes the PEM files, `bundle.pem` (every CA, for nginx) and `setup.json`.
//! - `load ADDR DIR COUNT CONCURRENCY`: COUNT full TLS handshakes (session resumption
//!   disabled) with the client certificate, one HTTP/1.1 request each; prints a JSON line with
//!   throughput and latency percentiles.
//! - `propagate ADMIN_BASE ADMIN_KEY CERT_ID ADDR DIR ROUNDS`: deactivates and re-activates a
//!   CA through the Admin API, measuring from each write's acknowledgement to the first
//!   request through the gateway that sees it; prints percentiles as a JSON line.

// Benchmark arithmetic on counts and durations: precision loss is irrelevant here.
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

use rcgen::KeyIdMethod;
use serde_json::json;

use http1::{connect, percentile, request};
use pki::{now, Ca};

#[path = "common/http1.rs"]
mod http1;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/seed.rs"]
mod seed;
#[path = "common/tls.rs"]
mod tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["setup", dir, db, cas, orgs] => {
            setup(Path::new(dir), db, cas.parse()?, orgs.parse()?).await
        }
        ["revoke", dir, db, entries, serials] => {
            revoke(Path::new(dir), db, entries.parse()?, serials.parse()?).await
        }
        ["load", addr, dir, count, conc] => {
            load(addr.parse()?, Path::new(dir), count.parse()?, conc.parse()?).await
        }
        ["propagate", base, key, cert, addr, dir, rounds] => {
            propagate(
                base,
                key,
                cert,
                addr.parse()?,
                Path::new(dir),
                rounds.parse()?,
            )
            .await
        }
        _ => {
            eprintln!("usage: handshake_bench setup DIR DB CAS ORGS | revoke DIR DB ENTRIES SERIALS | load ADDR DIR COUNT CONCURRENCY | propagate BASE KEY CERT_ID ADDR DIR ROUNDS");
            std::process::exit(2)
        }
    }
}

async fn setup(dir: &Path, db: &str, cas: usize, orgs: usize) -> Result<(), BoxError> {
    use certgate::domain::SystemClock;
    use certgate::store::{Store, StoreOptions};
    pki::write_server(dir)?;
    let client_ca = Ca::new("Bench client CA 0")?;
    client_ca.write(dir, "client-ca")?;
    client_ca.write_client(dir, "client", None)?;

    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let mut org_ids = Vec::new();
    let mut first_key = String::new();
    for i in 0..orgs.max(1) {
        let (org, key) = store.create_organization(&format!("Bench org {i}")).await?;
        if i == 0 {
            key.value.expose().clone_into(&mut first_key);
        }
        org_ids.push(org.id);
    }
    let mut bundle = String::new();
    let mut per_org: Vec<Vec<String>> = vec![Vec::new(); org_ids.len()];
    let mut client_cert_id = String::new();
    let started = Instant::now();
    for i in 0..cas {
        let pem = if i == 0 {
            client_ca.cert.pem()
        } else {
            Ca::new(&format!("Bench CA {i}"))?.cert.pem()
        };
        bundle.push_str(&pem);
        let org = i % org_ids.len();
        let id = seed::upload(&store, &org_ids[org], &pem, None).await?;
        if i == 0 {
            client_cert_id.clone_from(&id);
        }
        per_org[org].push(id);
    }
    for (org, ids) in org_ids.iter().zip(&per_org) {
        seed::activate(&store, org, ids).await?;
    }
    std::fs::write(dir.join("bundle.pem"), &bundle)?;
    let info = json!({
        "organization": org_ids[0].as_str(),
        "admin_key": first_key,
        "client_certificate_id": client_cert_id,
        "cas": cas,
        "organizations": org_ids.len(),
        "setup_seconds": started.elapsed().as_secs_f64(),
    });
    std::fs::write(dir.join("setup.json"), info.to_string())?;
    store.close().await;
    println!("{info}");
    Ok(())
}

/// Adds ENTRIES deny-list entries (none of them the client's) to the first organization, and a
/// CRL of SERIALS revoked serials (not the client's) to the client's CA: the revocation data a
/// request must be checked against, without revoking the client.
async fn revoke(dir: &Path, db: &str, entries: usize, serials: u32) -> Result<(), BoxError> {
    use certgate::domain::{Actor, CertificateId, OrgId, SystemClock};
    use certgate::store::{Store, StoreOptions};
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("setup.json"))?)?;
    let org = OrgId::parse(info["organization"].as_str().ok_or("organization")?)?;
    let ca_id = CertificateId::parse(info["client_certificate_id"].as_str().ok_or("ca id")?)?;
    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let started = Instant::now();
    for i in 0..entries {
        let fingerprint = format!("{:064x}", u128::MAX - i as u128);
        store
            .revoke_certificate(&org, &fingerprint, None, &Actor::System)
            .await?;
    }
    let ca_pem = std::fs::read_to_string(dir.join("client-ca.pem"))?;
    let ca = Ca::read(dir, "client-ca")?;
    let crl = rcgen::CertificateRevocationListParams {
        this_update: time::OffsetDateTime::from_unix_timestamp(now() - 60)?,
        next_update: time::OffsetDateTime::from_unix_timestamp(now() + 7 * 86_400)?,
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: (0..serials)
            .map(|i| rcgen::RevokedCertParams {
                // Serials rcgen never gives a leaf here (it uses 20 random bytes).
                serial_number: rcgen::SerialNumber::from_slice(&(i + 1).to_be_bytes()),
                revocation_time: time::OffsetDateTime::from_unix_timestamp(now() - 3600)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)?;
    let parsed = certgate::crl::parse_crl(&crl.pem()?, now())?;
    certgate::crl::check_issued_by(&parsed, &ca_pem)?;
    store.put_crl(&org, &ca_id, &parsed, &Actor::System).await?;
    // A client filter on the CA, true for the benchmark's client: evaluated on every request.
    let filter = r#"cert.subject_cn == "client" && !cert.san_uri.exists(u, u.startsWith("spiffe://banned/"))"#;
    store
        .modify_certificate(
            &org,
            &ca_id,
            None,
            Some(Some(filter.to_owned())),
            &Actor::System,
        )
        .await?;
    store.close().await;
    println!(
        "{}",
        json!({"deny_list_entries": entries, "crl_serials": serials, "crl_bytes": parsed.der.len(), "client_filter": filter, "setup_seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

async fn load(
    addr: SocketAddr,
    dir: &Path,
    count: usize,
    concurrency: usize,
) -> Result<(), BoxError> {
    let config = tls::client_files(dir, "client", false)?;
    println!(
        "{}",
        http1::load(addr, vec![config], count, concurrency).await?
    );
    Ok(())
}

async fn propagate(
    base: &str,
    key: &str,
    cert_id: &str,
    addr: SocketAddr,
    dir: &Path,
    rounds: usize,
) -> Result<(), BoxError> {
    let config = tls::client_files(dir, "client", false)?;
    let http = reqwest::Client::new();
    let toggle = |what: &'static str| {
        let http = http.clone();
        let url = format!("{base}/organization/certificates/{what}");
        let body = json!({"certificate_ids": [cert_id]});
        let key = key.to_owned();
        async move {
            let res = http.post(url).bearer_auth(key).json(&body).send().await?;
            if !res.status().is_success() {
                return Err::<(), BoxError>(format!("{what}: {}", res.status()).into());
            }
            Ok(())
        }
    };
    // A persistent connection, polled as fast as the gateway answers.
    let mut send = connect(addr, config).await?;
    let mut activate_ms = Vec::new();
    let mut deactivate_ms = Vec::new();
    for _ in 0..rounds {
        for (what, want, out) in [
            ("deactivate", 403u16, &mut deactivate_ms),
            ("activate", 200u16, &mut activate_ms),
        ] {
            // A random pause first, so the writes do not fall into step with the gateway's
            // poll (which would measure only its worst or best case).
            let pause = rand::random::<u64>() % 250;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            toggle(what).await?;
            let acked = Instant::now();
            loop {
                if request(&mut send).await? == want {
                    out.push(acked.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if acked.elapsed() > Duration::from_secs(10) {
                    return Err(format!("{what} not seen within 10 s").into());
                }
            }
        }
    }
    for v in [&mut activate_ms, &mut deactivate_ms] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{}",
        json!({
            "rounds": rounds,
            "activate_p50_ms": percentile(&activate_ms, 0.5),
            "activate_p99_ms": percentile(&activate_ms, 0.99),
            "deactivate_p50_ms": percentile(&deactivate_ms, 0.5),
            "deactivate_p99_ms": percentile(&deactivate_ms, 0.99),
            "max_ms": activate_ms.iter().chain(&deactivate_ms).copied().fold(0.0, f64::max),
        })
    );
    Ok(())
}
