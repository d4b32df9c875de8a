//! A per-replica cache of serialized certificate list pages.
//!
//! An entry is keyed by organization, scope and page parameters, and labelled with the
//! organization's write sequence read when it was built. Every request reads the current
//! sequence in the same statement that checks its admin key, and an entry is used only when
//! the labels match, so a read after any acknowledged write (on any replica) never sees an
//! older page. The page itself is read after the sequence, so an entry can only be newer than
//! its label, never older.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::domain::PageRequest;

/// Entries kept before the cache starts over; bounds memory whatever clients ask for.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub org_id: String,
    pub project_id: Option<String>,
    pub page: PageRequest,
}

#[derive(Default)]
pub struct PageCache {
    entries: Mutex<HashMap<PageKey, (i64, Bytes)>>,
}

impl PageCache {
    /// The cached page if it was built at `version`.
    pub fn get(&self, key: &PageKey, version: i64) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some((v, bytes)) if *v == version => Some(bytes.clone()),
            _ => None,
        }
    }

    pub fn put(&self, key: PageKey, version: i64, bytes: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (version, bytes));
    }
}
