//! [`TrustIndex::apply`] on its own: after each kind of change it equals the index a full
//! snapshot of the new state builds, shares the parts of organizations the change did not
//! touch, and reuses what it already decoded (anchors, CRL serials, compiled filters).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
};

use super::*;
use crate::trust::{CertificateState, CrlState, OrganizationState};

const NOW: i64 = 1_800_000_000;

fn ca(cn: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 86_400).unwrap();
    p.key_identifier_method = KeyIdMethod::Sha256;
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn anchor(org: &str, id: &str, cert: &rcgen::Certificate, projects: &[&str]) -> StoredAnchor {
    let parsed = crate::x509::parse_ca_pem(&cert.pem(), NOW).unwrap();
    StoredAnchor {
        certificate_id: id.to_owned(),
        org_id: org.to_owned(),
        org_wide: projects.is_empty(),
        projects: projects.iter().map(|p| (*p).to_owned()).collect(),
        pem: cert.pem(),
        subject_der: hex::decode(parsed.subject_der).unwrap(),
        ski: hex::decode(parsed.ski).unwrap(),
        valid_at: parsed.valid_at,
        expires_at: parsed.expires_at,
        client_filter: None,
        ocsp: crate::domain::OcspMode::Off,
    }
}

/// The CRL of `ca` revoking serial `n`, as a read fetched it.
fn crl(org: &str, id: &str, ca: &(rcgen::Certificate, KeyPair), n: u8) -> StoredCrl {
    let t = time::OffsetDateTime::from_unix_timestamp(NOW).unwrap();
    let der = rcgen::CertificateRevocationListParams {
        this_update: t,
        next_update: t + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from_slice(&[n]),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&[n]),
            revocation_time: t,
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.0, &ca.1)
    .unwrap()
    .der()
    .to_vec();
    StoredCrl {
        org_id: org.to_owned(),
        certificate_id: id.to_owned(),
        issuer_sha256: hex::encode(Sha256::digest(ca.0.der())),
        content: hex::encode(Sha256::digest(&der)),
        fetched: Some(FetchedCrl {
            bytes: der.len() as u64,
            serials: crate::crl::revoked_serials(&der).map(Arc::new),
        }),
    }
}

fn snapshot(generation: i64, anchors: Vec<StoredAnchor>, crls: Vec<StoredCrl>) -> TrustSnapshot {
    TrustSnapshot {
        generation,
        anchors,
        organizations: vec!["a".into(), "b".into()],
        projects: vec![("a".into(), "p".into())],
        revoked: vec![("b".into(), "00".repeat(32))],
        crls,
    }
}

fn delta(since: i64) -> TrustDelta {
    TrustDelta {
        since,
        generation: since + 1,
        ..TrustDelta::default()
    }
}

#[test]
fn a_change_rebuilds_only_its_organization_and_equals_a_full_build() {
    let (x, y) = (ca("X"), ca("Y"));
    let before = TrustIndex::build(
        &snapshot(
            1,
            vec![anchor("a", "cx", &x.0, &[]), anchor("b", "cy", &y.0, &[])],
            vec![],
        ),
        &TrustIndex::empty(),
    );
    // "a" activates Y for its project.
    let mut d = delta(1);
    d.certificates.push(CertificateState {
        org_id: "a".into(),
        certificate_id: "cy-a".into(),
        anchor: Some(anchor("a", "cy-a", &y.0, &["p"])),
    });
    let after = before.apply(&d);
    let full = TrustIndex::build(
        &snapshot(
            2,
            vec![
                anchor("a", "cx", &x.0, &[]),
                anchor("b", "cy", &y.0, &[]),
                anchor("a", "cy-a", &y.0, &["p"]),
            ],
            vec![],
        ),
        &TrustIndex::empty(),
    );
    assert_eq!(after.view(), full.view());
    assert_eq!(after.len(), 3);
    assert!(
        Arc::ptr_eq(&before.orgs["b"], &after.orgs["b"]),
        "b untouched, shared"
    );
    assert!(!Arc::ptr_eq(&before.orgs["a"], &after.orgs["a"]));
    // The anchor decoded before is reused, not decoded again.
    assert!(Arc::ptr_eq(
        &before.orgs["a"].stored["cx"].parsed,
        &after.orgs["a"].stored["cx"].parsed
    ));
    // And back: deactivated, it is gone.
    let mut d = delta(2);
    d.certificates.push(CertificateState {
        org_id: "a".into(),
        certificate_id: "cy-a".into(),
        anchor: None,
    });
    assert_eq!(after.apply(&d).view(), {
        let mut v = before.view();
        v.generation = Some(3);
        v
    });
}

