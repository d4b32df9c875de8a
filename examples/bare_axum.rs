//! Baseline for `bench/api/run.sh`: a bare axum server answering `GET /page` with a fixed JSON
//! page shaped like certgate's list of 20 organization certificates (about the same bytes).
//! No database, no auth, no middleware: the floor certgate's `GET /v1/organization/certificates`
//! is compared with. Same runtime as `certgate serve` (`#[tokio::main]`, one worker per core).
//!
//! Usage: `bare_axum [ADDR]` (default 127.0.0.1:8090). `--size` prints the page's byte count.

// Benchmark arithmetic on counts and durations: precision loss is irrelevant here.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde_json::json;

/// A page like certgate's: 20 `organization.certificate` items, desc, `has_more` false.
fn page() -> Bytes {
    let created = 1_795_000_000_i64;
    let data: Vec<_> = (0..20)
        .rev()
        .map(|i| {
            json!({
                "object": "organization.certificate",
                "id": format!("cert_{:024x}", 0x5eed_0000_u64 + i as u64),
                "name": format!("bench-ca-{i:02}"),
                "created_at": created + i,
                "certificate_details": {
                    "valid_at": created + i - 3600,
                    "expires_at": created + i + 365 * 86_400,
                },
                "active": false,
            })
        })
        .collect();
    let first = data[0]["id"].clone();
    let last = data[data.len() - 1]["id"].clone();
    let body = json!({
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": false,
    });
    // A `Value`'s `Display` is its compact JSON, the bytes `serde_json::to_vec` would give.
    Bytes::from(body.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    let body = page();
    if first.as_deref() == Some("--size") {
        println!("{}", body.len());
        return Ok(());
    }
    let addr = first.unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let app = Router::new().route(
        "/page",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    eprintln!("bare_axum listening on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .context("serve")
}
