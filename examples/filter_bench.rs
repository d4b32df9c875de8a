//! Benchmark helper for `bench/hostile/filters.sh` (spec §13.5; attacks 1 and 2 of issue 30):
//! tenant A writes the heaviest client filter its budget allows and its clients present 64-name
//! leaves as fast as they can, while a client of organization B keeps connecting and B's CAs
//! are deactivated and activated again.
//!
//! - `calibrate DIR`: makes A's attack leaf and times each candidate filter (every one within
//!   the budget, checked as a write is) on it, in this process; writes the slowest to
//!   `DIR/heaviest.cel` and prints one JSON line per candidate (its estimate, median time).
//! - `setup DIR DATABASE_URL`: server certificate; organization A with one active CA carrying
//!   `DIR/heaviest.cel`; organization B with two active CAs (one for the measured client, one
//!   that is toggled to measure propagation) and a client of each. Writes PEM files and
//!   `setup.json`.
//! - `run ADDR DIR DATABASE_URL ROUNDS SECONDS CONNECTIONS`: alternates rounds without and
//!   with CONNECTIONS attack loops (each: a new leaf of A's CA, a fresh handshake with it, one
//!   request, as fast as it can; a new leaf every time, so no verdict can be reused, and every
//!   request costs the gateway a full evaluation of A's filter). In every round B's client makes
//!   sequential fresh handshakes + one request each for SECONDS, and B's second CA is
//!   deactivated or activated in the database every 0.3–0.6 s: the time from that commit to
//!   the first request on an open connection that sees it is the propagation. Prints one JSON
//!   line per round and a summary line.

// Benchmark arithmetic on counts and durations: precision loss is irrelevant here.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate::domain::{Actor, OrgId, Scope, SystemClock, ToggleIds};
use certgate::store::{Store, StoreOptions};
use certgate::trust::filter::FilterInput;
use certgate::trust::ClientFilter;
use certgate::x509::LeafFacts;
use rcgen::SanType;
use serde_json::{json, Value};

use http1::{connect, percentile, request_as, Sender};
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
        ["calibrate", dir] => calibrate(Path::new(dir)),
        ["setup", dir, db] => setup(Path::new(dir), db).await,
        ["run", addr, dir, db, rounds, secs, conns] => {
            let options = RunOptions {
                rounds: rounds.parse()?,
                secs: secs.parse()?,
                conns: conns.parse()?,
            };
            run(addr.parse()?, Path::new(dir), db, options).await
        }
        _ => {
            eprintln!("usage: filter_bench calibrate DIR | setup DIR DB | run ADDR DIR DB ROUNDS SECONDS CONNECTIONS");
            std::process::exit(2)
        }
    }
}

/// A client leaf of `ca` with `sans`: PEM chain and key.
fn client_of(ca: &Ca, cn: &str, sans: Vec<SanType>) -> Result<(String, String), BoxError> {
    ca.leaf(cn, false, sans, None)
}

