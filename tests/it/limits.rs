//! Connection bounds of `serve` (the gateway's are in `gateway::hostile`): header and idle
//! timeouts, the connection cap, the shutdown grace, and private database files (spec §12.9).

use std::time::{Duration, Instant};

use certgate::runtime::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{serve_in_background, Db, TestApp, TestDb};
use crate::process::Process;

/// Serves the Admin API of `app` again, on a listener of its own with `limits`.
async fn serve_with(app: &TestApp, limits: ConnectionLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_in_background(
        listener,
        certgate::api::router(certgate::api::AppState::new(app.store.clone())),
        limits,
    );
    addr
}

/// How long the peer takes to close `stream`; `None` if it stays open for `limit`.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = (started + limit).checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_closes_stalled_and_idle_connections() {
    let app = TestApp::spawn(Db::Sqlite).await.expect("SQLite");
    let addr = serve_with(
        &app,
        ConnectionLimits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            ..ConnectionLimits::default()
        },
    )
    .await;
    // Half a request head: closed after the header timeout, not before.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut partial, Duration::from_secs(30))
        .await
        .expect("closed");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // Nothing sent: idle, closed after the idle timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let took = closed_after(&mut silent, Duration::from_secs(30))
        .await
        .expect("closed");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    // After a complete exchange the connection is idle again: it stays for the idle timeout.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let took = closed_after(&mut kept, Duration::from_secs(30))
        .await
        .expect("closed");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
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

/// SIGTERM with a half-sent request head open: the process does not wait for it (before, one
/// such connection kept `serve` alive indefinitely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_stalled_clients() {
    let db = TestDb::new(Db::Sqlite).await.expect("SQLite");
    let mut server = Process::serve(
        &db.url,
        &["--shutdown-grace", "3s", "--header-timeout", "60s"],
    )
    .await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let took = server.process.terminate_and_wait();
    assert!(
        took < Duration::from_secs(20),
        "exit took {took:?} with a stalled client (grace 3 s)"
    );
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
