//! Token cache cost: the lock-free hit on one and two threads, and a stampede of 1000 tasks on a
//! cold key against a source that takes 1 ms.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use agent_oauth::cache::{CacheConfig, TokenCache, TokenHandle, TokenKey, TokenSource};
use agent_oauth::{AccessToken, TokenSet, TokenType};
use criterion::{criterion_group, criterion_main, Criterion};

fn fresh_token(name: &str) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(AccessToken::new(name), TokenType::Bearer, now);
    t.expires_at = Some(now + Duration::from_secs(3600));
    t
}

/// A source answering after `latency` with a fresh token.
fn slow_source(latency: Duration) -> Arc<dyn TokenSource> {
    Arc::new(move |_current: Option<TokenSet>| async move {
        tokio::time::sleep(latency).await;
        Ok(fresh_token("fetched"))
    })
}

fn hot_handle() -> TokenHandle {
    let cache = TokenCache::new(CacheConfig::default());
    let h = cache.handle(&TokenKey::new("https://as.example", "agent"), || {
        slow_source(Duration::from_millis(1))
    });
    h.insert(fresh_token("hot"));
    h
}

fn hit(c: &mut Criterion) {
    // For scale: the precise monotonic clock, and the coarse one a hit reads once.
    c.bench_function("cache/instant_now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    c.bench_function("cache/coarse_now", |b| {
        b.iter(|| black_box(coarsetime::Instant::now()))
    });

    let h = hot_handle();
    c.bench_function("cache/hit_1_thread", |b| {
        b.iter(|| {
            let t = h.peek().unwrap();
            black_box(t.token().access_token.secret().len())
        })
    });

    // Two threads hammer the same handle; the figure is the mean time per peek while both run.
    let h = hot_handle();
    c.bench_function("cache/hit_2_threads", |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (h, barrier) = (h.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..iters {
                            let t = h.peek().unwrap();
                            black_box(t.token().access_token.secret().len());
                        }
                        start.elapsed()
                    })
                })
                .collect();
            let total: Duration = threads.into_iter().map(|t| t.join().unwrap()).sum();
            total / 2
        })
    });
}

fn stampede(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("cache");
    group.sample_size(20);
    group.bench_function("stampede_1000", |b| {
        b.to_async(&rt).iter(|| async {
            // A new cache each time: the key is cold.
            let cache = TokenCache::new(CacheConfig::default());
            let h = cache.handle(&TokenKey::new("https://as.example", "agent"), || {
                slow_source(Duration::from_millis(1))
            });
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    let h = h.clone();
                    tokio::spawn(async move { h.get().await.map(|t| t.token().issued_at) })
                })
                .collect();
            for t in tasks {
                black_box(t.await.unwrap().unwrap());
            }
            assert_eq!(h.fetch_count(), 1);
        })
    });
    group.finish();
}

criterion_group!(benches, hit, stampede);
criterion_main!(benches);
