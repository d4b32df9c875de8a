//! A per-replica cache of serialized certificate list pages.
//!
//! An entry is keyed by organization, scope and page parameters, and labelled with the
//! organization's write sequence read when it was built. Every request learns the current
//! sequence with its admin key check (read in the same statement, or, on SQLite, from the key
//! cache while the WAL-index says nothing was committed since), and an entry is used only when
//! the labels match, so a read after any acknowledged write (on any replica) never sees an
//! older page. The page itself is read after the sequence, so an entry can only be newer than
//! its label, never older.
//!
//! Pages with `include[]=details` are not cached at all: their `status` changes with time
//! alone, without any write moving the sequence.
//!
//! Memory is bounded by bytes (keys and pages), with eviction (`quick_cache`'s CLOCK-style
//! policy), whatever clients ask for.

use axum::body::Bytes;

use crate::domain::{CertificateInclude, OrgId, PageRequest, ProjectId};

/// Bytes of pages and keys kept; about 16 MiB whatever the page sizes.
const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// A typical entry (a 20-item page), to size the cache's bookkeeping.
const TYPICAL_ENTRY_BYTES: u64 = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub org_id: OrgId,
    pub project_id: Option<ProjectId>,
    pub page: PageRequest,
    /// What the page shows besides the base fields. Pages with details are never cached:
    /// their `status` depends on the instant, not only on the organization's writes.
    pub include: CertificateInclude,
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<PageKey, (i64, Bytes)> for Weigh {
    fn weight(&self, key: &PageKey, (_, bytes): &(i64, Bytes)) -> u64 {
        let key_bytes = key.org_id.as_str().len()
            + key.project_id.as_ref().map_or(0, |p| p.as_str().len())
            + key.page.after.as_ref().map_or(0, String::len)
            + 64;
        (bytes.len() + key_bytes) as u64
    }
}

pub struct PageCache {
    entries: quick_cache::sync::Cache<PageKey, (i64, Bytes), Weigh>,
}

impl Default for PageCache {
    fn default() -> Self {
        PageCache::with_capacity_bytes(MAX_BYTES)
    }
}

impl PageCache {
    pub fn with_capacity_bytes(max_bytes: u64) -> Self {
        let items = usize::try_from(max_bytes / TYPICAL_ENTRY_BYTES)
            .unwrap_or(usize::MAX)
            .max(16);
        PageCache {
            entries: quick_cache::sync::Cache::with_weighter(items, max_bytes, Weigh),
        }
    }

    /// The cached page if it was built at `version`.
    pub fn get(&self, key: &PageKey, version: i64) -> Option<Bytes> {
        match self.entries.get(key) {
            Some((v, bytes)) if v == version => Some(bytes),
            _ => None,
        }
    }

    pub fn put(&self, key: PageKey, version: i64, bytes: Bytes) {
        self.entries.insert(key, (version, bytes));
    }

    /// Bytes currently held (keys and pages).
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limit;

    fn key(org: &str, after: usize) -> PageKey {
        PageKey {
            org_id: OrgId::parse(org).unwrap(),
            project_id: None,
            page: PageRequest {
                limit: Limit::DEFAULT,
                after: Some(format!("cert_{after}")),
                order: crate::domain::Order::Desc,
            },
            include: CertificateInclude::default(),
        }
    }

    #[test]
    fn bounded_by_bytes_with_eviction_not_a_wipe() {
        let cache = PageCache::with_capacity_bytes(256 * 1024);
        let page = Bytes::from(vec![b'x'; 4096]);
        for i in 0..1000 {
            cache.put(key("org-a", i), 1, page.clone());
            assert!(cache.weight() <= 256 * 1024, "over budget at {i}");
        }
        // Entries were evicted one by one, not wiped: the newest survive, and about as many
        // as fit are kept.
        assert!(cache.get(&key("org-a", 999), 1).is_some());
        let kept = (0..1000)
            .filter(|&i| cache.get(&key("org-a", i), 1).is_some())
            .count();
        assert!((30..=64).contains(&kept), "kept {kept}");
        // A label mismatch is a miss.
        assert!(cache.get(&key("org-a", 999), 2).is_none());
    }
}
