//! What the decision is made from: everything that decides who may connect, as of one trust
//! generation. The store fills it (in one read transaction); this module only reads it.

use std::sync::Arc;

use crate::crl::SerialSet;

/// A CA certificate active somewhere.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    pub certificate_id: String,
    pub org_id: String,
    /// Active for the whole organization (and so for all its projects).
    pub org_wide: bool,
    /// Projects it is active for on its own.
    pub projects: Vec<String>,
    /// The PEM text as uploaded.
    pub pem: String,
    /// The subject Name (DER) and Subject Key Identifier, as recorded at upload: how a client's
    /// chain finds its candidate anchors.
    pub subject_der: Vec<u8>,
    pub ski: Vec<u8>,
    pub valid_at: i64,
    pub expires_at: i64,
    /// The certificate object's client filter (CEL), if it has one.
    pub client_filter: Option<String>,
    /// Whether and how its clients' OCSP responders are asked (decisions.md D61).
    pub ocsp: crate::domain::OcspMode,
}

/// What OCSP is asked about for one admitted client (decisions.md D61): the leaf and the
/// certificate that issued it on the verified path, under the admitting CA's mode.
#[derive(Debug, Clone)]
pub struct OcspSubject {
    /// Never `off`.
    pub mode: crate::domain::OcspMode,
    pub leaf: rustls_pki_types::CertificateDer<'static>,
    /// Lowercase hex SHA-256 of the leaf's DER: how it is logged and cached.
    pub leaf_sha256: String,
    pub issuer: rustls_pki_types::CertificateDer<'static>,
    pub issuer_sha256: String,
}

/// Everything that decides who may connect, as of `generation`.
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshot {
    pub generation: i64,
    pub anchors: Vec<TrustAnchor>,
    pub organizations: Vec<String>,
    /// (organization, project) for every unarchived project.
    pub projects: Vec<(String, String)>,
    /// (organization, lowercase hex SHA-256) of every deny-listed certificate.
    pub revoked: Vec<(String, String)>,
    /// The stored CRL of every CA certificate active somewhere (for the organization or an
    /// unarchived project): a CRL only decides for an anchor that can admit, or for what such an
    /// anchor issued, so those of inactive CAs are not read at all.
    pub crls: Vec<StoredCrl>,
}

/// One version of a CA's CRL: (CA certificate id, content hash). The snapshot read is given the
/// versions the caller already holds and leaves their DER out.
pub type CrlVersion = (String, String);

/// A CRL stored for a CA certificate object active somewhere.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    pub org_id: String,
    pub certificate_id: String,
    /// Lowercase hex SHA-256 of the CA certificate's DER: the issuer the CRL speaks for.
    pub issuer_sha256: String,
    /// What identifies this version: the lowercase hex SHA-256 of the DER (`seq:N` for a CRL
    /// stored before certgate recorded the hash, N moving with every store).
    pub content: String,
    /// What the read fetched of this version; `None` when the caller said it holds it.
    pub fetched: Option<FetchedCrl>,
}

/// A CRL version the snapshot read fetched and parsed (on the blocking pool); its DER is not
/// kept.
#[derive(Debug, Clone)]
pub struct FetchedCrl {
    /// Size of the DER read.
    pub bytes: u64,
    /// The serials it revokes; `Err` when the stored CRL does not parse (it was checked at
    /// upload, so only corruption can do that).
    pub serials: Result<Arc<SerialSet>, String>,
}

/// What changed since a generation, re-read as of `generation` in one read transaction
/// (decisions.md D50): the rows each change record since `since` named, and nothing else.
/// Applied to the index of `since` ([`super::TrustIndex::apply`]), it gives the index a full
/// snapshot of `generation` would build.
#[derive(Debug, Clone, Default)]
pub struct TrustDelta {
    /// The generation the reader held.
    pub since: i64,
    pub generation: i64,
    /// Organizations re-read whole: whether each exists, and all its unarchived projects.
    pub organizations: Vec<OrganizationState>,
    /// (organization, project, whether it exists unarchived) of each project named.
    pub projects: Vec<(String, String, bool)>,
    /// Each certificate object named, as a full snapshot would hold it (`None`: not active
    /// anywhere, or deleted). Its CRL is in `crls`.
    pub certificates: Vec<CertificateState>,
    /// The CRL of each certificate object named (as a certificate or as a CRL).
    pub crls: Vec<CrlState>,
    /// (organization, lowercase hex SHA-256, whether it is deny-listed) of each entry named.
    pub revoked: Vec<(String, String, bool)>,
    /// Rows the change records themselves took (for the cost figures).
    pub records: usize,
}

/// An organization, re-read whole.
#[derive(Debug, Clone)]
pub struct OrganizationState {
    pub org_id: String,
    pub exists: bool,
    pub projects: Vec<String>,
}

/// A certificate object, re-read.
#[derive(Debug, Clone)]
pub struct CertificateState {
    pub org_id: String,
    pub certificate_id: String,
    /// `None` when it is active nowhere (or deleted): it is then no anchor.
    pub anchor: Option<TrustAnchor>,
}

/// A certificate object's CRL, re-read.
#[derive(Debug, Clone)]
pub struct CrlState {
    pub org_id: String,
    pub certificate_id: String,
    /// `None` when it has none, or its CA is active nowhere (the CRL then decides nothing).
    pub crl: Option<StoredCrl>,
}

/// What a reader holding a generation gets: the changes since, or word that some of them are
/// gone (pruned, or written by a version that recorded none) and the full state must be read.
#[derive(Debug, Clone)]
pub enum TrustChanges {
    Delta(TrustDelta),
    Gap {
        /// The generation the database is at.
        generation: i64,
    },
}
