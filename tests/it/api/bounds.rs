//! Every size bound of the Admin API (docs/decisions.md) from both sides (decisions.md D44): exactly at
//! the limit is accepted, one past it is refused (and changes nothing). Names and reasons are
//! counted in characters, so they are tested with a two-byte character.

use certgate::domain::Clock;
use serde_json::{json, Value};

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    request_bodies_up_to_64_kib,
    certificates_up_to_16384_bytes,
    names_up_to_256_characters,
    toggles_of_1_to_10_ids,
    list_limits_of_1_to_100,
    certificates_valid_for_at_least_24_hours,
    client_filters_up_to_4_kib,
    crl_bodies_up_to_8_mib,
    rsa_keys_up_to_8192_bits_with_exponents_3_to_2_32,
    ids_echoed_up_to_64_characters,
    key_lifetimes_of_1_to_31536000_seconds,
    fingerprints_of_64_hex_digits,
    audit_retention_keeps_the_cutoff_second,
);

const CERTS: &str = "/organization/certificates";

/// `value` as JSON text padded with trailing whitespace (which JSON allows) to exactly `len`
/// bytes.
fn padded(value: &Value, len: usize) -> Vec<u8> {
    let mut text = value.to_string().into_bytes();
    assert!(text.len() <= len, "{} bytes already", text.len());
    text.resize(len, b' ');
    text
}

/// 64 KiB of body (any route but the CRL's): 65,536 bytes are read, 65,537 are 413.
async fn request_bodies_up_to_64_kib(app: TestApp) {
    let at = padded(&json!({"certificate": pki::ca("At").pem()}), 64 * 1024);
    app.api.post_raw(CERTS, at).await.ok();
    let past = padded(
        &json!({"certificate": pki::ca("Past").pem()}),
        64 * 1024 + 1,
    );
    app.api
        .post_raw(CERTS, past)
        .await
        .err(413, Some("request_too_large"), None);
    assert_eq!(app.api.all_ids().await.len(), 1);
}

/// The `certificate` field holds at most 16,384 bytes: text around the block counts.
async fn certificates_up_to_16384_bytes(app: TestApp) {
    let pad = |pem: String, len: usize| {
        let mut text = pem.into_bytes();
        text.resize(len, b'\n');
        String::from_utf8(text).unwrap()
    };
    let at = pad(pki::ca("At").pem(), 16_384);
    let id = app.api.upload(&at, None).await.id();
    let stored = app
        .api
        .get(&format!("{CERTS}/{id}?include[]=content"))
        .await;
    assert_eq!(
        stored.ok()["certificate_details"]["content"].as_str(),
        Some(at.as_str()),
        "kept exactly as uploaded"
    );
    let past = pad(pki::ca("Past").pem(), 16_385);
    let message = app
        .api
        .upload(&past, None)
        .await
        .err(400, Some("certificate_too_large"), Some("certificate"))
        .to_owned();
    assert!(message.contains("16384"), "{message}");
    assert_eq!(app.api.all_ids().await, [id]);
}

/// Certificate names (upload and modify), admin key names, project names (create and rename)
/// and deny-list reasons: 256 characters accepted, 257 refused with the field as `param`.
async fn names_up_to_256_characters(app: TestApp) {
    let (at, past) = ("é".repeat(256), "é".repeat(257));
    // Certificates.
    let up = app.api.upload(&pki::ca("Named").pem(), Some(&at)).await;
    assert_eq!(up.ok()["name"], at.as_str());
    let path = format!("{CERTS}/{}", up.id());
    app.api
        .upload(&pki::ca("Too long").pem(), Some(&past))
        .await
        .err(400, None, Some("name"));
    app.api.post(&path, json!({"name": "short"})).await.ok();
    assert_eq!(
        app.api.post(&path, json!({"name": at})).await.ok()["name"],
        at.as_str()
    );
    app.api
        .post(&path, json!({"name": past}))
        .await
        .err(400, None, Some("name"));
    assert_eq!(app.api.all_ids().await.len(), 1);
    // Admin keys: 1 to 256.
    let keys = "/organization/admin_api_keys";
    for name in ["k", at.as_str()] {
        let key = app.api.post(keys, json!({"name": name})).await;
        assert_eq!(key.ok()["name"], name);
    }
    for name in ["", past.as_str()] {
        app.api
            .post(keys, json!({"name": name}))
            .await
            .err(400, None, Some("name"));
    }
    // Projects: 1 to 256.
    let projects = "/organization/projects";
    let project = app.api.post(projects, json!({"name": at})).await;
    assert_eq!(project.ok()["name"], at.as_str());
    let project = format!("{projects}/{}", project.id());
    app.api.post(&project, json!({"name": "p"})).await.ok();
    app.api.post(&project, json!({"name": at})).await.ok();
    for name in ["", past.as_str()] {
        app.api
            .post(projects, json!({"name": name}))
            .await
            .err(400, None, Some("name"));
        app.api
            .post(&project, json!({"name": name}))
            .await
            .err(400, None, Some("name"));
    }
    // Deny-list reasons.
    let denied = "/organization/revoked_certificates";
    let entry = app
        .api
        .post(
            denied,
            json!({"sha256_fingerprint": "ab".repeat(32), "reason": at}),
        )
        .await;
    assert_eq!(entry.ok()["reason"], at.as_str());
    app.api
        .post(
            denied,
            json!({"sha256_fingerprint": "cd".repeat(32), "reason": past}),
        )
        .await
        .err(400, None, Some("reason"));
    assert_eq!(app.api.list_all(denied).await.len(), 1);
}

