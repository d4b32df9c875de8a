//! Persistence: one SQL dialect spoken to SQLite (embedded default) and PostgreSQL (scale-out)
//! through sqlx's `Any` driver.
//!
//! Every rule that guards a write (the 50 limit, the delete guard, all-or-nothing toggles) runs
//! inside the writing transaction, after the transaction has locked the organization's row
//! (`UPDATE organizations SET seq = seq + 1`). On PostgreSQL that row lock serialises the
//! organization's writers; on SQLite the same first write takes the database write lock (with a
//! busy timeout). Transactions take the organization row first and the global `trust_state` row
//! last, so they cannot deadlock; transient conflicts are still retried here, a bounded number of
//! times, and never reach a client as a 5xx.
//!
//! `sqlx` types never leave this module: callers see domain values and [`StoreError`].

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

use crate::domain::{
    self, Certificate, Clock, DomainError, NewAdminKey, Order, Organization, Page, PageRequest,
    Project, Scope, ScopedCertificate, ToggleIds,
};
use crate::x509::ParsedCa;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How often a transaction that hit a serialization failure, deadlock or busy database is
/// run again before the request is answered with 503.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule refused the change; nothing was written.
    #[error(transparent)]
    Rule(#[from] DomainError),
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A conflict that running the transaction again resolves (internal; retried).
    #[error("transient conflict: {0}")]
    Retryable(String),
    #[error("internal store error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match code.as_str() {
                    // PostgreSQL serialization failure and deadlock.
                    "40001" | "40P01" => StoreError::Retryable(code),
                    // SQLite BUSY: the busy timeout has already been waited out.
                    "5" => StoreError::Unavailable(db.message().to_owned()),
                    // SQLite LOCKED and the extended BUSY codes (e.g. BUSY_SNAPSHOT), which
                    // keep the primary code in the low byte: run the transaction again.
                    c if c
                        .parse::<i32>()
                        .is_ok_and(|n| n & 0xff == 5 || n & 0xff == 6) =>
                    {
                        StoreError::Retryable(code)
                    }
                    // query_canceled (statement_timeout), lock_not_available (lock_timeout),
                    // shutdown, connection exceptions.
                    c if c == "57014"
                        || c == "55P03"
                        || c.starts_with("57P")
                        || c.starts_with("08") =>
                    {
                        StoreError::Unavailable(db.message().to_owned())
                    }
                    _ => StoreError::Internal(e.to_string()),
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// SQLite only: the in-process writer queue and the change detector.
    sqlite: Option<Arc<SqliteLocal>>,
}

/// What only an embedded SQLite database needs.
struct SqliteLocal {
    /// One writing transaction at a time in this process, in arrival order. SQLite allows one
    /// writer anyway; queueing here instead of in SQLite's busy handler (which sleeps and
    /// retries, unfairly) keeps write latency even. Other processes on the same file still
    /// wait in the busy handler.
    write_gate: tokio::sync::Mutex<()>,
    /// Opened once the database file exists (after migrations).
    changes: std::sync::OnceLock<ChangeDetector>,
    keys: KeyCache,
}

/// Dedicated read-only connections whose `PRAGMA data_version` changes whenever any other
/// connection, in this process or another, commits to the file. Reading it costs about a
/// microsecond, against tens for a query through the pool, so "has anything changed since?"
/// is cheap to ask on every request. `data_version` values are per connection, so a marker is
/// (connection, value); threads prefer a connection of their own to avoid contending.
struct ChangeDetector(Vec<std::sync::Mutex<rusqlite::Connection>>);

/// (detector connection, its `data_version`): equal markers mean nothing was committed between.
type Marker = (usize, i64);

impl ChangeDetector {
    const CONNECTIONS: usize = 4;

