//! Shapes of one Rust type under several OpenAI names, and the audit log's event payloads.
//!
//! List and toggle items are [`CertificateObject`] under several `object` strings: their
//! schemas are taken from that type's own, so the documented and the serialized shape are one.
//! The audit payloads are described, never built: `store::audit` writes them as JSON in the
//! writing transaction and `api::dto` passes them through (the store knows no wire type).
//! Their fields are public: they are the wire shapes, readable as such (and no dead-code
//! allowance hides a type nobody uses).

use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::constant;
use crate::api::dto::{AuditLogActor, AuditProject, CertificateObject};

// ------------------------------------------------- shapes of one type under several names

/// An item of the organization's certificate list and of its toggles: the schema of
/// [`CertificateObject`] (the type these answers serialize, so the two cannot drift) under the
/// item's `object` string, with `active` always present.
pub struct OrganizationCertificate;

/// An item of a project's certificate list and of its toggles, as [`OrganizationCertificate`]:
/// `active` says whether it is active for this project.
pub struct OrganizationProjectCertificate;

/// [`CertificateObject`]'s schema with `object` set to `object` and `active` required.
fn list_item(object: utoipa::openapi::schema::Object, active: &str) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut item)) = CertificateObject::schema() else {
        return CertificateObject::schema();
    };
    item.properties.insert("object".to_owned(), object.into());
    if let Some(RefOr::T(Schema::Object(flag))) = item.properties.get_mut("active") {
        flag.description = Some(active.to_owned());
    }
    item.required.push("active".to_owned());
    RefOr::T(Schema::Object(item))
}

impl PartialSchema for OrganizationCertificate {
    fn schema() -> RefOr<Schema> {
        list_item(
            constant::organization_certificate(),
            "Active for the whole organization.",
        )
    }
}

impl ToSchema for OrganizationCertificate {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <CertificateObject as ToSchema>::schemas(schemas);
    }
}

impl PartialSchema for OrganizationProjectCertificate {
    fn schema() -> RefOr<Schema> {
        list_item(
            constant::organization_project_certificate(),
            "Active for this project.",
        )
    }
}

impl ToSchema for OrganizationProjectCertificate {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <CertificateObject as ToSchema>::schemas(schemas);
    }
}

// ------------------------------------------------------------------------ audit log

/// An audit event: the common fields, plus one property named exactly like its `type`
/// holding the event's details (decisions.md D16).
#[derive(ToSchema)]
pub struct AuditLog {
    /// `audit_log-…`; sorts by time.
    pub id: String,
    #[schema(rename = "type", schema_with = constant::audit_event_types)]
    pub kind: String,
    pub effective_at: i64,
    /// Null for changes made with the CLI or at bootstrap.
    #[schema(required = true)]
    pub actor: Option<AuditLogActor>,
    /// The project acted on (project toggles and `project.*` events).
    #[schema(nullable = false)]
    pub project: Option<AuditProject>,
    #[schema(rename = "certificate.created", nullable = false)]
    pub certificate_created: Option<AuditCertificateCreated>,
    #[schema(rename = "certificate.updated", nullable = false)]
    pub certificate_updated: Option<AuditCertificateUpdated>,
    #[schema(rename = "certificate.deleted", nullable = false)]
    pub certificate_deleted: Option<AuditCertificateDeleted>,
    #[schema(rename = "certificates.activated", nullable = false)]
    pub certificates_activated: Option<AuditCertificates>,
    #[schema(rename = "certificates.deactivated", nullable = false)]
    pub certificates_deactivated: Option<AuditCertificates>,
    #[schema(rename = "project.created", nullable = false)]
    pub project_created: Option<AuditProjectCreated>,
    #[schema(rename = "project.updated", nullable = false)]
    pub project_updated: Option<AuditProjectUpdated>,
    #[schema(rename = "project.archived", nullable = false)]
    pub project_archived: Option<AuditId>,
    #[schema(rename = "api_key.created", nullable = false)]
    pub api_key_created: Option<AuditApiKeyCreated>,
    #[schema(rename = "api_key.deleted", nullable = false)]
    pub api_key_deleted: Option<AuditId>,
    #[schema(rename = "certificate.revoked", nullable = false)]
    pub certificate_revoked: Option<AuditRevocation>,
    #[schema(rename = "certificate.unrevoked", nullable = false)]
    pub certificate_unrevoked: Option<AuditRevocation>,
    #[schema(rename = "certificate.crl_updated", nullable = false)]
    pub certificate_crl_updated: Option<AuditCrl>,
    /// The CA whose CRL was deleted.
    #[schema(rename = "certificate.crl_deleted", nullable = false)]
    pub certificate_crl_deleted: Option<AuditId>,
    #[schema(rename = "certificate.crl_fetched", nullable = false)]
    pub certificate_crl_fetched: Option<AuditCrlFetched>,
}

