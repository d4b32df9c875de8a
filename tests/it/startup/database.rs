//! Start-up and the database: missing, unmigrated or partly migrated, unreachable, silent,
//! or created on first run.

use std::time::{Duration, Instant};

use super::{execute, gateway, named, run, sqlite_path, utf8, TlsFiles, EXIT_BOUND};
use crate::bounds::assert_on_time;
use crate::helpers::{db_tests, Db, TestDb};
use crate::process::{CuttableProxy, Process, ReservedPort};

db_tests!(
    gateway_refuses_an_unmigrated_database,
    gateway_refuses_a_partly_migrated_database,
);

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
