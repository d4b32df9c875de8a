//! `certgate authz`: the gateway's trust decision for proxies already at the edge (spec
//! §13.2, decisions.md D45–D49). Envoy asks over gRPC ([`grpc`]), nginx, Traefik and `HAProxy`
//! over plain HTTP ([`http`]); both answer through [`judge`], which decides with the
//! gateway's own pieces: its trust watcher and readiness ([`crate::gateway::reload`]), its
//! scope rules and decision ([`crate::gateway::handler::request_scope`],
//! [`crate::gateway::handler::decide`]), the chain-work pool and the path cache. Nothing of the
//! decision is copied here, so the answers are the gateway's.
//!
//! Both listeners trust the proxy to have done the TLS handshake (proof of the client's
//! private key) and to pass the certificate it saw: they bind loopback by default and must
//! never be reachable by clients (docs/proxies.md).
//!
//! Invariant: never writes to the database; never fails open (no trust state: 503; database
//! down: the last state keeps deciding).

pub mod cert;
pub mod grpc;
pub mod http;
pub mod judge;
pub mod listen;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderName;
use axum::Router;

use crate::admission::ChainPool;
use crate::domain::SystemClock;
use crate::gateway::handler::RefusalLog;
use crate::gateway::reload::{self, TrustState, WatchIntervals};
use crate::metrics::{Metrics, Role, RouteLabel};
use crate::ocsp::{OcspChecker, OcspMetrics};
use crate::runtime::{ConnectionLimits, ConnectionSlots, Shutdown};
use crate::store::{Backend, Store, StoreOptions};
use crate::trust::CheckCache;
pub use listen::ListenAddr;

/// Settings of `certgate authz` (the command line fills them; see `cli::args`).
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    pub store: StoreOptions,
    pub grpc_listen: ListenAddr,
    pub http_listen: ListenAddr,
    pub options: AuthzOptions,
    /// `None`: 100 ms on SQLite, 1 s on PostgreSQL (where LISTEN/NOTIFY wakes it at once).
    pub trust_poll: Option<Duration>,
    pub limits: ConnectionLimits,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Settings of an [`Authz`], independent of the command line.
#[derive(Debug, Clone)]
pub struct AuthzOptions {
    /// The organization of requests that name none (a default, not a restriction).
    pub default_organization: Option<String>,
    /// Let `OpenAI-Organization` / `OpenAI-Project` reach the upstream.
    pub forward_scope_headers: bool,
    /// The forward-auth request header holding the client certificate.
    pub cert_header: HeaderName,
    pub trust_poll: Duration,
    pub trust_reconcile: Duration,
    /// Let OCSP requests reach loopback, private and link-local responders
    /// (`--fetch-allow-private`; decisions.md D60).
    pub fetch_allow_private: bool,
    /// Most bytes of certificate texts' parsed chains kept for repeated questions
    /// ([`CHAIN_BYTES_KEPT`]; decisions.md D46). Not a flag: tests set it low to see the bound
    /// hold.
    pub chain_bytes_kept: u64,
}

impl Default for AuthzOptions {
    fn default() -> Self {
        AuthzOptions {
            default_organization: None,
            forward_scope_headers: false,
            cert_header: HeaderName::from_static("x-ssl-client-cert"),
            trust_poll: Duration::from_millis(100),
            trust_reconcile: reload::DEFAULT_RECONCILE,
            fetch_allow_private: false,
            chain_bytes_kept: CHAIN_BYTES_KEPT,
        }
    }
}

/// Chains remembered with their chain work (see [`judge`]): about this many, and at most
/// [`CHAIN_BYTES_KEPT`] of certificates, least recently used dropped first.
const CHAINS_KEPT: usize = 10_000;
pub const CHAIN_BYTES_KEPT: u64 = 64 * 1024 * 1024;

/// Everything a question needs, shared by both listeners.
pub struct AuthzState {
    store: Store,
    trust: Arc<TrustState>,
    /// The signature algorithms of chain checks: the gateway's TLS provider's.
    algs: &'static [&'static dyn rustls_pki_types::SignatureVerificationAlgorithm],
    chain_pool: ChainPool,
    chain_cache: CheckCache,
    ocsp: OcspChecker,
    chains: quick_cache::sync::Cache<judge::ChainKey, Arc<judge::Peer>, judge::PeerWeight>,
    no_certificate: Arc<judge::Peer>,
    default_organization: Option<String>,
    forward_scope_headers: bool,
    cert_header: HeaderName,
    refusals: RefusalLog,
    metrics: metrics::AuthzMetrics,
    /// Questions answered from a chain's remembered admission (see [`judge`]).
    remembered: std::sync::atomic::AtomicU64,
}

