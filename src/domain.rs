//! The rules of certgate: identifiers, limits, scopes, toggles, the delete guard and the clock.
//!
//! Nothing here performs I/O or knows HTTP, JSON or SQL. The store calls these rules *inside*
//! its writing transactions, so a rule is checked against the state it is about to change.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Most certificates one organization may hold (OpenAI: "Organizations can upload up to 50").
pub const MAX_CERTIFICATES_PER_ORG: i64 = 50;
/// Ids per activate/deactivate call (OpenAI: "up to 10 certificates at a time").
pub const MAX_TOGGLE_IDS: usize = 10;
/// Longest accepted certificate or project name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Ids longer than this cannot exist; they are answered as unknown without a lookup.
pub const MAX_ID_LEN: usize = 128;

/// Everything a request can be refused for by a rule. The API layer maps each variant to a
/// status and OpenAI's error body; the messages are written for the person reading them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("This organization already has {MAX_CERTIFICATES_PER_ORG} certificates, the most allowed. Delete an unused certificate before uploading another.")]
    CertificateLimitReached,
    #[error("This certificate was already uploaded to this organization as '{existing_id}'.")]
    CertificateAlreadyExists { existing_id: String },
    #[error("The certificate field contains a private key. Upload only the CA certificate (a PEM 'CERTIFICATE' block); keep private keys secret.")]
    PrivateKeyNotAllowed,
    #[error("The certificate is {len} bytes; the limit is 16384 bytes (16 KB).")]
    CertificateTooLarge { len: usize },
    #[error("Invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("{0}")]
    InvalidToggleIds(String),
    #[error("No certificate found with id '{0}'. Nothing was changed.")]
    UnknownToggleId(String),
    #[error("{0}")]
    CertificateInUse(String),
    #[error("Project '{0}' is archived; archived projects cannot be changed or have certificates activated.")]
    ProjectArchived(String),
    #[error("No {kind} found with id '{id}'.")]
    NotFound { kind: &'static str, id: String },
    #[error("{message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
}

impl DomainError {
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        DomainError::InvalidParam {
            param,
            message: message.into(),
        }
    }
    pub fn certificate_not_found(id: &str) -> Self {
        DomainError::NotFound {
            kind: "certificate",
            id: shorten(id),
        }
    }
    pub fn project_not_found(id: &str) -> Self {
        DomainError::NotFound {
            kind: "project",
            id: shorten(id),
        }
    }
}

/// Echo at most a readable prefix of client-supplied ids back in messages.
fn shorten(id: &str) -> String {
    if id.chars().count() <= 80 {
        id.to_owned()
    } else {
        let head: String = id.chars().take(77).collect();
        format!("{head}...")
    }
}

/// Source of "now" in Unix seconds. Production uses the system clock; tests swap in a
/// [`ManualClock`] in-process. No flag or environment variable fakes time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock tests set by hand.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(now)))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst)
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether `id` could name a stored object at all: short and without NUL. Anything else is
/// answered as unknown without asking the database (which may not even accept it).
pub fn plausible_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN && !id.contains('\0')
}

/// New random identifier with OpenAI's prefix for the kind (`cert_`, `proj_`, `org-`, `key_`).
pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &raw[..24])
}

/// Page size: 1..=100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit(u32);

impl Limit {
    pub const DEFAULT: Limit = Limit(20);

    pub fn parse(raw: &str) -> Result<Limit, DomainError> {
        match raw.trim().parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => Ok(Limit(n as u32)),
            _ => Err(DomainError::invalid(
                "limit",
                format!(
                    "Invalid 'limit': expected an integer between 1 and 100, got '{}'.",
                    shorten(raw)
                ),
            )),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(raw: &str) -> Result<Order, DomainError> {
        match raw {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            _ => Err(DomainError::invalid(
                "order",
                format!(
                    "Invalid 'order': expected 'asc' or 'desc', got '{}'.",
                    shorten(raw)
                ),
            )),
        }
    }
}

/// One page request: ordered by `created_at`, ties broken by the per-organization sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub limit: Limit,
    pub after: Option<String>,
    pub order: Order,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: Limit::DEFAULT,
            after: None,
            order: Order::Desc,
        }
    }
}

/// A page of results; `has_more` is exact.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// The certificates named by one activate/deactivate call: 1..=10 distinct ids, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToggleIds(Vec<String>);

