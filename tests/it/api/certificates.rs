//! Uploading, reading, renaming certificates, and the 50-certificate limit.

use certgate::domain::Clock;
use serde_json::{json, Value};

use crate::helpers::{backend_tests, wall_clock, TestApp};
use crate::pki;

backend_tests!(
    upload_get_roundtrip,
    upload_accepts_legacy_content_field,
    upload_rejections_change_nothing,
    duplicate_upload_conflicts,
    fifty_certificate_limit,
    concurrent_uploads_respect_the_limit,
    modify_changes_only_the_name,
);

async fn upload_get_roundtrip(app: TestApp) {
    let now = wall_clock();
    let ca = pki::ca_valid("Roundtrip CA", now - 100, now + 30 * 86_400);
    // Text around the block and surrounding whitespace are kept exactly as uploaded.
    let text = format!("Subject: Roundtrip CA\n\n{}\n\n", ca.pem());
    let up = app.api.upload(&text, Some("My CA")).await;
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
    // The store's clock stands still in tests: the stamp is exactly its time, however long
    // the machine took to get here.
    assert_eq!(c["created_at"], app.clock.now());
    let id = c["id"].as_str().unwrap();

    let got = app
        .api
        .get(&format!("/organization/certificates/{id}"))
        .await;
    let g = got.ok();
    assert_eq!(g["object"], "certificate");
    assert!(g.get("active").is_none(), "no `active` on get");
    // The same details as the upload answered, which had no content: so none here either
    // (and a missing `certificate_details` would not pass for "no content").
    assert_eq!(
        g["certificate_details"], c["certificate_details"],
        "content only when asked for"
    );
    assert_eq!(g["name"], "My CA");
    assert_eq!(g["created_at"], c["created_at"]);

    for query in [
        "include[]=content",
        "include%5B%5D=content",
        "include=content",
    ] {
        let with = app
            .api
            .get(&format!("/organization/certificates/{id}?{query}"))
            .await;
        assert_eq!(with.ok()["certificate_details"]["content"], text, "{query}");
    }
    // Without a name, `name` is null.
    let unnamed = app.api.upload(&pki::ca("Unnamed").pem(), None).await;
    assert_eq!(unnamed.ok()["name"], Value::Null);
}

async fn upload_accepts_legacy_content_field(app: TestApp) {
    let ca = pki::ca("Legacy");
    let up = app
        .api
        .post("/organization/certificates", json!({"content": ca.pem()}))
        .await;
    assert_eq!(up.ok()["object"], "certificate");
}

async fn upload_rejections_change_nothing(app: TestApp) {
    let now = wall_clock();
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
        let a = app.api.upload(text, Some("bad")).await;
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
    // A CA without a Subject Key Identifier: complete otherwise, so this is the one refusal.
    let no_ski = pki::ca_without_ski("No SKI");
    let msg = app
        .api
        .upload(&no_ski.pem(), None)
        .await
        .err(400, Some("invalid_certificate"), Some("certificate"))
        .to_owned();
    assert!(msg.contains("Subject Key Identifier"), "{msg}");
    // Body-level refusals.
    app.api
        .post("/organization/certificates", json!({"name": "x"}))
        .await
        .err(400, None, Some("certificate"));
    app.api
        .post("/organization/certificates", json!({"certificate": 42}))
        .await
        .err(400, None, Some("certificate"));
    app.api
        .post(
            "/organization/certificates",
            json!({"certificate": good.pem(), "colour": "red"}),
        )
        .await
        .err(400, None, Some("colour"));
    app.api
        .post(
            "/organization/certificates",
            json!({"certificate": good.pem(), "name": "n".repeat(300)}),
        )
        .await
        .err(400, None, Some("name"));
    let raw = |body: Vec<u8>| app.api.post_raw("/organization/certificates", body);
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
        app.api.all_ids().await.is_empty(),
        "refused uploads store nothing"
    );
    // And the good one still goes in.
    app.api.upload(&good.pem(), None).await.ok();
}

