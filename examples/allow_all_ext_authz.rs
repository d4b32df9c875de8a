//! A bare Envoy `ext_authz` server that admits every request: the cost of the gRPC protocol
//! itself, for bench/authz/run.sh to compare `certgate authz` against. With a second address,
//! also a bare HTTP forward-auth server answering every request 200 with an empty body (what
//! nginx's `auth_request` asks). Both are served through the same connection loop as
//! `certgate authz` (`certgate::authz::serve`), so the two differ only in the decision.
//!
//!     allow_all_ext_authz 127.0.0.1:GRPC_PORT [127.0.0.1:HTTP_PORT]

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse};
use envoy_types::pb::google::rpc;

struct AllowAll;

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        }))
    }
}

async fn serve(addr: &str, router: axum::Router) -> anyhow::Result<()> {
    let addr: certgate::authz::ListenAddr = addr.parse().map_err(anyhow::Error::msg)?;
    let bound = certgate::authz::listen::Bound::bind(&addr).await?;
    println!("allow-all listening on {}", bound.local()?);
    certgate::authz::serve(
        router,
        bound,
        certgate::runtime::ConnectionLimits::default(),
        certgate::runtime::shutdown_signal(),
    )
    .await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // certgate's own log subscriber (RUST_LOG): without one, every span of the connection
    // loop would be handed to the `log` facade, a cost certgate does not pay.
    certgate::telemetry::init().map_err(anyhow::Error::msg)?;
    let mut args = std::env::args().skip(1);
    let grpc_addr = args.next().unwrap_or_else(|| "127.0.0.1:9291".into());
    let grpc = tonic::service::Routes::new(AuthorizationServer::new(AllowAll)).into_axum_router();
    match args.next() {
        None => serve(&grpc_addr, grpc).await,
        Some(http_addr) => {
            let http = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
            let (a, b) = tokio::join!(serve(&grpc_addr, grpc), serve(&http_addr, http));
            a.and(b)
        }
    }
}
