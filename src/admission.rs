//! The expensive part of a trust decision, run off the async worker threads: the chain checks
//! a decision still needs and the tenants' client filters they lead to, on a bounded pool.
//! The gateway (for every request) and the check endpoint (for `POST …/certificates/check`)
//! both call [`ChainPool::prepare`] before [`trust::decide()`], so they decide alike; neither
//! knows the other, and this module knows neither (it imports only `trust`).
//!
//! Bounds (decisions.md D27, D34): at most one job per core at once (the rest wait their turn
//! without holding a thread), chain work bounded by `trust`'s per-request and per-connection
//! limits, each filter bounded by its static budget and waited for at most
//! [`FILTER_TIMEOUT`] once its job runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::SignatureVerificationAlgorithm;

use crate::trust::{self, ChainChecks, ParsedAnchor, Scope, TrustIndex};

impl Default for ChainPool {
    fn default() -> Self {
        ChainPool::for_this_machine()
    }
}

/// Where a filter job reports.
type Reports = tokio::sync::mpsc::UnboundedSender<Heard>;

/// What a filter job tells its waiter.
enum Heard {
    Started(Arc<trust::filter::FilterInput>),
    Verdict(trust::filter::FilterDigest, bool),
}

/// Longest a decision waits for one client filter's verdict once its job runs (decisions.md
/// D27);
/// past it the filter counts as false. The static budget keeps the job itself far shorter.
pub const FILTER_TIMEOUT: Duration = Duration::from_millis(50);

/// What [`ChainPool::prepare`] works on.
pub struct Prepare<'a> {
    pub index: &'a Arc<TrustIndex>,
    pub chain: &'a Arc<trust::PeerChain>,
    pub scope: Scope<'a>,
    pub now: i64,
    pub algs: &'static [&'static dyn SignatureVerificationAlgorithm],
    /// Genuine paths found by other connections, to reuse and add to.
    pub paths: Option<&'a trust::CheckCache>,
    /// Whether a leaf alone against one anchor group (one signature) may be checked on the
    /// calling worker.
    pub inline_leaf_check: bool,
}

/// Runs chain work and client filters off the async worker threads, at most `size` jobs at
/// once (the rest wait their turn without holding a thread), so crafted chains and tenants'
/// filters cannot starve the request path.
pub struct ChainPool {
    permits: Arc<tokio::sync::Semaphore>,
    /// Anchor checks run since start (for tests and metrics: it shows that repeated requests
    /// on a connection cause no new chain work).
    checks_run: AtomicU64,
    /// Client filters evaluated since start.
    filters_run: Arc<AtomicU64>,
    /// Filter verdicts by (leaf, filter), shared by every connection.
    verdicts: Arc<trust::filter::VerdictCache>,
}

impl ChainPool {
    pub fn new(size: usize) -> Self {
        ChainPool {
            permits: Arc::new(tokio::sync::Semaphore::new(size.max(1))),
            checks_run: AtomicU64::new(0),
            filters_run: Arc::new(AtomicU64::new(0)),
            verdicts: Arc::new(trust::filter::VerdictCache::default()),
        }
    }

    /// Sized for the machine: one job per core.
    pub fn for_this_machine() -> Self {
        ChainPool::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
    }

    pub fn checks_run(&self) -> u64 {
        self.checks_run.load(Ordering::Relaxed)
    }

    pub fn filters_run(&self) -> u64 {
        self.filters_run.load(Ordering::Relaxed)
    }

