//! The client's side: the chain it presented (parsed once per connection), which active
//! anchors it may lead to, and the expensive part, checking it against one anchor.
//!
//! The work a chain can cause is bounded: at most [`MAX_INTERMEDIATES`] certificates besides the
//! leaf, at most [`MAX_CANDIDATES`] anchor groups tried per request, each tried once per
//! connection ([`ChainChecks`] remembers the outcome whatever the request's headers), and at
//! most [`MAX_CHECKS_PER_CONNECTION`] groups tried over a connection's life. The client filters
//! a decision reaches ([`FilterWork`]) are bounded alike: each by its static budget, at most
//! [`MAX_FILTERS_PER_DECISION`] per request, each once per connection.

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::Digest;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::decide::Scope;
use super::filter::{FilterDigest, FilterInput, StoredFilter};
use super::index::{AnchorGroup, ParsedAnchor, TrustIndex};

/// Most certificates a client may send besides its leaf (spec §12.9).
pub const MAX_INTERMEDIATES: usize = 4;
/// Most anchor groups one request tries. Only a chain whose issuers match more active anchors
/// of the organization than this (many distinct CAs with one subject) meets it; the rest are
/// ignored, which can only refuse, never admit.
pub const MAX_CANDIDATES: usize = 8;
/// Most anchor groups one connection ever tries; past it, untried anchors count as not
/// verifying (a refusal, never an admission), so one connection cannot buy unbounded work by
/// varying its headers.
pub const MAX_CHECKS_PER_CONNECTION: usize = 64;
/// Most client filters one decision evaluates (distinct texts, in certificate id order); past
/// it, filters count as false: a tenant with many filtered CAs matching one chain cannot make
/// one request cost more than this many filters' budgets.
pub const MAX_FILTERS_PER_DECISION: usize = 8;

/// Why a chain is refused before any anchor is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    /// More than [`MAX_INTERMEDIATES`] certificates besides the leaf.
    TooLong,
    /// The leaf has no extended key usage extension, or one without clientAuth.
    NoClientAuth,
    /// The leaf is not a parsable X.509 certificate.
    Malformed,
}

/// Where one certificate of the client's chain says it comes from.
#[derive(Debug, Clone)]
struct Link {
    issuer: Vec<u8>,
    aki: Option<Vec<u8>>,
}

/// The certificate chain a client presented in its handshake, parsed once per connection.
#[derive(Debug, Clone)]
pub struct PeerChain {
    certs: Vec<CertificateDer<'static>>,
    /// Hex SHA-256 of the leaf's DER.
    leaf_sha256: String,
    /// SHA-256 of every certificate sent, in order, each length-prefixed: the chain's
    /// identity in [`super::CheckCache`].
    pub(super) digest: [u8; 32],
    /// Issuer lookups for every certificate sent.
    links: Vec<Link>,
    /// (notBefore, notAfter) of every certificate sent, by DER.
    validity: HashMap<Vec<u8>, (i64, i64)>,
    problem: Option<ChainProblem>,
}

