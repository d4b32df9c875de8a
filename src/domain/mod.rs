//! The rules of certgate: identifiers, limits, scopes, toggles, the delete guard, admin key
//! values, the audit log's events, certificate insight (status, rotation) and the clock.
//!
//! Nothing here performs I/O or knows HTTP, JSON or SQL. The store calls these rules *inside*
//! its writing transactions, so a rule is checked against the state it is about to change.

mod audit;
mod clock;
mod error;
mod ids;
mod insight;
mod keys;
mod model;
mod page;
mod revocation;
mod rules;
mod sources;

pub use audit::{
    Actor, AuditEvent, CertificateRef, CrlFetch, FilterChange, ProjectRef, AUDIT_EVENT_TYPES,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::DomainError;
pub use ids::{
    echo, AuditEventId, AuditEventKind, CertificateId, CertificateKind, Id, IdKind, KeyId, KeyKind,
    OrgId, OrgKind, ProjectId, ProjectKind, RevokedCertificateId, RevokedCertificateKind,
    MAX_ID_LEN,
};
pub use insight::{
    check_rotation_source, check_rotation_target, parse_rotation_ids, Activations,
    CertificateInclude, CertificateStatus, Rotation, EXPIRING_SOON_SECS,
};
pub use keys::{
    admin_key_digest, key_expired, parse_key_lifetime, AdminKeySecret, MAX_KEY_LIFETIME_SECS,
};
pub use model::{
    owner_user_id, AdminKey, Certificate, KeyOwner, NewAdminKey, Organization, Project,
    ScopedCertificate,
};
pub use page::{unknown_cursor, Limit, Order, Page, PageRequest};
pub use revocation::{
    check_crl_newer, check_crl_storage, check_revocation_limit, parse_fingerprint, parse_reason,
    CrlSummary, RevokedCertificate, MAX_CLIENT_FILTER_BYTES, MAX_CRL_BYTES_PER_ORG,
    MAX_REASON_CHARS, MAX_REVOCATIONS,
};
pub use rules::{
    check_certificate_limit, check_deletable, parse_name, parse_required_name, parse_residency,
    Scope, ToggleIds, MAX_CERTIFICATES_PER_ORG, MAX_CERTIFICATE_BYTES, MAX_NAME_CHARS,
    MAX_TOGGLE_IDS, RESIDENCIES,
};
pub use sources::{parse_crl_url, OcspMode, RevocationSources, SourcesChange, MAX_CRL_URL_BYTES};
