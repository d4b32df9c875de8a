//! SQLite: a wake-up whenever a commit to the database becomes visible, from any process
//! (spec §13.3, decisions.md D53, D84). inotify on the database's directory (the `notify`
//! crate) says when its files are written: a commit appends its frames to the `-wal` file, a
//! checkpoint writes the database file. Those writes come before the commit is visible (with
//! `synchronous = FULL` the WAL is synced in between), so a wake-up on the write alone would
//! make the watcher look too early and then back off. Instead a thread of its own, on each
//! write, watches the WAL-index header (one `pread`, [`ChangeDetector::wal_index_marker`]) at
//! short intervals and wakes the watcher once it moves: when the commit can be read. The poll
//! stays: a wake-up may be missed (a full inotify queue, a file system without inotify), and
//! it is only ever a hint to look.

use std::ffi::OsString;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use super::connect::Target;
use super::sqlite_local::{ChangeDetector, Marker};
use super::{Backend, Store};

/// After a write, how often the WAL-index header is read while the commit is not visible yet:
/// finely at first (a WAL sync takes a fraction of a millisecond to a few), then coarser.
const FINE_STEP: Duration = Duration::from_micros(200);
const FINE_FOR: Duration = Duration::from_millis(10);
const COARSE_STEP: Duration = Duration::from_millis(1);
/// After a write, how long the header is watched; past this (a write that commits nothing
/// new, such as a checkpoint, or a transaction still open or very slow to sync) the wake-up
/// is left to the poll, which looks anyway.
const WATCH_FOR: Duration = Duration::from_millis(100);

