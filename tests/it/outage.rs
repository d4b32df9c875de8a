//! `certgate serve` when PostgreSQL goes away or stalls: timely 503s with OpenAI's body,
//! honest readiness, and recovery without a restart. PostgreSQL only: SQLite cannot be cut
//! off from its process.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Answer, Api};
use crate::helpers::{Db, TestDb};
use crate::process::{CuttableProxy, Process};
use crate::replicas::create_org;

/// The longest a request may take to be refused while the database does not answer, with
/// `--db-timeout 1s`. Without the timeout such a request would wait as long as the client
/// lets it (60 s); the bound leaves room for the store's bounded retries and a loaded
/// machine while still telling a bounded wait from that.
const REFUSAL_BOUND: Duration = Duration::from_secs(15);

/// Asserts `a` is the 503 a missing database gives.
#[track_caller]
fn database_unavailable(a: &Answer) {
    a.err(503, Some("database_unavailable"), None);
}

/// The names of the organization's projects.
async fn project_names(api: &Api) -> Vec<String> {
    api.list_all("/organization/projects")
        .await
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

/// PostgreSQL vanishes under load: replicas answer 503 with OpenAI's body, promptly, report
/// not-ready, stay live, and recover by themselves when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_503_and_recovers() {
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(db) = TestDb::new(Db::Postgres).await else {
        return;
    };
    let (_, key) = create_org(&db, "Outage");
    let (proxy, proxied_url) = CuttableProxy::in_front_of(&db.url).await;
    let server = Process::serve(
        &proxied_url,
        &[
            "--no-bootstrap",
            "--db-timeout",
            "1s",
            "--db-max-connections",
            "4",
        ],
    )
    .await;
    let api = server.api(&key);
    api.get("/organization/certificates").await.ok();

    proxy.cut();
    // Reads and writes alike, each refused on its own within the bound.
    for i in 0..12 {
        let started = Instant::now();
        let a = if i % 2 == 0 {
            api.get("/organization/certificates").await
        } else {
            api.post("/organization/projects", json!({"name": "during"}))
                .await
        };
        let elapsed = started.elapsed();
        database_unavailable(&a);
        assert!(
            elapsed < REFUSAL_BOUND,
            "request {i} answered in {elapsed:?}: not a bounded wait"
        );
    }
    let ready = api.probe("/readyz").await;
    assert_eq!(
        ready.status, 503,
        "readyz reports the database is unreachable: {}",
        ready.body
    );
    let health = api.probe("/healthz").await;
    assert_eq!(health.status, 200, "healthz stays a liveness check");

    proxy.restore();
    // Recovery takes the pool's reconnect; the ceiling only stops a server that never
    // recovers from hanging the run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = api.get("/organization/certificates").await;
        if a.status == 200 {
            break;
        }
        database_unavailable(&a);
        assert!(Instant::now() < deadline, "did not recover by itself");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.post("/organization/projects", json!({"name": "after"}))
        .await
        .ok();
    assert_eq!(api.probe("/readyz").await.status, 200);
    // The writes refused during the outage left nothing behind (beside the organization's
    // Default project).
    assert_eq!(project_names(&api).await, ["Default project", "after"]);
}

/// A database that answers too slowly (here: a row lock held by someone else) gives a timely
/// 503 instead of piling up requests, and the service carries on once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_database_gives_timely_503() {
    use sqlx::Connection;
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(db) = TestDb::new(Db::Postgres).await else {
        return;
    };
    let (org, key) = create_org(&db, "Slow");
    let server = Process::serve(&db.url, &["--no-bootstrap", "--db-timeout", "1s"]).await;
    let api = server.api(&key);
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("BEGIN");
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(&org)
        .execute(&mut blocker)
        .await
        .expect("lock the organization row");
    // The lock is held until the ROLLBACK below: only the database timeout ends the wait.
    let started = Instant::now();
    let a = api
        .post("/organization/projects", json!({"name": "blocked"}))
        .await;
    database_unavailable(&a);
    assert!(
        started.elapsed() < REFUSAL_BOUND,
        "took {:?}",
        started.elapsed()
    );
    // Reads are not blocked by a writer's lock.
    api.get("/organization/projects").await.ok();
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("ROLLBACK");
    api.post("/organization/projects", json!({"name": "free"}))
        .await
        .ok();
    // The refused write left nothing behind (beside the organization's Default project).
    assert_eq!(project_names(&api).await, ["Default project", "free"]);
}
