//! `certgate gateway`: terminates TLS, checks client certificates against the CAs active for
//! the request's organization and project, and proxies to an upstream.
//!
//! The gateway is its own process beside `certgate serve`, on the same database, with any
//! number of replicas. It only reads the database: the trust state (active anchors by
//! organization and project) is loaded into memory by [`reload`] and replaced whenever the
//! trust generation moves. Code map:
//!
//! - [`tls`]: the rustls configuration and the verifier that asks for, but never requires or
//!   judges, a client certificate;
//! - [`listener`]: the TLS listener for `axum::serve` and the per-connection identity;
//! - [`reload`]: keeping the [`crate::trust`] index current, and readiness;
//! - [`handler`]: the one request handler: scope, decision (chain work on a bounded pool),
//!   refusals and their logging;
//! - [`proxy`]: forwarding to the upstream, path and header rules;
//! - [`upgrade`]: WebSocket upgrades, relayed frame-aware and closed when trust is withdrawn.
//! - [`metrics`]: the gateway's own metric families (decisions, trust generation);
//! - `fuzzing` (hidden): the private header, path and frame rules, forwarded for the fuzz
//!   targets under `fuzz/` (docs/fuzzing.md).
//!
//! Invariant: this is the only module that imports rustls, nothing here writes to the
//! database, and nothing here imports `api`, `cli` or `serve`.

#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod tls;
pub mod upgrade;
mod wsframe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rustls_pki_types::CertificateDer;

use crate::domain::SystemClock;
use crate::metrics::{Metrics, Role, RouteLabel};
use crate::runtime::{ConnectionLimits, ConnectionSlots, Shutdown};
use crate::store::{Backend, Store, StoreOptions};
pub use listener::HandshakeLimits;
use listener::{PeerIdentity, TlsListener};
use proxy::{GatewayState, Upstream};
use reload::{TrustState, WatchIntervals};

/// Settings of `certgate gateway` (the command line fills them; see `cli::args`).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub store: StoreOptions,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub upstream: String,
    pub upstream_timeout: Duration,
    pub upstream_ca: Option<PathBuf>,
    pub forward_scope_headers: bool,
    pub health_listen: Option<SocketAddr>,
    /// `None`: 100 ms on SQLite, 1 s on PostgreSQL (where LISTEN/NOTIFY wakes it at once).
    pub trust_poll: Option<Duration>,
    pub trust_reconcile: Duration,
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    /// The organization of requests without an `OpenAI-Organization` header.
    pub default_organization: Option<String>,
    /// `--fetch-allow-private`: OCSP responders on non-public addresses may be asked.
    pub fetch_allow_private: bool,
    pub limits: ConnectionLimits,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// Settings of a [`Gateway`], independent of the command line.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub upstream: String,
    pub upstream_timeout: Duration,
    pub upstream_roots: Vec<CertificateDer<'static>>,
    pub forward_scope_headers: bool,
    /// The organization of requests without an `OpenAI-Organization` header (a default, not a
    /// restriction); without it such requests are refused.
    pub default_organization: Option<String>,
    pub trust_poll: Duration,
    pub trust_reconcile: Duration,
    /// An upgraded (WebSocket) connection with no frame either way for this long is closed.
    pub upgrade_idle_timeout: Duration,
    /// Let OCSP requests reach loopback, private and link-local responders
    /// (`--fetch-allow-private`; decisions.md D60).
    pub fetch_allow_private: bool,
}

impl GatewayOptions {
    /// Defaults for `upstream`: 10 min upstream timeout, 100 ms poll, 10 min reconcile.
    pub fn new(upstream: impl Into<String>) -> Self {
        GatewayOptions {
            upstream: upstream.into(),
            upstream_timeout: Duration::from_secs(600),
            upstream_roots: Vec::new(),
            forward_scope_headers: false,
            default_organization: None,
            trust_poll: Duration::from_millis(100),
            trust_reconcile: reload::DEFAULT_RECONCILE,
            upgrade_idle_timeout: Duration::from_secs(60),
            fetch_allow_private: false,
        }
    }
}

