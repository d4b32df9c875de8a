//! The benchmark's CA certificates and one large CRL, in the shapes `main` uses, made by the
//! benchmarks' shared PKI (`examples/common/pki.rs`: rcgen, and a CRL written by hand, 100,000
//! entries in milliseconds, signed with the CA's key).

#[path = "../common/pki.rs"]
mod common;

use super::BoxError;

/// A self-signed CA named `cn`: its PEM and its key (PKCS#8 DER).
pub(crate) fn ca(cn: &str) -> Result<(String, Vec<u8>), BoxError> {
    let ca = common::Ca::new(cn)?;
    Ok((ca.cert.pem(), ca.key.serialize_der()))
}

/// A complete CRL of the CA (`ca_pem`, `key`: PKCS#8 DER) revoking `entries` serials.
pub(crate) fn crl(ca_pem: &str, key: &[u8], entries: usize) -> Result<Vec<u8>, BoxError> {
    let ca_der = ::pem::parse(ca_pem)?.into_contents();
    common::crl(&ca_der, key, &common::CrlSpec::simple(entries))
}
