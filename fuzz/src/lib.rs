//! What the fuzz targets share: the fixed instant they judge at, the committed fixtures (CA
//! certificates and a CRL, public material only: fuzz/seeds/make.sh made them and threw the
//! keys away), and a runtime for the async extractors and the store.

use std::sync::OnceLock;

/// The instant every target decides at (2027-01-15): the fixtures are valid then.
pub const NOW: i64 = 1_800_000_000;

/// The root CA that signed the fixture CRL and the decide target's seed chains (org-wide, with
/// a CRL).
pub const CA_ROOT: &str = include_str!("../fixtures/root.pem");
/// An intermediate CA issued by the root (project-level, with a client filter).
pub const CA_INTERMEDIATE: &str = include_str!("../fixtures/intermediate.pem");
/// An unrelated root CA (org-wide, no CRL, no filter).
pub const CA_OTHER: &str = include_str!("../fixtures/other.pem");
/// A CRL of the root, listing the seed leaf `revoked`.
pub const CRL_ROOT: &[u8] = include_bytes!("../fixtures/root.crl.der");
/// The SHA-256 (hex) of the seed leaf the decide target's deny-list holds.
pub const DENIED_LEAF_SHA256: &str = include_str!("../fixtures/denied.sha256");

/// One single-threaded tokio runtime per process, for the async entry points.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// `data` split as `[len: u16 BE][bytes]…`, at most `max` pieces; a short tail is one piece.
pub fn frames(mut data: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < max {
        let (len, rest) = match data {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (data.len(), data),
        };
        let len = len.min(rest.len());
        out.push(rest[..len].to_vec());
        data = &rest[len..];
    }
    out
}
