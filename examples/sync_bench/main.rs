//! Benchmark helper for `bench/sync/run.sh` (issue 27): what one trust change costs every
//! gateway, and how long it takes to reach them.
//!
//! - `setup DB DIR`: through the store (as the Admin API would), 200 organizations of 50 CA
//!   certificates each (10,000), all active for their organization, 50 deny-list entries per
//!   organization (10,000), and a CRL of 100,000 serials for the first organization's first CA.
//!   Writes `DIR/setup.json` (the organizations and their certificate ids).
//! - `cost DB DIR ROUNDS`: one watcher, loaded in full; then ROUNDS changes (deactivations and
//!   activations of one CA, each in another organization), each followed by exactly the
//!   watcher's refresh (`TrustState::refresh`, as its loop runs it). Per change: rows and bytes
//!   the refresh read from the database (`Store::trust_reads`) and this process's CPU time
//!   during it (every thread's, from `/proc/self/task/*/schedstat`; on SQLite that includes the
//!   database engine, which runs in the gateway's process). Then ROUNDS more changes, each
//!   measuring instead what a watcher did before incremental sync (the full snapshot and a
//!   full build); they come after, so that their hundreds of MiB allocated and freed do not
//!   land in a refresh's figure (`SYNC_BENCH_SKIP_FULL=1` leaves them out). One JSON line.
//! - `propagate DB DIR RATE SECONDS WATCHERS [after|before]`: WATCHERS watchers, each with its
//!   own store (its own connections) running `gateway::reload::spawn_watcher` exactly as
//!   `certgate gateway` does (poll 100 ms); a writer changes trust RATE times a second for
//!   SECONDS; each change is timed from the write's acknowledgement to each watcher's swap of
//!   an index that holds it (after which every request is judged by it). One JSON line.
//!   `before` runs instead the watcher loop as it was before incremental sync (commit
//!   `e1b484a^1`, `gateway/reload.rs`): the 100 ms poll of the generation (woken sooner by
//!   LISTEN/NOTIFY on PostgreSQL; SQLite had no file wake-up), and on every new generation the
//!   full snapshot (held CRLs left out) and a full build of the index.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate::domain::{Actor, Clock, OrgId, Scope, SystemClock, ToggleIds};
use certgate::gateway::reload::{spawn_watcher, TrustState, WatchIntervals};
use certgate::store::{Store, StoreOptions};
use serde_json::{json, Value};

mod pki;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ORGS: usize = 200;
const CAS_PER_ORG: usize = 50;
const DENIED_PER_ORG: usize = 50;
const CRL_SERIALS: usize = 100_000;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["setup", db, dir] => setup(db, Path::new(dir)).await,
        ["cost", db, dir, rounds] => cost(db, Path::new(dir), rounds.parse()?).await,
        ["propagate", db, dir, rate, secs, watchers, rest @ ..] => {
            let before = match rest {
                [] | ["after"] => false,
                ["before"] => true,
                _ => return Err("propagate's last argument is `after` or `before`".into()),
            };
            propagate(
                db,
                Path::new(dir),
                rate.parse()?,
                secs.parse()?,
                watchers.parse()?,
                before,
            )
            .await
        }
        _ => {
            eprintln!(
                "usage: sync_bench setup DB DIR | cost DB DIR ROUNDS | \
                 propagate DB DIR RATE SECONDS WATCHERS [after|before]"
            );
            std::process::exit(2)
        }
    }
}

async fn open(db: &str, connections: u32) -> Result<Store, BoxError> {
    let mut options = StoreOptions::new(db);
    options.max_connections = connections;
    options.timeout = Duration::from_secs(30);
    Ok(Store::open(&options, Arc::new(SystemClock)).await?)
}

/// One organization made by [`one_org`]: its id, its CAs' ids, and its first CA's PEM and key.
type Made = (String, Vec<String>, String, Vec<u8>);

