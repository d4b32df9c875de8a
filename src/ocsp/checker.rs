//! The OCSP answers of this process: asked over HTTP POST through the guarded client
//! ([`crate::fetch::client`]: SSRF rules, no redirects, size cap) within [`OCSP_TIMEOUT`],
//! verified off the async workers, kept per (leaf, issuer) until the answer's `nextUpdate` (at
//! most [`MAX_CACHE_SECS`]; a failure for [`FAILURE_CACHE_SECS`]), with one request per leaf
//! among concurrent handshakes (the others wait for its answer). Then [`judge`] applies the
//! CA's mode.

use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::request::OcspTarget;
use super::response::{self, CertState, OcspAnswer};
use super::OcspError;
use crate::domain::OcspMode;
use crate::fetch::client::{self, FetchPolicy};
use crate::trust::{OcspSubject, Rejection};

/// The time limit of one OCSP exchange (spec §13.4): resolution, connection, request, answer.
pub const OCSP_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest an answer is kept, whatever its `nextUpdate` says.
pub const MAX_CACHE_SECS: i64 = 3600;
/// How long an answer without `nextUpdate` is kept (RFC 6960: newer information is always
/// available; five minutes spares the responder one request per handshake).
pub const NO_NEXT_UPDATE_SECS: i64 = 300;
/// How long a failure (no valid answer) is kept: concurrent and following handshakes do not
/// each wait out a dead responder's 2 s, and a responder back up is asked again soon.
pub const FAILURE_CACHE_SECS: i64 = 10;
/// Most (leaf, issuer) answers kept.
const CACHE_ENTRIES: usize = 100_000;

/// What OCSP said about one client, as the check endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspSaid {
    /// The mode of the CA that admitted the client (never `off`: then nothing is asked).
    pub mode: OcspMode,
    pub outcome: Result<OcspAnswer, OcspError>,
}

#[derive(Debug, Clone)]
struct Cached {
    outcome: Result<OcspAnswer, OcspError>,
    /// Unix seconds (the decision's clock) after which it is asked again.
    until: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The OCSP metric families; the default records into series nobody scrapes.
#[derive(Clone, Default)]
pub struct OcspMetrics {
    fetches: Family<OutcomeLabels, Counter>,
    soft_fail_admissions: Counter,
    hard_fail_refusals: Counter,
}

impl OcspMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = OcspMetrics::default();
        registry.register(
            "ocsp_fetches",
            "OCSP requests sent to responders (cache misses), by outcome: good, revoked, unknown, or failed (no valid answer)",
            m.fetches.clone(),
        );
        registry.register(
            "ocsp_soft_fail_admissions",
            "Requests admitted without a valid OCSP answer because their CA's mode is soft_fail",
            m.soft_fail_admissions.clone(),
        );
        registry.register(
            "ocsp_hard_fail_refusals",
            "Requests refused with client_certificate_revocation_unknown because their CA's mode is hard_fail",
            m.hard_fail_refusals.clone(),
        );
        m
    }
}

/// The answers of this process, and how it asks for them.
pub struct OcspChecker {
    policy: FetchPolicy,
    cache: quick_cache::sync::Cache<String, Cached>,
    metrics: OcspMetrics,
}

impl std::fmt::Debug for OcspChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspChecker")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for OcspChecker {
    /// Public responders only, unregistered metrics.
    fn default() -> Self {
        OcspChecker::new(false, OcspMetrics::default())
    }
}

impl OcspChecker {
    /// `allow_private`: `--fetch-allow-private` (loopback, private and link-local responders).
    pub fn new(allow_private: bool, metrics: OcspMetrics) -> Self {
        OcspChecker {
            policy: FetchPolicy::new(allow_private, OCSP_TIMEOUT),
            cache: quick_cache::sync::Cache::new(CACHE_ENTRIES),
            metrics,
        }
    }

    /// What the responder says of `subject`'s leaf at `now`: from the cache while fresh, else
    /// asked (once for all concurrent callers). The flag is whether this call asked.
    pub async fn ask(
        &self,
        subject: &OcspSubject,
        now: i64,
    ) -> (Result<OcspAnswer, OcspError>, bool) {
        let key = format!("{}:{}", subject.leaf_sha256, subject.issuer_sha256);
        for _ in 0..2 {
            match self.cache.get_value_or_guard_async(&key).await {
                Ok(cached) if now < cached.until => return (cached.outcome, false),
                Ok(_) => {
                    self.cache.remove_if(&key, |c| now >= c.until);
                }
                Err(guard) => {
                    let outcome = self.fetch(subject, now).await;
                    let until = keep_until(&outcome, now);
                    let _ = guard.insert(Cached {
                        outcome: outcome.clone(),
                        until,
                    });
                    self.count(&outcome);
                    return (outcome, true);
                }
            }
        }
        // Replaced twice by expired answers meanwhile (a clock far behind the answers'): ask.
        let outcome = self.fetch(subject, now).await;
        self.count(&outcome);
        (outcome, true)
    }

