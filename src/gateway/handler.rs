//! The gateway's one handler: read the request's scope, decide, then forward or refuse.
//!
//! Scope (spec §12.9): the organization is the `OpenAI-Organization` header, else the
//! gateway's `--organization`, else the request is refused (`organization_required`); it is
//! never inferred from the certificate. `OpenAI-Project` must name an unarchived project of
//! that organization. Either header given twice is refused rather than guessed at.
//!
//! The chain work of a decision runs on [`crate::admission::ChainPool`], off the async workers, once per
//! connection and anchor, and not at all for a chain whose genuine path another connection
//! found ([`trust::CheckCache`]); so do the tenants' client filters, once per connection and
//! filter (or never, for a leaf whose verdict another connection found), each bounded by its
//! static budget and waited for at most [`crate::admission::FILTER_TIMEOUT`]. The decision itself is a few hash
//! lookups.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rustls_pki_types::SignatureVerificationAlgorithm;

use super::listener::PeerIdentity;
use super::proxy::{self, GatewayState};
use super::reload::TrustState;
use super::upgrade;
use crate::admission::{ChainPool, Prepare};
use crate::ocsp::{self, OcspChecker};
use crate::openai_error::{OpenAiError, INVALID_REQUEST, PERMISSION, SERVER};
use crate::trust::{
    self, Admission, ChainChecks, CheckCache, PeerChain, Rejection, RejectionKind, Scope,
};

pub const ORGANIZATION_HEADER: &str = "openai-organization";
pub const PROJECT_HEADER: &str = "openai-project";

/// The gateway's only handler: every method and path.
pub async fn handle(
    State(shared): State<Arc<GatewayState>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    req: Request,
) -> Response {
    if let Err(why) = proxy::check_path(req.uri().path()) {
        return bad_request(why);
    }
    if upgrade::is_websocket_upgrade(&req) {
        if let Some(refused) = upgrade::refuse_body(&req) {
            return refused;
        }
    }
    let requested = match request_scope(
        req.headers(),
        ScopeDefaults {
            organization: shared.default_organization.as_deref(),
            project: None,
        },
    ) {
        Ok(scope) => scope,
        Err(Refusal::BadRequest(why)) => return bad_request(why),
        Err(Refusal::Rejected(rejection)) => return refuse(&shared, &peer, rejection),
    };
    let scope = requested.scope();
    match admit(&shared, &peer, scope).await {
        Ok(admission) => {
            shared.metrics.decided("admitted");
            if upgrade::is_websocket_upgrade(&req) {
                upgrade::forward(&shared, &peer, admission, req).await
            } else {
                proxy::forward(&shared, &peer, admission, req).await
            }
        }
        Err(rejection) => refuse(&shared, &peer, rejection),
    }
}

/// The decision for one request (or, again, for an open upgraded connection), through
/// [`decide`] with this gateway's trust state, pool and path cache.
pub(super) async fn admit(
    shared: &GatewayState,
    peer: &PeerIdentity,
    scope: Scope<'_>,
) -> Result<Admission, Rejection> {
    let decider = Decider {
        trust: &shared.trust,
        now: shared.store.now(),
        algs: shared.algs.all,
        pool: &shared.chain_pool,
        paths: &shared.chain_cache,
        ocsp: &shared.ocsp,
    };
    decide(decider, peer.chain(), peer.checks(), scope).await
}

/// What a decision reads besides the request: the trust state in force, the chain-work pool
/// and the genuine paths found so far. The gateway and `certgate authz` both decide through
/// [`decide`] with one of these, so they answer alike (decisions.md D45).
pub struct Decider<'a> {
    pub trust: &'a TrustState,
    pub now: i64,
    pub algs: &'static [&'static dyn SignatureVerificationAlgorithm],
    pub pool: &'a ChainPool,
    pub paths: &'a CheckCache,
    /// OCSP answers, asked only for clients of a CA whose mode is not `off`.
    pub ocsp: &'a OcspChecker,
}

/// The one decision for a chain and a scope: refusals that need no chain work first, then the
/// chain checks and client filters `checks` lacks (on the pool; `checks` is locked meanwhile,
/// so concurrent requests with the same chain wait for one another instead of repeating the
/// work), then [`trust::decide()`], which only reads what they found; then, only when the
/// admitting CA's `ocsp` mode is not `off`, the OCSP step ([`ocsp::judge`], awaited without
/// holding `checks` and never blocking a worker: the fetch is async, the verification on the
/// blocking pool).
pub async fn decide(
    decider: Decider<'_>,
    chain: Option<&Arc<PeerChain>>,
    checks: &tokio::sync::Mutex<ChainChecks>,
    scope: Scope<'_>,
) -> Result<Admission, Rejection> {
    let index = decider.trust.index_arc();
    let now = decider.now;
    trust::precheck(&index, chain.map(AsRef::as_ref), scope)?;
    let Some(chain) = chain else {
        return Err(Rejection::CertificateRequired);
    };
    let mut checks = checks.lock().await;
    let work = Prepare {
        index: &index,
        chain,
        scope,
        now,
        algs: decider.algs,
        paths: Some(decider.paths),
        inline_leaf_check: true,
    };
    decider.pool.prepare(work, &mut checks).await;
    let admission = trust::decide(&index, Some(chain), &checks, scope, now)?;
    let Some(subject) = index.ocsp_subject(&admission, chain, &checks) else {
        return Ok(admission);
    };
    drop(checks);
    let (_, verdict) = ocsp::judge(decider.ocsp, &subject, now).await;
    verdict.map(|()| admission)
}

