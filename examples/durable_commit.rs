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
//! A third mode, `sqlite-toggles PATH SECONDS`, measures the other ceiling: what the SQL of
//! certgate's toggle costs SQLite alone. On a copy of a certgate database (an organization
//! with at least 10 certificates, as `bench/api/toggle_sql.sh` makes), it runs the statements
//! an organization-scope toggle of 10 ids runs (lock, read, audit event and its resources,
//! change, trust bump), each toggle in a savepoint and `BATCH` toggles (default 16) per
//! commit as certgate's group commit does, back to back on one connection: no HTTP, no
//! threads, prepared statements. Prints the toggle rate and each statement's mean time.
//!
//! Usage: `durable_commit sqlite PATH SECONDS`, `durable_commit postgres URL SECONDS` or
//! `durable_commit sqlite-toggles PATH SECONDS`. Prints one JSON line:
//! `{"backend", "commits", "seconds", "commits_per_s"}` (with `sqlite-toggles`, `commits`
//! counts toggles, and `statements` lists each statement's mean, `{"name", "us"}`, in order).

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

/// Statement kinds timed by [`sqlite_toggles`], in the order a toggle runs them.
const TOGGLE_STEPS: [&str; 9] = [
    "savepoint",
    "lock",
    "read",
    "audit_event",
    "audit_resources",
    "change",
    "trust_bump",
    "release",
    "commit (per toggle)",
];

