//! Eviction: which entries go when the cache is full.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{mono_now, Entry, Freshness};
use crate::cache::key::TokenKey;

/// Make room: drop entries with no usable token and no fetch in flight, then entries unused
/// since the last sweep (clearing the flag of the rest, a clock-style second chance).
pub(super) fn evict(map: &mut HashMap<TokenKey, Arc<Entry>>, max: usize) {
    let now = mono_now();
    let idle = |e: &Arc<Entry>| {
        let in_flight = e.flight.lock().map(|f| f.is_some()).unwrap_or(true);
        // Two references: the published map and the copy being edited. More means a handle
        // is held somewhere.
        !in_flight && Arc::strong_count(e) <= 2
    };
    map.retain(|_, e| {
        let dead = e
            .current
            .load()
            .as_ref()
            .is_none_or(|c| c.state(now) == Freshness::Expired);
        !(dead && idle(e))
    });
    if map.len() < max {
        return;
    }
    map.retain(|_, e| e.used.swap(false, Ordering::Relaxed) || !idle(e));
    if map.len() >= max {
        // Everything was used recently or is held: drop idle ones arbitrarily down to size.
        let excess = map.len() + 1 - max;
        let victims: Vec<TokenKey> = map
            .iter()
            .filter(|(_, e)| idle(e))
            .take(excess)
            .map(|(k, _)| k.clone())
            .collect();
        for k in victims {
            map.remove(&k);
        }
    }
}
