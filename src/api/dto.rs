//! Wire shapes of OpenAI's Admin API, built from domain values by explicit conversions.
//! The field names and `object` strings are a contract someone else owns (OpenAI's reference).
//!
//! Each shape also describes itself for `/openapi.json` (`ToSchema`; the `#[schema]`
//! attributes say what serde alone cannot: constant `object` strings, fields that are always
//! present but may be null). Where one Rust type answers under several OpenAI schemas (list
//! items, toggle answers, audit events), `api::openapi` describes each of them.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::openapi::constant;

use crate::domain::{
    owner_user_id, Activations, AdminKey, Certificate, CertificateInclude, CertificateStatus,
    DomainError, OrgId, Page, Project, Rotation, ScopedCertificate,
};
use crate::store::AuditRecord;

#[derive(Serialize, ToSchema)]
pub struct CertificateDetails {
    /// notBefore of the certificate, Unix seconds.
    pub valid_at: i64,
    /// notAfter of the certificate, Unix seconds.
    pub expires_at: i64,
    /// The PEM as uploaded; only with `include[]=content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub content: Option<String>,
    /// certgate's extension (decisions.md D19), only with `include[]=details`: its fields sit
    /// beside `valid_at` and `expires_at`. The document shows them as optional properties of
    /// `CertificateDetails` (`openapi::describe_details`): utoipa cannot flatten an `Option`.
    #[serde(flatten)]
    #[schema(ignore)]
    pub details: Option<Details>,
}

/// What `include[]=details` adds to `certificate_details`.
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateDetailsExtension)]
pub struct Details {
    /// SHA-256 of the certificate's DER, 64 lowercase hex digits.
    pub sha256_fingerprint: String,
    /// Base64 of the SHA-256 of the certificate's `SubjectPublicKeyInfo` (an HPKP-style pin).
    pub spki_sha256: String,
    /// RFC 4514.
    pub subject: String,
    /// RFC 4514.
    pub issuer: String,
    /// Lowercase hex.
    pub serial_number: String,
    /// `rsa-<modulus bits>` (`rsa-2048`, `rsa-3072`, `rsa-4096`, or the exact size of any
    /// other accepted modulus, e.g. `rsa-8192`), `ecdsa-p256`, `ecdsa-p384` or `ed25519`.
    pub key_algorithm: String,
    /// `not_yet_valid`, `valid`, `expiring_soon` or `expired`, at request time.
    #[schema(schema_with = constant::certificate_status)]
    pub status: &'static str,
    /// The CA's stored CRL; null while none is stored.
    #[schema(required = true)]
    pub crl: Option<CrlSummary>,
}

/// `certificate_details.crl` (decisions.md D19, D23).
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCrlSummary)]
pub struct CrlSummary {
    /// The CRL's thisUpdate, Unix seconds.
    pub this_update: i64,
    /// The CRL's nextUpdate, Unix seconds; null when it has none.
    #[schema(required = true)]
    pub next_update: Option<i64>,
    /// Serial numbers the CRL revokes.
    pub revoked_count: i64,
    /// `next_update` has passed: upload a newer CRL (the gateway keeps enforcing this one).
    pub stale: bool,
}

/// Top-level `activations` of a certificate shown with details.
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateActivations)]
pub struct ActivationsObject {
    /// Active for the whole organization.
    pub organization: bool,
    /// The projects it is active for, `proj_…`.
    pub projects: Vec<String>,
}

impl From<Activations> for ActivationsObject {
    fn from(a: Activations) -> Self {
        ActivationsObject {
            organization: a.organization,
            projects: a
                .projects
                .into_iter()
                .map(crate::domain::ProjectId::into_string)
                .collect(),
        }
    }
}

/// A CA certificate, as upload, retrieve and modify answer it (`object: "certificate"`).
#[derive(Serialize, ToSchema)]
#[schema(as = Certificate)]
pub struct CertificateObject {
    #[schema(schema_with = constant::certificate)]
    pub object: &'static str,
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub created_at: i64,
    pub certificate_details: CertificateDetails,
    /// Present in lists and toggles, never on upload/get/modify.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
    /// Only with `include[]=details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub activations: Option<ActivationsObject>,
    /// certgate's extension (decisions.md D26): only when one is set, so a client that never sets
    /// one sees OpenAI's shape exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_filter: Option<String>,
    /// certgate's extension (decisions.md D58): only when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub crl_url: Option<String>,
    /// certgate's extension (decisions.md D58): `soft_fail` or `hard_fail`; absent when off.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<super::requests::OcspSetting>)]
    pub ocsp: Option<&'static str>,
}

