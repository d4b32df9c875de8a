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

/// "Has anything been committed since?", cheaply enough to ask on every request, for commits
/// from this process or any other on the same file.
///
/// First choice: the WAL-index header in the `-shm` file, read with one `pread` and no lock.
/// Every SQLite connection in WAL mode maps that file and, at each commit, rewrites its
/// header (<https://www.sqlite.org/walformat.html>, "The WAL-Index Header"), whose `iChange`
/// counts transactions. The header is written twice, the second copy first; readers begin
/// their transactions from it, so once the first copy shows a commit, any read transaction
/// begun afterwards sees that commit.
///
/// The file read must stay the one every process maps. SQLite unlinks the `-shm` (and `-wal`)
/// file only when a closing connection obtains an EXCLUSIVE lock on the database file
/// (`sqlite3WalClose`), and a connection that has read in WAL mode keeps a SHARED lock on it
/// until it closes (`pager_unlock` ends only the read transaction). So each of this
/// detector's connections reads once when opened: while the detector lives, no connection of
/// any process can delete the file, however many others close (the pool's idle connections,
/// the writer thread's). As a second guard, a header read from a file that is no longer
/// linked (deleted by hand, say) is not trusted.
///
/// Two copies that differ (a commit writing them), a header not yet initialised or of a
/// version this reader does not know, an unlinked file or no `-shm` file fall back to the
/// second choice: dedicated read-only connections whose `PRAGMA data_version` changes
/// whenever any other connection commits. A read takes SQLite's locks (a few microseconds,
/// and callers run it on the blocking pool); `data_version` values are per connection, so
/// such a marker is (connection, value), and threads prefer a connection of their own to
/// avoid contending.
pub(super) struct ChangeDetector {
    conns: Vec<Mutex<rusqlite::Connection>>,
    /// The database's `-shm` file, read-only.
    shm: Option<std::fs::File>,
}

/// Where the database stood when read: equal markers mean nothing was committed between.
/// Markers compare only with markers of the same source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    /// The WAL-index header's change counter: the same for every reader of the file.
    WalIndex(i64),
    /// `PRAGMA data_version` of one detector connection (its index): values are per
    /// connection.
    DataVersion { connection: usize, version: i64 },
}

impl Marker {
    /// What a marker compares with: `None` for the WAL-index header, else the connection.
    fn source(self) -> Option<usize> {
        match self {
            Marker::WalIndex(_) => None,
            Marker::DataVersion { connection, .. } => Some(connection),
        }
    }

    fn value(self) -> i64 {
        match self {
            Marker::WalIndex(value) | Marker::DataVersion { version: value, .. } => value,
        }
    }
}

/// The WAL-index format the header parser knows (`iVersion`, `WALINDEX_MAX_VERSION` in
/// SQLite's `wal.c`): a header of another version falls back to `data_version`.
const WAL_INDEX_VERSION: u32 = 3_007_000;

impl ChangeDetector {
    const CONNECTIONS: usize = 4;

