//! The benchmarks' PKI: CA and leaf certificates (rcgen), the gateway's server certificate, and
//! large CRLs written by hand (500,000 entries take a fraction of a second, where rcgen takes
//! many) and signed with the CA's key. Included with `#[path = "common/pki.rs"] mod pki;` (an
//! example is its own crate); each example uses part of it.
#![allow(dead_code)]

use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::PrivateKeyDer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn at(unix: i64) -> Result<time::OffsetDateTime, BoxError> {
    Ok(time::OffsetDateTime::from_unix_timestamp(unix)?)
}

/// A CA named `cn`, valid from a day ago for a year, allowed to sign certificates and CRLs.
pub(crate) fn ca_params(cn: &str) -> Result<CertificateParams, BoxError> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(now() - 86_400)?;
    p.not_after = at(now() + 365 * 86_400)?;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

/// A leaf named `cn` (also its DNS name), for a server or a client, valid from a day ago for
/// a year.
pub(crate) fn leaf_params(cn: &str, server: bool) -> Result<CertificateParams, BoxError> {
    let mut p = CertificateParams::new(vec![cn.to_owned()])?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.not_before = at(now() - 86_400)?;
    p.not_after = at(now() + 365 * 86_400)?;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A CA and its key.
pub(crate) struct Ca {
    pub(crate) cert: Certificate,
    pub(crate) key: KeyPair,
}

impl Ca {
    /// A new self-signed CA named `cn` (ECDSA P-256).
    pub(crate) fn new(cn: &str) -> Result<Ca, BoxError> {
        let key = KeyPair::generate()?;
        Ok(Ca {
            cert: ca_params(cn)?.self_signed(&key)?,
            key,
        })
    }

    /// The CA written by [`Ca::write`] as `DIR/NAME.pem` and `DIR/NAME.key`, signing again.
    pub(crate) fn read(dir: &Path, name: &str) -> Result<Ca, BoxError> {
        let pem = std::fs::read_to_string(dir.join(format!("{name}.pem")))?;
        let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join(format!("{name}.key")))?)?;
        Ok(Ca {
            cert: CertificateParams::from_ca_cert_pem(&pem)?.self_signed(&key)?,
            key,
        })
    }

    /// Writes the certificate and key as `DIR/NAME.pem` and `DIR/NAME.key` (PKCS#8 PEM).
    pub(crate) fn write(&self, dir: &Path, name: &str) -> Result<(), BoxError> {
        std::fs::write(dir.join(format!("{name}.pem")), self.cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), self.key.serialize_pem())?;
        Ok(())
    }

    /// A leaf of this CA named `cn`, with `sans` (its name as DNS name when empty) and
    /// `serial` (rcgen's random one when `None`): PEM certificate and PEM key.
    pub(crate) fn leaf(
        &self,
        cn: &str,
        server: bool,
        sans: Vec<SanType>,
        serial: Option<&[u8]>,
    ) -> Result<(String, String), BoxError> {
        let mut p = leaf_params(cn, server)?;
        if !sans.is_empty() {
            p.subject_alt_names = sans;
        }
        if let Some(serial) = serial {
            p.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        }
        self.sign(p)
    }

    /// A certificate made from `params`, signed by this CA, with a new key: PEM certificate
    /// and PEM key.
    pub(crate) fn sign(&self, params: CertificateParams) -> Result<(String, String), BoxError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client of this CA, written as `DIR/NAME.pem` and `DIR/NAME.key`.
    pub(crate) fn write_client(
        &self,
        dir: &Path,
        name: &str,
        serial: Option<&[u8]>,
    ) -> Result<(), BoxError> {
        let (cert, key) = self.leaf(name, false, Vec::new(), serial)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert)?;
        std::fs::write(dir.join(format!("{name}.key")), key)?;
        Ok(())
    }
}

