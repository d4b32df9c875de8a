//! `last_used_at` without a database write per request: uses are recorded in memory and
//! flushed off the request path, in batches, at most once per interval (a minute) per key.
//!
//! A key's first use in this process is written at once (so `last_used_at` leaves null
//! promptly); later uses wait until the interval since that key's last write has passed. The
//! flusher sleeps until the earliest such moment, so a use reaches the database within the
//! interval: the value is at most a minute stale, and each replica writes each key at most
//! once a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::tx::in_transaction;
use super::{Result, Store};
use crate::domain::KeyId;

/// How long a key's use may wait in memory, and the least time between two writes of it.
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Uses recorded since the last flush, per key.
pub(super) struct KeyUsage {
    entries: Mutex<HashMap<KeyId, Entry>>,
    interval_ms: AtomicU64,
    /// Written rows so far (tests and diagnostics).
    writes: AtomicU64,
    /// Wakes the flusher when a key is used for the first time.
    wake: tokio::sync::Notify,
    flusher: OnceLock<()>,
}

struct Entry {
    /// Latest use (store clock, Unix seconds).
    seen: i64,
    /// The value last written, and when.
    written: Option<(i64, Instant)>,
}

impl Entry {
    fn pending(&self) -> bool {
        self.written.is_none_or(|(value, _)| self.seen > value)
    }

    /// When this entry may be written next: `None` for at once (never written yet).
    fn due(&self, interval: Duration) -> Option<Instant> {
        self.written.map(|(_, at)| at + interval)
    }
}

impl KeyUsage {
    pub(super) fn new() -> Self {
        KeyUsage {
            entries: Mutex::new(HashMap::new()),
            interval_ms: AtomicU64::new(
                u64::try_from(DEFAULT_INTERVAL.as_millis()).unwrap_or(u64::MAX),
            ),
            writes: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            flusher: OnceLock::new(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a use; true when the flusher should look now (the key's first use here).
    fn record(&self, key: &KeyId, now: i64) -> bool {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.seen = entry.seen.max(now);
            return false;
        }
        entries.insert(
            key.clone(),
            Entry {
                seen: now,
                written: None,
            },
        );
        true
    }

    /// The pending uses that are due now, and when the next one falls due.
    fn take_due(&self) -> (Vec<(KeyId, i64)>, Option<Instant>) {
        let interval = self.interval();
        let now = Instant::now();
        let mut entries = self.lock();
        // Forget keys idle for a few intervals, so deleted or unused keys do not pile up.
        entries
            .retain(|_, e| e.pending() || e.written.is_some_and(|(_, at)| now - at < interval * 4));
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (key, entry) in entries.iter() {
            if !entry.pending() {
                continue;
            }
            match entry.due(interval) {
                Some(when) if when > now => next = Some(next.map_or(when, |n| n.min(when))),
                _ => due.push((key.clone(), entry.seen)),
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        (due, next)
    }

    fn mark_written(&self, written: &[(KeyId, i64)]) {
        let at = Instant::now();
        let mut entries = self.lock();
        for (key, value) in written {
            if let Some(entry) = entries.get_mut(key) {
                entry.written = Some((*value, at));
            }
        }
        self.writes
            .fetch_add(written.len() as u64, Ordering::Relaxed);
    }
}

impl Store {
    /// Records a use of `key` for `last_used_at`; never waits for the database.
    pub(super) fn record_key_use(&self, key: &KeyId, now: i64) {
        let first = self.usage.record(key, now);
        self.usage.flusher.get_or_init(|| {
            let store = self.clone();
            tokio::spawn(async move { store.flush_loop().await });
        });
        if first {
            self.usage.wake.notify_one();
        }
    }

    /// Writes every recorded use that is due, in one transaction.
    async fn flush_due(&self) -> Result<Option<Instant>> {
        let (due, next) = self.usage.take_due();
        if due.is_empty() {
            return Ok(next);
        }
        self.write_uses(&due).await?;
        let interval = self.usage.interval();
        let after = Instant::now() + interval;
        Ok(Some(next.map_or(after, |n| n.min(after))))
    }

    /// One transaction for the batch, keys in id order (a fixed order of row locks across
    /// replicas, so two flushes cannot deadlock). No organization lock and no audit event:
    /// recording a use changes nothing anyone configured.
    async fn write_uses(&self, uses: &[(KeyId, i64)]) -> Result<()> {
        in_transaction!(self, |tx| {
            for (key, seen) in uses {
                // Never moves backwards (another replica may have written a later use).
                sqlx::query(
                    "UPDATE admin_keys SET last_used_at = $1
                     WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
                )
                .bind(*seen)
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })?;
        self.usage.mark_written(uses);
        Ok(())
    }

    async fn flush_loop(self) {
        loop {
            if self.pool.is_closed() {
                return;
            }
            let next = match self.flush_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::ErrorChain(&e), "recording admin key use failed; will retry");
                    Some(Instant::now() + Duration::from_secs(1))
                }
            };
            // Sleeps until the next use falls due, or a key is used for the first time; a
            // bounded sleep also notices a closed pool.
            let cap = Instant::now() + Duration::from_secs(5);
            let until = next.map_or(cap, |n| n.min(cap));
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = self.usage.wake.notified() => {}
            }
        }
    }

    /// Writes every recorded use now, due or not: for a clean shutdown.
    pub async fn flush_key_usage(&self) -> Result<()> {
        let all: Vec<(KeyId, i64)> = {
            let entries = self.usage.lock();
            let mut all: Vec<_> = entries
                .iter()
                .filter(|(_, e)| e.pending())
                .map(|(k, e)| (k.clone(), e.seen))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        if all.is_empty() {
            return Ok(());
        }
        self.write_uses(&all).await
    }

    /// Changes how long uses wait in memory (default a minute); for tests.
    pub fn set_key_usage_interval(&self, interval: Duration) {
        self.usage.interval_ms.store(
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// How many `last_used_at` rows this process has written.
    pub fn key_usage_writes(&self) -> u64 {
        self.usage.writes.load(Ordering::Relaxed)
    }
}