impl CertificateObject {
    /// `object: "certificate"`, as upload, get and modify answer.
    pub fn single(c: Certificate) -> Self {
        Self::build("certificate", c, None)
    }

    /// A list or toggle item: `organization.certificate` or `organization.project.certificate`.
    pub fn scoped(object: &'static str, s: ScopedCertificate) -> Self {
        Self::build(object, s.certificate, Some(s.active))
    }

    /// A get (`single`) or list item (`scoped`) with what `include` asks for: the content
    /// only when asked for, the details computed from the stored PEM with the status at `now`.
    /// Fails only on a stored PEM that no longer parses, which uploads never store.
    pub fn included(
        object: &'static str,
        mut c: Certificate,
        active: Option<bool>,
        include: CertificateInclude,
        now: i64,
    ) -> Result<Self, DomainError> {
        let details = match (include.details, &c.content) {
            (true, Some(pem)) => {
                let facts = crate::x509::certificate_details(pem)?;
                Some(Details {
                    sha256_fingerprint: facts.sha256_fingerprint,
                    spki_sha256: facts.spki_sha256,
                    subject: facts.subject,
                    issuer: facts.issuer,
                    serial_number: facts.serial_number,
                    key_algorithm: facts.key_algorithm,
                    status: CertificateStatus::at(c.valid_at, c.expires_at, now).as_str(),
                    crl: c.crl.take().map(|crl| CrlSummary {
                        this_update: crl.this_update,
                        next_update: crl.next_update,
                        revoked_count: crl.revoked_count,
                        stale: crl.stale(now),
                    }),
                })
            }
            _ => None,
        };
        if !include.content {
            c.content = None;
        }
        let mut built = Self::build(object, c, active);
        built.certificate_details.details = details;
        Ok(built)
    }

    fn build(object: &'static str, c: Certificate, active: Option<bool>) -> Self {
        CertificateObject {
            object,
            id: c.id.into_string(),
            name: c.name,
            created_at: c.created_at,
            certificate_details: CertificateDetails {
                valid_at: c.valid_at,
                expires_at: c.expires_at,
                content: c.content,
                details: None,
            },
            active,
            activations: c.activations.map(ActivationsObject::from),
            client_filter: c.client_filter,
            ocsp: c.sources.ocsp.stored(),
            crl_url: c.sources.crl_url,
        }
    }
}

/// The check endpoint's answer (decisions.md D20): would the gateway admit this client?
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCheckResponse)]
pub struct CertificateCheck {
    #[schema(schema_with = constant::certificate_check)]
    pub object: &'static str,
    pub admitted: bool,
    /// The gateway's refusal code; null when admitted.
    #[schema(required = true)]
    pub code: Option<&'static str>,
    /// What the gateway would answer, for a person.
    pub message: String,
    /// The active CA that admits the client; null when refused.
    #[schema(required = true)]
    pub certificate: Option<CertificateName>,
    /// certgate's extension (decisions.md D61): what the client's OCSP responder said; only
    /// when the CA's `ocsp` mode is not `off` and the chain got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<CheckOcsp>,
}

/// What OCSP said in a check.
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCheckOcsp)]
pub struct CheckOcsp {
    /// The CA's mode: `soft_fail` or `hard_fail`.
    pub mode: &'static str,
    /// `good`, `revoked`, `unknown`, or `no_answer` (unreachable, too slow, malformed, not
    /// signed by the CA or its delegated responder, not about this certificate, stale).
    pub status: &'static str,
    /// Why there is no valid answer, in certgate's words (never the responder's); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The answer's thisUpdate and nextUpdate (Unix seconds), when there is an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_update: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<i64>,
}

impl From<crate::ocsp::checker::OcspSaid> for CheckOcsp {
    fn from(said: crate::ocsp::checker::OcspSaid) -> Self {
        let mode = said.mode.as_str();
        match said.outcome {
            Ok(answer) => CheckOcsp {
                mode,
                status: answer.state.as_str(),
                reason: None,
                this_update: Some(answer.this_update),
                next_update: answer.next_update,
            },
            Err(e) => CheckOcsp {
                mode,
                status: "no_answer",
                reason: Some(e.to_string()),
                this_update: None,
                next_update: None,
            },
        }
    }
}

