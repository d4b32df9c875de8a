//! Revocation without rotating a CA (spec §12.5): `/organization/revoked_certificates…` (the
//! organization's deny-list) and `/organization/certificates/{id}/crl` (a CA's CRL).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::{HasId, List};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody, LargeJsonBody, PathId, Query};
use super::openapi::{constant, RevocationListQuery};
use super::requests::{PutCrlRequest, RevokeCertificateRequest};
use super::AppState;
use crate::domain::{
    self, CertificateKind, CrlSummary, Order, RevokedCertificate, RevokedCertificateKind,
};

/// A deny-listed client certificate: the gateway refuses it under every CA.
#[derive(Serialize, ToSchema)]
#[schema(as = RevokedCertificate)]
pub struct RevokedCertificateObject {
    #[schema(schema_with = constant::revoked_certificate)]
    pub object: &'static str,
    /// `revcert_…`.
    pub id: String,
    /// SHA-256 of the certificate's DER, 64 lowercase hex digits.
    pub sha256_fingerprint: String,
    #[schema(required = true)]
    pub reason: Option<String>,
    pub created_at: i64,
}

impl From<RevokedCertificate> for RevokedCertificateObject {
    fn from(r: RevokedCertificate) -> Self {
        RevokedCertificateObject {
            object: "organization.revoked_certificate",
            id: r.id.into_string(),
            sha256_fingerprint: r.sha256_fingerprint,
            reason: r.reason,
            created_at: r.created_at,
        }
    }
}

impl HasId for RevokedCertificateObject {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = RevokedCertificateDeleteResponse)]
pub struct RevokedCertificateDeleted {
    pub id: String,
    #[schema(schema_with = constant::revoked_certificate_deleted)]
    pub object: &'static str,
    pub deleted: bool,
}

/// A CA's stored CRL, summarized.
#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCrl)]
pub struct CrlObject {
    #[schema(schema_with = constant::certificate_crl)]
    pub object: &'static str,
    /// The CA, `cert_…`.
    pub certificate_id: String,
    /// The CRL's thisUpdate, Unix seconds.
    pub this_update: i64,
    /// The CRL's nextUpdate, Unix seconds; after it the CRL shows `stale` and stays enforced.
    #[schema(required = true)]
    pub next_update: Option<i64>,
    pub revoked_count: i64,
}

