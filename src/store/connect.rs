//! Start-up: which database a URL names, creating or refusing a missing SQLite file, reaching
//! the server within a bounded time, and checking that the schema is migrated. Every error
//! names the database (SQLite path, or PostgreSQL host and port) and the driver's reason, and
//! says what to run when the operator can fix it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::any::AnyConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Connection};

use super::Backend;

/// The database a URL names, as an operator would recognise it in a message.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// A SQLite file (`None`: an in-memory database, which has no file).
    Sqlite(Option<PathBuf>),
    Postgres {
        host: String,
        port: u16,
        database: Option<String>,
        user: String,
    },
}

impl Target {
    pub(super) fn parse(url: &str) -> anyhow::Result<Target> {
        if url.starts_with("sqlite:") {
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Ok(Target::Sqlite(None));
            }
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url}"))?;
            let path = options.get_filename();
            // Absolute, so that messages about a relative path (`certgate.db`) say where it is.
            Ok(Target::Sqlite(Some(
                std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            )))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Parsed only to name the server: the URL itself may hold a password.
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .context("invalid PostgreSQL URL (expected postgres://USER@HOST:PORT/DB)")?;
            Ok(Target::Postgres {
                host: options.get_host().to_owned(),
                port: options.get_port(),
                database: options.get_database().map(str::to_owned),
                user: options.get_username().to_owned(),
            })
        } else {
            anyhow::bail!(
                "unsupported database URL: expected sqlite://PATH or postgres://USER@HOST:PORT/DB"
            )
        }
    }

    pub(super) fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres { .. } => Backend::Postgres,
        }
    }

    /// `serve`, `migrate` and `org create`: creates a missing SQLite file (empty; SQLite
    /// treats that as an empty database), readable and writable by its owner only (SQLite
    /// gives the `-wal` and `-shm` files the database file's mode, so they are private too).
    /// Returns its absolute path when this call created it, so the caller can say so.
    /// `create_new` makes that exact when replicas start together: only one creates the file.
    pub(super) fn create_if_missing(&self) -> anyhow::Result<Option<PathBuf>> {
        let Target::Sqlite(Some(path)) = self else {
            return Ok(None);
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => Ok(Some(path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("cannot create the SQLite database {}", path.display())),
        }
    }

    /// `gateway`: a missing SQLite file is an operator's mistake (a wrong path, or the
    /// database not set up yet), never something to create: an empty database has no trust
    /// state, so a gateway on it could only refuse every request.
    pub(super) fn require_existing(&self) -> anyhow::Result<()> {
        if let Target::Sqlite(Some(path)) = self {
            if !path.exists() {
                anyhow::bail!(
                    "no SQLite database at {}: the gateway does not create one; \
                     create it with `certgate migrate` (or by starting `certgate serve`) \
                     on the same --database, or fix the path",
                    path.display()
                );
            }
        }
        Ok(())
    }

    /// Opens one connection, retrying while the server cannot be reached, for at most
    /// `within`. A refusal that waiting does not fix (a wrong password, a missing database,
    /// an unopenable file) ends it at once. The error names the database and the driver's
    /// reason: the pool would only say "pool timed out".
    pub(super) async fn reach(
        &self,
        options: &AnyConnectOptions,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0u32;
        // The driver's last reason: an attempt cut short by the deadline does not replace it.
        let mut reason = None;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, AnyConnection::connect_with(options)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) if !worth_waiting_for(&e) => return Err(self.refused(&e)),
                // sqlx's message already includes its source's: no `ErrorChain` here.
                Ok(Err(e)) => reason = Some(e.to_string()),
                Err(_) => {
                    reason.get_or_insert_with(|| format!("no answer within {within:?}"));
                }
            }
            let why = reason.as_deref().unwrap_or_default();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                anyhow::bail!(
                    "cannot reach {self}; gave up after {within:?} and {attempts} attempts \
                     (--db-connect-timeout): {why}"
                );
            }
            tracing::warn!(database = %self, error = %why, retry_in = ?delay.min(left), "cannot reach the database yet");
            tokio::time::sleep(delay.min(left)).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn refused(&self, e: &sqlx::Error) -> anyhow::Error {
        let reason = e.to_string();
        let code = match e {
            sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
            _ => None,
        };
        match (self, code.as_deref()) {
            // invalid_catalog_name: the server is there, the database is not.
            (
                Target::Postgres {
                    host,
                    port,
                    database,
                    user,
                },
                Some("3D000"),
            ) => anyhow::anyhow!(
                "{self} refused the connection: {reason}; create the database (e.g. \
                 `createdb -h {host} -p {port} -U {user} {}`), then run `certgate migrate`",
                database.as_deref().unwrap_or(user)
            ),
            (Target::Sqlite(_), _) => anyhow::anyhow!("cannot open {self}: {reason}"),
            (Target::Postgres { .. }, _) => {
                anyhow::anyhow!("{self} refused the connection: {reason}")
            }
        }
    }

    /// `gateway`: the schema must have every migration this build knows. A newer schema
    /// (migrations this build does not know) is fine: migrations are expand/contract.
    pub(super) async fn check_migrated(
        &self,
        pool: &sqlx::AnyPool,
        migrator: &Migrator,
    ) -> anyhow::Result<()> {
        let table_sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let tables: i64 = sqlx::query_scalar(table_sql)
            .fetch_one(pool)
            .await
            .with_context(|| format!("reading the schema of {self}"))?;
        if tables == 0 {
            anyhow::bail!(
                "{self} is not migrated (it has no certgate schema): run `certgate migrate` \
                 (or start `certgate serve`) on it first"
            );
        }
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await
                .with_context(|| format!("reading the applied migrations of {self}"))?;
        let missing: Vec<String> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| format!("{} ({})", m.version, m.description))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "{self} is not fully migrated: it lacks migration {}; run `certgate migrate` \
                 with this version of certgate first",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sqlite(Some(path)) => write!(f, "the SQLite database {}", path.display()),
            Target::Sqlite(None) => write!(f, "the in-memory SQLite database"),
            Target::Postgres {
                host,
                port,
                database,
                user,
            } => {
                write!(f, "PostgreSQL at {host}:{port} (")?;
                if let Some(db) = database {
                    write!(f, "database \"{db}\", ")?;
                }
                write!(f, "user \"{user}\")")
            }
        }
    }
}

/// Whether waiting may help: the server is not up (yet), is starting, or is full.
fn worth_waiting_for(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // cannot_connect_now (starting up), too_many_connections, connection exceptions.
            c == "57P03" || c == "53300" || c.starts_with("08")
        }),
        _ => false,
    }
}
