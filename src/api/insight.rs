//! `POST /organization/certificates/check` and `POST /organization/certificates/rotate`
//! (spec §12.4): the HTTP edge of the check and rotate use case in [`crate::insight`], which
//! the CLI's `cert check` and `cert rotate` call too.

use axum::extract::State;
use axum::Json;

use super::dto::{CertificateCheck, RotationObject};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody};
use super::requests::{CheckCertificateRequest, RotateCertificateRequest};
use super::AppState;
use crate::insight::{check_client, rotate_certificate};

/// Would the gateway admit a client presenting this certificate (spec §12.4)?
#[utoipa::path(
    post,
    path = "/organization/certificates/check",
    tag = "Certificates",
    operation_id = "checkClientCertificate",
    request_body(content = CheckCertificateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The gateway's decision: admitted, or refused with its code.", body = CertificateCheck),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn check(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<CheckCertificateRequest>,
) -> Result<Json<CertificateCheck>, ApiError> {
    let CheckCertificateRequest {
        certificate,
        project_id: project,
    } = body;
    check_client(
        &s.store,
        &s.trust,
        &caller.org_id,
        &certificate,
        project.as_deref(),
    )
    .await
    .map(|check| Json(check.into()))
    .map_err(ApiError::from)
}

/// Activate `to` wherever `from` is active, and optionally retire `from`, in one transaction.
#[utoipa::path(
    post,
    path = "/organization/certificates/rotate",
    tag = "Certificates",
    operation_id = "rotateCertificate",
    request_body(content = RotateCertificateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Where `to` is now active.", body = RotationObject),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn rotate(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<RotateCertificateRequest>,
) -> Result<Json<RotationObject>, ApiError> {
    let RotateCertificateRequest {
        from,
        to,
        retire_from,
    } = body;
    let retire_from = retire_from.unwrap_or(false);
    let rotation = rotate_certificate(
        &s.store,
        &caller.org_id,
        &from,
        &to,
        retire_from,
        &caller.actor(),
    )
    .await
    .map(RotationObject::from)?;
    tracing::info!(org = %caller.org_id, from = %rotation.from, to = %rotation.to, retired = rotation.retired, "certificate rotated");
    Ok(Json(rotation))
}
