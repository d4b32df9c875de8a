//! `certgate serve`: open the store, bootstrap, serve the Admin API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

use crate::api::dto::{AdminKeyCreated, AdminKeyObject};
use crate::api::{self, AppState};
use crate::domain::{NewAdminKey, Organization, SystemClock};
use crate::key_output::KeyOutput;
use crate::metrics::{self, Metrics, Role, RouteLabel};
use crate::runtime::{ConnectionLimits, ConnectionSlots, Shutdown, TcpIncoming};
use crate::store::{Store, StoreOptions};

/// How often old audit events are looked for when a retention is set.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Settings of `certgate serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreOptions,
    /// Create a default organization on an empty database.
    pub bootstrap: bool,
    pub limits: ConnectionLimits,
    /// Where the default organization's key goes, in the one replica that creates it.
    pub admin_key: KeyOutput,
    /// Delete audit events older than this many days; `None` keeps them forever.
    pub audit_retention_days: Option<u32>,
    /// How long trust change records are kept (`Store::set_trust_change_retention`).
    pub trust_change_retention: std::time::Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Let the CRL fetcher reach non-public addresses (`--fetch-allow-private`).
    pub fetch_allow_private: bool,
    /// Most bytes of a fetched body read (`--fetch-max-bytes`, decisions.md D70).
    pub fetch_max_bytes: usize,
    /// When CRLs are fetched again (decisions.md D59).
    pub crl_timing: crate::fetch::CrlTiming,
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.store, Arc::new(SystemClock)).await?;
    if let Some(path) = store.created_database() {
        crate::telemetry::notice(&format!(
            "created a new SQLite database at {}",
            path.display()
        ));
    }
    // Bind before bootstrapping: a taken port must not cost the one showing of the key.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let state = AppState::with_fetch_allow_private(store.clone(), config.fetch_allow_private);
    let (metrics, own) = Metrics::new(Role::Serve, ServeMetrics::register);
    // Every CA certificate's `crl_url`, kept fetched (decisions.md D59).
    tokio::spawn(
        crate::fetch::CrlFetcher::new(
            store.clone(),
            crate::fetch::FetchPolicy::new(
                config.fetch_allow_private,
                crate::fetch::client::CRL_FETCH_TIMEOUT,
            )
            .with_max_body_bytes(config.fetch_max_bytes),
            config.crl_timing,
            own.crl_fetch.clone(),
        )
        .run(),
    );
    if let Some(addr) = config.metrics_listen {
        let refresh = {
            let (store, metrics) = (store.clone(), metrics.clone());
            move || own.clone().refresh(store.clone(), metrics.clone())
        };
        let router =
            metrics::listener_router(metrics.clone(), api::health_router(state.clone()), refresh);
        // Up until the process ends, so readiness stays visible while requests drain.
        metrics::spawn_listener(addr, router, std::future::pending()).await?;
    }
    store.set_trust_change_retention(config.trust_change_retention);
    if config.bootstrap {
        bootstrap(&store, &config.admin_key).await?;
    }
    if let Some(days) = config.audit_retention_days {
        tokio::spawn(retention(store.clone(), days));
    }
    let shutdown = Shutdown::on_signal();
    tracing::info!(listen = %listener.local_addr()?, backend = ?store.backend(), "certgate serve listening");
    let limits = config
        .limits
        .fit_to_file_limit(config.store.max_connections as usize + 64);
    crate::runtime::serve(
        TcpIncoming::new(listener, ConnectionSlots::new(limits.max_connections)),
        metrics.instrument(api::router(state), RouteLabel::Matched),
        |_, _| None,
        limits,
        shutdown.clone().signalled(),
    )
    .await;
    // Within the grace too: a database that does not answer, or a write still waiting for
    // SQLite's lock, must not keep the process past it (decisions.md D35).
    let finished = tokio::time::timeout_at(shutdown.deadline(limits.shutdown_grace).into(), async {
        if let Err(e) = store.flush_key_usage().await {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&e), "could not record the last admin key uses");
        }
        store.close().await;
    })
    .await;
    if finished.is_err() {
        tracing::warn!("the shutdown grace is over; exiting before the last admin key uses were recorded and the store closed");
    }
    tracing::info!("certgate serve stopped");
    Ok(())
}