#[test]
fn projects_deny_list_and_organizations_follow_their_records() {
    let x = ca("X");
    let before = TrustIndex::build(
        &snapshot(1, vec![anchor("a", "cx", &x.0, &["p"])], vec![]),
        &TrustIndex::empty(),
    );
    let mut d = delta(1);
    d.projects.push(("a".into(), "p".into(), false));
    d.projects.push(("a".into(), "q".into(), true));
    d.certificates.push(CertificateState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        anchor: None,
    });
    d.revoked.push(("b".into(), "00".repeat(32), false));
    d.revoked.push(("a".into(), "11".repeat(32), true));
    d.organizations.push(OrganizationState {
        org_id: "c".into(),
        exists: true,
        projects: vec!["pc".into()],
    });
    let after = before.apply(&d);
    let mut s = snapshot(2, vec![], vec![]);
    s.projects = vec![("a".into(), "q".into()), ("c".into(), "pc".into())];
    s.revoked = vec![("a".into(), "11".repeat(32))];
    s.organizations.push("c".into());
    assert_eq!(
        after.view(),
        TrustIndex::build(&s, &TrustIndex::empty()).view()
    );
    assert!(after.has_organization("c") && after.has_project("c", "pc"));
    assert!(!after.has_project("a", "p"));
}

#[test]
fn crls_are_reused_by_version_and_counted_once() {
    let x = ca("X");
    let first = crl("a", "cx", &x, 1);
    let bytes = first.fetched.as_ref().unwrap().bytes;
    let before = TrustIndex::build(
        &snapshot(1, vec![anchor("a", "cx", &x.0, &[])], vec![first.clone()]),
        &TrustIndex::empty(),
    );
    assert_eq!(before.crl_bytes_read(), bytes);
    // The same version named again, left out of the read as held: reused, not read.
    let mut d = delta(1);
    let held = StoredCrl {
        fetched: None,
        ..first.clone()
    };
    d.crls.push(CrlState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        crl: Some(held),
    });
    let same = before.apply(&d);
    assert_eq!(same.crl_bytes_read(), bytes);
    assert!(Arc::ptr_eq(
        &before.orgs["a"].crls.values().next().unwrap().serials,
        &same.orgs["a"].crls.values().next().unwrap().serials
    ));
    // A new version replaces it; a deletion removes it.
    let second = crl("a", "cx", &x, 2);
    let mut d = delta(2);
    d.crls.push(CrlState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        crl: Some(second.clone()),
    });
    let newer = same.apply(&d);
    let full = TrustIndex::build(
        &snapshot(3, vec![anchor("a", "cx", &x.0, &[])], vec![second]),
        &TrustIndex::empty(),
    );
    assert_eq!(newer.view(), full.view());
    assert!(newer.crl_bytes_read() > bytes);
    let mut d = delta(3);
    d.crls.push(CrlState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        crl: None,
    });
    assert!(newer.apply(&d).orgs["a"].crls.is_empty());
}

#[test]
fn a_filter_is_compiled_again_only_when_its_source_changes() {
    let x = ca("X");
    let mut a = anchor("a", "cx", &x.0, &[]);
    a.client_filter = Some("true".into());
    let before = TrustIndex::build(&snapshot(1, vec![a.clone()], vec![]), &TrustIndex::empty());
    let filter = |i: &TrustIndex| i.orgs["a"].stored["cx"].filter.clone().unwrap();
    let mut d = delta(1);
    d.certificates.push(CertificateState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        anchor: Some(a.clone()),
    });
    let same = before.apply(&d);
    assert!(Arc::ptr_eq(&filter(&before), &filter(&same)));
    a.client_filter = Some("false".into());
    let mut d = delta(2);
    d.certificates.push(CertificateState {
        org_id: "a".into(),
        certificate_id: "cx".into(),
        anchor: Some(a.clone()),
    });
    let changed = same.apply(&d);
    assert!(!Arc::ptr_eq(&filter(&same), &filter(&changed)));
    assert_eq!(
        changed.view(),
        TrustIndex::build(&snapshot(3, vec![a], vec![]), &TrustIndex::empty()).view()
    );
}
