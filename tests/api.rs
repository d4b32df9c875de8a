//! The Admin API over HTTP: the real router on a real socket, on a real SQLite file and on a
//! fresh PostgreSQL schema (every test below runs on both backends).

mod common;

use common::pki;
use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One answer: status, the `x-should-retry` and `x-request-id` headers, and the JSON body.
struct Answer {
    status: StatusCode,
    retry: Option<String>,

    body: Value,
}

impl Answer {
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        &self.body
    }
    /// Asserts an OpenAI error: status, `code` and `param`, and the four keys.
    fn err(&self, status: u16, code: Option<&str>, param: Option<&str>) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let e = self.body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {}", self.body));
        assert_eq!(e.len(), 4, "{}", self.body);
        assert_eq!(
            e["type"],
            if status < 500 {
                "invalid_request_error"
            } else {
                "server_error"
            }
        );
        assert_eq!(e["code"].as_str(), code, "{}", self.body);
        assert_eq!(e["param"].as_str(), param, "{}", self.body);
        if status < 500 {
            assert_eq!(
                self.retry.as_deref(),
                Some("false"),
                "4xx must carry x-should-retry: false"
            );
        }
        e["message"].as_str().unwrap()
    }
}

async fn call(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<reqwest::Body>,
) -> Answer {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let header = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    let (retry, request_id) = (header("x-should-retry"), header("x-request-id"));
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    assert!(
        request_id
            .as_deref()
            .is_some_and(|id| id.starts_with("req_")),
        "x-request-id on every answer"
    );
    Answer {
        status,
        retry,
        body,
    }
}

