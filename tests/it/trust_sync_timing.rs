//! Incremental trust sync in time (spec §13.3, issue 27), on both backends: the change
//! retention and the reconcile interval from both sides, and a change waking the watcher
//! before its poll. The index's equality with a full build is `trust_sync`'s.

use std::time::Duration;

use certgate::domain::{Actor, OrgId};
use certgate::gateway::reload::TrustState;

use crate::helpers::{backend_tests, TestApp};
use crate::trust_sync::{fresh, watcher};

backend_tests!(
    a_change_wakes_the_watcher_before_its_poll,
    a_file_wake_up_comes_once_the_commit_can_be_read,
    a_watcher_behind_by_the_retention_reads_changes_and_one_second_more_reads_all,
    a_reconcile_comes_after_its_interval_and_not_before,
);

/// `serve --trust-change-retention` (what it sets: [`Store::set_trust_change_retention`]) on
/// both sides. Two watchers cut off from the database after the same load: the one that comes
/// back when the first change it missed is exactly the retention old catches up with the
/// changes alone; the one that comes back a second later finds that record pruned and reads
/// the full state, once.
async fn a_watcher_behind_by_the_retention_reads_changes_and_one_second_more_reads_all(
    app: TestApp,
) {
    let org = OrgId::parse(&app.org_id).unwrap();
    let sys = &Actor::System;
    app.store
        .set_trust_change_retention(Duration::from_secs(30));
    let inside = watcher(&app.store).await;
    let outside = watcher(&app.store).await;
    // The first change both miss, then 30 s of partition and another write (which prunes).
    app.store
        .create_project(&org, "missed", None, None, sys)
        .await
        .unwrap();
    app.clock.advance(30);
    app.store
        .create_project(&org, "at the retention", None, None, sys)
        .await
        .unwrap();
    inside.refresh(&app.store, false).await.unwrap();
    let stats = inside.sync_stats();
    assert_eq!(
        (stats.full_reads, stats.gaps, stats.change_reads),
        (1, 0, 1),
        "behind by exactly the retention: changes only; {stats:?}"
    );
    assert_eq!(inside.index().view(), fresh(&app.store).await);
    // One second more: the first missed record is past the retention and pruned.
    app.clock.advance(1);
    app.store
        .create_project(&org, "past the retention", None, None, sys)
        .await
        .unwrap();
    outside.refresh(&app.store, false).await.unwrap();
    let stats = outside.sync_stats();
    assert_eq!(
        (stats.full_reads, stats.gaps),
        (2, 1),
        "behind by the retention and a second: one full read; {stats:?}"
    );
    assert_eq!(outside.index().view(), fresh(&app.store).await);
    // The watcher that came back in time still needs only the changes.
    inside.refresh(&app.store, false).await.unwrap();
    let stats = inside.sync_stats();
    assert_eq!((stats.full_reads, stats.gaps), (1, 0), "{stats:?}");
    assert_eq!(inside.index().view(), outside.index().view());
}

