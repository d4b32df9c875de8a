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

/// A crafted chain for the chain-work attack (decisions.md D34): a leaf whose issuer name is
/// `victim`'s subject (names anyone reads off a client certificate's issuer), and
/// `intermediates` CA certificates that all carry that same subject and sign one another in a
/// loop, so path building has many candidate paths to try and none reaches `victim`'s key.
/// Returns the chain (leaf first) and the leaf's key.
pub fn loop_chain(victim: &Ca, intermediates: usize) -> (Vec<rcgen::Certificate>, KeyPair) {
    let now = super::helpers::wall_clock();
    let cn = victim
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(|v| match v {
            rcgen::DnValue::Utf8String(s) => Some(s.clone()),
            _ => None,
        })
        .expect("the victim CA has a UTF-8 common name");
    // One key per loop member; member i is signed by member i+1 (the last by the first).
    let keys: Vec<KeyPair> = (0..intermediates.max(1))
        .map(|_| KeyPair::generate().unwrap())
        .collect();
    let signers: Vec<rcgen::Certificate> = keys
        .iter()
        .map(|k| {
            ca_params(&cn, now - 86_400, now + 86_400)
                .self_signed(k)
                .unwrap()
        })
        .collect();
    let mut chain = Vec::new();
    let leaf_key = KeyPair::generate().unwrap();
    let mut p = leaf_params("attacker", now - 86_400, now + 86_400);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    chain.push(p.signed_by(&leaf_key, &signers[0], &keys[0]).unwrap());
    for i in 0..intermediates {
        let next = (i + 1) % keys.len();
        let member = ca_params(&cn, now - 86_400, now + 86_400)
            .signed_by(&keys[i], &signers[next], &keys[next])
            .unwrap();
        chain.push(member);
    }
    (chain, leaf_key)
}

/// A leaf signed by `ca` without any extended key usage extension (webpki alone would accept
/// it for client authentication; OpenAI, and certgate, require clientAuth).
pub fn leaf_without_eku(ca: &Ca, cn: &str, not_before: i64, not_after: i64) -> Leaf {
    let mut p = leaf_params(cn, not_before, not_after);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sign_leaf(p, ca)
}

/// An RSA public key with the given modulus and exponent (big-endian bytes), which need not be
/// a real key: enough for a certificate whose key the upload checks must refuse.
pub struct RsaPublicKey(Vec<u8>);

impl RsaPublicKey {
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Self {
        RsaPublicKey(der_sequence(&[der_integer(modulus), der_integer(exponent)]))
    }
}

impl rcgen::PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// A CA certificate for `key`, signed by `issuer`.
pub fn ca_with_key(issuer: &Ca, cn: &str, key: &impl rcgen::PublicKeyData) -> String {
    let now = super::helpers::wall_clock();
    ca_params(cn, now - 86_400, now + 365 * 86_400)
        .signed_by(key, &issuer.cert, &issuer.key)
        .unwrap()
        .pem()
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![u8::try_from(len).unwrap()];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap()];
    out.extend(bytes);
    out
}

fn der_integer(unsigned_be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = unsigned_be
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let mut content = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    let mut out = vec![0x02];
    out.extend(der_length(content.len()));
    out.extend(content);
    out
}

fn der_sequence(items: &[Vec<u8>]) -> Vec<u8> {
    let content: Vec<u8> = items.concat();
    let mut out = vec![0x30];
    out.extend(der_length(content.len()));
    out.extend(content);
    out
}

/// The serial of `cert` as the DER INTEGER contents (what CRLs list and webpki compares).
pub fn serial_of(cert: &rcgen::Certificate) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.der()).unwrap();
    parsed.raw_serial().to_vec()
}

/// A CRL issued and signed by `issuer`, revoking `serials`, valid from `this_update` to
/// `next_update` (Unix seconds).
pub fn crl(
    issuer: &Ca,
    serials: &[Vec<u8>],
    this_update: i64,
    next_update: i64,
) -> rcgen::CertificateRevocationList {
    let params = rcgen::CertificateRevocationListParams {
        this_update: time(this_update),
        next_update: time(next_update),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s),
                revocation_time: time(this_update),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(&issuer.cert, &issuer.key).unwrap()
}

/// The CA key types certgate accepts, as the details test makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    P256,
    P384,
    Ed25519,
}

/// A fresh key of `kind`, with its certificate signature algorithm.
pub fn key_pair(kind: KeyType) -> KeyPair {
    match kind {
        KeyType::Rsa2048 => rsa_2048(),
        KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
    }
}

/// A 2048-bit RSA key. rcgen's ring backend signs with RSA keys but cannot make them, so the
/// `rsa` crate makes one per test run (in memory only; never written to disk).
fn rsa_2048() -> KeyPair {
    use rsa::pkcs8::EncodePrivateKey;
    static PKCS8: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let der = PKCS8.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .unwrap()
            .to_pkcs8_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    });
    KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap()
}

/// A self-signed CA with `params` and a fresh key of `kind`.
pub fn ca_with_key_type(params: CertificateParams, kind: KeyType) -> Ca {
    let key = key_pair(kind);
    let cert = params.clone().self_signed(&key).unwrap();
    Ca { cert, key, params }
}

/// A client leaf of `ca` (valid from a day ago for 30 days) with exactly the given subject
/// alternative names, e.g. a SPIFFE id as a URI.
pub fn leaf_with_sans(ca: &Ca, cn: &str, sans: Vec<rcgen::SanType>) -> Leaf {
    let now = super::helpers::wall_clock();
    let mut p = leaf_params(cn, now - 86_400, now + 30 * 86_400);
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_leaf(p, ca)
}

