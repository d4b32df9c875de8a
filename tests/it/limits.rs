//! Bounds of `serve` (the gateway's are in `gateway::timeouts`): header and idle timeouts,
//! the connection cap, the database timeout while another process holds SQLite's write lock,
//! and private database files (decisions.md D35, D37). The shutdown grace is in `shutdown.rs`.

use std::time::{Duration, Instant};

use certgate::runtime::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bounds::{assert_closed_on_time, assert_open_until, LATE};
use crate::helpers::{serve_in_background, Db, TestApp};
use crate::process::Process;

/// Serves the Admin API of `app` again, on a listener of its own with `limits`.
async fn serve_with(app: &TestApp, limits: ConnectionLimits) -> std::net::SocketAddr {
    serve_store(app.store.clone(), limits).await
}

/// Serves the Admin API of `store` on a listener of its own with `limits`.
async fn serve_store(
    store: certgate::store::Store,
    limits: ConnectionLimits,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_in_background(
        listener,
        certgate::api::router(certgate::api::AppState::new(store)),
        limits,
    );
    addr
}

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// A short timeout and one far larger: whichever a test is about, the other cannot pass for it.
const SHORT: Duration = Duration::from_secs(1);
const FAR: Duration = Duration::from_secs(30);

/// Sends `REQUEST` and reads its `200` answer.
async fn exchange(conn: &mut TcpStream) {
    conn.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// Half a request head is closed at the header timeout, from both sides, though the idle
/// timeout is far larger (before, the idle timeout closed it); a silent connection and one
/// between requests are idle, not stalled: they outlive the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_closes_a_half_sent_head_at_the_header_timeout() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let limits = ConnectionLimits {
        header_timeout: SHORT,
        idle_timeout: FAR,
        ..ConnectionLimits::default()
    };
    let addr = serve_with(&app, limits).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut between = TcpStream::connect(addr).await.unwrap();
    exchange(&mut between).await;
    let since = Instant::now();

    let mut partial = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_closed_on_time("a half-sent head", &mut partial, started, SHORT).await;

    let until = SHORT * 2 + LATE;
    assert_open_until("a silent connection", &mut silent, since, until).await;
    assert_open_until("a connection between requests", &mut between, since, until).await;
    exchange(&mut silent).await;
    exchange(&mut between).await;
}

/// The header deadline runs from the head's first byte, not its last: a client that keeps
/// the head coming, a byte every 300 ms, is closed at the header timeout all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_closes_a_dripping_head_at_the_header_timeout() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let limits = ConnectionLimits {
        header_timeout: SHORT,
        idle_timeout: FAR,
        ..ConnectionLimits::default()
    };
    let addr = serve_with(&app, limits).await;
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    assert_closed_on_time("a head sent a byte every 300 ms", &mut read, started, SHORT).await;
    drip.abort();
}

/// Idle connections (nothing sent, or nothing since the last answer) close at the idle
/// timeout, from both sides, with the header timeout far larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_closes_idle_connections_at_the_idle_timeout() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let idle = Duration::from_secs(2);
    let limits = ConnectionLimits {
        header_timeout: FAR,
        idle_timeout: idle,
        ..ConnectionLimits::default()
    };
    let addr = serve_with(&app, limits).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_closed_on_time("a silent connection", &mut silent, started, idle).await;

    let mut kept = TcpStream::connect(addr).await.unwrap();
    exchange(&mut kept).await;
    let started = Instant::now();
    assert_closed_on_time("a connection after its answer", &mut kept, started, idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_wait() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let addr = serve_with(
        &app,
        ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(REQUEST).await.unwrap();
        let mut buf = [0u8; 1024];
        assert!(c.read(&mut buf).await.unwrap() > 0, "served");
        held.push(c);
    }
    // The third is accepted by the kernel (the backlog) but not served while both are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection is not served while two are open"
    );
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(30), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));
}

/// SQLite's write lock held by another process: writes answer 503 `database_unavailable` at
/// the database timeout, from both sides (decisions.md D1, D44), and write nothing; reads go on.
/// Uploads and projects (the group commit) together, then a toggle (the writer thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_kept_from_sqlite_answer_503_at_the_database_timeout() {
    let kept = KeptFromSqlite::start().await;
    let answers = kept.write_together(&["upload", "project"]).await;
    kept.assert_unavailable_on_time(answers);
    let answers = kept.write_together(&["toggle"]).await;
    kept.assert_unavailable_on_time(answers);
    kept.assert_nothing_written().await;
}

