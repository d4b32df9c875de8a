//! The objects certgate keeps, as the rules and the API see them.

use super::ids::{CertificateId, KeyId, OrgId, ProjectId};
use super::keys::AdminKeySecret;

/// An uploaded CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub id: CertificateId,
    pub name: Option<String>,
    pub created_at: i64,
    pub valid_at: i64,
    pub expires_at: i64,
    /// The PEM exactly as uploaded; filled only when asked for.
    pub content: Option<String>,
}

/// A certificate with its activation flag for the scope it was listed or toggled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedCertificate {
    pub certificate: Certificate,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub external_key_id: Option<String>,
    pub residency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: i64,
}

/// A freshly made admin key: the only moment its value exists outside the client.
#[derive(Debug, Clone)]
pub struct NewAdminKey {
    pub id: KeyId,
    pub name: String,
    pub value: AdminKeySecret,
    pub redacted_value: String,
    pub created_at: i64,
}
