//! The process-wide cache of genuine chain paths ([`CheckCache`]), shared by every connection
//! of a gateway and by `certgate authz`: what [`PeerChain::check`] found, kept by (chain,
//! anchor group).

use super::chain::{AnchorCheck, PeerChain};
use super::index::AnchorGroup;

/// Genuine paths found by any connection of this process, by (chain, anchor group): a check's
/// outcome depends only on the certificates sent and the anchor group ([`PeerChain::check`]),
/// so a client that reconnects with the same chain costs no new signature checks. Only
/// genuine paths are kept, and used only inside their validity window: a refusal is checked
/// again on each connection (a chain refused now for an intermediate not valid yet may verify
/// later). Bounded; a chain a client varies only evicts entries, it never admits anything.
pub struct CheckCache(quick_cache::sync::Cache<([u8; 32], AnchorGroup), AnchorCheck>);

impl CheckCache {
    /// Room for about as many chains as clients a busy gateway sees reconnecting.
    pub const CAPACITY: usize = 16_384;

    pub fn new(capacity: usize) -> Self {
        CheckCache(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    /// A genuine path of `chain` to `group` valid at `now`, if one was found before.
    pub fn get(&self, chain: &PeerChain, group: &AnchorGroup, now: i64) -> Option<AnchorCheck> {
        self.0
            .get(&(chain.digest, *group))
            .filter(|check| check.valid_at(now))
    }

    /// Remembers `check` if it found a genuine path.
    pub fn put(&self, chain: &PeerChain, group: AnchorGroup, check: &AnchorCheck) {
        if matches!(check, AnchorCheck::Genuine { .. }) {
            self.0.insert((chain.digest, group), check.clone());
        }
    }
}

impl Default for CheckCache {
    fn default() -> Self {
        CheckCache::new(CheckCache::CAPACITY)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::{AnchorCheck, CheckCache, PeerChain};
    use rustls_pki_types::CertificateDer;

    fn chain(bytes: &[u8]) -> PeerChain {
        PeerChain::new(vec![CertificateDer::from(bytes.to_vec())]).unwrap()
    }

    #[test]
    fn only_genuine_paths_are_kept_and_only_inside_their_window() {
        let cache = CheckCache::new(16);
        let (one, other, group) = (chain(b"one"), chain(b"other"), [7u8; 32]);
        cache.put(&one, group, &AnchorCheck::Invalid);
        assert!(
            cache.get(&one, &group, 100).is_none(),
            "a refusal is not kept"
        );
        let genuine = AnchorCheck::Genuine {
            from: 50,
            until: 150,
            path: Vec::new().into(),
        };
        cache.put(&one, group, &genuine);
        assert!(cache.get(&one, &group, 100).is_some());
        assert!(cache.get(&one, &group, 151).is_none(), "past its window");
        assert!(cache.get(&one, &[8u8; 32], 100).is_none(), "another group");
        assert!(cache.get(&other, &group, 100).is_none(), "another chain");
    }
}
