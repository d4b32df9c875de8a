//! Query parameters: what the handlers read from the query string (`extract::Query`), described.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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
