//! The trust decision: which active anchors a client certificate chains to, and whether one of
//! them is active for the request's organization and project at this instant.
//!
//! A [`TrustIndex`] is built from a [`TrustSnapshot`] (each anchor's PEM decoded once, reused
//! across rebuilds by certificate id) and indexes the distinct anchor certificates by subject
//! DER and Subject Key Identifier, as the store recorded them at upload. A request looks up candidates through the issuer name and
//! Authority Key Identifier of every certificate the client sent, so the cost of a decision does
//! not grow with the number of active anchors; webpki then checks the chain against each
//! candidate alone. webpki does not look at a trust anchor's own validity window, so
//! [`decide`] does, against the store's clock.
//!
//! This module knows no HTTP, SQL or sockets: the gateway asks it, per request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::Digest;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::store::{TrustAnchor as StoredAnchor, TrustSnapshot};

/// Most distinct anchors a single request checks the chain against. Only a client presenting a
/// chain whose issuers match more anchors than this (many distinct CAs with one subject) meets
/// it; the rest are ignored, which can only refuse, never admit.
const MAX_CANDIDATES: usize = 32;

/// A CA certificate's parsed form, shared by every snapshot that still holds it.
#[derive(Debug)]
struct ParsedAnchor {
    der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
}

/// One certificate object's activations.
#[derive(Debug, Clone)]
struct Activation {
    certificate_id: String,
    org_id: String,
    org_wide: bool,
    projects: Vec<String>,
}

impl Activation {
    fn covers(&self, project: Option<&str>) -> bool {
        self.org_wide || project.is_some_and(|p| self.projects.iter().any(|q| q == p))
    }
}

/// A distinct anchor certificate and every activation of it (the same CA may be uploaded by
/// several organizations; each upload is its own certificate object).
#[derive(Debug)]
struct IndexedAnchor {
    parsed: Arc<ParsedAnchor>,
    valid_at: i64,
    expires_at: i64,
    activations: Vec<Activation>,
}

/// The active anchors as of one trust generation, indexed for lookup by issuer.
#[derive(Debug, Default)]
pub struct TrustIndex {
    /// `None` until the first snapshot has loaded.
    generation: Option<i64>,
    anchors: Vec<IndexedAnchor>,
    by_subject: HashMap<Vec<u8>, Vec<usize>>,
    by_ski: HashMap<Vec<u8>, Vec<usize>>,
    organizations: HashSet<String>,
    /// Parsed anchors by certificate id, handed to the next build (contents never change).
    parsed_by_id: HashMap<String, Arc<ParsedAnchor>>,
}

impl TrustIndex {
    /// The index used before anything has loaded: it admits no one.
    pub fn empty() -> TrustIndex {
        TrustIndex::default()
    }