/// A toggle names 1 to 10 certificates, in either scope: 10 change together, 11 change
/// nothing.
async fn toggles_of_1_to_10_ids(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(app.api.upload_new(&format!("CA {i}")).await);
    }
    let project = app.api.create_project("P").await;
    for scope in [
        CERTS.to_owned(),
        format!("/organization/projects/{project}/certificates"),
    ] {
        let list = scope.clone();
        let active = |app: &TestApp, list: String| {
            let api = app.api.clone();
            async move {
                api.list_all(&list)
                    .await
                    .iter()
                    .filter(|c| c["active"] == true)
                    .count()
            }
        };
        app.api
            .post(
                &format!("{scope}/activate"),
                json!({"certificate_ids": ids}),
            )
            .await
            .err(400, None, Some("certificate_ids"));
        app.api
            .post(&format!("{scope}/activate"), json!({"certificate_ids": []}))
            .await
            .err(400, None, Some("certificate_ids"));
        assert_eq!(
            active(&app, list.clone()).await,
            0,
            "{scope}: nothing changed"
        );
        let on = app
            .api
            .post(
                &format!("{scope}/activate"),
                json!({"certificate_ids": ids[..10]}),
            )
            .await;
        assert_eq!(on.ok()["data"].as_array().unwrap().len(), 10);
        assert_eq!(active(&app, list.clone()).await, 10, "{scope}");
        app.api
            .post(
                &format!("{scope}/deactivate"),
                json!({"certificate_ids": ids[..1]}),
            )
            .await
            .ok();
        assert_eq!(active(&app, list).await, 9, "{scope}");
    }
}