/// A running trust watcher plus everything the request path needs. Dropping it stops the
/// watcher (the last loaded state stays in force for routers still serving).
pub struct Gateway {
    shared: Arc<GatewayState>,
    metrics: Arc<Metrics>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts watching the trust state of `store` (the first load is tried before returning).
    pub async fn start(store: Store, options: GatewayOptions) -> anyhow::Result<Gateway> {
        let upstream = Upstream::parse(&options.upstream)?;
        let client = proxy::upstream_client(options.upstream_roots.clone(), true)?;
        let upgrade_client = proxy::upstream_client(options.upstream_roots, false)?;
        let trust = TrustState::new();
        let upgrades = Arc::new(upgrade::UpgradeStats::default());
        let (metrics, (own_metrics, ocsp_metrics)) = Metrics::new(Role::Gateway, |registry| {
            (
                metrics::GatewayMetrics::register(registry, upgrades.clone()),
                crate::ocsp::OcspMetrics::register(registry),
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
        Ok(Gateway {
            shared: Arc::new(GatewayState {
                store,
                trust,
                client,
                upgrade_client,
                upstream,
                upstream_timeout: options.upstream_timeout,
                forward_scope_headers: options.forward_scope_headers,
                default_organization: options.default_organization,
                algs: tls::provider().signature_verification_algorithms,
                chain_pool: crate::admission::ChainPool::for_this_machine(),
                chain_cache: crate::trust::CheckCache::default(),
                ocsp: crate::ocsp::OcspChecker::new(options.fetch_allow_private, ocsp_metrics),
                refusals: handler::RefusalLog::default(),
                upgrades,
                upgrade_idle_timeout: options.upgrade_idle_timeout,
                metrics: own_metrics,
            }),
            metrics,
            watcher,
        })
    }

    pub fn trust(&self) -> Arc<TrustState> {
        self.shared.trust.clone()
    }

    /// Upgraded (WebSocket) connections: open now, and closed by reason.
    pub fn upgrades(&self) -> &upgrade::UpgradeStats {
        &self.shared.upgrades
    }

    /// Anchor checks (chain verifications against one anchor group) run since start.
    pub fn chain_checks_run(&self) -> u64 {
        self.shared.chain_pool.checks_run()
    }

    /// The proxy: every method and path goes through the trust decision. Every request is
    /// counted and timed under the route `proxy`.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .fallback(handler::handle)
            .with_state(self.shared.clone());
        self.metrics.instrument(router, RouteLabel::Fixed("proxy"))
    }

    /// The metrics listener's routes: `/metrics` plus [`Gateway::health_router`].
    pub fn metrics_router(&self) -> Router {
        let shared = self.shared.clone();
        let metrics = self.metrics.clone();
        crate::metrics::listener_router(self.metrics.clone(), self.health_router(), move || {
            shared.metrics.refresh(&metrics, &shared.trust);
            std::future::ready(())
        })
    }

    /// `/healthz` and `/readyz`, for the plain-HTTP health listener.
    pub fn health_router(&self) -> Router {
        health_routes(self.shared.trust.clone())
    }
}

/// `/healthz` (alive) and `/readyz` (a trust state loaded and the database answering) for a
/// process that enforces `trust`: the gateway, and `certgate authz`.
pub fn health_routes(trust: Arc<TrustState>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(move || std::future::ready(readyz(&trust))))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn readyz(trust: &TrustState) -> Response {
    let r = trust.readiness();
    let status = if r.ready {
        "ready"
    } else if r.generation.is_none() {
        "trust_state_not_loaded"
    } else {
        "database_unavailable"
    };
    let body = Json(serde_json::json!({
        "status": status,
        "generation": r.generation,
        "anchors": r.anchors,
        "last_database_contact_ms_ago": r.last_ok_ms_ago,
    }));
    if r.ready {
        body.into_response()
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Serves `router` over TLS on `tcp` until `shutdown` resolves, then drains (see
/// [`crate::runtime::serve`]). Each request carries the connection's [`PeerIdentity`] as
/// `ConnectInfo`.
pub async fn serve_tls(
    router: Router,
    tcp: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handshakes: HandshakeLimits,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = ConnectionSlots::new(limits.max_connections);
    let listener = TlsListener::new(tcp, tokio_rustls::TlsAcceptor::from(tls), slots, handshakes);
    crate::runtime::serve(
        listener,
        router,
        |io, remote| {
            let mut extensions = axum::http::Extensions::new();
            extensions.insert(axum::extract::ConnectInfo(PeerIdentity::of(io, remote)));
            Some(extensions)
        },
        limits,
        shutdown,
    )
    .await;
}

pub async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    let (chain, key) = tls::load_identity(&config.tls_cert, &config.tls_key)?;
    let tls_config = Arc::new(tls::server_config(chain, key)?);
    let upstream_roots = match &config.upstream_ca {
        Some(path) => tls::load_certificates(path)?,
        None => Vec::new(),
    };
    // The database must exist and be migrated; an unreachable one is waited for, but only
    // for `--db-connect-timeout`, so a misconfiguration ends in an error, not a silent wait.
    let store = Store::open_existing(&config.store, Arc::new(SystemClock)).await?;
    let trust_poll = config.trust_poll.unwrap_or(match store.backend() {
        Backend::Sqlite => Duration::from_millis(100),
        Backend::Postgres => Duration::from_secs(1),
    });
    let gateway = Gateway::start(
        store.clone(),
        GatewayOptions {
            upstream: config.upstream.clone(),
            upstream_timeout: config.upstream_timeout,
            upstream_roots,
            forward_scope_headers: config.forward_scope_headers,
            default_organization: config.default_organization.clone(),
            trust_poll,
            trust_reconcile: config.trust_reconcile,
            upgrade_idle_timeout: config.limits.idle_timeout,
            fetch_allow_private: config.fetch_allow_private,
        },
    )
    .await?;
    if let Some(addr) = config.health_listen {
        let health = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the health listener {addr}"))?;
        tracing::info!(listen = %health.local_addr()?, "gateway health endpoint listening");
        let router = gateway.health_router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(health, router).await {
                tracing::error!(error = %e, "health listener stopped");
            }
        });
    }
    if let Some(addr) = config.metrics_listen {
        // Up until the process ends, so readiness stays visible while requests drain.
        crate::metrics::spawn_listener(addr, gateway.metrics_router(), std::future::pending())
            .await?;
    }
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = Shutdown::on_signal();
    let r = gateway.trust().readiness();
    tracing::info!(
        listen = %tcp.local_addr()?,
        upstream = %config.upstream,
        backend = ?store.backend(),
        generation = ?r.generation,
        anchors = r.anchors,
        "certgate gateway listening"
    );
    let grace = config.limits.shutdown_grace;
    // Upgraded connections live outside the connection loop's drain: they are told to go
    // away (1001) at the signal, and get what is left of the same grace to close.
    let (served, served_rx) = tokio::sync::oneshot::channel::<()>();
    let upgrades = async {
        let at = tokio::select! {
            at = shutdown.clone().begun() => at,
            _ = served_rx => Instant::now(),
        };
        let _ =
            tokio::time::timeout_at((at + grace).into(), gateway.upgrades().close_all(grace)).await;
    };
    let requests = serve_tls(
        gateway.router(),
        tcp,
        tls_config,
        HandshakeLimits {
            max_in_flight: config.max_handshakes,
            timeout: config.handshake_timeout,
        },
        config
            .limits
            .fit_to_file_limit(config.store.max_connections as usize + 256),
        shutdown.clone().signalled(),
    );
    let requests = async move {
        requests.await;
        drop(served);
    };
    tokio::join!(requests, upgrades);
    if tokio::time::timeout_at(shutdown.deadline(grace).into(), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the shutdown grace is over; exiting before the store closed");
    }
    tracing::info!("certgate gateway stopped");
    Ok(())
}
