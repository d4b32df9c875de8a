//! The CRL fetcher (decisions.md D59): keeps the CRL of every CA certificate with a `crl_url`
//! fetched, and stores each new one exactly as a PUT one ([`Store::put_crl`], after the same
//! parse and the same check against the CA), so the check endpoint and every gateway see it.
//!
//! When: a URL is fetched when first named, then at its CRL's nextUpdate clamped to
//! [`CrlTiming::min`]..[`CrlTiming::max`] (5 minutes to 1 hour), and after a failure with an
//! exponential backoff from `min` up to `max`. Who: the replica that claims the URL's lease row
//! in the database (one fetch per URL per interval, however many replicas run). What is kept:
//! a CRL that does not parse, is not the CA's, or is older than the stored one is refused and
//! the stored one stays enforced (stale or not). Every outcome is a `certificate.crl_fetched`
//! event and a count in `certgate_crl_fetches_total{outcome}`; its reason is certgate's own
//! words, never anything of the fetched body.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::client::{self, FetchPolicy, Request};
use crate::crl::ParsedCrl;
use crate::domain::{Actor, CrlFetch, CrlSummary, DomainError};
use crate::store::{CrlSource, Store, StoreError};

/// Most fetches one replica runs at once (each may hold up to the fetch limit, 8 MiB by
/// default, `--fetch-max-bytes`).
const MAX_CONCURRENT_FETCHES: usize = 4;
/// How long a claimed lease outlives the fetch's own time limit (storing, slow database).
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// A lease with less than this many seconds left is extended before the next certificate.
const LEASE_MARGIN_SECS: i64 = 20;

/// A fetched body parsed and verified against one CA: the CRL and its number, or why not.
type Checked = Result<Arc<(ParsedCrl, Option<String>)>, String>;
const ACCEPT: &str = "application/pkix-crl, application/x-pem-file;q=0.9, */*;q=0.5";

/// When CRLs are fetched again: at nextUpdate, clamped to `min..=max`; after failures, `min`
/// doubled per failure in a row, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct CrlTiming {
    pub min: Duration,
    pub max: Duration,
}

impl Default for CrlTiming {
    fn default() -> Self {
        CrlTiming {
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
        }
    }
}

impl CrlTiming {
    /// Seconds until the next fetch after a good one whose CRL says `next_update`.
    fn after_success(self, now: i64, next_update: Option<i64>) -> i64 {
        let (min, max) = self.bounds();
        next_update.map_or(max, |next| next.saturating_sub(now).clamp(min, max))
    }

    /// Seconds until the next try after `failures` failed fetches in a row (at least 1).
    fn after_failure(self, failures: i64) -> i64 {
        let (min, max) = self.bounds();
        let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        min.saturating_mul(1i64 << doublings).min(max)
    }

    fn bounds(self) -> (i64, i64) {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1);
        let min = secs(self.min);
        (min, secs(self.max).max(min))
    }

    /// How often the lease table is looked at (one small read per second at most): a due
    /// fetch, or a newly named URL, starts within a second.
    fn tick(self) -> Duration {
        (self.min / 4).clamp(Duration::from_millis(200), Duration::from_secs(1))
    }
}

