//! The key → entry map: copy-on-write hash tables, sharded once the cache may grow large.
//!
//! A lookup loads a shard's table (no lock) and probes it with the key's hash, computed once.
//! An insert copies the table of one shard only, and a table holds `(hash, Arc<Entry>)` slots
//! (the key lives in its entry), so a copy costs a reference-count increment per slot: filling
//! a cache of 100,000 keys copies about 1,500 slots per insert instead of every key.
//!
//! A cache of at most [`ONE_SHARD_UP_TO`] entries has one shard: eviction then sees every
//! entry at once, as it always has. A larger one has [`SHARDS`]; an insert evicts in its own
//! shard first, then, if the cache is still over its bound, in the others (one shard locked at
//! a time, so two inserts can never wait on each other).

use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::HashTable;

use super::evict::evict;
use super::Entry;
use crate::cache::key::TokenKey;

/// Caches bounded at this many entries or fewer have a single shard.
const ONE_SHARD_UP_TO: usize = 4096;
/// Shards of a larger cache (a power of two).
const SHARDS: usize = 64;

/// One entry of a table: the entry with its key's hash (so a copy never rehashes).
#[derive(Clone)]
pub(super) struct Slot {
    pub(super) hash: u64,
    pub(super) entry: Arc<Entry>,
}

pub(super) type Table = HashTable<Slot>;

struct Shard {
    table: ArcSwap<Table>,
    write: Mutex<()>,
}

pub(super) struct Shards {
    hasher: std::hash::RandomState,
    shards: Box<[Shard]>,
}

impl Shards {
    /// Shards for a cache bounded at `max_entries`.
    pub(super) fn new(max_entries: usize) -> Self {
        let n = if max_entries <= ONE_SHARD_UP_TO {
            1
        } else {
            SHARDS
        };
        Shards {
            hasher: std::hash::RandomState::new(),
            shards: (0..n)
                .map(|_| Shard {
                    table: ArcSwap::from_pointee(Table::new()),
                    write: Mutex::new(()),
                })
                .collect(),
        }
    }

    fn hash(&self, key: &TokenKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> usize {
        // The table uses the low bits of the hash; the shard takes the high ones. The count is
        // a power of two, so the mask keeps the index in range.
        ((hash >> 48) as usize) & (self.shards.len() - 1)
    }

    /// The entry for `key`, if any.
    pub(super) fn get(&self, key: &TokenKey) -> Option<Arc<Entry>> {
        let hash = self.hash(key);
        let table = self.shards[self.shard(hash)].table.load();
        find(&table, hash, key).cloned()
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.load().len()).sum()
    }

    /// Every entry whose key matches `pred`.
    pub(super) fn matching(&self, mut pred: impl FnMut(&TokenKey) -> bool) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(
                shard
                    .table
                    .load()
                    .iter()
                    .filter(|s| pred(&s.entry.key))
                    .map(|s| s.entry.clone()),
            );
        }
        out
    }

    /// The entry for `key`, made by `make` if there is none; evicts down to `max` entries first.
    pub(super) fn get_or_insert(
        &self,
        key: &TokenKey,
        max: usize,
        make: impl FnOnce() -> Arc<Entry>,
    ) -> Arc<Entry> {
        let hash = self.hash(key);
        let at = self.shard(hash);
        let shard = &self.shards[at];
        if let Some(e) = find(&shard.table.load(), hash, key) {
            return e.clone();
        }
        let entry = {
            let _w = crate::sync::lock(&shard.write);
            let table = shard.table.load_full();
            if let Some(e) = find(&table, hash, key) {
                return e.clone();
            }
            let mut next: Table = (*table).clone();
            let total = self.len();
            if total >= max {
                // Room for one: `total + 1 - max` entries must go, from this shard if it can.
                let bound = room(next.len(), total + 1 - max);
                evict(&mut next, bound);
            }
            let entry = make();
            next.insert_unique(
                hash,
                Slot {
                    hash,
                    entry: entry.clone(),
                },
                |s| s.hash,
            );
            shard.table.store(Arc::new(next));
            entry
        };
        // Still over (this shard had too little to give): take the rest from the others.
        for i in (1..self.shards.len()).map(|d| (at + d) % self.shards.len()) {
            let total = self.len();
            if total <= max {
                break;
            }
            self.edit(i, |t| {
                let bound = room(t.len(), total - max);
                evict(t, bound);
            });
        }
        entry
    }

    /// Remove `key`'s entry.
    pub(super) fn remove(&self, key: &TokenKey) {
        let hash = self.hash(key);
        let shard = &self.shards[self.shard(hash)];
        if find(&shard.table.load(), hash, key).is_none() {
            return;
        }
        self.edit(self.shard(hash), |t| {
            if let Ok(found) = t.find_entry(hash, |s| s.entry.key == *key) {
                found.remove();
            }
        });
    }

    /// Keep only the entries whose key matches `pred`.
    pub(super) fn retain(&self, mut pred: impl FnMut(&TokenKey) -> bool) {
        for i in 0..self.shards.len() {
            self.edit(i, |t| t.retain(|s| pred(&s.entry.key)));
        }
    }

    /// Replace shard `i`'s table by an edited copy (under the shard's write lock).
    fn edit(&self, i: usize, f: impl FnOnce(&mut Table)) {
        let shard = &self.shards[i];
        let _w = crate::sync::lock(&shard.write);
        let mut next: Table = (*shard.table.load_full()).clone();
        let before = next.len();
        f(&mut next);
        if next.len() != before {
            shard.table.store(Arc::new(next));
        }
    }
}

fn find<'a>(table: &'a Table, hash: u64, key: &TokenKey) -> Option<&'a Arc<Entry>> {
    table.find(hash, |s| s.entry.key == *key).map(|s| &s.entry)
}

/// The bound [`evict`] needs for a table of `len` entries to lose `excess` of them (it stops
/// once fewer than the bound remain).
fn room(len: usize, excess: usize) -> usize {
    len + 1 - excess.min(len)
}