    fn open(url: &str) -> Option<ChangeDetector> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conns = (0..Self::CONNECTIONS)
            .map(|_| rusqlite::Connection::open_with_flags(path, flags).map(std::sync::Mutex::new))
            .collect::<Result<Vec<_>, _>>();
        match conns {
            Ok(conns) => Some(ChangeDetector(conns)),
            Err(e) => {
                tracing::warn!(error = %e, "no SQLite change detector; every request will query");
                None
            }
        }
    }

    fn marker(&self) -> Option<Marker> {
        thread_local! {
            static SLOT: usize = {
                static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            };
        }
        let own = SLOT.with(|s| *s) % self.0.len();
        let (i, conn) = (0..self.0.len())
            .map(|k| (own + k) % self.0.len())
            .find_map(|i| self.0[i].try_lock().ok().map(|c| (i, c)))
            .unwrap_or_else(|| (own, self.0[own].lock().unwrap_or_else(|p| p.into_inner())));
        let mut stmt = conn.prepare_cached("PRAGMA data_version").ok()?;
        let version = stmt.query_row([], |row| row.get(0)).ok()?;
        Some((i, version))
    }
}

/// Admin keys verified while the database stood at a given change marker. An entry is used
/// only while the marker is unchanged, i.e. while nothing at all was committed since the key
/// (and its organization's write sequence) was read. Each key keeps one slot per detector
/// connection, since markers of different connections are not comparable.
type KeySlots = [Option<(i64, Authenticated)>; ChangeDetector::CONNECTIONS];

#[derive(Default)]
struct KeyCache(std::sync::Mutex<std::collections::HashMap<String, KeySlots>>);

impl KeyCache {
    const MAX_ENTRIES: usize = 1024;

    fn get(&self, digest: &str, (conn, version): Marker) -> Option<Authenticated> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(digest)?.get(conn)? {
            Some((v, who)) if *v == version => Some(who.clone()),
            _ => None,
        }
    }

    fn put(&self, digest: String, (conn, version): Marker, who: Authenticated) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX_ENTRIES && !map.contains_key(&digest) {
            map.clear();
        }
        if let Some(slot) = map.entry(digest).or_default().get_mut(conn) {
            *slot = Some((version, who));
        }
    }
}

/// A verified admin key's organization, with the organization's write sequence as of the
/// check: any write to the organization's certificates, projects or activations moves it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub org_id: String,
    pub version: i64,
}

/// A CA certificate active somewhere, as the gateway needs it.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    pub certificate_id: String,
    pub org_id: String,
    /// Active for the whole organization (and so for all its projects).
    pub org_wide: bool,
    /// Projects it is active for on its own.
    pub projects: Vec<String>,
    /// The PEM text as uploaded.
    pub pem: String,
    pub valid_at: i64,
    pub expires_at: i64,
}

/// Everything that decides who may connect, as of `generation`.
#[derive(Debug, Clone)]
pub struct TrustSnapshot {
    pub generation: i64,
    pub anchors: Vec<TrustAnchor>,
    pub organizations: Vec<String>,
}

/// Runs `$body` in a transaction on `$store`, retrying transient conflicts. Inside the body,
/// `$tx` is the open transaction; `?` aborts (rolls back) with that error.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome: Result<_> = async {
                let _gate = $store.write_gate().await?;
                let mut $tx = $store.pool.begin().await?;
                let body_result: Result<_> = async { $body }.await;
                let value = body_result?;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(StoreError::Retryable(why)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, %why, "retrying transaction");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                Err(StoreError::Retryable(why)) => {
                    break Err(StoreError::Unavailable(format!("still conflicting after {attempt} attempts: {why}")))
                }
                other => break other,
            }
        }
    }};
}

const CERT_COLUMNS: &str = "id, name, created_at, valid_at, expires_at";

fn certificate_from_row(row: &AnyRow, with_content: bool) -> Result<Certificate, sqlx::Error> {
    Ok(Certificate {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        valid_at: row.try_get("valid_at")?,
        expires_at: row.try_get("expires_at")?,
        content: if with_content {
            Some(row.try_get("content")?)
        } else {
            None
        },
    })
}

