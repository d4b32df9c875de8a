//! The real binary as operators run it: `migrate`, `org create`, bootstrap, several `serve`
//! replicas on one database, and `kill -9`. Every case runs on SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::Api;
use crate::helpers::{db_tests, TestDb};
use crate::pki;
use crate::process::{admin_key_in, run_cli, Process};

db_tests!(
    org_create_and_bootstrap,
    replicas_bootstrap_exactly_once,
    replicas_keep_the_invariants,
    kill_9_keeps_acknowledged_writes,
);

/// `certgate org create` on `db`; returns (org id, admin key).
pub fn create_org(db: &TestDb, name: &str) -> (String, String) {
    let (ok, out, err) = run_cli(&["org", "create", "--name", name, "--database", &db.url]);
    assert!(ok, "org create failed: {err}");
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|_| panic!("one JSON object on stdout: {out}"));
    let id = v["organization"]["id"].as_str().expect("organization.id");
    assert!(id.starts_with("org-"), "{v}");
    assert_eq!(v["organization"]["name"], name);
    assert!(v["organization"]["created_at"].is_i64());
    assert!(v["admin_key"]["id"]
        .as_str()
        .is_some_and(|k| k.starts_with("key_")));
    let key = v["admin_key"]["value"].as_str().expect("admin_key.value");
    assert!(key.starts_with("sk-admin-"));
    (id.to_owned(), key.to_owned())
}

async fn org_create_and_bootstrap(db: TestDb) {
    // `migrate` alone prepares the schema.
    let (ok, _, err) = run_cli(&["migrate", "--database", &db.url]);
    assert!(ok, "{err}");
    // --no-bootstrap: no default organization, nothing printed. Asked once the process has
    // exited, so that all it wrote has been read: an absence is only an absence then.
    let mut quiet = Process::serve(&db.url, &["--no-bootstrap"]).await;
    quiet.process.terminate_and_wait();
    assert_eq!(
        quiet.process.bootstrap_key(),
        None,
        "{}",
        quiet.process.output()
    );
    // A fresh database started normally prints the default organization's key once. It is
    // printed (on stdout) before the "listening" line (on stderr), but each stream has its
    // own reader thread, so it may not have been read yet.
    let mut first = Process::serve(&db.url, &[]).await;
    let started = std::time::Instant::now();
    let key = loop {
        if let Some(key) = first.process.bootstrap_key() {
            break key;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bootstrap key printed:\n{}",
            first.process.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.api(&key).get("/organization/certificates").await.ok();
    first.process.terminate_and_wait();
    let mut again = Process::serve(&db.url, &[]).await;
    // And the key still works after the restart; `org create` makes a separate tenant.
    let mine = again.api(&key);
    mine.get("/organization/certificates").await.ok();
    let (_, other) = create_org(&db, "Second");
    let theirs = again.api(&other);
    theirs.upload(&pki::ca("Mine").pem(), None).await.ok();
    assert_eq!(theirs.all_ids().await.len(), 1);
    assert!(mine.all_ids().await.is_empty(), "tenants are separate");
    again.process.terminate_and_wait();
    assert_eq!(
        again.process.bootstrap_key(),
        None,
        "the key is shown only once:\n{}",
        again.process.output()
    );
}

async fn replicas_bootstrap_exactly_once(db: TestDb) {
    // A replica that cannot listen exits before bootstrapping: the key is not spent on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = taken.local_addr().expect("bound address").to_string();
    let (ok, out, err) = run_cli(&["serve", "--listen", &addr, "--database", &db.url]);
    assert!(!ok && err.contains("cannot listen"), "{err}");
    assert_eq!(admin_key_in(&format!("{out}{err}")), None, "{out}{err}");

    let (ok, _, err) = run_cli(&["migrate", "--database", &db.url]);
    assert!(ok, "{err}");
    let (mut a, mut b) = tokio::join!(Process::serve(&db.url, &[]), Process::serve(&db.url, &[]));
    // Counted once both have exited and everything they wrote has been read.
    a.process.terminate_and_wait();
    b.process.terminate_and_wait();
    let printed = [&a, &b]
        .iter()
        .filter_map(|s| s.process.bootstrap_key())
        .count();
    assert_eq!(
        printed, 1,
        "exactly one replica creates and prints the default organization"
    );
}

/// The ids of the organization's certificates and whether each is active, as `api` sees them.
async fn states(api: &Api) -> Vec<(String, bool)> {
    api.list_all("/organization/certificates")
        .await
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["active"].as_bool().expect("active"),
            )
        })
        .collect()
}