impl Store {
    /// On a SQLite file, a receiver woken (its value bumped) whenever a commit to the
    /// database becomes visible, by any process; it stops once the receiver is dropped. `None`
    /// on PostgreSQL ([`Store::listen_trust_changes`] does this there), for an in-memory
    /// database, or when the directory cannot be watched (logged; the poll still works). When
    /// the WAL-index header cannot be read, it wakes on every write instead, which may come
    /// before its commit can be read: the `bool` beside the receiver is then false, and the
    /// caller should look again shortly after finding nothing.
    pub fn watch_database_files(&self) -> Option<(tokio::sync::watch::Receiver<u64>, bool)> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let Ok(Target::Sqlite(Some(path))) = Target::parse(&self.url) else {
            return None;
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        let dir = path.parent()?.to_path_buf();
        let name = path.file_name()?.to_os_string();
        let mut wal = name.clone();
        wal.push("-wal");
        let files: [OsString; 2] = [name, wal];
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let (written_tx, written_rx) = mpsc::channel::<Instant>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let written = matches!(
                event.kind,
                EventKind::Modify(_) | EventKind::Create(_) | EventKind::Any
            );
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|f| files.iter().any(|n| n == f)));
            if written && ours {
                let _ = written_tx.send(Instant::now());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the database's directory; trust changes are noticed by the poll alone");
                return None;
            }
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the database's directory; trust changes are noticed by the poll alone");
            return None;
        }
        let detector = ChangeDetector::open(&self.url);
        let on_commit = detector
            .as_ref()
            .and_then(ChangeDetector::wal_index_marker)
            .is_some();
        let spawned = std::thread::Builder::new()
            .name("certgate-sqlite-wake".into())
            .spawn(move || {
                // The inotify watch lives as long as this thread: until the receiver is gone.
                let _watcher = watcher;
                let marker = || detector.as_ref().and_then(ChangeDetector::wal_index_marker);
                wake_on_commits(marker, &written_rx, &tx);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the database wake-up thread; trust changes are noticed by the poll alone");
            return None;
        }
        Some((rx, on_commit))
    }
}
/// Until `tx` has no receiver: on each write reported on `written` (when it was seen), waits
/// for the WAL-index header (`marker`) to move (see the module's comment) and bumps `tx`.
/// Without a readable header, bumps on every write.
///
/// A write reported while a commit was being waited for may be the next commit's: SQLite lets
/// the next writer append only once the previous commit is visible, so a write seen after the
/// last read that found the header unmoved may belong to a commit after the one just seen, and
/// gets a watch of its own. Writes seen before that read came before the commit just seen and
/// need no further look. (Dropping them all once a commit was seen missed about one wake-up
/// in 200 at 20 commits a second, left to the poll.)
fn wake_on_commits(
    marker: impl Fn() -> Option<Marker>,
    written: &mpsc::Receiver<Instant>,
    tx: &tokio::sync::watch::Sender<u64>,
) {
    // When the header was last read and found at `last` (the read's start).
    let mut last_read = Instant::now();
    let mut last = marker();
    let mut pending = false;
    loop {
        if !pending {
            // Woken now and then without writes, to notice that the receiver is gone.
            match written.recv_timeout(Duration::from_secs(1)) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if tx.is_closed() {
                        return;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        pending = false;
        if last.is_some() {
            let watched = await_commit(last, last_read, &marker);
            // Writes seen after the last read that found the header unmoved may be a later
            // commit's.
            while let Ok(seen) = written.try_recv() {
                pending |= seen >= watched.unmoved_since;
            }
            if watched.marker == last {
                // Nothing committed within the watch: no wake-up (the poll looks anyway).
                last_read = watched.unmoved_since;
                continue;
            }
            last = watched.marker;
            last_read = watched.read_at;
        } else {
            while written.try_recv().is_ok() {}
        }
        if tx.is_closed() {
            return;
        }
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What [`await_commit`] saw.
struct Watched {
    /// The last value read (the one it started from when the header never moved).
    marker: Option<Marker>,
    /// When the read that gave `marker` started.
    read_at: Instant,
    /// When the last read that still found the starting value started: every commit seen
    /// became visible after it.
    unmoved_since: Instant,
}

/// Reads the WAL-index header until it differs from `last` (last read at `last_read`) or
/// [`WATCH_FOR`] has passed.
fn await_commit(
    last: Option<Marker>,
    last_read: Instant,
    marker: &impl Fn() -> Option<Marker>,
) -> Watched {
    let started = Instant::now();
    let mut unmoved_since = last_read;
    loop {
        let read_at = Instant::now();
        // `None`: the header is being rewritten (its two copies differ); look again.
        match marker() {
            Some(now) if Some(now) != last => {
                return Watched {
                    marker: Some(now),
                    read_at,
                    unmoved_since,
                }
            }
            Some(_) => unmoved_since = read_at,
            None => {}
        }
        let elapsed = started.elapsed();
        if elapsed >= WATCH_FOR {
            return Watched {
                marker: last,
                read_at: unmoved_since,
                unmoved_since,
            };
        }
        std::thread::sleep(if elapsed < FINE_FOR {
            FINE_STEP
        } else {
            COARSE_STEP
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};
    use std::sync::Mutex;

    /// Two commits back to back: the second writer may write only once the first commit is
    /// visible, so its write is reported just as that commit is seen, before its wake-up is
    /// sent. Both commits wake the watcher.
    #[test]
    fn a_write_reported_as_a_commit_is_seen_gets_a_watch_of_its_own() {
        let (written_tx, written_rx) = mpsc::channel::<Instant>();
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let header = AtomicI64::new(0);
        let reads = AtomicUsize::new(0);
        let second_writer = Mutex::new(Some(written_tx.clone()));
        let marker = || {
            match reads.fetch_add(1, SeqCst) {
                // Read 0 is the thread's first look; reads 1-3 find the first commit not yet
                // visible; read 4 finds it, as the second writer's write is reported.
                4 => {
                    header.store(1, SeqCst);
                    let writer = second_writer.lock().unwrap().take().unwrap();
                    writer.send(Instant::now()).unwrap();
                }
                // The second commit, visible a few reads later.
                20 => header.store(2, SeqCst),
                _ => {}
            }
            Some(Marker::WalIndex(header.load(SeqCst)))
        };
        // The first commit's write; once every writer is gone, the loop returns.
        written_tx.send(Instant::now()).unwrap();
        drop(written_tx);
        wake_on_commits(marker, &written_rx, &tx);
        assert_eq!(*rx.borrow(), 2, "one wake-up per commit");
        assert!(reads.load(SeqCst) > 20, "the second commit was watched for");
    }
}
