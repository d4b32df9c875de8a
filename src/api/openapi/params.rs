//! Query parameters: what the handlers read from the query string, described.
//!
//! Described, never built: `extract::Query` reads the query string (`x[]=` and `x=` alike, the
//! last value of a scalar winning, each refusal in certgate's words), which a serde parse into
//! these types would not reproduce. Their fields are public, as the parameters they describe.

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
pub struct CertificateListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// An object id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    pub after: Option<String>,
    /// By `created_at`; `desc` (newest first) unless given.
    #[param(schema_with = order_desc)]
    pub order: Option<String>,
    /// certgate's extension: `content` and/or `details` on every item, as on retrieve.
    #[param(inline, nullable = false, explode = true, style = Form)]
    pub include: Option<Vec<CertificateInclude>>,
}

/// `limit`, `after` and `order` of the deny-list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// An entry id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    pub after: Option<String>,
    /// By `created_at`; `desc` (newest first) unless given.
    #[param(schema_with = order_desc)]
    pub order: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// A key id from an earlier page: the page continues after it.
    #[param(nullable = false)]
    pub after: Option<String>,
    /// By `created_at`; `asc` (oldest first) unless given.
    #[param(schema_with = order_asc)]
    pub order: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectListQuery {
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// A project id from an earlier page: the page continues after it (oldest first).
    #[param(nullable = false)]
    pub after: Option<String>,
    /// Also list archived projects.
    #[param(default = false, nullable = false)]
    pub include_archived: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CertificateInclude {
    Content,
    /// certgate's extension (decisions.md D19): fingerprints, names, status, CRL and activations.
    Details,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateGetQuery {
    /// `content` adds the PEM as uploaded (`include[]=content` is accepted too).
    #[param(inline, nullable = false, explode = true, style = Form)]
    pub include: Option<Vec<CertificateInclude>>,
}

/// Bounds on `effective_at`, sent as `effective_at[gte]=…` (Unix seconds).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectiveAt {
    #[schema(nullable = false)]
    pub gt: Option<i64>,
    #[schema(nullable = false)]
    pub gte: Option<i64>,
    #[schema(nullable = false)]
    pub lt: Option<i64>,
    #[schema(nullable = false)]
    pub lte: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditLogQuery {
    /// Events in this time range (`effective_at[gt]`, `[gte]`, `[lt]`, `[lte]`).
    #[param(inline, style = DeepObject, explode = true, nullable = false)]
    pub effective_at: Option<EffectiveAt>,
    /// Events about these projects.
    #[param(rename = "project_ids[]", nullable = false)]
    pub project_ids: Option<Vec<String>>,
    /// Events of these types.
    #[param(rename = "event_types[]", nullable = false)]
    pub event_types: Option<Vec<String>>,
    /// Events made with these keys (`key_…`) or by the owner (`user_…`).
    #[param(rename = "actor_ids[]", nullable = false)]
    pub actor_ids: Option<Vec<String>>,
    /// No certgate actor has an email: any value matches nothing.
    #[param(rename = "actor_emails[]", nullable = false)]
    pub actor_emails: Option<Vec<String>>,
    /// Events about these certificates, projects or keys.
    #[param(rename = "resource_ids[]", nullable = false)]
    pub resource_ids: Option<Vec<String>>,
    /// certgate has no tenant-scoped events: `true` gives an empty list.
    #[param(default = false, nullable = false)]
    pub tenant_only: Option<bool>,
    /// Page size, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<u32>,
    /// An event id: the `limit` events just older than it.
    #[param(nullable = false)]
    pub after: Option<String>,
    /// An event id: the `limit` events just newer than it (still newest first).
    #[param(nullable = false)]
    pub before: Option<String>,
}
