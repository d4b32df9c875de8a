//! Start-up as operators meet it (spec §12.7): the binary refuses to start on a mistake and
//! says which database or file, what is wrong with it and what to run, instead of serving
//! 503s or waiting forever. Storage cases run on SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bounds::assert_on_time;
use crate::helpers::{db_tests, Db, TestDb};
use crate::pki;
use crate::process::{admin_key_in, CuttableProxy, Process, ReservedPort};

db_tests!(
    gateway_refuses_an_unmigrated_database,
    gateway_refuses_a_partly_migrated_database,
);

/// How a finished `certgate` run went.
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

// ------------------------------------------------------------------------------ database

/// A wrong SQLite path: the gateway says so and what to run, and creates nothing (before,
/// it created an empty file and answered 503 forever).
#[test]
fn gateway_refuses_a_missing_sqlite_file() {
    let tls = TlsFiles::new();
    let db = tls.dir.path().join("missing.db");
    let url = format!("sqlite://{}", db.display());
    let r = gateway(&url, &tls.cert, &tls.key, &[]);
    r.refused_with(&[
        &format!("no SQLite database at {}", db.display()),
        "the gateway does not create one",
        "`certgate migrate`",
        "`certgate serve`",
    ]);
    assert!(!db.exists(), "the gateway created {}", db.display());
}

/// A database without certgate's schema (an empty SQLite file, as older gateways left
/// behind, or an empty PostgreSQL schema).
async fn gateway_refuses_an_unmigrated_database(db: TestDb) {
    if db.url.starts_with("sqlite:") {
        std::fs::write(sqlite_path(&db.url), b"").expect("empty file");
    }
    let tls = TlsFiles::new();
    let r = gateway(&db.url, &tls.cert, &tls.key, &[]);
    r.refused_with(&[&named(&db), "is not migrated", "run `certgate migrate`"]);
    // Control: once migrated, the same gateway gets past the database check.
    run_ok(&["migrate", "--database", &db.url]);
    let mut gw = Process::spawn(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--database",
            &db.url,
            "--tls-cert",
            utf8(&tls.cert),
            "--tls-key",
            utf8(&tls.key),
        ],
        &[],
    );
    gw.listening("certgate gateway listening").await;
    gw.terminate_and_wait();
}

/// A schema an older certgate migrated: it lacks a migration this build needs.
async fn gateway_refuses_a_partly_migrated_database(db: TestDb) {
    run_ok(&["migrate", "--database", &db.url]);
    execute(&db, "DELETE FROM _sqlx_migrations WHERE version = 1").await;
    let tls = TlsFiles::new();
    let r = gateway(&db.url, &tls.cert, &tls.key, &[]);
    r.refused_with(&[
        &named(&db),
        "is not fully migrated: it lacks migration 1",
        "run `certgate migrate`",
    ]);
}

/// Runs `certgate` and asserts it succeeded; returns its stderr.
#[track_caller]
fn run_ok(args: &[&str]) -> String {
    let r = run(args, &[], EXIT_BOUND);
    assert!(
        r.success,
        "`certgate {}` failed:\n{}",
        args.join(" "),
        r.stderr
    );
    r.stderr
}

