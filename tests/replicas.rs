//! The real binary as operators run it: `org create`, bootstrap, several `serve` replicas on
//! one database, `kill -9`, and a database that goes away (PostgreSQL behind a TCP proxy).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pki, run_cli, Process, TestDb};
use serde_json::{json, Value};

async fn post(base: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn get(base: &str, key: &str, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// `certgate org create` on `db`; returns (org id, admin key).
fn create_org(db: &TestDb, name: &str) -> (String, String) {
    let (ok, out, err) = run_cli(&["org", "create", "--name", name, "--database", &db.url]);
    assert!(ok, "org create failed: {err}");
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|_| panic!("one JSON object on stdout: {out}"));
    assert!(v["organization"]["id"]
        .as_str()
        .unwrap()
        .starts_with("org-"));
    assert_eq!(v["organization"]["name"], name);
    assert!(v["organization"]["created_at"].is_i64());
    assert!(v["admin_key"]["id"].as_str().unwrap().starts_with("key_"));
    let key = v["admin_key"]["value"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-admin-"));
    (v["organization"]["id"].as_str().unwrap().to_owned(), key)
}

db_tests!(
    org_create_and_bootstrap,
    replicas_bootstrap_exactly_once,
    replicas_keep_the_invariants,
    kill_9_keeps_acknowledged_writes,
);

async fn org_create_and_bootstrap(db: TestDb) {
    // `migrate` alone prepares the schema.
    let (ok, _, err) = run_cli(&["migrate", "--database", &db.url]);
    assert!(ok, "{err}");
    // --no-bootstrap: no default organization, nothing printed.
    let quiet = Process::serve(&db.url, &["--no-bootstrap"]).await;
    assert!(quiet.bootstrap_key().is_none());
    drop(quiet);
    // A fresh database started normally prints the default organization's key once.
    let first = Process::serve(&db.url, &[]).await;
    let key = first.bootstrap_key().expect("bootstrap key on stderr");
    let (status, list) = get(&first.base(), &key, "/organization/certificates").await;
    assert_eq!(status, 200, "{list}");
    let mut first = first;
    first.terminate_and_wait();
    let again = Process::serve(&db.url, &[]).await;
    assert!(
        again.bootstrap_key().is_none(),
        "the key is shown only once"
    );
    // And the key still works after the restart; `org create` makes a separate tenant.
    assert_eq!(
        get(&again.base(), &key, "/organization/certificates")
            .await
            .0,
        200
    );
    let (_, other) = create_org(&db, "Second");
    let ca = pki::ca("Mine");
    let (s, up) = post(
        &again.base(),
        &other,
        "/organization/certificates",
        json!({"certificate": ca.pem()}),
    )
    .await;
    assert_eq!(s, 200, "{up}");
    let (_, theirs) = get(&again.base(), &key, "/organization/certificates").await;
    assert!(
        theirs["data"].as_array().unwrap().is_empty(),
        "tenants are separate"
    );
}

async fn replicas_bootstrap_exactly_once(db: TestDb) {
    // A replica that cannot listen exits before bootstrapping: the key is not spent on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = run_cli(&["serve", "--listen", &addr, "--database", &db.url]);
    assert!(
        !ok && err.contains("cannot listen") && !err.contains("sk-admin-"),
        "{err}"
    );

    let (ok, _, err) = run_cli(&["migrate", "--database", &db.url]);
    assert!(ok, "{err}");
    let (a, b) = tokio::join!(Process::serve(&db.url, &[]), Process::serve(&db.url, &[]));
    let printed = [a.bootstrap_key(), b.bootstrap_key()]
        .into_iter()
        .flatten()
        .count();
    assert_eq!(
        printed, 1,
        "exactly one replica creates and prints the default organization"
    );
}

async fn replicas_keep_the_invariants(db: TestDb) {
    let (_, key) = create_org(&db, "Replicated");
    let (r1, r2) = tokio::join!(
        Process::serve(&db.url, &["--no-bootstrap"]),
        Process::serve(&db.url, &["--no-bootstrap"])
    );
    let bases = Arc::new([r1.base(), r2.base()]);

    // Both replicas have served (and may have cached) the empty list before the writes.
    for base in bases.iter() {
        let (_, list) = get(base, &key, "/organization/certificates?limit=100").await;
        assert!(list["data"].as_array().unwrap().is_empty());
    }
    // 80 concurrent uploads across both replicas into an empty organization: exactly 50 win.
    let pems: Vec<String> = (0..80)
        .map(|i| pki::ca(&format!("Replica race {i}")).pem())
        .collect();
    let mut tasks = Vec::new();
    for (i, pem) in pems.into_iter().enumerate() {
        let (bases, key) = (bases.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            post(
                &bases[i % 2],
                &key,
                "/organization/certificates",
                json!({"certificate": pem}),
            )
            .await
        }));
    }
    let mut won = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            (200, v) => {
                won.insert(v["id"].as_str().unwrap().to_owned());
            }
            (400, v) => assert_eq!(v["error"]["code"], "certificate_limit_reached", "{v}"),
            (s, v) => panic!("unexpected {s}: {v}"),
        }
    }
    assert_eq!(won.len(), 50);
    for base in bases.iter() {
        let (_, list) = get(base, &key, "/organization/certificates?limit=100").await;
        let listed: HashSet<String> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, won, "every replica lists exactly the 50 winners");
    }

    // Concurrent activate/deactivate of the same 10 ids on both replicas: all-or-nothing.
    let ten: Vec<String> = won.iter().take(10).cloned().collect();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (bases, key, mut ids) = (bases.clone(), key.clone(), ten.clone());
        ids.rotate_left(i % 10);
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/organization/certificates/activate"
            } else {
                "/organization/certificates/deactivate"
            };
            post(&bases[i % 2], &key, path, json!({"certificate_ids": ids}))
                .await
                .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // A write on one replica is seen by the very next read on the other.
    let last = post(
        &bases[0],
        &key,
        "/organization/certificates/activate",
        json!({"certificate_ids": ten}),
    )
    .await;
    assert_eq!(last.0, 200);
    let (_, list) = get(&bases[1], &key, "/organization/certificates?limit=100").await;
    let states: HashSet<bool> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| ten.contains(&c["id"].as_str().unwrap().to_owned()))
        .map(|c| c["active"].as_bool().unwrap())
        .collect();
    assert_eq!(
        states,
        HashSet::from([true]),
        "the ten end in one state, the last one written"
    );

    // Delete racing activate on one certificate, on different replicas: never both succeed.
    let (_, list) = get(&bases[0], &key, "/organization/certificates?limit=100").await;
    let spare: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .filter(|id| !ten.contains(id))
        .take(10)
        .collect();
    for (i, id) in spare.iter().enumerate() {
        let del = async {
            let res = reqwest::Client::new()
                .delete(format!("{}/organization/certificates/{id}", bases[i % 2]))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        };
        let act = post(
            &bases[(i + 1) % 2],
            &key,
            "/organization/certificates/activate",
            json!({"certificate_ids": [id]}),
        );
        let (d, (a, _)) = tokio::join!(del, act);
        assert!(
            matches!((d, a), (200, 404) | (409, 200)),
            "delete {d} / activate {a}"
        );
        let (g, _) = get(&bases[0], &key, &format!("/organization/certificates/{id}")).await;
        assert_eq!(
            g,
            if d == 200 { 404 } else { 200 },
            "a refused delete leaves the certificate in place"
        );
    }
}

