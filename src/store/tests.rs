//! The store conformance checks against [`MemoryStore`], and its own behaviour.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::conformance as c;
use super::*;

#[test]
fn store_memory_load_missing() {
    c::load_missing(&MemoryStore::new());
}

#[test]
fn store_memory_round_trip() {
    c::round_trip(&MemoryStore::new());
}

#[test]
fn store_memory_cas_conflict_returns_current() {
    c::cas(&MemoryStore::new());
}

#[test]
fn store_memory_remove() {
    c::remove(&MemoryStore::new());
}

#[test]
fn store_memory_lock_excludes_other_thread() {
    c::lock_excludes(Arc::new(MemoryStore::new()));
}

#[test]
fn store_memory_lock_other_key_does_not_block() {
    c::lock_other_key(Arc::new(MemoryStore::new()));
}

#[test]
fn store_memory_store_while_locked_does_not_deadlock() {
    c::store_under_lock(Arc::new(MemoryStore::new()));
}

#[test]
fn store_memory_lock_serializes_rotation() {
    c::lock_serializes_rotation(Arc::new(MemoryStore::new()));
}

#[test]
fn store_memory_debug_has_no_token() {
    let s = MemoryStore::new();
    let _ = s.store("k", &c::sample(c::RT), None).unwrap();
    let dbg = format!("{s:?} {:?}", s.load("k").unwrap());
    assert!(!dbg.contains(c::RT) && !dbg.contains(c::AT), "{dbg}");
}

#[test]
fn store_lock_guard_is_send() {
    fn check<T: Send + 'static>() {}
    check::<StoreLock>();
    check::<MemoryStore>();
    let g = MemoryStore::new().lock("k").unwrap();
    assert_eq!(format!("{g:?}"), "StoreLock { .. }");
}
