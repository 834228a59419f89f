//! [`MemoryStore`]: grants in process memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

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
/// [`lock`](TokenStore::lock) excludes other threads locking the same key.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
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
        f.debug_struct("MemoryStore")
            .field("keys", &live)
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
}
