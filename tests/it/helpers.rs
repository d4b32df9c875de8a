//! A fresh database per test on either backend, the real Admin API router on a real socket,
//! and the macros that run one test body on both backends.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use certgate::domain::ManualClock;
use certgate::store::{Store, StoreOptions};

use crate::client::Api;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server tests use: `CERTGATE_TEST_POSTGRES_URL`, else the machine's default.
fn pg_base_url() -> String {
    std::env::var("CERTGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// True under CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says that part of a test did not run, where it will be seen: libtest captures
/// `eprintln!` of passing tests, so this writes to the stderr handle directly.
pub fn say_skipped(reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// A fresh, empty database: a SQLite file in a temporary directory, or a PostgreSQL schema of
/// its own. `None` (after saying so) when PostgreSQL is not reachable outside CI; in CI
/// (`CI=true`) an unreachable PostgreSQL fails the test instead.
pub struct TestDb {
    pub url: String,
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
                    _dir: Some(dir),
                    schema: None,
                })
            }
            Db::Postgres => {
                let base = pg_base_url();
                let schema = format!("certgate_test_{:032x}", rand::random::<u128>());
                let created = async {
                    use sqlx::Connection;
                    // A refused connection fails at once; the bound is for a server that
                    // accepts but does not answer, generous for a loaded machine.
                    let mut conn = tokio::time::timeout(
                        Duration::from_secs(30),
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
                    assert!(
                        !in_ci(),
                        "PostgreSQL at {base} is required in CI but unreachable: {e}"
                    );
                    POSTGRES_SKIP_SAID.call_once(|| {
                        say_skipped(&format!(
                            "PostgreSQL half (no server at {base}: {e}); set CERTGATE_TEST_POSTGRES_URL"
                        ));
                    });
                    return None;
                }
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Some(TestDb {
                    url,
                    _dir: None,
                    schema: Some(schema),
                })
            }
        }
    }
}

/// The PostgreSQL skip is said once per test binary: every PostgreSQL half would say the same.
static POSTGRES_SKIP_SAID: std::sync::Once = std::sync::Once::new();

/// Now, as the tests' clocks start.
pub fn wall_clock() -> i64 {
    use certgate::domain::Clock;
    certgate::domain::SystemClock.now()
}

/// The real Admin API router on a real socket, with one organization and its admin key.
pub struct TestApp {
    pub db: TestDb,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    /// The Admin API as this organization's admin.
    pub api: Api,
    pub key: String,
    pub org_id: String,
}

impl TestApp {
    pub async fn spawn(kind: Db) -> Option<TestApp> {
        let db = TestDb::new(kind).await?;
        let clock = ManualClock::new(wall_clock());
        let mut options = StoreOptions::new(&db.url);
        // Several tests send dozens of concurrent writes at one organization, which all
        // queue for its lock; on a loaded 2-core machine the default 5 s wait for it can run
        // out, and that would test the machine rather than the rules. Tests of the timeout
        // itself build a store of their own.
        options.timeout = Duration::from_secs(60);
        let store = Store::open(&options, clock.clone())
            .await
            .expect("open store");
        let (org, key) = store.create_organization("Test Org").await.expect("org");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        serve_in_background(
            listener,
            certgate::api::router(certgate::api::AppState::new(store.clone())),
            certgate::runtime::ConnectionLimits::default(),
        );
        Some(TestApp {
            db,
            store,
            clock,
            api: Api::new(addr, Some(key.value.expose())),
            key: key.value.expose().to_owned(),
            org_id: org.id.into_string(),
        })
    }

    /// Another organization on the same database: its id, and the Admin API as its admin.
    pub async fn other_org(&self) -> (String, Api) {
        let (org, key) = self
            .store
            .create_organization("Other Org")
            .await
            .expect("other org");
        (org.id.into_string(), self.api.as_key(key.value.expose()))
    }
}

/// Serves `router` on `listener` through the same connection loop `certgate serve` uses, until
/// the test's runtime ends.
pub fn serve_in_background(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: certgate::runtime::ConnectionLimits,
) {
    use certgate::runtime::{ConnectionSlots, TcpIncoming};
    let slots = ConnectionSlots::new(limits.max_connections);
    tokio::spawn(certgate::runtime::serve(
        TcpIncoming::new(listener, slots),
        router,
        |_, _| None,
        limits,
        std::future::pending(),
    ));
}

/// Runs each named test once per backend, handing it what `$make(Db)` (an async constructor
/// returning `Option`) built. The PostgreSQL half is skipped when `$make` says so.
macro_rules! per_backend {
    ($make:path; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let made = $make($crate::helpers::Db::Sqlite)
                    .await
                    .expect("SQLite is always available");
                super::$name(made).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(made) = $make($crate::helpers::Db::Postgres).await {
                    super::$name(made).await
                }
            }
        }
    )*};
}
pub(crate) use per_backend;

/// Runs each named `async fn(TestApp)` once per backend:
/// `backend_tests!(upload_roundtrip, ...)` makes `upload_roundtrip::sqlite` and `::postgres`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::helpers::per_backend!($crate::helpers::TestApp::spawn; $($name),*);
    };
}
pub(crate) use backend_tests;

/// Runs each named `async fn(TestDb)` once per backend, like [`backend_tests!`], for tests
/// that start `certgate` processes themselves.
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        $crate::helpers::per_backend!($crate::helpers::TestDb::new; $($name),*);
    };
}
pub(crate) use db_tests;
