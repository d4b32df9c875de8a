//! Shared test support: a fresh database per test on either backend, the real router on a
//! real socket, and a small test PKI made with rcgen.
#![allow(dead_code)]

pub mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgate::domain::ManualClock;
use certgate::store::{Store, StoreOptions};

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server tests use: `CERTGATE_TEST_POSTGRES_URL`, else the machine's default.
pub fn pg_base_url() -> String {
    std::env::var("CERTGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A fresh, empty database: a SQLite file in a temporary directory, or a PostgreSQL schema of
/// its own. `None` (after saying so) when PostgreSQL is not reachable outside CI; in CI
/// (`CI=true`) an unreachable PostgreSQL fails the test instead.
pub struct TestDb {
    pub url: String,
    pub kind: Db,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema to drop when the test is over.
    schema: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let base = pg_base_url();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::query("SET lock_timeout = '2s'")
                    .execute(&mut conn)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

impl TestDb {
    pub async fn new(kind: Db) -> Option<TestDb> {
        match kind {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("certgate.db").display());
                Some(TestDb {
                    url,
                    kind,
                    _dir: Some(dir),
                    schema: None,
                })
            }
            Db::Postgres => {
                let base = pg_base_url();
                let schema = format!("certgate_test_{}", uuid::Uuid::new_v4().simple());
                let created = async {
                    use sqlx::Connection;
                    let mut conn = tokio::time::timeout(
                        Duration::from_secs(5),
                        sqlx::PgConnection::connect(&base),
                    )
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                    sqlx::query(&format!("CREATE SCHEMA {schema}"))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await
                }
                .await;
                if let Err(e) = created {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("PostgreSQL at {base} is required in CI but unreachable: {e}");
                    }
                    // Written to the stderr handle directly: libtest captures `eprintln!` of
                    // passing tests, and this line must be seen. Once per test binary.
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        use std::io::Write;
                        let _ = writeln!(
                            std::io::stderr(),
                            "skipped: PostgreSQL half (no server at {base}: {e}); set CERTGATE_TEST_POSTGRES_URL"
                        );
                    });
                    return None;
                }
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Some(TestDb {
                    url,
                    kind,
                    _dir: None,
                    schema: Some(schema),
                })
            }
        }
    }

    pub async fn store(&self, clock: Arc<ManualClock>) -> Store {
        Store::open(&StoreOptions::new(&self.url), clock)
            .await
            .expect("open store")
    }
}

/// Now, as the tests' clocks start.
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The real Admin API router on a real socket, with one organization and its admin key.
pub struct TestApp {
    pub db: TestDb,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub addr: SocketAddr,
    pub base: String,
    pub key: String,
    pub org_id: String,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn(kind: Db) -> Option<TestApp> {
        let db = TestDb::new(kind).await?;
        let clock = ManualClock::new(wall_clock());
        let store = db.store(clock.clone()).await;
        let (org, key) = store.create_organization("Test Org").await.expect("org");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = certgate::api::router(certgate::api::AppState::new(store.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Some(TestApp {
            db,
            store,
            clock,
            addr,
            base: format!("http://{addr}/v1"),
            key: key.value.expose().to_owned(),
            org_id: org.id.into_string(),
            http: reqwest::Client::new(),
        })
    }

    /// Another organization on the same database, with its own key.
    pub async fn other_org(&self) -> (String, String) {
        let (org, key) = self.store.create_organization("Other Org").await.unwrap();
        (org.id.into_string(), key.value.expose().to_owned())
    }
}

/// Runs each named test once per backend, handing it what `$make(Db)` (an async constructor
/// returning `Option`) built. The PostgreSQL half is skipped when `$make` says so.
#[macro_export]
macro_rules! per_backend {
    ($make:path; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let made = $make($crate::common::Db::Sqlite).await.unwrap();
                super::$name(made).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(made) = $make($crate::common::Db::Postgres).await {
                    super::$name(made).await
                }
            }
        }
    )*};
}

/// Runs each named `async fn(TestApp)` once per backend:
/// `backend_tests!(upload_roundtrip, ...)` makes `upload_roundtrip::sqlite` and `::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => { $crate::per_backend!($crate::common::TestApp::spawn; $($name),*); };
}

/// Runs each named `async fn(TestDb)` once per backend, like [`backend_tests!`], for tests
/// that start `certgate` processes themselves.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => { $crate::per_backend!($crate::common::TestDb::new; $($name),*); };
}

/// A `certgate` process started by a test; killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Process {
    /// Starts `certgate serve` on a free port and waits until `/healthz` answers.
    pub async fn serve(db_url: &str, extra: &[&str]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
            .args(["serve", "--listen", &addr.to_string(), "--database", db_url])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start certgate");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut p = Process {
            child,
            addr,
            stderr,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "certgate exited early ({status}): {}",
                    p.stderr.lock().unwrap()
                );
            }
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.kill();
        panic!(
            "certgate did not become healthy: {}",
            p.stderr.lock().unwrap()
        );
    }

    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The admin key the process printed at bootstrap, if it printed one.
    pub fn bootstrap_key(&self) -> Option<String> {
        let s = self.stderr.lock().unwrap();
        let start = s.find("sk-admin-")?;
        Some(
            s[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect(),
        )
    }

    /// SIGTERM, then waits: a graceful shutdown exits 0 within a few seconds.
    pub fn terminate_and_wait(&mut self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit after SIGTERM: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no exit within 5 s of SIGTERM");
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `certgate` binary to completion with `args`; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP proxy in front of PostgreSQL that a test can cut (severing every connection and
/// refusing new ones) and restore, without touching the machine's server.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cuts: Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttableProxy {
    /// Starts a proxy to the PostgreSQL server of `db_url`; returns it and the same URL
    /// pointed through it.
    pub async fn in_front_of(db_url: &str) -> (CuttableProxy, String) {
        let target = db_url
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cuts = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (up2, cuts2, target2) = (up.clone(), cuts.clone(), target.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let (target, mut cut) = (target2.clone(), cuts2.subscribe());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {} // dropping both ends severs the connection
                    }
                });
            }
        });
        let proxied = db_url.replacen(&target, &addr.to_string(), 1);
        (CuttableProxy { addr, up, cuts }, proxied)
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
