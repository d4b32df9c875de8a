//! Command line: `serve`, `gateway`, `authz`, `org create|list`, `key create|list|revoke`,
//! `cert check|rotate`, `migrate`, `completions`, `man`. Every flag has a `CERTGATE_*`
//! variable (see [`args`]). This module parses and prints; the subcommands it calls know
//! nothing of clap.

pub mod args;
mod certs;
pub mod generate;
mod keys;

use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::domain::SystemClock;
use crate::gateway::GatewayConfig;
use crate::key_output::KeyOutput;
use crate::serve::ServeConfig;
use crate::store::Store;
use args::{AuthzArgs, DbArgs, GatewayArgs, KeyFileArgs, ServeArgs};

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
    /// Answer Envoy (`ext_authz` over gRPC), nginx, Traefik or `HAProxy` (forward auth over HTTP)
    /// with the gateway's trust decision for the client certificate they saw. The proxy does
    /// the TLS handshake; certgate decides. Never reachable by clients (see docs/proxies.md).
    Authz(AuthzArgs),
    /// Run the database migrations and exit.
    Migrate(DbArgs),
    /// Print a shell completion script, e.g. `certgate completions bash`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `certgate man | man -l -`.
    Man,
}

/// Shown after every command's help and as the man page's ENVIRONMENT section: what the
/// process reads from the environment besides each option's own variable.
const ENVIRONMENT_HELP: &str = "\
Environment:
  Each option can also be set with the CERTGATE_* variable shown beside it;
  booleans take true/false, 1/0 or yes/no.
  RUST_LOG             Log filter, e.g. `debug` or `certgate=debug,sqlx=warn`
                       [default: info,sqlx=warn]
  CERTGATE_LOG_FORMAT  Log line format: `text` (the default) or `json`";

/// The command line as clap sees it, with `ENVIRONMENT_HELP` on every command, including
/// commands added later: parsing, `--help`, completions and the man page all come from it.
pub fn command() -> clap::Command {
    fn with_environment(cmd: clap::Command) -> clap::Command {
        cmd.after_help(ENVIRONMENT_HELP)
            .mut_subcommands(with_environment)
    }
    with_environment(Cli::command())
}

