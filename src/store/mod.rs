//! Persistence: one SQL dialect spoken to SQLite (embedded default) and PostgreSQL (scale-out)
//! through sqlx's `Any` driver.
//!
//! Every rule that guards a write (the 50 limit, the delete guard, all-or-nothing toggles) runs
//! inside the writing transaction, after the transaction has locked the organization's row
//! ([`tx::lock_organization`]). On PostgreSQL that row lock serialises the organization's
//! writers; on SQLite the same first write takes the database write lock (with a busy
//! timeout). Transactions take the organization row first and the global `trust_state` row
//! last, so they cannot deadlock; transient conflicts are still retried, a bounded number of
//! times, and never reach a client as a 5xx.
//!
//! `sqlx` types never leave this module: callers see domain values and [`StoreError`].
//!
//! Files: `error` (classifying driver errors), `tx` (the transaction macro, the organization
//! lock, the trust generation), `sqlite_local` (SQLite's writer queue and change detector),
//! then one file per concern: `orgs` (organizations, bootstrap), `keys` (admin keys and the
//! check every request makes), `key_usage` (`last_used_at`, flushed off the request path),
//! `audit` (the audit log, appended inside each writing transaction), `certificates`,
//! `rotation` (one CA taking over from another everywhere at once), `projects`, `trust` (what
//! the gateway reads).

mod audit;
mod certificates;
mod error;
mod key_usage;
mod keys;
mod orgs;
mod projects;
mod rotation;
mod sqlite_local;
mod trust;
mod tx;

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::domain::{Clock, KeyId, OrgId};
pub use audit::{AuditQuery, AuditRecord, TimeRange};
pub use error::{BoxError, StoreError};
use key_usage::KeyUsage;
pub use orgs::DEFAULT_PROJECT_NAME;
use sqlite_local::{ChangeDetector, Marker, SqliteLocal};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// Longest wait for a connection, and longest statement (PostgreSQL `statement_timeout`,
    /// SQLite busy timeout).
    pub timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A verified admin key's organization, with the organization's write sequence as of the
/// check: any write to the organization's certificates, projects or activations moves it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub org_id: OrgId,
    pub key_id: KeyId,
    pub version: i64,
    /// When the key stops working: checked again on every use, cached or not.
    pub expires_at: Option<i64>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// SQLite only: the in-process writer queue and the change detector.
    sqlite: Option<Arc<SqliteLocal>>,
    /// Admin key uses not yet written to `last_used_at`.
    usage: Arc<KeyUsage>,
}

/// Adds `mode=rwc` so a fresh SQLite file is created on first start.
fn normalize_sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Store {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn open(options: &StoreOptions, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        let store = Store::connect(options, clock).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (backend, url) = if options.url.starts_with("sqlite:") {
            (Backend::Sqlite, normalize_sqlite_url(&options.url))
        } else if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://")
        {
            (Backend::Postgres, options.url.clone())
        } else {
            anyhow::bail!(
                "unsupported database URL: expected sqlite://PATH or postgres://USER@HOST/DB"
            );
        };
        if let Some(path) = sqlite_local::file_path(&url) {
            sqlite_local::create_private_file(path).map_err(|e| {
                anyhow::anyhow!("cannot create the SQLite database file {path}: {e}")
            })?;
        }
        let connect = AnyConnectOptions::from_str(&url)?;
        let timeout_ms = options.timeout.as_millis().max(1);
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.timeout)
            // A local file needs no liveness ping before each use (PostgreSQL keeps it, so a
            // connection broken by an outage is replaced instead of failing a request).
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute(format!("PRAGMA busy_timeout = {timeout_ms}").as_str())
                                .await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Backend::Postgres => {
                            conn.execute(format!("SET statement_timeout = {timeout_ms}").as_str())
                                .await?;
                            conn.execute(format!("SET lock_timeout = {timeout_ms}").as_str())
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await?;
        Ok(Store {
            pool,
            backend,
            url,
            timeout: options.timeout,
            clock,
            sqlite: (backend == Backend::Sqlite).then(|| Arc::new(SqliteLocal::new())),
            usage: Arc::new(KeyUsage::new()),
        })
    }

    /// Runs the migrations (and, on SQLite, opens the change detector once the file exists).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        if let Some(local) = &self.sqlite {
            if local.changes.get().is_none() {
                if let Some(detector) = ChangeDetector::open(&self.url) {
                    let _ = local.changes.set(Arc::new(detector));
                }
            }
        }
        Ok(())
    }

    /// On SQLite, waits (at most the database timeout) for this process's turn to write.
    async fn write_gate(&self) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>> {
        let Some(local) = &self.sqlite else {
            return Ok(None);
        };
        match tokio::time::timeout(self.timeout, local.write_gate.lock()).await {
            Ok(guard) => Ok(Some(guard)),
            Err(_) => Err(StoreError::unavailable(format!(
                "timed out after {:?} waiting for this process's turn to write",
                self.timeout
            ))),
        }
    }

    /// SQLite: a value that changes whenever anything is committed to the database file. The
    /// read blocks (a mutex and a SQLite call), so it runs on the blocking pool.
    async fn change_marker(&self) -> Option<Marker> {
        let detector = self.sqlite.as_ref()?.changes.get()?.clone();
        tokio::task::spawn_blocking(move || detector.marker())
            .await
            .ok()
            .flatten()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
