//! The key and organization commands as operators run them, where new keys go
//! (`--admin-key-file`, stdout, never a log line), and audit events surviving `kill -9` right
//! after acknowledged changes. Every case runs on SQLite and PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Api;
use crate::helpers::{db_tests, TestDb};
use crate::pki;
use crate::process::{admin_key_in, run_cli, run_cli_env, Process, Server};
use crate::replicas::create_org;

db_tests!(
    key_commands,
    admin_key_file,
    json_logs_never_carry_the_key,
    kill_9_right_after_acknowledged_changes_keeps_their_events,
    audit_retention_days,
);

/// Runs `certgate` with `args` on `db`; asserts success and returns stdout as JSON.
fn cli_json(db: &TestDb, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--database", &db.url]);
    let (ok, out, err) = run_cli(&all);
    assert!(ok, "certgate {args:?} failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("one JSON object: {out}"))
}

/// Runs `certgate` with `args` on `db`; asserts it fails and returns stderr.
fn cli_refused(db: &TestDb, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--database", &db.url]);
    let (ok, out, err) = run_cli(&all);
    assert!(!ok, "certgate {args:?} should fail: {out}");
    err
}

/// The audit events of one type, newest first.
async fn events(api: &Api, kind: &str) -> Vec<Value> {
    let page = api
        .get(&format!(
            "/organization/audit_logs?limit=100&event_types[]={kind}"
        ))
        .await;
    page.ok()["data"].as_array().unwrap().clone()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn key_commands(db: TestDb) {
    let (org, first) = create_org(&db, "Acme");
    let orgs = cli_json(&db, &["org", "list"]);
    assert_eq!(orgs["object"], "list");
    let listed: Vec<&str> = orgs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [org.as_str()]);

    let made = cli_json(
        &db,
        &[
            "key",
            "create",
            "--org",
            &org,
            "--name",
            "CI",
            "--expires-in",
            "3600",
        ],
    );
    assert_eq!(made["object"], "organization.admin_api_key");
    assert_eq!(made["name"], "CI");
    assert_eq!(
        made["expires_at"].as_i64().unwrap(),
        made["created_at"].as_i64().unwrap() + 3600
    );
    assert_eq!(made["owner"]["role"], "owner");
    let ci_key = made["value"].as_str().unwrap().to_owned();
    let ci_id = made["id"].as_str().unwrap().to_owned();
    // Refusals change nothing.
    let err = cli_refused(
        &db,
        &[
            "key",
            "create",
            "--org",
            &org,
            "--name",
            "x",
            "--expires-in",
            "0",
        ],
    );
    assert!(err.contains("expires_in_seconds"), "{err}");
    let err = cli_refused(&db, &["key", "create", "--org", "org-nope", "--name", "x"]);
    assert!(err.contains("org-nope"), "{err}");
    let keys = cli_json(&db, &["key", "list", "--org", &org]);
    let text = keys.to_string();
    assert_eq!(keys["data"].as_array().unwrap().len(), 2, "{keys}");
    assert!(
        !text.contains(&ci_key) && !text.contains(&first),
        "never a value: {text}"
    );

    let server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let api = server.api(&first);
    let ci = server.api(&ci_key);
    ci.get("/organization/certificates").await.ok();
    let created = events(&api, "api_key.created").await;
    assert_eq!(created[0]["api_key.created"]["id"], ci_id.as_str());
    assert_eq!(created[0]["actor"], Value::Null, "the CLI acts as nobody");

    // Revoked on the database: the running server refuses it from the next request on.
    let revoked = cli_json(&db, &["key", "revoke", &ci_id]);
    assert_eq!(
        revoked,
        json!({"id": ci_id, "object": "organization.admin_api_key.deleted", "deleted": true})
    );
    ci.get("/organization/certificates")
        .await
        .err(401, Some("invalid_api_key"), None);
    let deleted = events(&api, "api_key.deleted").await;
    assert_eq!(deleted[0]["api_key.deleted"]["id"], ci_id.as_str());
    assert_eq!(deleted[0]["actor"], Value::Null);
    cli_refused(&db, &["key", "revoke", &ci_id]);

    // The last unexpired key is refused unless --force.
    let first_id = cli_json(&db, &["key", "list", "--org", &org])["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = cli_refused(&db, &["key", "revoke", &first_id]);
    assert!(err.contains("--force") && err.contains("last"), "{err}");
    api.get("/organization/certificates").await.ok();
    cli_json(&db, &["key", "revoke", &first_id, "--force"]);
    api.get("/organization/certificates")
        .await
        .err(401, Some("invalid_api_key"), None);
    // The CLI is always the way back in.
    let again = cli_json(&db, &["key", "create", "--org", &org, "--name", "back"]);
    let back = server.api(again["value"].as_str().unwrap());
    assert_eq!(events(&back, "api_key.deleted").await.len(), 2);
}

async fn admin_key_file(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    // serve refuses an existing file before creating anything...
    std::fs::write(path("taken"), "mine\n").unwrap();
    let (ok, out, err) = run_cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db.url,
        "--admin-key-file",
        &path("taken"),
    ]);
    assert!(!ok && err.contains("already exists"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(path("taken")).unwrap(), "mine\n");
    assert!(cli_json(&db, &["org", "list"])["data"]
        .as_array()
        .unwrap()
        .is_empty());
    // ...and with a new path, bootstraps into it (0600) and prints no key anywhere.
    let mut server = Process::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--database", &db.url],
        &[("CERTGATE_ADMIN_KEY_FILE", path("boot").as_str())],
    );
    let addr = server.listening("certgate serve listening").await;
    let boot = std::fs::read_to_string(path("boot")).unwrap();
    assert!(
        boot.starts_with("sk-admin-") && boot.ends_with('\n'),
        "{boot}"
    );
    #[cfg(unix)]
    assert_eq!(mode(Path::new(&path("boot"))), 0o600);
    Api::new(addr, Some(boot.trim()))
        .get("/organization/certificates")
        .await
        .ok();
    server.terminate_and_wait();
    assert_eq!(admin_key_in(&server.output()), None, "{}", server.output());
    let printed: Value = serde_json::from_str(server.stdout().trim()).unwrap();
    assert!(printed["admin_key"]["id"]
        .as_str()
        .unwrap()
        .starts_with("key_"));
    assert!(printed["admin_key"].get("value").is_none(), "{printed}");

    // org create: the key to the file, the rest on stdout.
    let made = cli_json(
        &db,
        &[
            "org",
            "create",
            "--name",
            "Filed",
            "--admin-key-file",
            &path("org"),
        ],
    );
    assert!(made["admin_key"].get("value").is_none(), "{made}");
    assert!(!made.to_string().contains("sk-admin-"), "{made}");
    let org = made["organization"]["id"].as_str().unwrap().to_owned();
    let org_key = std::fs::read_to_string(path("org")).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(Path::new(&path("org"))), 0o600);
    // Never overwritten: the second command is refused and makes nothing.
    let err = cli_refused(
        &db,
        &[
            "org",
            "create",
            "--name",
            "Again",
            "--admin-key-file",
            &path("org"),
        ],
    );
    assert!(
        err.contains("already exists") && err.contains("org"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(path("org")).unwrap(), org_key);
    assert_eq!(
        cli_json(&db, &["org", "list"])["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    cli_refused(
        &db,
        &[
            "key",
            "create",
            "--org",
            &org,
            "--name",
            "k",
            "--admin-key-file",
            &path("org"),
        ],
    );
    assert_eq!(
        cli_json(&db, &["key", "list", "--org", &org])["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // key create, through the environment variable.
    let mut args = vec![
        "key",
        "create",
        "--org",
        &org,
        "--name",
        "k",
        "--database",
        &db.url,
    ];
    let (ok, out, err) = run_cli_env(&args, &[("CERTGATE_ADMIN_KEY_FILE", path("k").as_str())]);
    assert!(ok, "{err}");
    assert!(admin_key_in(&format!("{out}{err}")).is_none(), "{out}{err}");
    let k = std::fs::read_to_string(path("k")).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(Path::new(&path("k"))), 0o600);
    // A refused key create (unknown organization) leaves no file behind.
    args[3] = "org-nope";
    let (ok, _, _) = run_cli_env(&args, &[("CERTGATE_ADMIN_KEY_FILE", path("nope").as_str())]);
    assert!(!ok && !Path::new(&path("nope")).exists());
    // Both keys work.
    let server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    for key in [org_key.trim(), k.trim()] {
        server.api(key).get("/organization/certificates").await.ok();
    }
}

async fn json_logs_never_carry_the_key(db: TestDb) {
    let mut server = Process::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--database", &db.url],
        &[("CERTGATE_LOG_FORMAT", "json")],
    );
    // In JSON mode the address is a field of the "listening" line.
    let started = Instant::now();
    let addr = loop {
        let logs = server.stderr();
        let listening = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "certgate serve listening");
        if let Some(v) = listening {
            break v["fields"]["listen"].as_str().unwrap().parse().unwrap();
        }
        assert!(server.exited().is_none(), "{}", server.output());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let key = admin_key_in(&server.stdout()).unwrap_or_else(|| panic!("{}", server.output()));
    let api = Api::new(addr, Some(&key));
    api.upload(&pki::ca("Logged").pem(), None).await.ok();
    api.get("/organization/admin_api_keys").await.ok();
    api.post("/organization/admin_api_keys", json!({"name": "more"}))
        .await
        .ok();
    server.terminate_and_wait();
    let logs = server.stderr();
    assert!(!logs.contains("sk-admin-"), "a key in a log line:\n{logs}");
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    // stdout holds the one bootstrap answer, nothing else.
    let out = server.stdout();
    assert_eq!(out.lines().count(), 1, "{out}");
    let printed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(printed["admin_key"]["value"], key.as_str());
}

/// Changes acknowledged just before `kill -9` keep their events: after a restart, the log
/// has one for each.
async fn kill_9_right_after_acknowledged_changes_keeps_their_events(db: TestDb) {
    let (_, key) = create_org(&db, "Durable audit");
    let mut expected: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        let mut server: Server = Process::serve(&db.url, &["--no-bootstrap"]).await;
        let api = server.api(&key);
        let made = api
            .post(
                "/organization/admin_api_keys",
                json!({"name": format!("r{round}")}),
            )
            .await
            .id();
        expected.push(("api_key.created".into(), made.clone()));
        let cert = api
            .upload(&pki::ca(&format!("Round {round}")).pem(), None)
            .await
            .id();
        expected.push(("certificate.created".into(), cert));
        let project = api.create_project(&format!("Round {round}")).await;
        expected.push(("project.created".into(), project));
        api.delete(&format!("/organization/admin_api_keys/{made}"))
            .await
            .ok();
        expected.push(("api_key.deleted".into(), made));
        // Pulled right after the last acknowledgement.
        server.process.kill();
    }
    let server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let api = server.api(&key);
    let all = api.list_all("/organization/audit_logs").await;
    let mut seen: Vec<(String, String)> = all
        .iter()
        .rev()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_owned();
            let id = e[&kind]["id"].as_str().unwrap().to_owned();
            (kind, id)
        })
        .collect();
    // The organization's birth came first (its Default project and first key).
    let born: Vec<String> = seen.drain(..2).map(|(k, _)| k).collect();
    assert_eq!(born, ["project.created", "api_key.created"]);
    assert_eq!(seen, expected);
}

/// `serve --audit-retention-days N` deletes events older than N days, and only those: with
/// N = 1, an event a day and two minutes old goes, one two minutes short of a day stays.
async fn audit_retention_days(db: TestDb) {
    let (_, key) = create_org(&db, "Retained");
    // Age the organization's birth events by a day and two minutes, and the newest of them
    // by two minutes short of a day, directly in the database.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE audit_events SET effective_at = effective_at - 86520")
        .execute(&pool)
        .await
        .unwrap();
    let kept: (String,) =
        sqlx::query_as("SELECT id FROM audit_events ORDER BY effective_at DESC, id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("UPDATE audit_events SET effective_at = effective_at + 240 WHERE id = $1")
        .bind(&kept.0)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let server = Process::serve(&db.url, &["--no-bootstrap", "--audit-retention-days", "1"]).await;
    let api = server.api(&key);
    let recent = api.create_project("recent").await;
    let started = Instant::now();
    loop {
        let all = api.list_all("/organization/audit_logs").await;
        if all.len() <= 2 {
            let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
            assert_eq!(all[0]["project.created"]["id"], recent.as_str());
            assert_eq!(
                ids[1..],
                [kept.0.as_str()],
                "the event two minutes short of a day old stays: {all:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "old events kept: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