impl From<crate::insight::Check> for CertificateCheck {
    fn from(check: crate::insight::Check) -> Self {
        use crate::insight::Check;
        let object = "organization.certificate_check";
        match check {
            Check::Admitted {
                certificate,
                name,
                message,
                ocsp,
            } => CertificateCheck {
                object,
                admitted: true,
                code: None,
                message,
                certificate: Some(CertificateName {
                    id: certificate.into_string(),
                    name,
                }),
                ocsp: ocsp.map(Into::into),
            },
            Check::Refused(rejection, ocsp) => CertificateCheck {
                object,
                admitted: false,
                code: Some(rejection.code()),
                message: rejection.to_string(),
                certificate: None,
                ocsp: ocsp.map(Into::into),
            },
        }
    }
}

/// The CA a check names.
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCheckCertificate)]
pub struct CertificateName {
    /// `cert_…`.
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
}

/// The rotate endpoint's answer (decisions.md D21).
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateRotationResponse)]
pub struct RotationObject {
    #[schema(schema_with = constant::certificate_rotation)]
    pub object: &'static str,
    /// The certificate rotated away from, `cert_…`.
    pub from: String,
    /// The certificate now active wherever `from` was, `cert_…`.
    pub to: String,
    /// `to` is active for the whole organization.
    pub organization: bool,
    /// The projects `to` is now active for.
    pub projects: Vec<String>,
    /// `from` was deactivated everywhere (`retire_from`).
    pub retired: bool,
}

impl From<Rotation> for RotationObject {
    fn from(r: Rotation) -> Self {
        RotationObject {
            object: "organization.certificate_rotation",
            from: r.from.into_string(),
            to: r.to.into_string(),
            organization: r.organization,
            projects: r
                .projects
                .into_iter()
                .map(crate::domain::ProjectId::into_string)
                .collect(),
            retired: r.retired,
        }
    }
}

