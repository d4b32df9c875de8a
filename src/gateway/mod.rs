//! `certgate gateway`: terminates TLS, checks client certificates against the CAs active for
//! the request's organization and project, and proxies to an upstream. (In progress.)

use clap::Args;

use crate::cli::DbArgs;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(_args: GatewayArgs) -> anyhow::Result<()> {
    anyhow::bail!("the gateway is not implemented yet")
}
