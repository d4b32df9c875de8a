//! Upload checks for CA certificates: PEM text in, a parsed certificate or a precise refusal out.
//!
//! A pure, total function: no I/O, no panics on any input. The rules follow OpenAI's published
//! requirements and certgate's decisions (decisions.md D7, D8). Beside it, equally pure:
//! `details` (what `include[]=details` shows, with `rfc4514` names), `client` (the chain
//! submitted to the check endpoint), `leaf` (what a client filter may ask of a leaf) and
//! `algorithms` (the one list of signature algorithms, [`SIGNATURE_ALGORITHMS`], which
//! [`verify_signed`] also uses for uploads' self-signatures and CRLs).

mod algorithms;
mod client;
mod details;
mod leaf;
mod rfc4514;

pub use algorithms::SIGNATURE_ALGORITHMS;
pub use client::parse_client_chain;
pub use details::{certificate_details, CertificateFacts};
pub use leaf::LeafFacts;
pub use rfc4514::rfc4514_string;

use sha2::Digest;
use x509_parser::oid_registry as oids;
use x509_parser::prelude::*;

use crate::domain::{DomainError, MAX_CERTIFICATE_BYTES};
/// A CA expiring within this many seconds is refused ("is not set to expire within 1 day").
pub const MIN_REMAINING_VALIDITY_SECS: i64 = 24 * 60 * 60;

/// What certgate keeps of an accepted CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCa {
    /// notBefore, Unix seconds.
    pub valid_at: i64,
    /// notAfter, Unix seconds.
    pub expires_at: i64,
    /// SHA-256 of the DER, hex: the identity used for duplicate detection.
    pub sha256: String,
    /// The subject Name, DER, hex: how the gateway finds candidate anchors.
    pub subject_der: String,
    /// The Subject Key Identifier, hex.
    pub ski: String,
}

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidCertificate(msg.into())
}

