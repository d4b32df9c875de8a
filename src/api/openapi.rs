//! `GET /openapi.json` (spec §12.7): the OpenAPI 3.1 document of every path `serve` answers,
//! generated from the code.
//!
//! Paths come from the handlers' `#[utoipa::path]` attributes, collected while `api::routes`
//! registers them with `routes!`, so a route cannot be served without being described. The
//! wire DTOs (`api::dto`) describe themselves with `ToSchema`; this module holds what the
//! handlers' dynamic extraction leaves undescribed (request bodies, query parameters), the
//! schemas where one Rust type answers under several OpenAI names, the error responses, and
//! the document's frame (info, security scheme, tags).
//!
//! The shared paths must agree with OpenAI's (`../shared/openai-admin-subset.yaml`); the test
//! `tests/it/openapi.rs` compares them structurally.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToResponse, ToSchema};

use super::dto::{AuditProject, CertificateDetails};

/// The name of the bearer scheme every `/v1` operation requires, as OpenAI names it.
pub const ADMIN_KEY_AUTH: &str = "AdminApiKeyAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "certgate Admin API",
        description = "OpenAI's Admin API \"Certificates\" endpoints (with the projects, admin API keys and audit logs they need), as certgate serves them, plus certgate's operational endpoints. Every `/v1` operation takes an admin key as a Bearer token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&AdminKeyAuth),
    components(
        schemas(ErrorResponse),
        responses(BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable)
    ),
    tags(
        (name = "Certificates", description = "CA certificates and where they are active."),
        (name = "Projects", description = "Enough of OpenAI's projects to scope certificates."),
        (name = "Admin API keys", description = "The organization's admin keys."),
        (name = "Audit logs", description = "Every change, written with it."),
        (name = "Revocation", description = "certgate's deny-list and CA revocation lists (spec §12.5)."),
        (name = "Operations", description = "certgate's own endpoints: health and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme the operations name.
struct AdminKeyAuth;

impl utoipa::Modify for AdminKeyAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                ADMIN_KEY_AUTH,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An admin key, `sk-admin-...`."))
                        .build(),
                ),
            );
    }
}

/// Adds what `include[]=details` puts in `certificate_details` to the `CertificateDetails`
/// schema, as optional properties (they are absent without it). The fields and their
/// descriptions are those of [`Details`](super::dto::Details).
pub fn describe_details(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema as _;
    let RefOr::T(Schema::Object(extension)) = super::dto::Details::schema() else {
        return;
    };
    let components = doc.components.get_or_insert_with(Default::default);
    // The schemas the extension refers to (`CertificateCrlSummary`).
    let mut referred = Vec::new();
    <super::dto::Details as ToSchema>::schemas(&mut referred);
    components.schemas.extend(referred);
    if let Some(RefOr::T(Schema::Object(details))) =
        components.schemas.get_mut("CertificateDetails")
    {
        details.properties.extend(extension.properties);
    }
}

/// The document as JSON, built once per process from the routes.
pub fn json() -> Bytes {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a document made of strings, maps and numbers cannot fail.
        Bytes::from(serde_json::to_vec(&super::openapi()).unwrap_or_default())
    })
    .clone()
}

/// The OpenAPI document of this API. No key needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Operations",
    operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document of every path certgate serves.", content_type = "application/json", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

// -------------------------------------------------------------------------- errors

/// OpenAI's error body: every refusal, from every endpoint.
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `openai_error` writes the body
pub struct ErrorResponse {
    error: ErrorObject,
}

#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
struct ErrorObject {
    message: String,
    /// `invalid_request_error`, `permission_error` or `server_error`.
    #[schema(rename = "type")]
    kind: String,
    /// The request field or parameter at fault, if one is.
    #[schema(required = true)]
    param: Option<String>,
    /// A machine-readable reason, e.g. `invalid_api_key`, `certificate_in_use`.
    #[schema(required = true)]
    code: Option<String>,
}

/// The request is malformed or breaks a rule (the message and `param` say which).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct BadRequest(ErrorResponse);

/// No admin key, or not a valid one (`invalid_api_key`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unauthorized(ErrorResponse);

/// No such object in this organization (a malformed id too).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct NotFound(ErrorResponse);

/// The change conflicts with the current state (the `code` says how); not retried.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Conflict(ErrorResponse);

/// The request body is larger than 64 KiB (`request_too_large`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorResponse);

/// The database did not answer in time (`database_unavailable`); retry later.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unavailable(ErrorResponse);

// ---------------------------------------------------------------- constant strings

/// Schemas of string fields with one fixed value (OpenAI writes them as a one-value enum),
/// and of the few small closed sets the DTOs carry as strings.
pub mod constant {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