/// The gateway's TLS identity, for `localhost`: `DIR/server-ca.pem` (what clients trust),
/// `DIR/server.pem` and `DIR/server.key`.
pub(crate) fn write_server(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca = Ca::new("Bench server CA")?;
    let (cert, key) = ca.leaf("localhost", true, Vec::new(), None)?;
    std::fs::write(dir.join("server-ca.pem"), ca.cert.pem())?;
    std::fs::write(dir.join("server.pem"), cert)?;
    std::fs::write(dir.join("server.key"), key)?;
    Ok(())
}

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// `YYMMDDHHMMSSZ` for `unix`: X.509's `UTCTime`, and the date column of `openssl ca`'s index.
pub(crate) fn utc_text(unix: i64) -> Result<String, BoxError> {
    let t = at(unix)?;
    Ok(format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

fn utc_time(unix: i64) -> Result<Vec<u8>, BoxError> {
    Ok(tlv(0x17, utc_text(unix)?.as_bytes()))
}

/// The Authority Information Access extension naming `url` as the certificate's OCSP responder
/// (RFC 5280 4.2.2.1: one `AccessDescription`, `id-ad-ocsp` and a URI).
pub(crate) fn aia_ocsp(url: &str) -> rcgen::CustomExtension {
    const ID_AD_OCSP: [u8; 8] = [0x2b, 6, 1, 5, 5, 7, 0x30, 1];
    let access = [tlv(0x06, &ID_AD_OCSP), tlv(0x86, url.as_bytes())].concat();
    rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        tlv(0x30, &tlv(0x30, &access)),
    )
}

/// The serial of a CRL's `n`th generated entry, `len` bytes long (8 to 20): `0x42`, zeros,
/// then `n`. Positive and never one rcgen gives a leaf (20 random bytes).
pub(crate) fn entry_serial(n: u64, len: usize) -> Vec<u8> {
    let len = len.clamp(8, 20);
    let mut serial = vec![0u8; len];
    serial[0] = 0x42;
    serial[len - 8 + 1..].copy_from_slice(&n.to_be_bytes()[1..]);
    serial
}

/// What a CRL made by [`crl`] holds.
pub(crate) struct CrlSpec<'a> {
    /// Generated entries ([`entry_serial`]), before `extra`.
    pub(crate) entries: usize,
    /// Length of the generated serials in bytes (8 to 20).
    pub(crate) serial_len: usize,
    /// Further serials listed after the generated ones (e.g. a benchmark client's).
    pub(crate) extra: &'a [Vec<u8>],
    /// The cRLNumber (1 to 127).
    pub(crate) number: u8,
    pub(crate) this_update: i64,
    pub(crate) next_update: i64,
}

impl CrlSpec<'_> {
    /// `entries` 8-byte serials, number 1, issued an hour ago, next update in a week.
    pub(crate) fn simple(entries: usize) -> CrlSpec<'static> {
        let this_update = now() - 3600;
        CrlSpec {
            entries,
            serial_len: 8,
            extra: &[],
            number: 1,
            this_update,
            next_update: this_update + 7 * 86_400,
        }
    }
}

/// A complete, direct CRL (DER) of the CA `ca_der` (its certificate's DER), signed with its
/// ECDSA P-256 key `key` (PKCS#8 DER) through rustls's ring signer.
pub(crate) fn crl(ca_der: &[u8], key: &[u8], spec: &CrlSpec<'_>) -> Result<Vec<u8>, BoxError> {
    use x509_parser::prelude::FromDer;
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(ca_der)?;
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let revoked_at = utc_time(spec.this_update - 3600)?;
    let serials = (0..spec.entries as u64)
        .map(|n| entry_serial(n, spec.serial_len))
        .chain(spec.extra.iter().cloned());
    let mut list = Vec::with_capacity((spec.entries + spec.extra.len()) * (19 + spec.serial_len));
    for serial in serials {
        let mut entry = tlv(0x02, &serial);
        entry.extend_from_slice(&revoked_at);
        list.extend(tlv(0x30, &entry));
    }
    // cRLNumber (2.5.29.20).
    let crl_number = tlv(
        0x30,
        &[
            tlv(0x06, &[0x55, 0x1d, 0x14]),
            tlv(0x04, &[0x02, 0x01, spec.number & 0x7f]),
        ]
        .concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x01],
            alg.clone(),
            ca.subject().as_raw().to_vec(),
            utc_time(spec.this_update)?,
            utc_time(spec.next_update)?,
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
