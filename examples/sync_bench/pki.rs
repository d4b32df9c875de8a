//! The benchmark's CA certificates (rcgen) and one large CRL, written by hand (100,000 entries
//! take milliseconds, where rcgen takes seconds) and signed with the CA's key.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::PrivateKeyDer;

use super::BoxError;

fn at(unix: i64) -> Result<time::OffsetDateTime, BoxError> {
    Ok(time::OffsetDateTime::from_unix_timestamp(unix)?)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A self-signed CA named `cn`: its PEM and its key (PKCS#8 DER).
pub(crate) fn ca(cn: &str) -> Result<(String, Vec<u8>), BoxError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(now() - 86_400)?;
    p.not_after = at(now() + 365 * 86_400)?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_der()))
}

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn utc_time(unix: i64) -> Result<Vec<u8>, BoxError> {
    let t = at(unix)?;
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(tlv(0x17, text.as_bytes()))
}

/// A complete CRL of the CA (`ca_pem`, `key`: PKCS#8 DER) revoking `entries` serials.
pub(crate) fn crl(ca_pem: &str, key: &[u8], entries: usize) -> Result<Vec<u8>, BoxError> {
    use x509_parser::prelude::FromDer;
    let ca_der = ::pem::parse(ca_pem)?.into_contents();
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der)?;
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let this_update = now() - 3600;
    let revoked_at = utc_time(this_update - 3600)?;
    let mut list = Vec::with_capacity(entries * 28);
    for n in 0..entries as u64 {
        let mut entry = vec![0x02, 0x08];
        entry.extend((n | (0x42 << 56)).to_be_bytes());
        entry.extend_from_slice(&revoked_at);
        list.extend(tlv(0x30, &entry));
    }
    let crl_number = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x14]),
            tlv(0x04, &[0x02, 0x01, 0x01]),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x01],
            alg.clone(),
            ca.subject().as_raw().to_vec(),
            utc_time(this_update)?,
            utc_time(this_update + 7 * 86_400)?,
            tlv(0x30, &list),
            tlv(0xa0, &tlv(0x30, &crl_number)),
        ]
        .concat(),
    );
    let key = PrivateKeyDer::Pkcs8(key.to_vec().into());
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)?
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or("no signer")?;
    let mut bits = vec![0u8];
    bits.extend(signer.sign(&tbs)?);
    Ok(tlv(0x30, &[tbs, alg, tlv(0x03, &bits)].concat()))
}
