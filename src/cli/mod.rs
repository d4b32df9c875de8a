//! Command line: `serve`, `gateway`, `org create|list`, `key create|list|revoke`,
//! `cert check|rotate`, `migrate`.
//! Every flag has a `CERTGATE_*` variable (see [`args`]). This module parses and prints; the
//! subcommands it calls know nothing of clap.

pub mod args;
mod certs;
mod keys;

use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::domain::SystemClock;
use crate::gateway::GatewayConfig;
use crate::key_output::KeyOutput;
use crate::serve::ServeConfig;
use crate::store::Store;
use args::{DbArgs, GatewayArgs, KeyFileArgs, ServeArgs};

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
    /// Manage an organization's admin keys, directly on the database (audit actor: null).
    Key {
        #[command(subcommand)]
        command: keys::KeyCommand,
    },
    /// Check a client certificate against the active CAs, or rotate one CA for another,
    /// directly on the database (audit actor: null).
    Cert {
        #[command(subcommand)]
        command: certs::CertCommand,
    },
    /// Run the mTLS gateway in front of an OpenAI-compatible upstream.
    Gateway(GatewayArgs),
    /// Run the database migrations and exit.
    Migrate(DbArgs),
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization, its Default project and first admin key; prints one JSON object.
    Create {
        /// Organization name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        key_file: KeyFileArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every organization (JSON).
    List {
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
                admin_key: KeyOutput::new(args.key_file.admin_key_file),
                audit_retention_days: args.audit_retention_days,
            };
            crate::serve::run(config).await
        }
        Command::Gateway(args) => crate::gateway::run(gateway_config(args)).await,
        Command::Migrate(db) => {
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            store.close().await;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Org {
            command: OrgCommand::Create { name, key_file, db },
        } => {
            // Claimed first: an existing file refuses the command before anything is made.
            let reserved = KeyOutput::new(key_file.admin_key_file).reserve()?;
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await;
            let created = match store {
                Ok(store) => {
                    let created = store.create_organization(&name).await;
                    store.close().await;
                    created.map_err(anyhow::Error::from)
                }
                Err(e) => Err(e),
            };
            match created {
                Ok((org, key)) => reserved.deliver(
                    crate::serve::org_answer(&org, &key),
                    "/admin_key/value",
                    &key.value,
                ),
                Err(e) => {
                    reserved.abandon();
                    Err(e)
                }
            }
        }
        Command::Org {
            command: OrgCommand::List { db },
        } => {
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            let orgs = store.list_organizations().await;
            store.close().await;
            let data: Vec<serde_json::Value> = orgs?
                .iter()
                .map(|o| serde_json::json!({"object": "organization", "id": o.id.as_str(), "name": o.name, "created_at": o.created_at}))
                .collect();
            println!("{}", serde_json::json!({"object": "list", "data": data}));
            Ok(())
        }
        Command::Key { command } => keys::run(command).await,
        Command::Cert { command } => certs::run(command).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_and_retention_flags() {
        let cli = Cli::try_parse_from([
            "certgate",
            "serve",
            "--admin-key-file",
            "/tmp/k",
            "--audit-retention-days",
            "30",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.audit_retention_days, Some(30));
        assert_eq!(
            args.key_file.admin_key_file.as_deref(),
            Some(std::path::Path::new("/tmp/k"))
        );
        assert!(Cli::try_parse_from(["certgate", "serve", "--audit-retention-days", "0"]).is_err());
        let cli = Cli::try_parse_from(["certgate", "key", "revoke", "key_abc", "--force"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Key {
                command: keys::KeyCommand::Revoke { force: true, .. }
            }
        ));
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