// ------------------------------------------------------------------ CRLs rcgen cannot make

fn der_tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_length(contents.len()));
    out.extend_from_slice(contents);
    out
}

/// An OID from its arcs, as a DER element.
fn der_oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![u8::try_from(arcs[0] * 40 + arcs[1]).unwrap()];
    for &arc in &arcs[2..] {
        let mut groups = vec![u8::try_from(arc & 0x7f).unwrap()];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | u8::try_from(rest & 0x7f).unwrap());
            rest >>= 7;
        }
        groups.reverse();
        body.extend(groups);
    }
    der_tlv(0x06, &body)
}

/// `UTCTime` until 2049, `GeneralizedTime` from 2050 (RFC 5280 §5.1.2.4).
fn der_time(unix: i64) -> Vec<u8> {
    let t = time(unix);
    let year = if t.year() < 2050 {
        format!("{:02}", t.year() % 100)
    } else {
        format!("{:04}", t.year())
    };
    let text = format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    der_tlv(if t.year() < 2050 { 0x17 } else { 0x18 }, text.as_bytes())
}

/// An X.509 extension (`critical` when asked) whose extnValue holds `value`.
pub fn extension(oid: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![der_oid(oid)];
    if critical {
        parts.push(vec![0x01, 0x01, 0xff]);
    }
    parts.push(der_tlv(0x04, value));
    der_sequence(&parts)
}

/// An issuingDistributionPoint (2.5.29.28, critical) naming a URI, plus the given fields
/// (e.g. `[0x84, 0x01, 0xff]`, indirectCRL).
pub fn issuing_distribution_point(fields: &[&[u8]]) -> Vec<u8> {
    let uri = der_tlv(0x86, b"http://ca.example/crl");
    let mut parts = vec![der_tlv(0xa0, &der_tlv(0xa0, &uri))];
    parts.extend(fields.iter().map(|f| f.to_vec()));
    extension(&[2, 5, 29, 28], true, &der_sequence(&parts))
}

/// What [`crl_der`] writes: rcgen 0.13 cannot write delta CRLs, indirect ones, partitions by
/// reason or by attribute certificates, or extensions of our choosing on a CRL or an entry.
pub struct CrlShape {
    pub this_update: i64,
    pub next_update: i64,
    /// Each revoked serial with its entry extensions (DER, from [`extension`]).
    pub entries: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    /// CRL extensions besides the cRLNumber every CRL gets.
    pub extensions: Vec<Vec<u8>>,
}

impl CrlShape {
    /// A complete CRL revoking `serials`.
    pub fn revoking(serials: &[Vec<u8>], this_update: i64, next_update: i64) -> CrlShape {
        CrlShape {
            this_update,
            next_update,
            entries: serials.iter().map(|s| (s.clone(), Vec::new())).collect(),
            extensions: Vec::new(),
        }
    }
}

/// A CRL of `shape`, issued and signed by `issuer` (an ECDSA P-256 CA: the TBS is built here
/// and signed with rustls's ring signer, the way rcgen would).
pub fn crl_der(issuer: &Ca, shape: &CrlShape) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(issuer.cert.der()).unwrap();
    // ecdsa-with-SHA256, no parameters.
    let alg = der_sequence(&[der_oid(&[1, 2, 840, 10045, 4, 3, 2])]);
    let mut tbs = vec![
        vec![0x02, 0x01, 0x01],
        alg.clone(),
        ca.subject().as_raw().to_vec(),
        der_time(shape.this_update),
        der_time(shape.next_update),
    ];
    if !shape.entries.is_empty() {
        let entries: Vec<Vec<u8>> = shape
            .entries
            .iter()
            .map(|(serial, exts)| {
                let mut parts = vec![der_tlv(0x02, serial), der_time(shape.this_update)];
                if !exts.is_empty() {
                    parts.push(der_sequence(exts));
                }
                der_sequence(&parts)
            })
            .collect();
        tbs.push(der_sequence(&entries));
    }
    let mut extensions = vec![extension(&[2, 5, 29, 20], false, &der_integer(&[1]))];
    extensions.extend(shape.extensions.iter().cloned());
    tbs.push(der_tlv(0xa0, &der_sequence(&extensions)));
    let tbs = der_sequence(&tbs);
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(issuer.key.serialize_der().into());
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)
        .unwrap()
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    let signature = signer.sign(&tbs).unwrap();
    let mut bits = vec![0u8];
    bits.extend(signature);
    der_sequence(&[tbs, alg, der_tlv(0x03, &bits)])
}

/// A complete CRL of `issuer` (no entries) of exactly `size` bytes of DER, padded with a
/// non-critical extension of an unregistered OID.
pub fn crl_of_size(issuer: &Ca, this_update: i64, next_update: i64, size: usize) -> Vec<u8> {
    let mut padding = size.saturating_sub(400);
    // The signature's length varies by a byte or two with each signing: aim again until hit.
    for _ in 0..64 {
        let shape = CrlShape {
            extensions: vec![extension(
                &[1, 3, 6, 1, 4, 1, 55555, 1],
                false,
                &vec![0x5a; padding],
            )],
            ..CrlShape::revoking(&[], this_update, next_update)
        };
        let der = crl_der(issuer, &shape);
        if der.len() == size {
            return der;
        }
        padding = (padding + size).checked_sub(der.len()).unwrap();
    }
    panic!("no CRL of {size} bytes");
}
