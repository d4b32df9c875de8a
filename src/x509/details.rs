//! What `include[]=details` shows of a stored certificate (decisions.md D19), computed from its
//! PEM: fingerprints, names, serial and key algorithm. Pure and total like the rest of `x509`.

use base64::Engine as _;
use sha2::Digest;
use x509_parser::oid_registry as oids;
use x509_parser::prelude::*;

use super::rfc4514::rfc4514_string;
use crate::domain::DomainError;

/// The facts of one certificate, in the formats of decisions.md D3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Lowercase hex of the SHA-256 of the DER.
    pub sha256_fingerprint: String,
    /// Base64 (standard, padded) of the SHA-256 of the `SubjectPublicKeyInfo` DER, as in HPKP
    /// pins and Envoy's `verify_certificate_spki`.
    pub spki_sha256: String,
    /// RFC 4514, as Python cryptography's `rfc4514_string()`.
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex of the serial as an unsigned integer, no leading zeros.
    pub serial_number: String,
    /// `rsa-<modulus bits>` (`rsa-2048`, `rsa-3072`, `rsa-4096`, or the exact size of any
    /// other accepted modulus, e.g. `rsa-8192`), `ecdsa-p256`, `ecdsa-p384`, `ed25519`. Keys
    /// an upload refuses never reach here; for totality they are named `ecdsa-<curve OID>` or
    /// by their algorithm OID.
    pub key_algorithm: String,
}

/// The facts of the (first) `CERTIFICATE` block of `pem_text`, as stored at upload.
pub fn certificate_details(pem_text: &str) -> Result<CertificateFacts, DomainError> {
    let invalid = |why: &str| DomainError::InvalidCertificate(why.to_owned());
    let blocks = ::pem::parse_many(pem_text.as_bytes())
        .map_err(|_| invalid("the PEM text could not be decoded."))?;
    let block = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| invalid("no CERTIFICATE block was found."))?;
    let der = block.contents();
    let (_, cert) = parse_x509_certificate(der)
        .map_err(|_| invalid("the PEM block is not a valid X.509 certificate."))?;
    let spki = cert.public_key();
    Ok(CertificateFacts {
        sha256_fingerprint: hex::encode(sha2::Sha256::digest(der)),
        spki_sha256: base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(spki.raw)),
        subject: rfc4514_string(cert.subject()),
        issuer: rfc4514_string(cert.issuer()),
        serial_number: format!("{:x}", cert.tbs_certificate.serial),
        key_algorithm: key_algorithm(spki),
    })
}

fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                format!("rsa-{}", modulus_bits(rsa.modulus))
            }
            _ => "rsa".to_owned(),
        };
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        return match super::ec_curve(spki) {
            Some(c) if c == oids::OID_EC_P256 => "ecdsa-p256".to_owned(),
            Some(c) if c == oids::OID_NIST_EC_P384 => "ecdsa-p384".to_owned(),
            Some(c) => format!("ecdsa-{}", c.to_id_string()),
            None => "ecdsa".to_owned(),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return "ed25519".to_owned();
    }
    alg.to_id_string()
}

/// The exact bit length of a big-endian unsigned integer (leading zero octets ignored).
pub(super) fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed = match modulus.iter().position(|b| *b != 0) {
        Some(first) => &modulus[first..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bit_lengths() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[1]), 1);
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        let mut m = vec![0u8; 257];
        m[1] = 0xc1;
        assert_eq!(modulus_bits(&m), 2048);
        m[0] = 1;
        assert_eq!(modulus_bits(&m), 2049);
    }

    #[test]
    fn not_a_certificate() {
        assert!(certificate_details("hello").is_err());
        assert!(certificate_details(
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }
}
