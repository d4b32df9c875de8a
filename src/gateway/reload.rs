//! Keeps the gateway's [`TrustIndex`] in step with the database, and tracks its health.
//!
//! The watcher reads [`Store::trust_generation`] (one row) every `poll` interval and, sooner,
//! whenever the database says something committed: LISTEN/NOTIFY on PostgreSQL
//! ([`Store::listen_trust_changes`]), the file system on SQLite
//! ([`Store::watch_database_files`]). When the generation moved it reads only the changes
//! since the generation it holds ([`Store::trust_changes`]: the rows the writes' change
//! records name) and applies them to its index ([`TrustIndex::apply`]: only the touched
//! organizations' parts are rebuilt); the full state ([`Store::trust_snapshot`]) is read at
//! start, when the records it needs are gone (pruned, or never written), and every
//! `reconcile` interval, when the index kept by changes is compared with the one the full
//! state builds: a difference is a bug, logged as an error, counted
//! (`certgate_trust_reconcile_repairs_total`) and repaired (decisions.md D50–D52). Each new
//! index is swapped in atomically; requests already running keep the index they started with.
//!
//! When the database cannot be reached the last index stays in force (never fail open, never
//! lock everyone out); anchors still drop out at their expiry because validity is checked at
//! decision time. The outage is logged once, reported by `/readyz`, and the watcher keeps
//! trying, so it catches up by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::store::Store;
use crate::telemetry::ErrorChain;
use crate::trust::{StoredCrl, TrustChanges, TrustIndex};

/// Longest a single read of the trust state may take before it counts as a failure.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The default of `--reconcile-interval`.
pub const DEFAULT_RECONCILE: Duration = Duration::from_secs(600);

/// The current index and the watcher's health, shared with every request.
pub struct TrustState {
    index: ArcSwap<TrustIndex>,
    health: Mutex<Health>,
    /// The generation of the index in force; open upgraded connections watch it.
    swapped: tokio::sync::watch::Sender<Option<i64>>,
    /// One refresh at a time: each starts from the index the last one swapped in.
    refreshing: tokio::sync::Mutex<()>,
    counts: SyncCounts,
}

/// What the watcher did, for metrics and tests.
#[derive(Debug, Default)]
struct SyncCounts {
    full_reads: AtomicU64,
    change_reads: AtomicU64,
    gaps: AtomicU64,
    reconcile_repairs: AtomicU64,
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

/// How the watcher kept up so far ([`TrustState::sync_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Full snapshots read: at start, on gaps, at reconciles.
    pub full_reads: u64,
    /// Reads of the changes since the generation held.
    pub change_reads: u64,
    /// Change reads that found records missing (then a full read followed).
    pub gaps: u64,
    /// Reconciles that found the index kept by changes different from the database's state
    /// (`certgate_trust_reconcile_repairs_total`); 0 unless something is wrong.
    pub reconcile_repairs: u64,
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
            refreshing: tokio::sync::Mutex::new(()),
            counts: SyncCounts::default(),
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

