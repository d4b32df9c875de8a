//! One deadline per request (decisions.md D44): the store operations a request
//! makes (the key check, then its read or write) together wait at most `--db-timeout` for the
//! database. Each operation alone is bounded too (tests in `group_commit` and `outage`); here
//! two operations in a row, each of which would fit its own timeout, must not add up.

use std::time::{Duration, Instant};

use certgate::store::{Store, StoreError, StoreOptions};

use crate::helpers::{Db, TestApp};

/// 2 s: one timeout (2 s) plus the margin (1 s) stays clear of the 3.2 s two deadlines give.
const TIMEOUT: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(1);
/// How long another connection keeps the first write waiting.
const FIRST_WAIT: Duration = Duration::from_millis(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operations_of_one_request_share_one_deadline() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("a SQLite file");
    let path = app
        .db
        .url
        .strip_prefix("sqlite://")
        .expect("a file URL")
        .to_owned();
    let mut options = StoreOptions::new(&app.db.url);
    options.timeout = TIMEOUT;
    let store = Store::open(&options, app.clock.clone()).await.unwrap();

    // Another connection holds SQLite's write lock for FIRST_WAIT, then, once told the first
    // write is done, takes it again and keeps it.
    let (first_done, first_done_rx) = std::sync::mpsc::channel::<()>();
    let (held_again, held_again_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(FIRST_WAIT);
        conn.execute_batch("ROLLBACK").unwrap();
        first_done_rx.recv().unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        held_again.send(()).unwrap();
        std::thread::sleep(TIMEOUT * 3);
        conn.execute_batch("ROLLBACK").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let (first, second) = store
        .one_deadline(Box::pin(async {
            let first = store.create_organization("First").await.map(drop);
            first_done.send(()).unwrap();
            held_again_rx.recv().unwrap();
            let second = store.create_organization("Second").await.map(drop);
            (first, second)
        }))
        .await;
    let took = started.elapsed();
    assert!(
        first.is_ok(),
        "the first write waited and went through: {first:?}"
    );
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "the second write ran out of the request's time: {second:?}"
    );
    assert!(
        took >= TIMEOUT.saturating_sub(Duration::from_millis(100)),
        "answered after {took:?}, before the request's deadline"
    );
    assert!(
        took <= TIMEOUT + MARGIN,
        "answered after {took:?}: the second write had a deadline of its own"
    );

    // Outside a request each operation has its whole timeout: the same wait alone succeeds.
    holder.join().unwrap();
    store.create_organization("Alone").await.unwrap();
    store.close().await;
}