/// Checks one uploaded CA certificate at time `now` (Unix seconds).
pub fn parse_ca_pem(text: &str, now: i64) -> Result<ParsedCa, DomainError> {
    if text.len() > MAX_CERTIFICATE_BYTES {
        return Err(DomainError::CertificateTooLarge { len: text.len() });
    }
    // Look for key material before anything else, even in blocks that do not parse, and in
    // bare base64 outside the certificate block.
    if text.contains("PRIVATE KEY-----")
        || holds_bare_private_key(&outside_certificate_blocks(text))
    {
        return Err(DomainError::PrivateKeyNotAllowed);
    }
    let blocks = ::pem::parse_many(text.as_bytes()).map_err(|e| {
        invalid(format!("the PEM text could not be decoded ({e}). Send one block between '-----BEGIN CERTIFICATE-----' and '-----END CERTIFICATE-----'."))
    })?;
    if let Some(other) = blocks.iter().find(|b| b.tag() != "CERTIFICATE") {
        return Err(invalid(format!(
            "found a PEM block of type '{}'; expected a 'CERTIFICATE' block.",
            other.tag().chars().take(40).collect::<String>()
        )));
    }
    let der = match blocks.as_slice() {
        [] => {
            return Err(invalid(
                "not PEM: no '-----BEGIN CERTIFICATE-----' block was found.",
            ))
        }
        [one] => one.contents(),
        many => {
            return Err(invalid(format!(
                "the text holds {} certificates; upload exactly one CA certificate per certificate object.",
                many.len()
            )))
        }
    };
    let (rest, cert) = parse_x509_certificate(der).map_err(|e| {
        invalid(format!(
            "the PEM block is not a valid X.509 certificate ({e})."
        ))
    })?;
    if !rest.is_empty() {
        return Err(invalid(
            "the PEM block has data after the X.509 certificate.",
        ));
    }
    if cert.version() != X509Version::V3 {
        return Err(invalid("the certificate must be X.509 version 3."));
    }
    let ext_err =
        |what: &str, e: X509Error| invalid(format!("the {what} extension is malformed ({e})."));
    match cert.basic_constraints().map_err(|e| ext_err("basicConstraints", e))? {
        Some(bc) if bc.value.ca => {}
        _ => {
            return Err(invalid(
                "not a CA certificate: basicConstraints CA:TRUE is required. Upload the CA that signs your client certificates, not a client certificate.",
            ))
        }
    }
    match cert.key_usage().map_err(|e| ext_err("keyUsage", e))? {
        Some(ku) if ku.value.key_cert_sign() => {}
        Some(_) => {
            return Err(invalid(
                "not a CA certificate: keyUsage must include keyCertSign.",
            ))
        }
        None => {
            return Err(invalid(
                "not a CA certificate: the keyUsage extension (with keyCertSign) is missing.",
            ))
        }
    }
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(kid) => Some(hex::encode(kid.0)),
            _ => None,
        })
        .ok_or_else(|| invalid("the Subject Key Identifier extension is missing."))?;
    check_key(&cert)?;
    check_signature_algorithm(&cert)?;
    if cert.subject().as_raw() == cert.issuer().as_raw()
        && verify_signed(der, cert.public_key().raw).is_err()
    {
        return Err(invalid(
            "the certificate is self-issued but its signature does not verify with its own key (corrupted or forged).",
        ));
    }

    let valid_at = cert.validity().not_before.timestamp();
    let expires_at = cert.validity().not_after.timestamp();
    if expires_at <= now {
        return Err(invalid(format!(
            "the certificate expired at {} (Unix seconds {expires_at}).",
            cert.validity().not_after
        )));
    }
    if expires_at - now < MIN_REMAINING_VALIDITY_SECS {
        return Err(invalid(format!(
            "the certificate expires within 24 hours (at {}); upload a CA valid for at least one more day.",
            cert.validity().not_after
        )));
    }
    Ok(ParsedCa {
        valid_at,
        expires_at,
        sha256: hex::encode(sha2::Sha256::digest(der)),
        subject_der: hex::encode(cert.subject().as_raw()),
        ski,
    })
}

/// Largest RSA modulus accepted: the gateway (ring) cannot verify beyond it.
pub const MAX_RSA_BITS: usize = 8192;
/// Largest RSA public exponent accepted (and the smallest is 3), for the same reason.
pub const MAX_RSA_EXPONENT: u64 = 1 << 32;