    /// How the watcher kept up so far.
    pub fn sync_stats(&self) -> SyncStats {
        let c = &self.counts;
        SyncStats {
            full_reads: c.full_reads.load(Ordering::Relaxed),
            change_reads: c.change_reads.load(Ordering::Relaxed),
            gaps: c.gaps.load(Ordering::Relaxed),
            reconcile_repairs: c.reconcile_repairs.load(Ordering::Relaxed),
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

    /// Brings the index up to the database's generation: with the changes since the
    /// generation it holds, or with the full state when it holds none or the changes are
    /// gone. `full` reconciles instead: the full state is read, and the changes since the
    /// generation held, both as of one state; the index the changes give is compared with the
    /// one the full state builds (a difference is logged as an error and counted) and the
    /// latter is swapped in.
    pub async fn refresh(&self, store: &Store, full: bool) -> Result<(), String> {
        self.refresh_moved(store, full, false).await.map(|_| ())
    }

    /// [`TrustState::refresh`], saying whether a new index was swapped in. `committed`: the
    /// database said a commit happened (a notification, or a file wake-up once the commit is
    /// visible), so the generation is not read on its own first: the read of the changes
    /// reads it (one statement fewer per change).
    async fn refresh_moved(
        &self,
        store: &Store,
        full: bool,
        committed: bool,
    ) -> Result<bool, String> {
        let _one = self.refreshing.lock().await;
        let current = self.index.load_full();
        let Some(held) = current.generation() else {
            return self.load_full(store, current).await.map(|()| true);
        };
        if full {
            return self.reconcile(store, current, held).await.map(|()| true);
        }
        let holds = |c: &StoredCrl| current.holds_crl(&c.org_id, &c.certificate_id, &c.content);
        let changes = if committed {
            bounded(store.trust_changes(held, &holds), "the trust changes").await?
        } else {
            // Most polls find nothing: the generation alone, then (same connection) the
            // changes when it moved.
            match bounded(
                store.trust_changes_if_moved(held, &holds),
                "the trust changes",
            )
            .await?
            {
                Some(changes) => changes,
                None => return Ok(false),
            }
        };
        let delta = match changes {
            TrustChanges::Delta(delta) if delta.generation == held => return Ok(false),
            TrustChanges::Delta(delta) => delta,
            TrustChanges::Gap { generation } => {
                self.counts.change_reads.fetch_add(1, Ordering::Relaxed);
                self.counts.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    held,
                    generation,
                    "the changes since the generation held are no longer recorded; reading the full trust state"
                );
                return self.load_full(store, current).await.map(|()| true);
            }
        };
        self.counts.change_reads.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let next = off_workers(move || current.apply(&delta)).await?;
        tracing::debug!(
            generation = ?next.generation(),
            apply_time = ?started.elapsed(),
            "trust changes applied"
        );
        self.swap(next);
        Ok(true)
    }

    /// Reads the full state and swaps in the index it builds.
    async fn load_full(&self, store: &Store, current: Arc<TrustIndex>) -> Result<(), String> {
        self.counts.full_reads.fetch_add(1, Ordering::Relaxed);
        // The CRLs the index in force holds are not read again.
        let held = current.crl_versions();
        let snapshot = bounded(store.trust_snapshot(&held), "the trust snapshot").await?;
        // CPU work (anchors decoded, new CRLs' serials; filters are only compiled when first
        // used, on the chain pool): off the async workers, so requests keep being decided.
        let next = off_workers(move || TrustIndex::build(&snapshot, &current)).await?;
        tracing::debug!(generation = ?next.generation(), anchors = next.len(), "trust state loaded");
        self.swap(next);
        Ok(())
    }

    /// The safety net: the full state and the changes since `held`, read as of one state;
    /// the index the changes give must be the one the full state builds.
    async fn reconcile(
        &self,
        store: &Store,
        current: Arc<TrustIndex>,
        held: i64,
    ) -> Result<(), String> {
        self.counts.full_reads.fetch_add(1, Ordering::Relaxed);
        let versions = current.crl_versions();
        let holds = |c: &StoredCrl| current.holds_crl(&c.org_id, &c.certificate_id, &c.content);
        let (snapshot, changes) = bounded(
            store.trust_snapshot_and_changes(held, &holds, &versions),
            "the trust snapshot",
        )
        .await?;
        // Building both and comparing their views costs in proportion to the whole trust
        // state: all of it off the async workers.
        let (fresh, differing) = off_workers(move || {
            let fresh = TrustIndex::build(&snapshot, &current);
            let differing = match changes {
                TrustChanges::Delta(delta) => {
                    let kept = current.apply(&delta);
                    let (want, have) = (fresh.view(), kept.view());
                    (want != have).then(|| {
                        want.organizations
                            .keys()
                            .chain(have.organizations.keys())
                            .filter(|org| {
                                want.organizations.get(*org) != have.organizations.get(*org)
                            })
                            .cloned()
                            .collect::<std::collections::BTreeSet<String>>()
                    })
                }
                TrustChanges::Gap { .. } => None,
            };
            (fresh, differing)
        })
        .await?;
        if let Some(differing) = differing {
            self.counts
                .reconcile_repairs
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                generation = ?fresh.generation(),
                organizations = ?differing,
                "the trust state kept up to date by changes differed from the database's; \
                 repaired from a full read (a bug: please report it)"
            );
        }
        self.swap(fresh);
        Ok(())
    }

