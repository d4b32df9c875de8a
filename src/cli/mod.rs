//! Command line: `serve`, `gateway`, `org create`, `migrate`. Every flag has a `CERTGATE_*`
//! variable (see [`args`]). This module parses and prints; the subcommands it calls know
//! nothing of clap.

pub mod args;

use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::domain::{NewAdminKey, Organization, SystemClock};
use crate::gateway::GatewayConfig;
use crate::serve::ServeConfig;
use crate::store::Store;
use args::{DbArgs, GatewayArgs, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "certgate",
    version,
    about = "OpenAI-compatible mTLS certificate admin API and gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Admin API (creates a default organization on an empty database).
    Serve(ServeArgs),
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Run the mTLS gateway in front of an OpenAI-compatible upstream.
    Gateway(GatewayArgs),
    /// Run the database migrations and exit.
    Migrate(DbArgs),
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization and its first admin key; prints one JSON object.
    Create {
        /// Organization name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig {
                listen: args.listen,
                store: args.db.options(),
                bootstrap: !args.no_bootstrap,
                limits: args.connections.limits(),
            };
            crate::serve::run(config, |org, key| {
                // Printed once, to stderr, by the one replica that created the organization.
                eprintln!(
                    "certgate: created the default organization; its admin key is shown only now:"
                );
                eprintln!("{}", org_json(org, key));
                Ok(())
            })
            .await
        }
        Command::Gateway(args) => crate::gateway::run(gateway_config(args)).await,
        Command::Migrate(db) => {
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            store.close().await;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Org {
            command: OrgCommand::Create { name, db },
        } => {
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            let (org, key) = store.create_organization(&name).await?;
            store.close().await;
            println!("{}", org_json(&org, &key));
            Ok(())
        }
    }
}

fn gateway_config(args: GatewayArgs) -> GatewayConfig {
    GatewayConfig {
        listen: args.listen,
        store: args.db.options(),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        upstream: args.upstream,
        upstream_timeout: args.upstream_timeout,
        upstream_ca: args.upstream_ca,
        forward_scope_headers: args.forward_scope_headers,
        health_listen: args.health_listen,
        trust_poll: args.trust_poll,
        trust_reconcile: args.trust_reconcile,
        max_handshakes: args.max_handshakes,
        handshake_timeout: args.handshake_timeout,
        default_organization: args.organization,
        limits: args.connections.limits(),
    }
}

/// The one JSON object `org create` (and bootstrap) prints.
fn org_json(org: &Organization, key: &NewAdminKey) -> serde_json::Value {
    serde_json::json!({
        "organization": {"object": "organization", "id": org.id.as_str(), "name": org.name, "created_at": org.created_at},
        "admin_key": {
            "object": "organization.admin_api_key",
            "id": key.id.as_str(),
            "name": key.name,
            "value": key.value.expose(),
            "redacted_value": key.redacted_value,
            "created_at": key.created_at,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn boolean_flags_accept_the_usual_spellings() {
        for (raw, expected) in [
            ("1", true),
            ("yes", true),
            ("true", true),
            ("0", false),
            ("no", false),
        ] {
            let cli = Cli::try_parse_from(["certgate", "serve", &format!("--no-bootstrap={raw}")])
                .unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("serve")
            };
            assert_eq!(args.no_bootstrap, expected, "{raw}");
        }
        let cli = Cli::try_parse_from(["certgate", "serve", "--no-bootstrap"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert!(args.no_bootstrap);
    }
}