    fn count(&self, outcome: &Result<OcspAnswer, OcspError>) {
        let outcome = match outcome {
            Ok(a) => a.state.as_str(),
            Err(_) => "failed",
        };
        self.metrics
            .fetches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One exchange with the responder, then the verification on the blocking pool.
    async fn fetch(&self, subject: &OcspSubject, now: i64) -> Result<OcspAnswer, OcspError> {
        let (leaf, issuer) = (subject.leaf.clone(), subject.issuer.clone());
        let target = run_blocking(move || OcspTarget::new(leaf.as_ref(), issuer.as_ref())).await?;
        let body = client::fetch(
            client::Request {
                url: &target.url,
                accept: "application/ocsp-response",
                body: Some((
                    "application/ocsp-request",
                    Bytes::from(target.request_der.clone()),
                )),
            },
            &self.policy,
        )
        .await?;
        run_blocking(move || response::verify(&body, &target, now)).await
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OcspError> + Send + 'static,
) -> Result<T, OcspError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or(Err(OcspError::Interrupted))
}

/// Until when an outcome is kept: a valid answer to its `nextUpdate` (at most an hour), a
/// failure briefly.
fn keep_until(outcome: &Result<OcspAnswer, OcspError>, now: i64) -> i64 {
    match outcome {
        Ok(answer) => {
            let horizon = answer
                .next_update
                .unwrap_or(now.saturating_add(NO_NEXT_UPDATE_SECS));
            horizon.min(now.saturating_add(MAX_CACHE_SECS))
        }
        Err(_) => now.saturating_add(FAILURE_CACHE_SECS),
    }
}

/// The OCSP step of a decision that admitted a client whose CA's mode is not `off` (the
/// gateway, authz and the check endpoint all call this, so they answer alike): `revoked`
/// refuses ([`Rejection::Revoked`]); no valid answer (unreachable, slow, malformed, wrong
/// signer, `unknown`, stale) admits under `soft_fail` (logged by the leaf's fingerprint,
/// counted) and refuses under `hard_fail` ([`Rejection::RevocationUnknown`]).
pub async fn judge(
    checker: &OcspChecker,
    subject: &OcspSubject,
    now: i64,
) -> (OcspSaid, Result<(), Rejection>) {
    let (outcome, asked) = checker.ask(subject, now).await;
    let verdict = match &outcome {
        Ok(answer) if answer.state == CertState::Good => Ok(()),
        Ok(answer) if answer.state == CertState::Revoked => Err(Rejection::Revoked),
        _ if subject.mode == OcspMode::SoftFail => {
            checker.metrics.soft_fail_admissions.inc();
            if asked {
                let reason = no_answer_reason(&outcome);
                tracing::warn!(leaf_sha256 = %subject.leaf_sha256, %reason, "no valid OCSP answer; admitted (soft_fail)");
            }
            Ok(())
        }
        _ => {
            checker.metrics.hard_fail_refusals.inc();
            if asked {
                let reason = no_answer_reason(&outcome);
                tracing::info!(leaf_sha256 = %subject.leaf_sha256, %reason, "no valid OCSP answer; refused (hard_fail)");
            }
            Err(Rejection::RevocationUnknown)
        }
    };
    (
        OcspSaid {
            mode: subject.mode,
            outcome,
        },
        verdict,
    )
}

/// Why an outcome is no valid answer, in certgate's words.
fn no_answer_reason(outcome: &Result<OcspAnswer, OcspError>) -> String {
    match outcome {
        Ok(a) => format!("the responder answered {}", a.state.as_str()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(next_update: Option<i64>) -> OcspAnswer {
        OcspAnswer {
            state: CertState::Good,
            this_update: 0,
            next_update,
            delegated: false,
        }
    }

    #[test]
    fn answers_are_kept_to_next_update_at_most_an_hour_and_failures_briefly() {
        let now = 1_000_000;
        // nextUpdate just inside the hour is honoured; just outside, the hour caps it.
        assert_eq!(keep_until(&Ok(answer(Some(now + 3599))), now), now + 3599);
        assert_eq!(keep_until(&Ok(answer(Some(now + 3601))), now), now + 3600);
        assert_eq!(
            keep_until(&Ok(answer(None)), now),
            now + NO_NEXT_UPDATE_SECS
        );
        assert_eq!(
            keep_until(&Err(OcspError::Stale), now),
            now + FAILURE_CACHE_SECS
        );
    }
}
