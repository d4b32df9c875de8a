//! `/organization/projects…`: enough of OpenAI's projects for project-scoped certificates.

use axum::extract::State;
use axum::Json;

use super::dto::{List, ProjectObject};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody, NoFields, PathId, Query};
use super::openapi::ProjectListQuery;
use super::requests::{ProjectCreateRequest, ProjectUpdateRequest};
use super::AppState;
use crate::domain::{self, ProjectKind};

/// List the organization's projects, oldest first.
#[utoipa::path(
    get,
    path = "/organization/projects",
    tag = "Projects",
    operation_id = "list-projects",
    params(ProjectListQuery),
    responses(
        (status = 200, description = "A page of projects.", body = List<ProjectObject>),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Json<List<ProjectObject>>, ApiError> {
    // OpenAI's project list has no `order`: oldest first.
    let page = q.ascending_page()?;
    let include_archived = q.bool("include_archived")?;
    let page = s
        .store
        .list_projects(&caller.org_id, &page, include_archived)
        .await?;
    Ok(Json(List::from_page(page, ProjectObject::from)))
}

/// Create a project.
#[utoipa::path(
    post,
    path = "/organization/projects",
    tag = "Projects",
    operation_id = "create-project",
    request_body(content = ProjectCreateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new project.", body = ProjectObject),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<ProjectCreateRequest>,
) -> Result<Json<ProjectObject>, ApiError> {
    let ProjectCreateRequest {
        name,
        external_key_id,
        residency,
        geography,
    } = body;
    let name = domain::parse_required_name("name", name)?;
    if residency.is_some() && geography.is_some() {
        return Err(ApiError::bad_request(
            Some("geography"),
            "'geography' is deprecated; send only 'residency'.",
        ));
    }
    let residency = residency
        .or(geography)
        .map(|r| domain::parse_residency("residency", r))
        .transpose()?;
    let project = s
        .store
        .create_project(
            &caller.org_id,
            &name,
            external_key_id,
            residency,
            &caller.actor(),
        )
        .await?;
    Ok(Json(project.into()))
}

/// Retrieve a project.
#[utoipa::path(
    get,
    path = "/organization/projects/{project_id}",
    tag = "Projects",
    operation_id = "retrieve-project",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`.")),
    responses(
        (status = 200, description = "The project.", body = ProjectObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<ProjectKind>,
) -> Result<Json<ProjectObject>, ApiError> {
    Ok(Json(s.store.get_project(&caller.org_id, &id).await?.into()))
}

/// Rename a project or change its external key id.
#[utoipa::path(
    post,
    path = "/organization/projects/{project_id}",
    tag = "Projects",
    operation_id = "modify-project",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`.")),
    // An empty body changes nothing (and is answered like `{}`).
    request_body(content = Option<ProjectUpdateRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The project after the change.", body = ProjectObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn modify(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<ProjectKind>,
    JsonBody(body): JsonBody<ProjectUpdateRequest>,
) -> Result<Json<ProjectObject>, ApiError> {
    let name = body
        .name
        .map(|n| domain::parse_required_name("name", n))
        .transpose()?;
    let external_key_id = body.external_key_id;
    if body.geography.is_some() {
        return Err(ApiError::bad_request(
            Some("geography"),
            "A project's residency cannot be changed after it is created.",
        ));
    }
    Ok(Json(
        s.store
            .update_project(&caller.org_id, &id, name, external_key_id, &caller.actor())
            .await?
            .into(),
    ))
}

/// Archive a project: its certificate activations end.
#[utoipa::path(
    post,
    path = "/organization/projects/{project_id}/archive",
    tag = "Projects",
    operation_id = "archive-project",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`.")),
    responses(
        (status = 200, description = "The archived project.", body = ProjectObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn archive(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<ProjectKind>,
    _body: JsonBody<NoFields>,
) -> Result<Json<ProjectObject>, ApiError> {
    let project = s
        .store
        .archive_project(&caller.org_id, &id, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, project = %project.id, "project archived");
    Ok(Json(project.into()))
}
