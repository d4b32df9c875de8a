//! [`TrustIndex`]: the active anchors of one trust generation, indexed by subject and key
//! identifier, with the organizations and unarchived projects that exist.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use sha2::{Digest, Sha256};

use super::filter::StoredFilter;
use super::snapshot::{
    CrlVersion, FetchedCrl, StoredCrl, TrustAnchor as StoredAnchor, TrustDelta, TrustSnapshot,
};
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

/// The trust state as of one trust generation: one part per organization, each shared (by
/// `Arc`) with the indexes before and after it until a change touches that organization, so
/// applying a change costs what the change touched (decisions.md D51).
#[derive(Debug, Default)]
pub struct TrustIndex {
    /// `None` until the first snapshot has loaded.
    pub(super) generation: Option<i64>,
    pub(super) orgs: HashMap<String, Arc<OrgTrust>>,
    /// CRL bytes (DER) read from the store by this index and every one it was built from.
    crl_bytes_read: u64,
    /// Anchor certificates over all organizations.
    anchor_count: usize,
}

/// One organization's part of the index: its anchors indexed for lookup by issuer, its
/// unarchived projects, deny-list and CRLs, and what they were built from.
#[derive(Debug, Default)]
pub(super) struct OrgTrust {
    /// The organization exists (a part may be held for a change to an organization that
    /// does not).
    exists: bool,
    pub(super) anchors: Vec<IndexedAnchor>,
    pub(super) by_subject: HashMap<Vec<u8>, Vec<usize>>,
    pub(super) by_ski: HashMap<Vec<u8>, Vec<usize>>,
    /// Unarchived projects.
    pub(super) projects: HashSet<String>,
    /// Deny-listed certificates (lowercase hex SHA-256); shared until the deny-list changes.
    pub(super) revoked: Arc<HashSet<String>>,
    /// Revoked serials by SHA-256 of the issuing CA certificate, for the CAs active somewhere.
    pub(super) crls: HashMap<String, Arc<CrlSerials>>,
    /// The active certificate objects the anchors are built from, by id.
    stored: BTreeMap<String, Arc<StoredEntry>>,
    /// The CRLs `crls` is built from, by certificate id: (issuer SHA-256, serials).
    stored_crls: BTreeMap<String, (String, Arc<CrlSerials>)>,
}

