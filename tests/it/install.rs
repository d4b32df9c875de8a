//! What an installation consists of besides the binary: the man page and shell completions
//! it prints, the systemd units and the environment file in `dist/`. Checked against the
//! clap definitions, so a command or variable added later that they miss fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{in_ci, say_skipped};
use crate::process::run_cli;

/// Every visible command's full name (`certgate org create`), from the definitions.
fn command_names() -> Vec<String> {
    let mut cmd = certgate::cli::command();
    cmd.build();
    certgate::cli::generate::commands(&cmd, "certgate")
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| !path.split(' ').any(|word| word == "help"))
        .collect()
}

/// The variables the processes the units start (`serve`, `gateway`) read.
fn service_variables() -> Vec<String> {
    let cmd = certgate::cli::command();
    let mut vars: Vec<String> = ["serve", "gateway", "authz"]
        .iter()
        .flat_map(|name| {
            cmd.find_subcommand(name)
                .unwrap_or_else(|| panic!("no `{name}` subcommand"))
                .get_arguments()
                .filter_map(|a| a.get_env())
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    vars.extend(["RUST_LOG".to_owned(), "CERTGATE_LOG_FORMAT".to_owned()]);
    vars.sort();
    vars.dedup();
    vars
}

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(path)
}

#[test]
fn man_page_has_a_section_for_every_command() {
    let (ok, roff, err) = run_cli(&["man"]);
    assert!(ok, "{err}");
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "not roff:\n{roff}"
    );
    let names = command_names();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let heading = format!(".SH \"{}\"", name.to_uppercase());
        assert!(roff.contains(&heading), "no {heading}:\n{roff}");
    }
    for var in ["RUST_LOG", "CERTGATE_LOG_FORMAT", "CERTGATE_TLS_KEY"] {
        assert!(roff.contains(var), "the man page does not name {var}");
    }
}

#[test]
fn completions_cover_the_subcommands_in_every_shell() {
    let (ok, bash, err) = run_cli(&["completions", "bash"]);
    assert!(ok, "{err}");
    for word in [
        "serve",
        "gateway",
        "migrate",
        "--tls-key",
        "--db-connect-timeout",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (ok, script, err) = run_cli(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(
            script.contains("gateway"),
            "{shell} completion lacks gateway"
        );
    }
    let (ok, _, err) = run_cli(&["completions", "tcsh"]);
    assert!(!ok && err.contains("possible values"), "{err}");
}

/// `dist/certgate.env` lists every variable `serve`, `gateway` and `authz` read, and nothing else
/// that looks like one (a typo there would be silently ignored by certgate).
#[test]
fn env_file_documents_every_variable() {
    let text = std::fs::read_to_string(dist("certgate.env")).expect("dist/certgate.env");
    let known = service_variables();
    for var in &known {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{var}="))),
            "dist/certgate.env does not document {var}"
        );
    }
    for line in text.lines() {
        let setting = line.trim_start_matches('#');
        let Some((name, _)) = setting.split_once('=') else {
            continue;
        };
        let looks_like_a_variable =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        if looks_like_a_variable {
            assert!(
                known.iter().any(|k| k == name),
                "dist/certgate.env sets {name}, which certgate does not read"
            );
        }
    }
}

/// Runs `systemd-analyze ARGS` and returns (success, stdout + stderr); `None` (after saying
/// so) where systemd-analyze is missing, except in CI (`CI=true`), where that fails.
fn systemd_analyze(args: &[&str], dir: &Path) -> Option<(bool, String)> {
    match Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) => {
            assert!(!in_ci(), "systemd-analyze is required in CI: {e}");
            say_skipped(&format!(
                "systemd unit checks (no systemd-analyze: {e}); install systemd to run them"
            ));
            None
        }
    }
}

/// The units load without a single warning (systemd only warns about unknown keys and
/// invalid values, and ignores them), and their hardening keeps exposure low.
#[test]
fn systemd_units_verify() {
    let units = ["certgate-serve.service", "certgate-gateway.service"];
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    for unit in units {
        let text = std::fs::read_to_string(dist(&format!("systemd/{unit}"))).expect(unit);
        assert!(
            text.contains("ExecStart=/usr/bin/certgate "),
            "{unit}: ExecStart"
        );
        assert!(
            text.contains("EnvironmentFile=-/etc/certgate/certgate.env"),
            "{unit}: EnvironmentFile"
        );
        let text = text.replace("/usr/bin/certgate", env!("CARGO_BIN_EXE_certgate"));
        std::fs::write(dir.path().join(unit), text).expect("write unit");
    }
    let gateway = std::fs::read_to_string(dist("systemd/certgate-gateway.service")).unwrap();
    assert!(
        gateway
            .lines()
            .any(|l| l.starts_with("After=") && l.contains("certgate-serve.service")),
        "the gateway starts after serve when both run"
    );

    let paths: Vec<String> = units.iter().map(|u| format!("./{u}")).collect();
    let mut args = vec!["verify", "--man=no"];
    args.extend(paths.iter().map(String::as_str));
    let Some((ok, output)) = systemd_analyze(&args, dir.path()) else {
        return;
    };
    assert!(
        ok && output.trim().is_empty(),
        "systemd-analyze verify:\n{output}"
    );
    for unit in &paths {
        // Exposure 0 (locked down) to 10; both units are at about 1.5-1.7 ("OK").
        let (ok, output) = systemd_analyze(
            &["security", "--offline=yes", "--threshold=25", unit],
            dir.path(),
        )
        .expect("systemd-analyze ran a moment ago");
        let overall = output.lines().last().unwrap_or_default();
        assert!(ok, "{unit} exposure above 2.5: {overall}");
    }
}

/// Control: verify's output check above does catch a faulty unit.
#[test]
fn systemd_verify_output_check_catches_a_typo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(dist("systemd/certgate-serve.service"))
        .expect("unit")
        .replace("/usr/bin/certgate", env!("CARGO_BIN_EXE_certgate"))
        .replace("NoNewPrivileges=", "NoNewPrivilegs=");
    std::fs::write(dir.path().join("typo.service"), text).expect("write unit");
    let Some((_, output)) = systemd_analyze(&["verify", "--man=no", "./typo.service"], dir.path())
    else {
        return;
    };
    assert!(output.contains("NoNewPrivilegs"), "{output}");
}

/// The packaged configuration sends the first admin key to a 0600 file, never to stdout
/// (which systemd hands to the journal): `serve` run with exactly the settings
/// `dist/certgate.env` makes (its state directory moved to a temporary one) prints no key.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_settings_keep_the_first_key_out_of_the_journal() {
    use std::os::unix::fs::PermissionsExt;

    let state = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dist("certgate.env")).expect("dist/certgate.env");
    let settings: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.replace("/var/lib/certgate", &state.path().display().to_string());
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let key_file = settings
        .iter()
        .find(|(k, _)| k == "CERTGATE_ADMIN_KEY_FILE")
        .map(|(_, v)| PathBuf::from(v))
        .expect("dist/certgate.env sets CERTGATE_ADMIN_KEY_FILE");
    let env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut serve = crate::process::Process::spawn(&["serve", "--listen", "127.0.0.1:0"], &env);
    serve.listening("certgate serve listening").await;
    serve.terminate_and_wait();
    assert_eq!(
        serve.bootstrap_key(),
        None,
        "no key on stdout or in the logs:\n{}",
        serve.output()
    );
    let written = std::fs::read_to_string(&key_file).expect("the key file");
    assert!(written.trim().starts_with("sk-admin-"), "{written}");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{:o}", mode & 0o777);
}