/// PostgreSQL that nobody answers: every subcommand that opens the database retries for
/// `--db-connect-timeout`, then exits naming host and port and the driver's reason (not
/// "pool timed out"). The gateway used to retry forever.
#[test]
fn unreachable_postgres_is_named_after_the_connect_timeout() {
    let port = ReservedPort::new();
    let url = format!("postgres://postgres@{}/test", port.addr());
    let tls = TlsFiles::new();
    let (cert, key) = (utf8(&tls.cert), utf8(&tls.key));
    let gateway = [
        "gateway",
        "--upstream",
        "http://127.0.0.1:9",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let commands: [&[&str]; 4] = [
        &gateway,
        &["serve", "--listen", "127.0.0.1:0"],
        &["migrate"],
        &["org", "create", "--name", "Nobody"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--database", &url, "--db-connect-timeout", "1s"]);
        let r = run(&args, &[], EXIT_BOUND);
        r.refused_with(&[
            &format!("cannot reach PostgreSQL at {}", port.addr()),
            "gave up after 1s",
            "Connection refused",
        ]);
        assert!(!r.stderr.contains("pool timed out"), "{}", r.stderr);
        // It waited (retried) rather than failing on the first refusal, and no longer.
        assert_on_time(command[0], r.took, Duration::from_secs(1));
    }
}

/// The other side of the bound: a database that comes up within `--db-connect-timeout` is
/// waited for, and the gateway then starts as usual (it is started before its database by
/// service managers all the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_waits_for_a_database_that_comes_up_in_time() {
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(db) = TestDb::new(Db::Postgres).await else {
        return;
    };
    run_ok(&["migrate", "--database", &db.url]);
    let (proxy, url) = CuttableProxy::in_front_of(&db.url).await;
    proxy.cut();
    let tls = TlsFiles::new();
    let mut gw = Process::spawn(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--database",
            &url,
            "--db-connect-timeout",
            "60s",
            "--tls-cert",
            utf8(&tls.cert),
            "--tls-key",
            utf8(&tls.key),
        ],
        &[],
    );
    let started = Instant::now();
    while !gw.output().contains("cannot reach the database yet") {
        assert!(
            started.elapsed() < EXIT_BOUND,
            "no retry logged:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.logged_address("certgate gateway listening").is_none());
    proxy.restore();
    gw.listening("certgate gateway listening").await;
    gw.terminate_and_wait();
}

/// A server that accepts connections but never answers (a hung host, a wrong port behind a
/// firewall that accepts): the wait is still bounded, and the message says no answer came.
#[test]
fn silent_postgres_is_given_up_on() {
    // Listening but never accepting: the kernel completes handshakes into the backlog, and
    // the client's startup message is never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address");
    let url = format!("postgres://postgres@{addr}/test");
    let r = run(
        &["migrate", "--database", &url, "--db-connect-timeout", "1s"],
        &[],
        EXIT_BOUND,
    );
    r.refused_with(&[
        &format!("cannot reach PostgreSQL at {addr}"),
        "no answer within 1s",
    ]);
    assert_on_time(
        "giving up on a silent server",
        r.took,
        Duration::from_secs(1),
    );
    drop(silent);
}

/// The same variable, from the environment.
#[test]
fn connect_timeout_comes_from_the_environment() {
    let port = ReservedPort::new();
    let url = format!("postgres://postgres@{}/test", port.addr());
    let r = run(
        &["migrate"],
        &[
            ("CERTGATE_DATABASE_URL", &url),
            ("CERTGATE_DB_CONNECT_TIMEOUT", "500ms"),
        ],
        EXIT_BOUND,
    );
    r.refused_with(&["gave up after 500ms", &port.addr().to_string()]);
    assert_on_time("giving up", r.took, Duration::from_millis(500));
}

/// A PostgreSQL server that is up but lacks the database: refused at once (waiting would not
/// help), with what to run.
#[tokio::test]
async fn missing_postgres_database_is_refused_at_once() {
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(db) = TestDb::new(Db::Postgres).await else {
        return;
    };
    let without_query = db.url.split('?').next().expect("a URL");
    let (server, _database) = without_query.rsplit_once('/').expect("postgres://…/DB");
    let url = format!("{server}/certgate_no_such_database");
    let r = run(&["migrate", "--database", &url], &[], EXIT_BOUND);
    r.refused_with(&[
        "database \"certgate_no_such_database\" does not exist",
        "createdb",
        "`certgate migrate`",
    ]);
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

/// `serve`, `migrate` and `org create` create a missing SQLite file (the first-run path)
/// and say where; once it exists they say nothing about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_creates_the_sqlite_file_and_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, command) in [vec!["migrate"], vec!["org", "create", "--name", "First"]]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("created-{i}.db"));
        let url = format!("sqlite://{}", path.display());
        let mut args = command.clone();
        args.extend(["--database", &url]);
        let said = format!("created a new SQLite database at {}", path.display());
        assert!(
            run_ok(&args).contains(&said),
            "`{}` did not say it",
            command[0]
        );
        assert!(path.exists());
        assert!(
            !run_ok(&args).contains("created a new SQLite database"),
            "`{}` said it created an existing file",
            command[0]
        );
    }
    let path = dir.path().join("served.db");
    let mut server = Process::serve(&format!("sqlite://{}", path.display()), &[]).await;
    server.process.terminate_and_wait();
    assert!(
        server.process.output().contains(&format!(
            "created a new SQLite database at {}",
            path.display()
        )),
        "{}",
        server.process.output()
    );
}

/// A SQLite path in a directory that does not exist: named, with the OS's reason.
#[test]
fn sqlite_file_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-dir").join("certgate.db");
    let r = run(
        &[
            "migrate",
            "--database",
            &format!("sqlite://{}", path.display()),
        ],
        &[],
        EXIT_BOUND,
    );
    r.refused_with(&[
        &format!("cannot create the SQLite database {}", path.display()),
        "No such file or directory",
    ]);
}

// ------------------------------------------------------------------------------ TLS files

