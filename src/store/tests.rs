//! The store conformance checks against [`MemoryStore`], and its own behaviour.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::conformance as c;
use super::*;

fn memory() -> Arc<dyn TokenStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn store_memory_load_missing() {
    c::load_missing(&MemoryStore::new()).await;
}

#[tokio::test]
async fn store_memory_round_trip() {
    c::round_trip(&MemoryStore::new()).await;
}

#[tokio::test]
async fn store_memory_cas_conflict_returns_current() {
    c::cas(&MemoryStore::new()).await;
}

#[tokio::test]
async fn store_memory_remove() {
    c::remove(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_memory_lock_excludes_other_task() {
    c::lock_excludes(memory()).await;
}

#[tokio::test]
async fn store_memory_lock_other_key_does_not_block() {
    c::lock_other_key(memory()).await;
}

#[tokio::test]
async fn store_memory_store_while_locked_does_not_deadlock() {
    c::store_under_lock(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_memory_lock_serializes_rotation() {
    c::lock_serializes_rotation(memory()).await;
}

#[tokio::test]
async fn store_memory_lease_renewed_while_held() {
    c::lease_renewed_while_held(memory()).await;
}

#[tokio::test]
async fn store_memory_lease_expires_when_holder_dies_and_fences_it() {
    c::lease_expires_when_holder_dies(memory()).await;
}

#[tokio::test]
async fn store_memory_conformance_run_all() {
    c::run_all(|| Arc::new(MemoryStore::new()), c::LeaseKind::Timed).await;
}

#[tokio::test]
async fn store_memory_debug_has_no_token() {
    let s = MemoryStore::new();
    let _ = s.store("k", &c::sample(c::RT), None).await.unwrap();
    let dbg = format!("{s:?} {:?}", s.load("k").await.unwrap());
    assert!(!dbg.contains(c::RT) && !dbg.contains(c::AT), "{dbg}");
}

#[tokio::test]
async fn store_lock_guard_is_send() {
    fn check<T: Send + 'static>() {}
    check::<StoreLock>();
    check::<MemoryStore>();
    let g = MemoryStore::new()
        .lock("k", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(format!("{g:?}"), "StoreLock { .. }");
    assert!(g.is_held());
}
