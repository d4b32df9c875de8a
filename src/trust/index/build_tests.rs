//! The index on its own, built from snapshots of real CA certificates (rcgen): what is indexed
//! and under which keys, what a rebuild reuses, and the revocation lookups, without a store or
//! a gateway. The integration suite drives the same index through the gateway.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose,
};

use super::*;
use crate::crl::SerialSet;
use crate::trust::chain::PathCert;
use crate::trust::{StoredCrl, TrustSnapshot};

const NOW: i64 = 1_800_000_000;

fn time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// A CA certificate's PEM.
fn ca(cn: &str) -> String {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time(NOW - 86_400);
    p.not_after = time(NOW + 86_400);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
}

/// The snapshot row of `pem` as the store records it at upload.
fn anchor(id: &str, org: &str, pem: &str, filter: Option<&str>) -> StoredAnchor {
    let parsed = crate::x509::parse_ca_pem(pem, NOW).unwrap();
    StoredAnchor {
        certificate_id: id.to_owned(),
        org_id: org.to_owned(),
        org_wide: true,
        projects: Vec::new(),
        pem: pem.to_owned(),
        subject_der: hex::decode(parsed.subject_der).unwrap(),
        ski: hex::decode(parsed.ski).unwrap(),
        valid_at: parsed.valid_at,
        expires_at: parsed.expires_at,
        client_filter: filter.map(str::to_owned),
    }
}

fn snapshot(generation: i64, anchors: Vec<StoredAnchor>) -> TrustSnapshot {
    TrustSnapshot {
        generation,
        anchors,
        organizations: vec!["org-a".to_owned(), "org-b".to_owned()],
        projects: vec![("org-a".to_owned(), "proj_live".to_owned())],
        revoked: vec![("org-a".to_owned(), "ab".repeat(32))],
        crls: Vec::new(),
    }
}

#[test]
fn nothing_loaded_admits_no_one() {
    let empty = TrustIndex::empty();
    assert_eq!(empty.generation(), None);
    assert!(empty.is_empty());
    assert!(!empty.has_organization("org-a"));
}

#[test]
fn one_ca_uploaded_twice_is_one_anchor_found_by_subject_and_key_id() {
    let pem = ca("Shared CA");
    let other = ca("Other CA");
    let built = TrustIndex::build(
        &snapshot(
            7,
            vec![
                anchor("cert_b", "org-b", &pem, None),
                anchor("cert_a", "org-a", &pem, None),
                anchor("cert_c", "org-a", &other, None),
            ],
        ),
        &TrustIndex::empty(),
    );
    assert_eq!(built.generation(), Some(7));
    assert_eq!(built.len(), 2, "the same DER is one anchor");
    let row = anchor("cert_a", "org-a", &pem, None);
    let by_subject = &built.by_subject[&row.subject_der];
    assert_eq!(by_subject, &built.by_ski[&row.ski]);
    let [i] = by_subject.as_slice() else {
        panic!("one anchor under that subject: {by_subject:?}");
    };
    let ids: Vec<&str> = built.anchors[*i]
        .activations
        .iter()
        .map(|a| a.certificate_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["cert_a", "cert_b"],
        "sorted by id: a deterministic admitter"
    );
    assert!(built.has_organization("org-b"));
    assert!(!built.has_organization("org-c"));
    assert!(built.has_project("org-a", "proj_live"));
    assert!(
        !built.has_project("org-b", "proj_live"),
        "projects are per organization"
    );
}

#[test]
fn an_anchor_that_does_not_decode_is_left_out() {
    let good = ca("Good CA");
    let mut broken = anchor("cert_x", "org-a", &good, None);
    broken.pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned();
    let built = TrustIndex::build(
        &snapshot(1, vec![broken, anchor("cert_g", "org-a", &good, None)]),
        &TrustIndex::empty(),
    );
    assert_eq!(built.len(), 1);
    assert!(!built.parsed_by_id.contains_key("cert_x"));
}

