//! One question from a proxy, one answer: the certificate it passed and the request's scope
//! go through the gateway's own scope rules and decision ([`crate::gateway::handler::request_scope`],
//! [`crate::gateway::handler::decide`]); the answer says which identity headers to add and which of
//! the request's headers to remove, or why the request is refused, in the gateway's terms.
//!
//! A proxy asks again for every request of a keep-alive connection with the same chain, so
//! what the chain work found is kept per chain (the gateway keeps it per connection), keyed
//! by the certificate text as passed: a repeated question costs no parsing and no chain work,
//! only the decision against the trust state in force (decisions.md D46). The text itself is
//! the key (hashed by the cache's keyed hasher, compared in full on a hit), not a digest of
//! it: no SHA-256 over kilobytes per request (decisions.md D82).
//!
//! And the last admission of a chain is remembered with the trust index, scope and second it
//! was decided for: the same question again under the very same index (a deactivation, any
//! trust change, swaps in another one), in the same second, for the same scope, is answered
//! from it with no lock and no lookup beyond a comparison (decisions.md D82). Refusals, and
//! admissions that asked OCSP, are always decided afresh.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use axum::http::{HeaderMap, HeaderName};

use super::cert::{self, CertTextError};
use super::metrics::Transport;
use super::AuthzState;
use crate::gateway::handler::{self, Decider, Refusal, ScopeDefaults};
use crate::gateway::proxy::{
    is_reserved, is_scope_header, X_CERTIFICATE_ID, X_CLIENT_CERT_SHA256, X_ORGANIZATION, X_PROJECT,
};
use crate::trust::{Admission, ChainChecks, PeerChain, Rejection, Scope, TrustIndex};

/// What a proxy passed about one request.
pub struct Question<'a> {
    pub transport: Transport,
    /// The certificate text as passed (see [`cert::parse_chain`]); `None` when none was, an
    /// error when the header that should carry it could not be read.
    pub certificate: Result<Option<&'a str>, CertTextError>,
    /// The leaf the proxy's own handshake saw, when `certificate` came from a forwarded header
    /// that a client may have had a hand in: the chain must begin with it.
    pub peer_leaf: Option<&'a str>,
    /// The request's headers (the scope headers and what to remove are read from them).
    pub headers: &'a HeaderMap,
    /// The scope when the headers name none (gRPC: the route's `context_extensions`; the
    /// `--organization` default is added here).
    pub defaults: ScopeDefaults<'a>,
}

/// The answer.
#[derive(Debug)]
pub enum Answer {
    Admitted {
        /// Identity headers for the upstream, replacing any the request carries (what the
        /// upstream must not see of the request is `AuthzState::to_remove`, which only gRPC
        /// answers with: a forward-auth proxy drops those headers itself).
        set: Vec<(HeaderName, String)>,
    },
    Refused(Refused),
}

/// A refusal and whether a certificate was passed at all (forward-auth answers 401 without
/// one).
#[derive(Debug)]
pub enum Refused {
    /// The certificate text could not be read.
    Unparseable(CertTextError),
    Refusal(Refusal),
}

impl Refused {
    /// The refusal as the gateway would send it (status, type, message, code).
    pub fn error(&self) -> crate::openai_error::OpenAiError {
        match self {
            Refused::Unparseable(why) => Refusal::BadRequest(why.to_string()).error(),
            Refused::Refusal(refusal) => refusal.error(),
        }
    }

    /// The metric's `outcome` (and `X-Certgate-Refusal`): the code, or for a request refused
    /// as malformed, its error type.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Unparseable(_) => "invalid_client_certificate",
            Refused::Refusal(Refusal::BadRequest(_)) => crate::openai_error::INVALID_REQUEST,
            Refused::Refusal(Refusal::Rejected(r)) => r.code(),
        }
    }

    pub fn no_certificate(&self) -> bool {
        matches!(
            self,
            Refused::Refusal(Refusal::Rejected(Rejection::CertificateRequired))
        )
    }
}

/// How long a parsed chain and its chain work are kept for repeated questions, by the store's
/// clock (the replaceable clock of spec §11.5, as the decision's own `now`).
pub const PEER_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// What an entry costs besides its certificates (key, bookkeeping, chain-work results).
const KEY_WEIGHT: usize = 1024;

/// A chain as passed, parsed once, and what its chain work found so far.
pub struct Peer {
    chain: Option<Arc<PeerChain>>,
    checks: tokio::sync::Mutex<ChainChecks>,
    /// The last admission of this chain and what it was decided under.
    last: Mutex<Option<Remembered>>,
    /// When it was parsed, by the store's clock (Unix seconds).
    born: i64,
    /// Bytes it holds, roughly: what the chain cache is bounded by.
    weight: u64,
}