/// Every list takes `limit` 1 to 100: 1 gives one item (and says there are more), 100 is
/// accepted, 0 and 101 are refused with `param` `limit`.
async fn list_limits_of_1_to_100(app: TestApp) {
    app.api.upload_new("One").await;
    app.api.upload_new("Two").await;
    let project = app.api.create_project("P").await;
    app.api
        .post("/organization/admin_api_keys", json!({"name": "second"}))
        .await
        .ok();
    for fingerprint in ["ab", "cd"] {
        app.api
            .post(
                "/organization/revoked_certificates",
                json!({"sha256_fingerprint": fingerprint.repeat(32)}),
            )
            .await
            .ok();
    }
    for list in [
        CERTS.to_owned(),
        format!("/organization/projects/{project}/certificates"),
        "/organization/projects".to_owned(),
        "/organization/admin_api_keys".to_owned(),
        "/organization/audit_logs".to_owned(),
        "/organization/revoked_certificates".to_owned(),
    ] {
        let one = app.api.get(&format!("{list}?limit=1")).await;
        assert_eq!(one.ok()["data"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(one.ok()["has_more"], true, "{list}");
        let all = app.api.get(&format!("{list}?limit=100")).await;
        assert!(all.ok()["data"].as_array().unwrap().len() >= 2, "{list}");
        assert_eq!(all.ok()["has_more"], false, "{list}");
        for limit in [0, 101] {
            app.api
                .get(&format!("{list}?limit={limit}"))
                .await
                .err(400, None, Some("limit"));
        }
    }
}

/// A CA must stay valid for 24 hours more (by the store's clock): expiring in exactly 24 h is
/// accepted, a second less is refused.
async fn certificates_valid_for_at_least_24_hours(app: TestApp) {
    let now = app.clock.now();
    let short = pki::ca_valid("Short", now - 3_600, now + 86_400 - 1);
    let message = app
        .api
        .upload(&short.pem(), None)
        .await
        .err(400, Some("invalid_certificate"), Some("certificate"))
        .to_owned();
    assert!(message.contains("within 24 hours"), "{message}");
    let enough = pki::ca_valid("Enough", now - 3_600, now + 86_400);
    app.api.upload(&enough.pem(), None).await.ok();
    assert_eq!(app.api.all_ids().await.len(), 1);
}

/// A client filter of exactly 4,096 bytes is stored; 4,097 are refused (upload and modify).
async fn client_filters_up_to_4_kib(app: TestApp) {
    let filter = |len: usize| {
        let frame = "cert.subject_cn != \"\"".len();
        format!("cert.subject_cn != \"{}\"", "x".repeat(len - frame))
    };
    let (at, past) = (filter(4096), filter(4097));
    assert_eq!((at.len(), past.len()), (4096, 4097));
    let up = app
        .api
        .post(
            CERTS,
            json!({"certificate": pki::ca("At").pem(), "client_filter": at}),
        )
        .await;
    assert_eq!(up.ok()["client_filter"], at.as_str());
    let path = format!("{CERTS}/{}", up.id());
    app.api
        .post(
            CERTS,
            json!({"certificate": pki::ca("Past").pem(), "client_filter": past}),
        )
        .await
        .err(400, Some("invalid_client_filter"), Some("client_filter"));
    app.api
        .post(&path, json!({"client_filter": past}))
        .await
        .err(400, Some("invalid_client_filter"), Some("client_filter"));
    app.api
        .post(&path, json!({"client_filter": null}))
        .await
        .ok();
    let set = app.api.post(&path, json!({"client_filter": at})).await;
    assert_eq!(set.ok()["client_filter"], at.as_str());
    assert_eq!(app.api.all_ids().await.len(), 1);
}

/// The CRL route reads bodies up to 8 MiB: 8,388,608 bytes reach the CRL check (which refuses
/// this one's content), 8,388,609 are 413.
async fn crl_bodies_up_to_8_mib(app: TestApp) {
    let id = app.api.upload_new("Org CA").await;
    let path = format!("{CERTS}/{id}/crl");
    let body = |len: usize| {
        let frame = json!({"crl": ""}).to_string().len();
        json!({"crl": "A".repeat(len - frame)})
            .to_string()
            .into_bytes()
    };
    let put = |bytes: Vec<u8>| {
        let req = app
            .api
            .request(reqwest::Method::PUT, &path)
            .header("content-type", "application/json")
            .body(bytes);
        app.api.send(req)
    };
    let at = body(8 * 1024 * 1024);
    assert_eq!(at.len(), 8 * 1024 * 1024);
    put(at).await.err(400, Some("invalid_crl"), Some("crl"));
    put(body(8 * 1024 * 1024 + 1))
        .await
        .err(413, Some("request_too_large"), None);
    app.api.get(&path).await.err(404, None, None);
}

/// RSA keys the gateway can use: up to 8,192 bits, exponents 3 to 2^32.
async fn rsa_keys_up_to_8192_bits_with_exponents_3_to_2_32(app: TestApp) {
    let issuer = pki::ca("Issuer");
    let modulus = |bits: usize| {
        let mut m = vec![0x5a_u8; bits.div_ceil(8)];
        // The top bit of the first byte sets the length in bits exactly.
        let top = (bits - 1) % 8;
        m[0] = (1 << top) | ((1 << top) - 1) & 0x5a;
        m
    };
    let f4 = [1, 0, 1];
    let two_32 = [1, 0, 0, 0, 0];
    let two_32_plus_1 = [1, 0, 0, 0, 1];
    let accepted = [
        ("RSA 8192", modulus(8192), &f4[..]),
        ("exponent 3", modulus(2048), &[3][..]),
        ("exponent 2^32", modulus(2048), &two_32[..]),
    ];
    for (name, m, e) in accepted {
        let pem = pki::ca_with_key(&issuer, name, &pki::RsaPublicKey::new(&m, e));
        app.api.upload(&pem, Some(name)).await.ok();
    }
    let refused = [
        ("RSA 8193", modulus(8193), &f4[..], "8193 bits"),
        ("exponent 2", modulus(2048), &[2][..], "exponent"),
        (
            "exponent 2^32+1",
            modulus(2048),
            &two_32_plus_1[..],
            "exponent",
        ),
    ];
    for (name, m, e, says) in refused {
        let pem = pki::ca_with_key(&issuer, name, &pki::RsaPublicKey::new(&m, e));
        let message = app
            .api
            .upload(&pem, Some(name))
            .await
            .err(400, Some("invalid_certificate"), Some("certificate"))
            .to_owned();
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(app.api.all_ids().await.len(), 3);
}

/// Ids from the client are echoed whole up to 64 characters; a longer one is cut to 61 and
/// "...".
async fn ids_echoed_up_to_64_characters(app: TestApp) {
    let at = format!("cert_{}", "x".repeat(59));
    let past = format!("cert_{}", "y".repeat(60));
    assert_eq!((at.len(), past.len()), (64, 65));
    let message = app
        .api
        .get(&format!("{CERTS}/{at}"))
        .await
        .err(404, None, None)
        .to_owned();
    assert!(message.contains(&at), "{message}");
    let message = app
        .api
        .get(&format!("{CERTS}/{past}"))
        .await
        .err(404, None, None)
        .to_owned();
    assert!(!message.contains(&past), "{message}");
    assert!(
        message.contains(&format!("{}...", &past[..61])),
        "{message}"
    );
}

/// `expires_in_seconds` 1 to 31,536,000.
async fn key_lifetimes_of_1_to_31536000_seconds(app: TestApp) {
    let keys = "/organization/admin_api_keys";
    for seconds in [1, 31_536_000] {
        let key = app
            .api
            .post(keys, json!({"name": "k", "expires_in_seconds": seconds}))
            .await;
        let key = key.ok();
        let lifetime = key["expires_at"].as_i64().unwrap() - key["created_at"].as_i64().unwrap();
        assert_eq!(lifetime, seconds, "{key}");
    }
    for seconds in [0, 31_536_001] {
        app.api
            .post(keys, json!({"name": "k", "expires_in_seconds": seconds}))
            .await
            .err(400, None, Some("expires_in_seconds"));
    }
}

/// A deny-list fingerprint is exactly 64 hex digits (colons allowed).
async fn fingerprints_of_64_hex_digits(app: TestApp) {
    let denied = "/organization/revoked_certificates";
    let exact = "Ab".repeat(32);
    let entry = app
        .api
        .post(denied, json!({"sha256_fingerprint": exact}))
        .await;
    assert_eq!(entry.ok()["sha256_fingerprint"], "ab".repeat(32));
    let colons = vec!["cd"; 32].join(":");
    app.api
        .post(denied, json!({"sha256_fingerprint": colons}))
        .await
        .ok();
    for wrong in [
        format!("{}a", "ef".repeat(31)),
        format!("{}a", "ef".repeat(32)),
    ] {
        app.api
            .post(denied, json!({"sha256_fingerprint": wrong}))
            .await
            .err(400, Some("invalid_fingerprint"), Some("sha256_fingerprint"));
    }
    assert_eq!(app.api.list_all(denied).await.len(), 2);
}

/// Retention deletes events strictly older than its cutoff: one at the cutoff stays, one a
/// second older goes.
async fn audit_retention_keeps_the_cutoff_second(app: TestApp) {
    let born = app.clock.now();
    app.clock.advance(10);
    let gone = app.api.create_project("gone").await;
    app.clock.advance(1);
    let kept = app.api.create_project("kept").await;
    let cutoff = app.clock.now();
    app.clock.advance(30 * 86_400);
    assert!(born < cutoff);
    let deleted = app.store.purge_audit_events(cutoff).await.unwrap();
    assert_eq!(deleted, 3, "the two birth events and the older project's");
    let left = app.api.list_all("/organization/audit_logs").await;
    let ids: Vec<&str> = left
        .iter()
        .map(|e| e["project.created"]["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids, [kept.as_str()], "{left:?}");
    assert_ne!(gone, kept);
}