/// One organization: 50 CAs uploaded and activated, 50 deny-list entries.
async fn one_org(store: Store, n: usize) -> Result<Made, BoxError> {
    let (org, _key) = store.create_organization(&format!("Bench org {n}")).await?;
    let now = SystemClock.now();
    let mut ids = Vec::with_capacity(CAS_PER_ORG);
    let mut first = None;
    for c in 0..CAS_PER_ORG {
        let (pem, key) = pki::ca(&format!("Bench CA {n}-{c}"))?;
        if first.is_none() {
            first = Some((pem.clone(), key));
        }
        let parsed = certgate::x509::parse_ca_pem(&pem, now)?;
        let cert = store
            .upload_certificate(&org.id, None, &pem, &parsed, None, &Actor::System)
            .await?;
        ids.push(cert.id.into_string());
    }
    for chunk in ids.chunks(10) {
        store
            .toggle_certificates(
                &org.id,
                &Scope::Organization,
                &ToggleIds::parse(chunk)?,
                true,
                &Actor::System,
            )
            .await?;
    }
    for d in 0..DENIED_PER_ORG {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            format!("denied {n}-{d}").as_bytes(),
        ));
        store
            .revoke_certificate(&org.id, &sha, None, &Actor::System)
            .await?;
    }
    let (pem, key) = first.ok_or("no CA")?;
    Ok((org.id.into_string(), ids, pem, key))
}

async fn setup(db: &str, dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let store = open(db, 8).await?;
    let started = Instant::now();
    let mut orgs: Vec<Made> = Vec::with_capacity(ORGS);
    // 8 organizations at a time (their writes share commits).
    for wave in (0..ORGS).collect::<Vec<_>>().chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for &n in wave {
            set.spawn(one_org(store.clone(), n));
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            done.push(r??);
        }
        done.sort_by(|a, b| a.0.cmp(&b.0));
        orgs.extend(done);
    }
    // The first organization's first CA: a CRL of 100,000 serials, signed with its key.
    let (first_org_id, first_ids, first_pem, first_key) = &orgs[0];
    let first_org = OrgId::parse(first_org_id)?;
    let first_ca = certgate::domain::CertificateId::parse(&first_ids[0])?;
    let crl_der = pki::crl(first_pem, first_key, CRL_SERIALS)?;
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &crl_der);
    let crl = certgate::crl::parse_crl(&text, SystemClock.now())?;
    store
        .put_crl(&first_org, &first_ca, &crl, &Actor::System)
        .await?;
    let setup = json!({"orgs": orgs.iter().map(|(o, ids, _, _)| json!({"id": o, "cas": ids})).collect::<Vec<_>>()});
    std::fs::write(dir.join("setup.json"), setup.to_string())?;
    println!(
        "{}",
        json!({"organizations": orgs.len(), "cas": orgs.len() * CAS_PER_ORG,
               "deny_list": orgs.len() * DENIED_PER_ORG, "crl_serials": CRL_SERIALS,
               "crl_bytes": crl_der.len(), "seconds": started.elapsed().as_secs_f64()})
    );
    store.close().await;
    Ok(())
}

/// Every (organization, CA ids) of `setup.json`.
fn read_setup(dir: &Path) -> Result<Vec<(OrgId, Vec<String>)>, BoxError> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("setup.json"))?)?;
    let mut out = Vec::new();
    for o in v["orgs"].as_array().ok_or("no orgs")? {
        let ids = o["cas"]
            .as_array()
            .ok_or("no cas")?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        out.push((OrgId::parse(o["id"].as_str().ok_or("no id")?)?, ids));
    }
    Ok(out)
}

/// This process's CPU time so far, every thread's, in nanoseconds.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// One trust change: the `k`th, deactivating (even rounds) or activating again (odd) the
/// second CA of organization `k / 2`.
async fn change(store: &Store, orgs: &[(OrgId, Vec<String>)], k: usize) -> Result<(), BoxError> {
    let (org, ids) = &orgs[(k / 2) % orgs.len()];
    store
        .toggle_certificates(
            org,
            &Scope::Organization,
            &ToggleIds::parse(&ids[1..2])?,
            k % 2 == 1,
            &Actor::System,
        )
        .await?;
    Ok(())
}