impl PeerChain {
    /// `None` for an empty chain. A chain with a problem is kept (and never trusted).
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Option<PeerChain> {
        let leaf = certs.first()?;
        let leaf_sha256 = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
        let mut digest = sha2::Sha256::new();
        for der in &certs {
            digest.update((der.len() as u64).to_be_bytes());
            digest.update(der.as_ref());
        }
        let mut chain = PeerChain {
            leaf_sha256,
            digest: digest.finalize().into(),
            links: Vec::new(),
            validity: HashMap::new(),
            problem: None,
            certs: Vec::new(),
        };
        if certs.len() > 1 + MAX_INTERMEDIATES {
            chain.problem = Some(ChainProblem::TooLong);
            chain.certs = certs;
            return Some(chain);
        }
        for (i, der) in certs.iter().enumerate() {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                if i == 0 {
                    chain.problem = Some(ChainProblem::Malformed);
                    break;
                }
                continue;
            };
            if i == 0 && !has_client_auth(&cert) {
                chain.problem = Some(ChainProblem::NoClientAuth);
            }
            let aki = cert
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(a) => {
                        a.key_identifier.as_ref().map(|k| k.0.to_vec())
                    }
                    _ => None,
                });
            chain.links.push(Link {
                issuer: cert.issuer().as_raw().to_vec(),
                aki,
            });
            chain.validity.insert(
                der.as_ref().to_vec(),
                (
                    cert.validity().not_before.timestamp(),
                    cert.validity().not_after.timestamp(),
                ),
            );
        }
        chain.certs = certs;
        Some(chain)
    }

    pub fn leaf_sha256(&self) -> &str {
        &self.leaf_sha256
    }

    /// The leaf as sent.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certs.first()
    }

    /// The certificate sent whose DER has this lowercase hex SHA-256 (the chain is at most a
    /// few certificates: hashed on demand, only for OCSP).
    pub fn cert_with_sha256(&self, sha256: &str) -> Option<&CertificateDer<'static>> {
        self.certs
            .iter()
            .find(|c| hex::encode(sha2::Sha256::digest(c.as_ref())) == sha256)
    }

    /// Bytes of DER the client sent, every certificate counted.
    pub fn der_len(&self) -> usize {
        self.certs.iter().map(|der| der.len()).sum()
    }

    /// How many certificates the client sent besides its leaf.
    pub fn intermediates(&self) -> usize {
        self.certs.len().saturating_sub(1)
    }

    pub fn problem(&self) -> Option<ChainProblem> {
        self.problem
    }

    /// The distinct anchor groups active in `org` that this chain may lead to, found through
    /// each certificate's Authority Key Identifier first, then its issuer name; at most
    /// [`MAX_CANDIDATES`]. Each comes with the index positions of its anchors.
    pub(super) fn candidates(
        &self,
        index: &TrustIndex,
        org: &str,
    ) -> Vec<(AnchorGroup, Vec<usize>)> {
        let mut out: Vec<(AnchorGroup, Vec<usize>)> = Vec::new();
        // Only the organization's own part is looked in (decisions.md D51).
        let Some(part) = index.part(org) else {
            return out;
        };
        if self.problem.is_some() {
            return out;
        }
        let lookups = self
            .links
            .iter()
            .filter_map(|l| l.aki.as_ref().and_then(|aki| part.by_ski.get(aki)))
            .chain(
                self.links
                    .iter()
                    .filter_map(|l| part.by_subject.get(&l.issuer)),
            );
        for &i in lookups.flatten() {
            let anchor = &part.anchors[i];
            if !anchor.activations.iter().any(|a| a.org_id == org) {
                continue;
            }
            let group = anchor.parsed.group;
            if let Some((_, members)) = out.iter_mut().find(|(g, _)| *g == group) {
                if !members.contains(&i) {
                    members.push(i);
                }
            } else if out.len() < MAX_CANDIDATES {
                out.push((group, vec![i]));
            }
        }
        out
    }

    /// Checks the chain against one anchor: webpki builds and verifies the path (signatures,
    /// names, CA constraints, clientAuth usage). The expensive part of a decision; the result
    /// does not depend on the request, only on the chain, the anchor and (through the returned
    /// window) the time.
    pub fn check(
        &self,
        anchor: &ParsedAnchor,
        now: i64,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> AnchorCheck {
        if self.problem.is_some() {
            return AnchorCheck::Invalid;
        }
        let Ok(leaf) = EndEntityCert::try_from(&self.certs[0]) else {
            return AnchorCheck::Invalid;
        };
        let intermediates = &self.certs[1..];
        let at = |t: i64| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.try_into().unwrap_or(0)))
        };
        let verify = |t: i64| -> Result<AnchorCheck, webpki::Error> {
            let path = leaf.verify_for_usage(
                algs,
                std::slice::from_ref(&anchor.anchor),
                intermediates,
                at(t),
                KeyUsage::client_auth(),
                None,
                None,
            )?;
            let mut window = self.window_of(self.certs[0].as_ref());
            let mut certs = vec![PathCert {
                sha256: self.leaf_sha256.clone(),
                serial: path.end_entity().serial().to_vec(),
            }];
            for cert in path.intermediate_certificates() {
                let (from, until) = self.window_of(cert.der().as_ref());
                window = (window.0.max(from), window.1.min(until));
                certs.push(PathCert {
                    sha256: hex::encode(sha2::Sha256::digest(cert.der().as_ref())),
                    serial: cert.serial().to_vec(),
                });
            }
            certs.push(PathCert {
                sha256: anchor.sha256.clone(),
                serial: Vec::new(),
            });
            Ok(AnchorCheck::Genuine {
                from: window.0,
                until: window.1,
                path: certs.into(),
            })
        };
        match verify(now) {
            Ok(check) => check,
            Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }) => {
                // Say "expired" only for a chain that is otherwise genuine: check it again at an
                // instant inside the leaf's own window.
                let (from, until) = self.window_of(self.certs[0].as_ref());
                let inside = if now > until { until } else { from };
                verify(inside).unwrap_or(AnchorCheck::Invalid)
            }
            Err(_) => AnchorCheck::Invalid,
        }
    }

    fn window_of(&self, der: &[u8]) -> (i64, i64) {
        self.validity
            .get(der)
            .copied()
            .unwrap_or((i64::MAX, i64::MIN))
    }
}