async fn kill_9_keeps_acknowledged_writes(db: TestDb) {
    let (_, key) = create_org(&db, "Durable");
    let mut server = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let base = server.base();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (base, key, acked, stop) = (base.clone(), key.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 500 {
                n += 1;
                let res = client
                    .post(format!("{base}/organization/projects"))
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("w{w}-{n}")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        if let Ok(v) = r.json::<Value>().await {
                            acked
                                .lock()
                                .unwrap()
                                .push(v["id"].as_str().unwrap().to_owned());
                        }
                    }
                    _ => break, // the server is gone
                }
            }
        }));
    }
    // Let some writes land, then pull the plug mid-stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 60,
        "only {} writes were acknowledged",
        acked.len()
    );

    let restarted = Process::serve(&db.url, &["--no-bootstrap"]).await;
    let mut present = HashSet::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            String::new()
        } else {
            format!("&after={after}")
        };
        let (s, page) = get(
            &restarted.base(),
            &key,
            &format!("/organization/projects?limit=100{q}"),
        )
        .await;
        assert_eq!(s, 200);
        present.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost after kill -9: {lost:?}",
        lost.len()
    );
}

/// PostgreSQL vanishes under load: replicas answer 503 with OpenAI's body, promptly, report
/// not-ready, stay live, and recover by themselves when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_503_and_recovers() {
    let Some(db) = TestDb::new(common::Db::Postgres).await else {
        return;
    };
    let (_, key) = create_org(&db, "Outage");
    let (proxy, proxied_url) = common::CuttableProxy::in_front_of(&db.url).await;
    let server = Process::serve(
        &proxied_url,
        &[
            "--no-bootstrap",
            "--db-timeout",
            "1s",
            "--db-max-connections",
            "4",
        ],
    )
    .await;
    let base = server.base();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    assert_eq!(get(&base, &key, "/organization/certificates").await.0, 200);

    proxy.cut();
    let mut saw_503 = 0;
    for i in 0..12 {
        let started = Instant::now();
        let res = if i % 2 == 0 {
            client
                .get(format!("{base}/organization/certificates"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
        } else {
            client
                .post(format!("{base}/organization/projects"))
                .bearer_auth(&key)
                .json(&json!({"name": "during"}))
                .send()
                .await
                .unwrap()
        };
        let elapsed = started.elapsed();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert!(
            elapsed < Duration::from_secs(5),
            "answered in {elapsed:?}, not a hang"
        );
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "database_unavailable");
        assert_eq!(body["error"]["type"], "server_error");
        saw_503 += 1;
    }
    assert_eq!(saw_503, 12);
    let ready = client
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readyz reports the database is unreachable"
    );
    let health = client
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthz stays a liveness check");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = get(&base, &key, "/organization/certificates").await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover by itself (last status {s})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _) = post(
        &base,
        &key,
        "/organization/projects",
        json!({"name": "after"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        client
            .get(format!("http://{}/readyz", server.addr))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A database that answers too slowly (here: a row lock held by someone else) gives a timely
/// 503 instead of piling up requests, and the service carries on once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_database_gives_timely_503() {
    use sqlx::Connection;
    let Some(db) = TestDb::new(common::Db::Postgres).await else {
        return;
    };
    let (org, key) = create_org(&db, "Slow");
    let server = Process::serve(&db.url, &["--no-bootstrap", "--db-timeout", "1s"]).await;
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(&org)
        .execute(&mut blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let (s, body) = post(
        &server.base(),
        &key,
        "/organization/projects",
        json!({"name": "blocked"}),
    )
    .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // Reads are not blocked by a writer's lock.
    assert_eq!(
        get(&server.base(), &key, "/organization/projects").await.0,
        200
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let (s, body) = post(
        &server.base(),
        &key,
        "/organization/projects",
        json!({"name": "free"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
}
