//! Identifiers as types. A raw id from a URL, a body or a header is parsed once, at the
//! boundary, into an [`Id`] of its kind; everything past that point can rely on it being
//! well-formed (right prefix, bounded length, no control characters), so no layer below asks
//! "could this even be an id?" again.

use std::fmt;
use std::marker::PhantomData;

use super::DomainError;

/// Ids longer than this cannot exist; they are answered as unknown without a lookup.
pub const MAX_ID_LEN: usize = 128;
/// How much of a client-supplied id is echoed back in a message (decisions.md D37).
pub(super) const ECHOED_ID_CHARS: usize = 64;

/// What kind of object an [`Id`] names: its prefix and the noun used in messages.
pub trait IdKind {
    const PREFIX: &'static str;
    const NOUN: &'static str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateKind {}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProjectKind {}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgKind {}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEventKind {}

impl IdKind for CertificateKind {
    const PREFIX: &'static str = "cert_";
    const NOUN: &'static str = "certificate";
}
impl IdKind for ProjectKind {
    const PREFIX: &'static str = "proj_";
    const NOUN: &'static str = "project";
}
impl IdKind for OrgKind {
    const PREFIX: &'static str = "org-";
    const NOUN: &'static str = "organization";
}
impl IdKind for KeyKind {
    const PREFIX: &'static str = "key_";
    const NOUN: &'static str = "admin API key";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevokedCertificateKind {}

impl IdKind for RevokedCertificateKind {
    const PREFIX: &'static str = "revcert_";
    const NOUN: &'static str = "revoked certificate";
}

impl IdKind for AuditEventKind {
    const PREFIX: &'static str = "audit_log-";
    const NOUN: &'static str = "audit log event";
}

/// A well-formed identifier of kind `K` (which may or may not name a stored object).
pub struct Id<K> {
    raw: String,
    kind: PhantomData<K>,
}

pub type CertificateId = Id<CertificateKind>;
pub type ProjectId = Id<ProjectKind>;
pub type OrgId = Id<OrgKind>;
pub type KeyId = Id<KeyKind>;
pub type AuditEventId = Id<AuditEventKind>;
pub type RevokedCertificateId = Id<RevokedCertificateKind>;

impl<K: IdKind> Id<K> {
    /// A new random id with the kind's prefix: 96 random bits as 24 lowercase hex digits.
    pub fn generate() -> Self {
        let bits: [u8; 12] = rand::random();
        Id::trusted(format!("{}{}", K::PREFIX, hex::encode(bits)))
    }

    /// Parses a client-supplied id; anything that cannot be an id of this kind is answered
    /// as "not found", exactly as an unknown well-formed id would be.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if well_formed(raw, K::PREFIX) {
            Ok(Id::trusted(raw.to_owned()))
        } else {
            Err(DomainError::NotFound {
                kind: K::NOUN,
                id: echo(raw),
            })
        }
    }

    /// Like [`Id::parse`], but `None` for a malformed id (for callers with their own refusal).
    pub fn parse_opt(raw: &str) -> Option<Self> {
        well_formed(raw, K::PREFIX).then(|| Id::trusted(raw.to_owned()))
    }

    /// An id read back from the database, which only ever stores well-formed ones.
    pub fn trusted(raw: String) -> Self {
        Id {
            raw,
            kind: PhantomData,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn into_string(self) -> String {
        self.raw
    }

    /// The "not found" refusal for this id.
    pub fn not_found(&self) -> DomainError {
        DomainError::NotFound {
            kind: K::NOUN,
            id: echo(&self.raw),
        }
    }
}

fn well_formed(raw: &str, prefix: &str) -> bool {
    raw.len() <= MAX_ID_LEN
        && raw.len() > prefix.len()
        && raw.starts_with(prefix)
        && !raw.chars().any(char::is_control)
}

/// At most `ECHOED_ID_CHARS` characters of a client-supplied string, for messages.
pub fn echo(raw: &str) -> String {
    if raw.chars().count() <= ECHOED_ID_CHARS {
        raw.to_owned()
    } else {
        let head: String = raw.chars().take(ECHOED_ID_CHARS - 3).collect();
        format!("{head}...")
    }
}

// Written out rather than derived: a derive would demand the same of the marker `K`.
impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Id {
            raw: self.raw.clone(),
            kind: PhantomData,
        }
    }
}
impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl<K> Eq for Id<K> {}
impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}
impl<K> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.raw.cmp(&other.raw)
    }
}
impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.raw, f)
    }
}
impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
impl<K> AsRef<str> for Id<K> {
    fn as_ref(&self) -> &str {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_prefix_length_and_controls() {
        assert!(CertificateId::parse("cert_abc").is_ok());
        assert!(CertificateId::parse("proj_abc").is_err());
        assert!(CertificateId::parse("cert_").is_err());
        assert!(CertificateId::parse("cert_a\0b").is_err());
        assert!(CertificateId::parse(&format!("cert_{}", "a".repeat(200))).is_err());
        let generated = ProjectId::generate();
        assert!(ProjectId::parse(generated.as_str()).is_ok());
    }

    #[test]
    fn generated_ids_are_the_prefix_and_24_hex_digits() {
        let ids: Vec<KeyId> = (0..64).map(|_| KeyId::generate()).collect();
        for id in &ids {
            let tail = id.as_str().strip_prefix(KeyKind::PREFIX).unwrap();
            assert_eq!(tail.len(), 24, "{}", id.as_str());
            assert!(tail.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
        // All 96 bits vary: every hex position takes more than one value across the sample
        // (uuid's v4 fixed a version and a variant digit).
        for pos in 0..24 {
            let digits: std::collections::BTreeSet<u8> = ids
                .iter()
                .map(|id| id.as_str().as_bytes()[KeyKind::PREFIX.len() + pos])
                .collect();
            assert!(digits.len() > 1, "position {pos} never varies");
        }
    }

    #[test]
    fn long_ids_are_cut_in_messages() {
        let err = CertificateId::parse(&"x".repeat(60_000)).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
