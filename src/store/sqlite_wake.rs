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
        let (written_tx, written_rx) = mpsc::channel::<()>();
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
                let _ = written_tx.send(());
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
                wake_on_commits(detector.as_ref(), &written_rx, &tx);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the database wake-up thread; trust changes are noticed by the poll alone");
            return None;
        }
        Some((rx, on_commit))
    }
}
/// Until `tx` has no receiver: on each write reported on `written`, waits for the WAL-index
/// header to move (see the module's comment) and bumps `tx`. Without a readable header, bumps
/// on every write.
fn wake_on_commits(
    detector: Option<&ChangeDetector>,
    written: &mpsc::Receiver<()>,
    tx: &tokio::sync::watch::Sender<u64>,
) {
    let marker = || detector.and_then(ChangeDetector::wal_index_marker);
    let mut last = marker();
    loop {
        // Woken now and then without writes, to notice that the receiver is gone.
        match written.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if tx.is_closed() {
                    return;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last.is_some() {
            let seen = await_commit(last, &marker);
            if seen == last {
                // Nothing committed within the watch: no wake-up (the poll looks anyway).
                while written.try_recv().is_ok() {}
                continue;
            }
            last = seen;
        }
        if tx.is_closed() {
            return;
        }
        tx.send_modify(|n| *n = n.wrapping_add(1));
        // The writes reported so far came before the commit just seen: they need no
        // further look.
        while written.try_recv().is_ok() {}
    }
}

/// Reads the WAL-index header until it differs from `last` or [`WATCH_FOR`] has passed;
/// returns the last value read (`last` when it never moved or could not be read).
fn await_commit(last: Option<Marker>, marker: &impl Fn() -> Option<Marker>) -> Option<Marker> {
    let started = Instant::now();
    loop {
        // `None`: the header is being rewritten (its two copies differ); look again.
        if let Some(now) = marker() {
            if Some(now) != last {
                return Some(now);
            }
        }
        let elapsed = started.elapsed();
        if elapsed >= WATCH_FOR {
            return last;
        }
        std::thread::sleep(if elapsed < FINE_FOR {
            FINE_STEP
        } else {
            COARSE_STEP
        });
    }
}