/// A's attack leaf number `i`: 64 DNS names of about 200 bytes and a long common name, the
/// most a filter sees (at most 64 entries per list; the certificate stays well inside what a
/// TLS handshake carries). None of them is what A's filters look for.
fn attack_leaf(ca: &Ca, i: usize) -> Result<(String, String), BoxError> {
    let label = "q".repeat(60);
    let sans = (0..64)
        .map(|n| {
            let name = format!("{label}.{label}.{label}.n{n}-{i}.attack.test");
            Ok(SanType::DnsName(name.try_into()?))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    client_of(ca, &format!("{}-{i}", "c".repeat(900)), sans)
}

/// A family of filters, one per size `k`; each does its full work on A's leaves and ends false
/// (so refused clients cost the upstream nothing).
type Family = (&'static str, fn(usize) -> String);

fn families() -> Vec<Family> {
    vec![
        ("nested literal comprehensions", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            format!("{l}.exists(a, {l}.exists(b, {l}.exists(c, a + b + c < 0)))")
        }),
        ("each DNS name against an allow-list", |k| {
            let items: Vec<String> = (0..k).map(|i| format!("\"n{i}.allowed.test\"")).collect();
            format!("cert.san_dns.exists(d, d in [{}])", items.join(","))
        }),
        ("distinct small regular expressions on the subject", |k| {
            let calls: Vec<String> = (0..k)
                .map(|i| format!("cert.subject.matches(\"q{i}$\")"))
                .collect();
            calls.join(" || ")
        }),
        ("large regular expressions on the subject", |k| {
            let calls: Vec<String> = (0..k)
                .map(|i| format!("cert.subject.matches(\"x{i}[a-z]{{800}}\")"))
                .collect();
            calls.join(" || ")
        }),
        ("string building over the DNS names", |k| {
            let sum = vec!["d"; k].join(" + ");
            format!("cert.san_dns.map(d, {sum}).exists(x, x.contains(\"allowed.test\"))")
        }),
        ("timestamps parsed in a loop", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            format!("{l}.exists(a, {l}.exists(b, timestamp(\"2030-01-01T00:00:00Z\") < timestamp(a * b)))")
        }),
        ("durations parsed in a loop", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            format!("{l}.exists(a, {l}.exists(b, duration(\"1h2m3s4ms\") < duration(\"1s\")))")
        }),
        ("time zones in a loop", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            format!("{l}.exists(a, {l}.exists(b, timestamp(cert.not_after).getHours(\"America/Argentina/ComodRivadavia\") == 99))")
        }),
        ("numbers formatted and parsed in a loop", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            format!("{l}.exists(a, {l}.exists(b, double(string(a / 7.0 + double(b))) < 0.0))")
        }),
        ("map literals in a loop", |k| {
            let items: Vec<String> = (0..k).map(|i| i.to_string()).collect();
            let l = format!("[{}]", items.join(","));
            let entries: Vec<String> = (0..8).map(|i| format!("\"k{i}\": {i}")).collect();
            format!(
                "{l}.exists(a, {l}.exists(b, \"x\" in {{{}}}))",
                entries.join(", ")
            )
        }),
        ("comparisons of every pair of IP addresses", |k| {
            format!(
                "cert.san_ip.exists(a, cert.san_ip.exists(b, a + b == \"{}\"))",
                "z".repeat(k)
            )
        }),
    ]
}

