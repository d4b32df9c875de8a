//! Every refusal a rule can give, with its message (written for the person reading it) and
//! its `code` in OpenAI's error body ([`DomainError::code`], the one table of codes: the API
//! answers with it, the CLI prints it). The API layer adds each variant's status and `param`.

use super::revocation::{MAX_CRL_BYTES_PER_ORG, MAX_REVOCATIONS};
use super::rules::{MAX_CERTIFICATES_PER_ORG, MAX_CERTIFICATE_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("This organization already has {MAX_CERTIFICATES_PER_ORG} certificates, the most allowed. Delete an unused certificate before uploading another.")]
    CertificateLimitReached,
    #[error("This certificate was already uploaded to this organization as '{existing_id}'.")]
    CertificateAlreadyExists { existing_id: String },
    #[error("The certificate field contains a private key. Upload only the CA certificate (a PEM 'CERTIFICATE' block); keep private keys secret.")]
    PrivateKeyNotAllowed,
    #[error("The certificate is {len} bytes; the limit is {MAX_CERTIFICATE_BYTES} bytes (16 KB).")]
    CertificateTooLarge { len: usize },
    #[error("Invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("{0}")]
    InvalidToggleIds(String),
    #[error("No certificate found with id '{0}'. Nothing was changed.")]
    UnknownToggleId(String),
    #[error("{0}")]
    CertificateInUse(String),
    #[error("Project '{0}' is archived; archived projects cannot be changed or have certificates activated.")]
    ProjectArchived(String),
    #[error("'{0}' is the organization's last unexpired admin key; deleting it would lock the organization out. Create another key first (the CLI can always mint one: certgate key create).")]
    LastAdminKey(String),
    #[error("The default project cannot be modified.")]
    DefaultProjectUpdate,
    #[error("The default project cannot be archived.")]
    DefaultProjectArchive,
    #[error("Invalid 'sha256_fingerprint': {0}")]
    InvalidFingerprint(String),
    #[error("This certificate is already revoked in this organization as '{existing_id}'.")]
    CertificateAlreadyRevoked { existing_id: String },
    #[error("This organization already has {MAX_REVOCATIONS} revoked certificates, the most allowed. Delete entries for certificates that have expired, or revoke by CRL.")]
    RevocationLimitReached,
    #[error("Invalid CRL: {0}")]
    InvalidCrl(String),
    #[error("The CRL's thisUpdate ({given}) is older than the stored CRL's ({stored}); upload a newer CRL.")]
    CrlOutdated { stored: i64, given: i64 },
    /// Storing the CRL would take the organization's stored CRLs past [`MAX_CRL_BYTES_PER_ORG`].
    #[error("This CRL is {given} bytes; with it, this organization's stored CRLs would take {total} bytes, and the limit is {MAX_CRL_BYTES_PER_ORG} bytes (32 MiB). Delete the CRLs of CA certificates you no longer use, or the certificates themselves.")]
    CrlStorageLimitReached { given: i64, total: i64 },
    #[error("Invalid 'client_filter': {0}")]
    InvalidClientFilter(String),
    #[error("No {kind} found with id '{id}'.")]
    NotFound { kind: &'static str, id: String },
    /// A rotation's `from` or `to` names no certificate of the organization (`param` says which).
    #[error("No certificate found with id '{id}'. Nothing was changed.")]
    UnknownCertificate { param: &'static str, id: String },
    /// A rotation's `from` is active nowhere.
    #[error("{0}")]
    CertificateNotActive(String),
    /// A rotation's `to` cannot take over (it expired).
    #[error("Invalid certificate: {0}")]
    InvalidRotationTarget(String),
    /// A rotation would retire `from` in favour of a CA that is not valid yet.
    #[error("{0}")]
    CertificateNotYetValid(String),
    #[error("{message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
}

impl DomainError {
    /// The `code` of OpenAI's error body for this refusal (`None`: the body's `code` is null).
    pub fn code(&self) -> Option<&'static str> {
        use DomainError as D;
        Some(match self {
            D::CertificateLimitReached => "certificate_limit_reached",
            D::CertificateAlreadyExists { .. } => "certificate_already_exists",
            D::PrivateKeyNotAllowed => "private_key_not_allowed",
            D::CertificateTooLarge { .. } => "certificate_too_large",
            D::InvalidCertificate(_) | D::InvalidRotationTarget(_) => "invalid_certificate",
            D::CertificateInUse(_) => "certificate_in_use",
            D::ProjectArchived(_) => "project_archived",
            D::LastAdminKey(_) => "last_admin_key",
            D::DefaultProjectUpdate => "default_project_update",
            D::DefaultProjectArchive => "default_project_archive",
            D::InvalidFingerprint(_) => "invalid_fingerprint",
            D::CertificateAlreadyRevoked { .. } => "certificate_already_revoked",
            D::RevocationLimitReached => "revocation_limit_reached",
            D::InvalidCrl(_) => "invalid_crl",
            D::CrlOutdated { .. } => "crl_outdated",
            D::CrlStorageLimitReached { .. } => "crl_storage_limit_reached",
            D::InvalidClientFilter(_) => "invalid_client_filter",
            D::CertificateNotActive(_) => "certificate_not_active",
            D::CertificateNotYetValid(_) => "certificate_not_yet_valid",
            D::InvalidToggleIds(_)
            | D::UnknownToggleId(_)
            | D::NotFound { .. }
            | D::UnknownCertificate { .. }
            | D::InvalidParam { .. } => return None,
        })
    }

    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        DomainError::InvalidParam {
            param,
            message: message.into(),
        }
    }
}