    /// `None` if the job could not run (the pool closed or the job panicked).
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await;
        result.ok()
    }

    /// Everything [`trust::decide()`] needs that `checks` lacks, computed off the async workers:
    /// the chain checks not made yet, then the client filters they lead to. The gateway and
    /// the check endpoint both call this before deciding, so they decide alike.
    pub async fn prepare(&self, work: Prepare<'_>, checks: &mut ChainChecks) {
        let Prepare {
            index,
            chain,
            scope,
            now,
            algs,
            paths,
            inline_leaf_check,
        } = work;
        let mut missing = checks.missing(index, chain, scope.organization, now);
        // Paths another connection already found for the same chain cost nothing.
        if let Some(paths) = paths {
            missing.retain(|(group, _)| match paths.get(chain, group, now) {
                Some(check) => {
                    checks.insert(*group, check);
                    false
                }
                None => true,
            });
        }
        if !missing.is_empty() {
            self.checks_run
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            let run = move |chain: &trust::PeerChain, missing: Vec<(_, Arc<ParsedAnchor>)>| {
                missing
                    .into_iter()
                    .map(|(group, anchor)| (group, chain.check(&anchor, now, algs)))
                    .collect::<Vec<_>>()
            };
            // A leaf alone against one anchor group is one signature check, less than the
            // handshake this worker just did: run it here. Anything more (intermediates,
            // several candidate groups) goes to the pool, off the async workers.
            let done = if inline_leaf_check && missing.len() == 1 && chain.intermediates() == 0 {
                Some(run(chain, missing))
            } else {
                let work_chain = chain.clone();
                self.run(move || run(&work_chain, missing)).await
            };
            // A check that could not run counts as not verifying: it can only refuse.
            for (group, check) in done.unwrap_or_default() {
                if let Some(paths) = paths {
                    paths.put(chain, group, &check);
                }
                checks.insert(group, check);
            }
        }
        self.filters(index, chain, scope, now, checks).await;
    }

    /// The client filters the decision needs: verdicts other connections found first, then
    /// the rest in one job on the pool, each verdict waited for at most [`FILTER_TIMEOUT`] once
    /// the job runs (a filter not answered by then counts as false; the job stops before the
    /// next one).
    async fn filters(
        &self,
        index: &TrustIndex,
        chain: &trust::PeerChain,
        scope: Scope<'_>,
        now: i64,
        checks: &mut ChainChecks,
    ) {
        let mut work = checks.filter_work(index, chain, scope, now);
        let known: Vec<_> = work
            .filters()
            .filter_map(|f| Some((*f, self.verdicts.get(work.leaf_digest(), f)?)))
            .collect();
        if !known.is_empty() {
            for (filter, verdict) in known {
                checks.insert_verdict(filter, verdict);
            }
            work = checks.filter_work(index, chain, scope, now);
        }
        if work.is_empty() {
            return;
        }
        let (verdicts, filters_run, leaf) = (
            self.verdicts.clone(),
            self.filters_run.clone(),
            *work.leaf_digest(),
        );
        let job = move |tx: &Reports| {
            work.run(
                |input| {
                    let _ = tx.send(Heard::Started(input.clone()));
                },
                |filter, verdict| {
                    filters_run.fetch_add(1, Ordering::Relaxed);
                    verdicts.put(leaf, filter, verdict);
                    tx.send(Heard::Verdict(filter, verdict)).is_ok()
                },
            );
        };
        self.run_reporting(job, checks, FILTER_TIMEOUT).await;
    }

    /// Runs `job` on the pool and takes what it reports into `checks`, waiting at most
    /// `timeout` for each report once the job has started (the wait for a thread is not the
    /// job's time). The job is not awaited: one the waiter gave up on finishes its current
    /// filter (bounded by the budget), and stops at its next report.
    async fn run_reporting(
        &self,
        job: impl FnOnce(&Reports) + Send + 'static,
        checks: &mut ChainChecks,
        timeout: Duration,
    ) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        drop(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job(&tx);
        }));
        let mut deadline = None;
        loop {
            let heard = match deadline {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(heard) => heard,
                    Err(_) => return,
                },
            };
            match heard {
                Some(Heard::Started(input)) => checks.set_filter_input(input),
                Some(Heard::Verdict(filter, verdict)) => checks.insert_verdict(filter, verdict),
                None => return,
            }
            deadline = Some(tokio::time::Instant::now() + timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter answered within [`FILTER_TIMEOUT`] of the previous report counts; one that
    /// takes longer counts as false, and the waiter stops at the bound (not before it, and not
    /// much after it), while the job goes on without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_filter_is_waited_for_at_most_its_timeout() {
        let pool = ChainPool::new(1);
        let (quick, slow) = ([1u8; 32], [2u8; 32]);
        let input = Arc::new(trust::filter::FilterInput::of(
            &crate::x509::LeafFacts::sample(),
        ));
        let under = FILTER_TIMEOUT / 2;
        let over = FILTER_TIMEOUT * 4;
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = finished.clone();
        let job = move |tx: &Reports| {
            let _ = tx.send(Heard::Started(input));
            std::thread::sleep(under);
            let _ = tx.send(Heard::Verdict(quick, true));
            std::thread::sleep(over);
            let _ = tx.send(Heard::Verdict(slow, true));
            done.store(true, Ordering::SeqCst);
        };
        let mut checks = ChainChecks::default();
        let started = std::time::Instant::now();
        pool.run_reporting(job, &mut checks, FILTER_TIMEOUT).await;
        let waited = started.elapsed();
        assert!(checks.has_verdict(&quick), "answered within the bound");
        assert!(!checks.has_verdict(&slow), "answered past the bound: false");
        assert!(
            waited >= under + FILTER_TIMEOUT,
            "stopped early: {waited:?}"
        );
        assert!(
            waited < under + FILTER_TIMEOUT + Duration::from_secs(1),
            "stopped late: {waited:?}"
        );
        assert!(
            !finished.load(Ordering::SeqCst),
            "the waiter did not wait for the job"
        );
        // The job runs to its end on the pool and then gives its thread back.
        pool.run(|| ()).await.expect("the pool is free again");
        assert!(finished.load(Ordering::SeqCst));
    }
}