/// The largest member of `family` a tenant may write (within the budget and 4 KiB).
fn largest(family: fn(usize) -> String) -> Option<String> {
    let ok = |k: usize| {
        let source = family(k);
        source.len() <= 4096 && ClientFilter::check_written(&source).is_ok()
    };
    if !ok(1) {
        return None;
    }
    let (mut lo, mut hi) = (1usize, 2usize);
    while ok(hi) && hi < 1 << 16 {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = usize::midpoint(lo, hi);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(family(lo))
}

fn calibrate(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca = Ca::new("Tenant A CA")?;
    let (leaf, _) = attack_leaf(&ca, 0)?;
    let der = pem::parse(leaf.as_bytes())?.into_contents();
    let input = FilterInput::of(&LeafFacts::of(&der).ok_or("attack leaf")?);
    if !input.within_bounds() {
        return Err("the attack leaf is over the filters' bounds".into());
    }
    let mut heaviest: Option<(f64, String)> = None;
    for (what, family) in families() {
        let Some(source) = largest(family) else {
            println!("{}", json!({"candidate": what, "within_budget": false}));
            continue;
        };
        let filter = ClientFilter::check_written(&source)?;
        let mut times = Vec::new();
        for _ in 0..25 {
            let started = Instant::now();
            let verdict = filter.admits(&input);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if verdict {
                return Err(format!("{what}: admits the attack leaf").into());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{}",
            json!({"candidate": what, "estimate_steps": filter.cost(), "median_ms": median,
                   "max_ms": times.last(), "ns_per_step": median * 1e6 / filter.cost() as f64,
                   "bytes": source.len()})
        );
        if heaviest.as_ref().is_none_or(|(t, _)| median > *t) {
            heaviest = Some((median, source));
        }
    }
    let (median, source) = heaviest.ok_or("no candidate")?;
    std::fs::write(dir.join("heaviest.cel"), &source)?;
    println!("{}", json!({"heaviest": source, "median_ms": median}));
    Ok(())
}

async fn setup(dir: &Path, db: &str) -> Result<(), BoxError> {
    pki::write_server(dir)?;
    let filter = std::fs::read_to_string(dir.join("heaviest.cel"))?;
    // What the API checks when a tenant writes a filter.
    let checked = ClientFilter::check_written(&filter)?;
    let store = Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?;
    let (a, _) = store.create_organization("Tenant A").await?;
    let tenant = Ca::new("Tenant A CA")?;
    seed::upload_active(&store, &a.id, &tenant.cert.pem(), Some(filter.clone())).await?;
    tenant.write(dir, "tenant-ca")?;
    let (b, _) = store.create_organization("Organization B").await?;
    let (b1, b2) = (Ca::new("B client CA")?, Ca::new("B toggled CA")?);
    seed::upload_active(&store, &b.id, &b1.cert.pem(), None).await?;
    let b2_id = seed::upload_active(&store, &b.id, &b2.cert.pem(), None).await?;
    for (name, ca) in [("b1", &b1), ("b2", &b2)] {
        let (cert, key) = client_of(ca, name, vec![SanType::DnsName("b.test".try_into()?)])?;
        std::fs::write(dir.join(format!("{name}.pem")), cert)?;
        std::fs::write(dir.join(format!("{name}.key")), key)?;
    }
    let info = json!({"org_a": a.id.as_str(), "org_b": b.id.as_str(), "b2": b2_id,
                      "filter_estimate": checked.cost(), "filter_bytes": filter.len()});
    std::fs::write(dir.join("setup.json"), info.to_string())?;
    store.close().await;
    println!("{info}");
    Ok(())
}

async fn request(send: &mut Sender, org: &str) -> Result<u16, BoxError> {
    request_as(send, Some(org)).await
}

struct RunOptions {
    rounds: usize,
    secs: f64,
    conns: usize,
}

/// What the run shares with its tasks.
struct Bench {
    addr: SocketAddr,
    org_a: String,
    org_b: String,
    b2: String,
    store: Store,
    b1: Arc<rustls::ClientConfig>,
    b2_client: Arc<rustls::ClientConfig>,
    dir: std::path::PathBuf,
    tenant: Ca,
    next_leaf: AtomicUsize,
}

async fn run(addr: SocketAddr, dir: &Path, db: &str, o: RunOptions) -> Result<(), BoxError> {
    let setup: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("setup.json"))?)?;
    let text = |k: &str| setup[k].as_str().unwrap_or_default().to_owned();
    let tenant = Ca::read(dir, "tenant-ca")?;
    let bench = Arc::new(Bench {
        addr,
        org_a: text("org_a"),
        org_b: text("org_b"),
        b2: text("b2"),
        store: Store::open(&StoreOptions::new(db), Arc::new(SystemClock)).await?,
        b1: tls::client_files(dir, "b1", false)?,
        b2_client: tls::client_files(dir, "b2", false)?,
        dir: dir.to_owned(),
        tenant,
        next_leaf: AtomicUsize::new(0),
    });
    let mut all = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut attack_total = 0;
    for r in 0..o.rounds {
        for attacked in [false, true] {
            let (mut lat, mut prop, sent, statuses) = round(&bench, attacked, &o).await?;
            lat.sort_by(f64::total_cmp);
            prop.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"round": r + 1, "attack": attacked, "b_requests": lat.len(),
                       "b_p50_ms": percentile(&lat, 0.5), "b_p99_ms": percentile(&lat, 0.99),
                       "b_max_ms": lat.last(), "propagations": prop.len(),
                       "propagation_p50_ms": percentile(&prop, 0.5),
                       "propagation_max_ms": prop.last(),
                       "attack_requests": sent,
                       "attack_requests_per_s": sent as f64 / o.secs,
                       "attack_statuses": statuses})
            );
            attack_total += sent;
            let k = usize::from(attacked);
            all[k].extend(lat);
            all[2 + k].extend(prop);
        }
    }
    for v in &mut all {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{}",
        json!({"summary": true,
               "calm_b_p50_ms": percentile(&all[0], 0.5), "calm_b_p99_ms": percentile(&all[0], 0.99),
               "attacked_b_p50_ms": percentile(&all[1], 0.5), "attacked_b_p99_ms": percentile(&all[1], 0.99),
               "attacked_b_max_ms": all[1].last(),
               "calm_propagation_p50_ms": percentile(&all[2], 0.5), "calm_propagation_max_ms": all[2].last(),
               "attacked_propagation_p50_ms": percentile(&all[3], 0.5),
               "attacked_propagation_p99_ms": percentile(&all[3], 0.99),
               "attacked_propagation_max_ms": all[3].last(),
               "attack_requests": attack_total,
               "attack_leaves": bench.next_leaf.load(Ordering::Relaxed)})
    );
    Ok(())
}

