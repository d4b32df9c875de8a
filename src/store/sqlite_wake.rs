//! SQLite: a wake-up whenever the database's files are written (a commit appends to the
//! `-wal` file, a checkpoint writes the database file), through inotify on their directory
//! (the `notify` crate), so trust watchers need not wait for their poll (spec §13.3,
//! decisions.md D53). The poll stays: a wake-up may be missed (a full inotify queue, a
//! file system without inotify), and it is only ever a hint to look.

use std::ffi::OsString;
use std::sync::Arc;

use notify::{EventKind, RecursiveMode, Watcher};

use super::connect::Target;
use super::{Backend, Store};

impl Store {
    /// On a SQLite file, a receiver woken (its value bumped) whenever the database's files
    /// are written by any process; it stops once the receiver is dropped. `None` on
    /// PostgreSQL ([`Store::listen_trust_changes`] does this there), for an in-memory
    /// database, or when the directory cannot be watched (logged; the poll still works).
    pub fn watch_database_files(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
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
        let tx = Arc::new(tx);
        let wake = Arc::clone(&tx);
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
                wake.send_modify(|n| *n = n.wrapping_add(1));
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
        // The watcher lives until the receiver is dropped.
        tokio::spawn(async move {
            tx.closed().await;
            drop(watcher);
        });
        Some(rx)
    }
}