/// The leaf must name clientAuth in an extended key usage extension; OpenAI requires it, and
/// webpki alone would accept a leaf with no such extension at all.
fn has_client_auth(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

/// How a chain fared against one anchor group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// Signatures, names and usage check out; the path is valid from `from` to `until`
    /// (Unix seconds, the intersection of the leaf's and the used intermediates' windows).
    Genuine {
        from: i64,
        until: i64,
        /// The verified path: leaf, intermediates, anchor (what revocation looks at).
        path: std::sync::Arc<[PathCert]>,
    },
    Invalid,
}

impl AnchorCheck {
    /// Whether the path is inside its validity at `now`.
    pub fn valid_at(&self, now: i64) -> bool {
        matches!(self, AnchorCheck::Genuine { from, until, .. } if *from <= now && now <= *until)
    }
}

/// One certificate of a verified path, as revocation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCert {
    /// Lowercase hex SHA-256 of its DER (what the deny-list holds).
    pub sha256: String,
    /// Its serial as the DER INTEGER contents (what CRLs list); empty for the anchor.
    pub serial: Vec<u8>,
}

/// What one connection learnt about its chain: anchor group → outcome. Filled on demand, kept
/// across trust generations (an anchor group verifies the same chains whatever else changed),
/// so a new generation costs only the checks of anchors the connection never tried.
#[derive(Default)]
pub struct ChainChecks {
    checks: HashMap<AnchorGroup, AnchorCheck>,
    /// The leaf's `cert` variable for client filters, made on the pool on first need.
    filter_input: Option<Arc<FilterInput>>,
    /// Client filter verdicts by filter (its text's digest): a filter is evaluated once per
    /// connection, and again only if its text changes.
    filter_verdicts: HashMap<FilterDigest, bool>,
}

impl std::fmt::Debug for ChainChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainChecks")
            .field("checks", &self.checks)
            .field("filter_verdicts", &self.filter_verdicts.len())
            .finish_non_exhaustive()
    }
}

impl ChainChecks {
    pub fn get(&self, group: &AnchorGroup) -> Option<AnchorCheck> {
        self.checks.get(group).cloned()
    }

    /// The anchors to check before `org` can be decided for this chain at `now`: candidates
    /// not tried yet (within the connection's lifetime budget), and genuine ones whose path is
    /// outside its validity at `now` (another path the client sent may be valid now).
    pub fn missing(
        &self,
        index: &TrustIndex,
        peer: &PeerChain,
        org: &str,
        now: i64,
    ) -> Vec<(AnchorGroup, std::sync::Arc<ParsedAnchor>)> {
        let mut room = MAX_CHECKS_PER_CONNECTION.saturating_sub(self.checks.len());
        let mut out = Vec::new();
        for (group, members) in peer.candidates(index, org) {
            let stale = match self.checks.get(&group) {
                None if room > 0 => {
                    room -= 1;
                    true
                }
                None | Some(AnchorCheck::Invalid) => false,
                Some(check) => !check.valid_at(now),
            };
            let first = index.part(org).and_then(|p| p.anchors.get(members[0]));
            if let (true, Some(anchor)) = (stale, first) {
                out.push((group, anchor.parsed.clone()));
            }
        }
        out
    }

    /// This connection's verdict for `filter`, if it has one.
    pub(super) fn verdict(&self, filter: &StoredFilter) -> Option<bool> {
        self.filter_verdicts.get(filter.digest()).copied()
    }

    /// Whether the connection has a verdict for the filter with this digest.
    pub fn has_verdict(&self, filter: &FilterDigest) -> bool {
        self.filter_verdicts.contains_key(filter)
    }

    /// Remembers a filter's verdict for the connection (past [`MAX_CHECKS_PER_CONNECTION`]
    /// verdicts the older ones are forgotten: memory stays bounded, and a filter whose verdict
    /// is forgotten is only evaluated again).
    pub fn insert_verdict(&mut self, filter: FilterDigest, verdict: bool) {
        if self.filter_verdicts.len() >= MAX_CHECKS_PER_CONNECTION {
            self.filter_verdicts.clear();
        }
        self.filter_verdicts.insert(filter, verdict);
    }

    /// Keeps the leaf's filter input for the connection's later evaluations.
    pub fn set_filter_input(&mut self, input: Arc<FilterInput>) {
        self.filter_input = Some(input);
    }