async fn replicas_keep_the_invariants(db: TestDb) {
    let (_, key) = create_org(&db, "Replicated");
    // 40 writers per replica queue for one organization at once; on SQLite the second
    // process also waits on the file lock. A generous database timeout keeps this a test of
    // the invariants, not of the machine's speed.
    let args = ["--no-bootstrap", "--db-timeout", "60s"];
    let (r1, r2) = tokio::join!(
        Process::serve(&db.url, &args),
        Process::serve(&db.url, &args)
    );
    let apis = [r1.api(&key), r2.api(&key)];

    // Both replicas have served (and may have cached) the empty list before the writes.
    for api in &apis {
        assert!(api.all_ids().await.is_empty());
    }
    // 80 concurrent uploads across both replicas into an empty organization: exactly 50 win.
    let mut tasks = Vec::new();
    for i in 0..80 {
        let api = apis[i % 2].clone();
        let pem = pki::ca(&format!("Replica race {i}")).pem();
        tasks.push(tokio::spawn(async move { api.upload(&pem, None).await }));
    }
    let mut won = HashSet::new();
    for t in tasks {
        let a = t.await.expect("upload task");
        if a.status == 200 {
            won.insert(a.id());
        } else {
            a.err(400, Some("certificate_limit_reached"), Some("certificate"));
        }
    }
    assert_eq!(won.len(), 50);
    for api in &apis {
        let listed: HashSet<String> = api.all_ids().await.into_iter().collect();
        assert_eq!(listed, won, "every replica lists exactly the 50 winners");
    }

    // Concurrent activate/deactivate of the same 10 ids on both replicas: all-or-nothing.
    let ten: Vec<String> = won.iter().take(10).cloned().collect();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (api, mut ids) = (apis[i % 2].clone(), ten.clone());
        ids.rotate_left(i % 10);
        let verb = if i % 2 == 0 { "activate" } else { "deactivate" };
        tasks.push(tokio::spawn(async move {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            api.toggle_org(verb, &ids).await;
        }));
    }
    for t in tasks {
        t.await.expect("toggle task");
    }
    let of_ten = |all: Vec<(String, bool)>| -> HashSet<bool> {
        let mine: Vec<bool> = all
            .into_iter()
            .filter(|(id, _)| ten.contains(id))
            .map(|(_, active)| active)
            .collect();
        assert_eq!(mine.len(), 10, "all ten listed");
        mine.into_iter().collect()
    };
    let settled = of_ten(states(&apis[1]).await);
    assert_eq!(settled.len(), 1, "the ten end in one state: {settled:?}");
    // A write on one replica is seen by the very next read on the other. The write flips the
    // state the race left, so the read can tell it from what was there before.
    let was_active = settled.contains(&true);
    let ten_refs: Vec<&str> = ten.iter().map(String::as_str).collect();
    let flip = if was_active { "deactivate" } else { "activate" };
    apis[0].toggle_org(flip, &ten_refs).await;
    assert_eq!(
        of_ten(states(&apis[1]).await),
        HashSet::from([!was_active]),
        "the other replica sees the last write"
    );

    // Delete racing activate on one certificate, on different replicas: never both succeed.
    let spare: Vec<String> = apis[0]
        .all_ids()
        .await
        .into_iter()
        .filter(|id| !ten.contains(id))
        .take(10)
        .collect();
    assert_eq!(spare.len(), 10);
    for (i, id) in spare.iter().enumerate() {
        let path = format!("/organization/certificates/{id}");
        let (d, a) = tokio::join!(
            apis[i % 2].delete(&path),
            apis[(i + 1) % 2].post(
                "/organization/certificates/activate",
                json!({"certificate_ids": [id]}),
            )
        );
        let (d, a) = (d.status.as_u16(), a.status.as_u16());
        assert!(
            matches!((d, a), (200, 404) | (409, 200)),
            "delete {d} / activate {a}"
        );
        let after = apis[0].get(&path).await;
        if d == 200 {
            after.err(404, None, None);
        } else {
            after.ok();
        }
    }
}

