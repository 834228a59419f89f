//! [`MemoryStore`]: grants in process memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{
    async_trait, next_version, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned,
};
use crate::error::Result;

/// One key of a [`MemoryStore`]: its last version and value (`None` once removed, so the
/// version count goes on).
#[derive(Debug)]
struct Entry {
    version: u64,
    value: Option<StoredGrant>,
}

impl Entry {
    fn current(&self) -> Option<Versioned<StoredGrant>> {
        self.value.as_ref().map(|value| Versioned {
            value: value.clone(),
            version: self.version,
        })
    }
}

/// A [`TokenStore`] in memory: nothing survives the process, and only this process shares it.
///
/// [`lock`](TokenStore::lock) excludes other tasks locking the same key, as a lease: renewed
/// while its guard lives, released when it drops, and free again once it has run out when its
/// holder stops renewing without releasing. Records
/// ([`store_record`](TokenStore::store_record)) are kept too, zeroized when replaced or removed.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    records: Mutex<HashMap<String, Zeroizing<Vec<u8>>>>,
    locks: Arc<LeaseLocks>,
}

/// In-process leased locks by name: the holder's token and the lease's end, and a
/// notification when a lock is released.
#[derive(Debug, Default)]
pub(crate) struct LeaseLocks {
    held: Mutex<HashMap<String, (u64, Instant)>>,
    released: Notify,
    next: std::sync::atomic::AtomicU64,
}

impl LeaseLocks {
    /// Wait until `name` is free or its lease has run out, then hold it for `lease`, renewed
    /// while the returned lock lives.
    pub(crate) async fn acquire(self: &Arc<Self>, name: &str, lease: Duration) -> StoreLock {
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut held = crate::sync::lock(&self.held);
                let now = Instant::now();
                match held.get(name) {
                    Some((_, until)) if *until > now => *until - now,
                    _ => {
                        held.insert(name.to_owned(), (token, now + lease));
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(wait, notified).await;
        }
        let (lock, keeper) = StoreLock::leased(LeaseGuard {
            locks: self.clone(),
            name: name.to_owned(),
            token,
        });
        let (locks, name) = (self.clone(), name.to_owned());
        tokio::spawn(keeper.keep(lease, move || {
            let ours = locks.renew(&name, token, lease);
            async move { Ok(ours) }
        }));
        lock
    }

    fn renew(&self, name: &str, token: u64, lease: Duration) -> bool {
        let mut held = crate::sync::lock(&self.held);
        match held.get_mut(name) {
            Some((t, until)) if *t == token && *until > Instant::now() => {
                *until = Instant::now() + lease;
                true
            }
            _ => false,
        }
    }
}

/// Releases one [`LeaseLocks`] name when dropped, if still its holder.
struct LeaseGuard {
    locks: Arc<LeaseLocks>,
    name: String,
    token: u64,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut held = crate::sync::lock(&self.locks.held);
        if held.get(&self.name).is_some_and(|(t, _)| *t == self.token) {
            held.remove(&self.name);
        }
        drop(held);
        self.locks.released.notify_waiters();
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys that hold a value, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries()
            .iter()
            .filter(|(_, e)| e.value.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update below is a single assignment: a panic cannot leave an entry half-written.
        crate::sync::lock(&self.entries)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self
            .entries()
            .values()
            .filter(|e| e.value.is_some())
            .count();
        let records = crate::sync::lock(&self.records).len();
        f.debug_struct("MemoryStore")
            .field("keys", &live)
            .field("records", &records)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        Ok(self.entries().get(key).and_then(Entry::current))
    }

    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        let mut entries = self.entries();
        let (last, live) = entries
            .get(key)
            .map_or((0, false), |e| (e.version, e.value.is_some()));
        let Some(version) = next_version(last, live, expected)? else {
            return Ok(StoreOutcome::Conflict {
                current: entries.get(key).and_then(Entry::current),
            });
        };
        entries.insert(
            key.to_owned(),
            Entry {
                version,
                value: Some(value.clone()),
            },
        );
        Ok(StoreOutcome::Written { version })
    }

    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(key) else {
            return Ok(match expected {
                None => StoreOutcome::Written { version: 0 },
                Some(_) => StoreOutcome::Conflict { current: None },
            });
        };
        let live = entry.value.is_some();
        if !live && expected.is_none() {
            return Ok(StoreOutcome::Written {
                version: entry.version,
            });
        }
        let expected = expected.or(Some(entry.version));
        let Some(version) = next_version(entry.version, live, expected)? else {
            return Ok(StoreOutcome::Conflict {
                current: entry.current(),
            });
        };
        *entry = Entry {
            version,
            value: None,
        };
        Ok(StoreOutcome::Written { version })
    }

    async fn lock(&self, key: &str, lease: Duration) -> Result<StoreLock> {
        Ok(self.locks.acquire(key, lease).await)
    }

    async fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(crate::sync::lock(&self.records)
            .get(key)
            .map(|v| v.to_vec()))
    }

    async fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let mut records = crate::sync::lock(&self.records);
        match value {
            Some(v) => {
                records.insert(key.to_owned(), Zeroizing::new(v.to_vec()));
            }
            None => {
                records.remove(key);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn store_memory_records_round_trip() {
        let s = MemoryStore::new();
        super::super::conformance::records_round_trip(&s).await;
        let s = MemoryStore::new();
        assert!(
            s.store_record("k", Some(b"record-secret")).await.unwrap(),
            "persisted"
        );
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("records: 1") && !dbg.contains("record-secret"),
            "{dbg}"
        );
    }
}