impl ToggleIds {
    pub fn parse(ids: Vec<String>) -> Result<ToggleIds, DomainError> {
        if ids.is_empty() {
            return Err(DomainError::InvalidToggleIds(
                "'certificate_ids' must name at least 1 certificate.".into(),
            ));
        }
        if ids.len() > MAX_TOGGLE_IDS {
            return Err(DomainError::InvalidToggleIds(format!(
                "'certificate_ids' names {} certificates; at most {MAX_TOGGLE_IDS} can be changed at a time.",
                ids.len()
            )));
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(DomainError::InvalidToggleIds(format!(
                    "'certificate_ids' names '{}' more than once.",
                    shorten(id)
                )));
            }
        }
        Ok(ToggleIds(ids))
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Where a toggle applies. Organization and project scope never change each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Project(String),
}

/// A name as given by a client: at most [`MAX_NAME_CHARS`] characters.
pub fn parse_name(param: &'static str, name: String) -> Result<String, DomainError> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            param,
            format!("'{param}' is {chars} characters long; the limit is {MAX_NAME_CHARS}."),
        ));
    }
    Ok(name)
}

/// The upload guard, run inside the upload transaction with the organization's live count.
pub fn check_certificate_limit(current: i64) -> Result<(), DomainError> {
    if current >= MAX_CERTIFICATES_PER_ORG {
        Err(DomainError::CertificateLimitReached)
    } else {
        Ok(())
    }
}

/// The delete guard, run inside the delete transaction: a certificate may go only when it is
/// inactive for the organization and for every (unarchived) project.
pub fn check_deletable(
    cert_id: &str,
    org_id: &str,
    active_for_org: bool,
    active_projects: &[String],
) -> Result<(), DomainError> {
    let mut places = Vec::new();
    if active_for_org {
        places.push(format!("organization '{org_id}'"));
    }
    match active_projects {
        [] => {}
        [one] => places.push(format!("project '{one}'")),
        many => places.push(format!(
            "projects {}",
            many.iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if places.is_empty() {
        return Ok(());
    }
    Err(DomainError::CertificateInUse(format!(
        "Certificate '{cert_id}' is still active for {}. Deactivate it there before deleting it.",
        places.join(" and ")
    )))
}

/// An uploaded CA certificate as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub id: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub valid_at: i64,
    pub expires_at: i64,
    /// The PEM exactly as uploaded; filled only when asked for.
    pub content: Option<String>,
}

/// A certificate with its activation flag for the scope it was listed or toggled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedCertificate {
    pub certificate: Certificate,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub external_key_id: Option<String>,
    pub residency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A freshly made admin key: the only moment its value exists outside the client.
#[derive(Debug, Clone)]
pub struct NewAdminKey {
    pub id: String,
    pub name: String,
    pub value: String,
    pub redacted_value: String,
    pub created_at: i64,
}

/// A new admin key value: 256 random bits.
pub fn new_admin_key_value() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sk-admin-{}", hex::encode(bytes))
}

/// What the database keeps of an admin key: its SHA-256 (the key is random, so a slow hash
/// would buy nothing and cost every request).
pub fn admin_key_digest(value: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))
}

pub fn redact_admin_key(value: &str) -> String {
    let tail = &value[value.len().saturating_sub(4)..];
    format!("sk-admin...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(Limit::parse("1").unwrap().get(), 1);
        assert_eq!(Limit::parse("100").unwrap().get(), 100);
        assert!(Limit::parse("0").is_err());
        assert!(Limit::parse("101").is_err());
        assert!(Limit::parse("-1").is_err());
        assert!(Limit::parse("ten").is_err());
        assert!(Limit::parse("99999999999999999999999").is_err());
    }

    #[test]
    fn toggle_ids() {
        assert!(ToggleIds::parse(vec![]).is_err());
        assert!(ToggleIds::parse((0..11).map(|i| format!("cert_{i}")).collect()).is_err());
        assert!(ToggleIds::parse(vec!["a".into(), "a".into()]).is_err());
        assert_eq!(
            ToggleIds::parse(vec!["b".into(), "a".into()])
                .unwrap()
                .as_slice(),
            ["b", "a"]
        );
    }

    #[test]
    fn delete_guard_names_every_place() {
        assert!(check_deletable("cert_1", "org-1", false, &[]).is_ok());
        let msg = check_deletable("cert_1", "org-1", true, &["proj_a".into(), "proj_b".into()])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("organization 'org-1'") && msg.contains("'proj_a', 'proj_b'"),
            "{msg}"
        );
    }

    #[test]
    fn limit_guard() {
        assert!(check_certificate_limit(49).is_ok());
        assert_eq!(
            check_certificate_limit(50),
            Err(DomainError::CertificateLimitReached)
        );
    }

    #[test]
    fn admin_keys_are_redacted_and_hashed() {
        let v = new_admin_key_value();
        assert!(v.starts_with("sk-admin-") && v.len() == 9 + 64);
        assert_eq!(admin_key_digest(&v).len(), 64);
        assert!(redact_admin_key(&v).starts_with("sk-admin..."));
    }
}
