//! Start-up and the environment: the log format, boolean variables, and `--help`.

use super::{run, EXIT_BOUND};
use crate::process::{admin_key_in, Process};

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