/// `--reconcile-interval` on both sides, on the watcher `certgate gateway` runs: with a 2 s
/// interval the full reads come, the first no sooner than 2 s after the start and the second
/// no sooner than 4 s (each observed when its index swaps in, which is after it happened, so
/// an early one cannot hide); changes between them are read as changes; a watcher beside it
/// with the default interval reads in full only at its start. Waits for conditions; asserts
/// only lower bounds on time.
async fn a_reconcile_comes_after_its_interval_and_not_before(app: TestApp) {
    use certgate::gateway::reload::{spawn_watcher, WatchIntervals};
    let interval = Duration::from_secs(2);
    let short = WatchIntervals {
        poll: Duration::from_millis(50),
        reconcile: interval,
    };
    let long = WatchIntervals {
        reconcile: certgate::gateway::reload::DEFAULT_RECONCILE,
        ..short
    };
    let org = OrgId::parse(&app.org_id).unwrap();
    let started = std::time::Instant::now();
    let state = TrustState::new();
    let mut swapped = state.changes();
    let watcher = spawn_watcher(state.clone(), app.store.clone(), short).await;
    let steady = TrustState::new();
    let steady_watcher = spawn_watcher(steady.clone(), app.store.clone(), long).await;
    assert_eq!(state.sync_stats().full_reads, 1);
    // When each full read was first seen.
    let mut full_seen = vec![started];
    let mut writes = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while full_seen.len() < 3 {
            // A change now and then, which must go by change reads.
            if writes < 6 {
                app.store
                    .create_project(&org, &format!("p{writes}"), None, None, &Actor::System)
                    .await
                    .unwrap();
                writes += 1;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), swapped.changed()).await;
            let full_reads = state.sync_stats().full_reads;
            let seen = std::time::Instant::now();
            while full_seen.len() < usize::try_from(full_reads).unwrap() {
                full_seen.push(seen);
            }
        }
    })
    .await
    .expect("two reconciles within 60 s of a 2 s interval");
    for (n, seen) in full_seen.iter().enumerate().skip(1) {
        let earliest = started + interval * u32::try_from(n).unwrap();
        assert!(
            *seen >= earliest,
            "full read {n} came {:?} after the start, before {:?}",
            seen.duration_since(started),
            interval * u32::try_from(n).unwrap()
        );
    }
    let counts = state.sync_stats();
    assert!(counts.change_reads >= 1, "{counts:?}");
    assert_eq!(counts.reconcile_repairs, 0);
    // Every change reached the watcher with the default interval, and only as changes.
    let generation = app.store.trust_generation().await.unwrap();
    let mut steady_swapped = steady.changes();
    tokio::time::timeout(Duration::from_secs(10), async {
        while *steady_swapped.borrow_and_update() < Some(generation) {
            steady_swapped.changed().await.unwrap();
        }
    })
    .await
    .expect("the last change within 10 s");
    let counts = steady.sync_stats();
    assert_eq!(counts.full_reads, 1, "{counts:?}");
    assert!(counts.change_reads >= 1, "{counts:?}");
    watcher.abort();
    steady_watcher.abort();
}

/// With a poll of a minute, a change still reaches the watcher at once: the file system wakes
/// it on SQLite (decisions.md D53), LISTEN/NOTIFY on PostgreSQL.
async fn a_change_wakes_the_watcher_before_its_poll(app: TestApp) {
    use certgate::gateway::reload::{spawn_watcher, WatchIntervals};
    let state = TrustState::new();
    let intervals = WatchIntervals {
        poll: Duration::from_secs(60),
        reconcile: Duration::from_secs(600),
    };
    let watcher = spawn_watcher(state.clone(), app.store.clone(), intervals).await;
    let mut swapped = state.changes();
    let org = OrgId::parse(&app.org_id).unwrap();
    for round in 0..3 {
        // Let the watcher settle into its wait (and the PostgreSQL listener connect).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        app.store
            .create_project(&org, &format!("w{round}"), None, None, &Actor::System)
            .await
            .unwrap();
        let generation = app.store.trust_generation().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while *swapped.borrow_and_update() < Some(generation) {
                swapped.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: not seen within 5 s (the poll is 60 s)"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(state.sync_stats().full_reads, 1);
    watcher.abort();
}

/// SQLite (decisions.md D84): the file wake-up comes when a commit can be read, not when its
/// frames are written. Another connection (as another process would) writes frames to the
/// `-wal` file without committing (a transaction larger than its page cache spills them);
/// no wake-up comes while it stays open, however long; once it commits, the wake-up comes and
/// a read begun then sees the commit. On PostgreSQL there are no files to watch.
async fn a_file_wake_up_comes_once_the_commit_can_be_read(app: TestApp) {
    let Some((mut woken, on_commit)) = app.store.watch_database_files() else {
        assert!(
            app.db.url.starts_with("postgres"),
            "SQLite files are watched"
        );
        return;
    };
    assert!(on_commit, "the WAL-index header is readable");
    let path = app
        .db
        .url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let wal = format!("{path}-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch("PRAGMA cache_size = 16; CREATE TABLE spill (x BLOB)")
        .unwrap();
    // That commit's wake-up, out of the way.
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken by the table's creation")
        .unwrap();
    woken.borrow_and_update();
    writer
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO spill VALUES (zeroblob(2000000))")
        .unwrap();
    let before = wal_size();
    // More than the page cache holds: frames reach the -wal file before any commit.
    writer
        .execute("INSERT INTO spill VALUES (zeroblob(2000000))", [])
        .unwrap();
    assert!(wal_size() > before, "the open transaction wrote frames");
    // Longer than the wake-up thread watches after a write.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !woken.has_changed().unwrap(),
        "woken by frames no reader can see yet"
    );
    writer.execute_batch("COMMIT").unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken once the commit is visible")
        .unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM spill", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}
