//! Shapes of one Rust type under several OpenAI names, and the audit log's event payloads.

use utoipa::ToSchema;

use super::constant;
use crate::api::dto::{AuditProject, CertificateDetails};

// ------------------------------------------------- shapes of one type under several names

/// An item of the organization's certificate list and of its toggles.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationCertificate {
    #[schema(schema_with = constant::organization_certificate)]
    object: String,
    id: String,
    #[schema(required = true)]
    name: Option<String>,
    created_at: i64,
    certificate_details: CertificateDetails,
    /// Active for the whole organization.
    active: bool,
}

/// An item of a project's certificate list and of its toggles.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationProjectCertificate {
    #[schema(schema_with = constant::organization_project_certificate)]
    object: String,
    id: String,
    #[schema(required = true)]
    name: Option<String>,
    created_at: i64,
    certificate_details: CertificateDetails,
    /// Active for this project.
    active: bool,
}

/// The answer of `POST /organization/certificates/activate`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationCertificateActivationResponse {
    #[schema(schema_with = constant::organization_activation)]
    object: String,
    data: Vec<OrganizationCertificate>,
}

/// The answer of `POST /organization/certificates/deactivate`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationCertificateDeactivationResponse {
    #[schema(schema_with = constant::organization_deactivation)]
    object: String,
    data: Vec<OrganizationCertificate>,
}

/// The answer of `POST /organization/projects/{project_id}/certificates/activate`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationProjectCertificateActivationResponse {
    #[schema(schema_with = constant::project_activation)]
    object: String,
    data: Vec<OrganizationProjectCertificate>,
}

/// The answer of `POST /organization/projects/{project_id}/certificates/deactivate`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrganizationProjectCertificateDeactivationResponse {
    #[schema(schema_with = constant::project_deactivation)]
    object: String,
    data: Vec<OrganizationProjectCertificate>,
}

// ------------------------------------------------------------------------ audit log

/// An audit event: the common fields, plus one property named exactly like its `type`
/// holding the event's details (decisions.md D16).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditLog {
    /// `audit_log-…`; sorts by time.
    id: String,
    #[schema(rename = "type", schema_with = constant::audit_event_types)]
    kind: String,
    effective_at: i64,
    /// Null for changes made with the CLI or at bootstrap.
    #[schema(required = true)]
    actor: Option<AuditLogActor>,
    /// The project acted on (project toggles and `project.*` events).
    #[schema(nullable = false)]
    project: Option<AuditProject>,
    #[schema(rename = "certificate.created", nullable = false)]
    certificate_created: Option<AuditCertificateCreated>,
    #[schema(rename = "certificate.updated", nullable = false)]
    certificate_updated: Option<AuditCertificateUpdated>,
    #[schema(rename = "certificate.deleted", nullable = false)]
    certificate_deleted: Option<AuditCertificateDeleted>,
    #[schema(rename = "certificates.activated", nullable = false)]
    certificates_activated: Option<AuditCertificates>,
    #[schema(rename = "certificates.deactivated", nullable = false)]
    certificates_deactivated: Option<AuditCertificates>,
    #[schema(rename = "project.created", nullable = false)]
    project_created: Option<AuditProjectCreated>,
    #[schema(rename = "project.updated", nullable = false)]
    project_updated: Option<AuditProjectUpdated>,
    #[schema(rename = "project.archived", nullable = false)]
    project_archived: Option<AuditId>,
    #[schema(rename = "api_key.created", nullable = false)]
    api_key_created: Option<AuditApiKeyCreated>,
    #[schema(rename = "api_key.deleted", nullable = false)]
    api_key_deleted: Option<AuditId>,
    #[schema(rename = "certificate.revoked", nullable = false)]
    certificate_revoked: Option<AuditRevocation>,
    #[schema(rename = "certificate.unrevoked", nullable = false)]
    certificate_unrevoked: Option<AuditRevocation>,
    #[schema(rename = "certificate.crl_updated", nullable = false)]
    certificate_crl_updated: Option<AuditCrl>,
    /// The CA whose CRL was deleted.
    #[schema(rename = "certificate.crl_deleted", nullable = false)]
    certificate_crl_deleted: Option<AuditId>,
}

/// Who made a change: an admin key of the organization's owner.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditLogActor {
    #[schema(rename = "type", schema_with = constant::api_key)]
    kind: String,
    api_key: AuditLogActorApiKey,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditLogActorApiKey {
    /// The key's id, `key_…`.
    id: String,
    #[schema(rename = "type", schema_with = constant::user)]
    kind: String,
    user: AuditLogActorUser,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditLogActorUser {
    /// The organization's owner, `user_…`.
    id: String,
    /// Always null: certgate's owners have no email.
    #[schema(required = true)]
    email: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditId {
    id: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCertificate {
    id: String,
    /// Null for an unnamed certificate.
    #[schema(required = true)]
    name: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCertificateCreated {
    id: String,
    /// Null for an unnamed certificate.
    #[schema(required = true)]
    name: Option<String>,
    /// certgate's extension: present when the upload set a client filter.
    #[schema(nullable = false)]
    client_filter: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCertificateUpdated {
    id: String,
    #[schema(required = true)]
    name: Option<String>,
    /// certgate's extension: present when the call set or cleared the client filter (null).
    client_filter: Option<String>,
}

/// A deny-list entry made (`certificate.revoked`) or removed (`certificate.unrevoked`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditRevocation {
    /// The entry, `revcert_…`.
    id: String,
    sha256_fingerprint: String,
    #[schema(required = true)]
    reason: Option<String>,
}

/// A CA's CRL stored or replaced.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCrl {
    /// The CA, `cert_…`.
    id: String,
    this_update: i64,
    #[schema(required = true)]
    next_update: Option<i64>,
    revoked_count: i64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCertificateDeleted {
    id: String,
    #[schema(required = true)]
    name: Option<String>,
    /// The PEM as it was uploaded.
    certificate: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditCertificates {
    /// Every certificate the call named, in request order.
    certificates: Vec<AuditCertificate>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditProjectCreated {
    id: String,
    data: AuditProjectData,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditProjectData {
    name: String,
    /// The name again (OpenAI's dashboard calls it the title).
    title: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditProjectUpdated {
    id: String,
    changes_requested: AuditProjectChanges,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditProjectChanges {
    /// The new name, when the call renamed the project.
    #[schema(nullable = false)]
    title: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditApiKeyCreated {
    id: String,
    data: AuditApiKeyData,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditApiKeyData {
    /// Always empty: admin keys have every scope.
    scopes: Vec<String>,
}