/// The same with toggles beside other writes or beside each other: a toggle can wait for the
/// group commit's turn, or for the writer thread to finish the batch before it, and then for
/// SQLite's lock, each up to the timeout (before issue 24 item 2: 4 s with a 2 s timeout, a
/// second deadline decisions.md D44 forbids); now one deadline covers every wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggles_kept_from_sqlite_have_one_deadline() {
    let kept = KeptFromSqlite::start().await;
    let answers = kept.write_together(&["upload", "toggle", "project"]).await;
    kept.assert_unavailable_on_time(answers);
    let answers = kept.write_together(&["toggle", "toggle", "toggle"]).await;
    kept.assert_unavailable_on_time(answers);
    kept.assert_nothing_written().await;
}

/// A serve with a 2 s database timeout on a SQLite file whose write lock another connection
/// holds, and an inactive certificate to toggle.
struct KeptFromSqlite {
    api: crate::client::Api,
    id: String,
    timeout: Duration,
    holder: rusqlite::Connection,
    _app: TestApp,
}

impl KeptFromSqlite {
    async fn start() -> KeptFromSqlite {
        let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
        let id = app.api.upload_new("Inactive").await;
        let timeout = Duration::from_secs(2);
        let mut options = certgate::store::StoreOptions::new(&app.db.url);
        options.timeout = timeout;
        let store = certgate::store::Store::open(&options, app.clock.clone())
            .await
            .unwrap();
        let addr = serve_store(store.clone(), ConnectionLimits::default()).await;
        let api = crate::client::Api::new(addr, Some(&app.key));
        // The key's first use on this serve is written at once: let that write land before
        // the lock is taken, so that only the writes below wait for it.
        api.get("/organization/certificates").await.ok();
        let started = Instant::now();
        while store.key_usage_writes() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "key use not written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let path = app.db.url.strip_prefix("sqlite://").unwrap();
        let holder = rusqlite::Connection::open(path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        KeptFromSqlite {
            api,
            id,
            timeout,
            holder,
            _app: app,
        }
    }

    /// Sends the named writes at once; each answer with how long it took.
    async fn write_together(
        &self,
        kinds: &[&'static str],
    ) -> Vec<(&'static str, crate::client::Answer, Duration)> {
        let started = Instant::now();
        futures::future::join_all(kinds.iter().map(|kind| {
            let (path, body) = match *kind {
                "upload" => (
                    "/organization/certificates",
                    serde_json::json!({"certificate": crate::pki::ca("Kept out").pem()}),
                ),
                "toggle" => (
                    "/organization/certificates/activate",
                    serde_json::json!({"certificate_ids": [self.id]}),
                ),
                _ => (
                    "/organization/projects",
                    serde_json::json!({"name": "Kept out"}),
                ),
            };
            let api = self.api.clone();
            async move {
                let answer = api.post(path, body).await;
                (*kind, answer, started.elapsed())
            }
        }))
        .await
    }

    fn assert_unavailable_on_time(
        &self,
        answers: Vec<(&'static str, crate::client::Answer, Duration)>,
    ) {
        for (kind, answer, took) in answers {
            answer.err(503, Some("database_unavailable"), None);
            crate::bounds::assert_on_time(kind, took, self.timeout);
        }
    }

    async fn assert_nothing_written(self) {
        self.holder.execute_batch("ROLLBACK").unwrap();
        let listed = self.api.get("/organization/certificates").await;
        assert_eq!(
            listed.ok()["data"].as_array().unwrap().len(),
            1,
            "nothing written"
        );
        assert_eq!(listed.ok()["data"][0]["active"], false);
        let projects = self.api.list_all("/organization/projects").await;
        assert_eq!(projects.len(), 1, "only the Default project");
    }
}

/// The SQLite database and its -wal and -shm files are readable by their owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", path.display());
    let mut server = Process::serve(&url, &[]).await;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {:o}", mode & 0o777);
    }
    server.process.terminate_and_wait();
}
