//! Concurrent reads of the same thing share one query, but only a query that started after
//! each of them arrived: an answer is never older than the request it serves, so a read after
//! an acknowledged write sees the write, on every replica.
//!
//! Used for the admin key check on PostgreSQL, which every request makes (the key and its
//! organization's write sequence, one round trip). Under load the requests of one key that
//! arrive while a check is running are answered together by the next check, so the database
//! sees a few checks per round trip instead of one per request.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Reads by key, shared as described above. `V` is what every waiter gets a copy of.
pub(super) struct Coalescer<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

struct Slot<V> {
    /// Arrived since the running read (if any) started: served by the next one.
    waiting: Vec<oneshot::Sender<V>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The value of `read(key)`, from a read that starts after this call. `read` runs in a
    /// task of its own (a caller that gives up does not cancel it for the others); `lost`
    /// is answered if that task dies without an answer.
    pub(super) async fn read<F, Fut>(self: &Arc<Self>, key: K, read: F, lost: V) -> V
    where
        F: Fn(K) -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send,
    {
        let (sender, receiver) = oneshot::channel();
        let start = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots.get_mut(&key) {
                // A reader is running for this key: it serves us with its next read.
                slot.waiting.push(sender);
                false
            } else {
                slots.insert(
                    key.clone(),
                    Slot {
                        waiting: vec![sender],
                    },
                );
                true
            }
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.serve(key, read).await });
        }
        receiver.await.unwrap_or(lost)
    }

    /// Reads for `key` until nobody is waiting: each read serves exactly those who arrived
    /// before it started.
    async fn serve<F, Fut>(&self, key: K, read: F)
    where
        F: Fn(K) -> Fut,
        Fut: Future<Output = V>,
    {
        loop {
            let waiting = {
                let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(slot) = slots.get_mut(&key) else {
                    return;
                };
                if slot.waiting.is_empty() {
                    slots.remove(&key);
                    return;
                }
                std::mem::take(&mut slot.waiting)
            };
            let value = read(key.clone()).await;
            for waiter in waiting {
                let _ = waiter.send(value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_read_serves_only_those_who_arrived_before_it_started() {
        let reads = Arc::new(AtomicU32::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let coalescer: Arc<Coalescer<&'static str, u32>> = Arc::default();
        let read = {
            let reads = reads.clone();
            move |_key| {
                let reads = reads.clone();
                let mut gate = gate.clone();
                async move {
                    // The value is the number of the read that produced it.
                    let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                    let _ = gate.wait_for(|open| *open).await;
                    n
                }
            }
        };
        let call = |c: &Arc<Coalescer<&'static str, u32>>| {
            let (c, read) = (c.clone(), read.clone());
            tokio::spawn(async move { c.read("k", read, 0).await })
        };
        let waiting = |c: &Arc<Coalescer<&'static str, u32>>| {
            c.slots
                .lock()
                .unwrap()
                .get("k")
                .map_or(0, |s| s.waiting.len())
        };
        // The first caller starts read 1, which waits for the gate.
        let first = call(&coalescer);
        while reads.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // These arrive while read 1 runs: all served by read 2, none by read 1.
        let later: Vec<_> = (0..10).map(|_| call(&coalescer)).collect();
        while waiting(&coalescer) < 10 {
            tokio::task::yield_now().await;
        }
        open.send_replace(true);
        assert_eq!(first.await.unwrap(), 1);
        for l in later {
            assert_eq!(l.await.unwrap(), 2);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A later call reads afresh.
        assert_eq!(call(&coalescer).await.unwrap(), 3);
    }
}
