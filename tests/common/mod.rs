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
                    eprintln!("skipped: PostgreSQL half (no server at {base}: {e})");
                    return None;
                }
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Some(TestDb {
                    url,
                    kind,
                    _dir: None,
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
        let app = certgate::api::router(certgate::api::AppState {
            store: store.clone(),
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Some(TestApp {
            db,
            store,
            clock,
            addr,
            base: format!("http://{addr}/v1"),
            key: key.value,
            org_id: org.id,
            http: reqwest::Client::new(),
        })
    }

    /// Another organization on the same database, with its own key.
    pub async fn other_org(&self) -> (String, String) {
        let (org, key) = self.store.create_organization("Other Org").await.unwrap();
        (org.id, key.value)
    }
}

/// Runs each named `async fn(TestApp)` once per backend:
/// `backend_tests!(upload_roundtrip, ...)` makes `upload_roundtrip::sqlite` and `::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::common::TestApp::spawn($crate::common::Db::Sqlite).await.unwrap();
                super::$name(app).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::common::TestApp::spawn($crate::common::Db::Postgres).await {
                    super::$name(app).await
                }
            }
        }
    )*};
}
