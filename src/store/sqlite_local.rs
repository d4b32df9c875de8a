//! What only an embedded SQLite database needs: an in-process writer queue, and a cheap
//! "has anything been committed since?" signal that lets verified admin keys be reused.

use std::sync::{Arc, Mutex, OnceLock};

use super::Authenticated;

/// Per-process state of a SQLite store.
pub(super) struct SqliteLocal {
    /// The writer queue: one writing transaction at a time in this process, in arrival
    /// order, those queued together committed together ([`super::group_commit`]). SQLite
    /// allows one writer anyway; queueing here instead of in SQLite's busy handler (which
    /// sleeps and retries, unfairly) keeps write latency even. Other processes on the same
    /// file still wait in the busy handler.
    pub(super) writes: Arc<tokio::sync::Mutex<super::group_commit::Batch>>,
    /// The thread that runs the writes decided from rows read in their own transaction
    /// (toggles), taking its turns in `writes`; started once the database file exists.
    pub(super) writer: OnceLock<super::sqlite_writer::SqliteWriter>,
    /// Opened once the database file exists (after migrations).
    pub(super) changes: OnceLock<Arc<ChangeDetector>>,
    pub(super) keys: KeyCache,
    /// Change marker reads in flight, shared by the requests that arrive together.
    pub(super) markers: Arc<super::coalesce::Coalescer<(), Option<Marker>>>,
}

impl SqliteLocal {
    pub(super) fn new() -> Self {
        SqliteLocal {
            writes: Arc::default(),
            writer: OnceLock::new(),
            changes: OnceLock::new(),
            keys: KeyCache::new(),
            markers: Arc::default(),
        }
    }
}

/// The file of a `sqlite:` URL; `None` for an in-memory database.
pub(super) fn file_path(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// Dedicated read-only connections whose `PRAGMA data_version` changes whenever any other
/// connection, in this process or another, commits to the file. Reading it costs about a
/// microsecond, against tens for a query through the pool, so "has anything changed since?"
/// is cheap to ask on every request. `data_version` values are per connection, so a marker is
/// (connection, value); threads prefer a connection of their own to avoid contending.
///
/// The calls block (a mutex and a SQLite call), so callers run them on the blocking pool.
pub(super) struct ChangeDetector(Vec<Mutex<rusqlite::Connection>>);

/// (detector connection, its `data_version`): equal markers mean nothing was committed between.
pub(super) type Marker = (usize, i64);

impl ChangeDetector {
    const CONNECTIONS: usize = 4;

    /// `None` for an in-memory database or when the file cannot be opened (then every
    /// request queries, which is correct, only slower).
    pub(super) fn open(url: &str) -> Option<ChangeDetector> {
        let path = file_path(url)?;
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conns = (0..Self::CONNECTIONS)
            .map(|_| rusqlite::Connection::open_with_flags(path, flags).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>();
        match conns {
            Ok(conns) => Some(ChangeDetector(conns)),
            Err(e) => {
                tracing::warn!(error = %e, "no SQLite change detector; every request will query");
                None
            }
        }
    }

    /// Blocking: run it on the blocking pool.
    pub(super) fn marker(&self) -> Option<Marker> {
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
            .unwrap_or_else(|| {
                (
                    own,
                    self.0[own]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                )
            });
        let mut stmt = conn.prepare_cached("PRAGMA data_version").ok()?;
        let version = stmt.query_row([], |row| row.get(0)).ok()?;
        Some((i, version))
    }
}

/// Admin keys verified while the database stood at a given change marker. An entry is used
/// only while the marker is unchanged, i.e. while nothing at all was committed since the key
/// (and its organization's write sequence) was read. Entries are per (key, detector
/// connection), since markers of different connections are not comparable. Bounded, with
/// eviction.
pub(super) struct KeyCache(quick_cache::sync::Cache<(String, usize), (i64, Authenticated)>);

impl KeyCache {
    const CAPACITY: usize = 4096;

    fn new() -> Self {
        KeyCache(quick_cache::sync::Cache::new(Self::CAPACITY))
    }

    pub(super) fn get(&self, digest: &str, (conn, version): Marker) -> Option<Authenticated> {
        match self.0.get(&(digest.to_owned(), conn)) {
            Some((v, who)) if v == version => Some(who),
            _ => None,
        }
    }

    pub(super) fn put(&self, digest: String, (conn, version): Marker, who: Authenticated) {
        self.0.insert((digest, conn), (version, who));
    }
}
