//! Time limits on futures, served by one timer for many of them.
//!
//! [`Within`] bounds a future like `tokio::time::timeout`, but it never registers a tokio timer
//! of its own. Registering one costs more than its bookkeeping: tokio's time driver wakes the
//! I/O driver (a `write` to its eventfd) whenever a new timer is due before the earliest one it
//! knew of when it last parked, and between two requests there is none. Each request with two
//! limits (the call's deadline and its HTTP attempt's) paid that twice.
//!
//! Here the limits of one thread's calls on one runtime sit in a [`Clock`]: a list of deadlines
//! and one ticker task, sleeping until the earliest. A call registers its deadline under a lock
//! and touches no timer, unless its deadline is the earliest of all (the first call, or a
//! shorter limit than any before): the next call's deadline is later than the last one's, so the
//! ticker's sleep already covers it. When the ticker wakes, it ends the calls whose deadline has
//! passed and sleeps until the next. With nothing left to wait for, it sleeps once more for the
//! shortest limit it saw (so that a steady stream of calls never re-arms it), then ends.
//!
//! A limit expires at its deadline, as tokio's would (the ticker's sleep has tokio's millisecond
//! resolution). Limits that cannot be represented (`Duration::MAX`) never expire.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

pin_project_lite::pin_project! {
    /// `call` under a time limit: its output, or `expired(limit)` once `limit` has passed since
    /// its first poll returned (the time is read then, so a call that completes on its first
    /// poll never reads it).
    ///
    /// A call that completes on its first poll (a cached answer, a middleware chain that answers
    /// at once) registers nothing. Polled outside a tokio runtime, or on one without timers, the
    /// call runs unbounded rather than panicking.
    pub(crate) struct Within<F, X> {
        #[pin]
        call: F,
        start: Option<Instant>,
        place: Option<Place>,
        limit: Duration,
        expired: X,
    }
}

impl<F, X> Within<F, X> {
    /// `call` limited to `limit`; `expired` makes the error it ends with when the limit passes.
    pub(crate) fn new(limit: Duration, call: F, expired: X) -> Self {
        Within {
            call,
            start: None,
            place: None,
            limit,
            expired,
        }
    }
}

impl<F, T, E, X> Future for Within<F, X>
where
    F: Future<Output = std::result::Result<T, E>>,
    X: Fn(Duration) -> E,
{
    type Output = std::result::Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.call.poll(cx) {
            // Leave the clock now, not when the caller drops this.
            *this.place = None;
            return Poll::Ready(out);
        }
        // Read once the first poll is over: a call that completes on it never reads the time.
        let start = *this.start.get_or_insert_with(Instant::now);
        let Some(at) = start.checked_add(*this.limit) else {
            return Poll::Pending;
        };
        loop {
            let Some(place) = this.place else {
                *this.place = Clock::current().and_then(|c| c.join(at, *this.limit, cx.waker()));
                return Poll::Pending;
            };
            match place.check(cx.waker()) {
                Standing::Waiting => return Poll::Pending,
                Standing::Expired => {
                    *this.place = None;
                    return Poll::Ready(Err((this.expired)(*this.limit)));
                }
                // The ticker's runtime went away: join the clock of the runtime polling now.
                Standing::Orphaned => *this.place = None,
            }
        }
    }
}

/// Where a waiting call's deadline sits in its clock.
struct Place {
    clock: Arc<Clock>,
    index: usize,
    /// The clock's epoch when this place last looked: while it has not moved, no deadline has
    /// passed and no ticker has gone, and the place can be trusted without the lock.
    epoch: u64,
    /// The waker the clock holds for this place.
    waker: Waker,
}

enum Standing {
    Waiting,
    Expired,
    Orphaned,
}

