//! Certificate revocation lists: parsing an uploaded CRL, refusing the kinds certgate does not
//! store (`kinds`: only complete, direct CRLs dated by a sane clock), checking it was issued
//! (and signed) by a given CA, and the set of serials it revokes. Pure: no I/O, no panic on any
//! input. The DER is walked in place (`frame`), entry by entry, so the memory a CRL costs is
//! its own bytes and, on gateways, its [`SerialSet`]; x509-parser reads the names and the
//! issuing distribution point, and the signature is checked with webpki's algorithms
//! ([`crate::x509::verify_signed`]), the same the gateway verifies chains with.

mod frame;
mod kinds;
mod serials;
#[cfg(test)]
mod tests;

pub use kinds::MAX_THIS_UPDATE_AHEAD;
pub use serials::SerialSet;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::domain::DomainError;

/// An uploaded CRL, decoded and of a kind certgate stores (its issuer and signature not yet
/// checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrl {
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of `der`: what identifies this version of the CA's CRL.
    pub sha256: String,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds; `None` when the CRL has none (it is then never stale).
    pub next_update: Option<i64>,
    pub revoked_count: i64,
}

fn invalid(why: impl Into<String>) -> DomainError {
    DomainError::InvalidCrl(why.into())
}

/// Decodes a CRL given as PEM (`-----BEGIN X509 CRL-----`) or as base64 DER, and refuses the
/// kinds certgate does not store (a delta or indirect CRL, one limited to some reasons or
/// kinds of certificate, an unknown critical extension, a `removeFromCRL` entry, a thisUpdate
/// more than [`MAX_THIS_UPDATE_AHEAD`] seconds after `now`), saying which.
pub fn parse_crl(text: &str, now: i64) -> Result<ParsedCrl, DomainError> {
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
        // Line breaks are allowed; most uploads have none, and up to 8 MiB are not copied then.
        let compact: std::borrow::Cow<'_, [u8]> =
            if trimmed.bytes().any(|b| b.is_ascii_whitespace()) {
                trimmed
                    .bytes()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect::<Vec<u8>>()
                    .into()
            } else {
                trimmed.as_bytes().into()
            };
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| {
                invalid("not a CRL: expected a PEM 'X509 CRL' block or the CRL's DER in base64.")
            })?
    };
    let frame = frame::read(&der)
        .map_err(|e| invalid(format!("not a CRL: the DER does not parse as one ({e}).")))?;
    kinds::check_crl(&frame, now).map_err(invalid)?;
    let mut revoked_count = 0i64;
    for entry in frame.entries() {
        let entry = entry
            .map_err(|e| invalid(format!("not a CRL: the DER does not parse as one ({e}).")))?;
        kinds::check_entry(entry.extensions, entry.serial).map_err(invalid)?;
        revoked_count += 1;
    }
    let parsed = ParsedCrl {
        sha256: hex::encode(Sha256::digest(&der)),
        this_update: frame.this_update,
        next_update: frame.next_update,
        revoked_count,
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
    let frame = frame::read(&crl.der).map_err(|e| invalid(format!("not a CRL ({e}).")))?;
    if frame.issuer != ca.subject().as_raw() {
        let issuer = X509Name::from_der(frame.issuer)
            .map_or_else(|_| "unreadable".to_owned(), |(_, name)| name.to_string());
        return Err(invalid(format!(
            "the CRL's issuer ({issuer}) is not this CA certificate's subject ({}).",
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

/// The serials a stored CRL revokes, for lookups by the gateway: nothing kept but the serials.
/// The entries are counted first (a walk that reads no date), so the set's table is sized once.
pub fn revoked_serials(der: &[u8]) -> Result<SerialSet, String> {
    let frame = frame::read(der)?;
    let count = frame
        .stored_entries()
        .try_fold(0usize, |n, entry| entry.map(|_| n + 1))?;
    let mut serials = SerialSet::with_capacity(count);
    for entry in frame.stored_entries() {
        if !serials.insert(entry?.serial) {
            return Err("too many serials".into());
        }
    }
    serials.shrink_to_fit();
    Ok(serials)
}

/// The CRL's cRLNumber (decimal; hex with `0x` past 128 bits), if it has one: what the
/// `certificate.crl_fetched` event names (decisions.md D59). Reads the stored frame only.
pub fn crl_number(der: &[u8]) -> Option<String> {
    let frame = frame::read(der).ok()?;
    let value = frame
        .extensions()
        .filter_map(Result::ok)
        .find(|e| e.oid == [0x55, 0x1d, 20])?
        .value;
    // extnValue holds one INTEGER: tag 2, a one-byte length (cRLNumber is at most 20 octets).
    let (&tag, rest) = value.split_first()?;
    let (&len, digits) = rest.split_first()?;
    if tag != 0x02 || usize::from(len) != digits.len() || digits.is_empty() {
        return None;
    }
    if digits.len() <= 16 {
        let n = digits.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b));
        Some(n.to_string())
    } else {
        Some(format!("0x{}", hex::encode(digits)))
    }
}
