//! `/organization/projects…`: enough of OpenAI's projects for project-scoped certificates.

use axum::extract::State;
use axum::Json;

use super::dto::{List, ProjectObject};
use super::error::ApiError;
use super::extract::{path_id, AdminCaller, JsonObject, Query};
use super::{AppState, PathParam};
use crate::domain::{self, DomainError, Order};

/// Residency values OpenAI's spec and SDK know.
const RESIDENCIES: &[&str] = &[
    "GLOBAL",
    "US_STORAGE_PROCESSING",
    "EU_STORAGE_PROCESSING",
    "JP_STORAGE",
    "JP_STORAGE_PROCESSING",
    "KR_STORAGE",
    "CA_STORAGE",
    "SG_STORAGE",
    "IN_STORAGE",
    "IN_STORAGE_PROCESSING",
    "AU_STORAGE",
    "AU_STORAGE_PROCESSING",
    "GB_STORAGE",
    "AE_STORAGE",
    "AE_STORAGE_PROCESSING",
];

pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Json<List<ProjectObject>>, ApiError> {
    // OpenAI's project list has no `order`: oldest first.
    let mut page = q.page(Order::Asc)?;
    page.order = Order::Asc;
    let include_archived = q.bool("include_archived")?;
    let page = s
        .store
        .list_projects(&caller.org_id, &page, include_archived)
        .await?;
    Ok(Json(List::from_page(page, ProjectObject::from)))
}

fn project_name(name: String) -> Result<String, ApiError> {
    if name.trim().is_empty() {
        return Err(DomainError::invalid("name", "'name' must not be empty.").into());
    }
    Ok(domain::parse_name("name", name)?)
}

pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    mut body: JsonObject,
) -> Result<Json<ProjectObject>, ApiError> {
    let name = project_name(body.required_string("name")?)?;
    let external_key_id = body.optional_string("external_key_id")?;
    let residency = body.optional_string("residency")?;
    let geography = body.optional_string("geography")?;
    body.finish()?;
    if residency.is_some() && geography.is_some() {
        return Err(ApiError::bad_request(
            Some("geography"),
            "'geography' is deprecated; send only 'residency'.",
        ));
    }
    let residency = residency.or(geography);
    if let Some(r) = &residency {
        if !RESIDENCIES.contains(&r.as_str()) {
            return Err(ApiError::bad_request(
                Some("residency"),
                format!(
                    "Invalid 'residency': expected one of {}.",
                    RESIDENCIES.join(", ")
                ),
            ));
        }
    }
    let project = s
        .store
        .create_project(&caller.org_id, &name, external_key_id, residency)
        .await?;
    Ok(Json(project.into()))
}

pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    id: PathParam,
) -> Result<Json<ProjectObject>, ApiError> {
    let id = path_id(id)?;
    Ok(Json(s.store.get_project(&caller.org_id, &id).await?.into()))
}

pub async fn modify(
    State(s): State<AppState>,
    caller: AdminCaller,
    id: PathParam,
    mut body: JsonObject,
) -> Result<Json<ProjectObject>, ApiError> {
    let id = path_id(id)?;
    let name = body
        .optional_string("name")?
        .map(project_name)
        .transpose()?;
    let external_key_id = body.nullable_string("external_key_id")?;
    if body.optional_string("geography")?.is_some() {
        return Err(ApiError::bad_request(
            Some("geography"),
            "A project's residency cannot be changed after it is created.",
        ));
    }
    body.finish()?;
    Ok(Json(
        s.store
            .update_project(&caller.org_id, &id, name, external_key_id)
            .await?
            .into(),
    ))
}

pub async fn archive(
    State(s): State<AppState>,
    caller: AdminCaller,
    id: PathParam,
    body: JsonObject,
) -> Result<Json<ProjectObject>, ApiError> {
    let id = path_id(id)?;
    body.finish()?;
    let project = s.store.archive_project(&caller.org_id, &id).await?;
    tracing::info!(org = %caller.org_id, project = %project.id, "project archived");
    Ok(Json(project.into()))
}