/// Keys rustls can verify: RSA 2048 to 8192 bits with an exponent in 3..=2^32, ECDSA
/// P-256/P-384, Ed25519.
fn check_key(cert: &X509Certificate<'_>) -> Result<(), DomainError> {
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(invalid("the RSA public key is malformed."));
        };
        // Not x509-parser's `key_size()`: it drops a first octet below 0x80 whole, so an
        // 8,193-bit modulus counted as 8,192 bits.
        let bits = details::modulus_bits(rsa.modulus);
        if bits < 2048 {
            return Err(invalid(format!(
                "the RSA key is {bits} bits; at least 2048 bits are required."
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(invalid(format!(
                "the RSA key is {bits} bits; at most {MAX_RSA_BITS} bits can be used for TLS client authentication."
            )));
        }
        let exponent = rsa.try_exponent().ok();
        return match exponent {
            Some(e) if (3..=MAX_RSA_EXPONENT).contains(&e) => Ok(()),
            _ => Err(invalid(
                "the RSA public exponent must be between 3 and 2^32 (65537 is usual).",
            )),
        };
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        return match ec_curve(spki) {
            Some(c) if c == oids::OID_EC_P256 || c == oids::OID_NIST_EC_P384 => Ok(()),
            _ => Err(invalid("the EC key must be on curve P-256 or P-384.")),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return Ok(());
    }
    Err(invalid(format!(
        "unsupported public key algorithm {alg}; use RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519."
    )))
}

fn check_signature_algorithm(cert: &X509Certificate<'_>) -> Result<(), DomainError> {
    let alg = &cert.signature_algorithm.algorithm;
    let supported = [
        oids::OID_PKCS1_SHA256WITHRSA,
        oids::OID_PKCS1_SHA384WITHRSA,
        oids::OID_PKCS1_SHA512WITHRSA,
        oids::OID_PKCS1_RSASSAPSS,
        oids::OID_SIG_ECDSA_WITH_SHA256,
        oids::OID_SIG_ECDSA_WITH_SHA384,
        oids::OID_SIG_ED25519,
    ];
    if supported.contains(alg) {
        Ok(())
    } else {
        Err(invalid(format!(
            "unsupported signature algorithm {alg}; use SHA-256/384/512 with RSA, ECDSA with SHA-256/384, or Ed25519."
        )))
    }
}

/// The lowercase hex SHA-256 of the DER of the one certificate in `text` (PEM), for the
/// deny-list: any certificate (a client's leaf, usually), not only a CA. Key material is
/// refused as on upload.
pub fn certificate_sha256(text: &str) -> Result<String, DomainError> {
    if text.len() > MAX_CERTIFICATE_BYTES {
        return Err(DomainError::CertificateTooLarge { len: text.len() });
    }
    if text.contains("PRIVATE KEY-----")
        || holds_bare_private_key(&outside_certificate_blocks(text))
    {
        return Err(DomainError::PrivateKeyNotAllowed);
    }
    let blocks = ::pem::parse_many(text.as_bytes())
        .map_err(|e| invalid(format!("the PEM text could not be decoded ({e}).")))?;
    let der = match blocks.as_slice() {
        [one] if one.tag() == "CERTIFICATE" => one.contents(),
        [] => {
            return Err(invalid(
                "not PEM: no '-----BEGIN CERTIFICATE-----' block was found.",
            ))
        }
        [_] => return Err(invalid("expected one 'CERTIFICATE' block.")),
        many => {
            return Err(invalid(format!(
                "the text holds {} PEM blocks; send the one certificate to revoke.",
                many.len()
            )))
        }
    };
    parse_x509_certificate(der).map_err(|e| {
        invalid(format!(
            "the PEM block is not a valid X.509 certificate ({e})."
        ))
    })?;
    Ok(hex::encode(sha2::Sha256::digest(der)))
}

/// The named curve of an EC key (the OID in its algorithm parameters), if it names one.
fn ec_curve<'a>(
    spki: &'a SubjectPublicKeyInfo<'_>,
) -> Option<x509_parser::der_parser::oid::Oid<'a>> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
}

/// Verifies a signed X.509 structure (a certificate or a CRL: `SEQUENCE { tbs, algorithm,
/// signature }`) with the key `spki_der` (a whole `SubjectPublicKeyInfo`), using the algorithms
/// the gateway itself verifies with ([`SIGNATURE_ALGORITHMS`]).
pub fn verify_signed(signed_der: &[u8], spki_der: &[u8]) -> Result<(), String> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer as _};

    let (rest, outer) = Any::from_der(signed_der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("data after the signed structure".into());
    }
    let body = outer.data;
    let (after_tbs, _) = Any::from_der(body).map_err(|e| e.to_string())?;
    let tbs = &body[..body.len() - after_tbs.len()];
    let (after_alg, alg) = Any::from_der(after_tbs).map_err(|e| e.to_string())?;
    let (_, sig) = Any::from_der(after_alg).map_err(|e| e.to_string())?;
    let signature = sig
        .data
        .split_first()
        .filter(|(unused, _)| **unused == 0)
        .ok_or("malformed signature bit string")?
        .1;
    let (_, spki) = Any::from_der(spki_der).map_err(|e| e.to_string())?;
    let (after_key_alg, key_alg) = Any::from_der(spki.data).map_err(|e| e.to_string())?;
    let (_, key) = Any::from_der(after_key_alg).map_err(|e| e.to_string())?;
    let key = key.data.split_first().ok_or("malformed public key")?.1;
    let verifier = SIGNATURE_ALGORITHMS
        .iter()
        .find(|a| {
            a.signature_alg_id().as_ref() == alg.data
                && a.public_key_alg_id().as_ref() == key_alg.data
        })
        .ok_or("unsupported signature algorithm for this key")?;
    verifier
        .verify_signature(key, tbs, signature)
        .map_err(|_| "the signature does not verify".to_owned())
}