/// Where a request's scope comes from when its headers do not name it: the gateway's
/// `--organization`; for `certgate authz` also the route's context (Envoy's
/// `context_extensions`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeDefaults<'a> {
    pub organization: Option<&'a str>,
    pub project: Option<&'a str>,
}

/// A request's scope, owned (see [`request_scope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScope {
    pub organization: String,
    pub project: Option<String>,
}

impl RequestScope {
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            organization: &self.organization,
            project: self.project.as_deref(),
        }
    }
}

/// Why a request is refused before or by the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is malformed (400 `invalid_request_error`, no code).
    BadRequest(String),
    /// The trust decision's refusal.
    Rejected(Rejection),
}

impl Refusal {
    /// The answer: status, OpenAI's error `type`, message and code, as the gateway sends it.
    pub fn error(&self) -> OpenAiError {
        match self {
            Refusal::BadRequest(message) => OpenAiError {
                status: StatusCode::BAD_REQUEST,
                kind: INVALID_REQUEST,
                message: message.clone(),
                param: None,
                code: None,
            },
            Refusal::Rejected(rejection) => {
                let (status, kind) = match rejection.kind() {
                    RejectionKind::BadRequest => (StatusCode::BAD_REQUEST, INVALID_REQUEST),
                    RejectionKind::Forbidden => (StatusCode::FORBIDDEN, PERMISSION),
                    RejectionKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, SERVER),
                };
                OpenAiError {
                    status,
                    kind,
                    message: rejection.to_string(),
                    param: None,
                    code: Some(rejection.code()),
                }
            }
        }
    }
}

/// The scope a request names (spec §12.9): `OpenAI-Organization`, else the default
/// organization, else `organization_required`; `OpenAI-Project`, else the default project.
/// Either header given more than once, or not visible ASCII, is a bad request: never guessed
/// at, and never inferred from the certificate.
pub fn request_scope(
    headers: &HeaderMap,
    defaults: ScopeDefaults<'_>,
) -> Result<RequestScope, Refusal> {
    let organization = single_header(headers, ORGANIZATION_HEADER)
        .map_err(Refusal::BadRequest)?
        .or_else(|| defaults.organization.map(str::to_owned))
        .ok_or(Refusal::Rejected(Rejection::OrganizationRequired))?;
    let project = single_header(headers, PROJECT_HEADER).map_err(Refusal::BadRequest)?;
    Ok(RequestScope {
        organization,
        project: project.or_else(|| defaults.project.map(str::to_owned)),
    })
}

/// A scope header's value: `Ok(None)` when absent or empty; refused when given more than once
/// or not visible ASCII.
pub(super) fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!(
            "The {name} header was given more than once; send it once."
        ));
    }
    let value = first
        .to_str()
        .map_err(|_| format!("The {name} header must be visible ASCII."))?
        .trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn bad_request(message: String) -> Response {
    Refusal::BadRequest(message).error().into_response()
}

/// The answer to a refusal, with OpenAI's four-key error body; logged as the gateway's
/// refusal policy says (see [`RefusalLog`]).
fn refuse(shared: &GatewayState, peer: &PeerIdentity, rejection: Rejection) -> Response {
    shared.refusals.record(&peer.remote(), rejection);
    shared.metrics.decided(rejection.code());
    Refusal::Rejected(rejection).error().into_response()
}

/// Refusals are logged at debug level, one line each; at info level, at most one summary line
/// per [`RefusalLog::SUMMARY_EVERY`], so unauthenticated clients do not control log volume.
pub struct RefusalLog {
    since_summary: AtomicU64,
    last_summary: Mutex<Instant>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            since_summary: AtomicU64::new(0),
            last_summary: Mutex::new(Instant::now()),
        }
    }
}

impl RefusalLog {
    pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

    /// One refusal of a request from `remote` (for `certgate authz`: the transport asked).
    pub fn record(&self, remote: &dyn std::fmt::Display, rejection: Rejection) {
        tracing::debug!(%remote, code = rejection.code(), "request refused");
        self.since_summary.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.last_summary.try_lock() else {
            return;
        };
        if last.elapsed() >= Self::SUMMARY_EVERY {
            let count = self.since_summary.swap(0, Ordering::Relaxed);
            tracing::info!(
                refused = count,
                seconds = last.elapsed().as_secs(),
                last_code = rejection.code(),
                "requests refused since the last summary"
            );
            *last = Instant::now();
        }
    }
}