impl TestApp {
    async fn get(&self, path: &str) -> Answer {
        call(self, Some(&self.key.clone()), Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        call(
            self,
            Some(&self.key.clone()),
            Method::POST,
            path,
            Some(body.to_string().into()),
        )
        .await
    }
    async fn delete(&self, path: &str) -> Answer {
        call(self, Some(&self.key.clone()), Method::DELETE, path, None).await
    }
    async fn as_key(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(
            self,
            Some(key),
            method,
            path,
            body.map(|b| b.to_string().into()),
        )
        .await
    }
    async fn upload(&self, pem: &str, name: Option<&str>) -> Answer {
        self.post(
            "/organization/certificates",
            json!({"certificate": pem, "name": name}),
        )
        .await
    }
    /// Uploads a fresh CA and returns its id.
    async fn upload_new(&self, name: &str) -> String {
        let ca = pki::ca(name);
        self.upload(&ca.pem(), Some(name)).await.ok()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    async fn create_project(&self, name: &str) -> String {
        self.post("/organization/projects", json!({"name": name}))
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    /// Ids of the organization list, all pages, in the given order.
    async fn all_ids(&self, query: &str) -> Vec<String> {
        self.get(&format!("/organization/certificates?limit=100{query}"))
            .await
            .ok()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn ids(v: &Value) -> Vec<&str> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

backend_tests!(
    upload_get_roundtrip,
    upload_accepts_legacy_content_field,
    upload_rejections_change_nothing,
    duplicate_upload_conflicts,
    fifty_certificate_limit,
    concurrent_uploads_respect_the_limit,
    list_pagination_and_order,
    cursor_survives_deletes,
    list_parameter_errors,
    organization_toggles,
    toggle_errors_are_atomic,
    project_scope_is_independent,
    delete_guard,
    modify_changes_only_the_name,
    projects_lifecycle,
    archived_projects,
    tenant_isolation_on_every_endpoint,
    authentication,
    odd_inputs_never_500,
    concurrent_toggles_are_all_or_nothing,
    delete_racing_activate,
);

async fn upload_get_roundtrip(app: TestApp) {
    let ca = pki::ca_valid(
        "Roundtrip CA",
        common::wall_clock() - 100,
        common::wall_clock() + 30 * 86_400,
    );
    // Text around the block and surrounding whitespace are kept exactly as uploaded.
    let text = format!("Subject: Roundtrip CA\n\n{}\n\n", ca.pem());
    let up = app.upload(&text, Some("My CA")).await;
    let c = up.ok();
    assert_eq!(c["object"], "certificate");
    assert!(c["id"].as_str().unwrap().starts_with("cert_"));
    assert_eq!(c["name"], "My CA");
    assert!(c.get("active").is_none(), "no `active` on upload");
    assert!(c["certificate_details"].get("content").is_none());
    assert_eq!(
        c["certificate_details"]["valid_at"],
        ca.params.not_before.unix_timestamp()
    );
    assert_eq!(
        c["certificate_details"]["expires_at"],
        ca.params.not_after.unix_timestamp()
    );
    assert!(c["created_at"].as_i64().unwrap() >= common::wall_clock() - 5);
    let id = c["id"].as_str().unwrap();

    let got = app.get(&format!("/organization/certificates/{id}")).await;
    let g = got.ok();
    assert_eq!(g["object"], "certificate");
    assert!(g.get("active").is_none(), "no `active` on get");
    assert!(
        g["certificate_details"].get("content").is_none(),
        "content only when asked for"
    );
    assert_eq!(g["name"], "My CA");

    for query in [
        "include[]=content",
        "include%5B%5D=content",
        "include=content",
    ] {
        let with = app
            .get(&format!("/organization/certificates/{id}?{query}"))
            .await;
        assert_eq!(with.ok()["certificate_details"]["content"], text, "{query}");
    }
    // Without a name, `name` is null.
    let unnamed = app.upload(&pki::ca("Unnamed").pem(), None).await;
    assert_eq!(unnamed.ok()["name"], Value::Null);
}

async fn upload_accepts_legacy_content_field(app: TestApp) {
    let ca = pki::ca("Legacy");
    let up = app
        .post("/organization/certificates", json!({"content": ca.pem()}))
        .await;
    assert_eq!(up.ok()["object"], "certificate");
}

async fn upload_rejections_change_nothing(app: TestApp) {
    let now = common::wall_clock();
    let good = pki::ca("Good");
    let leaf_ca = pki::ca("Issuer");
    let leaf = pki::leaf(&leaf_ca, "client", now - 10, now + 86_400 * 30);
    let mut no_cert_sign = pki::ca_params("No keyCertSign", now - 10, now + 86_400 * 30);
    no_cert_sign.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let no_cert_sign = pki::ca_from_params(no_cert_sign);
    let mut no_ku = pki::ca_params("No keyUsage", now - 10, now + 86_400 * 30);
    no_ku.key_usages = vec![];
    let no_ku = pki::ca_from_params(no_ku);
    let expired = pki::ca_valid("Expired", now - 86_400 * 30, now - 60);
    let expiring = pki::ca_valid("Expiring", now - 86_400, now + 3_600);
    let key_pem = good.key.serialize_pem();

    let cases: Vec<(String, &str, &str)> = vec![
        (
            "hello".into(),
            "invalid_certificate",
            "no '-----BEGIN CERTIFICATE-----'",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n".into(),
            "invalid_certificate",
            "could not be decoded",
        ),
        (
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n".into(),
            "invalid_certificate",
            "not a valid X.509",
        ),
        (
            format!("{}{}", good.pem(), pki::ca("Second").pem()),
            "invalid_certificate",
            "2 certificates",
        ),
        (
            leaf.cert.pem(),
            "invalid_certificate",
            "basicConstraints CA:TRUE",
        ),
        (no_cert_sign.pem(), "invalid_certificate", "keyCertSign"),
        (no_ku.pem(), "invalid_certificate", "keyUsage"),
        (expired.pem(), "invalid_certificate", "expired"),
        (expiring.pem(), "invalid_certificate", "within 24 hours"),
        (
            format!("{}\n{}", good.pem(), key_pem),
            "private_key_not_allowed",
            "private key",
        ),
        (key_pem.clone(), "private_key_not_allowed", "private key"),
        (
            format!("{}{}", good.pem(), "x".repeat(16 * 1024)),
            "certificate_too_large",
            "16384",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n".into(),
            "invalid_certificate",
            "PUBLIC KEY",
        ),
    ];
    for (text, code, needle) in &cases {
        let a = app.upload(text, Some("bad")).await;
        let msg = a.err(400, Some(code), Some("certificate"));
        assert!(
            msg.contains(needle),
            "{code}: '{msg}' should mention '{needle}'"
        );
        assert!(
            !msg.contains("PRIVATE KEY-----") && !msg.contains(&key_pem[40..80]),
            "never echo key material"
        );
    }
    // A CA without a Subject Key Identifier (made with openssl, which can omit it).
    if let Some(pem) = openssl_ca_without_ski() {
        let msg = app
            .upload(&pem, None)
            .await
            .err(400, Some("invalid_certificate"), Some("certificate"))
            .to_owned();
        assert!(msg.contains("Subject Key Identifier"), "{msg}");
    }
    // Body-level refusals.
    app.post("/organization/certificates", json!({"name": "x"}))
        .await
        .err(400, None, Some("certificate"));
    app.post("/organization/certificates", json!({"certificate": 42}))
        .await
        .err(400, None, Some("certificate"));
    app.post(
        "/organization/certificates",
        json!({"certificate": good.pem(), "colour": "red"}),
    )
    .await
    .err(400, None, Some("colour"));
    app.post(
        "/organization/certificates",
        json!({"certificate": good.pem(), "name": "n".repeat(300)}),
    )
    .await
    .err(400, None, Some("name"));
    let raw = |body: Vec<u8>| {
        call(
            &app,
            Some(&app.key),
            Method::POST,
            "/organization/certificates",
            Some(body.into()),
        )
    };
    raw(b"{\"certificate\": ".to_vec())
        .await
        .err(400, None, None);
    raw(vec![0xff, 0xfe, b'{', b'}']).await.err(400, None, None);
    raw(b"[1,2]".to_vec()).await.err(400, None, None);
    let huge = json!({"certificate": "x".repeat(70 * 1024)})
        .to_string()
        .into_bytes();
    raw(huge).await.err(413, Some("request_too_large"), None);

    assert!(
        app.all_ids("").await.is_empty(),
        "refused uploads store nothing"
    );
    // And the good one still goes in.
    app.upload(&good.pem(), None).await.ok();
}

fn openssl_ca_without_ski() -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
        ])
        .args([
            "-subj",
            "/CN=No SKI",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=none",
        ])
        .args(["-addext", "authorityKeyIdentifier=none"])
        .arg("-keyout")
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(dir.path().join("c.pem"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("openssl could not make a CA without SKI; skipping that case");
        return None;
    }
    std::fs::read_to_string(dir.path().join("c.pem")).ok()
}

async fn duplicate_upload_conflicts(app: TestApp) {
    let ca = pki::ca("Dup");
    let first = app.upload(&ca.pem(), Some("a")).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Same DER, different surrounding text: still the same certificate.
    let again = app.upload(&format!("\n{}", ca.pem()), Some("b")).await;
    let msg = again.err(409, Some("certificate_already_exists"), Some("certificate"));
    assert!(msg.contains(&first), "names the existing id: {msg}");
    assert_eq!(app.all_ids("").await, vec![first.clone()]);
    // Another organization may upload the same CA as its own object.
    let (_, other_key) = app.other_org().await;
    let other = app
        .as_key(
            &other_key,
            Method::POST,
            "/organization/certificates",
            Some(json!({"certificate": ca.pem()})),
        )
        .await;
    assert_ne!(other.ok()["id"].as_str().unwrap(), first);
    // Once deleted, it may be uploaded again.
    app.delete(&format!("/organization/certificates/{first}"))
        .await
        .ok();
    app.upload(&ca.pem(), None).await.ok();
}

async fn fifty_certificate_limit(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(app.upload_new(&format!("CA {i}")).await);
    }
    let over = app.upload(&pki::ca("CA 51").pem(), None).await;
    let msg = over.err(400, Some("certificate_limit_reached"), Some("certificate"));
    assert!(msg.contains("50"), "{msg}");
    assert_eq!(app.all_ids("").await.len(), 50);
    app.delete(&format!("/organization/certificates/{}", ids[0]))
        .await
        .ok();
    app.upload(&pki::ca("CA 51").pem(), None).await.ok();
    app.upload(&pki::ca("CA 52").pem(), None).await.err(
        400,
        Some("certificate_limit_reached"),
        Some("certificate"),
    );
}

async fn concurrent_uploads_respect_the_limit(app: TestApp) {
    let pems: Vec<String> = (0..80)
        .map(|i| pki::ca(&format!("Race {i}")).pem())
        .collect();
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = pems
        .into_iter()
        .map(|pem| {
            let app = app.clone();
            tokio::spawn(async move {
                let a = app.upload(&pem, None).await;
                (
                    a.status.as_u16(),
                    a.body["error"]["code"].as_str().map(str::to_owned),
                )
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (400, Some(code)) => assert_eq!(code, "certificate_limit_reached"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(app.all_ids("").await.len(), 50);
}

async fn list_pagination_and_order(app: TestApp) {
    // 25 certificates over 5 seconds: 5 per second, so ties on created_at are common.
    let mut created = Vec::new();
    for i in 0..25 {
        if i % 5 == 0 {
            app.clock.advance(1);
        }
        created.push(app.upload_new(&format!("Page {i}")).await);
    }
    let desc: Vec<String> = created.iter().rev().cloned().collect();
    let first = app.get("/organization/certificates").await;
    let page = first.ok();
    assert_eq!(page["object"], "list");
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        20,
        "default limit 20"
    );
    assert_eq!(
        ids(page),
        desc[..20].iter().map(String::as_str).collect::<Vec<_>>(),
        "default order desc, ties stable"
    );
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], desc[0]);
    assert_eq!(page["last_id"], desc[19]);
    assert_eq!(page["data"][0]["object"], "organization.certificate");
    assert_eq!(page["data"][0]["active"], false);
    let next = app
        .get(&format!("/organization/certificates?after={}", desc[19]))
        .await;
    assert_eq!(
        ids(next.ok()),
        desc[20..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(next.ok()["has_more"], false);

    // Walk ascending, 7 at a time: every id once, in creation order; has_more exact.
    let mut walked = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            String::new()
        } else {
            format!("&after={after}")
        };
        let a = app
            .get(&format!("/organization/certificates?order=asc&limit=7{q}"))
            .await;
        let p = a.ok();
        walked.extend(ids(p).into_iter().map(str::to_owned));
        if p["has_more"] == false {
            break;
        }
        after = p["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(walked, created);
    // Exactly 25 with limit 25: has_more false.
    assert_eq!(
        app.get("/organization/certificates?limit=25").await.ok()["has_more"],
        false
    );
    assert_eq!(
        app.get("/organization/certificates?limit=24").await.ok()["has_more"],
        true
    );
}

async fn cursor_survives_deletes(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..6 {
        created.push(app.upload_new(&format!("Cursor {i}")).await);
    }
    let page = app
        .get("/organization/certificates?order=asc&limit=2")
        .await;
    let last = page.ok()["last_id"].as_str().unwrap().to_owned();
    assert_eq!(last, created[1]);
    // Delete the cursor object and the next one; the walk continues from where they stood.
    app.delete(&format!("/organization/certificates/{}", created[1]))
        .await
        .ok();
    app.delete(&format!("/organization/certificates/{}", created[2]))
        .await
        .ok();
    let next = app
        .get(&format!(
            "/organization/certificates?order=asc&limit=2&after={last}"
        ))
        .await;
    assert_eq!(
        ids(next.ok()),
        vec![created[3].as_str(), created[4].as_str()]
    );
    // An empty list has null ids.
    let (_, other_key) = app.other_org().await;
    let empty = app
        .as_key(&other_key, Method::GET, "/organization/certificates", None)
        .await;
    assert_eq!(empty.ok()["first_id"], Value::Null);
    assert_eq!(empty.ok()["last_id"], Value::Null);
    assert_eq!(empty.ok()["has_more"], false);
}

async fn list_parameter_errors(app: TestApp) {
    for q in [
        "limit=0",
        "limit=101",
        "limit=-5",
        "limit=abc",
        "limit=1e3",
        "limit=99999999999999999999",
    ] {
        app.get(&format!("/organization/certificates?{q}"))
            .await
            .err(400, None, Some("limit"));
    }
    app.get("/organization/certificates?order=sideways")
        .await
        .err(400, None, Some("order"));
    app.get("/organization/certificates?after=cert_neverissued")
        .await
        .err(400, None, Some("after"));
    let long = "x".repeat(5000);
    app.get(&format!("/organization/certificates?after={long}"))
        .await
        .err(400, None, Some("after"));
    // A cursor from another organization was never issued here.
    let (_, other_key) = app.other_org().await;
    let foreign = app
        .as_key(
            &other_key,
            Method::POST,
            "/organization/certificates",
            Some(json!({"certificate": pki::ca("F").pem()})),
        )
        .await;
    let foreign_id = foreign.ok()["id"].as_str().unwrap().to_owned();
    app.get(&format!("/organization/certificates?after={foreign_id}"))
        .await
        .err(400, None, Some("after"));
    app.get("/organization/certificates?limit=1&limit=100")
        .await
        .ok();
    let project = app.create_project("P").await;
    app.get(&format!(
        "/organization/projects/{project}/certificates?limit=0"
    ))
    .await
    .err(400, None, Some("limit"));
    app.get("/organization/certificates/cert_x?include[]=everything")
        .await
        .err(400, None, Some("include"));
}

async fn organization_toggles(app: TestApp) {
    let a = app.upload_new("A").await;
    let b = app.upload_new("B").await;
    let c = app.upload_new("C").await;
    let on = app
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [c, a]}),
        )
        .await;
    let body = on.ok();
    assert_eq!(body["object"], "organization.certificate.activation");
    assert_eq!(
        ids(body),
        vec![c.as_str(), a.as_str()],
        "items in request order"
    );
    for item in body["data"].as_array().unwrap() {
        assert_eq!(item["object"], "organization.certificate");
        assert_eq!(item["active"], true);
    }
    assert!(body.get("has_more").is_none());
    // Idempotent.
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let list = app.get("/organization/certificates").await;
    let active: Vec<(String, bool)> = list.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_owned(),
                x["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        active,
        vec![(c.clone(), true), (b.clone(), false), (a.clone(), true)]
    );
    // `data` is the 2025 docs' name for the same list.
    let off = app
        .post(
            "/organization/certificates/deactivate",
            json!({"data": [a, b]}),
        )
        .await;
    assert_eq!(off.ok()["object"], "organization.certificate.deactivation");
    assert!(off.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["active"] == false));
    app.post(
        "/organization/certificates/deactivate",
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let after: Vec<bool> = app.get("/organization/certificates").await.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["active"].as_bool().unwrap())
        .collect();
    assert_eq!(after, vec![true, false, false]);
}

async fn toggle_errors_are_atomic(app: TestApp) {
    let a = app.upload_new("A").await;
    let path = "/organization/certificates/activate";
    let msg = app
        .post(path, json!({"certificate_ids": [a, "cert_missing"]}))
        .await
        .err(404, None, Some("certificate_ids"))
        .to_owned();
    assert!(msg.contains("cert_missing"), "{msg}");
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["active"],
        false,
        "nothing changed"
    );
    app.post(path, json!({"certificate_ids": []}))
        .await
        .err(400, None, Some("certificate_ids"));
    let eleven: Vec<String> = (0..11).map(|i| format!("cert_{i}")).collect();
    app.post(path, json!({"certificate_ids": eleven}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.post(path, json!({"certificate_ids": [a, a]}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.post(path, json!({}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.post(path, json!({"certificate_ids": "cert_x"}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.post(path, json!({"certificate_ids": [1, 2]}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.post(path, json!({"certificate_ids": [a], "extra": true}))
        .await
        .err(400, None, Some("extra"));
    // A deleted certificate is unknown.
    let b = app.upload_new("B").await;
    app.delete(&format!("/organization/certificates/{b}"))
        .await
        .ok();
    app.post(path, json!({"certificate_ids": [a, b]}))
        .await
        .err(404, None, Some("certificate_ids"));
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["active"],
        false
    );
    // Project toggles are atomic too.
    let project = app.create_project("P").await;
    let ppath = format!("/organization/projects/{project}/certificates/activate");
    app.post(&ppath, json!({"certificate_ids": [a, "cert_nope"]}))
        .await
        .err(404, None, Some("certificate_ids"));
    let plist = app
        .get(&format!("/organization/projects/{project}/certificates"))
        .await;
    assert_eq!(plist.ok()["data"][0]["active"], false);
}

async fn project_scope_is_independent(app: TestApp) {
    let a = app.upload_new("A").await;
    let b = app.upload_new("B").await;
    let p1 = app.create_project("One").await;
    let p2 = app.create_project("Two").await;
    let list = |p: String| {
        let app = &app;
        async move {
            app.get(&format!("/organization/projects/{p}/certificates"))
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    assert_eq!(x["object"], "organization.project.certificate");
                    (
                        x["id"].as_str().unwrap().to_owned(),
                        x["active"].as_bool().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)],
        "every org certificate is listed"
    );
    let on = app
        .post(
            &format!("/organization/projects/{p1}/certificates/activate"),
            json!({"certificate_ids": [a]}),
        )
        .await;
    assert_eq!(
        on.ok()["object"],
        "organization.project.certificate.activation"
    );
    assert_eq!(
        on.ok()["data"][0]["object"],
        "organization.project.certificate"
    );
    assert_eq!(on.ok()["data"][0]["active"], true);
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), true)]
    );
    assert_eq!(
        list(p2.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)]
    );
    // Organization scope is untouched by project scope, and the other way round.
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][1]["active"],
        false
    );
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [b]}),
    )
    .await
    .ok();
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), true)]
    );
    let off = app
        .post(
            &format!("/organization/projects/{p1}/certificates/deactivate"),
            json!({"certificate_ids": [a, b]}),
        )
        .await;
    assert_eq!(
        off.ok()["object"],
        "organization.project.certificate.deactivation"
    );
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)]
    );
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["active"],
        true
    );
    // Pagination on the project list.
    let page = app
        .get(&format!(
            "/organization/projects/{p1}/certificates?limit=1&order=asc"
        ))
        .await;
    assert_eq!(ids(page.ok()), vec![a.as_str()]);
    assert_eq!(page.ok()["has_more"], true);
    let page2 = app
        .get(&format!(
            "/organization/projects/{p1}/certificates?limit=1&order=asc&after={a}"
        ))
        .await;
    assert_eq!(ids(page2.ok()), vec![b.as_str()]);
    assert_eq!(page2.ok()["has_more"], false);
    // Unknown projects are 404 on every project route.
    for (m, p) in [
        (Method::GET, "/organization/projects/proj_nope/certificates"),
        (
            Method::POST,
            "/organization/projects/proj_nope/certificates/activate",
        ),
        (
            Method::POST,
            "/organization/projects/proj_nope/certificates/deactivate",
        ),
    ] {
        let body = (m == Method::POST).then(|| json!({"certificate_ids": [a]}));
        app.as_key(&app.key, m, p, body).await.err(404, None, None);
    }
}