    /// `None` for an in-memory database or when the file cannot be opened (then every
    /// request queries, which is correct, only slower).
    pub(super) fn open(url: &str) -> Option<ChangeDetector> {
        let path = file_path(url)?;
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conns = (0..Self::CONNECTIONS)
            .map(|_| {
                let conn = rusqlite::Connection::open_with_flags(path, flags)?;
                // A read: from now on the connection holds the WAL-mode SHARED lock that
                // keeps the `-shm` file in place (see above).
                conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<Vec<_>>>();
        // Opened after the connections: the first connection in WAL mode creates it.
        let shm = std::fs::File::open(format!("{path}-shm")).ok();
        match conns {
            Ok(conns) => Some(ChangeDetector { conns, shm }),
            Err(e) => {
                tracing::warn!(error = %e, "no SQLite change detector; every request will query");
                None
            }
        }
    }

    /// The marker from the WAL-index header, if it can be read (see [`ChangeDetector`]): one
    /// `pread` of a file SQLite keeps mapped and one `fstat`, so callers need not leave their
    /// thread for it.
    pub(super) fn wal_index_marker(&self) -> Option<Marker> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let shm = self.shm.as_ref()?;
        let mut both = [0u8; 96];
        shm.read_exact_at(&mut both, 0).ok()?;
        let value = header_marker(&both)?;
        // Checked after the read: a file still linked now was linked when it was read. An
        // unlinked one is no longer the file other processes map (they would create anew).
        if shm.metadata().ok()?.nlink() == 0 {
            return None;
        }
        Some(Marker::WalIndex(value))
    }

    /// The marker from `PRAGMA data_version`. Blocking: run it on the blocking pool.
    pub(super) fn data_version_marker(&self) -> Option<Marker> {
        thread_local! {
            static SLOT: usize = {
                static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            };
        }
        let own = SLOT.with(|s| *s) % self.conns.len();
        let (i, conn) = (0..self.conns.len())
            .map(|k| (own + k) % self.conns.len())
            .find_map(|i| self.conns[i].try_lock().ok().map(|c| (i, c)))
            .unwrap_or_else(|| {
                (
                    own,
                    self.conns[own]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                )
            });
        let mut stmt = conn.prepare_cached("PRAGMA data_version").ok()?;
        let version = stmt.query_row([], |row| row.get(0)).ok()?;
        Some(Marker::DataVersion {
            connection: i,
            version,
        })
    }
}

/// Admin keys verified while the database stood at a given change marker. An entry is used
/// only while the marker is unchanged, i.e. while nothing at all was committed since the key
/// (and its organization's write sequence) was read. Entries are per (key, marker source),
/// since markers of different sources are not comparable. Bounded, with eviction.
pub(super) struct KeyCache(quick_cache::sync::Cache<(String, Option<usize>), (i64, Authenticated)>);

impl KeyCache {
    const CAPACITY: usize = 4096;

    fn new() -> Self {
        KeyCache(quick_cache::sync::Cache::new(Self::CAPACITY))
    }

    pub(super) fn get(&self, digest: &str, marker: Marker) -> Option<Authenticated> {
        match self.0.get(&(digest.to_owned(), marker.source())) {
            Some((v, who)) if v == marker.value() => Some(who),
            _ => None,
        }
    }

    pub(super) fn put(&self, digest: String, marker: Marker, who: Authenticated) {
        self.0
            .insert((digest, marker.source()), (marker.value(), who));
    }
}

/// The value of a WAL-index header (both copies, 96 bytes): `None` unless the two copies agree,
/// the header is initialised and of the version this parser knows. Two copies of the 48-byte
/// header: iVersion (offset 0), unused, iChange (8), isInit (12), bigEndCksum, szPage,
/// mxFrame (16), nPage, frame checksums, salts, checksums; in the machine's byte order.
fn header_marker(both: &[u8; 96]) -> Option<i64> {
    let (first, second) = both.split_at(48);
    let word =
        |at: usize| u32::from_ne_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]]);
    if first != second || first[12] == 0 || word(0) != WAL_INDEX_VERSION {
        return None;
    }
    Some((i64::from(word(8)) << 32) | i64::from(word(16)))
}

#[cfg(test)]
mod tests {
    use super::{header_marker, ChangeDetector, Marker};

    fn writer(path: &std::path::Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            .unwrap();
        conn
    }

    #[test]
    fn the_wal_index_marker_moves_with_every_commit_from_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let one = writer(&path);
        let detector = ChangeDetector::open(&format!("sqlite://{}", path.display())).unwrap();
        let first = detector
            .wal_index_marker()
            .expect("read from the -shm file");
        assert!(matches!(first, Marker::WalIndex(_)), "{first:?}");
        assert_eq!(
            detector.wal_index_marker(),
            Some(first),
            "no commit, same marker"
        );

