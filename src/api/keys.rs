//! `/organization/admin_api_keys…`: an organization's admin keys (spec §5, §12.1). Any valid
//! key of an organization manages that organization's keys, and only those.

use axum::extract::State;
use axum::Json;

use super::dto::{AdminKeyCreated, AdminKeyDeleted, AdminKeyObject, List};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonObject, PathId, Query};
use super::AppState;
use crate::domain::{self, KeyKind, Order};

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

pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    mut body: JsonObject,
) -> Result<Json<AdminKeyCreated>, ApiError> {
    let name = domain::parse_required_name("name", body.required_string("name")?)?;
    let expires_in = body
        .optional_integer("expires_in_seconds")?
        .map(|secs| domain::parse_key_lifetime("expires_in_seconds", secs))
        .transpose()?;
    body.finish()?;
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

pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<KeyKind>,
) -> Result<Json<AdminKeyObject>, ApiError> {
    Ok(Json(
        s.store.get_admin_key(&caller.org_id, &id).await?.into(),
    ))
}

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
