//! Baseline for `bench/api/run.sh`: how many durable commits per second the disk and the
//! database give one writer, with nothing else around them. A loop of one-row `UPDATE`
//! transactions, each committed before the next starts:
//! - `sqlite PATH`: a SQLite file set up like certgate's (WAL, `synchronous=FULL`), through
//!   rusqlite on this thread;
//! - `postgres URL`: one connection to PostgreSQL (`synchronous_commit` as the server has it).
//!
//! Certgate's toggles are compared with this rate: each toggle is one writing transaction, so
//! it is the ceiling a one-transaction-per-commit writer could reach.
//!
//! Usage: `durable_commit sqlite PATH SECONDS` or `durable_commit postgres URL SECONDS`.
//! Prints one JSON line: `{"backend", "commits", "seconds", "commits_per_s"}`.

// Benchmark arithmetic on counts and durations: precision loss is irrelevant here.
#![allow(clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::Connection;

fn sqlite(path: &str, seconds: Duration) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(path).with_context(|| format!("opening {path}"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
         INSERT OR IGNORE INTO bench (id, v) VALUES (1, 0);",
    )?;
    let mut update = conn.prepare("UPDATE bench SET v = v + 1 WHERE id = 1")?;
    let started = Instant::now();
    let mut commits = 0;
    while started.elapsed() < seconds {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        update.execute([])?;
        conn.execute_batch("COMMIT")?;
        commits += 1;
    }
    Ok(commits)
}

async fn postgres(url: &str, seconds: Duration) -> anyhow::Result<u64> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    // A real table (a temporary one is not WAL-logged), as certgate's are.
    sqlx::query("CREATE TABLE IF NOT EXISTS certgate_durable_commit_bench (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "INSERT INTO certgate_durable_commit_bench (id, v) VALUES (1, 0) ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await?;
    let started = Instant::now();
    let mut commits = 0;
    while started.elapsed() < seconds {
        // One statement outside a transaction block: its own transaction, committed (and
        // flushed) before the answer.
        sqlx::query("UPDATE certgate_durable_commit_bench SET v = v + 1 WHERE id = 1")
            .execute(&mut conn)
            .await?;
        commits += 1;
    }
    sqlx::query("DROP TABLE certgate_durable_commit_bench")
        .execute(&mut conn)
        .await?;
    Ok(commits)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, target, seconds] = args.as_slice() else {
        bail!("usage: durable_commit sqlite PATH SECONDS | durable_commit postgres URL SECONDS");
    };
    let seconds = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let commits = match backend.as_str() {
        "sqlite" => sqlite(target, seconds)?,
        "postgres" => postgres(target, seconds).await?,
        other => bail!("unknown backend {other}: sqlite or postgres"),
    };
    println!(
        "{}",
        serde_json::json!({
            "backend": backend,
            "commits": commits,
            "seconds": seconds.as_secs(),
            "commits_per_s": commits as f64 / seconds.as_secs_f64(),
        })
    );
    Ok(())
}