/// An admission and exactly what it was decided under: the trust index (held weakly: the
/// allocation stays, so its address is never another index's, while the index itself is
/// freed when replaced), the second, and the scope. [`handler::decide`] reads nothing else
/// that can change: the chain is this peer's, and its checks only grow.
struct Remembered {
    index: Weak<TrustIndex>,
    now: i64,
    organization: String,
    project: Option<String>,
    admission: Admission,
}

impl Peer {
    /// The admission remembered for exactly this index, second and scope.
    fn remembered(&self, index: &Arc<TrustIndex>, now: i64, scope: Scope<'_>) -> Option<Admission> {
        let last = self.last.lock().ok()?;
        let r = last.as_ref()?;
        (std::ptr::eq(r.index.as_ptr(), Arc::as_ptr(index))
            && r.now == now
            && r.organization == scope.organization
            && r.project.as_deref() == scope.project)
            .then(|| r.admission.clone())
    }

    fn remember(&self, index: &Arc<TrustIndex>, now: i64, scope: Scope<'_>, admission: &Admission) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Remembered {
                index: Arc::downgrade(index),
                now,
                organization: scope.organization.to_owned(),
                project: scope.project.map(str::to_owned),
                admission: admission.clone(),
            });
        }
    }
}

/// The chain cache's key: the certificate text as passed, and the handshake's leaf it must
/// begin with (gRPC, when the chain came from a forwarded header).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChainKey {
    text: Box<str>,
    leaf: Option<Box<str>>,
}

/// A [`ChainKey`] borrowed from the request, for lookups without copying the text: hashes
/// as `ChainKey` does (its fields, in order, as `str` and `Option<str>`).
#[derive(Hash)]
struct ChainKeyRef<'a> {
    text: &'a str,
    leaf: Option<&'a str>,
}

impl quick_cache::Equivalent<ChainKey> for ChainKeyRef<'_> {
    fn equivalent(&self, key: &ChainKey) -> bool {
        *self.text == *key.text && self.leaf == key.leaf.as_deref()
    }
}

/// The chain cache's measure: bytes, so a client sending large chains cannot make 10,000
/// entries cost gigabytes.
#[derive(Clone, Copy, Default)]
pub struct PeerWeight;

impl quick_cache::Weighter<ChainKey, Arc<Peer>> for PeerWeight {
    fn weight(&self, _key: &ChainKey, peer: &Arc<Peer>) -> u64 {
        peer.weight.max(1)
    }
}

impl AuthzState {
    /// Answers one question, counting and timing it.
    pub async fn judge(&self, question: Question<'_>) -> Answer {
        let started = Instant::now();
        let transport = question.transport;
        let answer = self.answer(question).await;
        let outcome = match &answer {
            Answer::Admitted { .. } => "admitted",
            Answer::Refused(refused) => {
                if let Refused::Refusal(Refusal::Rejected(r)) = refused {
                    self.refusals.record(&transport.label(), *r);
                }
                refused.label()
            }
        };
        self.metrics
            .decided(transport, outcome, started.elapsed().as_secs_f64());
        answer
    }

    async fn answer(&self, question: Question<'_>) -> Answer {
        let peer = match question.certificate {
            Ok(text) => self.peer(text, question.peer_leaf).await,
            Err(why) => Err(why),
        };
        let peer = match peer {
            Ok(peer) => peer,
            Err(why) => return Answer::Refused(Refused::Unparseable(why)),
        };
        let defaults = ScopeDefaults {
            organization: question
                .defaults
                .organization
                .or(self.default_organization.as_deref()),
            project: question.defaults.project,
        };
        let requested = match handler::request_scope(question.headers, defaults) {
            Ok(scope) => scope,
            Err(refusal) => return Answer::Refused(Refused::Refusal(refusal)),
        };
        let scope = requested.scope();
        let chain = peer.chain.as_ref();
        let decided = self.decide(&peer, scope).await;
        match decided {
            Ok(admission) => {
                let mut set = vec![
                    (X_ORGANIZATION, admission.organization),
                    (X_CERTIFICATE_ID, admission.certificate_id),
                ];
                if let Some(project) = admission.project {
                    set.push((X_PROJECT, project));
                }
                if let Some(chain) = chain {
                    set.push((X_CLIENT_CERT_SHA256, chain.leaf_sha256().to_owned()));
                }
                Answer::Admitted { set }
            }
            Err(rejection) => Answer::Refused(Refused::Refusal(Refusal::Rejected(rejection))),
        }
    }

