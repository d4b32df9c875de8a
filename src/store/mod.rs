//! Persistence: one SQL dialect spoken to SQLite (embedded default) and PostgreSQL (scale-out)
//! through sqlx's `Any` driver.
//!
//! Every rule that guards a write (the 50 limit, the delete guard, all-or-nothing toggles) runs
//! inside the writing transaction, after the transaction has locked the organization's row
//! (`tx::lock_organization`). On PostgreSQL that row lock serialises the organization's
//! writers; on SQLite the same first write takes the database write lock (with a busy
//! timeout). Transactions take the organization row first and the global `trust_state` row
//! last, so they cannot deadlock; transient conflicts are still retried, a bounded number of
//! times, and never reach a client as a 5xx.
//!
//! `sqlx` and `rusqlite` types never leave this module: callers see domain values and
//! [`StoreError`].
//!
//! Every operation has one deadline, `--db-timeout` after it starts, for all of its waits for
//! the database together (`deadline`): the pool is reached only through it.
//!
//! Files: `connect` (start-up: naming the database, creating or refusing a missing SQLite file, the
//! bounded wait for the server, the migration check), `deadline` (one deadline per operation; the
//! pool behind it), `error` (classifying driver errors), `tx` (the transaction macro, the
//! organization lock, the trust generation), `group_commit` (SQLite's writer queue: transactions
//! queued together share one commit), `sqlite_writer` (SQLite's writer thread: toggles run whole on
//! a connection of its own), `sqlite_local` (SQLite's change detector and key cache), `coalesce`
//! (PostgreSQL: concurrent key checks share one query that started after each arrived), `paging`
//! (keyset pages by an `after` id), then one file per concern: `orgs` (organizations, bootstrap),
//! `keys` (admin keys and the check every request makes), `key_usage` (`last_used_at`, flushed off
//! the request path), `audit` (the audit log, appended inside each writing transaction),
//! `certificates`, `toggles` (activations, all or nothing), `rotation` (one CA taking over from
//! another everywhere at once), `revocations` (the deny-list and CRLs), `projects`, `trust` (what
//! the gateway reads), `metrics` (what a metrics scrape reads).

mod audit;
mod certificates;
mod coalesce;
mod connect;
mod deadline;
mod error;
mod fetch;
mod group_commit;
mod key_usage;
mod keys;
mod metrics;
mod orgs;
mod paging;
mod projects;
mod revocations;
mod rotation;
mod sqlite_local;
mod sqlite_wake;
mod sqlite_writer;
mod toggles;
mod trust;
mod trust_changes;
mod tx;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::domain::{Clock, KeyId, OrgId};
pub use audit::{AuditQuery, AuditRecord, TimeRange};
use connect::Target;
use deadline::{Deadline, Pool};
pub use error::{BoxError, StoreError};
pub use fetch::CrlSource;
pub use group_commit::GroupCommitStats;
use key_usage::KeyUsage;
pub use metrics::CertificateExpiry;
pub use orgs::DEFAULT_PROJECT_NAME;
use sqlite_local::{ChangeDetector, Marker, SqliteLocal};
use sqlite_writer::SqliteWriter;
pub use trust::TrustReads;
pub use trust_changes::HeldCrl;

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
    /// The most a store operation waits for the database, all of its waits together: this
    /// process's turn to write, a connection, its statements, its retries (`store::deadline`).
    /// Also PostgreSQL's `statement_timeout` and `lock_timeout`, and SQLite's busy timeout.
    pub timeout: Duration,
    /// How long to keep trying to reach the database at start before giving up.
    pub connect_timeout: Duration,
}

