//! Unit tests of `token_cache`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::error::Error;
use crate::token::{AccessToken, TokenType};
use std::sync::atomic::AtomicUsize;

pub(super) fn token(name: &str, issued_ago: u64, remaining: u64) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(
        AccessToken::new(name),
        TokenType::Bearer,
        now - Duration::from_secs(issued_ago),
    );
    t.expires_at = Some(now + Duration::from_secs(remaining));
    t
}

pub(super) fn key(n: &str) -> TokenKey {
    TokenKey::new("https://as.example", n)
}

pub(super) fn no_jitter() -> CacheConfig {
    CacheConfig {
        jitter: 0.0,
        ..CacheConfig::default()
    }
}

/// A source that counts calls and waits `delay` before answering with a fresh token.
fn counting(calls: Arc<AtomicUsize>, delay: Duration) -> Arc<dyn TokenSource> {
    Arc::new(move |_cur: Option<TokenSet>| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(delay).await;
            Ok(token(&format!("t{n}"), 0, 3600))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stampede_10000_callers_one_request() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let h = cache.handle(&key("c"), || {
        counting(calls.clone(), Duration::from_millis(100))
    });
    let mut tasks = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.get()
                .await
                .map(|t| t.token().access_token.secret().to_owned())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "t1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.fetch_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_error_is_shared_not_retried_per_caller() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let h = cache.handle(&key("c"), move || {
        Arc::new(move |_cur: Option<TokenSet>| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<TokenSet, _>(Error::Http {
                    status: 503,
                    body: String::new(),
                    retry_after: None,
                    context: None,
                })
            }
        })
    });
    let spawned: Vec<_> = (0..500)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.get().await.map(|_| ()) })
        })
        .collect();
    let results = futures_join_all(spawned.into_iter()).await;
    for r in results {
        assert_eq!(r.unwrap().unwrap_err().status(), Some(503));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The next caller after the failure starts a new request (no negative caching).
    assert!(h.get().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn futures_join_all<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<std::result::Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_refresh_ahead_one_refresh_and_nobody_waits() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let (c, r) = (calls.clone(), release.clone());
    let h = cache.handle(&key("c"), move || {
        Arc::new(move |_cur: Option<TokenSet>| {
            let (c, r) = (c.clone(), r.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                r.notified().await; // the refresh hangs until the test releases it
                Ok(token("new", 0, 3600))
            }
        })
    });
    // Lifetime 100 s, 10 s left: inside the refresh window (lead 30 s), still valid.
    h.insert(token("old", 90, 10));
    for _ in 0..1000 {
        let t = h.get().await.unwrap();
        assert_eq!(t.token().access_token.secret(), "old");
    }
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                h.get()
                    .await
                    .map(|t| t.token().access_token.secret().to_owned())
            })
        })
        .collect();
    for c in callers {
        // Every caller returned while the refresh is still blocked: nobody waited for it.
        assert_eq!(c.await.unwrap().unwrap(), "old");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one background refresh"
    );
    release.notify_one();
    let mut seen_new = false;
    for _ in 0..200 {
        if h.peek()
            .is_some_and(|t| t.token().access_token.secret() == "new")
        {
            seen_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen_new, "the refreshed token replaces the old one");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cache_expired_token_is_not_served() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let h = cache.handle(&key("c"), || counting(calls.clone(), Duration::ZERO));
    h.insert(token("dead", 100, 2)); // within the 5 s expiry margin... of a 102 s token: 5 s
    assert!(h.peek().is_none());
    assert_eq!(h.get().await.unwrap().token().access_token.secret(), "t1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A fresh hit does not fetch.
    assert_eq!(h.get().await.unwrap().token().access_token.secret(), "t1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    h.invalidate();
    assert_eq!(h.get().await.unwrap().token().access_token.secret(), "t2");
}

#[tokio::test]
async fn cache_failed_background_refresh_backs_off() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let h = cache.handle(&key("c"), move || {
        Arc::new(move |_cur: Option<TokenSet>| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err::<TokenSet, _>(Error::config("down"))
            }
        })
    });
    h.insert(token("old", 90, 60));
    // lifetime 150 s, lead 30 s, refresh window starts in 30 s: not yet.
    assert!(h.peek().is_some());
    h.insert(token("old", 190, 20)); // inside the window
    for _ in 0..50 {
        assert!(h.peek().is_some());
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..50 {
        assert!(h.peek().is_some());
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no retry storm after a failure"
    );
}

#[test]
fn cache_refresh_window_math() {
    let cfg = no_jitter();
    // 1 h token: lead = max(30 s, 12 min) = 12 min.
    let c = CachedToken::new(token("a", 0, 3600), &cfg);
    let now = mono_now();
    let r = c.refresh_at.unwrap().duration_since(now).as_secs();
    assert!((2875..=2880).contains(&r), "{r}");
    // 60 s token: lead = max(30 s, 12 s) = 30 s.
    let c = CachedToken::new(token("a", 0, 60), &cfg);
    let r = c.refresh_at.unwrap().duration_since(mono_now()).as_secs();
    assert!((28..=30).contains(&r), "{r}");
    // 10 s token: lead capped at half the lifetime.
    let c = CachedToken::new(token("a", 0, 10), &cfg);
    let r = c.refresh_at.unwrap().duration_since(mono_now()).as_secs();
    assert!((4..=5).contains(&r), "{r}");
    // Unknown expiry: never refreshed ahead, never expires.
    let t = TokenSet::new(AccessToken::new("x"), TokenType::Bearer, SystemTime::now());
    let c = CachedToken::new(t, &cfg);
    assert_eq!(c.state(mono_now()), Freshness::Fresh);
    // With jitter, the refresh comes earlier, never later.
    let jittered = CacheConfig::default();
    for _ in 0..20 {
        let c = CachedToken::new(token("a", 0, 3600), &jittered);
        let r = c.refresh_at.unwrap().duration_since(mono_now()).as_secs();
        assert!((2800..=2880).contains(&r), "{r}");
    }
}