/// The toggle's SQL as certgate runs it (`store::toggles`: `Toggle::new` and `Toggle::decide`,
/// `store::audit::TxAudit`, `store::tx`), with its parameters in the same places.
fn sqlite_toggles(path: &str, seconds: Duration) -> anyhow::Result<(u64, Vec<f64>)> {
    let batch: u64 = match std::env::var("BATCH") {
        Ok(v) => v.parse().context("BATCH")?,
        Err(_) => 16,
    };
    let conn = rusqlite::Connection::open(path).with_context(|| format!("opening {path}"))?;
    // As certgate's connections (store::connect_options).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    let org: String = conn
        .query_row(
            "SELECT id FROM organizations ORDER BY created_at LIMIT 1",
            [],
            |r| r.get(0),
        )
        .context("no organization: run certgate on this file first")?;
    // The actor: certgate records the admin key that made the change.
    let actor: Option<String> = conn
        .query_row(
            "SELECT id FROM admin_keys WHERE org_id = ?1 ORDER BY created_at LIMIT 1",
            [&org],
            |r| r.get(0),
        )
        .ok();
    let mut ids = Vec::new();
    let mut names = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT id, name FROM certificates WHERE org_id = ?1 AND deleted_at IS NULL ORDER BY created_at, seq LIMIT 10",
        )?;
        let mut rows = stmt.query([&org])?;
        while let Some(row) = rows.next()? {
            ids.push(row.get::<_, String>(0)?);
            names.push(row.get::<_, Option<String>>(1)?);
        }
    }
    if ids.len() < 10 {
        bail!("{path} has {} certificates; 10 are needed", ids.len());
    }
    let id_list = |first: usize| {
        (first..first + ids.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lock =
        conn.prepare("UPDATE organizations SET seq = seq + 1 WHERE id = ?1 RETURNING seq")?;
    let mut read = conn.prepare(&format!(
        "SELECT id, name, created_at, valid_at, expires_at, client_filter FROM certificates WHERE org_id = ?1 AND deleted_at IS NULL AND id IN ({})",
        id_list(2)
    ))?;
    let mut event = conn.prepare(
        "INSERT INTO audit_events (id, org_id, effective_at, seq, idx, type, actor_key_id, project_id, project_name, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let mut resources = conn.prepare(&format!(
        "INSERT INTO audit_event_resources (org_id, event_id, resource_id) VALUES {}",
        (3..3 + sorted.len())
            .map(|i| format!("(?1, ?2, ?{i})"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    // On SQLite certgate's change returns no rows: the bump below reads `changes()`.
    let mut change = conn.prepare(&format!(
        "UPDATE certificates SET active_org = ?2 WHERE org_id = ?1 AND active_org <> ?2 AND id IN ({})",
        id_list(3)
    ))?;
    let mut bump = conn.prepare(
        "UPDATE trust_state SET generation = generation + 1 WHERE id = 1 AND changes() > 0",
    )?;
    let payload = serde_json::json!({
        "certificates": ids.iter().zip(&names).map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect::<Vec<_>>()
    })
    .to_string();
    let mut spent = [Duration::ZERO; TOGGLE_STEPS.len()];
    let mut timed = |step: usize, f: &mut dyn FnMut() -> rusqlite::Result<()>| {
        let started = Instant::now();
        let result = f();
        spent[step] += started.elapsed();
        result
    };
    let started = Instant::now();
    let mut toggles = 0u64;
    while started.elapsed() < seconds {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..batch {
            let activate = i64::from(toggles.is_multiple_of(2));
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let at = i64::try_from(at)?;
            timed(0, &mut || conn.execute_batch("SAVEPOINT certgate_write"))?;
            let mut seq = 0i64;
            timed(1, &mut || {
                seq = lock.query_row([&org], |r| r.get(0))?;
                Ok(())
            })?;
            timed(2, &mut || {
                let params = std::iter::once(&org).chain(&ids);
                let mut rows = read.query(rusqlite::params_from_iter(params))?;
                while rows.next()?.is_some() {}
                Ok(())
            })?;
            let event_id = format!(
                "audit_log-{at:010x}{seq:012x}{:04x}{:08x}",
                0,
                rand::random::<u32>()
            );
            let kind = if activate == 1 {
                "certificates.activated"
            } else {
                "certificates.deactivated"
            };
            timed(3, &mut || {
                event
                    .execute(rusqlite::params![
                        event_id,
                        org,
                        at,
                        seq,
                        0,
                        kind,
                        actor,
                        None::<String>,
                        None::<String>,
                        payload
                    ])
                    .map(drop)
            })?;
            timed(4, &mut || {
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&org, &event_id];
                params.extend(sorted.iter().map(|id| id as &dyn rusqlite::ToSql));
                resources.execute(params.as_slice()).map(drop)
            })?;
            timed(5, &mut || {
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&org, &activate];
                params.extend(ids.iter().map(|id| id as &dyn rusqlite::ToSql));
                change.execute(params.as_slice()).map(drop)
            })?;
            timed(6, &mut || bump.execute([]).map(drop))?;
            timed(7, &mut || conn.execute_batch("RELEASE certgate_write"))?;
            toggles += 1;
        }
        timed(8, &mut || conn.execute_batch("COMMIT"))?;
    }
    let per_toggle = spent
        .iter()
        .map(|d| d.as_secs_f64() * 1e6 / toggles as f64)
        .collect();
    Ok((toggles, per_toggle))
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
        bail!("usage: durable_commit sqlite|postgres|sqlite-toggles PATH-OR-URL SECONDS");
    };
    let seconds = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let (commits, steps) = match backend.as_str() {
        "sqlite" => (sqlite(target, seconds)?, None),
        "postgres" => (postgres(target, seconds).await?, None),
        "sqlite-toggles" => {
            let (toggles, steps) = sqlite_toggles(target, seconds)?;
            (toggles, Some(steps))
        }
        other => bail!("unknown mode {other}: sqlite, postgres or sqlite-toggles"),
    };
    let mut line = serde_json::json!({
        "backend": backend,
        "commits": commits,
        "seconds": seconds.as_secs(),
        "commits_per_s": commits as f64 / seconds.as_secs_f64(),
    });
    if let Some(steps) = steps {
        line["statements"] = TOGGLE_STEPS
            .iter()
            .zip(steps)
            .map(|(name, us)| serde_json::json!({"name": name, "us": (us * 10.0).round() / 10.0}))
            .collect();
    }
    println!("{line}");
    Ok(())
}
