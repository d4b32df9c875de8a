//! Command line: `serve`, `org create`, `migrate`. Every flag has a `CERTGATE_*` variable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::SystemClock;
use crate::store::{Store, StoreOptions};

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
    Gateway(crate::gateway::GatewayArgs),
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

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (embedded default) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long = "database",
        env = "CERTGATE_DATABASE_URL",
        default_value = "sqlite://certgate.db"
    )]
    pub url: String,
    /// Most database connections this process opens.
    #[arg(
        long = "db-max-connections",
        env = "CERTGATE_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,
    /// Longest wait for a connection and longest statement, e.g. `5s` or `500ms`.
    #[arg(long = "db-timeout", env = "CERTGATE_DB_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl DbArgs {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url.clone(),
            max_connections: self.max_connections,
            timeout: self.timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CERTGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not create a default organization on an empty database.
    #[arg(long, env = "CERTGATE_NO_BOOTSTRAP")]
    pub no_bootstrap: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `250ms`, `5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (num, unit) = match raw.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{raw}': use e.g. 500ms, 5s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in '{raw}': use ms, s or m")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!(
            "duration '{raw}' must be more than 0 and less than a day"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Gateway(args) => crate::gateway::run(args).await,
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
            println!("{}", crate::serve::org_json(&org, &key));
            Ok(())
        }
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
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
