//! [`IndexView`]: what a [`TrustIndex`] decides from, in a form two indexes can be compared
//! by: the reconcile (an index kept up to date by changes against one built from a full
//! snapshot) and the tests.

use std::collections::{BTreeMap, BTreeSet};

use super::{OrgTrust, TrustIndex};

/// Everything a [`TrustIndex`] decides from, ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexView {
    pub generation: Option<i64>,
    pub organizations: BTreeMap<String, OrgView>,
}

/// One organization's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgView {
    pub exists: bool,
    pub projects: BTreeSet<String>,
    pub revoked: BTreeSet<String>,
    /// By certificate id.
    pub anchors: BTreeMap<String, AnchorView>,
    /// By issuer SHA-256: (certificate id, content hash, serials).
    pub crls: BTreeMap<String, (String, String, usize)>,
    /// The lookup tables: subject (hex) and key identifier (hex) → the SHA-256 of the anchors
    /// found under it.
    pub by_subject: BTreeMap<String, Vec<String>>,
    pub by_ski: BTreeMap<String, Vec<String>>,
}

/// An active certificate object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorView {
    pub sha256: String,
    pub org_wide: bool,
    pub projects: BTreeSet<String>,
    pub valid_at: i64,
    pub expires_at: i64,
    pub filter: Option<String>,
    /// The OCSP mode (`off`, `soft_fail`, `hard_fail`).
    pub ocsp: &'static str,
}

impl TrustIndex {
    /// What this index decides from; organizations with nothing in them and no row are left
    /// out (an index may hold such a part after a change named one).
    pub fn view(&self) -> IndexView {
        IndexView {
            generation: self.generation,
            organizations: self
                .orgs
                .iter()
                .map(|(org, part)| (org.clone(), part.view()))
                .filter(|(_, v)| v.exists || !v.is_empty())
                .collect(),
        }
    }
}

impl OrgView {
    fn is_empty(&self) -> bool {
        self.projects.is_empty()
            && self.revoked.is_empty()
            && self.anchors.is_empty()
            && self.crls.is_empty()
    }
}

impl OrgTrust {
    fn view(&self) -> OrgView {
        let mut anchors = BTreeMap::new();
        for a in &self.anchors {
            for act in &a.activations {
                anchors.insert(
                    act.certificate_id.clone(),
                    AnchorView {
                        sha256: a.parsed.sha256.clone(),
                        org_wide: act.org_wide,
                        projects: act.projects.iter().cloned().collect(),
                        valid_at: a.valid_at,
                        expires_at: a.expires_at,
                        filter: self
                            .stored
                            .get(&act.certificate_id)
                            .and_then(|e| e.stored.client_filter.clone()),
                        ocsp: self
                            .stored
                            .get(&act.certificate_id)
                            .map_or("off", |e| e.stored.ocsp.as_str()),
                    },
                );
            }
        }
        let table = |t: &std::collections::HashMap<Vec<u8>, Vec<usize>>| {
            t.iter()
                .map(|(k, at)| {
                    let mut shas: Vec<String> = at
                        .iter()
                        .filter_map(|&i| self.anchors.get(i))
                        .map(|a| a.parsed.sha256.clone())
                        .collect();
                    shas.sort();
                    (hex::encode(k), shas)
                })
                .collect()
        };
        OrgView {
            exists: self.exists,
            projects: self.projects.iter().cloned().collect(),
            revoked: self.revoked.iter().cloned().collect(),
            anchors,
            crls: self
                .crls
                .iter()
                .map(|(issuer, c)| {
                    (
                        issuer.clone(),
                        (c.certificate_id.clone(), c.content.clone(), c.serials.len()),
                    )
                })
                .collect(),
            by_subject: table(&self.by_subject),
            by_ski: table(&self.by_ski),
        }
    }
}