/// One round: B's latencies (ms), propagation times (ms), attack requests answered and their
/// status counts.
async fn round(
    bench: &Arc<Bench>,
    attacked: bool,
    o: &RunOptions,
) -> Result<(Vec<f64>, Vec<f64>, u64, Value), BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    if attacked {
        for _ in 0..o.conns {
            let (bench, stop) = (bench.clone(), stop.clone());
            attackers.push(tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = bench.next_leaf.fetch_add(1, Ordering::Relaxed);
                    let Ok(config) = attack_leaf(&bench.tenant, i).and_then(|(chain, key)| {
                        tls::client_config(&bench.dir, &chain, &key, false)
                    }) else {
                        continue;
                    };
                    let Ok(mut send) = connect(bench.addr, config).await else {
                        continue;
                    };
                    if let Ok(status) = request(&mut send, &bench.org_a).await {
                        *statuses.entry(status).or_default() += 1;
                    }
                }
                statuses
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let prober = {
        let (bench, stop) = (bench.clone(), stop.clone());
        tokio::spawn(async move { propagation(&bench, &stop).await })
    };
    let until = Instant::now() + Duration::from_secs_f64(o.secs);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let mut send = connect(bench.addr, bench.b1.clone()).await?;
        let status = request(&mut send, &bench.org_b).await?;
        if status != 200 {
            return Err(format!("B's client got {status}").into());
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    let propagations = prober.await??;
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    let mut sent = 0;
    for a in attackers {
        for (status, n) in a.await? {
            *statuses.entry(status.to_string()).or_default() += n;
            sent += n;
        }
    }
    Ok((latencies, propagations, sent, json!(statuses)))
}

/// Toggles B's second CA every 0.3–0.6 s until `stop`, timing each change from its commit to
/// the first request on an open connection that sees it.
async fn propagation(bench: &Bench, stop: &AtomicBool) -> Result<Vec<f64>, BoxError> {
    let org = OrgId::parse(&bench.org_b)?;
    let ids = ToggleIds::parse(std::slice::from_ref(&bench.b2))?;
    let mut send = connect(bench.addr, bench.b2_client.clone()).await?;
    let mut active = request(&mut send, &bench.org_b).await? == 200;
    let mut times = Vec::new();
    let mut pause = 300u64;
    while !stop.load(Ordering::Relaxed) {
        pause = (pause * 7 + 113) % 300 + 300;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        bench
            .store
            .toggle_certificates(&org, &Scope::Organization, &ids, !active, &Actor::System)
            .await?;
        let committed = Instant::now();
        active = !active;
        let want = if active { 200 } else { 403 };
        loop {
            if send.ready().await.is_err() {
                send = connect(bench.addr, bench.b2_client.clone()).await?;
            }
            if request(&mut send, &bench.org_b).await? == want {
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                return Err("a change of B's CA did not reach the gateway in 30 s".into());
            }
        }
        times.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}
