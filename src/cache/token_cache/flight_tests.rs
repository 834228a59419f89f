//! Unit tests of a key's single flight (`flight.rs`): the order waiters are woken in, the
//! waking thread, waiters that give up or sit on another runtime, and what a woken waiter
//! holds.
#![allow(clippy::unwrap_used)]

use super::tests::{key, no_jitter, token};
use super::*;
use std::sync::atomic::AtomicUsize;

/// A source that answers once `release` is notified.
fn released(release: Arc<tokio::sync::Notify>) -> Arc<dyn TokenSource> {
    Arc::new(move |_cur: Option<TokenSet>| {
        let release = release.clone();
        async move {
            release.notified().await;
            Ok(token("t", 0, 3600))
        }
    })
}

/// A waiter woken at a flight's end borrows the fetched token from the entry, as a hit does:
/// thousands of waiters woken at once write nothing shared to hold it. Should a newer token
/// have replaced it before the waiter reads, the waiter gets the flight's own token, shared.
#[tokio::test]
async fn cache_flight_waiters_borrow_the_fetched_token_from_the_entry() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let release = Arc::new(tokio::sync::Notify::new());
    let cache = TokenCache::new(no_jitter());
    let h = cache.handle(&key("b"), || released(release.clone()));

    let waiter = {
        let h = h.clone();
        tokio::spawn(async move {
            let t = h.get_within(Duration::from_secs(5)).await.unwrap();
            (t.is_borrowed(), t.token().access_token.secret().to_owned())
        })
    };
    tokio::task::yield_now().await;
    release.notify_one();
    assert_eq!(waiter.await.unwrap(), (true, "t".to_owned()));

    // A second flight; once it has ended, a newer token is put in before the waiter reads.
    h.invalidate();
    let mut waiting = Box::pin(h.get_within(Duration::from_secs(5)));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    release.notify_one();
    while h.fetch_count() < 2 || h.peek().is_none() {
        tokio::task::yield_now().await;
    }
    // The fetch task stored the token; let it end the flight.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    h.insert(token("newer", 0, 3600));
    let Poll::Ready(got) = waiting.as_mut().poll(&mut cx) else {
        panic!("the flight has ended");
    };
    let got = got.unwrap();
    assert!(!got.is_borrowed());
    assert_eq!(got.token().access_token.secret(), "t");
    assert_eq!(h.peek().unwrap().token().access_token.secret(), "newer");
}

/// Waiters are served first come, first served: over several wake-up batches on the fetch
/// task (a crowd up to `CROWD`); and in a larger crowd, its first batch (woken on the fetch
/// task) and the rest (from the waking thread) each in the order they joined. In a stampede
/// the callers that waited longest get the token first.
#[tokio::test]
async fn cache_flight_wakes_waiters_in_the_order_they_joined() {
    use super::flight::{BATCH, CROWD};
    const _: () = assert!(200 < CROWD && 700 > CROWD && 4 * BATCH < 700);
    assert_eq!(flight_order(200).await, (0..200).collect::<Vec<_>>());
    let order = flight_order(700).await;
    let first: Vec<_> = order.iter().copied().filter(|&i| i < BATCH).collect();
    let rest: Vec<_> = order.iter().copied().filter(|&i| i >= BATCH).collect();
    assert_eq!(first, (0..BATCH).collect::<Vec<_>>());
    assert_eq!(rest, (BATCH..700).collect::<Vec<_>>());
}

/// The order in which `waiters` waiters, joined one after another, were served.
async fn flight_order(waiters: usize) -> Vec<usize> {
    let release = Arc::new(tokio::sync::Notify::new());
    let cache = TokenCache::new(no_jitter());
    let h = cache.handle(&key("c"), || released(release.clone()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..waiters {
        let (h, done) = (h.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let t = h.get().await.unwrap();
            assert_eq!(t.token().access_token.secret(), "t");
            done.lock().unwrap().push(i);
        }));
        // Each waiter joins before the next is spawned (one thread: it runs at this yield).
        tokio::task::yield_now().await;
    }
    assert_eq!(h.fetch_count(), 1);
    release.notify_one();
    for t in tasks {
        t.await.unwrap();
    }
    let order = done.lock().unwrap().clone();
    order
}

/// Crowds past `CROWD` are woken by one thread, started once and kept. A waker that panics
/// (not tokio's) stops nothing: neither the waiters after it, in the fetch task's batch or
/// the thread's, nor the thread, which serves the next crowd too.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn cache_flight_waking_thread_serves_every_crowd_and_survives_panicking_wakers() {
    use std::future::Future;
    use std::task::{Context, Wake, Waker};
    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker that panics");
        }
    }
    fn waking_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "agent-oauth-wak")
            .count()
    }
    let cache = TokenCache::new(no_jitter());
    let panicking = Waker::from(Arc::new(Panics));
    for round in 0..2 {
        let release = Arc::new(tokio::sync::Notify::new());
        let h = cache.handle(&key(&format!("w{round}")), || released(release.clone()));
        let mut tasks = Vec::new();
        let mut held = Vec::new();
        // Waiters 10 and 100 (in the fetch task's first batch, and past it) panic when woken.
        for i in 0..400 {
            if i == 10 || i == 100 {
                let mut f = Box::pin(h.get());
                assert!(f
                    .as_mut()
                    .poll(&mut Context::from_waker(&panicking))
                    .is_pending());
                held.push(f);
                continue;
            }
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.get().await.map(|t| t.token().clone())
            }));
            // Each waiter joins before the next (one thread: it runs at this yield).
            tokio::task::yield_now().await;
        }
        const _: () = assert!(10 < super::flight::BATCH && 100 > super::flight::BATCH);
        release.notify_one();
        for t in tasks {
            let got = tokio::time::timeout(Duration::from_secs(5), t).await;
            assert_eq!(got.unwrap().unwrap().unwrap().access_token.secret(), "t");
        }
        assert_eq!(h.fetch_count(), 1);
        assert_eq!(waking_threads(), 1, "round {round}");
    }
}

