//! Admin key values: made here, shown once, stored as a digest, never printed by accident.

use secrecy::{ExposeSecret, SecretString};

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

/// The SHA-256 of a presented key, hex. Keys are random, so a slow password hash would buy
/// nothing and cost every request (spec §11.5).
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
}