    fn swap(&self, next: TrustIndex) {
        let generation = next.generation();
        self.index.store(Arc::new(next));
        self.swapped.send_replace(generation);
    }
}

/// `read`, failing after [`READ_TIMEOUT`]; `what` names it in the error.
async fn bounded<T>(
    read: impl std::future::Future<Output = crate::store::Result<T>>,
    what: &str,
) -> Result<T, String> {
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| format!("timed out reading {what}"))?
        .map_err(|e| ErrorChain(&e).to_string())
}

/// Runs `work` on the blocking pool.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("building the trust index failed: {e}"))
}

/// How often the watcher looks.
#[derive(Debug, Clone, Copy)]
pub struct WatchIntervals {
    /// Generation poll.
    pub poll: Duration,
    /// Full read, compared with the index kept by changes (`--reconcile-interval`).
    pub reconcile: Duration,
}

/// Runs the watcher until the returned handle is dropped or aborted. The first load is
/// attempted before this returns, so a reachable database means a ready gateway.
pub async fn spawn_watcher(
    state: Arc<TrustState>,
    store: Store,
    intervals: WatchIntervals,
) -> tokio::task::JoinHandle<()> {
    // Boxed: the first load's future is large, and every caller's would hold it inline.
    match Box::pin(state.refresh(&store, false)).await {
        Ok(()) => state.record_ok(),
        Err(e) => state.record_error(e),
    }
    let mut notified = store.listen_trust_changes();
    // SQLite: a commit's visibility (or, when that cannot be watched, a write of the
    // database's files) wakes the watcher before the poll.
    let (mut written, on_commit) = match store.watch_database_files() {
        Some((rx, on_commit)) => (Some(rx), on_commit),
        None => (None, false),
    };
    tokio::spawn(async move {
        let mut last_full = Instant::now();
        // SQLite woken on writes: after a wake-up that found nothing new, when to look again.
        let mut recheck: Option<Duration> = None;
        loop {
            // Woken by the database itself (a notification, a file wake-up).
            let mut committed = false;
            let mut by_file = false;
            let wait = recheck.unwrap_or(intervals.poll).min(intervals.poll);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = wake(&mut notified) => {
                    committed = changed;
                    if !changed {
                        // The listener task is gone; polling alone still works.
                        notified = None;
                    }
                }
                changed = wake(&mut written) => {
                    by_file = true;
                    committed = changed && on_commit;
                    if !changed {
                        written = None;
                    }
                }
            }
            let full = last_full.elapsed() >= intervals.reconcile;
            match state.refresh_moved(&store, full, committed).await {
                Ok(moved) => {
                    state.record_ok();
                    if full {
                        last_full = Instant::now();
                    }
                    // Woken by a write whose commit may not be visible yet (decisions.md
                    // D53; only when the commit itself cannot be watched, D84): look again
                    // soon, at doubling intervals, up to 32 ms.
                    recheck = match (moved, by_file && !on_commit, recheck) {
                        (false, true, _) => Some(FIRST_RECHECK),
                        (false, false, Some(d)) if d < LAST_RECHECK => Some(d * 2),
                        _ => None,
                    };
                }
                Err(e) => {
                    recheck = None;
                    state.record_error(e);
                }
            }
        }
    })
}

/// After a file wake-up that found the generation unchanged: the first look again, and the
/// last (the looks in between double).
const FIRST_RECHECK: Duration = Duration::from_millis(1);
const LAST_RECHECK: Duration = Duration::from_millis(32);

/// Waits for `rx` to say something changed: `true`, or `false` when its sender is gone.
/// Never ends when there is no receiver.
async fn wake(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