    fn one_of(values: &[&'static str]) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .build()
    }

    pub fn list() -> Object {
        one_of(&["list"])
    }
    pub fn certificate() -> Object {
        one_of(&["certificate"])
    }
    pub fn organization_certificate() -> Object {
        one_of(&["organization.certificate"])
    }
    pub fn organization_project_certificate() -> Object {
        one_of(&["organization.project.certificate"])
    }
    pub fn certificate_deleted() -> Object {
        one_of(&["certificate.deleted"])
    }
    pub fn organization_activation() -> Object {
        one_of(&["organization.certificate.activation"])
    }
    pub fn organization_deactivation() -> Object {
        one_of(&["organization.certificate.deactivation"])
    }
    pub fn project_activation() -> Object {
        one_of(&["organization.project.certificate.activation"])
    }
    pub fn project_deactivation() -> Object {
        one_of(&["organization.project.certificate.deactivation"])
    }
    pub fn project() -> Object {
        one_of(&["organization.project"])
    }
    pub fn project_status() -> Object {
        one_of(&["active", "archived"])
    }
    /// Every residency certgate accepts (`domain::RESIDENCIES`).
    pub fn residency() -> Object {
        one_of(crate::domain::RESIDENCIES)
    }
    pub fn admin_api_key() -> Object {
        one_of(&["organization.admin_api_key"])
    }
    pub fn admin_api_key_deleted() -> Object {
        one_of(&["organization.admin_api_key.deleted"])
    }
    pub fn user() -> Object {
        one_of(&["user"])
    }
    pub fn organization_user() -> Object {
        one_of(&["organization.user"])
    }
    pub fn owner() -> Object {
        one_of(&["owner"])
    }
    pub fn api_key() -> Object {
        one_of(&["api_key"])
    }
    pub fn certificate_status() -> Object {
        one_of(&["not_yet_valid", "valid", "expiring_soon", "expired"])
    }
    pub fn certificate_check() -> Object {
        one_of(&["organization.certificate_check"])
    }
    pub fn certificate_rotation() -> Object {
        one_of(&["organization.certificate_rotation"])
    }
    pub fn revoked_certificate() -> Object {
        one_of(&["organization.revoked_certificate"])
    }
    pub fn revoked_certificate_deleted() -> Object {
        one_of(&["organization.revoked_certificate.deleted"])
    }
    pub fn certificate_crl() -> Object {
        one_of(&["organization.certificate.crl"])
    }
    pub fn certificate_crl_deleted() -> Object {
        one_of(&["organization.certificate.crl.deleted"])
    }
    /// The event types certgate writes (spec §12.2).
    pub fn audit_event_types() -> Object {
        one_of(crate::domain::AUDIT_EVENT_TYPES)
    }
}

// ------------------------------------------------------------------- request bodies
// Handlers read bodies field by field (`extract::JsonObject`) and refuse fields nobody asked
// for, hence `deny_unknown_fields` (additionalProperties: false) on each.

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadCertificateRequest {
    /// The CA certificate, one PEM `CERTIFICATE` block (CA:TRUE, keyCertSign, a Subject Key
    /// Identifier; at most 16 KiB).
    certificate: String,
    /// At most 256 characters.
    #[schema(max_length = 256)]
    name: Option<String>,
    /// The 2025 name of `certificate`; give one of the two.
    #[schema(deprecated, nullable = false)]
    content: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ModifyCertificateRequest {
    /// The new name (null clears it); at most 256 characters.
    #[schema(max_length = 256)]
    name: Option<String>,
    /// certgate's extension (spec §12.6): a CEL expression over the client certificate that
    /// must hold for this CA to admit it (at most 4 KiB); null clears it, absence keeps it.
    #[schema(max_length = 4096)]
    client_filter: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CheckCertificateRequest {
    /// The client's certificate chain, PEM: its leaf first, then any intermediates.
    certificate: String,
    /// Decide as for a request carrying this `OpenAI-Project`; absent: organization-wide.
    #[schema(nullable = false)]
    project_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RotateCertificateRequest {
    /// The certificate being replaced, `cert_…`.
    from: String,
    /// Its replacement, `cert_…`: activated wherever `from` is active, in one transaction.
    to: String,
    /// Also deactivate `from` everywhere.
    #[schema(default = false, nullable = false)]
    retire_from: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RevokeCertificateRequest {
    /// The client certificate to refuse, PEM; give this or `sha256_fingerprint`.
    #[schema(nullable = false)]
    certificate: Option<String>,
    /// SHA-256 of the certificate's DER, 64 hex digits (colons allowed).
    #[schema(nullable = false)]
    sha256_fingerprint: Option<String>,
    /// Why, for people; at most 256 characters.
    #[schema(max_length = 256, nullable = false)]
    reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PutCrlRequest {
    /// The CA's CRL, PEM (`X509 CRL`) or base64 DER, signed by the CA; at most 8 MiB.
    crl: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ToggleCertificatesRequest {
    /// 1 to 10 distinct certificate ids; all change or none does.
    #[schema(schema_with = toggle_ids)]
    certificate_ids: Vec<String>,
}

fn toggle_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, Object, Type};
    ArrayBuilder::new()
        .items(Object::with_type(Type::String))
        .min_items(Some(1))
        .max_items(Some(crate::domain::MAX_TOGGLE_IDS))
        .unique_items(true)
        .description(Some(
            "1 to 10 distinct certificate ids; all change or none does.",
        ))
        .build()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProjectCreateRequest {
    /// 1 to 256 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    external_key_id: Option<String>,
    #[schema(schema_with = nullable_residency)]
    residency: Option<String>,
}

fn nullable_residency() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{Object, OneOfBuilder, Schema, Type};
    Schema::OneOf(
        OneOfBuilder::new()
            .item(constant::residency())
            .item(Object::with_type(Type::Null))
            .build(),
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProjectUpdateRequest {
    /// 1 to 256 characters, not only whitespace; null or absent keeps the name.
    #[schema(min_length = 1, max_length = 256)]
    name: Option<String>,
    /// Null clears it.
    external_key_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AdminApiKeyCreateRequest {
    /// 1 to 256 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    /// Seconds until the key expires (at most a year); absent: it never does.
    #[schema(minimum = 1, maximum = 31_536_000)]
    expires_in_seconds: Option<i64>,
}

// --------------------------------------------------------------- query parameters

/// `order`: `asc` or `desc`, by `created_at`, with the list's default.
fn order(default: &'static str) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["asc", "desc"]))
        .default(Some(default.into()))
        .build()
}

fn order_desc() -> utoipa::openapi::schema::Object {
    order("desc")
}

fn order_asc() -> utoipa::openapi::schema::Object {
    order("asc")
}

/// `limit` and `after` of every list, and `order` where the list has one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CertificateListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u32>,
    /// An object id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    after: Option<String>,
    /// By `created_at`; `desc` (newest first) unless given.
    #[param(schema_with = order_desc)]
    order: Option<String>,
    /// certgate's extension: `content` and/or `details` on every item, as on retrieve.
    #[param(inline, nullable = false, explode = true, style = Form)]
    include: Option<Vec<CertificateInclude>>,
}

/// `limit`, `after` and `order` of the deny-list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RevocationListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u32>,
    /// An entry id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    after: Option<String>,
    /// By `created_at`; `desc` (newest first) unless given.
    #[param(schema_with = order_desc)]
    order: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct KeyListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u32>,
    /// A key id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    after: Option<String>,
    /// By `created_at`; `asc` (oldest first) unless given.
    #[param(schema_with = order_asc)]
    order: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ProjectListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u32>,
    /// A project id from an earlier page: the page continues after it (oldest first).
    #[param(nullable = false)]
    after: Option<String>,
    /// Also list archived projects.
    #[param(default = false, nullable = false)]
    include_archived: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CertificateInclude {
    Content,
    /// certgate's extension (spec §12.4): fingerprints, names, status, CRL and activations.
    Details,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CertificateGetQuery {
    /// `content` adds the PEM as uploaded (`include[]=content` is accepted too).
    #[param(inline, nullable = false, explode = true, style = Form)]
    include: Option<Vec<CertificateInclude>>,
}

/// Bounds on `effective_at`, sent as `effective_at[gte]=…` (Unix seconds).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EffectiveAt {
    #[schema(nullable = false)]
    gt: Option<i64>,
    #[schema(nullable = false)]
    gte: Option<i64>,
    #[schema(nullable = false)]
    lt: Option<i64>,
    #[schema(nullable = false)]
    lte: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditLogQuery {
    /// Events in this time range (`effective_at[gt]`, `[gte]`, `[lt]`, `[lte]`).
    #[param(inline, style = DeepObject, explode = true, nullable = false)]
    effective_at: Option<EffectiveAt>,
    /// Events about these projects.
    #[param(rename = "project_ids[]", nullable = false)]
    project_ids: Option<Vec<String>>,
    /// Events of these types.
    #[param(rename = "event_types[]", nullable = false)]
    event_types: Option<Vec<String>>,
    /// Events made with these keys (`key_…`) or by the owner (`user_…`).
    #[param(rename = "actor_ids[]", nullable = false)]
    actor_ids: Option<Vec<String>>,
    /// No certgate actor has an email: any value matches nothing.
    #[param(rename = "actor_emails[]", nullable = false)]
    actor_emails: Option<Vec<String>>,
    /// Events about these certificates, projects or keys.
    #[param(rename = "resource_ids[]", nullable = false)]
    resource_ids: Option<Vec<String>>,
    /// certgate has no tenant-scoped events: `true` gives an empty list.
    #[param(default = false, nullable = false)]
    tenant_only: Option<bool>,
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u32>,
    /// An event id: the `limit` events just older than it.
    #[param(nullable = false)]
    after: Option<String>,
    /// An event id: the `limit` events just newer than it (still newest first).
    #[param(nullable = false)]
    before: Option<String>,
}

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
/// holding the event's details (spec §12.2).
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
    certificate_created: Option<AuditCertificate>,
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