/// The default of `--db-max-connections`: 4 per CPU core this process may use, at least 4
/// and at most 16 (16 on 4 cores or more; 8 on the 2-core benchmark machine).
///
/// Measured on 2 cores (`docs/benchmarks-api.md`, "Pool size"): 4, 8 and 16 connections
/// serve the same list and toggle rates, because concurrent key checks share one query and
/// at most 2 writers per process run at once. More connections only hold more PostgreSQL
/// backends idle (each is a process there, and `max_connections` is 100 by default, shared
/// by every replica); fewer than 4 would leave the detector, the flusher and a writer
/// waiting behind a slow list.
/// The default of `--db-max-connections` for `gateway` and `authz`: their trust watcher reads
/// one query at a time (its refreshes are serialized), and the second connection covers the
/// moment a released connection is not yet back in the pool (sqlx returns it from a task: an
/// acquire just then would open another, and with a larger bound such openings accumulate, each
/// connection kept busy enough never to idle out). LISTEN/NOTIFY has its own connection.
pub const WATCHER_MAX_CONNECTIONS: u32 = 2;

pub fn default_max_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores.saturating_mul(4)).map_or(16, |n| n.clamp(4, 16))
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: default_max_connections(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
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

/// Cloned for every request (through the router's state): every field is a handle, so a clone
/// is a few reference counts and no allocation.
#[derive(Clone)]
pub struct Store {
    /// Reached only within a deadline ([`deadline`]).
    pool: Pool,
    backend: Backend,
    url: Arc<str>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// SQLite only: the in-process writer queue and the change detector.
    sqlite: Option<Arc<SqliteLocal>>,
    /// Admin key uses not yet written to `last_used_at`.
    usage: Arc<KeyUsage>,
    /// PostgreSQL: key checks in flight, shared by the requests that arrive together.
    key_reads: Arc<KeyReads>,
    /// PostgreSQL: this process's writing transactions in flight ([`PG_WRITERS`] at most).
    pg_writers: Option<Arc<tokio::sync::Semaphore>>,
    /// The SQLite file opening this store created, if it did.
    created: Option<Arc<Path>>,
    /// Seconds a trust change record is kept ([`Store::set_trust_change_retention`]).
    change_retention: Arc<std::sync::atomic::AtomicI64>,
}

/// PostgreSQL: writing transactions one process runs at once. Every write starts by locking
/// its organization's row, so writers of one organization run one after another whatever this
/// is; more in flight only adds backends asleep in PostgreSQL's lock queue, each holding a
/// pooled connection the readers need (measured: 16 in flight toggled at a third of the rate
/// of 1). Two keep one transaction's round trips overlapped with the next one's start.
const PG_WRITERS: usize = 2;

/// A key check's answer: the stored digest and who the key is, if it is live.
type KeyRead = std::result::Result<Option<(String, Authenticated)>, error::SharedError>;
type KeyReads = coalesce::Coalescer<String, KeyRead>;

/// Every SQLite connection's settings besides WAL mode (the file's, set once) and the busy
/// timeout: durable commits, enforced foreign keys, and savepoint journals in memory. Each
/// writer of a group commit runs in a savepoint, whose undo records (the statement journal)
/// otherwise go to a temporary file: about a tenth of the writer thread's time in a profile
/// of toggles. They only ever undo a savepoint, never a crash.
pub(super) const SQLITE_PRAGMAS: &str =
    "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;";

/// `$first, $first+1, …`: `n` numbered parameters, for an `IN (…)` list.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets the SQLite open mode unless the URL does: `rwc` creates a missing file, `rw` does not.
fn normalize_sqlite_url(url: &str, mode: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

impl Store {
    /// The first-run path (`serve`, `migrate`, `org create`): creates a missing SQLite file
    /// (see [`Store::created_database`]), waits for the server (at most
    /// `connect_timeout`), and runs the migrations.
    pub async fn open(options: &StoreOptions, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        let target = Target::parse(&options.url)?;
        let created = target.create_if_missing()?;
        let mut store = Store::connect_to(&target, options, "rwc", clock).await?;
        store.created = created.map(Arc::from);
        store.migrate().await?;
        Ok(store)
    }

    /// The gateway's path: the database must exist and be migrated. Creates nothing, and
    /// says what to run when it is not so.
    pub async fn open_existing(
        options: &StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Store> {
        let target = Target::parse(&options.url)?;
        target.require_existing()?;
        let store = Store::connect_to(&target, options, "rw", clock).await?;
        let migrator = match store.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        if let Err(e) = target
            .check_migrated(store.pool.unbounded(), migrator)
            .await
        {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Connects without migrating (creating a missing SQLite file).
    pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>) -> anyhow::Result<Store> {
        let target = Target::parse(&options.url)?;
        target.create_if_missing()?;
        Store::connect_to(&target, options, "rwc", clock).await
    }

    /// The SQLite file that [`Store::open`] created, as an absolute path; `None` when the
    /// database already existed (or is not a SQLite file).
    pub fn created_database(&self) -> Option<&Path> {
        self.created.as_deref()
    }

    async fn connect_to(
        target: &Target,
        options: &StoreOptions,
        sqlite_mode: &str,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Store> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = target.backend();
        let url = match backend {
            Backend::Sqlite => normalize_sqlite_url(&options.url, sqlite_mode),
            Backend::Postgres => options.url.clone(),
        };
        let connect = AnyConnectOptions::from_str(&url)?;
        target.reach(&connect, options.connect_timeout).await?;
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
                            conn.execute(format!("PRAGMA busy_timeout = {timeout_ms}").as_str())
                                .await?;
                            conn.execute(SQLITE_PRAGMAS).await?;
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
            .await
            .with_context(|| format!("connecting to {target}"))?;
        Ok(Store {
            pool: Pool::new(pool),
            backend,
            url: url.into(),
            timeout: options.timeout,
            clock,
            sqlite: (backend == Backend::Sqlite).then(|| Arc::new(SqliteLocal::new())),
            usage: Arc::new(KeyUsage::new()),
            key_reads: Arc::default(),
            pg_writers: (backend == Backend::Postgres)
                .then(|| Arc::new(tokio::sync::Semaphore::new(PG_WRITERS))),
            created: None,
            change_retention: Arc::new(std::sync::atomic::AtomicI64::new(
                tx::DEFAULT_CHANGE_RETENTION_SECS,
            )),
        })
    }

    /// Runs the migrations (and, on SQLite, opens the change detector once the file exists).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(self.pool.unbounded()).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(self.pool.unbounded()).await?,
        }
        if let Some(local) = &self.sqlite {
            if local.changes.get().is_none() {
                if let Some(detector) = ChangeDetector::open(&self.url) {
                    let _ = local.changes.set(Arc::new(detector));
                }
            }
            if local.writer.get().is_none() {
                let writer = sqlite_local::file_path(&self.url).and_then(|path| {
                    SqliteWriter::start(
                        path,
                        self.timeout,
                        local.writes.clone(),
                        tokio::runtime::Handle::current(),
                    )
                });
                if let Some(writer) = writer {
                    let _ = local.writer.set(writer);
                }
            }
        }
        Ok(())
    }

    /// SQLite with its writer thread (a file opened by [`Store::open`] or migrated).
    fn sqlite_writer(&self) -> Option<&SqliteWriter> {
        self.sqlite.as_ref()?.writer.get()
    }

    /// SQLite: how many commits this process made since the store opened (the group commit's
    /// and the writer thread's), and how many writing transactions they acknowledged; waits
    /// for the writer queue to read them. `None` on PostgreSQL.
    pub async fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        match &self.sqlite {
            Some(local) => Some(group_commit::stats(&local.writes).await),
            None => None,
        }
    }

    /// Runs `work` (one request) so that all the store operations it makes together wait at
    /// most `--db-timeout` for the database, however many there are (the key check, then the
    /// read or write): their deadlines are cut to the one taken now.
    pub async fn one_deadline<F: std::future::Future>(&self, work: F) -> F::Output {
        deadline::one_deadline(self.timeout, work).await
    }

    /// The deadline of a store operation starting now: `--db-timeout` for all of its waits
    /// for the database together ([`deadline`]), or less when the request it serves must
    /// end sooner ([`Store::one_deadline`]).
    fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }

    /// Runs `read` (any number of statements, on the pool or on connections and read
    /// transactions it takes from it) within a deadline of its own, taken now.
    async fn read<'s, T, E, F>(&'s self, read: impl FnOnce(&'s AnyPool) -> F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, E>> + 's,
        StoreError: From<E>,
    {
        self.pool.within(&self.deadline(), read).await
    }

    /// The one row `sql` selects by `$1` (an object's id) and `$2` (its organization), if any.
    async fn read_one_of_org(
        &self,
        sql: &str,
        id: &str,
        org: &OrgId,
    ) -> Result<Option<sqlx::any::AnyRow>> {
        self.read(|pool| {
            sqlx::query(sql)
                .bind(id)
                .bind(org.as_str())
                .fetch_optional(pool)
        })
        .await
    }

    /// Opens a writing transaction before `deadline`: on SQLite, a turn in this process's
    /// writer queue and a place in its group commit. Runs `opening`, the statements the write
    /// starts with, in it and returns their rows: on SQLite they travel with the writer's
    /// savepoint (one round trip fewer). `in_transaction!` bounds the rest of the write by the
    /// same deadline.
    async fn begin_write(
        &self,
        opening: Vec<tx::Statement>,
        deadline: &Deadline,
    ) -> Result<(tx::Writer, Vec<sqlx::any::AnyRow>)> {
        if let Some(local) = &self.sqlite {
            let (member, rows) =
                group_commit::join(&local.writes, &self.pool, deadline, opening).await?;
            return Ok((tx::Writer::Grouped(member), rows));
        }
        let permit = self.pg_write_permit(deadline).await?;
        let mut transaction = self.pool.begin(deadline).await?;
        let rows = if opening.is_empty() {
            Vec::new()
        } else {
            deadline
                .bound(tx::run_together(&mut transaction, opening))
                .await?
        };
        Ok((tx::Writer::Alone(transaction, permit), rows))
    }

    /// PostgreSQL: this process's turn to write (see [`PG_WRITERS`]), waited for until
    /// `deadline`: the same deadline then bounds the transaction's statements.
    async fn pg_write_permit(
        &self,
        deadline: &Deadline,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        let Some(writers) = &self.pg_writers else {
            return Ok(None);
        };
        deadline
            .bound(async {
                writers
                    .clone()
                    .acquire_owned()
                    .await
                    .map(Some)
                    .map_err(|_| StoreError::unavailable("the store is closing"))
            })
            .await
    }

    /// SQLite: a value that changes whenever anything is committed to the database file, read
    /// after this call began. Read in place from the WAL-index header when it can be (one
    /// `pread`, no lock); otherwise from `PRAGMA data_version`, which blocks (a mutex and a
    /// SQLite call), so it runs on the blocking pool, and the calls that arrive while one runs
    /// share the next (`coalesce`): under load one hop to the blocking pool serves many
    /// requests.
    async fn change_marker(&self) -> Option<Marker> {
        let local = self.sqlite.as_ref()?;
        let detector = local.changes.get()?.clone();
        if let Some(marker) = detector.wal_index_marker() {
            return Some(marker);
        }
        local
            .markers
            .read(
                (),
                move |()| {
                    let detector = detector.clone();
                    async move {
                        tokio::task::spawn_blocking(move || detector.data_version_marker())
                            .await
                            .ok()
                            .flatten()
                    }
                },
                None,
            )
            .await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether the database answers now (within the database timeout).
    pub async fn ping(&self) -> Result<()> {
        self.read(|pool| sqlx::query("SELECT 1").execute(pool))
            .await
            .map(drop)
    }

    pub async fn close(&self) {
        if let Some(local) = &self.sqlite {
            if let Some(writer) = local.writer.get() {
                writer.close().await;
            }
            group_commit::settle(&local.writes, self.timeout).await;
        }
        self.pool.unbounded().close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_pool_has_four_connections_per_core_within_bounds() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let expected = u32::try_from(cores * 4).unwrap().clamp(4, 16);
        assert_eq!(super::default_max_connections(), expected);
        assert!((4..=16).contains(&expected));
    }
}
