//! Behaviour every [`TokenStore`] must have, as functions a test suite calls
//! with its own store: load, round trip, compare-and-swap, remove, the lock, and the opaque
//! records. Each panics
//! when the store breaks the contract. The crate runs them against [`MemoryStore`]
//! and [`FileStore`]; a store of your own runs them the same way:
//!
//! ```no_run
//! # #[cfg(feature = "testkit")]
//! # async fn run() {
//! use std::sync::Arc;
//! use agent_oauth::store::{conformance, MemoryStore};
//! conformance::run_all(|| Arc::new(MemoryStore::new()), conformance::LeaseKind::Timed).await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
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

pub async fn load_missing(s: &dyn TokenStore) {
    assert!(s.load("nope").await.unwrap().is_none());
}

pub async fn round_trip(s: &dyn TokenStore) {
    let key = "https://issuer.example|client|agent \u{1F916}/../x";
    assert_eq!(written(s.store(key, &sample(RT), None).await.unwrap()), 1);
    let got = s.load(key).await.unwrap().unwrap();
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
    assert!(s.load("other").await.unwrap().is_none());
    // A grant with neither token round-trips too.
    let empty = StoredGrant::new(None, None);
    assert_eq!(written(s.store("empty", &empty, None).await.unwrap()), 1);
    let e = s.load("empty").await.unwrap().unwrap().value;
    assert!(e.refresh_token.is_none() && e.access.is_none());
}

pub async fn cas(s: &dyn TokenStore) {
    assert_eq!(
        written(s.store("k", &sample("rt-1"), None).await.unwrap()),
        1
    );
    assert_eq!(
        written(s.store("k", &sample("rt-2"), Some(1)).await.unwrap()),
        2
    );
    assert_eq!(
        written(s.store("k", &sample("rt-3"), Some(2)).await.unwrap()),
        3
    );
    // Stale version: conflict with the current value, nothing written.
    for expected in [Some(2), None, Some(4)] {
        match s.store("k", &sample("rt-stale"), expected).await.unwrap() {
            StoreOutcome::Conflict { current: Some(c) } => {
                assert_eq!(c.version, 3);
                assert_eq!(c.value.refresh_token.unwrap().secret(), "rt-3");
            }
            other => panic!("expected conflict, got {other:?}"),
        }
    }
    // Expecting a version of a key that does not exist.
    let o = s.store("absent", &sample("rt"), Some(1)).await.unwrap();
    assert!(matches!(o, StoreOutcome::Conflict { current: None }));
    assert!(s.load("absent").await.unwrap().is_none());
    let v = s.load("k").await.unwrap().unwrap();
    assert_eq!(v.version, 3);
    assert_eq!(v.value.refresh_token.unwrap().secret(), "rt-3");
}