/// A waiter that gave up before the result (dropped) keeps its place but stops nobody: every
/// other waiter, in the batches after it too, gets the token.
#[tokio::test]
async fn cache_flight_dropped_waiters_do_not_stop_the_others() {
    let release = Arc::new(tokio::sync::Notify::new());
    let cache = TokenCache::new(no_jitter());
    let h = cache.handle(&key("d"), || released(release.clone()));
    let mut kept = Vec::new();
    for i in 0..400 {
        let h = h.clone();
        let task = tokio::spawn(async move { h.get().await.map(|t| t.token().clone()) });
        tokio::task::yield_now().await;
        if i % 3 == 0 {
            task.abort();
        } else {
            kept.push(task);
        }
    }
    release.notify_one();
    for t in kept {
        let got = tokio::time::timeout(Duration::from_secs(5), t).await;
        assert_eq!(got.unwrap().unwrap().unwrap().access_token.secret(), "t");
    }
}

type Runtime = tokio::runtime::Runtime;

/// A flight for `name`'s key started on a runtime of one thread, a runtime of one worker for
/// its waiters, and what releases the fetch.
fn flight_on_a_runtime_of_its_own(
    name: &str,
) -> (
    Runtime,
    Runtime,
    Arc<tokio::sync::Notify>,
    TokenCache,
    TokenHandle,
) {
    let (fetch_rt, wait_rt) = two_runtimes();
    let release = Arc::new(tokio::sync::Notify::new());
    let cache = TokenCache::new(no_jitter());
    let h = cache.handle(&key(name), || released(release.clone()));
    start_flight(&fetch_rt, &h);
    (fetch_rt, wait_rt, release, cache, h)
}

/// Wait on `rt` until `n` waiters have joined, and a little more (they are in the flight).
fn wait_until_joined(rt: &Runtime, joined: &AtomicUsize, n: usize) {
    rt.block_on(async {
        while joined.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
}

/// A runtime of one thread for the fetch, and one of one worker for the waiters.
fn two_runtimes() -> (Runtime, Runtime) {
    let fetch_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wait_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    (fetch_rt, wait_rt)
}

/// Start `h`'s flight on `rt`.
fn start_flight(rt: &tokio::runtime::Runtime, h: &TokenHandle) {
    rt.block_on(async {
        let first = h.clone();
        tokio::spawn(async move { first.get().await.map(|_| ()) });
        while h.fetch_count() == 0 {
            tokio::task::yield_now().await;
        }
    });
}

/// A fetch task dropped while it wakes its waiters (its runtime shut down) wakes the rest as
/// it goes: a waiter on another runtime is not left waiting.
#[test]
fn cache_flight_waiters_on_another_runtime_are_woken_when_the_fetch_runtime_stops() {
    const WAITERS: usize = 10_000;
    // The flight starts on `fetch_rt`.
    let (fetch_rt, wait_rt, release, _cache, h) = flight_on_a_runtime_of_its_own("e");
    // Waiters on the other runtime: dozens of wake-up batches.
    let joined = Arc::new(AtomicUsize::new(0));
    let others: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (h, joined) = (h.clone(), joined.clone());
            wait_rt.spawn(async move {
                joined.fetch_add(1, Ordering::SeqCst);
                h.get().await.map(|t| t.token().clone())
            })
        })
        .collect();
    wait_until_joined(&wait_rt, &joined, WAITERS);
    // Answer, give the fetch task one turn (it publishes the token and wakes some batches),
    // then stop its runtime.
    fetch_rt.block_on(async {
        release.notify_one();
        tokio::task::yield_now().await;
    });
    drop(fetch_rt);
    wait_rt.block_on(async {
        for t in others {
            let got = tokio::time::timeout(Duration::from_secs(5), t).await;
            let token = got.expect("woken").unwrap().unwrap();
            assert_eq!(token.access_token.secret(), "t");
        }
    });
}

/// A crowd is woken from a thread of its own: every waiter is served while the runtime that
/// ran the fetch is kept busy right after it (its batches on the fetch task would wait).
#[test]
fn cache_flight_large_crowd_is_served_while_the_fetch_runtime_is_busy() {
    const WAITERS: usize = 1_000;
    let (fetch_rt, wait_rt, release, _cache, h) = flight_on_a_runtime_of_its_own("f");
    let (joined, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (h, joined, served) = (h.clone(), joined.clone(), served.clone());
            wait_rt.spawn(async move {
                joined.fetch_add(1, Ordering::SeqCst);
                let t = h.get().await.map(|t| t.token().clone());
                served.fetch_add(1, Ordering::SeqCst);
                t
            })
        })
        .collect();
    wait_until_joined(&wait_rt, &joined, WAITERS);
    fetch_rt.block_on(async {
        release.notify_one();
        // A few turns for the fetch task (it publishes the token and ends the flight), then
        // this runtime's only thread is busy.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let start = std::time::Instant::now();
        while served.load(Ordering::SeqCst) < WAITERS && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(served.load(Ordering::SeqCst), WAITERS);
    });
    wait_rt.block_on(async {
        for t in waiters {
            assert_eq!(t.await.unwrap().unwrap().access_token.secret(), "t");
        }
    });
}
