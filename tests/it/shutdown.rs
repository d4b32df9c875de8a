//! SIGTERM on the `serve` binary, from both sides (decisions.md D35, D44): requests in
//! flight get the shutdown grace and no more, whatever blocking work is still running, and a
//! process with nothing in flight does not wait for stalled clients. (The gateway's are in
//! `gateway::shutdown`.)
//!
//! A request is held in flight the way it happens in production: another process holds
//! SQLite's write lock (a backup, a migration, `sqlite3` left open), so a toggle waits for it
//! on serve's SQLite writer thread, and the store cannot close while it does.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bounds::{assert_on_time, LATE};
use crate::client::Api;
use crate::helpers::{Db, TestApp, TestDb};
use crate::process::{Process, Server};

/// SQLite's write lock on `app`'s database, held by a connection of this process (as another
/// process would) until dropped.
fn hold_write_lock(app: &TestApp) -> rusqlite::Connection {
    let path = app.db.url.strip_prefix("sqlite://").expect("a SQLite file");
    let conn = rusqlite::Connection::open(path).expect("open the database");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    conn
}

/// `serve` on `app`'s database with `grace`, the database timeout far above it (a write
/// waits for the lock rather than failing) and the connection timeouts far apart from it.
async fn serve(app: &TestApp, grace: &str) -> Server {
    Process::serve(
        &app.db.url,
        &[
            "--shutdown-grace",
            grace,
            "--db-timeout",
            "60s",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
            "--no-bootstrap",
        ],
    )
    .await
}

/// Starts an activation of `id` through `api`; it waits for the write lock.
fn activation_in_flight(
    api: &Api,
    id: &str,
) -> tokio::task::JoinHandle<Result<crate::client::Answer, String>> {
    let (api, body) = (api.clone(), json!({"certificate_ids": [id]}));
    tokio::spawn(async move {
        api.try_post("/organization/certificates/activate", body)
            .await
    })
}

/// SIGTERM, then waits for the exit (off the async workers); how long it took.
async fn terminate(mut server: Server) -> Duration {
    tokio::task::spawn_blocking(move || server.process.terminate_and_wait())
        .await
        .unwrap()
}

/// A request in flight past the grace: the process exits at the grace, not before (the
/// request is given it) and not later than 1 s after, though the write is still waiting for
/// SQLite's lock on serve's writer thread (before, closing the store waited for that thread,
/// and dropping the runtime for the blocking task joining it: up to `--db-timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_serve_at_the_grace_though_blocking_work_runs() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let id = app.api.upload_new("Held").await;
    let server = serve(&app, "2s").await;
    let api = Api::new(server.addr, Some(&app.key));
    assert_eq!(api.get("/organization/certificates").await.status, 200);
    let lock = hold_write_lock(&app);
    let activation = activation_in_flight(&api, &id);
    // Long enough for the request to reach the writer thread.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = terminate(server).await;
    assert_on_time(
        "serve's exit with a write in flight",
        took,
        Duration::from_secs(2),
    );
    if let Ok(answer) = activation.await.unwrap() {
        panic!(
            "dropped at the grace, yet answered {}: {}",
            answer.status, answer.body
        );
    }
    drop(lock);
}

/// A request in flight that ends within the grace gets its answer, and the process exits once
/// it ended: not before, and not waiting out the rest of the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_within_the_grace() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let id = app.api.upload_new("Held").await;
    let server = serve(&app, "20s").await;
    let api = Api::new(server.addr, Some(&app.key));
    let lock = hold_write_lock(&app);
    let activation = activation_in_flight(&api, &id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exit = tokio::spawn(terminate(server));
    let release = Duration::from_secs(2);
    tokio::time::sleep(release).await;
    drop(lock);
    let answer = activation
        .await
        .unwrap()
        .expect("answered within the grace");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let took = exit.await.unwrap();
    assert_on_time("serve's exit once the request ended", took, release);
    let listed = app.api.get("/organization/certificates").await;
    assert_eq!(listed.ok()["data"][0]["active"], true, "{}", listed.body);
}

/// SIGTERM with a half-sent request head and an idle keep-alive connection open: nothing is
/// in flight, so the process exits at once, not after the grace (before this was fixed, one
/// such connection kept `serve` alive indefinitely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_stalled_clients() {
    let db = TestDb::new(Db::Sqlite).await.expect("SQLite");
    let server = Process::serve(
        &db.url,
        &[
            "--shutdown-grace",
            "20s",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
        ],
    )
    .await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let started = Instant::now();
    let took = terminate(server).await;
    assert!(
        took <= LATE,
        "exit took {took:?} with nothing in flight (grace 20 s; {:?} in all)",
        started.elapsed()
    );
}
