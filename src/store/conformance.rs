//! Behaviour every [`TokenStore`] must have, as functions a test suite calls
//! with its own store: load, round trip, compare-and-swap, remove, the lock, and the opaque
//! records. Each panics
//! when the store breaks the contract. The crate runs them against [`MemoryStore`]
//! and [`FileStore`]; a store of your own runs them the same way:
//!
//! ```no_run
//! # #[cfg(feature = "testkit")] {
//! use std::sync::Arc;
//! use agent_oauth::store::{conformance, MemoryStore};
//! conformance::run_all(|| Arc::new(MemoryStore::new()));
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::token::{AccessToken, Scope, TokenType};

pub const RT: &str = "rt-secret-0123456789";
pub const AT: &str = "at-secret-abcdefghij";

pub fn sample(rt: &str) -> StoredGrant {
    let issued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut access = TokenSet::new(AccessToken::new(AT), TokenType::Dpop, issued);
    access.expires_at = Some(issued + Duration::from_secs(3600));
    access.scope = Scope::parse("read write");
    access.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token".into());
    access
        .extra
        .insert("audience".into(), serde_json::json!(["https://api"]));
    let mut g = StoredGrant::new(Some(RefreshToken::new(rt)), Some(access));
    g.updated_at = issued + Duration::from_secs(5);
    g
}

fn written(o: StoreOutcome) -> u64 {
    match o {
        StoreOutcome::Written { version } => version,
        StoreOutcome::Conflict { .. } => panic!("unexpected conflict"),
    }
}

pub fn load_missing(s: &dyn TokenStore) {
    assert!(s.load("nope").unwrap().is_none());
}

pub fn round_trip(s: &dyn TokenStore) {
    let key = "https://issuer.example|client|agent \u{1F916}/../x";
    assert_eq!(written(s.store(key, &sample(RT), None).unwrap()), 1);
    let got = s.load(key).unwrap().unwrap();
    assert_eq!(got.version, 1);
    let g = got.value;
    assert_eq!(g.refresh_token.unwrap().secret(), RT);
    assert_eq!(
        g.updated_at,
        UNIX_EPOCH + Duration::from_secs(1_700_000_005)
    );
    let a = g.access.unwrap();
    assert_eq!(a.access_token.secret(), AT);
    assert_eq!(a.token_type, TokenType::Dpop);
    assert_eq!(a.issued_at, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    assert_eq!(
        a.expires_at,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600))
    );
    assert_eq!(a.scope, Scope::parse("write read"));
    assert_eq!(
        a.issued_token_type.as_deref(),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(a.extra["audience"], serde_json::json!(["https://api"]));
    // Other keys are independent.
    assert!(s.load("other").unwrap().is_none());
    // A grant with neither token round-trips too.
    let empty = StoredGrant::new(None, None);
    assert_eq!(written(s.store("empty", &empty, None).unwrap()), 1);
    let e = s.load("empty").unwrap().unwrap().value;
    assert!(e.refresh_token.is_none() && e.access.is_none());
}