    /// The client filters the decision for `scope` needs and this connection has no verdict
    /// for, after its chain checks are in: those of the activations that pass every other
    /// check, and only while their CA would come before any that already admits (the smallest
    /// certificate id wins). Tried in that order, the same filter text once, at most
    /// [`MAX_FILTERS_PER_DECISION`] per decision; a filter not tried counts as false.
    pub fn filter_work(
        &self,
        index: &TrustIndex,
        peer: &PeerChain,
        scope: Scope<'_>,
        now: i64,
    ) -> FilterWork {
        let mut needed: Vec<(String, Arc<StoredFilter>)> = Vec::new();
        let decided = super::decide::judge(index, peer, self, scope, now, |id, filter| {
            self.verdict(filter).unwrap_or_else(|| {
                needed.push((id.to_owned(), filter.clone()));
                false
            })
        });
        if let Ok(admission) = &decided {
            needed.retain(|(id, _)| id.as_str() < admission.certificate_id.as_str());
        }
        needed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seen = std::collections::HashSet::new();
        needed.retain(|(_, f)| seen.insert(*f.digest()));
        needed.truncate(MAX_FILTERS_PER_DECISION);
        let mut leaf_digest = [0u8; 32];
        // The digest is of the leaf's DER, so this cannot fail; an all-zero key would only
        // share verdicts among chains whose digest did not decode, i.e. none.
        let _ = hex::decode_to_slice(peer.leaf_sha256(), &mut leaf_digest);
        FilterWork {
            leaf: peer.certs[0].clone(),
            leaf_digest,
            input: self.filter_input.clone(),
            filters: needed.into_iter().map(|(_, f)| f).collect(),
        }
    }

    /// Evaluates here and now the filters [`ChainChecks::filter_work`] lists (for callers
    /// without a pool, e.g. tests; it is CPU work).
    pub fn fill_filters(
        &mut self,
        index: &TrustIndex,
        peer: &PeerChain,
        scope: Scope<'_>,
        now: i64,
    ) {
        let work = self.filter_work(index, peer, scope, now);
        let mut verdicts = Vec::new();
        let mut input = None;
        work.run(
            |made| input = Some(made.clone()),
            |filter, verdict| {
                verdicts.push((filter, verdict));
                true
            },
        );
        if let Some(input) = input {
            self.set_filter_input(input);
        }
        for (filter, verdict) in verdicts {
            self.insert_verdict(filter, verdict);
        }
    }

    pub fn insert(&mut self, group: AnchorGroup, check: AnchorCheck) {
        if self.checks.len() < MAX_CHECKS_PER_CONNECTION || self.checks.contains_key(&group) {
            self.checks.insert(group, check);
        }
    }

    /// Runs every missing chain check here and now (for callers without a pool, e.g. tests;
    /// then [`ChainChecks::fill_filters`]).
    pub fn fill(
        &mut self,
        index: &TrustIndex,
        peer: &PeerChain,
        org: &str,
        now: i64,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) {
        for (group, anchor) in self.missing(index, peer, org, now) {
            let check = peer.check(&anchor, now, algs);
            self.insert(group, check);
        }
    }
}

/// The client filters a decision still needs (see [`ChainChecks::filter_work`]), to run off the
/// async workers.
pub struct FilterWork {
    leaf: CertificateDer<'static>,
    leaf_digest: [u8; 32],
    input: Option<Arc<FilterInput>>,
    filters: Vec<Arc<StoredFilter>>,
}

impl FilterWork {
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// SHA-256 of the leaf's DER: with a filter's digest, the key of its verdict.
    pub fn leaf_digest(&self) -> &[u8; 32] {
        &self.leaf_digest
    }

    /// The filters to run, in order.
    pub fn filters(&self) -> impl Iterator<Item = &FilterDigest> {
        self.filters.iter().map(|f| f.digest())
    }

    /// Runs the filters in order, here and now: CPU work, bounded by the filters' budgets (call
    /// it off the async workers). `started` gets the leaf's filter input (made here if the
    /// connection has none yet) once the filters are compiled, before the first runs;
    /// `verdict` gets each verdict as soon as it is known and says whether to go on. Stops after the first filter that admits (the ones after it
    /// cannot change the decision).
    pub fn run(
        self,
        started: impl FnOnce(&Arc<FilterInput>),
        mut verdict: impl FnMut(FilterDigest, bool) -> bool,
    ) {
        let input = self
            .input
            .unwrap_or_else(|| Arc::new(FilterInput::of_leaf(self.leaf.as_ref())));
        // Compiling a filter the process has not used yet is parsing at most 4 KiB, not the
        // filter's running time: done before `started`.
        for filter in &self.filters {
            let _ = filter.compiled();
        }
        started(&input);
        for filter in &self.filters {
            let admits = filter.admits(&input);
            if !verdict(*filter.digest(), admits) || admits {
                break;
            }
        }
    }
}
