//! `/organization/certificates…` and `/organization/projects/{id}/certificates…`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::cache::PageKey;
use super::dto::{
    CertificateObject, Deleted, List, OrganizationCertificateActivationResponse,
    OrganizationCertificateDeactivationResponse, OrganizationProjectCertificateActivationResponse,
    OrganizationProjectCertificateDeactivationResponse,
};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody, PathId, Query};
use super::openapi::{
    CertificateGetQuery, CertificateListQuery, OrganizationCertificate,
    OrganizationProjectCertificate,
};
use super::requests::{
    ModifyCertificateRequest, ToggleCertificatesRequest, UploadCertificateRequest,
};
use super::AppState;
use crate::domain::{
    self, CertificateInclude, CertificateKind, DomainError, Order, ProjectId, ProjectKind, Scope,
    ToggleIds,
};

const ORG_ITEM: &str = "organization.certificate";
const PROJECT_ITEM: &str = "organization.project.certificate";

/// List the organization's certificates (`active`: active for the whole organization).
#[utoipa::path(
    get,
    path = "/organization/certificates",
    tag = "Certificates",
    operation_id = "listOrganizationCertificates",
    params(CertificateListQuery),
    responses(
        (status = 200, description = "A page of the organization's certificates.", body = List<OrganizationCertificate>),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Response, ApiError> {
    certificate_list(&s, caller, None, &q).await
}

/// List the organization's certificates with `active` saying whether each is active for the
/// project.
#[utoipa::path(
    get,
    path = "/organization/projects/{project_id}/certificates",
    tag = "Certificates",
    operation_id = "listProjectCertificates",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`."), CertificateListQuery),
    responses(
        (status = 200, description = "A page of the organization's certificates, as seen from the project.", body = List<OrganizationProjectCertificate>),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list_for_project(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(project): PathId<ProjectKind>,
    q: Query,
) -> Result<Response, ApiError> {
    certificate_list(&s, caller, Some(project), &q).await
}

/// Either certificate list, served from the page cache while the organization is unchanged
/// (pages with details excepted: see [`PageKey::include`]).
async fn certificate_list(
    s: &AppState,
    caller: AdminCaller,
    project: Option<ProjectId>,
    q: &Query,
) -> Result<Response, ApiError> {
    let key = PageKey {
        org_id: caller.org_id,
        project_id: project,
        page: q.page(Order::Desc)?,
        include: include(q)?,
    };
    let cacheable = !key.include.details;
    if let Some(hit) = s.pages.get(&key, caller.version).filter(|_| cacheable) {
        return Ok(json_bytes(hit));
    }
    let (page, item) = match &key.project_id {
        None => (
            s.store
                .list_certificates(&key.org_id, &key.page, key.include)
                .await?,
            ORG_ITEM,
        ),
        Some(project) => (
            s.store
                .list_project_certificates(&key.org_id, project, &key.page, key.include)
                .await?,
            PROJECT_ITEM,
        ),
    };
    let now = s.store.now();
    let mut items = Vec::with_capacity(page.items.len());
    for c in page.items {
        items.push(
            CertificateObject::included(item, c.certificate, Some(c.active), key.include, now)
                .map_err(stored_pem)?,
        );
    }
    let list = List::from_page(
        domain::Page {
            items,
            has_more: page.has_more,
        },
        |c| c,
    );
    let bytes = to_bytes(&list)?;
    if cacheable {
        s.pages.put(key, caller.version, bytes.clone());
    }
    Ok(json_bytes(bytes))
}

/// `include[]=content` and/or `include[]=details`; any other value is refused.
fn include(q: &Query) -> Result<CertificateInclude, ApiError> {
    let mut include = CertificateInclude::default();
    for value in q.all("include") {
        match value {
            "content" => include.content = true,
            "details" => include.details = true,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(DomainError::invalid(
                    "include",
                    format!(
                        "Invalid 'include' value '{shown}': the supported values are 'content' and 'details'."
                    ),
                )
                .into());
            }
        }
    }
    Ok(include)
}

/// A stored certificate whose PEM no longer parses: uploads never store one, so this is a
/// fault on certgate's side, never the client's.
fn stored_pem(e: DomainError) -> ApiError {
    ApiError::Internal(Box::new(e))
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.into()))
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Upload a CA certificate (it is not active anywhere until activated).
#[utoipa::path(
    post,
    path = "/organization/certificates",
    tag = "Certificates",
    operation_id = "uploadCertificate",
    request_body(content = UploadCertificateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored certificate.", body = CertificateObject),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn upload(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<UploadCertificateRequest>,
) -> Result<Json<CertificateObject>, ApiError> {
    // `content` is the field name of the 2025 spec and early SDKs; `certificate` is current.
    let UploadCertificateRequest {
        certificate,
        content,
        name,
        client_filter,
        crl_url,
        ocsp,
    } = body;
    let name = name.map(|n| domain::parse_name("name", n)).transpose()?;
    let sources = domain::RevocationSources {
        crl_url: crl_url.as_deref().map(domain::parse_crl_url).transpose()?,
        ocsp: ocsp.map(Into::into).unwrap_or_default(),
    };
    let client_filter = match client_filter.map(filter_within_size).transpose()? {
        Some(source) => Some(check_client_filter(&s, source).await?),
        None => None,
    };
    let text = certificate.or(content).ok_or_else(|| {
        ApiError::bad_request(
            Some("certificate"),
            "Missing required parameter: 'certificate' (the CA certificate in PEM format).",
        )
    })?;
    let parsed = crate::x509::parse_ca_pem(&text, s.store.now())?;
    let cert = s
        .store
        .upload_certificate_with_sources(
            &caller.org_id,
            name,
            &text,
            &parsed,
            client_filter,
            sources,
            &caller.actor(),
        )
        .await?;
    tracing::info!(org = %caller.org_id, certificate = %cert.id, "certificate uploaded");
    Ok(Json(CertificateObject::single(cert)))
}

/// Retrieve one certificate.
#[utoipa::path(
    get,
    path = "/organization/certificates/{certificate_id}",
    tag = "Certificates",
    operation_id = "getCertificate",
    params(("certificate_id" = String, Path, description = "The certificate's id, `cert_…`."), CertificateGetQuery),
    responses(
        (status = 200, description = "The certificate.", body = CertificateObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
    q: Query,
) -> Result<Json<CertificateObject>, ApiError> {
    let include = include(&q)?;
    let cert = s
        .store
        .get_certificate(&caller.org_id, &id, include)
        .await?;
    CertificateObject::included("certificate", cert, None, include, s.store.now())
        .map(Json)
        .map_err(stored_pem)
}

/// Rename a certificate and set or clear its client filter (nothing else of it changes).
#[utoipa::path(
    post,
    path = "/organization/certificates/{certificate_id}",
    tag = "Certificates",
    operation_id = "modifyCertificate",
    params(("certificate_id" = String, Path, description = "The certificate's id, `cert_…`.")),
    // An empty body changes nothing (and is answered like `{}`).
    request_body(content = Option<ModifyCertificateRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The certificate after the change.", body = CertificateObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn modify(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
    JsonBody(body): JsonBody<ModifyCertificateRequest>,
) -> Result<Json<CertificateObject>, ApiError> {
    let name = body
        .name
        .map(|n| n.map(|n| domain::parse_name("name", n)).transpose())
        .transpose()?;
    // A string sets the filter, null clears it, absence leaves it.
    let client_filter = body
        .client_filter
        .map(|f| f.map(filter_within_size).transpose())
        .transpose()?;
    let client_filter = match client_filter {
        Some(Some(source)) => Some(Some(check_client_filter(&s, source).await?)),
        other => other,
    };
    let sources = domain::SourcesChange {
        crl_url: body
            .crl_url
            .map(|u| u.as_deref().map(domain::parse_crl_url).transpose())
            .transpose()?,
        ocsp: body.ocsp.map(Into::into),
    };
    let cert = s
        .store
        .modify_certificate_with_sources(
            &caller.org_id,
            &id,
            name,
            client_filter,
            sources,
            &caller.actor(),
        )
        .await?;
    Ok(Json(CertificateObject::single(cert)))
}

/// Delete a certificate that is active nowhere.
#[utoipa::path(
    delete,
    path = "/organization/certificates/{certificate_id}",
    tag = "Certificates",
    operation_id = "deleteCertificate",
    params(("certificate_id" = String, Path, description = "The certificate's id, `cert_…`.")),
    responses(
        (status = 200, description = "The certificate is gone.", body = Deleted),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn delete(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
) -> Result<Json<Deleted>, ApiError> {
    s.store
        .delete_certificate(&caller.org_id, &id, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, certificate = %id, "certificate deleted");
    Ok(Json(Deleted {
        object: "certificate.deleted",
        id: id.into_string(),
    }))
}

/// Activate certificates for the whole organization: all of the ids or none.
#[utoipa::path(
    post,
    path = "/organization/certificates/activate",
    tag = "Certificates",
    operation_id = "activateOrganizationCertificates",
    request_body(content = ToggleCertificatesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every certificate named, after the change.", body = OrganizationCertificateActivationResponse),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn activate(
    state: State<AppState>,
    caller: AdminCaller,
    body: JsonBody<ToggleCertificatesRequest>,
) -> Result<Json<OrganizationCertificateActivationResponse>, ApiError> {
    let data = toggle(state, caller, Scope::Organization, body, true).await?;
    Ok(Json(OrganizationCertificateActivationResponse::new(data)))
}

/// Deactivate certificates for the whole organization: all of the ids or none.
#[utoipa::path(
    post,
    path = "/organization/certificates/deactivate",
    tag = "Certificates",
    operation_id = "deactivateOrganizationCertificates",
    request_body(content = ToggleCertificatesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every certificate named, after the change.", body = OrganizationCertificateDeactivationResponse),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn deactivate(
    state: State<AppState>,
    caller: AdminCaller,
    body: JsonBody<ToggleCertificatesRequest>,
) -> Result<Json<OrganizationCertificateDeactivationResponse>, ApiError> {
    let data = toggle(state, caller, Scope::Organization, body, false).await?;
    Ok(Json(OrganizationCertificateDeactivationResponse::new(data)))
}

/// Activate certificates for one project: all of the ids or none.
#[utoipa::path(
    post,
    path = "/organization/projects/{project_id}/certificates/activate",
    tag = "Certificates",
    operation_id = "activateProjectCertificates",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`.")),
    request_body(content = ToggleCertificatesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every certificate named, after the change.", body = OrganizationProjectCertificateActivationResponse),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn activate_for_project(
    state: State<AppState>,
    caller: AdminCaller,
    PathId(project): PathId<ProjectKind>,
    body: JsonBody<ToggleCertificatesRequest>,
) -> Result<Json<OrganizationProjectCertificateActivationResponse>, ApiError> {
    let data = toggle(state, caller, Scope::Project(project), body, true).await?;
    Ok(Json(OrganizationProjectCertificateActivationResponse::new(
        data,
    )))
}

/// Deactivate certificates for one project: all of the ids or none.
#[utoipa::path(
    post,
    path = "/organization/projects/{project_id}/certificates/deactivate",
    tag = "Certificates",
    operation_id = "deactivateProjectCertificates",
    params(("project_id" = String, Path, description = "The project's id, `proj_…`.")),
    request_body(content = ToggleCertificatesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every certificate named, after the change.", body = OrganizationProjectCertificateDeactivationResponse),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn deactivate_for_project(
    state: State<AppState>,
    caller: AdminCaller,
    PathId(project): PathId<ProjectKind>,
    body: JsonBody<ToggleCertificatesRequest>,
) -> Result<Json<OrganizationProjectCertificateDeactivationResponse>, ApiError> {
    let data = toggle(state, caller, Scope::Project(project), body, false).await?;
    Ok(Json(
        OrganizationProjectCertificateDeactivationResponse::new(data),
    ))
}

/// A toggle's items, for the handler's answer of its scope.
async fn toggle(
    State(s): State<AppState>,
    caller: AdminCaller,
    scope: Scope,
    JsonBody(body): JsonBody<ToggleCertificatesRequest>,
    activate: bool,
) -> Result<Vec<CertificateObject>, ApiError> {
    // `data` is what the 2025 spec's curl examples send; `certificate_ids` is the schema's name.
    let ids = body.certificate_ids.or(body.data).ok_or_else(|| {
        ApiError::bad_request(
            Some("certificate_ids"),
            "Missing required parameter: 'certificate_ids' (an array of 1 to 10 certificate ids).",
        )
    })?;
    let ids = ToggleIds::parse(&ids)?;
    let items = s
        .store
        .toggle_certificates(&caller.org_id, &scope, &ids, activate, &caller.actor())
        .await?;
    let item = match scope {
        Scope::Organization => ORG_ITEM,
        Scope::Project(_) => PROJECT_ITEM,
    };
    tracing::info!(org = %caller.org_id, ?scope, activate, count = items.len(), "certificates toggled");
    Ok(items
        .into_iter()
        .map(|c| CertificateObject::scoped(item, c))
        .collect())
}

/// A client filter as written must be at most 4 KiB (checked before anything else is done
/// with it).
fn filter_within_size(source: String) -> Result<String, ApiError> {
    if source.len() > domain::MAX_CLIENT_FILTER_BYTES {
        return Err(DomainError::InvalidClientFilter(format!(
            "it is {} bytes; the limit is {} bytes.",
            source.len(),
            domain::MAX_CLIENT_FILTER_BYTES
        ))
        .into());
    }
    Ok(source)
}

/// A client filter as written (spec §12.6, §13.5): a CEL expression that compiles, uses only
/// `cert` and its fields, stays within its cost budget and, tried on a certificate with every
/// variable set, gives a boolean or an error (an error on the sample is no reason to refuse).
/// Parsing and trying it is CPU work on tenant input: it runs on the API's bounded pool, never
/// on an async worker.
async fn check_client_filter(s: &AppState, source: String) -> Result<String, ApiError> {
    let checked = s
        .trust
        .pool()
        .run(move || crate::trust::ClientFilter::check_written(&source).map(|_| source))
        .await
        .ok_or_else(|| {
            ApiError::Internal(Box::new(std::io::Error::other(
                "the client filter check did not run",
            )))
        })?;
    checked.map_err(|why| DomainError::InvalidClientFilter(format!("{why}.")).into())
}
