//! [`TrustIndex`]: the active anchors of one trust generation, indexed by subject and key
//! identifier, with the organizations and unarchived projects that exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use sha2::{Digest, Sha256};

use super::filter::StoredFilter;
use super::snapshot::{CrlVersion, FetchedCrl, TrustAnchor as StoredAnchor, TrustSnapshot};
use crate::crl::SerialSet;

/// Anchors that verify exactly the same chains: same subject, key and name constraints (webpki
/// uses nothing else of an anchor). A chain is checked once per group, whatever the number of
/// certificate objects (or organizations) behind it.
pub type AnchorGroup = [u8; 32];

/// A CA certificate's decoded form, shared by every snapshot that still holds it.
#[derive(Debug)]
pub struct ParsedAnchor {
    pub(super) anchor: TrustAnchor<'static>,
    pub(super) group: AnchorGroup,
    /// Lowercase hex SHA-256 of the DER.
    pub(super) sha256: String,
    der: CertificateDer<'static>,
}

/// One certificate object's activations, and its client filter.
#[derive(Debug, Clone)]
pub(super) struct Activation {
    pub(super) certificate_id: String,
    pub(super) org_id: String,
    pub(super) org_wide: bool,
    pub(super) projects: Vec<String>,
    /// Compiled on first use, off the async workers; one that no longer compiles refuses
    /// everyone.
    pub(super) filter: Option<Arc<StoredFilter>>,
}

impl Activation {
    pub(super) fn covers(&self, project: Option<&str>) -> bool {
        self.org_wide || project.is_some_and(|p| self.projects.iter().any(|q| q == p))
    }
}

/// A distinct anchor certificate and every activation of it (the same CA may be uploaded by
/// several organizations; each upload is its own certificate object).
#[derive(Debug)]
pub(super) struct IndexedAnchor {
    pub(super) parsed: Arc<ParsedAnchor>,
    pub(super) valid_at: i64,
    pub(super) expires_at: i64,
    pub(super) activations: Vec<Activation>,
}

/// The active anchors as of one trust generation, indexed for lookup by issuer.
#[derive(Debug, Default)]
pub struct TrustIndex {
    /// `None` until the first snapshot has loaded.
    pub(super) generation: Option<i64>,
    pub(super) anchors: Vec<IndexedAnchor>,
    pub(super) by_subject: HashMap<Vec<u8>, Vec<usize>>,
    pub(super) by_ski: HashMap<Vec<u8>, Vec<usize>>,
    pub(super) organizations: HashSet<String>,
    /// (organization, project) of every unarchived project.
    pub(super) projects: HashSet<(String, String)>,
    /// Deny-listed certificates (lowercase hex SHA-256) by organization.
    pub(super) revoked: HashMap<String, HashSet<String>>,
    /// Revoked serials by (organization, SHA-256 of the issuing CA certificate), for the CAs
    /// active somewhere.
    pub(super) crls: HashMap<(String, String), Arc<CrlSerials>>,
    /// CRL bytes (DER) read from the store by this index and every one it was built from.
    crl_bytes_read: u64,
    /// Decoded anchors by certificate id, handed to the next build (contents never change).
    parsed_by_id: HashMap<String, Arc<ParsedAnchor>>,
    /// Client filters by (certificate id, source), handed (compiled, once used) to the next
    /// build.
    filters: HashMap<(String, String), Arc<StoredFilter>>,
}

/// The serials one stored CRL revokes, decoded once per version (CA and content hash).
#[derive(Debug)]
pub(super) struct CrlSerials {
    certificate_id: String,
    content: String,
    pub(super) serials: Arc<SerialSet>,
}

impl TrustIndex {
    /// The index used before anything has loaded: it admits no one.
    pub fn empty() -> TrustIndex {
        TrustIndex::default()
    }