/// `certgate_crl_fetches_total{outcome}`: `stored` (a new CRL), `unchanged` (the one stored),
/// `refused` (not stored: invalid, not the CA's, older, over the limit), `failed` (nothing
/// fetched), `lease_lost` (not applied: another replica took the URL's lease meanwhile and
/// fetches it again). One per certificate and fetch.
#[derive(Clone)]
pub struct CrlFetchMetrics {
    fetches: Family<OutcomeLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl CrlFetchMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let fetches = Family::default();
        registry.register(
            "crl_fetches",
            "Fetches of CA certificates' crl_url, by outcome (stored, unchanged, refused, failed, lease_lost)",
            fetches.clone(),
        );
        CrlFetchMetrics { fetches }
    }

    fn count(&self, outcome: &'static str) {
        self.fetches.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// The fetcher of one `serve` process.
pub struct CrlFetcher {
    store: Store,
    policy: FetchPolicy,
    timing: CrlTiming,
    metrics: CrlFetchMetrics,
    /// This process's name in lease rows.
    holder: String,
    running: Mutex<HashSet<String>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl CrlFetcher {
    pub fn new(
        store: Store,
        policy: FetchPolicy,
        timing: CrlTiming,
        metrics: CrlFetchMetrics,
    ) -> Arc<Self> {
        Arc::new(CrlFetcher {
            store,
            policy,
            timing,
            metrics,
            holder: format!("{:032x}", rand::random::<u128>()),
            running: Mutex::new(HashSet::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
        })
    }

    /// Runs until the process ends: looks for due URLs every tick and fetches those it claims.
    /// A database that does not answer is logged when it stops and when it answers again, not
    /// every tick.
    pub async fn run(self: Arc<Self>) {
        let mut failing = false;
        loop {
            let result = self.clone().round().await;
            match (&result, failing) {
                (Ok(()), true) => {
                    tracing::info!("CRL fetcher: the database answers again");
                }
                (Err(e), false) => {
                    tracing::warn!(error = %crate::telemetry::ErrorChain(e), "CRL fetcher: could not read the CRL URLs; retrying every tick, the stored CRLs stay enforced");
                }
                (Ok(()), false) | (Err(_), true) => {}
            }
            failing = result.is_err();
            tokio::time::sleep(self.timing.tick()).await;
        }
    }

    async fn round(self: Arc<Self>) -> Result<(), StoreError> {
        for url in self.store.due_crl_urls().await? {
            if self.is_running(&url) {
                continue;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let lease_until = self.lease_end();
            let Some(failures) = self
                .store
                .claim_crl_fetch(&url, &self.holder, lease_until)
                .await?
            else {
                continue;
            };
            self.set_running(&url, true);
            let me = self.clone();
            tokio::spawn(async move {
                match me.store.crl_sources(&url).await {
                    Ok(sources) => me.fetch_url(&url, sources, failures, lease_until).await,
                    Err(e) => {
                        tracing::warn!(url = ?url, error = %crate::telemetry::ErrorChain(&e), "CRL fetcher: could not read the certificates naming a URL; its lease runs out by itself");
                    }
                }
                me.set_running(&url, false);
                drop(slot);
            });
        }
        Ok(())
    }

    /// When a lease taken now ends: one fetch's time limit and a margin for applying it.
    fn lease_end(&self) -> i64 {
        self.store.now()
            + i64::try_from((self.policy.timeout + LEASE_MARGIN).as_secs()).unwrap_or(60)
    }

    fn is_running(&self, url: &str) -> bool {
        self.running.lock().is_ok_and(|r| r.contains(url))
    }

    fn set_running(&self, url: &str, on: bool) {
        if let Ok(mut running) = self.running.lock() {
            if on {
                running.insert(url.to_owned());
            } else {
                running.remove(url);
            }
        }
    }

    /// One fetch of `url`, applied to every certificate that names it while the lease claimed
    /// until `lease_until` is still this replica's, then the lease ended with the time of the
    /// next fetch.
    async fn fetch_url(
        &self,
        url: &str,
        sources: Vec<CrlSource>,
        failures: i64,
        mut lease_until: i64,
    ) {
        // Intervals run from when the fetch was made.
        let started = self.store.now();
        let fetched = match url::Url::parse(url) {
            Ok(parsed) => {
                client::fetch(
                    Request {
                        url: &parsed,
                        accept: ACCEPT,
                        body: None,
                    },
                    &self.policy,
                )
                .await
            }
            Err(_) => Err(client::FetchError::BadUrl),
        };
        let mut next_update = None;
        let mut any_good = false;
        match fetched {
            Err(why) => {
                tracing::info!(url = ?url, reason = %why, "CRL fetch failed; the stored CRL stays");
                for source in &sources {
                    self.metrics.count("failed");
                    self.record(source, None, Some(format!("fetch_failed: {why}.")))
                        .await;
                }
            }
            Ok(body) => {
                let mut checked: HashMap<String, Checked> = HashMap::new();
                for (n, source) in sources.iter().enumerate() {
                    // The fetch itself, then applying to many certificates, may outlast the
                    // lease: keep it, so no other replica fetches the URL again meanwhile.
                    if lease_until - self.store.now() < LEASE_MARGIN_SECS {
                        lease_until = self.lease_end();
                        let kept = self
                            .store
                            .extend_crl_fetch(url, &self.holder, lease_until)
                            .await;
                        if !matches!(kept, Ok(true)) {
                            tracing::info!(url = ?url, "CRL fetcher: lost the lease while applying a fetch; the rest waits for the next fetch");
                            for _ in &sources[n..] {
                                self.metrics.count("lease_lost");
                            }
                            break;
                        }
                    }
                    match self.apply(source, &body, &mut checked).await {
                        Ok((number, summary, outcome)) => {
                            any_good = true;
                            next_update = next_update.or(Some(summary.next_update));
                            self.metrics.count(outcome);
                            self.record(source, Some((number, summary)), None).await;
                        }
                        Err(reason) => {
                            self.metrics.count("refused");
                            tracing::info!(org = %source.org_id, certificate = %source.certificate_id, url = ?url, reason = %reason, "fetched CRL refused; the stored CRL stays");
                            self.record(source, None, Some(reason)).await;
                        }
                    }
                }
            }
        }
        let (next, failures) = if any_good {
            let wait = self.timing.after_success(started, next_update.flatten());
            (started + wait, 0)
        } else {
            let failures = failures.saturating_add(1);
            (started + self.timing.after_failure(failures), failures)
        };
        if let Err(e) = self
            .store
            .finish_crl_fetch(url, &self.holder, next, failures)
            .await
        {
            tracing::warn!(url = ?url, error = %crate::telemetry::ErrorChain(&e), "CRL fetcher: could not record the next fetch; its lease runs out by itself");
        }
    }

    /// Parses and checks `body` as `source`'s CRL (off the async workers) and stores it when it
    /// differs from the stored one. The reason of a refusal names the rule, never the body.
    ///
    /// One body is parsed and verified once per distinct CA (`checked`, keyed by its PEM),
    /// however many certificates of that CA name the URL.
    async fn apply(
        &self,
        source: &CrlSource,
        body: &Bytes,
        checked: &mut HashMap<String, Checked>,
    ) -> Result<(Option<String>, CrlSummary, &'static str), String> {
        let result = if let Some(result) = checked.get(&source.pem) {
            result.clone()
        } else {
            let (body, pem, now) = (body.clone(), source.pem.clone(), self.store.now());
            let result = tokio::task::spawn_blocking(move || check(&body, &pem, now))
                .await
                .map_err(|_| "internal: the CRL check did not finish".to_owned())
                .and_then(|checked| checked.map(Arc::new));
            checked.insert(source.pem.clone(), result.clone());
            result
        };
        let checked = result?;
        let (crl, number) = (&checked.0, checked.1.clone());
        let summary = CrlSummary {
            certificate_id: source.certificate_id.clone(),
            this_update: crl.this_update,
            next_update: crl.next_update,
            revoked_count: crl.revoked_count,
        };
        if source.stored_sha256.as_deref() == Some(crl.sha256.as_str()) {
            return Ok((number, summary, "unchanged"));
        }
        match self
            .store
            .put_crl(&source.org_id, &source.certificate_id, crl, &Actor::System)
            .await
        {
            Ok(stored) => {
                tracing::info!(org = %source.org_id, certificate = %source.certificate_id, revoked = stored.revoked_count, "fetched CRL stored");
                Ok((number, stored, "stored"))
            }
            Err(StoreError::Rule(e)) => Err(refusal(&e)),
            Err(e) => Err(format!(
                "not_stored: the database could not store it ({}).",
                store_failure(&e)
            )),
        }
    }

    async fn record(
        &self,
        source: &CrlSource,
        stored: Option<(Option<String>, CrlSummary)>,
        reason: Option<String>,
    ) {
        let event = CrlFetch {
            certificate_id: source.certificate_id.clone(),
            url: source.url.clone(),
            stored,
            reason,
        };
        if let Err(e) = self.store.record_crl_fetch(&source.org_id, event).await {
            tracing::warn!(org = %source.org_id, certificate = %source.certificate_id, error = %crate::telemetry::ErrorChain(&e), "could not record a CRL fetch in the audit log");
        }
    }
}

/// The fetched `body` (DER, or PEM) as a CRL of the CA `ca_pem`, with its CRL number: the same
/// parse and check as a PUT, with certgate's own reason on refusal.
fn check(body: &[u8], ca_pem: &str, now: i64) -> Result<(ParsedCrl, Option<String>), String> {
    let text = match std::str::from_utf8(body) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => text.to_owned(),
        _ => base64::engine::general_purpose::STANDARD.encode(body),
    };
    let crl = crate::crl::parse_crl(&text, now).map_err(|e| refusal(&e))?;
    crate::crl::check_issued_by(&crl, ca_pem).map_err(|_| {
        "invalid_crl: it was not issued or not signed by this CA certificate (issuer, cRLSign or signature)."
            .to_owned()
    })?;
    let number = crate::crl::crl_number(&crl.der);
    Ok((crl, number))
}

/// A refusal in certgate's words: the rule and numbers only. The messages of parse errors can
/// quote the fetched document (a PEM label, a name), so they are not used.
fn refusal(e: &DomainError) -> String {
    match e {
        DomainError::CrlOutdated { stored, given } => format!(
            "crl_outdated: its thisUpdate ({given}) is older than the stored CRL's ({stored})."
        ),
        DomainError::CrlStorageLimitReached { given, total } => format!(
            "crl_storage_limit_reached: {given} bytes would take the organization's CRLs to {total} bytes, over the limit."
        ),
        DomainError::NotFound { .. } => "not_stored: the certificate was deleted.".to_owned(),
        _ => "invalid_crl: not a CRL certgate stores (a complete, direct CRL, DER or PEM, with a sane thisUpdate)."
            .to_owned(),
    }
}

fn store_failure(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) | StoreError::Retryable(_) => "unavailable",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_follow_next_update_within_bounds_and_back_off() {
        let t = CrlTiming::default();
        assert_eq!(t.after_success(1000, Some(1000 + 1800)), 1800);
        assert_eq!(t.after_success(1000, Some(1010)), 300, "at least 5 minutes");
        assert_eq!(
            t.after_success(1000, Some(900)),
            300,
            "a stale CRL: 5 minutes"
        );
        assert_eq!(
            t.after_success(1000, Some(1000 + 86_400)),
            3600,
            "at most 1 hour"
        );
        assert_eq!(t.after_success(1000, None), 3600);
        assert_eq!(t.after_failure(1), 300);
        assert_eq!(t.after_failure(2), 600);
        assert_eq!(t.after_failure(3), 1200);
        assert_eq!(t.after_failure(5), 3600);
        assert_eq!(t.after_failure(1000), 3600);
    }
}