    /// Builds the index from `snapshot`, reusing what `previous` already parsed. Anchors whose
    /// PEM does not parse are skipped and logged (by id only).
    pub fn build(snapshot: &TrustSnapshot, previous: &TrustIndex) -> TrustIndex {
        let mut index = TrustIndex {
            generation: Some(snapshot.generation),
            organizations: snapshot.organizations.iter().cloned().collect(),
            ..TrustIndex::default()
        };
        let mut by_der: HashMap<CertificateDer<'static>, usize> = HashMap::new();
        let mut stored: Vec<&StoredAnchor> = snapshot.anchors.iter().collect();
        // Deterministic choice of the admitting certificate object.
        stored.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
        for a in stored {
            let parsed = match previous.parsed_by_id.get(&a.certificate_id) {
                Some(p) => p.clone(),
                None => {
                    if let Some(p) = decode_anchor(&a.pem) {
                        Arc::new(p)
                    } else {
                        tracing::warn!(certificate_id = %a.certificate_id, "active certificate could not be parsed as a trust anchor; ignored");
                        continue;
                    }
                }
            };
            index
                .parsed_by_id
                .insert(a.certificate_id.clone(), parsed.clone());
            let activation = Activation {
                certificate_id: a.certificate_id.clone(),
                org_id: a.org_id.clone(),
                org_wide: a.org_wide,
                projects: a.projects.clone(),
            };
            if let Some(&i) = by_der.get(&parsed.der) {
                index.anchors[i].activations.push(activation);
                continue;
            }
            let i = index.anchors.len();
            by_der.insert(parsed.der.clone(), i);
            index
                .by_subject
                .entry(a.subject_der.clone())
                .or_default()
                .push(i);
            index.by_ski.entry(a.ski.clone()).or_default().push(i);
            index.anchors.push(IndexedAnchor {
                parsed,
                valid_at: a.valid_at,
                expires_at: a.expires_at,
                activations: vec![activation],
            });
        }
        index
    }

    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Number of distinct anchor certificates.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Distinct anchors the chain may lead to, found through each certificate's issuer name
    /// and Authority Key Identifier.
    fn candidates(&self, peer: &PeerChain) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let mut push = |list: Option<&Vec<usize>>| {
            for &i in list.into_iter().flatten() {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        };
        for link in &peer.links {
            push(self.by_subject.get(&link.issuer));
            if let Some(aki) = &link.aki {
                push(self.by_ski.get(aki));
            }
        }
        out
    }
}

fn decode_anchor(pem_text: &str) -> Option<ParsedAnchor> {
    let block = ::pem::parse(pem_text.as_bytes()).ok()?;
    if block.tag() != "CERTIFICATE" {
        return None;
    }
    let der = CertificateDer::from(block.into_contents());
    let anchor = webpki::anchor_from_trusted_cert(&der).ok()?.to_owned();
    Some(ParsedAnchor { der, anchor })
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
    /// Issuer lookups for every certificate sent; empty if the leaf did not parse.
    links: Vec<Link>,
    leaf_not_before: i64,
    leaf_not_after: i64,
}

impl PeerChain {
    /// `None` for an empty chain. A chain that does not parse is kept (and never trusted).
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Option<PeerChain> {
        let leaf = certs.first()?;
        let leaf_sha256 = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
        let mut links = Vec::with_capacity(certs.len());
        let mut leaf_not_before = 0;
        let mut leaf_not_after = 0;
        for (i, der) in certs.iter().enumerate() {
            let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
                if i == 0 {
                    break;
                }
                continue;
            };
            if i == 0 {
                leaf_not_before = cert.validity().not_before.timestamp();
                leaf_not_after = cert.validity().not_after.timestamp();
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
            links.push(Link {
                issuer: cert.issuer().as_raw().to_vec(),
                aki,
            });
        }
        Some(PeerChain {
            certs,
            leaf_sha256,
            links,
            leaf_not_before,
            leaf_not_after,
        })
    }

    pub fn leaf_sha256(&self) -> &str {
        &self.leaf_sha256
    }
}

/// A request's scope, from its `OpenAI-Organization` and `OpenAI-Project` headers.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub organization: Option<&'a str>,
    pub project: Option<&'a str>,
}

/// Why a request was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub organization: String,
    /// The certificate object (the CA) that admitted the client.
    pub certificate_id: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No trust state has loaded yet (the database has never answered).
    TrustStateUnavailable,
    CertificateRequired,
    UnknownOrganization,
    /// The chain leads to anchors of several organizations and no header says which one.
    OrganizationAmbiguous,
    Untrusted,
    /// The leaf (or the chain) or the admitting anchor is outside its validity window.
    Expired,
    NotActiveForProject,
}

/// How a chain fared against one anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainCheck {
    Valid,
    /// Signatures, usage and names check out, but the chain is outside its validity at `now`.
    OutsideValidity,
    Invalid,
}