impl Place {
    fn check(&mut self, waker: &Waker) -> Standing {
        let epoch = self.clock.epoch.load(Ordering::Acquire);
        if epoch == self.epoch && self.waker.will_wake(waker) {
            return Standing::Waiting;
        }
        let mut st = crate::sync::lock(&self.clock.state);
        self.epoch = self.clock.epoch.load(Ordering::Acquire);
        match st.slots.get_mut(self.index) {
            Some(Slot::Waiting { waker: held, .. }) => {
                if !held.will_wake(waker) {
                    held.clone_from(waker);
                    self.waker.clone_from(waker);
                }
                Standing::Waiting
            }
            Some(Slot::Expired) => Standing::Expired,
            Some(Slot::Orphaned) | Some(Slot::Free) | None => Standing::Orphaned,
        }
    }
}

/// A place is left when it is dropped: the call ended, timed out, moved to another clock or
/// was dropped itself.
impl Drop for Place {
    fn drop(&mut self) {
        let mut st = crate::sync::lock(&self.clock.state);
        if let Some(slot) = st.slots.get_mut(self.index) {
            *slot = Slot::Free;
            st.free.push(self.index);
        }
    }
}

enum Slot {
    Free,
    Waiting {
        at: Instant,
        waker: Waker,
    },
    Expired,
    /// Its ticker was dropped with its runtime.
    Orphaned,
}

/// The deadlines of one thread's calls on one runtime, and the ticker that ends them.
pub(crate) struct Clock {
    runtime: tokio::runtime::Id,
    /// Moves whenever a deadline expires or the ticker goes.
    epoch: AtomicU64,
    state: Mutex<State>,
}

struct State {
    slots: Vec<Slot>,
    free: Vec<usize>,
    ticker: Ticker,
    /// The shortest limit registered since the ticker last woke.
    shortest: Option<Duration>,
    /// The ticker failed (a runtime without timers): calls here run unbounded.
    broken: bool,
    /// How many times a ticker's sleep was set (tests count them).
    arms: u64,
}

enum Ticker {
    Idle,
    /// Sleeping until `at`; `waker` wakes it to sleep until an earlier deadline.
    Armed {
        at: Instant,
        waker: Option<Waker>,
    },
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Clock>>> = const { RefCell::new(None) };
}

impl Clock {
    /// This thread's clock for the runtime it runs on, if it runs on one.
    fn current() -> Option<Arc<Clock>> {
        let runtime = Handle::try_current().ok()?.id();
        CURRENT
            .try_with(|c| {
                let mut c = c.borrow_mut();
                match &*c {
                    Some(clock) if clock.runtime == runtime => clock.clone(),
                    _ => c.insert(Arc::new(Clock::new(runtime))).clone(),
                }
            })
            .ok()
    }

