//! A key's single flight: where its waiters wait, the guard that always ends it, and the
//! shared deadline clock of waiters that bound their wait.
//!
//! Waiters are woken **in the order they joined**, a batch at a time (a large crowd, past its
//! first batch, from the process's waking thread into the runtime's shared queue): a cold
//! stampede's first callers, who have waited longest, get the token first. (A
//! `tokio::sync::watch` channel wakes its waiters shard by shard, in no particular order, and
//! all at once, so that the earliest callers' latency was set by the slowest shard and the
//! scheduler's overflow queue.) A woken waiter reads the result from a cell written once,
//! without a lock.
//!
//! A waiter with a deadline does not arm a timer of its own: thousands of callers joining one
//! cold key would each register (and, once woken, cancel) a timer, which costs more than the
//! wake-up itself. The flight has one ticker instead, a task that, from the first such
//! waiter's deadline on, publishes the time every hundredth of the deadline until the flight
//! ends. A waiter gives up on the first tick at which its deadline is less than a period
//! away: it waits at most its deadline, and at least 99 % of it.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::{CachedToken, Entry};
use crate::error::{Error, Result};

/// One flight, as its waiters hold it.
#[derive(Clone)]
pub(super) struct Flight(Arc<Shared>);

struct Shared {
    /// The fetch's result: written once, read by every waiter without a lock.
    result: OnceLock<Result<Arc<CachedToken>>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Wakers in the order their waiters joined (a waiter that is woken and keeps waiting
    /// joins again at the end).
    waiters: Vec<Waker>,
    /// Bumped whenever `waiters` is emptied, so that a waiter knows whether its place is kept.
    round: u64,
    /// The ticker's latest reading of the clock, and its period.
    tick: Option<(Instant, Duration)>,
}

impl Flight {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.0.state)
    }

    /// Take every waiter, in the order they joined, for waking (outside the lock).
    fn take_waiters(mut st: std::sync::MutexGuard<'_, State>) -> Vec<Waker> {
        st.round += 1;
        std::mem::take(&mut st.waiters)
    }

    /// Wake every waiter at once.
    fn wake_all(st: std::sync::MutexGuard<'_, State>) {
        for w in Self::take_waiters(st) {
            wake(w);
        }
    }

    fn ended(&self) -> bool {
        self.0.result.get().is_some()
    }

    /// The fetch's result, borrowed: the token, or a copy of the fetch's error. Read once the
    /// flight [`ended`]; before, an error (never seen: `ended` returns only ended flights).
    pub(super) fn outcome(&self) -> Result<&Arc<CachedToken>> {
        match self.0.result.get() {
            Some(Ok(token)) => Ok(token),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Error::config("the token fetch has not ended")),
        }
    }
}

/// The flight in progress, as the entry keeps it.
pub(super) struct Slot {
    pub(super) flight: Flight,
    /// The shortest deadline a ticker runs for, if one does.
    ticking: Option<Duration>,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            flight: Flight(Arc::new(Shared {
                result: OnceLock::new(),
                state: Mutex::new(State::default()),
            })),
            ticking: None,
        }
    }

    /// Make sure a ticker serves a waiter that started at `started` with `deadline`.
    pub(super) fn tick_for(&mut self, started: Instant, deadline: Duration) {
        if self.ticking.is_some_and(|d| d <= deadline) {
            return;
        }
        self.ticking = Some(deadline);
        let period = (deadline / 100).max(Duration::from_millis(1));
        let first = started + deadline.saturating_sub(period);
        let flight = self.flight.clone();
        tokio::spawn(async move {
            let mut at = first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    // The flight ended: nobody needs the clock any more.
                    _ = wait(flight.clone(), None) => return,
                }
                let now = Instant::now();
                let mut st = flight.state();
                if flight.ended() {
                    return;
                }
                st.tick = Some((now, period));
                Flight::wake_all(st);
                at = now + period;
            }
        });
    }
}

/// Wait for the flight's result; with a deadline, give up once the flight's ticker says it is
/// (nearly) past.
pub(super) async fn wait(
    flight: Flight,
    bound: Option<(Instant, Duration)>,
) -> Result<Arc<CachedToken>> {
    let flight = ended(flight, bound).await?;
    flight.outcome().map(Arc::clone)
}