impl From<CrlSummary> for CrlObject {
    fn from(c: CrlSummary) -> Self {
        CrlObject {
            object: "organization.certificate.crl",
            certificate_id: c.certificate_id.into_string(),
            this_update: c.this_update,
            next_update: c.next_update,
            revoked_count: c.revoked_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = CertificateCrlDeleteResponse)]
pub struct CrlDeleted {
    #[schema(schema_with = constant::certificate_crl_deleted)]
    pub object: &'static str,
    pub certificate_id: String,
    pub deleted: bool,
}

/// `POST /organization/revoked_certificates`: exactly one of `certificate` (PEM) or
/// `sha256_fingerprint`, and an optional `reason`.
#[utoipa::path(
    post,
    path = "/organization/revoked_certificates",
    tag = "Revocation",
    operation_id = "revokeCertificate",
    request_body(content = RevokeCertificateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new deny-list entry.", body = RevokedCertificateObject),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    JsonBody(body): JsonBody<RevokeCertificateRequest>,
) -> Result<Json<RevokedCertificateObject>, ApiError> {
    let RevokeCertificateRequest {
        certificate,
        sha256_fingerprint: fingerprint,
        reason,
    } = body;
    let reason = reason.map(domain::parse_reason).transpose()?;
    let sha256 = match (certificate, fingerprint) {
        (Some(pem), None) => crate::x509::certificate_sha256(&pem)?,
        (None, Some(hex)) => domain::parse_fingerprint(&hex)?,
        _ => {
            return Err(ApiError::bad_request(
                Some("certificate"),
                "Send exactly one of 'certificate' (the certificate to revoke, PEM) or 'sha256_fingerprint' (the SHA-256 of its DER, 64 hex digits).",
            ))
        }
    };
    let entry = s
        .store
        .revoke_certificate(&caller.org_id, &sha256, reason, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, entry = %entry.id, "certificate revoked");
    Ok(Json(entry.into()))
}

/// The organization's deny-list, newest first unless `order=asc`.
#[utoipa::path(
    get,
    path = "/organization/revoked_certificates",
    tag = "Revocation",
    operation_id = "listRevokedCertificates",
    params(RevocationListQuery),
    responses(
        (status = 200, description = "A page of the deny-list.", body = List<RevokedCertificateObject>),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: AdminCaller,
    q: Query,
) -> Result<Json<List<RevokedCertificateObject>>, ApiError> {
    let page = q.page(Order::Desc)?;
    let page = s
        .store
        .list_revoked_certificates(&caller.org_id, &page)
        .await?;
    Ok(Json(List::from_page(page, RevokedCertificateObject::from)))
}

/// One deny-list entry.
#[utoipa::path(
    get,
    path = "/organization/revoked_certificates/{revoked_certificate_id}",
    tag = "Revocation",
    operation_id = "getRevokedCertificate",
    params(("revoked_certificate_id" = String, Path, description = "The entry's id, `revcert_…`.")),
    responses(
        (status = 200, description = "The entry.", body = RevokedCertificateObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<RevokedCertificateKind>,
) -> Result<Json<RevokedCertificateObject>, ApiError> {
    Ok(Json(
        s.store
            .get_revoked_certificate(&caller.org_id, &id)
            .await?
            .into(),
    ))
}

/// Remove an entry: the certificate is admitted again wherever its CA is active.
#[utoipa::path(
    delete,
    path = "/organization/revoked_certificates/{revoked_certificate_id}",
    tag = "Revocation",
    operation_id = "unrevokeCertificate",
    params(("revoked_certificate_id" = String, Path, description = "The entry's id, `revcert_…`.")),
    responses(
        (status = 200, description = "The entry is gone.", body = RevokedCertificateDeleted),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn delete(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<RevokedCertificateKind>,
) -> Result<Json<RevokedCertificateDeleted>, ApiError> {
    s.store
        .unrevoke_certificate(&caller.org_id, &id, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, entry = %id, "certificate unrevoked");
    Ok(Json(RevokedCertificateDeleted {
        id: id.into_string(),
        object: "organization.revoked_certificate.deleted",
        deleted: true,
    }))
}

/// `PUT /organization/certificates/{id}/crl` with `{"crl": "<PEM or base64 DER>"}`.
#[utoipa::path(
    put,
    path = "/organization/certificates/{certificate_id}/crl",
    tag = "Revocation",
    operation_id = "putCertificateCrl",
    params(("certificate_id" = String, Path, description = "The CA's id, `cert_…`.")),
    request_body(content = PutCrlRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored CRL.", body = CrlObject),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, response = super::openapi::Conflict),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn put_crl(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
    JsonBody(PutCrlRequest { crl: text }): LargeJsonBody<PutCrlRequest>,
) -> Result<Json<CrlObject>, ApiError> {
    let ca = s
        .store
        .get_certificate(
            &caller.org_id,
            &id,
            domain::CertificateInclude {
                content: true,
                details: false,
            },
        )
        .await?;
    // A certificate's content never changes, so checking the CRL against it before the
    // writing transaction is not load-check-save: the store only re-checks that it exists.
    // Decoding and walking up to 8 MiB is CPU work: off the async workers.
    let (pem, now) = (ca.content.unwrap_or_default(), s.store.now());
    let crl = tokio::task::spawn_blocking(move || {
        let crl = crate::crl::parse_crl(&text, now)?;
        crate::crl::check_issued_by(&crl, &pem)?;
        Ok::<_, domain::DomainError>(crl)
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))??;
    let stored = s
        .store
        .put_crl(&caller.org_id, &id, &crl, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, certificate = %id, revoked = stored.revoked_count, "CRL stored");
    Ok(Json(stored.into()))
}

/// The CA's stored CRL.
#[utoipa::path(
    get,
    path = "/organization/certificates/{certificate_id}/crl",
    tag = "Revocation",
    operation_id = "getCertificateCrl",
    params(("certificate_id" = String, Path, description = "The CA's id, `cert_…`.")),
    responses(
        (status = 200, description = "The stored CRL.", body = CrlObject),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn get_crl(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
) -> Result<Json<CrlObject>, ApiError> {
    Ok(Json(s.store.get_crl(&caller.org_id, &id).await?.into()))
}

/// Forget the CA's CRL: its clients are judged without one again.
#[utoipa::path(
    delete,
    path = "/organization/certificates/{certificate_id}/crl",
    tag = "Revocation",
    operation_id = "deleteCertificateCrl",
    params(("certificate_id" = String, Path, description = "The CA's id, `cert_…`.")),
    responses(
        (status = 200, description = "The CRL is gone.", body = CrlDeleted),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("AdminApiKeyAuth" = []))
)]
pub async fn delete_crl(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
) -> Result<Json<CrlDeleted>, ApiError> {
    s.store
        .delete_crl(&caller.org_id, &id, &caller.actor())
        .await?;
    Ok(Json(CrlDeleted {
        object: "organization.certificate.crl.deleted",
        certificate_id: id.into_string(),
        deleted: true,
    }))
}
