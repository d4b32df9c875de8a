//! Benchmark helper for `bench/ocsp/run.sh` (issue 29): what OCSP costs the gateway's clients.
//!
//! - `pki DIR URL LEAVES`: the gateway's server certificate and a client CA (`client-ca`) whose
//!   leaves name `URL` as their OCSP responder: `client` (the one the throughput rounds present,
//!   its answer cached after its first connection) and `first-0` … `first-{LEAVES-1}` (each
//!   presented once, so each connection waits for the responder). Writes `index.txt`, the index
//!   `openssl ocsp -index` answers from (every leaf valid: `good`).
//! - `seed DIR DATABASE_URL MODE`: a new organization in the database with `client-ca` uploaded
//!   with `ocsp: MODE` (`off`, `soft_fail` or `hard_fail`) and active for it; prints its id.
//! - `load ADDR DIR PREFIX COUNT CONCURRENCY`: COUNT full TLS handshakes (no resumption), one
//!   request each, presenting `client` when PREFIX is `client`, else `PREFIX-0`, `PREFIX-1`, …
//!   in turn; one JSON line (throughput, latency percentiles, statuses).

use std::path::Path;

use serde_json::json;

use pki::Ca;

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
        ["pki", dir, url, leaves] => make_pki(Path::new(dir), url, leaves.parse()?),
        ["seed", dir, db, mode] => seed_org(Path::new(dir), db, mode).await,
        ["load", addr, dir, prefix, count, conc] => {
            let count: usize = count.parse()?;
            let identities = if *prefix == "client" {
                vec![tls::client_files(Path::new(dir), "client", false)?]
            } else {
                (0..count)
                    .map(|i| tls::client_files(Path::new(dir), &format!("{prefix}-{i}"), false))
                    .collect::<Result<_, _>>()?
            };
            let out = http1::load(addr.parse()?, identities, count, conc.parse()?).await?;
            println!("{out}");
            Ok(())
        }
        _ => {
            eprintln!("usage: ocsp_bench pki DIR URL LEAVES | seed DIR DB MODE | load ADDR DIR PREFIX COUNT CONCURRENCY");
            std::process::exit(2)
        }
    }
}

/// The leaves' serials: `0x10` then the index, four bytes (positive, never rcgen's random 20).
fn serial(i: u32) -> [u8; 4] {
    let [_, b1, b2, b3] = i.to_be_bytes();
    [0x10, b1, b2, b3]
}

fn make_pki(dir: &Path, url: &str, leaves: u32) -> Result<(), BoxError> {
    pki::write_server(dir)?;
    let ca = Ca::new("Bench OCSP client CA")?;
    ca.write(dir, "client-ca")?;
    let expiry = pki::utc_text(pki::now() + 365 * 86_400)?;
    let mut index = String::new();
    let names = std::iter::once(("client".to_owned(), u32::MAX >> 8))
        .chain((0..leaves).map(|i| (format!("first-{i}"), i)));
    for (name, n) in names {
        let serial = serial(n);
        let mut params = pki::leaf_params(&name, false)?;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.custom_extensions.push(pki::aia_ocsp(url));
        let (cert, key) = ca.sign(params)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert)?;
        std::fs::write(dir.join(format!("{name}.key")), key)?;
        // `openssl ocsp` looks a serial up as upper-case hex, whole bytes.
        index.push_str(&format!(
            "V\t{expiry}\t\t{}\tunknown\t/CN={name}\n",
            hex::encode_upper(serial)
        ));
    }
    std::fs::write(dir.join("index.txt"), index)?;
    println!("{}", json!({"leaves": leaves, "responder": url}));
    Ok(())
}

async fn seed_org(dir: &Path, db: &str, mode: &str) -> Result<(), BoxError> {
    use certgate::domain::{Actor, OcspMode, RevocationSources, SystemClock};
    use certgate::store::{Store, StoreOptions};
    let ocsp = OcspMode::parse(mode).ok_or("MODE is off, soft_fail or hard_fail")?;
    let store = Store::open(&StoreOptions::new(db), std::sync::Arc::new(SystemClock)).await?;
    let (org, _key) = store.create_organization(&format!("OCSP {mode}")).await?;
    let pem = std::fs::read_to_string(dir.join("client-ca.pem"))?;
    let parsed = certgate::x509::parse_ca_pem(&pem, pki::now())?;
    let sources = RevocationSources {
        crl_url: None,
        ocsp,
    };
    let stored = store
        .upload_certificate_with_sources(
            &org.id,
            None,
            &pem,
            &parsed,
            None,
            sources,
            &Actor::System,
        )
        .await?;
    seed::activate(&store, &org.id, &[stored.id.into_string()]).await?;
    store.close().await;
    println!("{}", json!({"organization": org.id.as_str(), "ocsp": mode}));
    Ok(())
}
