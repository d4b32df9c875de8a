//! Certificate revocation lists: parsing an uploaded CRL, checking it was issued (and signed)
//! by a given CA, and the set of serials it revokes. Pure: no I/O, no panic on any input. The
//! parsing is x509-parser's; the signature is checked with webpki's algorithms
//! ([`crate::x509::verify_signed`]), the same the gateway verifies chains with.

use std::collections::HashSet;

use base64::Engine as _;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::domain::DomainError;

/// An uploaded CRL, decoded (its issuer and signature not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrl {
    pub der: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds; `None` when the CRL has none (it is then never stale).
    pub next_update: Option<i64>,
    pub revoked_count: i64,
}

fn invalid(why: impl Into<String>) -> DomainError {
    DomainError::InvalidCrl(why.into())
}

/// Decodes a CRL given as PEM (`-----BEGIN X509 CRL-----`) or as base64 DER.
pub fn parse_crl(text: &str) -> Result<ParsedCrl, DomainError> {
    let trimmed = text.trim();
    let der = if trimmed.starts_with("-----BEGIN") {
        let block = ::pem::parse(trimmed)
            .map_err(|e| invalid(format!("the PEM text could not be decoded ({e}).")))?;
        if block.tag() != "X509 CRL" {
            return Err(invalid(format!(
                "found a PEM block of type '{}'; expected 'X509 CRL'.",
                block.tag().chars().take(40).collect::<String>()
            )));
        }
        block.into_contents()
    } else {
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| {
                invalid("not a CRL: expected a PEM 'X509 CRL' block or the CRL's DER in base64.")
            })?
    };
    let (rest, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|e| invalid(format!("not a CRL: the DER does not parse as one ({e}).")))?;
    if !rest.is_empty() {
        return Err(invalid("there is data after the CRL."));
    }
    let parsed = ParsedCrl {
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked_count: i64::try_from(crl.iter_revoked_certificates().count()).unwrap_or(i64::MAX),
        der: Vec::new(),
    };
    Ok(ParsedCrl { der, ..parsed })
}

/// Checks that `crl` was issued by the CA certificate `ca_pem`: its issuer is the CA's
/// subject, the CA may sign CRLs (keyUsage cRLSign, when a keyUsage is present), and its
/// signature verifies with the CA's key. The error says which check failed.
pub fn check_issued_by(crl: &ParsedCrl, ca_pem: &str) -> Result<(), DomainError> {
    let ca_der = ::pem::parse(ca_pem.as_bytes())
        .map_err(|_| invalid("the CA certificate could not be read."))?
        .into_contents();
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|_| invalid("the CA certificate could not be read."))?;
    let (_, parsed) = CertificateRevocationList::from_der(&crl.der)
        .map_err(|e| invalid(format!("not a CRL ({e}).")))?;
    if parsed.issuer().as_raw() != ca.subject().as_raw() {
        return Err(invalid(format!(
            "the CRL's issuer ({}) is not this CA certificate's subject ({}).",
            parsed.issuer(),
            ca.subject()
        )));
    }
    if let Ok(Some(usage)) = ca.key_usage() {
        if !usage.value.crl_sign() {
            return Err(invalid(
                "this CA certificate's keyUsage does not allow signing CRLs (cRLSign).",
            ));
        }
    }
    crate::x509::verify_signed(&crl.der, ca.public_key().raw).map_err(|why| {
        invalid(format!(
            "the CRL's signature does not verify with this CA certificate's key ({why})."
        ))
    })
}

/// The serials a CRL revokes, as the DER INTEGER contents (the form webpki's `Cert::serial`
/// gives), for lookups by the gateway.
pub fn revoked_serials(der: &[u8]) -> Result<HashSet<Vec<u8>>, String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| e.to_string())?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect())
}