fn project_from_row(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        archived_at: row.try_get("archived_at")?,
        external_key_id: row.try_get("external_key_id")?,
        residency: row.try_get("residency")?,
    })
}

const PROJECT_COLUMNS: &str = "id, name, created_at, archived_at, external_key_id, residency";

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
        let connect = AnyConnectOptions::from_str(&url)?;
        let url_for_store = url.clone();
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
        let sqlite = (backend == Backend::Sqlite).then(|| {
            Arc::new(SqliteLocal {
                write_gate: tokio::sync::Mutex::new(()),
                changes: std::sync::OnceLock::new(),
                keys: KeyCache::default(),
            })
        });
        Ok(Store {
            pool,
            backend,
            url: url_for_store,
            timeout: options.timeout,
            clock,
            sqlite,
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
                    let _ = local.changes.set(detector);
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
            Err(_) => Err(StoreError::Unavailable("timed out waiting to write".into())),
        }
    }

    /// SQLite: a value that changes whenever anything is committed to the database file.
    fn change_marker(&self) -> Option<Marker> {
        self.sqlite.as_ref()?.changes.get()?.marker()
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
        self.pool.close().await
    }

    // ---------------------------------------------------------------- organizations & keys

    /// Finds the organization an admin key belongs to, and the organization's write sequence
    /// (bumped by every write to it) in the same statement. The database is looked up by the
    /// key's SHA-256; the stored digest is then compared in constant time.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Authenticated>> {
        use subtle::ConstantTimeEq;
        let digest = domain::admin_key_digest(key);
        // Read before the query: a commit in between makes the entry's marker stale, never
        // its contents.
        let marker = self.change_marker();
        if let (Some(m), Some(local)) = (marker, &self.sqlite) {
            if let Some(hit) = local.keys.get(&digest, m) {
                return Ok(Some(hit));
            }
        }
        let row = sqlx::query(
            "SELECT k.org_id, k.key_sha256, o.seq FROM admin_keys k JOIN organizations o ON o.id = k.org_id
             WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL",
        )
        .bind(&digest)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("key_sha256")?;
        if bool::from(stored.as_bytes().ct_eq(digest.as_bytes())) {
            let who = Authenticated {
                org_id: row.try_get("org_id")?,
                version: row.try_get("seq")?,
            };
            if let (Some(m), Some(local)) = (marker, &self.sqlite) {
                local.keys.put(digest, m, who.clone());
            }
            Ok(Some(who))
        } else {
            Ok(None)
        }
    }

    /// Creates an organization with its first admin key.
    pub async fn create_organization(&self, name: &str) -> Result<(Organization, NewAdminKey)> {
        let now = self.now();
        let name = name.to_owned();
        in_transaction!(self, |tx| {
            insert_organization(&mut tx, &name, now).await
        })
    }

    /// On an empty database, creates the default organization, exactly once however many
    /// replicas start together. Returns it (and its key) only to the caller that created it.
    pub async fn bootstrap(&self) -> Result<Option<(Organization, NewAdminKey)>> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let claimed = sqlx::query("INSERT INTO meta (key, value) VALUES ('bootstrap', $1) ON CONFLICT (key) DO NOTHING")
                .bind(now.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
            let orgs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM organizations")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if orgs > 0 {
                return Ok(None);
            }
            Ok(Some(
                insert_organization(&mut tx, "Default Organization", now).await?,
            ))
        })
    }

    // ---------------------------------------------------------------- certificates

    pub async fn upload_certificate(
        &self,
        org: &str,
        name: Option<String>,
        content: &str,
        parsed: &ParsedCa,
    ) -> Result<Certificate> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(&mut tx, org).await?;
            if let Some(row) = sqlx::query("SELECT id FROM certificates WHERE org_id = $1 AND sha256 = $2 AND deleted_at IS NULL")
                .bind(org)
                .bind(&parsed.sha256)
                .fetch_optional(&mut *tx)
                .await?
            {
                return Err(DomainError::CertificateAlreadyExists { existing_id: row.try_get("id")? }.into());
            }
            let count: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM certificates WHERE org_id = $1 AND deleted_at IS NULL",
            )
            .bind(org)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            domain::check_certificate_limit(count)?;
            let id = domain::new_id("cert_");
            sqlx::query(
                "INSERT INTO certificates (id, org_id, name, content, sha256, subject_der, ski, valid_at, expires_at, created_at, seq, active_org)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0)",
            )
            .bind(&id)
            .bind(org)
            .bind(name.clone())
            .bind(content)
            .bind(&parsed.sha256)
            .bind(&parsed.subject_der)
            .bind(&parsed.ski)
            .bind(parsed.valid_at)
            .bind(parsed.expires_at)
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            Ok(Certificate {
                id,
                name: name.clone(),
                created_at: now,
                valid_at: parsed.valid_at,
                expires_at: parsed.expires_at,
                content: None,
            })
        })
    }

    pub async fn get_certificate(
        &self,
        org: &str,
        id: &str,
        with_content: bool,
    ) -> Result<Certificate> {
        if !domain::plausible_id(id) {
            return Err(DomainError::certificate_not_found(id).into());
        }
        let sql = format!("SELECT {CERT_COLUMNS}, content FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(org)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(certificate_from_row(&row, with_content)?),
            None => Err(DomainError::certificate_not_found(id).into()),
        }
    }

    /// Changes the name (the only mutable field). `None` leaves it as it is.
    pub async fn rename_certificate(
        &self,
        org: &str,
        id: &str,
        name: Option<Option<String>>,
    ) -> Result<Certificate> {
        let Some(name) = name else {
            return self.get_certificate(org, id, false).await;
        };
        if !domain::plausible_id(id) {
            return Err(DomainError::certificate_not_found(id).into());
        }
        let sql = format!("UPDATE certificates SET name = $1 WHERE id = $2 AND org_id = $3 AND deleted_at IS NULL RETURNING {CERT_COLUMNS}");
        in_transaction!(self, |tx| {
            // Moves the organization's version, like every write (list caches depend on it).
            lock_organization(&mut tx, org).await?;
            match sqlx::query(&sql)
                .bind(name.clone())
                .bind(id)
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(row) => Ok(certificate_from_row(&row, false)?),
                None => Err(DomainError::certificate_not_found(id).into()),
            }
        })
    }

    /// Deletes a certificate that is inactive everywhere; it stays as a tombstone (content
    /// cleared) so its id remains a valid list cursor.
    pub async fn delete_certificate(&self, org: &str, id: &str) -> Result<()> {
        if !domain::plausible_id(id) {
            return Err(DomainError::certificate_not_found(id).into());
        }
        let now = self.now();
        in_transaction!(self, |tx| {
            lock_organization(&mut tx, org).await?;
            let row = sqlx::query("SELECT active_org FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL")
                .bind(id)
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| DomainError::certificate_not_found(id))?;
            let active_org: i64 = row.try_get("active_org")?;
            let projects: Vec<String> = sqlx::query("SELECT project_id FROM project_activations WHERE certificate_id = $1 ORDER BY project_id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("project_id"))
                .collect::<Result<_, _>>()?;
            domain::check_deletable(id, org, active_org != 0, &projects)?;
            sqlx::query(
                "UPDATE certificates SET deleted_at = $1, content = '', name = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    /// Activates or deactivates every named certificate in `scope`, or none of them.
    pub async fn toggle_certificates(
        &self,
        org: &str,
        scope: &Scope,
        ids: &ToggleIds,
        activate: bool,
    ) -> Result<Vec<ScopedCertificate>> {
        if let Scope::Project(project) = scope {
            if !domain::plausible_id(project) {
                return Err(DomainError::project_not_found(project).into());
            }
        }
        if let Some(unknown) = ids.as_slice().iter().find(|id| !domain::plausible_id(id)) {
            return Err(DomainError::UnknownToggleId(unknown.clone()).into());
        }
        // One statement per step whatever the number of ids: the organization stays locked for
        // as few round trips as possible.
        let n = ids.as_slice().len();
        let placeholders = |first: usize| {
            (first..first + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let select = format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE org_id = $1 AND deleted_at IS NULL AND id IN ({})",
            placeholders(2)
        );
        // In the changing statement: $1 org, $2 the new flag or the project id, $3.. the ids.
        let id_list = placeholders(3);
        let change = match scope {
            Scope::Organization => format!(
                "UPDATE certificates SET active_org = $2 WHERE org_id = $1 AND active_org <> $2 AND id IN ({id_list})"
            ),
            Scope::Project(_) if activate => format!(
                "INSERT INTO project_activations (certificate_id, project_id, org_id)
                 SELECT id, $2, org_id FROM certificates WHERE org_id = $1 AND id IN ({id_list})
                 ON CONFLICT DO NOTHING"
            ),
            Scope::Project(_) => format!(
                "DELETE FROM project_activations WHERE org_id = $1 AND project_id = $2 AND certificate_id IN ({id_list})"
            ),
        };
        in_transaction!(self, |tx| {
            lock_organization(&mut tx, org).await?;
            let mut archived_project = false;
            if let Scope::Project(project) = scope {
                if project_archived_at(&mut tx, org, project).await?.is_some() {
                    if activate {
                        return Err(DomainError::ProjectArchived(project.clone()).into());
                    }
                    archived_project = true;
                }
            }
            let mut q = sqlx::query(&select).bind(org);
            for id in ids.as_slice() {
                q = q.bind(id);
            }
            let mut found: std::collections::HashMap<String, Certificate> =
                std::collections::HashMap::with_capacity(n);
            for row in q.fetch_all(&mut *tx).await? {
                let cert = certificate_from_row(&row, false)?;
                found.insert(cert.id.clone(), cert);
            }
            // All or nothing: the first unknown id (in request order) refuses the whole call.
            let mut items = Vec::with_capacity(n);
            for id in ids.as_slice() {
                let certificate = found
                    .remove(id)
                    .ok_or_else(|| DomainError::UnknownToggleId(id.clone()))?;
                items.push(ScopedCertificate {
                    certificate,
                    active: activate,
                });
            }
            if archived_project {
                // An archived project has no activations left: deactivating is a no-op.
                return Ok(items);
            }
            let mut q = match scope {
                Scope::Organization => sqlx::query(&change).bind(org).bind(i64::from(activate)),
                Scope::Project(p) => sqlx::query(&change).bind(org).bind(p),
            };
            for id in ids.as_slice() {
                q = q.bind(id);
            }
            if q.execute(&mut *tx).await?.rows_affected() > 0 {
                self.bump_trust_generation(&mut tx).await?;
            }
            Ok(items)
        })
    }

    /// The organization's certificates; `active` is the organization-level flag.
    pub async fn list_certificates(
        &self,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<ScopedCertificate>> {
        self.certificate_page(org, None, page).await
    }

    /// Every certificate of the organization; `active` means active for `project`.
    pub async fn list_project_certificates(
        &self,
        org: &str,
        project: &str,
        page: &PageRequest,
    ) -> Result<Page<ScopedCertificate>> {
        let mut conn = self.pool.acquire().await?;
        project_archived_at(&mut conn, org, project).await?;
        drop(conn);
        self.certificate_page(org, Some(project), page).await
    }

    async fn certificate_page(
        &self,
        org: &str,
        project: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ScopedCertificate>> {
        let cursor = self.certificate_cursor(org, page.after.as_deref()).await?;
        let (cmp, dir) = order_sql(page.order);
        // Parameters: $1 org, $2 limit, then the project (if any), then the cursor (if any).
        let (active, join, next) = match project {
            None => ("c.active_org", "", 3),
            Some(_) => (
                "CAST(CASE WHEN pa.project_id IS NULL THEN 0 ELSE 1 END AS BIGINT)",
                "LEFT JOIN project_activations pa ON pa.certificate_id = c.id AND pa.project_id = $3",
                4,
            ),
        };
        let cursor_sql = match cursor {
            Some(_) => format!("AND (c.created_at, c.seq) {cmp} (${next}, ${})", next + 1),
            None => String::new(),
        };
        let sql = format!(
            "SELECT c.id, c.name, c.created_at, c.valid_at, c.expires_at, {active} AS active
             FROM certificates c {join}
             WHERE c.org_id = $1 AND c.deleted_at IS NULL {cursor_sql}
             ORDER BY c.created_at {dir}, c.seq {dir} LIMIT $2"
        );
        self.fetch_certificate_page(&sql, org, project, page, cursor)
            .await
    }

    async fn fetch_certificate_page(
        &self,
        sql: &str,
        org: &str,
        project: Option<&str>,
        page: &PageRequest,
        cursor: Option<(i64, i64)>,
    ) -> Result<Page<ScopedCertificate>> {
        let limit = i64::from(page.limit.get());
        let mut q = sqlx::query(sql).bind(org).bind(limit + 1);
        if let Some(p) = project {
            q = q.bind(p);
        }
        if let Some((at, seq)) = cursor {
            q = q.bind(at).bind(seq);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let has_more = rows.len() as i64 > limit;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(|row| {
                Ok(ScopedCertificate {
                    certificate: certificate_from_row(row, false)?,
                    active: row.try_get::<i64, _>("active")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Page { items, has_more })
    }

    /// Position of a cursor id, deleted or not; unknown ids are refused.
    async fn certificate_cursor(
        &self,
        org: &str,
        after: Option<&str>,
    ) -> Result<Option<(i64, i64)>> {
        let Some(after) = after else { return Ok(None) };
        if !domain::plausible_id(after) {
            return Err(unknown_cursor(after).into());
        }
        let row =
            sqlx::query("SELECT created_at, seq FROM certificates WHERE id = $1 AND org_id = $2")
                .bind(after)
                .bind(org)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok(Some((row.try_get("created_at")?, row.try_get("seq")?))),
            None => Err(unknown_cursor(after).into()),
        }
    }

    // ---------------------------------------------------------------- projects

    pub async fn create_project(
        &self,
        org: &str,
        name: &str,
        external_key_id: Option<String>,
        residency: Option<String>,
    ) -> Result<Project> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(&mut tx, org).await?;
            let project = Project {
                id: domain::new_id("proj_"),
                name: name.to_owned(),
                created_at: now,
                archived_at: None,
                external_key_id: external_key_id.clone(),
                residency: residency.clone(),
            };
            sqlx::query(
                "INSERT INTO projects (id, org_id, name, created_at, seq, archived_at, external_key_id, residency)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7)",
            )
            .bind(&project.id)
            .bind(org)
            .bind(&project.name)
            .bind(now)
            .bind(seq)
            .bind(project.external_key_id.clone())
            .bind(project.residency.clone())
            .execute(&mut *tx)
            .await?;
            Ok(project)
        })
    }

    pub async fn get_project(&self, org: &str, id: &str) -> Result<Project> {
        if !domain::plausible_id(id) {
            return Err(DomainError::project_not_found(id).into());
        }
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND org_id = $2");
        match sqlx::query(&sql)
            .bind(id)
            .bind(org)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => Ok(project_from_row(&row)?),
            None => Err(DomainError::project_not_found(id).into()),
        }
    }

    /// Changes name and/or external key id; archived projects cannot be changed.
    pub async fn update_project(
        &self,
        org: &str,
        id: &str,
        name: Option<String>,
        external_key_id: Option<Option<String>>,
    ) -> Result<Project> {
        let select = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        in_transaction!(self, |tx| {
            lock_organization(&mut tx, org).await?;
            if project_archived_at(&mut tx, org, id).await?.is_some() {
                return Err(DomainError::ProjectArchived(id.to_owned()).into());
            }
            if let Some(name) = &name {
                sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(ext) = &external_key_id {
                sqlx::query("UPDATE projects SET external_key_id = $1 WHERE id = $2")
                    .bind(ext.clone())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(project_from_row(
                &sqlx::query(&select).bind(id).fetch_one(&mut *tx).await?,
            )?)
        })
    }

    /// Archives a project (idempotent) and ends its certificate activations.
    pub async fn archive_project(&self, org: &str, id: &str) -> Result<Project> {
        let now = self.now();
        let select = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1");
        in_transaction!(self, |tx| {
            lock_organization(&mut tx, org).await?;
            if project_archived_at(&mut tx, org, id).await?.is_none() {
                sqlx::query("UPDATE projects SET archived_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let ended = sqlx::query("DELETE FROM project_activations WHERE project_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if ended.rows_affected() > 0 {
                    self.bump_trust_generation(&mut tx).await?;
                }
            }
            Ok(project_from_row(
                &sqlx::query(&select).bind(id).fetch_one(&mut *tx).await?,
            )?)
        })
    }

    /// Projects in creation order (oldest first), as OpenAI lists them.
    pub async fn list_projects(
        &self,
        org: &str,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<Project>> {
        let cursor = match page.after.as_deref() {
            None => None,
            Some(after) if !domain::plausible_id(after) => return Err(unknown_cursor(after).into()),
            Some(after) => {
                let row = sqlx::query(
                    "SELECT created_at, seq FROM projects WHERE id = $1 AND org_id = $2",
                )
                .bind(after)
                .bind(org)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| unknown_cursor(after))?;
                Some((
                    row.try_get::<i64, _>("created_at")?,
                    row.try_get::<i64, _>("seq")?,
                ))
            }
        };
        let (cmp, dir) = order_sql(page.order);
        let archived_sql = if include_archived {
            ""
        } else {
            "AND archived_at IS NULL"
        };
        let cursor_sql = if cursor.is_some() {
            format!("AND (created_at, seq) {cmp} ($3, $4)")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 {archived_sql} {cursor_sql}
             ORDER BY created_at {dir}, seq {dir} LIMIT $2"
        );
        let limit = i64::from(page.limit.get());
        let mut q = sqlx::query(&sql).bind(org).bind(limit + 1);
        if let Some((at, seq)) = cursor {
            q = q.bind(at).bind(seq);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let has_more = rows.len() as i64 > limit;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(project_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, has_more })
    }

    // ---------------------------------------------------------------- trust state

    /// The generation gateways watch; it moves with every change of who may connect.
    pub async fn trust_generation(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT generation FROM trust_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get("generation")?,
        )
    }

    /// The active anchors of every organization. The generation is read first, so a snapshot
    /// is never labelled newer than what it holds.
    pub async fn trust_snapshot(&self) -> Result<TrustSnapshot> {
        let generation = self.trust_generation().await?;
        let rows = sqlx::query(
            "SELECT c.id, c.org_id, c.active_org, c.content, c.valid_at, c.expires_at FROM certificates c
             WHERE c.deleted_at IS NULL
               AND (c.active_org <> 0 OR c.id IN (SELECT certificate_id FROM project_activations))",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut anchors = Vec::with_capacity(rows.len());
        let mut index = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            index.insert(row.try_get::<String, _>("id")?, anchors.len());
            anchors.push(TrustAnchor {
                certificate_id: row.try_get("id")?,
                org_id: row.try_get("org_id")?,
                org_wide: row.try_get::<i64, _>("active_org")? != 0,
                projects: Vec::new(),
                pem: row.try_get("content")?,
                valid_at: row.try_get("valid_at")?,
                expires_at: row.try_get("expires_at")?,
            });
        }
        for row in sqlx::query("SELECT certificate_id, project_id FROM project_activations")
            .fetch_all(&self.pool)
            .await?
        {
            if let Some(&i) = index.get(&row.try_get::<String, _>("certificate_id")?) {
                anchors[i].projects.push(row.try_get("project_id")?);
            }
        }
        let organizations = sqlx::query("SELECT id FROM organizations")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        Ok(TrustSnapshot {
            generation,
            anchors,
            organizations,
        })
    }

    /// On PostgreSQL, a receiver woken (its value bumped) whenever a trust-changing write
    /// commits anywhere, via LISTEN/NOTIFY; it reconnects by itself. `None` on SQLite, where
    /// watchers poll [`Store::trust_generation`], which is cheap.
    pub fn listen_trust_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let url = self.url.clone();
        tokio::spawn(async move {
            let mut wakes = 0u64;
            loop {
                let listened = async {
                    let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                    listener.listen("certgate_trust").await?;
                    // (Re)connected: changes may have been missed, so wake once.
                    wakes += 1;
                    let _ = tx.send(wakes);
                    loop {
                        listener.recv().await?;
                        wakes += 1;
                        if tx.send(wakes).is_err() {
                            return Ok::<(), sqlx::Error>(());
                        }
                    }
                }
                .await;
                if tx.is_closed() {
                    return;
                }
                if let Err(e) = listened {
                    tracing::warn!(error = %e, "trust change listener lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Some(rx)
    }

    async fn bump_trust_generation(&self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        let generation: i64 = sqlx::query(
            "UPDATE trust_state SET generation = generation + 1 WHERE id = 1 RETURNING generation",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("generation")?;
        if self.backend == Backend::Postgres {
            // Delivered on commit, to every listening gateway.
            tx.execute(format!("NOTIFY certgate_trust, '{generation}'").as_str())
                .await?;
        }
        Ok(())
    }
}

fn order_sql(order: Order) -> (&'static str, &'static str) {
    match order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    }
}

fn unknown_cursor(after: &str) -> DomainError {
    let shown: String = after.chars().take(80).collect();
    DomainError::invalid(
        "after",
        format!("Invalid 'after': '{shown}' is not an id returned by this list."),
    )
}

/// Locks the organization's row for the rest of the transaction and returns the next value of
/// its sequence (used to order objects created in the same second).
async fn lock_organization(tx: &mut sqlx::AnyConnection, org: &str) -> Result<i64> {
    let row = sqlx::query("UPDATE organizations SET seq = seq + 1 WHERE id = $1 RETURNING seq")
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        Some(row) => Ok(row.try_get("seq")?),
        None => Err(StoreError::Internal(format!("organization {org} vanished"))),
    }
}

/// The project's `archived_at`, or 404 if the organization has no such project.
async fn project_archived_at(
    conn: &mut sqlx::AnyConnection,
    org: &str,
    project: &str,
) -> Result<Option<i64>> {
    if !domain::plausible_id(project) {
        return Err(DomainError::project_not_found(project).into());
    }
    let row = sqlx::query("SELECT archived_at FROM projects WHERE id = $1 AND org_id = $2")
        .bind(project)
        .bind(org)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DomainError::project_not_found(project))?;
    Ok(row.try_get("archived_at")?)
}

async fn insert_organization(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    now: i64,
) -> Result<(Organization, NewAdminKey)> {
    let org = Organization {
        id: domain::new_id("org-"),
        name: name.to_owned(),
        created_at: now,
    };
    sqlx::query("INSERT INTO organizations (id, name, created_at, seq) VALUES ($1, $2, $3, 0)")
        .bind(&org.id)
        .bind(&org.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let value = domain::new_admin_key_value();
    let key = NewAdminKey {
        id: domain::new_id("key_"),
        name: "Initial admin key".to_owned(),
        redacted_value: domain::redact_admin_key(&value),
        value,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO admin_keys (id, org_id, name, key_sha256, redacted, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(&org.id)
    .bind(&key.name)
    .bind(domain::admin_key_digest(&key.value))
    .bind(&key.redacted_value)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok((org, key))
}
