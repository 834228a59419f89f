//! [`MemoryStore`]: grants in process memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::{next_version, KeyLocks, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
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
/// [`lock`](TokenStore::lock) excludes other threads locking the same key. Records
/// ([`store_record`](TokenStore::store_record)) are kept too, zeroized when replaced or removed.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    records: Mutex<HashMap<String, Zeroizing<Vec<u8>>>>,
    locks: Arc<KeyLocks>,
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

impl TokenStore for MemoryStore {
    fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        Ok(self.entries().get(key).and_then(Entry::current))
    }

    fn store(&self, key: &str, value: &StoredGrant, expected: Option<u64>) -> Result<StoreOutcome> {
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

    fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
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

    fn lock(&self, key: &str) -> Result<StoreLock> {
        Ok(StoreLock::new(self.locks.acquire(key)))
    }

    fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(crate::sync::lock(&self.records)
            .get(key)
            .map(|v| v.to_vec()))
    }

    fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
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

    #[test]
    fn store_memory_records_round_trip() {
        let s = MemoryStore::new();
        super::super::conformance::records_round_trip(&s);
        let s = MemoryStore::new();
        assert!(
            s.store_record("k", Some(b"record-secret")).unwrap(),
            "persisted"
        );
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("records: 1") && !dbg.contains("record-secret"),
            "{dbg}"
        );
    }
}
