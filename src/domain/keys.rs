//! Admin key values: made here, shown once, stored as a digest, never printed by accident.

use secrecy::{ExposeSecret, SecretString};

use super::DomainError;

/// An admin key's value. `Debug` prints `[REDACTED]`, so a stray `{:?}` cannot leak it; the
/// value is read only through [`AdminKeySecret::expose`], at the one place that shows it.
#[derive(Debug, Clone)]
pub struct AdminKeySecret(SecretString);

impl AdminKeySecret {
    /// A new value: `sk-admin-` and 256 random bits in hex.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        AdminKeySecret(SecretString::from(format!(
            "sk-admin-{}",
            hex::encode(bytes)
        )))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What the database keeps of it.
    pub fn digest(&self) -> String {
        admin_key_digest(self.expose())
    }

    /// `sk-admin...` and the last four characters.
    pub fn redacted(&self) -> String {
        let value = self.expose();
        let tail = &value[value.len().saturating_sub(4)..];
        format!("sk-admin...{tail}")
    }
}

/// Longest lifetime a new key may be given (OpenAI: `maximum: 31536000`, one year).
pub const MAX_KEY_LIFETIME_SECS: i64 = 31_536_000;

/// `expires_in_seconds` of a new key: 1..=[`MAX_KEY_LIFETIME_SECS`].
pub fn parse_key_lifetime(param: &'static str, secs: i64) -> Result<i64, DomainError> {
    if (1..=MAX_KEY_LIFETIME_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(DomainError::invalid(
            param,
            format!(
                "Invalid '{param}': expected an integer between 1 and {MAX_KEY_LIFETIME_SECS} (one year), got {secs}."
            ),
        ))
    }
}

/// Whether a key with this expiry no longer works at `now`: it stops at its `expires_at`.
pub fn key_expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

/// The SHA-256 of a presented key, hex. Keys are random, so a slow password hash would buy
/// nothing and cost every request (decisions.md D9).
pub fn admin_key_digest(presented: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted_hashed_and_never_debug_printed() {
        let key = AdminKeySecret::generate();
        assert!(key.expose().starts_with("sk-admin-") && key.expose().len() == 9 + 64);
        assert_eq!(key.digest().len(), 64);
        assert_eq!(key.digest(), admin_key_digest(key.expose()));
        assert!(key.redacted().starts_with("sk-admin..."));
        assert!(key
            .redacted()
            .ends_with(&key.expose()[key.expose().len() - 4..]));
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn lifetimes_and_expiry() {
        assert!(parse_key_lifetime("expires_in_seconds", 1).is_ok());
        assert!(parse_key_lifetime("expires_in_seconds", MAX_KEY_LIFETIME_SECS).is_ok());
        assert!(parse_key_lifetime("expires_in_seconds", 0).is_err());
        assert!(parse_key_lifetime("expires_in_seconds", MAX_KEY_LIFETIME_SECS + 1).is_err());
        assert!(!key_expired(None, i64::MAX));
        assert!(!key_expired(Some(100), 99));
        assert!(key_expired(Some(100), 100));
    }
}