async fn cost(db: &str, dir: &Path, rounds: usize) -> Result<(), BoxError> {
    let orgs = read_setup(dir)?;
    let writer = open(db, 2).await?;
    let gateway = open(db, 2).await?;
    let state = TrustState::new();
    state.refresh(&gateway, true).await?;
    let anchors = state.readiness().anchors;
    let (mut rows, mut bytes, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut full_rows, mut full_bytes, mut full_cpu) = (Vec::new(), Vec::new(), Vec::new());
    // What the watcher does per change: its refresh, right after the change. These rounds
    // come first and alone, as in a gateway: the full reads measured below allocate and free
    // hundreds of MiB, and a refresh measured right after one would pay for the allocator
    // taking that memory back (page faults) rather than for its own work.
    for k in 0..rounds {
        change(&writer, &orgs, k).await?;
        let before = Store::trust_reads();
        let cpu_before = process_cpu_ns();
        state.refresh(&gateway, false).await?;
        let cpu_after = process_cpu_ns();
        let after = Store::trust_reads();
        rows.push((after.rows - before.rows) as f64);
        bytes.push((after.bytes - before.bytes) as f64);
        cpu.push((cpu_after - cpu_before) as f64 / 1e6);
    }
    // What a watcher did per change before incremental sync, in the same run: the
    // generation, the full snapshot (CRLs held left out) and a rebuild of the index; then the
    // watcher's refresh, unmeasured, so the next change starts from the index in force.
    // `SYNC_BENCH_SKIP_FULL=1` leaves these rounds out (to profile the refresh alone).
    let full_rounds = if std::env::var_os("SYNC_BENCH_SKIP_FULL").is_some() {
        0
    } else {
        rounds
    };
    for k in rounds..rounds + full_rounds {
        change(&writer, &orgs, k).await?;
        let before = Store::trust_reads();
        let cpu_before = process_cpu_ns();
        gateway.trust_generation().await?;
        let previous = state.index_arc();
        let snapshot = gateway.trust_snapshot(&previous.crl_versions()).await?;
        let built = tokio::task::spawn_blocking(move || {
            certgate::trust::TrustIndex::build(&snapshot, &previous).len()
        })
        .await?;
        let cpu_after = process_cpu_ns();
        let after = Store::trust_reads();
        assert!(built > 0);
        full_rows.push((after.rows - before.rows) as f64);
        full_bytes.push((after.bytes - before.bytes) as f64);
        full_cpu.push((cpu_after - cpu_before) as f64 / 1e6);
        state.refresh(&gateway, false).await?;
    }
    let watched = state.sync_stats();
    println!(
        "{}",
        json!({"backend": if db.starts_with("postgres") {"postgres"} else {"sqlite"},
               "anchors": anchors, "changes": rounds,
               "rows_per_change": median(rows.clone()), "bytes_per_change": median(bytes.clone()),
               "cpu_ms_per_change": median(cpu.clone()),
               "full_read_rows_per_change": median(full_rows.clone()),
               "full_read_bytes_per_change": median(full_bytes.clone()),
               "full_read_cpu_ms_per_change": median(full_cpu.clone()),
               "rows_ratio": median(rows) / median(full_rows),
               "bytes_ratio": median(bytes) / median(full_bytes),
               "cpu_ratio": median(cpu) / median(full_cpu),
               "watcher_full_reads": watched.full_reads, "watcher_change_reads": watched.change_reads})
    );
    writer.close().await;
    gateway.close().await;
    Ok(())
}

