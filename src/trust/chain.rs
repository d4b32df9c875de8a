//! The client's side: the chain it presented (parsed once per connection), which active
//! anchors it may lead to, and the expensive part, checking it against one anchor.
//!
//! The work a chain can cause is bounded: at most [`MAX_INTERMEDIATES`] certificates besides the
//! leaf, at most [`MAX_CANDIDATES`] anchor groups tried per request, each tried once per
//! connection ([`ChainChecks`] remembers the outcome whatever the request's headers), and at
//! most [`MAX_CHECKS_PER_CONNECTION`] groups tried over a connection's life.

use std::collections::HashMap;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::Digest;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

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
    /// identity in [`CheckCache`].
    digest: [u8; 32],
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
        if self.problem.is_some() {
            return out;
        }
        let lookups = self
            .links
            .iter()
            .filter_map(|l| l.aki.as_ref().and_then(|aki| index.by_ski.get(aki)))
            .chain(
                self.links
                    .iter()
                    .filter_map(|l| index.by_subject.get(&l.issuer)),
            );
        for &i in lookups.flatten() {
            let anchor = &index.anchors[i];
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

/// Genuine paths found by any connection of this process, by (chain, anchor group): a check's
/// outcome depends only on the certificates sent and the anchor group ([`PeerChain::check`]),
/// so a client that reconnects with the same chain costs no new signature checks. Only
/// genuine paths are kept, and used only inside their validity window: a refusal is checked
/// again on each connection (a chain refused now for an intermediate not valid yet may verify
/// later). Bounded; a chain a client varies only evicts entries, it never admits anything.
pub struct CheckCache(quick_cache::sync::Cache<([u8; 32], AnchorGroup), AnchorCheck>);

impl CheckCache {
    /// Room for about as many chains as clients a busy gateway sees reconnecting.
    pub const CAPACITY: usize = 16_384;

    pub fn new(capacity: usize) -> Self {
        CheckCache(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    /// A genuine path of `chain` to `group` valid at `now`, if one was found before.
    pub fn get(&self, chain: &PeerChain, group: &AnchorGroup, now: i64) -> Option<AnchorCheck> {
        self.0
            .get(&(chain.digest, *group))
            .filter(|check| check.valid_at(now))
    }

    /// Remembers `check` if it found a genuine path.
    pub fn put(&self, chain: &PeerChain, group: AnchorGroup, check: &AnchorCheck) {
        if matches!(check, AnchorCheck::Genuine { .. }) {
            self.0.insert((chain.digest, group), check.clone());
        }
    }
}

impl Default for CheckCache {
    fn default() -> Self {
        CheckCache::new(CheckCache::CAPACITY)
    }
}

/// What one connection learnt about its chain: anchor group → outcome. Filled on demand, kept
/// across trust generations (an anchor group verifies the same chains whatever else changed),
/// so a new generation costs only the checks of anchors the connection never tried.
#[derive(Default)]
pub struct ChainChecks {
    checks: HashMap<AnchorGroup, AnchorCheck>,
    /// The leaf's `cert` variable for client filters, made on first need.
    facts: Option<cel::Value>,
    /// Client filter verdicts by (certificate id, filter source): a filter is evaluated once
    /// per connection (per handshake), and again only if it changes.
    filter_verdicts: HashMap<(String, String), bool>,
}

impl std::fmt::Debug for ChainChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainChecks")
            .field("checks", &self.checks)
            .field("filter_verdicts", &self.filter_verdicts)
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
            if stale {
                out.push((group, index.anchors[members[0]].parsed.clone()));
            }
        }
        out
    }

    /// Whether `filter` (of the certificate object `certificate_id`) admits `peer`'s leaf,
    /// remembered for the connection.
    pub(super) fn filter_admits(
        &mut self,
        peer: &PeerChain,
        certificate_id: &str,
        filter: &Result<super::ClientFilter, String>,
    ) -> bool {
        let Ok(filter) = filter else {
            return false;
        };
        let key = (certificate_id.to_owned(), filter.source().to_owned());
        if let Some(&verdict) = self.filter_verdicts.get(&key) {
            return verdict;
        }
        let facts = self.facts.get_or_insert_with(|| {
            let facts = crate::x509::LeafFacts::of(peer.certs[0].as_ref()).unwrap_or_default();
            super::filter::facts_value(&facts)
        });
        let verdict = filter.admits(facts);
        if self.filter_verdicts.len() < MAX_CHECKS_PER_CONNECTION {
            self.filter_verdicts.insert(key, verdict);
        }
        verdict
    }

    pub fn insert(&mut self, group: AnchorGroup, check: AnchorCheck) {
        if self.checks.len() < MAX_CHECKS_PER_CONNECTION || self.checks.contains_key(&group) {
            self.checks.insert(group, check);
        }
    }

    /// Runs every missing check here and now (for callers without a pool, e.g. the check
    /// endpoint and tests).
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

#[cfg(test)]
mod cache_tests {
    use super::{AnchorCheck, CheckCache, PeerChain};
    use rustls_pki_types::CertificateDer;

    fn chain(bytes: &[u8]) -> PeerChain {
        PeerChain::new(vec![CertificateDer::from(bytes.to_vec())]).unwrap()
    }

    #[test]
    fn only_genuine_paths_are_kept_and_only_inside_their_window() {
        let cache = CheckCache::new(16);
        let (one, other, group) = (chain(b"one"), chain(b"other"), [7u8; 32]);
        cache.put(&one, group, &AnchorCheck::Invalid);
        assert!(
            cache.get(&one, &group, 100).is_none(),
            "a refusal is not kept"
        );
        let genuine = AnchorCheck::Genuine {
            from: 50,
            until: 150,
            path: Vec::new().into(),
        };
        cache.put(&one, group, &genuine);
        assert!(cache.get(&one, &group, 100).is_some());
        assert!(cache.get(&one, &group, 151).is_none(), "past its window");
        assert!(cache.get(&one, &[8u8; 32], 100).is_none(), "another group");
        assert!(cache.get(&other, &group, 100).is_none(), "another chain");
    }
}
