//! Start-up as operators meet it (decisions.md D42): the binary refuses to start on a mistake and
//! says which database or file, what is wrong with it and what to run, instead of serving
//! 503s or waiting forever. Storage cases run on SQLite and PostgreSQL.
//!
//! The cases by concern: the database (`database.rs`), the gateway's TLS files (`tls.rs`), the
//! environment and `--help` (`environment.rs`); the helpers below serve all three.

mod database;
mod environment;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDb;
use crate::pki;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `certgate` with `args` and `env` to completion, killing it (and failing) if it has
/// not exited within `deadline`: a process that waits forever is one of the faults tested.
fn run(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CERTGATE_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start certgate");
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "`certgate {}` still running after {deadline:?}:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("output");
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

/// Generous: each refusal here comes well under a second after start (or after the 1 s
/// connect timeout); the bound only tells "exited" from "waits forever" on a loaded machine.
const EXIT_BOUND: Duration = Duration::from_secs(30);

impl Run {
    /// Asserts the run failed and its stderr holds every one of `parts`.
    #[track_caller]
    fn refused_with(&self, parts: &[&str]) {
        assert!(
            !self.success,
            "expected a refusal, it succeeded:\n{}",
            self.stderr
        );
        for part in parts {
            assert!(
                self.stderr.contains(part),
                "stderr lacks {part:?}:\n{}",
                self.stderr
            );
        }
    }
}

/// The gateway's certificate and key as PEM files, plus other files to get wrong.
struct TlsFiles {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = pki::server_leaf(&pki::ca("Startup server CA"));
        let cert = dir.path().join("gateway.pem");
        let key = dir.path().join("gateway.key");
        std::fs::write(&cert, leaf.cert.pem()).expect("write cert");
        std::fs::write(&key, leaf.key.serialize_pem()).expect("write key");
        TlsFiles { dir, cert, key }
    }

    /// Writes `contents` to a file named `name` beside the others.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `certgate gateway` on `db_url` with `cert` and `key`, plus `extra` flags.
fn gateway(db_url: &str, cert: &Path, key: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--database",
        db_url,
        "--tls-cert",
        utf8(cert),
        "--tls-key",
        utf8(key),
    ];
    args.extend_from_slice(extra);
    run(&args, &[], EXIT_BOUND)
}

/// The file of a `sqlite://PATH` URL.
fn sqlite_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("sqlite://").expect("a sqlite:// URL"))
}

/// How the process names `db` in messages: the SQLite path, or PostgreSQL's host and port.
fn named(db: &TestDb) -> String {
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        return path.to_owned();
    }
    let host_port = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("postgres://USER@HOST:PORT/DB");
    format!("PostgreSQL at {host_port}")
}

/// Runs `sql` directly on `db` (outside certgate).
async fn execute(db: &TestDb, sql: &str) {
    use sqlx::Connection;
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.expect("close");
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.expect("close");
    }
}
