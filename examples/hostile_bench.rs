//! Benchmark helper for `bench/hostile/run.sh`: how long a legitimate client's handshake +
//! request takes while hostile clients send crafted chains (decisions.md D34).
//!
//! - `setup DIR DATABASE_URL`: a server certificate, one organization with 7 active CAs that
//!   share one subject (as a tenant could upload), a legitimate client of the first, and a
//!   crafted chain: a leaf naming that subject as its issuer plus 4 intermediates with the same
//!   subject that sign one another in a loop (the most the gateway accepts). Writes PEM files
//!   and `setup.json`.
//! - `run ADDR DIR ROUNDS SECONDS`: alternates rounds without and with 4 hostile connection
//!   loops (each: a fresh connection with the crafted chain, then 5 requests on it, as fast as
//!   it can). In every round a legitimate client makes sequential fresh handshakes + one
//!   request each for SECONDS. Prints one JSON line per round and a summary line.

// Benchmark arithmetic on counts and durations: precision loss is irrelevant here.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::KeyPair;
use serde_json::json;

#[path = "common/http1.rs"]
mod http1;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/tls.rs"]
mod tls;

use http1::{connect, percentile, request};
use pki::{ca_params, leaf_params, now};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SUBJECT: &str = "Shared Name CA";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["setup", dir, db] => setup(Path::new(dir), db).await,
        ["run", addr, dir, rounds, secs] => {
            run(
                addr.parse()?,
                Path::new(dir),
                rounds.parse()?,
                secs.parse()?,
            )
            .await
        }
        _ => {
            eprintln!("usage: hostile_bench setup DIR DATABASE_URL | run ADDR DIR ROUNDS SECONDS");
            std::process::exit(2)
        }
    }
}

async fn setup(dir: &Path, db: &str) -> Result<(), BoxError> {
    use certgate::domain::{Actor, Scope, SystemClock, ToggleIds};
    use certgate::store::{Store, StoreOptions};
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    let server_ca_key = KeyPair::generate()?;
    let server_ca = ca_params("Bench server CA")?.self_signed(&server_ca_key)?;
    let server_key = KeyPair::generate()?;
    let server =
        leaf_params("localhost", true)?.signed_by(&server_key, &server_ca, &server_ca_key)?;
    write("server-ca.pem", &server_ca.pem())?;
    write("server.pem", &server.pem())?;
    write("server.key", &server_key.serialize_pem())?;

    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let (org, _) = store.create_organization("Hostile bench").await?;
    let mut ids = Vec::new();
    let mut victim = None;
    for _ in 0..7 {
        let key = KeyPair::generate()?;
        let cert = ca_params(SUBJECT)?.self_signed(&key)?;
        let parsed = certgate::x509::parse_ca_pem(&cert.pem(), now())?;
        let stored = store
            .upload_certificate(&org.id, None, &cert.pem(), &parsed, None, &Actor::System)
            .await?;
        ids.push(stored.id.into_string());
        victim.get_or_insert((cert, key));
    }
    store
        .toggle_certificates(
            &org.id,
            &Scope::Organization,
            &ToggleIds::parse(&ids)?,
            true,
            &Actor::System,
        )
        .await?;
    let (victim, victim_key) = victim.ok_or("no CA")?;
    let client_key = KeyPair::generate()?;
    let client = leaf_params("client", false)?.signed_by(&client_key, &victim, &victim_key)?;
    write("client.pem", &client.pem())?;
    write("client.key", &client_key.serialize_pem())?;

    // The crafted chain: four members with the victim's subject, each signed by the next.
    let keys: Vec<KeyPair> = (0..4)
        .map(|_| KeyPair::generate())
        .collect::<Result<_, _>>()?;
    let signers: Vec<rcgen::Certificate> = keys
        .iter()
        .map(|k| ca_params(SUBJECT).and_then(|p| Ok(p.self_signed(k)?)))
        .collect::<Result<_, _>>()?;
    let attacker_key = KeyPair::generate()?;
    let mut chain = leaf_params("attacker", false)?
        .signed_by(&attacker_key, &signers[0], &keys[0])?
        .pem();
    for i in 0..4 {
        let next = (i + 1) % 4;
        chain.push_str(
            &ca_params(SUBJECT)?
                .signed_by(&keys[i], &signers[next], &keys[next])?
                .pem(),
        );
    }
    write("attacker.pem", &chain)?;
    write("attacker.key", &attacker_key.serialize_pem())?;
    let info = json!({"organization": org.id.as_str(), "active_cas": ids.len()});
    write("setup.json", &info.to_string())?;
    store.close().await;
    println!("{info}");
    Ok(())
}

/// One round: the legitimate client for `secs`, with or without attackers; latencies in ms.
async fn round(
    addr: SocketAddr,
    good: &Arc<rustls::ClientConfig>,
    bad: &Arc<rustls::ClientConfig>,
    attack: bool,
    secs: f64,
) -> Result<(Vec<f64>, u64), BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_requests = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    if attack {
        for _ in 0..4 {
            let (bad, stop, count) = (bad.clone(), stop.clone(), hostile_requests.clone());
            attackers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut send) = connect(addr, bad.clone()).await else {
                        continue;
                    };
                    for _ in 0..5 {
                        if request(&mut send).await.is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let mut send = connect(addr, good.clone()).await?;
        let status = request(&mut send).await?;
        if status != 200 {
            return Err(format!("legitimate client got {status}").into());
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    Ok((latencies, hostile_requests.load(Ordering::Relaxed)))
}

async fn run(addr: SocketAddr, dir: &Path, rounds: usize, secs: f64) -> Result<(), BoxError> {
    let good = tls::client_files(dir, "client", false)?;
    let bad = tls::client_files(dir, "attacker", false)?;
    let (mut calm, mut attacked) = (Vec::new(), Vec::new());
    let mut hostile_total = 0;
    for r in 0..rounds {
        for attack in [false, true] {
            let (mut lat, hostile) = round(addr, &good, &bad, attack, secs).await?;
            lat.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"round": r + 1, "attack": attack, "legit_requests": lat.len(),
                       "hostile_requests": hostile, "p50_ms": percentile(&lat, 0.5),
                       "p99_ms": percentile(&lat, 0.99), "max_ms": lat.last()})
            );
            hostile_total += hostile;
            if attack {
                attacked.extend(lat);
            } else {
                calm.extend(lat);
            }
        }
    }
    calm.sort_by(f64::total_cmp);
    attacked.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"summary": true,
               "calm_p50_ms": percentile(&calm, 0.5), "calm_p99_ms": percentile(&calm, 0.99),
               "attacked_p50_ms": percentile(&attacked, 0.5), "attacked_p99_ms": percentile(&attacked, 0.99),
               "attacked_max_ms": attacked.last(), "hostile_requests": hostile_total})
    );
    Ok(())
}
