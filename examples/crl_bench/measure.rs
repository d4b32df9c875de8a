//! The other tenant's view: its client's latency and its changes' propagation.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::http1::{connect, percentile, request};
use super::{read_setup, Api, BoxError};

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
    let config = super::tls::client_files(dir, "toggled", false)?;
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

pub(crate) async fn measure(
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
        let config = super::tls::client_files(dir, "legit", false)?;
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