#[tokio::test]
async fn cache_bounded_and_evicts_dead_entries_first() {
    let cache = TokenCache::new(CacheConfig {
        max_entries: 8,
        ..no_jitter()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    for i in 0..8 {
        let h = cache.handle(&key(&format!("c{i}")), || {
            counting(calls.clone(), Duration::ZERO)
        });
        if i % 2 == 0 {
            h.insert(token("live", 0, 3600));
        }
    }
    assert_eq!(cache.len(), 8);
    let _ = cache.handle(&key("new"), || counting(calls.clone(), Duration::ZERO));
    assert_eq!(
        cache.len(),
        5,
        "the four entries without a token went first"
    );
    for i in 0..50 {
        let _ = cache.handle(&key(&format!("x{i}")), || {
            counting(calls.clone(), Duration::ZERO)
        });
    }
    assert!(cache.len() <= 8);
}

#[test]
fn cache_debug_has_no_token() {
    let cfg = no_jitter();
    let c = CachedToken::new(token("sekrit-token", 0, 60), &cfg);
    assert!(!format!("{c:?}").contains("sekrit"));
}

#[tokio::test]
async fn cache_sharded_bounded_and_finds_every_key() {
    // Over the one-shard size: the entries spread over shards, the bound still holds across
    // them, and lookups, removal and retain see every shard.
    let max = 5000;
    let cache = TokenCache::new(CacheConfig {
        max_entries: max,
        ..no_jitter()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    for i in 0..max {
        let h = cache.handle(&key(&format!("s{i}")), || {
            counting(calls.clone(), Duration::ZERO)
        });
        h.insert(token(&format!("t{i}"), 0, 3600));
    }
    assert_eq!(cache.len(), max);
    for i in (0..max).step_by(97) {
        let h = cache.get(&key(&format!("s{i}"))).unwrap();
        assert_eq!(
            h.peek().unwrap().token().access_token.secret(),
            format!("t{i}")
        );
    }
    // Full: each new key makes room, wherever its shard is.
    for i in 0..300 {
        let _ = cache.handle(&key(&format!("n{i}")), || {
            counting(calls.clone(), Duration::ZERO)
        });
        assert!(cache.len() <= max, "{} entries after {i}", cache.len());
    }
    assert!(cache.get(&key("n299")).is_some(), "the newest entry stays");
    cache.remove(&key("n299"));
    assert!(cache.get(&key("n299")).is_none());
    let before = cache.len();
    let new_ones = cache
        .handles_matching(|k| k.client_id().starts_with('n'))
        .len();
    assert!(new_ones > 0);
    cache.retain(|k| !k.client_id().starts_with('n'));
    assert_eq!(cache.len(), before - new_ones);
    assert!(cache
        .handles_matching(|k| k.client_id().starts_with('n'))
        .is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no entry fetched");
}

#[tokio::test(start_paused = true)]
async fn cache_deadline_bounds_each_waiter_not_the_fetch() {
    let cache = TokenCache::new(no_jitter());
    let calls = Arc::new(AtomicUsize::new(0));
    let h = cache.handle(&key("slow"), || {
        counting(calls.clone(), Duration::from_secs(5))
    });
    let deadline = Duration::from_millis(200);
    let t0 = tokio::time::Instant::now();

    // Early waiters and one that joins 150 ms later: each gets its own deadline, within
    // 1 % of it, from the one clock of the flight.
    let early: Vec<_> = (0..100)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                let r = h.get_within(deadline).await;
                (r.map(|_| ()), tokio::time::Instant::now())
            })
        })
        .collect();
    let late = {
        let h = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let r = h.get_within(deadline).await;
            (r.map(|_| ()), tokio::time::Instant::now())
        })
    };
    for t in early {
        let (r, at) = t.await.unwrap();
        assert!(
            matches!(r, Err(Error::Timeout(d)) if d == deadline),
            "{r:?}"
        );
        let waited = at - t0;
        assert!(
            waited >= Duration::from_millis(198) && waited <= deadline,
            "waited {waited:?}"
        );
    }
    let (r, at) = late.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    let waited = at - t0 - Duration::from_millis(150);
    assert!(
        waited >= Duration::from_millis(198) && waited <= deadline + Duration::from_millis(2),
        "the late waiter waited {waited:?}"
    );

    // The fetch was not cancelled: it finishes, once, and its token is served.
    let t = h.get_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(t.token().access_token.secret(), "t1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(tokio::time::Instant::now() - t0 >= Duration::from_secs(5));

    // A hit needs no wait at all.
    assert!(h.get_within(Duration::ZERO).await.is_ok());
}
