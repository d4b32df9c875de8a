//! A test PKI made in the tests with rcgen: CAs (good and deliberately flawed) and leaves.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    pub params: CertificateParams,
}

impl Ca {
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

pub struct Leaf {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

fn time(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// CA parameters as OpenAI asks for them: CA:TRUE, keyCertSign + cRLSign, SKI.
pub fn ca_params(cn: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time(not_before);
    p.not_after = time(not_after);
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p
}

/// A self-signed ECDSA P-256 CA valid from `not_before` to `not_after` (Unix seconds).
pub fn ca_valid(cn: &str, not_before: i64, not_after: i64) -> Ca {
    ca_from_params(ca_params(cn, not_before, not_after))
}

/// A CA valid from a day ago for a year.
pub fn ca(cn: &str) -> Ca {
    let now = crate::helpers::wall_clock();
    ca_valid(cn, now - 86_400, now + 365 * 86_400)
}

/// A CA that is complete but for its Subject Key Identifier. rcgen writes that extension for
/// every CA it makes (`IsCa::Ca`), so this one is made as a non-CA, which has neither a
/// Subject Key Identifier nor basicConstraints, with basicConstraints CA:TRUE added back by
/// hand.
pub fn ca_without_ski(cn: &str) -> Ca {
    let now = crate::helpers::wall_clock();
    let mut params = ca_params(cn, now - 86_400, now + 30 * 86_400);
    params.is_ca = IsCa::NoCa;
    // Self-signed: no Authority Key Identifier either (it would carry the missing key id).
    params.use_authority_key_identifier_extension = false;
    // basicConstraints (2.5.29.19), critical: SEQUENCE { cA BOOLEAN TRUE }.
    let mut basic =
        CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    basic.set_criticality(true);
    params.custom_extensions.push(basic);
    ca_from_params(params)
}

pub fn ca_from_params(params: CertificateParams) -> Ca {
    let key = KeyPair::generate().unwrap();
    let cert = params.clone().self_signed(&key).unwrap();
    Ca { cert, key, params }
}

/// A client certificate signed by `ca`, usable for TLS client auth.
pub fn leaf(ca: &Ca, cn: &str, not_before: i64, not_after: i64) -> Leaf {
    let mut p = leaf_params(cn, not_before, not_after);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_leaf(p, ca)
}

fn leaf_params(cn: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut p = CertificateParams::new(vec![format!("{cn}.clients.test")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before = time(not_before);
    p.not_after = time(not_after);
    p
}

fn sign_leaf(mut p: CertificateParams, ca: &Ca) -> Leaf {
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf { cert, key }
}

/// An intermediate CA signed by `ca` (for chains the client sends whole).
pub fn intermediate(ca: &Ca, cn: &str, not_before: i64, not_after: i64) -> Ca {
    let params = ca_params(cn, not_before, not_after);
    let key = KeyPair::generate().unwrap();
    let cert = params.clone().signed_by(&key, &ca.cert, &ca.key).unwrap();
    Ca { cert, key, params }
}

/// A TLS server certificate for `localhost` and 127.0.0.1, signed by `ca`.
pub fn server_leaf(ca: &Ca) -> Leaf {
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.is_ca = IsCa::ExplicitNoCa;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign_leaf(p, ca)
}

/// A certificate signed by `ca` that is not usable for client authentication (server EKU only).
pub fn server_only_leaf(ca: &Ca, cn: &str, not_before: i64, not_after: i64) -> Leaf {
    let mut p = leaf_params(cn, not_before, not_after);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign_leaf(p, ca)
}