        one.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let second = detector.wal_index_marker().unwrap();
        assert_ne!(second, first, "a commit moves it");
        // Another connection (as another process would) and a commit after a checkpoint that
        // restarts the WAL from its start.
        let other = writer(&path);
        other.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let third = detector.wal_index_marker().unwrap();
        assert_ne!(third, second);
        other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let checkpointed = detector.wal_index_marker().unwrap();
        other.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let restarted = detector.wal_index_marker().unwrap();
        assert_ne!(restarted, checkpointed);
        assert_ne!(restarted, third);
        // A read commits nothing.
        let _: i64 = one
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(detector.wal_index_marker(), Some(restarted));
    }

    /// The way the marker would break: every connection but the detector's closed (the
    /// last to close deletes the `-shm` file unless a connection still holds WAL mode's
    /// SHARED lock), then a commit from a connection opened afterwards (another process).
    #[test]
    fn the_marker_moves_after_every_other_connection_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let shm = dir.path().join("db.sqlite-shm");
        let first = writer(&path);
        first.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let detector = ChangeDetector::open(&format!("sqlite://{}", path.display())).unwrap();
        let before = detector
            .wal_index_marker()
            .expect("read from the -shm file");
        drop(first);
        assert!(
            shm.exists(),
            "the detector's connections keep the -shm file when every other one closes"
        );
        assert_eq!(detector.wal_index_marker(), Some(before));

        let later = writer(&path);
        later.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(later);
        let after = detector
            .wal_index_marker()
            .expect("still read from the -shm file every process maps");
        assert_ne!(after, before, "a commit from a new connection moves it");
    }

    /// A `-shm` file deleted under the detector (by hand: SQLite does not while the detector
    /// lives) is no longer the one other processes map: its header is not trusted, and the
    /// data version answers instead.
    #[test]
    fn an_unlinked_wal_index_falls_back_to_the_data_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = writer(&path);
        let detector = ChangeDetector::open(&format!("sqlite://{}", path.display())).unwrap();
        assert!(detector.wal_index_marker().is_some());
        std::fs::remove_file(dir.path().join("db.sqlite-shm")).unwrap();
        assert_eq!(detector.wal_index_marker(), None, "an unlinked file");
        let before = detector.data_version_marker().unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_ne!(detector.data_version_marker(), Some(before));
    }

    #[test]
    fn only_a_known_agreeing_initialised_header_gives_a_marker() {
        let mut header = [0u8; 48];
        header[..4].copy_from_slice(&super::WAL_INDEX_VERSION.to_ne_bytes());
        header[8..12].copy_from_slice(&7u32.to_ne_bytes());
        header[12] = 1;
        header[16..20].copy_from_slice(&3u32.to_ne_bytes());
        let both = |first: &[u8; 48], second: &[u8; 48]| {
            let mut b = [0u8; 96];
            b[..48].copy_from_slice(first);
            b[48..].copy_from_slice(second);
            b
        };
        assert_eq!(header_marker(&both(&header, &header)), Some((7 << 32) | 3));
        let mut other = header;
        other[..4].copy_from_slice(&3_007_001u32.to_ne_bytes());
        assert_eq!(
            header_marker(&both(&other, &other)),
            None,
            "unknown version"
        );
        assert_eq!(header_marker(&both(&header, &other)), None, "copies differ");
        let mut uninit = header;
        uninit[12] = 0;
        assert_eq!(
            header_marker(&both(&uninit, &uninit)),
            None,
            "not initialised"
        );
    }

    #[test]
    fn without_a_wal_index_the_data_version_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t (x INTEGER)")
            .unwrap();
        let detector = ChangeDetector::open(&format!("sqlite://{}", path.display())).unwrap();
        assert_eq!(
            detector.wal_index_marker(),
            None,
            "no -shm file in rollback mode"
        );
        let before = detector.data_version_marker().unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_ne!(detector.data_version_marker(), Some(before));
    }
}