async fn duplicate_upload_conflicts(app: TestApp) {
    let ca = pki::ca("Dup");
    let first = app.api.upload(&ca.pem(), Some("a")).await.id();
    // Same DER, different surrounding text: still the same certificate.
    let again = app.api.upload(&format!("\n{}", ca.pem()), Some("b")).await;
    let msg = again.err(409, Some("certificate_already_exists"), Some("certificate"));
    assert!(msg.contains(&first), "names the existing id: {msg}");
    assert_eq!(app.api.all_ids().await, vec![first.clone()]);
    // Another organization may upload the same CA as its own object.
    let (_, other) = app.other_org().await;
    assert_ne!(other.upload(&ca.pem(), None).await.id(), first);
    // Once deleted, it may be uploaded again.
    app.api
        .delete(&format!("/organization/certificates/{first}"))
        .await
        .ok();
    app.api.upload(&ca.pem(), None).await.ok();
}

async fn fifty_certificate_limit(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(app.api.upload_new(&format!("CA {i}")).await);
    }
    let over = app.api.upload(&pki::ca("CA 51").pem(), None).await;
    let msg = over.err(400, Some("certificate_limit_reached"), Some("certificate"));
    assert!(msg.contains("50"), "{msg}");
    assert_eq!(app.api.all_ids().await.len(), 50);
    app.api
        .delete(&format!("/organization/certificates/{}", ids[0]))
        .await
        .ok();
    app.api.upload(&pki::ca("CA 51").pem(), None).await.ok();
    app.api.upload(&pki::ca("CA 52").pem(), None).await.err(
        400,
        Some("certificate_limit_reached"),
        Some("certificate"),
    );
}

async fn concurrent_uploads_respect_the_limit(app: TestApp) {
    let pems: Vec<String> = (0..80)
        .map(|i| pki::ca(&format!("Race {i}")).pem())
        .collect();
    // 80 writers queue for one organization at once: the store's generous timeout
    // (`TestApp::spawn`) keeps this a test of the limit, not of the machine's speed.
    let tasks: Vec<_> = pems
        .into_iter()
        .map(|pem| {
            let api = app.api.clone();
            tokio::spawn(async move {
                let a = api.upload(&pem, None).await;
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
    assert_eq!(app.api.all_ids().await.len(), 50);
}

async fn modify_changes_only_the_name(app: TestApp) {
    let a = app.api.upload_new("Before").await;
    let path = format!("/organization/certificates/{a}");
    let before = app.api.get(&path).await.ok().clone();
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["name"],
        "Before"
    );
    let m = app.api.post(&path, json!({"name": "After"})).await;
    assert_eq!(m.ok()["object"], "certificate");
    assert_eq!(m.ok()["name"], "After");
    assert!(m.ok().get("active").is_none());
    assert_eq!(m.ok()["certificate_details"], before["certificate_details"]);
    assert_eq!(m.ok()["created_at"], before["created_at"]);
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["name"],
        "After",
        "lists see the rename"
    );
    app.api.post(&path, json!({})).await.ok();
    assert_eq!(
        app.api.get(&path).await.ok()["name"],
        "After",
        "an empty body changes nothing"
    );
    app.api.post(&path, json!({"name": null})).await.ok();
    assert_eq!(app.api.get(&path).await.ok()["name"], Value::Null);
    app.api
        .post(&path, json!({"name": 5}))
        .await
        .err(400, None, Some("name"));
    app.api
        .post(&path, json!({"name": "x", "certificate": "y"}))
        .await
        .err(400, None, Some("certificate"));
    app.api
        .post(&path, json!({"name": "é".repeat(257)}))
        .await
        .err(400, None, Some("name"));
    assert_eq!(
        app.api.get(&path).await.ok()["name"],
        Value::Null,
        "refused modifies change nothing"
    );
    app.api
        .post(
            "/organization/certificates/cert_unknown",
            json!({"name": "x"}),
        )
        .await
        .err(404, None, None);
}