async fn delete_guard(app: TestApp) {
    let a = app.upload_new("A").await;
    let project = app.create_project("P").await;
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    app.post(
        &format!("/organization/projects/{project}/certificates/activate"),
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let path = format!("/organization/certificates/{a}");
    let msg = app
        .delete(&path)
        .await
        .err(409, Some("certificate_in_use"), None)
        .to_owned();
    assert!(msg.contains(&app.org_id) && msg.contains(&project), "{msg}");
    app.post(
        "/organization/certificates/deactivate",
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let msg = app
        .delete(&path)
        .await
        .err(409, Some("certificate_in_use"), None)
        .to_owned();
    assert!(
        !msg.contains(&app.org_id) && msg.contains(&project),
        "{msg}"
    );
    assert_eq!(
        app.get(&path).await.ok()["id"],
        a,
        "a refused delete leaves it in place"
    );
    app.post(
        &format!("/organization/projects/{project}/certificates/deactivate"),
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let gone = app.delete(&path).await;
    assert_eq!(
        gone.ok(),
        &json!({"object": "certificate.deleted", "id": a})
    );
    app.get(&path).await.err(404, None, None);
    app.delete(&path).await.err(404, None, None);
    assert!(app.all_ids("").await.is_empty());
}

async fn modify_changes_only_the_name(app: TestApp) {
    let a = app.upload_new("Before").await;
    let path = format!("/organization/certificates/{a}");
    let before = app.get(&path).await.ok().clone();
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["name"],
        "Before"
    );
    let m = app.post(&path, json!({"name": "After"})).await;
    assert_eq!(m.ok()["object"], "certificate");
    assert_eq!(m.ok()["name"], "After");
    assert!(m.ok().get("active").is_none());
    assert_eq!(m.ok()["certificate_details"], before["certificate_details"]);
    assert_eq!(m.ok()["created_at"], before["created_at"]);
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["name"],
        "After",
        "lists see the rename"
    );
    app.post(&path, json!({})).await.ok();
    assert_eq!(
        app.get(&path).await.ok()["name"],
        "After",
        "an empty body changes nothing"
    );
    app.post(&path, json!({"name": null})).await.ok();
    assert_eq!(app.get(&path).await.ok()["name"], Value::Null);
    app.post(&path, json!({"name": 5}))
        .await
        .err(400, None, Some("name"));
    app.post(&path, json!({"name": "x", "certificate": "y"}))
        .await
        .err(400, None, Some("certificate"));
    app.post(&path, json!({"name": "é".repeat(257)}))
        .await
        .err(400, None, Some("name"));
    assert_eq!(
        app.get(&path).await.ok()["name"],
        Value::Null,
        "refused modifies change nothing"
    );
    app.post(
        "/organization/certificates/cert_unknown",
        json!({"name": "x"}),
    )
    .await
    .err(404, None, None);
}

async fn projects_lifecycle(app: TestApp) {
    let p = app
        .post(
            "/organization/projects",
            json!({"name": "Alpha", "external_key_id": "kms-1"}),
        )
        .await;
    let proj = p.ok().clone();
    assert_eq!(proj["object"], "organization.project");
    assert!(proj["id"].as_str().unwrap().starts_with("proj_"));
    assert_eq!(proj["status"], "active");
    assert_eq!(proj["archived_at"], Value::Null);
    assert_eq!(proj["external_key_id"], "kms-1");
    let id = proj["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/organization/projects/{id}")).await.ok(),
        &proj
    );
    let renamed = app
        .post(
            &format!("/organization/projects/{id}"),
            json!({"name": "Beta"}),
        )
        .await;
    assert_eq!(renamed.ok()["name"], "Beta");
    let with_res = app
        .post(
            "/organization/projects",
            json!({"name": "EU", "residency": "EU_STORAGE_PROCESSING"}),
        )
        .await;
    assert_eq!(with_res.ok()["residency"], "EU_STORAGE_PROCESSING");
    app.post(
        "/organization/projects",
        json!({"name": "X", "residency": "MARS"}),
    )
    .await
    .err(400, None, Some("residency"));
    app.post("/organization/projects", json!({}))
        .await
        .err(400, None, Some("name"));
    app.post("/organization/projects", json!({"name": ""}))
        .await
        .err(400, None, Some("name"));
    app.post("/organization/projects", json!({"name": "x", "bogus": 1}))
        .await
        .err(400, None, Some("bogus"));
    let third = app.create_project("Gamma").await;
    let list = app.get("/organization/projects?limit=2").await;
    assert_eq!(list.ok()["object"], "list");
    assert_eq!(
        ids(list.ok()),
        vec![id, with_res.ok()["id"].as_str().unwrap()],
        "oldest first"
    );
    assert_eq!(list.ok()["has_more"], true);
    let rest = app
        .get(&format!(
            "/organization/projects?limit=2&after={}",
            list.ok()["last_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ids(rest.ok()), vec![third.as_str()]);
    app.get("/organization/projects?after=proj_never")
        .await
        .err(400, None, Some("after"));
    app.get("/organization/projects?include_archived=maybe")
        .await
        .err(400, None, Some("include_archived"));
    app.get("/organization/projects/proj_nope")
        .await
        .err(404, None, None);
}

async fn archived_projects(app: TestApp) {
    let a = app.upload_new("A").await;
    let project = app.create_project("Old").await;
    app.post(
        &format!("/organization/projects/{project}/certificates/activate"),
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let archived = app
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(archived.ok()["status"], "archived");
    assert!(archived.ok()["archived_at"].as_i64().is_some());
    // Archiving again is a no-op that answers the same project.
    let again = app
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(again.ok()["archived_at"], archived.ok()["archived_at"]);
    // Its activations ended: they no longer block a delete, and the list shows them inactive.
    let plist = app
        .get(&format!("/organization/projects/{project}/certificates"))
        .await;
    assert_eq!(plist.ok()["data"][0]["active"], false);
    app.post(
        &format!("/organization/projects/{project}/certificates/activate"),
        json!({"certificate_ids": [a]}),
    )
    .await
    .err(400, Some("project_archived"), None);
    let off = app
        .post(
            &format!("/organization/projects/{project}/certificates/deactivate"),
            json!({"certificate_ids": [a]}),
        )
        .await;
    assert_eq!(off.ok()["data"][0]["active"], false);
    app.post(
        &format!("/organization/projects/{project}"),
        json!({"name": "New"}),
    )
    .await
    .err(400, Some("project_archived"), None);
    assert_eq!(
        app.get(&format!("/organization/projects/{project}"))
            .await
            .ok()["name"],
        "Old"
    );
    // Hidden from the list unless asked for.
    assert!(app.get("/organization/projects").await.ok()["data"]
        .as_array()
        .unwrap()
        .is_empty());
    let all = app
        .get("/organization/projects?include_archived=true")
        .await;
    assert_eq!(ids(all.ok()), vec![project.as_str()]);
    app.delete(&format!("/organization/certificates/{a}"))
        .await
        .ok();
}

async fn tenant_isolation_on_every_endpoint(app: TestApp) {
    let a = app.upload_new("Mine").await;
    let project = app.create_project("Mine").await;
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [a]}),
    )
    .await
    .ok();
    let (_, other) = app.other_org().await;
    let other_cert = {
        let r = app
            .as_key(
                &other,
                Method::POST,
                "/organization/certificates",
                Some(json!({"certificate": pki::ca("Theirs").pem()})),
            )
            .await;
        r.ok()["id"].as_str().unwrap().to_owned()
    };
    let ids_body = json!({"certificate_ids": [a]});
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/organization/certificates/{a}"), None),
        (
            Method::GET,
            format!("/organization/certificates/{a}?include[]=content"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/certificates/{a}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::DELETE,
            format!("/organization/certificates/{a}"),
            None,
        ),
        (
            Method::POST,
            "/organization/certificates/activate".into(),
            Some(ids_body.clone()),
        ),
        (
            Method::POST,
            "/organization/certificates/deactivate".into(),
            Some(ids_body.clone()),
        ),
        (
            Method::GET,
            format!("/organization/projects/{project}"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/archive"),
            None,
        ),
        (
            Method::GET,
            format!("/organization/projects/{project}/certificates"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/certificates/activate"),
            Some(json!({"certificate_ids": [other_cert]})),
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/certificates/deactivate"),
            Some(json!({"certificate_ids": [other_cert]})),
        ),
    ];
    for (m, path, body) in cases {
        let a = app.as_key(&other, m.clone(), &path, body).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{m} {path}: {}", a.body);
    }
    // Lists show only the caller's own objects.
    let theirs = app
        .as_key(&other, Method::GET, "/organization/certificates", None)
        .await;
    assert_eq!(ids(theirs.ok()), vec![other_cert.as_str()]);
    let their_projects = app
        .as_key(
            &other,
            Method::GET,
            "/organization/projects?include_archived=true",
            None,
        )
        .await;
    assert!(their_projects.ok()["data"].as_array().unwrap().is_empty());
    // And nothing of ours changed.
    let mine = app.get(&format!("/organization/certificates/{a}")).await;
    assert_eq!(mine.ok()["name"], "Mine");
    assert_eq!(
        app.get("/organization/certificates").await.ok()["data"][0]["active"],
        true
    );
    assert_eq!(
        app.get(&format!("/organization/projects/{project}"))
            .await
            .ok()["status"],
        "active"
    );
}

async fn authentication(app: TestApp) {
    let no_key = call(&app, None, Method::GET, "/organization/certificates", None).await;
    no_key.err(401, Some("invalid_api_key"), None);
    let wrong = call(
        &app,
        Some("sk-admin-0000000000000000000000000000"),
        Method::GET,
        "/organization/certificates",
        None,
    )
    .await;
    let msg = wrong.err(401, Some("invalid_api_key"), None).to_owned();
    assert!(
        !msg.contains("0000000000000000000000000000"),
        "the presented key is redacted: {msg}"
    );
    let res = app
        .http
        .get(format!("{}/organization/certificates", app.base))
        .header("authorization", format!("Basic {}", app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .get(format!("{}/organization/certificates", app.base))
        .header("authorization", b"Bearer \xff\xfe".as_slice())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Writes without a key change nothing.
    let ca = pki::ca("Anon");
    call(
        &app,
        None,
        Method::POST,
        "/organization/certificates",
        Some(json!({"certificate": ca.pem()}).to_string().into()),
    )
    .await
    .err(401, Some("invalid_api_key"), None);
    assert!(app.all_ids("").await.is_empty());
    // Health needs no key; unknown routes and methods answer OpenAI's body.
    let health = app
        .http
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = app
        .http
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    app.get("/organization/nothing").await.err(404, None, None);
    app.as_key(&app.key, Method::PUT, "/organization/certificates", None)
        .await
        .err(405, None, None);
}

async fn odd_inputs_never_500(app: TestApp) {
    let long = "c".repeat(10_000);
    app.get(&format!("/organization/certificates/{long}"))
        .await
        .err(404, None, None);
    app.delete(&format!("/organization/certificates/{long}"))
        .await
        .err(404, None, None);
    app.get(&format!("/organization/projects/{long}/certificates"))
        .await
        .err(404, None, None);
    let a = app.get("/organization/certificates/%FF%FE").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    let a = app.get("/organization/certificates/cert_%00x").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [long]}),
    )
    .await
    .err(404, None, Some("certificate_ids"));
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": [{"a": [1, 2, {"b": null}]}]}),
    )
    .await
    .err(400, None, Some("certificate_ids"));
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    call(
        &app,
        Some(&app.key),
        Method::POST,
        "/organization/certificates",
        Some(nested.into_bytes().into()),
    )
    .await
    .err(400, None, None);
    app.post("/organization/projects", json!({"name": "\u{0000} odd"}))
        .await
        .err(400, None, Some("name"));
    app.post(
        "/organization/projects",
        json!({"name": "\u{FFFF} odd \u{1F600}"}),
    )
    .await
    .ok();
    app.post(
        "/organization/certificates/activate",
        json!({"certificate_ids": ["cert_\u{0000}"]}),
    )
    .await
    .err(400, None, Some("certificate_ids"));
    app.get("/organization/certificates?after=cert_%00")
        .await
        .err(400, None, Some("after"));
    app.get("/organization/projects/proj_%00")
        .await
        .err(404, None, None);
    app.get("/organization/certificates?limit=%FF")
        .await
        .err(400, None, Some("limit"));
    app.get("/organization/certificates?after=%FF%FE")
        .await
        .err(400, None, Some("after"));
}

