//! [`SerialSet`]: the serials one CRL revokes, for the gateway's lookups. Held for every CRL of
//! an active CA on every gateway, so it is compact: the serials side by side in one buffer
//! (each behind a one-byte length, or a few for a longer one) and a hash table of their
//! offsets, about 30 bytes per entry, no allocation per entry, and a lookup that costs the same
//! whatever the list's length. The hash is keyed at random per set (std's `SipHash`), since
//! tenants choose the serials.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;

/// The serials a CRL revokes, as DER INTEGER contents (what webpki's `Cert::serial` gives).
pub struct SerialSet {
    /// Each serial as a LEB128 length and its bytes.
    bytes: Vec<u8>,
    /// Offsets into `bytes`.
    table: HashTable<u32>,
    hasher: RandomState,
}

impl std::fmt::Debug for SerialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialSet")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

fn entry_at(bytes: &[u8], offset: u32) -> &[u8] {
    let mut at = offset as usize;
    let mut len = 0usize;
    let mut shift = 0;
    while let Some(&b) = bytes.get(at) {
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    bytes.get(at..at + len).unwrap_or_default()
}

impl SerialSet {
    /// An empty set, with room for `capacity` serials.
    pub fn with_capacity(capacity: usize) -> SerialSet {
        SerialSet {
            bytes: Vec::new(),
            table: HashTable::with_capacity(capacity),
            hasher: RandomState::new(),
        }
    }

    /// Adds `serial` (a serial already present is not added twice). Returns false when the set
    /// is full (4 GiB of serials; a CRL is far smaller).
    pub fn insert(&mut self, serial: &[u8]) -> bool {
        let hash = self.hasher.hash_one(serial);
        let bytes = &self.bytes;
        if self
            .table
            .find(hash, |&o| entry_at(bytes, o) == serial)
            .is_some()
        {
            return true;
        }
        let Ok(offset) = u32::try_from(self.bytes.len()) else {
            return false;
        };
        let mut len = serial.len();
        loop {
            let low = u8::try_from(len & 0x7f).unwrap_or_default();
            len >>= 7;
            if len == 0 {
                self.bytes.push(low);
                break;
            }
            self.bytes.push(low | 0x80);
        }
        self.bytes.extend_from_slice(serial);
        let (bytes, hasher) = (&self.bytes, &self.hasher);
        self.table
            .insert_unique(hash, offset, |&o| hasher.hash_one(entry_at(bytes, o)));
        true
    }

    pub fn contains(&self, serial: &[u8]) -> bool {
        let hash = self.hasher.hash_one(serial);
        self.table
            .find(hash, |&o| entry_at(&self.bytes, o) == serial)
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Releases spare capacity once every serial is in.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        let (bytes, hasher) = (&self.bytes, &self.hasher);
        self.table
            .shrink_to_fit(|&o| hasher.hash_one(entry_at(bytes, o)));
    }

    /// Bytes held (the serials and the table), roughly.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_what_was_inserted() {
        let mut set = SerialSet::with_capacity(4);
        assert!(set.is_empty() && !set.contains(&[1]));
        let long = vec![0xabu8; 300];
        for s in [&[1u8][..], &[0, 0x80], &[1, 2, 3], &long, &[1]] {
            assert!(set.insert(s));
        }
        assert_eq!(set.len(), 4);
        for s in [&[1u8][..], &[0, 0x80], &[1, 2, 3], &long] {
            assert!(set.contains(s), "{s:?}");
        }
        for s in [&[0u8][..], &[1, 2], &[0x80], &long[..299], &[]] {
            assert!(!set.contains(s), "{s:?}");
        }
    }

    #[test]
    fn many_serials() {
        let mut set = SerialSet::with_capacity(0);
        for i in 0u32..100_000 {
            set.insert(&i.to_be_bytes());
        }
        set.shrink_to_fit();
        assert_eq!(set.len(), 100_000);
        assert!((0u32..100_000).all(|i| set.contains(&i.to_be_bytes())));
        assert!(!set.contains(&100_000u32.to_be_bytes()));
        assert!(set.heap_bytes() < 100_000 * 16, "{}", set.heap_bytes());
    }
}
