//! `certgate serve`: open the store, bootstrap, serve the router until SIGTERM or Ctrl-C.

use std::sync::Arc;

use crate::api::{self, AppState};
use crate::cli::ServeArgs;
use crate::domain::{NewAdminKey, Organization, SystemClock};
use crate::store::Store;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.db.options(), Arc::new(SystemClock)).await?;
    // Bind before bootstrapping: a taken port must not cost the one showing of the key.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    if !args.no_bootstrap {
        if let Some((org, key)) = store.bootstrap().await? {
            // Printed once, to stderr, by the one replica that created the organization.
            eprintln!(
                "certgate: created the default organization; its admin key is shown only now:"
            );
            eprintln!("{}", org_json(&org, &key));
        }
    }
    tracing::info!(listen = %listener.local_addr()?, backend = ?store.backend(), "certgate serve listening");
    let app = api::router(AppState::new(store.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    store.close().await;
    tracing::info!("certgate serve stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing open requests");
}

/// The one JSON object `org create` (and bootstrap) prints.
pub fn org_json(org: &Organization, key: &NewAdminKey) -> serde_json::Value {
    serde_json::json!({
        "organization": {"object": "organization", "id": org.id, "name": org.name, "created_at": org.created_at},
        "admin_key": {
            "object": "organization.admin_api_key",
            "id": key.id,
            "name": key.name,
            "value": key.value,
            "redacted_value": key.redacted_value,
            "created_at": key.created_at,
        }
    })
}