/// Decides one request. `algs` are the provider's signature verification algorithms.
pub fn decide(
    index: &TrustIndex,
    peer: Option<&PeerChain>,
    scope: Scope<'_>,
    now: i64,
    algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm],
) -> Result<Admission, Rejection> {
    if index.generation.is_none() {
        return Err(Rejection::TrustStateUnavailable);
    }
    let Some(peer) = peer else {
        return Err(Rejection::CertificateRequired);
    };
    if let Some(org) = scope.organization {
        if !index.organizations.contains(org) {
            return Err(Rejection::UnknownOrganization);
        }
    }
    let Ok(leaf) = EndEntityCert::try_from(&peer.certs[0]) else {
        return Err(Rejection::Untrusted);
    };
    let intermediates = &peer.certs[1..];

    // (anchor, activation, chain check) for every activation the chain could count for.
    let mut relevant: Vec<(&IndexedAnchor, &Activation, ChainCheck)> = Vec::new();
    let mut checked = 0;
    for i in index.candidates(peer) {
        let anchor = &index.anchors[i];
        let in_scope = |a: &&Activation| scope.organization.is_none_or(|o| a.org_id == o);
        if !anchor.activations.iter().any(|a| in_scope(&a)) {
            continue;
        }
        if checked == MAX_CANDIDATES {
            break;
        }
        checked += 1;
        let check = check_chain(&leaf, intermediates, anchor, peer, now, algs);
        if check == ChainCheck::Invalid {
            continue;
        }
        for a in anchor.activations.iter().filter(in_scope) {
            relevant.push((anchor, a, check));
        }
    }

    let admits = |(anchor, act, check): &(&IndexedAnchor, &Activation, ChainCheck)| {
        *check == ChainCheck::Valid
            && anchor.valid_at <= now
            && now <= anchor.expires_at
            && act.covers(scope.project)
    };
    let org = if let Some(org) = scope.organization {
        org.to_owned()
    } else {
        let orgs: HashSet<&str> = relevant.iter().map(|r| r.1.org_id.as_str()).collect();
        match orgs.len() {
            0 => return Err(Rejection::Untrusted),
            1 => orgs.into_iter().next().unwrap_or_default().to_owned(),
            _ => {
                let admitting: HashSet<&str> = relevant
                    .iter()
                    .filter(|r| admits(r))
                    .map(|r| r.1.org_id.as_str())
                    .collect();
                if admitting.len() == 1 {
                    admitting.into_iter().next().unwrap_or_default().to_owned()
                } else {
                    return Err(Rejection::OrganizationAmbiguous);
                }
            }
        }
    };
    relevant.retain(|r| r.1.org_id == org);
    if let Some((_, act, _)) = relevant.iter().find(|r| admits(r)) {
        return Ok(Admission {
            organization: org,
            certificate_id: act.certificate_id.clone(),
        });
    }
    if relevant.iter().any(|r| r.1.covers(scope.project)) {
        return Err(Rejection::Expired);
    }
    if relevant.is_empty() {
        Err(Rejection::Untrusted)
    } else {
        Err(Rejection::NotActiveForProject)
    }
}

fn check_chain(
    leaf: &EndEntityCert<'_>,
    intermediates: &[CertificateDer<'static>],
    anchor: &IndexedAnchor,
    peer: &PeerChain,
    now: i64,
    algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm],
) -> ChainCheck {
    let verify = |at: i64| {
        leaf.verify_for_usage(
            algs,
            std::slice::from_ref(&anchor.parsed.anchor),
            intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.try_into().unwrap_or(0))),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
    };
    match verify(now) {
        Ok(()) => ChainCheck::Valid,
        Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }) => {
            // Say "expired" only for a chain that is otherwise genuine: check it again at an
            // instant inside the leaf's own window.
            let inside = if now > peer.leaf_not_after {
                peer.leaf_not_after
            } else {
                peer.leaf_not_before
            };
            if verify(inside).is_ok() {
                ChainCheck::OutsideValidity
            } else {
                ChainCheck::Invalid
            }
        }
        Err(_) => ChainCheck::Invalid,
    }
}
