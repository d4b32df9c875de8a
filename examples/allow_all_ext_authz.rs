//! A bare Envoy `ext_authz` server that admits every request: the cost of the gRPC protocol
//! itself, for bench/authz/run.sh to compare `certgate authz` against. It is served through
//! the same connection loop as `certgate authz` (`certgate::authz::serve`), so the two differ
//! only in the decision.
//!
//!     allow_all_ext_authz 127.0.0.1:PORT

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: certgate::authz::ListenAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9291".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let bound = certgate::authz::listen::Bound::bind(&addr).await?;
    println!("allow-all ext_authz listening on {}", bound.local()?);
    let router = tonic::service::Routes::new(AuthorizationServer::new(AllowAll)).into_axum_router();
    certgate::authz::serve(
        router,
        bound,
        certgate::runtime::ConnectionLimits::default(),
        certgate::runtime::shutdown_signal(),
    )
    .await;
    Ok(())
}