pub async fn remove(s: &dyn TokenStore) {
    // Unconditional remove of nothing is fine.
    assert!(s.remove("k", None).await.unwrap().written().is_some());
    assert!(s.remove("k", Some(1)).await.unwrap().is_conflict());

    assert_eq!(
        written(s.store("k", &sample("rt-1"), None).await.unwrap()),
        1
    );
    assert_eq!(
        written(s.store("k", &sample("rt-2"), Some(1)).await.unwrap()),
        2
    );
    // Wrong version: conflict, value kept.
    match s.remove("k", Some(1)).await.unwrap() {
        StoreOutcome::Conflict { current: Some(c) } => assert_eq!(c.version, 2),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(written(s.remove("k", Some(2)).await.unwrap()), 3);
    assert!(s.load("k").await.unwrap().is_none());
    assert!(s.remove("k", Some(3)).await.unwrap().is_conflict());
    // Written again: versions go on, never reused.
    assert_eq!(
        written(s.store("k", &sample("rt-4"), None).await.unwrap()),
        4
    );
    assert_eq!(s.load("k").await.unwrap().unwrap().version, 4);
    // Unconditional remove.
    assert_eq!(written(s.remove("k", None).await.unwrap()), 5);
    assert!(s.load("k").await.unwrap().is_none());
    assert_eq!(written(s.remove("k", None).await.unwrap()), 5);
}

/// A lease long enough never to run out in these checks.
const LONG: Duration = Duration::from_secs(30);

/// Two tasks contend on one key: the second gets the lock only after the first guard drops.
pub async fn lock_excludes(s: Arc<dyn TokenStore>) {
    let step = Arc::new(AtomicUsize::new(0));
    let first = s.lock("k", LONG).await.unwrap();
    let t = {
        let (s, step) = (Arc::clone(&s), Arc::clone(&step));
        tokio::spawn(async move {
            step.store(1, Ordering::SeqCst);
            let _g = s.lock("k", LONG).await.unwrap();
            // The first holder set 2 just before dropping its guard.
            assert_eq!(step.load(Ordering::SeqCst), 2);
            step.store(3, Ordering::SeqCst);
        })
    };
    while step.load(Ordering::SeqCst) != 1 {
        tokio::task::yield_now().await;
    }
    // Give the task a chance to run into the lock; correctness does not depend on it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(step.load(Ordering::SeqCst), 1);
    step.store(2, Ordering::SeqCst);
    drop(first);
    t.await.unwrap();
    assert_eq!(step.load(Ordering::SeqCst), 3);
}

/// Locks on different keys are independent.
pub async fn lock_other_key(s: Arc<dyn TokenStore>) {
    let _a = s.lock("a", LONG).await.unwrap();
    let s2 = Arc::clone(&s);
    tokio::time::timeout(Duration::from_secs(5), async move {
        drop(s2.lock("b", LONG).await.unwrap())
    })
    .await
    .expect("another key's lock is free");
}

/// `store`/`remove` while holding `lock` on the same key, from this task and another.
pub async fn store_under_lock(s: Arc<dyn TokenStore>) {
    let g = s.lock("k", LONG).await.unwrap();
    assert_eq!(
        written(s.store("k", &sample("rt-1"), None).await.unwrap()),
        1
    );
    let s2 = Arc::clone(&s);
    tokio::spawn(async move {
        assert_eq!(
            written(s2.store("k", &sample("rt-2"), Some(1)).await.unwrap()),
            2
        );
    })
    .await
    .unwrap();
    assert_eq!(written(s.remove("k", Some(2)).await.unwrap()), 3);
    drop(g);
    // And the lock is free again.
    drop(s.lock("k", LONG).await.unwrap());
}

/// Many tasks rotating under the lock never conflict and never lose an update.
pub async fn lock_serializes_rotation(s: Arc<dyn TokenStore>) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 25;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                for i in 0..ROUNDS {
                    let _g = s.lock("k", LONG).await.unwrap();
                    let cur = s.load("k").await.unwrap();
                    let next = sample(&format!("rt-{t}-{i}"));
                    let o = s.store("k", &next, cur.map(|c| c.version)).await.unwrap();
                    assert!(!o.is_conflict(), "conflict under lock");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let v = s.load("k").await.unwrap().unwrap();
    assert_eq!(v.version, (TASKS * ROUNDS) as u64);
}

/// A holder that keeps working keeps its lock past its lease: the guard renews it.
pub async fn lease_renewed_while_held(s: Arc<dyn TokenStore>) {
    // Renewed every third of it: a loaded machine's late timer still renews in time.
    let lease = Duration::from_secs(1);
    let g = s.lock("k", lease).await.unwrap();
    let s2 = Arc::clone(&s);
    let other = tokio::time::timeout(lease * 2, async move { s2.lock("k", lease).await }).await;
    assert!(other.is_err(), "the renewed lease was taken over");
    assert!(g.is_held());
    drop(g);
    let again = tokio::time::timeout(Duration::from_secs(5), s.lock("k", lease)).await;
    assert!(again.expect("released on drop").is_ok());
}

/// For stores whose leases run out in time: a holder that dies (stops renewing without
/// releasing) loses the lock within its lease, and the version fences it: its write after a
/// newer holder's is refused.
pub async fn lease_expires_when_holder_dies(s: Arc<dyn TokenStore>) {
    let lease = Duration::from_millis(300);
    assert_eq!(
        written(s.store("k", &sample("rt-1"), None).await.unwrap()),
        1
    );
    // A holder reads version 1, then dies mid-refresh.
    let stale = s.lock("k", lease).await.unwrap();
    let read = s.load("k").await.unwrap().unwrap().version;
    let started = tokio::time::Instant::now();
    stale.abandon();
    let next = tokio::time::timeout(lease * 4, s.lock("k", lease))
        .await
        .expect("the dead holder's lease ran out")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited <= lease + Duration::from_secs(1),
        "taken over after {waited:?}"
    );
    let cur = s.load("k").await.unwrap().map(|c| c.version);
    assert_eq!(
        written(s.store("k", &sample("rt-2"), cur).await.unwrap()),
        2
    );
    drop(next);
    // The dead holder comes back with the version it read: fenced off.
    match s.store("k", &sample("rt-stale"), Some(read)).await.unwrap() {
        StoreOutcome::Conflict { current: Some(c) } => {
            assert_eq!(c.version, 2);
            assert_eq!(c.value.refresh_token.unwrap().secret(), "rt-2");
        }
        other => panic!("a fenced writer overwrote a newer grant: {other:?}"),
    }
}