pub fn cas(s: &dyn TokenStore) {
    assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
    assert_eq!(written(s.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
    assert_eq!(written(s.store("k", &sample("rt-3"), Some(2)).unwrap()), 3);
    // Stale version: conflict with the current value, nothing written.
    for expected in [Some(2), None, Some(4)] {
        match s.store("k", &sample("rt-stale"), expected).unwrap() {
            StoreOutcome::Conflict { current: Some(c) } => {
                assert_eq!(c.version, 3);
                assert_eq!(c.value.refresh_token.unwrap().secret(), "rt-3");
            }
            other => panic!("expected conflict, got {other:?}"),
        }
    }
    // Expecting a version of a key that does not exist.
    let o = s.store("absent", &sample("rt"), Some(1)).unwrap();
    assert!(matches!(o, StoreOutcome::Conflict { current: None }));
    assert!(s.load("absent").unwrap().is_none());
    let v = s.load("k").unwrap().unwrap();
    assert_eq!(v.version, 3);
    assert_eq!(v.value.refresh_token.unwrap().secret(), "rt-3");
}

pub fn remove(s: &dyn TokenStore) {
    // Unconditional remove of nothing is fine.
    assert!(s.remove("k", None).unwrap().written().is_some());
    assert!(s.remove("k", Some(1)).unwrap().is_conflict());

    assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
    assert_eq!(written(s.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
    // Wrong version: conflict, value kept.
    match s.remove("k", Some(1)).unwrap() {
        StoreOutcome::Conflict { current: Some(c) } => assert_eq!(c.version, 2),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(written(s.remove("k", Some(2)).unwrap()), 3);
    assert!(s.load("k").unwrap().is_none());
    assert!(s.remove("k", Some(3)).unwrap().is_conflict());
    // Written again: versions go on, never reused.
    assert_eq!(written(s.store("k", &sample("rt-4"), None).unwrap()), 4);
    assert_eq!(s.load("k").unwrap().unwrap().version, 4);
    // Unconditional remove.
    assert_eq!(written(s.remove("k", None).unwrap()), 5);
    assert!(s.load("k").unwrap().is_none());
    assert_eq!(written(s.remove("k", None).unwrap()), 5);
}

/// Two threads contend on one key: the second gets the lock only after the first guard drops.
pub fn lock_excludes<S: TokenStore>(s: Arc<S>) {
    let step = Arc::new(AtomicUsize::new(0));
    let first = s.lock("k").unwrap();
    let t = {
        let (s, step) = (Arc::clone(&s), Arc::clone(&step));
        std::thread::spawn(move || {
            step.store(1, Ordering::SeqCst);
            let _g = s.lock("k").unwrap();
            // The main thread set 2 just before dropping its guard.
            assert_eq!(step.load(Ordering::SeqCst), 2);
            step.store(3, Ordering::SeqCst);
        })
    };
    while step.load(Ordering::SeqCst) != 1 {
        std::thread::yield_now();
    }
    // Give the thread a chance to run into the lock; correctness does not depend on it.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(step.load(Ordering::SeqCst), 1);
    step.store(2, Ordering::SeqCst);
    drop(first);
    t.join().unwrap();
    assert_eq!(step.load(Ordering::SeqCst), 3);
}

/// Locks on different keys are independent.
pub fn lock_other_key<S: TokenStore>(s: Arc<S>) {
    let _a = s.lock("a").unwrap();
    let s2 = Arc::clone(&s);
    std::thread::spawn(move || drop(s2.lock("b").unwrap()))
        .join()
        .unwrap();
}

/// `store`/`remove` while holding `lock` on the same key, from this thread and another.
pub fn store_under_lock<S: TokenStore>(s: Arc<S>) {
    let g = s.lock("k").unwrap();
    assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
    let s2 = Arc::clone(&s);
    std::thread::spawn(move || {
        assert_eq!(written(s2.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
    })
    .join()
    .unwrap();
    assert_eq!(written(s.remove("k", Some(2)).unwrap()), 3);
    drop(g);
    // And the lock is free again.
    drop(s.lock("k").unwrap());
}

/// Many threads rotating under the lock never conflict and never lose an update.
pub fn lock_serializes_rotation<S: TokenStore>(s: Arc<S>) {
    const THREADS: usize = 4;
    const ROUNDS: usize = 25;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..ROUNDS {
                    let _g = s.lock("k").unwrap();
                    let cur = s.load("k").unwrap();
                    let next = sample(&format!("rt-{t}-{i}"));
                    let o = s.store("k", &next, cur.map(|c| c.version)).unwrap();
                    assert!(!o.is_conflict(), "conflict under lock");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let v = s.load("k").unwrap().unwrap();
    assert_eq!(v.version, (THREADS * ROUNDS) as u64);
}

/// Records: stored, replaced, removed, independent of other keys and of a grant with the same
/// key, any bytes under any key. A store that does not keep records (`store_record` returns
/// false) must then hold none.
pub fn records_round_trip(s: &dyn TokenStore) {
    let key = "registration:https://issuer.example/a\0agent \u{1F916}/../x";
    assert!(s.load_record(key).unwrap().is_none());
    let value: Vec<u8> = (0..=255u8).chain(*b"{\"v\":1}").collect();
    if !s.store_record(key, Some(&value)).unwrap() {
        assert!(
            s.load_record(key).unwrap().is_none(),
            "a store that does not persist records must not return one"
        );
        return;
    }
    assert_eq!(s.load_record(key).unwrap().as_deref(), Some(&value[..]));
    // Replaced, last writer wins.
    assert!(s.store_record(key, Some(b"second")).unwrap());
    assert_eq!(s.load_record(key).unwrap().as_deref(), Some(&b"second"[..]));
    // Other keys, and a grant under the same key, are independent.
    assert!(s.load_record("other").unwrap().is_none());
    assert!(s.store_record("other", Some(b"")).unwrap());
    assert_eq!(s.load_record("other").unwrap().as_deref(), Some(&b""[..]));
    assert!(s.load(key).unwrap().is_none());
    assert_eq!(written(s.store(key, &sample(RT), None).unwrap()), 1);
    assert_eq!(s.load_record(key).unwrap().as_deref(), Some(&b"second"[..]));
    // Removed; removing again is fine; the grant stays.
    assert!(s.store_record(key, None).unwrap());
    assert!(s.load_record(key).unwrap().is_none());
    assert!(s.store_record(key, None).unwrap());
    assert!(s.store_record("never-written", None).unwrap());
    assert_eq!(s.load(key).unwrap().unwrap().version, 1);
    assert_eq!(s.load_record("other").unwrap().as_deref(), Some(&b""[..]));
}

/// Run every check, each against a fresh store from `make`.
pub fn run_all<S: TokenStore>(make: impl Fn() -> Arc<S>) {
    load_missing(&*make());
    round_trip(&*make());
    cas(&*make());
    remove(&*make());
    lock_excludes(make());
    lock_other_key(make());
    store_under_lock(make());
    lock_serializes_rotation(make());
    records_round_trip(&*make());
}