async fn propagate(
    db: &str,
    dir: &Path,
    rate: f64,
    secs: f64,
    watchers: usize,
    before: bool,
) -> Result<(), BoxError> {
    let orgs = read_setup(dir)?;
    let writer = open(db, 2).await?;
    let intervals = WatchIntervals {
        poll: Duration::from_millis(100),
        reconcile: Duration::from_secs(600),
    };
    // Each watcher: its own store and state; a task notes when each generation swapped in.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64, Instant)>();
    let mut handles = Vec::new();
    for w in 0..watchers {
        let store = open(db, 1).await?;
        if before {
            let seen = seen_tx.clone();
            handles.push(tokio::spawn(async move {
                if let Err(e) = full_read_watcher(w, store, intervals.poll, seen).await {
                    eprintln!("watcher {w}: {e}");
                }
            }));
            continue;
        }
        let state = TrustState::new();
        let mut changes = state.changes();
        handles.push(spawn_watcher(state.clone(), store.clone(), intervals).await);
        let seen = seen_tx.clone();
        handles.push(tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let g = *changes.borrow_and_update();
                if let Some(g) = g {
                    let _ = seen.send((w, g, Instant::now()));
                }
            }
        }));
    }
    drop(seen_tx);
    // Every watcher loaded in full first (the `before` ones load in their own tasks), then
    // settled into its wait.
    let mut early = Vec::new();
    if before {
        let mut loaded = std::collections::HashSet::new();
        while loaded.len() < watchers {
            let (w, g, at) = seen_rx.recv().await.ok_or("the watchers stopped")?;
            loaded.insert(w);
            early.push((w, g, at));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acked_writes: Vec<(i64, Instant)> = Vec::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut next = Instant::now();
    let mut k = 0;
    while Instant::now() < end {
        // A random offset, so the writes do not fall into step with the polls.
        let jitter = Duration::from_micros(rand::random::<u64>() % (period.as_micros() as u64));
        tokio::time::sleep_until((next + jitter / 2).into()).await;
        change(&writer, &orgs, k).await?;
        let acked = Instant::now();
        // The writer is alone: the generation now is its write's.
        acked_writes.push((writer.trust_generation().await?, acked));
        k += 1;
        next += period;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in &handles {
        h.abort();
    }
    let mut first_seen: HashMap<usize, Vec<(i64, Instant)>> = HashMap::new();
    while let Some((w, g, at)) = early.pop().or_else(|| seen_rx.try_recv().ok()) {
        first_seen.entry(w).or_default().push((g, at));
    }
    let mut times = Vec::new();
    let mut missed = 0;
    for w in 0..watchers {
        let mut seen = first_seen.get(&w).cloned().unwrap_or_default();
        seen.sort_by_key(|(_, at)| *at);
        for (g, acked) in &acked_writes {
            match seen.iter().find(|(s, _)| s >= g) {
                Some((_, at)) => {
                    times.push(at.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
                }
                None => missed += 1,
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"backend": if db.starts_with("postgres") {"postgres"} else {"sqlite"},
               "watcher": if before {"before (full read per change)"} else {"after (changes)"},
               "rate": rate, "watchers": watchers, "writes": acked_writes.len(), "missed": missed,
               "propagation_p50_ms": percentile(&times, 0.5),
               "propagation_p99_ms": percentile(&times, 0.99),
               "propagation_max_ms": times.last()})
    );
    writer.close().await;
    Ok(())
}

/// The watcher loop as it was before incremental sync (commit `e1b484a^1`): a poll of the
/// generation every `poll` (sooner on a PostgreSQL notification), and for every new generation
/// the full snapshot and a full build of the index, off the async workers. Sends
/// (watcher, generation, when swapped) after each build, as `propagate`'s observer does.
async fn full_read_watcher(
    w: usize,
    store: Store,
    poll: Duration,
    seen: tokio::sync::mpsc::UnboundedSender<(usize, i64, Instant)>,
) -> Result<(), BoxError> {
    let mut index = Arc::new(certgate::trust::TrustIndex::empty());
    let mut notified = store.listen_trust_changes();
    let mut first = true;
    loop {
        if !first {
            match notified.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {}
                        changed = rx.changed() => {
                            if changed.is_err() {
                                notified = None;
                            }
                        }
                    }
                }
                None => tokio::time::sleep(poll).await,
            }
        }
        first = false;
        let generation = store.trust_generation().await?;
        if index.generation() == Some(generation) {
            continue;
        }
        let snapshot = store.trust_snapshot(&index.crl_versions()).await?;
        let previous = index.clone();
        let next = tokio::task::spawn_blocking(move || {
            certgate::trust::TrustIndex::build(&snapshot, &previous)
        })
        .await?;
        index = Arc::new(next);
        if let Some(g) = index.generation() {
            let _ = seen.send((w, g, Instant::now()));
        }
    }
}