/// `serve`'s own metric families (decisions.md D40).
#[derive(Clone)]
pub struct ServeMetrics {
    expiry: Family<ExpiryLabels, Gauge>,
    crl_fetch: crate::fetch::CrlFetchMetrics,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    organization: String,
    certificate: String,
}

impl ServeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let expiry = Family::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of every stored CA certificate (Unix seconds), by organization and certificate id",
            expiry.clone(),
        );
        let crl_fetch = crate::fetch::CrlFetchMetrics::register(registry);
        ServeMetrics { expiry, crl_fetch }
    }

    /// Reads what a scrape shows from the database: whether it answers, and every stored
    /// CA's notAfter. When it does not answer, the expiries read last stay (an expiry alert
    /// must not clear because the database is down).
    async fn refresh(self, store: Store, metrics: Arc<Metrics>) {
        match store.certificate_expiries().await {
            Ok(all) => {
                metrics.set_database_up(true);
                self.expiry.clear();
                for c in all {
                    self.expiry
                        .get_or_create(&ExpiryLabels {
                            organization: c.org_id,
                            certificate: c.certificate_id,
                        })
                        .set(c.expires_at);
                }
            }
            Err(e) => {
                metrics.set_database_up(false);
                tracing::debug!(error = %crate::telemetry::ErrorChain(&e), "metrics scrape: database unavailable");
            }
        }
    }
}

/// Creates the default organization on an empty database, and shows its key once: the
/// destination is claimed first (an existing `--admin-key-file` refuses the start before
/// anything is created), then released if another replica bootstrapped first.
async fn bootstrap(store: &Store, output: &KeyOutput) -> anyhow::Result<()> {
    let reserved = if store.is_bootstrapped().await? {
        if let KeyOutput::File(path) = output {
            tracing::info!(file = %path.display(), "the database already has its default organization; --admin-key-file is not used");
        }
        None
    } else {
        Some(output.reserve()?)
    };
    match store.bootstrap().await? {
        Some((org, key)) => {
            let reserved = match reserved {
                Some(r) => r,
                None => output.reserve()?,
            };
            reserved.deliver(org_answer(&org, &key), "/admin_key/value", &key.value)?;
            match output {
                KeyOutput::Stdout => {
                    tracing::info!(org = %org.id, "created the default organization; its admin key was printed once on stdout");
                }
                KeyOutput::File(path) => {
                    tracing::info!(org = %org.id, file = %path.display(), "created the default organization; its admin key was written to the file");
                }
            }
        }
        None => {
            if let Some(r) = reserved {
                r.abandon();
            }
        }
    }
    Ok(())
}

/// The one JSON object `org create` and the bootstrap print: the organization and its first
/// key, as `POST /organization/admin_api_keys` would answer it.
pub fn org_answer(org: &Organization, key: &NewAdminKey) -> serde_json::Value {
    serde_json::json!({
        "organization": {"object": "organization", "id": org.id.as_str(), "name": org.name, "created_at": org.created_at},
        "admin_key": AdminKeyCreated {
            key: AdminKeyObject::from(key.key.clone()),
            value: key.value.expose().to_owned(),
        },
    })
}

/// Deletes audit events older than `days`, now and then every hour.
async fn retention(store: Store, days: u32) {
    loop {
        let before = store.now() - i64::from(days) * 86_400;
        match store.purge_audit_events(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                days,
                "audit events past their retention deleted"
            ),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::ErrorChain(&e), "audit retention sweep failed; will retry");
            }
        }
        tokio::time::sleep(RETENTION_SWEEP).await;
    }
}