/// Records: stored, replaced, removed, independent of other keys and of a grant with the same
/// key, any bytes under any key. A store that does not keep records (`store_record` returns
/// false) must then hold none.
pub async fn records_round_trip(s: &dyn TokenStore) {
    let key = "registration:https://issuer.example/a\0agent \u{1F916}/../x";
    assert!(s.load_record(key).await.unwrap().is_none());
    let value: Vec<u8> = (0..=255u8).chain(*b"{\"v\":1}").collect();
    if !s.store_record(key, Some(&value)).await.unwrap() {
        assert!(
            s.load_record(key).await.unwrap().is_none(),
            "a store that does not persist records must not return one"
        );
        return;
    }
    assert_eq!(
        s.load_record(key).await.unwrap().as_deref(),
        Some(&value[..])
    );
    // Replaced, last writer wins.
    assert!(s.store_record(key, Some(b"second")).await.unwrap());
    assert_eq!(
        s.load_record(key).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    // Other keys, and a grant under the same key, are independent.
    assert!(s.load_record("other").await.unwrap().is_none());
    assert!(s.store_record("other", Some(b"")).await.unwrap());
    assert_eq!(
        s.load_record("other").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert!(s.load(key).await.unwrap().is_none());
    assert_eq!(written(s.store(key, &sample(RT), None).await.unwrap()), 1);
    assert_eq!(
        s.load_record(key).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    // Removed; removing again is fine; the grant stays.
    assert!(s.store_record(key, None).await.unwrap());
    assert!(s.load_record(key).await.unwrap().is_none());
    assert!(s.store_record(key, None).await.unwrap());
    assert!(s.store_record("never-written", None).await.unwrap());
    assert_eq!(s.load(key).await.unwrap().unwrap().version, 1);
    assert_eq!(
        s.load_record("other").await.unwrap().as_deref(),
        Some(&b""[..])
    );
}

/// How a store's locks end when their holder dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// The lease runs out in time ([`MemoryStore`], network stores).
    Timed,
    /// The lock ends with its holder's process ([`FileStore`]: OS locks).
    Process,
}

/// Run every check, each against a fresh store from `make`.
pub async fn run_all<S: TokenStore>(make: impl Fn() -> Arc<S>, leases: LeaseKind) {
    let dynamic = || make() as Arc<dyn TokenStore>;
    load_missing(&*make()).await;
    round_trip(&*make()).await;
    cas(&*make()).await;
    remove(&*make()).await;
    lock_excludes(dynamic()).await;
    lock_other_key(dynamic()).await;
    store_under_lock(dynamic()).await;
    lock_serializes_rotation(dynamic()).await;
    lease_renewed_while_held(dynamic()).await;
    if leases == LeaseKind::Timed {
        lease_expires_when_holder_dies(dynamic()).await;
    }
    records_round_trip(&*make()).await;
}