/// A running trust watcher and the two routers. Dropping it stops the watcher (the last
/// loaded state stays in force for routers still serving).
pub struct Authz {
    shared: Arc<AuthzState>,
    metrics: Arc<Metrics>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Authz {
    /// Starts watching the trust state of `store` (the first load is tried before returning).
    pub async fn start(store: Store, options: AuthzOptions) -> Authz {
        let trust = TrustState::new();
        let (metrics, (own, ocsp_metrics)) = Metrics::new(Role::Authz, |registry| {
            (
                metrics::AuthzMetrics::register(registry),
                OcspMetrics::register(registry),
            )
        });
        let watcher = reload::spawn_watcher(
            trust.clone(),
            store.clone(),
            WatchIntervals {
                poll: options.trust_poll,
                reconcile: options.trust_reconcile,
            },
        )
        .await;
        Authz {
            shared: Arc::new(AuthzState {
                store,
                trust,
                algs: crate::gateway::tls::provider()
                    .signature_verification_algorithms
                    .all,
                chain_pool: ChainPool::for_this_machine(),
                chain_cache: CheckCache::default(),
                ocsp: OcspChecker::new(options.fetch_allow_private, ocsp_metrics),
                chains: quick_cache::sync::Cache::with_weighter(
                    CHAINS_KEPT,
                    options.chain_bytes_kept,
                    judge::PeerWeight,
                ),
                no_certificate: judge::no_certificate(),
                default_organization: options.default_organization,
                forward_scope_headers: options.forward_scope_headers,
                cert_header: options.cert_header,
                refusals: RefusalLog::default(),
                metrics: own,
                remembered: std::sync::atomic::AtomicU64::new(0),
            }),
            metrics,
            watcher,
        }
    }

    pub fn trust(&self) -> Arc<TrustState> {
        self.shared.trust.clone()
    }

    /// Anchor checks (chain verifications against one anchor group) run since start.
    pub fn chain_checks_run(&self) -> u64 {
        self.shared.chain_pool.checks_run()
    }

    /// Questions answered from a chain's remembered admission, without deciding again
    /// (same chain, scope, second and trust index; see [`judge`]).
    pub fn decisions_remembered(&self) -> u64 {
        self.shared
            .remembered
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Envoy's `Authorization/Check` (gRPC over HTTP/2 without TLS).
    pub fn grpc_router(&self) -> Router {
        self.metrics.instrument(
            grpc::router(self.shared.clone()),
            RouteLabel::Fixed("authz_grpc"),
        )
    }

    /// The forward-auth endpoint: every method and path.
    pub fn http_router(&self) -> Router {
        let router = Router::new()
            .fallback(http::handle)
            .with_state(self.shared.clone());
        self.metrics
            .instrument(router, RouteLabel::Fixed("authz_http"))
    }

    /// `/metrics`, `/healthz` and `/readyz`.
    pub fn metrics_router(&self) -> Router {
        let shared = self.shared.clone();
        let metrics = self.metrics.clone();
        crate::metrics::listener_router(
            self.metrics.clone(),
            crate::gateway::health_routes(self.shared.trust.clone()),
            move || {
                shared.metrics.refresh(&metrics, &shared.trust);
                shared
                    .metrics
                    .chains_kept(shared.chains.len(), shared.chains.weight());
                std::future::ready(())
            },
        )
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Serves `router` on `bound` until `shutdown` resolves, then drains (see
/// [`crate::runtime::serve`]).
pub async fn serve(
    router: Router,
    bound: listen::Bound,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = ConnectionSlots::new(limits.max_connections);
    crate::runtime::serve(bound.incoming(slots), router, |_, _| None, limits, shutdown).await;
}

pub async fn run(config: AuthzConfig) -> anyhow::Result<()> {
    // The database must exist and be migrated; an unreachable one is waited for, but only
    // for `--db-connect-timeout`.
    let store = Store::open_existing(&config.store, Arc::new(SystemClock)).await?;
    let mut options = config.options.clone();
    options.trust_poll = config.trust_poll.unwrap_or(match store.backend() {
        Backend::Sqlite => Duration::from_millis(100),
        Backend::Postgres => Duration::from_secs(1),
    });
    let authz = Authz::start(store.clone(), options).await;
    if let Some(addr) = config.metrics_listen {
        crate::metrics::spawn_listener(addr, authz.metrics_router(), std::future::pending())
            .await?;
    }
    let grpc = listen::Bound::bind(&config.grpc_listen)
        .await
        .context("--grpc-listen")?;
    let http = listen::Bound::bind(&config.http_listen)
        .await
        .context("--http-listen")?;
    let shutdown = Shutdown::on_signal();
    let r = authz.trust().readiness();
    tracing::info!(
        grpc = %grpc.local()?,
        http = %http.local()?,
        backend = ?store.backend(),
        generation = ?r.generation,
        anchors = r.anchors,
        "certgate authz listening"
    );
    let limits = config
        .limits
        .fit_to_file_limit(config.store.max_connections as usize + 256);
    tokio::join!(
        serve(
            authz.grpc_router(),
            grpc,
            limits,
            shutdown.clone().signalled()
        ),
        serve(
            authz.http_router(),
            http,
            limits,
            shutdown.clone().signalled()
        ),
    );
    let grace = config.limits.shutdown_grace;
    if tokio::time::timeout_at(shutdown.deadline(grace).into(), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the shutdown grace is over; exiting before the store closed");
    }
    for addr in [&config.grpc_listen, &config.http_listen] {
        if let ListenAddr::Unix(path) = addr {
            let _ = std::fs::remove_file(path);
        }
    }
    tracing::info!("certgate authz stopped");
    Ok(())
}