/// An active certificate object as stored, decoded (once: its content never changes) and with
/// its filter (compiled on first use, then kept while its source is unchanged).
#[derive(Debug)]
struct StoredEntry {
    stored: StoredAnchor,
    parsed: Arc<ParsedAnchor>,
    filter: Option<Arc<StoredFilter>>,
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
        let mut parts: BTreeMap<&str, OrgSources> = BTreeMap::new();
        for org in &snapshot.organizations {
            parts.entry(org).or_default().exists = true;
        }
        for (org, project) in &snapshot.projects {
            parts
                .entry(org)
                .or_default()
                .projects
                .insert(project.clone());
        }
        for (org, sha256) in &snapshot.revoked {
            parts.entry(org).or_default().revoked.insert(sha256.clone());
        }
        for a in &snapshot.anchors {
            parts.entry(&a.org_id).or_default().anchors.push(a);
        }
        for c in &snapshot.crls {
            parts.entry(&c.org_id).or_default().crls.push(c);
        }
        let mut index = TrustIndex {
            generation: Some(snapshot.generation),
            crl_bytes_read: previous.crl_bytes_read,
            ..TrustIndex::default()
        };
        for (org, sources) in parts {
            let before = previous.orgs.get(org).map(AsRef::as_ref);
            let mut part = OrgTrust {
                exists: sources.exists,
                projects: sources.projects,
                revoked: Arc::new(sources.revoked),
                ..OrgTrust::default()
            };
            for a in sources.anchors {
                part.put_anchor(a, before);
            }
            for c in sources.crls {
                index.crl_bytes_read += part.put_crl(c, before);
            }
            part.rebuild();
            index.orgs.insert(org.to_owned(), Arc::new(part));
        }
        index.count_anchors();
        index
    }

    /// The index `delta` leads to from this one (which must be of `delta.since`): the parts of
    /// the organizations it touched are rebuilt from their re-read rows, every other part is
    /// shared. It equals what [`TrustIndex::build`] makes of a snapshot of `delta.generation`.
    #[must_use]
    pub fn apply(&self, delta: &TrustDelta) -> TrustIndex {
        let mut touched: BTreeMap<&str, OrgTrust> = BTreeMap::new();
        let mut bytes = 0;
        for o in &delta.organizations {
            let part = open_part(&mut touched, &self.orgs, &o.org_id);
            part.exists = o.exists;
            part.projects = o.projects.iter().cloned().collect();
        }
        for (org, project, live) in &delta.projects {
            let part = open_part(&mut touched, &self.orgs, org);
            if *live {
                part.projects.insert(project.clone());
            } else {
                part.projects.remove(project);
            }
        }
        for c in &delta.certificates {
            let before = self.orgs.get(&c.org_id).map(AsRef::as_ref);
            let part = open_part(&mut touched, &self.orgs, &c.org_id);
            part.stored.remove(&c.certificate_id);
            if let Some(a) = &c.anchor {
                part.put_anchor(a, before);
            }
        }
        for c in &delta.crls {
            let before = self.orgs.get(&c.org_id).map(AsRef::as_ref);
            let part = open_part(&mut touched, &self.orgs, &c.org_id);
            part.stored_crls.remove(&c.certificate_id);
            if let Some(crl) = &c.crl {
                bytes += part.put_crl(crl, before);
            }
        }
        for (org, sha256, denied) in &delta.revoked {
            let part = open_part(&mut touched, &self.orgs, org);
            let revoked = Arc::make_mut(&mut part.revoked);
            if *denied {
                revoked.insert(sha256.clone());
            } else {
                revoked.remove(sha256);
            }
        }
        let mut orgs = self.orgs.clone();
        for (org, mut part) in touched {
            part.rebuild();
            orgs.insert(org.to_owned(), Arc::new(part));
        }
        let mut index = TrustIndex {
            generation: Some(delta.generation),
            orgs,
            crl_bytes_read: self.crl_bytes_read + bytes,
            anchor_count: 0,
        };
        index.count_anchors();
        index
    }

    fn count_anchors(&mut self) {
        self.anchor_count = self.orgs.values().map(|p| p.anchors.len()).sum();
    }

    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// The part of organization `org`, if the index has one.
    pub(super) fn part(&self, org: &str) -> Option<&OrgTrust> {
        self.orgs.get(org).map(AsRef::as_ref)
    }

    /// Whether this index holds version `content` of certificate `certificate_id`'s CRL
    /// (of organization `org`): a read leaves its DER out.
    pub fn holds_crl(&self, org: &str, certificate_id: &str, content: &str) -> bool {
        self.part(org)
            .and_then(|p| p.stored_crls.get(certificate_id))
            .is_some_and(|(_, c)| c.content == content)
    }

    /// The CRL versions this index holds, to pass to the next snapshot read
    /// ([`crate::store::Store::trust_snapshot`]) so that it leaves their DER out.
    pub fn crl_versions(&self) -> HashSet<CrlVersion> {
        self.orgs
            .values()
            .flat_map(|p| p.stored_crls.values())
            .map(|(_, c)| (c.certificate_id.clone(), c.content.clone()))
            .collect()
    }

    /// CRL bytes (DER) read from the store for this index and every one it was built from: a
    /// reload that reads none leaves it unchanged (`certgate_trust_crl_bytes_read_total`).
    pub fn crl_bytes_read(&self) -> u64 {
        self.crl_bytes_read
    }

    /// Number of anchor certificates (distinct within each organization).
    pub fn len(&self) -> usize {
        self.anchor_count
    }

    pub fn is_empty(&self) -> bool {
        self.anchor_count == 0
    }

    pub fn has_organization(&self, org: &str) -> bool {
        self.part(org).is_some_and(|p| p.exists)
    }

    /// Whether the verified `path` (leaf first, anchor last) is revoked for `org`: one of its
    /// certificates is deny-listed, or is listed in the stored CRL of the certificate that
    /// issued it (the anchor's CRL covers what the anchor issued).
    pub(super) fn revokes(&self, org: &str, path: &[super::chain::PathCert]) -> bool {
        let Some(part) = self.part(org) else {
            return false;
        };
        if path.iter().any(|c| part.revoked.contains(&c.sha256)) {
            return true;
        }
        if part.crls.is_empty() {
            return false;
        }
        path.windows(2).any(|pair| {
            part.crls
                .get(&pair[1].sha256)
                .is_some_and(|crl| crl.serials.contains(&pair[0].serial))
        })
    }

    /// What the OCSP step of a decision needs (decisions.md D61): `None` when the admitting
    /// CA's mode is `off` (the common case, one map lookup), else the mode, the leaf and the
    /// certificate that issued it on the verified path (the anchor, or the intermediate next to
    /// the leaf).
    pub fn ocsp_subject(
        &self,
        admission: &super::Admission,
        peer: &super::PeerChain,
        checks: &super::ChainChecks,
    ) -> Option<super::OcspSubject> {
        let entry = self
            .part(&admission.organization)?
            .stored
            .get(&admission.certificate_id)?;
        if entry.stored.ocsp == crate::domain::OcspMode::Off {
            return None;
        }
        let Some(super::AnchorCheck::Genuine { path, .. }) = checks.get(&entry.parsed.group) else {
            return None;
        };
        let issuer_sha256 = path.get(1)?.sha256.clone();
        let issuer = if path.len() == 2 {
            entry.parsed.der.clone()
        } else {
            peer.cert_with_sha256(&issuer_sha256)?.clone()
        };
        Some(super::OcspSubject {
            mode: entry.stored.ocsp,
            leaf: peer.leaf()?.clone(),
            leaf_sha256: peer.leaf_sha256().to_owned(),
            issuer,
            issuer_sha256,
        })
    }

    /// Whether `project` is an unarchived project of `org`.
    pub fn has_project(&self, org: &str, project: &str) -> bool {
        self.part(org).is_some_and(|p| p.projects.contains(project))
    }
}