    fn new(runtime: tokio::runtime::Id) -> Clock {
        Clock {
            runtime,
            epoch: AtomicU64::new(0),
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                ticker: Ticker::Idle,
                shortest: None,
                broken: false,
                arms: 0,
            }),
        }
    }

    /// Register a deadline `at` (of a call limited to `limit`); `None` when this clock cannot
    /// keep time.
    fn join(self: Arc<Self>, at: Instant, limit: Duration, waker: &Waker) -> Option<Place> {
        let mut st = crate::sync::lock(&self.state);
        if st.broken {
            return None;
        }
        let slot = Slot::Waiting {
            at,
            waker: waker.clone(),
        };
        let index = match st.free.pop() {
            Some(i) => {
                st.slots[i] = slot;
                i
            }
            None => {
                st.slots.push(slot);
                st.slots.len() - 1
            }
        };
        st.shortest = Some(st.shortest.map_or(limit, |s| s.min(limit)));
        let mut spawn = false;
        let mut rearm = None;
        match &mut st.ticker {
            Ticker::Idle => {
                st.ticker = Ticker::Armed { at, waker: None };
                spawn = true;
            }
            Ticker::Armed { at: armed, waker } if at < *armed => {
                *armed = at;
                rearm = waker.take();
            }
            Ticker::Armed { .. } => {}
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        drop(st);
        if spawn {
            tokio::spawn(tick(self.clone()));
        }
        if let Some(w) = rearm {
            w.wake();
        }
        Some(Place {
            clock: self,
            index,
            epoch,
            waker: waker.clone(),
        })
    }

    /// End the calls whose deadline is at or before `now`; where the ticker sleeps next, if
    /// it goes on.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut woken = Vec::new();
        let mut st = crate::sync::lock(&self.state);
        let mut next: Option<Instant> = None;
        for slot in &mut st.slots {
            if let Slot::Waiting { at, .. } = slot {
                if *at <= now {
                    if let Slot::Waiting { waker, .. } = std::mem::replace(slot, Slot::Expired) {
                        woken.push(waker);
                    }
                } else {
                    next = Some(next.map_or(*at, |n| n.min(*at)));
                }
            }
        }
        let shortest = st.shortest.take();
        // Nothing waits: sleep once more for the shortest recent limit, so that the calls of a
        // steady stream, each later than that, find the ticker armed; after a quiet period, end.
        let next = next.or_else(|| shortest.and_then(|s| now.checked_add(s)));
        st.ticker = match next {
            Some(at) => Ticker::Armed { at, waker: None },
            None => Ticker::Idle,
        };
        if !woken.is_empty() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        drop(st);
        for w in woken {
            w.wake();
        }
        next
    }

    /// The ticker is gone (its runtime dropped it, or it panicked): its waiters must find
    /// another, or, when this clock cannot keep time, run unbounded.
    fn ticker_gone(&self, broken: bool) {
        let mut woken = Vec::new();
        let mut st = crate::sync::lock(&self.state);
        st.ticker = Ticker::Idle;
        st.broken |= broken;
        for slot in &mut st.slots {
            if matches!(slot, Slot::Waiting { .. }) {
                if let Slot::Waiting { waker, .. } = std::mem::replace(slot, Slot::Orphaned) {
                    woken.push(waker);
                }
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        drop(st);
        for w in woken {
            w.wake();
        }
    }
}

/// The ticker: sleep until the earliest deadline, end the calls it reaches, repeat.
///
/// The guard that tells the clock when the ticker is dropped is made here, outside the task's
/// body, so that a ticker dropped before it was first polled (its runtime shut down) tells it
/// too.
fn tick(clock: Arc<Clock>) -> impl Future<Output = ()> + Send {
    /// Tells the clock when the ticker is dropped before it ends on its own.
    struct Running(Arc<Clock>, bool);
    impl Drop for Running {
        fn drop(&mut self) {
            if self.1 {
                self.0.ticker_gone(std::thread::panicking());
            }
        }
    }
    let running = Running(clock, true);
    async move {
        let mut running = running;
        let clock = running.0.clone();
        let Some(mut target) = armed_at(&clock) else {
            running.1 = false;
            return;
        };
        let mut sleep = pin!(tokio::time::sleep_until(target));
        crate::sync::lock(&clock.state).arms += 1;
        loop {
            // Sleep until `target`, or until a call registers an earlier deadline.
            let fired = poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                let mut st = crate::sync::lock(&clock.state);
                match &mut st.ticker {
                    Ticker::Armed { at, waker } if *at == target => {
                        *waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                    _ => Poll::Ready(false),
                }
            })
            .await;
            let next = if fired {
                clock.expire(Instant::now())
            } else {
                armed_at(&clock)
            };
            let Some(at) = next else {
                // The ticker is idle: a later call spawns a new one.
                running.1 = false;
                return;
            };
            target = at;
            sleep.as_mut().reset(at);
            crate::sync::lock(&clock.state).arms += 1;
        }
    }
}

fn armed_at(clock: &Clock) -> Option<Instant> {
    match crate::sync::lock(&clock.state).ticker {
        Ticker::Armed { at, .. } => Some(at),
        Ticker::Idle => None,
    }
}

#[cfg(test)]
mod tests;
