//! Revocation without rotating a CA (decisions.md D22, D23): deny-list entries by SHA-256, and the
//! summary of a CA's stored CRL.

use super::ids::{echo, CertificateId, RevokedCertificateId};
use super::DomainError;

/// Most deny-list entries one organization may hold.
pub const MAX_REVOCATIONS: i64 = 10_000;
/// Longest accepted `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 256;
/// Most CRL bytes (DER) one organization may store, all its CA certificates together: every
/// gateway holds the CRLs of active CAs, so what one tenant stores must stay bounded.
pub const MAX_CRL_BYTES_PER_ORG: i64 = 32 * 1024 * 1024;
/// Longest accepted client filter (decisions.md D26), in bytes.
pub const MAX_CLIENT_FILTER_BYTES: usize = 4096;

/// One deny-listed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    pub id: RevokedCertificateId,
    /// Lowercase hex of the SHA-256 of the certificate's DER, without colons.
    pub sha256_fingerprint: String,
    pub reason: Option<String>,
    pub created_at: i64,
}

/// What is known of a CA certificate's stored CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    pub certificate_id: CertificateId,
    pub this_update: i64,
    /// `None` for a CRL without nextUpdate (never stale).
    pub next_update: Option<i64>,
    pub revoked_count: i64,
}

impl CrlSummary {
    /// Past its nextUpdate at `now`: still enforced, but shown as stale.
    pub fn stale(&self, now: i64) -> bool {
        self.next_update.is_some_and(|next| now > next)
    }
}

/// A SHA-256 fingerprint as people write it: 64 hex digits, any case, colons allowed. Stored
/// lowercase without colons.
pub fn parse_fingerprint(raw: &str) -> Result<String, DomainError> {
    let digits: String = raw.trim().chars().filter(|c| *c != ':').collect();
    if digits.len() == 64 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_lowercase())
    } else {
        Err(DomainError::InvalidFingerprint(format!(
            "expected the SHA-256 of the certificate's DER as 64 hex digits (colons allowed), got '{}'.",
            echo(raw)
        )))
    }
}

/// A deny-list entry's reason: at most [`MAX_REASON_CHARS`] characters.
pub fn parse_reason(reason: String) -> Result<String, DomainError> {
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(DomainError::invalid(
            "reason",
            format!("'reason' is {chars} characters long; the limit is {MAX_REASON_CHARS}."),
        ));
    }
    Ok(reason)
}

/// The guard of a new deny-list entry, run inside its transaction with the live count.
pub fn check_revocation_limit(current: i64) -> Result<(), DomainError> {
    if current >= MAX_REVOCATIONS {
        Err(DomainError::RevocationLimitReached)
    } else {
        Ok(())
    }
}

/// The guard of a CRL upload: not older (by thisUpdate) than the stored one; an equal one
/// replaces it.
pub fn check_crl_newer(stored_this_update: Option<i64>, given: i64) -> Result<(), DomainError> {
    match stored_this_update {
        Some(stored) if given < stored => Err(DomainError::CrlOutdated { stored, given }),
        _ => Ok(()),
    }
}

/// The guard of a CRL upload, run inside its transaction: the organization's stored CRL bytes
/// (`stored`, the CRL being replaced included) minus the one replaced (`replaced`, 0 when the
/// CA has none) plus the new one (`given`) stay within [`MAX_CRL_BYTES_PER_ORG`].
pub fn check_crl_storage(stored: i64, replaced: i64, given: i64) -> Result<(), DomainError> {
    let total = stored.saturating_sub(replaced).saturating_add(given);
    if total > MAX_CRL_BYTES_PER_ORG {
        Err(DomainError::CrlStorageLimitReached { given, total })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_fingerprint(&hex).unwrap(), "ab".repeat(32));
        let colons = vec!["Ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), "ab".repeat(32));
        assert!(parse_fingerprint(&"ab".repeat(31)).is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn guards() {
        assert!(check_revocation_limit(9_999).is_ok());
        assert_eq!(
            check_revocation_limit(10_000),
            Err(DomainError::RevocationLimitReached)
        );
        assert!(check_crl_newer(None, 5).is_ok());
        assert!(check_crl_newer(Some(5), 5).is_ok());
        assert!(check_crl_newer(Some(5), 4).is_err());
        let crl = CrlSummary {
            certificate_id: CertificateId::parse("cert_a").unwrap(),
            this_update: 1,
            next_update: Some(10),
            revoked_count: 0,
        };
        assert!(!crl.stale(10) && crl.stale(11));
        let max = MAX_CRL_BYTES_PER_ORG;
        assert!(check_crl_storage(0, 0, max).is_ok());
        assert!(check_crl_storage(max - 10, 0, 10).is_ok());
        assert_eq!(
            check_crl_storage(max - 10, 0, 11),
            Err(DomainError::CrlStorageLimitReached {
                given: 11,
                total: max + 1
            })
        );
        // Replacing a CRL counts the new size minus the old.
        assert!(check_crl_storage(max, 100, 100).is_ok());
        assert!(check_crl_storage(max, 100, 101).is_err());
    }
}