/// The text around the `CERTIFICATE` blocks (the whole text when there is none).
fn outside_certificate_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut outside = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        outside.push_str(&rest[..start]);
        outside.push('\n');
        match rest[start..].find(END) {
            Some(end) => rest = &rest[start + end + END.len()..],
            None => return outside,
        }
    }
    outside.push_str(rest);
    outside
}

/// Whether `text` holds a run of base64 (whitespace and line breaks allowed inside it) that
/// decodes to a DER private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC). Such text is refused
/// like a PEM private key block: it is key material, whatever its wrapping.
fn holds_bare_private_key(text: &str) -> bool {
    use base64::Engine as _;
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut runs: Vec<String> = vec![String::new()];
    for c in text.chars() {
        if is_b64(c) {
            if let Some(run) = runs.last_mut() {
                run.push(c);
            }
        } else if !c.is_whitespace() {
            runs.push(String::new());
        }
    }
    // The smallest DER private key (Ed25519 PKCS#8) is 48 bytes: 64 base64 characters.
    runs.iter().filter(|r| r.len() >= 64).any(|run| {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        engine
            .decode(run.trim_end_matches('='))
            .is_ok_and(|der| is_private_key_der(&der))
    })
}

/// Whether `der` is, whole, a DER private key structure (x509-parser's DER reader, so no
/// second ASN.1 stack):
/// - PKCS#8 `PrivateKeyInfo`: `SEQUENCE { INTEGER 0|1, SEQUENCE { OID, … }, OCTET STRING, … }`;
/// - PKCS#1 `RSAPrivateKey`: `SEQUENCE { INTEGER 0|1, INTEGER × 8, … }`;
/// - SEC1 `ECPrivateKey`: `SEQUENCE { INTEGER 1, OCTET STRING, [0] …, [1] … }`.
fn is_private_key_der(der: &[u8]) -> bool {
    use x509_parser::der_parser::asn1_rs::{Any, Class, FromDer as _, Tag};

    let Ok((rest, outer)) = Any::from_der(der) else {
        return false;
    };
    if !rest.is_empty() || outer.tag() != Tag::Sequence || outer.class() != Class::Universal {
        return false;
    }
    let mut items = Vec::new();
    let mut body = outer.data;
    while !body.is_empty() {
        let Ok((after, item)) = Any::from_der(body) else {
            return false;
        };
        items.push(item);
        body = after;
    }
    let universal = |i: usize, tag: Tag| {
        items
            .get(i)
            .is_some_and(|a| a.class() == Class::Universal && a.tag() == tag)
    };
    let version = match items.first() {
        Some(v) if universal(0, Tag::Integer) && v.data.len() == 1 => v.data[0],
        _ => return false,
    };
    let pkcs8 = version <= 1
        && universal(1, Tag::Sequence)
        && Any::from_der(items[1].data).is_ok_and(|(_, oid)| oid.tag() == Tag::Oid)
        && universal(2, Tag::OctetString);
    let pkcs1 = version <= 1 && items.len() >= 9 && (1..9).all(|i| universal(i, Tag::Integer));
    let sec1 = version == 1
        && universal(1, Tag::OctetString)
        && items[2..]
            .iter()
            .all(|a| a.class() == Class::ContextSpecific && a.tag().0 <= 1);
    pkcs8 || pkcs1 || sec1
}

#[cfg(test)]
mod tests;