    /// Builds the index from `snapshot`, reusing what `previous` already decoded. Anchors whose
    /// PEM does not decode are skipped and logged (by id only).
    pub fn build(snapshot: &TrustSnapshot, previous: &TrustIndex) -> TrustIndex {
        let mut index = TrustIndex {
            generation: Some(snapshot.generation),
            organizations: snapshot.organizations.iter().cloned().collect(),
            projects: snapshot.projects.iter().cloned().collect(),
            ..TrustIndex::default()
        };
        for (org, sha256) in &snapshot.revoked {
            index
                .revoked
                .entry(org.clone())
                .or_default()
                .insert(sha256.clone());
        }
        index.crl_bytes_read = previous.crl_bytes_read;
        let reusable: HashMap<(&str, &str), &Arc<CrlSerials>> = previous
            .crls
            .values()
            .map(|c| ((c.certificate_id.as_str(), c.content.as_str()), c))
            .collect();
        for crl in &snapshot.crls {
            if let Some(fetched) = &crl.fetched {
                index.crl_bytes_read += fetched.bytes;
            }
            let held = reusable.get(&(crl.certificate_id.as_str(), crl.content.as_str()));
            let serials = match (held, &crl.fetched) {
                (Some(done), _) => Arc::clone(done),
                (
                    None,
                    Some(FetchedCrl {
                        serials: Ok(serials),
                        ..
                    }),
                ) => Arc::new(CrlSerials {
                    certificate_id: crl.certificate_id.clone(),
                    content: crl.content.clone(),
                    serials: Arc::clone(serials),
                }),
                (
                    None,
                    Some(FetchedCrl {
                        serials: Err(e), ..
                    }),
                ) => {
                    // Checked at upload, so this cannot happen short of corruption; ignoring
                    // it would fail open for that CA's revocations: say so.
                    tracing::error!(certificate_id = %crl.certificate_id, error = %e, "stored CRL does not parse; its revocations are not enforced");
                    continue;
                }
                (None, None) => {
                    // The snapshot was read for another index than `previous`.
                    tracing::error!(certificate_id = %crl.certificate_id, "CRL left out of the snapshot as held, but not held; its revocations are not enforced until the next reload");
                    continue;
                }
            };
            index
                .crls
                .insert((crl.org_id.clone(), crl.issuer_sha256.clone()), serials);
        }
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
                        tracing::warn!(certificate_id = %a.certificate_id, "active certificate could not be decoded as a trust anchor; ignored");
                        continue;
                    }
                }
            };
            index
                .parsed_by_id
                .insert(a.certificate_id.clone(), parsed.clone());
            let filter = a.client_filter.as_ref().map(|source| {
                match previous
                    .filters
                    .get(&(a.certificate_id.clone(), source.clone()))
                {
                    Some(done) => Arc::clone(done),
                    None => Arc::new(StoredFilter::new(&a.certificate_id, source)),
                }
            });
            if let (Some(source), Some(compiled)) = (&a.client_filter, &filter) {
                index
                    .filters
                    .insert((a.certificate_id.clone(), source.clone()), compiled.clone());
            }
            let activation = Activation {
                certificate_id: a.certificate_id.clone(),
                org_id: a.org_id.clone(),
                org_wide: a.org_wide,
                projects: a.projects.clone(),
                filter,
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

    /// The CRL versions this index holds, to pass to the next snapshot read
    /// ([`crate::store::Store::trust_snapshot`]) so that it leaves their DER out.
    pub fn crl_versions(&self) -> HashSet<CrlVersion> {
        self.crls
            .values()
            .map(|c| (c.certificate_id.clone(), c.content.clone()))
            .collect()
    }

    /// CRL bytes (DER) read from the store for this index and every one it was built from: a
    /// reload that reads none leaves it unchanged (`certgate_trust_crl_bytes_read_total`).
    pub fn crl_bytes_read(&self) -> u64 {
        self.crl_bytes_read
    }

    /// Number of distinct anchor certificates.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    pub fn has_organization(&self, org: &str) -> bool {
        self.organizations.contains(org)
    }

    /// Whether the verified `path` (leaf first, anchor last) is revoked for `org`: one of its
    /// certificates is deny-listed, or is listed in the stored CRL of the certificate that
    /// issued it (the anchor's CRL covers what the anchor issued).
    pub(super) fn revokes(&self, org: &str, path: &[super::chain::PathCert]) -> bool {
        let denied = self.revoked.get(org);
        if let Some(denied) = denied {
            if path.iter().any(|c| denied.contains(&c.sha256)) {
                return true;
            }
        }
        if self.crls.is_empty() {
            return false;
        }
        let mut key = (org.to_owned(), String::new());
        path.windows(2).any(|pair| {
            key.1.clone_from(&pair[1].sha256);
            self.crls
                .get(&key)
                .is_some_and(|crl| crl.serials.contains(&pair[0].serial))
        })
    }

    /// Whether `project` is an unarchived project of `org`.
    pub fn has_project(&self, org: &str, project: &str) -> bool {
        self.projects
            .contains(&(org.to_owned(), project.to_owned()))
    }
}

fn decode_anchor(pem_text: &str) -> Option<ParsedAnchor> {
    let block = ::pem::parse(pem_text.as_bytes()).ok()?;
    if block.tag() != "CERTIFICATE" {
        return None;
    }
    let der = CertificateDer::from(block.into_contents());
    let anchor = webpki::anchor_from_trusted_cert(&der).ok()?.to_owned();
    let mut group = Sha256::new();
    for part in [
        anchor.subject.as_ref(),
        anchor.subject_public_key_info.as_ref(),
        anchor
            .name_constraints
            .as_ref()
            .map_or(&[][..], |n| n.as_ref()),
    ] {
        // Length-prefixed, so different splits of the same bytes cannot collide.
        group.update((part.len() as u64).to_be_bytes());
        group.update(part);
    }
    Some(ParsedAnchor {
        group: group.finalize().into(),
        sha256: hex::encode(Sha256::digest(der.as_ref())),
        anchor,
        der,
    })
}

#[cfg(test)]
mod tests;