pub trait HasId {
    fn id(&self) -> &str;
}
impl HasId for CertificateObject {
    fn id(&self) -> &str {
        &self.id
    }
}
impl HasId for ProjectObject {
    fn id(&self) -> &str {
        &self.id
    }
}
impl HasId for AdminKeyObject {
    fn id(&self) -> &str {
        &self.id
    }
}
impl HasId for AuditLogObject {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A page of a list: `first_id` and `last_id` are null when `data` is empty.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    #[schema(schema_with = constant::list)]
    pub object: &'static str,
    pub data: Vec<T>,
    #[schema(required = true)]
    pub first_id: Option<String>,
    #[schema(required = true)]
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T: HasId> List<T> {
    pub fn from_page<D>(page: Page<D>, convert: impl Fn(D) -> T) -> Self {
        let data: Vec<T> = page.items.into_iter().map(convert).collect();
        List {
            object: "list",
            first_id: data.first().map(|d| d.id().to_owned()),
            last_id: data.last().map(|d| d.id().to_owned()),
            has_more: page.has_more,
            data,
        }
    }
}

/// The four activate/deactivate answers: one envelope each, its `object` fixed, its items
/// (`CertificateObject`s with `active`) described as the list items of their scope.
macro_rules! toggle_answers {
    ($($(#[doc = $doc:literal])+ $name:ident($object:literal, $constant:ident, $item:ident);)+) => {$(
        $(#[doc = $doc])+
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            #[schema(schema_with = constant::$constant)]
            pub object: &'static str,
            #[schema(value_type = Vec<super::openapi::$item>)]
            pub data: Vec<CertificateObject>,
        }

        impl $name {
            pub fn new(data: Vec<CertificateObject>) -> Self {
                $name { object: $object, data }
            }
        }
    )+};
}

toggle_answers! {
    /// The answer of `POST /organization/certificates/activate`.
    OrganizationCertificateActivationResponse(
        "organization.certificate.activation", organization_activation, OrganizationCertificate
    );
    /// The answer of `POST /organization/certificates/deactivate`.
    OrganizationCertificateDeactivationResponse(
        "organization.certificate.deactivation", organization_deactivation, OrganizationCertificate
    );
    /// The answer of `POST /organization/projects/{project_id}/certificates/activate`.
    OrganizationProjectCertificateActivationResponse(
        "organization.project.certificate.activation", project_activation, OrganizationProjectCertificate
    );
    /// The answer of `POST /organization/projects/{project_id}/certificates/deactivate`.
    OrganizationProjectCertificateDeactivationResponse(
        "organization.project.certificate.deactivation", project_deactivation, OrganizationProjectCertificate
    );
}

/// The answer of `DELETE /organization/certificates/{certificate_id}`.
#[derive(Serialize, ToSchema)]
#[schema(as = DeleteCertificateResponse)]
pub struct Deleted {
    #[schema(schema_with = constant::certificate_deleted)]
    pub object: &'static str,
    pub id: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Project)]
pub struct ProjectObject {
    pub id: String,
    #[schema(schema_with = constant::project)]
    pub object: &'static str,
    pub name: String,
    pub created_at: i64,
    #[schema(required = true)]
    pub archived_at: Option<i64>,
    #[schema(schema_with = constant::project_status)]
    pub status: &'static str,
    #[schema(required = true)]
    pub external_key_id: Option<String>,
    /// Present when the project was created with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = constant::residency)]
    pub residency: Option<String>,
}

impl From<Project> for ProjectObject {
    fn from(p: Project) -> Self {
        ProjectObject {
            object: "organization.project",
            status: if p.archived_at.is_some() {
                "archived"
            } else {
                "active"
            },
            id: p.id.into_string(),
            name: p.name,
            created_at: p.created_at,
            archived_at: p.archived_at,
            external_key_id: p.external_key_id,
            residency: p.residency,
        }
    }
}

/// `owner` of an admin key: the organization's synthetic owner (decisions.md D15).
#[derive(Serialize, ToSchema)]
#[schema(as = AdminApiKeyOwner)]
pub struct KeyOwnerObject {
    #[serde(rename = "type")]
    #[schema(schema_with = constant::user)]
    pub kind: &'static str,
    #[schema(schema_with = constant::organization_user)]
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub created_at: i64,
    #[schema(schema_with = constant::owner)]
    pub role: &'static str,
}

/// `AdminApiKey`: never the value.
#[derive(Serialize, ToSchema)]
#[schema(as = AdminApiKey)]
pub struct AdminKeyObject {
    #[schema(schema_with = constant::admin_api_key)]
    pub object: &'static str,
    pub id: String,
    pub name: String,
    /// `sk-admin...` and the value's last 4 characters.
    pub redacted_value: String,
    pub created_at: i64,
    #[schema(required = true)]
    pub expires_at: Option<i64>,
    #[schema(required = true)]
    pub last_used_at: Option<i64>,
    pub owner: KeyOwnerObject,
}

impl From<AdminKey> for AdminKeyObject {
    fn from(k: AdminKey) -> Self {
        AdminKeyObject {
            object: "organization.admin_api_key",
            owner: KeyOwnerObject {
                kind: "user",
                object: "organization.user",
                id: k.owner.user_id(),
                name: k.owner.name,
                created_at: k.owner.created_at,
                role: "owner",
            },
            id: k.id.into_string(),
            name: k.name,
            redacted_value: k.redacted_value,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// `AdminApiKeyCreateResponse`: the key and, this once, its value.
#[derive(Serialize, ToSchema)]
#[schema(as = AdminApiKeyCreateResponse)]
pub struct AdminKeyCreated {
    #[serde(flatten)]
    pub key: AdminKeyObject,
    /// The key itself: shown in this answer only.
    pub value: String,
}

/// The answer of `DELETE /organization/admin_api_keys/{id}`.
#[derive(Serialize, ToSchema)]
#[schema(as = AdminApiKeyDeleteResponse)]
pub struct AdminKeyDeleted {
    pub id: String,
    #[schema(schema_with = constant::admin_api_key_deleted)]
    pub object: &'static str,
    pub deleted: bool,
}

impl AdminKeyDeleted {
    pub fn new(id: String) -> Self {
        AdminKeyDeleted {
            id,
            object: "organization.admin_api_key.deleted",
            deleted: true,
        }
    }
}

mod audit;
pub use audit::*;
