//! `certgate cert check` and `certgate cert rotate` as operators run them: directly on the
//! database, beside a running `certgate serve` that sees their effects, with the exit status
//! saying admitted (0), refused (2) or could not check (1). Both backends.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::{db_tests, wall_clock, TestDb};
use crate::pki;
use crate::process::Process;
use crate::replicas::create_org;

db_tests!(cert_check_and_rotate_on_the_database);

const DAY: i64 = 86_400;

/// Runs `certgate ARGS --database URL`; returns (exit code, stdout, stderr).
fn certgate(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .args(["--database", &db.url])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run certgate");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_out(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("one JSON object: {out}"))
}

async fn cert_check_and_rotate_on_the_database(db: TestDb) {
    let (org, key) = create_org(&db, "Acme");
    let server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let api = server.api(&key);
    let old = pki::ca("Old CA");
    let old_id = api.upload(&old.pem(), Some("old")).await.id();
    api.toggle_org("activate", &[&old_id]).await;
    let project = api.create_project("p").await;
    let new = pki::ca("New CA");
    let new_id = api.upload(&new.pem(), Some("new")).await.id();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let now = wall_clock();
    let old_leaf = pki::leaf(&old, "c", now - DAY, now + 30 * DAY);
    let old_client = write("old-client.pem", &old_leaf.cert.pem());
    let new_client = write(
        "new-client.pem",
        &pki::leaf(&new, "c", now - DAY, now + 30 * DAY).cert.pem(),
    );

    // Admitted: exit 0, the answer names the CA.
    for extra in [vec![], vec!["--project", project.as_str()]] {
        let mut args = vec!["cert", "check", "--org", &org, &old_client];
        args.extend(&extra);
        let (code, out, err) = certgate(&db, &args);
        assert_eq!(code, 0, "{out}{err}");
        let answer = json_out(&out);
        assert_eq!(answer["object"], "organization.certificate_check");
        assert_eq!(answer["admitted"], true);
        assert_eq!(answer["certificate"], json!({"id": old_id, "name": "old"}));
    }
    // Refused: exit 2, the answer says why, with the gateway's code.
    let (code, out, err) = certgate(&db, &["cert", "check", "--org", &org, &new_client]);
    assert_eq!(code, 2, "{out}{err}");
    let answer = json_out(&out);
    assert_eq!(answer["admitted"], false);
    assert_eq!(answer["code"], "client_certificate_untrusted");
    // Could not check: exit 1, nothing on stdout, the reason (and its code) on stderr.
    let with_key = write(
        "with-key.pem",
        &format!("{}{}", old_leaf.cert.pem(), old_leaf.key.serialize_pem()),
    );
    let missing = dir
        .path()
        .join("missing.pem")
        .to_string_lossy()
        .into_owned();
    for (args, says) in [
        (
            vec![
                "cert",
                "check",
                "--org",
                &org,
                "--project",
                "proj_nope",
                &old_client,
            ],
            "unknown_project",
        ),
        (
            vec!["cert", "check", "--org", &org, &with_key],
            "private_key_not_allowed",
        ),
        (
            vec!["cert", "check", "--org", &org, &missing],
            "missing.pem",
        ),
        (
            vec!["cert", "check", "--org", "org-nope", &old_client],
            "org-nope",
        ),
    ] {
        let (code, out, err) = certgate(&db, &args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(out.trim().is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // Rotation, retiring the old CA: the running server sees it, and the audit log names no
    // actor.
    let (code, out, err) = certgate(
        &db,
        &[
            "cert",
            "rotate",
            "--org",
            &org,
            "--from",
            &old_id,
            "--to",
            &new_id,
            "--retire-from",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        json_out(&out),
        json!({
            "object": "organization.certificate_rotation",
            "from": old_id, "to": new_id,
            "organization": true, "projects": [], "retired": true,
        })
    );
    let listed = api.get("/organization/certificates").await;
    for c in listed.ok()["data"].as_array().unwrap() {
        assert_eq!(c["active"], c["id"] == new_id.as_str(), "{c}");
    }
    let events = api
        .get("/organization/audit_logs?event_types[]=certificates.activated&event_types[]=certificates.deactivated&limit=2")
        .await;
    let events = events.ok()["data"].as_array().unwrap().clone();
    assert_eq!(events[0]["type"], "certificates.deactivated");
    assert_eq!(events[1]["type"], "certificates.activated");
    for e in &events {
        assert_eq!(e["actor"], Value::Null, "the CLI acts as nobody: {e}");
    }
    let (code, out, _) = certgate(&db, &["cert", "check", "--org", &org, &new_client]);
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = certgate(&db, &["cert", "check", "--org", &org, &old_client]);
    assert_eq!(code, 2);

    // Refusals change nothing and say why.
    for (args, says) in [
        (
            vec![
                "cert", "rotate", "--org", &org, "--from", &old_id, "--to", &new_id,
            ],
            "certificate_not_active",
        ),
        (
            vec![
                "cert", "rotate", "--org", &org, "--from", &new_id, "--to", &new_id,
            ],
            "'to'",
        ),
        (
            vec![
                "cert",
                "rotate",
                "--org",
                &org,
                "--from",
                &new_id,
                "--to",
                "cert_nope",
            ],
            "cert_nope",
        ),
    ] {
        let (code, out, err) = certgate(&db, &args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let after = api
        .get("/organization/audit_logs?event_types[]=certificates.activated&event_types[]=certificates.deactivated")
        .await;
    assert_eq!(after.ok()["data"][0]["id"], events[0]["id"], "no new event");
}
