//! `POST /organization/certificates/check` and `POST /organization/certificates/rotate`
//! (spec §12.4). The check runs the gateway's own decision ([`trust::precheck`],
//! [`ChainPool::prepare`], [`trust::decide()`]) on the committed state; the CLI's `cert check`
//! and `cert rotate` call the same functions as these handlers.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::Json;
use rustls_pki_types::CertificateDer;

use super::dto::{CertificateCheck, CertificateName, RotationObject};
use super::error::ApiError;
use super::extract::{AdminCaller, JsonBody};
use super::requests::{CheckCertificateRequest, RotateCertificateRequest};
use super::AppState;
use crate::admission::{ChainPool, Prepare};
use crate::domain::{self, Actor, CertificateId, CertificateInclude, OrgId};
use crate::store::{Store, StoreError};
use crate::trust::{
    self, Admission, ChainChecks, PeerChain, Rejection, RejectionKind, Scope, TrustIndex,
};

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
    .map(Json)
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
    .await?;
    tracing::info!(org = %caller.org_id, from = %rotation.from, to = %rotation.to, retired = rotation.retired, "certificate rotated");
    Ok(Json(rotation))
}

/// A rotation, as the API and `certgate cert rotate` make it.
pub async fn rotate_certificate(
    store: &Store,
    org: &OrgId,
    from: &str,
    to: &str,
    retire_from: bool,
    actor: &Actor,
) -> Result<RotationObject, ApiError> {
    let (from, to) = domain::parse_rotation_ids(from, to)?;
    let rotation = store
        .rotate_certificate(org, &from, &to, retire_from, actor)
        .await?;
    Ok(RotationObject::from(rotation))
}

/// Would the gateway admit a client presenting `certificate` (PEM: its leaf, then its
/// intermediates) to `org`, and `project` when given (read exactly like the gateway reads
/// `OpenAI-Project`: trimmed, empty meaning none)? Decided on the committed trust state at the
/// store's now. A refusal of the certificate is an answer (`admitted: false` and the gateway's
/// code); a request the gateway would refuse before looking at the certificate (an unknown or
/// archived project) is an error with the gateway's code.
pub async fn check_client(
    store: &Store,
    cache: &TrustCache,
    org: &OrgId,
    certificate: &str,
    project: Option<&str>,
) -> Result<CertificateCheck, ApiError> {
    let chain = crate::x509::parse_client_chain(certificate)?;
    let project = project
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let index = cache.current(store).await?;
    let now = store.now();
    let decided = decide_now(
        cache.pool(),
        &index,
        chain,
        org.as_str(),
        project.as_deref(),
        now,
    )
    .await;
    match decided {
        Ok(admission) => admitted(store, org, project.as_deref(), &admission).await,
        Err(rejection) if rejection.kind() == RejectionKind::Forbidden => Ok(CertificateCheck {
            object: "organization.certificate_check",
            admitted: false,
            code: Some(rejection.code()),
            message: rejection.to_string(),
            certificate: None,
        }),
        Err(rejection) => Err(ApiError::Refused(rejection)),
    }
}

/// The gateway's decision for one request from a fresh connection presenting `chain`: the
/// checks that need no chain work, then every chain check and client filter the decision needs
/// (off the async workers, on a bounded pool, as the gateway runs them), then the decision.
async fn decide_now(
    pool: &ChainPool,
    index: &Arc<TrustIndex>,
    chain: Vec<Vec<u8>>,
    organization: &str,
    project: Option<&str>,
    now: i64,
) -> Result<Admission, Rejection> {
    let peer = PeerChain::new(chain.into_iter().map(CertificateDer::from).collect());
    let scope = Scope {
        organization,
        project,
    };
    trust::precheck(index, peer.as_ref(), scope)?;
    let Some(peer) = peer.map(Arc::new) else {
        return Err(Rejection::CertificateRequired);
    };
    let mut checks = ChainChecks::default();
    let work = Prepare {
        index,
        chain: &peer,
        scope,
        now,
        algs: trust::SIGNATURE_ALGORITHMS,
        paths: None,
        inline_leaf_check: false,
    };
    pool.prepare(work, &mut checks).await;
    trust::decide(index, Some(&peer), &checks, scope, now)
}

async fn admitted(
    store: &Store,
    org: &OrgId,
    project: Option<&str>,
    admission: &Admission,
) -> Result<CertificateCheck, ApiError> {
    let id = CertificateId::trusted(admission.certificate_id.clone());
    // The name as it is now (names are not part of the trust state). The CA cannot be deleted
    // while active, but it may have been deactivated and deleted since the decision.
    let name = match store
        .get_certificate(org, &id, CertificateInclude::default())
        .await
    {
        Ok(c) => c.name,
        Err(StoreError::Rule(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let named = match &name {
        Some(n) => format!("'{n}' ({id})"),
        None => id.to_string(),
    };
    let scope = match project {
        Some(p) => format!("requests to project '{p}'"),
        None => "requests to the organization".to_owned(),
    };
    Ok(CertificateCheck {
        object: "organization.certificate_check",
        admitted: true,
        code: None,
        message: format!(
            "The client certificate is admitted for {scope}: it chains to the active CA certificate {named}."
        ),
        certificate: Some(CertificateName {
            id: id.into_string(),
            name,
        }),
    })
}

/// The trust index of the committed state, rebuilt only when the trust generation moved (every
/// change of who may connect moves it, in its transaction), from the same snapshot the
/// gateway reads ([`Store::trust_snapshot`]): whatever stages the gateway's decision gains,
/// the check sees the same state. Decoded anchors are reused across rebuilds, as on the
/// gateway.
#[derive(Default)]
pub struct TrustCache {
    index: Mutex<Arc<TrustIndex>>,
    /// Where the check's chain work and client filters run, and written filters are checked:
    /// bounded, off the async workers.
    pool: ChainPool,
}

impl TrustCache {
    /// The bounded pool of this process's API for CPU work on tenants' input.
    pub fn pool(&self) -> &ChainPool {
        &self.pool
    }

    async fn current(&self, store: &Store) -> Result<Arc<TrustIndex>, ApiError> {
        let generation = store.trust_generation().await?;
        let cached = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if cached.generation() == Some(generation) {
            return Ok(cached);
        }
        let snapshot = store.trust_snapshot(&cached.crl_versions()).await?;
        let index = tokio::task::spawn_blocking(move || TrustIndex::build(&snapshot, &cached))
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        let index = Arc::new(index);
        let mut slot = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.generation() < index.generation() {
            *slot = index.clone();
        }
        Ok(index)
    }
}