#[test]
fn a_rebuild_reuses_decoded_anchors_and_filters_but_not_changed_filters() {
    let pem = ca("Reused CA");
    let first = TrustIndex::build(
        &snapshot(1, vec![anchor("cert_a", "org-a", &pem, Some("true"))]),
        &TrustIndex::empty(),
    );
    let same = TrustIndex::build(
        &snapshot(2, vec![anchor("cert_a", "org-a", &pem, Some("true"))]),
        &first,
    );
    assert!(Arc::ptr_eq(
        &first.parsed_by_id["cert_a"],
        &same.parsed_by_id["cert_a"]
    ));
    let filter = |i: &TrustIndex| i.anchors[0].activations[0].filter.clone().unwrap();
    assert!(Arc::ptr_eq(&filter(&first), &filter(&same)));
    let changed = TrustIndex::build(
        &snapshot(
            3,
            vec![anchor("cert_a", "org-a", &pem, Some("cert.subject != ''"))],
        ),
        &same,
    );
    assert!(!Arc::ptr_eq(&filter(&same), &filter(&changed)));
    assert_eq!(changed.filters.len(), 1, "the old source is not kept");
}

fn path(leaf_sha: &str, serial: &[u8], anchor_sha: &str) -> Vec<PathCert> {
    vec![
        PathCert {
            sha256: leaf_sha.to_owned(),
            serial: serial.to_vec(),
        },
        PathCert {
            sha256: anchor_sha.to_owned(),
            serial: Vec::new(),
        },
    ]
}

#[test]
fn revocation_by_deny_list_and_by_the_issuers_crl_per_organization() {
    let pem = ca("Revoking CA");
    let anchor_sha = crate::x509::parse_ca_pem(&pem, NOW).unwrap().sha256;
    let mut serials = SerialSet::with_capacity(1);
    serials.insert(&[0x01, 0x02]);
    let mut snap = snapshot(1, vec![anchor("cert_a", "org-a", &pem, None)]);
    snap.crls = vec![StoredCrl {
        org_id: "org-a".to_owned(),
        certificate_id: "cert_a".to_owned(),
        issuer_sha256: anchor_sha.clone(),
        content: "v1".to_owned(),
        fetched: Some(FetchedCrl {
            bytes: 100,
            serials: Ok(Arc::new(serials)),
        }),
    }];
    let built = TrustIndex::build(&snap, &TrustIndex::empty());
    let denied = "ab".repeat(32);
    let clean = "cd".repeat(32);
    assert!(built.revokes("org-a", &path(&denied, &[9], &anchor_sha)));
    assert!(!built.revokes("org-b", &path(&denied, &[9], &anchor_sha)));
    assert!(built.revokes("org-a", &path(&clean, &[0x01, 0x02], &anchor_sha)));
    assert!(
        !built.revokes("org-b", &path(&clean, &[0x01, 0x02], &anchor_sha)),
        "a CRL is the organization's own"
    );
    assert!(!built.revokes("org-a", &path(&clean, &[0x01], &anchor_sha)));
    assert_eq!(built.crl_bytes_read(), 100);
    assert_eq!(
        built.crl_versions(),
        [("cert_a".to_owned(), "v1".to_owned())].into()
    );

    // The next snapshot leaves the held version's DER out: the serials are reused, no bytes
    // are read again.
    snap.generation = 2;
    snap.crls[0].fetched = None;
    let next = TrustIndex::build(&snap, &built);
    assert!(next.revokes("org-a", &path(&clean, &[0x01, 0x02], &anchor_sha)));
    assert_eq!(next.crl_bytes_read(), 100);
    // Left out but not held (a snapshot read for another index): not enforced, and said so.
    let stray = TrustIndex::build(&snap, &TrustIndex::empty());
    assert!(!stray.revokes("org-a", &path(&clean, &[0x01, 0x02], &anchor_sha)));
}