/// Each mistake with the gateway's TLS files is named: which file, what was expected, what
/// was found. The database is missing on purpose: good files get past TLS to that refusal.
#[test]
fn tls_file_mistakes_are_named() {
    let tls = TlsFiles::new();
    let db = format!("sqlite://{}", tls.dir.path().join("absent.db").display());
    let other_key = pki::server_leaf(&pki::ca("Other CA")).key.serialize_pem();
    let other_key = tls.file("other.key", &other_key);
    let garbage = tls.file("garbage.pem", "this is not PEM\n");
    let encrypted = tls.file(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let missing = tls.dir.path().join("missing.key");
    let (cert, key) = (tls.cert.display(), tls.key.display());
    let (good_cert, good_key) = (&tls.cert, &tls.key);
    let check = |case: &str, cert: &Path, key: &Path, extra: &[&str], parts: &[&str]| {
        let r = gateway(&db, cert, key, extra);
        assert!(!r.success, "{case}: started");
        for part in parts {
            assert!(
                r.stderr.contains(part),
                "{case}: stderr lacks {part:?}:\n{}",
                r.stderr
            );
        }
    };

    check(
        "key file missing",
        good_cert,
        &missing,
        &[],
        &[&format!(
            "cannot read TLS private key {}: No such file or directory",
            missing.display()
        )],
    );
    check(
        "certificate given as the key",
        good_cert,
        good_cert,
        &[],
        &[
            &format!("no private key found in {cert}; expected PKCS#8, PKCS#1 or SEC1 PEM"),
            "found CERTIFICATE",
        ],
    );
    check(
        "encrypted key",
        good_cert,
        &encrypted,
        &[],
        &[
            &format!("no private key found in {}", encrypted.display()),
            "found ENCRYPTED PRIVATE KEY",
            "encrypted keys are not supported",
        ],
    );
    check(
        "another certificate's key",
        good_cert,
        &other_key,
        &[],
        &[&format!(
            "key in {} does not match the certificate in {cert}",
            other_key.display()
        )],
    );
    check(
        "key given as the certificate",
        good_key,
        good_key,
        &[],
        &[
            &format!("no certificate found in {key}; expected PEM CERTIFICATE blocks"),
            "found PRIVATE KEY",
        ],
    );
    check(
        "garbage certificate",
        &garbage,
        good_key,
        &[],
        &[&format!(
            "no certificate found in {}; expected PEM CERTIFICATE blocks, found no PEM block",
            garbage.display()
        )],
    );
    check(
        "certificate path is a directory",
        tls.dir.path(),
        good_key,
        &[],
        &[&format!(
            "cannot read TLS certificate {}: Is a directory",
            tls.dir.path().display()
        )],
    );
    check(
        "garbage upstream CA",
        good_cert,
        good_key,
        &["--upstream-ca", utf8(&garbage)],
        &[&format!(
            "no certificate found in {}; expected PEM CERTIFICATE blocks",
            garbage.display()
        )],
    );
    // Control: the right pair gets past TLS and stops at the (missing) database.
    check(
        "good files",
        good_cert,
        good_key,
        &[],
        &["no SQLite database at"],
    );
}

// ------------------------------------------------------------------------------ environment

/// An unknown `CERTGATE_LOG_FORMAT` stops the process before it does anything, listing the
/// choices; the two known ones (in any case) are accepted.
#[test]
fn unknown_log_format_is_refused_listing_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certgate.db");
    let url = format!("sqlite://{}", path.display());
    let r = run(
        &["migrate", "--database", &url],
        &[("CERTGATE_LOG_FORMAT", "xml")],
        EXIT_BOUND,
    );
    r.refused_with(&[
        "unknown CERTGATE_LOG_FORMAT \"xml\"",
        "expected one of: text (the default), json",
    ]);
    assert!(!path.exists(), "it went on to create the database");
    for format in ["text", "json", "JSON", ""] {
        let r = run(
            &["migrate", "--database", &url],
            &[("CERTGATE_LOG_FORMAT", format)],
            EXIT_BOUND,
        );
        assert!(r.success, "CERTGATE_LOG_FORMAT={format:?}:\n{}", r.stderr);
    }
}

/// `CERTGATE_NO_BOOTSTRAP` takes 1/0 and yes/no as well as true/false (`1` used to be
/// refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bootstrap_accepts_1_0_yes_no_from_the_environment() {
    for (value, bootstraps) in [("1", false), ("yes", false), ("0", true), ("no", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("certgate.db").display());
        let mut server = Process::spawn(
            &["serve", "--listen", "127.0.0.1:0", "--database", &url],
            &[("CERTGATE_NO_BOOTSTRAP", value)],
        );
        server.listening("certgate serve listening").await;
        server.terminate_and_wait();
        assert_eq!(
            admin_key_in(&server.output()).is_some(),
            bootstraps,
            "CERTGATE_NO_BOOTSTRAP={value}:\n{}",
            server.output()
        );
    }
}

/// `--help` of a subcommand names its variables and the logging ones (the unit test in
/// `cli` checks every command; this is the binary as a user runs it).
#[test]
fn help_names_the_environment() {
    let r = run(&["gateway", "--help"], &[], EXIT_BOUND);
    assert!(r.success, "{}", r.stderr);
    for var in [
        "CERTGATE_TLS_KEY",
        "CERTGATE_DB_CONNECT_TIMEOUT",
        "RUST_LOG",
        "CERTGATE_LOG_FORMAT",
    ] {
        assert!(r.stdout.contains(var), "lacks {var}:\n{}", r.stdout);
    }
}