/// Parses the process's arguments (and `CERTGATE_*` variables); exits on `--help` or an error.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut command()))
        .unwrap_or_else(|e| e.exit())
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
                trust_change_retention: args.trust_change_retention,
                metrics_listen: args.metrics.metrics_listen,
                fetch_allow_private: args.fetch.fetch_allow_private,
                fetch_max_bytes: args.fetch.fetch_max_bytes,
                crl_timing: crate::fetch::CrlTiming {
                    min: args.fetch.crl_refresh_min,
                    max: args.fetch.crl_refresh_max,
                },
            };
            crate::serve::run(config).await
        }
        Command::Gateway(args) => crate::gateway::run(gateway_config(args)).await,
        Command::Authz(args) => crate::authz::run(authz_config(args)).await,
        Command::Migrate(db) => {
            let store = Store::open(&db.options(), Arc::new(SystemClock)).await?;
            say_if_created(&store);
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
                    say_if_created(&store);
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
            say_if_created(&store);
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
        Command::Completions { shell } => {
            generate::completions(shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Man => Ok(generate::man(&mut std::io::stdout().lock())?),
    }
}

/// Tells the operator, whatever `RUST_LOG` says, that a new SQLite file was made: a typo in
/// `--database` would otherwise go unnoticed behind an empty database.
pub(crate) fn say_if_created(store: &Store) {
    if let Some(path) = store.created_database() {
        crate::telemetry::notice(&format!(
            "created a new SQLite database at {}",
            path.display()
        ));
    }
}

fn gateway_config(args: GatewayArgs) -> GatewayConfig {
    GatewayConfig {
        listen: args.listen,
        store: args.db.watcher_options(),
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
        fetch_allow_private: args.fetch_allow_private,
        limits: args.connections.limits(),
        metrics_listen: args.metrics.metrics_listen,
    }
}

fn authz_config(args: AuthzArgs) -> crate::authz::AuthzConfig {
    crate::authz::AuthzConfig {
        store: args.db.watcher_options(),
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        options: crate::authz::AuthzOptions {
            default_organization: args.organization,
            forward_scope_headers: args.forward_scope_headers,
            cert_header: args.cert_header,
            trust_reconcile: args.trust_reconcile,
            fetch_allow_private: args.fetch_allow_private,
            ..crate::authz::AuthzOptions::default()
        },
        trust_poll: args.trust_poll,
        limits: args.connections.limits(),
        metrics_listen: args.metrics.metrics_listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// decisions.md D80: a gateway's and an authz process's pool is sized for their one
    /// reader, the trust watcher; serve's for concurrent requests; the flag wins for all.
    #[test]
    fn watchers_pool_two_connections_unless_told() {
        let parse = |extra: &[&str], role: &str| {
            let mut line = vec!["certgate", role];
            if role == "gateway" {
                line.extend([
                    "--tls-cert",
                    "c",
                    "--tls-key",
                    "k",
                    "--upstream",
                    "http://u",
                ]);
            }
            line.extend_from_slice(extra);
            match Cli::try_parse_from(line).unwrap().command {
                Command::Serve(args) => args.db.options().max_connections,
                Command::Gateway(args) => gateway_config(args).store.max_connections,
                Command::Authz(args) => authz_config(args).store.max_connections,
                _ => unreachable!(),
            }
        };
        assert_eq!(parse(&[], "gateway"), crate::store::WATCHER_MAX_CONNECTIONS);
        assert_eq!(parse(&[], "authz"), crate::store::WATCHER_MAX_CONNECTIONS);
        assert_eq!(parse(&[], "serve"), crate::store::default_max_connections());
        for role in ["gateway", "authz", "serve"] {
            assert_eq!(parse(&["--db-max-connections", "7"], role), 7, "{role}");
        }
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

/// Checks over the whole command tree, so that commands and options added later are held to
/// the same rules without anyone remembering to add a case.
#[cfg(test)]
mod tree_tests {
    use super::*;
    use clap::builder::ValueParser;
    use clap::ArgAction;

    /// Every command, depth first, with its name as typed (`certgate org create`).
    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut cmd = command();
        cmd.build();
        let mut all = vec![("certgate".to_owned(), cmd.clone())];
        all.extend(generate::commands(&cmd, "certgate"));
        // clap's own `help` subcommand takes no options and prints other commands' help.
        all.retain(|(path, _)| !path.split(' ').any(|word| word == "help"));
        all
    }

    #[test]
    fn whole_command_line_is_consistent() {
        command().debug_assert();
    }

    /// decisions.md D42: each command's `--help` (and `-h`) names every variable it reads.
    #[test]
    fn every_help_names_every_variable_it_reads() {
        for (path, mut cmd) in all_commands() {
            let vars: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_env())
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            for help in [cmd.render_long_help(), cmd.render_help()] {
                let help = help.to_string();
                for var in &vars {
                    // `[env: NAME=value]`, or `[env: NAME]` where the value is hidden.
                    assert!(
                        help.contains(&format!("env: {var}="))
                            || help.contains(&format!("env: {var}]")),
                        "`{path} --help` does not name {var}:\n{help}"
                    );
                }
                for var in ["RUST_LOG", "CERTGATE_LOG_FORMAT"] {
                    assert!(
                        help.contains(var),
                        "`{path} --help` does not name {var}:\n{help}"
                    );
                }
            }
        }
    }

    /// decisions.md D42: every boolean option takes true/false, 1/0 and yes/no, from the command
    /// line and (through the same value parser) from its variable; given alone it means true.
    #[test]
    fn every_boolean_accepts_true_false_1_0_yes_no() {
        let mut checked = 0;
        for (path, cmd) in all_commands() {
            for arg in cmd.get_arguments() {
                let is_bool = arg.get_value_parser().type_id() == ValueParser::bool().type_id();
                if !is_bool || matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
                    continue;
                }
                let long = arg.get_long().expect("boolean options have a long name");
                // The option alone, without the process's environment or its siblings.
                let alone =
                    || clap::Command::new("t").arg(arg.clone().env(None::<&str>).required(false));
                for (raw, expected) in [
                    ("true", true),
                    ("false", false),
                    ("1", true),
                    ("0", false),
                    ("yes", true),
                    ("no", false),
                ] {
                    let matches = alone()
                        .try_get_matches_from(["t", &format!("--{long}={raw}")])
                        .unwrap_or_else(|e| panic!("`{path} --{long}={raw}`: {e}"));
                    assert_eq!(
                        matches.get_one::<bool>(arg.get_id().as_str()).copied(),
                        Some(expected),
                        "`{path} --{long}={raw}`"
                    );
                }
                let matches = alone()
                    .try_get_matches_from(["t", &format!("--{long}")])
                    .unwrap_or_else(|e| panic!("`{path} --{long}`: {e}"));
                assert_eq!(
                    matches.get_one::<bool>(arg.get_id().as_str()).copied(),
                    Some(true),
                    "`{path} --{long}` alone"
                );
                checked += 1;
            }
        }
        // serve --no-bootstrap and gateway --forward-scope-headers at least: the walk works.
        assert!(checked >= 2, "only {checked} boolean options found");
    }
}