/// The part of `org` being changed: taken from `orgs` (its sources) when first touched.
fn open_part<'t, 'd>(
    touched: &'t mut BTreeMap<&'d str, OrgTrust>,
    orgs: &HashMap<String, Arc<OrgTrust>>,
    org: &'d str,
) -> &'t mut OrgTrust {
    touched.entry(org).or_insert_with(|| {
        orgs.get(org)
            .map_or_else(OrgTrust::default, |p| p.sources())
    })
}

/// One organization's rows of a snapshot.
#[derive(Default)]
struct OrgSources<'a> {
    exists: bool,
    projects: HashSet<String>,
    revoked: HashSet<String>,
    anchors: Vec<&'a StoredAnchor>,
    crls: Vec<&'a StoredCrl>,
}

impl OrgTrust {
    /// What the part is built from, to change and rebuild (the lookup tables are left out).
    fn sources(&self) -> OrgTrust {
        OrgTrust {
            exists: self.exists,
            projects: self.projects.clone(),
            revoked: Arc::clone(&self.revoked),
            stored: self.stored.clone(),
            stored_crls: self.stored_crls.clone(),
            ..OrgTrust::default()
        }
    }

    /// Adds (or replaces) an active certificate object, reusing what `before` decoded and
    /// compiled of it; one whose PEM does not decode is skipped and logged (by id only).
    fn put_anchor(&mut self, a: &StoredAnchor, before: Option<&OrgTrust>) {
        let held = before.and_then(|p| p.stored.get(&a.certificate_id));
        let parsed = match held {
            Some(e) => Arc::clone(&e.parsed),
            None => {
                if let Some(p) = decode_anchor(&a.pem) {
                    Arc::new(p)
                } else {
                    tracing::warn!(certificate_id = %a.certificate_id, "active certificate could not be decoded as a trust anchor; ignored");
                    return;
                }
            }
        };
        let filter = a.client_filter.as_ref().map(|source| {
            match held
                .filter(|e| e.stored.client_filter.as_ref() == Some(source))
                .and_then(|e| e.filter.as_ref())
            {
                Some(done) => Arc::clone(done),
                None => Arc::new(StoredFilter::new(&a.certificate_id, source)),
            }
        });
        self.stored.insert(
            a.certificate_id.clone(),
            Arc::new(StoredEntry {
                stored: a.clone(),
                parsed,
                filter,
            }),
        );
    }

    /// Adds (or replaces) a CA's CRL, reusing the serials `before` holds of that version;
    /// returns the DER bytes the read fetched for it.
    fn put_crl(&mut self, crl: &StoredCrl, before: Option<&OrgTrust>) -> u64 {
        let bytes = crl.fetched.as_ref().map_or(0, |f| f.bytes);
        let held = before
            .and_then(|p| p.stored_crls.get(&crl.certificate_id))
            .filter(|(_, c)| c.content == crl.content)
            .map(|(_, c)| c);
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
                return bytes;
            }
            (None, None) => {
                // The read was made for another index than `before`.
                tracing::error!(certificate_id = %crl.certificate_id, "CRL left out of the read as held, but not held; its revocations are not enforced until the next reload");
                return bytes;
            }
        };
        self.stored_crls.insert(
            crl.certificate_id.clone(),
            (crl.issuer_sha256.clone(), serials),
        );
        bytes
    }

    /// Builds the lookup tables from `stored` and `stored_crls`, in certificate id order (a
    /// deterministic choice of the admitting certificate object, and of the CRL that decides
    /// for an issuer uploaded twice).
    fn rebuild(&mut self) {
        self.anchors.clear();
        self.by_subject.clear();
        self.by_ski.clear();
        self.crls.clear();
        // Same certificate: same SHA-256 of its DER (hashing 32 bytes' hex, not the DER).
        let mut by_der: HashMap<&str, usize> = HashMap::new();
        for (id, e) in &self.stored {
            let a = &e.stored;
            let activation = Activation {
                certificate_id: id.clone(),
                org_id: a.org_id.clone(),
                org_wide: a.org_wide,
                projects: a.projects.clone(),
                filter: e.filter.clone(),
            };
            if let Some(&i) = by_der.get(e.parsed.sha256.as_str()) {
                self.anchors[i].activations.push(activation);
                continue;
            }
            let i = self.anchors.len();
            by_der.insert(e.parsed.sha256.as_str(), i);
            self.by_subject
                .entry(a.subject_der.clone())
                .or_default()
                .push(i);
            self.by_ski.entry(a.ski.clone()).or_default().push(i);
            self.anchors.push(IndexedAnchor {
                parsed: Arc::clone(&e.parsed),
                valid_at: a.valid_at,
                expires_at: a.expires_at,
                activations: vec![activation],
            });
        }
        for (issuer, serials) in self.stored_crls.values() {
            self.crls.insert(issuer.clone(), Arc::clone(serials));
        }
    }
}

mod view;
pub use view::{AnchorView, IndexView, OrgView};

#[cfg(test)]
mod tests;

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
