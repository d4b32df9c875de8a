//! Request bodies and query parameters: what the handlers read field by field, described.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::constant;

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
    /// certgate's extension (decisions.md D26): a CEL expression over the client certificate that
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
    /// certgate's extension (decisions.md D19): fingerprints, names, status, CRL and activations.
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
