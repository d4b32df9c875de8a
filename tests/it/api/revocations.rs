//! The deny-list (`/organization/revoked_certificates`) and CRLs
//! (`/organization/certificates/{id}/crl`), spec §12.5.

use base64::Engine as _;
use certgate::domain::Clock;
use serde_json::json;
use sha2::Digest;

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    deny_list_lifecycle,
    deny_list_bad_input_changes_nothing,
    deny_list_limit,
    crl_lifecycle,
    crl_refusals_change_nothing,
);

const DAY: i64 = 86_400;

fn fingerprint(cert: &rcgen::Certificate) -> String {
    hex::encode(sha2::Sha256::digest(cert.der()))
}

async fn deny_list_lifecycle(app: TestApp) {
    let ca = pki::ca("Org CA");
    let now = app.clock.now();
    let leaf = pki::leaf(&ca, "leaked", now - DAY, now + 30 * DAY);
    let fp = fingerprint(&leaf.cert);
    // From a PEM.
    let r = app
        .api
        .post(
            "/organization/revoked_certificates",
            json!({"certificate": leaf.cert.pem(), "reason": "key leaked"}),
        )
        .await;
    let first = r.ok().clone();
    assert_eq!(first["object"], "organization.revoked_certificate");
    assert!(first["id"].as_str().unwrap().starts_with("revcert_"));
    assert_eq!(first["sha256_fingerprint"], fp.as_str());
    assert_eq!(first["reason"], "key leaked");
    assert_eq!(first["created_at"], app.clock.now());
    let id = first["id"].as_str().unwrap().to_owned();
    // The same fingerprint again, spelled with colons in capitals: a conflict naming it.
    let spelled = fp
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let message = app
        .api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": spelled}),
        )
        .await
        .err(409, Some("certificate_already_revoked"), None)
        .to_owned();
    assert!(message.contains(&id), "{message}");
    // A second entry, by fingerprint, without a reason.
    let other = pki::leaf(&ca, "other", now - DAY, now + DAY);
    let second = app
        .api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": fingerprint(&other.cert)}),
        )
        .await
        .ok()
        .clone();
    assert!(second["reason"].is_null());
    // Listed newest first (ties broken by insertion), paged.
    let page = app
        .api
        .get("/organization/revoked_certificates?limit=1")
        .await;
    let page = page.ok();
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"][0]["id"], second["id"]);
    assert_eq!(page["has_more"], true);
    let next = app
        .api
        .get(&format!(
            "/organization/revoked_certificates?limit=1&after={}",
            page["last_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(next.ok()["data"][0]["id"], id.as_str());
    assert_eq!(
        app.api
            .get(&format!("/organization/revoked_certificates/{id}"))
            .await
            .ok()["sha256_fingerprint"],
        fp.as_str()
    );
    // Another organization sees none of it.
    let (_, them) = app.other_org().await;
    them.get(&format!("/organization/revoked_certificates/{id}"))
        .await
        .err(404, None, None);
    them.delete(&format!("/organization/revoked_certificates/{id}"))
        .await
        .err(404, None, None);
    assert!(them
        .list_all("/organization/revoked_certificates")
        .await
        .is_empty());
    // Delete: the answer, then 404, and the id stays a cursor; the fingerprint can come back.
    let deleted = app
        .api
        .delete(&format!("/organization/revoked_certificates/{id}"))
        .await;
    assert_eq!(
        *deleted.ok(),
        json!({"id": id, "object": "organization.revoked_certificate.deleted", "deleted": true})
    );
    app.api
        .get(&format!("/organization/revoked_certificates/{id}"))
        .await
        .err(404, None, None);
    app.api
        .get(&format!("/organization/revoked_certificates?after={id}"))
        .await
        .ok();
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": fp}),
        )
        .await
        .ok();
    // Audited with the entry's id, fingerprint and reason.
    let events = app
        .api
        .get("/organization/audit_logs?event_types[]=certificate.revoked&event_types[]=certificate.unrevoked")
        .await;
    let events = events.ok()["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 4);
    let unrevoked = &events[1];
    assert_eq!(unrevoked["type"], "certificate.unrevoked");
    assert_eq!(
        unrevoked["certificate.unrevoked"],
        json!({"id": id, "sha256_fingerprint": fp, "reason": "key leaked"})
    );
}

async fn deny_list_bad_input_changes_nothing(app: TestApp) {
    let ca = pki::ca("Org CA");
    for (body, status, code, param) in [
        (json!({}), 400, None, Some("certificate")),
        (
            json!({"certificate": ca.pem(), "sha256_fingerprint": "ab".repeat(32)}),
            400,
            None,
            Some("certificate"),
        ),
        (
            json!({"sha256_fingerprint": "ab".repeat(31)}),
            400,
            Some("invalid_fingerprint"),
            Some("sha256_fingerprint"),
        ),
        (
            json!({"sha256_fingerprint": "zz".repeat(32)}),
            400,
            Some("invalid_fingerprint"),
            Some("sha256_fingerprint"),
        ),
        (
            json!({"certificate": "not a certificate"}),
            400,
            Some("invalid_certificate"),
            Some("certificate"),
        ),
        (
            json!({"certificate": format!("{}\n{}", ca.pem(), ca.key.serialize_pem())}),
            400,
            Some("private_key_not_allowed"),
            Some("certificate"),
        ),
        (
            json!({"sha256_fingerprint": "ab".repeat(32), "reason": "x".repeat(257)}),
            400,
            None,
            Some("reason"),
        ),
        (
            json!({"sha256_fingerprint": "ab".repeat(32), "extra": 1}),
            400,
            None,
            Some("extra"),
        ),
        (
            json!({"sha256_fingerprint": 12}),
            400,
            None,
            Some("sha256_fingerprint"),
        ),
    ] {
        app.api
            .post("/organization/revoked_certificates", body)
            .await
            .err(status, code, param);
    }
    assert!(app
        .api
        .list_all("/organization/revoked_certificates")
        .await
        .is_empty());
    app.api
        .get("/organization/revoked_certificates/revcert_nope")
        .await
        .err(404, None, None);
    app.api
        .get("/organization/revoked_certificates?after=revcert_nope")
        .await
        .err(400, None, Some("after"));
}

/// 10,000 entries per organization; the 10,001st is refused inside the writing transaction.
async fn deny_list_limit(app: TestApp) {
    use sqlx::Connection;
    // Fill to the limit directly (10,000 API calls would test the machine, not the rule).
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for i in 0..10_000 {
        sqlx::query("INSERT INTO revoked_certificates (id, org_id, sha256, reason, created_at, seq) VALUES ($1, $2, $3, NULL, 0, $4)")
            .bind(format!("revcert_fill{i:05}"))
            .bind(&app.org_id)
            .bind(format!("{i:064x}"))
            .bind(i64::from(i))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": "ff".repeat(32)}),
        )
        .await
        .err(400, Some("revocation_limit_reached"), None);
    // Removing one makes room.
    app.api
        .delete("/organization/revoked_certificates/revcert_fill00000")
        .await
        .ok();
    app.api
        .post(
            "/organization/revoked_certificates",
            json!({"sha256_fingerprint": "ff".repeat(32)}),
        )
        .await
        .ok();
}

async fn crl_lifecycle(app: TestApp) {
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let now = app.clock.now();
    let path = format!("/organization/certificates/{ca_id}/crl");
    app.api.get(&path).await.err(404, None, None);
    app.api.delete(&path).await.err(404, None, None);
    let leaf = pki::leaf(&ca, "gone", now - DAY, now + DAY);
    let serials = vec![pki::serial_of(&leaf.cert), vec![0x01, 0x02], vec![0x7f]];
    let first = pki::crl(&ca, &serials, now - 100, now + DAY);
    let stored = app
        .api
        .put_json(&path, json!({"crl": first.pem().unwrap()}))
        .await;
    assert_eq!(
        *stored.ok(),
        json!({
            "object": "organization.certificate.crl",
            "certificate_id": ca_id,
            "this_update": now - 100,
            "next_update": now + DAY,
            "revoked_count": 3,
        })
    );
    assert_eq!(*app.api.get(&path).await.ok(), *stored.ok());
    // The same thisUpdate replaces it; base64 DER works too; a big one (over 64 KiB) fits.
    let many: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let big = pki::crl(&ca, &many, now - 100, now + DAY);
    assert!(big.der().len() > 64 * 1024);
    let b64 = base64::engine::general_purpose::STANDARD.encode(big.der());
    let r = app.api.put_json(&path, json!({"crl": b64})).await;
    assert_eq!(r.ok()["revoked_count"], 3000);
    // A newer one replaces it.
    let newer = pki::crl(&ca, &serials[..1], now, now + 2 * DAY);
    assert_eq!(
        app.api
            .put_json(&path, json!({"crl": newer.pem().unwrap()}))
            .await
            .ok()["revoked_count"],
        1
    );
    // One already past its nextUpdate is stored (it shows stale; it stays enforced).
    let lapsed = pki::crl(&ca, &serials, now + 1, now + 2);
    app.clock.set(now + 10);
    app.api
        .put_json(&path, json!({"crl": lapsed.pem().unwrap()}))
        .await
        .ok();
    // `include[]=details` shows it, stale once past nextUpdate.
    let details = app
        .api
        .get(&format!(
            "/organization/certificates/{ca_id}?include[]=details"
        ))
        .await;
    assert_eq!(
        details.ok()["certificate_details"]["crl"],
        json!({"this_update": now + 1, "next_update": now + 2, "revoked_count": 3, "stale": true})
    );
    // Stale only once past nextUpdate: not at it, from the second after.
    for (at, stale) in [(now, false), (now + 2, false), (now + 3, true)] {
        app.clock.set(at);
        let listed = app
            .api
            .get("/organization/certificates?include[]=details")
            .await;
        assert_eq!(
            listed.ok()["data"][0]["certificate_details"]["crl"]["stale"],
            stale,
            "at nextUpdate{:+}",
            at - (now + 2)
        );
    }
    app.clock.set(now);
    // Audited.
    let events = app
        .api
        .get(&format!(
            "/organization/audit_logs?resource_ids[]={ca_id}&event_types[]=certificate.crl_updated"
        ))
        .await;
    let events = events.ok()["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0]["certificate.crl_updated"],
        json!({"id": ca_id, "this_update": now + 1, "next_update": now + 2, "revoked_count": 3})
    );
    // Delete.
    assert_eq!(
        *app.api.delete(&path).await.ok(),
        json!({"object": "organization.certificate.crl.deleted", "certificate_id": ca_id, "deleted": true})
    );
    app.api.get(&path).await.err(404, None, None);
    let deleted = app
        .api
        .get("/organization/audit_logs?event_types[]=certificate.crl_deleted")
        .await;
    assert_eq!(
        deleted.ok()["data"][0]["certificate.crl_deleted"],
        json!({"id": ca_id})
    );
    // Tenant isolation.
    let (_, them) = app.other_org().await;
    them.put_json(&path, json!({"crl": first.pem().unwrap()}))
        .await
        .err(404, None, None);
}

async fn crl_refusals_change_nothing(app: TestApp) {
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let now = app.clock.now();
    let path = format!("/organization/certificates/{ca_id}/crl");
    let current = pki::crl(&ca, &[vec![5]], now, now + DAY);
    app.api
        .put_json(&path, json!({"crl": current.pem().unwrap()}))
        .await
        .ok();
    // Another issuer; the same name but another key (bad signature); not a CRL; older.
    let other = pki::ca("Other CA");
    let impostor = pki::ca("Org CA");
    let cases = [
        (
            pki::crl(&other, &[], now, now + DAY).pem().unwrap(),
            "invalid_crl",
            "issuer",
        ),
        (
            pki::crl(&impostor, &[], now + 5, now + DAY).pem().unwrap(),
            "invalid_crl",
            "signature",
        ),
        (ca.pem(), "invalid_crl", "X509 CRL"),
        ("bm90IGEgY3Js".to_owned(), "invalid_crl", "not a CRL"),
        (
            pki::crl(&ca, &[], now - 10, now + DAY).pem().unwrap(),
            "crl_outdated",
            "older",
        ),
    ];
    for (text, code, says) in cases {
        let message = app
            .api
            .put_json(&path, json!({"crl": text}))
            .await
            .err(400, Some(code), Some("crl"))
            .to_owned();
        assert!(message.contains(says), "{code}: {message}");
    }
    app.api
        .put_json(&path, json!({}))
        .await
        .err(400, None, Some("crl"));
    app.api
        .put_json(
            "/organization/certificates/cert_nope/crl",
            json!({"crl": current.pem().unwrap()}),
        )
        .await
        .err(404, None, None);
    // The stored one is untouched.
    assert_eq!(app.api.get(&path).await.ok()["this_update"], now);
    assert_eq!(app.api.get(&path).await.ok()["revoked_count"], 1);
}
