//! `/organization/admin_api_keys…`: an organization's admin keys (OpenAI's shapes; decisions.md
//! D15). Any valid key of an organization manages that organization's keys, and only those.

use axum::extract::State;
use axum::Json;

use super::dto::{AdminKeyCreated, AdminKeyDeleted, AdminKeyObject, List};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody, PathId, Query};
use super::openapi::KeyListQuery;
use super::requests::AdminApiKeyCreateRequest;
use super::AppState;
use crate::domain::{self, KeyKind, Order};

/// List the organization's admin keys (never their values).
#[utoipa::path(
    get,
    path = "/organization/admin_api_keys",
    tag = "Admin API keys",
    operation_id = "admin-api-keys-list",
    params(KeyListQuery),
    responses(
        (status = 200, description = "A page of admin keys.", body = List<AdminKeyObject>),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Json<List<AdminKeyObject>>, ApiError> {
    // OpenAI: "default: asc".
    let page = q.page(Order::Asc)?;
    let page = s.store.list_admin_keys(&caller.org_id, &page).await?;
    Ok(Json(List::from_page(page, AdminKeyObject::from)))
}

/// Create an admin key; its value is in this answer only.
#[utoipa::path(
    post,
    path = "/organization/admin_api_keys",
    tag = "Admin API keys",
    operation_id = "admin-api-keys-create",
    request_body(content = AdminApiKeyCreateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new key and its value.", body = AdminKeyCreated),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<AdminApiKeyCreateRequest>,
) -> Result<Json<AdminKeyCreated>, ApiError> {
    let name = domain::parse_required_name("name", body.name)?;
    let expires_in = body
        .expires_in_seconds
        .map(|secs| domain::parse_key_lifetime("expires_in_seconds", secs))
        .transpose()?;
    let new = s
        .store
        .create_admin_key(&caller.org_id, &name, expires_in, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, key = %new.key.id, "admin key created");
    Ok(Json(AdminKeyCreated {
        value: new.value.expose().to_owned(),
        key: new.key.into(),
    }))
}

/// Retrieve an admin key (never its value).
#[utoipa::path(
    get,
    path = "/organization/admin_api_keys/{key_id}",
    tag = "Admin API keys",
    operation_id = "admin-api-keys-get",
    params(("key_id" = String, Path, description = "The key's id, `key_…`.")),
    responses(
        (status = 200, description = "The key.", body = AdminKeyObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<KeyKind>,
) -> Result<Json<AdminKeyObject>, ApiError> {
    Ok(Json(
        s.store.get_admin_key(&caller.org_id, &id).await?.into(),
    ))
}

/// Delete an admin key; the organization's last unexpired key is refused (`last_admin_key`).
#[utoipa::path(
    delete,
    path = "/organization/admin_api_keys/{key_id}",
    tag = "Admin API keys",
    operation_id = "admin-api-keys-delete",
    params(("key_id" = String, Path, description = "The key's id, `key_…`.")),
    responses(
        (status = 200, description = "The key is gone.", body = AdminKeyDeleted),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn delete(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<KeyKind>,
) -> Result<Json<AdminKeyDeleted>, ApiError> {
    s.store
        .delete_admin_key(&caller.org_id, &id, &caller.actor(), false)
        .await?;
    tracing::info!(org = %caller.org_id, key = %id, "admin key deleted");
    Ok(Json(AdminKeyDeleted::new(id.into_string())))
}
