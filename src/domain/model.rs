//! The objects certgate keeps, as the rules and the API see them.

use super::ids::{CertificateId, KeyId, OrgId, ProjectId};
use super::insight::Activations;
use super::keys::AdminKeySecret;

/// An uploaded CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub id: CertificateId,
    pub name: Option<String>,
    pub created_at: i64,
    pub valid_at: i64,
    pub expires_at: i64,
    /// The PEM exactly as uploaded; filled only when asked for (to be shown, or for the
    /// details computed from it).
    pub content: Option<String>,
    /// Where it is active; filled only when details were asked for.
    pub activations: Option<Activations>,
    /// Its stored CRL; read only when details were asked for.
    pub crl: Option<super::CrlSummary>,
    /// The CEL expression a client must satisfy for this CA to admit it (decisions.md D26).
    pub client_filter: Option<String>,
    /// Where certgate fetches its CRL, and its OCSP mode (decisions.md D58).
    pub sources: super::RevocationSources,
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

/// The owner every admin key shows: one synthetic user per organization (decisions.md D15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub org_id: OrgId,
    /// The organization's name.
    pub name: String,
    /// The organization's `created_at`.
    pub created_at: i64,
}

impl KeyOwner {
    pub fn of(org: &Organization) -> Self {
        KeyOwner {
            org_id: org.id.clone(),
            name: org.name.clone(),
            created_at: org.created_at,
        }
    }

    /// `user_` and the organization id without `org-`.
    pub fn user_id(&self) -> String {
        owner_user_id(&self.org_id)
    }
}

/// The id of an organization's synthetic owner: `user_` and the organization id without `org-`.
pub fn owner_user_id(org: &OrgId) -> String {
    let raw = org.as_str();
    format!("user_{}", raw.strip_prefix("org-").unwrap_or(raw))
}

/// An admin key as it is listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    pub id: KeyId,
    pub name: String,
    pub redacted_value: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub owner: KeyOwner,
}

/// A freshly made admin key: the only moment its value exists outside the client.
#[derive(Debug, Clone)]
pub struct NewAdminKey {
    pub key: AdminKey,
    pub value: AdminKeySecret,
}
