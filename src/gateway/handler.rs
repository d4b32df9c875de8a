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

use super::listener::PeerIdentity;
use super::proxy::{self, GatewayState};
use super::upgrade;
use crate::admission::Prepare;
use crate::openai_error::{OpenAiError, INVALID_REQUEST, PERMISSION, SERVER};
use crate::trust::{self, Admission, Rejection, RejectionKind, Scope};

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
    let organization = match single_header(req.headers(), ORGANIZATION_HEADER) {
        Ok(Some(org)) => org,
        Ok(None) => match &shared.default_organization {
            Some(org) => org.clone(),
            None => return refuse(&shared, &peer, Rejection::OrganizationRequired),
        },
        Err(why) => return bad_request(why),
    };
    let project = match single_header(req.headers(), PROJECT_HEADER) {
        Ok(project) => project,
        Err(why) => return bad_request(why),
    };
    let scope = Scope {
        organization: &organization,
        project: project.as_deref(),
    };
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

/// The decision for one request (or, again, for an open upgraded connection): refusals that
/// need no chain work first, then the chain checks and client filters this connection has not
/// run yet (on the pool), then the decision, which only reads what they found.
pub(super) async fn admit(
    shared: &GatewayState,
    peer: &PeerIdentity,
    scope: Scope<'_>,
) -> Result<Admission, Rejection> {
    let index = shared.trust.index_arc();
    let now = shared.store.now();
    trust::precheck(&index, peer.chain().map(AsRef::as_ref), scope)?;
    let Some(chain) = peer.chain() else {
        return Err(Rejection::CertificateRequired);
    };
    let mut checks = peer.checks().lock().await;
    let work = Prepare {
        index: &index,
        chain,
        scope,
        now,
        algs: shared.algs.all,
        paths: Some(&shared.chain_cache),
        inline_leaf_check: true,
    };
    shared.chain_pool.prepare(work, &mut checks).await;
    trust::decide(&index, Some(chain), &checks, scope, now)
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
    OpenAiError {
        status: StatusCode::BAD_REQUEST,
        kind: INVALID_REQUEST,
        message,
        param: None,
        code: None,
    }
    .into_response()
}

/// The answer to a refusal, with OpenAI's four-key error body; logged as the gateway's
/// refusal policy says (see [`RefusalLog`]).
fn refuse(shared: &GatewayState, peer: &PeerIdentity, rejection: Rejection) -> Response {
    shared.refusals.record(peer, rejection);
    shared.metrics.decided(rejection.code());
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
    .into_response()
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

    fn record(&self, peer: &PeerIdentity, rejection: Rejection) {
        tracing::debug!(remote = %peer.remote(), code = rejection.code(), "request refused");
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
