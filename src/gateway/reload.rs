//! Keeps the gateway's [`TrustIndex`] in step with the database, and tracks its health.
//!
//! The watcher reads [`Store::trust_generation`] (one row) every `poll` interval and, on
//! PostgreSQL, also whenever LISTEN/NOTIFY ([`Store::listen_trust_changes`]) says a
//! trust-changing write committed. When the generation moved, or every `reconcile` interval
//! regardless, it loads a full [`Store::trust_snapshot`], builds a new index and swaps it in
//! atomically; requests already running keep the index they started with.
//!
//! When the database cannot be reached the last index stays in force (never fail open, never
//! lock everyone out); anchors still drop out at their expiry because validity is checked at
//! decision time. The outage is logged once, reported by `/readyz`, and the watcher keeps
//! trying, so it catches up by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::store::Store;
use crate::telemetry::ErrorChain;
use crate::trust::TrustIndex;

/// Longest a single read of the trust state may take before it counts as a failure.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The current index and the watcher's health, shared with every request.
pub struct TrustState {
    index: ArcSwap<TrustIndex>,
    health: Mutex<Health>,
    /// The generation of the index in force; open upgraded connections watch it.
    swapped: tokio::sync::watch::Sender<Option<i64>>,
}

#[derive(Debug, Clone)]
struct Health {
    /// When the database last answered.
    last_ok: Option<Instant>,
    /// Set while the database does not answer.
    error: Option<String>,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// A trust state has loaded and the database answered at the last attempt.
    pub ready: bool,
    pub generation: Option<i64>,
    pub anchors: usize,
    /// Milliseconds since the database last answered.
    pub last_ok_ms_ago: Option<u128>,
}

impl TrustState {
    pub fn new() -> Arc<TrustState> {
        Arc::new(TrustState {
            index: ArcSwap::from_pointee(TrustIndex::empty()),
            health: Mutex::new(Health {
                last_ok: None,
                error: None,
            }),
            swapped: tokio::sync::watch::channel(None).0,
        })
    }

    pub fn index(&self) -> arc_swap::Guard<Arc<TrustIndex>> {
        self.index.load()
    }

    /// Wakes whenever a new index is swapped in (a new trust generation, or a reconcile).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Option<i64>> {
        self.swapped.subscribe()
    }

    /// The current index, to hold across awaits.
    pub fn index_arc(&self) -> Arc<TrustIndex> {
        self.index.load_full()
    }

    pub fn readiness(&self) -> Readiness {
        let index = self.index.load();
        let health = self.health.lock().map_or(
            Health {
                last_ok: None,
                error: Some("health state poisoned".into()),
            },
            |h| h.clone(),
        );
        Readiness {
            ready: index.generation().is_some() && health.error.is_none(),
            generation: index.generation(),
            anchors: index.len(),
            last_ok_ms_ago: health.last_ok.map(|t| t.elapsed().as_millis()),
        }
    }

    /// Whether the database answered the watcher's last attempt.
    pub fn database_answering(&self) -> bool {
        self.health
            .lock()
            .is_ok_and(|h| h.error.is_none() && h.last_ok.is_some())
    }

    fn record_ok(&self) {
        if let Ok(mut h) = self.health.lock() {
            if h.error.take().is_some() {
                tracing::info!("database reachable again; trust state is current");
            }
            h.last_ok = Some(Instant::now());
        }
    }

    fn record_error(&self, why: String) {
        if let Ok(mut h) = self.health.lock() {
            if h.error.is_none() {
                tracing::warn!(error = %why, "cannot read the trust state; enforcing the last one loaded until the database answers");
            }
            h.error = Some(why);
        }
    }

    /// Reads the generation and, if it moved (or `full`), loads and swaps in a new index.
    pub async fn refresh(&self, store: &Store, full: bool) -> Result<(), String> {
        let current = self.index.load().generation();
        let generation = tokio::time::timeout(READ_TIMEOUT, store.trust_generation())
            .await
            .map_err(|_| "timed out reading the trust generation".to_owned())?
            .map_err(|e| ErrorChain(&e).to_string())?;
        if !full && current == Some(generation) {
            return Ok(());
        }
        // The CRLs the index in force holds are not read again.
        let previous = self.index.load_full();
        let held = previous.crl_versions();
        let snapshot = tokio::time::timeout(READ_TIMEOUT, store.trust_snapshot(&held))
            .await
            .map_err(|_| "timed out reading the trust snapshot".to_owned())?
            .map_err(|e| ErrorChain(&e).to_string())?;
        let generation = snapshot.generation;
        // CPU work (anchors decoded, new CRLs' serials; filters are only compiled when first
        // used, on the chain pool): off the async workers, so requests keep being decided.
        let (next, build_time) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let next = TrustIndex::build(&snapshot, &previous);
            (next, started.elapsed())
        })
        .await
        .map_err(|e| format!("building the trust index failed: {e}"))?;
        tracing::debug!(
            generation,
            anchors = next.len(),
            ?build_time,
            "trust state loaded"
        );
        self.index.store(Arc::new(next));
        self.swapped.send_replace(Some(generation));
        Ok(())
    }
}

/// How often the watcher looks.
#[derive(Debug, Clone, Copy)]
pub struct WatchIntervals {
    /// Generation poll.
    pub poll: Duration,
    /// Full reload even without a generation change.
    pub reconcile: Duration,
}

/// Runs the watcher until the returned handle is dropped or aborted. The first load is
/// attempted before this returns, so a reachable database means a ready gateway.
pub async fn spawn_watcher(
    state: Arc<TrustState>,
    store: Store,
    intervals: WatchIntervals,
) -> tokio::task::JoinHandle<()> {
    match state.refresh(&store, true).await {
        Ok(()) => state.record_ok(),
        Err(e) => state.record_error(e),
    }
    let mut notified = store.listen_trust_changes();
    tokio::spawn(async move {
        let mut last_full = Instant::now();
        loop {
            let wait = tokio::time::sleep(intervals.poll);
            match notified.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        () = wait => {}
                        changed = rx.changed() => {
                            if changed.is_err() {
                                // The listener task is gone; polling alone still works.
                                notified = None;
                            }
                        }
                    }
                }
                None => wait.await,
            }
            let full = last_full.elapsed() >= intervals.reconcile
                || state.index.load().generation().is_none();
            match state.refresh(&store, full).await {
                Ok(()) => {
                    state.record_ok();
                    if full {
                        last_full = Instant::now();
                    }
                }
                Err(e) => state.record_error(e),
            }
        }
    })
}
