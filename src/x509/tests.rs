//! The upload checks on their own, with real certificates (rcgen) and real private keys: what
//! is accepted and kept, every refusal's kind, key material in any wrapping, and the signature
//! check, without a store or HTTP. The integration suite drives the same checks through the API.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::der_parser::asn1_rs::{Any, FromDer as _};

use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn time(unix: i64) -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn ca_params(not_after: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Unit CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = time(NOW - DAY);
    p.not_after = time(not_after);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

fn self_signed(p: CertificateParams) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    self_signed(ca_params(NOW + 30 * DAY))
}

fn refusal(text: &str) -> DomainError {
    parse_ca_pem(text, NOW).unwrap_err()
}

fn says(text: &str, part: &str) {
    match refusal(text) {
        DomainError::InvalidCertificate(m) => assert!(m.contains(part), "{m}"),
        other => panic!("expected InvalidCertificate containing {part:?}, got {other:?}"),
    }
}

fn base64_lines(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The contents of the last OCTET STRING directly inside the outer SEQUENCE of `der` (a
/// PKCS#8 `PrivateKeyInfo`'s `privateKey`: the inner key, SEC1 for EC, PKCS#1 for RSA).
fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
    let (_, outer) = Any::from_der(pkcs8).unwrap();
    let mut rest = outer.data;
    let mut last = None;
    while !rest.is_empty() {
        let (after, item) = Any::from_der(rest).unwrap();
        if item.tag().0 == 4 {
            last = Some(item.data.to_vec());
        }
        rest = after;
    }
    last.unwrap()
}

#[test]
fn a_ca_is_accepted_and_kept_with_its_identity() {
    let (cert, _) = ca();
    let parsed = parse_ca_pem(&cert.pem(), NOW).unwrap();
    assert_eq!(parsed.valid_at, NOW - DAY);
    assert_eq!(parsed.expires_at, NOW + 30 * DAY);
    assert_eq!(parsed.sha256, hex::encode(sha2::Sha256::digest(cert.der())));
    assert_eq!(
        parsed.ski.len(),
        40,
        "the 20-byte key identifier rcgen writes, hex"
    );
    assert_eq!(certificate_sha256(&cert.pem()).unwrap(), parsed.sha256);
}

#[test]
fn private_keys_are_refused_in_every_wrapping() {
    let (cert, key) = ca();
    let pkcs8 = key.serialize_der();
    let sec1 = inner_key(&pkcs8);
    let rsa_pkcs8 = {
        use rsa::pkcs8::EncodePrivateKey as _;
        rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024)
            .unwrap()
            .to_pkcs8_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    let pkcs1 = inner_key(&rsa_pkcs8);
    let mut texts = vec![
        format!("{}{}", cert.pem(), key.serialize_pem()),
        key.serialize_pem(),
        // A key block that does not even parse is key material all the same.
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n".to_owned(),
    ];
    for der in [&pkcs8, &sec1, &rsa_pkcs8, &pkcs1] {
        texts.push(format!("{}\n{}\n", cert.pem(), base64_lines(der)));
        texts.push(format!("my key: {}\n{}", base64_lines(der), cert.pem()));
    }
    for text in &texts {
        assert_eq!(
            parse_ca_pem(text, NOW),
            Err(DomainError::PrivateKeyNotAllowed),
            "{text}"
        );
        assert_eq!(
            certificate_sha256(text),
            Err(DomainError::PrivateKeyNotAllowed)
        );
    }
    // Base64 that is no key (a certificate's body, a hash) is not refused as one.
    let body = base64_lines(cert.der());
    assert!(parse_ca_pem(&format!("{}\nnote: {body}\n", cert.pem()), NOW).is_ok());
    let digest = base64_lines(&[7u8; 64]);
    assert!(parse_ca_pem(&format!("{}\n{digest}\n", cert.pem()), NOW).is_ok());
}

#[test]
fn what_is_not_one_ca_certificate_is_refused_with_why() {
    let (cert, _) = ca();
    let (other, _) = ca();
    says("", "no '-----BEGIN CERTIFICATE-----' block");
    says(
        &format!("{}{}", cert.pem(), other.pem()),
        "holds 2 certificates",
    );
    says(
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        "'X509 CRL'",
    );
    says(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "not a valid X.509 certificate",
    );
    assert_eq!(
        refusal(&"a".repeat(MAX_CERTIFICATE_BYTES + 1)),
        DomainError::CertificateTooLarge {
            len: MAX_CERTIFICATE_BYTES + 1
        }
    );

    let mut leaf = ca_params(NOW + 30 * DAY);
    leaf.is_ca = IsCa::ExplicitNoCa;
    says(&self_signed(leaf).0.pem(), "basicConstraints CA:TRUE");
    let mut no_sign = ca_params(NOW + 30 * DAY);
    no_sign.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    says(&self_signed(no_sign).0.pem(), "keyCertSign");
    let mut no_usage = ca_params(NOW + 30 * DAY);
    no_usage.key_usages = Vec::new();
    says(&self_signed(no_usage).0.pem(), "keyUsage extension");
}

#[test]
fn validity_is_judged_at_now_with_a_day_to_spare() {
    says(&self_signed(ca_params(NOW - 1)).0.pem(), "expired");
    says(&self_signed(ca_params(NOW)).0.pem(), "expired");
    says(
        &self_signed(ca_params(NOW + DAY - 1)).0.pem(),
        "expires within 24 hours",
    );
    assert!(parse_ca_pem(&self_signed(ca_params(NOW + DAY)).0.pem(), NOW).is_ok());
}

#[test]
fn a_self_issued_ca_must_verify_with_its_own_key() {
    let (cert, key) = ca();
    let mut der = cert.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.clone()));
    says(&pem, "does not verify with its own key");
    let spki = key.public_key_der();
    assert_eq!(verify_signed(cert.der(), &spki), Ok(()));
    assert!(verify_signed(&der, &spki).is_err());
    let (_, stranger) = ca();
    assert!(verify_signed(cert.der(), &stranger.public_key_der()).is_err());
    assert!(
        verify_signed(&[0x30, 0x00], &spki).is_err(),
        "total on junk"
    );
}