async fn concurrent_toggles_are_all_or_nothing(app: TestApp) {
    let mut ten = Vec::new();
    for i in 0..10 {
        ten.push(app.upload_new(&format!("T{i}")).await);
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        let mut ids = ten.clone();
        ids.rotate_left(i % 10);
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/organization/certificates/activate"
            } else {
                "/organization/certificates/deactivate"
            };
            app.post(path, json!({"certificate_ids": ids})).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let states: Vec<bool> = app.get("/organization/certificates").await.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["active"].as_bool().unwrap())
        .collect();
    assert_eq!(states.len(), 10);
    assert!(
        states.iter().all(|s| *s == states[0]),
        "all ten end in one state: {states:?}"
    );
}

async fn delete_racing_activate(app: TestApp) {
    let app = std::sync::Arc::new(app);
    for round in 0..10 {
        let id = app.upload_new(&format!("Race {round}")).await;
        let path = format!("/organization/certificates/{id}");
        let (d, a) = tokio::join!(
            app.delete(&path),
            app.post(
                "/organization/certificates/activate",
                json!({"certificate_ids": [id]})
            ),
        );
        let (d, a) = (d.status.as_u16(), a.status.as_u16());
        assert!(
            !(d == 200 && a == 200),
            "delete and activate both succeeded"
        );
        match (d, a) {
            (200, 404) => {
                app.get(&format!("/organization/certificates/{id}"))
                    .await
                    .err(404, None, None);
            }
            (409, 200) => {
                assert_eq!(
                    app.get(&format!("/organization/certificates/{id}"))
                        .await
                        .ok()["id"],
                    id
                );
                app.post(
                    "/organization/certificates/deactivate",
                    json!({"certificate_ids": [id]}),
                )
                .await
                .ok();
                app.delete(&format!("/organization/certificates/{id}"))
                    .await
                    .ok();
            }
            other => panic!("unexpected pair {other:?}"),
        }
    }
}
