#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;

use super::*;
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

fn timed_out(d: Duration) -> Error {
    Error::Timeout(d)
}

/// This thread's clock for the current runtime (created if need be).
fn clock() -> Arc<Clock> {
    Clock::current().unwrap()
}

fn arms(c: &Clock) -> u64 {
    crate::sync::lock(&c.state).arms
}

/// How many calls wait in `c`.
fn waiting(c: &Clock) -> usize {
    crate::sync::lock(&c.state)
        .slots
        .iter()
        .filter(|s| matches!(s, Slot::Waiting { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn deadline_within_answer_ready_at_once_wins_even_with_no_time_left() {
    let call = std::future::ready(Ok::<_, Error>(7));
    let r = Within::new(Duration::ZERO, call, timed_out).await;
    assert_eq!(r.unwrap(), 7);
    // A call answered at once registers nothing.
    assert_eq!(waiting(&clock()), 0);
    assert_eq!(arms(&clock()), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_within_expires_the_limit_after_the_first_poll() {
    let start = Instant::now();
    let call = std::future::pending::<Result<()>>();
    let r = Within::new(Duration::from_millis(50), call, timed_out).await;
    assert!(
        matches!(r, Err(Error::Timeout(d)) if d == Duration::from_millis(50)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn deadline_within_counts_from_the_first_poll_not_from_creation() {
    let limit = Duration::from_millis(50);
    let call = async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok::<_, Error>("answer")
    };
    let within = Within::new(limit, call, timed_out);
    // Built, then left unpolled for longer than the limit: the limit has not started.
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(within.await.unwrap(), "answer");

    // A call that waits past the limit once polled does time out.
    let late = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        Ok::<_, Error>("late")
    };
    assert!(matches!(
        Within::new(limit, late, timed_out).await,
        Err(Error::Timeout(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn deadline_within_a_limit_beyond_the_clock_never_expires() {
    let call = async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Error>(1)
    };
    assert_eq!(
        Within::new(Duration::MAX, call, timed_out).await.unwrap(),
        1
    );
    assert_eq!(waiting(&clock()), 0);
}

/// A steady stream of calls, each waiting a little, arms the ticker's one timer once, not once
/// per call: that is the point of the shared clock.
#[tokio::test(start_paused = true)]
async fn deadline_clock_one_timer_serves_a_stream_of_calls() {
    let limit = Duration::from_secs(30);
    for i in 0..1_000u32 {
        let call = async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, Error>(i)
        };
        assert_eq!(Within::new(limit, call, timed_out).await.unwrap(), i);
    }
    let c = clock();
    assert_eq!(waiting(&c), 0, "every call left its place");
    assert_eq!(
        arms(&c),
        1,
        "the first call armed the ticker, the rest found it armed"
    );
    // Places are reused: the list holds as many as ever waited at once.
    assert_eq!(crate::sync::lock(&c.state).slots.len(), 1);
}

/// A shorter limit registered after a longer one still expires on time: the ticker moves its
/// sleep earlier.
#[tokio::test(start_paused = true)]
async fn deadline_clock_a_shorter_limit_after_a_longer_one_expires_on_time() {
    let start = Instant::now();
    let long = tokio::spawn(Within::new(
        Duration::from_secs(60),
        std::future::pending::<Result<()>>(),
        timed_out,
    ));
    tokio::task::yield_now().await;
    let short = Within::new(
        Duration::from_secs(5),
        std::future::pending::<Result<()>>(),
        timed_out,
    )
    .await;
    assert!(matches!(short, Err(Error::Timeout(d)) if d == Duration::from_secs(5)));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(!long.is_finished(), "the longer limit is not ended early");
    let long = long.await.unwrap();
    assert!(matches!(long, Err(Error::Timeout(d)) if d == Duration::from_secs(60)));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
}

/// Many calls with different limits, all waiting at once: each ends at its own deadline.
#[tokio::test(start_paused = true)]
async fn deadline_clock_many_waiting_calls_each_end_at_their_own_deadline() {
    let start = Instant::now();
    let mut calls = Vec::new();
    for i in (1..=200u64).rev() {
        let limit = Duration::from_millis(i * 7);
        calls.push(tokio::spawn(async move {
            let r = Within::new(limit, std::future::pending::<Result<()>>(), timed_out).await;
            (limit, r, start.elapsed())
        }));
    }
    for call in calls {
        let (limit, r, took) = call.await.unwrap();
        assert!(matches!(r, Err(Error::Timeout(d)) if d == limit));
        assert_eq!(took, limit, "ended at its deadline, not another's");
    }
    assert_eq!(waiting(&clock()), 0);
}

/// A call dropped while it waits (cancelled by its caller) leaves its place: nothing is kept
/// for it, and the next call reuses the place.
#[tokio::test(start_paused = true)]
async fn deadline_clock_a_dropped_call_leaves_its_place() {
    let c = clock();
    let mut w = Box::pin(Within::new(
        Duration::from_secs(1),
        std::future::pending::<Result<()>>(),
        timed_out,
    ));
    assert!(poll_once(w.as_mut()).await.is_pending());
    assert_eq!(waiting(&c), 1);
    drop(w);
    assert_eq!(waiting(&c), 0);
    assert_eq!(crate::sync::lock(&c.state).free.len(), 1);
}

/// A call polled on a runtime that goes away keeps its limit when polled on another: its place
/// in the dead runtime's clock is orphaned and it joins the new runtime's.
#[test]
fn deadline_clock_a_call_outliving_its_runtime_joins_the_next_one() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut w = Box::pin(Within::new(
        Duration::from_millis(30),
        std::future::pending::<Result<()>>(),
        timed_out,
    ));
    let old = first.block_on(async {
        assert!(poll_once(w.as_mut()).await.is_pending());
        clock()
    });
    assert_eq!(waiting(&old), 1);
    drop(first);
    assert_eq!(waiting(&old), 0, "the dropped ticker orphaned its waiters");

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let r = second.block_on(w);
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(25));
}

/// On a runtime built without timers, a limit cannot be kept: the call runs to its end rather
/// than panicking or spinning.
#[test]
fn deadline_clock_without_timers_runs_the_call_unbounded() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let flag = done.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        flag.store(true, Ordering::SeqCst);
        tx.send(9).ok();
    });
    let call = async { rx.await.map_err(|_| Error::Timeout(Duration::ZERO)) };
    let r = rt.block_on(Within::new(Duration::from_millis(10), call, timed_out));
    sender.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(r.unwrap(), 9);
}

/// Outside any runtime there is no clock: the call runs unbounded instead of panicking.
#[test]
fn deadline_clock_outside_a_runtime_runs_the_call_unbounded() {
    let mut waited = false;
    let call = poll_fn(move |cx| {
        if waited {
            return Poll::Ready(Ok::<_, Error>(3));
        }
        waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    });
    let w = Within::new(Duration::from_millis(1), call, timed_out);
    assert_eq!(futures_executor_block_on(w).unwrap(), 3);
}

/// Poll `f` once.
async fn poll_once<F: Future + ?Sized>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// A minimal executor: polls `f` on this thread until it completes.
fn futures_executor_block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Many calls at once on two worker threads (tasks moving between the threads' clocks), half
/// answering quickly and half never: every quick one gets its answer, every other one ends with
/// its own limit, never before it, and none hangs.
#[test]
fn deadline_clock_concurrent_calls_on_two_workers_end_on_their_own_terms() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut calls = Vec::new();
        for i in 0..2_000u64 {
            let limit = Duration::from_millis(200 + (i * 37) % 200);
            let quick = i % 2 == 0;
            calls.push(tokio::spawn(async move {
                let start = Instant::now();
                let call = async move {
                    if quick {
                        tokio::time::sleep(Duration::from_millis(i % 20)).await;
                        Ok::<_, Error>(i)
                    } else {
                        std::future::pending().await
                    }
                };
                let r = Within::new(limit, call, timed_out).await;
                (quick, limit, r, start.elapsed())
            }));
        }
        let all = tokio::time::timeout(Duration::from_secs(30), async {
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.unwrap());
            }
            out
        })
        .await
        .expect("no call hangs");
        for (quick, limit, r, took) in all {
            if quick {
                assert!(r.is_ok(), "a quick call gets its answer: {r:?}");
            } else {
                assert!(matches!(r, Err(Error::Timeout(d)) if d == limit), "{r:?}");
                assert!(
                    took >= limit,
                    "never before its limit: {took:?} < {limit:?}"
                );
            }
        }
    });
}