    /// The decision for `peer` in `scope`: its remembered admission when the question and
    /// the state are the same (decisions.md D82), else [`handler::decide`], whose admission is
    /// then remembered unless it asked OCSP (whose answers have lifetimes of their own).
    async fn decide(&self, peer: &Peer, scope: Scope<'_>) -> Result<Admission, Rejection> {
        let now = self.store.now();
        // The index `decide` reads is this one or a newer one: remembered under this one, an
        // admission can only be found again while this one is still in force.
        let index = self.trust.index_arc();
        if let Some(admission) = peer.remembered(&index, now, scope) {
            self.remembered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(admission);
        }
        let decider = Decider {
            trust: &self.trust,
            now,
            algs: self.algs,
            pool: &self.chain_pool,
            paths: &self.chain_cache,
            ocsp: &self.ocsp,
        };
        let chain = peer.chain.as_ref();
        // Boxed: the decision's future (chain work, OCSP requests) is large, and every
        // question's future would otherwise carry, and be copied with, its space.
        let decision = Box::pin(handler::decide(decider, chain, &peer.checks, scope)).await;
        if let (Ok(admission), Some(chain)) = (&decision, chain) {
            if let Ok(checks) = peer.checks.try_lock() {
                if index.ocsp_subject(admission, chain, &checks).is_none() {
                    peer.remember(&index, now, scope, admission);
                }
            }
        }
        decision
    }

    /// The request's headers the upstream must not see, as the gateway strips them: reserved
    /// names in any spelling, and the scope headers unless `--forward-scope-headers` (then
    /// only their exact spelling passes). Names set by the answer are replaced, not removed
    /// (a proxy removes after it sets).
    pub(super) fn to_remove(
        &self,
        headers: &HeaderMap,
        set: &[(HeaderName, String)],
    ) -> Vec<HeaderName> {
        headers
            .keys()
            .filter(|name| {
                is_reserved(name)
                    || (is_scope_header(name)
                        && !(self.forward_scope_headers
                            && (*name == handler::ORGANIZATION_HEADER
                                || *name == handler::PROJECT_HEADER)))
            })
            .filter(|name| !set.iter().any(|(s, _)| s == *name))
            .cloned()
            .collect()
    }

    /// The parsed chain for a certificate text and its chain work so far: kept per text (and
    /// the handshake's leaf it is bound to) for [`PEER_KEPT_FOR`], so a proxy asking again
    /// about the same client costs neither, while a check that failed on time (a certificate
    /// not yet valid) or a spent chain-work budget is tried afresh as a reconnect would be at
    /// the gateway.
    async fn peer(
        &self,
        text: Option<&str>,
        leaf: Option<&str>,
    ) -> Result<Arc<Peer>, CertTextError> {
        let text = text.map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Ok(self.no_certificate.clone());
        }
        let now = self.store.now();
        if let Some(peer) = self.chains.get(&ChainKeyRef { text, leaf }) {
            // A clock set back makes the age negative: judged afresh too, never kept longer.
            let age = u64::try_from(now.saturating_sub(peer.born)).ok();
            if age.is_some_and(|age| age < PEER_KEPT_FOR.as_secs()) {
                return Ok(peer);
            }
        }
        Box::pin(self.parse_peer(text, leaf, now)).await
    }

    /// A certificate text not seen (or no longer kept): parsed on the chain-work pool, and
    /// kept. Apart from [`Self::peer`] so the common question's future holds none of it.
    async fn parse_peer(
        &self,
        text: &str,
        leaf: Option<&str>,
        now: i64,
    ) -> Result<Arc<Peer>, CertTextError> {
        let key = ChainKey {
            text: text.into(),
            leaf: leaf.map(Into::into),
        };
        let owned = text.to_owned();
        let leaf = leaf.map(str::to_owned);
        // Decoding and X.509 parsing are CPU work on client-controlled input: on the pool.
        let parsed = self
            .chain_pool
            .run(move || cert::parse_bound_chain(&owned, leaf.as_deref()).map(PeerChain::new))
            .await
            .unwrap_or(Err(CertTextError::BadBase64))?;
        let weight = KEY_WEIGHT
            + key.text.len()
            + key.leaf.as_ref().map_or(0, |leaf| leaf.len())
            + parsed
                .as_ref()
                .map_or(0, |chain| 2 * chain.der_len() + chain.leaf_sha256().len());
        let peer = Arc::new(Peer {
            chain: parsed.map(Arc::new),
            checks: tokio::sync::Mutex::new(ChainChecks::default()),
            last: Mutex::new(None),
            born: now,
            weight: weight as u64,
        });
        self.chains.insert(key, peer.clone());
        Ok(peer)
    }
}

/// The peer of requests that passed no certificate.
pub fn no_certificate() -> Arc<Peer> {
    Arc::new(Peer {
        chain: None,
        checks: tokio::sync::Mutex::new(ChainChecks::default()),
        last: Mutex::new(None),
        born: 0,
        weight: KEY_WEIGHT as u64,
    })
}
