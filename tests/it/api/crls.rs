//! The CRLs `PUT /organization/certificates/{id}/crl` refuses (spec §13.5): every kind that is
//! not a complete, direct CRL, one dated ahead of certgate's clock, and one that would take the
//! organization past 32 MiB of stored CRLs. A refusal changes nothing.

use base64::Engine as _;
use certgate::domain::Clock;
use serde_json::json;

use crate::helpers::{backend_tests, TestApp};
use crate::pki::{self, extension, issuing_distribution_point, CrlShape};

backend_tests!(
    crl_kinds_are_refused,
    crl_this_update_at_most_five_minutes_ahead,
    crl_storage_limit_per_organization,
);

const DAY: i64 = 86_400;

fn pem(der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new("X509 CRL", der.to_vec()))
}

async fn crl_kinds_are_refused(app: TestApp) {
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let now = app.clock.now();
    let path = format!("/organization/certificates/{ca_id}/crl");
    let stored = pki::crl(&ca, &[vec![5]], now - 60, now + DAY);
    app.api
        .put_json(&path, json!({"crl": stored.pem().unwrap()}))
        .await
        .ok();
    let newer = |shape: CrlShape| pem(&pki::crl_der(&ca, &shape));
    let shape = || CrlShape::revoking(&[vec![6]], now, now + DAY);
    let with_extension = |ext: Vec<u8>| {
        let mut s = shape();
        s.extensions.push(ext);
        newer(s)
    };
    let with_entry_extension = |ext: Vec<u8>| {
        let mut s = shape();
        s.entries[0].1.push(ext);
        newer(s)
    };
    // rcgen makes the two kinds it can: a partition by CA certificates, removeFromCRL.
    let rcgen_crl = |scope: Option<rcgen::CrlScope>, reason| {
        rcgen::CertificateRevocationListParams {
            this_update: time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
            next_update: time::OffsetDateTime::from_unix_timestamp(now + DAY).unwrap(),
            crl_number: rcgen::SerialNumber::from_slice(&[2]),
            issuing_distribution_point: scope.map(|scope| rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://ca.example/crl".into()],
                },
                scope: Some(scope),
            }),
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&[6]),
                revocation_time: time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
                reason_code: Some(reason),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca.cert, &ca.key)
        .unwrap()
        .pem()
        .unwrap()
    };
    let cases = [
        (
            // deltaCRLIndicator, pointing at the stored CRL's number.
            with_extension(extension(&[2, 5, 29, 27], true, &[0x02, 0x01, 0x01])),
            "delta CRL (deltaCRLIndicator)",
        ),
        (
            with_extension(issuing_distribution_point(&[&[0x84, 0x01, 0xff]])),
            "indirect CRL (issuingDistributionPoint with indirectCRL)",
        ),
        (
            // certificateIssuer: a directoryName.
            with_entry_extension(extension(&[2, 5, 29, 29], true, &[0x30, 0x02, 0xa4, 0x00])),
            "names another issuer (certificateIssuer)",
        ),
        (
            with_extension(issuing_distribution_point(&[&[0x83, 0x02, 0x06, 0x40]])),
            "only some revocation reasons (onlySomeReasons)",
        ),
        (
            rcgen_crl(
                Some(rcgen::CrlScope::CaCertsOnly),
                rcgen::RevocationReason::KeyCompromise,
            ),
            "only CA certificates (onlyContainsCACerts)",
        ),
        (
            with_extension(issuing_distribution_point(&[&[0x85, 0x01, 0xff]])),
            "only attribute certificates (onlyContainsAttributeCerts)",
        ),
        (
            with_extension(extension(
                &[1, 3, 6, 1, 4, 1, 55555, 9],
                true,
                &[0x05, 0x00],
            )),
            "critical extension certgate does not understand (1.3.6.1.4.1.55555.9)",
        ),
        (
            with_entry_extension(extension(
                &[1, 3, 6, 1, 4, 1, 55555, 9],
                true,
                &[0x05, 0x00],
            )),
            "entry for serial 06 has a critical extension certgate does not understand",
        ),
        (
            rcgen_crl(None, rcgen::RevocationReason::RemoveFromCrl),
            "has the reason removeFromCRL",
        ),
    ];
    for (text, says) in cases {
        let message = app
            .api
            .put_json(&path, json!({"crl": text}))
            .await
            .err(400, Some("invalid_crl"), Some("crl"))
            .to_owned();
        assert!(message.contains(says), "{says}: {message}");
    }
    // The stored CRL is untouched, and only its upload was audited.
    let kept = app.api.get(&path).await;
    assert_eq!(kept.ok()["this_update"], now - 60);
    assert_eq!(kept.ok()["revoked_count"], 1);
    let events = app
        .api
        .get("/organization/audit_logs?event_types[]=certificate.crl_updated")
        .await;
    assert_eq!(events.ok()["data"].as_array().unwrap().len(), 1);
    // The same shapes without what made them refused are stored: a non-critical unknown
    // extension, an issuing distribution point that only names where the CRL is published.
    let fine = with_extension(issuing_distribution_point(&[]));
    app.api.put_json(&path, json!({"crl": fine})).await.ok();
    let fine = with_entry_extension(extension(&[1, 3, 6, 1, 4, 1, 55555, 9], false, &[5, 0]));
    let stored = app.api.put_json(&path, json!({"crl": fine})).await;
    assert_eq!(stored.ok()["revoked_count"], 1);
    assert_eq!(stored.ok()["this_update"], now);
}