/// How many acknowledged writes to collect before pulling the plug.
const ACKED_BEFORE_KILL: usize = 60;

async fn kill_9_keeps_acknowledged_writes(db: TestDb) {
    let (_, key) = create_org(&db, "Durable");
    let mut server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let api = server.api(&key);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let reached = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..8 {
        let (api, acked, reached) = (api.clone(), acked.clone(), reached.clone());
        // Each writer runs until the server is gone: a request then fails, which ends it.
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let body = json!({"name": format!("w{w}-{n}")});
                let Ok(a) = api.try_post("/organization/projects", body).await else {
                    return;
                };
                if a.status != 200 {
                    return;
                }
                let mut acked = acked.lock().expect("acked");
                acked.push(a.id());
                if acked.len() >= ACKED_BEFORE_KILL {
                    reached.notify_one();
                }
            }
        }));
    }
    // Pull the plug mid-stream, once enough writes are acknowledged. The ceiling only stops a
    // broken server from hanging the run: it is not a speed requirement.
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} writes acknowledged within 60 s:\n{}",
                acked.lock().expect("acked").len(),
                server.process.output()
            )
        });
    server.process.kill();
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let restarted = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let present: HashSet<String> = restarted
        .api(&key)
        .list_all("/organization/projects")
        .await
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost after kill -9: {lost:?}",
        lost.len()
    );
    // Each acknowledged write kept its audit event (written in the same transaction).
    let logged: HashSet<String> = restarted
        .api(&key)
        .list_all("/organization/audit_logs")
        .await
        .iter()
        .filter(|e| e["type"] == "project.created")
        .map(|e| e["project.created"]["id"].as_str().expect("id").to_owned())
        .collect();
    let unlogged: Vec<&String> = acked.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        unlogged.is_empty(),
        "acknowledged writes without their event after kill -9: {unlogged:?}"
    );
    assert!(
        logged.iter().all(|id| present.contains(id)),
        "an event without its write"
    );
}

/// SQLite: a process whose every other connection has closed (its pool's and its writer
/// thread's, as an idle `serve`'s may) still sees a key revoked by another process at its
/// next check: the change marker its key cache relies on keeps reading the `-shm` file every
/// process maps, because the change detector's own connections hold it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_elsewhere_stops_where_only_the_change_detector_is_open() {
    use certgate::store::{Store, StoreError, StoreOptions};

    let db = TestDb::new(crate::helpers::Db::Sqlite)
        .await
        .expect("a SQLite file");
    let (ok, out, err) = run_cli(&["org", "create", "--name", "Idle", "--database", &db.url]);
    assert!(ok, "org create failed: {err}");
    let made: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let key = made["admin_key"]["value"]
        .as_str()
        .expect("value")
        .to_owned();
    let key_id = made["admin_key"]["id"].as_str().expect("id").to_owned();

    let clock = certgate::domain::ManualClock::new(crate::helpers::wall_clock());
    // As `serve` opens it: with the writer thread and the change detector.
    let store = Store::open(&StoreOptions::new(&db.url), clock)
        .await
        .expect("open the database");
    assert!(store.authenticate(&key).await.expect("check").is_some());
    // The key's first use is written at once (a commit): checked again after it, the key is
    // cached at a marker that nothing moves until the revocation below.
    store.flush_key_usage().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.authenticate(&key).await.expect("check").is_some());
    // Every connection of this process closes but the change detector's.
    store.close().await;
    let path = db.url.strip_prefix("sqlite://").expect("a file URL");
    assert!(
        std::path::Path::new(&format!("{path}-shm")).exists(),
        "the -shm file outlives the other connections"
    );
    // Control: with nothing committed, the check is answered from the cache, pool or not.
    assert!(
        matches!(store.authenticate(&key).await, Ok(Some(_))),
        "served from the key cache"
    );

    let (ok, _, err) = run_cli(&["key", "revoke", &key_id, "--force", "--database", &db.url]);
    assert!(ok, "key revoke failed: {err}");
    // The marker moved, so the check goes to the database (closed here) instead of the cache.
    let after = store.authenticate(&key).await;
    assert!(
        matches!(after, Err(StoreError::Unavailable(_))),
        "the revoked key must not be answered from the cache: {after:?}"
    );
}