/// One fetch of a CA's `crl_url` (decisions.md D59): stored (`ok`), or why not (`reason`, in
/// certgate's words; nothing of the fetched body).
#[derive(ToSchema)]
pub struct AuditCrlFetched {
    /// The CA, `cert_…`.
    pub id: String,
    pub url: String,
    pub ok: bool,
    /// When stored: the CRL's cRLNumber (decimal), null when it has none.
    #[schema(nullable = true)]
    pub crl_number: Option<String>,
    #[schema(nullable = false)]
    pub this_update: Option<i64>,
    pub next_update: Option<i64>,
    #[schema(nullable = false)]
    pub revoked_count: Option<i64>,
    /// When nothing was stored: why.
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditId {
    pub id: String,
}

#[derive(ToSchema)]
pub struct AuditCertificate {
    pub id: String,
    /// Null for an unnamed certificate.
    #[schema(required = true)]
    pub name: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditCertificateCreated {
    pub id: String,
    /// Null for an unnamed certificate.
    #[schema(required = true)]
    pub name: Option<String>,
    /// certgate's extension: present when the upload set a client filter.
    #[schema(nullable = false)]
    pub client_filter: Option<String>,
    /// certgate's extension: present when the upload set a CRL URL.
    #[schema(nullable = false)]
    pub crl_url: Option<String>,
    /// certgate's extension: present when the upload turned OCSP on.
    #[schema(nullable = false)]
    pub ocsp: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditCertificateUpdated {
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    /// certgate's extension: present when the call set or cleared the client filter (null).
    pub client_filter: Option<String>,
    /// certgate's extension: present when the call set or cleared the CRL URL (null).
    pub crl_url: Option<String>,
    /// certgate's extension: present when the call set the OCSP mode.
    #[schema(nullable = false)]
    pub ocsp: Option<String>,
}

/// A deny-list entry made (`certificate.revoked`) or removed (`certificate.unrevoked`).
#[derive(ToSchema)]
pub struct AuditRevocation {
    /// The entry, `revcert_…`.
    pub id: String,
    pub sha256_fingerprint: String,
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// A CA's CRL stored or replaced.
#[derive(ToSchema)]
pub struct AuditCrl {
    /// The CA, `cert_…`.
    pub id: String,
    pub this_update: i64,
    #[schema(required = true)]
    pub next_update: Option<i64>,
    pub revoked_count: i64,
}

#[derive(ToSchema)]
pub struct AuditCertificateDeleted {
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    /// The PEM as it was uploaded.
    pub certificate: String,
}

#[derive(ToSchema)]
pub struct AuditCertificates {
    /// Every certificate the call named, in request order.
    pub certificates: Vec<AuditCertificate>,
}

#[derive(ToSchema)]
pub struct AuditProjectCreated {
    pub id: String,
    pub data: AuditProjectData,
}

#[derive(ToSchema)]
pub struct AuditProjectData {
    pub name: String,
    /// The name again (OpenAI's dashboard calls it the title).
    pub title: String,
}

#[derive(ToSchema)]
pub struct AuditProjectUpdated {
    pub id: String,
    pub changes_requested: AuditProjectChanges,
}

#[derive(ToSchema)]
pub struct AuditProjectChanges {
    /// The new name, when the call renamed the project.
    #[schema(nullable = false)]
    pub title: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditApiKeyCreated {
    pub id: String,
    pub data: AuditApiKeyData,
}

#[derive(ToSchema)]
pub struct AuditApiKeyData {
    /// Always empty: admin keys have every scope.
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(schema: RefOr<Schema>) -> (Vec<String>, Vec<String>) {
        let RefOr::T(Schema::Object(o)) = schema else {
            panic!("an inline object schema");
        };
        (o.properties.keys().cloned().collect(), o.required)
    }

    /// The list items document every field the answers serialize (`activations` and
    /// `client_filter` included), with `active` always present.
    #[test]
    fn list_items_are_the_serialized_certificate_object() {
        let (all, _) = properties(CertificateObject::schema());
        for item in [
            OrganizationCertificate::schema(),
            OrganizationProjectCertificate::schema(),
        ] {
            let (fields, required) = properties(item);
            assert_eq!(fields, all);
            assert!(fields.contains(&"activations".to_owned()));
            assert!(fields.contains(&"client_filter".to_owned()));
            assert!(required.contains(&"active".to_owned()), "{required:?}");
        }
    }
}