/// thisUpdate up to 5 minutes ahead of the store's clock is clock skew; further is refused, so
/// a CRL dated 2096 cannot make every real CRL "outdated" (issue 30).
async fn crl_this_update_at_most_five_minutes_ahead(app: TestApp) {
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let now = app.clock.now();
    let path = format!("/organization/certificates/{ca_id}/crl");
    let dated = |this_update: i64| pki::crl(&ca, &[], this_update, this_update + DAY);
    for ahead in [301, 3_976_300_800 - now] {
        let message = app
            .api
            .put_json(&path, json!({"crl": dated(now + ahead).pem().unwrap()}))
            .await
            .err(400, Some("invalid_crl"), Some("crl"))
            .to_owned();
        assert!(
            message.contains("more than 5 minutes ahead of certgate's clock"),
            "{message}"
        );
    }
    app.api.get(&path).await.err(404, None, None);
    // Exactly 5 minutes ahead is stored; so is a real CRL once the clock has caught up.
    let skewed = app
        .api
        .put_json(&path, json!({"crl": dated(now + 300).pem().unwrap()}))
        .await;
    assert_eq!(skewed.ok()["this_update"], now + 300);
    app.clock.set(now + 600);
    let b64 = base64::engine::general_purpose::STANDARD.encode(dated(now + 500).der());
    app.api.put_json(&path, json!({"crl": b64})).await.ok();
}

/// 32 MiB of CRL DER per organization, counted inside the writing transaction: exactly at the
/// limit is stored, one byte past it is refused; replacing a CRL counts the new size minus the
/// old; another organization has its own 32 MiB.
async fn crl_storage_limit_per_organization(app: TestApp) {
    const LIMIT: usize = 32 * 1024 * 1024;
    // Six CRLs fill the limit exactly (each PUT body stays under its 8 MiB).
    let sizes = [
        5_600_000,
        5_600_000,
        5_600_000,
        5_600_000,
        5_600_000,
        LIMIT - 28_000_000,
    ];
    let now = app.clock.now();
    let cas: Vec<pki::Ca> = (0..7).map(|i| pki::ca(&format!("CRL CA {i}"))).collect();
    let mut ids = Vec::new();
    for ca in &cas {
        ids.push(app.api.upload(&ca.pem(), None).await.id());
    }
    let path = |i: usize| format!("/organization/certificates/{}/crl", ids[i]);
    // The body is written by hand: serde_json escaping 7 MiB char by char, unoptimised, would
    // be most of the test's time.
    let put = |i: usize, der: Vec<u8>| {
        let body = format!(
            r#"{{"crl":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let req = app
            .api
            .request(reqwest::Method::PUT, &path(i))
            .header("content-type", "application/json")
            .body(body);
        app.api.send(req)
    };
    for (i, &size) in sizes.iter().enumerate() {
        put(i, pki::crl_of_size(&cas[i], now - 60, now + DAY, size))
            .await
            .ok();
    }
    // At the limit: one byte more, replacing the first CRL, is refused and changes nothing.
    let message = put(0, pki::crl_of_size(&cas[0], now - 30, now + DAY, 5_600_001))
        .await
        .err(400, Some("crl_storage_limit_reached"), Some("crl"))
        .to_owned();
    assert!(message.contains(&format!("{}", LIMIT + 1)), "{message}");
    assert!(message.contains("32 MiB"), "{message}");
    assert_eq!(app.api.get(&path(0)).await.ok()["this_update"], now - 60);
    // So is any CRL on another CA.
    let small = pki::crl(&cas[6], &[vec![1]], now, now + DAY).der().to_vec();
    put(6, small.clone())
        .await
        .err(400, Some("crl_storage_limit_reached"), Some("crl"));
    app.api.get(&path(6)).await.err(404, None, None);
    // A replacement of the same size fits: it counts its size minus the old one's.
    let same = put(0, pki::crl_of_size(&cas[0], now - 30, now + DAY, 5_600_000)).await;
    assert_eq!(same.ok()["this_update"], now - 30);
    // Another organization stores its own.
    let (_, them) = app.other_org().await;
    let theirs = them.upload(&cas[6].pem(), None).await.id();
    them.put_json(
        &format!("/organization/certificates/{theirs}/crl"),
        json!({"crl": pem(&small)}),
    )
    .await
    .ok();
    // Deleting a CRL makes room.
    app.api.delete(&path(5)).await.ok();
    put(6, small).await.ok();
}
