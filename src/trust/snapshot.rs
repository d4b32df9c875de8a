//! What the decision is made from: everything that decides who may connect, as of one trust
//! generation. The store fills it (in one read transaction); this module only reads it.

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
}

/// Everything that decides who may connect, as of `generation`.
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshot {
    pub generation: i64,
    pub anchors: Vec<TrustAnchor>,
    pub organizations: Vec<String>,
    /// (organization, project) for every unarchived project.
    pub projects: Vec<(String, String)>,
}
