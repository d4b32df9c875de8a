//! Benchmark helper for `bench/websocket/run.sh` (decisions.md D39): many open WebSocket
//! connections through one gateway, then a deactivation of the CA that admitted them.
//!
//! - `setup DIR DATABASE_URL`: server certificate, one organization with one active CA, a
//!   client of it; writes PEM files and `setup.json` (organization and certificate ids).
//! - `run ADDR DIR DATABASE_URL COUNT GATEWAY_PID`: opens COUNT upgraded connections through
//!   the gateway (whose upstream is `upstream` below), reads the gateway's resident memory before and after,
//!   deactivates the CA in the database, and measures the time from that commit until every
//!   connection received its close frame 1008. Prints one JSON line.
//! - `upstream ADDR_FILE`: a WebSocket echo server on a free port (written to `ADDR_FILE`).

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

use futures::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[path = "common/pki.rs"]
mod pki;
#[path = "common/proc.rs"]
mod proc;
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
        ["setup", dir, db] => setup(Path::new(dir), db).await,
        ["upstream", addr_file] => upstream(Path::new(addr_file)).await,
        ["run", addr, dir, db, count, pid] => {
            run(addr.parse()?, Path::new(dir), db, count.parse()?, pid).await
        }
        _ => {
            eprintln!("usage: ws_bench setup DIR DB | upstream ADDR_FILE | run ADDR DIR DB COUNT GATEWAY_PID");
            std::process::exit(2)
        }
    }
}

async fn setup(dir: &Path, db: &str) -> Result<(), BoxError> {
    use certgate::domain::SystemClock;
    use certgate::store::{Store, StoreOptions};
    pki::write_server(dir)?;
    let ca = pki::Ca::new("Bench client CA")?;
    ca.write_client(dir, "client", None)?;
    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let (org, _) = store.create_organization("WebSocket bench").await?;
    let cert = seed::upload_active(&store, &org.id, &ca.cert.pem(), None).await?;
    let info = json!({"organization": org.id.as_str(), "certificate": cert});
    std::fs::write(dir.join("setup.json"), info.to_string())?;
    store.close().await;
    println!("{info}");
    Ok(())
}

async fn upstream(addr_file: &Path) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(addr_file, listener.local_addr()?.to_string())?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

fn rss_kib(pid: &str) -> Result<u64, BoxError> {
    Ok(proc::memory_kib(pid)?.0)
}

async fn run(
    addr: SocketAddr,
    dir: &Path,
    db: &str,
    count: usize,
    pid: &str,
) -> Result<(), BoxError> {
    use certgate::domain::{Actor, CertificateId, OrgId, Scope, SystemClock, ToggleIds};
    use certgate::store::{Store, StoreOptions};
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("setup.json"))?)?;
    // Resumption stays on: the bench measures upgrades, not handshakes.
    let config = tls::client_files(dir, "client", true)?;
    let connector = tokio_rustls::TlsConnector::from(config);

    let rss_before = rss_kib(pid)?;
    let opened = Instant::now();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u16)>();
    let mut ready = Vec::new();
    for _ in 0..count {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (mut ws, _) =
            tokio_tungstenite::client_async("wss://localhost/v1/realtime", tls).await?;
        ws.send(Message::text("hello")).await?;
        ws.next().await.ok_or("no echo")??;
        let tx = closed_tx.clone();
        ready.push(tokio::spawn(async move {
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(Message::Close(frame)) => {
                        let _ =
                            tx.send((Instant::now(), frame.map_or(1005, |f| u16::from(f.code))));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send((Instant::now(), 0));
                        return;
                    }
                }
            }
        }));
    }
    drop(closed_tx);
    let open_seconds = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid)?;

    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let org = OrgId::parse(info["organization"].as_str().ok_or("organization")?)?;
    let cert = CertificateId::parse(info["certificate"].as_str().ok_or("certificate")?)?;
    let ids = [cert.to_string()];
    store
        .toggle_certificates(
            &org,
            &Scope::Organization,
            &ToggleIds::parse(&ids)?,
            false,
            &Actor::System,
        )
        .await?;
    let committed = Instant::now();
    let mut last = committed;
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    let mut seen = 0;
    while let Ok(Some((at, code))) =
        tokio::time::timeout(Duration::from_secs(30), closed_rx.recv()).await
    {
        last = last.max(at);
        *codes.entry(code).or_default() += 1;
        seen += 1;
        if seen == count {
            break;
        }
    }
    store.close().await;
    println!(
        "{}",
        json!({
            "connections": count,
            "open_seconds": open_seconds,
            "closed": seen,
            "close_codes": codes,
            "last_closed_after_commit_ms": (last - committed).as_secs_f64() * 1000.0,
            "gateway_rss_before_kib": rss_before,
            "gateway_rss_after_kib": rss_after,
            "rss_per_connection_kib": (rss_after.saturating_sub(rss_before)) as f64 / count as f64,
        })
    );
    Ok(())
}
