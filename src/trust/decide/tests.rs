//! The decision on its own, with real certificates (rcgen) and an index built from a snapshot:
//! every refusal of the order `decide` documents, and the admission, without a store, a
//! gateway or a socket. The integration suite drives the same decision through the gateway
//! and the check endpoint.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

use super::*;
use crate::trust::{ChainChecks, PeerChain, TrustAnchor, TrustIndex, TrustSnapshot};

const NOW: i64 = 1_800_000_000;
const ORG: &str = "org-a";
const PROJECT: &str = "proj_p";

fn time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(cn: &str) -> Ca {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time(NOW - 86_400);
    p.not_after = time(NOW + 86_400);
    p.key_identifier_method = KeyIdMethod::Sha256;
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A client leaf of `ca`, valid around [`NOW`].
fn leaf(ca: &Ca) -> PeerChain {
    let mut p = CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "client");
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before = time(NOW - 3600);
    p.not_after = time(NOW + 3600);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    PeerChain::new(vec![CertificateDer::from(cert.der().to_vec())]).unwrap()
}

/// The snapshot row of `ca` as the store records it at upload.
fn anchor(id: &str, ca: &Ca, org_wide: bool, projects: &[&str]) -> TrustAnchor {
    let parsed = crate::x509::parse_ca_pem(&ca.cert.pem(), NOW).unwrap();
    TrustAnchor {
        certificate_id: id.to_owned(),
        org_id: ORG.to_owned(),
        org_wide,
        projects: projects.iter().map(|p| (*p).to_owned()).collect(),
        pem: ca.cert.pem(),
        subject_der: hex::decode(parsed.subject_der).unwrap(),
        ski: hex::decode(parsed.ski).unwrap(),
        valid_at: parsed.valid_at,
        expires_at: parsed.expires_at,
        client_filter: None,
        ocsp: crate::domain::OcspMode::Off,
    }
}

fn index(anchors: Vec<TrustAnchor>, revoked: &[&str]) -> TrustIndex {
    let snapshot = TrustSnapshot {
        generation: 1,
        anchors,
        organizations: vec![ORG.to_owned()],
        projects: vec![(ORG.to_owned(), PROJECT.to_owned())],
        revoked: revoked
            .iter()
            .map(|sha| (ORG.to_owned(), (*sha).to_owned()))
            .collect(),
        crls: Vec::new(),
    };
    TrustIndex::build(&snapshot, &TrustIndex::empty())
}

/// The gateway's three steps for a fresh connection, at `now`.
fn judge(
    index: &TrustIndex,
    peer: Option<&PeerChain>,
    project: Option<&str>,
    now: i64,
) -> Result<Admission, Rejection> {
    let scope = Scope {
        organization: ORG,
        project,
    };
    precheck(index, peer, scope)?;
    let mut checks = ChainChecks::default();
    if let Some(peer) = peer {
        checks.fill(index, peer, ORG, now, crate::trust::SIGNATURE_ALGORITHMS);
        checks.fill_filters(index, peer, scope, now);
    }
    decide(index, peer, &checks, scope, now)
}

#[test]
fn an_active_ca_admits_its_client_and_names_itself() {
    let ca = ca("Active CA");
    let index = index(vec![anchor("cert_a", &ca, true, &[])], &[]);
    let admitted = judge(&index, Some(&leaf(&ca)), Some(PROJECT), NOW).unwrap();
    assert_eq!(admitted.certificate_id, "cert_a");
    assert_eq!(admitted.project.as_deref(), Some(PROJECT));
}

#[test]
fn refusals_before_any_chain_work() {
    let ca = ca("Active CA");
    let client = leaf(&ca);
    assert_eq!(
        judge(&TrustIndex::empty(), Some(&client), None, NOW),
        Err(Rejection::TrustStateUnavailable),
        "nothing loaded: never open"
    );
    let index = index(vec![anchor("cert_a", &ca, true, &[])], &[]);
    let unknown_org = Scope {
        organization: "org-other",
        project: None,
    };
    assert_eq!(
        precheck(&index, Some(&client), unknown_org),
        Err(Rejection::UnknownOrganization)
    );
    assert_eq!(
        judge(&index, Some(&client), Some("proj_archived"), NOW),
        Err(Rejection::UnknownProject)
    );
    assert_eq!(
        judge(&index, None, None, NOW),
        Err(Rejection::CertificateRequired)
    );
}

#[test]
fn a_chain_to_no_active_ca_is_untrusted() {
    let (active, other) = (ca("Active CA"), ca("Other CA"));
    let index = index(vec![anchor("cert_a", &active, true, &[])], &[]);
    assert_eq!(
        judge(&index, Some(&leaf(&other)), None, NOW),
        Err(Rejection::Untrusted(Untrusted::NoActiveCa))
    );
}

#[test]
fn a_project_ca_admits_only_for_its_project() {
    let ca = ca("Project CA");
    let index = index(vec![anchor("cert_p", &ca, false, &[PROJECT])], &[]);
    let client = leaf(&ca);
    assert_eq!(
        judge(&index, Some(&client), None, NOW),
        Err(Rejection::NotActiveForProject)
    );
    assert!(judge(&index, Some(&client), Some(PROJECT), NOW).is_ok());
}

#[test]
fn a_deny_listed_leaf_is_revoked_though_its_ca_is_active() {
    let ca = ca("Active CA");
    let client = leaf(&ca);
    let index = index(
        vec![anchor("cert_a", &ca, true, &[])],
        &[client.leaf_sha256()],
    );
    assert_eq!(
        judge(&index, Some(&client), None, NOW),
        Err(Rejection::Revoked)
    );
}

#[test]
fn outside_the_validity_windows_is_expired_from_both_sides() {
    let ca = ca("Active CA");
    let client = leaf(&ca);
    let index = index(vec![anchor("cert_a", &ca, true, &[])], &[]);
    // The leaf is valid for an hour either side of NOW, the CA for a day.
    assert!(judge(&index, Some(&client), None, NOW + 3600).is_ok());
    assert_eq!(
        judge(&index, Some(&client), None, NOW + 3601),
        Err(Rejection::Expired)
    );
    assert!(judge(&index, Some(&client), None, NOW - 3600).is_ok());
    assert_eq!(
        judge(&index, Some(&client), None, NOW - 3601),
        Err(Rejection::Expired)
    );
}

#[test]
fn of_several_refusals_the_furthest_stage_is_answered() {
    // One CA would admit but for the project; another verifies nothing: the answer is the
    // furthest stage any active CA reached.
    let (project_ca, other) = (ca("Project CA"), ca("Unrelated CA"));
    let index = index(
        vec![
            anchor("cert_o", &other, true, &[]),
            anchor("cert_p", &project_ca, false, &[PROJECT]),
        ],
        &[],
    );
    assert_eq!(
        judge(&index, Some(&leaf(&project_ca)), None, NOW),
        Err(Rejection::NotActiveForProject)
    );
}
