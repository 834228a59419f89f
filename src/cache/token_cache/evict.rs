//! Eviction: which entries go when the cache is full.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::map::{Slot, Table};
use super::{mono_now, Entry, Freshness};

/// Make room in one table: drop entries with no usable token and no fetch in flight, then
/// entries unused since the last sweep (clearing the flag of the rest, a clock-style second
/// chance), then idle ones arbitrarily, until fewer than `max` remain (when enough are idle).
pub(super) fn evict(table: &mut Table, max: usize) {
    let now = mono_now();
    let idle = |e: &Arc<Entry>| {
        let in_flight = e.flight.lock().map(|f| f.is_some()).unwrap_or(true);
        // Two references: the published table and the copy being edited. More means a handle
        // is held somewhere.
        !in_flight && Arc::strong_count(e) <= 2
    };
    table.retain(|Slot { entry: e, .. }| {
        let dead = e
            .current
            .load()
            .as_ref()
            .is_none_or(|c| c.state(now) == Freshness::Expired);
        !(dead && idle(e))
    });
    if table.len() < max {
        return;
    }
    table.retain(|Slot { entry: e, .. }| e.used.swap(false, Ordering::Relaxed) || !idle(e));
    if table.len() >= max {
        // Everything was used recently or is held: drop idle ones arbitrarily down to size.
        let mut excess = table.len() + 1 - max;
        table.retain(|Slot { entry: e, .. }| {
            if excess > 0 && idle(e) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}
