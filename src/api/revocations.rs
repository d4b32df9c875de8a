//! Revocation without rotating a CA (spec §12.5): `/organization/revoked_certificates…` (the
//! organization's deny-list) and `/organization/certificates/{id}/crl` (a CA's CRL).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::dto::{HasId, List};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonObject, LargeJsonObject, PathId, Query};
use super::AppState;
use crate::domain::{
    self, CertificateKind, CrlSummary, Order, RevokedCertificate, RevokedCertificateKind,
};

#[derive(Serialize)]
pub struct RevokedCertificateObject {
    pub object: &'static str,
    pub id: String,
    pub sha256_fingerprint: String,
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

#[derive(Serialize)]
pub struct RevokedCertificateDeleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Serialize)]
pub struct CrlObject {
    pub object: &'static str,
    pub certificate_id: String,
    pub this_update: i64,
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

#[derive(Serialize)]
pub struct CrlDeleted {
    pub object: &'static str,
    pub certificate_id: String,
    pub deleted: bool,
}

/// `POST /organization/revoked_certificates`: exactly one of `certificate` (PEM) or
/// `sha256_fingerprint`, and an optional `reason`.
pub async fn create(
    State(s): State<AppState>,
    caller: AdminCaller,
    mut body: JsonObject,
) -> Result<Json<RevokedCertificateObject>, ApiError> {
    let certificate = body.optional_string("certificate")?;
    let fingerprint = body.optional_string("sha256_fingerprint")?;
    let reason = body
        .optional_string("reason")?
        .map(domain::parse_reason)
        .transpose()?;
    body.finish()?;
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
pub async fn put_crl(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
    mut body: LargeJsonObject,
) -> Result<Json<CrlObject>, ApiError> {
    let text = body.required_string("crl")?;
    body.finish()?;
    let crl = crate::crl::parse_crl(&text)?;
    // A certificate's content never changes, so checking the CRL against it before the
    // writing transaction is not load-check-save: the store only re-checks that it exists.
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
    crate::crl::check_issued_by(&crl, ca.content.as_deref().unwrap_or_default())?;
    let stored = s
        .store
        .put_crl(&caller.org_id, &id, &crl, &caller.actor())
        .await?;
    tracing::info!(org = %caller.org_id, certificate = %id, revoked = stored.revoked_count, "CRL stored");
    Ok(Json(stored.into()))
}

pub async fn get_crl(
    State(s): State<AppState>,
    caller: AdminCaller,
    PathId(id): PathId<CertificateKind>,
) -> Result<Json<CrlObject>, ApiError> {
    Ok(Json(s.store.get_crl(&caller.org_id, &id).await?.into()))
}

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
