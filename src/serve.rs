//! `certgate serve`: open the store, bootstrap, serve the Admin API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{self, AppState};
use crate::domain::{NewAdminKey, Organization, SystemClock};
use crate::store::{Store, StoreOptions};

/// Settings of `certgate serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreOptions,
    /// Create a default organization on an empty database.
    pub bootstrap: bool,
}

/// Runs until SIGTERM or Ctrl-C. `on_bootstrap` receives the default organization and its
/// key, in the one replica that created them, to show them once.
pub async fn run(
    config: ServeConfig,
    on_bootstrap: impl FnOnce(&Organization, &NewAdminKey) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let store = Store::open(&config.store, Arc::new(SystemClock)).await?;
    if let Some(path) = store.created_database() {
        // Said whatever RUST_LOG says, like the bootstrap key: see `cli::say_if_created`.
        eprintln!(
            "certgate: created a new SQLite database at {}",
            path.display()
        );
    }
    // Bind before bootstrapping: a taken port must not cost the one showing of the key.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if config.bootstrap {
        if let Some((org, key)) = store.bootstrap().await? {
            on_bootstrap(&org, &key)?;
        }
    }
    tracing::info!(listen = %listener.local_addr()?, backend = ?store.backend(), "certgate serve listening");
    let app = api::router(AppState::new(store.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::runtime::shutdown_signal())
        .await?;
    store.close().await;
    tracing::info!("certgate serve stopped");
    Ok(())
}