/// Wait for the flight to end and give it back, its result set ([`Flight::outcome`]); with a
/// deadline, give up once the flight's ticker says it is (nearly) past. A waiter that only
/// reads the result need not clone it: in a stampede every clone is a write to one shared
/// count, from every worker.
pub(super) async fn ended(flight: Flight, bound: Option<(Instant, Duration)>) -> Result<Flight> {
    // Where this waiter's waker sits: (round, index).
    let mut place: Option<(u64, usize)> = None;
    poll_fn(|cx| {
        if flight.0.result.get().is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut st = flight.state();
        // Read again under the lock: the result is written before the waiters are taken, so
        // a waiter that registers after that finds it here.
        if flight.0.result.get().is_some() {
            return Poll::Ready(Ok(()));
        }
        if let (Some((started, deadline)), Some((now, period))) = (bound, st.tick) {
            if now + period >= started + deadline {
                return Poll::Ready(Err(Error::Timeout(deadline)));
            }
        }
        let round = st.round;
        match place {
            Some((r, i)) if r == round => {
                if let Some(w) = st.waiters.get_mut(i) {
                    if !w.will_wake(cx.waker()) {
                        w.clone_from(cx.waker());
                    }
                }
            }
            _ => {
                place = Some((round, st.waiters.len()));
                st.waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    })
    .await?;
    Ok(flight)
}

/// Ends a key's flight whatever happens to the task running it: normally with the fetch's
/// result ([`finish`](Self::finish)), and with an error when the task unwinds (a panicking
/// [`TokenSource`](super::TokenSource)) or is dropped by a shutting-down runtime. Without it, a
/// fetch that never finished would leave its marker behind and every later caller would join a
/// dead flight, and its waiters would wait for ever.
pub(super) struct FlightGuard {
    pub(super) entry: Arc<Entry>,
    pub(super) flight: Option<Flight>,
}

impl FlightGuard {
    /// End the flight with `result`, and wake its waiters in the order they joined, a batch
    /// at a time: waking ten thousand tasks at once overflows the worker's run queue, whose
    /// overflow goes to the global queue and runs last (the first callers would be served
    /// last). Each batch runs before the next is woken. A waiter not woken when this task is
    /// dropped (a runtime shutting down) is woken then.
    ///
    /// A crowd larger than [`CROWD`] is woken by the waking thread ([`wake_elsewhere`]) past
    /// its first batch: woken from outside the runtime's workers, the waiters go to its
    /// shared queue, which both workers take from evenly, where waking them from one worker
    /// leaves the other stealing from its queue (10,000 waiters on 2 workers: p99 of the
    /// spread 4.1–4.6 ms instead of 7.9–8.8). The first batch is woken here, onto this
    /// worker's own queue, and the rest handed over at once: the callers that waited longest
    /// do not wait for that thread, and the others do not wait for the first batch to run.
    /// Each of the two keeps its waiters' order; which of them a worker takes from first is
    /// the scheduler's choice.
    pub(super) async fn finish(mut self, result: Result<Arc<CachedToken>>) {
        let mut rest = Wakeup(self.end(result).into_iter());
        drop(self);
        let crowd = rest.0.len() > CROWD;
        loop {
            let mut woken = 0;
            for w in rest.0.by_ref().take(BATCH) {
                wake(w);
                woken += 1;
            }
            if woken < BATCH {
                return;
            }
            if crowd {
                return wake_elsewhere(rest);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Publish `result` and take the waiters to wake.
    fn end(&mut self, result: Result<Arc<CachedToken>>) -> Vec<Waker> {
        let Some(flight) = self.flight.take() else {
            return Vec::new();
        };
        {
            let mut slot = crate::sync::lock(&self.entry.flight);
            *slot = None;
        }
        self.entry.refreshing.store(false, Ordering::Release);
        // Written before the waiters are taken (see `wait`).
        let _ = flight.0.result.set(result);
        Flight::take_waiters(flight.state())
    }
}

/// Waiters woken at a time on the task that ends a flight.
pub(super) const BATCH: usize = 64;

/// Waiters past which a flight's end hands all but its first batch to the waking thread
/// ([`FlightGuard::finish`]): below it, the batches on the fetch task are done as soon.
pub(super) const CROWD: usize = 256;

/// Wake `w`. A waker that panics (not tokio's) stops neither the waiters after it nor the
/// task or thread waking them: a panic while a crowd's wakers are dropped in unwinding would
/// abort the process.
fn wake(w: Waker) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
}

/// Waiters still to wake; dropped, it wakes them all.
struct Wakeup(std::vec::IntoIter<Waker>);

impl Drop for Wakeup {
    fn drop(&mut self) {
        for w in self.0.by_ref() {
            wake(w);
        }
    }
}

/// Wake `rest` from the process's waking thread, `agent-oauth-wake`: one thread, started on
/// the first crowd and kept, that wakes each crowd handed to it in order (starting a thread
/// per crowd cost 0.12–0.2 ms before the first of them was woken). Should the thread not
/// start, or be gone, they are woken here, at once.
fn wake_elsewhere(rest: Wakeup) {
    static WAKER: OnceLock<Option<std::sync::mpsc::Sender<Wakeup>>> = OnceLock::new();
    let sender = WAKER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Wakeup>();
        std::thread::Builder::new()
            .name("agent-oauth-wake".into())
            // A crowd dropped wakes its waiters, in order.
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    let Some(sender) = sender else {
        return drop(rest);
    };
    // A send that fails gives the crowd back, and dropping it wakes them all.
    let _ = sender.send(rest);
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.flight.is_some() {
            tracing::warn!(target: "agent_oauth", "token fetch ended without a result (the token source panicked or was cancelled)");
            self.entry.back_off();
            let waiters = self.end(Err(Error::config(
                "the token fetch ended without a result (the token source panicked or was cancelled)",
            )));
            drop(Wakeup(waiters.into_iter()));
        }
    }
}
